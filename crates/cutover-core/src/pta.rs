//! Pass-through authentication (SPEC §5.3): the decisions around agents that check passwords
//! against the on-prem directory. Result codes, agent health, the registration limit and the
//! one-retry dispatch rule are pure; the server's queue and the agent's LDAP bind are shells.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Timestamp;
use crate::signin_log::FailureReason;

/// At most this many agents may be registered (enabled or disabled); the next registration is
/// refused until one is deleted.
pub const MAX_AGENTS: usize = 40;
/// Below this many healthy agents the admin API, the UI and the log warn (one host down must
/// not stop password sign-ins).
pub const MIN_HEALTHY_AGENTS: usize = 3;
/// An agent sends a heartbeat this often.
pub const HEARTBEAT_INTERVAL_SECS: i64 = 10;
/// An agent whose last heartbeat is older than this is no longer healthy and gets no requests.
pub const HEARTBEAT_STALE_SECS: i64 = 30;
/// An agent silent for this long is shown as offline rather than merely late.
pub const HEARTBEAT_OFFLINE_SECS: i64 = 300;
/// Default time an agent has to answer one validation request before the server gives up on
/// it (and retries once on another agent when nothing came back).
pub const DEFAULT_REQUEST_DEADLINE_MS: i64 = 5_000;
/// Bounds for the configured deadline.
pub const MIN_REQUEST_DEADLINE_MS: i64 = 200;
pub const MAX_REQUEST_DEADLINE_MS: i64 = 30_000;
/// Registration tokens live this long unless the admin asks otherwise, and never longer than
/// the maximum.
pub const DEFAULT_REGISTRATION_TOKEN_SECS: i64 = 3_600;
pub const MAX_REGISTRATION_TOKEN_SECS: i64 = 24 * 3_600;
/// The shortest lifetime a token may be given: time to copy it to the agent host and run
/// `cutover agent register`.
pub const MIN_REGISTRATION_TOKEN_SECS: i64 = 60;
/// An agent session token (after a signed challenge) lives this long.
pub const AGENT_SESSION_SECS: i64 = 900;
/// A challenge must be signed and returned within this many seconds.
pub const AGENT_CHALLENGE_SECS: i64 = 60;
/// Most requests one poll hands to an agent.
pub const MAX_POLL_BATCH: u32 = 64;
/// Longest a poll waits for work before returning empty.
pub const MAX_POLL_WAIT_MS: u32 = 25_000;
/// Longest free-text detail an agent may attach to a result (the rest is cut).
pub const MAX_RESULT_DETAIL_LEN: usize = 512;
/// Longest host name or version string an agent reports.
pub const MAX_AGENT_LABEL_LEN: usize = 255;

/// What an agent reports for one password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PtaResult {
    Success,
    InvalidCredentials,
    AccountLocked,
    PasswordExpired,
    MustChangePassword,
    AccountDisabled,
    DirectoryUnavailable,
    AgentError,
}

