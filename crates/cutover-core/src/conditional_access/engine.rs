//! The evaluation engine: which policies apply to a sign-in, what each demands, whether the
//! sign-in already meets it or can step up to it, and the one decision the enforced policies
//! add up to. Report-only results are computed the same way and recorded, never decided on.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::policy::{
    CheckedPolicy, Grant, GrantOperator, LocationScope, Platform, PlatformScope, PolicyState,
    Scope, StrengthControl, UserScope,
};
use crate::signin_log::PolicyResult;
use crate::strength::{BuiltIn, MethodKind, Strength, UsedMethod, meets_built_in, satisfies};
use crate::{ClientAppType, Timestamp};

/// The reason recorded for every policy when a break-glass account signs in.
pub const BREAK_GLASS_REASON: &str = "break-glass account: excluded by the engine";

/// The methods a user has registered and could still use to step up in this sign-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredMethods {
    pub password: bool,
    pub totp: bool,
    pub passkey: bool,
}

/// What the engine knows about one sign-in (or a what-if), as the caller loaded it.
#[derive(Debug, Clone, Copy)]
pub struct SignInFacts<'a> {
    pub user_id: Uuid,
    /// The user's direct groups (the caller decides what counts as membership).
    pub groups: &'a BTreeSet<Uuid>,
    /// The account is one of the tenant's break-glass accounts: no policy applies to it.
    pub break_glass: bool,
    pub app_id: Uuid,
    pub client_app_type: ClientAppType,
    /// The client's address; `None` when unknown (it is then in no named location).
    pub ip: Option<IpAddr>,
    /// `signin_log::device_platform` of the User-Agent.
    pub platform: &'a str,
    /// What was done so far in this sign-in or session.
    pub methods: &'a [UsedMethod],
    /// When the session's user last authenticated interactively.
    pub auth_time: Timestamp,
    pub now: Timestamp,
    /// What the user could still do to step up.
    pub can_satisfy: RegisteredMethods,
}

/// [`SignInFacts`] that own their data (for generators, fixtures and the what-if tool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFactsOwned {
    pub user_id: Uuid,
    pub groups: BTreeSet<Uuid>,
    pub break_glass: bool,
    pub app_id: Uuid,
    pub client_app_type: ClientAppType,
    pub ip: Option<IpAddr>,
    pub platform: String,
    pub methods: Vec<UsedMethod>,
    pub auth_time: Timestamp,
    pub now: Timestamp,
    pub can_satisfy: RegisteredMethods,
}

impl SignInFactsOwned {
    pub fn facts(&self) -> SignInFacts<'_> {
        SignInFacts {
            user_id: self.user_id,
            groups: &self.groups,
            break_glass: self.break_glass,
            app_id: self.app_id,
            client_app_type: self.client_app_type,
            ip: self.ip,
            platform: &self.platform,
            methods: &self.methods,
            auth_time: self.auth_time,
            now: self.now,
            can_satisfy: self.can_satisfy,
        }
    }
}

/// One policy's result for one sign-in, as the sign-in log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CaResult {
    Success,
    Failure,
    NotApplied,
    /// Enforced; a step-up (or a fresh sign-in) is required and possible.
    Interrupted,
    ReportOnlySuccess,
    ReportOnlyFailure,
    ReportOnlyInterrupted,
    ReportOnlyNotApplied,
}

impl CaResult {
    pub const ALL: [CaResult; 8] = [
        Self::Success,
        Self::Failure,
        Self::NotApplied,
        Self::Interrupted,
        Self::ReportOnlySuccess,
        Self::ReportOnlyFailure,
        Self::ReportOnlyInterrupted,
        Self::ReportOnlyNotApplied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::NotApplied => "notApplied",
            Self::Interrupted => "interrupted",
            Self::ReportOnlySuccess => "reportOnlySuccess",
            Self::ReportOnlyFailure => "reportOnlyFailure",
            Self::ReportOnlyInterrupted => "reportOnlyInterrupted",
            Self::ReportOnlyNotApplied => "reportOnlyNotApplied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_report_only(self) -> bool {
        matches!(
            self,
            Self::ReportOnlySuccess
                | Self::ReportOnlyFailure
                | Self::ReportOnlyInterrupted
                | Self::ReportOnlyNotApplied
        )
    }

