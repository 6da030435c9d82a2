//! The admin REST API (`/api/v1/...`): JSON, camelCase, Graph-like shapes, bearer tokens from
//! a client-credentials application holding the `Directory.ReadWrite.All` role. Every change
//! commits together with its audit row.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use cutover_core::limits::{
    MAX_ATTRIBUTE_LEN, MAX_DISPLAY_NAME_LEN, MAX_PASSWORD_LEN, MAX_REDIRECT_URIS, MIN_PASSWORD_LEN,
};
use cutover_core::{
    ADMIN_APP_ROLE, Application, ClientAppType, ClientType, Domain, DomainAuthentication,
    DomainName, FederationConfig, GrantType, Group, ManagedConfig, MemberKind, MemberRef,
    MembershipKind, PasswordValidation, RedirectUri, Secret, Source, Timestamp, User,
    UserPrincipalName, check_grants, default_grants,
};
use cutover_proto as proto;
use cutover_store::{
    AuditEvent, AuditFilter, Cursor, SignInFilter, StoreError, UserFilter, UserRecord,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::clock::{parse_rfc3339, rfc3339};
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/openapi.json", get(crate::openapi::document))
        .route("/domains", get(list_domains).post(create_domain))
        .route("/domains/{id}", get(get_domain).delete(delete_domain))
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route("/groups", get(list_groups).post(create_group))
        .route("/groups/{id}", get(get_group).delete(delete_group))
        .route("/groups/{id}/members", get(list_members).post(add_member))
        .route("/groups/{id}/members/{member}", delete(remove_member))
        .route("/applications", get(list_apps).post(create_app))
        .route("/applications/{id}", get(get_app).delete(delete_app))
        .route("/auditLogs/signIns", get(list_sign_ins))
        .route("/auditLogs/directoryAudits", get(list_audits))
        .route("/signingKeys", get(list_keys))
        .route("/signingKeys/rotate", post(rotate_keys))
}

/// The authenticated caller of the admin API.
pub struct Admin {
    pub client_id: String,
}

impl Admin {
    pub(crate) fn actor(&self) -> String {
        format!("app:{}", self.client_id)
    }
}

/// Check that the request carries an application token (client credentials) whose
/// application still exists and holds one of `roles`; returns its client id.
pub(crate) async fn application_with_role(
    headers: &axum::http::HeaderMap,
    state: &AppState,
    roles: &[&str],
) -> Result<String, ApiError> {
    let token = crate::oidc::bearer(headers).ok_or_else(|| {
        ApiError::unauthorized(format!(
            "send an access token from a client-credentials grant of an application holding {}: Authorization: Bearer <token>",
            roles.join(" or ")
        ))
    })?;
    let claims = crate::oidc::verify_access_token(state, token)
        .await
        .map_err(|e| {
            tracing::info!(reason = %e, "refused an application token");
            ApiError::unauthorized("the access token is invalid or expired; request a new one")
        })?;
    if claims.grant_id.is_some() || claims.sub != claims.client_id {
        return Err(ApiError::forbidden(
            "this endpoint takes application tokens (client credentials), not user tokens",
        ));
    }
    let holds = |granted: &[String]| granted.iter().any(|r| roles.contains(&r.as_str()));
    if !holds(&claims.roles) {
        return Err(ApiError::forbidden(format!(
            "the application lacks the {} role",
            roles.join(" or ")
        )));
    }
    // The application must still exist and still hold the role.
    let app = state
        .store
        .get_application_by_client_id(&claims.client_id)
        .await?;
    if !app.is_some_and(|a| holds(&a.app_roles)) {
        return Err(ApiError::forbidden(
            "the application no longer exists or lost its role",
        ));
    }
    Ok(claims.client_id)
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client_id = application_with_role(&parts.headers, state, &[ADMIN_APP_ROLE]).await?;
        Ok(Admin { client_id })
    }
}

/// `GET /metrics`: Prometheus text format, for an application holding `Metrics.Read` (or the
/// admin role): this node's counters, then the figures read from the database now (agents,
/// pass-through queue, sync). When the database cannot be read the node's counters are still
/// served, with `cutover_metrics_store_up 0`.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    application_with_role(
        &headers,
        &state,
        &[cutover_core::METRICS_APP_ROLE, ADMIN_APP_ROLE],
    )
    .await?;
    let figures = match crate::metrics::cluster_figures(&state).await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: reading the agents, the pass-through queue or the sync reports from the database failed; this scrape leaves them out (cutover_metrics_store_up 0)");
            None
        }
    };
    let mut body = state.metrics.render();
    body.push_str(&crate::metrics::render_cluster(figures.as_ref()));
    let mut res = body.into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// A JSON body, refused with a message that names the problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupportedMediaType",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payloadTooLarge",
                    format!(
                        "the body is larger than this endpoint accepts ({} bytes; campaign definitions {} bytes)",
                        cutover_core::limits::MAX_BODY_BYTES,
                        cutover_core::limits::MAX_CAMPAIGN_BODY_BYTES
                    ),
                )
            } else {
                ApiError::bad_request(format!("could not read the body: {e}"))
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// What an audited change touched: (type, id, display name).
pub(crate) type Target<'a> = (&'a str, String, Option<String>);