impl PtaResult {
    pub const ALL: [PtaResult; 8] = [
        Self::Success,
        Self::InvalidCredentials,
        Self::AccountLocked,
        Self::PasswordExpired,
        Self::MustChangePassword,
        Self::AccountDisabled,
        Self::DirectoryUnavailable,
        Self::AgentError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InvalidCredentials => "invalidCredentials",
            Self::AccountLocked => "accountLocked",
            Self::PasswordExpired => "passwordExpired",
            Self::MustChangePassword => "mustChangePassword",
            Self::AccountDisabled => "accountDisabled",
            Self::DirectoryUnavailable => "directoryUnavailable",
            Self::AgentError => "agentError",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The directory judged the password itself (right or wrong). Only these feed smart
    /// lockout: an unreachable directory or a broken agent says nothing about the password.
    pub fn judged_password(self) -> bool {
        !matches!(self, Self::DirectoryUnavailable | Self::AgentError)
    }

    /// A wrong password, as smart lockout counts it.
    pub fn is_bad_password(self) -> bool {
        self == Self::InvalidCredentials
    }
}

/// How the sign-in ends for a pass-through result: `None` is a success, otherwise the reason
/// the sign-in log records (the user sees its generic message).
pub fn sign_in_failure(result: PtaResult) -> Option<FailureReason> {
    match result {
        PtaResult::Success => None,
        PtaResult::InvalidCredentials => Some(FailureReason::InvalidPassword),
        PtaResult::AccountLocked => Some(FailureReason::OnPremAccountLocked),
        PtaResult::PasswordExpired => Some(FailureReason::PasswordExpired),
        PtaResult::MustChangePassword => Some(FailureReason::PasswordMustChange),
        PtaResult::AccountDisabled => Some(FailureReason::OnPremAccountDisabled),
        PtaResult::DirectoryUnavailable => Some(FailureReason::DirectoryUnavailable),
        PtaResult::AgentError => Some(FailureReason::AgentError),
    }
}

/// What the server knows about one agent, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLiveness {
    pub enabled: bool,
    pub last_heartbeat: Option<Timestamp>,
    /// The agent's own last report on its directory connection.
    pub directory_reachable: bool,
}

/// An agent's health as the admin sees it. Only `Healthy` agents receive requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AgentHealth {
    /// Heartbeat fresh, directory reachable.
    Healthy,
    /// Heartbeat fresh, but the agent cannot reach the directory.
    DirectoryUnreachable,
    /// Heartbeat late (more than [`HEARTBEAT_STALE_SECS`]).
    Stale,
    /// Never seen, or silent for more than [`HEARTBEAT_OFFLINE_SECS`].
    Offline,
    /// Disabled by an administrator: refused on every connection.
    Disabled,
}

impl AgentHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::DirectoryUnreachable => "directoryUnreachable",
            Self::Stale => "stale",
            Self::Offline => "offline",
            Self::Disabled => "disabled",
        }
    }
}

pub fn agent_health(a: AgentLiveness, now: Timestamp) -> AgentHealth {
    if !a.enabled {
        return AgentHealth::Disabled;
    }
    let Some(seen) = a.last_heartbeat else {
        return AgentHealth::Offline;
    };
    let age = now.millis().saturating_sub(seen.millis());
    if age > HEARTBEAT_OFFLINE_SECS * 1000 {
        AgentHealth::Offline
    } else if age > HEARTBEAT_STALE_SECS * 1000 {
        AgentHealth::Stale
    } else if !a.directory_reachable {
        AgentHealth::DirectoryUnreachable
    } else {
        AgentHealth::Healthy
    }
}

/// The fleet-level warning for the admin API, the UI and the log.
pub fn fleet_warning(healthy: usize, registered: usize) -> Option<String> {
    if healthy >= MIN_HEALTHY_AGENTS {
        return None;
    }
    Some(match healthy {
        0 if registered == 0 => "No pass-through agent is registered: pass-through sign-ins fail with noAgentAvailable. Register at least 3 agents (cutover admin agents token).".to_owned(),
        0 => format!("None of the {registered} registered pass-through agents is healthy: pass-through sign-ins fail with noAgentAvailable."),
        n => format!("Only {n} pass-through agent{} healthy; run at least {MIN_HEALTHY_AGENTS} so that one host down does not stop password sign-ins.", if n == 1 { " is" } else { "s are" }),
    })
}

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationRefusal {
    TokenUnknown,
    TokenExpired,
    TokenAlreadyUsed,
    TooManyAgents { registered: usize },
}

impl RegistrationRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TokenUnknown => "registrationTokenUnknown",
            Self::TokenExpired => "registrationTokenExpired",
            Self::TokenAlreadyUsed => "registrationTokenUsed",
            Self::TooManyAgents { .. } => "tooManyAgents",
        }
    }
    pub fn message(&self) -> String {
        match self {
            Self::TokenUnknown => "This registration token is not known to the server: check that it was copied whole, or issue a new one with `cutover admin agents token`.".into(),
            Self::TokenExpired => "This registration token has expired: issue a new one with `cutover admin agents token`.".into(),
            Self::TokenAlreadyUsed => "This registration token was already used (tokens are single use): issue a new one with `cutover admin agents token`.".into(),
            Self::TooManyAgents { registered } => format!(
                "{registered} agents are registered, the most Cutover allows is {MAX_AGENTS}: delete an agent that is no longer used (cutover admin agents delete ID) before registering another."
            ),
        }
    }
}

