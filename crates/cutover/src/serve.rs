//! `cutover serve`: resolve the configuration (flags, then environment, then the TOML file,
//! then defaults), open the database, bootstrap the admin credential, and serve HTTP.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use cutover_server::crypto::{Argon2Params, KeyEncryptionKey};
use cutover_server::{AppState, ServerConfig, clock::SystemClock};
use serde::Deserialize;

/// Where the embedded default keeps its data when nothing else is said.
pub const DEFAULT_DATA_DIR: &str = "./cutover-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Name of the bootstrap credential file inside the data directory.
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials";
/// Name of the default key-encryption key file inside the data directory.
pub const KEY_ENCRYPTION_KEY_FILE: &str = "key-encryption-key";

#[derive(clap::Args, Debug, Default, Clone)]
#[command(after_help = "Examples:\n  \
    cutover serve                                   # SQLite in ./cutover-data, http://127.0.0.1:8080\n  \
    cutover serve --data-dir /var/lib/cutover --listen 127.0.0.1:9000\n  \
    cutover serve --database postgres://cutover:secret@db.internal/cutover --issuer https://login.contoso.example\n\n\
    Every option can also come from the environment (CUTOVER_LISTEN, CUTOVER_DATA_DIR, CUTOVER_DATABASE,\n\
    CUTOVER_ISSUER, CUTOVER_ARGON2_MEMORY_KIB, …) or from the TOML file given with --config.\n\
    Precedence: flag, then environment, then file, then default.")]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CUTOVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the SQLite database and the admin credential file.
    #[arg(long, env = "CUTOVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "CUTOVER_LISTEN")]
    pub listen: Option<String>,
    /// Database URL: sqlite:PATH or postgres://user:password@host/db (default: SQLite in the data directory).
    #[arg(long, env = "CUTOVER_DATABASE")]
    pub database: Option<String>,
    /// Issuer URL clients see (default: http://<listen address>). Must be https unless on loopback.
    #[arg(long, env = "CUTOVER_ISSUER")]
    pub issuer: Option<String>,
    /// Lost the admin credential? Give the admin application a new secret and write a new
    /// <data-dir>/admin-credentials (the old file is kept beside it), then serve as usual.
    #[arg(long)]
    pub reset_admin_secret: bool,
    /// Serve HTTPS directly with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "CUTOVER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CUTOVER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The key that seals signing keys in the database (default: <data-dir>/key-encryption-key,
    /// created on a new database). Every node of one database needs the same file.
    #[arg(long, env = "CUTOVER_KEY_ENCRYPTION_KEY_FILE")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// Cloud expiry for synced passwords: a password synced from the directory this many days
    /// ago or more no longer signs in (90 is the usual value). Off by default.
    #[arg(long, env = "CUTOVER_SYNCED_PASSWORD_EXPIRY_DAYS", value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub synced_password_expiry_days: Option<u32>,
    /// How long a pass-through sign-in waits for an agent's answer before it retries once on
    /// another agent (then fails with agentTimeout). Milliseconds, 200-30000; default 5000.
    #[arg(long, env = "CUTOVER_PASS_THROUGH_DEADLINE_MS", value_name = "MS",
          value_parser = clap::value_parser!(u32).range(200..=30000))]
    pub pass_through_deadline_ms: Option<u32>,
    /// The WebAuthn relying-party id passkeys are made for (default: the issuer's host name).
    /// Set a parent domain (corp.example for https://login.corp.example) only on purpose:
    /// changing it later makes every registered passkey unusable.
    #[arg(long, env = "CUTOVER_WEBAUTHN_RP_ID", value_name = "HOST")]
    pub webauthn_rp_id: Option<String>,
    /// A JSON file of authenticator models ({"<aaguid>": {"name": "...", "kind": "..."}})
    /// merged over the bundled catalogue, to name new models without an upgrade.
    #[arg(long, env = "CUTOVER_AAGUID_CATALOGUE", value_name = "FILE")]
    pub aaguid_catalogue: Option<PathBuf>,
    /// PEM file of the attestation root certificates trusted when the methods policy enforces
    /// passkey attestation (e.g. your security-key vendor's roots).
    #[arg(long, env = "CUTOVER_ATTESTATION_ROOTS", value_name = "FILE")]
    pub attestation_roots: Option<PathBuf>,
    /// The organisation's SMTP relay for passkey campaign e-mails (without it, e-mails wait in
    /// the outbox and the admin pages say so).
    #[arg(
        long,
        env = "CUTOVER_SMTP_HOST",
        value_name = "HOST",
        help_heading = "Campaign e-mail"
    )]
    pub smtp_host: Option<String>,
    /// The relay's port (default 587; 465 with --smtp-tls tls).
    #[arg(
        long,
        env = "CUTOVER_SMTP_PORT",
        value_name = "PORT",
        help_heading = "Campaign e-mail"
    )]
    pub smtp_port: Option<u16>,
    /// starttls (default: refuse a relay that does not offer it), starttls-if-offered, tls
    /// (implicit TLS, port 465) or none (loopback relays only).
    #[arg(
        long,
        env = "CUTOVER_SMTP_TLS",
        value_name = "MODE",
        help_heading = "Campaign e-mail"
    )]
    pub smtp_tls: Option<String>,
    /// User name for SMTP AUTH (PLAIN or LOGIN, over TLS only).
    #[arg(
        long,
        env = "CUTOVER_SMTP_USERNAME",
        value_name = "USER",
        help_heading = "Campaign e-mail"
    )]
    pub smtp_username: Option<String>,
    /// File holding the SMTP password (never on the command line).
    #[arg(
        long,
        env = "CUTOVER_SMTP_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "Campaign e-mail"
    )]
    pub smtp_password_file: Option<PathBuf>,
    /// PEM file of extra root certificates for a relay with a private CA.
    #[arg(
        long,
        env = "CUTOVER_SMTP_CA_FILE",
        value_name = "FILE",
        help_heading = "Campaign e-mail"
    )]
    pub smtp_ca_file: Option<PathBuf>,
    /// The sender of campaign e-mails, e.g. "IT Security <it-security@contoso.example>"
    /// (default: cutover@<issuer host>).
    #[arg(
        long,
        env = "CUTOVER_MAIL_FROM",
        value_name = "MAILBOX",
        help_heading = "Campaign e-mail"
    )]
    pub mail_from: Option<String>,
    /// Whom users should ask for help, shown in e-mails and on the enrolment page (e.g.
    /// "the IT Service Desk, extension 4242").
    #[arg(
        long,
        env = "CUTOVER_HELPDESK",
        value_name = "TEXT",
        help_heading = "Campaign e-mail"
    )]
    pub helpdesk: Option<String>,
    /// Folder of Markdown files replacing the built-in enrolment guidance per device family
    /// (iPhone.md, androidSamsung.md, windows.md, …).
    #[arg(
        long,
        env = "CUTOVER_GUIDANCE_DIR",
        value_name = "DIR",
        help_heading = "Campaign e-mail"
    )]
    pub guidance_dir: Option<PathBuf>,
    /// How long a node's claim on an outbox e-mail lasts (seconds, 5-3600; default 300). After
    /// a node dies, its claimed e-mails wait this long before another node sends them.
    #[arg(long, env = "CUTOVER_OUTBOX_LEASE_SECS", value_name = "SECS", help_heading = "Campaign e-mail",
          value_parser = clap::value_parser!(i64).range(5..=3600))]
    pub outbox_lease_secs: Option<i64>,
    /// Display name of the group whose members may use the admin web UI (/admin), signed in
    /// with a passkey or MFA. Default: "Cutover Administrators".
    #[arg(long, env = "CUTOVER_ADMIN_GROUP", value_name = "NAME")]
    pub admin_group: Option<String>,
}

