//! Staged rollout over HTTP (SPEC §4): feature rollout policies in the Graph shape
//! (`/api/v1/policies/featureRolloutPolicies`, `…/{id}/appliesTo`), their progress
//! (`…/{id}/progress`: where the groups' members stand), a user's desired and
//! effective state (`/api/v1/users/{id}/stagedRollout`), and the domain cut-over with its
//! preflight (`/api/v1/domains/{id}/convert`). The rules and decisions are in
//! `cutover_core::{staged, routing, domain_cutover}`; this module loads facts and writes results.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use cutover_core::domain_cutover::{
    CutoverFacts, MAX_LISTED, Preflight, RECENT_FEDERATED_WINDOW_DAYS, preflight_to_managed,
    rollback_identity_provider,
};
use cutover_core::limits::{MAX_ATTRIBUTE_LEN, MAX_DISPLAY_NAME_LEN, MAX_PAGE_SIZE};
use cutover_core::routing::{Route, RoutingInput, route_sign_in};
use cutover_core::staged::{
    AdmissionFacts, FeatureRolloutPolicy, FeatureSet, HoldReason, MemberFacts, MemberProgress,
    ProgressTally, RolloutFeature, RolloutIndex, RuleViolation, admissible, eligibility,
    member_progress,
};
use cutover_core::{
    ClientAppType, Domain, DomainAuthentication, DomainName, FederationConfig, ManagedConfig,
    PasswordValidation, User,
};
use cutover_proto::ListResponse;
use cutover_proto::federation as proto;
use cutover_store::{StoreError, UserRecord};
use serde_json::json;
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit, created, domain_view, find_user, opt_text, text};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

const POLICIES: &str = "/policies/featureRolloutPolicies";

/// A progress report counts at most this many members per group of a policy; a bigger group is
/// reported as `truncated` (its first members by id are counted).
pub const MAX_PROGRESS_MEMBERS_PER_GROUP: u64 = 100_000;

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(POLICIES, get(list_policies).post(create_policy))
        .route(
            &format!("{POLICIES}/{{id}}"),
            get(get_policy).patch(update_policy).delete(delete_policy),
        )
        .route(
            &format!("{POLICIES}/{{id}}/appliesTo"),
            get(list_applies_to).post(add_applies_to),
        )
        .route(
            &format!("{POLICIES}/{{id}}/appliesTo/$ref"),
            post(add_applies_to),
        )
        .route(&format!("{POLICIES}/{{id}}/progress"), get(policy_progress))
        .route(
            &format!("{POLICIES}/{{id}}/appliesTo/{{group}}"),
            delete(remove_applies_to),
        )
        .route(
            &format!("{POLICIES}/{{id}}/appliesTo/{{group}}/$ref"),
            delete(remove_applies_to),
        )
        .route("/users/{id}/stagedRollout", get(staged_view))
        .route("/domains/{id}/convert", post(convert_domain))
}

/// The features a user's groups call for now (SPEC §4.3), from the enabled policies and the
/// user's direct groups. Cheap when no policy targets anything.
pub(crate) async fn desired_features(
    state: &AppState,
    user: &User,
    domain: Option<&Domain>,
) -> Result<FeatureSet, StoreError> {
    if eligibility(user, domain) != cutover_core::staged::Eligibility::Eligible {
        return Ok(FeatureSet::EMPTY);
    }
    let policies = state.store.list_rollout_policies().await?;
    let index = RolloutIndex::new(&policies);
    if !index.is_active() {
        return Ok(FeatureSet::EMPTY);
    }
    let groups = state.store.groups_of_member(user.id).await?;
    Ok(index.desired(user, domain, &groups))
}

/// What a switch of the user's staged state would aim for now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StagedTarget {
    /// What the user's groups call for.
    pub desired: FeatureSet,
    /// What a switch may apply (a password feature whose credential cannot be checked is held).
    pub admitted: FeatureSet,
    pub held: Option<HoldReason>,
}

