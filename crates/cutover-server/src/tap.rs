//! Temporary Access Passes over HTTP (SPEC §6.3): the helpdesk issues one
//! (`POST /api/v1/users/{id}/authentication/temporaryAccessPassMethods`, the secret shown
//! once), lists and deletes it; the policy is `GET|PUT /api/v1/policies/temporaryAccessPass`.
//! The sign-in side (`usable_pass`, `check_pass`) is used by `signin`. The rules are
//! `cutover_core::tap`; only a keyed hash of a pass is stored.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use cutover_core::Timestamp;
use cutover_core::tap::{
    Tap, TapPolicy, TapRequest, TapUsability, format_secret, normalize_entered, plan_issue,
    random_bytes_needed, usability,
};
use cutover_proto::ListResponse;
use cutover_proto::tap as proto;
use cutover_store::{StoreError, StoredTap};
use serde_json::json;
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit, created, find_user};
use crate::clock::{parse_rfc3339, rfc3339};
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

/// The setting that holds the pass policy (JSON of [`TapPolicy`]).
pub const POLICY_SETTING: &str = "temporaryAccessPassPolicy";
/// The keyed-hash domain of passes.
const HASH_DOMAIN: &str = "temporary-access-pass";

pub const CREATE_ACTION: &str = "createTemporaryAccessPass";
pub const DELETE_ACTION: &str = "deleteTemporaryAccessPass";
pub const POLICY_ACTION: &str = "updateTemporaryAccessPassPolicy";

const METHODS: &str = "/users/{id}/authentication/temporaryAccessPassMethods";

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(METHODS, get(list).post(create))
        .route(&format!("{METHODS}/{{tap}}"), delete(remove).get(get_one))
        .route(
            "/policies/temporaryAccessPass",
            get(get_policy).put(put_policy),
        )
}

/// The stored policy; the defaults (off) when none is stored. A stored value that no longer
/// validates is logged and treated as the defaults: passes off, the safe side.
pub async fn load_policy(state: &AppState) -> Result<TapPolicy, StoreError> {
    let Some(raw) = state.store.get_setting(POLICY_SETTING).await? else {
        return Ok(TapPolicy::default());
    };
    match serde_json::from_str::<TapPolicy>(&raw)
        .map_err(|e| e.to_string())
        .and_then(|p| p.validate().map(|()| p).map_err(|e| e.message))
    {
        Ok(p) => Ok(p),
        Err(e) => {
            tracing::error!(error = %e, "the stored Temporary Access Pass policy is invalid; passes are off until an administrator saves a valid one (PUT /api/v1/policies/temporaryAccessPass)");
            Ok(TapPolicy::default())
        }
    }
}

/// The pass policy as it applies to one user: off for a user the authentication methods
/// policy does not target for passes (its `temporaryAccessPass` method), so their pass is
/// `disabledByPolicy` like everyone's when passes are off.
pub async fn effective_policy(state: &AppState, user_id: Uuid) -> Result<TapPolicy, StoreError> {
    let mut policy = load_policy(state).await?;
    if policy.enabled {
        let methods = crate::passkeys::load_methods_policy(state).await?;
        let groups = crate::passkeys::user_groups(state, user_id).await?;
        if !methods.allows(
            cutover_core::methods_policy::PolicyMethod::TemporaryAccessPass,
            &groups,
        ) {
            policy.enabled = false;
        }
    }
    Ok(policy)
}

/// The keyed hash of a pass as typed (normalised first); `None` when it cannot be a pass.
pub fn pass_hash(state: &AppState, typed: &str) -> Option<String> {
    let n = normalize_entered(typed)?;
    Some(state.hasher.hash(HASH_DOMAIN, n.expose()))
}

/// The user's pass when it can be used now (the identifier step routes on it).
pub async fn usable_pass(
    state: &AppState,
    user_id: Uuid,
    now: Timestamp,
) -> Result<Option<StoredTap>, StoreError> {
    let Some(stored) = state.store.get_tap(user_id).await? else {
        return Ok(None);
    };
    let policy = effective_policy(state, user_id).await?;
    Ok(usability(&stored.tap, &policy, now)
        .is_usable()
        .then_some(stored))
}

