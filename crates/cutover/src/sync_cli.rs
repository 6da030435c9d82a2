//! `cutover sync`: the directory sync server (SPEC §5.1–5.2).
//!
//! Each run: register with Cutover (which says whether this server holds the export lease and
//! where its delta import starts), read the directory over LDAP, read Cutover's synced state,
//! ask the pure planner (`cutover_core::sync::plan`) what to change, and — only on the active
//! server, and only through the delete gate — export the plan in bounded batches. The last
//! batch carries the new watermark, so a run that dies anywhere is simply run again: the plan
//! is recomputed against what Cutover holds and exports only what is still missing.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use cutover_core::sync::plan::{
    self, CutoverSnapshot, DEFAULT_DELETE_THRESHOLD, DeleteGate, EXPORT_BATCH_MAX_OPS, ExportPlan,
    Import, IndexedObject, NT_HASH_ATTRIBUTE, PlanMode, PlanOptions, USER_PASSWORD_ATTRIBUTE,
};
use cutover_core::sync::rules::{CompiledRules, MappingRules};
use cutover_core::sync::{ExportResult, SourceEntry, Watermark};
use cutover_ldap::{Directory, GeneralizedTime, LdapConfig, LdapEntry, ObjectSet};
use cutover_proto::AdminCredentials;
use cutover_proto::sync::{
    ExportBatchRequest, ExportBatchResponse, PendingExports, PromoteRequest, RegisterResponse,
    RegisterSyncServer, ReportRequest, RunKind, RunOutcome, RunReport, SnapshotMeta,
    SyncedGroupsPage, SyncedUsersPage,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::admin_cli::{Api, ApiError, endpoint_url, format_rfc3339, parse_base_url, unix_now};

/// Default time between delta imports (SPEC §5.1).
pub const DEFAULT_DELTA_INTERVAL_SECS: u64 = 30 * 60;
/// Default time between password-hash cycles (SPEC §5.2).
pub const DEFAULT_PASSWORD_INTERVAL_SECS: u64 = 2 * 60;
/// Shortest interval the schedule accepts.
pub const MIN_INTERVAL_SECS: u64 = 1;
/// A delta import re-reads this much before the watermark: entries written while the last
/// import ran (with a timestamp below the highest one it saw) are not missed. Re-reading is
/// harmless — the plan is idempotent.
pub const DELTA_OVERLAP_SECS: i64 = 10 * 60;
/// Most snapshot rows asked for per page.
const SNAPSHOT_PAGE: u32 = 2_000;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    cutover sync --config sync.toml                      # run on the schedule (delta every 30 min, hashes every 2 min)\n  \
    cutover sync --config sync.toml run --once           # one run (full the first time, delta after), for scripts\n  \
    cutover sync --config sync.toml run --once --full    # a full import on demand\n  \
    cutover sync --config sync.toml pending-exports      # what this server would change, as a table (--output json)\n  \
    cutover sync --config staging.toml promote           # fail over: this server becomes the only exporter\n\n\
    The configuration file is described in docs/SYNC.md.")]
pub struct SyncArgs {
    /// The sync server's configuration (TOML).
    #[arg(long, short, env = "CUTOVER_SYNC_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
}

#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Run the sync (on the schedule, or once with --once).
    Run(RunArgs),
    /// Compute what a run would export and show it (never exports, whatever the role).
    PendingExports {
        #[arg(long, value_enum, default_value_t = PendingFormat::Table)]
        output: PendingFormat,
    },
    /// Take the export lease: this server becomes the active exporter and the old active one is
    /// demoted (its late writes are refused).
    Promote,
    /// Give the export lease up: no server exports until one is promoted.
    Demote,
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Run once and exit (exit status 0 on success, 1 on failure, 2 when stopped for review).
    #[arg(long)]
    pub once: bool,
    /// Import everything, not only what changed since the last run.
    #[arg(long, requires = "once")]
    pub full: bool,
    /// Only the password-hash cycle.
    #[arg(long, conflicts_with = "full", requires = "once")]
    pub passwords: bool,
    /// Let this run delete up to N objects even though that is over the delete threshold
    /// (audited). Applies to this run only.
    #[arg(long, value_name = "N", requires = "once")]
    pub allow_deletes: Option<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PendingFormat {
    Table,
    Json,
}

fn default_true() -> bool {
    true
}
fn default_threshold() -> u32 {
    DEFAULT_DELETE_THRESHOLD
}

/// `sync.toml`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SyncConfig {
    /// This sync server's name in Cutover (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Import and compute, never export (until promoted).
    #[serde(default)]
    pub staging: bool,
    #[serde(default = "default_true")]
    pub password_hash_sync: bool,
    /// A run that would delete more objects than this exports nothing and raises an alert.
    #[serde(default = "default_threshold")]
    pub delete_threshold: u32,
    pub cutover: CutoverConnection,
    pub ldap: LdapConfig,
    #[serde(default)]
    pub rules: MappingRules,
    #[serde(default)]
    pub schedule: Schedule,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct CutoverConnection {
    /// Cutover's base URL (its issuer).
    pub url: String,
    /// An application holding the `Directory.Sync` role.
    pub client_id: String,
    pub client_secret_file: PathBuf,
    /// PEM CA certificate that signed Cutover's TLS certificate (default: system roots).
    pub ca_cert: Option<PathBuf>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Schedule {
    #[serde(default = "default_delta")]
    pub delta_interval_secs: u64,
    #[serde(default = "default_passwords")]
    pub password_interval_secs: u64,
}

fn default_delta() -> u64 {
    DEFAULT_DELTA_INTERVAL_SECS
}
fn default_passwords() -> u64 {
    DEFAULT_PASSWORD_INTERVAL_SECS
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            delta_interval_secs: DEFAULT_DELTA_INTERVAL_SECS,
            password_interval_secs: DEFAULT_PASSWORD_INTERVAL_SECS,
        }
    }
}

