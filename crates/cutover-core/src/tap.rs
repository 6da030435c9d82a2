//! Temporary Access Pass (SPEC §6.3): the rules for issuing, using and consuming a pass, pure.
//!
//! A helpdesk agent issues a pass to a user who lost their authenticator; the user signs in
//! with it (even in a federated domain) and registers a new method. This module decides:
//!
//! - whether a pass may be issued, and with which validity ([`plan_issue`] → [`TapPlan`], or a
//!   [`TapRefusal`] telling the admin what to change);
//! - what the secret looks like ([`format_secret`], from random bytes the caller draws);
//! - whether a stored pass can be used now ([`usability`] → [`TapUsability`], each reason
//!   with a sign-in-log `code()` and a user-facing message);
//! - what using it changes ([`consume`]: a one-time pass is marked used, once);
//! - what a sign-in with it is worth ([`TAP_AMR`], [`registration_allowed`], [`session_cap`]);
//! - what issuing a second pass does to the first ([`replacement`]).
//!
//! The secret's hash, the database row and the audit events are the shell's business. Time
//! and randomness are arguments; nothing here reads a clock or draws a random number.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Secret, Timestamp};

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// No policy may allow a shorter lifetime than this (SPEC §6.3).
pub const ABS_MIN_LIFETIME_SECS: i64 = 10 * MINUTE;
/// No policy may allow a longer lifetime than this (SPEC §6.3).
pub const ABS_MAX_LIFETIME_SECS: i64 = 30 * DAY;
/// The shortest pass a policy may ask for, in characters.
pub const MIN_LENGTH: usize = 8;
/// The longest pass a policy may ask for, in characters.
pub const MAX_LENGTH: usize = 48;
/// A requested start this far in the past is taken as "now": a date-time picker rounds to
/// the minute and the request takes a moment to arrive. An earlier start is refused, since it
/// is almost always a time-zone mistake that would silently shorten the pass.
pub const START_PAST_GRACE_SECS: i64 = 5 * MINUTE;
/// The furthest ahead a pass may start. A pass waiting weeks for its start is a live secret
/// nobody needs yet; issue it closer to the day.
pub const MAX_START_AHEAD_SECS: i64 = 30 * DAY;
/// After a one-time pass is used, the user has this long to register a method with the
/// session it opened (SPEC §6.3).
pub const REGISTRATION_WINDOW_SECS: i64 = 10 * MINUTE;

/// The `amr` value of a sign-in with a pass.
///
/// A pass counts as multi-factor authentication on its own: the helpdesk verified the person
/// before issuing it. It satisfies the `mfa` strength, but not `passwordlessMfa` nor
/// `phishingResistantMfa` (it is a shared secret that can be typed into a phishing page).
pub const TAP_AMR: &str = "tap";

/// The characters of a pass: upper-case letters and digits without the ones that are misread
/// on a screen or misheard on the phone as another (`0`/`O`, `1`/`I`/`L`) and without `U`
/// (read as `V`). One case only, so nobody has to say "lower-case". 30 symbols, ≈ 4.9 bits
/// each.
pub const ALPHABET: &[u8; 30] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The largest multiple of the alphabet's size that fits a byte: bytes at or above it are
/// rejected, so every symbol is equally likely.
const ACCEPT_BELOW: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;

/// The Temporary Access Pass method's settings in the authentication methods policy.
///
/// Lifetimes are in seconds. Absent fields take their defaults (SPEC §6.3: lifetime 1 h by
/// default, 1 h to 8 h allowed, 8 characters, multi-use unless asked otherwise). Which
/// groups may use the method is the methods policy's concern, not this struct's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TapPolicy {
    /// Off until an administrator turns it on: a pass bypasses every other method.
    pub enabled: bool,
    /// The lifetime of a pass issued without one.
    pub default_lifetime_secs: i64,
    pub min_lifetime_secs: i64,
    pub max_lifetime_secs: i64,
    /// Characters in a pass.
    pub length: usize,
    /// Whether a pass issued without saying so is one-time.
    pub default_one_time: bool,
    /// Every pass must be one-time; asking for a multi-use pass is refused.
    pub require_one_time: bool,
}

impl Default for TapPolicy {
    fn default() -> Self {
        Self {
            enabled: false,
            default_lifetime_secs: HOUR,
            min_lifetime_secs: HOUR,
            max_lifetime_secs: 8 * HOUR,
            length: MIN_LENGTH,
            default_one_time: false,
            require_one_time: false,
        }
    }
}

/// A policy setting that is out of bounds; `field` is its JSON name and `message` says what
/// is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TapPolicyError {
    pub field: &'static str,
    pub message: String,
}

