//! Authentication methods for administrators: each user's passkeys
//! (`/api/v1/users/{id}/authentication/passkeyMethods`, list and remove — the helpdesk's
//! "lost phone" action) and the registration report
//! (`/api/v1/reports/authenticationMethods/userRegistrationDetails`, filterable by group).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use cutover_core::MemberKind;
use cutover_core::methods_policy::registration_details;
use cutover_store::{StoreError, UserFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{Admin, find_user};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

/// Most users one report covers; a larger directory is reported by group.
pub const MAX_REPORT_USERS: usize = 50_000;
const PAGE: u32 = 500;

const PASSKEYS: &str = "/users/{id}/authentication/passkeyMethods";

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(PASSKEYS, get(list_passkeys))
        .route(&format!("{PASSKEYS}/{{passkey}}"), delete(delete_passkey))
        .route(
            "/reports/authenticationMethods/userRegistrationDetails",
            get(report),
        )
}

fn passkey_view(state: &AppState, p: &cutover_store::PasskeyRecord) -> Value {
    json!({
        "id": p.id,
        "displayName": p.name,
        "credentialId": p.credential_id,
        "aaGuid": p.aaguid,
        "model": state.passkeys.authenticator_name(p.aaguid),
        "isBackedUp": p.backed_up,
        "isBackupEligible": p.backup_eligible,
        "deviceFamily": p.device_family,
        "attestationFormat": p.attestation_format,
        "isAttested": p.attested,
        "signCount": p.sign_count,
        "createdDateTime": rfc3339(p.created_at),
        "lastUsedDateTime": p.last_used_at.map(rfc3339),
    })
}

async fn list_passkeys(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = find_user(&state, &id).await?;
    let value: Vec<Value> = state
        .store
        .list_passkeys(user.user.id)
        .await?
        .iter()
        .map(|p| passkey_view(&state, p))
        .collect();
    Ok(Json(json!({ "value": value })))
}

async fn delete_passkey(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, passkey)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = find_user(&state, &id).await?;
    let pid = Uuid::parse_str(&passkey)
        .map_err(|_| ApiError::bad_request(format!("'{passkey}' is not a passkey id")))?;
    crate::passkeys::remove(&state, &ctx, &user, pid, Some(admin.actor()))
        .await
        .map_err(|e| match e {
            StoreError::NotFound => {
                ApiError::not_found(format!("{} has no passkey {pid}", user.user.upn))
            }
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The users the report covers: a group's direct user members, or everyone.
async fn report_users(
    state: &AppState,
    group: Option<Uuid>,
) -> Result<(Vec<Uuid>, bool), ApiError> {
    let mut ids = Vec::new();
    match group {
        Some(g) => {
            if state.store.get_group(g).await?.is_none() {
                return Err(ApiError::not_found(format!("no group {g}")));
            }
            let mut after = None;
            loop {
                let page = state.store.list_group_members(g, PAGE, after).await?;
                let full = page.len() == PAGE as usize;
                after = page.last().copied();
                ids.extend(
                    page.iter()
                        .filter(|m| m.kind == MemberKind::User)
                        .map(|m| m.id),
                );
                if !full || ids.len() >= MAX_REPORT_USERS {
                    break;
                }
            }
        }
        None => {
            let mut after_upn = None;
            loop {
                let page = state
                    .store
                    .list_users(&UserFilter {
                        upn_prefix: None,
                        after_upn: after_upn.clone(),
                        top: PAGE,
                    })
                    .await?;
                let full = page.len() == PAGE as usize;
                after_upn = page.last().map(|u| u.upn.normalized());
                ids.extend(page.iter().map(|u| u.id));
                if !full || ids.len() >= MAX_REPORT_USERS {
                    break;
                }
            }
        }
    }
    let truncated = ids.len() > MAX_REPORT_USERS;
    ids.truncate(MAX_REPORT_USERS);
    Ok((ids, truncated))
}

async fn report(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let group = match q.get("group") {
        Some(g) => Some(
            Uuid::parse_str(g)
                .map_err(|_| ApiError::bad_request(format!("group: '{g}' is not a group id")))?,
        ),
        None => None,
    };
    let (ids, truncated) = report_users(&state, group).await?;
    let now = state.now();
    let tap_policy = crate::tap::load_policy(&state).await?;
    let mut value = Vec::with_capacity(ids.len());
    let (mut mfa, mut passwordless, mut two_plus) = (0usize, 0usize, 0usize);
    let mut families: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids {
        let Some(user) = state.store.get_user(id).await? else {
            continue;
        };
        let passkeys = state.store.list_passkeys(id).await?;
        let totp = state
            .store
            .get_totp(id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        let tap =
            state.store.get_tap(id).await?.is_some_and(|t| {
                cutover_core::tap::usability(&t.tap, &tap_policy, now).is_usable()
            });
        let has_password = user.password_hash.is_some() || user.synced_password.is_some();
        let keys: Vec<(bool, &str)> = passkeys
            .iter()
            .map(|p| (p.backed_up, p.device_family.as_str()))
            .collect();
        let d = registration_details(has_password, &keys, totp, tap);
        mfa += usize::from(d.is_mfa_registered);
        passwordless += usize::from(d.is_passwordless_capable);
        two_plus += usize::from(d.passkey_count >= 2);
        for f in &d.device_families {
            *families.entry(f.clone()).or_default() += 1;
        }
        let mut row = json!({
            "id": user.user.id,
            "userPrincipalName": user.user.upn.to_string(),
            "userDisplayName": user.user.display_name,
        });
        if let (Value::Object(r), Ok(Value::Object(extra))) = (&mut row, serde_json::to_value(&d)) {
            r.extend(extra);
        }
        value.push(row);
    }
    Ok(Json(json!({
        "value": value,
        "summary": {
            "users": value.len(),
            "mfaRegistered": mfa,
            "passwordlessCapable": passwordless,
            "withTwoOrMorePasskeys": two_plus,
            "usersByPasskeyDeviceFamily": families,
            "truncated": truncated,
        },
    })))
}
