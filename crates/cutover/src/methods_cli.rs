//! `cutover admin methods-policy …`, `cutover admin users passkeys …` and
//! `cutover admin reports registration`: the authentication methods policy (SPEC §6.1: which
//! methods, for whom, which passkey models), a user's passkeys (list, and delete for a lost
//! device), and the registration report (who has registered what).
//!
//! This is a child module of `admin_cli` (declared there with `#[path]`), so it shares that
//! module's signed-in [`Api`], its output helpers and its conventions: tables for people,
//! `--output json|jsonl` for scripts, API errors as `ApiError`s with the server's message.
//!
//! A policy change that touches passkey targeting or key restrictions can lock people out, so
//! `methods-policy set` previews it against the registered passkeys first
//! (`…/authenticationMethodsPolicy/preview`) and asks for confirmation (or `--yes`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use cutover_core::device::DeviceFamily;
use cutover_core::methods_policy::{
    AuthenticationMethodsPolicy, Enforcement, KeyRestrictions, MethodTarget,
};
use cutover_proto::{GroupView, ListResponse};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    Api, ApiError, OutputFormat, clean, emit, first_line, from_response, path_segment, print_json,
    print_json_lines, render_fields, render_table, yes_no,
};

/// `cutover admin methods-policy --help`.
pub const METHODS_POLICY_LONG_ABOUT: &str = "\
The authentication methods policy says which sign-in methods may be used, and by whom: \
passkeys, authenticator apps (totp), Temporary Access Passes and passwords. Each is on or off, \
for everyone or only for the direct members of some groups, with groups excluded (exclusion \
wins).

For passkeys it also says:
  - whether registration needs a verifiable attestation: the authenticator proves its model \
with a certificate chain to a root this server trusts (`cutover serve --attestation-roots \
FILE`; without roots every registration is refused);
  - which authenticator models (AAGUIDs) are blocked, or the only ones allowed. A model \
restriction applies at sign-in too: blocking a model stops the passkeys already registered \
with it, and an allow list also stops passkeys whose model is unknown.

A passkey change can lock people out, so `set` first previews a change of passkey targeting or \
model restrictions against the passkeys already registered: whose passkeys would stop working \
and who would be left without any. Then it asks for confirmation. In a script give --yes (a \
run that is not interactive is refused without it), or --dry-run to see the preview only.

Examples:
  cutover admin methods-policy show
  cutover admin methods-policy set --passkey-groups Pilot,Helpdesk --dry-run
  cutover admin methods-policy set --block-aaguids ee882879-721c-4913-9775-3dfcce97072a --yes
  cutover admin methods-policy set --enforce-attestation true
  cutover admin --output json methods-policy show > policy.json    (edit it, then:)
  cutover admin methods-policy preview --file policy.json
  cutover admin methods-policy set --file policy.json";

/// `cutover admin users passkeys --help`.
pub const PASSKEYS_LONG_ABOUT: &str = "\
A user's passkeys: which ones they registered (the authenticator model, synced or bound to one \
device, the device family it was made on, when it was created and last used), and deleting one: \
the helpdesk's \"lost device\" action.

A synced passkey lives in a password manager (iCloud Keychain, Google Password Manager, …) and \
follows the user to their other devices; a device-bound one (most security keys) exists only \
on that device, so a lost device takes it along.

A deleted passkey stops working at once; the user keeps their other methods. A user left \
without a way to sign in can get a Temporary Access Pass (`cutover admin users tap create USER \
--once`), sign in with it and register a new passkey on their Security info page \
(/my/security).

Examples:
  cutover admin users passkeys list user1@contoso.example
  cutover admin users passkeys delete user1@contoso.example 0190f5c2-6c1e-7a3b-9d41-2f8e5b7c9a10";

/// `cutover admin reports registration --help`.
pub const REGISTRATION_LONG_ABOUT: &str = "\
Who has registered which sign-in methods: how far the move to multi-factor and passwordless \
sign-in has come, and whom the helpdesk still has to help.

The report starts with a summary: the users covered, how many are MFA-registered (a passkey, \
or an authenticator app next to a password), how many are passwordless-capable (at least one \
passkey) and how many have two or more passkeys (a spare for a lost device). Then the users by \
the device family of their passkeys, then one line per user. A Temporary Access Pass shows \
among a user's methods while it is usable, but it is not a registered factor.

The report covers every user, at most 50000; report a larger directory group by group \
(--group: a group's direct user members). For scripts and spreadsheets, `--output jsonl` gives \
one user per line and `--output json` the whole answer with its summary.

Examples:
  cutover admin reports registration
  cutover admin reports registration --group Pilot
  cutover admin --output jsonl reports registration > registration.jsonl";

// ---- command line ---------------------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum MethodsPolicyCommand {
    /// Show the policy: per method whether it is on and for whom, passkey attestation and
    /// model restrictions, and what the server warns about.
    Show,
    /// Change the policy: only the settings given change (or --file replaces it whole).
    /// Passkey targeting and model changes are previewed and confirmed first.
    Set(MethodsPolicySetArgs),
    /// Show what a policy (a JSON file) would change for the passkeys already registered;
    /// change nothing.
    #[command(after_help = "\
The file holds a whole policy, as `cutover admin --output json methods-policy show` prints it \
(its warnings are ignored). To preview a change given with options, use `methods-policy set \
… --dry-run`.

Example:
  cutover admin methods-policy preview --file policy.json")]
    Preview {
        /// The policy to preview (JSON); `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// `on` or `off`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// The method may be used (by whom its groups say).
    #[value(aliases = ["true", "enable", "enabled"])]
    On,
    /// Nobody may use the method.
    #[value(aliases = ["false", "disable", "disabled"])]
    Off,
}

impl Switch {
    fn on(self) -> bool {
        self == Switch::On
    }
}

const SET_FLAGS: [&str; 10] = [
    "passkey",
    "passkey_groups",
    "passkey_exclude_groups",
    "enforce_attestation",
    "block_aaguids",
    "allow_aaguids",
    "no_key_restrictions",
    "totp",
    "tap",
    "password",
];

#[derive(Args, Debug)]
#[command(
    override_usage = "cutover admin methods-policy set [--passkey on|off] [--passkey-groups GROUPS|all] [--passkey-exclude-groups GROUPS|none] [--enforce-attestation true|false] [--block-aaguids AAGUIDS | --allow-aaguids AAGUIDS | --no-key-restrictions] [--totp on|off] [--tap on|off] [--password on|off] [--dry-run | --yes]
       cutover admin methods-policy set --file FILE [--dry-run | --yes]"
)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args([
            "file", "passkey", "passkey_groups", "passkey_exclude_groups", "enforce_attestation",
            "block_aaguids", "allow_aaguids", "no_key_restrictions", "totp", "tap", "password",
        ])
))]
#[command(after_help = "\
The current policy is read, the options given change it, and the result is saved whole. \
Groups are given by id or exact display name, separated by commas; a method for groups covers \
their direct members. AAGUIDs name authenticator models (`cutover admin users passkeys list` \
shows them); a list replaces the current one.

When passkey targeting or model restrictions change, the change is first previewed against the \
registered passkeys (whose would stop working, who would be left without any) and confirmed: \
interactively, or with --yes. A run that is not interactive (standard input is not a terminal) \
is refused without --yes, and nothing changes. --dry-run prints the preview and changes nothing.

Examples:
  cutover admin methods-policy set --passkey-groups Pilot --passkey-exclude-groups Kiosks --dry-run
  cutover admin methods-policy set --allow-aaguids cb69481e-8ff7-4039-93ec-0a2729a154a8 --yes
  cutover admin methods-policy set --no-key-restrictions
  cutover admin methods-policy set --totp off
  cutover admin methods-policy set --file policy.json --yes")]