impl TapPolicy {
    /// Check the settings: 10 min ≤ min ≤ default ≤ max ≤ 30 days, length 8 to 48, and a
    /// default that does not contradict `requireOneTime`. The error names the field.
    pub fn validate(&self) -> Result<(), TapPolicyError> {
        let err = |field: &'static str, message: String| Err(TapPolicyError { field, message });
        if !(ABS_MIN_LIFETIME_SECS..=ABS_MAX_LIFETIME_SECS).contains(&self.min_lifetime_secs) {
            return err(
                "minLifetimeSecs",
                format!(
                    "minLifetimeSecs must be between {ABS_MIN_LIFETIME_SECS} (10 min) and {ABS_MAX_LIFETIME_SECS} (30 days), got {}",
                    self.min_lifetime_secs
                ),
            );
        }
        if !(self.min_lifetime_secs..=ABS_MAX_LIFETIME_SECS).contains(&self.max_lifetime_secs) {
            return err(
                "maxLifetimeSecs",
                format!(
                    "maxLifetimeSecs must be between minLifetimeSecs ({}) and {ABS_MAX_LIFETIME_SECS} (30 days), got {}",
                    self.min_lifetime_secs, self.max_lifetime_secs
                ),
            );
        }
        if !(self.min_lifetime_secs..=self.max_lifetime_secs).contains(&self.default_lifetime_secs)
        {
            return err(
                "defaultLifetimeSecs",
                format!(
                    "defaultLifetimeSecs must be between minLifetimeSecs ({}) and maxLifetimeSecs ({}), got {}",
                    self.min_lifetime_secs, self.max_lifetime_secs, self.default_lifetime_secs
                ),
            );
        }
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&self.length) {
            return err(
                "length",
                format!(
                    "length must be between {MIN_LENGTH} and {MAX_LENGTH} characters, got {}",
                    self.length
                ),
            );
        }
        if self.require_one_time && !self.default_one_time {
            return err(
                "defaultOneTime",
                "defaultOneTime must be true when requireOneTime is true".to_owned(),
            );
        }
        Ok(())
    }
}

/// What the helpdesk asks for; every field may be left out for the policy's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TapRequest {
    pub lifetime_secs: Option<i64>,
    /// When the pass starts to work; now when absent.
    pub start: Option<Timestamp>,
    pub one_time: Option<bool>,
}

/// A pass that may be issued: the shell draws [`random_bytes_needed`]`(length)` bytes, calls
/// [`format_secret`], stores the hash with [`TapPlan::into_tap`], and shows the secret once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapPlan {
    pub created_at: Timestamp,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
    pub one_time: bool,
    /// Characters in the secret.
    pub length: usize,
}

impl TapPlan {
    /// The stored facts of the planned pass, under the id the shell chose.
    pub fn into_tap(self, id: Uuid) -> Tap {
        Tap {
            id,
            created_at: self.created_at,
            starts_at: self.starts_at,
            expires_at: self.expires_at,
            one_time: self.one_time,
            used_at: None,
        }
    }
}

/// Why a pass cannot be issued. The admin sees `message()`, which says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapRefusal {
    /// The method is turned off in the policy.
    DisabledByPolicy,
    /// The stored policy fails [`TapPolicy::validate`].
    PolicyInvalid(TapPolicyError),
    /// The policy requires one-time passes and a multi-use one was asked for.
    MultiUseNotAllowed,
    /// Seconds, all three.
    LifetimeOutOfRange { min: i64, max: i64, asked: i64 },
    /// The start is more than [`START_PAST_GRACE_SECS`] before `now`.
    StartInPast { start: Timestamp, now: Timestamp },
    /// The start is after `latest` (`now` + [`MAX_START_AHEAD_SECS`]).
    StartTooFarAhead { start: Timestamp, latest: Timestamp },
}

impl TapRefusal {
    /// A stable code for the API's error and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DisabledByPolicy => "disabledByPolicy",
            Self::PolicyInvalid(_) => "policyInvalid",
            Self::MultiUseNotAllowed => "multiUseNotAllowed",
            Self::LifetimeOutOfRange { .. } => "lifetimeOutOfRange",
            Self::StartInPast { .. } => "startInPast",
            Self::StartTooFarAhead { .. } => "startTooFarAhead",
        }
    }

    /// For the administrator: what is wrong and what to do about it.
    pub fn message(&self) -> String {
        match self {
            Self::DisabledByPolicy => "Temporary Access Passes are turned off in the authentication methods policy. Enable the Temporary Access Pass method before issuing one.".to_owned(),
            Self::PolicyInvalid(e) => format!(
                "The Temporary Access Pass policy is invalid: {e}. Correct the policy, then issue the pass."
            ),
            Self::MultiUseNotAllowed => "The policy allows only one-time passes. Issue a one-time pass, or turn off requireOneTime in the policy.".to_owned(),
            Self::LifetimeOutOfRange { min, max, asked } => format!(
                "A lifetime of {} is outside the policy's range of {} to {}. Choose a lifetime in that range, leave it out for the policy's default, or change the policy's limits.",
                human_duration(*asked),
                human_duration(*min),
                human_duration(*max)
            ),
            Self::StartInPast { start, now } => format!(
                "The start time is {} in the past. Choose a start time from now on, or leave it out to start the pass at once.",
                human_duration(now.millis().saturating_sub(start.millis()) / 1000)
            ),
            Self::StartTooFarAhead { start, latest } => format!(
                "The start time is {} later than a pass may start ({} ahead). Issue the pass closer to when the user needs it.",
                human_duration(start.millis().saturating_sub(latest.millis()) / 1000),
                human_duration(MAX_START_AHEAD_SECS)
            ),
        }
    }
}