/// [`desired_features`] and what of it may be applied (`staged::admissible`).
pub(crate) async fn staged_target(
    state: &AppState,
    user: &UserRecord,
    domain: Option<&Domain>,
) -> Result<StagedTarget, StoreError> {
    let desired = desired_features(state, &user.user, domain).await?;
    let (admitted, held) = admissible(
        desired,
        AdmissionFacts {
            has_password: user.synced_password.is_some() || user.password_hash.is_some(),
        },
    );
    Ok(StagedTarget {
        desired,
        admitted,
        held,
    })
}

/// While a user's domain is managed (or unknown), their staged-rollout state is frozen: it is
/// neither used nor changed, so converting the domain back to federated (the rollback) finds
/// everyone where the cut-over left them.
pub(crate) fn staged_state_frozen(user: &User, domain: Option<&Domain>) -> bool {
    matches!(
        eligibility(user, domain),
        cutover_core::staged::Eligibility::ManagedDomain
            | cutover_core::staged::Eligibility::UnknownDomain
    )
}

fn rule_error(v: RuleViolation) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, v.rule.code(), v.to_string())
}

async fn policy_view(
    state: &AppState,
    p: &FeatureRolloutPolicy,
) -> Result<proto::FeatureRolloutPolicyView, ApiError> {
    let mut applies_to = Vec::with_capacity(p.applies_to.len());
    for g in &p.applies_to {
        let name = state.store.get_group(*g).await?.map(|g| g.display_name);
        applies_to.push(proto::DirectoryObjectRef {
            id: *g,
            display_name: name,
        });
    }
    Ok(proto::FeatureRolloutPolicyView {
        id: p.id,
        display_name: p.display_name.clone(),
        description: p.description.clone(),
        feature: p.feature.as_str().into(),
        is_enabled: p.is_enabled,
        is_applied_to_organization: p.is_applied_to_organization,
        applies_to,
        created_date_time: rfc3339(p.created_at),
        updated_date_time: rfc3339(p.updated_at),
    })
}

/// The audit shape of a policy.
fn policy_audit(p: &FeatureRolloutPolicy) -> serde_json::Value {
    json!({
        "id": p.id,
        "displayName": p.display_name,
        "description": p.description,
        "feature": p.feature.as_str(),
        "isEnabled": p.is_enabled,
        "isAppliedToOrganization": p.is_applied_to_organization,
        "appliesTo": p.applies_to,
    })
}

fn feature(raw: &str) -> Result<RolloutFeature, ApiError> {
    RolloutFeature::parse(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "feature must be one of {}, not '{}'",
            RolloutFeature::ALL.map(|f| f.as_str()).join(", "),
            raw.chars().take(64).collect::<String>()
        ))
    })
}

fn parse_uuid(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not a {what} id",
            raw.chars().take(80).collect::<String>()
        ))
    })
}