fn load_config(path: &Path) -> Result<SyncConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the sync configuration {}", path.display()))?;
    let mut cfg: SyncConfig = toml::from_str(&text)
        .map_err(|e| anyhow!("{} is not a valid sync configuration: {e}", path.display()))?;
    // Relative paths are relative to the configuration file.
    let dir = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    rel(&mut cfg.cutover.client_secret_file);
    if let Some(p) = cfg.cutover.ca_cert.as_mut() {
        rel(p);
    }
    if let Some(p) = cfg.ldap.bind_password_file.as_mut() {
        rel(p);
    }
    if let Some(p) = cfg.ldap.ca_file.as_mut() {
        rel(p);
    }
    if cfg.name.is_empty()
        || cfg.name.len() > 64
        || !cfg
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        bail!(
            "name: {:?} must be 1-64 letters, digits, '-', '_' or '.'",
            cfg.name
        );
    }
    for (field, v) in [
        (
            "schedule.delta_interval_secs",
            cfg.schedule.delta_interval_secs,
        ),
        (
            "schedule.password_interval_secs",
            cfg.schedule.password_interval_secs,
        ),
    ] {
        if v < MIN_INTERVAL_SECS {
            bail!("{field}: must be at least {MIN_INTERVAL_SECS} second(s)");
        }
    }
    cfg.ldap.validate().map_err(|e| anyhow!("ldap: {e}"))?;
    Ok(cfg)
}

struct Syncer {
    cfg: SyncConfig,
    rules: CompiledRules,
    api: Api,
    interactive: bool,
    /// Directory entries the connector could not hand over in the current run (no anchor, …).
    skipped: std::sync::atomic::AtomicU64,
}

