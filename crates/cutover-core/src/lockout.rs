//! Smart lockout (SPEC §7): a per-user state machine in front of every password check (cloud
//! password, synced hash, pass-through agent), so that a password spray never reaches the
//! directory and a user on their usual network is not locked out by someone else's guesses.
//!
//! Every function here is pure. The store runs [`admit`] and [`record`] on the user's locked
//! row, so parallel attempts — on one node or many — see each other:
//!
//! 1. [`admit`] before any hash or agent work: refuses while a lock runs, and otherwise takes
//!    a *reservation*. At most `threshold − failures` reservations are out at once, so 200
//!    parallel guesses cannot all slip past a threshold of 10 before the first one is counted.
//! 2. [`record`] after the check: releases the reservation and counts a wrong password —
//!    unless it is one of the last [`RECENT_BAD_PASSWORDS`] distinct wrong passwords (compared
//!    as keyed hashes the shell computes; the password itself never reaches this module).
//! 3. Reaching the threshold locks for `duration`; each further lock doubles it (capped at
//!    `max_duration`). After a lock ends the counter stays one short of the threshold, so the
//!    next wrong password locks again at once, until a success or `reset_after` quiet time.
//!
//! Familiar and unfamiliar networks have separate counters: a spray from elsewhere locks the
//! unfamiliar counter only, and the user signing in from a network they signed in from before
//! is not held up by it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Timestamp;

/// Distinct wrong passwords remembered per user; repeating one of them is not counted again.
pub const RECENT_BAD_PASSWORDS: usize = 3;
/// Networks remembered per user as familiar (the most recently successful ones).
pub const MAX_FAMILIAR_NETWORKS: usize = 20;
/// A network stays familiar this long after the last successful sign-in from it.
pub const FAMILIAR_NETWORK_DAYS: i64 = 90;
/// A reservation not released by then (a node died mid-check) no longer holds a place. Longer
/// than two pass-through deadlines at their maximum.
pub const RESERVATION_SECS: i64 = 90;
/// Bounds an administrator may set.
pub const MIN_THRESHOLD: u32 = 1;
pub const MAX_THRESHOLD: u32 = 100;
pub const MIN_DURATION_SECS: i64 = 5;
pub const MAX_DURATION_SECS: i64 = 7 * 24 * 3_600;

/// Enforce, or only record what would have been locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum LockoutMode {
    #[default]
    Enforced,
    ReportOnly,
}

/// The smart-lockout policy (one per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockoutSettings {
    /// Counted wrong passwords (per counter) that lock the account.
    pub threshold: u32,
    /// The first lock's length; each further lock doubles it.
    pub duration_secs: i64,
    /// The longest a lock grows to.
    pub max_duration_secs: i64,
    /// A counter with no counted failure for this long starts over (and its locks with it).
    pub reset_after_secs: i64,
    pub mode: LockoutMode,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            threshold: 10,
            duration_secs: 60,
            max_duration_secs: 3_600,
            reset_after_secs: 24 * 3_600,
            mode: LockoutMode::Enforced,
        }
    }
}

impl LockoutSettings {
    /// Check the settings on their own; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_THRESHOLD..=MAX_THRESHOLD).contains(&self.threshold) {
            return Err(format!(
                "threshold must be between {MIN_THRESHOLD} and {MAX_THRESHOLD}, got {}",
                self.threshold
            ));
        }
        if !(MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&self.duration_secs) {
            return Err(format!(
                "durationSecs must be between {MIN_DURATION_SECS} and {MAX_DURATION_SECS}, got {}",
                self.duration_secs
            ));
        }
        if self.max_duration_secs < self.duration_secs || self.max_duration_secs > MAX_DURATION_SECS
        {
            return Err(format!(
                "maxDurationSecs must be between durationSecs ({}) and {MAX_DURATION_SECS}, got {}",
                self.duration_secs, self.max_duration_secs
            ));
        }
        if self.reset_after_secs < self.max_duration_secs || self.reset_after_secs > 30 * 24 * 3_600
        {
            return Err(format!(
                "resetAfterSecs must be between maxDurationSecs ({}) and 30 days, got {}",
                self.max_duration_secs, self.reset_after_secs
            ));
        }
        Ok(())
    }

    /// The length of the `n`-th lock (1-based): doubled each time, capped.
    pub fn lock_length_secs(&self, n: u32) -> i64 {
        let doublings = n.saturating_sub(1).min(40);
        self.duration_secs
            .saturating_mul(1i64 << doublings.min(62))
            .min(self.max_duration_secs)
    }
}

