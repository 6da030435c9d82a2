//! Break-glass accounts (SPEC §8): the emergency way in when Conditional Access or the
//! upstream IdP locks everyone else out. They are cloud-only users with `breakGlass` set
//! (`PATCH /api/v1/users/{id}`), never federated (routing), never staged, excluded from every
//! Conditional Access policy by the engine itself, and sign in with a passkey only.
//!
//! - `GET /api/v1/breakGlass`: the accounts with their last sign-in, last drill and passkeys,
//!   and what an administrator should fix (fewer than two, drills older than 90 days, no
//!   passkey).
//! - `POST /api/v1/breakGlass/drills`: record a drill after a real test sign-in.
//! - Every sign-in by one raises an alert: an error in the log, a metric, an audit event, and
//!   (when `PUT /api/v1/breakGlass/alerting` set one) a POST to a webhook.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cutover_core::Timestamp;
use cutover_store::{AuditEvent, SignInFilter, StoreError, UserRecord};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit, find_user};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

/// Fewer break-glass accounts than this is a warning (one can be lost or locked).
pub const RECOMMENDED_ACCOUNTS: usize = 2;
/// A drill older than this is a warning (and blocks the Conditional Access enforcement gate).
pub const DRILL_MAX_AGE_SECS: i64 = 90 * 24 * 60 * 60;
/// A drill is recorded only after a successful sign-in of the account this recently.
pub const DRILL_SIGN_IN_WINDOW_SECS: i64 = 60 * 60;
pub const DRILL_ACTION: &str = "recordBreakGlassDrill";
pub const SIGN_IN_ACTION: &str = "breakGlassSignIn";

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/breakGlass", get(list))
        .route("/breakGlass/drills", post(drill))
        .route("/breakGlass/alerting", get(get_alerting).put(put_alerting))
}

/// The setting with the optional webhook every break-glass sign-in is posted to.
pub const ALERTING_SETTING: &str = "breakGlassAlerting";
pub const ALERTING_ACTION: &str = "updateBreakGlassAlerting";
/// How long one webhook delivery may take.
pub const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Alerting {
    /// Where each break-glass sign-in is POSTed as JSON (https, or http on this host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

fn check_webhook(url: &str) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|e| format!("webhookUrl: '{url}' is not a URL: {e}"))?;
    let loopback = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("webhookUrl: use https (plain http only to this host)".into()),
    }
}

async fn load_alerting(state: &AppState) -> Result<Alerting, StoreError> {
    Ok(state
        .store
        .get_setting(ALERTING_SETTING)
        .await?
        .and_then(|raw| serde_json::from_str(&raw).ok())
        .unwrap_or_default())
}

async fn get_alerting(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Alerting>, ApiError> {
    Ok(Json(load_alerting(&state).await?))
}

async fn put_alerting(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(alerting): ApiJson<Alerting>,
) -> Result<Json<Alerting>, ApiError> {
    if let Some(url) = &alerting.webhook_url {
        check_webhook(url).map_err(ApiError::bad_request)?;
    }
    let before = load_alerting(&state).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        ALERTING_ACTION,
        ("setting", ALERTING_SETTING.into(), None),
        Some(json!(before)),
        Some(json!(alerting)),
    );
    let raw = serde_json::to_string(&alerting).map_err(ApiError::internal)?;
    state.store.put_setting(ALERTING_SETTING, &raw, &a).await?;
    Ok(Json(alerting))
}

/// Deliver one alert to the webhook, in the background: a slow or failing receiver never
/// holds up the sign-in; a failure is logged for the operator.
fn post_webhook(url: String, body: Value) {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "could not build the break-glass webhook client");
                return;
            }
        };
        match client.post(&url).json(&body).send().await {
            Ok(res) if res.status().is_success() => {
                tracing::info!(webhook = %url, "break-glass alert delivered to the webhook");
            }
            Ok(res) => {
                tracing::error!(webhook = %url, status = %res.status(), "the break-glass webhook refused the alert; check the receiver");
            }
            Err(e) => {
                tracing::error!(webhook = %url, error = %e, "the break-glass alert could not be delivered to the webhook; check the URL and the receiver");
            }
        }
    });
}

/// One account as the API shows it.
pub(crate) struct Account {
    pub(crate) user: UserRecord,
    pub(crate) last_sign_in: Option<Timestamp>,
    pub(crate) last_drill: Option<Timestamp>,
    pub(crate) passkeys: usize,
}

pub(crate) async fn accounts(state: &AppState) -> Result<Vec<Account>, StoreError> {
    let drills: std::collections::HashMap<Uuid, Timestamp> = state
        .store
        .break_glass_drills()
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for f in state.store.break_glass_accounts().await? {
        let Ok(upn) = cutover_core::UserPrincipalName::parse(&f.user_principal_name) else {
            continue;
        };
        let Some(user) = state.store.get_user_by_upn(&upn.normalized()).await? else {
            continue;
        };
        let passkeys = state.store.list_passkeys(user.user.id).await?.len();
        out.push(Account {
            last_drill: drills.get(&user.user.id).copied(),
            last_sign_in: f.last_successful_sign_in,
            passkeys,
            user,
        });
    }
    Ok(out)
}

