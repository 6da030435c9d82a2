//! `cutover admin ca …` and `cutover admin break-glass …`: Conditional Access (SPEC §8) —
//! policies (list, show in words, create from a file, switch state behind the enforcement gate,
//! delete), their impact report, the what-if tool and named locations — and the break-glass
//! accounts that the engine excludes from every policy (list with warnings, designate, remove,
//! record a drill).
//!
//! This is a child module of `admin_cli` (declared there with `#[path]`), so it shares that
//! module's signed-in [`Api`], its output helpers and its conventions: tables for people,
//! `--output json|jsonl` for scripts, API errors as `ApiError`s with the server's message,
//! confirmation (or `--yes`) before a risky change, refused when nobody can be asked.
//!
//! Switching a policy to `enabled` first shows its projected impact and the gate's verdict
//! (`…/policies/{id}/impact`); when the gate refuses, the server's 409 carries the reasons,
//! which are read from its body (so this module sends that one request itself, keeping the
//! body of an error answer).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use cutover_core::conditional_access::{
    BREAK_GLASS_REASON, Cidr, ConditionalAccessPolicy, DEFAULT_INTERRUPTION_THRESHOLD_PERCENT,
    FrequencyUnit, GrantOperator, PolicyState, UserConditions,
};
use cutover_proto::{ApplicationView, GroupView, ListResponse, UserView};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    Api, ApiError, OutputFormat, clean, emit, endpoint_url, first_line, format_rfc3339,
    from_response, is_rfc3339, parse_duration, path_segment, print_json, print_json_lines,
    render_fields, render_table, yes_no,
};

/// `cutover admin ca --help`.
pub const CA_LONG_ABOUT: &str = "\
Conditional Access decides at every sign-in whether to let the user in, to ask for more \
(multi-factor authentication, an authentication strength, a fresh sign-in) or to block them. A \
policy says whom it applies to (users and groups, applications, client app types, named \
locations, device platforms; an exclusion always wins) and what it demands (block; mfa or an \
authentication strength, all of them or one of them; a sign-in frequency).

A policy is in one of three states:
  - report-only (enabledForReportingButNotEnforced): evaluated at every sign-in and its result \
recorded in the sign-in log, but never enforced, so it cannot lock anyone out. Create every \
policy report-only first, let it run, and read what it would have done (`ca impact`).
  - enabled: enforced at every sign-in.
  - disabled: not evaluated at all.

The enforcement gate: one wrong policy can lock everyone out, administrators included, so \
switching a policy to enabled first shows its projected impact, and the server refuses the \
switch when the evidence is thin or the emergency path is not ready: less than 48 h of \
report-only results, more of the policy's users interrupted or blocked than the threshold \
(5 % by default), fewer than two enabled break-glass accounts, or none of them drilled in the \
last 90 days. An administrator can force it (`set-state … enabled --force`); a forced switch \
is recorded in the audit log.

Break-glass accounts never need to be listed in a policy's exclusions: the engine excludes \
them from every policy itself (`cutover admin break-glass --help`).

What-if evaluates a sign-in that did not happen (user, application, client app type, IP \
address, platform, methods) against every policy and tells, per policy, whether it applies and \
why, and what the sign-in would meet.

Policies are named by id or by exact display name.

Examples:
  cutover admin ca list
  cutover admin ca create --file require-mfa.json
  cutover admin ca show \"Require MFA\"
  cutover admin ca what-if --user user1@contoso.example --app my-app-client-id --ip 203.0.113.9
  cutover admin ca impact \"Require MFA\" --since 7d
  cutover admin ca set-state \"Require MFA\" enabled
  cutover admin ca locations create --name Office --ranges 203.0.113.0/24 --trusted
  cutover admin --output json ca show \"Require MFA\" > policy.json";

/// `cutover admin ca locations --help`.
pub const LOCATIONS_LONG_ABOUT: &str = "\
Named locations are sets of IP ranges (CIDR: 10.0.0.0/8, 2001:db8::/32) that policies name in \
their conditions: `conditions.locations.includeLocations` / `excludeLocations` list location \
ids, or `All`, or `AllTrusted` (every location marked trusted). A typical policy requires MFA \
everywhere except from trusted office ranges.

A sign-in is in a location when its client's IP address is in one of the ranges. A location a \
policy still names cannot be deleted: change the policy first.

Examples:
  cutover admin ca locations create --name Office --ranges 203.0.113.0/24,2001:db8:10::/48 --trusted
  cutover admin ca locations list
  cutover admin ca locations delete Office";

/// `cutover admin break-glass --help`.
pub const BREAK_GLASS_LONG_ABOUT: &str = "\
Break-glass (emergency access) accounts are the way back in when Conditional Access or the \
legacy identity provider locks everyone else out: a wrong policy, an expired federation \
certificate, an outage.

What makes an account break-glass:
  - It is a cloud-only account: the server refuses to designate a user synced from the on-prem \
directory. It is never federated and never in a staged rollout.
  - No Conditional Access policy applies to it: the engine excludes it from every policy \
itself, so no policy needs to list it in its exclusions.
  - It signs in with a passkey only; a password alone is not enough. Register one (a security \
key kept in a safe) by signing in once with a Temporary Access Pass (`cutover admin users tap \
create USER --once`) and adding it on the Security info page.
  - Every sign-in with it raises an alert: an error in the server's log, a metric and an audit \
event.

Keep at least two, so that losing one does not lock the organisation out, and drill them: at \
least every 90 days, sign in with one for real (its passkey), then record the drill (`drill \
record`; the server accepts it only after a successful sign-in in the last hour). The \
Conditional Access enforcement gate refuses to enable a policy while fewer than two are \
enabled, or none signed in within 90 days.

Examples:
  cutover admin break-glass list
  cutover admin break-glass designate glass1@contoso.example
  cutover admin break-glass drill record glass1@contoso.example
  cutover admin break-glass remove glass1@contoso.example";

const CREATE_AFTER_HELP: &str = "\
The file holds one policy in the Microsoft Graph shape (camelCase), without an id (the server \
gives one; an id in the file is ignored). Users, groups, applications and named locations are \
named by id (`cutover admin users show USER`, `groups list`, `apps list`, `ca locations \
list`), or with the keywords All / None (users, applications) and All / AllTrusted \
(locations). Without a \"state\" the policy is created report-only \
(enabledForReportingButNotEnforced): evaluated and recorded, never enforced.

Example file (MFA for everyone on every application, except from trusted locations):
  {
    \"displayName\": \"Require MFA outside the office\",
    \"conditions\": {
      \"users\": {\"includeUsers\": [\"All\"]},
      \"applications\": {\"includeApplications\": [\"All\"]},
      \"clientAppTypes\": [\"all\"],
      \"locations\": {\"includeLocations\": [\"All\"], \"excludeLocations\": [\"AllTrusted\"]}
    },
    \"grantControls\": {\"operator\": \"OR\", \"builtInControls\": [\"mfa\"]}
  }

Other grants: {\"operator\": \"OR\", \"builtInControls\": [\"block\"]}; an authentication \
strength: {\"operator\": \"AND\", \"authenticationStrength\": {\"id\": \"phishingResistantMfa\"}}. \
A sign-in frequency: \"sessionControls\": {\"signInFrequency\": {\"isEnabled\": true, \"value\": \
8, \"type\": \"hours\"}}. Platforms: \"platforms\": {\"includePlatforms\": [\"android\", \
\"iOS\"]}.

Examples:
  cutover admin ca create --file require-mfa.json
  cutover admin --output json ca show \"Old policy\" | cutover admin ca create --file -";

const SET_STATE_AFTER_HELP: &str = "\
report-only: evaluated at every sign-in and recorded, never enforced (the safe state to try a \
policy in). enabled: enforced. disabled: not evaluated.

Switching to enabled first prints the policy's projected impact (from its report-only results) \
and the enforcement gate's verdict. When the gate refuses (less than 48 h of report-only \
evidence, an interruption rate above the threshold, fewer than two break-glass accounts, or \
none drilled in 90 days), nothing changes, the reasons are printed and the command exits \
non-zero. --force overrides the gate after a confirmation (or --yes; a run that is not \
interactive is refused without it); the forced switch is recorded in the audit log.

Examples:
  cutover admin ca set-state \"Require MFA\" enabled
  cutover admin ca set-state \"Require MFA\" enabled --force --yes
  cutover admin ca set-state 0190f5c2-6c1e-7a3b-9d41-2f8e5b7c9a10 report-only";

const IMPACT_AFTER_HELP: &str = "\
The report reads the policy's report-only results in the sign-in log: how many users it \
applied to, how many it would have interrupted (asked for MFA, a stronger method or a fresh \
sign-in) or blocked, the rate against the gate's threshold, grouped by reason and by device \
platform, then the users (at most 50), and the enforcement gate's verdict: what switching it \
to enabled now would meet. A policy only gathers evidence while it is report-only.

Examples:
  cutover admin ca impact \"Require MFA\"
  cutover admin ca impact \"Require MFA\" --since 7d
  cutover admin --output json ca impact \"Require MFA\" | jq .gate";

const WHAT_IF_AFTER_HELP: &str = "\
Nothing is signed in and nothing is recorded: the server evaluates every enabled and \
report-only policy for a sign-in with these facts, as the sign-in path would, and answers per \
policy its result (notApplied, success, interrupted, failure, or their reportOnly… forms) with \
the reason, then the decision the enforced policies add up to: allow, block, step up (the \
strength to reach) or sign in again.

--methods are what the user already did in this sign-in, as amr values: pwd (password), otp \
(authenticator app), hwk / swk (a device-bound / synced passkey), tap (a Temporary Access \
Pass), fed (the upstream identity provider). The default is pwd.

Examples:
  cutover admin ca what-if --user user1@contoso.example --app my-app-client-id
  cutover admin ca what-if --user user1@contoso.example --app my-app-client-id \\
      --client-app-type mobileAppsAndDesktopClients --ip 203.0.113.9 --platform iOS --methods pwd,otp";

// ---- command line ---------------------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// List the policies: name, state, whom and what they target, what they demand.
    List,
    /// Show one policy explained in words (`--output json`: the policy itself, which `ca
    /// create --file` takes back).
    Show {
        /// The policy's id or exact display name.
        #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
        policy: String,
    },
    /// Create a policy from a JSON file (report-only unless the file says otherwise).
    #[command(after_help = CREATE_AFTER_HELP)]
    Create {
        /// The policy (JSON, Microsoft Graph shape); `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Switch a policy to report-only, enabled or disabled; enabling shows its impact and
    /// passes the enforcement gate first.
    #[command(after_help = SET_STATE_AFTER_HELP)]
    SetState(SetStateArgs),
    /// Delete a policy (asks first; --yes to skip the question).
    Delete {
        /// The policy's id or exact display name.
        #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
        policy: String,
        /// Delete without asking (needed when the run is not interactive).
        #[arg(long)]
        yes: bool,
    },
    /// What enforcing a report-only policy would do: users interrupted and blocked, by reason
    /// and platform, and the enforcement gate's verdict.
    #[command(after_help = IMPACT_AFTER_HELP)]
    Impact {
        /// The policy's id or exact display name.
        #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
        policy: String,
        /// The window's start: a duration back from now in one unit, m, h or d (90m, 48h, 7d),
        /// or an RFC 3339 time [default: 48h]. Evidence from before the policy's last change
        /// never counts.
        #[arg(long, value_name = "DURATION|RFC3339", value_parser = since_arg)]
        since: Option<String>,
    },
    /// Evaluate a hypothetical sign-in against every policy and explain each result.
    #[command(after_help = WHAT_IF_AFTER_HELP)]
    WhatIf(WhatIfArgs),
    /// Named locations: IP ranges that policies include or exclude, trusted or not.
    #[command(subcommand, long_about = LOCATIONS_LONG_ABOUT)]
    Locations(LocationsCommand),
    /// Show or set the enforcement gate's interruption threshold: enabling a policy is refused
    /// when more than this share of its users would have been interrupted or blocked over the
    /// last 48 hours (default 5 %).
    #[command(
        after_help = "Examples:\n  cutover admin ca gate\n  cutover admin ca gate --threshold 2.5"
    )]
    Gate {
        /// The new threshold in percent (0-100); without it, show the current one.
        #[arg(long, value_name = "PERCENT")]
        threshold: Option<f64>,
    },
}

