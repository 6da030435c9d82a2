//! Prometheus metrics, in the text exposition format, without a metrics library.
//!
//! Two kinds of series (docs/METRICS.md lists every one, with alerting suggestions):
//! - **this node's counters and histograms** ([`Metrics`]): sign-in attempts by result and
//!   route, HTTP latency by endpoint, pass-through checks and their latency, smart-lockout
//!   events, break-glass sign-ins, sync-run durations (observed when a run report arrives),
//!   e-mails by result, and the e-mail outbox gauge the campaigns engine sets. Each node
//!   reports its own; Prometheus adds them up (`sum`).
//! - **figures read from the shared database at scrape time** ([`ClusterFigures`]): agents by
//!   health, the pass-through queue, pending sync exports and the sync servers' last runs.
//!   Every node reports the same values: aggregate them with `max`, never `sum`.
//!
//! Every label takes values from a fixed set, so the series stay bounded whatever clients
//! send. `/metrics` asks for an application token holding `Metrics.Read` (or the admin role):
//! Prometheus fetches one itself with its `oauth2` client-credentials scrape setting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cutover_core::Timestamp;
use cutover_core::pta::AgentHealth;
use cutover_core::signin_log::SignInRecord;
use cutover_proto::sync::{RunKind, RunOutcome, RunReport};
use cutover_store::{AgentRecord, PtaQueueDepth, StoreError, SyncRunReportRow};

use crate::AppState;

/// Upper bounds (seconds) of the HTTP latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the pass-through check latency buckets: an answered check takes
/// milliseconds, or up to two deadlines (at most 30 s each) when the first agent failed.
pub const PASS_THROUGH_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds (seconds) of the sync-run duration buckets: a delta run takes seconds, a full
/// run over a large directory up to hours.
pub const SYNC_RUN_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1_800.0, 3_600.0, 7_200.0, 14_400.0,
];

/// The results [`Metrics::count_email`] knows; anything else is counted as `other`.
pub const EMAIL_RESULTS: [&str; 5] = ["sent", "retried", "deferred", "failed", "uncertain"];

/// At most this many outbox states are kept by [`Metrics::set_outbox_gauge`] (the rest are
/// dropped, with a warning).
pub const MAX_OUTBOX_STATES: usize = 16;

/// Longest outbox state name [`Metrics::set_outbox_gauge`] accepts.
pub const MAX_OUTBOX_STATE_LEN: usize = 32;

/// The agent health states, in the order [`ClusterFigures::agents`] counts them.
pub const AGENT_HEALTHS: [AgentHealth; 5] = [
    AgentHealth::Healthy,
    AgentHealth::DirectoryUnreachable,
    AgentHealth::Stale,
    AgentHealth::Offline,
    AgentHealth::Disabled,
];

/// The `role` label of sync series: index 0 a run that exported (the lease holder's), 1 a
/// staging run (computed only).
pub const SYNC_ROLES: [&str; 2] = ["active", "staging"];

/// The `change` label of pending sync exports.
pub const SYNC_CHANGES: [&str; 4] = ["add", "update", "delete", "password"];

/// Every run outcome, as labelled.
pub const SYNC_OUTCOMES: [RunOutcome; 5] = [
    RunOutcome::Success,
    RunOutcome::CompletedWithErrors,
    RunOutcome::DeleteThresholdExceeded,
    RunOutcome::Demoted,
    RunOutcome::Failed,
];

/// The endpoint label of a request path: one of a fixed set, so cardinality stays bounded.
pub fn endpoint_label(path: &str) -> &'static str {
    const EXACT: &[&str] = &[
        "/.well-known/openid-configuration",
        "/oauth2/jwks",
        "/oauth2/authorize",
        "/oauth2/token",
        "/oauth2/userinfo",
        "/oauth2/logout",
        "/login",
        "/login/identifier",
        "/login/password",
        "/login/mfa",
        "/login/passkey",
        "/login/passkey/options",
        "/federation/callback",
        "/my/signin",
        "/my/enrol",
        "/my/security",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    if let Some(e) = EXACT.iter().find(|e| **e == path) {
        return e;
    }
    if let Some(rest) = path.strip_prefix("/my/security/") {
        return match rest.split('/').next() {
            Some("passkeys") => "/my/security/passkeys",
            Some("totp") => "/my/security/totp",
            _ => "other",
        };
    }
    if path == "/admin" || path.starts_with("/admin/") {
        return "/admin";
    }
    if path.starts_with("/static/") {
        return "/static";
    }
    if let Some(rest) = path.strip_prefix("/agent/v1/") {
        return match rest {
            "register" => "/agent/v1/register",
            "challenge" => "/agent/v1/challenge",
            "session" => "/agent/v1/session",
            "poll" => "/agent/v1/poll",
            "results" => "/agent/v1/results",
            "heartbeat" => "/agent/v1/heartbeat",
            "keys" => "/agent/v1/keys",
            "self" => "/agent/v1/self",
            _ => "other",
        };
    }
    if let Some(rest) = path.strip_prefix("/sync/v1/") {
        let mut parts = rest.split('/');
        return match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("servers"), Some(_), None, None) => "/sync/v1/servers",
            (Some("servers"), Some(_), Some("exports"), None) => "/sync/v1/servers/exports",
            (Some("servers"), Some(_), Some("report"), None) => "/sync/v1/servers/report",
            (Some("servers"), Some(_), Some("promote"), None) => "/sync/v1/servers/promote",
            (Some("servers"), Some(_), Some("demote"), None) => "/sync/v1/servers/demote",
            (Some("snapshot"), _, None, None) => "/sync/v1/snapshot",
            _ => "other",
        };
    }
    match path
        .strip_prefix("/api/v1/")
        .and_then(|rest| rest.split('/').next())
    {
        Some("domains") => "/api/v1/domains",
        Some("users") => "/api/v1/users",
        Some("groups") => "/api/v1/groups",
        Some("applications") => "/api/v1/applications",
        Some("auditLogs") => "/api/v1/auditLogs",
        Some("signingKeys") => "/api/v1/signingKeys",
        Some("openapi.json") => "/api/v1/openapi.json",
        Some("agents") => "/api/v1/agents",
        Some("policies") => "/api/v1/policies",
        Some("identityProviders") => "/api/v1/identityProviders",
        Some("identity") => "/api/v1/identity",
        Some("sync") => "/api/v1/sync",
        Some("breakGlass") => "/api/v1/breakGlass",
        Some("reports") => "/api/v1/reports",
        Some("campaigns") => "/api/v1/campaigns",
        _ => "other",
    }
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "HEAD" => "HEAD",
        _ => "OTHER",
    }
}

