//! The browser sign-in: from a checked authorization request, through the identifier and
//! password pages, to an authorization code and an SSO session.
//!
//! State between pages lives in a server-side sign-in transaction (shared by all nodes through
//! the database) named by an opaque id in the URL, bound to the browser by a cookie; every form
//! carries a CSRF token derived from both.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use cutover_core::authorize::{AuthorizeRequest, Prompt};
use cutover_core::limits::{
    AUTH_CODE_TTL_SECS, MAX_PASSWORD_LEN, SIGN_IN_TXN_TTL_SECS, SSO_SESSION_TTL_SECS,
};
use cutover_core::lockout::CheckOutcome;
use cutover_core::routing::{Credential, Route, RoutingInput, route_sign_in};
use cutover_core::session::{SessionDecision, SessionFacts, decide_session};
use cutover_core::signin_log::{
    self, FailureReason, LockoutDecision, PasswordOutcome, SignInRecord, SignInResult,
};
use cutover_core::staged::{SignInEnd, StagedTrace};
use cutover_core::{Application, ClientAppType, Secret, Timestamp, User, UserPrincipalName};
use cutover_store::{AuthCode, Grant, SignInTransaction, SsoSession, UserRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::PageError;
use crate::pages;
use crate::{AppState, RequestCtx};

pub const SESSION_COOKIE: &str = "cutover_session";
pub const BROWSER_COOKIE: &str = "cutover_bb";
/// Lifetime of the browser-binding cookie that ties sign-in transactions to one browser.
pub const BROWSER_COOKIE_TTL_SECS: i64 = 24 * 60 * 60;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(identifier_get))
        .route("/login/identifier", post(identifier_post))
        .route("/login/password", get(password_get).post(password_post))
}

/// What the sign-in pages remember between steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnData {
    pub client_id: String,
    pub app_id: Uuid,
    pub app_name: String,
    pub client_app_type: ClientAppType,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub domain_hint: Option<String>,
    /// Keyed hash of the browser-binding cookie the transaction belongs to.
    pub browser_binding: String,
    pub correlation_id: Uuid,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub route_reason: Option<String>,
    /// How the managed route checks the credential (`cutover_core::routing::Credential`).
    #[serde(default)]
    pub credential: Option<String>,
    /// The staged-rollout feature that routed this sign-in, if any.
    #[serde(default)]
    pub staged_feature: Option<String>,
    /// The user's staged-rollout state when they were identified.
    #[serde(default)]
    pub staged: Option<StagedTrace>,
    /// Set while the browser is at the upstream IdP.
    #[serde(default)]
    pub upstream: Option<crate::federation::UpstreamPending>,
    /// The strength the application asked for (`acr_values`): the sign-in steps up to it.
    #[serde(default)]
    pub acr: Option<cutover_core::strength::BuiltIn>,
    /// The checked first factor of a sign-in waiting for its second (`crate::mfa`).
    #[serde(default)]
    pub first_factor: Option<crate::mfa::FirstFactor>,
}

pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

pub fn cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

fn csrf_token(state: &AppState, txn_id: &str, bb: &str) -> String {
    state.hasher.hash("csrf", &format!("{txn_id}.{bb}"))
}

/// The CSRF token of the transaction `txn_id` in the browser bound by `bb`.
pub(crate) fn csrf_for(state: &AppState, txn_id: &str, bb: &str) -> String {
    csrf_token(state, txn_id, bb)
}

/// The base sign-in record for this request; callers fill the outcome.
pub fn new_record(
    state: &AppState,
    ctx: &RequestCtx,
    correlation_id: Uuid,
    interactive: bool,
) -> SignInRecord {
    SignInRecord {
        id: Uuid::now_v7(),
        created_at: state.now(),
        correlation_id,
        user_id: None,
        user_principal_name: None,
        app_id: None,
        client_id: None,
        ip_address: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        client_app_type: None,
        device_platform: ctx
            .user_agent
            .as_deref()
            .map(|ua| signin_log::device_platform(ua).to_owned()),
        device_family: None,
        is_interactive: interactive,
        route: None,
        route_reason: None,
        authentication_methods: vec![],
        staged_rollout_feature: None,
        staged_rollout: None,
        agent_id: None,
        conditional_access: vec![],
        lockout_decision: LockoutDecision::NotEvaluated,
        result: SignInResult::Failure,
        failure_reason: None,
    }
}

pub(crate) fn record_for_txn(state: &AppState, ctx: &RequestCtx, txn: &TxnData) -> SignInRecord {
    let mut r = new_record(state, ctx, txn.correlation_id, true);
    r.app_id = Some(txn.app_id);
    r.client_id = Some(txn.client_id.clone());
    r.client_app_type = Some(txn.client_app_type);
    r.user_principal_name = txn.username.clone();
    r.route = txn.route.clone();
    r.route_reason = txn.route_reason.clone();
    r.staged_rollout_feature = txn.staged_feature.clone();
    r.staged_rollout = txn.staged.clone();
    r
}

