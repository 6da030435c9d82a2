//! Domain cut-over (SPEC §4.5): converting a federated domain to managed once staged rollout
//! is done, behind a preflight; converting back is the rollback and is always allowed.

use serde::Serialize;
use uuid::Uuid;

use crate::{PasswordValidation, Timestamp};

/// A cut-over to pass-through authentication needs at least this many healthy agents.
pub const MIN_HEALTHY_AGENTS_FOR_CUTOVER: u32 = 3;
/// At least this many enabled break-glass accounts must exist (SPEC §8).
pub const MIN_BREAK_GLASS_ACCOUNTS: usize = 2;
/// A break-glass account counts as drilled when it signed in successfully this recently.
pub const BREAK_GLASS_DRILL_MAX_AGE_DAYS: i64 = 90;
/// Federated sign-ins this recent are listed for review.
pub const RECENT_FEDERATED_WINDOW_DAYS: i64 = 30;
/// At most this many names are listed per check (the counts are always complete).
pub const MAX_LISTED: usize = 20;

/// A break-glass account as the preflight sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassFacts {
    pub user_principal_name: String,
    pub account_enabled: bool,
    pub last_successful_sign_in: Option<Timestamp>,
}

/// Someone who still signed in through federation recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedSignIns {
    pub user_principal_name: String,
    pub count: u64,
    pub last: Timestamp,
}

