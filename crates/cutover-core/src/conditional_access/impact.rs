//! The impact report of a report-only policy and the enforcement gate (SPEC §8): over the
//! sign-in records the caller loads, who would have been interrupted or blocked, grouped; and
//! whether switching the policy to `enabled` is safe enough to do without forcing it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::engine::CaResult;
use crate::Timestamp;
use crate::domain_cutover::{
    BREAK_GLASS_DRILL_MAX_AGE_DAYS, BreakGlassFacts, MIN_BREAK_GLASS_ACCOUNTS,
};

/// At most this many users are listed in an impact report (the counts are always complete).
pub const MAX_IMPACT_SAMPLE: usize = 50;
/// The gate refuses when more than this share of the policy's users would be interrupted.
pub const DEFAULT_INTERRUPTION_THRESHOLD_PERCENT: f64 = 5.0;
/// The gate refuses when the report-only evidence is younger than this.
pub const MIN_REPORT_ONLY_EVIDENCE_SECS: i64 = 48 * 60 * 60;

/// One policy's result in one sign-in record, as the caller loads it for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImpactRecord {
    pub user_id: Uuid,
    pub user_principal_name: String,
    pub platform: String,
    pub result: CaResult,
    pub reason: String,
    pub at: Timestamp,
}

/// A user the policy would have stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImpactedUser {
    pub user_id: Uuid,
    pub user_principal_name: String,
    /// `reportOnlyFailure` when any of their sign-ins would have been blocked, else
    /// `reportOnlyInterrupted`.
    pub result: CaResult,
    /// Of their latest stopped sign-in.
    pub reason: String,
    pub platform: String,
    pub last_at: Timestamp,
    /// Their stopped sign-ins in the window.
    pub sign_ins: u64,
}

/// What enforcing a report-only policy would have done over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    pub policy_id: Uuid,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    /// Report-only records in the window.
    pub records: u64,
    /// Distinct users the policy applied to.
    pub applied_users: u64,
    /// Distinct users it would have interrupted or blocked (blocked ones included).
    pub interrupted_users: u64,
    /// Distinct users it would have blocked.
    pub blocked_users: u64,
    /// `interrupted_users` as a percentage of `applied_users` (0 when none applied).
    pub interruption_rate: f64,
    /// Distinct stopped users per reason (durations left out, so alike reasons group).
    pub by_reason: BTreeMap<String, u64>,
    /// Distinct stopped users per device platform.
    pub by_platform: BTreeMap<String, u64>,
    /// Stopped users, by name, at most [`MAX_IMPACT_SAMPLE`].
    pub users: Vec<ImpactedUser>,
    /// The first report-only record in the window.
    pub evidence_since: Option<Timestamp>,
}