/// A managed attempt that could not check the credential at all (no agent, no synced hash).
/// When the administrator has already moved the user back to federation (a pending removal),
/// waiting for a completed managed sign-in would lock them out: switch now (SPEC §4.3,
/// [`SignInEnd::ManagedCredentialUnavailable`]) and send them on to their organisation's
/// sign-in. `None` when nothing was pending.
async fn escape_rollback(
    state: &Arc<AppState>,
    txn_id: &str,
    txn: &TxnData,
    user_record: &UserRecord,
    domain: Option<&cutover_core::Domain>,
    record: &mut SignInRecord,
) -> Result<Option<Response>, PageError> {
    let user = &user_record.user;
    if crate::rollout::staged_state_frozen(user, domain) {
        return Ok(None);
    }
    let target = crate::rollout::staged_target(state, user_record, domain).await?;
    let (before, after) = state
        .store
        .finish_staged_sign_in(
            user,
            target.admitted,
            SignInEnd::ManagedCredentialUnavailable,
            state.now(),
            txn.correlation_id,
        )
        .await?;
    if before.effective == after.effective {
        return Ok(None);
    }
    tracing::info!(user = %user.upn, "staged rollout: the managed credential cannot be checked and the user was already moved back; returning them to federation now");
    record.staged_rollout = Some(StagedTrace {
        effective: before.effective,
        desired: target.desired,
        effective_after: after.effective,
        changed_at: after.changed_at,
        held: target.held,
    });
    Ok(Some(
        pages::error_page_with_action(
            "Continue at your organisation's sign-in page",
            "Your organisation has moved your sign-in back to its own sign-in service. Continue, and sign in there.",
            &format!("/login?t={txn_id}"),
            "Continue",
        )
        .into_response(),
    ))
}

/// The end of every completed interactive sign-in (password, pass, passkey, second step or
/// federation callback, all through `mfa::finish_or_step_up`): consume the transaction (of two
/// racing submissions only one goes on), switch the user's effective staged-rollout state to
/// the desired one (SPEC §4.3), write the sign-in record, open the SSO session and send the
/// code to the client. A credential with its own end (a Temporary Access Pass) passes
/// `not_after`: the SSO session and every token of the grant end by then.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn complete_sign_in_capped(
    state: &Arc<AppState>,
    txn_id: &str,
    txn: &TxnData,
    user_record: &UserRecord,
    domain: Option<&cutover_core::Domain>,
    mut record: SignInRecord,
    amr: Vec<String>,
    not_after: Option<Timestamp>,
) -> Result<Response, PageError> {
    if !state.store.delete_sign_in_transaction(txn_id).await? {
        return Err(PageError::expired());
    }
    let user = &user_record.user;
    let now = state.now();
    // A password feature whose credential is missing is held back: no switch strands anyone.
    let target = crate::rollout::staged_target(state, user_record, domain).await?;
    // One read when nothing switches; the locked write only for a change.
    let (before, after) = if crate::rollout::staged_state_frozen(user, domain) {
        let stored = state.store.get_staged_state(user.id).await?;
        (stored, stored)
    } else {
        state
            .store
            .finish_staged_sign_in(
                user,
                target.admitted,
                SignInEnd::InteractiveCompleted,
                now,
                txn.correlation_id,
            )
            .await?
    };
    if before.effective != after.effective {
        tracing::info!(user = %user.upn, before = ?before.effective, after = ?after.effective, "staged rollout: the user's effective features changed at the end of this sign-in");
    }
    record.user_id = Some(user.id);
    record.user_principal_name = Some(user.upn.to_string());
    if let Some(held) = target.held {
        tracing::info!(user = %user.upn, held = held.code(), "staged rollout: a desired feature is held back from this user's switch");
    }
    record.staged_rollout = Some(StagedTrace {
        effective: before.effective,
        desired: target.desired,
        effective_after: after.effective,
        changed_at: after.changed_at,
        held: target.held,
    });
    record.result = SignInResult::Success;
    record.failure_reason = None;
    // The record is written before any code or token leaves the server.
    state.record_sign_in(&record).await?;
    if user.break_glass {
        let ctx = RequestCtx {
            id: record.correlation_id,
            ip: record.ip_address.clone(),
            user_agent: record.user_agent.clone(),
            ua_model: None,
        };
        crate::break_glass::alert_sign_in(state, &ctx, user_record, &amr).await;
    }
    let session_value = crate::crypto::random_token();
    state
        .store
        .create_session(&SsoSession {
            id_hash: state.hasher.hash("session", &session_value),
            user_id: user.id,
            auth_time: now,
            methods: amr.clone(),
            created_at: now,
            expires_at: session_expiry(now, not_after),
        })
        .await?;
    let set = cookie(
        SESSION_COOKIE,
        &session_value,
        session_expiry(now, not_after).secs_since(now).max(0),
        state.config.secure_cookies(),
    );
    issue_code(state, txn, user, now, amr, Some(set), not_after).await
}

/// When an SSO session opened at `now` ends: its usual lifetime, or earlier for a credential
/// with its own end.
fn session_expiry(now: Timestamp, not_after: Option<Timestamp>) -> Timestamp {
    let usual = now.plus_secs(SSO_SESSION_TTL_SECS);
    not_after.map_or(usual, |n| n.min(usual))
}

