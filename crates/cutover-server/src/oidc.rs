//! The OpenID Connect provider endpoints: discovery, JWKS, authorize, token, userinfo and
//! end-session. Requests are parsed here; what they mean is decided in `cutover_core`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine as _;
use cutover_core::authorize::{AuthorizeCheck, AuthorizeParams, check_authorize_request};
use cutover_core::limits::{ACCESS_TOKEN_TTL_SECS, REFRESH_TOKEN_TTL_SECS};
use cutover_core::signin_log::SignInResult;
use cutover_core::token::{IssuedCode, Redemption};
use cutover_core::{Application, ClientType, GrantType, Secret, Timestamp, User};
use cutover_store::{CodeRedemption, Grant, RefreshRotation};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{OAuthError, PageError};
use crate::signin::{self, SESSION_COOKIE, new_record, read_cookie};
use crate::{AppState, RequestCtx, pages};

/// How long a browser may cache a CORS preflight answer.
pub const CORS_MAX_AGE_SECS: u64 = 600;

pub fn routes() -> Router<Arc<AppState>> {
    // Endpoints a single-page app calls with `fetch`: discovery, keys, token and userinfo.
    // None of them reads a cookie (they trust PKCE, client secrets and bearer tokens), so any
    // origin may call them, without credentials.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(CORS_MAX_AGE_SECS));
    let fetched = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/jwks", get(jwks))
        .route("/oauth2/token", axum::routing::post(token))
        .route("/oauth2/userinfo", get(userinfo).post(userinfo))
        .layer(cors);
    // Endpoints the browser navigates to: cookies matter, so no CORS.
    Router::new()
        .route("/oauth2/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth2/logout", get(logout_get).post(logout_post))
        .merge(fetched)
}

async fn discovery(State(state): State<Arc<AppState>>) -> Response {
    let iss = &state.config.issuer;
    let doc = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth2/authorize"),
        "token_endpoint": format!("{iss}/oauth2/token"),
        "userinfo_endpoint": format!("{iss}/oauth2/userinfo"),
        "jwks_uri": format!("{iss}/oauth2/jwks"),
        "end_session_endpoint": format!("{iss}/oauth2/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": cutover_core::authorize::SUPPORTED_SCOPES,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "sid", "name", "preferred_username", "email"],
        "acr_values_supported": cutover_core::strength::ACR_VALUES_SUPPORTED,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    });
    cacheable(Json(doc).into_response(), 300)
}

async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    cacheable(Json(state.keys.jwks(state.now())).into_response(), 60)
}

fn cacheable(mut res: Response, secs: u32) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={secs}")) {
        res.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    res
}

/// Parse `a=1&b=2` into a map, remembering names that appear more than once.
pub fn parse_params(raw: &[u8]) -> (HashMap<String, String>, Vec<String>) {
    let mut map = HashMap::new();
    let mut dups = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if map.contains_key(k.as_ref()) {
            if !dups.iter().any(|d: &String| d == k.as_ref()) {
                dups.push(k.to_string());
            }
        } else {
            map.insert(k.to_string(), v.to_string());
        }
    }
    (map, dups)
}

fn authorize_params(map: &HashMap<String, String>, dups: Vec<String>) -> AuthorizeParams {
    let g = |k: &str| map.get(k).cloned();
    AuthorizeParams {
        client_id: g("client_id"),
        redirect_uri: g("redirect_uri"),
        response_type: g("response_type"),
        response_mode: g("response_mode"),
        scope: g("scope"),
        state: g("state"),
        nonce: g("nonce"),
        code_challenge: g("code_challenge"),
        code_challenge_method: g("code_challenge_method"),
        prompt: g("prompt"),
        max_age: g("max_age"),
        login_hint: g("login_hint"),
        domain_hint: g("domain_hint"),
        acr_values: g("acr_values"),
        request: g("request"),
        request_uri: g("request_uri"),
        duplicated: dups,
    }
}

async fn authorize_get(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    authorize(state, ctx, headers, q.unwrap_or_default().as_bytes()).await
}

async fn authorize_post(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    authorize(state, ctx, headers, &body).await
}