/// The on-prem directory's own lockout, as an agent reads it (e.g. OpenLDAP ppolicy
/// `pwdMaxFailure` / `pwdLockoutDuration`, Active Directory `lockoutThreshold` /
/// `lockoutDuration`). `None` fields are unknown; a threshold of 0 means no lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryLockout {
    pub threshold: Option<u32>,
    pub duration_secs: Option<i64>,
}

/// Warnings when Cutover's lockout would not shield the directory's (SPEC §7): Cutover must
/// lock first (a lower threshold) and for longer (a longer duration), or a spray locks people
/// out on-prem.
pub fn directory_warnings(s: &LockoutSettings, dir: &DirectoryLockout) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = dir.threshold.filter(|t| *t > 0) {
        if s.threshold >= t {
            out.push(format!(
                "Cutover's lockout threshold ({}) is not below the directory's ({t}): a password spray would lock accounts on-prem before Cutover stops it. Set a threshold of at most {}.",
                s.threshold,
                t.saturating_sub(1).max(MIN_THRESHOLD)
            ));
        }
        if let Some(d) = dir.duration_secs.filter(|d| *d > 0)
            && s.duration_secs <= d
        {
            out.push(format!(
                "Cutover's lockout duration ({} s) is not longer than the directory's ({d} s): guesses resumed after Cutover's lock ends could still reach the directory's threshold. Set more than {d} s.",
                s.duration_secs
            ));
        }
    }
    if s.mode == LockoutMode::ReportOnly {
        out.push("Smart lockout is report-only: attempts that would be locked still reach the password check (and the directory).".into());
    }
    out
}

/// Which counter an attempt uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Location {
    Familiar,
    Unfamiliar,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Familiar => "familiar",
            Self::Unfamiliar => "unfamiliar",
        }
    }
}

/// The network an address belongs to for familiarity: IPv4 /24, IPv6 /48 (an IPv4-mapped
/// IPv6 address counts as IPv4).
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return network_of(IpAddr::V4(v4));
            }
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// One counter (familiar or unfamiliar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Counter {
    pub failures: u32,
    /// Locks so far (sets the next lock's length).
    pub locks: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Timestamp>,
}

impl Counter {
    fn locked_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.locked_until.filter(|u| now < *u)
    }
    /// Forget a quiet counter.
    fn settle(&mut self, s: &LockoutSettings, now: Timestamp) {
        if self.locked_at(now).is_some() {
            return;
        }
        if let Some(last) = self.last_failure
            && now.millis().saturating_sub(last.millis()) >= s.reset_after_secs * 1000
        {
            *self = Counter::default();
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamiliarNetwork {
    pub network: String,
    pub last_success: Timestamp,
}

/// A place taken by an attempt between [`admit`] and [`record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub attempt: Uuid,
    pub location: Location,
    pub expires_at: Timestamp,
}

/// Everything smart lockout keeps about one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LockoutState {
    #[serde(default)]
    pub familiar: Counter,
    #[serde(default)]
    pub unfamiliar: Counter,
    /// Keyed hashes of the last distinct wrong passwords, oldest first.
    #[serde(default)]
    pub recent_bad: Vec<String>,
    #[serde(default)]
    pub networks: Vec<FamiliarNetwork>,
    #[serde(default)]
    pub reservations: Vec<Reservation>,
}