/// The `[argon2]` table and top-level keys of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub issuer: Option<String>,
    pub trust_forwarded_for: Option<bool>,
    pub argon2: Option<Argon2Params>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub key_encryption_key_file: Option<PathBuf>,
    pub synced_password_expiry_days: Option<u32>,
    pub pass_through_deadline_ms: Option<u32>,
    pub webauthn_rp_id: Option<String>,
    pub aaguid_catalogue: Option<PathBuf>,
    pub attestation_roots: Option<PathBuf>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_tls: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    pub smtp_ca_file: Option<PathBuf>,
    pub mail_from: Option<String>,
    pub helpdesk: Option<String>,
    pub guidance_dir: Option<PathBuf>,
    pub outbox_lease_secs: Option<i64>,
    pub admin_group: Option<String>,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database: String,
    /// `None` means "derive from the bound address".
    pub issuer: Option<String>,
    pub trust_forwarded_for: bool,
    pub argon2: Argon2Params,
    /// Certificate chain and key for serving HTTPS directly.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub key_encryption_key_file: PathBuf,
    pub synced_password_expiry_days: Option<u32>,
    pub pass_through_deadline_ms: i64,
    pub webauthn_rp_id: Option<String>,
    pub aaguid_catalogue: Option<PathBuf>,
    pub attestation_roots: Option<PathBuf>,
    pub mail: MailResolved,
    pub admin_group: String,
}