async fn authorize(
    state: Arc<AppState>,
    ctx: RequestCtx,
    headers: HeaderMap,
    raw: &[u8],
) -> Result<Response, PageError> {
    let (map, dups) = parse_params(raw);
    let params = authorize_params(&map, dups);
    let app = match params
        .client_id
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 256)
    {
        Some(id) => state.store.get_application_by_client_id(id).await?,
        None => None,
    };
    match check_authorize_request(&params, app.as_ref()) {
        AuthorizeCheck::ErrorPage(reason) => {
            tracing::warn!(reason = reason.code(), client_id = ?params.client_id, "authorization request refused without redirect");
            Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "Sign-in request refused",
                reason.message(),
            ))
        }
        AuthorizeCheck::Redirect(e) => {
            tracing::info!(error = e.error, description = %e.description, "authorization request refused");
            let iss = state.config.issuer.clone();
            let mut p = vec![
                ("error", e.error),
                ("error_description", e.description.as_str()),
                ("iss", iss.as_str()),
            ];
            if let Some(s) = e.state.as_deref() {
                p.push(("state", s));
            }
            Ok(signin::client_redirect(&e.redirect_uri, &p))
        }
        AuthorizeCheck::Proceed(req) => {
            let app = app.expect("Proceed implies the client exists");
            signin::start(&state, &ctx, &headers, req, &app).await
        }
    }
}

// ---- token endpoint -----------------------------------------------------------------------

/// Decode `Authorization: Basic` client credentials (RFC 6749 §2.3.1: each part form-encoded).
/// `None` without a Basic header, `Some(Err)` when it is malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let b64 = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Some(Err(()));
    };
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((dec(id), dec(secret))))
}

/// The client id a token request claims, from Basic credentials or the form (for the log).
fn attempted_client_id(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<String> {
    let from_basic = basic_credentials(headers)
        .and_then(Result::ok)
        .map(|(id, _)| id);
    from_basic
        .or_else(|| form.get("client_id").cloned())
        .map(|id| id.chars().take(256).collect())
}

/// Authenticate the client at the token endpoint (RFC 6749 §2.3, OIDC Core §9).
async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Application, OAuthError> {
    let (client_id, secret, used_basic) =
        match (basic_credentials(headers), form.get("client_secret")) {
            (Some(_), Some(_)) => {
                return Err(OAuthError::new(
                    "invalid_request",
                    "use one client authentication method, not both Basic and client_secret",
                ));
            }
            (Some(Err(())), None) => {
                return Err(OAuthError::invalid_client(
                    "malformed Basic credentials",
                    true,
                ));
            }
            (Some(Ok((id, secret))), None) => (id, Some(secret), true),
            (None, secret) => {
                let id = form.get("client_id").cloned().ok_or_else(|| {
                    OAuthError::invalid_client("client authentication is required", false)
                })?;
                (id, secret.cloned(), false)
            }
        };
    if let Some(form_id) = form.get("client_id")
        && used_basic
        && *form_id != client_id
    {
        return Err(OAuthError::new(
            "invalid_request",
            "client_id in the body differs from the authenticated client",
        ));
    }
    if client_id.is_empty() || client_id.len() > 256 {
        return Err(OAuthError::invalid_client("unknown client", used_basic));
    }
    let app = state
        .store
        .get_application_by_client_id(&client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("unknown client", used_basic))?;
    match (app.client_type, &app.secret_hash, secret) {
        (ClientType::Confidential, Some(hash), Some(s))
            if state.hasher.verify("client-secret", &s, hash) =>
        {
            Ok(app)
        }
        (ClientType::Confidential, _, _) => Err(OAuthError::invalid_client(
            "client authentication failed",
            used_basic,
        )),
        (ClientType::Public, _, None) => Ok(app),
        (ClientType::Public, _, Some(_)) => Err(OAuthError::invalid_client(
            "a public client has no secret",
            used_basic,
        )),
    }
}

struct Issued {
    body: Value,
}

fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    crate::crypto::b64(&digest.as_ref()[..16])
}

/// What an access token says about its holder.
struct AccessSpec<'a> {
    sub: &'a str,
    client_id: &'a str,
    scopes: &'a [String],
    grant_id: Option<Uuid>,
    roles: &'a [String],
}