    /// The policy applied (whatever it then decided).
    pub fn applied(self) -> bool {
        !matches!(self, Self::NotApplied | Self::ReportOnlyNotApplied)
    }

    fn of(report_only: bool, outcome: Outcome) -> Self {
        match (report_only, outcome) {
            (false, Outcome::Success) => Self::Success,
            (false, Outcome::Failure) => Self::Failure,
            (false, Outcome::NotApplied) => Self::NotApplied,
            (false, Outcome::Interrupted) => Self::Interrupted,
            (true, Outcome::Success) => Self::ReportOnlySuccess,
            (true, Outcome::Failure) => Self::ReportOnlyFailure,
            (true, Outcome::NotApplied) => Self::ReportOnlyNotApplied,
            (true, Outcome::Interrupted) => Self::ReportOnlyInterrupted,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    NotApplied,
    Interrupted,
}

/// A strength the user must reach: the strongest built-in one needed and every custom one
/// needed. Several policies' requirements combine by taking the stronger built-in and the
/// union of custom ones; the step-up's result is evaluated again, so this is what to ask
/// for, not the final word.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_in: Option<BuiltIn>,
    /// Sorted by id, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<super::policy::CustomStrengthRef>,
}

impl Requirement {
    pub fn is_empty(&self) -> bool {
        self.built_in.is_none() && self.custom.is_empty()
    }

    /// Add one control.
    pub fn add(&mut self, control: &StrengthControl) {
        match control {
            StrengthControl::BuiltIn(b) => self.built_in = self.built_in.max(Some(*b)),
            StrengthControl::Custom(c) => {
                if let Err(at) = self.custom.binary_search_by_key(&c.id, |x| x.id) {
                    self.custom.insert(at, c.clone());
                }
            }
        }
    }

    /// Add everything `other` requires.
    pub fn merge(&mut self, other: &Requirement) {
        if let Some(b) = other.built_in {
            self.add(&StrengthControl::BuiltIn(b));
        }
        for c in &other.custom {
            self.add(&StrengthControl::Custom(c.clone()));
        }
    }

    /// Whether meeting `self` means meeting `other` as well (as far as names tell: built-ins
    /// are ordered, custom strengths only include themselves).
    pub fn includes(&self, other: &Requirement) -> bool {
        self.built_in >= other.built_in
            && other
                .custom
                .iter()
                .all(|c| self.custom.binary_search_by_key(&c.id, |x| x.id).is_ok())
    }

    /// Whether the methods meet every part.
    pub fn is_met_by(&self, methods: &[UsedMethod]) -> bool {
        self.built_in.is_none_or(|b| meets_built_in(methods, b))
            && self
                .custom
                .iter()
                .all(|c| satisfies(methods, &Strength::Custom(c.strength.clone())))
    }

    /// `mfa and strength 'Keys' (<id>)`.
    pub fn explain(&self) -> String {
        let mut parts: Vec<String> = self
            .built_in
            .iter()
            .map(|b| b.as_str().to_owned())
            .collect();
        parts.extend(
            self.custom
                .iter()
                .map(|c| format!("strength '{}' ({})", c.strength.name, c.id)),
        );
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(" and ")
        }
    }
}

/// What an applied policy asks for, whether or not the sign-in already meets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Required {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<GrantOperator>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<StrengthControl>,
    /// The sign-in frequency: the longest a session's authentication may be old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_frequency_secs: Option<i64>,
}

/// One policy's evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyEvaluation {
    pub policy_id: Uuid,
    pub display_name: String,
    pub result: CaResult,
    /// Why, in words for the admin ("not applied: client app type 'other' not included").
    pub reason: String,
    /// What the policy asks for; `None` when it did not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Required>,
    /// Interrupted for a grant: what a step-up must reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<Requirement>,
    /// Interrupted because the session's authentication is older than the policy's sign-in
    /// frequency allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reauthenticate: bool,
}

