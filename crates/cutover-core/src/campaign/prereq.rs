//! A wave's prerequisites as a live checklist: each item says whether it holds and, when not,
//! what to do.

use serde::Serialize;

use crate::conditional_access::PolicyState;
use crate::domain_cutover::{BREAK_GLASS_DRILL_MAX_AGE_DAYS, MIN_BREAK_GLASS_ACCOUNTS};

/// What the checklist looks at for one wave, gathered by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrereqFacts {
    /// The authentication methods policy lets the wave's group register passkeys.
    pub passkeys_enabled_for_group: bool,
    /// The Temporary Access Pass method is enabled for the wave's group.
    pub tap_enabled_for_group: bool,
    /// Enabled break-glass accounts.
    pub break_glass_enabled: u32,
    /// Enabled break-glass accounts that signed in successfully within the last
    /// [`BREAK_GLASS_DRILL_MAX_AGE_DAYS`] days.
    pub break_glass_drilled_90d: u32,
    /// The wave's CA policy; `None` when the wave names none.
    pub ca_policy: Option<CaFacts>,
}

/// What the checklist needs to know about the wave's CA policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFacts {
    /// Whether the policy the wave names still exists (the rest is meaningless when not).
    pub exists: bool,
    /// The policy's state as the API names it: `enabled`,
    /// `enabledForReportingButNotEnforced` or `disabled`.
    pub state: String,
    /// Whether it applies to the wave's group.
    pub includes_group: bool,
    /// Whether it requires passkeys: the `phishingResistantMfa` strength or a custom
    /// strength of phishing-resistant methods only.
    pub requires_phishing_resistant: bool,
}

/// One checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// `methodsPolicy`, `tapPolicy`, `breakGlass` or `caPolicy`.
    pub key: &'static str,
    pub ok: bool,
    pub title: String,
    /// What holds when `ok`; what to do when not.
    pub detail: String,
}

fn item(key: &'static str, ok: bool, title: &str, detail: String) -> Check {
    Check {
        key,
        ok,
        title: title.to_owned(),
        detail,
    }
}

/// The checklist, in the order to work through it. `breakGlass` wants at least
/// [`MIN_BREAK_GLASS_ACCOUNTS`] enabled accounts, and as many drilled within
/// [`BREAK_GLASS_DRILL_MAX_AGE_DAYS`] days (stricter than the CA gate, which needs one drill).
/// `caPolicy` wants the policy to exist, target the group, require phishing-resistant MFA,
/// and be in report-only (or on, once the wave is enforced).
pub fn prerequisites(f: &PrereqFacts) -> Vec<Check> {
    let mut out = Vec::with_capacity(4);
    out.push(item(
        "methodsPolicy",
        f.passkeys_enabled_for_group,
        "Passkeys are enabled for the wave's group",
        if f.passkeys_enabled_for_group {
            "The authentication methods policy lets the group's members register passkeys.".into()
        } else {
            "Enable the passkey (FIDO2) method for the wave's group in the authentication methods policy; until then its members cannot register one.".into()
        },
    ));
    out.push(item(
        "tapPolicy",
        f.tap_enabled_for_group,
        "Temporary Access Pass is available for the wave's group",
        if f.tap_enabled_for_group {
            "The helpdesk can issue a Temporary Access Pass to members who cannot sign in to register their first passkey.".into()
        } else {
            "Enable the Temporary Access Pass method for the wave's group, so that the helpdesk can let members without a working sign-in register their first passkey.".into()
        },
    ));
    let min = MIN_BREAK_GLASS_ACCOUNTS as u64;
    let (enabled, drilled) = (
        u64::from(f.break_glass_enabled),
        u64::from(f.break_glass_drilled_90d),
    );
    let glass_ok = enabled >= min && drilled >= min;
    out.push(item(
        "breakGlass",
        glass_ok,
        &format!(
            "At least {min} break-glass accounts, drilled in the last {BREAK_GLASS_DRILL_MAX_AGE_DAYS} days"
        ),
        if glass_ok {
            format!(
                "{enabled} enabled break-glass accounts, {drilled} signed in within the last {BREAK_GLASS_DRILL_MAX_AGE_DAYS} days."
            )
        } else if enabled < min {
            format!(
                "{enabled} enabled break-glass account(s): create and enable at least {min}, excluded from Conditional Access, then drill them (sign in with each)."
            )
        } else {
            format!(
                "{drilled} of {enabled} enabled break-glass accounts signed in within the last {BREAK_GLASS_DRILL_MAX_AGE_DAYS} days: drill at least {min} (sign in with each and check the emergency path works)."
            )
        },
    ));
    out.push(ca_check(f));
    out
}

fn ca_check(f: &PrereqFacts) -> Check {
    let title = "The wave's Conditional Access policy requires passkeys, in report-only";
    let report_only = PolicyState::EnabledForReportingButNotEnforced.as_str();
    let problem = match &f.ca_policy {
        None => Some("The wave names no Conditional Access policy: create one for the wave's group that requires the phishing-resistant MFA strength, leave it in report-only, and link it to the wave.".to_owned()),
        Some(ca) if !ca.exists => Some("The policy linked to the wave no longer exists: create a new one (report-only, phishing-resistant MFA, the wave's group) and link it.".to_owned()),
        Some(ca) => {
            let mut issues = Vec::new();
            if !ca.includes_group {
                issues.push("include the wave's group in its users".to_owned());
            }
            if !ca.requires_phishing_resistant {
                issues.push("require the phishing-resistant MFA authentication strength".to_owned());
            }
            if ca.state == PolicyState::Disabled.as_str() {
                issues.push(format!("set it to report-only ({report_only}) so that its sweep gathers evidence"));
            } else if ca.state != report_only && ca.state != PolicyState::Enabled.as_str() {
                issues.push(format!(
                    "its state '{}' is unknown; set it to report-only ({report_only})",
                    ca.state.chars().take(60).collect::<String>()
                ));
            }
            (!issues.is_empty()).then(|| format!("Change the wave's policy: {}.", issues.join("; ")))
        }
    };
    match (problem, &f.ca_policy) {
        (None, Some(ca)) if ca.state == PolicyState::Enabled.as_str() => item(
            "caPolicy",
            true,
            title,
            "The policy targets the wave's group, requires phishing-resistant MFA, and is on (the wave is enforced, or it was switched on outside the campaign).".into(),
        ),
        (None, _) => item(
            "caPolicy",
            true,
            title,
            "The policy targets the wave's group, requires phishing-resistant MFA, and runs in report-only until the wave is enforced.".into(),
        ),
        (Some(detail), _) => item("caPolicy", false, title, detail),
    }
}