/// Append `code`, `state` and `iss` (RFC 9207) — or an error — to the client's redirect URI.
pub fn client_redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(u) => u,
        Err(_) => {
            return PageError::new(
                StatusCode::BAD_REQUEST,
                "Cannot return to the application",
                "The application's return address is invalid.",
            )
            .into_response();
        }
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let mut res = Redirect::to(url.as_str()).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Entry from `/authorize` once the request is checked: answer from the SSO session when it
/// may, otherwise open a sign-in transaction and show the identifier page.
pub async fn start(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    req: AuthorizeRequest,
    app: &Application,
) -> Result<Response, PageError> {
    let now = state.now();
    let correlation_id = ctx.id;

    // The session, if the browser has one and its user is still enabled.
    let mut session_user: Option<(SsoSession, User)> = None;
    if let Some(cookie_value) = read_cookie(headers, SESSION_COOKIE) {
        let id_hash = state.hasher.hash("session", &cookie_value);
        if let Some(s) = state.store.get_session(&id_hash, now).await?
            && let Some(u) = state.store.get_user(s.user_id).await?
        {
            session_user = Some((s, u.user));
        }
    }
    let facts = session_user.as_ref().map(|(s, u)| SessionFacts {
        auth_time: s.auth_time,
        expires_at: s.expires_at,
        user_enabled: u.account_enabled,
        matches_login_hint: req
            .login_hint
            .as_deref()
            .is_none_or(|hint| hint.eq_ignore_ascii_case(u.upn.as_str())),
    });
    let iss = state.config.issuer.clone();
    match decide_session(req.prompt, req.max_age, facts, now) {
        SessionDecision::Reuse => {
            let Some((session, user)) = session_user else {
                return Err(PageError::internal("session reuse without a session"));
            };
            let Some(user_record) = state.store.get_user(user.id).await? else {
                return Err(PageError::expired());
            };
            // Conditional Access sees a reused session too: no token path bypasses it.
            let evaluation = crate::conditional_access::evaluate_sign_in(
                state,
                &crate::conditional_access::SignInContext {
                    user: &user_record,
                    app_id: app.id,
                    client_app_type: app.client_app_type,
                    ip: ctx.ip.as_deref(),
                    user_agent: ctx.user_agent.as_deref(),
                    amr: &session.methods,
                    auth_time: session.auth_time,
                },
            )
            .await?;
            use cutover_core::conditional_access::Decision;
            let ca_required = match &evaluation.decision {
                Decision::Block { .. } => {
                    let mut record = new_record(state, ctx, correlation_id, true);
                    record.app_id = Some(app.id);
                    record.client_id = Some(app.client_id.clone());
                    record.client_app_type = Some(app.client_app_type);
                    record.user_id = Some(user.id);
                    record.user_principal_name = Some(user.upn.to_string());
                    record.authentication_methods = vec!["previousSession".into()];
                    record.conditional_access = evaluation.policy_results();
                    record.failure_reason =
                        Some(FailureReason::BlockedByConditionalAccess.code().into());
                    state.record_sign_in(&record).await?;
                    let mut params = vec![
                        ("error", "access_denied"),
                        (
                            "error_description",
                            "a Conditional Access policy blocks this sign-in",
                        ),
                        ("iss", iss.as_str()),
                    ];
                    if let Some(s) = req.state.as_deref() {
                        params.push(("state", s));
                    }
                    return Ok(client_redirect(&req.redirect_uri, &params));
                }
                Decision::StepUp { requirement, .. } => {
                    requirement.built_in.or((!requirement.custom.is_empty())
                        .then_some(cutover_core::strength::BuiltIn::PhishingResistantMfa))
                }
                Decision::Reauthenticate { .. } | Decision::Allow => None,
            };
            let reauthenticate = matches!(evaluation.decision, Decision::Reauthenticate { .. });
            if let Some(required) = req.acr.max(ca_required)
                && !cutover_core::strength::meets_built_in(
                    &cutover_core::strength::methods_from_amr(&session.methods),
                    required,
                )
            {
                return crate::mfa::step_up_session(
                    state, ctx, headers, &req, app, &session, &user, required,
                )
                .await;
            }
            if reauthenticate {
                // The session is older than a policy's sign-in frequency: the pages again —
                // or, when the client forbade pages (prompt=none), `login_required`.
                tracing::info!(user = %user.upn, "Conditional Access sign-in frequency: the session is too old to reuse");
                if req.prompt == Prompt::None {
                    let mut params = vec![
                        ("error", "login_required"),
                        (
                            "error_description",
                            "a Conditional Access sign-in frequency requires the user to sign in again",
                        ),
                        ("iss", iss.as_str()),
                    ];
                    if let Some(s) = req.state.as_deref() {
                        params.push(("state", s));
                    }
                    return Ok(client_redirect(&req.redirect_uri, &params));
                }
                return show_pages(state, ctx, headers, req, app, correlation_id).await;
            }
            let mut record = new_record(state, ctx, correlation_id, true);
            record.conditional_access = evaluation.policy_results();
            record.app_id = Some(app.id);
            record.client_id = Some(app.client_id.clone());
            record.client_app_type = Some(app.client_app_type);
            record.user_id = Some(user.id);
            record.user_principal_name = Some(user.upn.to_string());
            record.authentication_methods = vec!["previousSession".into()];
            record.result = SignInResult::Success;
            state.record_sign_in(&record).await?;
            let txn = TxnData::from_request(&req, app, String::new(), correlation_id);
            // A session opened with a Temporary Access Pass ends when the pass does: so do
            // the tokens of a grant made from it.
            let not_after = session
                .methods
                .iter()
                .any(|m| m == cutover_core::tap::TAP_AMR)
                .then_some(session.expires_at);
            return issue_code(
                state,
                &txn,
                &user,
                session.auth_time,
                session.methods.clone(),
                None,
                not_after,
            )
            .await;
        }
        SessionDecision::LoginRequired => {
            let mut params = vec![
                ("error", "login_required"),
                (
                    "error_description",
                    "prompt=none was requested but the user is not signed in",
                ),
                ("iss", iss.as_str()),
            ];
            if let Some(s) = req.state.as_deref() {
                params.push(("state", s));
            }
            return Ok(client_redirect(&req.redirect_uri, &params));
        }
        SessionDecision::Prompt => {}
    }
    show_pages(state, ctx, headers, req, app, correlation_id).await
}

