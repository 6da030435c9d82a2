//! A wave's lifecycle: where it stands now, whether it may be enforced, and the audited
//! transitions (confirm, enforce, force-enforce, roll back) as pure functions from one
//! [`WaveStatus`] to the next. The shell switches the CA policy and records the audit event;
//! the status it stores in the campaign document comes from here.

use serde::{Deserialize, Serialize};

use super::spec::CheckedWave;
use super::when;
use crate::Timestamp;

/// Most transitions a wave's status keeps; older ones are dropped (the audit log keeps all).
pub const MAX_HISTORY: usize = 100;
/// Longest reason or detail recorded with a transition, in characters (longer is cut).
pub const MAX_DETAIL_CHARS: usize = 1000;

/// Whether the wave's CA policy has been switched on through the wave.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    #[default]
    NotEnforced,
    Enforced,
    /// Enforced, then returned to report-only (nothing was deleted).
    RolledBack,
}

/// What an administrator did to a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Confirmed the wave is ready (the exit criterion besides enrolment).
    Confirm,
    /// Enforced with every condition met.
    Enforce,
    /// Enforced despite refusals, with a reason.
    ForceEnforce,
    RollBack,
}

impl Action {
    /// The name in the API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Enforce => "enforce",
            Self::ForceEnforce => "forceEnforce",
            Self::RollBack => "rollBack",
        }
    }
}

/// One transition of a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    #[serde(with = "when::rfc3339")]
    pub at: Timestamp,
    /// Who (the administrator's sign-in name).
    pub actor: String,
    /// `confirm`, `enforce`, `forceEnforce` or `rollBack` (see [`Action::as_str`]).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A wave's state, stored per wave in the campaign document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub enforcement: Enforcement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    #[serde(
        default,
        with = "when::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub confirmed_at: Option<Timestamp>,
    /// Oldest first, at most [`MAX_HISTORY`].
    #[serde(default)]
    pub history: Vec<Transition>,
}

/// Where a wave stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WavePhase {
    /// Before registration opens.
    Scheduled,
    /// Registration is open; the enforcement date is ahead.
    Registering,
    /// The enforcement date has come (at or after it) and the wave is not enforced.
    EnforcementDue,
    Enforced,
    RolledBack,
}

impl WavePhase {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Registering => "registering",
            Self::EnforcementDue => "enforcementDue",
            Self::Enforced => "enforced",
            Self::RolledBack => "rolledBack",
        }
    }
}

/// Where `wave` stands at `now`: its enforcement state first, then its dates.
pub fn wave_phase_now(wave: &CheckedWave, status: &WaveStatus, now: Timestamp) -> WavePhase {
    match status.enforcement {
        Enforcement::Enforced => WavePhase::Enforced,
        Enforcement::RolledBack => WavePhase::RolledBack,
        Enforcement::NotEnforced if now < wave.registration_opens => WavePhase::Scheduled,
        Enforcement::NotEnforced if now < wave.enforcement_date => WavePhase::Registering,
        Enforcement::NotEnforced => WavePhase::EnforcementDue,
    }
}

/// What the enforcement decision looks at, gathered by the shell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnforceFacts {
    /// The wave's group members whose account is enabled (a disabled account cannot sign in,
    /// and an offboarded one must not hold the wave below its target; re-enabled, it signs in
    /// with a Temporary Access Pass like anyone without a passkey).
    pub members: u64,
    /// Members with at least one passkey.
    pub enrolled: u64,
    /// Whether an administrator confirmed the wave.
    pub confirmed: bool,
    /// Whether the wave names a CA policy that exists.
    pub ca_policy_present: bool,
    /// Whether that policy is in report-only now.
    pub ca_policy_report_only: bool,
    /// Whether that policy applies to the wave's group (and does not exclude it).
    pub ca_policy_includes_group: bool,
    /// Whether that policy requires phishing-resistant MFA (the passkeys the wave enrolled).
    pub ca_policy_requires_phishing_resistant: bool,
    /// Whether the wave is enforced already (a second click, or another administrator).
    pub already_enforced: bool,
    /// The CA gate's refusals for the policy (report-only evidence, interruptions,
    /// break-glass), empty when it allows.
    pub ca_gate_refusals: Vec<String>,
}

