//! Staged rollout of managed authentication (SPEC §4): feature rollout policies, the rules
//! that refuse a policy change, the *desired* features of a user (from group membership) and
//! the *effective* features that route their sign-ins, which follow the desired ones only at
//! the end of a completed interactive sign-in.
//!
//! Everything here is pure. The shell reads the policies, the user's direct groups and the
//! stored effective state, asks these functions, and writes back what they return.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Domain, MembershipKind, Source, Timestamp, User};

/// At most this many groups per feature (SPEC §4.2, ref).
pub const MAX_GROUPS_PER_FEATURE: usize = 10;
/// A group may hold at most this many members when it is first added (ref: avoids a time-out;
/// members can be added to it afterwards).
pub const MAX_MEMBERS_ON_FIRST_ADD: u64 = 200;

/// A staged-rollout feature (the Graph `stagedFeatureName` vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RolloutFeature {
    PasswordHashSync,
    PassthroughAuthentication,
    SeamlessSso,
    CertificateBasedAuthentication,
    MultiFactorAuthentication,
}

impl RolloutFeature {
    pub const ALL: [RolloutFeature; 5] = [
        RolloutFeature::PasswordHashSync,
        RolloutFeature::PassthroughAuthentication,
        RolloutFeature::SeamlessSso,
        RolloutFeature::CertificateBasedAuthentication,
        RolloutFeature::MultiFactorAuthentication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordHashSync => "passwordHashSync",
            Self::PassthroughAuthentication => "passthroughAuthentication",
            Self::SeamlessSso => "seamlessSso",
            Self::CertificateBasedAuthentication => "certificateBasedAuthentication",
            Self::MultiFactorAuthentication => "multiFactorAuthentication",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// Features that move a user's password sign-in from federation to Cutover.
    pub fn is_password_route(self) -> bool {
        matches!(
            self,
            Self::PasswordHashSync | Self::PassthroughAuthentication
        )
    }
}

impl fmt::Display for RolloutFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of features (a bit set: cheap to copy and compare on every sign-in). Serialised as a
/// list of feature names in [`RolloutFeature::ALL`] order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FeatureSet(u8);

impl FeatureSet {
    pub const EMPTY: FeatureSet = FeatureSet(0);

    pub fn of(features: &[RolloutFeature]) -> Self {
        features.iter().fold(Self::EMPTY, |s, f| s.with(*f))
    }
    pub fn contains(self, f: RolloutFeature) -> bool {
        self.0 & f.bit() != 0
    }
    #[must_use]
    pub fn with(self, f: RolloutFeature) -> Self {
        Self(self.0 | f.bit())
    }
    #[must_use]
    pub fn without(self, f: RolloutFeature) -> Self {
        Self(self.0 & !f.bit())
    }
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    /// Features in `self` that are not in `other`.
    #[must_use]
    pub fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = RolloutFeature> {
        RolloutFeature::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
    pub fn names(self) -> Vec<String> {
        self.iter().map(|f| f.as_str().to_owned()).collect()
    }
    /// The password feature routing honours: password hash sync wins if (against the rules)
    /// both are present.
    pub fn password_route(self) -> Option<RolloutFeature> {
        [
            RolloutFeature::PasswordHashSync,
            RolloutFeature::PassthroughAuthentication,
        ]
        .into_iter()
        .find(|f| self.contains(*f))
    }
}

impl fmt::Debug for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for FeatureSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for FeatureSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<RolloutFeature>::deserialize(d)?;
        Ok(Self::of(&list))
    }
}

/// A feature rollout policy (the Graph `featureRolloutPolicy` shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureRolloutPolicy {
    pub id: Uuid,
    pub display_name: String,
    pub description: Option<String>,
    pub feature: RolloutFeature,
    pub is_enabled: bool,
    /// Kept for shape compatibility; always `false` (staged rollout is per group — converting
    /// a whole domain is the domain cut-over).
    pub is_applied_to_organization: bool,
    /// Group ids, in the order they were added.
    pub applies_to: Vec<Uuid>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A rule of SPEC §4.2 that refused a change: a stable code and a message that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    pub rule: RolloutRule,
    pub message: String,
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.rule.code())
    }
}

/// The staged-rollout rules, each with a code an admin's script can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutRule {
    MaxGroupsPerFeature,
    NestedGroupNotSupported,
    DynamicGroupNotSupported,
    GroupContainsContact,
    TooManyMembersOnFirstAdd,
    PasswordHashSyncAndPassthroughExclusive,
    SeamlessSsoNeedsPasswordFeature,
    OnePolicyPerFeature,
    AppliedToOrganizationNotSupported,
    FeatureCannotChange,
    GroupAlreadyAdded,
    GroupNotInPolicy,
}

impl RolloutRule {
    pub fn code(self) -> &'static str {
        match self {
            Self::MaxGroupsPerFeature => "maxGroupsPerFeature",
            Self::NestedGroupNotSupported => "nestedGroupNotSupported",
            Self::DynamicGroupNotSupported => "dynamicGroupNotSupported",
            Self::GroupContainsContact => "groupContainsContact",
            Self::TooManyMembersOnFirstAdd => "tooManyMembersOnFirstAdd",
            Self::PasswordHashSyncAndPassthroughExclusive => {
                "passwordHashSyncAndPassthroughExclusive"
            }
            Self::SeamlessSsoNeedsPasswordFeature => "seamlessSsoNeedsPasswordFeature",
            Self::OnePolicyPerFeature => "onePolicyPerFeature",
            Self::AppliedToOrganizationNotSupported => "appliedToOrganizationNotSupported",
            Self::FeatureCannotChange => "featureCannotChange",
            Self::GroupAlreadyAdded => "groupAlreadyAdded",
            Self::GroupNotInPolicy => "groupNotInPolicy",
        }
    }
}