pub(crate) fn audit(
    ctx: &RequestCtx,
    admin: &Admin,
    now: Timestamp,
    action: &str,
    target: Target<'_>,
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEvent {
    let (target_type, target_id, target_name) = target;
    AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: ctx.id,
        actor: admin.actor(),
        action: action.into(),
        target_type: target_type.into(),
        target_id,
        target_name,
        before,
        after,
    }
}

pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::bad_request(format!("{field} must not be empty")));
    }
    if v.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} may be at most {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(v.to_owned())
}

pub(crate) fn opt_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    value.map(|v| text(field, v, max)).transpose()
}

fn check_password(p: &str) -> Result<Secret, ApiError> {
    let n = p.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "passwordProfile.password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if p.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "passwordProfile.password may be at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(Secret::new(p))
}

fn top_of(q: &HashMap<String, String>) -> Result<u32, ApiError> {
    match q.get("$top").or_else(|| q.get("top")) {
        None => Ok(0),
        Some(t) => t
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request("$top must be a positive integer")),
    }
}

fn bad_skiptoken() -> ApiError {
    ApiError::bad_request(
        "$skiptoken is not one this server issued; use the @odata.nextLink as given",
    )
}

/// Where the next page of a log starts: `$skiptoken` in, `@odata.nextLink` out.
fn cursor_param(q: &HashMap<String, String>) -> Result<Option<Cursor>, ApiError> {
    q.get("$skiptoken")
        .map(|t| Cursor::decode(t).ok_or_else(bad_skiptoken))
        .transpose()
}

/// A directory list's page position: the sort key's parts, base64url-encoded as one token.
fn page_token(parts: &[&str]) -> String {
    crate::crypto::b64(parts.join("\u{1f}").as_bytes())
}

/// The parts of a `$skiptoken` made by [`page_token`], when there is one.
fn page_token_param(
    q: &HashMap<String, String>,
    parts: usize,
) -> Result<Option<Vec<String>>, ApiError> {
    use base64::Engine as _;
    let Some(t) = q.get("$skiptoken") else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| bad_skiptoken())?;
    let text = String::from_utf8(bytes).map_err(|_| bad_skiptoken())?;
    let fields: Vec<String> = text.split('\u{1f}').map(str::to_owned).collect();
    if fields.len() != parts {
        return Err(bad_skiptoken());
    }
    Ok(Some(fields))
}

/// The link to the next page when this one was full: the same query, continued from `token`.
fn next_link(
    path: &str,
    q: &HashMap<String, String>,
    returned: usize,
    top: u32,
    token: Option<String>,
) -> Option<String> {
    let token = token?;
    if returned < cutover_core::limits::page_size(top) as usize {
        return None;
    }
    let mut keys: Vec<&String> = q.keys().filter(|k| k.as_str() != "$skiptoken").collect();
    keys.sort();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for k in keys {
        query.append_pair(k, &q[k]);
    }
    query.append_pair("$skiptoken", &token);
    Some(format!("/api/v1{path}?{}", query.finish()))
}

fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    q.get(name)
        .map(|v| {
            parse_rfc3339(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{name} must be an RFC 3339 time such as 2026-11-22T08:00:00Z"
                ))
            })
        })
        .transpose()
}

