//! A wave's progress from its members and their passkeys: enrolled, two or more, by device
//! family, a daily series, and the stragglers.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use uuid::Uuid;

use super::when::{self, DAY_MS, utc_day_start};
use crate::Timestamp;
use crate::device::DeviceFamily;

/// Most points a progress series holds; a longer range keeps its last days.
pub const MAX_SERIES_DAYS: usize = 400;

/// One registered passkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasskeyFact {
    pub user_id: Uuid,
    pub created_at: Timestamp,
    pub device_family: DeviceFamily,
}

/// Members and passkeys of one device family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyCount {
    /// Members with at least one passkey of the family.
    pub users: u64,
    /// The members' passkeys of the family.
    pub passkeys: u64,
}

/// The state at the end of one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayPoint {
    /// 00:00 UTC of the day.
    #[serde(with = "when::rfc3339")]
    pub day_start: Timestamp,
    /// Members whose first passkey was created before the day ended.
    pub enrolled: u64,
    /// Members whose second passkey was created before the day ended.
    pub two_or_more: u64,
    /// Per device family (by [`DeviceFamily::as_str`]; only families some member has a
    /// passkey of): members with a passkey of the family created before the day ended.
    pub by_family: BTreeMap<&'static str, u64>,
}

/// A wave's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveProgress {
    /// Distinct members.
    pub members: u64,
    /// Members with at least one passkey.
    pub enrolled: u64,
    /// `enrolled` in percent of `members` (0 without members).
    pub enrolled_percent: f64,
    /// Members with at least two passkeys.
    pub two_or_more: u64,
    /// Every family of [`DeviceFamily::ALL`] by [`DeviceFamily::as_str`], zeros included.
    pub by_family: BTreeMap<String, FamilyCount>,
    /// One point per UTC day (see [`progress`]).
    pub series: Vec<DayPoint>,
    /// Members without a passkey, sorted.
    pub stragglers: Vec<Uuid>,
    /// Accounts in the group left out of every figure because they are disabled (they cannot
    /// sign in, and an offboarded account must not hold a wave below its target). Set by the
    /// caller, which knows the accounts; [`progress`] leaves it 0.
    pub disabled_members: u64,
}

/// The progress of a wave whose group has `members`, given passkeys (anyone's: those of
/// non-members are ignored; duplicate member ids count once). The series has one point per
/// UTC day from `series_from`'s day to `now`'s day inclusive (just `now`'s day when
/// `series_from` is later), at most [`MAX_SERIES_DAYS`] — the last ones. It counts the
/// passkeys that exist now by their creation time: a passkey deleted since does not count on
/// any day.
pub fn progress(
    members: &[Uuid],
    passkeys: &[PasskeyFact],
    series_from: Timestamp,
    now: Timestamp,
) -> WaveProgress {
    let member_set: BTreeSet<Uuid> = members.iter().copied().collect();
    // Per member: their passkeys' creation times and families.
    let mut created: BTreeMap<Uuid, Vec<(Timestamp, DeviceFamily)>> = BTreeMap::new();
    for p in passkeys.iter().filter(|p| member_set.contains(&p.user_id)) {
        created
            .entry(p.user_id)
            .or_default()
            .push((p.created_at, p.device_family));
    }

    // Per family (by its place in `DeviceFamily::ALL`): members, passkeys, and when each
    // member's first passkey of the family was created.
    let slot = |f: DeviceFamily| {
        DeviceFamily::ALL
            .iter()
            .position(|x| *x == f)
            .unwrap_or(DeviceFamily::ALL.len() - 1)
    };
    let mut per_family: Vec<(u64, u64, Vec<Timestamp>)> =
        vec![(0, 0, Vec::new()); DeviceFamily::ALL.len()];
    let mut firsts = Vec::with_capacity(created.len());
    let mut seconds = Vec::new();
    let mut seen: Vec<usize> = Vec::new();
    for list in created.values_mut() {
        list.sort_unstable();
        if let Some(&(t, _)) = list.first() {
            firsts.push(t);
        }
        if let Some(&(t, _)) = list.get(1) {
            seconds.push(t);
        }
        seen.clear();
        for &(t, f) in list.iter() {
            let i = slot(f);
            per_family[i].1 += 1;
            if !seen.contains(&i) {
                seen.push(i);
                per_family[i].0 += 1;
                per_family[i].2.push(t);
            }
        }
    }
    let family_firsts: Vec<(&'static str, Vec<Timestamp>)> = DeviceFamily::ALL
        .iter()
        .zip(per_family.iter_mut())
        .filter(|(_, (users, _, _))| *users > 0)
        .map(|(f, (_, _, times))| {
            times.sort_unstable();
            (f.as_str(), std::mem::take(times))
        })
        .collect();
    firsts.sort_unstable();
    seconds.sort_unstable();

    let members_n = member_set.len() as u64;
    let enrolled = firsts.len() as u64;
    let by_family = DeviceFamily::ALL
        .iter()
        .zip(&per_family)
        .map(|(f, (users, passkeys, _))| {
            (
                f.as_str().to_owned(),
                FamilyCount {
                    users: *users,
                    passkeys: *passkeys,
                },
            )
        })
        .collect();

    let last_day = utc_day_start(now);
    let first_day = utc_day_start(series_from).min(last_day);
    let span_days = last_day.millis().saturating_sub(first_day.millis()) / DAY_MS;
    let days = usize::try_from(span_days)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .min(MAX_SERIES_DAYS);
    let series = (0..days)
        .rev()
        .map(|back| {
            let day_start = Timestamp::from_millis(
                last_day
                    .millis()
                    .saturating_sub((back as i64).saturating_mul(DAY_MS)),
            );
            let end = day_start.plus_millis(DAY_MS);
            DayPoint {
                day_start,
                enrolled: firsts.partition_point(|t| *t < end) as u64,
                two_or_more: seconds.partition_point(|t| *t < end) as u64,
                by_family: family_firsts
                    .iter()
                    .map(|(f, times)| (*f, times.partition_point(|t| *t < end) as u64))
                    .collect(),
            }
        })
        .collect();

    WaveProgress {
        members: members_n,
        enrolled,
        enrolled_percent: if members_n == 0 {
            0.0
        } else {
            enrolled as f64 * 100.0 / members_n as f64
        },
        two_or_more: seconds.len() as u64,
        by_family,
        series,
        stragglers: member_set
            .iter()
            .filter(|u| !created.contains_key(u))
            .copied()
            .collect(),
        disabled_members: 0,
    }
}