impl LockoutState {
    fn counter_mut(&mut self, l: Location) -> &mut Counter {
        match l {
            Location::Familiar => &mut self.familiar,
            Location::Unfamiliar => &mut self.unfamiliar,
        }
    }
    pub fn counter(&self, l: Location) -> &Counter {
        match l {
            Location::Familiar => &self.familiar,
            Location::Unfamiliar => &self.unfamiliar,
        }
    }
    fn tidy(&mut self, s: &LockoutSettings, now: Timestamp) {
        self.reservations.retain(|r| r.expires_at > now);
        self.familiar.settle(s, now);
        self.unfamiliar.settle(s, now);
        let horizon = now.minus_secs(FAMILIAR_NETWORK_DAYS * 86_400);
        self.networks.retain(|n| n.last_success > horizon);
    }
}

/// Which counter an attempt from `network` uses.
pub fn location_of(state: &LockoutState, network: &str, now: Timestamp) -> Location {
    let horizon = now.minus_secs(FAMILIAR_NETWORK_DAYS * 86_400);
    if state
        .networks
        .iter()
        .any(|n| n.network == network && n.last_success > horizon)
    {
        Location::Familiar
    } else {
        Location::Unfamiliar
    }
}

/// The gate's answer before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password; `would_lock` is set in report-only mode when enforcement would
    /// have refused (and says until when).
    Proceed {
        location: Location,
        would_lock: Option<Timestamp>,
    },
    /// Refused: a lock runs until `until`, or (`in_flight`) as many attempts as the counter
    /// has room for are already being checked.
    Locked {
        location: Location,
        until: Option<Timestamp>,
        in_flight: bool,
    },
}

/// Before the password check: refuse or take a reservation. Apply on the locked row.
pub fn admit(
    mut state: LockoutState,
    s: &LockoutSettings,
    attempt: Uuid,
    location: Location,
    now: Timestamp,
) -> (LockoutState, Admission) {
    state.tidy(s, now);
    let c = *state.counter(location);
    let in_flight = state
        .reservations
        .iter()
        .filter(|r| r.location == location)
        .count() as u32;
    let refusal = if let Some(until) = c.locked_at(now) {
        Some((Some(until), false))
    } else if c.failures.saturating_add(in_flight) >= s.threshold {
        Some((None, true))
    } else {
        None
    };
    let admission = match (refusal, s.mode) {
        (Some((until, in_flight)), LockoutMode::Enforced) => {
            return (
                state,
                Admission::Locked {
                    location,
                    until,
                    in_flight,
                },
            );
        }
        (Some((until, _)), LockoutMode::ReportOnly) => Admission::Proceed {
            location,
            would_lock: Some(until.unwrap_or(now)),
        },
        (None, _) => Admission::Proceed {
            location,
            would_lock: None,
        },
    };
    state.reservations.push(Reservation {
        attempt,
        location,
        expires_at: now.plus_secs(RESERVATION_SECS),
    });
    (state, admission)
}

/// What the password check found, as lockout sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The password was right (the sign-in may still fail later for other reasons).
    Success { network: String },
    /// A wrong password, as a keyed hash the shell computed for this user.
    BadPassword { key: String },
    /// The directory refused because its own lockout is on: nothing was learnt about the
    /// password (so nothing is remembered of it), but the attempt counts like a wrong one —
    /// otherwise, once the directory has locked first, every further guess would reach it
    /// and prolong its lock while Cutover never locks.
    DirectoryLocked,
    /// Nothing was learnt about the password (directory down, agent error, a disabled
    /// account on-prem, a denial that is not about the credential): released, never counted.
    NotCounted,
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Released,
    /// Success: the counter for this location starts over and the network is familiar.
    Reset,
    /// A wrong password counted: `failures` so far on this counter.
    Counted {
        failures: u32,
    },
    /// The same wrong password as one of the last few: not counted again.
    Repeated,
    /// This failure reached the threshold: locked until then.
    LockedNow {
        until: Timestamp,
        lock_number: u32,
    },
}

