//! The one-shot operations: `register`, `status`, `rotate-keys`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use cutover_agent_proto::{
    AgentKeys, AgentPublicKeys, DirectoryStatus, PROTOCOL_VERSION, RegisterRequest,
    RegisterResponse, RotateKeysRequest, RotateKeysResponse, SelfView, register_proof,
    rotate_proof, unb64,
};
use cutover_core::lockout::DirectoryLockout;
use cutover_core::pta::{MAX_AGENT_LABEL_LEN, MIN_HEALTHY_AGENTS};
use serde::Serialize;
use uuid::Uuid;

use crate::client::{CallError, Link, REQUEST_TIMEOUT, ServerClient, check_server_url};
use crate::runner::{directory_status, host_label};
use crate::state::{
    AgentConfig, DEFAULT_CONCURRENCY, KeyRing, MAX_CONCURRENCY, SERVER_CA_FILE, StateDir,
    parse_directory_table, read_directory_file, write_atomic,
};
use crate::stats::truncate;
use crate::work::DirectoryCheck;

/// Limit for the directory probe of `register` and `status`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest registration token accepted (they are a few dozen characters).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Where `register` keeps the new keys until the server has accepted them.
pub const REGISTER_KEYS_FILE: &str = ".keys.json.register";
/// Mode of the copied server CA certificate.
pub const CA_FILE_MODE: u32 = 0o644;

/// A short, comparable fingerprint of a public key: `sha256:` and the first 16 bytes of the
/// SHA-256 of the raw key, in hex.
pub fn fingerprint(public_key_b64: &str) -> String {
    match unb64(public_key_b64, "key") {
        Ok(raw) => {
            let d = ring::digest::digest(&ring::digest::SHA256, &raw);
            let hex: String = d.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("sha256:{hex}")
        }
        Err(_) => "invalid".into(),
    }
}

/// The public half of the keys, with fingerprints (never anything private).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub signing_key: String,
    pub encryption_key: String,
    pub signing_fingerprint: String,
    pub encryption_fingerprint: String,
}

impl KeyInfo {
    pub fn of(keys: &AgentPublicKeys) -> Self {
        Self {
            signing_fingerprint: fingerprint(&keys.signing_key),
            encryption_fingerprint: fingerprint(&keys.encryption_key),
            signing_key: keys.signing_key.clone(),
            encryption_key: keys.encryption_key.clone(),
        }
    }
}

// ---- register ---------------------------------------------------------------------------

/// What `cutover agent register` was given.
#[derive(Clone)]
pub struct RegisterOptions {
    pub server: String,
    /// The one-time registration token.
    pub token: String,
    /// PEM CA certificate(s): the only CA trusted for the server (copied into the state dir).
    pub ca_file: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// The directory configuration (`PasswordCheckConfig` as TOML).
    pub directory_config: PathBuf,
    pub skip_directory_check: bool,
    /// Replace an existing registration in `state_dir`.
    pub force: bool,
    /// Host label (default: [`host_label`]).
    pub host: Option<String>,
    pub concurrency: usize,
}