/// Decide whether a pass may be issued at `now` under `policy`, and with which validity.
///
/// The pass works from `starts_at` (inclusive) until `expires_at` (exclusive), `expires_at`
/// being `starts_at` plus the lifetime.
pub fn plan_issue(
    policy: &TapPolicy,
    req: &TapRequest,
    now: Timestamp,
) -> Result<TapPlan, TapRefusal> {
    if !policy.enabled {
        return Err(TapRefusal::DisabledByPolicy);
    }
    policy.validate().map_err(TapRefusal::PolicyInvalid)?;
    let one_time = match req.one_time {
        Some(false) if policy.require_one_time => return Err(TapRefusal::MultiUseNotAllowed),
        Some(asked) => asked,
        None => policy.default_one_time,
    };
    let lifetime = req.lifetime_secs.unwrap_or(policy.default_lifetime_secs);
    if !(policy.min_lifetime_secs..=policy.max_lifetime_secs).contains(&lifetime) {
        return Err(TapRefusal::LifetimeOutOfRange {
            min: policy.min_lifetime_secs,
            max: policy.max_lifetime_secs,
            asked: lifetime,
        });
    }
    let starts_at = match req.start {
        None => now,
        Some(start) if start < now.minus_secs(START_PAST_GRACE_SECS) => {
            return Err(TapRefusal::StartInPast { start, now });
        }
        Some(start) if start > now.plus_secs(MAX_START_AHEAD_SECS) => {
            return Err(TapRefusal::StartTooFarAhead {
                start,
                latest: now.plus_secs(MAX_START_AHEAD_SECS),
            });
        }
        Some(start) => start.max(now),
    };
    Ok(TapPlan {
        created_at: now,
        starts_at,
        expires_at: starts_at.plus_secs(lifetime),
        one_time,
        length: policy.length,
    })
}

/// How many random bytes [`format_secret`] should be given for a pass of `length` characters.
///
/// Each byte is kept with probability 240/256, so `2 × length + 16` bytes run out only if
/// more than `length + 16` of them are rejected: below 2⁻⁷⁵ for every allowed length.
pub fn random_bytes_needed(length: usize) -> usize {
    length.saturating_mul(2).saturating_add(16)
}

/// Turn random bytes into a pass of `length` characters from [`ALPHABET`], by rejection
/// sampling (a byte maps to a symbol only when it is below the largest multiple of 30, so
/// every symbol is equally likely).
///
/// `None` when `length` is outside [`MIN_LENGTH`]`..=`[`MAX_LENGTH`] or the bytes ran out
/// (draw [`random_bytes_needed`] bytes, and on `None` draw fresh ones and call again).
pub fn format_secret(random: &[u8], length: usize) -> Option<Secret> {
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return None;
    }
    let pass: String = random
        .iter()
        .filter(|b| **b < ACCEPT_BELOW)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .take(length)
        .collect();
    (pass.len() == length).then(|| Secret::new(pass))
}

/// What a user typed, in the form the pass was issued in (upper case, without the spaces
/// and hyphens people add when copying it down), ready to hash and compare. `None` when it
/// cannot be a pass (a character outside [`ALPHABET`], or too short or long), so the shell
/// can refuse it without hashing; the user sees the same failure as for a wrong pass.
pub fn normalize_entered(typed: &str) -> Option<Secret> {
    let mut pass = String::with_capacity(MAX_LENGTH);
    for c in typed.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let c = c.to_ascii_uppercase();
        if pass.len() >= MAX_LENGTH || !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        pass.push(c);
    }
    (pass.len() >= MIN_LENGTH).then(|| Secret::new(pass))
}

/// A pass as stored (the hash of its secret is kept beside it by the shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tap {
    pub id: Uuid,
    pub created_at: Timestamp,
    /// First millisecond the pass works.
    pub starts_at: Timestamp,
    /// First millisecond the pass no longer works.
    pub expires_at: Timestamp,
    pub one_time: bool,
    /// When a one-time pass was used; a multi-use pass is never marked.
    pub used_at: Option<Timestamp>,
}

/// Why a stored pass cannot be used now (the API's `methodUsabilityReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TapReason {
    Expired,
    NotYetValid,
    OneTimeUsed,
    DisabledByPolicy,
}

impl TapReason {
    pub const ALL: [TapReason; 4] = [
        Self::Expired,
        Self::NotYetValid,
        Self::OneTimeUsed,
        Self::DisabledByPolicy,
    ];

    /// The reason code for the sign-in log and the API.
    pub fn code(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotYetValid => "notYetValid",
            Self::OneTimeUsed => "oneTimeUsed",
            Self::DisabledByPolicy => "disabledByPolicy",
        }
    }

    /// For the person signing in. Show it only after the secret matched: a wrong secret gets
    /// the same failure as a wrong password, so nobody learns whether a user has a pass. The
    /// message gives no times and no policy detail, only what to do next.
    pub fn user_message(self) -> &'static str {
        match self {
            Self::Expired => {
                "This Temporary Access Pass has expired. Ask your helpdesk for a new one."
            }
            Self::NotYetValid => {
                "This Temporary Access Pass is not valid yet. Try again later, or ask your helpdesk when it starts."
            }
            Self::OneTimeUsed => {
                "This Temporary Access Pass has already been used. Ask your helpdesk for a new one."
            }
            Self::DisabledByPolicy => {
                "Temporary Access Passes can't be used at the moment. Ask your helpdesk for another way to sign in."
            }
        }
    }
}

/// Whether a pass can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapUsability {
    Usable,
    NotUsable(TapReason),
}

impl TapUsability {
    pub fn is_usable(self) -> bool {
        self == Self::Usable
    }
}

/// Whether `tap` can be used at `now` under `policy`.
///
/// When several reasons hold, the one reported is the first of: `disabledByPolicy` (even a
/// valid pass stops working when the method is turned off), `oneTimeUsed` (a second use is
/// what the admin most needs to see: someone else may hold the pass), `expired`,
/// `notYetValid`. The pass works from `starts_at` inclusive to `expires_at` exclusive.
pub fn usability(tap: &Tap, policy: &TapPolicy, now: Timestamp) -> TapUsability {
    if !policy.enabled {
        return TapUsability::NotUsable(TapReason::DisabledByPolicy);
    }
    match check_pass(tap, now) {
        Ok(()) => TapUsability::Usable,
        Err(reason) => TapUsability::NotUsable(reason),
    }
}