/// The campaign e-mail settings in force (the password stays in its file until the start).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MailResolved {
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_tls: String,
    pub smtp_username: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    pub smtp_ca_file: Option<PathBuf>,
    pub mail_from: Option<String>,
    pub helpdesk: Option<String>,
    pub guidance_dir: Option<PathBuf>,
    pub outbox_lease_secs: i64,
}

/// The campaigns' settings from the resolved configuration: reads the SMTP password file and
/// the guidance folder, and refuses what cannot work, naming the setting.
fn campaigns_config(
    cfg: &Resolved,
    issuer: &str,
) -> anyhow::Result<cutover_server::campaigns::CampaignsConfig> {
    use cutover_server::campaigns::{CampaignsConfig, Guidance, SmtpSettings, SmtpTls};
    let m = &cfg.mail;
    let tls = SmtpTls::parse(&m.smtp_tls).ok_or_else(|| {
        anyhow::anyhow!(
            "smtp_tls '{}' is not known; use starttls, starttls-if-offered, tls or none",
            m.smtp_tls
        )
    })?;
    let smtp = match &m.smtp_host {
        None => None,
        Some(host) => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if tls == SmtpTls::None && !loopback {
                anyhow::bail!(
                    "smtp_tls none sends e-mail (and any SMTP password) unencrypted; it is allowed only for a relay on this machine (127.0.0.1, localhost), not {host}"
                );
            }
            let password = match &m.smtp_password_file {
                Some(p) => Some(cutover_core::Secret::new(
                    std::fs::read_to_string(p)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "cannot read the SMTP password file {}: {e}",
                                p.display()
                            )
                        })?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                )),
                None => None,
            };
            if m.smtp_username.is_some() && password.is_none() {
                anyhow::bail!(
                    "smtp_username is set but no smtp_password_file: give the file holding the SMTP password"
                );
            }
            let settings = SmtpSettings {
                host: host.clone(),
                port: m.smtp_port,
                tls,
                username: m.smtp_username.clone(),
                password,
                ca_file: m.smtp_ca_file.clone(),
            };
            // Everything the relay connection needs (the CA file too) is checked now, not at
            // the first e-mail.
            cutover_server::campaigns::mail::smtp_config(
                &settings,
                "localhost",
                m.outbox_lease_secs,
            )
            .map_err(|e| anyhow::anyhow!("the SMTP settings cannot be used: {e}"))?;
            Some(settings)
        }
    };
    let host = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".into());
    let mail_from = m
        .mail_from
        .clone()
        .unwrap_or_else(|| format!("Cutover <cutover@{host}>"));
    cutover_smtp::Mailbox::parse(&mail_from)
        .map_err(|e| anyhow::anyhow!("mail_from '{mail_from}' is not a usable sender: {e}"))?;
    let guidance = Guidance::load(m.guidance_dir.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(CampaignsConfig {
        smtp,
        mail_from,
        helpdesk: m.helpdesk.clone(),
        guidance,
        outbox_lease_secs: m.outbox_lease_secs,
        ..CampaignsConfig::default()
    })
}

