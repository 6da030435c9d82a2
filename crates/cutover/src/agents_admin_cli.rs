//! `cutover admin agents …`, `cutover admin lockout …` and `cutover admin users lockout|unlock`:
//! pass-through authentication agents (registration tokens, the fleet, enable, disable,
//! delete) and smart lockout (the policy, a user's state, unlock).
//!
//! This is a child module of `admin_cli` (declared there with `#[path]`), so it shares that
//! module's signed-in [`Api`], its output helpers and its conventions: tables for people,
//! `--output json|jsonl` for scripts, API errors as `ApiError`s with the server's message.

use anyhow::{Result, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand};
use cutover_core::Timestamp;
use cutover_core::lockout::{LockoutMode, LockoutSettings, LockoutStatus};
use cutover_proto::agents::{
    AgentList, AgentView, CreateRegistrationToken, RegistrationTokenView, SmartLockoutPolicyView,
    UpdateAgent, UserLockoutView,
};
use reqwest::Method;
use serde_json::Value;

use super::{
    Api, OutputFormat, clean, emit, format_rfc3339, from_response, opt, parse_duration,
    path_segment, print_json, print_json_lines, render_fields, render_table, yes_no,
};

/// `cutover admin agents --help`.
pub const AGENTS_LONG_ABOUT: &str = "\
Pass-through authentication agents check the passwords of users whose domain (or staged-rollout \
group) uses passthroughAuthentication: Cutover seals each password to the healthy agents' keys, \
one agent binds to the on-premises directory (LDAP) as the user and answers.

An agent runs on a host that can reach the directory and makes outbound HTTPS connections only. \
To add one:
  1. cutover admin agents token              (here: prints a one-time token and the command to run)
  2. cutover agent register --server URL --token TOKEN --directory-config FILE   (on the agent host)
  3. cutover agent run                        (on the agent host, as a service)
  4. cutover admin agents list                (here: the agent shows up healthy within 10 seconds)

Run at least 3 agents on different hosts: one host down must not stop password sign-ins (the \
list warns below 3 healthy agents; the domain cut-over to pass-through needs 3). At most 40 may \
be registered.

Health: healthy (heartbeat within 30 s, directory reachable: gets passwords), directoryUnreachable \
(alive but cannot reach LDAP), stale (no heartbeat for 30 s), offline (none for 5 minutes, or \
never), disabled (refused by the server until enabled again).

ID is an agent's id, as `cutover admin agents list` shows it.";

/// `cutover admin lockout --help`.
pub const LOCKOUT_LONG_ABOUT: &str = "\
Smart lockout stands in front of every password check (cloud password, synced hash and \
pass-through agent): after THRESHOLD counted wrong passwords a user is locked for DURATION, each \
further lock twice as long (up to MAX-DURATION); RESET-AFTER quiet time starts the count over. \
Repeating one of the last 3 wrong passwords is not counted again. Networks the user signed in \
from successfully keep their own counter, so a password spray from elsewhere does not lock the \
user out at their desk. A locked user sees the same message as for a wrong password.

With pass-through agents, Cutover must lock first and for longer than the on-premises directory \
(a lower threshold, a longer duration), or a spray locks accounts on-prem: `lockout show` \
lists the directories' policies as the agents read them and warns when Cutover's does not shield \
them.

Mode reportOnly locks nobody but records in the sign-in log what would have been locked \
(lockoutDecision reportOnlyLocked): use it to try a stricter policy first.

A user's state: `cutover admin users lockout UPN`; unlock: `cutover admin users unlock UPN`.";

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Issue a one-time registration token for a new agent, and print the command to run on
    /// the agent host.
    #[command(after_help = "\
The token is shown once and stored only as a keyed hash; it registers one agent and expires \
unused after --lifetime. Treat it like a password until then.