/// A run kind as labelled.
pub fn run_kind_label(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Full => "full",
        RunKind::Delta => "delta",
        RunKind::Passwords => "passwords",
    }
}

/// A run outcome as labelled.
pub fn run_outcome_label(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Success => "success",
        RunOutcome::CompletedWithErrors => "completedWithErrors",
        RunOutcome::DeleteThresholdExceeded => "deleteThresholdExceeded",
        RunOutcome::Demoted => "demoted",
        RunOutcome::Failed => "failed",
    }
}

fn role_index(staging: bool) -> usize {
    usize::from(staging)
}

/// How long a reported run took, from its RFC 3339 start and end: `None` when either does not
/// parse or the end is before the start (nothing is observed then).
pub fn sync_run_seconds(started_at: &str, finished_at: &str) -> Option<f64> {
    let start = crate::clock::parse_rfc3339(started_at)?;
    let end = crate::clock::parse_rfc3339(finished_at)?;
    let ms = end.millis().checked_sub(start.millis())?;
    (ms >= 0).then(|| ms as f64 / 1000.0)
}

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, the observations at or below its bound (cumulative).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Count `secs`; a negative or non-finite value is ignored.
    fn observe(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// The `_bucket`, `_sum` and `_count` lines of one series; `labels` is empty or ends
    /// without a comma.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), self.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count);
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

type SignInKey = (&'static str, &'static str, bool);
type HttpKey = (&'static str, &'static str, u16);
/// (role, kind, outcome)
type SyncRunKey = (&'static str, &'static str, &'static str);

/// This node's counters. Each node reports its own; Prometheus adds them up.
#[derive(Debug)]
pub struct Metrics {
    sign_ins: Mutex<BTreeMap<SignInKey, u64>>,
    http: Mutex<BTreeMap<HttpKey, Histogram>>,
    lockouts: Mutex<BTreeMap<&'static str, u64>>,
    pass_through: Mutex<BTreeMap<&'static str, u64>>,
    pass_through_latency: Mutex<Histogram>,
    break_glass_sign_ins: AtomicU64,
    sync_runs: Mutex<BTreeMap<SyncRunKey, Histogram>>,
    emails: Mutex<BTreeMap<&'static str, u64>>,
    /// `None` until the campaigns engine first sets it.
    outbox: Mutex<Option<BTreeMap<&'static str, u64>>>,
    /// Whether this node's last connection to the SMTP relay worked; `None` before the first.
    relay_up: Mutex<Option<bool>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sign_ins: Default::default(),
            http: Default::default(),
            lockouts: Default::default(),
            pass_through: Default::default(),
            pass_through_latency: Mutex::new(Histogram::new(&PASS_THROUGH_BUCKETS)),
            break_glass_sign_ins: AtomicU64::new(0),
            sync_runs: Default::default(),
            emails: Mutex::new(EMAIL_RESULTS.iter().map(|r| (*r, 0)).collect()),
            outbox: Mutex::new(None),
            relay_up: Mutex::new(None),
        }
    }
}

impl Metrics {
    pub fn count_sign_in(&self, r: &SignInRecord) {
        let route = match r.route.as_deref() {
            Some("managed") => "managed",
            Some("federated") => "federated",
            _ => "none",
        };
        if let Ok(mut m) = self.sign_ins.lock() {
            *m.entry((r.result.as_str(), route, r.is_interactive))
                .or_default() += 1;
        }
    }

    /// A smart-lockout event: `locked` (an attempt refused), `lockedNow` (a lock started),
    /// `reportOnlyLocked` (report-only mode would have refused).
    pub fn count_lockout(&self, event: &'static str) {
        if let Ok(mut m) = self.lockouts.lock() {
            *m.entry(event).or_default() += 1;
        }
    }

    /// A pass-through validation's end on this node, by result code (or `noAgentAvailable`,
    /// `agentTimeout`).
    pub fn count_pass_through(&self, result: &'static str) {
        if let Ok(mut m) = self.pass_through.lock() {
            *m.entry(result).or_default() += 1;
        }
    }