/// What the preflight looks at, read by the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutoverFacts {
    pub synced_users: u64,
    /// Synced users of the domain without a synced password hash (a sample, at most
    /// [`MAX_LISTED`]) and their total.
    pub without_hash_sample: Vec<String>,
    pub without_hash_total: u64,
    pub healthy_agents: u32,
    pub break_glass: Vec<BreakGlassFacts>,
    pub recent_federated: Vec<FederatedSignIns>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Shown for review; does not block.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreflightCheck {
    pub name: &'static str,
    pub status: CheckStatus,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preflight {
    pub allowed: bool,
    pub checks: Vec<PreflightCheck>,
}

/// The preflight for federated → managed with `validation` (SPEC §4.5): passwords can be
/// checked for every synced user (all have a synced hash, or enough agents run), the emergency
/// path is ready, and recent federated-only sign-ins are listed for review.
pub fn preflight_to_managed(
    facts: &CutoverFacts,
    validation: PasswordValidation,
    now: Timestamp,
) -> Preflight {
    let mut checks = Vec::new();
    match validation {
        PasswordValidation::PasswordHashSync => {
            let ok = facts.without_hash_total == 0;
            checks.push(PreflightCheck {
                name: "passwordHashes",
                status: if ok { CheckStatus::Passed } else { CheckStatus::Failed },
                detail: if ok {
                    format!("all {} synced users have a synced password hash", facts.synced_users)
                } else {
                    format!(
                        "{} of {} synced users have no synced password hash and could not sign in; run `cutover sync run --once --passwords` or check the sync report",
                        facts.without_hash_total, facts.synced_users
                    )
                },
                users: facts.without_hash_sample.iter().take(MAX_LISTED).cloned().collect(),
            });
        }
        PasswordValidation::PassthroughAuthentication => {
            let ok = facts.healthy_agents >= MIN_HEALTHY_AGENTS_FOR_CUTOVER;
            checks.push(PreflightCheck {
                name: "passthroughAgents",
                status: if ok { CheckStatus::Passed } else { CheckStatus::Failed },
                detail: format!(
                    "{} healthy pass-through agent(s); at least {MIN_HEALTHY_AGENTS_FOR_CUTOVER} are needed",
                    facts.healthy_agents
                ),
                users: vec![],
            });
        }
    }
    let drill_since = now.plus_secs(-BREAK_GLASS_DRILL_MAX_AGE_DAYS * 86_400);
    let enabled: Vec<&BreakGlassFacts> = facts
        .break_glass
        .iter()
        .filter(|b| b.account_enabled)
        .collect();
    let drilled: Vec<&BreakGlassFacts> = enabled
        .iter()
        .copied()
        .filter(|b| b.last_successful_sign_in.is_some_and(|t| t >= drill_since))
        .collect();
    let ok = enabled.len() >= MIN_BREAK_GLASS_ACCOUNTS && !drilled.is_empty();
    checks.push(PreflightCheck {
        name: "breakGlassAccounts",
        status: if ok { CheckStatus::Passed } else { CheckStatus::Failed },
        detail: format!(
            "{} enabled break-glass account(s) (at least {MIN_BREAK_GLASS_ACCOUNTS} needed), {} signed in successfully in the last {BREAK_GLASS_DRILL_MAX_AGE_DAYS} days (at least one needed: drill them)",
            enabled.len(),
            drilled.len()
        ),
        users: enabled.iter().map(|b| b.user_principal_name.clone()).collect(),
    });
    let total: u64 = facts.recent_federated.iter().map(|f| f.count).sum();
    checks.push(PreflightCheck {
        name: "recentFederatedSignIns",
        status: if facts.recent_federated.is_empty() {
            CheckStatus::Passed
        } else {
            CheckStatus::Warning
        },
        detail: format!(
            "{total} federated sign-in(s) by {} user(s) in the last {RECENT_FEDERATED_WINDOW_DAYS} days; review them: after the cut-over these users sign in with Cutover",
            facts.recent_federated.len()
        ),
        users: facts
            .recent_federated
            .iter()
            .take(MAX_LISTED)
            .map(|f| format!("{} ({}×)", f.user_principal_name, f.count))
            .collect(),
    });
    Preflight {
        allowed: checks.iter().all(|c| c.status != CheckStatus::Failed),
        checks,
    }
}

/// The rollback target: converting back to federation needs an IdP, the one given or the one
/// the domain used before its cut-over.
pub fn rollback_identity_provider(
    requested: Option<Uuid>,
    previous: Option<Uuid>,
) -> Result<Uuid, &'static str> {
    requested.or(previous).ok_or(
        "name the identity provider to federate with (identityProviderId / --identity-provider): this domain was never federated",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn glass(name: &str, enabled: bool, last: Option<Timestamp>) -> BreakGlassFacts {
        BreakGlassFacts {
            user_principal_name: name.into(),
            account_enabled: enabled,
            last_successful_sign_in: last,
        }
    }

    fn ready(now: Timestamp) -> CutoverFacts {
        CutoverFacts {
            synced_users: 10,
            without_hash_sample: vec![],
            without_hash_total: 0,
            healthy_agents: 0,
            break_glass: vec![
                glass("bg1@corp.example", true, Some(now.plus_secs(-DAY))),
                glass("bg2@corp.example", true, None),
            ],
            recent_federated: vec![],
        }
    }

    fn failed(p: &Preflight) -> Vec<&'static str> {
        p.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn preflight_passes_only_when_every_blocking_check_does() {
        let now = Timestamp::from_secs(1_000 * DAY);
        let phs = PasswordValidation::PasswordHashSync;
        let pta = PasswordValidation::PassthroughAuthentication;
        let p = preflight_to_managed(&ready(now), phs, now);
        assert!(p.allowed, "{p:?}");

        let mut f = ready(now);
        f.without_hash_total = 1;
        f.without_hash_sample = vec!["u@corp.example".into()];
        let p = preflight_to_managed(&f, phs, now);
        assert_eq!((p.allowed, failed(&p)), (false, vec!["passwordHashes"]));
        assert_eq!(p.checks[0].users, vec!["u@corp.example".to_string()]);
        // Missing hashes do not matter for pass-through; agents do (3 is enough, 2 is not).
        f.healthy_agents = MIN_HEALTHY_AGENTS_FOR_CUTOVER;
        assert!(preflight_to_managed(&f, pta, now).allowed);
        f.healthy_agents = MIN_HEALTHY_AGENTS_FOR_CUTOVER - 1;
        assert_eq!(
            failed(&preflight_to_managed(&f, pta, now)),
            vec!["passthroughAgents"]
        );

        // Break-glass: two enabled accounts, one drilled within 90 days.
        let mut f = ready(now);
        f.break_glass[1].account_enabled = false;
        assert_eq!(
            failed(&preflight_to_managed(&f, phs, now)),
            vec!["breakGlassAccounts"]
        );
        let mut f = ready(now);
        f.break_glass[0].last_successful_sign_in =
            Some(now.plus_secs(-BREAK_GLASS_DRILL_MAX_AGE_DAYS * DAY));
        assert!(
            preflight_to_managed(&f, phs, now).allowed,
            "exactly 90 days still counts"
        );
        f.break_glass[0].last_successful_sign_in =
            Some(now.plus_secs(-BREAK_GLASS_DRILL_MAX_AGE_DAYS * DAY - 1));
        assert_eq!(
            failed(&preflight_to_managed(&f, phs, now)),
            vec!["breakGlassAccounts"]
        );

        // Recent federated sign-ins warn but do not block.
        let mut f = ready(now);
        f.recent_federated = vec![FederatedSignIns {
            user_principal_name: "late@corp.example".into(),
            count: 3,
            last: now,
        }];
        let p = preflight_to_managed(&f, phs, now);
        assert!(p.allowed);
        let review = p
            .checks
            .iter()
            .find(|c| c.name == "recentFederatedSignIns")
            .unwrap();
        assert_eq!(review.status, CheckStatus::Warning);
        assert_eq!(review.users, vec!["late@corp.example (3×)".to_string()]);
    }

    #[test]
    fn rollback_needs_an_identity_provider() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(rollback_identity_provider(Some(a), Some(b)), Ok(a));
        assert_eq!(rollback_identity_provider(None, Some(b)), Ok(b));
        assert!(rollback_identity_provider(None, None).is_err());
    }
}