pub(crate) fn created(v: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

// ---- domains ------------------------------------------------------------------------------

pub(crate) fn domain_view(d: &Domain) -> proto::DomainView {
    let mut v = proto::DomainView {
        id: d.name.to_string(),
        authentication_type: String::new(),
        identity_provider_id: None,
        password_validation: None,
        previous_identity_provider_id: None,
        created_date_time: rfc3339(d.created_at),
    };
    match &d.authentication {
        DomainAuthentication::Managed(m) => {
            v.authentication_type = "managed".into();
            v.password_validation = Some(m.password_validation.as_str().into());
            v.previous_identity_provider_id = m.previous_identity_provider_id;
        }
        DomainAuthentication::Federated(c) => {
            v.authentication_type = "federated".into();
            v.identity_provider_id = c.identity_provider_id;
        }
    }
    v
}

async fn list_domains(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<proto::ListResponse<proto::DomainView>>, ApiError> {
    let value = state
        .store
        .list_domains()
        .await?
        .iter()
        .map(domain_view)
        .collect();
    Ok(Json(proto::ListResponse::new(value)))
}

async fn get_domain(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::DomainView>, ApiError> {
    let name = DomainName::parse(&id).map_err(|e| ApiError::bad_request(format!("id: {e}")))?;
    let d = state
        .store
        .get_domain(name.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("domain {name} is not registered")))?;
    Ok(Json(domain_view(&d)))
}

async fn create_domain(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateDomain>,
) -> Result<Response, ApiError> {
    let name = DomainName::parse(&req.id).map_err(|e| ApiError::bad_request(format!("id: {e}")))?;
    let authentication = match req.authentication_type.as_deref().unwrap_or("managed") {
        "managed" => {
            if req.identity_provider_id.is_some() {
                return Err(ApiError::bad_request(
                    "identityProviderId applies only to a federated domain",
                ));
            }
            let password_validation = match req.password_validation.as_deref() {
                None => PasswordValidation::default(),
                Some(s) => PasswordValidation::parse(s).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "passwordValidation must be passwordHashSync or passthroughAuthentication, not '{s}'"
                    ))
                })?,
            };
            DomainAuthentication::Managed(ManagedConfig {
                password_validation,
                previous_identity_provider_id: None,
            })
        }
        "federated" => {
            if req.password_validation.is_some() {
                return Err(ApiError::bad_request(
                    "passwordValidation applies only to a managed domain",
                ));
            }
            if let Some(id) = req.identity_provider_id
                && state.store.get_identity_provider(id).await?.is_none()
            {
                return Err(ApiError::bad_request(format!(
                    "identityProviderId {id} is not a registered identity provider (GET /api/v1/identityProviders)"
                )));
            }
            DomainAuthentication::Federated(FederationConfig {
                identity_provider_id: req.identity_provider_id,
            })
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "authenticationType must be managed or federated, not '{other}'"
            )));
        }
    };
    let now = state.now();
    let d = Domain {
        name: name.clone(),
        authentication,
        created_at: now,
    };
    let view = domain_view(&d);
    let a = audit(
        &ctx,
        &admin,
        now,
        "createDomain",
        ("domain", name.to_string(), Some(name.to_string())),
        None,
        Some(json!(view)),
    );
    state
        .store
        .create_domain(&d, &a)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict(format!("domain {name} is already registered"))
            }
            other => other.into(),
        })?;
    Ok(created(view))
}

async fn delete_domain(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = DomainName::parse(&id).map_err(|e| ApiError::bad_request(format!("id: {e}")))?;
    let before = state
        .store
        .get_domain(name.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("domain {name} is not registered")))?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        "deleteDomain",
        ("domain", name.to_string(), Some(name.to_string())),
        Some(json!(domain_view(&before))),
        None,
    );
    state
        .store
        .delete_domain(name.as_str(), &a)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(format!(
                "domain {name} still has users; delete or move them first"
            )),
            other => other.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- users --------------------------------------------------------------------------------

pub(crate) fn user_view(r: &UserRecord) -> proto::UserView {
    let u = &r.user;
    proto::UserView {
        id: u.id,
        user_principal_name: u.upn.to_string(),
        display_name: u.display_name.clone(),
        account_enabled: u.account_enabled,
        mail: u.mail.clone(),
        department: u.department.clone(),
        manager_id: u.manager_id,
        source: u.source.as_str().into(),
        immutable_id: u.immutable_id.clone(),
        break_glass: u.break_glass,
        has_password: Some(r.password_hash.is_some() || r.synced_password.is_some()),
        created_date_time: rfc3339(u.created_at),
        updated_date_time: rfc3339(u.updated_at),
    }
}

/// A user by id or by user principal name, as Graph allows.
pub(crate) async fn find_user(state: &AppState, key: &str) -> Result<UserRecord, ApiError> {
    let found = match Uuid::parse_str(key) {
        Ok(id) => state.store.get_user(id).await?,
        Err(_) => match UserPrincipalName::parse(key) {
            Ok(upn) => state.store.get_user_by_upn(&upn.normalized()).await?,
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "'{}' is neither a user id nor a user principal name: {e}",
                    key.chars().take(80).collect::<String>()
                )));
            }
        },
    };
    found.ok_or_else(|| {
        ApiError::not_found(format!(
            "no user {}",
            key.chars().take(80).collect::<String>()
        ))
    })
}

