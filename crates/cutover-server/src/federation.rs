//! Federation to the upstream (legacy) IdP: its registration (`/api/v1/identityProviders`),
//! the redirect there from the sign-in pages (or straight from `/authorize` for a
//! `domain_hint`), and the callback that maps the upstream's subject to a Cutover user and
//! finishes the sign-in.
//!
//! Nothing is half-done on failure: the sign-in transaction stays (the person can try again),
//! no session, grant or staged-rollout change is written, and the sign-in log says why.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use cutover_core::federation::{
    MAX_UPSTREAM_SCOPES, MatchedBy, check_claim_name, check_issuer, check_upstream_user,
    subject_keys,
};
use cutover_core::limits::{MAX_ATTRIBUTE_LEN, MAX_DISPLAY_NAME_LEN};
use cutover_core::routing::{RoutingInput, route_sign_in};
use cutover_core::signin_log::FailureReason;
use cutover_core::{IdentityProvider, Timestamp, User, UserPrincipalName};
use cutover_federation::{FederationError, PendingAuth, UpstreamSettings};
use cutover_proto::ListResponse;
use cutover_proto::federation as proto;
use cutover_store::{StoreError, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit, created, text};
use crate::clock::rfc3339;
use crate::error::{ApiError, PageError};
use crate::signin::{TxnData, record_for_txn};
use crate::{AppState, RequestCtx, pages};

/// Cutover's redirect URI at every upstream: `<issuer>/federation/callback`.
pub const CALLBACK_PATH: &str = "/federation/callback";
/// The label the upstream client secrets are sealed under.
const SECRET_LABEL: &str = "identityProviderSecret";
/// Scopes requested when a registration names none.
const DEFAULT_SCOPES: [&str; 3] = ["openid", "profile", "email"];
/// The claim that carries the immutable id when a registration names none.
const DEFAULT_IMMUTABLE_ID_CLAIM: &str = "sub";
/// The claim that carries the UPN for the fallback when a registration names none.
const DEFAULT_UPN_CLAIM: &str = "upn";
/// Longest client secret accepted.
const MAX_CLIENT_SECRET_LEN: usize = 1024;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(CALLBACK_PATH, get(callback))
}

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/identityProviders", get(list).post(create))
        .route(
            "/identityProviders/{id}",
            get(get_one).patch(update).delete(delete),
        )
}

/// What the sign-in transaction remembers while the browser is at the upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamPending {
    pub identity_provider_id: Uuid,
    /// Second half of `state`: names this redirect, so an older callback is refused.
    pub attempt: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub started_at: Timestamp,
}

// ---- the sign-in side ----------------------------------------------------------------------

fn settings<'a>(
    idp: &'a IdentityProvider,
    secret: &'a str,
    redirect_uri: &'a str,
) -> UpstreamSettings<'a> {
    UpstreamSettings {
        id: idp.id,
        version: idp.updated_at.millis(),
        issuer: &idp.issuer,
        client_id: &idp.client_id,
        client_secret: secret,
        scopes: &idp.scopes,
        redirect_uri,
    }
}

fn open_secret(state: &AppState, idp: &IdentityProvider) -> Result<String, String> {
    state
        .config
        .key_encryption_key
        .open(SECRET_LABEL, &idp.client_secret_sealed)
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()))
        .map_err(|e| {
            format!("the client secret of identity provider {} cannot be opened ({e}); set it again with PATCH /api/v1/identityProviders/{}", idp.id, idp.id)
        })
}

fn callback_uri(state: &AppState) -> String {
    format!("{}{CALLBACK_PATH}", state.config.issuer)
}