pub struct MethodsPolicySetArgs {
    /// Save this whole policy (JSON, as `cutover admin --output json methods-policy show`
    /// prints it; its warnings are ignored) instead of changing settings one by one; `-`
    /// reads standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = SET_FLAGS)]
    pub file: Option<PathBuf>,
    /// Turn passkeys on or off: off, no passkey registers or signs in.
    #[arg(long, value_enum, value_name = "on|off")]
    pub passkey: Option<Switch>,
    /// Who may use passkeys: `all`, or groups (ids or exact names, comma-separated) whose
    /// direct members may. It does not turn passkeys on (--passkey on does).
    #[arg(long, value_name = "GROUPS|all", value_delimiter = ',', value_parser = path_segment)]
    pub passkey_groups: Vec<String>,
    /// Groups whose members may not use passkeys, whatever else applies (ids or exact names,
    /// comma-separated); `none` empties the list.
    #[arg(long, value_name = "GROUPS|none", value_delimiter = ',', value_parser = path_segment)]
    pub passkey_exclude_groups: Vec<String>,
    /// Require a verifiable attestation to register a passkey (the server needs
    /// `cutover serve --attestation-roots FILE`; without roots every registration is refused).
    #[arg(long, value_name = "true|false")]
    pub enforce_attestation: Option<bool>,
    /// Block these authenticator models (AAGUIDs, comma-separated) at registration and at
    /// sign-in: their registered passkeys stop working.
    #[arg(long, value_name = "AAGUIDS", value_delimiter = ',', value_parser = aaguid_arg,
        conflicts_with_all = ["allow_aaguids", "no_key_restrictions"])]
    pub block_aaguids: Vec<Uuid>,
    /// Allow only these authenticator models (AAGUIDs, comma-separated): passkeys of every
    /// other model, and of unknown models, stop working.
    #[arg(long, value_name = "AAGUIDS", value_delimiter = ',', value_parser = aaguid_arg,
        conflicts_with = "no_key_restrictions")]
    pub allow_aaguids: Vec<Uuid>,
    /// Remove the model restriction: passkeys of every model may register and sign in.
    #[arg(long)]
    pub no_key_restrictions: bool,
    /// Turn authenticator apps (TOTP) on or off.
    #[arg(long, value_enum, value_name = "on|off")]
    pub totp: Option<Switch>,
    /// Turn Temporary Access Passes on or off for the users the policy covers (passes also
    /// need the pass policy: `cutover admin tap-policy set --enable`).
    #[arg(long, value_enum, value_name = "on|off")]
    pub tap: Option<Switch>,
    /// Turn passwords on or off (off: users without a passkey or a pass cannot sign in to
    /// managed domains).
    #[arg(long, value_enum, value_name = "on|off")]
    pub password: Option<Switch>,
    /// Print the change and its preview; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply a passkey change without asking (needed when the run is not interactive).
    #[arg(long, conflicts_with = "dry_run")]
    pub yes: bool,
}

#[derive(Subcommand, Debug)]
pub enum PasskeysCommand {
    /// List a user's passkeys: name, model, synced or device-bound, device family, created,
    /// last used, id.
    List {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Delete one of a user's passkeys at once (no confirmation): the "lost device" action.
    /// The user can then get a Temporary Access Pass to register a new one.
    #[command(after_help = "\
The passkey's id is in the last column of `cutover admin users passkeys list USER`.

Example (a lost phone; then a one-time pass to register a new passkey):
  cutover admin users passkeys delete user1@contoso.example 0190f5c2-6c1e-7a3b-9d41-2f8e5b7c9a10
  cutover admin users tap create user1@contoso.example --once")]
    Delete {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
        /// The passkey's id (a UUID, from `users passkeys list`).
        #[arg(value_name = "PASSKEY_ID", value_parser = passkey_id_arg)]
        passkey: Uuid,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReportsCommand {
    /// Who has registered which sign-in methods: a summary (MFA-registered, passwordless-
    /// capable, two or more passkeys), users by passkey device family, then each user.
    #[command(long_about = REGISTRATION_LONG_ABOUT)]
    Registration {
        /// Only the direct user members of this group (its id or exact display name).
        #[arg(long, value_name = "GROUP", value_parser = path_segment)]
        group: Option<String>,
    },
}

// ---- value parsers (pure) -------------------------------------------------------------------

/// An AAGUID: a UUID that names a model (not the all-zero one).
fn aaguid_arg(s: &str) -> Result<Uuid, String> {
    let s = s.trim();
    let id = Uuid::parse_str(s).map_err(|_| {
        format!(
            "'{s}' is not an AAGUID; an AAGUID is a UUID such as \
             cb69481e-8ff7-4039-93ec-0a2729a154a8 (`cutover admin users passkeys list USER` \
             shows the models of a user's passkeys)"
        )
    })?;
    if id.is_nil() {
        return Err(
            "the all-zero AAGUID names no model (authenticators send it without attestation); \
             list real models"
                .into(),
        );
    }
    Ok(id)
}

fn passkey_id_arg(s: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        format!(
            "'{s}' is not a passkey id; the ids are in the last column of `cutover admin users \
             passkeys list USER`"
        )
    })
}

/// A `--passkey-groups` / `--passkey-exclude-groups` value: a keyword or group names/ids.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupsArg {
    /// `all` (include) or `none` (exclude).
    Keyword,
    Groups(Vec<String>),
}

/// Split a groups option: `keyword` alone (any case), or groups without it.
fn groups_arg(values: &[String], option: &str, keyword: &str) -> Result<Option<GroupsArg>> {
    if values.is_empty() {
        return Ok(None);
    }
    let is_keyword = |v: &String| v.eq_ignore_ascii_case(keyword);
    if values.iter().any(is_keyword) {
        if values.len() > 1 {
            bail!("{option}: give '{keyword}' alone, or groups without it");
        }
        return Ok(Some(GroupsArg::Keyword));
    }
    Ok(Some(GroupsArg::Groups(values.to_vec())))
}

/// The groups named by the options, resolved to ids.
#[derive(Debug, Default)]
struct ResolvedGroups {
    /// `Some(None)`: everyone; `Some(Some(ids))`: these groups.
    include: Option<Option<BTreeSet<Uuid>>>,
    exclude: Option<BTreeSet<Uuid>>,
}

/// The policy the PUT sends: `current` with the options given changed.
fn changed_policy(
    current: &AuthenticationMethodsPolicy,
    a: &MethodsPolicySetArgs,
    groups: &ResolvedGroups,
) -> AuthenticationMethodsPolicy {
    let mut p = current.clone();
    if let Some(s) = a.passkey {
        p.passkey.target.enabled = s.on();
    }
    match &groups.include {
        Some(None) => {
            p.passkey.target.all_users = true;
            p.passkey.target.include_groups.clear();
        }
        Some(Some(ids)) => {
            p.passkey.target.all_users = false;
            p.passkey.target.include_groups = ids.clone();
        }
        None => {}
    }
    if let Some(ids) = &groups.exclude {
        p.passkey.target.exclude_groups = ids.clone();
    }
    if let Some(b) = a.enforce_attestation {
        p.passkey.enforce_attestation = b;
    }
    if a.no_key_restrictions {
        p.passkey.key_restrictions = None;
    }
    for (list, enforcement) in [
        (&a.block_aaguids, Enforcement::Block),
        (&a.allow_aaguids, Enforcement::Allow),
    ] {
        if !list.is_empty() {
            p.passkey.key_restrictions = Some(KeyRestrictions {
                enforcement,
                aaguids: list.iter().copied().collect(),
            });
        }
    }
    for (switch, target) in [
        (a.totp, &mut p.totp),
        (a.tap, &mut p.temporary_access_pass),
        (a.password, &mut p.password),
    ] {
        if let Some(s) = switch {
            target.enabled = s.on();
        }
    }
    p
}

/// Whether a change can stop registered passkeys from working (and so is previewed and
/// confirmed first).
fn touches_passkeys(
    before: &AuthenticationMethodsPolicy,
    after: &AuthenticationMethodsPolicy,
) -> bool {
    before.passkey.target != after.passkey.target
        || before.passkey.key_restrictions != after.passkey.key_restrictions
}

/// A policy from JSON text: a whole policy, as `--output json methods-policy show` prints it
/// (its `warnings` are dropped). `origin` names the file in errors.
fn policy_from_text(text: &str, origin: &str) -> Result<AuthenticationMethodsPolicy> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| {
        anyhow!(
            "{origin} is not JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    if let Value::Object(map) = &mut v {
        map.remove("warnings");
    }
    serde_json::from_value(v).map_err(|e| {
        anyhow!(
            "{origin} is not an authentication methods policy: {e} (start from `cutover admin \
             --output json methods-policy show`)"
        )
    })
}

