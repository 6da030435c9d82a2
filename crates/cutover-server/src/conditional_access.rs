//! Conditional Access over HTTP (SPEC §8): the policies and named locations
//! (`/api/v1/identity/conditionalAccess/…`), the what-if tool (`…/evaluate`), the impact
//! report (`…/policies/{id}/impact`) and the enforcement gate on the switch to `enabled`; and
//! the one function every token path calls, [`evaluate_sign_in`].
//!
//! The rules are `cutover_core::conditional_access` (pure); this module loads policies and
//! facts, asks the engine, and turns its decision into a page, a step-up or an OAuth error.
//! Policies are read through a short cache ([`POLICY_CACHE_TTL`]): a change made on one node is
//! in force on every node within that time (at once on the node that made it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cutover_core::conditional_access::{
    CaResult, CheckedPolicy, ConditionalAccessPolicy, DEFAULT_INTERRUPTION_THRESHOLD_PERCENT,
    Decision, Evaluation, ImpactRecord, MAX_NAMED_LOCATIONS, MAX_POLICIES,
    MIN_REPORT_ONLY_EVIDENCE_SECS, NamedLocation, NamedLocations, PolicyContext, PolicyState,
    RegisteredMethods, SignInFacts, evaluate, gate, impact,
};
use cutover_core::strength::{UsedMethod, methods_from_amr};
use cutover_core::{ClientAppType, Timestamp};
use cutover_store::{AuditEvent, CaPolicyRow, Cursor, NamedLocationRow, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit, find_user};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

/// How long a node serves policies it read before reading them again.
pub const POLICY_CACHE_TTL: Duration = Duration::from_secs(1);
/// The default and shortest window of the impact report and the gate.
pub const IMPACT_WINDOW_SECS: i64 = MIN_REPORT_ONLY_EVIDENCE_SECS;
/// Sign-in records read per page by the impact report; the report stops after
/// [`MAX_IMPACT_RECORDS`].
const IMPACT_PAGE: u32 = 1_000;
pub const MAX_IMPACT_RECORDS: usize = 100_000;

pub const CREATE_ACTION: &str = "createConditionalAccessPolicy";
pub const UPDATE_ACTION: &str = "updateConditionalAccessPolicy";
pub const FORCE_ACTION: &str = "forceEnableConditionalAccessPolicy";
pub const DELETE_ACTION: &str = "deleteConditionalAccessPolicy";
pub const LOCATION_CREATE_ACTION: &str = "createNamedLocation";
pub const LOCATION_UPDATE_ACTION: &str = "updateNamedLocation";
pub const LOCATION_DELETE_ACTION: &str = "deleteNamedLocation";

const BASE: &str = "/identity/conditionalAccess";

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            &format!("{BASE}/policies"),
            get(list_policies).post(create_policy),
        )
        .route(
            &format!("{BASE}/policies/{{id}}"),
            get(get_policy).patch(patch_policy).delete(delete_policy),
        )
        .route(
            &format!("{BASE}/policies/{{id}}/impact"),
            get(policy_impact),
        )
        .route(
            &format!("{BASE}/namedLocations"),
            get(list_locations).post(create_location),
        )
        .route(
            &format!("{BASE}/namedLocations/{{id}}"),
            get(get_location)
                .patch(patch_location)
                .delete(delete_location),
        )
        .route(&format!("{BASE}/evaluate"), post(what_if))
        .route(
            &format!("{BASE}/gateSettings"),
            get(get_gate_settings).put(put_gate_settings),
        )
}

pub const GATE_SETTINGS_ACTION: &str = "updateConditionalAccessGateSettings";

#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GateSettings {
    /// Enabling a policy is refused when more than this percentage of its users would have
    /// been interrupted or blocked over the last 48 hours.
    interruption_threshold_percent: f64,
}