/// The registration rule, on the facts read under the registration lock.
pub fn check_registration(
    token: Option<(Timestamp, Option<Timestamp>)>,
    registered: usize,
    now: Timestamp,
) -> Result<(), RegistrationRefusal> {
    let Some((expires_at, used_at)) = token else {
        return Err(RegistrationRefusal::TokenUnknown);
    };
    if used_at.is_some() {
        return Err(RegistrationRefusal::TokenAlreadyUsed);
    }
    if now >= expires_at {
        return Err(RegistrationRefusal::TokenExpired);
    }
    if registered >= MAX_AGENTS {
        return Err(RegistrationRefusal::TooManyAgents { registered });
    }
    Ok(())
}

/// Where one validation request stands when its deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtDeadline {
    /// An agent answered: that answer stands, whatever its code.
    Answered,
    /// No agent took the request.
    Unclaimed,
    /// An agent took it and has not answered.
    ClaimedBy(Uuid),
}

/// What to do when a request's deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineAction {
    /// Use the answer that came back.
    UseAnswer,
    /// Send it once more, to any healthy agent except these.
    Retry { exclude: Vec<Uuid> },
    /// Give up: the sign-in fails with `agentTimeout` (or `noAgentAvailable` when no agent
    /// ever took it).
    GiveUp { any_agent_took_it: bool },
}

/// The one-retry rule (SPEC §5.3): a request is retried once on another agent only when no
/// result came back — a second bind after a result could count twice against the directory's
/// own lockout. `attempt` is 1 for the first sending.
pub fn at_deadline(attempt: u32, state: AtDeadline, tried: &[Uuid]) -> DeadlineAction {
    match state {
        AtDeadline::Answered => DeadlineAction::UseAnswer,
        _ if attempt >= 2 => DeadlineAction::GiveUp {
            any_agent_took_it: !tried.is_empty() || matches!(state, AtDeadline::ClaimedBy(_)),
        },
        AtDeadline::Unclaimed => DeadlineAction::Retry {
            exclude: tried.to_vec(),
        },
        AtDeadline::ClaimedBy(agent) => {
            let mut exclude = tried.to_vec();
            if !exclude.contains(&agent) {
                exclude.push(agent);
            }
            DeadlineAction::Retry { exclude }
        }
    }
}