pub async fn run(args: SyncArgs) -> Result<()> {
    let cfg = load_config(&args.config)?;
    let rules = cfg.rules.compile().map_err(|e| anyhow!("rules: {e}"))?;
    let secret = std::fs::read_to_string(&cfg.cutover.client_secret_file).with_context(|| {
        format!(
            "cannot read cutover.client_secret_file {}",
            cfg.cutover.client_secret_file.display()
        )
    })?;
    let base = parse_base_url(&cfg.cutover.url, "cutover.url")?;
    let ca = match &cfg.cutover.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read cutover.ca_cert {}", path.display()))?;
            Some(
                reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| anyhow!("{} is not a PEM certificate: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let creds = AdminCredentials {
        issuer: cfg.cutover.url.clone(),
        client_id: cfg.cutover.client_id.clone(),
        client_secret: secret.trim().to_owned(),
    };
    let api = Api::sign_in(base, &creds, &cfg.cutover.client_secret_file, ca).await?;
    let s = Syncer {
        cfg,
        rules,
        api,
        interactive: std::io::stderr().is_terminal(),
        skipped: Default::default(),
    };
    match args.command {
        None => s.schedule().await,
        Some(SyncCommand::Run(r)) if !r.once => s.schedule().await,
        Some(SyncCommand::Run(r)) => {
            let requested = if r.full {
                Requested::Full
            } else if r.passwords {
                Requested::Passwords
            } else {
                Requested::Auto
            };
            let outcome = s.run_once(requested, r.allow_deletes, false).await?;
            match outcome.report.outcome {
                RunOutcome::Success | RunOutcome::CompletedWithErrors => Ok(()),
                RunOutcome::DeleteThresholdExceeded => {
                    std::process::exit(2);
                }
                RunOutcome::Demoted | RunOutcome::Failed => bail!(
                    "{}",
                    outcome
                        .report
                        .message
                        .clone()
                        .unwrap_or_else(|| "the run did not complete".into())
                ),
            }
        }
        Some(SyncCommand::PendingExports { output }) => {
            let outcome = s.run_once(Requested::Full, None, true).await?;
            match output {
                PendingFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&outcome.pending)?)
                }
                PendingFormat::Table => print!("{}", pending_table(&outcome.pending)),
            }
            Ok(())
        }
        Some(SyncCommand::Promote) => {
            s.register(true).await?;
            let v = s
                .call(
                    Method::POST,
                    &["servers", &s.cfg.name, "promote"],
                    &[],
                    Some(&serde_json::to_value(PromoteRequest { force: true })?),
                )
                .await?;
            let epoch = v.get("epoch").and_then(Value::as_u64).unwrap_or_default();
            println!(
                "{} is now the active sync server (epoch {epoch}); the previous active server's exports are refused from now on.",
                s.cfg.name
            );
            Ok(())
        }
        Some(SyncCommand::Demote) => {
            s.call(Method::POST, &["servers", &s.cfg.name, "demote"], &[], None)
                .await?;
            println!(
                "{} gave up the export lease; no sync server exports until one is promoted.",
                s.cfg.name
            );
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requested {
    Auto,
    Full,
    Passwords,
}

pub struct RunOutput {
    pub report: RunReport,
    pub pending: PendingExports,
}

fn to_source(e: LdapEntry) -> SourceEntry {
    SourceEntry {
        dn: e.dn,
        anchor: e.anchor,
        attributes: e.attributes,
    }
}

fn index_of(e: &LdapEntry) -> IndexedObject {
    IndexedObject {
        anchor: e.anchor.clone(),
        dn: e.dn.clone(),
        uid: e.first_str("uid").map(str::to_owned),
    }
}

/// `since` moved back by the overlap window (GeneralizedTime `YYYYMMDDHHMMSS[.f]Z`, UTC).
fn delta_start(watermark: &str) -> Option<GeneralizedTime> {
    let digits = watermark.get(..14)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        num(0..4)? as i32,
        time::Month::try_from(num(4..6)? as u8).ok()?,
        num(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(num(8..10)? as u8, num(10..12)? as u8, num(12..14)? as u8).ok()?;
    let shifted = date.with_time(t).assume_utc() - time::Duration::seconds(DELTA_OVERLAP_SECS);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        shifted.year(),
        u8::from(shifted.month()),
        shifted.day(),
        shifted.hour(),
        shifted.minute(),
        shifted.second()
    );
    GeneralizedTime::parse(&text).ok()
}

fn newer(a: Option<String>, b: Option<&GeneralizedTime>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) if b.as_str() > a.as_str() => Some(b.as_str().to_owned()),
        (None, Some(b)) => Some(b.as_str().to_owned()),
        (a, _) => a,
    }
}

fn random_salt() -> [u8; cutover_pwhash::WRAP_SALT_LEN] {
    use ring::rand::SecureRandom;
    let mut s = [0u8; cutover_pwhash::WRAP_SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut s)
        .expect("the system random source failed");
    s
}