async fn get_gate_settings(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<GateSettings>, ApiError> {
    Ok(Json(GateSettings {
        interruption_threshold_percent: gate_threshold(&state).await?,
    }))
}

async fn put_gate_settings(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<GateSettings>,
) -> Result<Json<GateSettings>, ApiError> {
    let t = req.interruption_threshold_percent;
    if !(0.0..=100.0).contains(&t) {
        return Err(ApiError::bad_request(
            "interruptionThresholdPercent: between 0 and 100",
        ));
    }
    let before = gate_threshold(&state).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        GATE_SETTINGS_ACTION,
        ("setting", GATE_THRESHOLD_SETTING.into(), None),
        Some(json!({"interruptionThresholdPercent": before})),
        Some(json!({"interruptionThresholdPercent": t})),
    );
    state
        .store
        .put_setting(GATE_THRESHOLD_SETTING, &t.to_string(), &a)
        .await?;
    Ok(Json(req))
}

/// The checked policies in force, cached for [`POLICY_CACHE_TTL`].
#[derive(Default)]
pub struct PolicyCache(Mutex<Option<(Instant, Arc<Vec<CheckedPolicy>>)>>);

impl PolicyCache {
    fn invalidate(&self) {
        if let Ok(mut c) = self.0.lock() {
            *c = None;
        }
    }
}

/// The rows as the engine's model; a row that no longer reads is logged and skipped (the
/// API never stores one).
fn parse_rows(rows: &[CaPolicyRow]) -> Vec<ConditionalAccessPolicy> {
    rows.iter()
        .filter_map(|r| match serde_json::from_str(&r.policy) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(policy = %r.id, error = %e, "a stored Conditional Access policy cannot be read; it is not evaluated until it is saved again");
                None
            }
        })
        .collect()
}

async fn named_locations(state: &AppState) -> Result<Vec<NamedLocation>, StoreError> {
    Ok(state
        .store
        .list_named_locations()
        .await?
        .iter()
        .filter_map(|r| serde_json::from_str(&r.location).ok())
        .collect())
}

/// Check `policies` against the stored named locations.
async fn check_all(
    state: &AppState,
    policies: &[ConditionalAccessPolicy],
) -> Result<Vec<CheckedPolicy>, StoreError> {
    let locations = NamedLocations::check(&named_locations(state).await?).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the stored named locations do not check; evaluating without them");
        NamedLocations::default()
    });
    let strengths = BTreeMap::new();
    let ctx = PolicyContext {
        locations: &locations,
        custom_strengths: &strengths,
    };
    Ok(policies
        .iter()
        .filter_map(|p| match p.check(&ctx) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(policy = %p.id, error = %e, "a stored Conditional Access policy no longer checks; it is not evaluated until fixed");
                None
            }
        })
        .collect())
}

/// The policies the engine evaluates (enabled and report-only; the engine skips disabled ones).
pub async fn policies_in_force(state: &AppState) -> Result<Arc<Vec<CheckedPolicy>>, StoreError> {
    if let Ok(c) = state.ca_policies.0.lock()
        && let Some((at, p)) = c.as_ref()
        && at.elapsed() < POLICY_CACHE_TTL
    {
        return Ok(p.clone());
    }
    let rows = state.store.list_ca_policies().await?;
    let checked = Arc::new(check_all(state, &parse_rows(&rows)).await?);
    if let Ok(mut c) = state.ca_policies.0.lock() {
        *c = Some((Instant::now(), checked.clone()));
    }
    Ok(checked)
}

/// What the engine needs to know about a sign-in that the caller has at hand.
pub struct SignInContext<'a> {
    pub user: &'a cutover_store::UserRecord,
    pub app_id: Uuid,
    pub client_app_type: ClientAppType,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// `amr` of what was done so far.
    pub amr: &'a [String],
    pub auth_time: Timestamp,
}

/// Which methods the user could still use to step up.
pub async fn registered_methods(
    state: &AppState,
    user: &cutover_store::UserRecord,
) -> Result<RegisteredMethods, StoreError> {
    let totp = state
        .store
        .get_totp(user.user.id)
        .await?
        .is_some_and(|t| t.confirmed_at.is_some());
    let passkey =
        state.passkeys.rp.is_some() && !state.store.list_passkeys(user.user.id).await?.is_empty();
    Ok(RegisteredMethods {
        password: user.password_hash.is_some() || user.synced_password.is_some(),
        totp,
        passkey,
    })
}