/// Show the pages: open a transaction bound to this browser and send it to the identifier
/// page (or, for a `domain_hint` naming a federated domain, to that domain's IdP).
async fn show_pages(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    req: AuthorizeRequest,
    app: &Application,
    correlation_id: Uuid,
) -> Result<Response, PageError> {
    let now = state.now();
    let (bb, new_bb) = match read_cookie(headers, BROWSER_COOKIE) {
        Some(bb) => (bb, false),
        None => (crate::crypto::random_token(), true),
    };
    let txn_id = crate::crypto::random_token();
    let mut txn =
        TxnData::from_request(&req, app, state.hasher.hash("browser", &bb), correlation_id);
    // A `domain_hint` naming a federated domain skips the identifier page and goes straight
    // to that domain's IdP (the user is identified at the callback).
    let hinted_idp = match req.domain_hint.as_deref() {
        Some(hint) => match cutover_core::DomainName::parse(hint) {
            Ok(name) => state
                .store
                .get_domain(name.as_str())
                .await?
                .and_then(|d| d.identity_provider_id()),
            Err(_) => None,
        },
        None => None,
    };
    if hinted_idp.is_some() {
        txn.route = Some("federated".into());
    }
    let data = serde_json::to_value(&txn).map_err(PageError::internal)?;
    state
        .store
        .create_sign_in_transaction(&SignInTransaction {
            id: txn_id.clone(),
            data,
            created_at: now,
            expires_at: now.plus_secs(SIGN_IN_TXN_TTL_SECS),
        })
        .await?;
    let mut res = match hinted_idp {
        Some(idp) => {
            crate::federation::redirect_upstream(
                state,
                ctx,
                &txn_id,
                txn,
                idp,
                req.login_hint.as_deref(),
                false,
            )
            .await?
        }
        None => Redirect::to(&format!("/login?t={txn_id}")).into_response(),
    };
    if new_bb {
        res.headers_mut().append(
            header::SET_COOKIE,
            cookie(
                BROWSER_COOKIE,
                &bb,
                BROWSER_COOKIE_TTL_SECS,
                state.config.secure_cookies(),
            ),
        );
    }
    Ok(res)
}

impl TxnData {
    pub(crate) fn from_request(
        req: &AuthorizeRequest,
        app: &Application,
        browser_binding: String,
        correlation_id: Uuid,
    ) -> Self {
        Self {
            client_id: app.client_id.clone(),
            app_id: app.id,
            app_name: app.display_name.clone(),
            client_app_type: app.client_app_type,
            redirect_uri: req.redirect_uri.clone(),
            scopes: req.scopes.clone(),
            state: req.state.clone(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.as_ref().map(|c| c.as_str().to_owned()),
            prompt: req.prompt,
            max_age: req.max_age,
            login_hint: req.login_hint.clone(),
            domain_hint: req.domain_hint.clone(),
            browser_binding,
            correlation_id,
            username: None,
            route: None,
            route_reason: None,
            credential: None,
            staged_feature: None,
            staged: None,
            upstream: None,
            acr: req.acr,
            first_factor: None,
        }
    }
}

/// Create the grant and code, and send the browser back to the client.
async fn issue_code(
    state: &AppState,
    txn: &TxnData,
    user: &User,
    auth_time: Timestamp,
    methods: Vec<String>,
    set_session: Option<HeaderValue>,
    not_after: Option<Timestamp>,
) -> Result<Response, PageError> {
    let now = state.now();
    // The security-info pages are Cutover's own: the session is all they need, no code.
    if txn.client_id == crate::my::MY_CLIENT_ID {
        let mut res = Redirect::to(&txn.redirect_uri).into_response();
        if let Some(c) = set_session {
            res.headers_mut().append(header::SET_COOKIE, c);
        }
        return Ok(res);
    }
    let code = crate::crypto::random_token();
    let grant = Grant {
        id: Uuid::now_v7(),
        client_id: txn.client_id.clone(),
        user_id: Some(user.id),
        scopes: txn.scopes.clone(),
        auth_time: Some(auth_time),
        methods,
        created_at: now,
        revoked_at: None,
        not_after,
    };
    let auth_code = AuthCode {
        code_hash: state.hasher.hash("code", &code),
        grant_id: grant.id,
        client_id: txn.client_id.clone(),
        redirect_uri: txn.redirect_uri.clone(),
        nonce: txn.nonce.clone(),
        code_challenge: txn.code_challenge.clone(),
        created_at: now,
        expires_at: now.plus_secs(AUTH_CODE_TTL_SECS),
    };
    state
        .store
        .create_grant_with_code(&grant, &auth_code)
        .await?;
    let iss = state.config.issuer.clone();
    let mut params = vec![("code", code.as_str()), ("iss", iss.as_str())];
    if let Some(s) = txn.state.as_deref() {
        params.push(("state", s));
    }
    let mut res = client_redirect(&txn.redirect_uri, &params);
    if let Some(c) = set_session {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(res)
}

#[derive(Debug, Deserialize)]
struct TxnQuery {
    t: Option<String>,
}

/// Load a transaction and check it belongs to this browser.
pub(crate) async fn load_txn(
    state: &AppState,
    headers: &HeaderMap,
    txn_id: Option<&str>,
) -> Result<(String, TxnData, String), PageError> {
    let Some(txn_id) = txn_id.filter(|t| !t.is_empty() && t.len() <= 128) else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Start from your application",
            "Sign-in starts at the application you want to use. Go back to it and choose Sign in.",
        ));
    };
    let Some(bb) = read_cookie(headers, BROWSER_COOKIE) else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Cookies are needed to sign in",
            "Your browser did not send the sign-in cookie. Allow cookies for this site, then go back to the application and start again.",
        ));
    };
    let Some(row) = state
        .store
        .get_sign_in_transaction(txn_id, state.now())
        .await?
    else {
        return Err(PageError::expired());
    };
    let txn: TxnData = serde_json::from_value(row.data).map_err(|e| {
        tracing::error!(error = %e, "unreadable sign-in transaction");
        PageError::expired()
    })?;
    if !state.hasher.verify("browser", &bb, &txn.browser_binding) {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "This sign-in belongs to another browser",
            "This sign-in was started in a different browser or the cookie changed. Go back to the application and start again.",
        ));
    }
    Ok((txn_id.to_owned(), txn, bb))
}

