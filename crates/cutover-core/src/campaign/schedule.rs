//! Which e-mails are due: every (wave, step) pair of a campaign with its state at `now`. The
//! shell records a send decision under [`decision_key`] in the same transaction as the outbox
//! rows, so a step is decided once, whatever restarts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::lifecycle::{Enforcement, WaveStatus};
use super::spec::{CheckedCampaign, MAX_LATENESS_SECS};
use super::when;
use crate::Timestamp;

/// A step to send now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DueStep {
    pub wave_id: Uuid,
    pub step_key: String,
    #[serde(with = "when::rfc3339")]
    pub due_at: Timestamp,
    /// The idempotency key of the send decision (see [`decision_key`]).
    pub decision_key: String,
}

/// The state of one step of one wave at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum StepState {
    /// Not due yet.
    NotYet {
        #[serde(with = "when::rfc3339")]
        due_at: Timestamp,
    },
    /// Due and not decided: send it.
    Due(DueStep),
    /// Due more than [`MAX_LATENESS_SECS`] ago and never decided: it will not be sent.
    Missed {
        #[serde(with = "when::rfc3339")]
        due_at: Timestamp,
    },
    /// The wave was rolled back before it was decided: rolled-back waves send nothing further
    /// on their own (an administrator may still send by hand).
    Stopped {
        #[serde(with = "when::rfc3339")]
        due_at: Timestamp,
    },
    /// Decided (sent or being sent).
    Done {
        #[serde(with = "when::rfc3339")]
        due_at: Timestamp,
    },
}

/// The stable key of the decision to send `step_key` to wave `wave_id` of campaign
/// `campaign_id`: `campaign:{campaign}:wave:{wave}:step:{key}` (ids hyphenated, lower case).
pub fn decision_key(campaign_id: Uuid, wave_id: Uuid, step_key: &str) -> String {
    format!("campaign:{campaign_id}:wave:{wave_id}:step:{step_key}")
}

/// Every (wave id, step key, state) of the campaign at `now`, ordered by due time, then
/// wave order, then step order. A step is `done` when its decision key is in `decided`;
/// otherwise `stopped` when its wave was rolled back, `notYet` before its due time, `due` from
/// its due time until [`MAX_LATENESS_SECS`] after it (inclusive), and `missed` later. A wave
/// missing from `statuses` is not enforced. Enforced waves keep their steps (the T+7 reminder
/// still goes to stragglers).
pub fn schedule(
    campaign_id: Uuid,
    c: &CheckedCampaign,
    statuses: &BTreeMap<Uuid, WaveStatus>,
    decided: &BTreeSet<String>,
    now: Timestamp,
) -> Vec<(Uuid, String, StepState)> {
    // (due, wave index, step index) to order by, and the entry.
    type Keyed = ((Timestamp, usize, usize), (Uuid, String, StepState));
    let mut out: Vec<Keyed> = Vec::new();
    for (wi, wave) in c.waves.iter().enumerate() {
        let rolled_back = statuses
            .get(&wave.id)
            .is_some_and(|s| s.enforcement == Enforcement::RolledBack);
        for (si, step) in c.steps.iter().enumerate() {
            let due_at = wave.due_at(step);
            let key = decision_key(campaign_id, wave.id, &step.key);
            let late_ms = now.millis().saturating_sub(due_at.millis());
            let state = if decided.contains(&key) {
                StepState::Done { due_at }
            } else if rolled_back {
                StepState::Stopped { due_at }
            } else if now < due_at {
                StepState::NotYet { due_at }
            } else if late_ms <= MAX_LATENESS_SECS.saturating_mul(1000) {
                StepState::Due(DueStep {
                    wave_id: wave.id,
                    step_key: step.key.clone(),
                    due_at,
                    decision_key: key,
                })
            } else {
                StepState::Missed { due_at }
            };
            out.push(((due_at, wi, si), (wave.id, step.key.clone(), state)));
        }
    }
    out.sort_by_key(|(key, _)| *key);
    out.into_iter().map(|(_, e)| e).collect()
}

/// Just the steps to send now.
pub fn due_steps(
    campaign_id: Uuid,
    c: &CheckedCampaign,
    statuses: &BTreeMap<Uuid, WaveStatus>,
    decided: &BTreeSet<String>,
    now: Timestamp,
) -> Vec<DueStep> {
    schedule(campaign_id, c, statuses, decided, now)
        .into_iter()
        .filter_map(|(_, _, state)| match state {
            StepState::Due(d) => Some(d),
            _ => None,
        })
        .collect()
}
