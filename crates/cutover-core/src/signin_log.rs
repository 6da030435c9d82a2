//! The sign-in record (SPEC §10) and the decisions that fill it: the credential outcome and
//! the reason code an administrator reads, next to the generic message the user sees.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ClientAppType, Timestamp, User};

/// The outcome of one sign-in attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignInResult {
    Success,
    Failure,
    /// Stopped for a further step (MFA, enrolment) that was not completed.
    Interrupted,
}

impl SignInResult {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInResult::Success => "success",
            SignInResult::Failure => "failure",
            SignInResult::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "interrupted" => Some(Self::Interrupted),
            _ => None,
        }
    }
}

/// Precise reason codes for the admin. The user is never shown these directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureReason {
    InvalidUserPrincipalName,
    UnknownDomain,
    UnknownUser,
    InvalidPassword,
    NoPasswordSet,
    AccountDisabled,
    FederationNotConfigured,
    SessionExpired,
    /// A synced password older than the cloud expiry policy allows (SPEC §5.2).
    PasswordExpired,
    /// The upstream IdP could not be reached or answered with a server error.
    UpstreamUnavailable,
    /// The upstream IdP refused or cancelled the sign-in (an `error` on the callback).
    UpstreamDenied,
    /// The upstream's ID token failed validation (signature, issuer, audience, expiry, nonce).
    UpstreamTokenInvalid,
    /// The upstream vouched for a subject no Cutover user matches (by immutable id or UPN).
    UpstreamSubjectNotFound,
    /// The upstream vouched for a user of a domain it is not the IdP of, or for an account
    /// that is never federated (break-glass).
    UpstreamUserNotAllowed,
    /// A pass-through route with no agent to answer (SPEC §5.3).
    NoAgentAvailable,
    /// Agents took the request (twice at most) and none answered within the deadline.
    AgentTimeout,
    /// The agent could not reach the on-prem directory.
    DirectoryUnavailable,
    /// The agent failed in a way that says nothing about the password.
    AgentError,
    /// The on-prem directory reports the account locked (its own lockout, not Cutover's).
    OnPremAccountLocked,
    /// The on-prem directory reports the account disabled.
    OnPremAccountDisabled,
    /// The password is right but must be changed first (reset by an administrator).
    PasswordMustChange,
    /// Smart lockout refused the attempt before any password check (SPEC §7). The user sees
    /// the same message as for a wrong password.
    AccountLockedSmartLockout,
    /// The right Temporary Access Pass, but it cannot be used now (expired, not yet valid,
    /// already used once, or passes are off); the log says which.
    TemporaryAccessPassNotUsable,
    /// A passkey this server does not know (removed, or registered elsewhere).
    PasskeyNotRegistered,
    /// The passkey's assertion failed verification (origin, RP ID, challenge, signature,
    /// user verification); the log names which check.
    PasskeyRejected,
    /// The passkey's signature counter did not advance: possibly a cloned authenticator
    /// (SPEC §6.1). Refused and audited.
    PasskeyPossibleClone,
    /// The methods policy does not allow this method (or this authenticator model) for the user.
    MethodNotAllowedByPolicy,
    /// A second factor is required and the code (or second method) was wrong.
    InvalidSecondFactor,
    /// A second factor is required and the user has none registered.
    SecondFactorNotRegistered,
    /// An enforced Conditional Access policy blocks this sign-in (or requires what the user
    /// cannot do).
    BlockedByConditionalAccess,
}