async fn check_manager(
    state: &AppState,
    manager: Option<Uuid>,
    self_id: Option<Uuid>,
) -> Result<(), ApiError> {
    if let Some(m) = manager {
        if Some(m) == self_id {
            return Err(ApiError::bad_request(
                "managerId: a user cannot be their own manager",
            ));
        }
        if state.store.get_user(m).await?.is_none() {
            return Err(ApiError::bad_request(format!("managerId: no user {m}")));
        }
    }
    Ok(())
}

async fn list_users(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::ListResponse<proto::UserView>>, ApiError> {
    let after_upn = page_token_param(&q, 1)?.and_then(|mut p| p.pop());
    let filter = UserFilter {
        upn_prefix: q.get("prefix").cloned(),
        after_upn,
        top: top_of(&q)?,
    };
    let users = state.store.list_users(&filter).await?;
    let token = users.last().map(|u| page_token(&[&u.upn.normalized()]));
    let next = next_link("/users", &q, users.len(), filter.top, token);
    let value = users
        .into_iter()
        .map(|u| {
            let mut v = user_view(&UserRecord {
                user: u,
                password_hash: None,
                synced_password: None,
                password_changed_at: None,
            });
            // Lists never read password hashes, so they cannot say.
            v.has_password = None;
            v
        })
        .collect::<Vec<_>>();
    Ok(Json(proto::ListResponse {
        value,
        next_link: next,
    }))
}

async fn get_user(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::UserView>, ApiError> {
    Ok(Json(user_view(&find_user(&state, &id).await?)))
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateUser>,
) -> Result<Response, ApiError> {
    let upn = UserPrincipalName::parse(&req.user_principal_name)
        .map_err(|e| ApiError::bad_request(format!("userPrincipalName: {e}")))?;
    let display_name = text("displayName", &req.display_name, MAX_DISPLAY_NAME_LEN)?;
    let source = match req.source.as_deref() {
        None => Source::Cloud,
        Some(s) => Source::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("source must be cloud or synced, not '{s}'"))
        })?,
    };
    let immutable_id = opt_text(
        "immutableId",
        req.immutable_id.as_deref(),
        MAX_ATTRIBUTE_LEN,
    )?;
    if source == Source::Synced && immutable_id.is_none() {
        return Err(ApiError::bad_request(
            "a synced user needs immutableId (the on-prem source anchor)",
        ));
    }
    if source == Source::Synced && req.break_glass {
        return Err(ApiError::bad_request(
            "break-glass accounts must be cloud-only, not synced",
        ));
    }
    let password = req
        .password_profile
        .as_ref()
        .map(|p| check_password(&p.password))
        .transpose()?;
    if state
        .store
        .get_domain(upn.domain().as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::bad_request(format!(
            "the domain {} is not registered: add it first (POST /api/v1/domains)",
            upn.domain()
        )));
    }
    check_manager(&state, req.manager_id, None).await?;
    let now = state.now();
    let user = User {
        id: Uuid::now_v7(),
        upn: upn.clone(),
        source,
        immutable_id,
        display_name,
        mail: opt_text("mail", req.mail.as_deref(), MAX_ATTRIBUTE_LEN)?,
        department: opt_text("department", req.department.as_deref(), MAX_ATTRIBUTE_LEN)?,
        manager_id: req.manager_id,
        account_enabled: req.account_enabled,
        break_glass: req.break_glass,
        created_at: now,
        updated_at: now,
    };
    let password_hash = match password {
        Some(p) => Some(state.hash_password(p).await?),
        None => None,
    };
    let record = UserRecord {
        user,
        password_hash,
        synced_password: None,
        password_changed_at: None,
    };
    let view = user_view(&record);
    let a = audit(
        &ctx,
        &admin,
        now,
        "createUser",
        ("user", record.user.id.to_string(), Some(upn.to_string())),
        None,
        Some(json!(view)),
    );
    state.store.create_user(&record, &a).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::conflict(format!("a user {upn} (or with that immutableId) already exists; user principal names are unique regardless of case")),
        other => other.into(),
    })?;
    Ok(created(view))
}