impl PolicyEvaluation {
    /// `'Require MFA' (<id>): interrupted: requires mfa; …`
    pub fn explain(&self) -> String {
        format!(
            "'{}' ({}): {}: {}",
            self.display_name,
            self.policy_id,
            self.result.as_str(),
            self.reason
        )
    }
}

/// What the enforced policies add up to. Policy ids are sorted, each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum Decision {
    Allow,
    Block {
        policies: Vec<Uuid>,
    },
    StepUp {
        requirement: Requirement,
        policies: Vec<Uuid>,
    },
    /// The session's authentication is older than a policy's sign-in frequency allows: sign
    /// in again.
    Reauthenticate {
        policies: Vec<Uuid>,
    },
}

impl Decision {
    /// How restrictive the decision is: allow 0, step-up or reauthenticate 1, block 2.
    pub fn severity(&self) -> u8 {
        match self {
            Self::Allow => 0,
            Self::StepUp { .. } | Self::Reauthenticate { .. } => 1,
            Self::Block { .. } => 2,
        }
    }

    pub fn policies(&self) -> &[Uuid] {
        match self {
            Self::Allow => &[],
            Self::Block { policies }
            | Self::StepUp { policies, .. }
            | Self::Reauthenticate { policies } => policies,
        }
    }

    pub fn explain(&self) -> String {
        let list = |p: &[Uuid]| p.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Self::Allow => "allow: no enforced policy blocks or interrupts the sign-in".into(),
            Self::Block { policies } => format!("block: by {}", list(policies)),
            Self::StepUp {
                requirement,
                policies,
            } => format!(
                "step up to {}: required by {}",
                requirement.explain(),
                list(policies)
            ),
            Self::Reauthenticate { policies } => format!(
                "reauthenticate: the sign-in frequency of {} is exceeded",
                list(policies)
            ),
        }
    }
}

/// Every policy's result (disabled policies left out) and the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub results: Vec<PolicyEvaluation>,
    pub decision: Decision,
}

impl Evaluation {
    /// The decision, then one line per policy (the what-if tool's answer).
    pub fn explain(&self) -> String {
        let mut out = self.decision.explain();
        for r in &self.results {
            out.push_str("\n- ");
            out.push_str(&r.explain());
        }
        out
    }

    /// The sign-in log's per-policy records.
    pub fn policy_results(&self) -> Vec<PolicyResult> {
        self.results
            .iter()
            .map(|r| PolicyResult {
                policy_id: r.policy_id,
                result: r.result.as_str().to_owned(),
                reason: Some(r.reason.clone()),
            })
            .collect()
    }
}

/// What is worked out once per sign-in, not once per policy.
struct Prepared<'f> {
    facts: &'f SignInFacts<'f>,
    /// Built-in strengths met, weakest first (as `BuiltIn::ALL`).
    met: [bool; 3],
    methods_text: String,
    platform: Option<Platform>,
    ip: Option<IpAddr>,
    age_ms: i64,
}

impl<'f> Prepared<'f> {
    fn new(facts: &'f SignInFacts<'f>) -> Self {
        Self {
            facts,
            met: BuiltIn::ALL.map(|b| meets_built_in(facts.methods, b)),
            methods_text: methods_text(facts.methods),
            platform: Platform::from_device_platform(facts.platform),
            ip: facts.ip.map(|ip| ip.to_canonical()),
            age_ms: facts.now.millis().saturating_sub(facts.auth_time.millis()),
        }
    }

    fn meets(&self, control: &StrengthControl) -> bool {
        match control {
            StrengthControl::BuiltIn(b) => self.met[built_in_index(*b)],
            StrengthControl::Custom(c) => {
                // Kinds used that the strength counts (a passkey of an unlisted model does
                // not), without allocating: combinations are small.
                c.strength.combinations.iter().any(|combo| {
                    combo
                        .iter()
                        .all(|k| self.facts.methods.iter().any(|m| counts(m, *k, c)))
                })
            }
        }
    }