/// Evaluate every enabled and report-only policy for one sign-in or token issuance.
pub async fn evaluate_sign_in(
    state: &AppState,
    c: &SignInContext<'_>,
) -> Result<Evaluation, StoreError> {
    let policies = policies_in_force(state).await?;
    let groups: BTreeSet<Uuid> = crate::passkeys::user_groups(state, c.user.user.id).await?;
    let methods: Vec<UsedMethod> = methods_from_amr(c.amr);
    let platform = cutover_core::signin_log::device_platform(c.user_agent.unwrap_or(""));
    let can_satisfy = registered_methods(state, c.user).await?;
    let ip: Option<IpAddr> = c.ip.and_then(|i| i.parse().ok());
    let facts = SignInFacts {
        user_id: c.user.user.id,
        groups: &groups,
        break_glass: c.user.user.break_glass,
        app_id: c.app_id,
        client_app_type: c.client_app_type,
        ip,
        platform,
        methods: &methods,
        auth_time: c.auth_time,
        now: state.now(),
        can_satisfy,
    };
    let evaluation = evaluate(&policies, &facts);
    if evaluation.decision != Decision::Allow {
        tracing::info!(user = %c.user.user.upn, decision = %evaluation.decision.explain(), "Conditional Access did not simply allow this sign-in");
    }
    Ok(evaluation)
}

// --- policies ------------------------------------------------------------------------------

/// Stored JSON as the API shows it: with the server's times.
fn with_times(stored: &str, times: &[(&str, Timestamp)]) -> Value {
    let mut v: Value = serde_json::from_str(stored).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for (k, t) in times {
            m.insert((*k).into(), json!(rfc3339(*t)));
        }
    }
    v
}

/// A create body as a new object: the server's fields dropped, the id the server's.
fn new_object(mut body: Value, what: &str) -> Result<Value, ApiError> {
    strip_server_fields(&mut body);
    let Value::Object(m) = &mut body else {
        return Err(ApiError::bad_request(format!(
            "the {what} must be a JSON object"
        )));
    };
    if m.contains_key("id") {
        return Err(ApiError::bad_request(format!(
            "id: the server assigns a {what}'s id; leave it out"
        )));
    }
    m.insert("id".into(), json!(Uuid::now_v7()));
    Ok(body)
}

/// The stored object `stored` (id `id`) with a PATCH's top-level fields replaced; the
/// server's fields are dropped and the id cannot change.
fn merge_patch(stored: &str, id: Uuid, mut patch: Value, what: &str) -> Result<Value, ApiError> {
    strip_server_fields(&mut patch);
    let Value::Object(changes) = patch else {
        return Err(ApiError::bad_request("the change must be a JSON object"));
    };
    if changes.get("id").is_some_and(|v| v != &json!(id)) {
        return Err(ApiError::bad_request(format!(
            "id: a {what}'s id cannot change"
        )));
    }
    let mut merged: Value = serde_json::from_str(stored).map_err(ApiError::internal)?;
    if let Value::Object(m) = &mut merged {
        m.extend(changes);
    }
    Ok(merged)
}

fn policy_view(row: &CaPolicyRow) -> Value {
    with_times(
        &row.policy,
        &[
            ("createdDateTime", row.created_at),
            ("modifiedDateTime", row.modified_at),
            ("stateChangedDateTime", row.state_changed_at),
        ],
    )
}

fn bad_policy(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// Read a policy body (without server fields) as the engine's model and check it against the
/// stored named locations.
async fn checked_body(state: &AppState, body: Value) -> Result<ConditionalAccessPolicy, ApiError> {
    let policy: ConditionalAccessPolicy = serde_json::from_value(body).map_err(bad_policy)?;
    let locations = NamedLocations::check(&named_locations(state).await?).map_err(bad_policy)?;
    let strengths = BTreeMap::new();
    policy
        .check(&PolicyContext {
            locations: &locations,
            custom_strengths: &strengths,
        })
        .map_err(bad_policy)?;
    Ok(policy)
}

fn strip_server_fields(body: &mut Value) {
    if let Value::Object(m) = body {
        for k in [
            "createdDateTime",
            "modifiedDateTime",
            "stateChangedDateTime",
        ] {
            m.remove(k);
        }
    }
}

async fn find_policy(state: &AppState, key: &str) -> Result<CaPolicyRow, ApiError> {
    if let Ok(id) = Uuid::parse_str(key)
        && let Some(row) = state.store.get_ca_policy(id).await?
    {
        return Ok(row);
    }
    state
        .store
        .list_ca_policies()
        .await?
        .into_iter()
        .find(|r| r.display_name.eq_ignore_ascii_case(key))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no Conditional Access policy '{}'",
                key.chars().take(80).collect::<String>()
            ))
        })
}