fn violation(rule: RolloutRule, message: impl Into<String>) -> RuleViolation {
    RuleViolation {
        rule,
        message: message.into(),
    }
}

/// Check a policy as it would be after a create or update, against every *other* policy.
/// `before` is the stored policy for an update, `None` for a create.
pub fn check_policy(
    after: &FeatureRolloutPolicy,
    before: Option<&FeatureRolloutPolicy>,
    others: &[FeatureRolloutPolicy],
) -> Result<(), RuleViolation> {
    let others = || others.iter().filter(move |p| p.id != after.id);
    if let Some(b) = before
        && b.feature != after.feature
    {
        return Err(violation(
            RolloutRule::FeatureCannotChange,
            format!(
                "a policy's feature cannot change ({} → {}); create a policy for {} instead",
                b.feature, after.feature, after.feature
            ),
        ));
    }
    if after.is_applied_to_organization {
        return Err(violation(
            RolloutRule::AppliedToOrganizationNotSupported,
            "isAppliedToOrganization must be false: staged rollout targets groups; to move a whole domain use the domain cut-over (cutover admin domains convert)",
        ));
    }
    if let Some(dup) = others().find(|p| p.feature == after.feature) {
        return Err(violation(
            RolloutRule::OnePolicyPerFeature,
            format!(
                "there is already a policy for {} ('{}', {}); add groups to it instead",
                after.feature, dup.display_name, dup.id
            ),
        ));
    }
    if after.is_enabled {
        if after.feature.is_password_route() {
            let rival = match after.feature {
                RolloutFeature::PasswordHashSync => RolloutFeature::PassthroughAuthentication,
                _ => RolloutFeature::PasswordHashSync,
            };
            if let Some(p) = others().find(|p| p.is_enabled && p.feature == rival) {
                return Err(violation(
                    RolloutRule::PasswordHashSyncAndPassthroughExclusive,
                    format!(
                        "passwordHashSync and passthroughAuthentication cannot both be enabled; disable '{}' ({}) first",
                        p.display_name, p.feature
                    ),
                ));
            }
        }
        if after.feature == RolloutFeature::SeamlessSso
            && !others().any(|p| p.is_enabled && p.feature.is_password_route())
        {
            return Err(violation(
                RolloutRule::SeamlessSsoNeedsPasswordFeature,
                "seamlessSso applies only to users also staged for passwordHashSync or passthroughAuthentication; enable one of those policies first",
            ));
        }
    }
    Ok(())
}

/// What the rules need to know about a group being added to a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    pub id: Uuid,
    pub display_name: String,
    pub membership_kind: MembershipKind,
    pub user_members: u64,
    pub group_members: u64,
    pub contact_members: u64,
}

/// Check adding `group` to `policy` (SPEC §4.2).
pub fn check_add_group(
    policy: &FeatureRolloutPolicy,
    group: &GroupFacts,
) -> Result<(), RuleViolation> {
    let name = &group.display_name;
    if policy.applies_to.contains(&group.id) {
        return Err(violation(
            RolloutRule::GroupAlreadyAdded,
            format!("group '{name}' is already in this policy"),
        ));
    }
    if policy.applies_to.len() >= MAX_GROUPS_PER_FEATURE {
        return Err(violation(
            RolloutRule::MaxGroupsPerFeature,
            format!(
                "{} already has {MAX_GROUPS_PER_FEATURE} groups, the most a feature can have; remove one, or put the users into one of its groups",
                policy.feature
            ),
        ));
    }
    if group.membership_kind == MembershipKind::Dynamic {
        return Err(violation(
            RolloutRule::DynamicGroupNotSupported,
            format!(
                "group '{name}' has dynamic membership; staged rollout takes assigned groups only"
            ),
        ));
    }
    if group.group_members > 0 {
        return Err(violation(
            RolloutRule::NestedGroupNotSupported,
            format!(
                "group '{name}' contains {} group(s); nested groups are not supported — add the users directly, or add the inner group itself",
                group.group_members
            ),
        ));
    }
    if group.contact_members > 0 {
        return Err(violation(
            RolloutRule::GroupContainsContact,
            format!(
                "group '{name}' contains {} contact(s); contacts block a group from staged rollout — remove them first",
                group.contact_members
            ),
        ));
    }
    if group.user_members > MAX_MEMBERS_ON_FIRST_ADD {
        return Err(violation(
            RolloutRule::TooManyMembersOnFirstAdd,
            format!(
                "group '{name}' has {} members; a group may have at most {MAX_MEMBERS_ON_FIRST_ADD} when first added (add more members to it afterwards)",
                group.user_members
            ),
        ));
    }
    Ok(())
}

/// Check removing `group_id` from `policy`.
pub fn check_remove_group(
    policy: &FeatureRolloutPolicy,
    group_id: Uuid,
) -> Result<(), RuleViolation> {
    if policy.applies_to.contains(&group_id) {
        Ok(())
    } else {
        Err(violation(
            RolloutRule::GroupNotInPolicy,
            format!("group {group_id} is not in this policy"),
        ))
    }
}

/// Why staged rollout does or does not apply to a user (the admin's per-user view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Eligibility {
    /// A synced user of a federated domain: staged rollout applies.
    Eligible,
    CloudOnlyUser,
    ManagedDomain,
    BreakGlassAccount,
    UnknownDomain,
}

impl Eligibility {
    pub fn code(self) -> &'static str {
        match self {
            Self::Eligible => "eligible",
            Self::CloudOnlyUser => "cloudOnlyUser",
            Self::ManagedDomain => "managedDomain",
            Self::BreakGlassAccount => "breakGlassAccount",
            Self::UnknownDomain => "unknownDomain",
        }
    }
}