fn access_token(
    state: &AppState,
    now: Timestamp,
    spec: AccessSpec<'_>,
    exp: Timestamp,
) -> Result<String, OAuthError> {
    let AccessSpec {
        sub,
        client_id,
        scopes,
        grant_id,
        roles,
    } = spec;
    let key = state
        .keys
        .active()
        .ok_or_else(|| OAuthError::server_error("no active signing key"))?;
    let mut claims = json!({
        "iss": state.config.issuer,
        "sub": sub,
        "aud": state.config.issuer,
        "client_id": client_id,
        "iat": now.secs(),
        "nbf": now.secs(),
        "exp": exp.secs(),
        "jti": Uuid::new_v4().to_string(),
        "scope": scopes.join(" "),
    });
    if let Some(g) = grant_id {
        claims["gid"] = json!(g.to_string());
    }
    if !roles.is_empty() {
        claims["roles"] = json!(roles);
    }
    Ok(key.key.sign_jwt("at+jwt", &claims))
}

fn user_claims(user: &User, scopes: &[String], claims: &mut Value) {
    if scopes.iter().any(|s| s == "profile") {
        claims["name"] = json!(user.display_name);
        claims["preferred_username"] = json!(user.upn.as_str());
    }
    if scopes.iter().any(|s| s == "email")
        && let Some(m) = &user.mail
    {
        claims["email"] = json!(m);
    }
}

/// Tokens for a user grant: access token, ID token and (with `offline_access`) a refresh token
/// — a new one, or `rotated`, the one the refresh grant already stored in the spent one's place.
async fn issue_user_tokens(
    state: &AppState,
    app: &Application,
    grant: &Grant,
    user: &User,
    nonce: Option<&str>,
    rotated: Option<String>,
) -> Result<Issued, OAuthError> {
    let now = state.now();
    // A grant obtained with a Temporary Access Pass ends with the pass (SPEC §6.3).
    if let Some(cap) = grant.not_after
        && now >= cap
    {
        return Err(OAuthError::new(
            "invalid_grant",
            "the Temporary Access Pass this sign-in used has expired; sign in again",
        ));
    }
    let exp = grant
        .not_after
        .map_or(now.plus_secs(ACCESS_TOKEN_TTL_SECS), |cap| {
            cap.min(now.plus_secs(ACCESS_TOKEN_TTL_SECS))
        });
    let expires_in = exp.secs_since(now).max(1);
    let sub = user.id.to_string();
    let spec = AccessSpec {
        sub: &sub,
        client_id: &app.client_id,
        scopes: &grant.scopes,
        grant_id: Some(grant.id),
        roles: &[],
    };
    let at = access_token(state, now, spec, exp)?;
    let key = state
        .keys
        .active()
        .ok_or_else(|| OAuthError::server_error("no active signing key"))?;
    let mut id_claims = json!({
        "iss": state.config.issuer,
        "sub": user.id.to_string(),
        "aud": app.client_id,
        "iat": now.secs(),
        "exp": exp.secs(),
        "at_hash": at_hash(&at),
        "amr": grant.methods,
        // What the methods prove (SPEC §6.5): "1", "mfa", "passwordlessMfa" or
        // "phishingResistantMfa".
        "acr": cutover_core::strength::acr(&cutover_core::strength::methods_from_amr(&grant.methods)),
        "sid": grant.id.to_string(),
    });
    if let Some(t) = grant.auth_time {
        id_claims["auth_time"] = json!(t.secs());
    }
    if let Some(n) = nonce {
        id_claims["nonce"] = json!(n);
    }
    user_claims(user, &grant.scopes, &mut id_claims);
    let id_token = key.key.sign_jwt("JWT", &id_claims);
    let mut body = json!({
        "access_token": at,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "id_token": id_token,
        "scope": grant.scopes.join(" "),
    });
    if let Some(rt) = rotated {
        body["refresh_token"] = json!(rt);
    } else if grant.scopes.iter().any(|s| s == "offline_access")
        && app.allows_grant(GrantType::RefreshToken)
    {
        let rt = crate::crypto::random_token();
        state
            .store
            .insert_refresh_token(
                &state.hasher.hash("refresh", &rt),
                grant.id,
                now,
                grant
                    .not_after
                    .map_or(now.plus_secs(REFRESH_TOKEN_TTL_SECS), |cap| {
                        cap.min(now.plus_secs(REFRESH_TOKEN_TTL_SECS))
                    }),
            )
            .await?;
        body["refresh_token"] = json!(rt);
    }
    Ok(Issued { body })
}