/// Why a wave may not be enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// `alreadyEnforced`, `noMembers`, `enrolmentBelowTarget`, `invalidTarget`,
    /// `notConfirmed`, `noCaPolicy`, `caPolicyNotReportOnly`, `caPolicyOtherGroup`,
    /// `caPolicyNotPasskeys` or `caGate`.
    pub code: &'static str,
    pub message: String,
}

/// Whether a wave may be enforced, and every reason not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict", content = "refusals")]
pub enum EnforceVerdict {
    Allowed,
    Refused(Vec<Refusal>),
}

impl EnforceVerdict {
    /// Whether it is [`EnforceVerdict::Allowed`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }

    /// The refusals (empty when allowed).
    pub fn refusals(&self) -> &[Refusal] {
        match self {
            Self::Allowed => &[],
            Self::Refused(r) => r,
        }
    }
}

/// A target percentage in hundredths of a percent (the resolution targets are compared at),
/// at least 1; `None` when it is not a percentage in (0, 100].
fn target_hundredths(target_percent: f64) -> Option<u128> {
    (target_percent.is_finite() && target_percent > 0.0 && target_percent <= 100.0)
        .then(|| ((target_percent * 100.0).round() as u128).max(1))
}

/// Members needed to reach `target_percent` of `members` (rounded up), at a resolution of
/// 0.01 %; `None` for a target that is not a percentage.
pub fn members_needed(target_percent: f64, members: u64) -> Option<u64> {
    let t = target_hundredths(target_percent)?;
    let needed = (t * u128::from(members)).div_ceil(10_000);
    Some(u64::try_from(needed).unwrap_or(u64::MAX))
}

/// Whether a wave may be enforced: it has members and `enrolled × 100 ≥ target × members`
/// (compared exactly, the target taken to 0.01 %: 950 of 1000 reach 95 %, 949 do not), it was
/// confirmed, its CA policy exists, is in report-only, applies to the wave's group and requires
/// phishing-resistant MFA, the wave is not enforced already, and the CA gate allows. Every
/// failed condition is a refusal.
pub fn may_enforce(target_percent: f64, facts: &EnforceFacts) -> EnforceVerdict {
    let mut refusals = Vec::new();
    let mut refuse = |code, message: String| refusals.push(Refusal { code, message });
    if facts.already_enforced {
        refuse(
            "alreadyEnforced",
            "the wave is already enforced (its policy is on); roll it back first to enforce it again"
                .into(),
        );
    }
    match members_needed(target_percent, facts.members) {
        None => refuse(
            "invalidTarget",
            format!("the target {target_percent} is not a percentage above 0 and at most 100"),
        ),
        Some(_) if facts.members == 0 => refuse(
            "noMembers",
            "the wave's group has no members: add the people the wave covers to the group first"
                .into(),
        ),
        Some(needed) if facts.enrolled < needed => refuse(
            "enrolmentBelowTarget",
            format!(
                "{} of {} members have a passkey ({:.1} %); the target {target_percent} % needs {needed}, {} more",
                facts.enrolled,
                facts.members,
                facts.enrolled as f64 * 100.0 / facts.members as f64,
                needed - facts.enrolled
            ),
        ),
        Some(_) => {}
    }
    if !facts.confirmed {
        refuse(
            "notConfirmed",
            "nobody has confirmed the wave is ready: check the stragglers and the helpdesk, then confirm it".into(),
        );
    }
    if !facts.ca_policy_present {
        refuse(
            "noCaPolicy",
            "the wave has no Conditional Access policy to enforce (or the linked one no longer exists): link a policy that requires phishing-resistant MFA for the wave's group".into(),
        );
    } else if !facts.ca_policy_report_only {
        refuse(
            "caPolicyNotReportOnly",
            "the wave's Conditional Access policy is not in report-only: enforcing switches a report-only policy on after its sweep; set it to report-only and let the sweep run".into(),
        );
    }
    if facts.ca_policy_present && !facts.ca_policy_includes_group {
        refuse(
            "caPolicyOtherGroup",
            "the wave's Conditional Access policy does not apply to the wave's group (or excludes it): enforcing it would not protect the people the wave enrolled; link the right policy or add the group to it".into(),
        );
    }
    if facts.ca_policy_present && !facts.ca_policy_requires_phishing_resistant {
        refuse(
            "caPolicyNotPasskeys",
            "the wave's Conditional Access policy does not require phishing-resistant MFA: enforcing it would not make passkeys the way in; set its authentication strength to phishingResistantMfa".into(),
        );
    }
    for reason in &facts.ca_gate_refusals {
        refuse("caGate", reason.clone());
    }
    if refusals.is_empty() {
        EnforceVerdict::Allowed
    } else {
        EnforceVerdict::Refused(refusals)
    }
}