/// The reason without the parts that differ between alike sign-ins: the session's age in
/// "(authenticated 9h 5m ago)" and ": authenticated 2h ago".
fn reason_group(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest.find(" (authenticated ") {
        out.push_str(&rest[..at]);
        rest = match rest[at..].find(')') {
            Some(end) => &rest[at + end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// The impact of `policy_id` from its records: only report-only results between
/// `window_start` and `now` (inclusive) count; enforced results are not a projection.
/// "Interrupted" means `reportOnlyInterrupted` or `reportOnlyFailure`: the policy would have
/// stopped the user.
pub fn impact(
    policy_id: Uuid,
    records: &[ImpactRecord],
    window_start: Timestamp,
    now: Timestamp,
) -> Impact {
    let mut applied: BTreeSet<Uuid> = BTreeSet::new();
    let mut stopped: BTreeMap<Uuid, ImpactedUser> = BTreeMap::new();
    let mut by_reason: BTreeSet<(String, Uuid)> = BTreeSet::new();
    let mut by_platform: BTreeSet<(&str, Uuid)> = BTreeSet::new();
    let mut count = 0u64;
    let mut evidence_since: Option<Timestamp> = None;
    for r in records {
        if !r.result.is_report_only() || r.at < window_start || r.at > now {
            continue;
        }
        count += 1;
        evidence_since = Some(evidence_since.map_or(r.at, |t| t.min(r.at)));
        if !r.result.applied() {
            continue;
        }
        applied.insert(r.user_id);
        if !matches!(
            r.result,
            CaResult::ReportOnlyInterrupted | CaResult::ReportOnlyFailure
        ) {
            continue;
        }
        by_reason.insert((reason_group(&r.reason), r.user_id));
        by_platform.insert((&r.platform, r.user_id));
        let u = stopped.entry(r.user_id).or_insert_with(|| ImpactedUser {
            user_id: r.user_id,
            user_principal_name: r.user_principal_name.clone(),
            result: r.result,
            reason: r.reason.clone(),
            platform: r.platform.clone(),
            last_at: r.at,
            sign_ins: 0,
        });
        u.sign_ins += 1;
        if r.result == CaResult::ReportOnlyFailure {
            u.result = CaResult::ReportOnlyFailure;
        }
        // The latest record speaks for the user (ties: the later one in the input).
        if r.at >= u.last_at {
            u.last_at = r.at;
            u.reason.clone_from(&r.reason);
            u.platform.clone_from(&r.platform);
            u.user_principal_name.clone_from(&r.user_principal_name);
        }
    }
    let tally = |pairs: Vec<String>| {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for k in pairs {
            *m.entry(k).or_default() += 1;
        }
        m
    };
    let applied_users = applied.len() as u64;
    let interrupted_users = stopped.len() as u64;
    let blocked_users = stopped
        .values()
        .filter(|u| u.result == CaResult::ReportOnlyFailure)
        .count() as u64;
    let mut users: Vec<ImpactedUser> = stopped.into_values().collect();
    users.sort_by(|a, b| {
        (&a.user_principal_name, a.user_id).cmp(&(&b.user_principal_name, b.user_id))
    });
    users.truncate(MAX_IMPACT_SAMPLE);
    Impact {
        policy_id,
        window_start,
        window_end: now,
        records: count,
        applied_users,
        interrupted_users,
        blocked_users,
        interruption_rate: rate(interrupted_users, applied_users),
        by_reason: tally(by_reason.into_iter().map(|(k, _)| k).collect()),
        by_platform: tally(by_platform.into_iter().map(|(k, _)| k.to_owned()).collect()),
        users,
        evidence_since,
    }
}

/// `part` as a percentage of `whole`: multiplied before dividing, so 5 of 100 is exactly 5.
fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Why the gate refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GateCode {
    /// No report-only record in the window.
    NoReportOnlyEvidence,
    /// The first report-only record is younger than the minimum window.
    ReportOnlyEvidenceTooShort,
    InterruptionRateAboveThreshold,
    /// The configured threshold is not a percentage.
    InvalidThreshold,
    TooFewBreakGlassAccounts,
    BreakGlassNotDrilled,
}

impl GateCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoReportOnlyEvidence => "noReportOnlyEvidence",
            Self::ReportOnlyEvidenceTooShort => "reportOnlyEvidenceTooShort",
            Self::InterruptionRateAboveThreshold => "interruptionRateAboveThreshold",
            Self::InvalidThreshold => "invalidThreshold",
            Self::TooFewBreakGlassAccounts => "tooFewBreakGlassAccounts",
            Self::BreakGlassNotDrilled => "breakGlassNotDrilled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateReason {
    pub code: GateCode,
    pub message: String,
}

/// Whether a policy may be switched to `enabled` without forcing it, and every reason not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateDecision {
    pub allowed: bool,
    pub reasons: Vec<GateReason>,
}

impl GateDecision {
    pub fn explain(&self) -> String {
        if self.allowed {
            return "allowed: enough report-only evidence, few enough interruptions, and the emergency path is ready".into();
        }
        let mut out = String::from("refused (an administrator may force it; that is audited):");
        for r in &self.reasons {
            out.push_str(&format!("\n- {}: {}", r.code.as_str(), r.message));
        }
        out
    }
}

/// The enforcement gate: refuse when the report-only evidence is younger than
/// `min_window_secs` (or there is none), when the interruption rate exceeds
/// `threshold_percent` (exactly the threshold passes), when fewer than
/// [`MIN_BREAK_GLASS_ACCOUNTS`] break-glass accounts are enabled, or when none of them signed
/// in successfully in the last [`BREAK_GLASS_DRILL_MAX_AGE_DAYS`] days (exactly that old
/// still counts). The impact's window should be at least `min_window_secs` long.
pub fn gate(
    impact: &Impact,
    threshold_percent: f64,
    min_window_secs: i64,
    now: Timestamp,
    break_glass: &[BreakGlassFacts],
) -> GateDecision {
    let mut reasons = Vec::new();
    let mut refuse = |code, message: String| reasons.push(GateReason { code, message });
    let hours = |secs: i64| secs as f64 / 3600.0;
    match impact.evidence_since {
        None => refuse(
            GateCode::NoReportOnlyEvidence,
            format!(
                "no report-only result in the window; run the policy report-only for at least {:.0} h first",
                hours(min_window_secs)
            ),
        ),
        Some(since) => {
            let age_ms = now.millis().saturating_sub(since.millis());
            if age_ms < min_window_secs.saturating_mul(1000) {
                refuse(
                    GateCode::ReportOnlyEvidenceTooShort,
                    format!(
                        "report-only evidence covers {:.1} h; at least {:.0} h are needed",
                        age_ms as f64 / 3_600_000.0,
                        hours(min_window_secs)
                    ),
                );
            }
        }
    }
    if !threshold_percent.is_finite() || !(0.0..=100.0).contains(&threshold_percent) {
        refuse(
            GateCode::InvalidThreshold,
            format!(
                "the interruption threshold {threshold_percent} is not a percentage (0 to 100)"
            ),
        );
    } else if impact.interruption_rate > threshold_percent {
        refuse(
            GateCode::InterruptionRateAboveThreshold,
            format!(
                "{} of {} users ({:.2} %) would have been interrupted or blocked; the threshold is {threshold_percent} %",
                impact.interrupted_users, impact.applied_users, impact.interruption_rate
            ),
        );
    }
    let enabled: Vec<&BreakGlassFacts> = break_glass.iter().filter(|b| b.account_enabled).collect();
    if enabled.len() < MIN_BREAK_GLASS_ACCOUNTS {
        refuse(
            GateCode::TooFewBreakGlassAccounts,
            format!(
                "{} enabled break-glass account(s); at least {MIN_BREAK_GLASS_ACCOUNTS} are needed",
                enabled.len()
            ),
        );
    }
    let drill_since = now.minus_secs(BREAK_GLASS_DRILL_MAX_AGE_DAYS * 86_400);
    if !enabled
        .iter()
        .any(|b| b.last_successful_sign_in.is_some_and(|t| t >= drill_since))
    {
        refuse(
            GateCode::BreakGlassNotDrilled,
            format!(
                "no enabled break-glass account signed in successfully in the last {BREAK_GLASS_DRILL_MAX_AGE_DAYS} days; drill one"
            ),
        );
    }
    GateDecision {
        allowed: reasons.is_empty(),
        reasons,
    }
}