async fn update_user(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::UpdateUser>,
) -> Result<Json<proto::UserView>, ApiError> {
    let current = find_user(&state, &id).await?;
    let before = user_view(&current);
    let mut u = current.user.clone();
    if let Some(n) = &req.display_name {
        u.display_name = text("displayName", n, MAX_DISPLAY_NAME_LEN)?;
    }
    if let Some(e) = req.account_enabled {
        u.account_enabled = e;
    }
    if let Some(m) = &req.mail {
        u.mail = opt_text("mail", m.as_deref(), MAX_ATTRIBUTE_LEN)?;
    }
    if let Some(d) = &req.department {
        u.department = opt_text("department", d.as_deref(), MAX_ATTRIBUTE_LEN)?;
    }
    if let Some(m) = req.manager_id {
        check_manager(&state, m, Some(u.id)).await?;
        u.manager_id = m;
    }
    if let Some(b) = req.break_glass {
        if b && u.source == Source::Synced {
            return Err(ApiError::bad_request(
                "break-glass accounts must be cloud-only, not synced",
            ));
        }
        u.break_glass = b;
    }
    let password = req
        .password_profile
        .as_ref()
        .map(|p| check_password(&p.password))
        .transpose()?;
    let new_hash = match password {
        Some(p) => Some(state.hash_password(p).await?),
        None => None,
    };
    let now = state.now();
    u.updated_at = now;
    let after_record = UserRecord {
        user: u.clone(),
        password_hash: new_hash.clone().or(current.password_hash.clone()),
        synced_password: current.synced_password.clone(),
        password_changed_at: current.password_changed_at,
    };
    let after = user_view(&after_record);
    let mut after_json = json!(after);
    if new_hash.is_some() {
        after_json["passwordChanged"] = json!(true);
    }
    let action = if new_hash.is_some() {
        "updateUserAndResetPassword"
    } else {
        "updateUser"
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        action,
        ("user", u.id.to_string(), Some(u.upn.to_string())),
        Some(json!(before)),
        Some(after_json),
    );
    state.store.update_user(&u, new_hash.as_deref(), &a).await?;
    Ok(Json(after))
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let current = find_user(&state, &id).await?;
    let u = &current.user;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        "deleteUser",
        ("user", u.id.to_string(), Some(u.upn.to_string())),
        Some(json!(user_view(&current))),
        None,
    );
    state.store.delete_user(u.id, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- groups -------------------------------------------------------------------------------

pub(crate) fn group_view(g: &Group) -> proto::GroupView {
    proto::GroupView {
        id: g.id,
        display_name: g.display_name.clone(),
        description: g.description.clone(),
        membership_kind: g.membership_kind.as_str().into(),
        source: g.source.as_str().into(),
        immutable_id: g.immutable_id.clone(),
        created_date_time: rfc3339(g.created_at),
    }
}

pub(crate) fn group_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not a group id (a UUID)",
            id.chars().take(80).collect::<String>()
        ))
    })
}

pub(crate) async fn find_group(state: &AppState, id: &str) -> Result<Group, ApiError> {
    let gid = group_id(id)?;
    state
        .store
        .get_group(gid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no group {gid}")))
}

async fn list_groups(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::ListResponse<proto::GroupView>>, ApiError> {
    let after = match page_token_param(&q, 2)? {
        Some(p) => Some((
            p[0].clone(),
            Uuid::parse_str(&p[1]).map_err(|_| bad_skiptoken())?,
        )),
        None => None,
    };
    let top = top_of(&q)?;
    let groups = state.store.list_groups(top, after).await?;
    let token = groups
        .last()
        .map(|g| page_token(&[&g.display_name, &g.id.to_string()]));
    let next = next_link("/groups", &q, groups.len(), top, token);
    let value = groups.iter().map(group_view).collect();
    Ok(Json(proto::ListResponse {
        value,
        next_link: next,
    }))
}

async fn get_group(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::GroupView>, ApiError> {
    Ok(Json(group_view(&find_group(&state, &id).await?)))
}

async fn create_group(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateGroup>,
) -> Result<Response, ApiError> {
    let display_name = text("displayName", &req.display_name, MAX_DISPLAY_NAME_LEN)?;
    let membership_kind = match req.membership_kind.as_deref() {
        None => MembershipKind::Assigned,
        Some(k) => MembershipKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "membershipKind must be assigned or dynamic, not '{k}'"
            ))
        })?,
    };
    let source = match req.source.as_deref() {
        None => Source::Cloud,
        Some(s) => Source::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("source must be cloud or synced, not '{s}'"))
        })?,
    };
    let immutable_id = opt_text(
        "immutableId",
        req.immutable_id.as_deref(),
        MAX_ATTRIBUTE_LEN,
    )?;
    if source == Source::Synced && immutable_id.is_none() {
        return Err(ApiError::bad_request(
            "a synced group needs immutableId (the on-prem source anchor)",
        ));
    }
    let now = state.now();
    let g = Group {
        id: Uuid::now_v7(),
        display_name,
        description: opt_text("description", req.description.as_deref(), MAX_ATTRIBUTE_LEN)?,
        source,
        immutable_id,
        membership_kind,
        created_at: now,
    };
    let view = group_view(&g);
    let a = audit(
        &ctx,
        &admin,
        now,
        "createGroup",
        ("group", g.id.to_string(), Some(g.display_name.clone())),
        None,
        Some(json!(view)),
    );
    state
        .store
        .create_group(&g, &a)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::conflict("a group with that immutableId already exists")
            }
            other => other.into(),
        })?;
    Ok(created(view))
}