/// Staged rollout applies only to synced users of federated domains, never to break-glass
/// accounts (SPEC §4.2).
pub fn eligibility(user: &User, domain: Option<&Domain>) -> Eligibility {
    match domain {
        None => Eligibility::UnknownDomain,
        Some(_) if user.break_glass => Eligibility::BreakGlassAccount,
        Some(d) if !d.is_federated() => Eligibility::ManagedDomain,
        Some(_) if user.source != Source::Synced => Eligibility::CloudOnlyUser,
        Some(_) => Eligibility::Eligible,
    }
}

/// The enabled policies compiled for lookups: group id → features it grants.
#[derive(Debug, Clone, Default)]
pub struct RolloutIndex {
    by_group: HashMap<Uuid, FeatureSet>,
}

impl RolloutIndex {
    pub fn new(policies: &[FeatureRolloutPolicy]) -> Self {
        let mut by_group: HashMap<Uuid, FeatureSet> = HashMap::new();
        for p in policies.iter().filter(|p| p.is_enabled) {
            for g in &p.applies_to {
                let e = by_group.entry(*g).or_default();
                *e = e.with(p.feature);
            }
        }
        Self { by_group }
    }

    /// Whether any enabled policy targets any group (staged rollout is active at all).
    pub fn is_active(&self) -> bool {
        !self.by_group.is_empty()
    }

    /// The features a user should have, from their direct groups (nested groups are not
    /// followed: SPEC §4.2). Empty for users staged rollout does not apply to; `seamlessSso`
    /// only together with a password feature.
    pub fn desired(&self, user: &User, domain: Option<&Domain>, groups: &[Uuid]) -> FeatureSet {
        if eligibility(user, domain) != Eligibility::Eligible {
            return FeatureSet::EMPTY;
        }
        let set = groups
            .iter()
            .filter_map(|g| self.by_group.get(g))
            .fold(FeatureSet::EMPTY, |a, b| a.union(*b));
        if set.password_route().is_none() {
            set.without(RolloutFeature::SeamlessSso)
        } else {
            set
        }
    }
}

/// A user's stored staged state: the features that route their sign-ins now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedState {
    pub effective: FeatureSet,
    /// When `effective` last changed (`None`: never).
    pub changed_at: Option<Timestamp>,
}

/// How a sign-in ended, as far as the staged state is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInEnd {
    /// The user completed an interactive sign-in (a credential was checked by Cutover or the
    /// upstream IdP) and is about to get a code.
    InteractiveCompleted,
    /// A managed password attempt that could not check the credential at all (no synced hash,
    /// no pass-through agent). Switches only a *pending return to federation* (the desired
    /// state has no password feature left): the administrator already moved the user back,
    /// and waiting for a completed managed sign-in would lock them out.
    ManagedCredentialUnavailable,
    /// A refresh, an SSO-session reuse or a client-credentials grant: never switches.
    NonInteractive,
    /// The attempt failed or was interrupted: never switches.
    Failed,
}

/// The effective state changed: which features the user was enabled for or removed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub before: FeatureSet,
    pub after: FeatureSet,
    pub enabled: FeatureSet,
    pub removed: FeatureSet,
}

/// SPEC §4.3: the effective state becomes the desired state only at the end of a completed
/// interactive sign-in — or, for a pending removal only, when the managed credential could
/// not be checked at all ([`SignInEnd::ManagedCredentialUnavailable`]), so a rollback never
/// strands a user on a route that cannot sign them in. Returns the new state and, when it
/// changed, the transition to audit.
pub fn transition(
    state: StagedState,
    desired: FeatureSet,
    end: SignInEnd,
    now: Timestamp,
) -> (StagedState, Option<Transition>) {
    let switches = match end {
        SignInEnd::InteractiveCompleted => true,
        SignInEnd::ManagedCredentialUnavailable => {
            state.effective.password_route().is_some() && desired.password_route().is_none()
        }
        SignInEnd::NonInteractive | SignInEnd::Failed => false,
    };
    if !switches || state.effective == desired {
        return (state, None);
    }
    let t = Transition {
        before: state.effective,
        after: desired,
        enabled: desired.minus(state.effective),
        removed: state.effective.minus(desired),
    };
    (
        StagedState {
            effective: desired,
            changed_at: Some(now),
        },
        Some(t),
    )
}

/// What Cutover knows about a user's credentials when it is about to switch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionFacts {
    /// The password page can check the user: a synced password hash, or a password set in
    /// Cutover (a synced user's password page falls back to it).
    pub has_password: bool,
}

/// Why a desired feature is held back from the effective state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HoldReason {
    /// `passwordHashSync` is desired but no synced password hash exists: moving the user
    /// would lock them out, so they stay federated until the hash arrives.
    NoSyncedPasswordHash,
}

impl HoldReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::NoSyncedPasswordHash => "noSyncedPasswordHash",
        }
    }
}

/// The desired features a switch may actually apply: a password feature whose credential
/// cannot be checked is held back (with `seamlessSso`, which needs it), so no switch ever
/// moves a user onto a route that cannot sign them in. Pass the result to [`transition`].
pub fn admissible(desired: FeatureSet, facts: AdmissionFacts) -> (FeatureSet, Option<HoldReason>) {
    if desired.password_route() == Some(RolloutFeature::PasswordHashSync) && !facts.has_password {
        let held = desired
            .without(RolloutFeature::PasswordHashSync)
            .without(RolloutFeature::SeamlessSso);
        return (held, Some(HoldReason::NoSyncedPasswordHash));
    }
    (desired, None)
}

/// What a sign-in record and the per-user view show about staged rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedTrace {
    /// Effective features that routed this sign-in.
    pub effective: FeatureSet,
    /// Features the user's groups call for now.
    pub desired: FeatureSet,
    /// Effective features after this sign-in (differs from `effective` when it switched).
    pub effective_after: FeatureSet,
    /// When the effective state last changed.
    pub changed_at: Option<Timestamp>,
    /// A desired feature held back from the switch, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HoldReason>,
}