Example:
  cutover admin agents token --lifetime 30m")]
    Token {
        /// How long the token stays valid: 1m to 24h, e.g. 30m, 1h, 24h.
        #[arg(long, value_name = "DURATION", value_parser = lifetime_arg, default_value = "1h")]
        lifetime: i64,
    },
    /// List the agents with their health, last heartbeat, work counters and directory status,
    /// and warn when fewer than 3 are healthy.
    List,
    /// Show one agent: health, keys, counters by result, its directory's lockout policy and
    /// what that means for smart lockout.
    Show {
        /// The agent's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
    /// Let a disabled agent connect and receive passwords again.
    Enable {
        /// The agent's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
    /// Stop sending an agent passwords and refuse its connections (at once on this server,
    /// within a second on the others); it stays registered. Use it to take a host out for
    /// maintenance, or at once when a host may be compromised.
    Disable {
        /// The agent's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
    /// Remove an agent for good (no confirmation): its keys are forgotten and passwords sealed
    /// to it are dropped. To bring the host back, register it again with a new token.
    Delete {
        /// The agent's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum LockoutCommand {
    /// Show the smart-lockout policy, the on-premises directories' own lockout policies as the
    /// agents read them, and warnings.
    Show,
    /// Change the smart-lockout policy: only the settings given change; prints the warnings
    /// the new policy calls for.
    Set(LockoutSetArgs),
}

#[derive(Args, Debug)]
#[command(
    override_usage = "cutover admin lockout set [--threshold N] [--duration DURATION] [--max-duration DURATION] [--reset-after DURATION] [--mode enforced|reportOnly]"
)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["threshold", "duration", "max_duration", "reset_after", "mode"])
))]
#[command(after_help = "\
Durations are a number and a unit: s, m, h, d or w (90s, 5m, 1h30m, 7d).
Bounds: threshold 1-100; duration 5s-7d; max-duration between duration and 7d; reset-after \
between max-duration and 30d.

Example (a directory that locks after 10 wrong passwords for 10 minutes):
  cutover admin lockout set --threshold 5 --duration 15m --max-duration 2h")]
pub struct LockoutSetArgs {
    /// Counted wrong passwords that lock the account (per counter: familiar and unfamiliar
    /// networks). Keep it below the directory's threshold.
    #[arg(long, value_name = "N")]
    pub threshold: Option<u32>,
    /// The first lock's length; each further lock doubles it. Keep it longer than the
    /// directory's lockout duration.
    #[arg(long, value_name = "DURATION", value_parser = secs_arg)]
    pub duration: Option<i64>,
    /// The longest a lock grows to.
    #[arg(long, value_name = "DURATION", value_parser = secs_arg)]
    pub max_duration: Option<i64>,
    /// Quiet time after which a counter (and its lock growth) starts over.
    #[arg(long, value_name = "DURATION", value_parser = secs_arg)]
    pub reset_after: Option<i64>,
    /// enforced: lock; reportOnly: lock nobody, record what would have been locked.
    #[arg(long, value_name = "MODE", value_parser = ["enforced", "reportOnly"])]
    pub mode: Option<String>,
}

// ---- value parsers (pure) -------------------------------------------------------------------

/// A duration in whole seconds that fits the API's integers.
pub(super) fn secs_arg(s: &str) -> Result<i64, String> {
    let secs = parse_duration(s)?;
    i64::try_from(secs).map_err(|_| format!("duration '{s}' is too large"))
}

/// `--lifetime`: a duration within the server's bounds for registration tokens.
fn lifetime_arg(s: &str) -> Result<i64, String> {
    let secs = secs_arg(s)?;
    let min = cutover_core::pta::MIN_REGISTRATION_TOKEN_SECS;
    let max = cutover_core::pta::MAX_REGISTRATION_TOKEN_SECS;
    if (min..=max).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!(
            "a registration token lives from {} to {}h; '{s}' is {}",
            duration_text(min),
            max / 3_600,
            duration_text(secs)
        ))
    }
}

// ---- text (pure) ----------------------------------------------------------------------------