async fn list_policies(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_ca_policies().await?;
    Ok(Json(
        json!({"value": rows.iter().map(policy_view).collect::<Vec<_>>()}),
    ))
}

async fn get_policy(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(policy_view(&find_policy(&state, &id).await?)))
}

fn store_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError::conflict(m),
        other => other.into(),
    }
}

async fn create_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let mut body = new_object(body, "policy")?;
    let Value::Object(m) = &mut body else {
        return Err(ApiError::internal("a new object that is not one"));
    };
    // A new policy starts report-only unless it says otherwise: enforcing one goes through
    // the gate, which needs report-only evidence first.
    let state_given = m.get("state").and_then(Value::as_str).map(str::to_owned);
    if state_given.is_none() {
        m.insert(
            "state".into(),
            json!(PolicyState::EnabledForReportingButNotEnforced),
        );
    }
    let policy = checked_body(&state, body).await?;
    if policy.state == PolicyState::Enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "enforcementGateRefused",
            "a new policy cannot start enabled: create it report-only (enabledForReportingButNotEnforced), let it gather 48 h of evidence, then enable it through the gate",
        ));
    }
    let now = state.now();
    let row = CaPolicyRow {
        id: policy.id,
        display_name: policy.display_name.clone(),
        state: policy.state.as_str().into(),
        policy: serde_json::to_string(&policy).map_err(ApiError::internal)?,
        created_at: now,
        modified_at: now,
        state_changed_at: now,
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        CREATE_ACTION,
        (
            "conditionalAccessPolicy",
            row.id.to_string(),
            Some(row.display_name.clone()),
        ),
        None,
        Some(json!(policy)),
    );
    state
        .store
        .create_ca_policy(&row, MAX_POLICIES as u32, &a)
        .await
        .map_err(store_conflict)?;
    state.ca_policies.invalidate();
    Ok((StatusCode::CREATED, Json(policy_view(&row))).into_response())
}

#[derive(Debug, Deserialize)]
struct ForceQuery {
    force: Option<bool>,
}

/// The impact of `policy` over `[since, now]` from the sign-in log, and what the gate says.
pub(crate) async fn impact_and_gate(
    state: &AppState,
    row: &CaPolicyRow,
    since: Timestamp,
) -> Result<
    (
        cutover_core::conditional_access::Impact,
        cutover_core::conditional_access::GateDecision,
    ),
    StoreError,
> {
    let now = state.now();
    // Evidence from an earlier version of the policy does not count.
    let changed = row.state_changed_at.max(row.modified_at);
    let window_start = since.max(changed);
    let mut records = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = state
            .store
            .ca_results_since(row.id, window_start, cursor, IMPACT_PAGE)
            .await?;
        let full = page.len() == IMPACT_PAGE as usize;
        cursor = page.last().map(|r| Cursor {
            created_at: r.created_at,
            id: r.id,
        });
        for r in &page {
            let Some(user_id) = r.user_id else { continue };
            for pr in r
                .conditional_access
                .iter()
                .filter(|p| p.policy_id == row.id)
            {
                let Some(result) = CaResult::parse(&pr.result) else {
                    continue;
                };
                records.push(ImpactRecord {
                    user_id,
                    user_principal_name: r.user_principal_name.clone().unwrap_or_default(),
                    platform: r
                        .device_platform
                        .clone()
                        .unwrap_or_else(|| "unknown".into()),
                    result,
                    reason: pr.reason.clone().unwrap_or_default(),
                    at: r.created_at,
                });
            }
        }
        if !full || records.len() >= MAX_IMPACT_RECORDS {
            break;
        }
    }
    let mut imp = impact(row.id, &records, window_start, now);
    // The rate is read over the window; the evidence is as old as the policy's current
    // report-only version (when it has recorded anything at all): a policy report-only for a
    // week has a week of evidence even when the rate is read over the last 48 hours.
    if imp.records > 0 && row.state == CaPolicyRow::REPORT_ONLY {
        imp.evidence_since = Some(changed);
    }
    let mut glass = state.store.break_glass_accounts().await?;
    // The gate reads a break-glass account's drill as its last successful sign-in: give it
    // the recorded drill.
    let drills: HashMap<Uuid, Timestamp> = state
        .store
        .break_glass_drills()
        .await?
        .into_iter()
        .collect();
    for g in &mut glass {
        let drilled = match cutover_core::UserPrincipalName::parse(&g.user_principal_name) {
            Ok(upn) => state
                .store
                .get_user_by_upn(&upn.normalized())
                .await?
                .and_then(|u| drills.get(&u.user.id).copied()),
            Err(_) => None,
        };
        g.last_successful_sign_in = drilled;
    }
    let threshold = gate_threshold(state).await?;
    let decision = gate(&imp, threshold, IMPACT_WINDOW_SECS, now, &glass);
    Ok((imp, decision))
}