async fn find_policy(state: &AppState, id: &str) -> Result<FeatureRolloutPolicy, ApiError> {
    let id = parse_uuid("feature rollout policy", id)?;
    state
        .store
        .get_rollout_policy(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no feature rollout policy {id}")))
}

async fn list_policies(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<ListResponse<proto::FeatureRolloutPolicyView>>, ApiError> {
    let mut value = vec![];
    for p in state.store.list_rollout_policies().await? {
        value.push(policy_view(&state, &p).await?);
    }
    Ok(Json(ListResponse::new(value)))
}

async fn get_policy(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::FeatureRolloutPolicyView>, ApiError> {
    let p = find_policy(&state, &id).await?;
    Ok(Json(policy_view(&state, &p).await?))
}

async fn create_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateFeatureRolloutPolicy>,
) -> Result<Response, ApiError> {
    let now = state.now();
    let p = FeatureRolloutPolicy {
        id: Uuid::now_v7(),
        display_name: text("displayName", &req.display_name, MAX_DISPLAY_NAME_LEN)?,
        description: opt_text("description", req.description.as_deref(), MAX_ATTRIBUTE_LEN)?,
        feature: feature(&req.feature)?,
        is_enabled: req.is_enabled,
        is_applied_to_organization: req.is_applied_to_organization,
        applies_to: vec![],
        created_at: now,
        updated_at: now,
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        "createFeatureRolloutPolicy",
        (
            "featureRolloutPolicy",
            p.id.to_string(),
            Some(p.display_name.clone()),
        ),
        None,
        Some(policy_audit(&p)),
    );
    state
        .store
        .create_rollout_policy(&p, &a)
        .await?
        .map_err(rule_error)?;
    tracing::info!(policy = %p.id, feature = %p.feature, enabled = p.is_enabled, "feature rollout policy created");
    Ok(created(policy_view(&state, &p).await?))
}

async fn update_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::UpdateFeatureRolloutPolicy>,
) -> Result<Json<proto::FeatureRolloutPolicyView>, ApiError> {
    let before = find_policy(&state, &id).await?;
    let mut p = before.clone();
    if let Some(v) = &req.display_name {
        p.display_name = text("displayName", v, MAX_DISPLAY_NAME_LEN)?;
    }
    if let Some(v) = &req.description {
        p.description = opt_text("description", Some(v), MAX_ATTRIBUTE_LEN)?;
    }
    if let Some(v) = &req.feature {
        p.feature = feature(v)?;
    }
    if let Some(v) = req.is_enabled {
        p.is_enabled = v;
    }
    if let Some(v) = req.is_applied_to_organization {
        p.is_applied_to_organization = v;
    }
    let now = state.now();
    p.updated_at = now;
    // Turning a policy on or off is its own audit action (SPEC §4.4).
    let action = match (before.is_enabled, p.is_enabled) {
        (false, true) => "enableFeatureRolloutPolicy",
        (true, false) => "disableFeatureRolloutPolicy",
        _ => "updateFeatureRolloutPolicy",
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        action,
        (
            "featureRolloutPolicy",
            p.id.to_string(),
            Some(p.display_name.clone()),
        ),
        Some(policy_audit(&before)),
        Some(policy_audit(&p)),
    );
    let stored = state
        .store
        .update_rollout_policy(&p, &a)
        .await?
        .map_err(rule_error)?;
    tracing::info!(policy = %p.id, action, "feature rollout policy changed");
    Ok(Json(policy_view(&state, &stored).await?))
}

async fn delete_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let before = find_policy(&state, &id).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        "deleteFeatureRolloutPolicy",
        (
            "featureRolloutPolicy",
            before.id.to_string(),
            Some(before.display_name.clone()),
        ),
        Some(policy_audit(&before)),
        None,
    );
    state.store.delete_rollout_policy(before.id, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_applies_to(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ListResponse<proto::DirectoryObjectRef>>, ApiError> {
    let p = find_policy(&state, &id).await?;
    Ok(Json(ListResponse::new(
        policy_view(&state, &p).await?.applies_to,
    )))
}

/// The group id of an `appliesTo` body: `{"id": …}` or Graph's `{"@odata.id": "…/<id>"}`.
fn applies_to_group(req: &proto::AddAppliesTo) -> Result<Uuid, ApiError> {
    let raw = match (&req.id, &req.odata_id) {
        (Some(id), _) => id.as_str(),
        (None, Some(odata)) => odata.rsplit('/').next().unwrap_or(""),
        (None, None) => {
            return Err(ApiError::bad_request(
                "name the group: {\"id\": \"<group id>\"} (or {\"@odata.id\": \".../directoryObjects/<group id>\"})",
            ));
        }
    };
    parse_uuid("group", raw)
}

async fn add_applies_to(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::AddAppliesTo>,
) -> Result<Json<proto::FeatureRolloutPolicyView>, ApiError> {
    let before = find_policy(&state, &id).await?;
    let group_id = applies_to_group(&req)?;
    let group = state
        .store
        .get_group(group_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group {group_id}")))?;
    let now = state.now();
    let a = audit(
        &ctx,
        &admin,
        now,
        "addFeatureRolloutGroup",
        (
            "featureRolloutPolicy",
            before.id.to_string(),
            Some(before.display_name.clone()),
        ),
        Some(policy_audit(&before)),
        Some(json!({
            "feature": before.feature.as_str(),
            "groupId": group.id,
            "groupDisplayName": group.display_name,
        })),
    );
    let after = state
        .store
        .add_rollout_group(before.id, group_id, now, &a)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ApiError::not_found(format!("the policy or group {group_id} no longer exists"))
            }
            other => other.into(),
        })?
        .map_err(rule_error)?;
    tracing::info!(policy = %before.id, feature = %before.feature, group = %group.display_name, "group added to staged rollout; its members switch at their next interactive sign-in");
    Ok(Json(policy_view(&state, &after).await?))
}