impl std::fmt::Debug for RegisterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterOptions")
            .field("server", &self.server)
            .field("token", &"***")
            .field("ca_file", &self.ca_file)
            .field("state_dir", &self.state_dir)
            .field("directory_config", &self.directory_config)
            .field("skip_directory_check", &self.skip_directory_check)
            .field("force", &self.force)
            .field("host", &self.host)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl RegisterOptions {
    pub fn new(
        server: impl Into<String>,
        token: impl Into<String>,
        state_dir: impl Into<PathBuf>,
        directory_config: impl Into<PathBuf>,
    ) -> Self {
        Self {
            server: server.into(),
            token: token.into(),
            ca_file: None,
            state_dir: state_dir.into(),
            directory_config: directory_config.into(),
            skip_directory_check: false,
            force: false,
            host: None,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// What a registration produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub agent_id: Uuid,
    pub state_dir: PathBuf,
    pub healthy_agents: usize,
    pub warning: Option<String>,
    pub keys: KeyInfo,
    /// The directory's lockout policy (None when the check was skipped).
    pub directory_lockout: Option<DirectoryLockout>,
}

fn explain_register_error(e: &CallError, server: &str) -> String {
    match e {
        CallError::Api { code, message, .. } => match code.as_str() {
            "registrationTokenUnknown" => format!(
                "the server does not know this registration token ({message}). Check that it was copied whole, or create a new one (cutover admin agents token)"
            ),
            "registrationTokenExpired" => format!(
                "the registration token has expired ({message}). Create a new one (cutover admin agents token) and register again"
            ),
            "registrationTokenUsed" => format!(
                "the registration token was already used ({message}). Each token registers one agent: create a new one"
            ),
            "tooManyAgents" => format!(
                "the server refuses more agents ({message}). Delete an agent that no longer runs, then register again"
            ),
            _ => format!("the server refused the registration: {e}"),
        },
        CallError::Transport(_) => format!(
            "{e}. Check the URL ({server}), that this host may open outbound HTTPS to it (firewall, proxy), and --ca-file if the server's certificate comes from a private CA"
        ),
        CallError::Malformed(_) => format!(
            "{e}. Is {server} a Cutover server of a version that supports pass-through agents (protocol {PROTOCOL_VERSION})?"
        ),
        _ => format!("the server refused the registration: {e}"),
    }
}

/// Probe the directory, bounded.
async fn probe<D: DirectoryCheck>(d: &D) -> Result<DirectoryLockout, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, d.probe()).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the directory did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Register a new agent: check the directory, generate keys, register with the one-time
/// token, and write the state directory.
pub async fn register(opts: RegisterOptions) -> Result<Registration> {
    register_inner(opts, |cfg| {
        cutover_ldap::PasswordChecker::new(cfg).map_err(|e| e.to_string())
    })
    .await
}

/// [`register`] with another directory (tests).
pub async fn register_with<D: DirectoryCheck>(
    opts: RegisterOptions,
    directory: D,
) -> Result<Registration> {
    register_inner(opts, move |_| Ok(directory)).await
}

async fn register_inner<D: DirectoryCheck>(
    opts: RegisterOptions,
    make: impl FnOnce(cutover_ldap::PasswordCheckConfig) -> Result<D, String>,
) -> Result<Registration> {
    let dir = StateDir::new(&opts.state_dir);
    if dir.is_registered() && !opts.force {
        let who = dir
            .read_config()
            .map(|c| format!(" (agent {} of {})", c.agent_id, c.server))
            .unwrap_or_default();
        bail!(
            "an agent is already registered in {}{who}. Pass --force to replace it (the old registration stays on the server until an administrator deletes it), or choose another --state-dir",
            dir.root.display()
        );
    }
    if opts.concurrency == 0 || opts.concurrency > MAX_CONCURRENCY {
        bail!(
            "--concurrency {} is out of range; use 1 to {MAX_CONCURRENCY}",
            opts.concurrency
        );
    }
    let base = check_server_url(&opts.server)?;
    let server = base.as_str().trim_end_matches('/').to_owned();
    let token = opts.token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || token.chars().any(char::is_control) {
        bail!(
            "the registration token is empty or malformed; copy it again from `cutover admin agents token`"
        );
    }
    let host = truncate(
        opts.host
            .clone()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(host_label),
        MAX_AGENT_LABEL_LEN,
    );
    let ca = match &opts.ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-file {}", p.display()))?,
        ),
        None => None,
    };
    let client =
        ServerClient::new(&server, ca.as_deref()).map_err(|e| anyhow!("{e:#} (--ca-file)"))?;

    // The directory: a broken configuration is always refused; an unreachable directory
    // unless told to go on.
    let table = read_directory_file(&opts.directory_config)?;
    let dcfg = parse_directory_table(table.clone(), Path::new("/"))
        .with_context(|| format!("in {}", opts.directory_config.display()))?;
    let checker = make(dcfg).map_err(|e| {
        anyhow!(
            "the directory configuration {} is not usable: {e}",
            opts.directory_config.display()
        )
    })?;
    let directory_lockout = if opts.skip_directory_check {
        tracing::warn!("directory check skipped (--skip-directory-check)");
        None
    } else {
        match probe(&checker).await {
            Ok(l) => Some(l),
            Err(e) => bail!(
                "cannot reach the directory configured in {}: {e}\n\
                 Fix the configuration (url, bind_dn, bind password, ca_file) or the network, and register again; \
                 or pass --skip-directory-check to register anyway (the agent then reports the directory unreachable and receives no passwords until it can reach it)",
                opts.directory_config.display()
            ),
        }
    };

    // Keys first, on disk, so the one-time token is spent only if the state can be written.
    dir.create()?;
    let staged = dir.root.join(REGISTER_KEYS_FILE);
    let keys = AgentKeys::generate().map_err(|e| anyhow!("cannot generate keys: {e}"))?;
    StateDir::write_keys_at(&staged, &keys)?;
    let public = keys.public();
    let req = RegisterRequest {
        token: token.to_owned(),
        host: host.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: PROTOCOL_VERSION,
        proof: keys.sign(&register_proof(token, &public)),
        keys: public.clone(),
    };
    let resp: RegisterResponse = match client.post("register", &req, None, REQUEST_TIMEOUT).await {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            bail!("{}", explain_register_error(&e, &server));
        }
    };

    let ca_file = match &ca {
        Some(pem) => {
            write_atomic(&dir.server_ca(), pem, CA_FILE_MODE)
                .with_context(|| format!("cannot write {}", dir.server_ca().display()))?;
            Some(PathBuf::from(SERVER_CA_FILE))
        }
        None => {
            let _ = std::fs::remove_file(dir.server_ca());
            None
        }
    };
    let cfg = AgentConfig {
        server,
        agent_id: resp.agent_id,
        ca_file,
        concurrency: opts.concurrency,
        host,
        directory: table,
    };
    let written = dir.write_config(&cfg).and_then(|()| {
        std::fs::rename(&staged, dir.keys())
            .with_context(|| format!("cannot write {}", dir.keys().display()))
    });
    if let Err(e) = written {
        bail!(
            "registered as agent {} but could not save the state: {e:#}. Delete that agent in Cutover and register again",
            resp.agent_id
        );
    }
    let _ = std::fs::remove_file(dir.pending_keys());
    tracing::info!(agent_id = %resp.agent_id, "registered");
    Ok(Registration {
        agent_id: resp.agent_id,
        state_dir: dir.root.clone(),
        healthy_agents: resp.healthy_agents,
        warning: resp.warning,
        keys: KeyInfo::of(&public),
        directory_lockout,
    })
}