// ---- rollout progress (the admin's per-policy report) ----------------------------------------

/// At most this many users are listed per category of a progress report (a sample, by UPN).
pub const MAX_PROGRESS_SAMPLE: usize = 20;

/// Where one direct member of a policy's group stands with the policy's feature (the admin's
/// progress report). Each value says what the member's *next completed interactive sign-in*
/// does to the feature, by the same rules as [`admissible`] and [`transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberProgress {
    /// The feature is effective, and their groups still call for it: done.
    Switched,
    /// The policy applies the feature to them and it is not effective yet: their next
    /// completed interactive sign-in switches it on.
    Pending,
    /// Like pending, but the switch is held back ([`admissible`]): the feature (or the password
    /// feature it needs) is `passwordHashSync` and they have no synced password hash yet. They
    /// stay federated until sync brings the hash.
    Held,
    /// The feature is effective but no longer applies (the policy is disabled, or — enabled —
    /// their hash is gone or their password feature was removed): their next sign-in takes it
    /// away.
    Returning,
    /// The policy is disabled and the feature is not effective: nothing to do.
    NotEnabled,
    /// `seamlessSso` applies only together with a password feature (SPEC §4.2); the member is in
    /// no group of an enabled password policy, so nothing switches.
    NeedsPasswordFeature,
    /// Staged rollout does not apply: a cloud-only user, a break-glass account, a user of a
    /// managed or unknown domain ([`eligibility`]).
    NotEligible,
}

impl MemberProgress {
    pub const ALL: [MemberProgress; 7] = [
        MemberProgress::Switched,
        MemberProgress::Pending,
        MemberProgress::Held,
        MemberProgress::Returning,
        MemberProgress::NotEnabled,
        MemberProgress::NeedsPasswordFeature,
        MemberProgress::NotEligible,
    ];

    /// The wire name (`switched`, `pending`, …).
    pub fn code(self) -> &'static str {
        match self {
            Self::Switched => "switched",
            Self::Pending => "pending",
            Self::Held => "held",
            Self::Returning => "returning",
            Self::NotEnabled => "notEnabled",
            Self::NeedsPasswordFeature => "needsPasswordFeature",
            Self::NotEligible => "notEligible",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the progress report knows about one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberFacts {
    pub eligibility: Eligibility,
    /// The stored effective features (what routes their sign-ins now).
    pub effective: FeatureSet,
    /// What their direct groups call for now ([`RolloutIndex::desired`], every policy).
    pub desired: FeatureSet,
    /// The password page can check them (see [`AdmissionFacts::has_password`]).
    pub has_password: bool,
}

/// Where a member of a group of the policy for `feature` (enabled or not) stands: the
/// categories of the progress report, decided by what their next completed interactive
/// sign-in would do (`transition(effective, admissible(desired))`).
pub fn member_progress(
    feature: RolloutFeature,
    policy_enabled: bool,
    m: MemberFacts,
) -> MemberProgress {
    if m.eligibility != Eligibility::Eligible {
        return MemberProgress::NotEligible;
    }
    let effective = m.effective.contains(feature);
    if !policy_enabled {
        return if effective {
            MemberProgress::Returning
        } else {
            MemberProgress::NotEnabled
        };
    }
    let (admitted, _) = admissible(
        m.desired,
        AdmissionFacts {
            has_password: m.has_password,
        },
    );
    match (effective, admitted.contains(feature)) {
        (true, true) => MemberProgress::Switched,
        (true, false) => MemberProgress::Returning,
        (false, true) => MemberProgress::Pending,
        (false, false) if m.desired.contains(feature) => MemberProgress::Held,
        (false, false) => MemberProgress::NeedsPasswordFeature,
    }
}

/// Counts per [`MemberProgress`] and, for every category but `Switched`, a sample of at most
/// [`MAX_PROGRESS_SAMPLE`] members: the first by normalised user principal name, whatever the
/// order they are added in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressTally {
    counts: [u64; 7],
    /// Per category: (normalised UPN, UPN as shown), sorted, at most `MAX_PROGRESS_SAMPLE`.
    samples: [Vec<(String, String)>; 7],
}

impl ProgressTally {
    pub fn add(&mut self, progress: MemberProgress, upn: &crate::UserPrincipalName) {
        let i = progress.index();
        self.counts[i] += 1;
        if progress == MemberProgress::Switched {
            return;
        }
        let sample = &mut self.samples[i];
        let key = upn.normalized();
        if sample.len() == MAX_PROGRESS_SAMPLE && sample.last().is_some_and(|(k, _)| *k <= key) {
            return;
        }
        if let Err(at) = sample.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            sample.insert(at, (key, upn.as_str().to_owned()));
            sample.truncate(MAX_PROGRESS_SAMPLE);
        }
    }

    pub fn count(&self, progress: MemberProgress) -> u64 {
        self.counts[progress.index()]
    }