    /// Whether a step-up in this sign-in can reach the control.
    fn reachable(&self, control: &StrengthControl) -> bool {
        let can = self.facts.can_satisfy;
        match control {
            StrengthControl::BuiltIn(BuiltIn::Mfa) => can.totp || can.passkey,
            StrengthControl::BuiltIn(BuiltIn::PasswordlessMfa | BuiltIn::PhishingResistantMfa) => {
                can.passkey
            }
            StrengthControl::Custom(c) => c.strength.combinations.iter().any(|combo| {
                combo.iter().all(|k| {
                    let registered = match k {
                        MethodKind::Password => can.password,
                        MethodKind::Totp => can.totp,
                        // Which model the registered passkey is, the engine does not know:
                        // an unlisted one fails the step-up, which is evaluated again.
                        MethodKind::Passkey => can.passkey,
                        // Neither is something a signed-in user steps up with.
                        MethodKind::Federated | MethodKind::TemporaryAccessPass => false,
                    };
                    registered || self.facts.methods.iter().any(|m| counts(m, *k, c))
                })
            }),
        }
    }
}

/// The position of `b` in `BuiltIn::ALL`.
fn built_in_index(b: BuiltIn) -> usize {
    match b {
        BuiltIn::Mfa => 0,
        BuiltIn::PasswordlessMfa => 1,
        BuiltIn::PhishingResistantMfa => 2,
    }
}

/// Whether a used method counts as `kind` for a custom strength.
fn counts(m: &UsedMethod, kind: MethodKind, c: &super::policy::CustomStrengthRef) -> bool {
    m.kind == kind
        && (kind != MethodKind::Passkey
            || c.strength
                .allowed_aaguids
                .as_ref()
                .is_none_or(|allowed| m.aaguid.is_some_and(|a| allowed.contains(&a))))
}