/// Read the passkey files named by the configuration.
fn passkey_config(cfg: &Resolved) -> anyhow::Result<cutover_server::passkeys::PasskeyConfig> {
    let read = |p: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<String>> {
        p.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the {what} file {}", p.display()))
            })
            .transpose()
    };
    Ok(cutover_server::passkeys::PasskeyConfig {
        rp_id: cfg.webauthn_rp_id.clone(),
        aaguid_catalogue: read(&cfg.aaguid_catalogue, "AAGUID catalogue")?,
        attestation_roots_pem: read(&cfg.attestation_roots, "attestation roots")?,
    })
}

fn env_u32(env: &dyn Fn(&str) -> Option<String>, name: &str) -> anyhow::Result<Option<u32>> {
    env(name)
        .map(|v| {
            v.parse::<u32>()
                .with_context(|| format!("{name}={v} is not a whole number"))
        })
        .transpose()
}

/// Merge flags (already merged with their environment variables by clap), other environment
/// variables, the file and defaults. Pure: the environment is passed in.
pub fn resolve(
    args: &ServeArgs,
    file: FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Resolved> {
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let listen = args
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let database = args
        .database
        .clone()
        .or(file.database)
        .unwrap_or_else(|| format!("sqlite:{}", data_dir.join("cutover.db").display()));
    let trust_forwarded_for = match env("CUTOVER_TRUST_FORWARDED_FOR") {
        Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
        None => file.trust_forwarded_for.unwrap_or(false),
    };
    let mut argon2 = file.argon2.unwrap_or_default();
    if let Some(m) = env_u32(env, "CUTOVER_ARGON2_MEMORY_KIB")? {
        argon2.memory_kib = m;
    }
    if let Some(t) = env_u32(env, "CUTOVER_ARGON2_ITERATIONS")? {
        argon2.iterations = t;
    }
    if let Some(p) = env_u32(env, "CUTOVER_ARGON2_PARALLELISM")? {
        argon2.parallelism = p;
    }
    argon2.validate().map_err(anyhow::Error::msg)?;
    let tls = match (
        args.tls_cert.clone().or(file.tls_cert),
        args.tls_key.clone().or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate (tls_cert) and its key (tls_key)"),
    };
    let issuer = args.issuer.clone().or(file.issuer);
    if tls.is_some() && issuer.as_deref().is_some_and(|i| i.starts_with("http://")) {
        anyhow::bail!(
            "Cutover serves HTTPS (tls_cert is set) but the issuer is http://; make the issuer https://"
        );
    }
    let key_encryption_key_file = args
        .key_encryption_key_file
        .clone()
        .or(file.key_encryption_key_file)
        .unwrap_or_else(|| data_dir.join(KEY_ENCRYPTION_KEY_FILE));
    let synced_password_expiry_days = args
        .synced_password_expiry_days
        .or(file.synced_password_expiry_days);
    if synced_password_expiry_days.is_some_and(|d| d == 0 || d > 3650) {
        anyhow::bail!("synced_password_expiry_days must be 1-3650");
    }
    let pass_through_deadline_ms = i64::from(
        args.pass_through_deadline_ms
            .or(file.pass_through_deadline_ms)
            .unwrap_or(cutover_core::pta::DEFAULT_REQUEST_DEADLINE_MS as u32),
    );
    if !(cutover_core::pta::MIN_REQUEST_DEADLINE_MS..=cutover_core::pta::MAX_REQUEST_DEADLINE_MS)
        .contains(&pass_through_deadline_ms)
    {
        anyhow::bail!(
            "pass_through_deadline_ms must be {}-{} (milliseconds), got {pass_through_deadline_ms}",
            cutover_core::pta::MIN_REQUEST_DEADLINE_MS,
            cutover_core::pta::MAX_REQUEST_DEADLINE_MS
        );
    }
    let smtp_tls = args
        .smtp_tls
        .clone()
        .or(file.smtp_tls)
        .unwrap_or_else(|| "starttls".into());
    let mail = MailResolved {
        smtp_host: args.smtp_host.clone().or(file.smtp_host),
        smtp_port: args
            .smtp_port
            .or(file.smtp_port)
            .unwrap_or(if smtp_tls == "tls" { 465 } else { 587 }),
        smtp_tls,
        smtp_username: args.smtp_username.clone().or(file.smtp_username),
        smtp_password_file: args.smtp_password_file.clone().or(file.smtp_password_file),
        smtp_ca_file: args.smtp_ca_file.clone().or(file.smtp_ca_file),
        mail_from: args.mail_from.clone().or(file.mail_from),
        helpdesk: args.helpdesk.clone().or(file.helpdesk),
        guidance_dir: args.guidance_dir.clone().or(file.guidance_dir),
        outbox_lease_secs: args
            .outbox_lease_secs
            .or(file.outbox_lease_secs)
            .unwrap_or(cutover_server::campaigns::mail::DEFAULT_LEASE_SECS),
    };
    if !(cutover_server::campaigns::mail::MIN_LEASE_SECS
        ..=cutover_server::campaigns::mail::MAX_LEASE_SECS)
        .contains(&mail.outbox_lease_secs)
    {
        anyhow::bail!(
            "outbox_lease_secs must be {}-{}, got {}",
            cutover_server::campaigns::mail::MIN_LEASE_SECS,
            cutover_server::campaigns::mail::MAX_LEASE_SECS,
            mail.outbox_lease_secs
        );
    }
    let admin_group = args
        .admin_group
        .clone()
        .or(file.admin_group)
        .unwrap_or_else(|| cutover_server::DEFAULT_ADMIN_GROUP.into());
    Ok(Resolved {
        mail,
        admin_group,
        webauthn_rp_id: args.webauthn_rp_id.clone().or(file.webauthn_rp_id),
        aaguid_catalogue: args.aaguid_catalogue.clone().or(file.aaguid_catalogue),
        attestation_roots: args.attestation_roots.clone().or(file.attestation_roots),
        pass_through_deadline_ms,
        synced_password_expiry_days,
        key_encryption_key_file,
        listen,
        data_dir,
        database,
        issuer,
        trust_forwarded_for,
        argon2,
        tls,
    })
}

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The key that seals the database's signing keys: read from `path`, or created there when the
/// database is new. A database already sealed with a key this node lacks is an error that says
/// where the key must come from.
async fn load_key_encryption_key(
    path: &Path,
    store: &dyn cutover_store::Store,
) -> anyhow::Result<KeyEncryptionKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => KeyEncryptionKey::from_text(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let sealed_already = store
                .get_setting(cutover_server::KEK_FINGERPRINT_SETTING)
                .await
                .map_err(|e| anyhow::anyhow!("reading the database's settings: {e}"))?
                .is_some();
            if sealed_already {
                bail!(
                    "the database's signing keys are sealed with a key-encryption key, and {} does not exist; \
                     copy the key-encryption-key file from the node that set this database up (or point \
                     --key-encryption-key-file at it)",
                    path.display()
                );
            }
            let kek = KeyEncryptionKey::generate();
            write_private_file(path, format!("{}\n", kek.to_text()).as_bytes())
                .with_context(|| format!("creating the key-encryption key {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the key-encryption key; back it up apart from the database");
            Ok(kek)
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot read the key-encryption key {}: {e}",
            path.display()
        )),
    }
}