// ---- status -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

/// One line of `cutover agent status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// `cutover agent status`: the local configuration and the live checks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub state_dir: PathBuf,
    pub server: String,
    pub agent_id: Uuid,
    pub host: String,
    pub concurrency: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyInfo>,
    pub checks: Vec<Check>,
    /// The server's view of this agent (`GET /agent/v1/self`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<SelfView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryStatus>,
    /// No check failed.
    pub ok: bool,
}

fn session_fix(e: &CallError, server: &str, ca: Option<&Path>, agent_id: Uuid) -> String {
    match e {
        CallError::Transport(_) => format!(
            "check that {server} is reachable from this host (DNS, firewall, proxy: the agent needs outbound HTTPS only) and that its certificate is signed by {}",
            match ca {
                Some(p) => format!("the CA in {}", p.display()),
                None => "a public CA (for a private CA, register with --ca-file)".into(),
            }
        ),
        CallError::Refused { code, .. } if code == "agentDisabled" => {
            "an administrator disabled this agent: re-enable it in Cutover (admin API or UI); a running agent resumes by itself".into()
        }
        CallError::Refused { .. } => format!(
            "the server does not know agent {agent_id} (deleted by an administrator?): create a registration token and run `cutover agent register --force ...`"
        ),
        CallError::Malformed(_) => format!(
            "is {server} a Cutover server that supports pass-through agents (protocol {PROTOCOL_VERSION})?"
        ),
        _ => "the server did not accept this agent's signature: keys.json may not be the keys registered for this agent (restored from an old backup? rotated from another copy?). Register again with --force".into(),
    }
}