    /// Every member counted.
    pub fn members(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sampled members of a category, by normalised UPN (empty for `Switched`).
    pub fn sample(&self, progress: MemberProgress) -> Vec<String> {
        self.samples[progress.index()]
            .iter()
            .map(|(_, shown)| shown.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        DomainAuthentication, DomainName, FederationConfig, ManagedConfig, UserPrincipalName,
    };
    use proptest::prelude::*;

    fn policy(feature: RolloutFeature, enabled: bool, groups: &[Uuid]) -> FeatureRolloutPolicy {
        FeatureRolloutPolicy {
            id: Uuid::new_v4(),
            display_name: format!("{feature} rollout"),
            description: None,
            feature,
            is_enabled: enabled,
            is_applied_to_organization: false,
            applies_to: groups.to_vec(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn facts(users: u64, groups: u64, contacts: u64, kind: MembershipKind) -> GroupFacts {
        GroupFacts {
            id: Uuid::new_v4(),
            display_name: "Pilot".into(),
            membership_kind: kind,
            user_members: users,
            group_members: groups,
            contact_members: contacts,
        }
    }

    pub(crate) fn user(source: Source, break_glass: bool) -> User {
        User {
            id: Uuid::new_v4(),
            upn: UserPrincipalName::parse("u@corp.example").unwrap(),
            source,
            immutable_id: (source == Source::Synced).then(|| "anchor".into()),
            display_name: "U".into(),
            mail: None,
            department: None,
            manager_id: None,
            account_enabled: true,
            break_glass,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    pub(crate) fn domain(federated: bool) -> Domain {
        Domain {
            name: DomainName::parse("corp.example").unwrap(),
            authentication: if federated {
                DomainAuthentication::Federated(FederationConfig::default())
            } else {
                DomainAuthentication::Managed(ManagedConfig::default())
            },
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn feature_names_roundtrip_and_sets_serialise_as_lists() {
        for f in RolloutFeature::ALL {
            assert_eq!(RolloutFeature::parse(f.as_str()), Some(f));
        }
        assert_eq!(RolloutFeature::parse("PasswordHashSync"), None);
        let s = FeatureSet::of(&[
            RolloutFeature::SeamlessSso,
            RolloutFeature::PasswordHashSync,
        ]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["passwordHashSync","seamlessSso"]"#);
        assert_eq!(serde_json::from_str::<FeatureSet>(&json).unwrap(), s);
        assert!(serde_json::from_str::<FeatureSet>(r#"["bogus"]"#).is_err());
    }

    #[test]
    fn group_rules_each_name_their_rule() {
        let full: Vec<Uuid> = (0..MAX_GROUPS_PER_FEATURE)
            .map(|_| Uuid::new_v4())
            .collect();
        let almost: Vec<Uuid> = full[1..].to_vec();
        let ok = facts(MAX_MEMBERS_ON_FIRST_ADD, 0, 0, MembershipKind::Assigned);
        let table: Vec<(FeatureRolloutPolicy, GroupFacts, Option<RolloutRule>)> = vec![
            (
                policy(RolloutFeature::PasswordHashSync, true, &[]),
                ok.clone(),
                None,
            ),
            // The tenth group is accepted, the eleventh refused.
            (
                policy(RolloutFeature::PasswordHashSync, true, &almost),
                ok.clone(),
                None,
            ),
            (
                policy(RolloutFeature::PasswordHashSync, true, &full),
                ok.clone(),
                Some(RolloutRule::MaxGroupsPerFeature),
            ),
            (
                policy(RolloutFeature::SeamlessSso, true, &[]),
                facts(1, 0, 0, MembershipKind::Dynamic),
                Some(RolloutRule::DynamicGroupNotSupported),
            ),
            (
                policy(RolloutFeature::SeamlessSso, true, &[]),
                facts(1, 1, 0, MembershipKind::Assigned),
                Some(RolloutRule::NestedGroupNotSupported),
            ),
            (
                policy(RolloutFeature::SeamlessSso, true, &[]),
                facts(1, 0, 1, MembershipKind::Assigned),
                Some(RolloutRule::GroupContainsContact),
            ),
            // 200 members on first add is fine, 201 is not.
            (
                policy(RolloutFeature::PassthroughAuthentication, false, &[]),
                facts(MAX_MEMBERS_ON_FIRST_ADD + 1, 0, 0, MembershipKind::Assigned),
                Some(RolloutRule::TooManyMembersOnFirstAdd),
            ),
        ];
        for (p, g, want) in table {
            let got = check_add_group(&p, &g);
            assert_eq!(got.as_ref().err().map(|v| v.rule), want, "{got:?}");
            if let Err(v) = got {
                assert!(v.to_string().contains(v.rule.code()), "{v}");
            }
        }
        let p = policy(RolloutFeature::PasswordHashSync, true, &[ok.id]);
        assert_eq!(
            check_add_group(&p, &ok).unwrap_err().rule,
            RolloutRule::GroupAlreadyAdded
        );
        assert!(check_remove_group(&p, ok.id).is_ok());
        assert_eq!(
            check_remove_group(&p, Uuid::new_v4()).unwrap_err().rule,
            RolloutRule::GroupNotInPolicy
        );
    }

    #[test]
    fn policy_rules_each_name_their_rule() {
        use RolloutFeature::*;
        let phs_on = policy(PasswordHashSync, true, &[]);
        let phs_off = policy(PasswordHashSync, false, &[]);
        let pta_on = policy(PassthroughAuthentication, true, &[]);
        let sso_on = policy(SeamlessSso, true, &[]);
        let mut org = policy(MultiFactorAuthentication, false, &[]);
        org.is_applied_to_organization = true;
        let rule = |after: &FeatureRolloutPolicy,
                    before: Option<&FeatureRolloutPolicy>,
                    others: &[FeatureRolloutPolicy]| {
            check_policy(after, before, others).err().map(|v| v.rule)
        };
        assert_eq!(rule(&phs_on, None, &[]), None);
        assert_eq!(
            rule(&pta_on, None, std::slice::from_ref(&phs_on)),
            Some(RolloutRule::PasswordHashSyncAndPassthroughExclusive)
        );
        // PTA may be enabled when the PHS policy exists but is off.
        assert_eq!(rule(&pta_on, None, std::slice::from_ref(&phs_off)), None);
        assert_eq!(
            rule(&sso_on, None, &[]),
            Some(RolloutRule::SeamlessSsoNeedsPasswordFeature)
        );
        assert_eq!(
            rule(&sso_on, None, std::slice::from_ref(&phs_off)),
            Some(RolloutRule::SeamlessSsoNeedsPasswordFeature)
        );
        assert_eq!(rule(&sso_on, None, std::slice::from_ref(&pta_on)), None);
        // A disabled SSO policy may wait for its password policy.
        assert_eq!(rule(&policy(SeamlessSso, false, &[]), None, &[]), None);
        assert_eq!(
            rule(
                &policy(PasswordHashSync, false, &[]),
                None,
                std::slice::from_ref(&phs_on)
            ),
            Some(RolloutRule::OnePolicyPerFeature)
        );
        assert_eq!(
            rule(&org, None, &[]),
            Some(RolloutRule::AppliedToOrganizationNotSupported)
        );
        let mut changed = phs_on.clone();
        changed.feature = PassthroughAuthentication;
        assert_eq!(
            rule(&changed, Some(&phs_on), &[]),
            Some(RolloutRule::FeatureCannotChange)
        );
        // An update is checked against the others, not against its own stored copy.
        let mut enabled_again = phs_off.clone();
        enabled_again.is_enabled = true;
        assert_eq!(
            rule(
                &enabled_again,
                Some(&phs_off),
                std::slice::from_ref(&phs_off)
            ),
            None
        );
    }

    #[test]
    fn desired_features_follow_direct_groups_for_eligible_users_only() {
        use RolloutFeature::*;
        let pilot = Uuid::new_v4();
        let sso_group = Uuid::new_v4();
        let off_group = Uuid::new_v4();
        let policies = vec![
            policy(PasswordHashSync, true, &[pilot]),
            policy(SeamlessSso, true, &[sso_group, pilot]),
            policy(MultiFactorAuthentication, false, &[off_group]),
        ];
        let idx = RolloutIndex::new(&policies);
        let fed = domain(true);
        let synced = user(Source::Synced, false);
        assert_eq!(
            idx.desired(&synced, Some(&fed), &[pilot]),
            FeatureSet::of(&[PasswordHashSync, SeamlessSso])
        );
        // SSO alone does not apply.
        assert_eq!(
            idx.desired(&synced, Some(&fed), &[sso_group]),
            FeatureSet::EMPTY
        );
        // A disabled policy grants nothing.
        assert_eq!(
            idx.desired(&synced, Some(&fed), &[off_group]),
            FeatureSet::EMPTY
        );
        // Cloud-only users, break-glass accounts, managed and unknown domains: never.
        for (u, d, why) in [
            (
                user(Source::Cloud, false),
                Some(fed.clone()),
                Eligibility::CloudOnlyUser,
            ),
            (
                user(Source::Cloud, true),
                Some(fed.clone()),
                Eligibility::BreakGlassAccount,
            ),
            (
                synced.clone(),
                Some(domain(false)),
                Eligibility::ManagedDomain,
            ),
            (synced.clone(), None, Eligibility::UnknownDomain),
        ] {
            assert_eq!(eligibility(&u, d.as_ref()), why);
            assert_eq!(idx.desired(&u, d.as_ref(), &[pilot]), FeatureSet::EMPTY);
        }
        assert!(idx.is_active());
        assert!(!RolloutIndex::new(&policies[2..]).is_active());
    }

    #[test]
    fn transition_only_on_completed_interactive_sign_in() {
        let phs = FeatureSet::of(&[RolloutFeature::PasswordHashSync]);
        let s0 = StagedState::default();
        for end in [
            SignInEnd::NonInteractive,
            SignInEnd::Failed,
            // Not a removal: an unavailable credential never moves anyone *to* managed.
            SignInEnd::ManagedCredentialUnavailable,
        ] {
            assert_eq!(transition(s0, phs, end, Timestamp(5)), (s0, None));
        }
        let (s1, t) = transition(s0, phs, SignInEnd::InteractiveCompleted, Timestamp(5));
        assert_eq!(s1.effective, phs);
        assert_eq!(s1.changed_at, Some(Timestamp(5)));
        let t = t.unwrap();
        assert_eq!((t.enabled, t.removed), (phs, FeatureSet::EMPTY));
        // Nothing to do when effective already equals desired: no new change time.
        assert_eq!(
            transition(s1, phs, SignInEnd::InteractiveCompleted, Timestamp(9)),
            (s1, None)
        );
        let (s2, t) = transition(
            s1,
            FeatureSet::EMPTY,
            SignInEnd::InteractiveCompleted,
            Timestamp(9),
        );
        assert_eq!(s2.effective, FeatureSet::EMPTY);
        assert_eq!(t.unwrap().removed, phs);
        // A pending removal is honoured when the managed credential cannot be checked ...
        let (s3, t) = transition(
            s1,
            FeatureSet::EMPTY,
            SignInEnd::ManagedCredentialUnavailable,
            Timestamp(9),
        );
        assert_eq!((s3.effective, t.unwrap().removed), (FeatureSet::EMPTY, phs));
        // ... but not a change that keeps the password feature.
        let more = phs.with(RolloutFeature::SeamlessSso);
        assert_eq!(
            transition(
                s1,
                more,
                SignInEnd::ManagedCredentialUnavailable,
                Timestamp(9)
            ),
            (s1, None)
        );
    }

    #[test]
    fn a_switch_to_password_hash_sync_waits_for_the_hash() {
        use RolloutFeature::*;
        let with = AdmissionFacts { has_password: true };
        let without = AdmissionFacts {
            has_password: false,
        };
        let phs_sso_mfa =
            FeatureSet::of(&[PasswordHashSync, SeamlessSso, MultiFactorAuthentication]);
        assert_eq!(admissible(phs_sso_mfa, with), (phs_sso_mfa, None));
        assert_eq!(
            admissible(phs_sso_mfa, without),
            (
                FeatureSet::of(&[MultiFactorAuthentication]),
                Some(HoldReason::NoSyncedPasswordHash)
            )
        );
        // Pass-through and removals do not depend on a synced hash.
        let pta = FeatureSet::of(&[PassthroughAuthentication]);
        assert_eq!(admissible(pta, without), (pta, None));
        assert_eq!(
            admissible(FeatureSet::EMPTY, without),
            (FeatureSet::EMPTY, None)
        );
        // A staged user whose hash disappeared cannot complete a managed sign-in: the held
        // desired state lets the credential-unavailable escape take them back to federation.
        let staged = StagedState {
            effective: FeatureSet::of(&[PasswordHashSync]),
            changed_at: Some(Timestamp(1)),
        };
        let (held, _) = admissible(FeatureSet::of(&[PasswordHashSync]), without);
        let (after, t) = transition(
            staged,
            held,
            SignInEnd::ManagedCredentialUnavailable,
            Timestamp(2),
        );
        assert_eq!((after.effective, t.is_some()), (FeatureSet::EMPTY, true));
    }

    #[test]
    fn member_progress_table() {
        use Eligibility::*;
        use MemberProgress::*;
        use RolloutFeature::*;
        let none = FeatureSet::EMPTY;
        let phs = FeatureSet::of(&[PasswordHashSync]);
        let pta = FeatureSet::of(&[PassthroughAuthentication]);
        let sso = FeatureSet::of(&[SeamlessSso]);
        let phs_sso = FeatureSet::of(&[PasswordHashSync, SeamlessSso]);
        let pta_sso = FeatureSet::of(&[PassthroughAuthentication, SeamlessSso]);
        let mfa = FeatureSet::of(&[MultiFactorAuthentication]);
        // (feature, policy enabled, eligibility, effective, desired, has hash) → progress
        #[rustfmt::skip]
        let table: Vec<(RolloutFeature, bool, Eligibility, FeatureSet, FeatureSet, bool, MemberProgress)> = vec![
            // passwordHashSync, enabled: pending until the sign-in, held without a hash.
            (PasswordHashSync, true, Eligible, none, phs, true, Pending),
            (PasswordHashSync, true, Eligible, none, phs, false, Held),
            (PasswordHashSync, true, Eligible, phs, phs, true, Switched),
            // Switched, then the hash went away: the next attempt returns them.
            (PasswordHashSync, true, Eligible, phs, phs, false, Returning),
            // Disabled: whoever still has it returns; the others have nothing to do.
            (PasswordHashSync, false, Eligible, phs, none, true, Returning),
            (PasswordHashSync, false, Eligible, phs, none, false, Returning),
            (PasswordHashSync, false, Eligible, none, none, true, NotEnabled),
            (PasswordHashSync, false, Eligible, none, none, false, NotEnabled),
            // Staged rollout does not apply, whatever is stored.
            (PasswordHashSync, true, CloudOnlyUser, none, none, true, NotEligible),
            (PasswordHashSync, true, BreakGlassAccount, none, none, true, NotEligible),
            (PasswordHashSync, true, UnknownDomain, none, none, false, NotEligible),
            // A managed domain freezes the state: not eligible even with the feature stored.
            (PasswordHashSync, true, ManagedDomain, phs, none, true, NotEligible),
            (PasswordHashSync, false, ManagedDomain, phs, none, true, NotEligible),
            // Pass-through does not wait for a hash.
            (PassthroughAuthentication, true, Eligible, none, pta, false, Pending),
            (PassthroughAuthentication, true, Eligible, pta, pta, false, Switched),
            (PassthroughAuthentication, false, Eligible, pta, none, false, Returning),
            // seamlessSso: only with a password feature, and held with it.
            (SeamlessSso, true, Eligible, none, phs_sso, true, Pending),
            (SeamlessSso, true, Eligible, none, pta_sso, false, Pending),
            (SeamlessSso, true, Eligible, none, phs_sso, false, Held),
            (SeamlessSso, true, Eligible, none, none, true, NeedsPasswordFeature),
            (SeamlessSso, true, Eligible, phs_sso, phs_sso, true, Switched),
            // Out of the password group: SSO goes with the password feature.
            (SeamlessSso, true, Eligible, phs_sso, none, true, Returning),
            (SeamlessSso, false, Eligible, sso, none, true, Returning),
            (SeamlessSso, false, Eligible, none, phs, true, NotEnabled),
            // Other features only follow the policy.
            (MultiFactorAuthentication, true, Eligible, none, mfa, false, Pending),
            (MultiFactorAuthentication, true, Eligible, mfa, mfa, false, Switched),
            (MultiFactorAuthentication, false, Eligible, mfa, none, false, Returning),
            (MultiFactorAuthentication, false, Eligible, none, none, false, NotEnabled),
            (CertificateBasedAuthentication, true, Eligible, phs, phs.with(CertificateBasedAuthentication), false, Pending),
        ];
        for (feature, enabled, eligibility, effective, desired, hash, want) in table {
            let m = MemberFacts {
                eligibility,
                effective,
                desired,
                has_password: hash,
            };
            assert_eq!(
                member_progress(feature, enabled, m),
                want,
                "{feature} enabled={enabled} {m:?}"
            );
        }
    }

    /// Every combination of feature, policy state, eligibility, stored and desired features
    /// (as the rules can produce them) and hash: the category says exactly what the next
    /// completed interactive sign-in does to the feature.
    #[test]
    fn member_progress_predicts_the_next_sign_in_for_every_combination() {
        use MemberProgress::*;
        let eligibilities = [
            Eligibility::Eligible,
            Eligibility::CloudOnlyUser,
            Eligibility::ManagedDomain,
            Eligibility::BreakGlassAccount,
            Eligibility::UnknownDomain,
        ];
        let mut seen = std::collections::HashSet::new();
        for feature in RolloutFeature::ALL {
            for enabled in [false, true] {
                for eligibility in eligibilities {
                    for effective in (0u8..32).map(FeatureSet) {
                        for desired in (0u8..32).map(FeatureSet) {
                            // Desired as RolloutIndex::desired makes it for a member of one of
                            // the policy's groups (one policy per feature).
                            let eligible = eligibility == Eligibility::Eligible;
                            let consistent = if !eligible {
                                desired.is_empty()
                            } else if feature == RolloutFeature::SeamlessSso && enabled {
                                desired.contains(feature) == desired.password_route().is_some()
                            } else {
                                desired.contains(feature) == enabled
                            } && (!desired.contains(RolloutFeature::SeamlessSso)
                                || desired.password_route().is_some());
                            if !consistent {
                                continue;
                            }
                            for hash in [false, true] {
                                let m = MemberFacts {
                                    eligibility,
                                    effective,
                                    desired,
                                    has_password: hash,
                                };
                                let got = member_progress(feature, enabled, m);
                                seen.insert(got);
                                let (admitted, held) =
                                    admissible(desired, AdmissionFacts { has_password: hash });
                                let state = StagedState {
                                    effective,
                                    changed_at: None,
                                };
                                let (after, _) = transition(
                                    state,
                                    admitted,
                                    SignInEnd::InteractiveCompleted,
                                    Timestamp(1),
                                );
                                let now = effective.contains(feature);
                                let next = after.effective.contains(feature);
                                let ctx = format!("{feature} enabled={enabled} {m:?} → {got:?}");
                                match got {
                                    NotEligible => assert!(!eligible, "{ctx}"),
                                    Switched => {
                                        assert!(eligible && enabled && now && next, "{ctx}")
                                    }
                                    Pending => {
                                        assert!(eligible && enabled && !now && next, "{ctx}")
                                    }
                                    Held => assert!(
                                        eligible && enabled && !now && !next && held.is_some(),
                                        "{ctx}"
                                    ),
                                    Returning => assert!(eligible && now && !next, "{ctx}"),
                                    NotEnabled => assert!(eligible && !enabled && !now, "{ctx}"),
                                    NeedsPasswordFeature => assert!(
                                        eligible
                                            && enabled
                                            && feature == RolloutFeature::SeamlessSso
                                            && !now
                                            && !next
                                            && held.is_none(),
                                        "{ctx}"
                                    ),
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(
            seen.len(),
            MemberProgress::ALL.len(),
            "every category occurs"
        );
    }

    #[test]
    fn progress_tally_counts_everyone_and_samples_the_first_by_upn() {
        let upn = |s: &str| UserPrincipalName::parse(s).unwrap();
        for (i, p) in MemberProgress::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        let mut t = ProgressTally::default();
        // Added in reverse order, mixed case: the sample is the first 20 by normalised UPN.
        for n in (0..30).rev() {
            let name = if n % 2 == 0 {
                format!("User{n:02}@corp.example")
            } else {
                format!("user{n:02}@corp.example")
            };
            t.add(MemberProgress::Held, &upn(&name));
        }
        for n in 0..3 {
            t.add(
                MemberProgress::Switched,
                &upn(&format!("s{n}@corp.example")),
            );
        }
        t.add(MemberProgress::Pending, &upn("p@corp.example"));
        assert_eq!(t.count(MemberProgress::Held), 30);
        assert_eq!(t.count(MemberProgress::Switched), 3);
        assert_eq!(t.count(MemberProgress::Pending), 1);
        assert_eq!(t.count(MemberProgress::NotEligible), 0);
        assert_eq!(t.members(), 34);
        let held = t.sample(MemberProgress::Held);
        assert_eq!(held.len(), MAX_PROGRESS_SAMPLE);
        assert_eq!(held[0], "User00@corp.example", "shown as created");
        assert_eq!(held[1], "user01@corp.example");
        assert_eq!(held[19], "user19@corp.example");
        assert!(
            t.sample(MemberProgress::Switched).is_empty(),
            "never listed"
        );
        assert_eq!(t.sample(MemberProgress::Pending), vec!["p@corp.example"]);
        assert!(t.sample(MemberProgress::Returning).is_empty());
    }

    fn feature_set() -> impl Strategy<Value = FeatureSet> {
        (0u8..32).prop_map(FeatureSet)
    }

    fn end() -> impl Strategy<Value = SignInEnd> {
        prop_oneof![
            Just(SignInEnd::InteractiveCompleted),
            Just(SignInEnd::ManagedCredentialUnavailable),
            Just(SignInEnd::NonInteractive),
            Just(SignInEnd::Failed),
        ]
    }

    proptest! {
        /// Over any sequence of sign-ins and desired states, the effective state changes only
        /// at a completed interactive sign-in, and then equals what was desired.
        #[test]
        fn effective_changes_only_at_interactive_completion(
            steps in proptest::collection::vec((feature_set(), end()), 1..40)
        ) {
            let mut s = StagedState::default();
            for (i, (desired, end)) in steps.into_iter().enumerate() {
                let (next, t) = transition(s, desired, end, Timestamp(i as i64));
                let removal_pending =
                    s.effective.password_route().is_some() && desired.password_route().is_none();
                match end {
                    SignInEnd::InteractiveCompleted => prop_assert_eq!(next.effective, desired),
                    SignInEnd::ManagedCredentialUnavailable if removal_pending => {
                        prop_assert_eq!(next.effective, desired)
                    }
                    _ => prop_assert_eq!(next, s),
                }
                prop_assert_eq!(t.is_some(), next.effective != s.effective);
                if let Some(t) = t {
                    prop_assert_eq!(t.before.union(t.enabled).minus(t.removed), t.after);
                }
                s = next;
            }
        }

        /// The features are a set: serialisation round-trips any of them.
        #[test]
        fn feature_sets_roundtrip(s in feature_set()) {
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(serde_json::from_str::<FeatureSet>(&json).unwrap(), s);
        }
    }
}