/// After the password check: release the reservation and count. Apply on the locked row.
pub fn record(
    mut state: LockoutState,
    s: &LockoutSettings,
    attempt: Uuid,
    location: Location,
    outcome: &CheckOutcome,
    now: Timestamp,
) -> (LockoutState, Recorded) {
    state.reservations.retain(|r| r.attempt != attempt);
    state.tidy(s, now);
    match outcome {
        CheckOutcome::NotCounted => (state, Recorded::Released),
        CheckOutcome::Success { network } => {
            *state.counter_mut(location) = Counter::default();
            state.networks.retain(|n| &n.network != network);
            state.networks.push(FamiliarNetwork {
                network: network.clone(),
                last_success: now,
            });
            if state.networks.len() > MAX_FAMILIAR_NETWORKS {
                let extra = state.networks.len() - MAX_FAMILIAR_NETWORKS;
                state.networks.drain(..extra);
            }
            (state, Recorded::Reset)
        }
        CheckOutcome::BadPassword { key } => {
            if state.recent_bad.iter().any(|k| k == key) {
                return (state, Recorded::Repeated);
            }
            state.recent_bad.push(key.clone());
            if state.recent_bad.len() > RECENT_BAD_PASSWORDS {
                let extra = state.recent_bad.len() - RECENT_BAD_PASSWORDS;
                state.recent_bad.drain(..extra);
            }
            count_failure(state, s, location, now)
        }
        CheckOutcome::DirectoryLocked => count_failure(state, s, location, now),
    }
}

/// One counted failure on `location`'s counter: a lock when it reaches the threshold.
fn count_failure(
    mut state: LockoutState,
    s: &LockoutSettings,
    location: Location,
    now: Timestamp,
) -> (LockoutState, Recorded) {
    let c = state.counter_mut(location);
    if c.locked_at(now).is_some() {
        // Checked while a lock started by a parallel attempt ran (report-only, or
        // admitted just before it): counted in the lock already.
        c.last_failure = Some(now);
        let failures = c.failures;
        return (state, Recorded::Counted { failures });
    }
    c.failures = c.failures.saturating_add(1);
    c.last_failure = Some(now);
    if c.failures >= s.threshold {
        c.locks = c.locks.saturating_add(1);
        let until = now.plus_secs(s.lock_length_secs(c.locks));
        c.locked_until = Some(until);
        // One short: after this lock the next counted failure locks again.
        c.failures = s.threshold.saturating_sub(1);
        let lock_number = c.locks;
        (state, Recorded::LockedNow { until, lock_number })
    } else {
        let failures = c.failures;
        (state, Recorded::Counted { failures })
    }
}

/// An administrator's unlock: both counters start over; familiar networks stay.
pub fn unlock(mut state: LockoutState) -> LockoutState {
    state.familiar = Counter::default();
    state.unfamiliar = Counter::default();
    state.recent_bad.clear();
    state
}

/// What the admin API shows for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockoutStatus {
    pub locked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub familiar_locked_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfamiliar_locked_until: Option<Timestamp>,
    pub familiar_failures: u32,
    pub unfamiliar_failures: u32,
    pub familiar_locks: u32,
    pub unfamiliar_locks: u32,
    pub familiar_networks: Vec<String>,
    pub checks_in_flight: u32,
}