async fn remove_applies_to(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, group)): Path<(String, String)>,
) -> Result<Json<proto::FeatureRolloutPolicyView>, ApiError> {
    let before = find_policy(&state, &id).await?;
    let group_id = parse_uuid("group", &group)?;
    let now = state.now();
    let a = audit(
        &ctx,
        &admin,
        now,
        "removeFeatureRolloutGroup",
        (
            "featureRolloutPolicy",
            before.id.to_string(),
            Some(before.display_name.clone()),
        ),
        Some(policy_audit(&before)),
        Some(json!({ "feature": before.feature.as_str(), "groupId": group_id })),
    );
    let after = state
        .store
        .remove_rollout_group(before.id, group_id, now, &a)
        .await?
        .map_err(rule_error)?;
    tracing::info!(policy = %before.id, feature = %before.feature, %group_id, "group removed from staged rollout; its members return at their next interactive sign-in");
    Ok(Json(policy_view(&state, &after).await?))
}

fn progress_totals(t: &ProgressTally) -> proto::RolloutProgressTotals {
    use MemberProgress::*;
    proto::RolloutProgressTotals {
        members: t.members(),
        switched: t.count(Switched),
        pending: t.count(Pending),
        held: t.count(Held),
        returning: t.count(Returning),
        not_enabled: t.count(NotEnabled),
        needs_password_feature: t.count(NeedsPasswordFeature),
        not_eligible: t.count(NotEligible),
    }
}

fn progress_samples(t: &ProgressTally) -> proto::RolloutProgressSamples {
    use MemberProgress::*;
    proto::RolloutProgressSamples {
        pending: t.sample(Pending),
        held: t.sample(Held),
        returning: t.sample(Returning),
        not_enabled: t.sample(NotEnabled),
        needs_password_feature: t.sample(NeedsPasswordFeature),
        not_eligible: t.sample(NotEligible),
    }
}

/// Where the direct user members of each group of a policy stand with its feature
/// (`staged::member_progress`), per group and in total (each user once), with a sample of
/// names per category. Reads each group page by page, up to
/// [`MAX_PROGRESS_MEMBERS_PER_GROUP`] members.
async fn policy_progress(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::RolloutProgressView>, ApiError> {
    let policy = find_policy(&state, &id).await?;
    let index = RolloutIndex::new(&state.store.list_rollout_policies().await?);
    let domains: HashMap<String, Domain> = state
        .store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| (d.name.as_str().to_owned(), d))
        .collect();
    let mut total = ProgressTally::default();
    let mut counted: HashSet<Uuid> = HashSet::new();
    let mut groups = Vec::with_capacity(policy.applies_to.len());
    for group_id in &policy.applies_to {
        // Removed meanwhile: nothing to report.
        let Some(group) = state.store.get_group(*group_id).await? else {
            continue;
        };
        let mut tally = ProgressTally::default();
        let mut truncated = false;
        let mut after = None;
        'pages: loop {
            let page = state
                .store
                .rollout_group_members(group.id, after, MAX_PAGE_SIZE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.user.id);
            for row in &page {
                if tally.members() >= MAX_PROGRESS_MEMBERS_PER_GROUP {
                    truncated = true;
                    break 'pages;
                }
                let domain = domains.get(row.user.upn.domain().as_str());
                let progress = member_progress(
                    policy.feature,
                    policy.is_enabled,
                    MemberFacts {
                        eligibility: eligibility(&row.user, domain),
                        effective: row.staged.effective,
                        desired: index.desired(&row.user, domain, &row.rollout_groups),
                        has_password: row.has_password,
                    },
                );
                tally.add(progress, &row.user.upn);
                if counted.insert(row.user.id) {
                    total.add(progress, &row.user.upn);
                }
            }
        }
        groups.push(proto::RolloutGroupProgress {
            id: group.id,
            display_name: group.display_name,
            totals: progress_totals(&tally),
            samples: progress_samples(&tally),
            truncated,
        });
    }
    Ok(Json(proto::RolloutProgressView {
        policy_id: policy.id,
        feature: policy.feature.as_str().into(),
        is_enabled: policy.is_enabled,
        totals: progress_totals(&total),
        truncated: groups.iter().any(|g| g.truncated),
        groups,
    }))
}