/// `[pwd, otp]`: the methods in the order used, as `amr` names them.
fn methods_text(methods: &[UsedMethod]) -> String {
    let mut names: Vec<&str> = Vec::with_capacity(methods.len());
    for m in methods {
        let name = match m.kind {
            MethodKind::Password => "pwd",
            MethodKind::Federated if m.upstream_mfa => "fed+mfa",
            MethodKind::Federated => "fed",
            MethodKind::Totp => "otp",
            MethodKind::Passkey if m.synced => "swk",
            MethodKind::Passkey => "hwk",
            MethodKind::TemporaryAccessPass => "tap",
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    format!("[{}]", names.join(", "))
}

/// `2d 3h`, `9h 5m`, `12m`, `40s`.
fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// The smallest id in both sets, iterating the smaller set and looking up in the larger, so
/// a user in 10,000 groups costs a policy with three groups three lookups.
fn first_common(a: &BTreeSet<Uuid>, b: &BTreeSet<Uuid>) -> Option<Uuid> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().find(|g| large.contains(g)).copied()
}

fn users_match(u: &UserScope, facts: &SignInFacts<'_>) -> Result<(), String> {
    if u.exclude_users.contains(&facts.user_id) {
        return Err("user excluded (excludeUsers)".into());
    }
    if let Some(g) = first_common(&u.exclude_groups, facts.groups) {
        return Err(format!("user excluded: member of excluded group {g}"));
    }
    let included = match &u.include {
        Scope::All => true,
        Scope::None => false,
        Scope::Ids(ids) => ids.contains(&facts.user_id),
    } || first_common(&u.include_groups, facts.groups).is_some();
    if included {
        Ok(())
    } else if u.include == Scope::None {
        Err("user not included (includeUsers is None)".into())
    } else {
        Err(
            "user not included: neither listed in includeUsers nor a member of an included group"
                .into(),
        )
    }
}

fn locations_match(l: &LocationScope, ip: Option<IpAddr>) -> Result<(), String> {
    if let Some(ip) = ip
        && let Some(x) = l.exclude.iter().find(|x| x.contains(ip))
    {
        return Err(format!(
            "IP {ip} is in excluded location '{}'",
            x.display_name()
        ));
    }
    if l.include_all {
        return Ok(());
    }
    let names = || {
        let mut s = l
            .include
            .iter()
            .take(5)
            .map(|x| format!("'{}'", x.display_name()))
            .collect::<Vec<_>>()
            .join(", ");
        if l.include.len() > 5 {
            s.push_str(", …");
        }
        if s.is_empty() {
            s.push_str("none: no named location is trusted");
        }
        s
    };
    match ip {
        None => Err(format!(
            "IP address unknown, and the policy includes only named locations ({})",
            names()
        )),
        Some(ip) if l.include.iter().any(|x| x.contains(ip)) => Ok(()),
        Some(ip) => Err(format!("IP {ip} is in no included location ({})", names())),
    }
}

fn platforms_match(p: &PlatformScope, platform: Option<Platform>, raw: &str) -> Result<(), String> {
    if let Some(pl) = platform
        && p.exclude.contains(&pl)
    {
        return Err(format!("platform '{raw}' excluded"));
    }
    match (&p.include, platform) {
        (None, _) => Ok(()),
        (Some(set), Some(pl)) if set.contains(&pl) => Ok(()),
        (Some(_), None) => Err(format!(
            "platform '{raw}' not included (only includePlatforms all covers it)"
        )),
        (Some(_), Some(_)) => Err(format!("platform '{raw}' not included")),
    }
}

/// Why the policy does not apply, or `None` when it does.
fn not_applied_reason(p: &CheckedPolicy, prep: &Prepared<'_>) -> Option<String> {
    let facts = prep.facts;
    if let Err(why) = users_match(&p.users, facts) {
        return Some(why);
    }
    if p.applications.exclude.contains(&facts.app_id) {
        return Some(format!("application {} excluded", facts.app_id));
    }
    let app_included = match &p.applications.include {
        Scope::All => true,
        Scope::None => false,
        Scope::Ids(ids) => ids.contains(&facts.app_id),
    };
    if !app_included {
        return Some(format!("application {} not included", facts.app_id));
    }
    if let Some(types) = &p.client_app_types
        && !types.contains(&facts.client_app_type)
    {
        return Some(format!(
            "client app type '{}' not included",
            facts.client_app_type.as_str()
        ));
    }
    if let Some(l) = &p.locations
        && let Err(why) = locations_match(l, prep.ip)
    {
        return Some(why);
    }
    if let Some(pl) = &p.platforms
        && let Err(why) = platforms_match(pl, prep.platform, facts.platform)
    {
        return Some(why);
    }
    None
}

enum GrantOutcome {
    Met,
    StepUp(Requirement),
    Unreachable,
    Blocked,
}

fn unreachable_why(control: &StrengthControl) -> String {
    match control {
        StrengthControl::BuiltIn(BuiltIn::Mfa) => "no TOTP or passkey registered".into(),
        StrengthControl::BuiltIn(_) => "no passkey registered".into(),
        StrengthControl::Custom(c) => format!(
            "no combination of strength '{}' can be completed with the registered methods",
            c.strength.name
        ),
    }
}

fn evaluate_grant(grant: &Grant, prep: &Prepared<'_>, reason: &mut String) -> GrantOutcome {
    let (operator, controls) = match grant {
        Grant::Block => {
            reason.push_str("blocked by grant control 'block'");
            return GrantOutcome::Blocked;
        }
        Grant::Require { operator, controls } => (*operator, controls),
    };
    let joiner = format!(" {} ", operator.as_str());
    reason.push_str("requires ");
    reason.push_str(
        &controls
            .iter()
            .map(StrengthControl::label)
            .collect::<Vec<_>>()
            .join(&joiner),
    );
    let methods = &prep.methods_text;
    match operator {
        GrantOperator::And => {
            let unmet: Vec<&StrengthControl> = controls.iter().filter(|c| !prep.meets(c)).collect();
            if unmet.is_empty() {
                reason.push_str(&format!("; satisfied by methods {methods}"));
                return GrantOutcome::Met;
            }
            if let Some(blocker) = unmet.iter().find(|c| !prep.reachable(c)) {
                reason.push_str(&format!(
                    "; not satisfied by methods {methods}, and {} cannot be reached: {}",
                    blocker.label(),
                    unreachable_why(blocker)
                ));
                return GrantOutcome::Unreachable;
            }
            let mut requirement = Requirement::default();
            for c in unmet {
                requirement.add(c);
            }
            reason.push_str(&format!(
                "; not satisfied by methods {methods}; step-up to {} possible",
                requirement.explain()
            ));
            GrantOutcome::StepUp(requirement)
        }
        GrantOperator::Or => {
            if let Some(met) = controls.iter().find(|c| prep.meets(c)) {
                if controls.len() == 1 {
                    reason.push_str(&format!("; satisfied by methods {methods}"));
                } else {
                    reason.push_str(&format!("; {} satisfied by methods {methods}", met.label()));
                }
                return GrantOutcome::Met;
            }
            // Controls are in canonical order (built-ins weakest first): ask for the first
            // one the user can reach.
            match controls.iter().find(|c| prep.reachable(c)) {
                Some(c) => {
                    let mut requirement = Requirement::default();
                    requirement.add(c);
                    reason.push_str(&format!(
                        "; not satisfied by methods {methods}; step-up to {} possible",
                        c.label()
                    ));
                    GrantOutcome::StepUp(requirement)
                }
                None if controls.len() == 1 => {
                    reason.push_str(&format!(
                        "; not satisfied by methods {methods}, and {} cannot be reached: {}",
                        controls[0].label(),
                        unreachable_why(&controls[0])
                    ));
                    GrantOutcome::Unreachable
                }
                None => {
                    let why = controls
                        .iter()
                        .map(unreachable_why)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect::<Vec<_>>()
                        .join("; ");
                    reason.push_str(&format!(
                        "; not satisfied by methods {methods}, and no control can be reached: {why}"
                    ));
                    GrantOutcome::Unreachable
                }
            }
        }
    }
}

fn evaluate_policy(p: &CheckedPolicy, prep: &Prepared<'_>) -> PolicyEvaluation {
    let report_only = p.state == PolicyState::EnabledForReportingButNotEnforced;
    let not_applied = |reason: String| PolicyEvaluation {
        policy_id: p.id,
        display_name: p.display_name.clone(),
        result: CaResult::of(report_only, Outcome::NotApplied),
        reason,
        required: None,
        step_up: None,
        reauthenticate: false,
    };
    if prep.facts.break_glass {
        return not_applied(BREAK_GLASS_REASON.into());
    }
    if let Some(why) = not_applied_reason(p, prep) {
        return not_applied(format!("not applied: {why}"));
    }
    let mut reason = String::new();
    let mut required = Required::default();
    let grant = match &p.grant {
        None => GrantOutcome::Met,
        Some(g) => {
            match g {
                Grant::Block => required.block = true,
                Grant::Require { operator, controls } => {
                    required.operator = Some(*operator);
                    required.controls = controls.clone();
                }
            }
            evaluate_grant(g, prep, &mut reason)
        }
    };
    let mut reauthenticate = false;
    if let Some(limit) = p.sign_in_frequency {
        let max_ms = limit.secs().saturating_mul(1000);
        required.sign_in_frequency_secs = Some(limit.secs());
        reauthenticate = prep.age_ms > max_ms;
        if !reason.is_empty() {
            reason.push_str("; ");
        }
        let age = human_duration(prep.age_ms);
        if reauthenticate {
            reason.push_str(&format!(
                "sign-in frequency {limit} exceeded (authenticated {age} ago)"
            ));
        } else {
            reason.push_str(&format!(
                "sign-in frequency {limit}: authenticated {age} ago"
            ));
        }
    }
    let (outcome, step_up) = match grant {
        GrantOutcome::Blocked | GrantOutcome::Unreachable => {
            reauthenticate = false;
            (Outcome::Failure, None)
        }
        GrantOutcome::StepUp(r) => (Outcome::Interrupted, Some(r)),
        GrantOutcome::Met if reauthenticate => (Outcome::Interrupted, None),
        GrantOutcome::Met => (Outcome::Success, None),
    };
    PolicyEvaluation {
        policy_id: p.id,
        display_name: p.display_name.clone(),
        result: CaResult::of(report_only, outcome),
        reason,
        required: Some(required),
        step_up,
        reauthenticate,
    }
}

/// Evaluate every policy that is enabled or report-only for one sign-in and decide. Disabled
/// policies are left out of the results. A break-glass account is excluded from every policy
/// by the engine itself. Of the enforced results: any failure blocks; else any step-up
/// interrupts with the combined requirement; else an exceeded sign-in frequency asks for a
/// fresh sign-in; else the sign-in is allowed. Report-only results never enter the decision.
pub fn evaluate(policies: &[CheckedPolicy], facts: &SignInFacts<'_>) -> Evaluation {
    let prep = Prepared::new(facts);
    let results: Vec<PolicyEvaluation> = policies
        .iter()
        .filter(|p| p.state != PolicyState::Disabled)
        .map(|p| evaluate_policy(p, &prep))
        .collect();
    let decision = decide(&results);
    Evaluation { results, decision }
}

fn decide(results: &[PolicyEvaluation]) -> Decision {
    let enforced = || results.iter().filter(|r| !r.result.is_report_only());
    let ids = |keep: &dyn Fn(&PolicyEvaluation) -> bool| {
        enforced()
            .filter(|r| keep(r))
            .map(|r| r.policy_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    };
    let blocked = ids(&|r| r.result == CaResult::Failure);
    if !blocked.is_empty() {
        return Decision::Block { policies: blocked };
    }
    let stepping = ids(&|r| r.result == CaResult::Interrupted && r.step_up.is_some());
    if !stepping.is_empty() {
        let mut requirement = Requirement::default();
        for r in enforced() {
            if r.result == CaResult::Interrupted
                && let Some(s) = &r.step_up
            {
                requirement.merge(s);
            }
        }
        return Decision::StepUp {
            requirement,
            policies: stepping,
        };
    }
    let stale = ids(&|r| r.result == CaResult::Interrupted && r.reauthenticate);
    if !stale.is_empty() {
        return Decision::Reauthenticate { policies: stale };
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(-5), "0s");
        assert_eq!(human_duration(40_000), "40s");
        assert_eq!(human_duration(12 * 60_000 + 5_000), "12m");
        assert_eq!(human_duration((9 * 3600 + 5 * 60) * 1000), "9h 5m");
        assert_eq!(human_duration((2 * 86_400 + 3 * 3600) * 1000), "2d 3h");
    }

    #[test]
    fn method_lists_name_each_method_once_in_order() {
        use crate::strength::MethodKind::*;
        let m = |k| UsedMethod::of(k);
        assert_eq!(methods_text(&[]), "[]");
        assert_eq!(
            methods_text(&[m(Password), m(Totp), m(Password)]),
            "[pwd, otp]"
        );
        assert_eq!(
            methods_text(&[UsedMethod::passkey(None, true), m(TemporaryAccessPass)]),
            "[swk, tap]"
        );
    }

    #[test]
    fn group_intersection_finds_the_smallest_common_id_from_either_side() {
        let a: BTreeSet<Uuid> = (1..=3).map(Uuid::from_u128).collect();
        let b: BTreeSet<Uuid> = (2..=1000).map(Uuid::from_u128).collect();
        assert_eq!(first_common(&a, &b), Some(Uuid::from_u128(2)));
        assert_eq!(first_common(&b, &a), Some(Uuid::from_u128(2)));
        assert_eq!(first_common(&a, &BTreeSet::new()), None);
    }

    #[test]
    fn results_serialize_as_the_log_spells_them() {
        for r in CaResult::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::String(r.as_str().into())
            );
            assert_eq!(CaResult::parse(r.as_str()), Some(r));
        }
    }
}