pub(crate) fn check_csrf(
    state: &AppState,
    txn_id: &str,
    bb: &str,
    presented: Option<&str>,
) -> Result<(), PageError> {
    let want = csrf_token(state, txn_id, bb);
    let ok = presented.is_some_and(|p| {
        use subtle::ConstantTimeEq;
        p.as_bytes().ct_eq(want.as_bytes()).into()
    });
    if ok {
        Ok(())
    } else {
        tracing::warn!("sign-in form refused: CSRF token missing or wrong");
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The form could not be verified",
            "For your security the form was refused. Go back to the application and start the sign-in again.",
        ))
    }
}

async fn identifier_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TxnQuery>,
) -> Result<Response, PageError> {
    let (txn_id, txn, bb) = load_txn(&state, &headers, q.t.as_deref()).await?;
    let csrf = csrf_token(&state, &txn_id, &bb);
    let prefill = txn.username.as_deref().or(txn.login_hint.as_deref());
    // The passkey form on this page ends in a redirect to the client.
    Ok(
        pages::identifier_page(&txn_id, &csrf, &txn.app_name, prefill, None)
            .with_form_target(&txn.redirect_uri)
            .into_response(),
    )
}

#[derive(Deserialize)]
struct IdentifierForm {
    t: Option<String>,
    csrf: Option<String>,
    username: Option<String>,
}

async fn identifier_post(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<IdentifierForm>,
) -> Result<Response, PageError> {
    let (txn_id, mut txn, bb) = load_txn(&state, &headers, form.t.as_deref()).await?;
    check_csrf(&state, &txn_id, &bb, form.csrf.as_deref())?;
    let csrf = csrf_token(&state, &txn_id, &bb);
    let typed = form.username.unwrap_or_default();
    let upn = match UserPrincipalName::parse(&typed) {
        Ok(u) => u,
        Err(e) => {
            let typed_short: String = typed
                .chars()
                .take(cutover_core::limits::MAX_UPN_LEN)
                .collect();
            let msg = format!(
                "{} ({e})",
                FailureReason::InvalidUserPrincipalName.user_message()
            );
            return Ok((
                StatusCode::OK,
                pages::identifier_page(
                    &txn_id,
                    &csrf,
                    &txn.app_name,
                    Some(&typed_short),
                    Some(&msg),
                )
                .with_form_target(&txn.redirect_uri),
            )
                .into_response());
        }
    };
    let domain = state.store.get_domain(upn.domain().as_str()).await?;
    let user_record = state.store.get_user_by_upn(&upn.normalized()).await?;
    let user = user_record.as_ref().map(|r| r.user.clone());
    let (staged, target) = match &user_record {
        Some(r) => (
            state.store.get_staged_state(r.user.id).await?,
            Some(crate::rollout::staged_target(&state, r, domain.as_ref()).await?),
        ),
        None => (Default::default(), None),
    };
    let usable_tap = match &user_record {
        Some(r) => crate::tap::usable_pass(&state, r.user.id, state.now())
            .await?
            .is_some(),
        None => false,
    };
    let decision = route_sign_in(RoutingInput {
        domain: domain.as_ref(),
        user: user.as_ref(),
        effective: staged.effective,
        client_app_type: txn.client_app_type,
        domain_hint: txn.domain_hint.is_some(),
        // A usable pass takes precedence over federation (SPEC §6.3).
        usable_tap,
    });
    txn.username = Some(upn.to_string());
    txn.route = Some(decision.route.as_str().to_owned());
    txn.route_reason = Some(decision.reason.code().to_owned());
    txn.staged_feature = decision.staged_feature.map(|f| f.as_str().to_owned());
    txn.staged = target.map(|t| StagedTrace {
        effective: staged.effective,
        desired: t.desired,
        effective_after: staged.effective,
        changed_at: staged.changed_at,
        held: t.held,
    });
    match decision.route {
        Route::Managed { credential } => {
            txn.credential = Some(credential.as_str().to_owned());
            let data = serde_json::to_value(&txn).map_err(PageError::internal)?;
            state
                .store
                .update_sign_in_transaction(&txn_id, &data)
                .await?;
            Ok(Redirect::to(&format!("/login/password?t={txn_id}")).into_response())
        }
        Route::Federated {
            identity_provider_id: Some(idp),
        } => {
            let hint = upn.to_string();
            crate::federation::redirect_upstream(&state, &ctx, &txn_id, txn, idp, Some(&hint), true)
                .await
        }
        Route::Federated {
            identity_provider_id: None,
        } => {
            // A federated domain without an upstream IdP cannot sign anyone in: say so to the
            // person, and to the administrator in the log.
            tracing::warn!(domain = %upn.domain(), "a federated domain has no identity provider; set identityProviderId on the domain or convert it");
            let mut record = record_for_txn(&state, &ctx, &txn);
            record.user_id = user.as_ref().map(|u| u.id);
            record.failure_reason = Some(FailureReason::FederationNotConfigured.code().into());
            state.record_sign_in(&record).await?;
            Ok(PageError::new(
                StatusCode::BAD_GATEWAY,
                "Your organisation's sign-in is elsewhere",
                FailureReason::FederationNotConfigured.user_message(),
            )
            .into_response())
        }
    }
}

async fn password_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TxnQuery>,
) -> Result<Response, PageError> {
    let (txn_id, txn, bb) = load_txn(&state, &headers, q.t.as_deref()).await?;
    let Some(username) = txn.username.as_deref() else {
        return Ok(Redirect::to(&format!("/login?t={txn_id}")).into_response());
    };
    let csrf = csrf_token(&state, &txn_id, &bb);
    if txn.credential.as_deref() == Some(Credential::TemporaryAccessPass.as_str()) {
        return Ok(pages::pass_page(&txn_id, &csrf, username, None)
            .with_form_target(&txn.redirect_uri)
            .into_response());
    }
    Ok(pages::password_page(&txn_id, &csrf, username, None)
        .with_form_target(&txn.redirect_uri)
        .into_response())
}