/// The policy and the server's warnings from a GET or PUT answer.
fn policy_view(v: Value) -> Result<(AuthenticationMethodsPolicy, Vec<String>)> {
    let mut v = v;
    let warnings = match &mut v {
        Value::Object(map) => map.remove("warnings"),
        _ => None,
    };
    let warnings: Vec<String> = match warnings {
        Some(w) => from_response(w)?,
        None => Vec::new(),
    };
    Ok((from_response(v)?, warnings))
}

fn check_policy(p: &AuthenticationMethodsPolicy, from_file: bool) -> Result<()> {
    p.validate().map_err(|e| {
        if from_file {
            anyhow!("the policy would be refused: {e}")
        } else {
            anyhow!(
                "the policy would be refused: {e} (settings not given keep their current values; \
                 see `cutover admin methods-policy show`)"
            )
        }
    })
}

// ---- answers --------------------------------------------------------------------------------

/// The preview's answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewAnswer {
    #[serde(default)]
    passkeys_considered: usize,
    #[serde(default)]
    stop_working: Vec<PreviewPasskey>,
    #[serde(default)]
    start_working: Vec<PreviewPasskey>,
    #[serde(default)]
    users_left_without_passkey: Vec<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewPasskey {
    user_principal_name: String,
    #[serde(default)]
    name: String,
    passkey_id: Uuid,
    #[serde(default)]
    aaguid: Option<Uuid>,
    #[serde(default)]
    authenticator_name: Option<String>,
}

/// One passkey of `GET /users/{id}/authentication/passkeyMethods`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasskeyView {
    id: Uuid,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    aa_guid: Option<Uuid>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    is_backed_up: bool,
    #[serde(default)]
    device_family: String,
    #[serde(default)]
    created_date_time: String,
    #[serde(default)]
    last_used_date_time: Option<String>,
}

