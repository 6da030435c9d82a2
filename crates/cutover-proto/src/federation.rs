//! Wire types for federation and staged rollout: upstream identity providers
//! (`/api/v1/identityProviders`), feature rollout policies
//! (`/api/v1/policies/featureRolloutPolicies`, the Graph shape) and their progress
//! (`…/{id}/progress`), a user's staged-rollout state (`/api/v1/users/{id}/stagedRollout`) and
//! the domain cut-over (`/api/v1/domains/{id}/convert`).

use cutover_core::domain_cutover::Preflight;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/v1/identityProviders`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateIdentityProvider {
    pub display_name: String,
    /// `https://…` (or `http://` on loopback); discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Write-only: never returned.
    pub client_secret: String,
    /// Scopes besides `openid` (default `["openid", "profile", "email"]`).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The ID-token claim carrying the on-prem immutable id (default `sub`).
    #[serde(default)]
    pub immutable_id_claim: Option<String>,
    /// Fall back to matching by user principal name when no user has the immutable id.
    #[serde(default)]
    pub fallback_to_upn: bool,
    /// The claim carrying the UPN for the fallback (default `upn`).
    #[serde(default)]
    pub upn_claim: Option<String>,
}

impl std::fmt::Debug for CreateIdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateIdentityProvider")
            .field("display_name", &self.display_name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish_non_exhaustive()
    }
}

/// `PATCH /api/v1/identityProviders/{id}`: only the fields given change.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateIdentityProvider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_id_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_to_upn: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn_claim: Option<String>,
}

impl std::fmt::Debug for UpdateIdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateIdentityProvider")
            .field("display_name", &self.display_name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProviderView {
    pub id: Uuid,
    pub display_name: String,
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub immutable_id_claim: String,
    pub fallback_to_upn: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn_claim: Option<String>,
    /// The redirect URI to register at the upstream for this client.
    pub redirect_uri: String,
    /// Domains federated to this IdP.
    #[serde(default)]
    pub domains: Vec<String>,
    pub created_date_time: String,
    pub updated_date_time: String,
}

/// `POST /api/v1/policies/featureRolloutPolicies`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFeatureRolloutPolicy {
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `passwordHashSync | passthroughAuthentication | seamlessSso |
    /// certificateBasedAuthentication | multiFactorAuthentication`.
    pub feature: String,
    #[serde(default)]
    pub is_enabled: bool,
    #[serde(default)]
    pub is_applied_to_organization: bool,
}

/// `PATCH /api/v1/policies/featureRolloutPolicies/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateFeatureRolloutPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_applied_to_organization: Option<bool>,
}

/// A group in a policy's `appliesTo`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObjectRef {
    pub id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureRolloutPolicyView {
    pub id: Uuid,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub feature: String,
    pub is_enabled: bool,
    pub is_applied_to_organization: bool,
    pub applies_to: Vec<DirectoryObjectRef>,
    pub created_date_time: String,
    pub updated_date_time: String,
}

/// `POST …/{id}/appliesTo` (or `…/appliesTo/$ref`): `{"id": "<group id>"}` or the Graph form
/// `{"@odata.id": "…/directoryObjects/<group id>"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAppliesTo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "@odata.id", default, skip_serializing_if = "Option::is_none")]
    pub odata_id: Option<String>,
}

/// How a sign-in by this user would be routed now (a browser app, no hint).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteView {
    /// `managed` | `federated`.
    pub route: String,
    /// `password | passwordHashSync | passthroughAuthentication | temporaryAccessPass` on a
    /// managed route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Machine-readable reason (the sign-in log's `routeReason`).
    pub reason: String,
    /// The reason in a sentence.
    pub why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_feature: Option<String>,
}

/// `GET /api/v1/users/{id}/stagedRollout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedRolloutView {
    pub user_id: Uuid,
    pub user_principal_name: String,
    /// `eligible | cloudOnlyUser | managedDomain | breakGlassAccount | unknownDomain`.
    pub eligibility: String,
    /// Features the user's groups call for now.
    pub desired: Vec<String>,
    /// Features that route the user's sign-ins now.
    pub effective: Vec<String>,
    /// When the effective features last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_since: Option<String>,
    /// The next completed interactive sign-in switches the effective features.
    pub pending_change: bool,
    /// A desired feature held back from the switch, and why (`noSyncedPasswordHash`: moving
    /// the user to password hash sync would lock them out until their hash is synced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The route of the next browser sign-in, and why.
    pub route: RouteView,
    /// The user's groups that are in a rollout policy, with the features they grant.
    pub groups: Vec<StagedGroup>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedGroup {
    pub id: Uuid,
    pub display_name: String,
    pub features: Vec<String>,
}

/// `POST /api/v1/domains/{id}/convert`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConvertDomain {
    /// `managed` (the cut-over) or `federated` (the rollback).
    pub to: String,
    /// For `managed`: `passwordHashSync` (default) or `passthroughAuthentication`.
    #[serde(default)]
    pub password_validation: Option<String>,
    /// For `federated`: the IdP (default: the one the domain used before its cut-over).
    #[serde(default)]
    pub identity_provider_id: Option<Uuid>,
    /// Run the preflight only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConvertDomainResult {
    pub domain: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// The conversion was made (false on a dry run or a refused preflight).
    pub converted: bool,
    pub preflight: Preflight,
}

/// `GET /api/v1/policies/featureRolloutPolicies/{id}/progress`: where the direct user members
/// of the policy's groups stand with its feature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgressView {
    pub policy_id: Uuid,
    pub feature: String,
    pub is_enabled: bool,
    /// Every group together; a user in several of the groups counts once.
    pub totals: RolloutProgressTotals,
    /// In the policy's order.
    pub groups: Vec<RolloutGroupProgress>,
    /// Some group had more members than the server counts per group.
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutGroupProgress {
    pub id: Uuid,
    pub display_name: String,
    pub totals: RolloutProgressTotals,
    /// Up to 20 user principal names per non-empty category (switched members are not
    /// listed), the first by name.
    #[serde(default)]
    pub samples: RolloutProgressSamples,
    /// The group has more members than the server counts per group: only the first (by user
    /// id) are in `totals`.
    #[serde(default)]
    pub truncated: bool,
}

/// How many members are in each category; the categories add up to `members`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgressTotals {
    pub members: u64,
    /// The feature is effective.
    pub switched: u64,
    /// The next completed interactive sign-in switches the feature on.
    pub pending: u64,
    /// Pending, but held back until the user's password hash is synced.
    pub held: u64,
    /// The feature is effective but no longer applies: the next sign-in removes it.
    pub returning: u64,
    /// The policy is disabled and the feature is not effective.
    pub not_enabled: u64,
    /// `seamlessSso` for a user in no group of an enabled password policy.
    #[serde(default)]
    pub needs_password_feature: u64,
    /// Cloud-only users, break-glass accounts, users of managed or unknown domains.
    pub not_eligible: u64,
}

/// Sampled user principal names per category (absent when none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgressSamples {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returning: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_enabled: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_password_feature: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_eligible: Vec<String>,
}