/// Create `path` with mode 0600 and `content`; never replaces an existing file.
fn write_private_file(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(content)?;
    f.sync_all()?;
    Ok(())
}

/// Write the admin credential file with mode 0600, never replacing an existing one.
pub fn write_credentials(
    path: &Path,
    creds: &cutover_proto::AdminCredentials,
) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(creds)?;
    json.push(b'\n');
    write_private_file(path, &json)
}

/// Move an existing credential file out of the way (it belongs to an admin application that
/// no longer exists here, or to a secret that was just reset), keeping it for the operator.
fn set_aside(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let old = path.with_file_name(format!("{ADMIN_CREDENTIALS_FILE}.replaced-{stamp}"));
        std::fs::rename(path, &old)
            .with_context(|| format!("moving the old {} aside", path.display()))?;
        tracing::warn!(old = %old.display(), "the previous admin credential file no longer matches this database; kept it beside the new one");
    }
    Ok(())
}

fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting {} to its owner", dir.display()))?;
        }
    }
    Ok(())
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the configuration file {}", path.display()))?;
            toml::from_str(&text).with_context(|| {
                format!("{} is not a valid Cutover configuration", path.display())
            })?
        }
        None => FileConfig::default(),
    };
    let cfg = resolve(&args, file, &|k| std::env::var(k).ok())?;
    ensure_data_dir(&cfg.data_dir)?;

    let addr: SocketAddr = cfg.listen.parse().with_context(|| {
        format!(
            "--listen {} is not an address such as 127.0.0.1:8080",
            cfg.listen
        )
    })?;
    // Refuse before binding: a plain-http issuer must never be reachable beyond this host.
    let plain_http = cfg.tls.is_none()
        && cfg
            .issuer
            .as_deref()
            .is_none_or(|i| i.starts_with("http://"));
    let tls = cfg
        .tls
        .as_ref()
        .map(|(cert, key)| cutover_server::tls::server_config(cert, key))
        .transpose()
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if !addr.ip().is_loopback() && plain_http {
        bail!(
            "refusing to start: listening on {addr} with a plain-http issuer would expose sign-in to the network unencrypted; \
             listen on 127.0.0.1 or put Cutover behind a TLS proxy and set --issuer https://…"
        );
    }
    if let Some(issuer) = &cfg.issuer {
        cutover_server::validate_issuer(issuer)
            .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (in use, or not allowed)"))?;
    let bound = listener.local_addr()?;
    let issuer = cfg
        .issuer
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{bound}"));
    cutover_server::validate_issuer(&issuer)
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;

    let store = cutover_store::connect(&cfg.database).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database {}: {e}",
            redact_url(&cfg.database)
        )
    })?;
    let key_encryption_key = load_key_encryption_key(&cfg.key_encryption_key_file, &*store).await?;
    let server_config = ServerConfig {
        issuer: issuer.clone(),
        argon2: cfg.argon2,
        trust_forwarded_for: cfg.trust_forwarded_for,
        key_encryption_key,
        synced_password_expiry_days: cfg.synced_password_expiry_days,
        pass_through_deadline_ms: cfg.pass_through_deadline_ms,
        passkeys: passkey_config(&cfg)?,
        admin_group: cfg.admin_group.clone(),
        campaigns: campaigns_config(&cfg, &issuer)?,
    };
    let state = AppState::new(store.clone(), Arc::new(SystemClock), server_config).await?;

    let cred_path = cfg.data_dir.join(ADMIN_CREDENTIALS_FILE);
    let fresh = if args.reset_admin_secret {
        Some(cutover_server::bootstrap::reset_admin_secret(&state).await?)
    } else {
        cutover_server::bootstrap::ensure_admin_application(&state).await?
    };
    match fresh {
        Some(creds) => {
            set_aside(&cred_path)?;
            write_credentials(&cred_path, &creds).with_context(|| {
                format!("the admin application was created but its credentials could not be written to {}", cred_path.display())
            })?;
            println!(
                "Admin credentials written to {} (mode 0600); this is the only copy of the secret.",
                cred_path.display()
            );
        }
        None if !cred_path.exists() => {
            tracing::info!(
                "the admin application exists; its credentials are in the data directory of the node that created it"
            );
        }
        None => {}
    }

    tracing::info!(backend = store.backend(), database = %redact_url(&cfg.database), issuer = %issuer, "Cutover started");
    println!(
        "Cutover is listening on {scheme}://{bound} (issuer {issuer}, {} database), ready in {} ms",
        store.backend(),
        started.elapsed().as_millis()
    );
    let _ = std::io::stdout().flush();
    match tls {
        Some(tls) => {
            cutover_server::tls::serve_tls(state, listener, tls, shutdown_signal()).await?
        }
        None => cutover_server::serve(state, listener, shutdown_signal()).await?,
    }
    tracing::info!("Cutover stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_need_no_configuration() {
        let r = resolve(&ServeArgs::default(), FileConfig::default(), &no_env).unwrap();
        assert_eq!(r.listen, DEFAULT_LISTEN);
        assert_eq!(r.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(r.database, "sqlite:./cutover-data/cutover.db");
        assert_eq!(
            r.key_encryption_key_file,
            PathBuf::from("./cutover-data/key-encryption-key")
        );
        assert_eq!(r.argon2, Argon2Params::default());
        assert!(!r.trust_forwarded_for);
    }

    #[test]
    fn flags_beat_environment_beats_file() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/f\"\ntrust_forwarded_for = true\n[argon2]\nmemory_kib = 20000\niterations = 3\nparallelism = 1\n",
        )
        .unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let env = |k: &str| match k {
            "CUTOVER_ARGON2_ITERATIONS" => Some("4".to_string()),
            "CUTOVER_TRUST_FORWARDED_FOR" => Some("false".to_string()),
            _ => None,
        };
        let r = resolve(&args, file, &env).unwrap();
        assert_eq!(r.listen, "127.0.0.1:2");
        assert_eq!(r.data_dir, PathBuf::from("/f"));
        assert_eq!(r.database, "sqlite:/f/cutover.db");
        assert_eq!(
            r.argon2,
            Argon2Params {
                memory_kib: 20000,
                iterations: 4,
                parallelism: 1
            }
        );
        assert!(!r.trust_forwarded_for);
    }

    #[test]
    fn bad_settings_are_explained() {
        let err = resolve(&ServeArgs::default(), FileConfig::default(), &|k| {
            (k == "CUTOVER_ARGON2_MEMORY_KIB").then(|| "lots".into())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("CUTOVER_ARGON2_MEMORY_KIB"),
            "{err}"
        );
        let weak = resolve(&ServeArgs::default(), FileConfig::default(), &|k| {
            (k == "CUTOVER_ARGON2_MEMORY_KIB").then(|| "64".into())
        })
        .unwrap_err();
        assert!(weak.to_string().contains("minimum"), "{weak}");
        assert!(
            toml::from_str::<FileConfig>("lisen = \"x\"").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn tls_needs_both_files_and_an_https_issuer() {
        let half: FileConfig = toml::from_str("tls_cert = \"/c.pem\"").unwrap();
        let err = resolve(&ServeArgs::default(), half, &no_env).unwrap_err();
        assert!(err.to_string().contains("tls_key"), "{err}");
        let mixed: FileConfig = toml::from_str(
            "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nissuer = \"http://127.0.0.1:1\"",
        )
        .unwrap();
        let err = resolve(&ServeArgs::default(), mixed, &no_env).unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        let both: FileConfig =
            toml::from_str("tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"").unwrap();
        let r = resolve(&ServeArgs::default(), both, &no_env).unwrap();
        assert_eq!(
            r.tls,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
    }

    #[test]
    fn campaign_mail_settings_are_checked_and_explained() {
        let lease = |n: i64| {
            let file: FileConfig = toml::from_str(&format!("outbox_lease_secs = {n}")).unwrap();
            resolve(&ServeArgs::default(), file, &no_env)
        };
        assert_eq!(lease(5).unwrap().mail.outbox_lease_secs, 5);
        assert_eq!(lease(3600).unwrap().mail.outbox_lease_secs, 3600);
        assert!(
            lease(4)
                .unwrap_err()
                .to_string()
                .contains("outbox_lease_secs must be 5-3600")
        );
        assert!(lease(3601).is_err());
        let r = resolve(&ServeArgs::default(), FileConfig::default(), &no_env).unwrap();
        assert_eq!(r.mail.smtp_port, 587);
        assert_eq!(r.mail.smtp_tls, "starttls");
        assert_eq!(r.admin_group, cutover_server::DEFAULT_ADMIN_GROUP);
        let implicit: FileConfig = toml::from_str("smtp_tls = \"tls\"").unwrap();
        assert_eq!(
            resolve(&ServeArgs::default(), implicit, &no_env)
                .unwrap()
                .mail
                .smtp_port,
            465
        );

        // Plain SMTP only to a relay on this machine; a user needs a password file.
        let issuer = "https://login.contoso.example";
        let plain: FileConfig =
            toml::from_str("smtp_host = \"smtp.contoso.example\"\nsmtp_tls = \"none\"").unwrap();
        let r = resolve(&ServeArgs::default(), plain, &no_env).unwrap();
        let err = campaigns_config(&r, issuer).unwrap_err().to_string();
        assert!(
            err.contains("unencrypted") && err.contains("smtp.contoso.example"),
            "{err}"
        );
        let local: FileConfig =
            toml::from_str("smtp_host = \"127.0.0.1\"\nsmtp_tls = \"none\"").unwrap();
        let r = resolve(&ServeArgs::default(), local, &no_env).unwrap();
        let c = campaigns_config(&r, issuer).unwrap();
        assert_eq!(c.mail_from, "Cutover <cutover@login.contoso.example>");
        let user: FileConfig =
            toml::from_str("smtp_host = \"smtp.contoso.example\"\nsmtp_username = \"u\"").unwrap();
        let r = resolve(&ServeArgs::default(), user, &no_env).unwrap();
        assert!(
            campaigns_config(&r, issuer)
                .unwrap_err()
                .to_string()
                .contains("smtp_password_file")
        );
        let bad: FileConfig = toml::from_str("smtp_tls = \"ssl\"").unwrap();
        let r = resolve(&ServeArgs::default(), bad, &no_env).unwrap();
        assert!(
            campaigns_config(&r, issuer)
                .unwrap_err()
                .to_string()
                .contains("starttls-if-offered")
        );
        let from: FileConfig = toml::from_str("mail_from = \"not an address\"").unwrap();
        let r = resolve(&ServeArgs::default(), from, &no_env).unwrap();
        assert!(
            campaigns_config(&r, issuer)
                .unwrap_err()
                .to_string()
                .contains("mail_from")
        );
        // The password file is read, its line break dropped, and never shown by Debug.
        let dir = std::env::temp_dir().join(format!("cutover-smtp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret-relay\n").unwrap();
        let ok: FileConfig = toml::from_str(&format!(
            "smtp_host = \"smtp.contoso.example\"\nsmtp_username = \"u\"\nsmtp_password_file = \"{}\"",
            dir.join("pw").display()
        ))
        .unwrap();
        let r = resolve(&ServeArgs::default(), ok, &no_env).unwrap();
        let c = campaigns_config(&r, issuer).unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(smtp.password.as_ref().unwrap().expose(), "s3cret-relay");
        assert!(!format!("{smtp:?}").contains("s3cret"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("sqlite:./x.db"), "sqlite:./x.db");
    }

    #[test]
    fn credentials_file_is_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("cutover-cred-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(ADMIN_CREDENTIALS_FILE);
        let c = cutover_proto::AdminCredentials {
            issuer: "i".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
        };
        write_credentials(&p, &c).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(write_credentials(&p, &c).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