impl Syncer {
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, Option<String>)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut path = vec!["sync", "v1"];
        path.extend_from_slice(segments);
        let url = endpoint_url(&self.api.base, &path, query);
        Ok(self
            .api
            .fetch(method, url, body)
            .await?
            .unwrap_or(Value::Null))
    }

    /// Announce this server. `dry_run` registers as staging whatever the configuration says,
    /// so that computing pending exports never takes the lease.
    async fn register(&self, dry_run: bool) -> Result<RegisterResponse> {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let body = serde_json::to_value(RegisterSyncServer {
            host,
            version: env!("CARGO_PKG_VERSION").into(),
            staging: self.cfg.staging || dry_run,
        })?;
        let v = self
            .call(Method::PUT, &["servers", &self.cfg.name], &[], Some(&body))
            .await?;
        Ok(serde_json::from_value(v)?)
    }

    fn spinner(&self, msg: &str) -> indicatif::ProgressBar {
        if !self.interactive {
            return indicatif::ProgressBar::hidden();
        }
        let p = indicatif::ProgressBar::new_spinner();
        p.set_message(msg.to_owned());
        p.enable_steady_tick(Duration::from_millis(120));
        p
    }

    async fn search(
        &self,
        dir: &mut Directory,
        which: ObjectSet,
        attrs: &[String],
        since: Option<&GeneralizedTime>,
        label: &str,
    ) -> Result<(Vec<LdapEntry>, Option<GeneralizedTime>)> {
        let progress = self.spinner(label);
        let mut out = Vec::new();
        let refs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let stats = dir
            .search(which, &refs, since, |e| {
                out.push(e);
                if out.len() % 1000 == 0 {
                    progress.set_message(format!("{label}: {}", out.len()));
                }
                std::ops::ControlFlow::Continue(())
            })
            .await
            .map_err(|e| anyhow!("{label}: {e}"))?;
        progress.finish_and_clear();
        for s in &stats.skipped {
            tracing::warn!(dn = %s.dn, reason = %s.reason, "directory entry skipped");
        }
        self.skipped.fetch_add(
            stats.skipped.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok((out, stats.max_modify_timestamp))
    }

    /// A content-sync cookie for "now", without reading attributes (None: the directory gave
    /// none; the next delta then falls back to modifyTimestamp).
    async fn fresh_cookie(&self, dir: &mut Directory, which: ObjectSet) -> Option<String> {
        use base64::Engine;
        match dir
            .content_sync(which, &["1.1"], None, |_| {
                std::ops::ControlFlow::Continue(())
            })
            .await
        {
            Ok(out) => out
                .cookie
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start content sync; delta runs use modifyTimestamp");
                None
            }
        }
    }

    /// The entries changed since `cookie` (base64), and the cookie for next time.
    async fn changes_since(
        &self,
        dir: &mut Directory,
        which: ObjectSet,
        attrs: &[String],
        cookie: &str,
    ) -> Result<(Vec<LdapEntry>, Option<String>)> {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let raw = engine
            .decode(cookie)
            .map_err(|e| anyhow!("the stored content-sync cookie is not base64: {e}"))?;
        let refs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let mut changed = Vec::new();
        let out = dir
            .content_sync(which, &refs, Some(&raw), |event| {
                if let cutover_ldap::SyncEvent::Changed(e) = event {
                    changed.push(e);
                }
                std::ops::ControlFlow::Continue(())
            })
            .await
            .map_err(|e| anyhow!("{e}"))?;
        for s in &out.skipped {
            tracing::warn!(dn = %s.dn, reason = %s.reason, "directory entry skipped");
        }
        self.skipped.fetch_add(
            out.skipped.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok((changed, out.cookie.map(|c| engine.encode(c))))
    }

    async fn snapshot(&self) -> Result<CutoverSnapshot> {
        let meta: SnapshotMeta =
            serde_json::from_value(self.call(Method::GET, &["snapshot"], &[], None).await?)?;
        let mut snap = CutoverSnapshot {
            domains: meta.domains.into_iter().collect(),
            cloud_upns: meta.cloud_upns.into_iter().collect(),
            ..CutoverSnapshot::default()
        };
        let progress = self.spinner("reading Cutover's synced objects");
        let mut after = String::new();
        loop {
            let page: SyncedUsersPage = serde_json::from_value(
                self.call(
                    Method::GET,
                    &["snapshot", "users"],
                    &[
                        ("after", Some(after.clone())),
                        ("top", Some(SNAPSHOT_PAGE.to_string())),
                    ],
                    None,
                )
                .await?,
            )?;
            for u in page.value {
                snap.users.insert(u.image.anchor.clone(), u);
            }
            progress.set_message(format!(
                "reading Cutover's synced users: {}",
                snap.users.len()
            ));
            match page.next {
                Some(n) => after = n,
                None => break,
            }
        }
        let mut after = String::new();
        loop {
            let page: SyncedGroupsPage = serde_json::from_value(
                self.call(
                    Method::GET,
                    &["snapshot", "groups"],
                    &[
                        ("after", Some(after.clone())),
                        ("top", Some(SNAPSHOT_PAGE.to_string())),
                    ],
                    None,
                )
                .await?,
            )?;
            for g in page.value {
                snap.groups.insert(g.image.anchor.clone(), g);
            }
            match page.next {
                Some(n) => after = n,
                None => break,
            }
        }
        progress.finish_and_clear();
        Ok(snap)
    }

    /// One run. `dry_run`: compute only (pending-exports), never export or report.
    pub async fn run_once(
        &self,
        requested: Requested,
        allow_deletes: Option<u32>,
        dry_run: bool,
    ) -> Result<RunOutput> {
        let started = unix_now();
        let reg = self.register(dry_run).await?;
        match self
            .run_registered(reg, started, requested, allow_deletes, dry_run)
            .await
        {
            Ok(out) => Ok(out),
            Err(e) => {
                if !dry_run {
                    self.report_failure(started, requested, &e).await;
                }
                Err(e)
            }
        }
    }

    /// Tell Cutover that a run failed (the directory unreachable, …), so the admin's view of
    /// the server shows it. Best effort: Cutover may be what is unreachable.
    async fn report_failure(&self, started: i64, requested: Requested, e: &anyhow::Error) {
        let kind = if requested == Requested::Passwords {
            RunKind::Passwords
        } else {
            RunKind::Full
        };
        let now = format_rfc3339(unix_now());
        let report = RunReport {
            run_id: format!("{}-{}", self.cfg.name, uuid::Uuid::now_v7()),
            kind,
            staging: self.cfg.staging,
            started_at: format_rfc3339(started),
            finished_at: now.clone(),
            outcome: RunOutcome::Failed,
            message: Some(format!("{e:#}")),
            summary: Default::default(),
            exported: ExportResult::default(),
            gate: DeleteGate::Open,
            delta_method: None,
            skipped: 0,
        };
        let pending = PendingExports {
            server: self.cfg.name.clone(),
            computed_at: now,
            kind,
            summary: Default::default(),
            gate: DeleteGate::Open,
            changes: Vec::new(),
            problems: Vec::new(),
            truncated: false,
        };
        let body = match (ReportRequest { report, pending }).to_body() {
            Ok(b) => b,
            Err(_) => return,
        };
        if let Err(err) = self
            .call(
                Method::PUT,
                &["servers", &self.cfg.name, "report"],
                &[],
                Some(&body),
            )
            .await
        {
            tracing::error!(error = %format!("{err:#}"), "could not report the failed run to Cutover");
        }
    }

    async fn run_registered(
        &self,
        reg: RegisterResponse,
        started: i64,
        requested: Requested,
        allow_deletes: Option<u32>,
        dry_run: bool,
    ) -> Result<RunOutput> {
        let clock = Instant::now();
        self.skipped.store(0, std::sync::atomic::Ordering::Relaxed);
        let run_id = format!("{}-{}", self.cfg.name, uuid::Uuid::now_v7());
        let active = !dry_run && reg.lease.holder.as_deref() == Some(self.cfg.name.as_str());
        if !dry_run && !self.cfg.staging && !active {
            tracing::warn!(
                holder = reg.lease.holder.as_deref().unwrap_or("nobody"),
                "configured as the active sync server, but it does not hold the export lease: running as staging (use `cutover sync promote` to take over)"
            );
        }
        let epoch = reg.lease.epoch;
        let fingerprint = self.rules.fingerprint().to_owned();
        let watermark = reg.watermark.filter(|w| w.rules == fingerprint && active);
        let kind = match (requested, &watermark) {
            (Requested::Passwords, Some(w)) if w.hashes.is_some() => RunKind::Passwords,
            (Requested::Auto, Some(w)) if w.users.is_some() && w.groups.is_some() => RunKind::Delta,
            _ => RunKind::Full,
        };
        let mut new_wm = watermark.clone().unwrap_or(Watermark {
            rules: fingerprint.clone(),
            ..Watermark::default()
        });
        new_wm.rules = fingerprint;

        // ---- import ----------------------------------------------------------------------
        let mut dir = Directory::connect(&self.cfg.ldap)
            .await
            .map_err(|e| anyhow!("directory: {e}"))?;
        let hash_attrs = [
            USER_PASSWORD_ATTRIBUTE.to_owned(),
            NT_HASH_ATTRIBUTE.to_owned(),
        ];
        let mut user_attrs = self.rules.user_attributes();
        if self.cfg.password_hash_sync {
            user_attrs.extend(hash_attrs.iter().cloned());
        }
        let group_attrs = self.rules.group_attributes();
        let mut import = Import::default();
        let mut delta_method = None;
        // RFC 4533 where the directory offers it (and the anchor is entryUUID, which the sync
        // state control names entries by).
        let content_sync = kind != RunKind::Passwords
            && self
                .cfg
                .ldap
                .anchor_attribute
                .eq_ignore_ascii_case("entryUUID")
            && match dir.offers_content_sync().await {
                Ok(offered) => offered,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell whether the directory offers content sync; using modifyTimestamp");
                    false
                }
            };
        match kind {
            RunKind::Full => {
                if content_sync {
                    // Cookies first: changes made while the import runs are read again next
                    // time (harmless), never missed.
                    new_wm.users_cookie = self.fresh_cookie(&mut dir, ObjectSet::Users).await;
                    new_wm.groups_cookie = self.fresh_cookie(&mut dir, ObjectSet::Groups).await;
                }
                let (users, umax) = self
                    .search(
                        &mut dir,
                        ObjectSet::Users,
                        &user_attrs,
                        None,
                        "importing users",
                    )
                    .await?;
                let (groups, gmax) = self
                    .search(
                        &mut dir,
                        ObjectSet::Groups,
                        &group_attrs,
                        None,
                        "importing groups",
                    )
                    .await?;
                import.user_index = users.iter().map(index_of).collect();
                import.group_index = groups.iter().map(index_of).collect();
                import.users = users.into_iter().map(to_source).collect();
                import.groups = groups.into_iter().map(to_source).collect();
                new_wm.users = newer(None, umax.as_ref());
                new_wm.groups = newer(None, gmax.as_ref());
                new_wm.hashes = new_wm.users.clone();
            }
            RunKind::Delta => {
                let w = watermark.clone().unwrap_or_default();
                let users_since = w.users.as_deref().and_then(delta_start);
                let groups_since = w.groups.as_deref().and_then(delta_start);
                let (all_users, _) = self
                    .search(
                        &mut dir,
                        ObjectSet::Users,
                        &["uid".to_owned()],
                        None,
                        "scanning users",
                    )
                    .await?;
                let (all_groups, _) = self
                    .search(&mut dir, ObjectSet::Groups, &[], None, "scanning groups")
                    .await?;
                import.user_index = all_users.iter().map(index_of).collect();
                import.group_index = all_groups.iter().map(index_of).collect();
                let synced = match (w.users_cookie.as_deref(), w.groups_cookie.as_deref()) {
                    (Some(uc), Some(gc)) if content_sync => {
                        match (
                            self.changes_since(&mut dir, ObjectSet::Users, &user_attrs, uc)
                                .await,
                            self.changes_since(&mut dir, ObjectSet::Groups, &group_attrs, gc)
                                .await,
                        ) {
                            (Ok(u), Ok(g)) => Some((u, g)),
                            (Err(e), _) | (_, Err(e)) => {
                                tracing::warn!(error = %format!("{e:#}"), "content sync failed; this delta uses modifyTimestamp and takes fresh cookies");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let ((users, umax), (groups, gmax)) = match synced {
                    Some(((users, ucookie), (groups, gcookie))) => {
                        delta_method = Some("contentSync".to_owned());
                        new_wm.users_cookie = ucookie.or(w.users_cookie.clone());
                        new_wm.groups_cookie = gcookie.or(w.groups_cookie.clone());
                        let umax = users
                            .iter()
                            .filter_map(|e| e.modify_timestamp.clone())
                            .max();
                        let gmax = groups
                            .iter()
                            .filter_map(|e| e.modify_timestamp.clone())
                            .max();
                        ((users, umax), (groups, gmax))
                    }
                    None => {
                        delta_method = Some("modifyTimestamp".to_owned());
                        if content_sync {
                            new_wm.users_cookie =
                                self.fresh_cookie(&mut dir, ObjectSet::Users).await;
                            new_wm.groups_cookie =
                                self.fresh_cookie(&mut dir, ObjectSet::Groups).await;
                        }
                        (
                            self.search(
                                &mut dir,
                                ObjectSet::Users,
                                &user_attrs,
                                users_since.as_ref(),
                                "importing changed users",
                            )
                            .await?,
                            self.search(
                                &mut dir,
                                ObjectSet::Groups,
                                &group_attrs,
                                groups_since.as_ref(),
                                "importing changed groups",
                            )
                            .await?,
                        )
                    }
                };
                import.users = users.into_iter().map(to_source).collect();
                import.groups = groups.into_iter().map(to_source).collect();
                new_wm.users = newer(w.users, umax.as_ref());
                new_wm.groups = newer(w.groups, gmax.as_ref());
                if self.cfg.password_hash_sync {
                    new_wm.hashes = newer(w.hashes, umax.as_ref());
                }
            }
            RunKind::Passwords => {
                let w = watermark.clone().unwrap_or_default();
                let since = w.hashes.as_deref().and_then(delta_start);
                let (users, umax) = self
                    .search(
                        &mut dir,
                        ObjectSet::Users,
                        &hash_attrs,
                        since.as_ref(),
                        "reading changed password hashes",
                    )
                    .await?;
                import.users = users.into_iter().map(to_source).collect();
                new_wm.hashes = newer(w.hashes, umax.as_ref());
            }
        }
        dir.unbind().await;

        // ---- plan ------------------------------------------------------------------------
        let snapshot = self.snapshot().await?;
        let options = PlanOptions {
            mode: if kind == RunKind::Passwords {
                PlanMode::PasswordsOnly
            } else {
                PlanMode::Objects
            },
            password_hash_sync: self.cfg.password_hash_sync,
        };
        let rules = self.rules.clone();
        let plan: ExportPlan = tokio::task::spawn_blocking(move || {
            plan::plan_export(&rules, &snapshot, &import, options, &mut random_salt)
        })
        .await
        .map_err(|e| anyhow!("the planner failed: {e}"))?;
        let gate = plan::delete_gate(plan.deletes(), self.cfg.delete_threshold, allow_deletes);
        let pending_of = |plan: &ExportPlan, with_changes: bool| PendingExports {
            server: self.cfg.name.clone(),
            computed_at: format_rfc3339(unix_now()),
            kind,
            summary: plan.summary,
            gate,
            changes: if with_changes {
                plan.changes.clone()
            } else {
                Vec::new()
            },
            problems: plan.problems.clone(),
            truncated: false,
        };
        let mut report = RunReport {
            run_id: run_id.clone(),
            kind,
            staging: !active,
            started_at: format_rfc3339(started),
            finished_at: String::new(),
            outcome: RunOutcome::Success,
            message: None,
            summary: plan.summary,
            exported: ExportResult::default(),
            gate,
            delta_method,
            skipped: self.skipped.load(std::sync::atomic::Ordering::Relaxed),
        };
        if dry_run {
            report.finished_at = format_rfc3339(unix_now());
            return Ok(RunOutput {
                pending: pending_of(&plan, true),
                report,
            });
        }

        // ---- export ----------------------------------------------------------------------
        let pending;
        if !active {
            pending = pending_of(&plan, true);
        } else if let DeleteGate::Blocked { deletes, threshold } = gate {
            report.outcome = RunOutcome::DeleteThresholdExceeded;
            report.message = Some(format!(
                "this run would delete {deletes} objects, more than the threshold of {threshold}; nothing was exported. \
                 Check the pending exports; if the deletions are intended, run `cutover sync run --once --allow-deletes {deletes}`"
            ));
            pending = pending_of(&plan, true);
        } else {
            let allowed = matches!(gate, DeleteGate::Overridden { .. })
                .then_some(allow_deletes)
                .flatten();
            match self
                .export(&plan, epoch, &run_id, &new_wm, allowed, &mut report)
                .await
            {
                Ok(()) => pending = pending_of(&plan, false),
                Err(e) => {
                    report.outcome = RunOutcome::Failed;
                    report.message = Some(format!("{e:#}"));
                    pending = pending_of(&plan, true);
                }
            }
            if report.outcome == RunOutcome::Success
                && (plan.summary.errors > 0 || !report.exported.rejected.is_empty())
            {
                report.outcome = RunOutcome::CompletedWithErrors;
            }
        }
        report.finished_at = format_rfc3339(unix_now());
        let body = ReportRequest {
            report: report.clone(),
            pending: pending.clone(),
        }
        .to_body()?;
        if let Err(e) = self
            .call(
                Method::PUT,
                &["servers", &self.cfg.name, "report"],
                &[],
                Some(&body),
            )
            .await
        {
            tracing::error!(error = %format!("{e:#}"), "could not report the run to Cutover");
        }
        self.print_summary(&report, &plan, clock.elapsed(), active, epoch);
        Ok(RunOutput { report, pending })
    }

    async fn export(
        &self,
        plan: &ExportPlan,
        epoch: u64,
        run_id: &str,
        watermark: &Watermark,
        allow_deletes: Option<u32>,
        report: &mut RunReport,
    ) -> Result<()> {
        let ops = plan.ops();
        let mut batches: Vec<Vec<_>> = ops
            .chunks(EXPORT_BATCH_MAX_OPS)
            .map(<[_]>::to_vec)
            .collect();
        if batches.is_empty() {
            batches.push(Vec::new()); // still advance the watermark
        }
        let total = batches.len();
        let progress = if self.interactive && ops.len() > EXPORT_BATCH_MAX_OPS {
            let p = indicatif::ProgressBar::new(ops.len() as u64);
            p.set_style(
                indicatif::ProgressStyle::with_template(
                    "exporting {bar:40} {pos}/{len} ops ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            p
        } else {
            indicatif::ProgressBar::hidden()
        };
        for (i, ops) in batches.into_iter().enumerate() {
            let n = ops.len() as u64;
            let body = serde_json::to_value(ExportBatchRequest {
                epoch,
                batch_id: format!("{run_id}-{i}"),
                ops,
                watermark: (i + 1 == total).then(|| watermark.clone()),
                allow_deletes,
            })?;
            let v = match self
                .call(
                    Method::POST,
                    &["servers", &self.cfg.name, "exports"],
                    &[],
                    Some(&body),
                )
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    if let Some(api) = e.downcast_ref::<ApiError>()
                        && matches!(
                            api.code.as_deref(),
                            Some("staleEpoch" | "notLeaseHolder" | "noLeaseHolder")
                        )
                    {
                        progress.finish_and_clear();
                        report.outcome = RunOutcome::Demoted;
                        report.message = Some(format!(
                            "Cutover refused the export: {} — another sync server is active now; this one stopped exporting and runs as staging",
                            api.message
                        ));
                        tracing::warn!(reason = %api.message, "demoted: export refused by the fencing lease");
                        return Ok(());
                    }
                    return Err(e);
                }
            };
            let resp: ExportBatchResponse = serde_json::from_value(v)?;
            report.exported.absorb(&resp.result);
            progress.inc(n);
        }
        progress.finish_and_clear();
        Ok(())
    }

    fn print_summary(
        &self,
        r: &RunReport,
        plan: &ExportPlan,
        took: Duration,
        active: bool,
        epoch: u64,
    ) {
        let role = if active {
            format!("active, epoch {epoch}")
        } else {
            "staging: nothing exported".into()
        };
        let s = &r.summary;
        let e = &r.exported;
        println!(
            "sync {:?} run ({role}): {:?} in {:.1} s",
            r.kind,
            r.outcome,
            took.as_secs_f64()
        );
        println!(
            "  imported {}  skipped {}  adds {}  updates {}  deletes {}  password changes {}  unchanged {}  errors {}  warnings {}",
            s.imported,
            r.skipped,
            s.adds,
            s.updates,
            s.deletes,
            s.password_changes,
            s.unchanged,
            s.errors,
            s.warnings
        );
        if active {
            println!(
                "  exported: added {}  updated {}  links {}  deleted {}  passwords {}  refused {}",
                e.added,
                e.updated,
                e.links,
                e.deleted,
                e.passwords,
                e.rejected.len()
            );
        }
        if let Some(m) = &r.message {
            println!("  {m}");
        }
        for p in plan.problems.iter().take(20) {
            println!("  {:?} {} [{}] {}", p.severity, p.dn, p.rule, p.message);
        }
        if plan.problems.len() > 20 {
            println!(
                "  … and {} more problems (see `cutover sync pending-exports --output json`)",
                plan.problems.len() - 20
            );
        }
        for rej in e.rejected.iter().take(20) {
            println!(
                "  refused by Cutover: {} {}: {}",
                rej.op, rej.anchor, rej.reason
            );
        }
    }

    async fn schedule(&self) -> Result<()> {
        let delta = Duration::from_secs(self.cfg.schedule.delta_interval_secs);
        let hashes = Duration::from_secs(self.cfg.schedule.password_interval_secs);
        let mut next_objects = tokio::time::Instant::now();
        let mut next_hashes = next_objects + hashes;
        // Staging servers compare everything on each (full) run; the hash cycle is the active
        // server's.
        let mut active = false;
        tracing::info!(server = %self.cfg.name, delta_secs = delta.as_secs(), hash_secs = hashes.as_secs(), "sync server started");
        loop {
            let due = next_objects.min(next_hashes);
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("stopping: no run is in progress");
                    return Ok(());
                }
                _ = tokio::time::sleep_until(due) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= next_objects {
                match self.run_once(Requested::Auto, None, false).await {
                    Ok(out) => active = !out.report.staging,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "sync run failed; retrying at the next interval")
                    }
                }
                next_objects = tokio::time::Instant::now() + delta;
                next_hashes = next_hashes.max(tokio::time::Instant::now() + hashes);
            } else if now >= next_hashes {
                if self.cfg.password_hash_sync
                    && active
                    && let Err(e) = self.run_once(Requested::Passwords, None, false).await
                {
                    tracing::error!(error = %format!("{e:#}"), "password hash cycle failed; retrying at the next interval");
                }
                next_hashes = tokio::time::Instant::now() + hashes;
            }
        }
    }
}