/// Seconds as the largest units that divide them: `1h30m`, `90s` → `1m30s`, `0s`.
pub(super) fn duration_text(secs: i64) -> String {
    if secs <= 0 {
        return format!("{secs}s");
    }
    let mut rest = secs;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// How long ago, roughly: `7s ago`, `3m ago`, `2h ago`, `4d ago`.
fn age_text(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = match secs {
        0..60 => (secs, "s"),
        60..3_600 => (secs / 60, "m"),
        3_600..86_400 => (secs / 3_600, "h"),
        _ => (secs / 86_400, "d"),
    };
    format!("{n}{unit} ago")
}

/// A lock end (Unix milliseconds) in RFC 3339.
fn millis_text(t: Timestamp) -> String {
    format_rfc3339(t.secs())
}

fn heartbeat_text(a: &AgentView) -> String {
    match (&a.last_heartbeat, a.last_heartbeat_age_secs) {
        (_, Some(age)) => age_text(age),
        (Some(at), None) => at.clone(),
        (None, None) => "never".into(),
    }
}

fn directory_text(a: &AgentView) -> String {
    match &a.directory {
        None => "-".into(),
        Some(d) if d.reachable => "reachable".into(),
        Some(d) => match &d.error {
            Some(e) => format!("unreachable: {e}"),
            None => "unreachable".into(),
        },
    }
}

fn directory_lockout_text(threshold: Option<u32>, duration: Option<i64>) -> String {
    match (threshold, duration) {
        (None, _) => "unknown".into(),
        (Some(0), _) => "does not lock accounts".into(),
        (Some(t), Some(d)) => format!("locks after {t} for {}", duration_text(d)),
        (Some(t), None) => format!("locks after {t}"),
    }
}

/// The fleet table, then the fleet warning and each distinct per-agent warning.
fn agent_list_text(list: &AgentList) -> String {
    let rows: Vec<Vec<String>> = list
        .value
        .iter()
        .map(|a| {
            let stat = |f: fn(&cutover_proto::agents::AgentStatsView) -> u64| {
                a.stats
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |s| f(s).to_string())
            };
            vec![
                a.id.to_string(),
                a.host.clone(),
                a.version.clone(),
                a.health.clone(),
                heartbeat_text(a),
                stat(|s| s.validations),
                stat(|s| s.last_minute),
                stat(|s| s.errors),
                directory_text(a),
            ]
        })
        .collect();
    let mut text = render_table(
        &[
            "ID",
            "HOST",
            "VERSION",
            "HEALTH",
            "LAST HEARTBEAT",
            "VALIDATIONS",
            "LAST MIN",
            "ERRORS",
            "DIRECTORY",
        ],
        &rows,
    );
    text.push_str(&format!(
        "{} registered (at most {}), {} healthy.\n",
        list.registered_agents, list.max_agents, list.healthy_agents
    ));
    let mut warnings: Vec<&String> = list.warning.iter().collect();
    for w in list.value.iter().flat_map(|a| &a.warnings) {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    for w in warnings {
        text.push_str(&format!("warning: {}\n", clean(w)));
    }
    text
}

fn agent_text(a: &AgentView) -> String {
    let mut fields = vec![
        ("id", a.id.to_string()),
        ("host", a.host.clone()),
        ("version", a.version.clone()),
        ("enabled", yes_no(a.enabled)),
        ("health", a.health.clone()),
        ("keyGeneration", a.key_generation.to_string()),
        ("createdAt", a.created_at.clone()),
        ("keysRotatedAt", opt(&a.keys_rotated_at)),
        (
            "lastHeartbeat",
            match (&a.last_heartbeat, a.last_heartbeat_age_secs) {
                (Some(at), Some(age)) => format!("{at} ({})", age_text(age)),
                (Some(at), None) => at.clone(),
                _ => "never".into(),
            },
        ),
        ("startedAt", opt(&a.started_at)),
    ];
    if let Some(s) = &a.stats {
        let by_result = s
            .by_result
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        fields.extend([
            ("validations", s.validations.to_string()),
            (
                "byResult",
                if by_result.is_empty() {
                    "-".into()
                } else {
                    by_result
                },
            ),
            ("lastMinute", s.last_minute.to_string()),
            ("errors", s.errors.to_string()),
            ("lastError", opt(&s.last_error)),
            ("inFlight", s.in_flight.to_string()),
            ("late", s.late.to_string()),
            ("cpu", format!("{} ms", s.cpu_ms)),
            ("memory", format!("{} MiB", s.rss_bytes / (1024 * 1024))),
        ]);
    }
    fields.push(("directory", directory_text(a)));
    if let Some(d) = &a.directory {
        fields.push((
            "directoryLockout",
            directory_lockout_text(d.lockout_threshold, d.lockout_duration_secs),
        ));
    }
    let mut text = render_fields(&fields);
    for w in &a.warnings {
        text.push_str(&format!("warning: {}\n", clean(w)));
    }
    text
}

fn policy_text(v: &SmartLockoutPolicyView) -> String {
    let p = &v.policy;
    let mut text = render_fields(&[
        ("threshold", p.threshold.to_string()),
        ("duration", duration_text(p.duration_secs)),
        ("maxDuration", duration_text(p.max_duration_secs)),
        ("resetAfter", duration_text(p.reset_after_secs)),
        (
            "mode",
            match p.mode {
                LockoutMode::Enforced => "enforced",
                LockoutMode::ReportOnly => "reportOnly",
            }
            .to_owned(),
        ),
    ]);
    text.push('\n');
    if v.directories.is_empty() {
        text.push_str(
            "Directories: none reported (no pass-through agent has read its directory's lockout policy).\n",
        );
    } else {
        text.push_str("Directories, as the agents read them:\n");
        let rows: Vec<Vec<String>> = v
            .directories
            .iter()
            .map(|d| {
                vec![
                    d.host.clone(),
                    d.agent_id.to_string(),
                    directory_lockout_text(d.threshold, d.duration_secs),
                ]
            })
            .collect();
        text.push_str(&render_table(&["HOST", "AGENT", "LOCKOUT"], &rows));
    }
    for w in &v.warnings {
        text.push_str(&format!("warning: {}\n", clean(w)));
    }
    text
}

fn counter_text(failures: u32, threshold: u32, locks: u32, until: Option<Timestamp>) -> String {
    let mut s = format!("{failures} of {threshold} wrong passwords");
    if locks > 0 {
        s.push_str(&format!(
            ", {locks} lock{}",
            if locks == 1 { "" } else { "s" }
        ));
    }
    if let Some(t) = until {
        s.push_str(&format!(", locked until {}", millis_text(t)));
    }
    s
}

fn user_lockout_text(v: &UserLockoutView) -> String {
    let s: &LockoutStatus = &v.status;
    render_fields(&[
        ("user", v.user_principal_name.clone()),
        ("id", v.user_id.to_string()),
        ("locked", yes_no(s.locked)),
        (
            "fromKnownNetworks",
            counter_text(
                s.familiar_failures,
                v.threshold,
                s.familiar_locks,
                s.familiar_locked_until,
            ),
        ),
        (
            "fromOtherNetworks",
            counter_text(
                s.unfamiliar_failures,
                v.threshold,
                s.unfamiliar_locks,
                s.unfamiliar_locked_until,
            ),
        ),
        (
            "knownNetworks",
            if s.familiar_networks.is_empty() {
                "-".into()
            } else {
                s.familiar_networks.join(", ")
            },
        ),
        ("checksInFlight", s.checks_in_flight.to_string()),
    ])
}

/// The exact command to run on the agent host.
fn register_command(issuer: &str, token: &str) -> String {
    format!(
        "cutover agent register --server {} --token {} --directory-config FILE",
        issuer.trim_end_matches('/'),
        token
    )
}

fn token_text(t: &RegistrationTokenView) -> String {
    format!(
        "Registration token (single use, shown only now; valid for {} until {}):\n  {}\n\n\
         On the agent host, run (FILE is the agent's LDAP configuration, see \
         `cutover agent register --help`):\n  {}\n\
         To keep the token out of the process list, put it in a file readable only by root \
         and pass --token-file PATH instead of --token.\n",
        duration_text(t.lifetime_secs),
        clean(&t.expires_at),
        clean(&t.token),
        clean(&register_command(&t.issuer, &t.token)),
    )
}

/// A PUT body: `current` with the given settings changed.
fn changed_policy(current: LockoutSettings, a: &LockoutSetArgs) -> Result<LockoutSettings> {
    let mut p = current;
    if let Some(t) = a.threshold {
        p.threshold = t;
    }
    if let Some(d) = a.duration {
        p.duration_secs = d;
    }
    if let Some(d) = a.max_duration {
        p.max_duration_secs = d;
    }
    if let Some(d) = a.reset_after {
        p.reset_after_secs = d;
    }
    if let Some(m) = &a.mode {
        p.mode = serde_json::from_value(Value::String(m.clone()))
            .map_err(|_| anyhow!("--mode must be enforced or reportOnly, not '{m}'"))?;
    }
    Ok(p)
}

// ---- commands -------------------------------------------------------------------------------

fn required(resp: Option<Value>, what: &str) -> Result<Value> {
    resp.ok_or_else(|| anyhow!("the server returned no {what}"))
}

/// The fleet warning after a change that may have reduced the healthy agents.
async fn fleet_warning_after(api: &Api) -> Result<String> {
    let list: AgentList = from_response(required(
        api.send(Method::GET, &["agents"], &[], None).await?,
        "agent list",
    )?)?;
    Ok(list
        .warning
        .map(|w| format!("warning: {}\n", clean(&w)))
        .unwrap_or_default())
}

pub(super) async fn agents(api: &Api, out: OutputFormat, cmd: AgentsCommand) -> Result<()> {
    match cmd {
        AgentsCommand::Token { lifetime } => {
            let body = serde_json::to_value(CreateRegistrationToken {
                lifetime_secs: Some(lifetime),
            })?;
            let resp = api
                .send(
                    Method::POST,
                    &["agents", "registrationTokens"],
                    &[],
                    Some(&body),
                )
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let t: RegistrationTokenView = from_response(required(resp, "token")?)?;
            emit(&token_text(&t))
        }
        AgentsCommand::List => {
            let resp = api.send(Method::GET, &["agents"], &[], None).await?;
            match out {
                OutputFormat::Json => print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => print_json_lines(resp.as_ref()),
                OutputFormat::Table => {
                    let list: AgentList = from_response(required(resp, "agent list")?)?;
                    emit(&agent_list_text(&list))
                }
            }
        }
        AgentsCommand::Show { id } => {
            let resp = api.send(Method::GET, &["agents", &id], &[], None).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let a: AgentView = from_response(required(resp, "agent")?)?;
            emit(&agent_text(&a))
        }
        AgentsCommand::Enable { id } => set_enabled(api, out, &id, true).await,
        AgentsCommand::Disable { id } => set_enabled(api, out, &id, false).await,
        AgentsCommand::Delete { id } => {
            let before: AgentView = from_response(required(
                api.send(Method::GET, &["agents", &id], &[], None).await?,
                "agent",
            )?)?;
            let resp = api
                .send(Method::DELETE, &["agents", &id], &[], None)
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let mut text = format!(
                "Deleted pass-through agent {} ({}). It can no longer connect; to bring the host \
                 back, register it again with a new token (cutover admin agents token).\n",
                before.id,
                clean(&before.host)
            );
            text.push_str(&fleet_warning_after(api).await?);
            emit(&text)
        }
    }
}

async fn set_enabled(api: &Api, out: OutputFormat, id: &str, enabled: bool) -> Result<()> {
    let body = serde_json::to_value(UpdateAgent {
        enabled: Some(enabled),
    })?;
    let resp = api
        .send(Method::PATCH, &["agents", id], &[], Some(&body))
        .await?;
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let a: AgentView = from_response(required(resp, "agent")?)?;
    let mut text = if enabled {
        format!(
            "Enabled pass-through agent {} ({}); health now: {}.\n",
            a.id,
            clean(&a.host),
            a.health
        )
    } else {
        format!(
            "Disabled pass-through agent {} ({}): it gets no more passwords and its connections \
             are refused until `cutover admin agents enable {}`.\n",
            a.id,
            clean(&a.host),
            a.id
        )
    };
    if !enabled {
        text.push_str(&fleet_warning_after(api).await?);
    }
    emit(&text)
}

pub(super) async fn lockout(api: &Api, out: OutputFormat, cmd: LockoutCommand) -> Result<()> {
    const PATH: [&str; 2] = ["policies", "smartLockout"];
    match cmd {
        LockoutCommand::Show => {
            let resp = api.send(Method::GET, &PATH, &[], None).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let v: SmartLockoutPolicyView = from_response(required(resp, "policy")?)?;
            emit(&policy_text(&v))
        }
        LockoutCommand::Set(a) => {
            let current: SmartLockoutPolicyView = from_response(required(
                api.send(Method::GET, &PATH, &[], None).await?,
                "policy",
            )?)?;
            let wanted = changed_policy(current.policy, &a)?;
            if wanted == current.policy {
                bail!("the smart-lockout policy already has these settings; nothing was changed");
            }
            let body = serde_json::to_value(wanted)?;
            let resp = api.send(Method::PUT, &PATH, &[], Some(&body)).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let v: SmartLockoutPolicyView = from_response(required(resp, "policy")?)?;
            emit(&format!(
                "Updated the smart-lockout policy.\n{}",
                policy_text(&v)
            ))
        }
    }
}

pub(super) async fn user_lockout(api: &Api, out: OutputFormat, user: &str) -> Result<()> {
    let resp = api
        .send(Method::GET, &["users", user, "lockout"], &[], None)
        .await?;
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let v: UserLockoutView = from_response(required(resp, "lockout state")?)?;
    emit(&user_lockout_text(&v))
}

pub(super) async fn unlock_user(api: &Api, out: OutputFormat, user: &str) -> Result<()> {
    let resp = api
        .send(
            Method::POST,
            &["users", user, "lockout", "unlock"],
            &[],
            None,
        )
        .await?;
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let v: UserLockoutView = from_response(required(resp, "lockout state")?)?;
    emit(&format!(
        "Unlocked {}: both counters start over (known networks stay).\n{}",
        clean(&v.user_principal_name),
        user_lockout_text(&v)
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cutover_proto::agents::{AgentStatsView, DirectoryLockoutView, DirectoryView};
    use uuid::Uuid;

    use super::*;

    /// The value of a `name: value` line.
    fn field<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map_or("", str::trim)
    }

    fn agent(health: &str) -> AgentView {
        AgentView {
            id: Uuid::from_u128(7),
            host: "agent1.corp.example".into(),
            version: "0.1.0".into(),
            enabled: true,
            health: health.into(),
            key_generation: 1,
            created_at: "2024-05-01T00:00:00Z".into(),
            keys_rotated_at: None,
            last_heartbeat: Some("2024-05-01T00:10:00Z".into()),
            last_heartbeat_age_secs: Some(4),
            started_at: Some("2024-05-01T00:00:01Z".into()),
            stats: Some(AgentStatsView {
                validations: 120,
                by_result: BTreeMap::from([
                    ("success".into(), 100),
                    ("invalidCredentials".into(), 20),
                ]),
                last_minute: 9,
                errors: 2,
                last_error: None,
                in_flight: 1,
                late: 0,
                cpu_ms: 1500,
                rss_bytes: 32 * 1024 * 1024,
            }),
            directory: Some(DirectoryView {
                reachable: true,
                error: None,
                lockout_threshold: Some(10),
                lockout_duration_secs: Some(600),
            }),
            warnings: vec![
                "Cutover's lockout threshold (10) is not below the directory's (10)".into(),
            ],
        }
    }

    #[test]
    fn durations_print_in_the_units_they_parse_from() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (90, "1m30s"),
            (3_600, "1h"),
            (5_400, "1h30m"),
            (86_400, "1d"),
            (7 * 86_400, "7d"),
            (90_061, "1d1h1m1s"),
        ] {
            assert_eq!(duration_text(secs), text);
            assert_eq!(secs_arg(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn token_lifetimes_are_checked_before_asking() {
        assert_eq!(lifetime_arg("1m"), Ok(60));
        assert_eq!(lifetime_arg("1h"), Ok(3_600));
        assert_eq!(lifetime_arg("24h"), Ok(86_400));
        let short = lifetime_arg("59s").unwrap_err();
        assert!(
            short.contains("from 1m to 24h") && short.contains("59s"),
            "{short}"
        );
        assert!(lifetime_arg("24h1s").is_err());
        assert!(
            lifetime_arg("soon")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(secs_arg("99999999999999999w").is_err());
    }

    #[test]
    fn ages_are_rough() {
        assert_eq!(age_text(-3), "0s ago");
        assert_eq!(age_text(59), "59s ago");
        assert_eq!(age_text(60), "1m ago");
        assert_eq!(age_text(7_199), "1h ago");
        assert_eq!(age_text(86_400 * 3), "3d ago");
    }

    #[test]
    fn the_fleet_table_ends_with_its_warnings_once() {
        let mut second = agent("stale");
        second.id = Uuid::from_u128(8);
        second.stats = None;
        second.directory = Some(DirectoryView {
            reachable: false,
            error: Some("connection refused".into()),
            lockout_threshold: None,
            lockout_duration_secs: None,
        });
        let list = AgentList {
            value: vec![agent("healthy"), second.clone(), agent("healthy")],
            registered_agents: 3,
            healthy_agents: 2,
            max_agents: 40,
            min_healthy_agents: 3,
            warning: Some("Only 2 pass-through agents are healthy; run at least 3".into()),
        };
        let text = agent_list_text(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(lines[0].contains("LAST HEARTBEAT"), "{text}");
        assert!(lines[1].contains("agent1.corp.example") && lines[1].contains("4s ago"));
        assert!(
            lines[1].contains("120") && lines[1].contains("reachable"),
            "{text}"
        );
        assert!(
            lines[2].contains("unreachable: connection refused"),
            "{text}"
        );
        assert!(
            text.contains("3 registered (at most 40), 2 healthy."),
            "{text}"
        );
        assert!(
            text.contains("warning: Only 2 pass-through agents are healthy"),
            "{text}"
        );
        assert_eq!(
            text.matches("is not below the directory's").count(),
            1,
            "{text}"
        );
        // An empty fleet still shows its counts and warning.
        let empty = AgentList {
            value: vec![],
            registered_agents: 0,
            healthy_agents: 0,
            max_agents: 40,
            min_healthy_agents: 3,
            warning: Some("No pass-through agent is registered".into()),
        };
        let text = agent_list_text(&empty);
        assert!(text.starts_with("(none)\n0 registered"), "{text}");
        assert!(
            text.ends_with("warning: No pass-through agent is registered\n"),
            "{text}"
        );
    }

    #[test]
    fn one_agent_reads_as_fields() {
        let text = agent_text(&agent("healthy"));
        assert!(text.contains("lastHeartbeat:"), "{text}");
        assert!(text.contains("2024-05-01T00:10:00Z (4s ago)"), "{text}");
        assert!(
            text.contains("invalidCredentials=20, success=100"),
            "{text}"
        );
        assert!(text.contains("locks after 10 for 10m"), "{text}");
        assert!(text.contains("memory:"), "{text}");
        assert!(text.contains("32 MiB"), "{text}");
        assert!(text.ends_with("(10)\n"), "{text}");
    }

    #[test]
    fn the_token_output_holds_the_exact_register_command() {
        let t = RegistrationTokenView {
            token: "tok_abc".into(),
            expires_at: "2024-05-01T01:00:00Z".into(),
            lifetime_secs: 3_600,
            issuer: "https://login.contoso.example/".into(),
        };
        let text = token_text(&t);
        assert!(text.contains(
            "  cutover agent register --server https://login.contoso.example --token tok_abc --directory-config FILE\n"
        ), "{text}");
        assert!(
            text.contains("valid for 1h until 2024-05-01T01:00:00Z"),
            "{text}"
        );
    }

    #[test]
    fn policy_changes_only_what_was_given() {
        let args = LockoutSetArgs {
            threshold: Some(5),
            duration: None,
            max_duration: Some(7_200),
            reset_after: None,
            mode: Some("reportOnly".into()),
        };
        let p = changed_policy(LockoutSettings::default(), &args).unwrap();
        assert_eq!(p.threshold, 5);
        assert_eq!(p.duration_secs, 60);
        assert_eq!(p.max_duration_secs, 7_200);
        assert_eq!(p.reset_after_secs, 86_400);
        assert_eq!(p.mode, LockoutMode::ReportOnly);
        let bad = LockoutSetArgs {
            mode: Some("sometimes".into()),
            ..args
        };
        assert!(changed_policy(LockoutSettings::default(), &bad).is_err());
    }

    #[test]
    fn the_policy_reads_with_directories_and_warnings() {
        let v = SmartLockoutPolicyView {
            policy: LockoutSettings::default(),
            directories: vec![DirectoryLockoutView {
                agent_id: Uuid::from_u128(7),
                host: "agent1.corp.example".into(),
                threshold: Some(0),
                duration_secs: None,
            }],
            warnings: vec!["Smart lockout is report-only".into()],
        };
        let text = policy_text(&v);
        assert_eq!(field(&text, "threshold"), "10", "{text}");
        assert_eq!(field(&text, "duration"), "1m", "{text}");
        assert_eq!(field(&text, "maxDuration"), "1h", "{text}");
        assert_eq!(field(&text, "resetAfter"), "1d", "{text}");
        assert_eq!(field(&text, "mode"), "enforced", "{text}");
        assert!(text.contains("does not lock accounts"), "{text}");
        assert!(
            text.ends_with("warning: Smart lockout is report-only\n"),
            "{text}"
        );
        let none = SmartLockoutPolicyView {
            directories: vec![],
            warnings: vec![],
            ..v
        };
        assert!(policy_text(&none).contains("Directories: none reported"));
    }

    #[test]
    fn a_user_lockout_reads_per_counter() {
        let v = UserLockoutView {
            user_id: Uuid::from_u128(1),
            user_principal_name: "user1@contoso.example".into(),
            threshold: 10,
            status: LockoutStatus {
                locked: true,
                familiar_locked_until: None,
                unfamiliar_locked_until: Some(Timestamp::from_secs(1_714_521_600)),
                familiar_failures: 0,
                unfamiliar_failures: 9,
                familiar_locks: 0,
                unfamiliar_locks: 1,
                familiar_networks: vec!["10.0.0.0/24".into()],
                checks_in_flight: 0,
            },
        };
        let text = user_lockout_text(&v);
        assert_eq!(field(&text, "locked"), "yes", "{text}");
        assert_eq!(
            field(&text, "fromKnownNetworks"),
            "0 of 10 wrong passwords",
            "{text}"
        );
        assert!(
            text.contains("9 of 10 wrong passwords, 1 lock, locked until 2024-05-01T00:00:00Z"),
            "{text}"
        );
        assert_eq!(field(&text, "knownNetworks"), "10.0.0.0/24", "{text}");
    }
}