    /// How long an answered pass-through check took, from the sign-in's request to the
    /// agent's answer (retry included).
    pub fn observe_pass_through(&self, elapsed: Duration) {
        if let Ok(mut h) = self.pass_through_latency.lock() {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// A completed sign-in of a break-glass account (each one is an alert).
    pub fn count_break_glass_sign_in(&self) {
        self.break_glass_sign_ins.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_request(&self, path: &str, method: &str, status: u16, elapsed: Duration) {
        let key = (endpoint_label(path), method_label(method), status);
        if let Ok(mut m) = self.http.lock() {
            m.entry(key)
                .or_insert_with(|| Histogram::new(&LATENCY_BUCKETS))
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A sync server reported a run: observe its duration (from its own start and end times)
    /// by role, kind and outcome. Returns the seconds observed; `None` (nothing observed) when
    /// the times do not parse or the end is before the start.
    pub fn observe_sync_run(&self, report: &RunReport) -> Option<f64> {
        let secs = sync_run_seconds(&report.started_at, &report.finished_at)?;
        let key = (
            SYNC_ROLES[role_index(report.staging)],
            run_kind_label(report.kind),
            run_outcome_label(report.outcome),
        );
        if let Ok(mut m) = self.sync_runs.lock() {
            m.entry(key)
                .or_insert_with(|| Histogram::new(&SYNC_RUN_BUCKETS))
                .observe(secs);
        }
        Some(secs)
    }

    /// An e-mail delivery attempt's end: `sent`, `retried` (a temporary failure, tried again
    /// later), `failed` (given up) or `uncertain` (the server may or may not have taken it:
    /// never sent again). Any other value is counted as `other`.
    pub fn count_email(&self, result: &'static str) {
        let label = EMAIL_RESULTS
            .iter()
            .find(|r| **r == result)
            .copied()
            .unwrap_or("other");
        if let Ok(mut m) = self.emails.lock() {
            *m.entry(label).or_default() += 1;
        }
    }

    /// Replace the e-mail outbox gauge: messages by state, as the campaigns engine last
    /// counted them. A state must be 1-[`MAX_OUTBOX_STATE_LEN`] ASCII letters, digits or
    /// underscores; others are dropped, and so are states beyond the first
    /// [`MAX_OUTBOX_STATES`] distinct ones (each with a warning in the log). A state given
    /// twice is summed.
    pub fn set_outbox_gauge(&self, counts: &[(&'static str, u64)]) {
        let mut gauge: BTreeMap<&'static str, u64> = BTreeMap::new();
        for (state, n) in counts {
            let valid = !state.is_empty()
                && state.len() <= MAX_OUTBOX_STATE_LEN
                && state
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                tracing::warn!(
                    state = %state.escape_debug(),
                    "an e-mail outbox state is not 1-{MAX_OUTBOX_STATE_LEN} letters, digits or underscores; left out of the metric"
                );
                continue;
            }
            if !gauge.contains_key(state) && gauge.len() >= MAX_OUTBOX_STATES {
                tracing::warn!(
                    state,
                    "more than {MAX_OUTBOX_STATES} e-mail outbox states; this one is left out of the metric"
                );
                continue;
            }
            let slot = gauge.entry(state).or_default();
            *slot = slot.saturating_add(*n);
        }
        if let Ok(mut o) = self.outbox.lock() {
            *o = Some(gauge);
        }
    }

    /// Record whether this node's last connection to the SMTP relay worked.
    pub fn set_relay_up(&self, up: bool) {
        if let Ok(mut r) = self.relay_up.lock() {
            *r = Some(up);
        }
    }

    /// This node's series, in the text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "cutover_sign_ins_total",
            "counter",
            "Sign-in attempts recorded in the sign-in log, by result, route and whether a person was present.",
        );
        if let Ok(m) = self.sign_ins.lock() {
            for ((result, route, interactive), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "cutover_sign_ins_total{{result=\"{result}\",route=\"{route}\",interactive=\"{interactive}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "cutover_lockout_events_total",
            "counter",
            "Smart-lockout events on this node: attempts refused (locked), locks started (lockedNow), report-only refusals.",
        );
        if let Ok(m) = self.lockouts.lock() {
            for (event, n) in m.iter() {
                let _ = writeln!(out, "cutover_lockout_events_total{{event=\"{event}\"}} {n}");
            }
        }
        header(
            &mut out,
            "cutover_pass_through_validations_total",
            "counter",
            "Pass-through password validations finished on this node, by result.",
        );
        if let Ok(m) = self.pass_through.lock() {
            for (result, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "cutover_pass_through_validations_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "cutover_pass_through_validation_duration_seconds",
            "histogram",
            "Time from a sign-in's pass-through request to the agent's answer (answered checks only, a retry included).",
        );
        if let Ok(h) = self.pass_through_latency.lock() {
            h.render(
                &mut out,
                "cutover_pass_through_validation_duration_seconds",
                "",
            );
        }
        header(
            &mut out,
            "cutover_break_glass_sign_ins_total",
            "counter",
            "Completed sign-ins of break-glass accounts on this node (alert on any increase).",
        );
        let _ = writeln!(
            out,
            "cutover_break_glass_sign_ins_total {}",
            self.break_glass_sign_ins.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "cutover_http_request_duration_seconds",
            "histogram",
            "Time from request to response, by endpoint, method and status.",
        );
        if let Ok(m) = self.http.lock() {
            for ((endpoint, method, status), h) in m.iter() {
                let labels =
                    format!("endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"");
                h.render(&mut out, "cutover_http_request_duration_seconds", &labels);
            }
        }
        header(
            &mut out,
            "cutover_sync_run_duration_seconds",
            "histogram",
            "Duration of the sync runs reported to this node (from the sync server's start and end times), by role, kind and outcome.",
        );
        if let Ok(m) = self.sync_runs.lock() {
            for ((role, kind, outcome), h) in m.iter() {
                let labels = format!("role=\"{role}\",kind=\"{kind}\",outcome=\"{outcome}\"");
                h.render(&mut out, "cutover_sync_run_duration_seconds", &labels);
            }
        }
        header(
            &mut out,
            "cutover_emails_total",
            "counter",
            "Campaign e-mail delivery attempts on this node, by result: sent, retried (temporary failure), deferred (the relay could not be used; the attempt is not counted against the message), failed (given up), uncertain (may have been delivered; never sent again).",
        );
        if let Ok(m) = self.emails.lock() {
            for (result, n) in m.iter() {
                let _ = writeln!(out, "cutover_emails_total{{result=\"{result}\"}} {n}");
            }
        }
        header(
            &mut out,
            "cutover_email_outbox_messages",
            "gauge",
            "Campaign e-mail outbox messages by state, as last counted by the campaigns engine.",
        );
        if let Ok(o) = self.outbox.lock()
            && let Some(gauge) = o.as_ref()
        {
            for (state, n) in gauge {
                let _ = writeln!(
                    out,
                    "cutover_email_outbox_messages{{state=\"{state}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "cutover_smtp_relay_up",
            "gauge",
            "1 when this node's last connection to the SMTP relay worked, 0 when it failed (no sample before the first).",
        );
        if let Ok(r) = self.relay_up.lock()
            && let Some(up) = *r
        {
            let _ = writeln!(out, "cutover_smtp_relay_up {}", u8::from(up));
        }
        out
    }
}

/// What the sync servers' last reports say (see [`sync_figures`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncFigures {
    /// Changes the last runs planned and did not export, by role (index as [`SYNC_ROLES`])
    /// and change (index as [`SYNC_CHANGES`]), summed over servers.
    pub pending: [[u64; 4]; 2],
    /// The latest end (seconds since the epoch) of a last run, by role.
    pub last_run_end: [Option<i64>; 2],
    /// Servers whose last run ended with each outcome, by role and outcome (index as
    /// [`SYNC_OUTCOMES`]).
    pub last_outcomes: [[u64; 5]; 2],
    /// Reports stored in a shape this version cannot read (left out of the figures above).
    pub unreadable: u64,
}

/// Figures read from the shared database at scrape time; every node reports the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFigures {
    /// Registered agents by health, index as [`AGENT_HEALTHS`].
    pub agents: [u64; 5],
    pub queue: PtaQueueDepth,
    pub sync: SyncFigures,
}

/// Registered agents by health at `now`, index as [`AGENT_HEALTHS`].
pub fn agent_figures(agents: &[AgentRecord], now: Timestamp) -> [u64; 5] {
    let mut out = [0u64; 5];
    for a in agents {
        let health = crate::pta::health_of(a, now);
        if let Some(i) = AGENT_HEALTHS.iter().position(|h| *h == health)
            && let Some(slot) = out.get_mut(i)
        {
            *slot += 1;
        }
    }
    out
}

/// The sync figures from the servers' last reports. Pending exports are the changes a run
/// planned and did not export: all of a staging run's, all of an active run stopped by the
/// delete threshold, demoted or failed, none of an active run that exported
/// (`success`, `completedWithErrors`: refused ops are not pending, they were refused).
pub fn sync_figures(rows: &[SyncRunReportRow]) -> SyncFigures {
    let mut out = SyncFigures::default();
    for row in rows {
        let Some(value) = row.last_report.as_ref() else {
            continue;
        };
        let report = match serde_json::from_value::<RunReport>(value.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(server = %row.name, error = %e, "a sync server's stored report does not parse; left out of the metrics");
                out.unreadable += 1;
                continue;
            }
        };
        let role = role_index(report.staging);
        if let Some(end) = crate::clock::parse_rfc3339(&report.finished_at)
            && let Some(slot) = out.last_run_end.get_mut(role)
        {
            let secs = end.secs();
            *slot = Some(slot.map_or(secs, |s| s.max(secs)));
        }
        if let Some(i) = SYNC_OUTCOMES.iter().position(|o| *o == report.outcome)
            && let Some(slot) = out.last_outcomes.get_mut(role).and_then(|r| r.get_mut(i))
        {
            *slot += 1;
        }
        let exported = !report.staging
            && matches!(
                report.outcome,
                RunOutcome::Success | RunOutcome::CompletedWithErrors
            );
        if !exported && let Some(p) = out.pending.get_mut(role) {
            let s = &report.summary;
            for (slot, n) in p
                .iter_mut()
                .zip([s.adds, s.updates, s.deletes, s.password_changes])
            {
                *slot = slot.saturating_add(n);
            }
        }
    }
    out
}

/// Read the scrape-time figures: three reads (the agents, at most
/// `cutover_core::pta::MAX_AGENTS`; one count over the pass-through queue; the sync servers'
/// reports without their pending exports).
pub async fn cluster_figures(state: &AppState) -> Result<ClusterFigures, StoreError> {
    let now = state.now();
    let agents = state.store.list_agents().await?;
    let queue = state.store.pta_queue_depth(now).await?;
    let sync = state.store.sync_run_reports().await?;
    Ok(ClusterFigures {
        agents: agent_figures(&agents, now),
        queue,
        sync: sync_figures(&sync),
    })
}

/// The scrape-time series. `None` (the database could not be read): only
/// `cutover_metrics_store_up 0`, so that an alert can tell "no data" from "all is well".
pub fn render_cluster(figures: Option<&ClusterFigures>) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "cutover_metrics_store_up",
        "gauge",
        "1 when this scrape could read the database figures below (agents, queue, sync), 0 when it could not.",
    );
    let Some(f) = figures else {
        out.push_str("cutover_metrics_store_up 0\n");
        return out;
    };
    out.push_str("cutover_metrics_store_up 1\n");
    header(
        &mut out,
        "cutover_pass_through_agents",
        "gauge",
        "Registered pass-through agents by health (only healthy agents receive requests). The same on every node: aggregate with max.",
    );
    for (health, n) in AGENT_HEALTHS.iter().zip(f.agents.iter()) {
        let _ = writeln!(
            out,
            "cutover_pass_through_agents{{health=\"{}\"}} {n}",
            health.as_str()
        );
    }
    header(
        &mut out,
        "cutover_pass_through_queue_requests",
        "gauge",
        "Pass-through requests inside their deadline: waiting for an agent (pending) or taken by one and not answered (claimed). The same on every node: aggregate with max.",
    );
    let _ = writeln!(
        out,
        "cutover_pass_through_queue_requests{{state=\"pending\"}} {}",
        f.queue.pending
    );
    let _ = writeln!(
        out,
        "cutover_pass_through_queue_requests{{state=\"claimed\"}} {}",
        f.queue.claimed
    );
    header(
        &mut out,
        "cutover_sync_pending_exports",
        "gauge",
        "Changes the sync servers' last runs planned and did not export (a staging run's, or an active run stopped by the delete threshold or failed), by role and change, summed over servers.",
    );
    for (role, row) in SYNC_ROLES.iter().zip(f.sync.pending.iter()) {
        for (change, n) in SYNC_CHANGES.iter().zip(row.iter()) {
            let _ = writeln!(
                out,
                "cutover_sync_pending_exports{{role=\"{role}\",change=\"{change}\"}} {n}"
            );
        }
    }
    header(
        &mut out,
        "cutover_sync_last_run_end_timestamp_seconds",
        "gauge",
        "When the latest reported sync run of each role ended (Unix time); absent before the first report.",
    );
    for (role, end) in SYNC_ROLES.iter().zip(f.sync.last_run_end.iter()) {
        if let Some(end) = end {
            let _ = writeln!(
                out,
                "cutover_sync_last_run_end_timestamp_seconds{{role=\"{role}\"}} {end}"
            );
        }
    }
    header(
        &mut out,
        "cutover_sync_last_run_outcome",
        "gauge",
        "Sync servers whose last run ended with each outcome, by role.",
    );
    for (role, row) in SYNC_ROLES.iter().zip(f.sync.last_outcomes.iter()) {
        for (outcome, n) in SYNC_OUTCOMES.iter().zip(row.iter()) {
            let _ = writeln!(
                out,
                "cutover_sync_last_run_outcome{{role=\"{role}\",outcome=\"{}\"}} {n}",
                run_outcome_label(*outcome)
            );
        }
    }
    header(
        &mut out,
        "cutover_sync_unreadable_reports",
        "gauge",
        "Sync servers whose stored last report this version cannot read (left out of the sync series).",
    );
    let _ = writeln!(out, "cutover_sync_unreadable_reports {}", f.sync.unreadable);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The value of the sample line that starts with `series ` (exact labels).
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    /// Every sample's metric name has a `# TYPE` line before it, and every `# TYPE` a `# HELP`.
    fn assert_well_formed(text: &str) {
        let mut typed: Vec<String> = Vec::new();
        let mut helped: Vec<String> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default().to_owned();
                assert!(helped.contains(&name), "TYPE before HELP for {name}");
                typed.push(name);
            } else {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| typed.iter().any(|t| t == f))
                    .unwrap_or(name);
                assert!(
                    typed.iter().any(|t| t == family),
                    "sample without # TYPE: {line}"
                );
                let value = line.rsplit(' ').next().unwrap_or_default();
                assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
            }
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(endpoint_label("/oauth2/token"), "/oauth2/token");
        assert_eq!(
            endpoint_label("/api/v1/users/user1@contoso.example"),
            "/api/v1/users"
        );
        assert_eq!(
            endpoint_label("/api/v1/groups/1/members/2"),
            "/api/v1/groups"
        );
        assert_eq!(endpoint_label("/anything/else?x"), "other");
        assert_eq!(endpoint_label("/api/v1/../../etc"), "other");
        assert_eq!(method_label("BREW"), "OTHER");
        assert_eq!(method_label("PUT"), "PUT");
    }

    #[test]
    fn every_sign_in_endpoint_has_its_own_label() {
        for path in [
            "/oauth2/authorize",
            "/oauth2/token",
            "/login",
            "/login/identifier",
            "/login/password",
            "/login/mfa",
            "/login/passkey",
            "/login/passkey/options",
            "/federation/callback",
            "/my/enrol",
        ] {
            assert_eq!(endpoint_label(path), path);
        }
        assert_eq!(
            endpoint_label("/my/security/passkeys/0190/delete"),
            "/my/security/passkeys"
        );
        assert_eq!(
            endpoint_label("/my/security/totp/remove"),
            "/my/security/totp"
        );
        assert_eq!(endpoint_label("/admin"), "/admin");
        assert_eq!(endpoint_label("/admin/users/42"), "/admin");
        assert_eq!(endpoint_label("/administrator"), "other");
        assert_eq!(
            endpoint_label("/sync/v1/servers/sync-a/report"),
            "/sync/v1/servers/report"
        );
        assert_eq!(
            endpoint_label("/sync/v1/servers/sync-a"),
            "/sync/v1/servers"
        );
        assert_eq!(
            endpoint_label("/sync/v1/snapshot/users"),
            "/sync/v1/snapshot"
        );
        assert_eq!(endpoint_label("/sync/v1/servers/a/b/c"), "other");
        assert_eq!(
            endpoint_label("/api/v1/campaigns/1/waves"),
            "/api/v1/campaigns"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("/oauth2/token", "POST", 200, Duration::from_millis(3));
        m.observe_request("/oauth2/token", "POST", 200, Duration::from_millis(30));
        m.observe_request("/oauth2/token", "POST", 200, Duration::from_secs(20));
        let text = m.render();
        let line = |le: &str| {
            sample(
                &text,
                &format!(
                    "cutover_http_request_duration_seconds_bucket{{endpoint=\"/oauth2/token\",method=\"POST\",status=\"200\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(line("0.005").as_deref(), Some("1"));
        assert_eq!(line("0.05").as_deref(), Some("2"));
        assert_eq!(line("10").as_deref(), Some("2"));
        assert_eq!(line("+Inf").as_deref(), Some("3"));
        assert!(text.contains("cutover_http_request_duration_seconds_count{endpoint=\"/oauth2/token\",method=\"POST\",status=\"200\"} 3"));
        assert_well_formed(&text);
    }

    #[test]
    fn a_histogram_ignores_negative_and_non_finite_values() {
        let mut h = Histogram::new(&LATENCY_BUCKETS);
        h.observe(-1.0);
        h.observe(f64::NAN);
        h.observe(f64::INFINITY);
        assert_eq!(h.count, 0);
        h.observe(0.0);
        assert_eq!(h.count, 1);
        assert_eq!(h.buckets.first(), Some(&1), "0 s is in the first bucket");
    }

    #[test]
    fn pass_through_latency_is_one_unlabelled_histogram() {
        let m = Metrics::default();
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "cutover_pass_through_validation_duration_seconds_count"
            )
            .as_deref(),
            Some("0"),
            "rendered before the first check"
        );
        m.observe_pass_through(Duration::from_micros(62_500));
        m.observe_pass_through(Duration::from_secs(12));
        let text = m.render();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("cutover_pass_through_validation_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.05").as_deref(), Some("0"));
        assert_eq!(bucket("0.1").as_deref(), Some("1"));
        assert_eq!(bucket("10").as_deref(), Some("1"));
        assert_eq!(bucket("30").as_deref(), Some("2"));
        assert_eq!(bucket("+Inf").as_deref(), Some("2"));
        assert_eq!(
            sample(
                &text,
                "cutover_pass_through_validation_duration_seconds_sum"
            )
            .as_deref(),
            Some("12.0625")
        );
        assert_well_formed(&text);
    }

    fn report(kind: &str, outcome: &str, staging: bool, start: &str, end: &str) -> RunReport {
        report_with(kind, outcome, staging, start, end, [0, 0, 0, 0])
    }

    fn report_with(
        kind: &str,
        outcome: &str,
        staging: bool,
        start: &str,
        end: &str,
        [adds, updates, deletes, passwords]: [u64; 4],
    ) -> RunReport {
        serde_json::from_value(json!({
            "runId": "r1", "kind": kind, "staging": staging, "startedAt": start, "finishedAt": end,
            "outcome": outcome, "message": null,
            "summary": {"imported": 10, "adds": adds, "updates": updates, "deletes": deletes,
                        "passwordChanges": passwords, "unchanged": 0, "errors": 0, "warnings": 0},
            "exported": {"added": 0, "updated": 0, "links": 0, "unchanged": 0, "deleted": 0,
                         "passwords": 0, "rejected": []},
            "gate": {"gate": "open"}
        }))
        .expect("a run report")
    }

    #[test]
    fn sync_run_durations_come_from_the_reported_times() {
        assert_eq!(
            sync_run_seconds("2030-01-01T00:00:00Z", "2030-01-01T00:01:30Z"),
            Some(90.0)
        );
        assert_eq!(
            sync_run_seconds("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
            Some(0.0)
        );
        assert_eq!(
            sync_run_seconds("2030-01-01T00:00:01Z", "2030-01-01T00:00:00Z"),
            None,
            "an end before the start is not a duration"
        );
        assert_eq!(sync_run_seconds("", "2030-01-01T00:00:00Z"), None);
        assert_eq!(sync_run_seconds("2030-01-01T00:00:00Z", "soon"), None);

        let m = Metrics::default();
        let r = report(
            "delta",
            "success",
            false,
            "2030-01-01T00:00:00Z",
            "2030-01-01T00:01:30Z",
        );
        assert_eq!(m.observe_sync_run(&r), Some(90.0));
        let broken = report("delta", "success", false, "x", "y");
        assert_eq!(m.observe_sync_run(&broken), None);
        let text = m.render();
        let labels = "role=\"active\",kind=\"delta\",outcome=\"success\"";
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("cutover_sync_run_duration_seconds_bucket{{{labels},le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("60").as_deref(), Some("0"));
        assert_eq!(bucket("120").as_deref(), Some("1"));
        assert_eq!(bucket("14400").as_deref(), Some("1"));
        assert_eq!(bucket("+Inf").as_deref(), Some("1"));
        assert_eq!(
            sample(
                &text,
                &format!("cutover_sync_run_duration_seconds_count{{{labels}}}")
            )
            .as_deref(),
            Some("1"),
            "the unparsable report was not observed"
        );
        assert_well_formed(&text);
    }

    #[test]
    fn emails_are_counted_by_a_fixed_set_of_results() {
        let m = Metrics::default();
        let text = m.render();
        for r in EMAIL_RESULTS {
            assert_eq!(
                sample(&text, &format!("cutover_emails_total{{result=\"{r}\"}}")).as_deref(),
                Some("0"),
                "{r} is rendered before the first e-mail"
            );
        }
        m.count_email("sent");
        m.count_email("sent");
        m.count_email("uncertain");
        m.count_email("bounced");
        let text = m.render();
        let n = |r: &str| sample(&text, &format!("cutover_emails_total{{result=\"{r}\"}}"));
        assert_eq!(n("sent").as_deref(), Some("2"));
        assert_eq!(n("uncertain").as_deref(), Some("1"));
        assert_eq!(n("failed").as_deref(), Some("0"));
        assert_eq!(n("other").as_deref(), Some("1"));
        assert_eq!(n("bounced"), None);
        assert_well_formed(&text);
    }

    #[test]
    fn the_relay_gauge_follows_the_last_connection() {
        let m = Metrics::default();
        assert_eq!(sample(&m.render(), "cutover_smtp_relay_up"), None);
        m.set_relay_up(false);
        assert_eq!(
            sample(&m.render(), "cutover_smtp_relay_up").as_deref(),
            Some("0")
        );
        m.set_relay_up(true);
        let text = m.render();
        assert_eq!(sample(&text, "cutover_smtp_relay_up").as_deref(), Some("1"));
        assert_well_formed(&text);
    }

    #[test]
    fn the_outbox_gauge_is_replaced_and_bounded() {
        let m = Metrics::default();
        assert!(
            !m.render().contains("cutover_email_outbox_messages{"),
            "no samples before the campaigns engine sets it"
        );
        m.set_outbox_gauge(&[("pending", 3), ("sent", 10), ("pending", 2)]);
        let text = m.render();
        let n = |t: &str, s: &str| {
            sample(
                t,
                &format!("cutover_email_outbox_messages{{state=\"{s}\"}}"),
            )
        };
        assert_eq!(n(&text, "pending").as_deref(), Some("5"), "summed");
        assert_eq!(n(&text, "sent").as_deref(), Some("10"));
        m.set_outbox_gauge(&[("failed", 1)]);
        let text = m.render();
        assert_eq!(n(&text, "sent"), None, "a new count replaces the old one");
        assert_eq!(n(&text, "failed").as_deref(), Some("1"));
        assert_well_formed(&text);

        // Names: at most MAX_OUTBOX_STATE_LEN letters, digits or underscores.
        const LONGEST: &str = "abcdefghijklmnopqrstuvwxyz_12345";
        const TOO_LONG: &str = "abcdefghijklmnopqrstuvwxyz_123456";
        assert_eq!(LONGEST.len(), MAX_OUTBOX_STATE_LEN);
        m.set_outbox_gauge(&[(LONGEST, 1), (TOO_LONG, 1), ("", 1), ("a\"}b", 1)]);
        let text = m.render();
        assert_eq!(n(&text, LONGEST).as_deref(), Some("1"));
        assert_eq!(n(&text, TOO_LONG), None);
        assert!(!text.contains("a\"}b"), "{text}");
        assert_eq!(text.matches("cutover_email_outbox_messages{").count(), 1);

        // At most MAX_OUTBOX_STATES distinct states.
        const STATES: [&str; 17] = [
            "s00", "s01", "s02", "s03", "s04", "s05", "s06", "s07", "s08", "s09", "s10", "s11",
            "s12", "s13", "s14", "s15", "s16",
        ];
        assert_eq!(STATES.len(), MAX_OUTBOX_STATES + 1);
        let counts: Vec<(&'static str, u64)> = STATES.iter().map(|s| (*s, 1)).collect();
        m.set_outbox_gauge(&counts[..MAX_OUTBOX_STATES]);
        assert_eq!(
            m.render().matches("cutover_email_outbox_messages{").count(),
            MAX_OUTBOX_STATES
        );
        let mut again = counts.clone();
        again.push(("s00", 4));
        m.set_outbox_gauge(&again);
        let text = m.render();
        assert_eq!(
            text.matches("cutover_email_outbox_messages{").count(),
            MAX_OUTBOX_STATES,
            "the 17th state is left out"
        );
        assert_eq!(n(&text, "s16"), None);
        assert_eq!(
            n(&text, "s00").as_deref(),
            Some("5"),
            "a known state is still summed past the limit"
        );
    }

    fn agent(
        enabled: bool,
        seen_secs_ago: Option<i64>,
        reachable: bool,
        now: Timestamp,
    ) -> AgentRecord {
        AgentRecord {
            id: uuid::Uuid::new_v4(),
            host: "agent.corp.example".into(),
            version: "1".into(),
            signing_key: String::new(),
            encryption_key: String::new(),
            key_generation: 1,
            enabled,
            created_at: now,
            keys_rotated_at: None,
            last_heartbeat: seen_secs_ago.map(|s| now.minus_secs(s)),
            heartbeat: serde_json::to_value(cutover_agent_proto::Heartbeat {
                directory: cutover_agent_proto::DirectoryStatus {
                    reachable,
                    ..Default::default()
                },
                ..Default::default()
            })
            .ok(),
        }
    }

    #[test]
    fn agents_are_counted_by_health() {
        use cutover_core::pta::{HEARTBEAT_OFFLINE_SECS, HEARTBEAT_STALE_SECS};
        let now = Timestamp::from_secs(2_000_000_000);
        let list = [
            agent(true, Some(1), true, now),
            agent(true, Some(HEARTBEAT_STALE_SECS), true, now),
            agent(true, Some(HEARTBEAT_STALE_SECS + 1), true, now),
            agent(true, Some(HEARTBEAT_OFFLINE_SECS + 1), true, now),
            agent(true, None, true, now),
            agent(false, Some(1), true, now),
            agent(true, Some(1), false, now),
        ];
        let want: Vec<u64> = AGENT_HEALTHS
            .iter()
            .map(|h| {
                list.iter()
                    .filter(|a| crate::pta::health_of(a, now) == *h)
                    .count() as u64
            })
            .collect();
        let got = agent_figures(&list, now);
        assert_eq!(got.to_vec(), want);
        assert_eq!(
            got,
            [2, 1, 1, 2, 1],
            "healthy (a heartbeat exactly at the stale limit is still fresh), directory \
             unreachable, stale (one second past), offline (silent too long, or never seen), \
             disabled"
        );
    }

    fn row(name: &str, r: Option<&RunReport>) -> SyncRunReportRow {
        SyncRunReportRow {
            name: name.into(),
            last_seen_at: Timestamp::from_secs(1),
            last_report: r.map(|r| serde_json::to_value(r).expect("json")),
            alert: None,
        }
    }

    #[test]
    fn pending_exports_are_what_the_last_runs_did_not_export() {
        let start = "2030-01-01T00:00:00Z";
        let active_ok = report_with(
            "delta",
            "success",
            false,
            start,
            "2030-01-01T00:00:10Z",
            [5, 6, 7, 8],
        );
        let active_blocked = report_with(
            "full",
            "deleteThresholdExceeded",
            false,
            start,
            "2030-01-01T01:00:00Z",
            [1, 2, 600, 3],
        );
        let staging = report_with(
            "full",
            "success",
            true,
            start,
            "2030-01-01T00:30:00Z",
            [4, 0, 1, 2],
        );
        let staging_too = report_with(
            "delta",
            "failed",
            true,
            start,
            "2030-01-01T00:20:00Z",
            [1, 1, 1, 1],
        );
        let rows = [
            row("a", Some(&active_ok)),
            row("b", Some(&active_blocked)),
            row("c", Some(&staging)),
            row("d", Some(&staging_too)),
            row("never-ran", None),
            SyncRunReportRow {
                last_report: Some(json!({"outcome": "somethingNew"})),
                ..row("newer-version", None)
            },
        ];
        let f = sync_figures(&rows);
        assert_eq!(
            f.pending[0],
            [1, 2, 600, 3],
            "the active run that exported adds nothing"
        );
        assert_eq!(f.pending[1], [5, 1, 2, 3], "staging runs are summed");
        assert_eq!(
            f.last_run_end[0],
            Some(1_893_459_600),
            "the later of the active runs' ends (2030-01-01T01:00:00Z)"
        );
        assert_eq!(f.last_run_end[1], Some(1_893_457_800));
        assert_eq!(f.last_outcomes[0], [1, 0, 1, 0, 0]);
        assert_eq!(f.last_outcomes[1], [1, 0, 0, 0, 1]);
        assert_eq!(f.unreadable, 1);

        let text = render_cluster(Some(&ClusterFigures {
            agents: [2, 0, 1, 0, 1],
            queue: PtaQueueDepth {
                pending: 4,
                claimed: 1,
            },
            sync: f,
        }));
        assert_well_formed(&text);
        for (series, want) in [
            ("cutover_metrics_store_up", "1"),
            ("cutover_pass_through_agents{health=\"healthy\"}", "2"),
            (
                "cutover_pass_through_agents{health=\"directoryUnreachable\"}",
                "0",
            ),
            ("cutover_pass_through_agents{health=\"stale\"}", "1"),
            ("cutover_pass_through_agents{health=\"disabled\"}", "1"),
            (
                "cutover_pass_through_queue_requests{state=\"pending\"}",
                "4",
            ),
            (
                "cutover_pass_through_queue_requests{state=\"claimed\"}",
                "1",
            ),
            (
                "cutover_sync_pending_exports{role=\"active\",change=\"delete\"}",
                "600",
            ),
            (
                "cutover_sync_pending_exports{role=\"staging\",change=\"add\"}",
                "5",
            ),
            (
                "cutover_sync_last_run_end_timestamp_seconds{role=\"active\"}",
                "1893459600",
            ),
            (
                "cutover_sync_last_run_outcome{role=\"active\",outcome=\"deleteThresholdExceeded\"}",
                "1",
            ),
            (
                "cutover_sync_last_run_outcome{role=\"active\",outcome=\"failed\"}",
                "0",
            ),
            ("cutover_sync_unreadable_reports", "1"),
        ] {
            assert_eq!(
                sample(&text, series).as_deref(),
                Some(want),
                "{series}\n{text}"
            );
        }
    }

    #[test]
    fn before_any_sync_report_the_gauges_are_zero_and_no_run_end_is_claimed() {
        let text = render_cluster(Some(&ClusterFigures::default()));
        assert_well_formed(&text);
        assert_eq!(
            sample(
                &text,
                "cutover_sync_pending_exports{role=\"active\",change=\"add\"}"
            )
            .as_deref(),
            Some("0")
        );
        assert!(!text.contains("cutover_sync_last_run_end_timestamp_seconds{"));
        assert_eq!(
            text.matches("cutover_pass_through_agents{").count(),
            AGENT_HEALTHS.len(),
            "every health state is rendered, zero included"
        );
    }

    #[test]
    fn a_store_failure_says_so_and_renders_nothing_else() {
        let text = render_cluster(None);
        assert_well_formed(&text);
        assert_eq!(
            sample(&text, "cutover_metrics_store_up").as_deref(),
            Some("0")
        );
        assert!(!text.contains("cutover_pass_through_agents"));
    }
}