impl FailureReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidUserPrincipalName => "invalidUserPrincipalName",
            Self::UnknownDomain => "unknownDomain",
            Self::UnknownUser => "unknownUser",
            Self::InvalidPassword => "invalidPassword",
            Self::NoPasswordSet => "noPasswordSet",
            Self::AccountDisabled => "accountDisabled",
            Self::FederationNotConfigured => "federationNotConfigured",
            Self::SessionExpired => "sessionExpired",
            Self::PasswordExpired => "passwordExpired",
            Self::UpstreamUnavailable => "upstreamUnavailable",
            Self::UpstreamDenied => "upstreamDenied",
            Self::UpstreamTokenInvalid => "upstreamTokenInvalid",
            Self::UpstreamSubjectNotFound => "upstreamSubjectNotFound",
            Self::UpstreamUserNotAllowed => "upstreamUserNotAllowed",
            Self::NoAgentAvailable => "noAgentAvailable",
            Self::AgentTimeout => "agentTimeout",
            Self::DirectoryUnavailable => "directoryUnavailable",
            Self::AgentError => "agentError",
            Self::OnPremAccountLocked => "onPremAccountLocked",
            Self::OnPremAccountDisabled => "onPremAccountDisabled",
            Self::PasswordMustChange => "passwordMustChange",
            Self::AccountLockedSmartLockout => "accountLockedSmartLockout",
            Self::TemporaryAccessPassNotUsable => "temporaryAccessPassNotUsable",
            Self::PasskeyNotRegistered => "passkeyNotRegistered",
            Self::PasskeyRejected => "passkeyRejected",
            Self::PasskeyPossibleClone => "passkeyPossibleClone",
            Self::MethodNotAllowedByPolicy => "methodNotAllowedByPolicy",
            Self::InvalidSecondFactor => "invalidSecondFactor",
            Self::SecondFactorNotRegistered => "secondFactorNotRegistered",
            Self::BlockedByConditionalAccess => "blockedByConditionalAccess",
        }
    }

    /// What the person signing in is told. Every reason that would reveal whether an account
    /// exists shares one message.
    pub fn user_message(self) -> &'static str {
        match self {
            Self::InvalidUserPrincipalName => "Enter your sign-in name in the form name@domain.",
            Self::UnknownDomain
            | Self::UnknownUser
            | Self::InvalidPassword
            | Self::NoPasswordSet
            // A lock (Cutover's or the directory's) and an on-prem disabled account are
            // reported whether or not the password was right: telling them apart would tell
            // a guesser the account exists.
            | Self::AccountLockedSmartLockout
            | Self::OnPremAccountLocked
            | Self::OnPremAccountDisabled => {
                "Your account or password is incorrect. Check both and try again; if you have forgotten your password, contact your helpdesk."
            }
            // Only reached after the correct password: it reveals nothing to someone without it.
            Self::AccountDisabled => {
                "Your account is disabled. Contact your helpdesk to have it enabled."
            }
            Self::FederationNotConfigured => {
                "Your organisation signs in through another identity provider that is not available right now. Contact your helpdesk."
            }
            Self::SessionExpired => {
                "This sign-in took too long and has expired. Go back to the application and start again."
            }
            Self::UpstreamUnavailable => {
                "Your organisation's sign-in service cannot be reached right now. Nothing was changed; try again in a few minutes, or contact your helpdesk if it persists."
            }
            Self::UpstreamDenied => {
                "Your organisation's sign-in service did not complete the sign-in. Go back to the application and try again."
            }
            Self::UpstreamTokenInvalid => {
                "Your organisation's sign-in service sent an answer that could not be verified, so you were not signed in. Contact your helpdesk."
            }
            Self::UpstreamSubjectNotFound => {
                "Your organisation's sign-in service confirmed who you are, but there is no matching account here yet. Contact your helpdesk (new accounts can take a while to appear)."
            }
            Self::UpstreamUserNotAllowed => {
                "The account your organisation's sign-in service confirmed cannot sign in this way. Contact your helpdesk."
            }
            Self::NoAgentAvailable
            | Self::AgentTimeout
            | Self::DirectoryUnavailable
            | Self::AgentError => {
                "Your password cannot be checked right now because the service that checks it is unavailable. Try again in a few minutes, or contact your helpdesk."
            }
            // Only reached after the correct password.
            Self::PasswordMustChange => {
                "Your password was reset and must be changed before you can sign in. Change it the way you do at work, then sign in with the new one."
            }
            // Only reached with the right pass.
            Self::TemporaryAccessPassNotUsable => {
                "This Temporary Access Pass cannot be used now. Ask your helpdesk for a new one."
            }
            Self::PasskeyNotRegistered => {
                "This passkey is not registered for any account here (it may have been removed). Sign in with your name instead, or use another passkey."
            }
            Self::PasskeyRejected => {
                "Your passkey could not be verified, so you were not signed in. Try again; if it keeps happening, sign in another way and re-register the passkey."
            }
            Self::PasskeyPossibleClone => {
                "This passkey was refused because it may have been copied. Contact your helpdesk: they can give you a Temporary Access Pass to register a new one."
            }
            Self::MethodNotAllowedByPolicy => {
                "Your organisation does not allow this sign-in method (or this kind of security key) for your account. Use another method, or contact your helpdesk."
            }
            Self::InvalidSecondFactor => {
                "That code is not right, or it was already used. Wait for the next code in your authenticator app and try again."
            }
            Self::SecondFactorNotRegistered => {
                "This sign-in needs a second method (a passkey or an authenticator app) and none is registered for your account. Ask your helpdesk for a Temporary Access Pass to register one."
            }
            Self::BlockedByConditionalAccess => {
                "Your organisation's access policy does not allow this sign-in (from this place, device or app, or without a method you have not registered). Contact your helpdesk if you need access."
            }
            // Only reached after the correct password.
            Self::PasswordExpired => {
                "Your password has expired. Change it the way you do at work (the new password reaches this sign-in page within minutes), or contact your helpdesk."
            }
        }
    }
}

