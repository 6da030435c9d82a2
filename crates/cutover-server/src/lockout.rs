//! Smart lockout in front of every password check (SPEC §7): load the policy, take the
//! decision on the user's locked lockout row before any hash or agent work, and record what
//! the check found. The rules are `cutover_core::lockout`; this module reads and writes.

use std::net::IpAddr;

use cutover_core::Timestamp;
use cutover_core::lockout::{
    Admission, CheckOutcome, Location, LockoutMode, LockoutSettings, Recorded, admit, location_of,
    network_of, record,
};
use cutover_core::signin_log::LockoutDecision;
use cutover_store::StoreError;
use uuid::Uuid;

use crate::AppState;

/// The setting that holds the smart-lockout policy (JSON of [`LockoutSettings`]).
pub const SETTING_KEY: &str = "smartLockoutPolicy";

/// The network an attempt with no usable client address counts from.
pub const UNKNOWN_NETWORK: &str = "unknown";

/// The stored policy; the defaults when none is stored. A stored value that no longer parses
/// or validates (edited by hand) is logged and replaced by the defaults, which are safe.
pub async fn load_settings(state: &AppState) -> Result<LockoutSettings, StoreError> {
    let Some(raw) = state.store.get_setting(SETTING_KEY).await? else {
        return Ok(LockoutSettings::default());
    };
    match serde_json::from_str::<LockoutSettings>(&raw)
        .map_err(|e| e.to_string())
        .and_then(|s| s.validate().map(|()| s))
    {
        Ok(s) => Ok(s),
        Err(e) => {
            tracing::error!(error = %e, setting = SETTING_KEY, "the stored smart-lockout policy is invalid; using the defaults until an administrator saves a valid one (PUT /api/v1/policies/smartLockout)");
            Ok(LockoutSettings::default())
        }
    }
}

/// The network (`/24` or `/48`) the client address belongs to.
pub fn network_of_ip(ip: Option<&str>) -> String {
    ip.and_then(|s| s.parse::<IpAddr>().ok())
        .map(network_of)
        .unwrap_or_else(|| UNKNOWN_NETWORK.to_owned())
}

/// The keyed hash lockout keeps of a wrong password (never the password): bound to the user,
/// so the same wrong password of two users gives two unrelated values.
pub fn bad_password_key(state: &AppState, user_id: Uuid, password: &str) -> String {
    state
        .hasher
        .hash("lockout-bad-password", &format!("{user_id}\0{password}"))
}

/// An attempt the gate let through; hand it back to [`finish`] whatever happens.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub user_id: Uuid,
    pub attempt: Uuid,
    pub location: Location,
    pub network: String,
    /// What the sign-in record says about lockout.
    pub decision: LockoutDecision,
}

/// The gate's answer.
#[derive(Debug, Clone)]
pub enum Gate {
    Proceed(Admitted),
    /// Refused without checking the password.
    Locked {
        location: Location,
        until: Option<Timestamp>,
        in_flight: bool,
    },
}

/// Take the decision for one password attempt by `user_id` from `ip`, atomically on the
/// user's lockout row (every node, every parallel attempt sees the others' reservations).
pub async fn gate(state: &AppState, user_id: Uuid, ip: Option<&str>) -> Result<Gate, StoreError> {
    let settings = load_settings(state).await?;
    let now = state.now();
    let network = network_of_ip(ip);
    let attempt = Uuid::now_v7();
    let step = {
        let network = network.clone();
        move |st: cutover_core::lockout::LockoutState| {
            let location = location_of(&st, &network, now);
            admit(st, &settings, attempt, location, now).0
        }
    };
    let (before, _after) = state.store.update_lockout_state(user_id, &step).await?;
    // The decision is a pure function of the state it was applied to: recompute it.
    let location = location_of(&before, &network, now);
    let (_, admission) = admit(before, &settings, attempt, location, now);
    Ok(match admission {
        Admission::Locked {
            location,
            until,
            in_flight,
        } => {
            state.metrics.count_lockout("locked");
            Gate::Locked {
                location,
                until,
                in_flight,
            }
        }
        Admission::Proceed {
            location,
            would_lock,
        } => {
            let decision = match (would_lock, settings.mode) {
                (Some(_), LockoutMode::ReportOnly) => {
                    state.metrics.count_lockout("reportOnlyLocked");
                    LockoutDecision::ReportOnlyLocked
                }
                _ => LockoutDecision::Allowed,
            };
            Gate::Proceed(Admitted {
                user_id,
                attempt,
                location,
                network,
                decision,
            })
        }
    })
}

/// Record what the password check found and release the attempt's reservation. A failure to
/// write is logged (the reservation then expires on its own) and does not change the sign-in.
pub async fn finish(state: &AppState, admitted: &Admitted, outcome: CheckOutcome) {
    let settings = match load_settings(state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the smart-lockout policy to record an attempt; its reservation expires on its own");
            return;
        }
    };
    let now = state.now();
    let attempt = admitted.attempt;
    let location = admitted.location;
    let step = {
        let outcome = outcome.clone();
        move |st| record(st, &settings, attempt, location, &outcome, now).0
    };
    match state
        .store
        .update_lockout_state(admitted.user_id, &step)
        .await
    {
        Ok((before, _)) => {
            let (_, recorded) = record(before, &settings, attempt, location, &outcome, now);
            if let Recorded::LockedNow { until, lock_number } = recorded {
                state.metrics.count_lockout("lockedNow");
                tracing::warn!(
                    user_id = %admitted.user_id,
                    location = location.as_str(),
                    until = %crate::clock::rfc3339(until),
                    lock_number,
                    "smart lockout: too many wrong passwords; the account is locked for sign-ins from {} locations",
                    location.as_str()
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, user_id = %admitted.user_id, "could not record a password attempt for smart lockout; its reservation expires on its own")
        }
    }
}