#[derive(Deserialize)]
struct PasswordForm {
    t: Option<String>,
    csrf: Option<String>,
    password: Option<String>,
}

async fn password_post(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    let (txn_id, txn, bb) = load_txn(&state, &headers, form.t.as_deref()).await?;
    check_csrf(&state, &txn_id, &bb, form.csrf.as_deref())?;
    let Some(username) = txn.username.clone() else {
        return Ok(Redirect::to(&format!("/login?t={txn_id}")).into_response());
    };
    if txn.route.as_deref() != Some("managed") {
        return Err(PageError::expired());
    }
    let csrf = csrf_token(&state, &txn_id, &bb);
    if txn.credential.as_deref() == Some(Credential::TemporaryAccessPass.as_str()) {
        let typed = form.password.unwrap_or_default();
        return pass_post(&state, &ctx, &txn_id, &txn, &csrf, &username, &typed).await;
    }
    let password = Secret::new(form.password.unwrap_or_default());
    let upn = UserPrincipalName::parse(&username).map_err(|_| PageError::expired())?;
    let domain = state.store.get_domain(upn.domain().as_str()).await?;
    let record_user = state.store.get_user_by_upn(&upn.normalized()).await?;
    let user = record_user.as_ref().map(|r| &r.user);
    // Pass-through checks the password on-prem (SPEC §5.3): for users that exist there. A
    // cloud-only user of the domain keeps the password set in Cutover.
    let pass_through = txn.credential.as_deref()
        == Some(Credential::PassthroughAuthentication.as_str())
        && user.is_none_or(|u| u.source == cutover_core::Source::Synced);
    // A synced user signs in with the password hash sync brought (SPEC §5.2); a cloud user
    // with the argon2 hash set in Cutover.
    let synced_wrap = record_user
        .as_ref()
        .filter(|r| !pass_through && r.user.source == cutover_core::Source::Synced)
        .and_then(|r| {
            r.synced_password.as_deref().and_then(|s| {
                crate::sync::open_wrap(&state, r.user.immutable_id.as_deref().unwrap_or(""), s)
            })
        });
    let hash = record_user.as_ref().and_then(|r| r.password_hash.clone());
    let synced_credential = synced_wrap.is_some();
    let has_password = pass_through || synced_credential || hash.is_some();
    let usable = !password.is_empty() && password.len() <= MAX_PASSWORD_LEN;

    let mut record = record_for_txn(&state, &ctx, &txn);
    record.user_id = user.map(|u| u.id);
    // The sign-in log names the credential: checked on-prem, a synced password, or one set
    // in Cutover.
    record.authentication_methods = vec![
        if pass_through {
            "passthroughAuthentication"
        } else if synced_credential {
            "passwordHashSync"
        } else {
            "password"
        }
        .into(),
    ];

    // Smart lockout (SPEC §7) decides before any hash or agent work: a locked account costs
    // neither CPU nor a bind against the directory, and looks like a wrong password.
    let admitted = match user {
        Some(u) if usable && has_password => {
            match crate::lockout::gate(&state, u.id, ctx.ip.as_deref()).await? {
                crate::lockout::Gate::Locked {
                    location,
                    until,
                    in_flight,
                } => {
                    record.lockout_decision = LockoutDecision::Locked;
                    record.failure_reason =
                        Some(FailureReason::AccountLockedSmartLockout.code().into());
                    state.record_sign_in(&record).await?;
                    tracing::info!(
                        location = location.as_str(),
                        until = until.map(crate::clock::rfc3339).unwrap_or_default(),
                        in_flight,
                        "password sign-in refused by smart lockout; the password was not checked"
                    );
                    return Ok(pages::password_page(
                        &txn_id,
                        &csrf,
                        &username,
                        Some(FailureReason::AccountLockedSmartLockout.user_message()),
                    )
                    .with_form_target(&txn.redirect_uri)
                    .into_response());
                }
                crate::lockout::Gate::Proceed(a) => {
                    record.lockout_decision = a.decision;
                    Some(a)
                }
            }
        }
        _ => None,
    };

    let (outcome, lockout_outcome) = if pass_through {
        let checked = match (record_user.as_ref(), domain.is_some() && usable) {
            (Some(r), true) => match crate::pta::validate(
                &state,
                &r.user.upn.to_string(),
                r.user.immutable_id.as_deref(),
                password.expose().as_bytes(),
                txn.correlation_id,
            )
            .await
            {
                Ok(c) => Some(c),
                Err(e) => {
                    // Nothing was learnt: give the attempt's lockout reservation back now
                    // rather than let it hold a place for its 90 s.
                    if let Some(a) = &admitted {
                        crate::lockout::finish(&state, a, CheckOutcome::NotCounted).await;
                    }
                    return Err(e.into());
                }
            },
            _ => {
                // A name Cutover does not know is answered after a delay like a real check's,
                // so that response times do not tell known names from unknown ones.
                if usable && let Some(d) = state.pta.lookalike_delay() {
                    tokio::time::sleep(d).await;
                }
                None
            }
        };
        pass_through_outcome(&state, domain.is_some(), user, checked, &mut record)
    } else {
        // Always spend one hash verification, so timing does not tell whether the account
        // exists.
        let matches = match synced_wrap {
            Some(wrap) if usable => state.verify_synced_password(password.clone(), wrap).await,
            _ if usable => state.verify_password(password.clone(), hash).await,
            _ => false,
        };
        let expired = synced_credential
            && signin_log::synced_password_expired(
                record_user.as_ref().and_then(|r| r.password_changed_at),
                state.now(),
                state.config.synced_password_expiry_days,
            );
        let outcome = signin_log::with_password_expiry(
            signin_log::judge_password(domain.is_some(), user, has_password, Some(matches)),
            expired,
        );
        let lockout_outcome = if matches {
            LockoutCheck::Right
        } else if usable && has_password {
            LockoutCheck::Wrong
        } else {
            LockoutCheck::NotCounted
        };
        (outcome, lockout_outcome)
    };
    if let Some(a) = &admitted {
        let check = match lockout_outcome {
            LockoutCheck::Right => CheckOutcome::Success {
                network: a.network.clone(),
            },
            LockoutCheck::Wrong => CheckOutcome::BadPassword {
                key: crate::lockout::bad_password_key(&state, a.user_id, password.expose()),
            },
            LockoutCheck::DirectoryLocked => CheckOutcome::DirectoryLocked,
            LockoutCheck::NotCounted => CheckOutcome::NotCounted,
        };
        crate::lockout::finish(&state, a, check).await;
    }

    match outcome {
        PasswordOutcome::Failure(reason) => {
            record.failure_reason = Some(reason.code().into());
            // A user whose credential cannot be checked at all (no synced hash, no agent, the
            // directory down) cannot finish a managed sign-in: if the admin already moved
            // them back, let them go back now.
            let cannot_check = matches!(
                reason,
                FailureReason::NoPasswordSet
                    | FailureReason::NoAgentAvailable
                    | FailureReason::AgentTimeout
                    | FailureReason::DirectoryUnavailable
                    | FailureReason::AgentError
            );
            if cannot_check
                && let Some(u) = record_user.as_ref()
                && u.user.source == cutover_core::Source::Synced
                && let Some(page) =
                    escape_rollback(&state, &txn_id, &txn, u, domain.as_ref(), &mut record).await?
            {
                state.record_sign_in(&record).await?;
                return Ok(page);
            }
            state.record_sign_in(&record).await?;
            let status = if cannot_check && reason != FailureReason::NoPasswordSet {
                tracing::warn!(
                    reason = reason.code(),
                    "a pass-through sign-in could not check the password"
                );
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                tracing::info!(reason = reason.code(), "password sign-in failed");
                StatusCode::OK
            };
            Ok((
                status,
                pages::password_page(&txn_id, &csrf, &username, Some(reason.user_message()))
                    .with_form_target(&txn.redirect_uri),
            )
                .into_response())
        }
        PasswordOutcome::Success => {
            let Some(user) = record_user.as_ref() else {
                return Err(PageError::internal("a password success without a user"));
            };
            // The methods policy may have taken passwords away from this user (judged after
            // the right password: it tells nothing to someone without it).
            let policy = crate::passkeys::load_methods_policy(&state).await?;
            let groups = crate::passkeys::user_groups(&state, user.user.id).await?;
            if !policy.allows(
                cutover_core::methods_policy::PolicyMethod::Password,
                &groups,
            ) {
                tracing::info!(user = %user.user.upn, "password sign-in refused: the methods policy does not allow passwords for this user");
                record.result = SignInResult::Failure;
                record.failure_reason = Some(FailureReason::MethodNotAllowedByPolicy.code().into());
                state.record_sign_in(&record).await?;
                return Ok(pages::password_page(
                    &txn_id,
                    &csrf,
                    &username,
                    Some(FailureReason::MethodNotAllowedByPolicy.user_message()),
                )
                .with_form_target(&txn.redirect_uri)
                .into_response());
            }
            crate::mfa::finish_or_step_up(
                &state,
                &ctx,
                &txn_id,
                &txn,
                user,
                domain.as_ref(),
                record,
                vec!["pwd".to_owned()],
                None,
            )
            .await
        }
    }
}