/// Smart lockout's gate for this attempt (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LockoutDecision {
    /// No password was checked (federation, a session, a client secret).
    NotEvaluated,
    Allowed,
    Locked,
    /// Report-only mode: enforcement would have refused, the check went ahead.
    ReportOnlyLocked,
}

impl LockoutDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotEvaluated => "notEvaluated",
            Self::Allowed => "allowed",
            Self::Locked => "locked",
            Self::ReportOnlyLocked => "reportOnlyLocked",
        }
    }
}

/// One Conditional Access policy's result for a sign-in (`conditional_access::CaResult`
/// spelled as the log spells it) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResult {
    pub policy_id: Uuid,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One record per sign-in attempt, written before any token is returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInRecord {
    pub id: Uuid,
    pub created_at: Timestamp,
    pub correlation_id: Uuid,
    pub user_id: Option<Uuid>,
    /// The name as typed (or from the session), even when no user matched.
    pub user_principal_name: Option<String>,
    pub app_id: Option<Uuid>,
    pub client_id: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub client_app_type: Option<ClientAppType>,
    pub device_platform: Option<String>,
    pub device_family: Option<String>,
    pub is_interactive: bool,
    /// `managed` | `federated` (none when the attempt stopped before routing).
    pub route: Option<String>,
    pub route_reason: Option<String>,
    /// Methods used, in order (`password`, `session`, `clientSecret`, later `passkey`, `tap`…).
    pub authentication_methods: Vec<String>,
    pub staged_rollout_feature: Option<String>,
    /// The user's staged-rollout state as this sign-in saw and left it (SPEC §4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_rollout: Option<crate::staged::StagedTrace>,
    pub agent_id: Option<Uuid>,
    pub conditional_access: Vec<PolicyResult>,
    pub lockout_decision: LockoutDecision,
    pub result: SignInResult,
    pub failure_reason: Option<String>,
}

/// The credential step for a managed password sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOutcome {
    Success,
    Failure(FailureReason),
}

/// Decide the password step. `password_matches` is `None` when no hash was checked (no user,
/// or no password set). The password is judged before the account state, so a disabled account
/// is only revealed to someone who knows its password.
pub fn judge_password(
    domain_known: bool,
    user: Option<&User>,
    has_password: bool,
    password_matches: Option<bool>,
) -> PasswordOutcome {
    if !domain_known {
        return PasswordOutcome::Failure(FailureReason::UnknownDomain);
    }
    let Some(user) = user else {
        return PasswordOutcome::Failure(FailureReason::UnknownUser);
    };
    if !has_password {
        return PasswordOutcome::Failure(FailureReason::NoPasswordSet);
    }
    if password_matches != Some(true) {
        return PasswordOutcome::Failure(FailureReason::InvalidPassword);
    }
    if !user.account_enabled {
        return PasswordOutcome::Failure(FailureReason::AccountDisabled);
    }
    PasswordOutcome::Success
}

/// The optional cloud expiry of synced passwords (SPEC §5.2): a password synced
/// `max_age_days` or more days ago no longer signs in (after it was checked, like a disabled
/// account). `None` turns the policy off; a synced password without a change time counts as
/// changed long ago.
pub fn synced_password_expired(
    changed_at: Option<Timestamp>,
    now: Timestamp,
    max_age_days: Option<u32>,
) -> bool {
    let Some(days) = max_age_days else {
        return false;
    };
    match changed_at {
        Some(t) => now.millis() - t.millis() >= i64::from(days) * 24 * 60 * 60 * 1000,
        None => true,
    }
}