/// The pass's own state at `now`, without the policy.
fn check_pass(tap: &Tap, now: Timestamp) -> Result<(), TapReason> {
    if tap.one_time && tap.used_at.is_some() {
        Err(TapReason::OneTimeUsed)
    } else if now >= tap.expires_at {
        Err(TapReason::Expired)
    } else if now < tap.starts_at {
        Err(TapReason::NotYetValid)
    } else {
        Ok(())
    }
}

/// Use `tap` at `now`: a one-time pass comes back marked used, a multi-use pass unchanged.
///
/// The shell checks [`usability`] (with the policy) first, then applies this rule in one
/// conditional write, so that of any number of parallel sign-ins with a one-time pass exactly
/// one wins:
/// `UPDATE … SET used_at = $now WHERE id = $id AND used_at IS NULL AND starts_at <= $now AND
/// expires_at > $now`; no row updated means someone else used it first ([`TapReason::OneTimeUsed`]).
pub fn consume(tap: &Tap, now: Timestamp) -> Result<Tap, TapReason> {
    check_pass(tap, now)?;
    let mut used = tap.clone();
    if tap.one_time {
        used.used_at = Some(now);
    }
    Ok(used)
}

/// The end of the window in which a session opened with a one-time pass used at `used_at`
/// may register a method (exclusive).
pub fn registration_deadline(used_at: Timestamp) -> Timestamp {
    used_at.plus_secs(REGISTRATION_WINDOW_SECS)
}

/// Whether a session opened with a one-time pass used at `used_at` may still register a
/// method at `now`: from the use for [`REGISTRATION_WINDOW_SECS`], the last millisecond
/// before the 600th second included.
///
/// A multi-use pass has no such window: its session lasts at most as long as the pass
/// ([`session_cap`]) and registration follows the general recent-sign-in rule.
pub fn registration_allowed(used_at: Timestamp, now: Timestamp) -> bool {
    used_at <= now && now < registration_deadline(used_at)
}

/// The expiry of a token or SSO session obtained with `tap`: never later than the pass's.
pub fn session_cap(tap: &Tap, proposed_expiry: Timestamp) -> Timestamp {
    proposed_expiry.min(tap.expires_at)
}

/// Whether `tap` still matters at `now`: not expired, and not a used one-time pass. A pass
/// waiting for its start is active.
pub fn is_active(tap: &Tap, now: Timestamp) -> bool {
    !(tap.one_time && tap.used_at.is_some()) && now < tap.expires_at
}

/// The pass a newly issued one replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    pub id: Uuid,
    /// It could still have been used (for the audit event: "replaced an active pass").
    pub was_active: bool,
}

/// A user has at most one pass: issuing a new one replaces whatever pass they have, active
/// or not.
///
/// For the store, replacing means the new pass and its hash take the old one's place in the
/// same transaction (one row per user, overwritten; no history of secrets is kept), so the
/// old secret stops working the moment the new one is committed and a sign-in racing the
/// replacement sees one pass or the other, never both. The audit event of the issue names
/// the replaced pass.
pub fn replacement(existing: Option<&Tap>, now: Timestamp) -> Option<Replaced> {
    existing.map(|tap| Replaced {
        id: tap.id,
        was_active: is_active(tap, now),
    })
}