async fn delete_group(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let g = find_group(&state, &id).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        "deleteGroup",
        ("group", g.id.to_string(), Some(g.display_name.clone())),
        Some(json!(group_view(&g))),
        None,
    );
    state.store.delete_group(g.id, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member_view(state: &AppState, m: MemberRef) -> Result<proto::MemberView, ApiError> {
    let display_name = match m.kind {
        MemberKind::User => state
            .store
            .get_user(m.id)
            .await?
            .map(|u| u.user.upn.to_string()),
        MemberKind::Group => state.store.get_group(m.id).await?.map(|g| g.display_name),
        MemberKind::Contact => None,
    };
    Ok(proto::MemberView {
        id: m.id,
        member_type: m.kind.as_str().into(),
        display_name,
    })
}

async fn list_members(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::ListResponse<proto::MemberView>>, ApiError> {
    let g = find_group(&state, &id).await?;
    let after = match page_token_param(&q, 2)? {
        Some(p) => Some(MemberRef {
            kind: MemberKind::parse(&p[0]).ok_or_else(bad_skiptoken)?,
            id: Uuid::parse_str(&p[1]).map_err(|_| bad_skiptoken())?,
        }),
        None => None,
    };
    let top = top_of(&q)?;
    let members = state.store.list_group_members(g.id, top, after).await?;
    let token = members
        .last()
        .map(|m| page_token(&[m.kind.as_str(), &m.id.to_string()]));
    let next = next_link(
        &format!("/groups/{}/members", g.id),
        &q,
        members.len(),
        top,
        token,
    );
    let mut value = Vec::new();
    for m in members {
        value.push(member_view(&state, m).await?);
    }
    Ok(Json(proto::ListResponse {
        value,
        next_link: next,
    }))
}

async fn add_member(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::AddMember>,
) -> Result<Response, ApiError> {
    let g = find_group(&state, &id).await?;
    let kind = match req.member_type.as_deref() {
        Some(k) => MemberKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "memberType must be user, group or contact, not '{k}'"
            ))
        })?,
        None => {
            if state.store.get_user(req.id).await?.is_some() {
                MemberKind::User
            } else if state.store.get_group(req.id).await?.is_some() {
                MemberKind::Group
            } else {
                return Err(ApiError::not_found(format!(
                    "no user or group {}; to add a contact, set memberType to contact",
                    req.id
                )));
            }
        }
    };
    match kind {
        MemberKind::User if state.store.get_user(req.id).await?.is_none() => {
            return Err(ApiError::not_found(format!("no user {}", req.id)));
        }
        MemberKind::Group if req.id == g.id => {
            return Err(ApiError::bad_request(
                "a group cannot be a member of itself",
            ));
        }
        MemberKind::Group if state.store.get_group(req.id).await?.is_none() => {
            return Err(ApiError::not_found(format!("no group {}", req.id)));
        }
        _ => {}
    }
    let m = MemberRef { kind, id: req.id };
    let view = member_view(&state, m).await?;
    let now = state.now();
    let a = audit(
        &ctx,
        &admin,
        now,
        "addGroupMember",
        ("group", g.id.to_string(), Some(g.display_name.clone())),
        None,
        Some(json!({"member": view})),
    );
    state
        .store
        .add_group_member(g.id, m, now, &a)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict(format!(
                "{} is already a member of {}",
                req.id, g.display_name
            )),
            other => other.into(),
        })?;
    Ok(created(view))
}

async fn remove_member(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let g = find_group(&state, &id).await?;
    let member_id = match Uuid::parse_str(&member) {
        Ok(m) => m,
        Err(_) => find_user(&state, &member).await?.user.id,
    };
    for kind in [MemberKind::User, MemberKind::Group, MemberKind::Contact] {
        let m = MemberRef {
            kind,
            id: member_id,
        };
        let a = audit(
            &ctx,
            &admin,
            state.now(),
            "removeGroupMember",
            ("group", g.id.to_string(), Some(g.display_name.clone())),
            Some(json!({"member": {"id": member_id, "memberType": kind.as_str()}})),
            None,
        );
        match state.store.remove_group_member(g.id, m, &a).await {
            Ok(()) => return Ok(StatusCode::NO_CONTENT),
            Err(StoreError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::not_found(format!(
        "{member_id} is not a member of {}",
        g.display_name
    )))
}

// ---- applications -------------------------------------------------------------------------

fn app_view(a: &Application, secret: Option<&Secret>) -> proto::ApplicationView {
    proto::ApplicationView {
        id: a.id,
        client_id: a.client_id.clone(),
        display_name: a.display_name.clone(),
        client_type: a.client_type.as_str().into(),
        redirect_uris: a.redirect_uris.iter().map(|u| u.to_string()).collect(),
        post_logout_redirect_uris: a
            .post_logout_redirect_uris
            .iter()
            .map(|u| u.to_string())
            .collect(),
        grant_types: a
            .grant_types
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        client_app_type: a.client_app_type.as_str().into(),
        app_roles: a.app_roles.clone(),
        created_date_time: rfc3339(a.created_at),
        client_secret: secret.map(|s| s.expose().to_owned()),
    }
}

fn find_app_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not an application id (a UUID)",
            id.chars().take(80).collect::<String>()
        ))
    })
}