/// Whether a wave may be rolled back: only an enforced one.
pub fn may_roll_back(status: &WaveStatus) -> Result<(), String> {
    match status.enforcement {
        Enforcement::Enforced => Ok(()),
        Enforcement::NotEnforced => {
            Err("the wave is not enforced, so there is nothing to roll back".into())
        }
        Enforcement::RolledBack => {
            Err("the wave is already rolled back (its policy is in report-only)".into())
        }
    }
}

fn clip(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.chars().take(MAX_DETAIL_CHARS).collect())
}

fn record(
    mut status: WaveStatus,
    at: Timestamp,
    actor: &str,
    action: Action,
    detail: Option<String>,
) -> WaveStatus {
    status.history.push(Transition {
        at,
        actor: actor.to_owned(),
        action: action.as_str().to_owned(),
        detail,
    });
    if status.history.len() > MAX_HISTORY {
        let excess = status.history.len() - MAX_HISTORY;
        status.history.drain(..excess);
    }
    status
}

/// Confirm a wave is ready. Refused once it is enforced, or when it already is confirmed
/// (by whom and when is in the message). A rolled-back wave needs confirming again.
pub fn confirm(status: &WaveStatus, actor: &str, at: Timestamp) -> Result<WaveStatus, String> {
    if status.enforcement == Enforcement::Enforced {
        return Err("the wave is already enforced".into());
    }
    if let (Some(by), Some(when_)) = (&status.confirmed_by, status.confirmed_at) {
        return Err(format!(
            "the wave was already confirmed by {by} at {}",
            when::format_rfc3339(when_)
        ));
    }
    let mut next = status.clone();
    next.confirmed_by = Some(actor.to_owned());
    next.confirmed_at = Some(at);
    Ok(record(next, at, actor, Action::Confirm, None))
}

/// Enforce a wave given [`may_enforce`]'s verdict. An allowed verdict records `enforce`; a
/// refused one is an error listing the refusals, unless `force_reason` gives a (non-blank)
/// reason, which records `forceEnforce` with the reason and the refusals it overrode.
/// Refused when the wave is already enforced.
pub fn enforce(
    status: &WaveStatus,
    verdict: &EnforceVerdict,
    actor: &str,
    at: Timestamp,
    force_reason: Option<&str>,
) -> Result<WaveStatus, String> {
    if status.enforcement == Enforcement::Enforced {
        return Err("the wave is already enforced".into());
    }
    let mut next = status.clone();
    next.enforcement = Enforcement::Enforced;
    match (verdict, force_reason.and_then(clip)) {
        (EnforceVerdict::Allowed, _) => Ok(record(next, at, actor, Action::Enforce, None)),
        (EnforceVerdict::Refused(refusals), Some(reason)) => {
            let codes: Vec<&str> = refusals.iter().map(|r| r.code).collect();
            let detail = format!("{reason} (overrode: {})", codes.join(", "));
            Ok(record(next, at, actor, Action::ForceEnforce, clip(&detail)))
        }
        (EnforceVerdict::Refused(refusals), None) => {
            let mut msg = String::from(
                "the wave may not be enforced yet (an administrator may force it with a reason; that is audited):",
            );
            for r in refusals {
                msg.push_str(&format!("\n- {}: {}", r.code, r.message));
            }
            Err(msg)
        }
    }
}

/// Roll an enforced wave back (its policy returns to report-only; nothing is deleted). The
/// wave's confirmation is cleared: enforcing it again needs a fresh one.
pub fn roll_back(
    status: &WaveStatus,
    actor: &str,
    at: Timestamp,
    reason: Option<&str>,
) -> Result<WaveStatus, String> {
    may_roll_back(status)?;
    let mut next = status.clone();
    next.enforcement = Enforcement::RolledBack;
    next.confirmed_by = None;
    next.confirmed_at = None;
    Ok(record(
        next,
        at,
        actor,
        Action::RollBack,
        reason.and_then(clip),
    ))
}