fn health_fix(health: &str) -> String {
    match health {
        "stale" | "offline" => "the server has no recent heartbeat from this agent: start it (`cutover agent run`, or the service: systemctl start cutover-agent) and check its log".into(),
        "directoryUnreachable" => "the running agent reports that it cannot reach the directory: see the directory check and the agent's log".into(),
        "disabled" => "an administrator disabled this agent: re-enable it in Cutover (admin API or UI)".into(),
        other => format!("the server reports health '{other}': check the agent's log"),
    }
}

/// Check this agent: the local state, the server (session, `GET /agent/v1/self`) and the
/// directory. `Err` only when no registration can be read at all.
pub async fn status(state_dir: &Path) -> Result<StatusReport> {
    let dir = StateDir::new(state_dir);
    let cfg = dir.read_config()?;
    let checker = cfg
        .directory_config(&dir.root)
        .map_err(|e| format!("{e:#}"))
        .and_then(|c| cutover_ldap::PasswordChecker::new(c).map_err(|e| e.to_string()));
    status_inner(dir, cfg, checker).await
}

/// [`status`] with another directory (tests).
pub async fn status_with<D: DirectoryCheck>(
    state_dir: &Path,
    directory: D,
) -> Result<StatusReport> {
    let dir = StateDir::new(state_dir);
    let cfg = dir.read_config()?;
    status_inner(dir, cfg, Ok(directory)).await
}