/// The state `set-state` switches to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateArg {
    /// Evaluated and recorded, never enforced (enabledForReportingButNotEnforced).
    #[value(aliases = ["reportOnly", "enabledForReportingButNotEnforced"])]
    ReportOnly,
    /// Enforced (behind the enforcement gate).
    Enabled,
    /// Not evaluated.
    Disabled,
}

impl StateArg {
    fn policy_state(self) -> PolicyState {
        match self {
            Self::ReportOnly => PolicyState::EnabledForReportingButNotEnforced,
            Self::Enabled => PolicyState::Enabled,
            Self::Disabled => PolicyState::Disabled,
        }
    }
}

#[derive(Args, Debug)]
#[command(
    override_usage = "cutover admin ca set-state <ID_OR_NAME> report-only|enabled|disabled [--force [--yes]]"
)]
pub struct SetStateArgs {
    /// The policy's id or exact display name.
    #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
    pub policy: String,
    /// The new state.
    #[arg(value_enum, value_name = "STATE")]
    pub state: StateArg,
    /// Enable the policy even though the enforcement gate refuses (asks first; audited).
    #[arg(long)]
    pub force: bool,
    /// With --force: do not ask (needed when the run is not interactive).
    #[arg(long, requires = "force")]
    pub yes: bool,
}

const CLIENT_APP_TYPES: [&str; 4] = [
    "browser",
    "mobileAppsAndDesktopClients",
    "exchangeActiveSync",
    "other",
];
const PLATFORMS: [&str; 5] = ["android", "iOS", "windows", "macOS", "linux"];
const AMR_METHODS: [&str; 6] = ["pwd", "otp", "hwk", "swk", "tap", "fed"];

#[derive(Args, Debug)]
#[command(
    override_usage = "cutover admin ca what-if --user UPN_OR_ID --app CLIENT_ID_OR_APP_ID [--client-app-type TYPE] [--ip IP] [--platform PLATFORM] [--methods AMR,AMR] [--auth-time RFC3339]"
)]
pub struct WhatIfArgs {
    /// The user signing in: principal name (user1@contoso.example) or id.
    #[arg(long, value_name = "UPN_OR_ID")]
    pub user: String,
    /// The application: its client id, or its id.
    #[arg(long, value_name = "CLIENT_ID_OR_APP_ID")]
    pub app: String,
    /// The kind of client.
    #[arg(long, value_name = "TYPE", default_value = "browser", value_parser = CLIENT_APP_TYPES)]
    pub client_app_type: String,
    /// The client's IP address (for named locations) [default: unknown: in no location].
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,
    /// The device platform [default: unknown: only policies for all platforms apply].
    #[arg(long, value_name = "PLATFORM", value_parser = PLATFORMS)]
    pub platform: Option<String>,
    /// What the user did so far, as amr values separated by commas: pwd, otp, hwk, swk, tap,
    /// fed [default: pwd].
    #[arg(long, value_name = "AMR,AMR", value_delimiter = ',', value_parser = AMR_METHODS)]
    pub methods: Vec<String>,
    /// When the session last authenticated interactively (for sign-in frequency) [default:
    /// now].
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339_arg)]
    pub auth_time: Option<String>,
}

impl WhatIfArgs {
    /// The evaluate request's body: only what was given.
    fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("user".into(), json!(self.user));
        body.insert("application".into(), json!(self.app));
        body.insert("clientAppType".into(), json!(self.client_app_type));
        if let Some(ip) = self.ip {
            body.insert("ipAddress".into(), json!(ip.to_string()));
        }
        if let Some(p) = &self.platform {
            body.insert("platform".into(), json!(p));
        }
        if !self.methods.is_empty() {
            body.insert("methods".into(), json!(self.methods));
        }
        if let Some(t) = &self.auth_time {
            body.insert("authTime".into(), json!(t));
        }
        Value::Object(body)
    }
}

#[derive(Subcommand, Debug)]
pub enum LocationsCommand {
    /// List the named locations: name, trusted, IP ranges, id.
    List,
    /// Create a named location.
    #[command(after_help = "\
Ranges are CIDR, IPv4 or IPv6, separated by commas; a single address is /32 (or /128). The \
address must be the range's first one (10.1.0.0/16, not 10.1.2.3/16).

Example:
  cutover admin ca locations create --name Office --ranges 203.0.113.0/24,198.51.100.7/32 --trusted")]
    Create {
        /// The location's display name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Its IP ranges (CIDR, comma-separated).
        #[arg(long, value_name = "CIDR,CIDR", value_delimiter = ',', required = true,
            value_parser = cidr_arg)]
        ranges: Vec<String>,
        /// Mark it trusted: policies can include or exclude every trusted location at once
        /// (AllTrusted).
        #[arg(long)]
        trusted: bool,
    },
    /// Delete a named location (refused while a policy names it).
    Delete {
        /// The location's id or exact display name.
        #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
        location: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BreakGlassCommand {
    /// List the break-glass accounts (enabled, passkeys, last sign-in, last drill) and what to
    /// fix.
    List,
    /// Make a cloud-only user a break-glass account: excluded from every Conditional Access
    /// policy, passkey-only, every sign-in an alert.
    #[command(after_help = "\
The user must be cloud-only (created in Cutover, not synced). Then give it a passkey if it has \
none (a Temporary Access Pass lets it register one: cutover admin users tap create USER \
--once), sign in with it and record the drill.

Example:
  cutover admin break-glass designate glass1@contoso.example")]
    Designate {
        /// The user's principal name (glass1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Make a break-glass account an ordinary user again: policies apply to it from now on
    /// (asks first; --yes to skip the question).
    Remove {
        /// The user's principal name (glass1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
        /// Remove without asking (needed when the run is not interactive).
        #[arg(long)]
        yes: bool,
    },
    /// Drills: proof that a break-glass account really signs in (at least every 90 days).
    #[command(subcommand)]
    Drill(DrillCommand),
}

#[derive(Subcommand, Debug)]
pub enum DrillCommand {
    /// Record a drill after signing in with the account (with its passkey) within the last
    /// hour.
    #[command(after_help = "\
The server records the drill only when the account has a successful sign-in in the last hour: \
sign in with it first (a real sign-in, which raises the break-glass alert), then record it.

Example:
  cutover admin break-glass drill record glass1@contoso.example")]
    Record {
        /// The account's principal name (glass1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
}

// ---- value parsers (pure) -------------------------------------------------------------------

/// `--since`: a duration back from now in one unit (90m, 48h, 7d) or an RFC 3339 time, passed
/// on as written (the server reads both, by its own clock, from 1 minute to 366 days).
fn since_arg(s: &str) -> Result<String, String> {
    let s = s.trim();
    if is_rfc3339(s) {
        return Ok(s.to_owned());
    }
    let help = "give a number and one unit, m, h or d (90m, 48h, 7d), or an RFC 3339 time such as \
                2026-05-01T00:00:00Z";
    let secs = parse_duration(s).map_err(|e| format!("{e}; {help}"))?;
    let one_unit = s.len() > 1
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && s.ends_with(['m', 'h', 'd']);
    if !one_unit {
        return Err(format!("'{s}': {help}"));
    }
    if !(60..=366 * 86_400).contains(&secs) {
        return Err(format!(
            "'{s}': the window reaches back 1 minute to 366 days"
        ));
    }
    Ok(s.to_owned())
}

fn rfc3339_arg(s: &str) -> Result<String, String> {
    let s = s.trim();
    if is_rfc3339(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not an RFC 3339 time; write it like 2026-05-01T08:00:00Z (UTC) or \
             2026-05-01T10:00:00+02:00"
        ))
    }
}

/// A named location's range: checked here as the server checks it, so a typo names itself.
fn cidr_arg(s: &str) -> Result<String, String> {
    let s = s.trim();
    Cidr::parse(s)?;
    Ok(s.to_owned())
}

// ---- answers --------------------------------------------------------------------------------

/// The fields of a policy; the server adds its times, which are kept apart.
const POLICY_FIELDS: [&str; 6] = [
    "id",
    "displayName",
    "state",
    "conditions",
    "grantControls",
    "sessionControls",
];

/// A policy as the server shows it: the policy and its times.
#[derive(Debug, Clone)]
struct PolicyView {
    policy: ConditionalAccessPolicy,
    created: Option<String>,
    modified: Option<String>,
    state_changed: Option<String>,
}

fn text_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A policy from the server's JSON (its times apart, other additions ignored).
fn policy_view(v: Value) -> Result<PolicyView> {
    let Value::Object(mut map) = v else {
        bail!(
            "unexpected response from the server (a policy is a JSON object); are `cutover \
             admin` and the server the same version?"
        );
    };
    let created = text_field(&map, "createdDateTime");
    let modified = text_field(&map, "modifiedDateTime");
    let state_changed = text_field(&map, "stateChangedDateTime");
    map.retain(|k, _| POLICY_FIELDS.contains(&k.as_str()));
    Ok(PolicyView {
        policy: from_response(Value::Object(map))?,
        created,
        modified,
        state_changed,
    })
}

fn policy_list(v: Option<Value>) -> Result<Vec<PolicyView>> {
    let list: ListResponse<Value> = match v {
        Some(v) => from_response(v)?,
        None => ListResponse::new(Vec::new()),
    };
    list.value.into_iter().map(policy_view).collect()
}

/// A policy file, ready to POST: the body, and whether the state was defaulted and an id
/// dropped.
#[derive(Debug)]
struct PolicyFile {
    body: Value,
    state_defaulted: bool,
    id_dropped: bool,
}

/// A policy from a file's JSON text (`origin` names the file in errors). Its id and the
/// server's times are dropped, a missing state becomes report-only, and the shape is checked
/// here so that a typo names its field; the rules (ids exist, …) are the server's.
fn policy_from_text(text: &str, origin: &str) -> Result<PolicyFile> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "{origin} is not JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(mut map) = v else {
        bail!(
            "{origin} does not hold a policy (a JSON object); see `cutover admin ca create --help`"
        );
    };
    let id_dropped = map.remove("id").is_some();
    for k in [
        "createdDateTime",
        "modifiedDateTime",
        "stateChangedDateTime",
    ] {
        map.remove(k);
    }
    let state_defaulted = !map.contains_key("state");
    if state_defaulted {
        map.insert(
            "state".into(),
            json!(PolicyState::EnabledForReportingButNotEnforced.as_str()),
        );
    }
    let mut probe = map.clone();
    probe.insert("id".into(), json!(Uuid::nil()));
    serde_json::from_value::<ConditionalAccessPolicy>(Value::Object(probe)).map_err(|e| {
        anyhow!(
            "{origin} is not a Conditional Access policy: {e} (see the example in `cutover admin \
             ca create --help`)"
        )
    })?;
    Ok(PolicyFile {
        body: Value::Object(map),
        state_defaulted,
        id_dropped,
    })
}