async fn staged_view(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::StagedRolloutView>, ApiError> {
    let record = find_user(&state, &id).await?;
    let user = record.user.clone();
    let domain = state.store.get_domain(user.upn.domain().as_str()).await?;
    let staged = state.store.get_staged_state(user.id).await?;
    let target = staged_target(&state, &record, domain.as_ref()).await?;
    let desired = target.desired;
    let frozen = staged_state_frozen(&user, domain.as_ref());
    // The next browser sign-in's route, as the identifier step will take it: a usable
    // Temporary Access Pass comes first.
    let usable_tap = crate::tap::usable_pass(&state, user.id, state.now())
        .await?
        .is_some();
    let decision = route_sign_in(RoutingInput {
        domain: domain.as_ref(),
        user: Some(&user),
        effective: staged.effective,
        client_app_type: ClientAppType::Browser,
        domain_hint: false,
        usable_tap,
    });
    let policies = state.store.list_rollout_policies().await?;
    let mut groups = vec![];
    for g in state.store.groups_of_member(user.id).await? {
        let features: Vec<String> = policies
            .iter()
            .filter(|p| p.applies_to.contains(&g))
            .map(|p| {
                if p.is_enabled {
                    p.feature.as_str().to_owned()
                } else {
                    format!("{} (policy disabled)", p.feature)
                }
            })
            .collect();
        if features.is_empty() {
            continue;
        }
        let name = state
            .store
            .get_group(g)
            .await?
            .map(|g| g.display_name)
            .unwrap_or_default();
        groups.push(proto::StagedGroup {
            id: g,
            display_name: name,
            features,
        });
    }
    Ok(Json(proto::StagedRolloutView {
        user_id: user.id,
        user_principal_name: user.upn.to_string(),
        eligibility: eligibility(&user, domain.as_ref()).code().into(),
        desired: desired.names(),
        effective: staged.effective.names(),
        effective_since: staged.changed_at.map(rfc3339),
        pending_change: !frozen && target.admitted != staged.effective,
        held: target.held.map(|h| h.code().into()),
        route: proto::RouteView {
            route: decision.route.as_str().into(),
            credential: match decision.route {
                Route::Managed { credential } => Some(credential.as_str().into()),
                Route::Federated { .. } => None,
            },
            reason: decision.reason.code().into(),
            why: decision.reason.explain().into(),
            staged_feature: decision.staged_feature.map(|f| f.as_str().into()),
        },
        groups,
    }))
}

// ---- domain cut-over ------------------------------------------------------------------------

async fn preflight(
    state: &AppState,
    domain: &Domain,
    validation: PasswordValidation,
) -> Result<Preflight, ApiError> {
    let now = state.now();
    let coverage = state
        .store
        .domain_password_coverage(domain.name.as_str(), MAX_LISTED as u32)
        .await?;
    let recent = state
        .store
        .federated_sign_ins(
            domain.name.as_str(),
            now.plus_secs(-RECENT_FEDERATED_WINDOW_DAYS * 86_400),
            MAX_LISTED as u32,
        )
        .await?;
    let facts = CutoverFacts {
        synced_users: coverage.synced_users,
        without_hash_sample: coverage.without_hash_sample,
        without_hash_total: coverage.without_hash_total,
        healthy_agents: {
            let agents = state.store.list_agents().await?;
            crate::pta::fleet_of(&agents, now).0 as u32
        },
        break_glass: state.store.break_glass_accounts().await?,
        recent_federated: recent,
    };
    Ok(preflight_to_managed(&facts, validation, now))
}

async fn convert_domain(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::ConvertDomain>,
) -> Result<Response, ApiError> {
    let name = DomainName::parse(&id).map_err(|e| ApiError::bad_request(format!("id: {e}")))?;
    let domain = state
        .store
        .get_domain(name.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("domain {name} is not registered")))?;
    let from = if domain.is_federated() {
        "federated"
    } else {
        "managed"
    };
    let (target, preflight) = match req.to.as_str() {
        "managed" => {
            let DomainAuthentication::Federated(fed) = &domain.authentication else {
                return Err(ApiError::conflict(format!(
                    "domain {name} is already managed"
                )));
            };
            if req.identity_provider_id.is_some() {
                return Err(ApiError::bad_request(
                    "identityProviderId applies only to a conversion to federated",
                ));
            }
            let validation = match req.password_validation.as_deref() {
                None => PasswordValidation::PasswordHashSync,
                Some(v) => PasswordValidation::parse(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "passwordValidation must be passwordHashSync or passthroughAuthentication, not '{}'",
                        v.chars().take(64).collect::<String>()
                    ))
                })?,
            };
            let p = preflight(&state, &domain, validation).await?;
            (
                DomainAuthentication::Managed(ManagedConfig {
                    password_validation: validation,
                    previous_identity_provider_id: fed.identity_provider_id,
                }),
                p,
            )
        }
        "federated" => {
            if req.password_validation.is_some() {
                return Err(ApiError::bad_request(
                    "passwordValidation applies only to a conversion to managed",
                ));
            }
            let previous = match &domain.authentication {
                DomainAuthentication::Managed(m) => m.previous_identity_provider_id,
                DomainAuthentication::Federated(_) => {
                    return Err(ApiError::conflict(format!(
                        "domain {name} is already federated"
                    )));
                }
            };
            let idp = rollback_identity_provider(req.identity_provider_id, previous)
                .map_err(ApiError::bad_request)?;
            if state.store.get_identity_provider(idp).await?.is_none() {
                return Err(ApiError::bad_request(format!(
                    "identity provider {idp} is not registered (GET /api/v1/identityProviders); name another with identityProviderId"
                )));
            }
            // The rollback is always allowed: no blocking checks.
            (
                DomainAuthentication::Federated(FederationConfig {
                    identity_provider_id: Some(idp),
                }),
                Preflight {
                    allowed: true,
                    checks: vec![],
                },
            )
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "to must be managed or federated, not '{}'",
                other.chars().take(64).collect::<String>()
            )));
        }
    };
    let mut result = proto::ConvertDomainResult {
        domain: name.to_string(),
        from: from.into(),
        to: req.to.clone(),
        dry_run: req.dry_run,
        converted: false,
        preflight,
    };
    if req.dry_run {
        return Ok(Json(result).into_response());
    }
    if !result.preflight.allowed {
        tracing::warn!(domain = %name, "domain cut-over refused by its preflight");
        return Ok((StatusCode::CONFLICT, Json(result)).into_response());
    }
    let after = Domain {
        authentication: target,
        ..domain.clone()
    };
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        if req.to == "managed" {
            "convertDomainToManaged"
        } else {
            "convertDomainToFederated"
        },
        ("domain", name.to_string(), Some(name.to_string())),
        Some(json!(domain_view(&domain))),
        Some(json!({ "domain": domain_view(&after), "preflight": result.preflight })),
    );
    state
        .store
        .set_domain_authentication(name.as_str(), &after.authentication, &a)
        .await?;
    tracing::info!(domain = %name, from, to = %req.to, "domain converted");
    result.converted = true;
    Ok(Json(result).into_response())
}