async fn status_inner<D: DirectoryCheck>(
    dir: StateDir,
    cfg: AgentConfig,
    directory: Result<D, String>,
) -> Result<StatusReport> {
    let mut checks = Vec::new();
    let ca_path = cfg.ca_file.as_ref().map(|p| dir.root.join(p));
    let mut report = StatusReport {
        state_dir: dir.root.clone(),
        server: cfg.server.clone(),
        agent_id: cfg.agent_id,
        host: cfg.host.clone(),
        concurrency: cfg.concurrency,
        ca_file: ca_path.clone(),
        keys: None,
        checks: Vec::new(),
        agent: None,
        directory: None,
        ok: false,
    };

    // ---- local state --------------------------------------------------------------------
    let keys = match KeyRing::load(&dir) {
        Ok(k) => {
            report.keys = Some(KeyInfo::of(&k.current().public()));
            let warnings = dir.permission_warnings();
            if warnings.is_empty() {
                checks.push(Check::ok(
                    "keys",
                    format!("{} readable, private to this user", dir.keys().display()),
                ));
            } else {
                checks.push(Check::warn(
                    "keys",
                    warnings.join("; "),
                    "restrict the state directory to the agent's user",
                ));
            }
            if dir.pending_keys().exists() {
                checks.push(Check::warn(
                    "rotation",
                    format!("{} exists: a key rotation did not finish", dir.pending_keys().display()),
                    "run `cutover agent rotate-keys` again (or start the agent: it finishes the rotation if the server took the new keys)",
                ));
            }
            Some(k)
        }
        Err(e) => {
            checks.push(Check::fail(
                "keys",
                format!("{e:#}"),
                "restore keys.json from a backup of this state directory, or register the agent again with --force",
            ));
            None
        }
    };

    // ---- server -------------------------------------------------------------------------
    let client = match &ca_path {
        Some(p) => std::fs::read(p)
            .map_err(|e| anyhow!("cannot read the server CA file {}: {e}", p.display()))
            .and_then(|pem| ServerClient::new(&cfg.server, Some(&pem))),
        None => ServerClient::new(&cfg.server, None),
    };
    match (client, keys) {
        (Err(e), _) => checks.push(Check::fail(
            "server",
            format!("{e:#}"),
            format!("fix {} or the CA file", dir.config().display()),
        )),
        (Ok(_), None) => checks.push(Check::fail(
            "server",
            "not checked: no usable keys",
            "see the keys check",
        )),
        (Ok(client), Some(keys)) => {
            let link = Link::new(client, cfg.agent_id, Arc::new(keys));
            let current = link.keys.current();
            match link.open_session_with(&current).await {
                Err(e) => checks.push(Check::fail(
                    "server",
                    e.to_string(),
                    session_fix(&e, &cfg.server, ca_path.as_deref(), cfg.agent_id),
                )),
                Ok(_) => {
                    checks.push(Check::ok(
                        "server",
                        format!("{} reachable, session opened", cfg.server),
                    ));
                    match link.get::<SelfView>("self", REQUEST_TIMEOUT).await {
                        Err(e) => checks.push(Check::fail(
                            "agent",
                            format!("GET /agent/v1/self failed: {e}"),
                            session_fix(&e, &cfg.server, ca_path.as_deref(), cfg.agent_id),
                        )),
                        Ok(view) => {
                            let detail = format!(
                                "enabled: {}, health: {}, key generation {}, last heartbeat: {}",
                                view.enabled,
                                view.health,
                                view.key_generation,
                                view.last_heartbeat
                                    .map(|t| format!(
                                        "{} s ago",
                                        (crate::runner::unix_millis() - t).max(0) / 1000
                                    ))
                                    .unwrap_or_else(|| "never".into())
                            );
                            if view.agent_id != cfg.agent_id {
                                checks.push(Check::fail(
                                    "agent",
                                    format!(
                                        "the server answered for agent {} instead of {}",
                                        view.agent_id, cfg.agent_id
                                    ),
                                    "report this to the server's administrator",
                                ));
                            } else if !view.enabled {
                                checks.push(Check::fail("agent", detail, health_fix("disabled")));
                            } else if view.health != "healthy" {
                                checks.push(Check::fail("agent", detail, health_fix(&view.health)));
                            } else {
                                checks.push(Check::ok("agent", detail));
                            }
                            let fleet = format!("{} healthy agent(s)", view.healthy_agents);
                            match &view.warning {
                                Some(w) => checks.push(Check::warn("fleet", format!("{fleet}: {w}"), format!("run at least {MIN_HEALTHY_AGENTS} agents on different hosts"))),
                                None => checks.push(Check::ok("fleet", fleet)),
                            }
                            report.agent = Some(view);
                        }
                    }
                }
            }
        }
    }

    // ---- directory ----------------------------------------------------------------------
    match directory {
        Err(e) => checks.push(Check::fail(
            "directory",
            format!("the [directory] configuration is not usable: {e}"),
            format!("fix the [directory] section of {}", dir.config().display()),
        )),
        Ok(d) => {
            let st = directory_status(probe(&d).await);
            if st.reachable {
                let policy = match &st.lockout {
                    Some(DirectoryLockout {
                        threshold: Some(t),
                        duration_secs,
                    }) => format!(
                        "lockout after {t} failures{}",
                        duration_secs
                            .map(|d| format!(" for {d} s"))
                            .unwrap_or_default()
                    ),
                    _ => "no lockout policy found".into(),
                };
                checks.push(Check::ok("directory", format!("reachable; {policy}")));
            } else {
                checks.push(Check::fail(
                    "directory",
                    st.error.clone().unwrap_or_else(|| "unreachable".into()),
                    format!(
                        "check the [directory] section of {} (url, bind_dn, bind password, ca_file) and that this host can reach the directory",
                        dir.config().display()
                    ),
                ));
            }
            report.directory = Some(st);
        }
    }
    report.ok = checks.iter().all(|c| c.status != CheckStatus::Fail);
    report.checks = checks;
    Ok(report)
}