fn token_response(body: Value) -> Response {
    let mut res = Json(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

async fn token(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(
            "invalid_request",
            "the token request must be application/x-www-form-urlencoded",
        ));
    }
    let (form, dups) = parse_params(&body);
    if let Some(d) = dups.first() {
        return Err(OAuthError::new(
            "invalid_request",
            format!("parameter '{d}' was given more than once"),
        ));
    }
    let grant_type = form
        .get("grant_type")
        .map(String::as_str)
        .ok_or_else(|| OAuthError::new("invalid_request", "grant_type is required"))?;
    let Some(grant) = GrantType::parse(grant_type) else {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            format!(
                "grant_type '{}' is not supported",
                grant_type.chars().take(64).collect::<String>()
            ),
        ));
    };
    let app = match authenticate_client(&state, &headers, &form).await {
        Ok(app) => app,
        Err(e) => {
            if e.error == "invalid_client" {
                let mut r = new_record(&state, &ctx, ctx.id, false);
                r.client_id = attempted_client_id(&headers, &form);
                r.authentication_methods = vec!["clientSecret".into()];
                r.failure_reason = Some("invalidClient".into());
                state.record_sign_in(&r).await?;
            }
            return Err(e);
        }
    };
    if !app.allows_grant(grant) {
        return Err(OAuthError::new(
            "unauthorized_client",
            format!("this client may not use the {} grant", grant.as_str()),
        ));
    }
    let body = match grant {
        GrantType::AuthorizationCode => code_grant(&state, &app, &form).await?,
        GrantType::RefreshToken => refresh_grant(&state, &ctx, &app, &form).await?,
        GrantType::ClientCredentials => client_credentials_grant(&state, &ctx, &app).await?,
    };
    Ok(token_response(body))
}

async fn code_grant(
    state: &AppState,
    app: &Application,
    form: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let code = form
        .get("code")
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| OAuthError::new("invalid_request", "code is required"))?;
    let now = state.now();
    let redeemed = match state
        .store
        .redeem_code(&state.hasher.hash("code", code), now)
        .await?
    {
        CodeRedemption::Redeemed(c) => c,
        CodeRedemption::Replayed { grant_id } => {
            tracing::warn!(grant = %grant_id, client_id = %app.client_id, "authorization code replayed: its grant and tokens are revoked");
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code was already used; tokens issued from it have been revoked",
            ));
        }
        CodeRedemption::NotFound => {
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code is invalid or expired",
            ));
        }
    };
    let judged = cutover_core::token::judge_code_redemption(
        IssuedCode {
            client_id: &redeemed.client_id,
            redirect_uri: &redeemed.redirect_uri,
            code_challenge: redeemed.code_challenge.as_deref(),
        },
        Redemption {
            client_id: &app.client_id,
            redirect_uri: form.get("redirect_uri").map(String::as_str),
            code_verifier: form.get("code_verifier").map(String::as_str),
        },
    );
    if let Err(rejection) = judged {
        // The code is spent either way; its grant must not survive a mismatched redemption.
        state
            .store
            .revoke_grant(redeemed.grant_id, rejection.revoke_reason(), now)
            .await?;
        return Err(OAuthError::new("invalid_grant", rejection.description()));
    }
    let grant = state
        .store
        .get_grant(redeemed.grant_id)
        .await?
        .ok_or_else(|| OAuthError::new("invalid_grant", "the grant no longer exists"))?;
    if grant.revoked_at.is_some() {
        return Err(OAuthError::new(
            "invalid_grant",
            "the grant has been revoked",
        ));
    }
    let user = load_active_user(state, &grant).await?;
    Ok(
        issue_user_tokens(state, app, &grant, &user, redeemed.nonce.as_deref(), None)
            .await?
            .body,
    )
}