/// What a typed pass turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassCheck {
    /// Right and now spent (a one-time pass) or still valid (a multi-use one).
    Accepted(Tap),
    /// No pass, or not this one.
    Wrong,
    /// The right pass, but it cannot be used (the reason is for the log and the admin).
    NotUsable(cutover_core::tap::TapReason),
    /// The right, usable pass of a disabled account: refused, and the pass is not spent.
    AccountDisabled,
}

/// Check a typed pass for a user and, when right and usable, use it (atomically: of racing
/// uses of a one-time pass, exactly one is accepted).
pub async fn check_pass(
    state: &AppState,
    user_id: Uuid,
    account_enabled: bool,
    typed: &str,
    now: Timestamp,
) -> Result<PassCheck, StoreError> {
    let Some(stored) = state.store.get_tap(user_id).await? else {
        return Ok(PassCheck::Wrong);
    };
    let right = normalize_entered(typed).is_some_and(|n| {
        state
            .hasher
            .verify(HASH_DOMAIN, n.expose(), &stored.secret_hash)
    });
    if !right {
        return Ok(PassCheck::Wrong);
    }
    let policy = effective_policy(state, user_id).await?;
    if let TapUsability::NotUsable(reason) = usability(&stored.tap, &policy, now) {
        return Ok(PassCheck::NotUsable(reason));
    }
    // Judged after the pass (only its holder learns the account is disabled), before it is
    // spent: a one-time pass survives the refusal.
    if !account_enabled {
        return Ok(PassCheck::AccountDisabled);
    }
    if state.store.consume_tap(user_id, stored.tap.id, now).await? {
        let mut tap = stored.tap;
        if tap.one_time {
            tap.used_at = Some(now);
        }
        Ok(PassCheck::Accepted(tap))
    } else {
        // Another use won the race for a one-time pass, or it expired meanwhile.
        Ok(PassCheck::NotUsable(
            if stored.tap.one_time && now < stored.tap.expires_at {
                cutover_core::tap::TapReason::OneTimeUsed
            } else {
                cutover_core::tap::TapReason::Expired
            },
        ))
    }
}

fn view(
    tap: &Tap,
    policy: &TapPolicy,
    now: Timestamp,
    secret: Option<String>,
) -> proto::TemporaryAccessPassView {
    let (is_usable, reason) = match usability(tap, policy, now) {
        TapUsability::Usable => (true, "enabledByPolicy"),
        TapUsability::NotUsable(r) => (false, r.code()),
    };
    proto::TemporaryAccessPassView {
        id: tap.id,
        created_date_time: rfc3339(tap.created_at),
        start_date_time: rfc3339(tap.starts_at),
        lifetime_in_minutes: tap
            .expires_at
            .millis()
            .saturating_sub(tap.starts_at.millis())
            / 60_000,
        is_usable_once: tap.one_time,
        is_usable,
        method_usability_reason: reason.into(),
        used_date_time: tap.used_at.map(rfc3339),
        temporary_access_pass: secret,
    }
}

async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<ListResponse<proto::TemporaryAccessPassView>>, ApiError> {
    let user = find_user(&state, &id).await?;
    let policy = effective_policy(&state, user.user.id).await?;
    let now = state.now();
    let value = state
        .store
        .get_tap(user.user.id)
        .await?
        .map(|s| view(&s.tap, &policy, now, None))
        .into_iter()
        .collect();
    Ok(Json(ListResponse::new(value)))
}

async fn get_one(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path((id, tap)): Path<(String, String)>,
) -> Result<Json<proto::TemporaryAccessPassView>, ApiError> {
    let user = find_user(&state, &id).await?;
    let tap_id = Uuid::parse_str(&tap)
        .map_err(|_| ApiError::bad_request(format!("'{tap}' is not a pass id")))?;
    let policy = effective_policy(&state, user.user.id).await?;
    let stored = state
        .store
        .get_tap(user.user.id)
        .await?
        .filter(|s| s.tap.id == tap_id)
        .ok_or_else(|| ApiError::not_found(format!("{} has no pass {tap_id}", user.user.upn)))?;
    Ok(Json(view(&stored.tap, &policy, state.now(), None)))
}

