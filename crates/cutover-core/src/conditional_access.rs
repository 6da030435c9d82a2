//! Conditional Access (SPEC §8): policies in the familiar Microsoft Graph shape, checked once
//! into [`CheckedPolicy`], and evaluated per sign-in by a pure engine — which policies apply
//! (users and groups, applications, client app type, named locations, device platform;
//! exclusions win), what each demands (`block`, `mfa`, an authentication strength, a sign-in
//! frequency), and the one [`Decision`] the enforced ones add up to. The same engine answers
//! the sign-in path, the report-only evaluation and the what-if tool; [`impact`] and [`gate`]
//! turn recorded report-only results into the impact report and the enforcement gate.
//!
//! Invariants, each property tested: a report-only policy never changes the decision; a
//! break-glass account is never blocked, interrupted or asked to sign in again; adding an
//! enforced policy never makes a decision more permissive; evaluation is deterministic and
//! the order of policies does not change the decision.
//!
//! Cost: a policy's id lists are sets, a named location's ranges are sorted intervals, and a
//! group condition iterates the smaller of the policy's and the user's groups, so evaluation
//! allocates per policy (its result) but never per group.

mod bench;
mod cidr;
mod engine;
mod impact;
mod policy;
#[cfg(test)]
mod tests;

pub use bench::{XorShift64, bench_inputs};
pub use cidr::{Cidr, IpRangeSet};
pub use engine::{
    BREAK_GLASS_REASON, CaResult, Decision, Evaluation, PolicyEvaluation, RegisteredMethods,
    Required, Requirement, SignInFacts, SignInFactsOwned, evaluate,
};
pub use impact::{
    DEFAULT_INTERRUPTION_THRESHOLD_PERCENT, GateCode, GateDecision, GateReason, Impact,
    ImpactRecord, ImpactedUser, MAX_IMPACT_SAMPLE, MIN_REPORT_ONLY_EVIDENCE_SECS, gate, impact,
};
pub use policy::{
    ApplicationConditions, AuthenticationStrengthRef, CheckedNamedLocation, CheckedPolicy,
    ConditionalAccessPolicy, Conditions, CustomStrengthRef, FrequencyLimit, FrequencyUnit,
    GrantControls, GrantOperator, LocationConditions, MAX_IDS_PER_LIST, MAX_IP_RANGES_PER_LOCATION,
    MAX_NAME_LEN, MAX_NAMED_LOCATIONS, MAX_POLICIES, MAX_SIGN_IN_FREQUENCY_DAYS, NamedLocation,
    NamedLocations, Platform, PlatformConditions, PolicyContext, PolicyError, PolicyState,
    SessionControls, SignInFrequency, StrengthControl, UserConditions, check_policies,
};