async fn load_active_user(state: &AppState, grant: &Grant) -> Result<User, OAuthError> {
    let uid = grant
        .user_id
        .ok_or_else(|| OAuthError::new("invalid_grant", "the grant has no user"))?;
    let user = state
        .store
        .get_user(uid)
        .await?
        .ok_or_else(|| OAuthError::new("invalid_grant", "the user no longer exists"))?
        .user;
    if !user.account_enabled {
        return Err(OAuthError::new(
            "invalid_grant",
            "the user account is disabled",
        ));
    }
    Ok(user)
}

async fn refresh_grant(
    state: &AppState,
    ctx: &RequestCtx,
    app: &Application,
    form: &HashMap<String, String>,
) -> Result<Value, OAuthError> {
    let rt = form
        .get("refresh_token")
        .filter(|c| !c.is_empty() && c.len() <= 256)
        .ok_or_else(|| OAuthError::new("invalid_request", "refresh_token is required"))?;
    let now = state.now();
    let new_rt = crate::crypto::random_token();
    let mut record = new_record(state, ctx, ctx.id, false);
    record.app_id = Some(app.id);
    record.client_id = Some(app.client_id.clone());
    record.client_app_type = Some(app.client_app_type);
    record.authentication_methods = vec!["refreshToken".into()];
    let outcome = state
        .store
        .rotate_refresh_token(
            &state.hasher.hash("refresh", rt),
            &state.hasher.hash("refresh", &new_rt),
            now,
            now.plus_secs(REFRESH_TOKEN_TTL_SECS),
        )
        .await?;
    let failure = |code: &'static str, msg: &'static str| (code, msg);
    let result = match outcome {
        RefreshRotation::Rotated(grant) if grant.client_id == app.client_id => Ok(grant),
        RefreshRotation::Rotated(grant) => {
            state
                .store
                .revoke_grant(grant.id, "refreshClientMismatch", now)
                .await?;
            Err(failure(
                "refreshTokenClientMismatch",
                "the refresh token was issued to another client",
            ))
        }
        RefreshRotation::Replayed { grant_id } => {
            tracing::warn!(grant = %grant_id, "refresh token replayed: grant revoked");
            Err(failure(
                "refreshTokenReplayed",
                "the refresh token was already used; the session has been revoked",
            ))
        }
        RefreshRotation::Expired => Err(failure(
            "refreshTokenExpired",
            "the refresh token has expired",
        )),
        RefreshRotation::Revoked => Err(failure(
            "grantRevoked",
            "the refresh token has been revoked",
        )),
        RefreshRotation::NotFound => Err(failure(
            "refreshTokenInvalid",
            "the refresh token is invalid",
        )),
    };
    let grant = match result {
        Ok(g) => g,
        Err((code, msg)) => {
            record.failure_reason = Some(code.into());
            state.record_sign_in(&record).await?;
            return Err(OAuthError::new("invalid_grant", msg));
        }
    };
    record.user_id = grant.user_id;
    let user = match load_active_user(state, &grant).await {
        Ok(u) => u,
        Err(e) => {
            record.failure_reason = Some("userNotActive".into());
            state.record_sign_in(&record).await?;
            return Err(e);
        }
    };
    record.user_principal_name = Some(user.upn.to_string());
    if let Some(cap) = grant.not_after
        && now >= cap
    {
        // The Temporary Access Pass this grant came from has ended: so has the grant.
        state
            .store
            .revoke_grant(grant.id, "temporaryAccessPassExpired", now)
            .await?;
        record.failure_reason = Some("grantExpired".into());
        state.record_sign_in(&record).await?;
        return Err(OAuthError::new(
            "invalid_grant",
            "the Temporary Access Pass this sign-in used has expired; sign in again",
        ));
    }
    // Conditional Access sees every refresh: a policy enabled (or a user moved into one)
    // after the sign-in applies from the next refresh, and a refresh cannot step up.
    let Some(user_record) = state.store.get_user(user.id).await? else {
        return Err(OAuthError::new(
            "invalid_grant",
            "the user no longer exists",
        ));
    };
    let evaluation = crate::conditional_access::evaluate_sign_in(
        state,
        &crate::conditional_access::SignInContext {
            user: &user_record,
            app_id: app.id,
            client_app_type: app.client_app_type,
            ip: ctx.ip.as_deref(),
            user_agent: ctx.user_agent.as_deref(),
            amr: &grant.methods,
            auth_time: grant.auth_time.unwrap_or(grant.created_at),
        },
    )
    .await?;
    record.conditional_access = evaluation.policy_results();
    {
        use cutover_core::conditional_access::Decision;
        let refused = match &evaluation.decision {
            Decision::Allow => None,
            Decision::Block { .. } => {
                state
                    .store
                    .revoke_grant(grant.id, "conditionalAccessBlocked", now)
                    .await?;
                Some((
                    cutover_core::signin_log::FailureReason::BlockedByConditionalAccess.code(),
                    "a Conditional Access policy blocks this user from this application; the grant was revoked",
                ))
            }
            Decision::StepUp { .. } => Some((
                "conditionalAccessInteractionRequired",
                "a Conditional Access policy requires a stronger sign-in than this grant's: sign the user in again (interaction_required)",
            )),
            Decision::Reauthenticate { .. } => Some((
                "conditionalAccessInteractionRequired",
                "a Conditional Access policy's sign-in frequency has passed: sign the user in again (interaction_required)",
            )),
        };
        if let Some((code, msg)) = refused {
            record.failure_reason = Some(code.into());
            state.record_sign_in(&record).await?;
            return Err(OAuthError::new("invalid_grant", msg));
        }
    }
    record.result = SignInResult::Success;
    state.record_sign_in(&record).await?;
    // Rotation: the new refresh token (stored by the rotation) replaces the one just spent.
    let issued = issue_user_tokens(state, app, &grant, &user, None, Some(new_rt)).await?;
    Ok(issued.body)
}