async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::CreateTemporaryAccessPass>,
) -> Result<Response, ApiError> {
    let user = find_user(&state, &id).await?;
    let policy = effective_policy(&state, user.user.id).await?;
    let now = state.now();
    let start = match req.start_date_time.as_deref() {
        None => None,
        Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "startDateTime '{}' is not an RFC 3339 time (e.g. 2026-12-24T08:00:00Z)",
                s.chars().take(64).collect::<String>()
            ))
        })?),
    };
    let lifetime_secs = match req.lifetime_in_minutes {
        None => None,
        Some(m) => Some(
            m.checked_mul(60)
                .ok_or_else(|| ApiError::bad_request("lifetimeInMinutes is out of range"))?,
        ),
    };
    let plan = plan_issue(
        &policy,
        &TapRequest {
            lifetime_secs,
            start,
            one_time: req.is_usable_once,
        },
        now,
    )
    .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, r.code(), r.message()))?;
    let length = plan.length;
    let secret = format_secret(
        &crate::crypto::random_bytes(random_bytes_needed(length)),
        length,
    )
    .ok_or_else(|| ApiError::internal("the system's randomness ran short for a pass"))?;
    let tap = plan.into_tap(Uuid::now_v7());
    let stored = StoredTap {
        user_id: user.user.id,
        tap: tap.clone(),
        secret_hash: state.hasher.hash(HASH_DOMAIN, secret.expose()),
        created_by: admin.actor(),
    };
    let previous = state.store.get_tap(user.user.id).await?;
    let a = audit(
        &ctx,
        &admin,
        now,
        CREATE_ACTION,
        (
            "user",
            user.user.id.to_string(),
            Some(user.user.upn.to_string()),
        ),
        previous
            .as_ref()
            .map(|p| json!({"id": p.tap.id, "expiresAt": rfc3339(p.tap.expires_at)})),
        Some(json!({
            "id": tap.id,
            "startsAt": rfc3339(tap.starts_at),
            "expiresAt": rfc3339(tap.expires_at),
            "isUsableOnce": tap.one_time,
        })),
    );
    let replaced = state.store.put_tap(&stored, &a).await?;
    tracing::info!(user = %user.user.upn, pass = %tap.id, one_time = tap.one_time, expires = %rfc3339(tap.expires_at), replaced = ?replaced.map(|t| t.id), "a Temporary Access Pass was issued");
    Ok(created(view(
        &tap,
        &policy,
        now,
        Some(secret.expose().to_owned()),
    )))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, tap)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = find_user(&state, &id).await?;
    let tap_id = Uuid::parse_str(&tap)
        .map_err(|_| ApiError::bad_request(format!("'{tap}' is not a pass id")))?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        DELETE_ACTION,
        (
            "user",
            user.user.id.to_string(),
            Some(user.user.upn.to_string()),
        ),
        Some(json!({"id": tap_id})),
        None,
    );
    state
        .store
        .delete_tap(user.user.id, tap_id, &a)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ApiError::not_found(format!("{} has no pass {tap_id}", user.user.upn))
            }
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_policy(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<TapPolicy>, ApiError> {
    Ok(Json(load_policy(&state).await?))
}

async fn put_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(policy): ApiJson<TapPolicy>,
) -> Result<Json<TapPolicy>, ApiError> {
    policy
        .validate()
        .map_err(|e| ApiError::bad_request(e.message))?;
    let before = load_policy(&state).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        POLICY_ACTION,
        ("policy", "temporaryAccessPass".into(), None),
        Some(json!(before)),
        Some(json!(policy)),
    );
    let raw = serde_json::to_string(&policy).map_err(ApiError::internal)?;
    state.store.put_setting(POLICY_SETTING, &raw, &a).await?;
    Ok(Json(policy))
}