/// The registration report's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationReport {
    #[serde(default)]
    value: Vec<RegistrationRow>,
    summary: RegistrationSummary,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationRow {
    user_principal_name: String,
    #[serde(default)]
    user_display_name: Option<String>,
    #[serde(default)]
    methods_registered: Vec<String>,
    #[serde(default)]
    is_mfa_registered: bool,
    #[serde(default)]
    is_passwordless_capable: bool,
    #[serde(default)]
    passkey_count: usize,
    #[serde(default)]
    synced_passkey_count: usize,
    #[serde(default)]
    device_families: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationSummary {
    users: usize,
    mfa_registered: usize,
    passwordless_capable: usize,
    with_two_or_more_passkeys: usize,
    #[serde(default)]
    users_by_passkey_device_family: BTreeMap<String, usize>,
    #[serde(default)]
    truncated: bool,
}

// ---- text (pure) ----------------------------------------------------------------------------

/// Names for the ids a policy holds: groups (from the directory) and models (from the server's
/// preview, else the catalogue bundled with this binary).
#[derive(Debug, Default)]
struct Names {
    groups: BTreeMap<Uuid, Option<String>>,
    models: BTreeMap<Uuid, String>,
}

impl Names {
    /// A group: its display name, or its id when it is unknown.
    fn group(&self, id: Uuid) -> String {
        match self.groups.get(&id) {
            Some(Some(name)) => name.clone(),
            Some(None) => format!("{id} (no such group)"),
            None => id.to_string(),
        }
    }

    fn groups(&self, ids: &BTreeSet<Uuid>) -> String {
        ids.iter()
            .map(|id| self.group(*id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn model(&self, aaguid: Uuid) -> String {
        self.models
            .get(&aaguid)
            .cloned()
            .unwrap_or_else(|| "(model not in the catalogue)".into())
    }

    /// Take the model names the server gave in a preview.
    fn learn_from(&mut self, p: &PreviewAnswer) {
        for k in p.stop_working.iter().chain(&p.start_working) {
            if let (Some(a), Some(n)) = (k.aaguid, &k.authenticator_name) {
                self.models.insert(a, n.clone());
            }
        }
    }
}

/// Who a method is for, in words.
fn target_text(t: &MethodTarget, names: &Names) -> String {
    let who = if t.all_users {
        "everyone".to_owned()
    } else if t.include_groups.is_empty() {
        "nobody".to_owned()
    } else {
        format!("members of {}", names.groups(&t.include_groups))
    };
    if t.exclude_groups.is_empty() {
        who
    } else {
        format!(
            "{who} except members of {}",
            names.groups(&t.exclude_groups)
        )
    }
}

/// A method's state in one phrase: `off`, or `on for …`.
fn state_text(t: &MethodTarget, names: &Names) -> String {
    if t.enabled {
        format!("on for {}", target_text(t, names))
    } else {
        "off".to_owned()
    }
}

fn attestation_text(enforced: bool) -> &'static str {
    if enforced {
        "enforced: registration needs a verifiable attestation"
    } else {
        "not enforced: any authenticator may register"
    }
}

fn restriction_text(r: Option<&KeyRestrictions>) -> String {
    match r {
        None => "none: passkeys of every model may register and sign in".to_owned(),
        Some(r) => {
            let n = r.aaguids.len();
            let models = if n == 1 { "model" } else { "models" };
            match r.enforcement {
                Enforcement::Block => {
                    format!("block {n} {models}: their passkeys may not register nor sign in")
                }
                Enforcement::Allow => format!(
                    "allow only {n} {models}: passkeys of every other model, and of unknown \
                     models, may not register nor sign in"
                ),
            }
        }
    }
}

/// The models a restriction lists, as a short phrase.
fn restriction_short(r: Option<&KeyRestrictions>, names: &Names) -> String {
    match r {
        None => "none".to_owned(),
        Some(r) => {
            let list = r
                .aaguids
                .iter()
                .map(|a| match names.models.get(a) {
                    Some(n) => format!("{n} ({a})"),
                    None => a.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            match r.enforcement {
                Enforcement::Block => format!("block {list}"),
                Enforcement::Allow => format!("allow only {list}"),
            }
        }
    }
}

const METHODS: [&str; 4] = ["passkey", "totp", "temporaryAccessPass", "password"];

fn targets(p: &AuthenticationMethodsPolicy) -> [&MethodTarget; 4] {
    [
        &p.passkey.target,
        &p.totp,
        &p.temporary_access_pass,
        &p.password,
    ]
}

fn warnings_text(warnings: &[String]) -> String {
    let mut text = String::new();
    if !warnings.is_empty() {
        text.push('\n');
    }
    for w in warnings {
        text.push_str(&format!("WARNING: {}\n", clean(w)));
    }
    text
}

/// The policy for people: a table of the methods, the passkey settings, the models of a
/// restriction, and the server's warnings.
fn policy_text(p: &AuthenticationMethodsPolicy, warnings: &[String], names: &Names) -> String {
    let rows: Vec<Vec<String>> = METHODS
        .iter()
        .zip(targets(p))
        .map(|(m, t)| {
            let who = if t.all_users {
                "everyone".to_owned()
            } else if t.include_groups.is_empty() {
                "nobody".to_owned()
            } else {
                names.groups(&t.include_groups)
            };
            let except = if t.exclude_groups.is_empty() {
                "-".to_owned()
            } else {
                names.groups(&t.exclude_groups)
            };
            vec![(*m).to_owned(), yes_no(t.enabled), who, except]
        })
        .collect();
    let mut text = render_table(&["METHOD", "ENABLED", "FOR", "EXCEPT MEMBERS OF"], &rows);
    text.push('\n');
    text.push_str(&render_fields(&[
        (
            "passkeyAttestation",
            attestation_text(p.passkey.enforce_attestation).to_owned(),
        ),
        (
            "passkeyKeyRestrictions",
            restriction_text(p.passkey.key_restrictions.as_ref()),
        ),
    ]));
    if let Some(r) = &p.passkey.key_restrictions {
        let rows: Vec<Vec<String>> = r
            .aaguids
            .iter()
            .map(|a| vec![a.to_string(), names.model(*a)])
            .collect();
        text.push_str(&render_table(&["AAGUID", "MODEL"], &rows));
    }
    text.push_str(
        "\nTemporary Access Passes also need the pass policy to allow them (cutover admin \
         tap-policy show).\n",
    );
    text.push_str(&warnings_text(warnings));
    text
}

/// What a change does to the settings, one line per setting that changes.
fn changes_text(
    before: &AuthenticationMethodsPolicy,
    after: &AuthenticationMethodsPolicy,
    names: &Names,
) -> String {
    let mut lines = Vec::new();
    let method = |m: &str, b: &MethodTarget, a: &MethodTarget| {
        (b != a).then(|| format!("  {m}: {} → {}", state_text(b, names), state_text(a, names)))
    };
    lines.extend(method(
        "passkey",
        &before.passkey.target,
        &after.passkey.target,
    ));
    if before.passkey.enforce_attestation != after.passkey.enforce_attestation {
        lines.push(format!(
            "  passkey attestation: {} → {}",
            attestation_text(before.passkey.enforce_attestation),
            attestation_text(after.passkey.enforce_attestation)
        ));
    }
    if before.passkey.key_restrictions != after.passkey.key_restrictions {
        lines.push(format!(
            "  passkey models: {} → {}",
            restriction_short(before.passkey.key_restrictions.as_ref(), names),
            restriction_short(after.passkey.key_restrictions.as_ref(), names)
        ));
    }
    for ((m, b), a) in METHODS
        .iter()
        .zip(targets(before))
        .zip(targets(after))
        .skip(1)
    {
        lines.extend(method(m, b, a));
    }
    if lines.is_empty() {
        return "The policy would not change.\n".to_owned();
    }
    let mut text = "The change:\n".to_owned();
    for l in lines {
        text.push_str(&clean(&l));
        text.push('\n');
    }
    text
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn preview_rows(keys: &[PreviewPasskey]) -> Vec<Vec<String>> {
    keys.iter()
        .map(|k| {
            vec![
                k.user_principal_name.clone(),
                if k.name.is_empty() {
                    "-".into()
                } else {
                    k.name.clone()
                },
                match (&k.authenticator_name, k.aaguid) {
                    (Some(n), _) => n.clone(),
                    (None, Some(a)) => a.to_string(),
                    (None, None) => "unknown".into(),
                },
                k.passkey_id.to_string(),
            ]
        })
        .collect()
}

/// The preview for people: whose passkeys stop working, who is left without any, whose work
/// again, and the warnings about the new policy.
fn preview_text(p: &PreviewAnswer) -> String {
    const HEADERS: [&str; 4] = ["USER", "PASSKEY", "MODEL", "PASSKEY ID"];
    let mut text = String::new();
    if p.passkeys_considered == 0 {
        text.push_str(
            "No passkey is registered yet, so none would stop working; the policy applies to \
             the passkeys registered from now on.\n",
        );
    } else if p.stop_working.is_empty() {
        text.push_str(&format!(
            "No registered passkey would stop working ({} checked).\n",
            plural(p.passkeys_considered, "passkey", "passkeys")
        ));
    } else {
        text.push_str(&format!(
            "{} of {} registered would STOP WORKING (at sign-in, at once):\n",
            plural(p.stop_working.len(), "passkey", "passkeys"),
            p.passkeys_considered
        ));
        text.push_str(&render_table(&HEADERS, &preview_rows(&p.stop_working)));
    }
    if !p.users_left_without_passkey.is_empty() {
        text.push('\n');
        text.push_str(&format!(
            "{} would be LEFT WITHOUT A WORKING PASSKEY (they sign in another way, or with a \
             Temporary Access Pass):\n",
            plural(p.users_left_without_passkey.len(), "user", "users")
        ));
        for u in &p.users_left_without_passkey {
            text.push_str(&format!("  {}\n", clean(u)));
        }
    }
    if !p.start_working.is_empty() {
        text.push('\n');
        text.push_str(&format!(
            "{} would work again:\n",
            plural(p.start_working.len(), "passkey", "passkeys")
        ));
        text.push_str(&render_table(&HEADERS, &preview_rows(&p.start_working)));
    }
    text.push_str(&warnings_text(&p.warnings));
    text
}

fn device_family_text(family: &str) -> String {
    DeviceFamily::parse(family).map_or_else(|| family.to_owned(), |f| f.label().to_owned())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn passkeys_text(user: &str, keys: &[PasskeyView]) -> String {
    if keys.is_empty() {
        return format!(
            "{} has no passkeys. To register one without another strong method, they can sign in \
             with a Temporary Access Pass (cutover admin users tap create {} --once).\n",
            clean(user),
            clean(user)
        );
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                or_dash(&k.display_name),
                match (&k.model, k.aa_guid.filter(|a| !a.is_nil())) {
                    (Some(m), _) => m.clone(),
                    (None, Some(a)) => a.to_string(),
                    (None, None) => "unknown".into(),
                },
                if k.is_backed_up {
                    "synced".into()
                } else {
                    "device-bound".into()
                },
                device_family_text(&k.device_family),
                or_dash(&k.created_date_time),
                k.last_used_date_time
                    .clone()
                    .unwrap_or_else(|| "never".into()),
                k.id.to_string(),
            ]
        })
        .collect();
    render_table(
        &[
            "NAME",
            "MODEL",
            "KIND",
            "DEVICE FAMILY",
            "CREATED",
            "LAST USED",
            "ID",
        ],
        &rows,
    )
}

fn deleted_text(user: &str, id: Uuid, keys: &[PasskeyView]) -> String {
    let user = clean(user);
    let what = match keys.iter().find(|k| k.id == id) {
        Some(k) if !k.display_name.is_empty() => {
            format!("passkey \"{}\" ({id})", clean(&k.display_name))
        }
        _ => format!("passkey {id}"),
    };
    let mut text = format!("Deleted the {what} of {user}; it no longer signs them in.\n");
    let left = keys.iter().filter(|k| k.id != id).count();
    if left > 0 {
        text.push_str(&format!(
            "They still have {}.\n",
            plural(left, "other passkey", "other passkeys")
        ));
    } else {
        text.push_str("They have no passkey left.\n");
    }
    text.push_str(&format!(
        "To register a new one, they can get a Temporary Access Pass (cutover admin users tap \
         create {user} --once), sign in with it and add a passkey on their Security info page \
         (/my/security).\n"
    ));
    text
}

fn percent_of(n: usize, total: usize) -> String {
    if total == 0 {
        return n.to_string();
    }
    #[allow(clippy::cast_precision_loss)]
    let pct = n as f64 * 100.0 / total as f64;
    format!("{n} ({pct:.1}%)")
}

fn report_text(r: &RegistrationReport, group: Option<&str>) -> String {
    let s = &r.summary;
    let mut text = String::new();
    if let Some(g) = group {
        text.push_str(&format!("Members of {}:\n", clean(g)));
    }
    text.push_str(&render_fields(&[
        ("users", s.users.to_string()),
        ("mfaRegistered", percent_of(s.mfa_registered, s.users)),
        (
            "passwordlessCapable",
            percent_of(s.passwordless_capable, s.users),
        ),
        (
            "twoOrMorePasskeys",
            percent_of(s.with_two_or_more_passkeys, s.users),
        ),
    ]));
    if s.truncated {
        text.push_str(
            "Only the first 50000 users are covered; report the rest by group (--group).\n",
        );
    }
    text.push('\n');
    if s.users_by_passkey_device_family.is_empty() {
        text.push_str("Users by passkey device family: nobody has a passkey yet.\n");
    } else {
        text.push_str("Users by passkey device family:\n");
        let rows: Vec<Vec<String>> = s
            .users_by_passkey_device_family
            .iter()
            .map(|(f, n)| vec![device_family_text(f), percent_of(*n, s.users)])
            .collect();
        text.push_str(&render_table(&["DEVICE FAMILY", "USERS"], &rows));
    }
    text.push('\n');
    let rows: Vec<Vec<String>> = r
        .value
        .iter()
        .map(|u| {
            vec![
                u.user_principal_name.clone(),
                u.user_display_name.clone().unwrap_or_else(|| "-".into()),
                if u.methods_registered.is_empty() {
                    "-".into()
                } else {
                    u.methods_registered.join(",")
                },
                yes_no(u.is_mfa_registered),
                yes_no(u.is_passwordless_capable),
                if u.passkey_count == 0 {
                    "0".into()
                } else {
                    format!("{} ({} synced)", u.passkey_count, u.synced_passkey_count)
                },
                if u.device_families.is_empty() {
                    "-".into()
                } else {
                    u.device_families
                        .iter()
                        .map(|f| device_family_text(f))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ]
        })
        .collect();
    text.push_str(&render_table(
        &[
            "USER",
            "NAME",
            "METHODS",
            "MFA",
            "PASSWORDLESS",
            "PASSKEYS",
            "DEVICE FAMILIES",
        ],
        &rows,
    ));
    text
}

/// Whether the answer to a confirmation question is yes.
fn is_yes(answer: &str) -> bool {
    matches!(
        first_line(answer).trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    )
}

// ---- talking to the server ------------------------------------------------------------------

const POLICY: [&str; 2] = ["policies", "authenticationMethodsPolicy"];
const PREVIEW: [&str; 3] = ["policies", "authenticationMethodsPolicy", "preview"];

fn passkeys_path(user: &str) -> [&str; 4] {
    ["users", user, "authentication", "passkeyMethods"]
}

fn required(resp: Option<Value>, what: &str) -> Result<Value> {
    resp.ok_or_else(|| anyhow!("the server returned no {what}"))
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == StatusCode::NOT_FOUND)
}

/// The group named by `key`: an id (which must exist) or an exact display name.
async fn resolve_group(api: &Api, key: &str, all: &mut Option<Vec<GroupView>>) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(key) {
        return match api.send(Method::GET, &["groups", key], &[], None).await {
            Ok(_) => Ok(id),
            Err(e) if is_not_found(&e) => {
                bail!("no group has the id {id} (cutover admin groups list --all)")
            }
            Err(e) => Err(e),
        };
    }
    if all.is_none() {
        let top = cutover_core::limits::MAX_PAGE_SIZE.to_string();
        let first = api
            .send(Method::GET, &["groups"], &[("$top", Some(top))], None)
            .await?;
        let pages = api.follow_pages(first).await?;
        let list: ListResponse<GroupView> = from_response(pages.unwrap_or(Value::Null))?;
        *all = Some(list.value);
    }
    find_group(key, all.as_deref().unwrap_or_default())
}

/// A group by its exact display name, with a hint when only the case differs.
fn find_group(name: &str, groups: &[GroupView]) -> Result<Uuid> {
    let ids: Vec<Uuid> = groups
        .iter()
        .filter(|g| g.display_name == name)
        .map(|g| g.id)
        .collect();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => {
            let similar: Vec<String> = groups
                .iter()
                .filter(|g| g.display_name.to_lowercase() == name.to_lowercase())
                .map(|g| format!("'{}'", clean(&g.display_name)))
                .collect();
            if similar.is_empty() {
                bail!(
                    "no group is named '{}'; give the group's id or exact display name \
                     (cutover admin groups list --all)",
                    clean(name)
                )
            }
            bail!(
                "no group is named exactly '{}' (names are matched exactly; did you mean {}?)",
                clean(name),
                similar.join(" or ")
            )
        }
        many => bail!(
            "{} groups are named '{}' ({}); give the id instead",
            many.len(),
            clean(name),
            many.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn resolve_groups(api: &Api, a: &MethodsPolicySetArgs) -> Result<ResolvedGroups> {
    let mut all = None;
    let mut out = ResolvedGroups::default();
    match groups_arg(&a.passkey_groups, "--passkey-groups", "all")? {
        None => {}
        Some(GroupsArg::Keyword) => out.include = Some(None),
        Some(GroupsArg::Groups(keys)) => {
            let mut set = BTreeSet::new();
            for k in keys {
                set.insert(resolve_group(api, &k, &mut all).await?);
            }
            out.include = Some(Some(set));
        }
    }
    match groups_arg(
        &a.passkey_exclude_groups,
        "--passkey-exclude-groups",
        "none",
    )? {
        None => {}
        Some(GroupsArg::Keyword) => out.exclude = Some(BTreeSet::new()),
        Some(GroupsArg::Groups(keys)) => {
            let mut set = BTreeSet::new();
            for k in keys {
                set.insert(resolve_group(api, &k, &mut all).await?);
            }
            out.exclude = Some(set);
        }
    }
    Ok(out)
}

/// Names for the groups and models of `policies`: groups read from the directory, models
/// from the catalogue bundled with this binary (the server's own catalogue may know more).
async fn names_for(api: &Api, policies: &[&AuthenticationMethodsPolicy]) -> Result<Names> {
    let mut names = Names::default();
    let mut groups = BTreeSet::new();
    let mut aaguids = BTreeSet::new();
    for p in policies {
        for t in targets(p) {
            groups.extend(t.include_groups.iter().copied());
            groups.extend(t.exclude_groups.iter().copied());
        }
        if let Some(r) = &p.passkey.key_restrictions {
            aaguids.extend(r.aaguids.iter().copied());
        }
    }
    for id in groups {
        let key = id.to_string();
        let name = match api.send(Method::GET, &["groups", &key], &[], None).await {
            Ok(Some(v)) => Some(from_response::<GroupView>(v)?.display_name),
            Ok(None) => None,
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        names.groups.insert(id, name);
    }
    if !aaguids.is_empty()
        && let Ok(rt) = cutover_server::passkeys::PasskeyRuntime::new(
            "https://localhost",
            &cutover_server::passkeys::PasskeyConfig::default(),
        )
    {
        for a in aaguids {
            if let Some(n) = rt.authenticator_name(a) {
                names.models.insert(a, n);
            }
        }
    }
    Ok(names)
}

async fn current_policy(api: &Api) -> Result<(AuthenticationMethodsPolicy, Vec<String>)> {
    policy_view(required(
        api.send(Method::GET, &POLICY, &[], None).await?,
        "methods policy",
    )?)
}

async fn preview(
    api: &Api,
    policy: &AuthenticationMethodsPolicy,
) -> Result<(Option<Value>, PreviewAnswer)> {
    let body = serde_json::to_value(policy)?;
    let resp = api.send(Method::POST, &PREVIEW, &[], Some(&body)).await?;
    let answer: PreviewAnswer = from_response(required(resp.clone(), "preview")?)?;
    Ok((resp, answer))
}

/// A policy file's text; `-` is standard input.
fn read_policy_file(path: &Path) -> Result<AuthenticationMethodsPolicy> {
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

/// Ask before a passkey change; refuse when nobody can be asked.
fn confirm(yes: bool, interactive: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !interactive {
        bail!(
            "this change can stop passkeys from working and needs a confirmation, but this run \
             is not interactive (standard input is not a terminal): nothing was changed. Re-run \
             with --yes to apply it, or with --dry-run to see the preview only"
        );
    }
    eprint!("Apply this change to the authentication methods policy? [y/N] ");
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

pub(super) async fn methods_policy(
    api: &Api,
    out: OutputFormat,
    cmd: MethodsPolicyCommand,
) -> Result<()> {
    match cmd {
        MethodsPolicyCommand::Show => {
            let resp = api.send(Method::GET, &POLICY, &[], None).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let (policy, warnings) = policy_view(required(resp, "methods policy")?)?;
            let names = names_for(api, &[&policy]).await?;
            emit(&policy_text(&policy, &warnings, &names))
        }
        MethodsPolicyCommand::Preview { file } => {
            let wanted = read_policy_file(&file)?;
            check_policy(&wanted, true)?;
            let (current, _) = current_policy(api).await?;
            let (resp, answer) = preview(api, &wanted).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let mut names = names_for(api, &[&current, &wanted]).await?;
            names.learn_from(&answer);
            emit(&format!(
                "{}\n{}\nA preview only: nothing was changed.\n",
                changes_text(&current, &wanted, &names),
                preview_text(&answer)
            ))
        }
        MethodsPolicyCommand::Set(a) => set(api, out, a).await,
    }
}

async fn set(api: &Api, out: OutputFormat, a: MethodsPolicySetArgs) -> Result<()> {
    let (current, _) = current_policy(api).await?;
    let wanted = match &a.file {
        Some(path) => read_policy_file(path)?,
        None => {
            let groups = resolve_groups(api, &a).await?;
            changed_policy(&current, &a, &groups)
        }
    };
    check_policy(&wanted, a.file.is_some())?;
    if wanted == current {
        if a.dry_run {
            return emit("The policy already has these settings; nothing would change.\n");
        }
        bail!("the authentication methods policy already has these settings; nothing was changed");
    }
    let guarded = touches_passkeys(&current, &wanted);
    // The warnings already printed with the preview (not repeated after the change).
    let mut shown_warnings = Vec::new();
    if a.dry_run || guarded {
        let (resp, answer) = preview(api, &wanted).await?;
        if a.dry_run && out != OutputFormat::Table {
            return print_json(out, resp.as_ref());
        }
        let mut names = names_for(api, &[&current, &wanted]).await?;
        names.learn_from(&answer);
        let text = format!(
            "{}\n{}",
            changes_text(&current, &wanted, &names),
            preview_text(&answer)
        );
        if a.dry_run {
            return emit(&format!("{text}\nA dry run: nothing was changed.\n"));
        }
        // In JSON mode standard output is for the answer; the person reads standard error.
        if out == OutputFormat::Table {
            emit(&format!("{text}\n"))?;
        } else {
            eprintln!("{text}");
        }
        shown_warnings = answer.warnings;
        let interactive =
            std::io::stdin().is_terminal() && a.file.as_deref() != Some(Path::new("-"));
        confirm(a.yes, interactive)?;
    }
    let body = serde_json::to_value(&wanted)?;
    let resp = api.send(Method::PUT, &POLICY, &[], Some(&body)).await?;
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let (policy, mut warnings) = policy_view(required(resp, "methods policy")?)?;
    warnings.retain(|w| !shown_warnings.contains(w));
    let names = names_for(api, &[&policy]).await?;
    emit(&format!(
        "Updated the authentication methods policy.\n{}",
        policy_text(&policy, &warnings, &names)
    ))
}

/// A user's passkeys (the raw answer and the parsed list).
async fn list_passkeys(api: &Api, user: &str) -> Result<(Option<Value>, Vec<PasskeyView>)> {
    let resp = api
        .send(Method::GET, &passkeys_path(user), &[], None)
        .await?;
    let list: ListResponse<PasskeyView> = match &resp {
        Some(v) => from_response(v.clone())?,
        None => ListResponse::new(Vec::new()),
    };
    Ok((resp, list.value))
}

pub(super) async fn passkeys(api: &Api, out: OutputFormat, cmd: PasskeysCommand) -> Result<()> {
    match cmd {
        PasskeysCommand::List { user } => {
            let (resp, keys) = list_passkeys(api, &user).await?;
            match out {
                OutputFormat::Json => print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => print_json_lines(resp.as_ref()),
                OutputFormat::Table => emit(&passkeys_text(&user, &keys)),
            }
        }
        PasskeysCommand::Delete { user, passkey } => {
            let (_, keys) = list_passkeys(api, &user).await?;
            let id = passkey.to_string();
            let mut path = passkeys_path(&user).to_vec();
            path.push(&id);
            // Sent whatever the list says: the server's answer is the authority (and its
            // message names what is missing).
            let resp = api.send(Method::DELETE, &path, &[], None).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            emit(&deleted_text(&user, passkey, &keys))
        }
    }
}

pub(super) async fn reports(api: &Api, out: OutputFormat, cmd: ReportsCommand) -> Result<()> {
    match cmd {
        ReportsCommand::Registration { group } => {
            let group_id = match &group {
                Some(g) => Some(resolve_group(api, g, &mut None).await?.to_string()),
                None => None,
            };
            let resp = api
                .send(
                    Method::GET,
                    &[
                        "reports",
                        "authenticationMethods",
                        "userRegistrationDetails",
                    ],
                    &[("group", group_id)],
                    None,
                )
                .await?;
            match out {
                OutputFormat::Json => print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => print_json_lines(resp.as_ref()),
                OutputFormat::Table => {
                    let report: RegistrationReport =
                        from_response(required(resp, "registration report")?)?;
                    emit(&report_text(&report, group.as_deref()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use serde_json::json;

    use super::*;

    const YUBI: &str = "cb69481e-8ff7-4039-93ec-0a2729a154a8";

    fn g(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        #[command(subcommand, long_about = METHODS_POLICY_LONG_ABOUT)]
        MethodsPolicy(MethodsPolicyCommand),
        #[command(subcommand, long_about = PASSKEYS_LONG_ABOUT)]
        Passkeys(PasskeysCommand),
        #[command(subcommand)]
        Reports(ReportsCommand),
    }

    fn parse(args: &[&str]) -> Result<Top, clap::Error> {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.command)
    }

    fn set_args(args: &[&str]) -> MethodsPolicySetArgs {
        let all = [&["methods-policy", "set"][..], args].concat();
        match parse(&all) {
            Ok(Top::MethodsPolicy(MethodsPolicyCommand::Set(a))) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_command_line_parses_as_documented() {
        let a = set_args(&[
            "--passkey",
            "on",
            "--passkey-groups",
            "Pilot,Helpdesk",
            "--block-aaguids",
            &format!("{YUBI},ee882879-721c-4913-9775-3dfcce97072a"),
            "--totp",
            "false",
            "--yes",
        ]);
        assert_eq!(a.passkey, Some(Switch::On));
        assert_eq!(a.passkey_groups, ["Pilot", "Helpdesk"]);
        assert_eq!(a.block_aaguids.len(), 2);
        assert_eq!(a.totp, Some(Switch::Off));
        assert!(a.yes && !a.dry_run);
        // Something to change is required; the restrictions exclude each other; --file stands
        // alone; --yes and --dry-run exclude each other.
        for bad in [
            &["methods-policy", "set"][..],
            &["methods-policy", "set", "--dry-run"],
            &[
                "methods-policy",
                "set",
                "--block-aaguids",
                YUBI,
                "--allow-aaguids",
                YUBI,
            ],
            &[
                "methods-policy",
                "set",
                "--allow-aaguids",
                YUBI,
                "--no-key-restrictions",
            ],
            &["methods-policy", "set", "--file", "p.json", "--totp", "on"],
            &[
                "methods-policy",
                "set",
                "--totp",
                "on",
                "--yes",
                "--dry-run",
            ],
            &["methods-policy", "set", "--passkey", "maybe"],
            &["methods-policy", "set", "--block-aaguids", "yubikey"],
            &[
                "methods-policy",
                "set",
                "--block-aaguids",
                "00000000-0000-0000-0000-000000000000",
            ],
            &["methods-policy", "preview"],
            &["passkeys", "delete", "u@x.example", "not-an-id"],
            &["passkeys", "list", ".."],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let a = set_args(&["--file", "policy.json", "--dry-run"]);
        assert_eq!(a.file.as_deref(), Some(Path::new("policy.json")));
        let Ok(Top::Reports(ReportsCommand::Registration { group })) =
            parse(&["reports", "registration", "--group", "Pilot"])
        else {
            panic!("reports registration parses");
        };
        assert_eq!(group.as_deref(), Some("Pilot"));
        let e = aaguid_arg("yubikey").unwrap_err();
        assert!(
            e.contains("is not an AAGUID") && e.contains("passkeys list"),
            "{e}"
        );
        assert!(
            aaguid_arg(&Uuid::nil().to_string())
                .unwrap_err()
                .contains("all-zero")
        );
    }

    #[test]
    fn group_options_take_a_keyword_alone_or_groups() {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(groups_arg(&[], "--x", "all").unwrap(), None);
        assert_eq!(
            groups_arg(&v(&["ALL"]), "--x", "all").unwrap(),
            Some(GroupsArg::Keyword)
        );
        assert_eq!(
            groups_arg(&v(&["Pilot", "HR"]), "--x", "all").unwrap(),
            Some(GroupsArg::Groups(v(&["Pilot", "HR"])))
        );
        let e = groups_arg(&v(&["all", "HR"]), "--passkey-groups", "all")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--passkey-groups:"), "{e}");
    }

    #[test]
    fn the_policy_changes_only_what_was_given() {
        let current = AuthenticationMethodsPolicy::default();
        let a = set_args(&["--enforce-attestation", "true"]);
        let p = changed_policy(&current, &a, &ResolvedGroups::default());
        assert!(p.passkey.enforce_attestation);
        assert_eq!(p.passkey.target, current.passkey.target);
        assert!(
            !touches_passkeys(&current, &p),
            "attestation is not previewed"
        );

        let a = set_args(&[
            "--passkey-groups",
            "Pilot",
            "--passkey-exclude-groups",
            "Kiosk",
        ]);
        let groups = ResolvedGroups {
            include: Some(Some(BTreeSet::from([g(1)]))),
            exclude: Some(BTreeSet::from([g(2)])),
        };
        let scoped = changed_policy(&current, &a, &groups);
        assert!(!scoped.passkey.target.all_users);
        assert_eq!(scoped.passkey.target.include_groups, BTreeSet::from([g(1)]));
        assert_eq!(scoped.passkey.target.exclude_groups, BTreeSet::from([g(2)]));
        assert!(scoped.passkey.target.enabled);
        assert!(touches_passkeys(&current, &scoped));
        scoped.validate().unwrap();
        // Back to everyone, nobody excluded.
        let a = set_args(&[
            "--passkey-groups",
            "all",
            "--passkey-exclude-groups",
            "none",
        ]);
        let groups = ResolvedGroups {
            include: Some(None),
            exclude: Some(BTreeSet::new()),
        };
        assert_eq!(changed_policy(&scoped, &a, &groups), current);

        let a = set_args(&["--block-aaguids", YUBI]);
        let blocked = changed_policy(&current, &a, &ResolvedGroups::default());
        let r = blocked.passkey.key_restrictions.clone().unwrap();
        assert_eq!(r.enforcement, Enforcement::Block);
        assert_eq!(r.aaguids, BTreeSet::from([Uuid::parse_str(YUBI).unwrap()]));
        assert!(touches_passkeys(&current, &blocked));
        let a = set_args(&["--no-key-restrictions"]);
        assert_eq!(
            changed_policy(&blocked, &a, &ResolvedGroups::default()),
            current
        );

        let a = set_args(&["--totp", "off", "--tap", "off", "--password", "off"]);
        let p = changed_policy(&current, &a, &ResolvedGroups::default());
        assert!(!p.totp.enabled && !p.temporary_access_pass.enabled && !p.password.enabled);
        assert!(!touches_passkeys(&current, &p));
        let a = set_args(&["--passkey", "off"]);
        assert!(touches_passkeys(
            &current,
            &changed_policy(&current, &a, &ResolvedGroups::default())
        ));
    }

    #[test]
    fn an_invalid_result_is_refused_with_the_reason() {
        let mut p = AuthenticationMethodsPolicy::default();
        p.passkey.target.include_groups.insert(g(1));
        let e = check_policy(&p, false).unwrap_err().to_string();
        assert!(
            e.contains("not both") && e.contains("methods-policy show"),
            "{e}"
        );
    }

    #[test]
    fn policy_files_are_whole_policies_and_may_carry_warnings() {
        let mut v = serde_json::to_value(AuthenticationMethodsPolicy::default()).unwrap();
        v["warnings"] = json!(["something"]);
        v["passkey"]["keyRestrictions"] = json!({"enforcement": "block", "aaguids": [YUBI]});
        let p = policy_from_text(&v.to_string(), "policy.json").unwrap();
        assert!(p.passkey.key_restrictions.is_some());
        let e = policy_from_text("{", "policy.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("policy.json is not JSON (line 1"), "{e}");
        let mut typo = v.clone();
        typo["passkey"]["enforceAttestaton"] = json!(true);
        let e = policy_from_text(&typo.to_string(), "policy.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not an authentication methods policy") && e.contains("enforceAttestaton"),
            "{e}"
        );
        let (p, w) = policy_view(v).unwrap();
        assert_eq!(w, ["something"]);
        assert!(p.passkey.key_restrictions.is_some());
    }

    fn names() -> Names {
        Names {
            groups: BTreeMap::from([(g(1), Some("Pilot".into())), (g(2), None)]),
            models: BTreeMap::from([(Uuid::parse_str(YUBI).unwrap(), "YubiKey 5 Series".into())]),
        }
    }

    #[test]
    fn the_policy_reads_as_a_table_with_warnings_last() {
        let mut p = AuthenticationMethodsPolicy::default();
        p.passkey.target.all_users = false;
        p.passkey.target.include_groups.insert(g(1));
        p.passkey.target.exclude_groups.insert(g(2));
        p.totp.enabled = false;
        p.passkey.key_restrictions = Some(KeyRestrictions {
            enforcement: Enforcement::Allow,
            aaguids: BTreeSet::from([Uuid::parse_str(YUBI).unwrap(), g(7)]),
        });
        let text = policy_text(&p, &["no attestation roots".into()], &names());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("METHOD") && lines[0].contains("EXCEPT MEMBERS OF"));
        assert!(
            lines[1].starts_with("passkey")
                && lines[1].contains("yes")
                && lines[1].contains("Pilot"),
            "{text}"
        );
        assert!(lines[1].contains("(no such group)"), "{text}");
        assert!(
            lines[2].starts_with("totp") && lines[2].contains("no"),
            "{text}"
        );
        assert!(text.contains("allow only 2 models"), "{text}");
        assert!(text.contains("YubiKey 5 Series"), "{text}");
        assert!(text.contains("(model not in the catalogue)"), "{text}");
        assert!(text.ends_with("WARNING: no attestation roots\n"), "{text}");
        let plain = policy_text(
            &AuthenticationMethodsPolicy::default(),
            &[],
            &Names::default(),
        );
        assert!(!plain.contains("WARNING"), "{plain}");
        assert!(plain.contains("none: passkeys of every model"), "{plain}");
        assert!(plain.contains("not enforced"), "{plain}");
    }

    #[test]
    fn changes_read_as_before_and_after() {
        let before = AuthenticationMethodsPolicy::default();
        let mut after = before.clone();
        after.passkey.target.all_users = false;
        after.passkey.target.include_groups.insert(g(1));
        after.passkey.key_restrictions = Some(KeyRestrictions {
            enforcement: Enforcement::Block,
            aaguids: BTreeSet::from([Uuid::parse_str(YUBI).unwrap()]),
        });
        after.password.enabled = false;
        let text = changes_text(&before, &after, &names());
        assert!(
            text.contains("passkey: on for everyone → on for members of Pilot"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "passkey models: none → block YubiKey 5 Series ({YUBI})"
            )),
            "{text}"
        );
        assert!(text.contains("password: on for everyone → off"), "{text}");
        assert!(!text.contains("totp"), "{text}");
        assert_eq!(
            changes_text(&before, &before, &names()),
            "The policy would not change.\n"
        );
    }

    fn answer(v: Value) -> PreviewAnswer {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_preview_names_whose_passkeys_stop_and_who_is_left_without() {
        let p = answer(json!({
            "passkeysConsidered": 3,
            "stopWorking": [
                {"userId": g(1), "userPrincipalName": "ann@corp.example", "passkeyId": g(11),
                 "name": "Ann's key", "aaguid": YUBI, "authenticatorName": "YubiKey 5 Series"},
                {"userId": g(2), "userPrincipalName": "bob@corp.example", "passkeyId": g(21),
                 "name": "", "aaguid": null, "authenticatorName": null},
            ],
            "startWorking": [],
            "usersLeftWithoutPasskey": ["bob@corp.example"],
            "warnings": ["password is disabled"],
        }));
        let text = preview_text(&p);
        assert!(
            text.starts_with("2 passkeys of 3 registered would STOP WORKING"),
            "{text}"
        );
        assert!(text.contains("ann@corp.example") && text.contains("YubiKey 5 Series"));
        assert!(text.contains(&g(21).to_string()) && text.contains("unknown"));
        assert!(
            text.contains("1 user would be LEFT WITHOUT A WORKING PASSKEY")
                && text.contains("  bob@corp.example\n"),
            "{text}"
        );
        assert!(!text.contains("work again"), "{text}");
        assert!(text.ends_with("WARNING: password is disabled\n"), "{text}");
        let mut n = Names::default();
        n.learn_from(&p);
        assert_eq!(n.model(Uuid::parse_str(YUBI).unwrap()), "YubiKey 5 Series");

        let none = preview_text(&answer(json!({"passkeysConsidered": 0})));
        assert!(none.starts_with("No passkey is registered yet"), "{none}");
        let fine = preview_text(&answer(json!({"passkeysConsidered": 4})));
        assert_eq!(
            fine,
            "No registered passkey would stop working (4 passkeys checked).\n"
        );
        let back = preview_text(&answer(json!({
            "passkeysConsidered": 1,
            "startWorking": [{"userPrincipalName": "c@x.example", "passkeyId": g(3), "name": "k"}],
        })));
        assert!(back.contains("1 passkey would work again"), "{back}");
    }

    fn key(v: Value) -> PasskeyView {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn passkeys_read_as_a_table() {
        let keys = vec![
            key(json!({
                "id": g(5), "displayName": "Work phone", "credentialId": "abc",
                "aaGuid": "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4", "model": "Google Password Manager",
                "isBackedUp": true, "isBackupEligible": true, "deviceFamily": "androidPixel",
                "attestationFormat": "none", "isAttested": false, "signCount": 0,
                "createdDateTime": "2026-01-02T03:04:05Z", "lastUsedDateTime": null,
            })),
            key(json!({
                "id": g(6), "displayName": "", "aaGuid": "00000000-0000-0000-0000-000000000000",
                "model": null, "isBackedUp": false, "deviceFamily": "securityKey",
                "createdDateTime": "2026-01-03T00:00:00Z", "lastUsedDateTime": "2026-02-01T00:00:00Z",
            })),
        ];
        let text = passkeys_text("user1@contoso.example", &keys);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME") && lines[0].ends_with("ID"),
            "{text}"
        );
        for want in [
            "Work phone",
            "Google Password Manager",
            "synced",
            "Google Pixel (Android)",
            "never",
        ] {
            assert!(lines[1].contains(want), "{want}: {text}");
        }
        for want in [
            "device-bound",
            "Security key",
            "unknown",
            "2026-02-01T00:00:00Z",
        ] {
            assert!(lines[2].contains(want), "{want}: {text}");
        }
        let none = passkeys_text("user1@contoso.example", &[]);
        assert!(
            none.starts_with("user1@contoso.example has no passkeys.")
                && none.contains("tap create user1@contoso.example --once"),
            "{none}"
        );
        let text = deleted_text("user1@contoso.example", g(5), &keys);
        assert!(
            text.starts_with(&format!(
                "Deleted the passkey \"Work phone\" ({}) of user1@contoso.example",
                g(5)
            )),
            "{text}"
        );
        assert!(text.contains("They still have 1 other passkey."), "{text}");
        assert!(text.contains("Temporary Access Pass"), "{text}");
        let text = deleted_text("u@x.example", g(9), &[]);
        assert!(text.contains("They have no passkey left."), "{text}");
    }

    #[test]
    fn the_report_starts_with_the_summary() {
        let r: RegistrationReport = serde_json::from_value(json!({
            "value": [
                {"id": g(1), "userPrincipalName": "ann@corp.example", "userDisplayName": "Ann",
                 "methodsRegistered": ["password", "passkey"], "isMfaRegistered": true,
                 "isPasswordlessCapable": true, "passkeyCount": 2, "syncedPasskeyCount": 1,
                 "deviceFamilies": ["iPhone", "securityKey"]},
                {"id": g(2), "userPrincipalName": "bob@corp.example", "userDisplayName": "Bob",
                 "methodsRegistered": [], "isMfaRegistered": false,
                 "isPasswordlessCapable": false, "passkeyCount": 0, "syncedPasskeyCount": 0,
                 "deviceFamilies": []},
                {"id": g(3), "userPrincipalName": "cat@corp.example", "userDisplayName": "Cat",
                 "methodsRegistered": ["password", "totp"], "isMfaRegistered": true,
                 "isPasswordlessCapable": false, "passkeyCount": 0, "syncedPasskeyCount": 0,
                 "deviceFamilies": []},
            ],
            "summary": {"users": 3, "mfaRegistered": 2, "passwordlessCapable": 1,
                        "withTwoOrMorePasskeys": 1,
                        "usersByPasskeyDeviceFamily": {"iPhone": 1, "securityKey": 1},
                        "truncated": false},
        }))
        .unwrap();
        let text = report_text(&r, None);
        assert!(text.starts_with("users:"), "{text}");
        assert!(text.contains("mfaRegistered:        2 (66.7%)"), "{text}");
        assert!(text.contains("passwordlessCapable:  1 (33.3%)"), "{text}");
        assert!(text.contains("twoOrMorePasskeys:    1 (33.3%)"), "{text}");
        let family = text.find("iPhone or iPad").unwrap();
        let users = text.find("ann@corp.example").unwrap();
        assert!(family < users, "{text}");
        assert!(text.contains("2 (1 synced)"), "{text}");
        assert!(text.contains("password,totp"), "{text}");
        assert!(!text.contains("50000"), "{text}");
        let empty: RegistrationReport = serde_json::from_value(json!({
            "value": [],
            "summary": {"users": 0, "mfaRegistered": 0, "passwordlessCapable": 0,
                        "withTwoOrMorePasskeys": 0, "usersByPasskeyDeviceFamily": {},
                        "truncated": true},
        }))
        .unwrap();
        let text = report_text(&empty, Some("Pilot"));
        assert!(text.starts_with("Members of Pilot:\n"), "{text}");
        assert!(text.contains("nobody has a passkey yet"), "{text}");
        assert!(text.contains("--group"), "{text}");
    }

    #[test]
    fn groups_resolve_by_exact_name() {
        let group = |n: u128, name: &str| GroupView {
            id: g(n),
            display_name: name.into(),
            description: None,
            membership_kind: "assigned".into(),
            source: "cloud".into(),
            immutable_id: None,
            created_date_time: "t".into(),
        };
        let groups = [group(1, "Pilot"), group(2, "Twin"), group(3, "Twin")];
        assert_eq!(find_group("Pilot", &groups).unwrap(), g(1));
        let e = find_group("pilot", &groups).unwrap_err().to_string();
        assert!(e.contains("did you mean 'Pilot'"), "{e}");
        let e = find_group("Twin", &groups).unwrap_err().to_string();
        assert!(e.starts_with("2 groups are named 'Twin'"), "{e}");
        let e = find_group("Nobody", &groups).unwrap_err().to_string();
        assert!(e.contains("groups list --all"), "{e}");
    }

    #[test]
    fn confirmation_needs_a_yes() {
        assert!(is_yes("y\n") && is_yes("YES\r\n") && is_yes(" yes "));
        assert!(!is_yes("") && !is_yes("no") && !is_yes("yess"));
        assert!(confirm(true, false).is_ok());
        let e = confirm(false, false).unwrap_err().to_string();
        assert!(
            e.contains("not interactive")
                && e.contains("--yes")
                && e.contains("nothing was changed"),
            "{e}"
        );
    }

    /// `s` with every run of whitespace as one space (help text is wrapped to the terminal).
    fn words(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn help_texts_teach_with_examples() {
        let mut cmd = Cli::command();
        let policy = words(
            &cmd.find_subcommand_mut("methods-policy")
                .unwrap()
                .render_long_help()
                .to_string(),
        );
        for want in [
            "--attestation-roots",
            "applies at sign-in too",
            "--yes",
            "--dry-run",
            "methods-policy preview --file policy.json",
        ] {
            assert!(
                policy.contains(want),
                "{want:?} missing from methods-policy --help"
            );
        }
        let set = words(
            &Cli::command()
                .find_subcommand_mut("methods-policy")
                .unwrap()
                .find_subcommand_mut("set")
                .unwrap()
                .render_long_help()
                .to_string(),
        );
        for want in [
            "not interactive",
            "exact display name",
            "--no-key-restrictions",
        ] {
            assert!(set.contains(want), "{want:?} missing from set --help");
        }
        let passkeys = words(
            &Cli::command()
                .find_subcommand_mut("passkeys")
                .unwrap()
                .render_long_help()
                .to_string(),
        );
        assert!(passkeys.contains("tap create USER --once"), "{passkeys}");
        let report = words(
            &Cli::command()
                .find_subcommand_mut("reports")
                .unwrap()
                .find_subcommand_mut("registration")
                .unwrap()
                .render_long_help()
                .to_string(),
        );
        assert!(report.contains("--output jsonl"), "{report}");
    }
}