async fn client_credentials_grant(
    state: &AppState,
    ctx: &RequestCtx,
    app: &Application,
) -> Result<Value, OAuthError> {
    if app.client_type != ClientType::Confidential {
        return Err(OAuthError::new(
            "unauthorized_client",
            "client credentials need a confidential client",
        ));
    }
    let now = state.now();
    let mut record = new_record(state, ctx, ctx.id, false);
    record.app_id = Some(app.id);
    record.client_id = Some(app.client_id.clone());
    record.client_app_type = Some(app.client_app_type);
    record.authentication_methods = vec!["clientSecret".into()];
    record.result = SignInResult::Success;
    state.record_sign_in(&record).await?;
    let exp = now.plus_secs(ACCESS_TOKEN_TTL_SECS);
    let spec = AccessSpec {
        sub: &app.client_id,
        client_id: &app.client_id,
        scopes: &[],
        grant_id: None,
        roles: &app.app_roles,
    };
    let at = access_token(state, now, spec, exp)?;
    Ok(json!({"access_token": at, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_TTL_SECS}))
}

// ---- access tokens presented to Cutover ---------------------------------------------------

/// Claims of a verified access token.
#[derive(Debug, Clone)]
pub struct AccessClaims {
    pub sub: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub grant_id: Option<Uuid>,
    pub roles: Vec<String>,
}