/// The pending-exports view as a table: one row per attribute change.
pub fn pending_table(p: &PendingExports) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for c in &p.changes {
        let action = format!("{:?}", c.action);
        let object = format!("{:?}", c.object).to_lowercase();
        if c.attributes.is_empty() {
            rows.push(vec![
                action,
                object,
                c.name.clone(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for (i, a) in c.attributes.iter().enumerate() {
            let (act, obj, name) = if i == 0 {
                (action.clone(), object.clone(), c.name.clone())
            } else {
                (String::new(), String::new(), String::new())
            };
            rows.push(vec![
                act,
                obj,
                name,
                a.name.clone(),
                format!(
                    "{} → {}",
                    a.old.as_deref().unwrap_or("—"),
                    a.new.as_deref().unwrap_or("—")
                ),
            ]);
        }
    }
    let mut out = format!(
        "{} pending change(s) on {} ({:?} computation at {}): {} add, {} update, {} delete, {} password\n",
        p.changes.len(),
        p.server,
        p.kind,
        p.computed_at,
        p.summary.adds,
        p.summary.updates,
        p.summary.deletes,
        p.summary.password_changes
    );
    if let DeleteGate::Blocked { deletes, threshold } = p.gate {
        out.push_str(&format!("BLOCKED: {deletes} deletions exceed the threshold of {threshold}; a run would export nothing\n"));
    }
    if !rows.is_empty() {
        out.push_str(&crate::admin_cli::render_table(
            &["ACTION", "TYPE", "NAME", "ATTRIBUTE", "OLD → NEW"],
            &rows,
        ));
    }
    if !p.problems.is_empty() {
        let prob: Vec<Vec<String>> = p
            .problems
            .iter()
            .map(|x| {
                vec![
                    format!("{:?}", x.severity).to_lowercase(),
                    x.dn.clone(),
                    x.rule.clone(),
                    x.code.clone(),
                    x.message.clone(),
                ]
            })
            .collect();
        out.push_str(&format!("\n{} problem(s):\n", p.problems.len()));
        out.push_str(&crate::admin_cli::render_table(
            &["SEVERITY", "OBJECT", "RULE", "CODE", "MESSAGE"],
            &prob,
        ));
    }
    out
}