/// Apply the expiry policy to a password outcome.
pub fn with_password_expiry(outcome: PasswordOutcome, expired: bool) -> PasswordOutcome {
    match outcome {
        PasswordOutcome::Success if expired => {
            PasswordOutcome::Failure(FailureReason::PasswordExpired)
        }
        other => other,
    }
}

/// Coarse device platform from a User-Agent, as Conditional Access's platform condition sees it.
pub fn device_platform(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod") {
        "iOS"
    } else if ua.contains("android") {
        "android"
    } else if ua.contains("windows") {
        "windows"
    } else if ua.contains("mac os x") || ua.contains("macintosh") {
        "macOS"
    } else if ua.contains("cros") {
        "chromeOS"
    } else if ua.contains("linux") {
        "linux"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn synced_password_expiry_at_the_edge() {
        let day = 24 * 60 * 60 * 1000;
        let changed = Timestamp(1_000 * day);
        let at = |d: i64| Timestamp(changed.millis() + d * day);
        assert!(
            !synced_password_expired(Some(changed), at(10_000), None),
            "policy off"
        );
        assert!(!synced_password_expired(
            Some(changed),
            Timestamp(at(90).millis() - 1),
            Some(90)
        ));
        assert!(synced_password_expired(Some(changed), at(90), Some(90)));
        assert!(synced_password_expired(None, at(0), Some(90)));
        let ok = PasswordOutcome::Success;
        assert_eq!(with_password_expiry(ok, false), PasswordOutcome::Success);
        assert_eq!(
            with_password_expiry(ok, true),
            PasswordOutcome::Failure(FailureReason::PasswordExpired)
        );
        let wrong = PasswordOutcome::Failure(FailureReason::InvalidPassword);
        assert_eq!(
            with_password_expiry(wrong, true),
            wrong,
            "a wrong password stays wrong"
        );
    }
    use super::*;
    use crate::{Source, UserPrincipalName};
    use proptest::prelude::*;

    fn user(enabled: bool) -> User {
        User {
            id: Uuid::nil(),
            upn: UserPrincipalName::parse("u@c.example").unwrap(),
            source: Source::Cloud,
            immutable_id: None,
            display_name: "U".into(),
            mail: None,
            department: None,
            manager_id: None,
            account_enabled: enabled,
            break_glass: false,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn password_step_table() {
        use FailureReason::*;
        use PasswordOutcome::*;
        let on = user(true);
        let off = user(false);
        let table = [
            (false, None, false, None, Failure(UnknownDomain)),
            (true, None, false, None, Failure(UnknownUser)),
            (true, Some(&on), false, None, Failure(NoPasswordSet)),
            (true, Some(&on), true, Some(false), Failure(InvalidPassword)),
            (
                true,
                Some(&off),
                true,
                Some(false),
                Failure(InvalidPassword),
            ),
            (true, Some(&off), true, Some(true), Failure(AccountDisabled)),
            (true, Some(&on), true, Some(true), Success),
        ];
        for (domain_known, u, has_pw, matches, want) in table {
            assert_eq!(judge_password(domain_known, u, has_pw, matches), want);
        }
    }

    #[test]
    fn existence_is_never_revealed_by_the_message() {
        let generic = FailureReason::InvalidPassword.user_message();
        for r in [
            FailureReason::UnknownDomain,
            FailureReason::UnknownUser,
            FailureReason::NoPasswordSet,
        ] {
            assert_eq!(r.user_message(), generic);
        }
    }

    #[test]
    fn platforms() {
        let table = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                "iOS",
            ),
            ("Mozilla/5.0 (Linux; Android 14; SM-S918B)", "android"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "windows"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)", "macOS"),
            (
                "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156",
                "linux",
            ),
            ("curl/8.0", "unknown"),
        ];
        for (ua, want) in table {
            assert_eq!(device_platform(ua), want, "{ua}");
        }
    }

    proptest! {
        #[test]
        fn success_needs_a_matching_password_and_an_enabled_account(domain_known: bool, has_user: bool, enabled: bool, has_pw: bool, matches in proptest::option::of(any::<bool>())) {
            let u = user(enabled);
            let out = judge_password(domain_known, has_user.then_some(&u), has_pw, matches);
            let should = domain_known && has_user && enabled && has_pw && matches == Some(true);
            prop_assert_eq!(out == PasswordOutcome::Success, should);
        }
    }
}