/// Verify an access token issued by this Cutover (signature, type, issuer, audience, expiry).
pub async fn verify_access_token(state: &AppState, token: &str) -> Result<AccessClaims, String> {
    let jwt = crate::crypto::UnverifiedJwt::parse(token).map_err(|e| e.to_string())?;
    if jwt.typ.as_deref() != Some("at+jwt") {
        return Err("not an access token".into());
    }
    let now = state.now();
    let key = state
        .keys
        .find(&jwt.kid, now)
        .await
        .ok_or("signed by an unknown or retired key")?;
    let claims = jwt.verify(&key.public).map_err(|e| e.to_string())?;
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    if s("iss") != Some(state.config.issuer.as_str())
        || s("aud") != Some(state.config.issuer.as_str())
    {
        return Err("wrong issuer or audience".into());
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or("no exp")?;
    if now.secs() >= exp {
        return Err("expired".into());
    }
    Ok(AccessClaims {
        sub: s("sub").ok_or("no sub")?.to_owned(),
        client_id: s("client_id").ok_or("no client_id")?.to_owned(),
        scopes: s("scope")
            .unwrap_or("")
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
        grant_id: s("gid").and_then(|g| Uuid::parse_str(g).ok()),
        roles: claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn userinfo(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    let token = bearer(&headers)
        .ok_or_else(|| OAuthError::invalid_token("a Bearer access token is required"))?;
    let claims = verify_access_token(&state, token).await.map_err(|e| {
        tracing::info!(reason = %e, "userinfo refused a token");
        OAuthError::invalid_token("the access token is invalid or expired")
    })?;
    let grant_id = claims
        .grant_id
        .ok_or_else(|| OAuthError::invalid_token("the access token was not issued to a user"))?;
    let grant = state
        .store
        .get_grant(grant_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("the grant no longer exists"))?;
    if grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_token(
            "the access token has been revoked",
        ));
    }
    let user = load_active_user(&state, &grant)
        .await
        .map_err(|_| OAuthError::invalid_token("the user is no longer active"))?;
    let mut body = json!({"sub": user.id.to_string()});
    user_claims(&user, &claims.scopes, &mut body);
    Ok(token_response(body))
}

// ---- end session ---------------------------------------------------------------------------

async fn logout_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, PageError> {
    logout(state, headers, q.unwrap_or_default().as_bytes()).await
}

async fn logout_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    logout(state, headers, &body).await
}

/// RP-initiated logout: end the SSO session, then return to the client only to a registered
/// post-logout URI of the client the ID token hint (or `client_id`) names.
async fn logout(
    state: Arc<AppState>,
    headers: HeaderMap,
    raw: &[u8],
) -> Result<Response, PageError> {
    let (params, _) = parse_params(raw);
    if let Some(v) = read_cookie(&headers, SESSION_COOKIE) {
        state
            .store
            .delete_session(&state.hasher.hash("session", &v))
            .await?;
    }
    let hinted_client = match params.get("id_token_hint") {
        Some(hint) => id_token_audience(&state, hint).await,
        None => None,
    };
    let client_id = hinted_client.or_else(|| params.get("client_id").cloned());
    let mut target = None;
    if let (Some(cid), Some(uri)) = (client_id, params.get("post_logout_redirect_uri"))
        && let Some(app) = state.store.get_application_by_client_id(&cid).await?
        && app.has_post_logout_redirect_uri(uri)
    {
        target = Some(uri.clone());
    }
    let clear = signin::cookie(SESSION_COOKIE, "", 0, state.config.secure_cookies());
    let mut res = match target {
        Some(uri) => {
            let mut url = url::Url::parse(&uri).map_err(|_| {
                PageError::new(StatusCode::BAD_REQUEST, "Signed out", "You are signed out.")
            })?;
            if let Some(s) = params.get("state") {
                url.query_pairs_mut().append_pair("state", s);
            }
            Redirect::to(url.as_str()).into_response()
        }
        None => pages::signed_out_page().into_response(),
    };
    res.headers_mut().append(header::SET_COOKIE, clear);
    Ok(res)
}

/// The audience of an ID token we signed (expired ones are fine for a logout hint).
async fn id_token_audience(state: &AppState, token: &str) -> Option<String> {
    let jwt = crate::crypto::UnverifiedJwt::parse(token).ok()?;
    let key = state.keys.find(&jwt.kid, state.now()).await?;
    let claims = jwt.verify(&key.public).ok()?;
    if claims.get("iss").and_then(Value::as_str) != Some(state.config.issuer.as_str()) {
        return None;
    }
    claims.get("aud").and_then(Value::as_str).map(str::to_owned)
}

/// Used by the token endpoint tests and the admin layer to hash a client secret for storage.
pub fn client_secret_hash(state: &AppState, secret: &Secret) -> String {
    state.hasher.hash("client-secret", secret.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_detect_duplicates() {
        let (m, d) = parse_params(b"a=1&b=2&a=3&c=%20x");
        assert_eq!(m.get("a").map(String::as_str), Some("1"));
        assert_eq!(m.get("c").map(String::as_str), Some(" x"));
        assert_eq!(d, vec!["a".to_string()]);
        let (m, d) = parse_params(b"");
        assert!(m.is_empty() && d.is_empty());
        let (_, _) = parse_params(&[0xff, 0xfe, b'=', 0x80]);
    }
}