/// The setting with the gate's threshold (percent of the policy's users interrupted).
pub const GATE_THRESHOLD_SETTING: &str = "conditionalAccessGateThresholdPercent";

async fn gate_threshold(state: &AppState) -> Result<f64, StoreError> {
    Ok(state
        .store
        .get_setting(GATE_THRESHOLD_SETTING)
        .await?
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|t| (0.0..=100.0).contains(t))
        .unwrap_or(DEFAULT_INTERRUPTION_THRESHOLD_PERCENT))
}

async fn patch_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    Query(q): Query<ForceQuery>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let row = find_policy(&state, &id).await?;
    match apply_patch(
        &state,
        &ctx,
        &admin.actor(),
        &row,
        patch,
        q.force.unwrap_or(false),
    )
    .await?
    {
        Ok(view) => Ok(Json(view).into_response()),
        Err(refusal) => Ok((StatusCode::CONFLICT, Json(refusal)).into_response()),
    }
}

/// Switch policy `id` to `target` as `actor` (an API application or a signed-in administrator):
/// the same path as a PATCH of its state, so a switch to `enabled` goes through the
/// enforcement gate (`force` passes it, audited). `Ok(Err(body))`: the gate refused, with the
/// 409 body (gate and impact).
pub(crate) async fn set_state(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &str,
    id: Uuid,
    target: PolicyState,
    force: bool,
) -> Result<Result<Value, Value>, ApiError> {
    let row = state.store.get_ca_policy(id).await?.ok_or_else(|| {
        ApiError::not_found(format!("Conditional Access policy {id} does not exist"))
    })?;
    apply_patch(
        state,
        ctx,
        actor,
        &row,
        json!({"state": target.as_str()}),
        force,
    )
    .await
}