/// The page shown when the upstream cannot be used; the transaction is kept so "Try again"
/// starts from the identifier page.
fn upstream_failure_page(txn_id: &str, reason: FailureReason) -> Response {
    let status = match reason {
        FailureReason::UpstreamUnavailable | FailureReason::FederationNotConfigured => {
            StatusCode::BAD_GATEWAY
        }
        _ => StatusCode::FORBIDDEN,
    };
    (
        status,
        pages::error_page_with_action(
            "Sign-in did not complete",
            reason.user_message(),
            &format!("/login?t={txn_id}"),
            "Try again",
        ),
    )
        .into_response()
}

/// Send the browser to the upstream IdP for this transaction (from the identifier page, or
/// from `/authorize` for a `domain_hint`). Writes the per-redirect secrets into the
/// transaction first.
pub(crate) async fn redirect_upstream(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    txn_id: &str,
    mut txn: TxnData,
    idp_id: Uuid,
    login_hint: Option<&str>,
    as_page: bool,
) -> Result<Response, PageError> {
    let Some(idp) = state.store.get_identity_provider(idp_id).await? else {
        tracing::error!(%idp_id, "a federated domain names an identity provider that is not registered; register it or fix the domain (PATCH /api/v1/domains)");
        let mut record = record_for_txn(state, ctx, &txn);
        record.failure_reason = Some(FailureReason::FederationNotConfigured.code().into());
        state.record_sign_in(&record).await?;
        return Ok(upstream_failure_page(
            txn_id,
            FailureReason::FederationNotConfigured,
        ));
    };
    let fail = |why: String, reason: FailureReason| {
        let mut record = record_for_txn(state, ctx, &txn);
        record.failure_reason = Some(reason.code().into());
        (record, why)
    };
    let secret = match open_secret(state, &idp) {
        Ok(s) => s,
        Err(why) => {
            let (record, why) = fail(why, FailureReason::FederationNotConfigured);
            tracing::error!(idp = %idp.id, "{why}");
            state.record_sign_in(&record).await?;
            return Ok(upstream_failure_page(
                txn_id,
                FailureReason::FederationNotConfigured,
            ));
        }
    };
    let pending = UpstreamPending {
        identity_provider_id: idp.id,
        attempt: crate::crypto::random_token(),
        nonce: crate::crypto::random_token(),
        // 43 characters of base64url: a valid PKCE verifier (RFC 7636 §4.1).
        pkce_verifier: crate::crypto::random_token(),
        started_at: state.now(),
    };
    let upstream_state = format!("{txn_id}.{}", pending.attempt);
    let redirect_uri = callback_uri(state);
    let url = state
        .federation
        .authorization_url(
            &settings(&idp, &secret, &redirect_uri),
            &PendingAuth {
                state: &upstream_state,
                nonce: &pending.nonce,
                pkce_verifier: &pending.pkce_verifier,
            },
            login_hint,
            txn.prompt == cutover_core::authorize::Prompt::Login,
        )
        .await;
    let url = match url {
        Ok(u) => u,
        Err(e) => {
            let reason = match e {
                FederationError::Misconfigured(_) => FailureReason::FederationNotConfigured,
                _ => FailureReason::UpstreamUnavailable,
            };
            tracing::warn!(idp = %idp.id, issuer = %idp.issuer, error = %e, "cannot send the sign-in to the upstream identity provider");
            let (record, _) = fail(e.to_string(), reason);
            state.record_sign_in(&record).await?;
            return Ok(upstream_failure_page(txn_id, reason));
        }
    };
    txn.upstream = Some(pending);
    let data = serde_json::to_value(&txn).map_err(PageError::internal)?;
    state
        .store
        .update_sign_in_transaction(txn_id, &data)
        .await?;
    Ok(if as_page {
        pages::upstream_redirect_page(
            &idp.display_name,
            &url,
            login_hint.unwrap_or_default(),
            txn_id,
        )
        .into_response()
    } else {
        let mut res = axum::response::Redirect::to(&url).into_response();
        res.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        res
    })
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /federation/callback`: the upstream sends the browser back with a code (or an error).
async fn callback(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let (txn_id, attempt) = q
        .state
        .as_deref()
        .and_then(|s| s.split_once('.'))
        .filter(|(t, a)| !t.is_empty() && !a.is_empty())
        .ok_or_else(|| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "Start from your application",
                "This address only works as the end of a sign-in at your organisation's sign-in service. Go back to the application and choose Sign in.",
            )
        })?;
    let (txn_id, mut txn, _bb) = crate::signin::load_txn(&state, &headers, Some(txn_id)).await?;
    let Some(pending) = txn.upstream.clone() else {
        return Err(PageError::expired());
    };
    let same_attempt: bool = {
        use subtle::ConstantTimeEq;
        attempt.as_bytes().ct_eq(pending.attempt.as_bytes()).into()
    };
    if !same_attempt {
        tracing::warn!("federation callback for an older redirect of this sign-in refused");
        return Err(PageError::expired());
    }
    // This redirect's secrets are spent whatever happens next.
    txn.upstream = None;
    let data = serde_json::to_value(&txn).map_err(PageError::internal)?;
    state
        .store
        .update_sign_in_transaction(&txn_id, &data)
        .await?;

    let mut record = record_for_txn(&state, &ctx, &txn);
    record.route = Some("federated".into());
    record.authentication_methods = vec!["federated".into()];
    let failed = |mut record: cutover_core::signin_log::SignInRecord, reason: FailureReason| {
        record.failure_reason = Some(reason.code().into());
        record
    };

    if let Some(err) = q.error.as_deref() {
        let desc: String = q
            .error_description
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        tracing::info!(error = %err.chars().take(64).collect::<String>(), description = %desc, "the upstream identity provider returned an error");
        state
            .record_sign_in(&failed(record, FailureReason::UpstreamDenied))
            .await?;
        return Ok(upstream_failure_page(
            &txn_id,
            FailureReason::UpstreamDenied,
        ));
    }
    let Some(code) = q
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 4096)
    else {
        state
            .record_sign_in(&failed(record, FailureReason::UpstreamDenied))
            .await?;
        return Ok(upstream_failure_page(
            &txn_id,
            FailureReason::UpstreamDenied,
        ));
    };
    let Some(idp) = state
        .store
        .get_identity_provider(pending.identity_provider_id)
        .await?
    else {
        state
            .record_sign_in(&failed(record, FailureReason::FederationNotConfigured))
            .await?;
        return Ok(upstream_failure_page(
            &txn_id,
            FailureReason::FederationNotConfigured,
        ));
    };
    let secret = match open_secret(&state, &idp) {
        Ok(s) => s,
        Err(why) => {
            tracing::error!("{why}");
            state
                .record_sign_in(&failed(record, FailureReason::FederationNotConfigured))
                .await?;
            return Ok(upstream_failure_page(
                &txn_id,
                FailureReason::FederationNotConfigured,
            ));
        }
    };
    let redirect_uri = callback_uri(&state);
    let verified = state
        .federation
        .redeem(
            &settings(&idp, &secret, &redirect_uri),
            &PendingAuth {
                state: "",
                nonce: &pending.nonce,
                pkce_verifier: &pending.pkce_verifier,
            },
            code,
            state.now(),
        )
        .await;
    let identity = match verified {
        Ok(v) => v,
        Err(e) => {
            let reason = match e {
                FederationError::Unavailable(_) => FailureReason::UpstreamUnavailable,
                FederationError::Refused(_) => FailureReason::UpstreamDenied,
                FederationError::InvalidToken(_) => FailureReason::UpstreamTokenInvalid,
                FederationError::Misconfigured(_) => FailureReason::FederationNotConfigured,
            };
            tracing::warn!(idp = %idp.id, issuer = %idp.issuer, reason = reason.code(), error = %e, "federated sign-in failed at the upstream step");
            state.record_sign_in(&failed(record, reason)).await?;
            return Ok(upstream_failure_page(&txn_id, reason));
        }
    };

    // Who is it? By immutable id, then (when configured) by UPN; never create a user.
    let keys = subject_keys(
        &identity.claims,
        &idp.immutable_id_claim,
        idp.upn_fallback_claim.as_deref(),
    );
    let mut found: Option<(UserRecord, MatchedBy)> = None;
    if let Some(anchor) = keys.immutable_id.as_deref() {
        found = state
            .store
            .get_user_by_immutable_id(anchor)
            .await?
            .map(|u| (u, MatchedBy::ImmutableId));
    }
    if found.is_none()
        && let Some(upn) = keys
            .upn
            .as_deref()
            .and_then(|u| UserPrincipalName::parse(u).ok())
    {
        found = state
            .store
            .get_user_by_upn(&upn.normalized())
            .await?
            .map(|u| (u, MatchedBy::UserPrincipalName));
    }
    let Some((user_record, matched_by)) = found else {
        tracing::warn!(
            idp = %idp.id,
            claim = %idp.immutable_id_claim,
            immutable_id = keys.immutable_id.as_deref().unwrap_or("(none)"),
            upn = keys.upn.as_deref().unwrap_or("(none)"),
            "the upstream identity provider vouched for a subject no user matches: check that directory sync has brought the user and that the IdP's immutableIdClaim names the claim carrying the on-prem anchor"
        );
        state
            .record_sign_in(&failed(record, FailureReason::UpstreamSubjectNotFound))
            .await?;
        return Ok(upstream_failure_page(
            &txn_id,
            FailureReason::UpstreamSubjectNotFound,
        ));
    };
    let user: User = user_record.user.clone();
    record.user_id = Some(user.id);
    record.user_principal_name = Some(user.upn.to_string());
    let domain = state.store.get_domain(user.upn.domain().as_str()).await?;
    if let Err(reason) = check_upstream_user(idp.id, &user, domain.as_ref()) {
        tracing::warn!(idp = %idp.id, user = %user.upn, reason = reason.code(), "the upstream identity provider vouched for a user it may not sign in");
        state.record_sign_in(&failed(record, reason)).await?;
        return Ok(upstream_failure_page(&txn_id, reason));
    }
    // The route this sign-in took, as routing explains it for this user (a domain_hint
    // request reaches here before anyone typed a name).
    let effective = state.store.get_staged_state(user.id).await?.effective;
    let decision = route_sign_in(RoutingInput {
        domain: domain.as_ref(),
        user: Some(&user),
        effective,
        client_app_type: txn.client_app_type,
        domain_hint: txn.domain_hint.is_some(),
        usable_tap: false,
    });
    if txn.route_reason.is_none() || txn.username.is_none() {
        record.route_reason = Some(decision.reason.code().into());
    }
    tracing::info!(user = %user.upn, matched_by = matched_by.as_str(), "federated sign-in verified");
    record.authentication_methods = vec!["federated".into(), matched_by.as_str().into()];
    crate::mfa::finish_or_step_up(
        &state,
        &ctx,
        &txn_id,
        &txn,
        &user_record,
        domain.as_ref(),
        record,
        vec!["fed".into()],
        None,
    )
    .await
}

// ---- the admin API -------------------------------------------------------------------------

fn view(
    state: &AppState,
    idp: &IdentityProvider,
    domains: Vec<String>,
) -> proto::IdentityProviderView {
    proto::IdentityProviderView {
        id: idp.id,
        display_name: idp.display_name.clone(),
        issuer: idp.issuer.clone(),
        client_id: idp.client_id.clone(),
        scopes: idp.scopes.clone(),
        immutable_id_claim: idp.immutable_id_claim.clone(),
        fallback_to_upn: idp.upn_fallback_claim.is_some(),
        upn_claim: idp.upn_fallback_claim.clone(),
        redirect_uri: callback_uri(state),
        domains,
        created_date_time: rfc3339(idp.created_at),
        updated_date_time: rfc3339(idp.updated_at),
    }
}

/// The audit shape of a registration: everything but the secret.
fn audit_view(idp: &IdentityProvider) -> serde_json::Value {
    json!({
        "id": idp.id,
        "displayName": idp.display_name,
        "issuer": idp.issuer,
        "clientId": idp.client_id,
        "scopes": idp.scopes,
        "immutableIdClaim": idp.immutable_id_claim,
        "upnClaim": idp.upn_fallback_claim,
    })
}

async fn domains_by_idp(state: &AppState) -> Result<HashMap<Uuid, Vec<String>>, ApiError> {
    let mut map: HashMap<Uuid, Vec<String>> = HashMap::new();
    for d in state.store.list_domains().await? {
        if let Some(id) = d.identity_provider_id() {
            map.entry(id).or_default().push(d.name.to_string());
        }
    }
    Ok(map)
}

fn check_scopes(scopes: &[String]) -> Result<Vec<String>, ApiError> {
    if scopes.len() > MAX_UPSTREAM_SCOPES {
        return Err(ApiError::bad_request(format!(
            "scopes: at most {MAX_UPSTREAM_SCOPES}"
        )));
    }
    let mut out = vec!["openid".to_owned()];
    for s in scopes {
        if s.is_empty()
            || s.len() > 64
            || !s
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            return Err(ApiError::bad_request(format!(
                "scopes: '{}' is not a valid scope token",
                s.chars().take(64).collect::<String>()
            )));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn issuer(raw: &str) -> Result<String, ApiError> {
    check_issuer(raw).map_err(|e| ApiError::bad_request(format!("issuer: {e}")))
}

fn claim(field: &str, raw: &str) -> Result<String, ApiError> {
    check_claim_name(field, raw).map_err(ApiError::bad_request)?;
    Ok(raw.to_owned())
}

fn secret(state: &AppState, raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > MAX_CLIENT_SECRET_LEN {
        return Err(ApiError::bad_request(format!(
            "clientSecret must be 1–{MAX_CLIENT_SECRET_LEN} characters"
        )));
    }
    Ok(state
        .config
        .key_encryption_key
        .seal(SECRET_LABEL, raw.as_bytes()))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not an identity provider id",
            id.chars().take(80).collect::<String>()
        ))
    })
}

async fn find(state: &AppState, id: &str) -> Result<IdentityProvider, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .get_identity_provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no identity provider {id}")))
}

async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<ListResponse<proto::IdentityProviderView>>, ApiError> {
    let mut by_idp = domains_by_idp(&state).await?;
    let value = state
        .store
        .list_identity_providers()
        .await?
        .iter()
        .map(|i| view(&state, i, by_idp.remove(&i.id).unwrap_or_default()))
        .collect();
    Ok(Json(ListResponse::new(value)))
}

async fn get_one(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::IdentityProviderView>, ApiError> {
    let idp = find(&state, &id).await?;
    let domains = domains_by_idp(&state)
        .await?
        .remove(&idp.id)
        .unwrap_or_default();
    Ok(Json(view(&state, &idp, domains)))
}

async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateIdentityProvider>,
) -> Result<Response, ApiError> {
    let now = state.now();
    let upn_claim = if req.fallback_to_upn {
        Some(claim(
            "upnClaim",
            req.upn_claim.as_deref().unwrap_or(DEFAULT_UPN_CLAIM),
        )?)
    } else if req.upn_claim.is_some() {
        return Err(ApiError::bad_request(
            "upnClaim is used only with fallbackToUpn: true",
        ));
    } else {
        None
    };
    let default_scopes: Vec<String> = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
    let idp = IdentityProvider {
        id: Uuid::now_v7(),
        display_name: text("displayName", &req.display_name, MAX_DISPLAY_NAME_LEN)?,
        issuer: issuer(&req.issuer)?,
        client_id: text("clientId", &req.client_id, MAX_ATTRIBUTE_LEN)?,
        client_secret_sealed: secret(&state, &req.client_secret)?,
        scopes: check_scopes(req.scopes.as_deref().unwrap_or(&default_scopes))?,
        immutable_id_claim: claim(
            "immutableIdClaim",
            req.immutable_id_claim
                .as_deref()
                .unwrap_or(DEFAULT_IMMUTABLE_ID_CLAIM),
        )?,
        upn_fallback_claim: upn_claim,
        created_at: now,
        updated_at: now,
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        "createIdentityProvider",
        (
            "identityProvider",
            idp.id.to_string(),
            Some(idp.display_name.clone()),
        ),
        None,
        Some(audit_view(&idp)),
    );
    state.store.create_identity_provider(&idp, &a).await?;
    Ok(created(view(&state, &idp, vec![])))
}

async fn update(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::UpdateIdentityProvider>,
) -> Result<Json<proto::IdentityProviderView>, ApiError> {
    let before = find(&state, &id).await?;
    let mut idp = before.clone();
    if let Some(v) = &req.display_name {
        idp.display_name = text("displayName", v, MAX_DISPLAY_NAME_LEN)?;
    }
    if let Some(v) = &req.issuer {
        idp.issuer = issuer(v)?;
    }
    if let Some(v) = &req.client_id {
        idp.client_id = text("clientId", v, MAX_ATTRIBUTE_LEN)?;
    }
    if let Some(v) = &req.client_secret {
        idp.client_secret_sealed = secret(&state, v)?;
    }
    if let Some(v) = &req.scopes {
        idp.scopes = check_scopes(v)?;
    }
    if let Some(v) = &req.immutable_id_claim {
        idp.immutable_id_claim = claim("immutableIdClaim", v)?;
    }
    match (req.fallback_to_upn, &req.upn_claim) {
        (Some(false), Some(_)) => {
            return Err(ApiError::bad_request(
                "upnClaim is used only with fallbackToUpn: true",
            ));
        }
        (Some(false), None) => idp.upn_fallback_claim = None,
        (Some(true), c) => {
            idp.upn_fallback_claim = Some(claim(
                "upnClaim",
                c.as_deref()
                    .or(before.upn_fallback_claim.as_deref())
                    .unwrap_or(DEFAULT_UPN_CLAIM),
            )?)
        }
        (None, Some(c)) => {
            if idp.upn_fallback_claim.is_none() {
                return Err(ApiError::bad_request(
                    "upnClaim is used only with fallbackToUpn: true",
                ));
            }
            idp.upn_fallback_claim = Some(claim("upnClaim", c)?);
        }
        (None, None) => {}
    }
    let now = state.now();
    // A new `updated_at` also retires the cached discovery of the old settings.
    idp.updated_at = Timestamp(now.millis().max(before.updated_at.millis() + 1));
    let a = audit(
        &ctx,
        &admin,
        now,
        "updateIdentityProvider",
        (
            "identityProvider",
            idp.id.to_string(),
            Some(idp.display_name.clone()),
        ),
        Some(audit_view(&before)),
        Some(audit_view(&idp)),
    );
    state.store.update_identity_provider(&idp, &a).await?;
    state.federation.forget(idp.id);
    let domains = domains_by_idp(&state)
        .await?
        .remove(&idp.id)
        .unwrap_or_default();
    Ok(Json(view(&state, &idp, domains)))
}

async fn delete(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let before = find(&state, &id).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        "deleteIdentityProvider",
        (
            "identityProvider",
            before.id.to_string(),
            Some(before.display_name.clone()),
        ),
        Some(audit_view(&before)),
        None,
    );
    state
        .store
        .delete_identity_provider(before.id, &a)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::conflict(format!(
                "{m}; convert or re-point those domains first (cutover admin domains convert)"
            )),
            other => other.into(),
        })?;
    state.federation.forget(before.id);
    Ok(StatusCode::NO_CONTENT)
}