/// The impact report, read leniently (times may be RFC 3339 or Unix milliseconds).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpactView {
    #[serde(default)]
    window_start: Value,
    #[serde(default)]
    window_end: Value,
    #[serde(default)]
    records: u64,
    #[serde(default)]
    applied_users: u64,
    #[serde(default)]
    interrupted_users: u64,
    #[serde(default)]
    blocked_users: u64,
    #[serde(default)]
    interruption_rate: f64,
    #[serde(default)]
    by_reason: BTreeMap<String, u64>,
    #[serde(default)]
    by_platform: BTreeMap<String, u64>,
    #[serde(default)]
    users: Vec<ImpactUserView>,
    #[serde(default)]
    evidence_since: Value,
    /// The gate's threshold, when the server says it.
    #[serde(
        default,
        alias = "interruptionThreshold",
        alias = "thresholdPercent",
        alias = "interruptionThresholdPercent"
    )]
    threshold_percent: Option<f64>,
    #[serde(default)]
    gate: Option<GateView>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpactUserView {
    #[serde(default)]
    user_principal_name: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    result: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    sign_ins: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GateView {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reasons: Vec<GateReasonView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GateReasonView {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The what-if answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WhatIfAnswer {
    decision: DecisionView,
    #[serde(default)]
    results: Vec<ResultView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecisionView {
    decision: String,
    #[serde(default)]
    policies: Vec<Uuid>,
    #[serde(default)]
    requirement: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultView {
    policy_id: Uuid,
    #[serde(default)]
    display_name: String,
    result: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocationView {
    id: Uuid,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    ip_ranges: Vec<String>,
    #[serde(default)]
    is_trusted: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BreakGlassList {
    #[serde(default)]
    value: Vec<BreakGlassAccount>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BreakGlassAccount {
    #[serde(default)]
    user_principal_name: String,
    #[serde(default)]
    account_enabled: bool,
    #[serde(default)]
    passkeys: u64,
    #[serde(default)]
    last_successful_sign_in_date_time: Option<String>,
    #[serde(default)]
    last_drill_date_time: Option<String>,
    #[serde(default)]
    drill_due: bool,
}

// ---- text (pure) ----------------------------------------------------------------------------

/// Names for the ids a policy holds, as far as they could be read (else the id shows).
#[derive(Debug, Default)]
struct Names {
    users: BTreeMap<String, String>,
    groups: BTreeMap<String, String>,
    apps: BTreeMap<String, String>,
    locations: BTreeMap<String, String>,
}

impl Names {
    fn of(map: &BTreeMap<String, String>, id: &str) -> String {
        map.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn state_label(s: PolicyState) -> &'static str {
    match s {
        PolicyState::Enabled => "enabled",
        PolicyState::Disabled => "disabled",
        PolicyState::EnabledForReportingButNotEnforced => "report-only",
    }
}

fn state_words(s: PolicyState) -> &'static str {
    match s {
        PolicyState::Enabled => "enabled: enforced at every sign-in",
        PolicyState::Disabled => "disabled: not evaluated",
        PolicyState::EnabledForReportingButNotEnforced => {
            "report-only: evaluated at every sign-in and recorded, never enforced"
        }
    }
}

/// Who, from a users condition: names when `names` is given, counts otherwise.
fn users_text(u: &UserConditions, names: Option<&Names>) -> String {
    let list = |ids: &[String], groups: &[String]| -> Vec<String> {
        let mut parts = Vec::new();
        match names {
            Some(n) => {
                if !ids.is_empty() {
                    parts.push(
                        ids.iter()
                            .map(|i| Names::of(&n.users, i))
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                }
                if !groups.is_empty() {
                    parts.push(format!(
                        "members of {}",
                        groups
                            .iter()
                            .map(|i| Names::of(&n.groups, i))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            None => {
                if !ids.is_empty() {
                    parts.push(plural(ids.len(), "user", "users"));
                }
                if !groups.is_empty() {
                    parts.push(plural(groups.len(), "group", "groups"));
                }
            }
        }
        parts
    };
    let included = if u.include_users.iter().any(|v| v == "All") {
        "all users".to_owned()
    } else {
        let ids: Vec<String> = u
            .include_users
            .iter()
            .filter(|v| *v != "None")
            .cloned()
            .collect();
        let parts = list(&ids, &u.include_groups);
        if parts.is_empty() {
            "no users".to_owned()
        } else {
            parts.join(" and ")
        }
    };
    let excluded = list(&u.exclude_users, &u.exclude_groups);
    if excluded.is_empty() {
        included
    } else {
        format!("{included} except {}", excluded.join(" and "))
    }
}

/// A list of application or location ids with their keywords, in words.
fn scope_text(
    include: &[String],
    exclude: &[String],
    what: (&str, &str),
    all: &str,
    names: Option<&BTreeMap<String, String>>,
) -> String {
    let words = |ids: &[String]| -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut others: Vec<&String> = Vec::new();
        for v in ids {
            match v.as_str() {
                "All" => parts.push(all.to_owned()),
                "None" => parts.push(format!("no {}", what.1)),
                "AllTrusted" => parts.push("trusted locations".to_owned()),
                _ => others.push(v),
            }
        }
        if !others.is_empty() {
            parts.push(match names {
                Some(n) => others
                    .iter()
                    .map(|i| Names::of(n, i))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => plural(others.len(), what.0, what.1),
            });
        }
        parts.join(", ")
    };
    let included = words(include);
    if exclude.is_empty() {
        included
    } else {
        format!("{included} except {}", words(exclude))
    }
}

fn client_app_type_words(t: &str) -> &str {
    match t {
        "all" => "all client apps",
        "browser" => "browsers",
        "mobileAppsAndDesktopClients" => "mobile apps and desktop clients",
        "exchangeActiveSync" => "Exchange ActiveSync",
        "other" => "other (legacy) clients",
        other => other,
    }
}

fn client_apps_text(types: &[String]) -> String {
    types
        .iter()
        .map(|t| client_app_type_words(t))
        .collect::<Vec<_>>()
        .join(", ")
}

fn platforms_text(p: &ConditionalAccessPolicy) -> Option<String> {
    let p = p.conditions.platforms.as_ref()?;
    let include = if p.include_platforms.iter().any(|v| v == "all") {
        "all platforms".to_owned()
    } else {
        p.include_platforms.join(", ")
    };
    Some(if p.exclude_platforms.is_empty() {
        include
    } else {
        format!("{include} except {}", p.exclude_platforms.join(", "))
    })
}

fn locations_text(p: &ConditionalAccessPolicy, names: Option<&Names>) -> Option<String> {
    let l = p.conditions.locations.as_ref()?;
    Some(scope_text(
        &l.include_locations,
        &l.exclude_locations,
        ("location", "locations"),
        "any location",
        names.map(|n| &n.locations),
    ))
}

fn frequency_text(p: &ConditionalAccessPolicy) -> Option<String> {
    let f = p.session_controls.as_ref()?.sign_in_frequency.as_ref()?;
    if !f.is_enabled {
        return None;
    }
    let value = f.value.unwrap_or(0);
    let unit = match f.unit {
        Some(FrequencyUnit::Days) => {
            if value == 1 {
                "day"
            } else {
                "days"
            }
        }
        _ => {
            if value == 1 {
                "hour"
            } else {
                "hours"
            }
        }
    };
    Some(format!("a fresh sign-in every {value} {unit}"))
}

/// What a policy demands, short (`block`, `mfa OR passwordlessMfa`, `every 8 hours`).
fn grant_short(p: &ConditionalAccessPolicy) -> String {
    let mut parts = Vec::new();
    if let Some(g) = &p.grant_controls {
        if g.built_in_controls.iter().any(|c| c == "block") {
            parts.push("block".to_owned());
        } else {
            let mut controls: Vec<String> = g.built_in_controls.clone();
            if let Some(s) = &g.authentication_strength {
                controls.push(format!("strength {}", s.id));
            }
            parts.push(controls.join(&format!(" {} ", g.operator.as_str())));
        }
    }
    if let Some(f) = frequency_text(p) {
        parts.push(f.replace("a fresh sign-in every", "sign in every"));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("; ")
    }
}

/// What a policy demands, in a sentence.
fn grant_words(p: &ConditionalAccessPolicy) -> String {
    let Some(g) = &p.grant_controls else {
        return "no grant control (only the session control below)".to_owned();
    };
    if g.built_in_controls.iter().any(|c| c == "block") {
        return "block access".to_owned();
    }
    let mut controls: Vec<String> = g
        .built_in_controls
        .iter()
        .map(|c| match c.as_str() {
            "mfa" => "multi-factor authentication (mfa)".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    if let Some(s) = &g.authentication_strength {
        controls.push(format!("the authentication strength {}", s.id));
    }
    match (controls.len(), g.operator) {
        (0, _) => "nothing".to_owned(),
        (1, _) => format!("require {}", controls[0]),
        (_, GrantOperator::And) => format!("require all of: {}", controls.join(", ")),
        (_, GrantOperator::Or) => format!("require one of: {}", controls.join(", ")),
    }
}

/// Whom and what a policy targets, short, for the list: users, applications, and the other
/// conditions (client apps, locations, platforms; `-` when none).
fn targets_short(p: &ConditionalAccessPolicy) -> [String; 3] {
    let c = &p.conditions;
    let mut others = Vec::new();
    if !c.client_app_types.iter().any(|t| t == "all") {
        others.push(c.client_app_types.join(","));
    }
    if let Some(l) = locations_text(p, None) {
        others.push(l);
    }
    if let Some(pl) = platforms_text(p) {
        others.push(pl);
    }
    [
        users_text(&c.users, None),
        scope_text(
            &c.applications.include_applications,
            &c.applications.exclude_applications,
            ("app", "apps"),
            "all apps",
            None,
        ),
        if others.is_empty() {
            "-".to_owned()
        } else {
            others.join("; ")
        },
    ]
}

fn policies_text(policies: &[PolicyView]) -> String {
    if policies.is_empty() {
        return "No Conditional Access policy yet. Create one report-only from a file: cutover \
                admin ca create --file policy.json (see cutover admin ca create --help).\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|v| {
            let p = &v.policy;
            let [users, apps, conditions] = targets_short(p);
            vec![
                p.display_name.clone(),
                state_label(p.state).to_owned(),
                users,
                apps,
                conditions,
                grant_short(p),
                p.id.to_string(),
            ]
        })
        .collect();
    let mut text = render_table(
        &[
            "NAME",
            "STATE",
            "USERS",
            "APPS",
            "CONDITIONS",
            "GRANT",
            "ID",
        ],
        &rows,
    );
    text.push_str(
        "\nreport-only: evaluated and recorded, never enforced. Break-glass accounts are \
         excluded from every policy by the engine.\n",
    );
    text
}

/// A policy explained in words.
fn policy_text(v: &PolicyView, names: &Names) -> String {
    let p = &v.policy;
    let c = &p.conditions;
    let mut fields = vec![
        ("name", p.display_name.clone()),
        ("id", p.id.to_string()),
        ("state", state_words(p.state).to_owned()),
        ("users", users_text(&c.users, Some(names))),
        (
            "applications",
            scope_text(
                &c.applications.include_applications,
                &c.applications.exclude_applications,
                ("application", "applications"),
                "all applications",
                Some(&names.apps),
            ),
        ),
        ("clientApps", client_apps_text(&c.client_app_types)),
        (
            "locations",
            locations_text(p, Some(names)).unwrap_or_else(|| "any (not a condition)".into()),
        ),
        (
            "platforms",
            platforms_text(p).unwrap_or_else(|| "any (not a condition)".into()),
        ),
        ("grant", grant_words(p)),
    ];
    if let Some(f) = frequency_text(p) {
        fields.push(("session", f));
    }
    for (k, t) in [
        ("created", &v.created),
        ("modified", &v.modified),
        ("stateChanged", &v.state_changed),
    ] {
        if let Some(t) = t {
            fields.push((k, t.clone()));
        }
    }
    let mut text = format!(
        "When a sign-in matches the users, applications, client apps, locations and platforms \
         below, the policy applies: {}.\n\n",
        grant_words(p)
    );
    text.push_str(&render_fields(&fields));
    text.push_str(
        "\nBreak-glass accounts are excluded from this policy by the engine itself, whatever \
         it lists.\n",
    );
    let key = clean(&p.display_name);
    match p.state {
        PolicyState::EnabledForReportingButNotEnforced => text.push_str(&format!(
            "What enforcing it would do: cutover admin ca impact \"{key}\"; then: cutover admin \
             ca set-state \"{key}\" enabled\n"
        )),
        PolicyState::Disabled => text.push_str(&format!(
            "To gather evidence first: cutover admin ca set-state \"{key}\" report-only\n"
        )),
        PolicyState::Enabled => {}
    }
    text
}

/// A table whose last column (a reason, in words) is not cut short: the other columns are
/// aligned as `render_table` aligns them, the last one follows in full.
fn table_with_long_last(headers: &[&str], rows: &[Vec<String>]) -> String {
    let Some((last_header, first_headers)) = headers.split_last() else {
        return String::new();
    };
    let firsts: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r[..r.len().saturating_sub(1)].to_vec())
        .collect();
    let table = render_table(first_headers, &firsts);
    if rows.is_empty() {
        return table;
    }
    let width = table.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    let lasts = std::iter::once(clean(last_header)).chain(
        rows.iter()
            .map(|r| clean(r.last().map_or("", String::as_str))),
    );
    table
        .lines()
        .zip(lasts)
        .map(|(line, last)| {
            let pad = width - line.chars().count();
            format!("{line}{}  {last}\n", " ".repeat(pad))
        })
        .collect()
}

/// A time from an answer: an RFC 3339 string as is, Unix milliseconds formatted.
fn time_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_i64().map(|ms| format_rfc3339(ms.div_euclid(1000))),
        _ => None,
    }
}

fn time_millis(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => cutover_server::clock::parse_rfc3339(s).map(|t| t.millis()),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn percent(rate: f64) -> String {
    let text = format!("{rate:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} %")
}

fn gate_text(gate: Option<&GateView>) -> String {
    match gate {
        None => "Enforcement gate: the server gave no verdict.\n".to_owned(),
        Some(g) if g.allowed => "Enforcement gate: enabling it now would be ALLOWED (enough \
                                 report-only evidence, few enough interruptions, the \
                                 emergency path ready).\n"
            .to_owned(),
        Some(g) => {
            let mut text = "Enforcement gate: enabling it now would be REFUSED:\n".to_owned();
            text.push_str(&reasons_text(&g.reasons));
            text
        }
    }
}

fn reasons_text(reasons: &[GateReasonView]) -> String {
    reasons
        .iter()
        .map(|r| format!("  - {}: {}\n", clean(&r.code), clean(&r.message)))
        .collect()
}

/// The gate's threshold: the server's when it says it (a field, or the message of the rate's
/// refusal: "… the threshold is 5 %"), else the default.
fn threshold_of(i: &ImpactView) -> Option<f64> {
    i.threshold_percent.or_else(|| {
        let r = i
            .gate
            .as_ref()?
            .reasons
            .iter()
            .find(|r| r.code == RATE_REFUSED)?;
        let rest = &r.message[r.message.find("the threshold is ")? + "the threshold is ".len()..];
        rest.split_whitespace()
            .next()?
            .trim_end_matches('%')
            .parse()
            .ok()
    })
}

/// The rate against the threshold, and whether it is above (the gate's verdict decides when it
/// is there).
fn threshold_text(i: &ImpactView) -> String {
    let known = threshold_of(i);
    let threshold = known.unwrap_or(DEFAULT_INTERRUPTION_THRESHOLD_PERCENT);
    let above = match &i.gate {
        Some(g) => g.reasons.iter().any(|r| r.code == RATE_REFUSED),
        None => i.interruption_rate > threshold,
    };
    let mut text = match known {
        Some(t) => format!("the gate's threshold is {}", percent(t)),
        None => format!(
            "the gate's threshold is {} unless configured otherwise",
            percent(threshold)
        ),
    };
    if above {
        text.push_str(": ABOVE IT");
    }
    text
}

/// The gate's code for an interruption rate above the threshold.
const RATE_REFUSED: &str = "interruptionRateAboveThreshold";

/// The impact report for people: the summary, by reason, by platform, the users, the gate.
fn impact_text(name: &str, i: &ImpactView) -> String {
    let mut text = format!("Impact of '{}' if it were enforced", clean(name));
    match (time_text(&i.window_start), time_text(&i.window_end)) {
        (Some(s), Some(e)) => text.push_str(&format!(
            ", from its report-only results between {s} and {e}:\n"
        )),
        _ => text.push_str(", from its report-only results:\n"),
    }
    if i.records == 0 {
        text.push_str(
            "  No report-only result in this window: the policy gathers evidence only while it is \
             report-only and sign-ins it could apply to happen.\n",
        );
    }
    let rate = format!(
        "{} ({} of the users it applied to; {})",
        i.interrupted_users,
        percent(i.interruption_rate),
        threshold_text(i)
    );
    let evidence = match (
        time_text(&i.evidence_since),
        time_millis(&i.evidence_since),
        time_millis(&i.window_end),
    ) {
        (Some(t), Some(since), Some(end)) => {
            #[allow(clippy::cast_precision_loss)]
            let hours = (end - since) as f64 / 3_600_000.0;
            format!("{t} ({hours:.1} h of evidence)")
        }
        (Some(t), _, _) => t,
        (None, _, _) => "none".to_owned(),
    };
    text.push_str(&render_fields(&[
        ("reportOnlyResults", i.records.to_string()),
        ("usersApplied", i.applied_users.to_string()),
        ("usersInterrupted", rate),
        ("usersBlocked", i.blocked_users.to_string()),
        ("evidenceSince", evidence),
    ]));
    text.push_str("(interrupted: asked for MFA, a stronger method or a fresh sign-in; blocked ones included)\n");
    if !i.by_reason.is_empty() {
        text.push_str("\nBy reason:\n");
        let rows: Vec<Vec<String>> = i
            .by_reason
            .iter()
            .map(|(r, n)| vec![n.to_string(), r.clone()])
            .collect();
        text.push_str(&table_with_long_last(&["USERS", "REASON"], &rows));
    }
    if !i.by_platform.is_empty() {
        text.push_str("\nBy platform:\n");
        let rows: Vec<Vec<String>> = i
            .by_platform
            .iter()
            .map(|(p, n)| vec![p.clone(), n.to_string()])
            .collect();
        text.push_str(&render_table(&["PLATFORM", "USERS"], &rows));
    }
    if !i.users.is_empty() {
        let shown = i.users.len();
        #[allow(clippy::cast_possible_truncation)]
        let total = i.interrupted_users as usize;
        if total > shown {
            text.push_str(&format!(
                "\nUsers it would have stopped (the first {shown} of {total}):\n"
            ));
        } else {
            text.push_str("\nUsers it would have stopped:\n");
        }
        let rows: Vec<Vec<String>> = i
            .users
            .iter()
            .map(|u| {
                vec![
                    u.user_principal_name.clone(),
                    u.platform.clone(),
                    u.result.clone(),
                    u.sign_ins.map_or_else(|| "-".into(), |n| n.to_string()),
                    u.reason.clone(),
                ]
            })
            .collect();
        text.push_str(&table_with_long_last(
            &["USER", "PLATFORM", "RESULT", "SIGN-INS", "REASON"],
            &rows,
        ));
    }
    text.push('\n');
    text.push_str(&gate_text(i.gate.as_ref()));
    text
}

/// A strength requirement from the decision (`{builtIn, custom: [{id, strength: {name}}]}`).
fn requirement_text(r: Option<&Value>) -> String {
    let Some(r) = r else {
        return "a stronger sign-in".to_owned();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(b) = r.get("builtIn").and_then(Value::as_str) {
        parts.push(b.to_owned());
    }
    for c in r
        .get("custom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c
            .pointer("/strength/name")
            .and_then(Value::as_str)
            .unwrap_or("custom strength");
        let id = c.get("id").and_then(Value::as_str).unwrap_or("?");
        parts.push(format!("the strength '{name}' ({id})"));
    }
    if parts.is_empty() {
        "a stronger sign-in".to_owned()
    } else {
        parts.join(" and ")
    }
}

/// The what-if answer for people: per policy its result and reason, then the decision.
fn what_if_text(a: &WhatIfAnswer) -> String {
    let mut text = String::new();
    if a.results.is_empty() {
        text.push_str("No policy is enabled or report-only, so none applies.\n");
    } else {
        let rows: Vec<Vec<String>> = a
            .results
            .iter()
            .map(|r| vec![r.display_name.clone(), r.result.clone(), r.reason.clone()])
            .collect();
        text.push_str(&table_with_long_last(
            &["POLICY", "RESULT", "REASON"],
            &rows,
        ));
    }
    if !a.results.is_empty() && a.results.iter().all(|r| r.reason == BREAK_GLASS_REASON) {
        text.push_str(
            "\nThe user is a break-glass account: the engine excludes it from every policy.\n",
        );
    }
    let name = |id: &Uuid| {
        a.results.iter().find(|r| r.policy_id == *id).map_or_else(
            || id.to_string(),
            |r| format!("'{}'", clean(&r.display_name)),
        )
    };
    let by = a
        .decision
        .policies
        .iter()
        .map(name)
        .collect::<Vec<_>>()
        .join(", ");
    text.push('\n');
    text.push_str(&match a.decision.decision.as_str() {
        "allow" => {
            "Decision: ALLOW. No enforced policy blocks or interrupts this sign-in.\n".to_owned()
        }
        "block" => format!("Decision: BLOCK. The sign-in is refused by {by}.\n"),
        "stepUp" => format!(
            "Decision: STEP UP. The user must also satisfy {} (required by {by}); then the \
             sign-in goes on.\n",
            requirement_text(a.decision.requirement.as_ref())
        ),
        "reauthenticate" => format!(
            "Decision: SIGN IN AGAIN. The session's sign-in is older than the sign-in frequency \
             of {by} allows.\n"
        ),
        other => format!("Decision: {}.\n", clean(other)),
    });
    let would: Vec<String> = a
        .results
        .iter()
        .filter(|r| {
            matches!(
                r.result.as_str(),
                "reportOnlyFailure" | "reportOnlyInterrupted"
            )
        })
        .map(|r| {
            format!(
                "'{}' would {}",
                clean(&r.display_name),
                if r.result == "reportOnlyFailure" {
                    "block it"
                } else {
                    "interrupt it"
                }
            )
        })
        .collect();
    if !would.is_empty() {
        text.push_str(&format!(
            "Report-only policies are recorded, never enforced; if enabled, {}.\n",
            would.join(", ")
        ));
    }
    text
}

fn locations_list_text(locations: &[LocationView]) -> String {
    if locations.is_empty() {
        return "No named location yet: cutover admin ca locations create --name NAME --ranges \
                CIDR,CIDR [--trusted]\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = locations
        .iter()
        .map(|l| {
            vec![
                l.display_name.clone(),
                yes_no(l.is_trusted),
                l.ip_ranges.join(","),
                l.id.to_string(),
            ]
        })
        .collect();
    render_table(&["NAME", "TRUSTED", "IP RANGES", "ID"], &rows)
}

fn warnings_text(warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|w| format!("WARNING: {}\n", clean(w)))
        .collect()
}

fn break_glass_text(l: &BreakGlassList) -> String {
    let mut text = if l.value.is_empty() {
        "No break-glass account is designated. Keep at least two cloud-only ones: cutover admin \
         break-glass designate USER\n"
            .to_owned()
    } else {
        let rows: Vec<Vec<String>> = l
            .value
            .iter()
            .map(|a| {
                vec![
                    a.user_principal_name.clone(),
                    yes_no(a.account_enabled),
                    a.passkeys.to_string(),
                    a.last_successful_sign_in_date_time
                        .clone()
                        .unwrap_or_else(|| "never".into()),
                    a.last_drill_date_time
                        .clone()
                        .unwrap_or_else(|| "never".into()),
                    yes_no(a.drill_due),
                ]
            })
            .collect();
        render_table(
            &[
                "USER",
                "ENABLED",
                "PASSKEYS",
                "LAST SIGN-IN",
                "LAST DRILL",
                "DRILL DUE",
            ],
            &rows,
        )
    };
    if !l.warnings.is_empty() {
        text.push('\n');
        text.push_str(&warnings_text(&l.warnings));
    }
    text
}

fn state_changed_text(name: &str, state: PolicyState, forced: bool) -> String {
    let name = clean(name);
    match state {
        PolicyState::Enabled => {
            let mut text = format!("'{name}' is now enabled: it is enforced at every sign-in.\n");
            if forced {
                text.push_str(
                    "It was forced past the enforcement gate; the audit log records that.\n",
                );
            }
            text.push_str(&format!(
                "To stop enforcing it without losing it: cutover admin ca set-state \"{name}\" \
                 report-only\n"
            ));
            text
        }
        PolicyState::EnabledForReportingButNotEnforced => format!(
            "'{name}' is now report-only: evaluated at every sign-in and recorded, never \
             enforced. What it would do: cutover admin ca impact \"{name}\"\n"
        ),
        PolicyState::Disabled => format!("'{name}' is now disabled: it is not evaluated.\n"),
    }
}

/// Whether the answer to a confirmation question is yes.
fn is_yes(answer: &str) -> bool {
    matches!(
        first_line(answer).trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    )
}

/// Ask `question`; refuse when nobody can be asked (`what` names the change).
pub(super) fn confirm(question: &str, what: &str, yes: bool, interactive: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !interactive {
        bail!(
            "{what} needs a confirmation, but this run is not interactive (standard input is not \
             a terminal): nothing was changed. Re-run with --yes to go ahead"
        );
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| anyhow!("cannot read the answer from standard input: {e}"))?;
    if is_yes(&answer) {
        Ok(())
    } else {
        bail!("cancelled: nothing was changed")
    }
}

/// One item by its exact name among `(id, name)` pairs, with a hint when only the case
/// differs. `kind` is "policy" or "named location"; `list` is the command that lists them.
fn find_by_name(kind: &str, list: &str, name: &str, items: &[(Uuid, String)]) -> Result<Uuid> {
    let ids: Vec<Uuid> = items
        .iter()
        .filter(|(_, n)| n == name)
        .map(|(id, _)| *id)
        .collect();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => {
            let similar: Vec<String> = items
                .iter()
                .filter(|(_, n)| n.to_lowercase() == name.to_lowercase())
                .map(|(_, n)| format!("'{}'", clean(n)))
                .collect();
            if similar.is_empty() {
                bail!(
                    "no {kind} is named '{}'; give its id or exact display name ({list})",
                    clean(name)
                )
            }
            bail!(
                "no {kind} is named exactly '{}' (names are matched exactly; did you mean {}?)",
                clean(name),
                similar.join(" or ")
            )
        }
        many => bail!(
            "{} {} are named '{}' ({}); give the id instead",
            many.len(),
            kind.strip_suffix('y')
                .map_or_else(|| format!("{kind}s"), |k| format!("{k}ies")),
            clean(name),
            many.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

// ---- talking to the server ------------------------------------------------------------------

const POLICIES: [&str; 3] = ["identity", "conditionalAccess", "policies"];
const LOCATIONS: [&str; 3] = ["identity", "conditionalAccess", "namedLocations"];
const EVALUATE: [&str; 3] = ["identity", "conditionalAccess", "evaluate"];
const BREAK_GLASS: [&str; 1] = ["breakGlass"];
const DRILLS: [&str; 2] = ["breakGlass", "drills"];
/// The gate's refusal code in a 409.
const GATE_REFUSED: &str = "enforcementGateRefused";

fn under<'a>(base: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut p = base.to_vec();
    p.extend_from_slice(rest);
    p
}

fn required(resp: Option<Value>, what: &str) -> Result<Value> {
    resp.ok_or_else(|| anyhow!("the server returned no {what}"))
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == StatusCode::NOT_FOUND)
}

/// A refused request: the error and the answer's JSON body (the gate's reasons are there).
struct Refusal {
    error: ApiError,
    body: Option<Value>,
}

impl Refusal {
    /// The gate's verdict when this is the enforcement gate's refusal.
    fn gate(&self) -> Option<GateView> {
        if self.error.status != StatusCode::CONFLICT
            || self.error.code.as_deref() != Some(GATE_REFUSED)
        {
            return None;
        }
        let gate = self.body.as_ref().and_then(|b| b.get("gate")).cloned();
        Some(
            gate.and_then(|g| serde_json::from_value(g).ok())
                .unwrap_or_default(),
        )
    }
}

/// Like `Api::send`, but a refusal keeps its body.
async fn send_keeping_body(
    api: &Api,
    method: Method,
    segments: &[&str],
    query: &[(&str, Option<String>)],
    body: Option<&Value>,
) -> Result<Result<Option<Value>, Refusal>> {
    let mut path = vec!["api", "v1"];
    path.extend_from_slice(segments);
    let url = endpoint_url(&api.base, &path, query);
    Ok(api
        .fetch_keeping_body(method, url, body)
        .await?
        .map_err(|(error, body)| Refusal { error, body }))
}

/// A policy by id or exact display name, with the server's JSON of it.
async fn resolve_policy(api: &Api, key: &str) -> Result<(PolicyView, Value)> {
    if let Ok(id) = Uuid::parse_str(key) {
        return match api
            .send(Method::GET, &under(&POLICIES, &[key]), &[], None)
            .await
        {
            Ok(resp) => {
                let v = required(resp, "policy")?;
                Ok((policy_view(v.clone())?, v))
            }
            Err(e) if is_not_found(&e) => {
                bail!("no Conditional Access policy has the id {id} (cutover admin ca list)")
            }
            Err(e) => Err(e),
        };
    }
    let resp = api.send(Method::GET, &POLICIES, &[], None).await?;
    let raw: Vec<Value> = match resp.clone() {
        Some(v) => from_response::<ListResponse<Value>>(v)?.value,
        None => Vec::new(),
    };
    let policies = policy_list(resp)?;
    let items: Vec<(Uuid, String)> = policies
        .iter()
        .map(|p| (p.policy.id, p.policy.display_name.clone()))
        .collect();
    let id = find_by_name("policy", "cutover admin ca list", key, &items)?;
    let at = policies
        .iter()
        .position(|p| p.policy.id == id)
        .unwrap_or_default();
    Ok((policies[at].clone(), raw[at].clone()))
}

async fn list_locations(api: &Api) -> Result<(Option<Value>, Vec<LocationView>)> {
    let resp = api.send(Method::GET, &LOCATIONS, &[], None).await?;
    let list: ListResponse<LocationView> = match &resp {
        Some(v) => from_response(v.clone())?,
        None => ListResponse::new(Vec::new()),
    };
    Ok((resp, list.value))
}

/// A named location's id, from its id or exact display name.
async fn resolve_location(api: &Api, key: &str) -> Result<(Uuid, String)> {
    let (_, all) = list_locations(api).await?;
    if let Ok(id) = Uuid::parse_str(key) {
        let name = all
            .iter()
            .find(|l| l.id == id)
            .map_or_else(|| id.to_string(), |l| l.display_name.clone());
        return Ok((id, name));
    }
    let items: Vec<(Uuid, String)> = all.iter().map(|l| (l.id, l.display_name.clone())).collect();
    let id = find_by_name(
        "named location",
        "cutover admin ca locations list",
        key,
        &items,
    )?;
    Ok((id, key.to_owned()))
}

/// Read `GET /<kind>/<id>` and take a name from it; `None` when it is not there.
async fn name_of<T: serde::de::DeserializeOwned>(
    api: &Api,
    kind: &str,
    id: &str,
    name: impl Fn(T) -> String,
) -> Result<Option<String>> {
    if Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    match api.send(Method::GET, &[kind, id], &[], None).await {
        Ok(Some(v)) => Ok(serde_json::from_value::<T>(v).ok().map(name)),
        Ok(None) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(Some(format!("{id} (not found)"))),
        Err(e) => Err(e),
    }
}

/// Names for the users, groups, applications and locations a policy lists.
async fn names_for(api: &Api, p: &ConditionalAccessPolicy) -> Result<Names> {
    let mut names = Names::default();
    let c = &p.conditions;
    for id in c.users.include_users.iter().chain(&c.users.exclude_users) {
        if let Some(n) = name_of(api, "users", id, |u: UserView| u.user_principal_name).await? {
            names.users.insert(id.clone(), n);
        }
    }
    for id in c.users.include_groups.iter().chain(&c.users.exclude_groups) {
        if let Some(n) = name_of(api, "groups", id, |g: GroupView| g.display_name).await? {
            names.groups.insert(id.clone(), n);
        }
    }
    for id in c
        .applications
        .include_applications
        .iter()
        .chain(&c.applications.exclude_applications)
    {
        let n = name_of(api, "applications", id, |a: ApplicationView| {
            format!("{} ({})", a.display_name, a.client_id)
        })
        .await?;
        if let Some(n) = n {
            names.apps.insert(id.clone(), n);
        }
    }
    if c.locations.is_some() {
        let (_, all) = list_locations(api).await?;
        for l in all {
            let trusted = if l.is_trusted { ", trusted" } else { "" };
            names.locations.insert(
                l.id.to_string(),
                format!("{} ({}{trusted})", l.display_name, l.ip_ranges.join(", ")),
            );
        }
    }
    Ok(names)
}

/// A policy file's text; `-` is standard input.
fn read_policy_file(path: &Path) -> Result<PolicyFile> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| anyhow!("cannot read the policy from standard input: {e}"))?;
        return policy_from_text(&text, "standard input");
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read the policy file {}: {e}", path.display()))?;
    policy_from_text(&text, &path.display().to_string())
}

/// Tell a person something: standard output for tables, standard error in JSON mode (where
/// standard output is for the answer).
pub(super) fn tell(out: OutputFormat, text: &str) -> Result<()> {
    if out == OutputFormat::Table {
        emit(text)
    } else {
        eprint!("{text}");
        Ok(())
    }
}

/// The gate's refusal: its reasons shown (when not shown already), and the error.
fn gate_refused(
    out: OutputFormat,
    name: &str,
    r: &Refusal,
    gate: &GateView,
    shown: Option<&GateView>,
) -> Result<()> {
    if out != OutputFormat::Table {
        print_json(out, r.body.as_ref())?;
    } else if shown.is_none_or(|s| s.reasons != gate.reasons) {
        emit(&format!(
            "The server's enforcement gate refused: {}\n{}",
            r.error.message,
            reasons_text(&gate.reasons)
        ))?;
    }
    let codes = gate
        .reasons
        .iter()
        .map(|r| r.code.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let codes = if codes.is_empty() {
        String::new()
    } else {
        format!(" ({codes})")
    };
    bail!(
        "the enforcement gate refused to enable '{}'{codes}: nothing was changed. Fix what the \
         reasons name (run it report-only longer, adjust the policy, designate or drill \
         break-glass accounts), or override the gate with --force (recorded in the audit log)",
        clean(name)
    )
}

pub(super) async fn ca(api: &Api, out: OutputFormat, cmd: CaCommand) -> Result<()> {
    match cmd {
        CaCommand::List => {
            let resp = api.send(Method::GET, &POLICIES, &[], None).await?;
            match out {
                OutputFormat::Json => print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => print_json_lines(resp.as_ref()),
                OutputFormat::Table => emit(&policies_text(&policy_list(resp)?)),
            }
        }
        CaCommand::Show { policy } => {
            let (view, raw) = resolve_policy(api, &policy).await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&raw));
            }
            let names = names_for(api, &view.policy).await?;
            emit(&policy_text(&view, &names))
        }
        CaCommand::Create { file } => create(api, out, &file).await,
        CaCommand::SetState(a) => set_state(api, out, a).await,
        CaCommand::Delete { policy, yes } => {
            let (view, _) = resolve_policy(api, &policy).await?;
            let p = &view.policy;
            let name = clean(&p.display_name);
            let mut question = format!(
                "Delete the {} policy '{name}' ({})? It cannot be undone.",
                state_label(p.state),
                p.id
            );
            if p.state == PolicyState::Enabled {
                question.push_str(" It is enforced: its protection ends at once.");
            }
            let interactive = std::io::stdin().is_terminal();
            confirm(&question, "deleting a policy", yes, interactive)?;
            let id = p.id.to_string();
            let resp = api
                .send(Method::DELETE, &under(&POLICIES, &[&id]), &[], None)
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            emit(&format!("Deleted the policy '{name}' ({id}).\n"))
        }
        CaCommand::Impact { policy, since } => {
            let (view, _) = resolve_policy(api, &policy).await?;
            let id = view.policy.id.to_string();
            let resp = api
                .send(
                    Method::GET,
                    &under(&POLICIES, &[&id, "impact"]),
                    &[("since", since)],
                    None,
                )
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let impact: ImpactView = from_response(required(resp, "impact report")?)?;
            let mut text = impact_text(&view.policy.display_name, &impact);
            if view.policy.state != PolicyState::EnabledForReportingButNotEnforced {
                text.push_str(&format!(
                    "\nThe policy is {} now: it gathers evidence only while report-only.\n",
                    state_label(view.policy.state)
                ));
            }
            emit(&text)
        }
        CaCommand::WhatIf(a) => {
            let resp = api
                .send(Method::POST, &EVALUATE, &[], Some(&a.body()))
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let answer: WhatIfAnswer = from_response(required(resp, "evaluation")?)?;
            emit(&what_if_text(&answer))
        }
        CaCommand::Locations(cmd) => locations(api, out, cmd).await,
        CaCommand::Gate { threshold } => {
            let path = ["identity", "conditionalAccess", "gateSettings"];
            let resp = match threshold {
                Some(t) => {
                    if !(0.0..=100.0).contains(&t) {
                        bail!("--threshold must be between 0 and 100 (percent), got {t}");
                    }
                    api.send(
                        Method::PUT,
                        &path,
                        &[],
                        Some(&serde_json::json!({"interruptionThresholdPercent": t})),
                    )
                    .await?
                }
                None => api.send(Method::GET, &path, &[], None).await?,
            };
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let t = resp
                .as_ref()
                .and_then(|v| v["interruptionThresholdPercent"].as_f64())
                .ok_or_else(|| anyhow!("the server returned no threshold"))?;
            println!(
                "Enforcement gate: enabling a policy is refused when more than {t} % of its users would have been interrupted or blocked over the last 48 hours."
            );
            Ok(())
        }
    }
}

async fn create(api: &Api, out: OutputFormat, file: &Path) -> Result<()> {
    let f = read_policy_file(file)?;
    let mut notes = String::new();
    if f.id_dropped {
        notes.push_str(
            "note: the id in the file is ignored; the server gives the new policy its own.\n",
        );
    }
    if f.state_defaulted {
        notes.push_str(
            "note: the file gives no state, so the policy is created report-only \
             (enabledForReportingButNotEnforced): evaluated and recorded, never enforced.\n",
        );
    }
    tell(out, &notes)?;
    match send_keeping_body(api, Method::POST, &POLICIES, &[], Some(&f.body)).await? {
        Ok(resp) => {
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let view = policy_view(required(resp, "policy")?)?;
            let names = names_for(api, &view.policy).await?;
            emit(&format!(
                "Created the policy '{}' ({}), {}.\n\n{}",
                clean(&view.policy.display_name),
                view.policy.id,
                state_label(view.policy.state),
                policy_text(&view, &names)
            ))
        }
        Err(r) => match r.gate() {
            Some(gate) => {
                let name = f
                    .body
                    .get("displayName")
                    .and_then(Value::as_str)
                    .unwrap_or("the policy")
                    .to_owned();
                gate_refused(out, &name, &r, &gate, None)
            }
            None => Err(r.error.into()),
        },
    }
}

async fn set_state(api: &Api, out: OutputFormat, a: SetStateArgs) -> Result<()> {
    let target = a.state.policy_state();
    if a.force && target != PolicyState::Enabled {
        bail!(
            "--force overrides the enforcement gate, which only guards switching to enabled; \
             {} needs no force",
            state_label(target)
        );
    }
    let (view, raw) = resolve_policy(api, &a.policy).await?;
    let p = &view.policy;
    let name = p.display_name.clone();
    if p.state == target {
        if out != OutputFormat::Table {
            return print_json(out, Some(&raw));
        }
        return emit(&format!(
            "'{}' is already {}; nothing was changed.\n",
            clean(&name),
            state_label(target)
        ));
    }
    let id = p.id.to_string();
    let mut force = false;
    let mut shown_gate = None;
    if target == PolicyState::Enabled {
        let resp = api
            .send(Method::GET, &under(&POLICIES, &[&id, "impact"]), &[], None)
            .await?;
        let impact: ImpactView = from_response(required(resp, "impact report")?)?;
        tell(out, &format!("{}\n", impact_text(&name, &impact)))?;
        let allowed = impact.gate.as_ref().is_some_and(|g| g.allowed);
        shown_gate = impact.gate;
        if a.force && !allowed {
            tell(
                out,
                "--force overrides the enforcement gate: the policy is enforced despite the \
                 reasons above, and the audit log records that it was forced.\n",
            )?;
            let interactive = std::io::stdin().is_terminal();
            confirm(
                &format!("Enable '{}' past the enforcement gate?", clean(&name)),
                "forcing a policy past the enforcement gate",
                a.yes,
                interactive,
            )?;
            force = true;
        } else if a.force {
            tell(
                out,
                "note: the gate allows this switch; it is made without --force.\n",
            )?;
        }
    }
    let body = json!({"state": target.as_str()});
    let query = [("force", force.then(|| "true".to_owned()))];
    match send_keeping_body(
        api,
        Method::PATCH,
        &under(&POLICIES, &[&id]),
        &query,
        Some(&body),
    )
    .await?
    {
        Ok(resp) => {
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            emit(&state_changed_text(&name, target, force))
        }
        Err(r) => match r.gate() {
            Some(gate) => gate_refused(out, &name, &r, &gate, shown_gate.as_ref()),
            None => Err(r.error.into()),
        },
    }
}

async fn locations(api: &Api, out: OutputFormat, cmd: LocationsCommand) -> Result<()> {
    match cmd {
        LocationsCommand::List => {
            let (resp, all) = list_locations(api).await?;
            match out {
                OutputFormat::Json => print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => print_json_lines(resp.as_ref()),
                OutputFormat::Table => emit(&locations_list_text(&all)),
            }
        }
        LocationsCommand::Create {
            name,
            ranges,
            trusted,
        } => {
            let body = json!({"displayName": name, "ipRanges": ranges, "isTrusted": trusted});
            let resp = api.send(Method::POST, &LOCATIONS, &[], Some(&body)).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let l: LocationView = from_response(required(resp, "named location")?)?;
            emit(&format!(
                "Created the named location '{}' ({}){}: {}.\nPolicies name it by its id in \
                 conditions.locations{}.\n",
                clean(&l.display_name),
                l.id,
                if l.is_trusted { ", trusted" } else { "" },
                clean(&l.ip_ranges.join(", ")),
                if l.is_trusted {
                    ", or as one of AllTrusted"
                } else {
                    ""
                }
            ))
        }
        LocationsCommand::Delete { location } => {
            let (id, name) = resolve_location(api, &location).await?;
            let key = id.to_string();
            let resp = api
                .send(Method::DELETE, &under(&LOCATIONS, &[&key]), &[], None)
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            emit(&format!(
                "Deleted the named location '{}' ({key}).\n",
                clean(&name)
            ))
        }
    }
}

async fn break_glass_list(api: &Api) -> Result<(Option<Value>, BreakGlassList)> {
    let resp = api.send(Method::GET, &BREAK_GLASS, &[], None).await?;
    let list = match &resp {
        Some(v) => from_response(v.clone())?,
        None => BreakGlassList::default(),
    };
    Ok((resp, list))
}

async fn set_break_glass(api: &Api, user: &str, on: bool) -> Result<Option<Value>> {
    api.send(
        Method::PATCH,
        &["users", user],
        &[],
        Some(&json!({"breakGlass": on})),
    )
    .await
}

pub(super) async fn break_glass(
    api: &Api,
    out: OutputFormat,
    cmd: BreakGlassCommand,
) -> Result<()> {
    match cmd {
        BreakGlassCommand::List => {
            let (resp, list) = break_glass_list(api).await?;
            match out {
                OutputFormat::Json => print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => print_json_lines(resp.as_ref()),
                OutputFormat::Table => emit(&break_glass_text(&list)),
            }
        }
        BreakGlassCommand::Designate { user } => {
            let resp = set_break_glass(api, &user, true).await?;
            let upn = resp
                .as_ref()
                .and_then(|v| v.get("userPrincipalName"))
                .and_then(Value::as_str)
                .unwrap_or(&user)
                .to_owned();
            let (_, list) = break_glass_list(api).await?;
            if out != OutputFormat::Table {
                eprint!("{}", warnings_text(&list.warnings));
                return print_json(out, resp.as_ref());
            }
            let mut text = format!(
                "{} is now a break-glass account: no Conditional Access policy applies to it, it \
                 signs in with a passkey only, and every sign-in raises an alert.\n",
                clean(&upn)
            );
            let has_passkey = list
                .value
                .iter()
                .find(|a| a.user_principal_name.eq_ignore_ascii_case(&upn))
                .is_some_and(|a| a.passkeys > 0);
            if !has_passkey {
                text.push_str(&format!(
                    "Next: give it a passkey (cutover admin users tap create {} --once, then sign \
                     in and add one on /my/security), sign in with it and record the drill \
                     (cutover admin break-glass drill record {}).\n",
                    clean(&upn),
                    clean(&upn)
                ));
            }
            if !list.warnings.is_empty() {
                text.push('\n');
                text.push_str(&warnings_text(&list.warnings));
            }
            emit(&text)
        }
        BreakGlassCommand::Remove { user, yes } => {
            let interactive = std::io::stdin().is_terminal();
            confirm(
                &format!(
                    "Make {} an ordinary account again? Conditional Access policies apply to it \
                     from now on, and the emergency path has one account fewer.",
                    clean(&user)
                ),
                "removing a break-glass account",
                yes,
                interactive,
            )?;
            let resp = set_break_glass(api, &user, false).await?;
            let (_, list) = break_glass_list(api).await?;
            if out != OutputFormat::Table {
                eprint!("{}", warnings_text(&list.warnings));
                return print_json(out, resp.as_ref());
            }
            let mut text = format!(
                "{} is no longer a break-glass account: Conditional Access policies apply to it.\n",
                clean(&user)
            );
            if !list.warnings.is_empty() {
                text.push('\n');
                text.push_str(&warnings_text(&list.warnings));
            }
            emit(&text)
        }
        BreakGlassCommand::Drill(DrillCommand::Record { user }) => {
            let resp = api
                .send(Method::POST, &DRILLS, &[], Some(&json!({"user": user})))
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let v = resp.unwrap_or(Value::Null);
            let upn = v
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .unwrap_or(&user);
            let at = v
                .get("drillDateTime")
                .and_then(Value::as_str)
                .unwrap_or("now");
            let mut text = format!(
                "Recorded a break-glass drill for {} at {}",
                clean(upn),
                clean(at)
            );
            if let Some(s) = v.get("signInId").and_then(Value::as_str) {
                text.push_str(&format!(" (sign-in {})", clean(s)));
            }
            text.push_str(". The next one is due within 90 days.\n");
            emit(&text)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        #[command(subcommand, long_about = CA_LONG_ABOUT)]
        Ca(CaCommand),
        #[command(subcommand, long_about = BREAK_GLASS_LONG_ABOUT)]
        BreakGlass(BreakGlassCommand),
    }

    fn parse(args: &[&str]) -> Result<Top, clap::Error> {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.command)
    }

    fn g(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_command_line_parses_as_documented() {
        let Ok(Top::Ca(CaCommand::SetState(a))) = parse(&[
            "ca",
            "set-state",
            "Require MFA",
            "enabled",
            "--force",
            "--yes",
        ]) else {
            panic!("set-state parses");
        };
        assert_eq!(a.state, StateArg::Enabled);
        assert!(a.force && a.yes);
        for s in [
            "report-only",
            "reportOnly",
            "enabledForReportingButNotEnforced",
        ] {
            let Ok(Top::Ca(CaCommand::SetState(a))) = parse(&["ca", "set-state", "p", s]) else {
                panic!("{s}");
            };
            assert_eq!(
                a.state.policy_state(),
                PolicyState::EnabledForReportingButNotEnforced
            );
        }
        let Ok(Top::Ca(CaCommand::WhatIf(w))) = parse(&[
            "ca",
            "what-if",
            "--user",
            "u@x.example",
            "--app",
            "app1",
            "--ip",
            "203.0.113.9",
            "--platform",
            "iOS",
            "--methods",
            "pwd,otp",
        ]) else {
            panic!("what-if parses");
        };
        assert_eq!(
            w.body(),
            json!({"user": "u@x.example", "application": "app1", "clientAppType": "browser",
                   "ipAddress": "203.0.113.9", "platform": "iOS", "methods": ["pwd", "otp"]})
        );
        let Ok(Top::Ca(CaCommand::Locations(LocationsCommand::Create {
            ranges, trusted, ..
        }))) = parse(&[
            "ca",
            "locations",
            "create",
            "--name",
            "Office",
            "--ranges",
            "10.0.0.0/8, 2001:db8::/32",
            "--trusted",
        ])
        else {
            panic!("locations create parses");
        };
        assert_eq!(ranges, ["10.0.0.0/8", "2001:db8::/32"]);
        assert!(trusted);
        let Ok(Top::Ca(CaCommand::Impact { since, .. })) =
            parse(&["ca", "impact", "p", "--since", "48h"])
        else {
            panic!("impact parses");
        };
        assert_eq!(since.as_deref(), Some("48h"));
        assert!(matches!(
            parse(&["break-glass", "drill", "record", "g@x.example"]),
            Ok(Top::BreakGlass(BreakGlassCommand::Drill(
                DrillCommand::Record { .. }
            )))
        ));
        for bad in [
            &["ca", "set-state", "p", "on"][..],
            &["ca", "set-state", "p", "enabled", "--yes"],
            &["ca", "what-if", "--user", "u"],
            &["ca", "what-if", "--user", "u", "--app", "a", "--ip", "nope"],
            &[
                "ca",
                "what-if",
                "--user",
                "u",
                "--app",
                "a",
                "--platform",
                "ios",
            ],
            &[
                "ca",
                "what-if",
                "--user",
                "u",
                "--app",
                "a",
                "--methods",
                "pwd,sms",
            ],
            &[
                "ca",
                "what-if",
                "--user",
                "u",
                "--app",
                "a",
                "--auth-time",
                "yesterday",
            ],
            &["ca", "locations", "create", "--name", "x"],
            &[
                "ca",
                "locations",
                "create",
                "--name",
                "x",
                "--ranges",
                "10.1.2.3/8",
            ],
            &["ca", "impact", "p", "--since", "2 days"],
            &["ca", "create"],
            &["ca", "show", ".."],
            &["break-glass", "drill"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let e = cidr_arg("10.1.2.3/8").unwrap_err();
        assert!(e.contains("10.1.2.3/8"), "{e}");
        assert_eq!(
            since_arg("2026-05-01T00:00:00Z").unwrap(),
            "2026-05-01T00:00:00Z"
        );
        assert_eq!(since_arg(" 7d ").unwrap(), "7d");
        for bad in ["1h30m", "2w", "90s", "400d", "0m", "h"] {
            assert!(since_arg(bad).is_err(), "{bad}");
        }
        assert!(since_arg("2w").unwrap_err().contains("48h, 7d"));
    }

    fn policy(v: Value) -> ConditionalAccessPolicy {
        serde_json::from_value(v).unwrap()
    }

    fn mfa_policy() -> Value {
        json!({
            "id": g(1), "displayName": "Require MFA", "state": "enabledForReportingButNotEnforced",
            "conditions": {
                "users": {"includeUsers": ["All"], "excludeGroups": [g(7).to_string()]},
                "applications": {"includeApplications": ["All"]},
                "clientAppTypes": ["all"],
                "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]},
            },
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        })
    }

    #[test]
    fn policy_files_default_to_report_only_and_name_their_mistakes() {
        let mut v = mfa_policy();
        v.as_object_mut().unwrap().remove("state");
        v["createdDateTime"] = json!("2026-01-01T00:00:00Z");
        let f = policy_from_text(&v.to_string(), "p.json").unwrap();
        assert!(f.state_defaulted && f.id_dropped);
        assert_eq!(f.body["state"], "enabledForReportingButNotEnforced");
        assert!(f.body.get("id").is_none() && f.body.get("createdDateTime").is_none());
        let mut given = mfa_policy();
        given.as_object_mut().unwrap().remove("id");
        given["state"] = json!("disabled");
        let f = policy_from_text(&given.to_string(), "p.json").unwrap();
        assert!(!f.state_defaulted && !f.id_dropped);
        assert_eq!(f.body["state"], "disabled");

        let e = policy_from_text("{", "p.json").unwrap_err().to_string();
        assert!(e.starts_with("p.json is not JSON (line 1"), "{e}");
        let e = policy_from_text("[]", "p.json").unwrap_err().to_string();
        assert!(e.contains("does not hold a policy"), "{e}");
        let mut typo = mfa_policy();
        typo["grantControl"] = typo["grantControls"].take();
        typo.as_object_mut().unwrap().remove("grantControls");
        let e = policy_from_text(&typo.to_string(), "p.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a Conditional Access policy") && e.contains("grantControl"),
            "{e}"
        );
        let mut state = mfa_policy();
        state["state"] = json!("reportOnly");
        let e = policy_from_text(&state.to_string(), "p.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("enabledForReportingButNotEnforced"), "{e}");
    }

    #[test]
    fn server_policies_keep_their_times_apart() {
        let mut v = mfa_policy();
        v["createdDateTime"] = json!("2026-01-01T00:00:00Z");
        v["modifiedDateTime"] = json!("2026-01-02T00:00:00Z");
        v["stateChangedDateTime"] = json!("2026-01-03T00:00:00Z");
        v["somethingNew"] = json!(1);
        let p = policy_view(v).unwrap();
        assert_eq!(p.policy.display_name, "Require MFA");
        assert_eq!(p.created.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(p.state_changed.as_deref(), Some("2026-01-03T00:00:00Z"));
        assert!(policy_view(json!("x")).is_err());
    }

    #[test]
    fn the_list_says_whom_a_policy_targets_and_what_it_demands() {
        let mfa = policy_view(mfa_policy()).unwrap();
        let mut block = mfa_policy();
        block["id"] = json!(g(2));
        block["displayName"] = json!("Block legacy");
        block["state"] = json!("enabled");
        block["conditions"]["users"] = json!({"includeUsers": [g(3).to_string(), g(4).to_string()],
                   "includeGroups": [g(5).to_string()]});
        block["conditions"]["applications"] = json!({"includeApplications": [g(6).to_string()]});
        block["conditions"]["clientAppTypes"] = json!(["exchangeActiveSync", "other"]);
        block["conditions"]
            .as_object_mut()
            .unwrap()
            .remove("locations");
        block["conditions"]["platforms"] =
            json!({"includePlatforms": ["all"], "excludePlatforms": ["iOS"]});
        block["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]});
        let block = policy_view(block).unwrap();
        let mut freq = mfa_policy();
        freq["grantControls"] = json!({"operator": "AND", "builtInControls": ["mfa"],
            "authenticationStrength": {"id": "phishingResistantMfa"}});
        freq["sessionControls"] =
            json!({"signInFrequency": {"isEnabled": true, "value": 8, "type": "hours"}});
        let freq = policy(freq);

        let text = policies_text(&[mfa, block]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME") && lines[0].contains("GRANT"),
            "{text}"
        );
        for want in [
            "Require MFA",
            "report-only",
            "all users except 1 group",
            "all apps",
            "any location except trusted locations",
            "mfa",
        ] {
            assert!(lines[1].contains(want), "{want}: {text}");
        }
        for want in [
            "Block legacy",
            "enabled",
            "2 users and 1 group",
            "1 app",
            "exchangeActiveSync,other; all platforms except iOS",
            "block",
        ] {
            assert!(lines[2].contains(want), "{want}: {text}");
        }
        assert!(text.contains("never enforced"), "{text}");
        assert_eq!(
            grant_short(&freq),
            "mfa AND strength phishingResistantMfa; sign in every 8 hours"
        );
        assert_eq!(
            grant_words(&freq),
            "require all of: multi-factor authentication (mfa), the authentication strength \
             phishingResistantMfa"
        );
        assert_eq!(
            platforms_text(&block_policy()).as_deref(),
            Some("all platforms except iOS")
        );
        assert!(policies_text(&[]).contains("ca create --file"));
    }

    fn block_policy() -> ConditionalAccessPolicy {
        let mut v = mfa_policy();
        v["conditions"]["platforms"] =
            json!({"includePlatforms": ["all"], "excludePlatforms": ["iOS"]});
        policy(v)
    }

    #[test]
    fn a_policy_reads_in_words_with_names() {
        let mut v = mfa_policy();
        v["conditions"]["users"] = json!({"includeUsers": [g(3).to_string()],
            "excludeUsers": [g(4).to_string()], "excludeGroups": [g(7).to_string()]});
        v["conditions"]["locations"] =
            json!({"includeLocations": [g(8).to_string()], "excludeLocations": ["AllTrusted"]});
        v["createdDateTime"] = json!("2026-01-01T00:00:00Z");
        let view = policy_view(v).unwrap();
        let names = Names {
            users: BTreeMap::from([(g(3).to_string(), "ann@corp.example".into())]),
            groups: BTreeMap::from([(g(7).to_string(), "Kiosks".into())]),
            apps: BTreeMap::new(),
            locations: BTreeMap::from([(g(8).to_string(), "Branch (198.51.100.0/24)".into())]),
        };
        let text = policy_text(&view, &names);
        assert!(
            text.starts_with("When a sign-in matches") && text.contains("require multi-factor"),
            "{text}"
        );
        for want in [
            "report-only: evaluated at every sign-in and recorded, never enforced",
            &format!("ann@corp.example except {} and members of Kiosks", g(4)),
            "all applications",
            "all client apps",
            "Branch (198.51.100.0/24) except trusted locations",
            "any (not a condition)",
            "2026-01-01T00:00:00Z",
            "excluded from this policy by the engine itself",
            "ca impact \"Require MFA\"",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    fn impact(v: Value) -> ImpactView {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_impact_report_summarises_groups_and_ends_with_the_gate() {
        let i = impact(json!({
            "policyId": g(1), "windowStart": 1_767_225_600_000_i64, "windowEnd": 1_767_398_400_000_i64,
            "records": 40, "appliedUsers": 20, "interruptedUsers": 2, "blockedUsers": 1,
            "interruptionRate": 10.0,
            "byReason": {"requires mfa": 2}, "byPlatform": {"android": 1, "windows": 1},
            "users": [
                {"userId": g(3), "userPrincipalName": "ann@corp.example", "platform": "android",
                 "result": "reportOnlyFailure", "reason": "blocked", "lastAt": 1, "signIns": 3},
            ],
            "evidenceSince": 1_767_225_600_000_i64,
            "gate": {"allowed": false, "reasons": [
                {"code": "interruptionRateAboveThreshold",
                 "message": "2 of 20 users (10.00 %) would have been interrupted or blocked; the threshold is 7.5 %"},
            ]},
        }));
        let text = impact_text("Require MFA", &i);
        assert!(
            text.starts_with(
                "Impact of 'Require MFA' if it were enforced, from its report-only \
                              results between 2026-01-01T00:00:00Z and 2026-01-03T00:00:00Z:"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "usersInterrupted:   2 (10 % of the users it applied to; the gate's \
                           threshold is 7.5 %: ABOVE IT)"
            ),
            "{text}"
        );
        assert!(text.contains("(48.0 h of evidence)"), "{text}");
        let reason = text.find("By reason:").unwrap();
        let platform = text.find("By platform:").unwrap();
        let users = text
            .find("Users it would have stopped (the first 1 of 2)")
            .unwrap();
        let gate = text.find("REFUSED").unwrap();
        assert!(
            reason < platform && platform < users && users < gate,
            "{text}"
        );
        assert!(text.contains("reportOnlyFailure"), "{text}");
        assert!(text.ends_with("the threshold is 7.5 %\n"), "{text}");

        let empty = impact(json!({
            "records": 0, "appliedUsers": 0, "interruptedUsers": 0, "blockedUsers": 0,
            "interruptionRate": 0.0, "byReason": {}, "byPlatform": {}, "users": [],
            "evidenceSince": null, "interruptionThresholdPercent": 2.5,
            "gate": {"allowed": false, "reasons": [
                {"code": "noReportOnlyEvidence", "message": "no report-only result in the window"}]},
        }));
        let text = impact_text("P", &empty);
        assert!(
            text.contains("No report-only result in this window"),
            "{text}"
        );
        assert!(text.contains("threshold is 2.5 %)"), "{text}");
        let unknown = impact(json!({"interruptionRate": 8.0, "interruptedUsers": 2,
                                     "gate": {"allowed": true, "reasons": []}}));
        assert!(
            threshold_text(&unknown) == "the gate's threshold is 5 % unless configured otherwise",
            "{}",
            threshold_text(&unknown)
        );
        assert!(text.contains("evidenceSince:      none"), "{text}");
        assert!(
            !text.contains("By reason") && !text.contains("Users it would"),
            "{text}"
        );
        assert!(text.contains("noReportOnlyEvidence"), "{text}");
        let ok = gate_text(Some(&GateView {
            allowed: true,
            reasons: vec![],
        }));
        assert!(ok.contains("ALLOWED"), "{ok}");
    }

    #[test]
    fn what_if_names_each_result_and_the_decision_in_words() {
        let a: WhatIfAnswer = serde_json::from_value(json!({
            "decision": {"decision": "stepUp", "requirement": {"builtIn": "mfa"},
                         "policies": [g(1)]},
            "results": [
                {"policyId": g(1), "displayName": "Require MFA", "result": "interrupted",
                 "reason": "requires mfa; the sign-in has pwd"},
                {"policyId": g(2), "displayName": "Block legacy", "result": "notApplied",
                 "reason": "client app type 'browser' not included"},
                {"policyId": g(3), "displayName": "Trial", "result": "reportOnlyFailure",
                 "reason": "blocks"},
            ],
            "explanation": "step up to mfa",
        }))
        .unwrap();
        let text = what_if_text(&a);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("POLICY") && lines[0].contains("REASON"));
        assert!(
            lines[1].contains("Require MFA") && lines[1].contains("interrupted"),
            "{text}"
        );
        assert!(
            text.contains(
                "Decision: STEP UP. The user must also satisfy mfa (required by \
                           'Require MFA')"
            ),
            "{text}"
        );
        assert!(
            text.contains("if enabled, 'Trial' would block it"),
            "{text}"
        );
        let allow: WhatIfAnswer = serde_json::from_value(json!({
            "decision": {"decision": "allow"},
            "results": [{"policyId": g(1), "displayName": "P", "result": "notApplied",
                         "reason": BREAK_GLASS_REASON}],
        }))
        .unwrap();
        let text = what_if_text(&allow);
        assert!(text.contains("Decision: ALLOW."), "{text}");
        assert!(text.contains("break-glass account"), "{text}");
        let block: WhatIfAnswer = serde_json::from_value(json!({
            "decision": {"decision": "block", "policies": [g(9)]}, "results": []}))
        .unwrap();
        let text = what_if_text(&block);
        assert!(
            text.starts_with("No policy is enabled or report-only"),
            "{text}"
        );
        assert!(text.contains(&format!("refused by {}", g(9))), "{text}");
        assert_eq!(
            requirement_text(Some(
                &json!({"custom": [{"id": "s1", "strength": {"name": "Keys"}}]})
            )),
            "the strength 'Keys' (s1)"
        );
    }

    #[test]
    fn break_glass_and_locations_read_as_tables_with_warnings() {
        let l: BreakGlassList = serde_json::from_value(json!({
            "value": [{"id": g(1), "userPrincipalName": "glass1@corp.example",
                       "accountEnabled": true, "passkeys": 0,
                       "lastSuccessfulSignInDateTime": null, "lastDrillDateTime": null,
                       "drillDue": true}],
            "warnings": ["only 1 enabled break-glass account(s): keep at least 2"],
        }))
        .unwrap();
        let text = break_glass_text(&l);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("USER") && lines[0].ends_with("DRILL DUE"));
        assert!(
            lines[1].contains("glass1@corp.example") && lines[1].contains("never"),
            "{text}"
        );
        assert!(
            text.ends_with("WARNING: only 1 enabled break-glass account(s): keep at least 2\n"),
            "{text}"
        );
        let none = break_glass_text(&BreakGlassList::default());
        assert!(none.contains("break-glass designate USER"), "{none}");

        let locs = vec![LocationView {
            id: g(5),
            display_name: "Office".into(),
            ip_ranges: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            is_trusted: true,
        }];
        let text = locations_list_text(&locs);
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .contains("Office  yes      10.0.0.0/8,2001:db8::/32"),
            "{text}"
        );
        assert!(locations_list_text(&[]).contains("locations create"));
    }

    #[test]
    fn long_reasons_are_not_cut_short() {
        let long = "x".repeat(100);
        let text = table_with_long_last(
            &["POLICY", "RESULT", "REASON"],
            &[
                vec!["P".into(), "failure".into(), long.clone()],
                vec!["Longer name".into(), "notApplied".into(), "r".into()],
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "POLICY       RESULT      REASON");
        assert_eq!(lines[1], format!("P            failure     {long}"));
        assert_eq!(lines[2], "Longer name  notApplied  r");
    }

    #[test]
    fn names_resolve_exactly_with_hints() {
        let items = [
            (g(1), "Require MFA".to_owned()),
            (g(2), "Twin".to_owned()),
            (g(3), "Twin".to_owned()),
        ];
        assert_eq!(
            find_by_name("policy", "cutover admin ca list", "Require MFA", &items).unwrap(),
            g(1)
        );
        let e = find_by_name("policy", "cutover admin ca list", "require mfa", &items)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean 'Require MFA'"), "{e}");
        let e = find_by_name("policy", "cutover admin ca list", "Twin", &items)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("2 policies are named 'Twin'"), "{e}");
        let e = find_by_name("policy", "cutover admin ca list", "Nope", &items)
            .unwrap_err()
            .to_string();
        assert!(e.contains("(cutover admin ca list)"), "{e}");
    }

    #[test]
    fn state_changes_and_confirmations_say_what_happens() {
        let t = state_changed_text("P", PolicyState::Enabled, true);
        assert!(t.contains("now enabled") && t.contains("audit log"), "{t}");
        assert!(!state_changed_text("P", PolicyState::Enabled, false).contains("audit"));
        assert!(
            state_changed_text("P", PolicyState::EnabledForReportingButNotEnforced, false)
                .contains("never enforced")
        );
        assert!(is_yes("y\n") && is_yes(" YES ") && !is_yes("") && !is_yes("no"));
        assert!(confirm("?", "x", true, false).is_ok());
        let e = confirm(
            "?",
            "forcing a policy past the enforcement gate",
            false,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("forcing a policy past the enforcement gate needs a confirmation")
                && e.contains("--yes")
                && e.contains("nothing was changed"),
            "{e}"
        );
        assert_eq!(percent(10.0), "10 %");
        assert_eq!(percent(2.5), "2.5 %");
        assert_eq!(percent(33.333), "33.33 %");
    }

    /// `s` with every run of whitespace as one space (help text is wrapped to the terminal).
    fn words(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn help(path: &[&str]) -> String {
        let mut cmd = Cli::command();
        let mut c = &mut cmd;
        for p in path {
            c = c.find_subcommand_mut(p).unwrap();
        }
        words(&c.render_long_help().to_string())
    }

    #[test]
    fn help_texts_teach_with_examples() {
        let ca = help(&["ca"]);
        for want in [
            "report-only (enabledForReportingButNotEnforced)",
            "cannot lock anyone out",
            "one wrong policy can lock everyone out",
            "less than 48 h",
            "5 % by default",
            "recorded in the audit log",
            "the engine excludes them from every policy itself",
            "ca what-if --user",
        ] {
            assert!(ca.contains(want), "{want:?} missing from ca --help");
        }
        let set = help(&["ca", "set-state"]);
        for want in ["not interactive", "--force --yes", "exits non-zero"] {
            assert!(set.contains(want), "{want:?} missing from set-state --help");
        }
        let create = help(&["ca", "create"]);
        assert!(create.contains("\"includeUsers\": [\"All\"]"), "{create}");
        assert!(create.contains("created report-only"), "{create}");
        let bg = help(&["break-glass"]);
        for want in [
            "excludes it from every policy itself",
            "passkey only",
            "at least two",
            "every 90 days",
            "drill record",
        ] {
            assert!(
                bg.contains(want),
                "{want:?} missing from break-glass --help"
            );
        }
        assert!(help(&["ca", "what-if"]).contains("hwk / swk"));
        assert!(help(&["ca", "locations"]).contains("AllTrusted"));
        assert!(help(&["ca", "impact"]).contains("--since 7d"));
    }
}