/// Clamp a detail string an agent sent to [`MAX_RESULT_DETAIL_LEN`] bytes on a char boundary,
/// with control characters replaced (it ends up in the log and the admin UI).
pub fn clean_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len().min(MAX_RESULT_DETAIL_LEN));
    for c in detail.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_RESULT_DETAIL_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(enabled: bool, seen: Option<i64>, dir: bool) -> AgentLiveness {
        AgentLiveness {
            enabled,
            last_heartbeat: seen.map(Timestamp::from_secs),
            directory_reachable: dir,
        }
    }

    #[test]
    fn result_codes_round_trip_and_only_judged_ones_count() {
        for r in PtaResult::ALL {
            assert_eq!(PtaResult::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(PtaResult::parse("garbage"), None);
        assert!(!PtaResult::DirectoryUnavailable.judged_password());
        assert!(!PtaResult::AgentError.judged_password());
        assert!(PtaResult::AccountLocked.judged_password());
        assert!(PtaResult::InvalidCredentials.is_bad_password());
        assert!(!PtaResult::AccountLocked.is_bad_password());
        assert_eq!(sign_in_failure(PtaResult::Success), None);
        assert_eq!(
            sign_in_failure(PtaResult::InvalidCredentials),
            Some(FailureReason::InvalidPassword)
        );
    }

    #[test]
    fn health_edges() {
        let now = Timestamp::from_secs(10_000);
        assert_eq!(
            agent_health(live(false, Some(10_000), true), now),
            AgentHealth::Disabled
        );
        assert_eq!(
            agent_health(live(true, None, true), now),
            AgentHealth::Offline
        );
        let at = |age: i64| agent_health(live(true, Some(10_000 - age), true), now);
        assert_eq!(at(HEARTBEAT_STALE_SECS), AgentHealth::Healthy);
        assert_eq!(at(HEARTBEAT_STALE_SECS + 1), AgentHealth::Stale);
        assert_eq!(at(HEARTBEAT_OFFLINE_SECS), AgentHealth::Stale);
        assert_eq!(at(HEARTBEAT_OFFLINE_SECS + 1), AgentHealth::Offline);
        assert_eq!(
            agent_health(live(true, Some(10_000), false), now),
            AgentHealth::DirectoryUnreachable
        );
    }

    #[test]
    fn fleet_warning_below_three() {
        assert!(
            fleet_warning(0, 0)
                .unwrap()
                .contains("No pass-through agent")
        );
        assert!(fleet_warning(0, 2).unwrap().contains("None of the 2"));
        assert!(
            fleet_warning(1, 3)
                .unwrap()
                .contains("Only 1 pass-through agent is")
        );
        assert!(
            fleet_warning(2, 3)
                .unwrap()
                .contains("Only 2 pass-through agents are")
        );
        assert_eq!(fleet_warning(MIN_HEALTHY_AGENTS, 3), None);
    }

    #[test]
    fn registration_rule_and_the_forty_first_agent() {
        let now = Timestamp::from_secs(100);
        let ok = Some((Timestamp::from_secs(101), None));
        assert_eq!(check_registration(ok, MAX_AGENTS - 1, now), Ok(()));
        let refused = check_registration(ok, MAX_AGENTS, now).unwrap_err();
        assert_eq!(
            refused,
            RegistrationRefusal::TooManyAgents { registered: 40 }
        );
        assert!(refused.message().contains("40"));
        assert_eq!(
            check_registration(None, 0, now),
            Err(RegistrationRefusal::TokenUnknown)
        );
        assert_eq!(
            check_registration(Some((Timestamp::from_secs(100), None)), 0, now),
            Err(RegistrationRefusal::TokenExpired)
        );
        assert_eq!(
            check_registration(
                Some((Timestamp::from_secs(200), Some(Timestamp::from_secs(50)))),
                0,
                now
            ),
            Err(RegistrationRefusal::TokenAlreadyUsed)
        );
    }

    #[test]
    fn retry_once_only_without_an_answer() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(
            at_deadline(1, AtDeadline::Answered, &[]),
            DeadlineAction::UseAnswer
        );
        assert_eq!(
            at_deadline(2, AtDeadline::Answered, &[a]),
            DeadlineAction::UseAnswer
        );
        assert_eq!(
            at_deadline(1, AtDeadline::ClaimedBy(a), &[]),
            DeadlineAction::Retry { exclude: vec![a] }
        );
        assert_eq!(
            at_deadline(1, AtDeadline::Unclaimed, &[]),
            DeadlineAction::Retry { exclude: vec![] }
        );
        assert_eq!(
            at_deadline(2, AtDeadline::ClaimedBy(b), &[a]),
            DeadlineAction::GiveUp {
                any_agent_took_it: true
            }
        );
        assert_eq!(
            at_deadline(2, AtDeadline::Unclaimed, &[]),
            DeadlineAction::GiveUp {
                any_agent_took_it: false
            }
        );
    }

    #[test]
    fn details_are_cut_and_cleaned() {
        let long = "é".repeat(MAX_RESULT_DETAIL_LEN);
        let cut = clean_detail(&long);
        assert!(cut.len() <= MAX_RESULT_DETAIL_LEN);
        assert_eq!(cut.len(), MAX_RESULT_DETAIL_LEN);
        assert_eq!(clean_detail("a\nb\u{0}c"), "a b c");
    }
}