// ---- rotate-keys ------------------------------------------------------------------------

/// What a rotation produced.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub agent_id: Uuid,
    pub key_generation: u32,
    pub keys: KeyInfo,
}

/// Replace the agent's keys: a session with the old keys carries the new public keys and a
/// proof signed with the new signing key; `keys.json` is replaced only once the server
/// accepted, and a session is then opened with the new keys.
pub async fn rotate_keys(state_dir: &Path) -> Result<Rotation> {
    let dir = StateDir::new(state_dir);
    let cfg = dir.read_config()?;
    let ca = match &cfg.ca_file {
        Some(p) => Some(std::fs::read(dir.root.join(p)).with_context(|| {
            format!(
                "cannot read the server CA file {}",
                dir.root.join(p).display()
            )
        })?),
        None => None,
    };
    let client = ServerClient::new(&cfg.server, ca.as_deref())?;
    let ring = Arc::new(KeyRing::load(&dir)?);

    // An earlier rotation that did not finish: if the server took those keys, finish it.
    if let Some(pending) = ring.pending() {
        let link = Link::new(client.clone(), cfg.agent_id, ring.clone());
        match link.open_session_with(&pending).await {
            Ok(_) => {
                ring.promote_pending()?;
                tracing::warn!("finished an earlier rotation the server had accepted");
            }
            // The server does not accept those keys: that rotation never happened.
            Err(CallError::Unauthorized(_)) => std::fs::remove_file(dir.pending_keys())
                .with_context(|| format!("cannot remove {}", dir.pending_keys().display()))?,
            Err(e @ CallError::Api { .. }) if !e.is_transient() => {
                std::fs::remove_file(dir.pending_keys())
                    .with_context(|| format!("cannot remove {}", dir.pending_keys().display()))?
            }
            // Cannot tell (unreachable, refused, server error): keep both key sets.
            Err(e) => bail!(
                "cannot settle an unfinished rotation ({} exists): {e}",
                dir.pending_keys().display()
            ),
        }
    }

    let link = Link::new(client, cfg.agent_id, ring.clone());
    link.token()
        .await
        .map_err(|e| anyhow!("cannot open a session with the current keys: {e}"))?;
    let new = AgentKeys::generate().map_err(|e| anyhow!("cannot generate keys: {e}"))?;
    // On disk before the server is asked: if it accepts and this process dies, the keys the
    // server now expects are not lost.
    StateDir::write_keys_at(&dir.pending_keys(), &new)?;
    let public = new.public();
    let req = RotateKeysRequest {
        proof: new.sign(&rotate_proof(cfg.agent_id, &public)),
        keys: public.clone(),
    };
    let resp: RotateKeysResponse = match link.post("keys", &req, REQUEST_TIMEOUT).await {
        Ok(r) => r,
        Err(e) if e.is_transient() => bail!(
            "cannot tell whether the server accepted the new keys: {e}. Both key sets are kept ({} holds the new ones): run `cutover agent rotate-keys` again; it finishes or restarts the rotation",
            dir.pending_keys().display()
        ),
        Err(e) => {
            let _ = std::fs::remove_file(dir.pending_keys());
            bail!("the server refused the new keys: {e}. The old keys stay in use");
        }
    };
    ring.promote_pending()?;
    link.reset_session().await;
    link.token().await.map_err(|e| {
        anyhow!(
            "the server accepted the new keys (generation {}) but a session with them failed: {e}",
            resp.key_generation
        )
    })?;
    Ok(Rotation {
        agent_id: cfg.agent_id,
        key_generation: resp.key_generation,
        keys: KeyInfo::of(&public),
    })
}