/// Merge `patch` into the stored policy, check it, pass the enforcement gate when it switches
/// the policy on, and store it with its audit row.
async fn apply_patch(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &str,
    row: &CaPolicyRow,
    patch: Value,
    forced: bool,
) -> Result<Result<Value, Value>, ApiError> {
    let merged = merge_patch(&row.policy, row.id, patch, "policy")?;
    let policy = checked_body(state, merged).await?;
    let now = state.now();
    let before: Value = serde_json::from_str(&row.policy).unwrap_or(Value::Null);
    let enabling = policy.state == PolicyState::Enabled && row.state != CaPolicyRow::ENABLED;
    let mut action = UPDATE_ACTION;
    let mut gate_view = None;
    if enabling {
        let (imp, decision) = impact_and_gate(
            state,
            row,
            Timestamp::from_millis(now.millis() - IMPACT_WINDOW_SECS * 1000),
        )
        .await?;
        gate_view = Some(json!({"gate": decision, "impact": imp}));
        if !decision.allowed {
            if !forced {
                tracing::warn!(policy = %row.display_name, reasons = %decision.explain(), "the enforcement gate refused to enable a Conditional Access policy");
                return Ok(Err(json!({
                    "error": {"code": "enforcementGateRefused", "message": format!("the enforcement gate refused to enable '{}': {}. Fix what it names, or enable it with ?force=true (audited)", row.display_name, decision.explain())},
                    "gate": decision,
                    "impact": imp,
                })));
            }
            tracing::warn!(policy = %row.display_name, actor = %actor, reasons = %decision.explain(), "a Conditional Access policy was FORCED past the enforcement gate");
            action = FORCE_ACTION;
        }
    }
    let state_changed = policy.state.as_str() != row.state;
    let new_row = CaPolicyRow {
        id: row.id,
        display_name: policy.display_name.clone(),
        state: policy.state.as_str().into(),
        policy: serde_json::to_string(&policy).map_err(ApiError::internal)?,
        created_at: row.created_at,
        modified_at: now,
        state_changed_at: if state_changed {
            now
        } else {
            row.state_changed_at
        },
    };
    let mut after = json!(policy);
    if let (Some(g), Value::Object(m)) = (&gate_view, &mut after) {
        m.insert("enforcementGate".into(), g.clone());
    }
    let a = AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: ctx.id,
        actor: actor.to_owned(),
        action: action.into(),
        target_type: "conditionalAccessPolicy".into(),
        target_id: row.id.to_string(),
        target_name: Some(policy.display_name.clone()),
        before: Some(before),
        after: Some(after),
    };
    state
        .store
        .update_ca_policy(&new_row, row.modified_at, &a)
        .await
        .map_err(store_conflict)?;
    state.ca_policies.invalidate();
    let mut view = policy_view(&new_row);
    if let (Some(g), Value::Object(m)) = (gate_view, &mut view) {
        m.insert("enforcementGate".into(), g);
    }
    Ok(Ok(view))
}

async fn delete_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = find_policy(&state, &id).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        DELETE_ACTION,
        (
            "conditionalAccessPolicy",
            row.id.to_string(),
            Some(row.display_name.clone()),
        ),
        serde_json::from_str(&row.policy).ok(),
        None,
    );
    state.store.delete_ca_policy(row.id, &a).await?;
    state.ca_policies.invalidate();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
struct ImpactQuery {
    since: Option<String>,
}

/// `48h`, `3d`, `90m` or an RFC 3339 time.
fn since_param(now: Timestamp, raw: Option<&str>) -> Result<Timestamp, ApiError> {
    let Some(raw) = raw else {
        return Ok(Timestamp::from_millis(
            now.millis() - IMPACT_WINDOW_SECS * 1000,
        ));
    };
    if let Some(t) = parse_rfc3339(raw) {
        return Ok(t);
    }
    // The unit is the last character (any character: split on its boundary, never mid-way).
    let cut = raw.char_indices().last().map_or(0, |(i, _)| i);
    let (num, unit) = raw.split_at(cut);
    let n: i64 = num.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "since: '{raw}' is neither a duration (48h, 3d, 90m) nor an RFC 3339 time"
        ))
    })?;
    let secs = match unit {
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(ApiError::bad_request(format!(
                "since: '{raw}' needs a unit: m, h or d"
            )));
        }
    };
    if !(1..=366 * 86_400).contains(&secs) {
        return Err(ApiError::bad_request(
            "since: between 1 minute and 366 days",
        ));
    }
    Ok(Timestamp::from_millis(now.millis() - secs * 1000))
}

async fn policy_impact(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<ImpactQuery>,
) -> Result<Json<Value>, ApiError> {
    let row = find_policy(&state, &id).await?;
    let since = since_param(state.now(), q.since.as_deref())?;
    let (imp, decision) = impact_and_gate(&state, &row, since).await?;
    let mut v = json!(imp);
    if let Value::Object(m) = &mut v {
        m.insert("gate".into(), json!(decision));
        m.insert(
            "interruptionThresholdPercent".into(),
            json!(gate_threshold(&state).await?),
        );
        m.insert("displayName".into(), json!(row.display_name));
        m.insert("state".into(), json!(row.state));
    }
    Ok(Json(v))
}

// --- named locations -----------------------------------------------------------------------

fn location_view(row: &NamedLocationRow) -> Value {
    with_times(
        &row.location,
        &[
            ("createdDateTime", row.created_at),
            ("modifiedDateTime", row.modified_at),
        ],
    )
}