pub fn status(state: &LockoutState, s: &LockoutSettings, now: Timestamp) -> LockoutStatus {
    let mut st = state.clone();
    st.tidy(s, now);
    let f = st.familiar.locked_at(now);
    let u = st.unfamiliar.locked_at(now);
    LockoutStatus {
        locked: f.is_some() || u.is_some(),
        familiar_locked_until: f,
        unfamiliar_locked_until: u,
        familiar_failures: st.familiar.failures,
        unfamiliar_failures: st.unfamiliar.failures,
        familiar_locks: st.familiar.locks,
        unfamiliar_locks: st.unfamiliar.locks,
        familiar_networks: st.networks.iter().map(|n| n.network.clone()).collect(),
        checks_in_flight: st.reservations.len() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> LockoutSettings {
        LockoutSettings::default()
    }
    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }
    fn bad(n: u32) -> CheckOutcome {
        CheckOutcome::BadPassword {
            key: format!("k{n}"),
        }
    }

    /// One whole attempt (admit, then record) at `now`.
    fn attempt(
        st: LockoutState,
        n: u128,
        l: Location,
        o: &CheckOutcome,
        now: Timestamp,
    ) -> (LockoutState, Admission, Option<Recorded>) {
        let (st, a) = admit(st, &s(), id(n), l, now);
        match a {
            Admission::Proceed { .. } => {
                let (st, r) = record(st, &s(), id(n), l, o, now);
                (st, a, Some(r))
            }
            Admission::Locked { .. } => (st, a, None),
        }
    }

    #[test]
    fn ten_distinct_wrong_passwords_lock_for_a_minute_then_the_next_locks_for_two() {
        let mut st = LockoutState::default();
        let t0 = Timestamp::from_secs(1_000);
        for i in 1..=9 {
            let (n, _, r) = attempt(st, i as u128, Location::Unfamiliar, &bad(i), t0);
            assert_eq!(r, Some(Recorded::Counted { failures: i }));
            st = n;
        }
        let (n, _, r) = attempt(st, 10, Location::Unfamiliar, &bad(10), t0);
        let until = t0.plus_secs(60);
        assert_eq!(
            r,
            Some(Recorded::LockedNow {
                until,
                lock_number: 1
            })
        );
        st = n;
        // Locked up to the last millisecond; the gate refuses before any check.
        let (n, a, r) = attempt(
            st,
            11,
            Location::Unfamiliar,
            &bad(11),
            Timestamp::from_millis(until.millis() - 1),
        );
        assert!(
            matches!(a, Admission::Locked { until: Some(u), in_flight: false, .. } if u == until)
        );
        assert_eq!(r, None);
        st = n;
        // The familiar counter is separate.
        let (_, a, _) = attempt(st.clone(), 12, Location::Familiar, &bad(12), t0);
        assert!(matches!(
            a,
            Admission::Proceed {
                would_lock: None,
                ..
            }
        ));
        // At the end of the lock one more wrong password locks again, twice as long.
        let (n, a, r) = attempt(st, 13, Location::Unfamiliar, &bad(13), until);
        assert!(matches!(a, Admission::Proceed { .. }));
        assert_eq!(
            r,
            Some(Recorded::LockedNow {
                until: until.plus_secs(120),
                lock_number: 2
            })
        );
        st = n;
        // Growth is capped.
        assert_eq!(s().lock_length_secs(3), 240);
        assert_eq!(s().lock_length_secs(7), 3_600);
        assert_eq!(s().lock_length_secs(u32::MAX), 3_600);
        // A success resets the counter it used; quiet time resets too.
        let later = until.plus_secs(120);
        let (n, _, r) = attempt(
            st.clone(),
            14,
            Location::Unfamiliar,
            &CheckOutcome::Success {
                network: "198.51.100.0/24".into(),
            },
            later,
        );
        assert_eq!(r, Some(Recorded::Reset));
        assert_eq!(n.unfamiliar, Counter::default());
        assert_eq!(
            location_of(&n, "198.51.100.0/24", later),
            Location::Familiar
        );
        let quiet = later.plus_secs(s().reset_after_secs);
        let (n, _, r) = attempt(st, 15, Location::Unfamiliar, &bad(15), quiet);
        assert_eq!(r, Some(Recorded::Counted { failures: 1 }));
        assert_eq!(n.unfamiliar.locks, 0);
    }

    #[test]
    fn the_same_wrong_password_repeated_never_locks() {
        let mut st = LockoutState::default();
        let t = Timestamp::from_secs(5);
        let (n, _, r) = attempt(st, 1, Location::Familiar, &bad(1), t);
        assert_eq!(r, Some(Recorded::Counted { failures: 1 }));
        st = n;
        for i in 2..100 {
            let (n, a, r) = attempt(st, i, Location::Familiar, &bad(1), t);
            assert!(matches!(a, Admission::Proceed { .. }));
            assert_eq!(r, Some(Recorded::Repeated));
            st = n;
        }
        // Only the last three distinct ones are remembered.
        for k in 2..=4 {
            st = attempt(st, 200 + k as u128, Location::Familiar, &bad(k), t).0;
        }
        assert_eq!(st.recent_bad, vec!["k2", "k3", "k4"]);
        let (_, _, r) = attempt(st, 300, Location::Familiar, &bad(1), t);
        assert_eq!(r, Some(Recorded::Counted { failures: 5 }));
    }

    #[test]
    fn directory_lock_answers_count_but_remember_no_password() {
        // The directory locked first (its threshold is below Cutover's): every further
        // attempt answers "locked on-prem". They count, so Cutover locks at its threshold
        // and the guesses stop reaching the directory.
        let mut st = LockoutState::default();
        let t = Timestamp::from_secs(7);
        for i in 1..=4 {
            st = attempt(st, i, Location::Unfamiliar, &bad(i as u32), t).0;
        }
        for i in 5..=9 {
            let (n, _, r) = attempt(
                st,
                i,
                Location::Unfamiliar,
                &CheckOutcome::DirectoryLocked,
                t,
            );
            assert_eq!(r, Some(Recorded::Counted { failures: i as u32 }));
            st = n;
        }
        assert_eq!(st.recent_bad, vec!["k2", "k3", "k4"], "nothing remembered");
        let (n, _, r) = attempt(
            st,
            10,
            Location::Unfamiliar,
            &CheckOutcome::DirectoryLocked,
            t,
        );
        assert_eq!(
            r,
            Some(Recorded::LockedNow {
                until: t.plus_secs(60),
                lock_number: 1
            })
        );
        let (_, a, _) = attempt(n, 11, Location::Unfamiliar, &bad(11), t);
        assert!(matches!(a, Admission::Locked { .. }));
    }

    #[test]
    fn parallel_attempts_cannot_exceed_the_threshold() {
        let mut st = LockoutState::default();
        let t = Timestamp::from_secs(50);
        // 200 attempts arrive before any is recorded.
        let mut admitted = Vec::new();
        for i in 0..200u128 {
            let (n, a) = admit(st, &s(), id(i), Location::Unfamiliar, t);
            st = n;
            if matches!(a, Admission::Proceed { .. }) {
                admitted.push(i);
            } else {
                assert!(matches!(
                    a,
                    Admission::Locked {
                        in_flight: true,
                        ..
                    }
                ));
            }
        }
        assert_eq!(admitted.len(), 10);
        for (k, i) in admitted.iter().enumerate() {
            st = record(st, &s(), id(*i), Location::Unfamiliar, &bad(k as u32), t).0;
        }
        assert!(st.unfamiliar.locked_until.is_some());
        assert!(st.reservations.is_empty());
        // A reservation from a node that died expires.
        let (st2, _) = admit(LockoutState::default(), &s(), id(1), Location::Familiar, t);
        assert_eq!(st2.reservations.len(), 1);
        let (st3, _) = admit(
            st2,
            &s(),
            id(2),
            Location::Familiar,
            t.plus_secs(RESERVATION_SECS),
        );
        assert_eq!(st3.reservations.len(), 1);
        assert_eq!(st3.reservations[0].attempt, id(2));
    }

    #[test]
    fn not_counted_outcomes_only_release() {
        let t = Timestamp::from_secs(1);
        let (st, _) = admit(LockoutState::default(), &s(), id(1), Location::Familiar, t);
        let (st, r) = record(
            st,
            &s(),
            id(1),
            Location::Familiar,
            &CheckOutcome::NotCounted,
            t,
        );
        assert_eq!(r, Recorded::Released);
        assert_eq!(st, LockoutState::default());
    }

    #[test]
    fn report_only_proceeds_but_says_it_would_lock() {
        let ro = LockoutSettings {
            mode: LockoutMode::ReportOnly,
            ..s()
        };
        let mut st = LockoutState::default();
        let t = Timestamp::from_secs(9);
        for i in 0..10u32 {
            let (n, _) = admit(st, &ro, id(i as u128), Location::Unfamiliar, t);
            st = record(n, &ro, id(i as u128), Location::Unfamiliar, &bad(i), t).0;
        }
        let (_, a) = admit(st, &ro, id(99), Location::Unfamiliar, t);
        assert_eq!(
            a,
            Admission::Proceed {
                location: Location::Unfamiliar,
                would_lock: Some(t.plus_secs(60))
            }
        );
    }

    #[test]
    fn unlock_clears_counters_and_keeps_networks() {
        let t = Timestamp::from_secs(1);
        let mut st = LockoutState::default();
        st = attempt(
            st,
            1,
            Location::Familiar,
            &CheckOutcome::Success {
                network: "10.0.0.0/24".into(),
            },
            t,
        )
        .0;
        for i in 0..10 {
            st = attempt(st, 10 + i as u128, Location::Unfamiliar, &bad(i), t).0;
        }
        assert!(status(&st, &s(), t).locked);
        let st = unlock(st);
        let view = status(&st, &s(), t);
        assert!(!view.locked);
        assert_eq!(view.familiar_networks, vec!["10.0.0.0/24"]);
    }

    #[test]
    fn networks_and_familiarity() {
        assert_eq!(network_of("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            network_of("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.0/24"
        );
        assert_eq!(
            network_of("2001:db8:1:2::5".parse().unwrap()),
            "2001:db8:1::/48"
        );
        let t = Timestamp::from_secs(0);
        let mut st = LockoutState::default();
        for i in 0..=MAX_FAMILIAR_NETWORKS {
            st = record(
                st,
                &s(),
                id(0),
                Location::Familiar,
                &CheckOutcome::Success {
                    network: format!("n{i}"),
                },
                t,
            )
            .0;
        }
        assert_eq!(st.networks.len(), MAX_FAMILIAR_NETWORKS);
        assert_eq!(location_of(&st, "n0", t), Location::Unfamiliar);
        assert_eq!(location_of(&st, "n1", t), Location::Familiar);
        let stale = t.plus_secs(FAMILIAR_NETWORK_DAYS * 86_400);
        assert_eq!(location_of(&st, "n1", stale), Location::Unfamiliar);
    }

    #[test]
    fn settings_validation_and_directory_warnings() {
        assert_eq!(s().validate(), Ok(()));
        let bad_t = LockoutSettings {
            threshold: 0,
            ..s()
        };
        assert!(bad_t.validate().unwrap_err().contains("threshold"));
        let edge = LockoutSettings {
            threshold: MAX_THRESHOLD,
            ..s()
        };
        assert_eq!(edge.validate(), Ok(()));
        let over = LockoutSettings {
            threshold: MAX_THRESHOLD + 1,
            ..s()
        };
        assert!(over.validate().is_err());
        let d = LockoutSettings {
            duration_secs: MIN_DURATION_SECS - 1,
            ..s()
        };
        assert!(d.validate().unwrap_err().contains("durationSecs"));
        let m = LockoutSettings {
            max_duration_secs: 30,
            ..s()
        };
        assert!(m.validate().unwrap_err().contains("maxDurationSecs"));
        let dir = DirectoryLockout {
            threshold: Some(10),
            duration_secs: Some(600),
        };
        let w = directory_warnings(&s(), &dir);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("at most 9"));
        let good = LockoutSettings {
            threshold: 5,
            duration_secs: 900,
            ..s()
        };
        assert!(directory_warnings(&good, &dir).is_empty());
        assert!(directory_warnings(&s(), &DirectoryLockout::default()).is_empty());
        assert!(
            directory_warnings(
                &s(),
                &DirectoryLockout {
                    threshold: Some(0),
                    duration_secs: None
                }
            )
            .is_empty()
        );
    }
}