/// A Temporary Access Pass typed on the pass page (SPEC §6.3): smart lockout first (a pass is
/// guessable like a password), then the keyed-hash comparison and the atomic use; success
/// signs in with `tap` + `mfa`, and the session and tokens never outlive the pass.
async fn pass_post(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    txn_id: &str,
    txn: &TxnData,
    csrf: &str,
    username: &str,
    typed: &str,
) -> Result<Response, PageError> {
    let upn = UserPrincipalName::parse(username).map_err(|_| PageError::expired())?;
    let domain = state.store.get_domain(upn.domain().as_str()).await?;
    let record_user = state.store.get_user_by_upn(&upn.normalized()).await?;
    let mut record = record_for_txn(state, ctx, txn);
    record.user_id = record_user.as_ref().map(|r| r.user.id);
    record.authentication_methods = vec!["temporaryAccessPass".into()];
    let page = |reason: FailureReason| {
        pages::pass_page(txn_id, csrf, username, Some(reason.user_message()))
            .with_form_target(&txn.redirect_uri)
            .into_response()
    };
    let Some(user) = record_user.as_ref() else {
        record.failure_reason = Some(FailureReason::UnknownUser.code().into());
        state.record_sign_in(&record).await?;
        return Ok(page(FailureReason::InvalidPassword));
    };
    if typed.trim().is_empty() || typed.len() > MAX_PASSWORD_LEN {
        record.failure_reason = Some(FailureReason::InvalidPassword.code().into());
        state.record_sign_in(&record).await?;
        return Ok(page(FailureReason::InvalidPassword));
    }
    let admitted = match crate::lockout::gate(state, user.user.id, ctx.ip.as_deref()).await? {
        crate::lockout::Gate::Locked { .. } => {
            record.lockout_decision = LockoutDecision::Locked;
            record.failure_reason = Some(FailureReason::AccountLockedSmartLockout.code().into());
            state.record_sign_in(&record).await?;
            return Ok(page(FailureReason::AccountLockedSmartLockout));
        }
        crate::lockout::Gate::Proceed(a) => {
            record.lockout_decision = a.decision;
            a
        }
    };
    let now = state.now();
    let checked =
        match crate::tap::check_pass(state, user.user.id, user.user.account_enabled, typed, now)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                crate::lockout::finish(state, &admitted, CheckOutcome::NotCounted).await;
                return Err(e.into());
            }
        };
    match checked {
        crate::tap::PassCheck::Wrong => {
            // Keyed on the pass as normalised, so retyping the same wrong pass in another
            // case or spacing is the same guess.
            let normalised = cutover_core::tap::normalize_entered(typed);
            let key = crate::lockout::bad_password_key(
                state,
                user.user.id,
                normalised.as_ref().map_or(typed.trim(), |n| n.expose()),
            );
            crate::lockout::finish(state, &admitted, CheckOutcome::BadPassword { key }).await;
            record.failure_reason = Some(FailureReason::InvalidPassword.code().into());
            state.record_sign_in(&record).await?;
            tracing::info!("a Temporary Access Pass sign-in failed: wrong pass");
            Ok(page(FailureReason::InvalidPassword))
        }
        crate::tap::PassCheck::NotUsable(reason) => {
            crate::lockout::finish(state, &admitted, CheckOutcome::NotCounted).await;
            record.failure_reason = Some(FailureReason::TemporaryAccessPassNotUsable.code().into());
            state.record_sign_in(&record).await?;
            tracing::info!(
                reason = reason.code(),
                "a Temporary Access Pass sign-in was refused: the pass cannot be used"
            );
            Ok(page(FailureReason::TemporaryAccessPassNotUsable))
        }
        crate::tap::PassCheck::AccountDisabled => {
            crate::lockout::finish(
                state,
                &admitted,
                CheckOutcome::Success {
                    network: admitted.network.clone(),
                },
            )
            .await;
            record.failure_reason = Some(FailureReason::AccountDisabled.code().into());
            state.record_sign_in(&record).await?;
            Ok(page(FailureReason::AccountDisabled))
        }
        crate::tap::PassCheck::Accepted(tap) => {
            crate::lockout::finish(
                state,
                &admitted,
                CheckOutcome::Success {
                    network: admitted.network.clone(),
                },
            )
            .await;
            tracing::info!(pass = %tap.id, one_time = tap.one_time, "signed in with a Temporary Access Pass");
            crate::mfa::finish_or_step_up(
                state,
                ctx,
                txn_id,
                txn,
                user,
                domain.as_ref(),
                record,
                vec![cutover_core::tap::TAP_AMR.to_owned(), "mfa".to_owned()],
                Some(tap.expires_at),
            )
            .await
        }
    }
}