fn checked_location(body: Value) -> Result<NamedLocation, ApiError> {
    let loc: NamedLocation = serde_json::from_value(body).map_err(bad_policy)?;
    loc.check().map_err(bad_policy)?;
    Ok(loc)
}

async fn find_location(state: &AppState, key: &str) -> Result<NamedLocationRow, ApiError> {
    if let Ok(id) = Uuid::parse_str(key)
        && let Some(row) = state.store.get_named_location(id).await?
    {
        return Ok(row);
    }
    state
        .store
        .list_named_locations()
        .await?
        .into_iter()
        .find(|r| r.display_name.eq_ignore_ascii_case(key))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no named location '{}'",
                key.chars().take(80).collect::<String>()
            ))
        })
}

async fn list_locations(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_named_locations().await?;
    Ok(Json(
        json!({"value": rows.iter().map(location_view).collect::<Vec<_>>()}),
    ))
}

async fn get_location(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(location_view(&find_location(&state, &id).await?)))
}

async fn create_location(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let loc = checked_location(new_object(body, "location")?)?;
    let now = state.now();
    let row = NamedLocationRow {
        id: loc.id,
        display_name: loc.display_name.clone(),
        location: serde_json::to_string(&loc).map_err(ApiError::internal)?,
        is_trusted: loc.is_trusted,
        created_at: now,
        modified_at: now,
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        LOCATION_CREATE_ACTION,
        (
            "namedLocation",
            row.id.to_string(),
            Some(row.display_name.clone()),
        ),
        None,
        Some(json!(loc)),
    );
    state
        .store
        .create_named_location(&row, MAX_NAMED_LOCATIONS as u32, &a)
        .await
        .map_err(store_conflict)?;
    state.ca_policies.invalidate();
    Ok((StatusCode::CREATED, Json(location_view(&row))).into_response())
}

async fn patch_location(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let row = find_location(&state, &id).await?;
    let loc = checked_location(merge_patch(&row.location, row.id, patch, "location")?)?;
    let now = state.now();
    let new_row = NamedLocationRow {
        id: row.id,
        display_name: loc.display_name.clone(),
        location: serde_json::to_string(&loc).map_err(ApiError::internal)?,
        is_trusted: loc.is_trusted,
        created_at: row.created_at,
        modified_at: now,
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        LOCATION_UPDATE_ACTION,
        (
            "namedLocation",
            row.id.to_string(),
            Some(loc.display_name.clone()),
        ),
        serde_json::from_str(&row.location).ok(),
        Some(json!(loc)),
    );
    state
        .store
        .update_named_location(&new_row, row.modified_at, &a)
        .await
        .map_err(store_conflict)?;
    state.ca_policies.invalidate();
    Ok(Json(location_view(&new_row)).into_response())
}

async fn delete_location(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = find_location(&state, &id).await?;
    let users: Vec<String> = parse_rows(&state.store.list_ca_policies().await?)
        .iter()
        .filter(|p| p.referenced_locations().contains(&row.id))
        .map(|p| p.display_name.clone())
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "named location '{}' is used by {}: change those policies first",
            row.display_name,
            users.join(", ")
        )));
    }
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        LOCATION_DELETE_ACTION,
        (
            "namedLocation",
            row.id.to_string(),
            Some(row.display_name.clone()),
        ),
        serde_json::from_str(&row.location).ok(),
        None,
    );
    state.store.delete_named_location(row.id, &a).await?;
    state.ca_policies.invalidate();
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- what-if -------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WhatIf {
    user: String,
    application: String,
    #[serde(default)]
    client_app_type: Option<ClientAppType>,
    #[serde(default)]
    ip_address: Option<String>,
    /// A device platform (`android`, `iOS`, `windows`, `macOS`, `linux`), or leave it out and
    /// give `userAgent`.
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    auth_time: Option<String>,
}

/// A User-Agent that `device_platform` reads as `platform`.
pub(crate) fn user_agent_of(platform: &str) -> Option<&'static str> {
    Some(match platform {
        "android" => "Mozilla/5.0 (Linux; Android 14)",
        "iOS" => "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)",
        "windows" => "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "macOS" => "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)",
        "linux" => "Mozilla/5.0 (X11; Linux x86_64)",
        _ => return None,
    })
}