async fn list_apps(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::ListResponse<proto::ApplicationView>>, ApiError> {
    let value = state
        .store
        .list_applications(top_of(&q)?)
        .await?
        .iter()
        .map(|a| app_view(a, None))
        .collect();
    Ok(Json(proto::ListResponse::new(value)))
}

async fn get_app(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::ApplicationView>, ApiError> {
    let id = find_app_id(&id)?;
    let a = state
        .store
        .get_application(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no application {id}")))?;
    Ok(Json(app_view(&a, None)))
}

fn parse_uris(field: &str, raw: &[String]) -> Result<Vec<RedirectUri>, ApiError> {
    if raw.len() > MAX_REDIRECT_URIS {
        return Err(ApiError::bad_request(format!(
            "{field} may list at most {MAX_REDIRECT_URIS} URIs"
        )));
    }
    let mut out: Vec<RedirectUri> = Vec::new();
    for u in raw {
        let parsed =
            RedirectUri::parse(u).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

async fn create_app(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateApplication>,
) -> Result<Response, ApiError> {
    let display_name = text("displayName", &req.display_name, MAX_DISPLAY_NAME_LEN)?;
    let client_type = match req.client_type.as_deref() {
        None => ClientType::Confidential,
        Some(t) => ClientType::parse(t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "clientType must be confidential or public, not '{t}'"
            ))
        })?,
    };
    let grant_types = match &req.grant_types {
        None => default_grants(client_type),
        Some(gs) => {
            let mut out = Vec::new();
            for g in gs {
                let parsed = GrantType::parse(g).ok_or_else(|| ApiError::bad_request(format!("grantTypes: '{g}' is not one of authorization_code, refresh_token, client_credentials")))?;
                if !out.contains(&parsed) {
                    out.push(parsed);
                }
            }
            out
        }
    };
    check_grants(client_type, &grant_types)
        .map_err(|e| ApiError::bad_request(format!("grantTypes: {e}")))?;
    let redirect_uris = parse_uris("redirectUris", &req.redirect_uris)?;
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(ApiError::bad_request(
            "redirectUris: the authorization code flow needs at least one redirect URI",
        ));
    }
    let post_logout_redirect_uris =
        parse_uris("postLogoutRedirectUris", &req.post_logout_redirect_uris)?;
    let client_app_type = match req.client_app_type.as_deref() {
        None => ClientAppType::Browser,
        Some(t) => ClientAppType::parse(t).ok_or_else(|| ApiError::bad_request(format!("clientAppType '{t}' is not one of browser, mobileAppsAndDesktopClients, exchangeActiveSync, other")))?,
    };
    for r in &req.app_roles {
        if !cutover_core::APP_ROLES.contains(&r.as_str()) {
            return Err(ApiError::bad_request(format!(
                "appRoles: '{r}' is not a known role (known: {})",
                cutover_core::APP_ROLES.join(", ")
            )));
        }
        if !grant_types.contains(&GrantType::ClientCredentials) {
            return Err(ApiError::bad_request(
                "appRoles are granted to the application itself and need the client_credentials grant",
            ));
        }
    }
    let secret =
        (client_type == ClientType::Confidential).then(crate::bootstrap::new_client_secret);
    let now = state.now();
    let app = Application {
        id: Uuid::now_v7(),
        client_id: Uuid::new_v4().to_string(),
        display_name,
        client_type,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        client_app_type,
        secret_hash: secret
            .as_ref()
            .map(|s| crate::oidc::client_secret_hash(&state, s)),
        app_roles: req.app_roles.clone(),
        created_at: now,
    };
    let a = audit(
        &ctx,
        &admin,
        now,
        "createApplication",
        (
            "application",
            app.id.to_string(),
            Some(app.display_name.clone()),
        ),
        None,
        Some(json!(app_view(&app, None))),
    );
    state.store.create_application(&app, &a).await?;
    Ok(created(app_view(&app, secret.as_ref())))
}

async fn delete_app(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = find_app_id(&id)?;
    let app = state
        .store
        .get_application(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no application {id}")))?;
    if app.client_id == admin.client_id {
        return Err(ApiError::conflict(
            "an admin application cannot delete itself; use another admin application",
        ));
    }
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        "deleteApplication",
        (
            "application",
            app.id.to_string(),
            Some(app.display_name.clone()),
        ),
        Some(json!(app_view(&app, None))),
        None,
    );
    state.store.delete_application(app.id, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- logs and keys ------------------------------------------------------------------------

async fn list_sign_ins(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::ListResponse<Value>>, ApiError> {
    let user_id = q
        .get("userId")
        .map(|u| Uuid::parse_str(u).map_err(|_| ApiError::bad_request("userId must be a UUID")))
        .transpose()?;
    let result = q.get("result").cloned();
    if let Some(r) = &result
        && cutover_core::signin_log::SignInResult::parse(r).is_none()
    {
        return Err(ApiError::bad_request(
            "result must be success, failure or interrupted",
        ));
    }
    let filter = SignInFilter {
        user_id,
        user_principal_name: q.get("userPrincipalName").cloned(),
        client_id: q.get("clientId").or_else(|| q.get("appId")).cloned(),
        result,
        route: q.get("route").cloned(),
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
        older_than: cursor_param(&q)?,
        top: top_of(&q)?,
        ca_policy: q
            .get("caPolicy")
            .map(|p| {
                Uuid::parse_str(p)
                    .map_err(|_| ApiError::bad_request("caPolicy must be a policy id (UUID)"))
            })
            .transpose()?,
        ca_result: q.get("caResult").cloned(),
    };
    let records = state.store.list_sign_ins(&filter).await?;
    Ok(Json(log_page(
        "/auditLogs/signIns",
        &q,
        filter.top,
        records,
        |r| (r.created_at, r.id),
    )))
}

/// One page of a time-ordered log as JSON rows with `createdDateTime`, and the link to the
/// next page when this one was full.
fn log_page<T: serde::Serialize>(
    path: &str,
    q: &HashMap<String, String>,
    top: u32,
    rows: Vec<T>,
    position: impl Fn(&T) -> (Timestamp, Uuid),
) -> proto::ListResponse<Value> {
    let last = rows.last().map(|r| {
        let (created_at, id) = position(r);
        Cursor { created_at, id }.encode()
    });
    let next_link = next_link(path, q, rows.len(), top, last);
    let value = rows
        .iter()
        .map(|r| {
            let mut v = json!(r);
            v["createdDateTime"] = json!(rfc3339(position(r).0));
            v
        })
        .collect();
    proto::ListResponse { value, next_link }
}

async fn list_audits(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::ListResponse<Value>>, ApiError> {
    let filter = AuditFilter {
        actor: q.get("actor").cloned(),
        action: q.get("action").cloned(),
        target_id: q.get("targetId").cloned(),
        since: time_param(&q, "since")?,
        until: time_param(&q, "until")?,
        older_than: cursor_param(&q)?,
        top: top_of(&q)?,
    };
    let events = state.store.list_audit_events(&filter).await?;
    Ok(Json(log_page(
        "/auditLogs/directoryAudits",
        &q,
        filter.top,
        events,
        |a| (a.created_at, a.id),
    )))
}

fn key_views(state: &AppState) -> Vec<proto::SigningKeyView> {
    let now = state.now();
    let active = state.keys.active().map(|k| k.key.kid.clone());
    state
        .keys
        .all()
        .iter()
        .map(|k| proto::SigningKeyView {
            kid: k.key.kid.clone(),
            algorithm: "ES256".into(),
            created_date_time: rfc3339(k.created_at),
            retired_date_time: k.retired_at.map(rfc3339),
            published: k.published_at(now),
            active: Some(&k.key.kid) == active.as_ref(),
        })
        .collect()
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<proto::ListResponse<proto::SigningKeyView>>, ApiError> {
    state
        .keys
        .refresh(state.now())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(proto::ListResponse::new(key_views(&state))))
}

async fn rotate_keys(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
) -> Result<Response, ApiError> {
    let now = state.now();
    let a = audit(
        &ctx,
        &admin,
        now,
        "rotateSigningKey",
        ("signingKey", String::new(), None),
        None,
        Some(json!({"algorithm": "ES256"})),
    );
    let kid = state
        .keys
        .rotate(now, a)
        .await
        .map_err(ApiError::internal)?;
    let view = key_views(&state)
        .into_iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| ApiError::internal("rotated key missing"))?;
    Ok(created(view))
}