/// What a password check taught smart lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockoutCheck {
    Right,
    Wrong,
    /// The directory's own lock answered: counted, nothing remembered of the password.
    DirectoryLocked,
    NotCounted,
}

/// The password step of a pass-through sign-in from the agent's answer (`None`: no agent was
/// asked — unknown user, unknown domain, an empty password). Names the agent on the record.
fn pass_through_outcome(
    state: &AppState,
    domain_known: bool,
    user: Option<&cutover_core::User>,
    checked: Option<crate::pta::PtaOutcome>,
    record: &mut SignInRecord,
) -> (PasswordOutcome, LockoutCheck) {
    use crate::pta::PtaOutcome;
    let Some(checked) = checked else {
        return (
            signin_log::judge_password(domain_known, user, true, Some(false)),
            LockoutCheck::NotCounted,
        );
    };
    match checked {
        PtaOutcome::NoAgent => {
            state.metrics.count_pass_through("noAgentAvailable");
            (
                PasswordOutcome::Failure(FailureReason::NoAgentAvailable),
                LockoutCheck::NotCounted,
            )
        }
        PtaOutcome::Timeout { agent_id } => {
            state.metrics.count_pass_through("agentTimeout");
            record.agent_id = agent_id;
            (
                PasswordOutcome::Failure(FailureReason::AgentTimeout),
                LockoutCheck::NotCounted,
            )
        }
        PtaOutcome::Answered {
            agent_id,
            result,
            detail,
        } => {
            state.metrics.count_pass_through(result.as_str());
            record.agent_id = Some(agent_id);
            if let Some(d) = detail.as_deref().filter(|_| {
                !matches!(
                    result,
                    cutover_core::pta::PtaResult::Success
                        | cutover_core::pta::PtaResult::InvalidCredentials
                )
            }) {
                tracing::info!(agent_id = %agent_id, result = result.as_str(), detail = d, "pass-through agent's answer");
            }
            match cutover_core::pta::sign_in_failure(result) {
                // The password is right on-prem; the account may still be disabled here.
                None => (
                    signin_log::judge_password(domain_known, user, true, Some(true)),
                    LockoutCheck::Right,
                ),
                Some(reason) => (
                    PasswordOutcome::Failure(reason),
                    if result.is_bad_password() {
                        LockoutCheck::Wrong
                    } else if result == cutover_core::pta::PtaResult::AccountLocked {
                        LockoutCheck::DirectoryLocked
                    } else {
                        LockoutCheck::NotCounted
                    },
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_parse_and_carry_attributes() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cutover_bb=xyz; b="),
        );
        assert_eq!(read_cookie(&h, BROWSER_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(read_cookie(&h, "b"), None);
        assert_eq!(read_cookie(&h, "missing"), None);
        let c = cookie(SESSION_COOKIE, "v", 60, true);
        let c = c.to_str().unwrap();
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        assert!(
            !cookie(SESSION_COOKIE, "v", 60, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }
}