/// What an administrator should fix about the break-glass accounts.
pub fn warnings_of(
    enabled_accounts: usize,
    drills: &[(String, Option<Timestamp>)],
    no_passkey: &[String],
    now: Timestamp,
) -> Vec<String> {
    let mut w = Vec::new();
    if enabled_accounts < RECOMMENDED_ACCOUNTS {
        w.push(format!(
            "only {enabled_accounts} enabled break-glass account(s): keep at least {RECOMMENDED_ACCOUNTS}, so that losing one does not lock the organisation out"
        ));
    }
    for (upn, last) in drills {
        match last {
            None => w.push(format!("{upn} has never been drilled: sign in with it, then record the drill (cutover admin break-glass drill record {upn})")),
            Some(t) if now.secs_since(*t) > DRILL_MAX_AGE_SECS => w.push(format!(
                "{upn} was last drilled on {} — more than 90 days ago: sign in with it and record a drill",
                rfc3339(*t).get(..10).unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    for upn in no_passkey {
        w.push(format!("{upn} has no passkey: a break-glass account signs in with a passkey only; give it a Temporary Access Pass and register one"));
    }
    w
}

async fn list(State(state): State<Arc<AppState>>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let all = accounts(&state).await?;
    let enabled = all.iter().filter(|a| a.user.user.account_enabled).count();
    let drills: Vec<(String, Option<Timestamp>)> = all
        .iter()
        .filter(|a| a.user.user.account_enabled)
        .map(|a| (a.user.user.upn.to_string(), a.last_drill))
        .collect();
    let no_passkey: Vec<String> = all
        .iter()
        .filter(|a| a.user.user.account_enabled && a.passkeys == 0)
        .map(|a| a.user.user.upn.to_string())
        .collect();
    let value: Vec<Value> = all
        .iter()
        .map(|a| {
            json!({
                "id": a.user.user.id,
                "userPrincipalName": a.user.user.upn.to_string(),
                "accountEnabled": a.user.user.account_enabled,
                "passkeys": a.passkeys,
                "lastSuccessfulSignInDateTime": a.last_sign_in.map(rfc3339),
                "lastDrillDateTime": a.last_drill.map(rfc3339),
                "drillDue": a.last_drill.is_none_or(|t| now.secs_since(t) > DRILL_MAX_AGE_SECS),
            })
        })
        .collect();
    Ok(Json(json!({
        "value": value,
        "warnings": warnings_of(enabled, &drills, &no_passkey, now),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DrillRequest {
    /// The account's id or user principal name.
    user: String,
}

async fn drill(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<DrillRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let user = find_user(&state, &req.user).await?;
    if !user.user.break_glass {
        return Err(ApiError::bad_request(format!(
            "{} is not a break-glass account",
            user.user.upn
        )));
    }
    let now = state.now();
    // A drill is a real sign-in: the record of one must exist.
    let recent = state
        .store
        .list_sign_ins(&SignInFilter {
            user_id: Some(user.user.id),
            result: Some("success".into()),
            since: Some(Timestamp::from_millis(
                now.millis() - DRILL_SIGN_IN_WINDOW_SECS * 1000,
            )),
            top: 1,
            ..Default::default()
        })
        .await?;
    let Some(signed_in) = recent.first() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "noRecentSignIn",
            format!(
                "{} has no successful sign-in in the last hour: sign in with it (a passkey) first, then record the drill",
                user.user.upn
            ),
        ));
    };
    let a: AuditEvent = audit(
        &ctx,
        &admin,
        now,
        DRILL_ACTION,
        (
            "user",
            user.user.id.to_string(),
            Some(user.user.upn.to_string()),
        ),
        None,
        Some(json!({"signInId": signed_in.id, "signedInAt": rfc3339(signed_in.created_at)})),
    );
    state
        .store
        .record_break_glass_drill(user.user.id, now, &a)
        .await?;
    tracing::info!(user = %user.user.upn, "a break-glass drill was recorded");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "userPrincipalName": user.user.upn.to_string(),
            "drillDateTime": rfc3339(now),
            "signInId": signed_in.id,
        })),
    ))
}

/// Raise the alert for a completed sign-in of a break-glass account: an error in the log (the
/// operator's alerting watches for it), the metric, and an audit event.
pub async fn alert_sign_in(
    state: &AppState,
    ctx: &RequestCtx,
    user: &UserRecord,
    methods: &[String],
) {
    tracing::error!(
        user = %user.user.upn,
        ip = ?ctx.ip,
        methods = ?methods,
        "BREAK-GLASS SIGN-IN: an emergency account signed in. If this is not a planned drill or an emergency, investigate now"
    );
    state.metrics.count_break_glass_sign_in();
    let a = AuditEvent {
        id: Uuid::now_v7(),
        created_at: state.now(),
        correlation_id: ctx.id,
        actor: format!("user:{}", user.user.upn),
        action: SIGN_IN_ACTION.into(),
        target_type: "user".into(),
        target_id: user.user.id.to_string(),
        target_name: Some(user.user.upn.to_string()),
        before: None,
        after: Some(json!({"ip": ctx.ip, "methods": methods})),
    };
    if let Err(e) = state.store.insert_audit_event(&a).await {
        tracing::error!(error = %e, user = %user.user.upn, "the audit event of a break-glass sign-in could not be written");
    }
    match load_alerting(state).await {
        Ok(Alerting {
            webhook_url: Some(url),
        }) => post_webhook(
            url,
            json!({
                "event": SIGN_IN_ACTION,
                "userId": user.user.id,
                "userPrincipalName": user.user.upn.to_string(),
                "ipAddress": ctx.ip,
                "methods": methods,
                "time": rfc3339(state.now()),
                "correlationId": ctx.id,
            }),
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "could not read the break-glass alerting settings; the webhook was not called");
        }
    }
}