async fn what_if(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(req): ApiJson<WhatIf>,
) -> Result<Json<Value>, ApiError> {
    let user = find_user(&state, &req.user).await?;
    let app = match Uuid::parse_str(&req.application) {
        Ok(id) => state.store.get_application(id).await?,
        Err(_) => None,
    };
    let app = match app {
        Some(a) => a,
        None => state
            .store
            .get_application_by_client_id(&req.application)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no application '{}'", req.application)))?,
    };
    if let Some(ip) = &req.ip_address
        && ip.parse::<IpAddr>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "ipAddress: '{ip}' is not an IP address"
        )));
    }
    let ua = match (&req.platform, &req.user_agent) {
        (Some(p), _) => Some(
            user_agent_of(p)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "platform: '{p}' is not one of android, iOS, windows, macOS, linux"
                    ))
                })?
                .to_owned(),
        ),
        (None, ua) => ua.clone(),
    };
    let amr = req.methods.unwrap_or_else(|| vec!["pwd".into()]);
    let now = state.now();
    let auth_time = match req.auth_time.as_deref() {
        Some(t) => {
            parse_rfc3339(t).ok_or_else(|| ApiError::bad_request("authTime: an RFC 3339 time"))?
        }
        None => now,
    };
    let evaluation = evaluate_sign_in(
        &state,
        &SignInContext {
            user: &user,
            app_id: app.id,
            client_app_type: req.client_app_type.unwrap_or(app.client_app_type),
            ip: req.ip_address.as_deref(),
            user_agent: ua.as_deref(),
            amr: &amr,
            auth_time,
        },
    )
    .await?;
    Ok(Json(json!({
        "decision": evaluation.decision,
        "results": evaluation.results,
        "explanation": evaluation.explain(),
    })))
}

/// The sign-in log's records of the policies' results for one evaluation.
pub fn record_results(evaluation: &Evaluation) -> Vec<cutover_core::signin_log::PolicyResult> {
    evaluation.policy_results()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_get_the_servers_id_and_patches_keep_it() {
        assert!(new_object(json!([1]), "policy").is_err());
        let e = new_object(json!({"id": "x"}), "location").unwrap_err();
        assert!(
            format!("{e:?}").contains("the server assigns a location's id"),
            "{e:?}"
        );
        let v = new_object(
            json!({"displayName": "A", "createdDateTime": "t"}),
            "policy",
        )
        .unwrap();
        assert!(
            v["id"].is_string() && v.get("createdDateTime").is_none(),
            "{v}"
        );

        let id = Uuid::now_v7();
        let stored = json!({"id": id, "displayName": "A", "isTrusted": false}).to_string();
        let merged = merge_patch(
            &stored,
            id,
            json!({"isTrusted": true, "modifiedDateTime": "t", "id": id}),
            "location",
        )
        .unwrap();
        assert_eq!(
            merged,
            json!({"id": id, "displayName": "A", "isTrusted": true})
        );
        let e = merge_patch(&stored, id, json!({"id": Uuid::now_v7()}), "location").unwrap_err();
        assert!(
            format!("{e:?}").contains("a location's id cannot change"),
            "{e:?}"
        );
        assert!(merge_patch(&stored, id, json!("x"), "location").is_err());
    }

    #[test]
    fn since_reads_durations_and_times_and_refuses_the_rest_without_panicking() {
        let now = Timestamp::from_millis(10_000_000_000);
        let back =
            |raw: &str| since_param(now, Some(raw)).map(|t| (now.millis() - t.millis()) / 1000);
        assert_eq!(back("48h").ok(), Some(48 * 3600));
        assert_eq!(back("90m").ok(), Some(90 * 60));
        assert_eq!(back("366d").ok(), Some(366 * 86_400));
        assert_eq!(
            since_param(now, None)
                .ok()
                .map(|t| (now.millis() - t.millis()) / 1000),
            Some(IMPACT_WINDOW_SECS)
        );
        for bad in [
            "",
            "h",
            "48",
            "48x",
            "48é",
            "é",
            "-1h",
            "0m",
            "367d",
            "4\u{1F600}",
        ] {
            assert!(since_param(now, Some(bad)).is_err(), "{bad:?}");
        }
    }
}