/// Seconds as an admin reads them: "30 days", "8 h", "90 min", "45 s".
fn human_duration(secs: i64) -> String {
    if secs != 0 && secs % DAY == 0 {
        let days = secs / DAY;
        if days == 1 {
            "1 day".to_owned()
        } else {
            format!("{days} days")
        }
    } else if secs != 0 && secs % HOUR == 0 {
        format!("{} h", secs / HOUR)
    } else if secs != 0 && secs % MINUTE == 0 {
        format!("{} min", secs / MINUTE)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

    fn enabled() -> TapPolicy {
        TapPolicy {
            enabled: true,
            ..TapPolicy::default()
        }
    }

    fn ask(lifetime_secs: Option<i64>) -> TapRequest {
        TapRequest {
            lifetime_secs,
            ..TapRequest::default()
        }
    }

    fn pass(starts_at: Timestamp, expires_at: Timestamp, one_time: bool) -> Tap {
        Tap {
            id: Uuid::from_u128(7),
            created_at: NOW,
            starts_at,
            expires_at,
            one_time,
            used_at: None,
        }
    }

    fn one_hour_pass(one_time: bool) -> Tap {
        pass(NOW, NOW.plus_secs(HOUR), one_time)
    }

    fn not_usable(reason: TapReason) -> TapUsability {
        TapUsability::NotUsable(reason)
    }

    // --- Issuing -------------------------------------------------------------------------

    #[test]
    fn the_default_policy_matches_the_spec_and_is_off() {
        let p = TapPolicy::default();
        assert!(!p.enabled);
        assert_eq!(p.default_lifetime_secs, 3_600);
        assert_eq!(p.min_lifetime_secs, 3_600);
        assert_eq!(p.max_lifetime_secs, 8 * 3_600);
        assert_eq!(p.length, 8);
        assert!(!p.default_one_time);
        assert!(!p.require_one_time);
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(ABS_MAX_LIFETIME_SECS, 30 * 24 * 3_600);
    }

    #[test]
    fn a_request_without_a_lifetime_gets_the_default_starting_now() {
        let plan = plan_issue(&enabled(), &TapRequest::default(), NOW).unwrap();
        assert_eq!(
            plan,
            TapPlan {
                created_at: NOW,
                starts_at: NOW,
                expires_at: NOW.plus_secs(3_600),
                one_time: false,
                length: 8,
            }
        );
        let tap = plan.into_tap(Uuid::from_u128(1));
        assert_eq!(tap.used_at, None);
        assert_eq!(tap.expires_at, NOW.plus_secs(3_600));
    }

    #[test]
    fn lifetime_edges() {
        let p = TapPolicy {
            enabled: true,
            min_lifetime_secs: 600,
            default_lifetime_secs: 3_600,
            max_lifetime_secs: 86_400,
            ..TapPolicy::default()
        };
        let out_of_range = |asked| TapRefusal::LifetimeOutOfRange {
            min: 600,
            max: 86_400,
            asked,
        };
        assert_eq!(plan_issue(&p, &ask(Some(599)), NOW), Err(out_of_range(599)));
        assert_eq!(
            plan_issue(&p, &ask(Some(600)), NOW).map(|t| t.expires_at),
            Ok(NOW.plus_secs(600))
        );
        assert_eq!(
            plan_issue(&p, &ask(Some(86_400)), NOW).map(|t| t.expires_at),
            Ok(NOW.plus_secs(86_400))
        );
        assert_eq!(
            plan_issue(&p, &ask(Some(86_401)), NOW),
            Err(out_of_range(86_401))
        );
        assert_eq!(plan_issue(&p, &ask(Some(-1)), NOW), Err(out_of_range(-1)));
        assert_eq!(
            plan_issue(&p, &ask(Some(i64::MAX)), NOW),
            Err(out_of_range(i64::MAX))
        );
    }

    #[test]
    fn refusals_tell_the_admin_what_to_do() {
        let r = plan_issue(&enabled(), &ask(Some(1_800)), NOW).unwrap_err();
        assert_eq!(r.code(), "lifetimeOutOfRange");
        assert_eq!(
            r.message(),
            "A lifetime of 30 min is outside the policy's range of 1 h to 8 h. Choose a lifetime in that range, leave it out for the policy's default, or change the policy's limits."
        );
        let off = plan_issue(&TapPolicy::default(), &TapRequest::default(), NOW).unwrap_err();
        assert_eq!(off, TapRefusal::DisabledByPolicy);
        assert_eq!(off.code(), "disabledByPolicy");
        assert!(
            off.message()
                .contains("Enable the Temporary Access Pass method")
        );
    }

    #[test]
    fn a_disabled_policy_refuses_before_anything_else() {
        let p = TapPolicy {
            enabled: false,
            length: 2,
            ..TapPolicy::default()
        };
        assert_eq!(
            plan_issue(&p, &ask(Some(-5)), NOW),
            Err(TapRefusal::DisabledByPolicy)
        );
    }

    #[test]
    fn an_invalid_stored_policy_refuses_to_issue() {
        let p = TapPolicy {
            length: 4,
            ..enabled()
        };
        let r = plan_issue(&p, &TapRequest::default(), NOW).unwrap_err();
        assert_eq!(r.code(), "policyInvalid");
        assert!(
            r.message().contains("length must be between 8 and 48"),
            "{}",
            r.message()
        );
    }

    #[test]
    fn start_in_the_past_is_refused_beyond_the_grace() {
        let at = |start| TapRequest {
            start: Some(start),
            ..TapRequest::default()
        };
        // Within the grace: taken as now, so the pass keeps its whole lifetime.
        let plan = plan_issue(&enabled(), &at(NOW.minus_secs(START_PAST_GRACE_SECS)), NOW);
        assert_eq!(
            plan.map(|p| (p.starts_at, p.expires_at)),
            Ok((NOW, NOW.plus_secs(3_600)))
        );
        let start = NOW.minus_secs(START_PAST_GRACE_SECS).plus_millis(-1);
        let r = plan_issue(&enabled(), &at(start), NOW).unwrap_err();
        assert_eq!(r, TapRefusal::StartInPast { start, now: NOW });
        assert_eq!(r.code(), "startInPast");
        let r = plan_issue(&enabled(), &at(NOW.minus_secs(2 * HOUR)), NOW).unwrap_err();
        assert_eq!(
            r.message(),
            "The start time is 2 h in the past. Choose a start time from now on, or leave it out to start the pass at once."
        );
    }

    #[test]
    fn start_too_far_ahead_is_refused() {
        let at = |start| TapRequest {
            start: Some(start),
            ..TapRequest::default()
        };
        let latest = NOW.plus_secs(MAX_START_AHEAD_SECS);
        let plan = plan_issue(&enabled(), &at(latest), NOW).unwrap();
        assert_eq!(plan.starts_at, latest);
        assert_eq!(plan.expires_at, latest.plus_secs(3_600));
        let r = plan_issue(&enabled(), &at(latest.plus_millis(1)), NOW).unwrap_err();
        assert_eq!(
            r,
            TapRefusal::StartTooFarAhead {
                start: latest.plus_millis(1),
                latest
            }
        );
        assert_eq!(r.code(), "startTooFarAhead");
        let r = plan_issue(&enabled(), &at(latest.plus_secs(DAY)), NOW).unwrap_err();
        assert!(r.message().contains("1 day later"), "{}", r.message());
        assert!(r.message().contains("(30 days ahead)"), "{}", r.message());
    }

    #[test]
    fn one_time_follows_the_request_then_the_policy() {
        let mut p = enabled();
        let once = |one_time| TapRequest {
            one_time,
            ..TapRequest::default()
        };
        assert!(!plan_issue(&p, &once(None), NOW).unwrap().one_time);
        assert!(plan_issue(&p, &once(Some(true)), NOW).unwrap().one_time);
        p.default_one_time = true;
        assert!(plan_issue(&p, &once(None), NOW).unwrap().one_time);
        assert!(!plan_issue(&p, &once(Some(false)), NOW).unwrap().one_time);
        p.require_one_time = true;
        assert!(plan_issue(&p, &once(None), NOW).unwrap().one_time);
        let r = plan_issue(&p, &once(Some(false)), NOW).unwrap_err();
        assert_eq!(r, TapRefusal::MultiUseNotAllowed);
        assert_eq!(r.code(), "multiUseNotAllowed");
    }

    #[test]
    fn policy_validation_names_each_field() {
        let base = TapPolicy::default();
        let field = |p: TapPolicy| p.validate().unwrap_err().field;
        let cases = [
            (
                TapPolicy {
                    min_lifetime_secs: 599,
                    ..base
                },
                "minLifetimeSecs",
            ),
            (
                TapPolicy {
                    min_lifetime_secs: ABS_MAX_LIFETIME_SECS + 1,
                    ..base
                },
                "minLifetimeSecs",
            ),
            (
                TapPolicy {
                    max_lifetime_secs: 3_599,
                    ..base
                },
                "maxLifetimeSecs",
            ),
            (
                TapPolicy {
                    max_lifetime_secs: ABS_MAX_LIFETIME_SECS + 1,
                    ..base
                },
                "maxLifetimeSecs",
            ),
            (
                TapPolicy {
                    default_lifetime_secs: 3_599,
                    ..base
                },
                "defaultLifetimeSecs",
            ),
            (
                TapPolicy {
                    default_lifetime_secs: 8 * 3_600 + 1,
                    ..base
                },
                "defaultLifetimeSecs",
            ),
            (TapPolicy { length: 7, ..base }, "length"),
            (TapPolicy { length: 49, ..base }, "length"),
            (
                TapPolicy {
                    require_one_time: true,
                    ..base
                },
                "defaultOneTime",
            ),
        ];
        for (policy, name) in cases {
            assert_eq!(field(policy), name, "{policy:?}");
            let message = policy.validate().unwrap_err().to_string();
            assert!(message.starts_with(name), "{message}");
        }
        // The absolute bounds themselves are allowed.
        let widest = TapPolicy {
            min_lifetime_secs: ABS_MIN_LIFETIME_SECS,
            default_lifetime_secs: ABS_MIN_LIFETIME_SECS,
            max_lifetime_secs: ABS_MAX_LIFETIME_SECS,
            length: MAX_LENGTH,
            default_one_time: true,
            require_one_time: true,
            ..base
        };
        assert_eq!(widest.validate(), Ok(()));
    }

    #[test]
    fn policy_json_is_camel_case_with_defaults_and_refuses_typos() {
        let p: TapPolicy = serde_json::from_str(
            r#"{"enabled":true,"maxLifetimeSecs":86400,"defaultOneTime":true}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            TapPolicy {
                enabled: true,
                max_lifetime_secs: 86_400,
                default_one_time: true,
                ..TapPolicy::default()
            }
        );
        assert!(serde_json::from_str::<TapPolicy>(r#"{"maxLifetime":86400}"#).is_err());
        let r: TapRequest =
            serde_json::from_str(r#"{"lifetimeSecs":3600,"start":1700000000000,"oneTime":true}"#)
                .unwrap();
        assert_eq!(r.start, Some(NOW));
        assert!(serde_json::from_str::<TapRequest>(r#"{"lifetime":3600}"#).is_err());
    }

    // --- The secret ----------------------------------------------------------------------

    #[test]
    fn the_alphabet_has_no_look_alikes() {
        for c in b"01OILU" {
            assert!(!ALPHABET.contains(c), "{}", char::from(*c));
        }
        let mut sorted = ALPHABET.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 30);
        assert_eq!(ACCEPT_BELOW, 240);
    }

    #[test]
    fn format_secret_maps_bytes_and_skips_rejected_ones() {
        // 0 → '2', 29 → 'Z', 30 → '2' again, 239 → 'Z'; 240..=255 are skipped.
        let bytes = [0, 240, 29, 255, 30, 239, 8, 250, 9, 10, 11];
        let s = format_secret(&bytes, 8).unwrap();
        assert_eq!(s.expose(), "2Z2ZABCD");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn format_secret_needs_enough_bytes_and_an_allowed_length() {
        assert_eq!(format_secret(&[0; 7], 8), None);
        assert_eq!(format_secret(&[255; 1000], 8), None);
        assert_eq!(format_secret(&[0; 100], 7), None);
        assert_eq!(format_secret(&[0; 100], 49), None);
        assert_eq!(format_secret(&[5; 48], 48).map(|s| s.len()), Some(48));
        assert_eq!(random_bytes_needed(8), 32);
        assert_eq!(random_bytes_needed(48), 112);
        assert_eq!(random_bytes_needed(usize::MAX), usize::MAX);
    }

    #[test]
    fn typed_passes_are_normalised_before_comparing() {
        fn typed(s: &str) -> Option<String> {
            normalize_entered(s).map(|s| s.expose().to_owned())
        }
        assert_eq!(typed("abcd-efgh"), Some("ABCDEFGH".to_owned()));
        assert_eq!(typed(" 2345 6789 "), Some("23456789".to_owned()));
        assert_eq!(typed("ABCDEFG"), None, "too short");
        assert_eq!(typed("ABCDEFG0"), None, "0 is not in the alphabet");
        assert_eq!(typed("ABCDEFGÉ"), None);
        assert_eq!(typed(&"A".repeat(48)).map(|s| s.len()), Some(48));
        assert_eq!(typed(&"A".repeat(49)), None, "too long");
    }

    // --- Using a pass ----------------------------------------------------------------------

    #[test]
    fn a_future_pass_is_not_yet_valid_until_its_start_millisecond() {
        let start = NOW.plus_secs(DAY);
        let tap = pass(start, start.plus_secs(HOUR), false);
        let p = enabled();
        assert_eq!(usability(&tap, &p, NOW), not_usable(TapReason::NotYetValid));
        assert_eq!(
            usability(&tap, &p, start.plus_millis(-1)),
            not_usable(TapReason::NotYetValid)
        );
        assert_eq!(usability(&tap, &p, start), TapUsability::Usable);
        assert_eq!(
            consume(&tap, start.plus_millis(-1)),
            Err(TapReason::NotYetValid)
        );
    }

    #[test]
    fn a_pass_expires_at_its_expiry_millisecond() {
        let tap = one_hour_pass(false);
        let p = enabled();
        let end = tap.expires_at;
        assert_eq!(
            usability(&tap, &p, end.plus_millis(-1)),
            TapUsability::Usable
        );
        assert_eq!(usability(&tap, &p, end), not_usable(TapReason::Expired));
        assert_eq!(consume(&tap, end), Err(TapReason::Expired));
        assert!(consume(&tap, end.plus_millis(-1)).is_ok());
    }

    #[test]
    fn a_used_one_time_pass_is_one_time_used() {
        let tap = one_hour_pass(true);
        let used = consume(&tap, NOW.plus_secs(60)).unwrap();
        assert_eq!(used.used_at, Some(NOW.plus_secs(60)));
        assert_eq!(
            usability(&used, &enabled(), NOW.plus_secs(61)),
            not_usable(TapReason::OneTimeUsed)
        );
        assert_eq!(
            consume(&used, NOW.plus_secs(61)),
            Err(TapReason::OneTimeUsed)
        );
        // Reported over expiry: a second use is the security-relevant fact.
        assert_eq!(
            usability(&used, &enabled(), used.expires_at),
            not_usable(TapReason::OneTimeUsed)
        );
    }

    #[test]
    fn a_multi_use_pass_is_never_marked() {
        let tap = one_hour_pass(false);
        let after = consume(&tap, NOW).unwrap();
        assert_eq!(after, tap);
        assert_eq!(consume(&after, NOW.plus_secs(600)), Ok(tap));
    }

    #[test]
    fn a_disabled_policy_stops_even_a_valid_pass() {
        let tap = one_hour_pass(false);
        let off = TapPolicy::default();
        assert_eq!(usability(&tap, &enabled(), NOW), TapUsability::Usable);
        assert_eq!(
            usability(&tap, &off, NOW),
            not_usable(TapReason::DisabledByPolicy)
        );
        let used = consume(&one_hour_pass(true), NOW).unwrap();
        assert_eq!(
            usability(&used, &off, NOW),
            not_usable(TapReason::DisabledByPolicy)
        );
    }

    #[test]
    fn reason_codes_are_the_issues_and_match_the_json() {
        let codes: Vec<_> = TapReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            ["expired", "notYetValid", "oneTimeUsed", "disabledByPolicy"]
        );
        for r in TapReason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.code())
            );
            let m = r.user_message();
            assert!(m.contains("helpdesk"), "{m}");
            assert!(!m.contains("policy"), "{m}");
        }
    }

    #[test]
    fn tap_json_is_camel_case() {
        let tap = one_hour_pass(true);
        let json = serde_json::to_value(&tap).unwrap();
        assert_eq!(json["startsAt"], NOW.millis());
        assert_eq!(json["oneTime"], true);
        assert_eq!(json["usedAt"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Tap>(json).unwrap(), tap);
    }

    // --- What a sign-in with a pass is worth -----------------------------------------------

    #[test]
    fn registration_window_edges() {
        let used = NOW;
        assert!(registration_allowed(used, used));
        assert!(registration_allowed(used, used.plus_secs(599)));
        assert!(registration_allowed(
            used,
            used.plus_secs(600).plus_millis(-1)
        ));
        assert!(!registration_allowed(used, used.plus_secs(600)));
        assert!(!registration_allowed(used, used.plus_secs(601)));
        assert!(!registration_allowed(used, used.plus_millis(-1)));
        assert_eq!(registration_deadline(used), used.plus_secs(600));
    }

    #[test]
    fn sessions_never_outlive_the_pass() {
        let tap = one_hour_pass(false);
        assert_eq!(session_cap(&tap, NOW.plus_secs(8 * HOUR)), tap.expires_at);
        assert_eq!(session_cap(&tap, NOW.plus_secs(600)), NOW.plus_secs(600));
        assert_eq!(session_cap(&tap, tap.expires_at), tap.expires_at);
    }

    #[test]
    fn a_new_pass_replaces_any_existing_one() {
        assert_eq!(replacement(None, NOW), None);
        let live = one_hour_pass(true);
        assert_eq!(
            replacement(Some(&live), NOW),
            Some(Replaced {
                id: live.id,
                was_active: true
            })
        );
        let used = consume(&live, NOW).unwrap();
        assert_eq!(
            replacement(Some(&used), NOW).map(|r| r.was_active),
            Some(false)
        );
        assert_eq!(
            replacement(Some(&live), live.expires_at).map(|r| r.was_active),
            Some(false)
        );
        let future = pass(NOW.plus_secs(DAY), NOW.plus_secs(DAY + HOUR), false);
        assert_eq!(
            replacement(Some(&future), NOW).map(|r| r.was_active),
            Some(true)
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(45), "45 s");
        assert_eq!(human_duration(5_400), "90 min");
        assert_eq!(human_duration(8 * HOUR), "8 h");
        assert_eq!(human_duration(DAY), "1 day");
        assert_eq!(human_duration(30 * DAY), "30 days");
        assert_eq!(human_duration(-600), "-10 min");
    }

    // --- Properties ------------------------------------------------------------------------

    /// The store's conditional update (`… WHERE id = $id AND used_at IS NULL …`): the write
    /// lands only if the row still looks as it did when the attempt read it.
    fn conditional_update(store: &mut Tap, read: &Tap, new: Tap) -> bool {
        if store.used_at != read.used_at {
            return false;
        }
        *store = new;
        true
    }

    /// `n` attempts, each a read then a write, interleaved in any order.
    fn schedule(max: usize) -> impl Strategy<Value = Vec<usize>> {
        (1..=max)
            .prop_flat_map(|n| Just((0..n).flat_map(|i| [i, i]).collect::<Vec<_>>()).prop_shuffle())
    }

    proptest! {
        #[test]
        fn a_one_time_pass_is_consumed_exactly_once_under_any_interleaving(
            order in schedule(12),
            offsets in proptest::collection::vec(0..HOUR * 1000, 12),
        ) {
            let initial = one_hour_pass(true);
            let mut store = initial.clone();
            let mut reads: Vec<Option<(Tap, Result<Tap, TapReason>)>> = vec![None; 12];
            let mut winners = Vec::new();
            for i in order {
                let now = NOW.plus_millis(offsets[i]);
                match reads[i].take() {
                    None => {
                        let attempt = consume(&store, now);
                        reads[i] = Some((store.clone(), attempt));
                    }
                    Some((read, attempt)) => match attempt {
                        Ok(new) => {
                            if conditional_update(&mut store, &read, new) {
                                winners.push(now);
                            }
                        }
                        Err(reason) => prop_assert_eq!(reason, TapReason::OneTimeUsed),
                    },
                }
            }
            prop_assert_eq!(winners.len(), 1);
            prop_assert_eq!(store.used_at, Some(winners[0]));
            prop_assert_eq!(
                usability(&store, &enabled(), NOW),
                not_usable(TapReason::OneTimeUsed)
            );
        }

        #[test]
        fn every_use_of_a_multi_use_pass_within_its_validity_succeeds(
            offsets in proptest::collection::vec(0..HOUR * 1000, 1..20),
        ) {
            let mut tap = one_hour_pass(false);
            for ms in offsets {
                tap = consume(&tap, NOW.plus_millis(ms)).unwrap();
                prop_assert_eq!(tap.used_at, None);
            }
        }

        #[test]
        fn no_pass_works_outside_its_validity(
            start in -1_000_000i64..1_000_000,
            len in 0i64..1_000_000,
            at in -3_000_000i64..3_000_000,
            one_time: bool,
        ) {
            let tap = pass(NOW.plus_millis(start), NOW.plus_millis(start + len), one_time);
            let now = NOW.plus_millis(at);
            let inside = tap.starts_at <= now && now < tap.expires_at;
            prop_assert_eq!(consume(&tap, now).is_ok(), inside);
            prop_assert_eq!(usability(&tap, &enabled(), now).is_usable(), inside);
        }

        #[test]
        fn format_secret_is_all_or_nothing(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            length in 0usize..60,
        ) {
            if let Some(s) = format_secret(&bytes, length) {
                prop_assert_eq!(s.len(), length);
                prop_assert!(s.expose().bytes().all(|b| ALPHABET.contains(&b)));
                prop_assert_eq!(normalize_entered(&s.expose().to_lowercase()), Some(s));
            } else {
                let kept = bytes.iter().filter(|b| **b < ACCEPT_BELOW).count();
                prop_assert!(!(MIN_LENGTH..=MAX_LENGTH).contains(&length) || kept < length);
            }
        }

        #[test]
        fn plan_issue_never_panics_and_keeps_the_pass_within_policy(
            lifetime in proptest::option::of(any::<i64>()),
            start in proptest::option::of(any::<i64>()),
            now in any::<i64>(),
            one_time in proptest::option::of(any::<bool>()),
        ) {
            let policy = enabled();
            let req = TapRequest { lifetime_secs: lifetime, start: start.map(Timestamp::from_millis), one_time };
            let now = Timestamp::from_millis(now);
            if let Ok(plan) = plan_issue(&policy, &req, now) {
                prop_assert!(plan.starts_at >= now);
                // `>` except where the arithmetic saturates at the end of time.
                prop_assert!(plan.expires_at >= plan.starts_at);
                prop_assert!(plan.expires_at > plan.starts_at || plan.expires_at.millis() == i64::MAX);
                prop_assert!(plan.starts_at <= now.plus_secs(MAX_START_AHEAD_SECS));
            }
        }
    }
}
