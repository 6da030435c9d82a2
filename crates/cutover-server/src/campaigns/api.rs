//! `/api/v1/campaigns…`: the campaign REST API (JSON, camelCase), for an application holding
//! the admin role. Every change is audited; reads compute progress and prerequisites live.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cutover_core::campaign::{self, CampaignSpec, Enforcement, MAX_CAMPAIGNS};
use cutover_store::{OutboxFilter, OutboxMessage, OutboxState, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::service::{self, Actor, Document, WaveChange};
use crate::admin::{Admin, ApiJson};
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/campaigns", get(list).post(create))
        .route(
            "/campaigns/{id}",
            get(get_one).patch(patch).delete(delete_one),
        )
        .route("/campaigns/{id}/prerequisites", get(prerequisites))
        .route("/campaigns/{id}/progress", get(progress))
        .route("/campaigns/{id}/waves/{wave}/stragglers", get(stragglers))
        .route("/campaigns/{id}/waves/{wave}/confirm", post(confirm))
        .route("/campaigns/{id}/waves/{wave}/enforce", post(enforce))
        .route("/campaigns/{id}/waves/{wave}/rollback", post(roll_back))
        .route("/campaigns/{id}/communications", get(communications))
        .route("/campaigns/{id}/communications/run", post(run))
        .route("/campaigns/{id}/communications/preview", post(preview))
        .route("/campaigns/{id}/communications/testSend", post(test_send))
        .route("/campaigns/{id}/outbox", get(outbox))
        .route("/campaigns/{id}/outbox/resendFailed", post(resend_failed))
        .route("/communications/outbox/{id}/resend", post(resend))
}

fn actor(admin: &Admin) -> Actor {
    Actor::App(admin.client_id.clone())
}

fn uuid_of(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::bad_request(format!("{what} '{raw}' is not an id")))
}

fn store_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) if m == cutover_store::CAMPAIGN_NAME_TAKEN => {
            ApiError::conflict("another campaign has this display name")
        }
        StoreError::Conflict(m) if m == cutover_store::CAMPAIGN_LIMIT_REACHED => {
            ApiError::conflict(format!(
                "there are already {MAX_CAMPAIGNS} campaigns, the most Cutover keeps; delete a finished one first"
            ))
        }
        other => other.into(),
    }
}

async fn list(State(state): State<Arc<AppState>>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let docs = service::list(&state).await?;
    Ok(Json(json!({
        "value": docs.iter().map(|d| service::view(d, now)).collect::<Vec<_>>()
    })))
}

async fn get_one(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    Ok(Json(service::view(&doc, state.now())))
}

fn spec_of(body: Value) -> Result<CampaignSpec, ApiError> {
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalidCampaign",
            format!("the campaign body is not valid: {e}"),
        )
    })
}

/// Every wave's group and Conditional Access policy must exist.
async fn check_references(state: &AppState, doc: &Document) -> Result<(), ApiError> {
    for w in &doc.campaign.waves {
        if state.store.get_group(w.group_id).await?.is_none() {
            return Err(ApiError::bad_request(format!(
                "wave '{}': group {} does not exist",
                w.display_name, w.group_id
            )));
        }
        if let Some(p) = w.ca_policy_id
            && state.store.get_ca_policy(p).await?.is_none()
        {
            return Err(ApiError::bad_request(format!(
                "wave '{}': Conditional Access policy {p} does not exist (create it report-only first)",
                w.display_name
            )));
        }
    }
    Ok(())
}

/// Create a campaign (`CampaignSpec`: displayName, waves with groupId, registrationOpens,
/// enforcementDate, caPolicyId…, optional communications or preset, targetPercent).
pub(crate) async fn create_campaign(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    spec: CampaignSpec,
) -> Result<Document, ApiError> {
    let now = state.now();
    let doc = Document::new(Uuid::now_v7(), spec, now)?;
    check_references(state, &doc).await?;
    let row = doc.to_row()?;
    let a = service::audit(
        ctx,
        actor,
        now,
        "createCampaign",
        (doc.id, &doc.campaign.display_name),
        None,
        Some(service::view(&doc, now)),
    );
    state
        .store
        .create_campaign(&row, MAX_CAMPAIGNS, &a)
        .await
        .map_err(store_conflict)?;
    tracing::info!(campaign = %doc.campaign.display_name, waves = doc.campaign.waves.len(), actor = %actor.audit_name(), "a passkey campaign was created");
    Ok(doc)
}

async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let doc = create_campaign(&state, &ctx, &actor(&admin), spec_of(body)?).await?;
    Ok((StatusCode::CREATED, Json(service::view(&doc, state.now()))).into_response())
}

/// Replace top-level fields of the definition (`displayName`, `description`, `waves`,
/// `communications`, `preset`, `targetPercent`). Waves keep their state by id; a wave that
/// is enforced cannot be removed (roll it back first).
async fn patch(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let old = service::find(&state, &id).await?;
    let Value::Object(patch) = body else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let doc = update_campaign(&state, &ctx, &actor(&admin), &old, patch).await?;
    Ok(Json(service::view(&doc, state.now())))
}

/// Change a campaign: the top-level fields of `patch` replace the campaign's (a new `preset`
/// drops the explicit steps; waves keep their ids by group), checked whole; an enforced wave
/// keeps its group and policy and cannot be removed. Stored with its audit row when `old` is
/// still the stored version (else a 409 that says to reload). The API's PATCH and the admin
/// UI's editor both come here.
pub(crate) async fn update_campaign(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    old: &Document,
    patch: serde_json::Map<String, Value>,
) -> Result<Document, ApiError> {
    let mut merged = serde_json::to_value(&old.spec).map_err(ApiError::internal)?;
    if let Value::Object(m) = &mut merged {
        for (k, mut v) in patch {
            if k == "id" {
                continue;
            }
            if k == "preset" {
                m.remove("communications");
            }
            if k == "waves" {
                keep_wave_ids(old, &mut v);
            }
            m.insert(k, v);
        }
    }
    let now = state.now();
    let mut doc = Document::new(old.id, spec_of(merged)?, now)?;
    doc.created_at = old.created_at;
    doc.modified_at = old.modified_at;
    for (wid, status) in &old.statuses {
        let enforced = status.enforcement == Enforcement::Enforced;
        match (doc.wave(*wid), old.wave(*wid)) {
            (Some(new_wave), Some(old_wave)) => {
                if enforced
                    && (new_wave.group_id != old_wave.group_id
                        || new_wave.ca_policy_id != old_wave.ca_policy_id)
                {
                    return Err(ApiError::conflict(format!(
                        "wave '{}' is enforced: its group and Conditional Access policy cannot change; roll it back first",
                        old_wave.display_name
                    )));
                }
                doc.statuses.insert(*wid, status.clone());
            }
            _ if enforced => {
                return Err(ApiError::conflict(format!(
                    "wave {wid} is enforced and cannot be removed; roll it back first (or give the wave's id to keep it)"
                )));
            }
            _ => {}
        }
    }
    check_references(state, &doc).await?;
    let a = service::audit(
        ctx,
        actor,
        now,
        "updateCampaign",
        (doc.id, &doc.campaign.display_name),
        Some(service::view(old, now)),
        Some(service::view(&doc, now)),
    );
    service::save(state, &mut doc, &a).await.map_err(|e| {
        if e.message.contains(cutover_store::CAMPAIGN_NAME_TAKEN) {
            ApiError::conflict("another campaign has this display name")
        } else {
            e
        }
    })?;
    Ok(doc)
}

/// Waves in a PATCH without an `id` keep the id of the existing wave of the same group (a
/// group is in one wave only), so a replayed definition file does not make new waves — whose
/// e-mail steps would be decided, and sent, again.
fn keep_wave_ids(old: &Document, waves: &mut Value) {
    let Value::Array(list) = waves else { return };
    for w in list.iter_mut() {
        let Value::Object(m) = w else { continue };
        if m.get("id").is_some_and(|id| !id.is_null()) {
            continue;
        }
        let group = m
            .get("groupId")
            .and_then(Value::as_str)
            .and_then(|g| Uuid::parse_str(g).ok());
        if let Some(existing) = old
            .campaign
            .waves
            .iter()
            .find(|x| Some(x.group_id) == group)
        {
            m.insert("id".into(), json!(existing.id));
        }
    }
}

async fn delete_one(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let doc = service::find(&state, &id).await?;
    if let Some((wid, _)) = doc
        .statuses
        .iter()
        .find(|(_, s)| s.enforcement == Enforcement::Enforced)
    {
        return Err(ApiError::conflict(format!(
            "wave {wid} of '{}' is enforced; roll it back before deleting the campaign (its policy would stay on with no campaign to roll it back)",
            doc.campaign.display_name
        )));
    }
    let now = state.now();
    let a = service::audit(
        &ctx,
        &actor(&admin),
        now,
        "deleteCampaign",
        (doc.id, &doc.campaign.display_name),
        Some(service::view(&doc, now)),
        None,
    );
    state.store.delete_campaign(doc.id, &a).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prerequisites(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    let shared = service::SharedFacts::load(&state).await?;
    let mut waves = Vec::new();
    for w in &doc.campaign.waves {
        let checks = service::prerequisites(&state, &shared, w).await?;
        let ready = checks.iter().all(|c| c.ok);
        waves.push(json!({"waveId": w.id, "displayName": w.display_name, "ready": ready, "checks": checks}));
    }
    Ok(Json(json!({"campaignId": doc.id, "waves": waves})))
}

/// The JSON of a wave's progress.
pub(crate) fn progress_view(w: &campaign::CheckedWave, p: &campaign::WaveProgress) -> Value {
    json!({
        "waveId": w.id,
        "displayName": w.display_name,
        "members": p.members,
        "enrolled": p.enrolled,
        "enrolledPercent": p.enrolled_percent,
        "twoOrMore": p.two_or_more,
        "targetPercent": w.target_percent,
        "stragglers": p.stragglers.len(),
        "disabledMembers": p.disabled_members,
        "byDeviceFamily": p.by_family,
        "series": p.series.iter().map(|d| json!({
            "day": crate::clock::rfc3339(d.day_start).get(..10).unwrap_or_default(),
            "enrolled": d.enrolled,
            "twoOrMore": d.two_or_more,
            "byDeviceFamily": d.by_family,
        })).collect::<Vec<_>>(),
    })
}

#[derive(Deserialize)]
struct WaveQuery {
    wave: Option<String>,
}

async fn progress(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<WaveQuery>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    let only = q.wave.as_deref().map(|w| uuid_of("wave", w)).transpose()?;
    if let Some(w) = only
        && doc.wave(w).is_none()
    {
        return Err(ApiError::not_found(format!("the campaign has no wave {w}")));
    }
    let mut waves = Vec::new();
    for w in doc
        .campaign
        .waves
        .iter()
        .filter(|w| only.is_none_or(|o| o == w.id))
    {
        let p = service::wave_progress(&state, w).await?;
        waves.push(progress_view(w, &p));
    }
    Ok(Json(
        json!({"campaignId": doc.id, "asOf": crate::clock::rfc3339(state.now()), "waves": waves}),
    ))
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

/// A CSV cell: quoted, with a leading `'` before what a spreadsheet would run as a formula.
pub(crate) fn csv_cell(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// The members of the wave without a passkey, with what a helpdesk needs to reach them.
pub(crate) async fn straggler_rows(
    state: &AppState,
    wave: &campaign::CheckedWave,
) -> Result<Vec<cutover_core::User>, ApiError> {
    let p = service::wave_progress(state, wave).await?;
    let mut users = state.store.users_by_ids(&p.stragglers).await?;
    users.sort_by(|a, b| a.upn.as_str().cmp(b.upn.as_str()));
    Ok(users)
}

pub(crate) async fn stragglers_csv(
    state: &AppState,
    wave: &campaign::CheckedWave,
) -> Result<String, ApiError> {
    let users = straggler_rows(state, wave).await?;
    let managers: std::collections::HashMap<Uuid, String> = state
        .store
        .users_by_ids(
            &users
                .iter()
                .filter_map(|u| u.manager_id)
                .collect::<Vec<_>>(),
        )
        .await?
        .into_iter()
        .map(|m| (m.id, m.upn.as_str().to_owned()))
        .collect();
    let mut out =
        String::from("userPrincipalName,displayName,mail,department,manager,accountEnabled\r\n");
    for u in &users {
        out.push_str(&format!(
            "{},{},{},{},{},{}\r\n",
            csv_cell(u.upn.as_str()),
            csv_cell(&u.display_name),
            csv_cell(u.mail.as_deref().unwrap_or("")),
            csv_cell(u.department.as_deref().unwrap_or("")),
            csv_cell(
                u.manager_id
                    .and_then(|m| managers.get(&m))
                    .map(String::as_str)
                    .unwrap_or("")
            ),
            u.account_enabled,
        ));
    }
    Ok(out)
}

async fn stragglers(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path((id, wave)): Path<(String, String)>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, ApiError> {
    let doc = service::find(&state, &id).await?;
    let wid = uuid_of("wave", &wave)?;
    let w = doc
        .wave(wid)
        .ok_or_else(|| ApiError::not_found(format!("the campaign has no wave {wid}")))?;
    match q.format.as_deref().unwrap_or("json") {
        "csv" => {
            let csv = stragglers_csv(&state, w).await?;
            let mut res = csv.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"stragglers-{}.csv\"", w.id))
            {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            Ok(res)
        }
        "json" => {
            let users = straggler_rows(&state, w).await?;
            Ok(Json(json!({"value": users.iter().map(|u| json!({
                "id": u.id,
                "userPrincipalName": u.upn.as_str(),
                "displayName": u.display_name,
                "mail": u.mail,
                "department": u.department,
                "managerId": u.manager_id,
            })).collect::<Vec<_>>()}))
            .into_response())
        }
        other => Err(ApiError::bad_request(format!(
            "format '{other}' is not known; use csv or json"
        ))),
    }
}

fn change_response(change: WaveChange) -> Response {
    match change {
        WaveChange::Done(v) => Json(v).into_response(),
        WaveChange::Refused(body) => (StatusCode::CONFLICT, Json(body)).into_response(),
    }
}

async fn confirm(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, wave)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = service::find(&state, &id).await?;
    let change = service::confirm(
        &state,
        &ctx,
        &actor(&admin),
        doc.id,
        uuid_of("wave", &wave)?,
    )
    .await?;
    Ok(change_response(change))
}

#[derive(Deserialize)]
struct ForceQuery {
    force: Option<bool>,
}

async fn enforce(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, wave)): Path<(String, String)>,
    Query(q): Query<ForceQuery>,
) -> Result<Response, ApiError> {
    let doc = service::find(&state, &id).await?;
    let change = service::enforce(
        &state,
        &ctx,
        &actor(&admin),
        doc.id,
        uuid_of("wave", &wave)?,
        q.force.unwrap_or(false),
    )
    .await?;
    Ok(change_response(change))
}

async fn roll_back(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path((id, wave)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let doc = service::find(&state, &id).await?;
    let change = service::roll_back(
        &state,
        &ctx,
        &actor(&admin),
        doc.id,
        uuid_of("wave", &wave)?,
    )
    .await?;
    Ok(change_response(change))
}

/// The communication plan: every step of every wave with its state, what was decided, and
/// the outbox's counts.
pub(crate) async fn communications_view(
    state: &AppState,
    doc: &Document,
) -> Result<Value, ApiError> {
    let now = state.now();
    let decisions = state.store.list_send_decisions(doc.id).await?;
    let decided: std::collections::BTreeSet<String> =
        decisions.iter().map(|d| d.key.clone()).collect();
    let plan: Vec<Value> = campaign::schedule(doc.id, &doc.campaign, &doc.statuses, &decided, now)
        .into_iter()
        .map(|(wave, step, st)| json!({"waveId": wave, "step": step, "state": st}))
        .collect();
    let counts = state.store.outbox_counts(Some(doc.id)).await?;
    Ok(json!({
        "campaignId": doc.id,
        "smtpConfigured": state.config.campaigns.smtp.is_some(),
        "plan": plan,
        "decisions": decisions.iter().map(|d| json!({
            "key": d.key, "waveId": d.wave_id, "step": d.step_key,
            "decidedAt": crate::clock::rfc3339(d.decided_at), "recipients": d.recipients, "skipped": d.skipped,
        })).collect::<Vec<_>>(),
        "outbox": {
            "pending": counts.pending, "claimed": counts.claimed, "transmitting": counts.transmitting,
            "sent": counts.sent, "failed": counts.failed, "uncertain": counts.uncertain, "cancelled": counts.cancelled,
        },
    }))
}

async fn communications(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    Ok(Json(communications_view(&state, &doc).await?))
}

async fn run(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    let report = service::run_due(&state, &ctx, &actor(&admin), &doc).await?;
    Ok(Json(json!(report)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PreviewBody {
    pub wave_id: Uuid,
    pub step: String,
    /// Render for this member (default: a sample name).
    pub user_id: Option<Uuid>,
}

/// A step rendered as one recipient would get it, and who the audience would be now.
pub(crate) async fn preview_step(
    state: &AppState,
    doc: &Document,
    body: &PreviewBody,
) -> Result<Value, ApiError> {
    let wave = doc
        .wave(body.wave_id)
        .ok_or_else(|| ApiError::not_found(format!("the campaign has no wave {}", body.wave_id)))?;
    let step = doc
        .campaign
        .steps
        .iter()
        .find(|s| s.key == body.step)
        .ok_or_else(|| ApiError::not_found(format!("the campaign has no step '{}'", body.step)))?;
    let members = service::member_facts(state, wave).await?;
    let aud = campaign::audience(step, &members);
    let name = match body.user_id {
        Some(u) => members
            .iter()
            .find(|m| m.user_id == u)
            .map(|m| m.display_name.clone())
            .ok_or_else(|| {
                ApiError::bad_request(format!("user {u} is not a member of the wave"))
            })?,
        None => "Alex Example".into(),
    };
    let r = service::render_for(state, doc, wave, step, &name, state.now());
    let cc = aud.recipients.iter().filter(|r| !r.cc.is_empty()).count();
    Ok(json!({
        "subject": r.subject, "html": r.html, "text": r.text,
        "audience": {"recipients": aud.recipients.len(), "withManagerCc": cc, "skipped": aud.skipped.len()},
    }))
}

async fn preview(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    Ok(Json(preview_step(&state, &doc, &body).await?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TestSendBody {
    pub wave_id: Uuid,
    pub step: String,
    pub to: String,
}

/// Put one rendered step, marked as a test, in the outbox for `to`.
pub(crate) async fn test_send_step(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    doc: &Document,
    body: &TestSendBody,
) -> Result<Value, ApiError> {
    cutover_smtp::validate_address("to", &body.to)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let preview = preview_step(
        state,
        doc,
        &PreviewBody {
            wave_id: body.wave_id,
            step: body.step.clone(),
            user_id: None,
        },
    )
    .await?;
    let now = state.now();
    let id = Uuid::now_v7();
    let host = url::Url::parse(&state.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "cutover.invalid".into());
    let msg = OutboxMessage {
        id,
        idempotency_key: format!("test:{id}"),
        campaign_id: Some(doc.id),
        wave_id: Some(body.wave_id),
        step_key: Some(body.step.clone()),
        user_id: None,
        mail_from: state.config.campaigns.mail_from.clone(),
        to: vec![body.to.clone()],
        cc: vec![],
        subject: format!("[Test] {}", preview["subject"].as_str().unwrap_or_default()),
        text_body: preview["text"].as_str().unwrap_or_default().to_owned(),
        html_body: preview["html"].as_str().unwrap_or_default().to_owned(),
        message_id: format!("<{id}@{host}>"),
        state: OutboxState::Pending,
        attempts: 0,
        next_attempt_at: now,
        lease_until: None,
        claimed_by: None,
        last_error: None,
        created_at: now,
        sent_at: None,
    };
    let a = service::audit(
        ctx,
        actor,
        now,
        "testSendCampaignStep",
        (doc.id, &doc.campaign.display_name),
        None,
        Some(json!({"step": body.step, "waveId": body.wave_id, "to": body.to})),
    );
    state.store.enqueue_outbox_message(&msg, Some(&a)).await?;
    state.outbox_wake.notify_one();
    Ok(outbox_view(&msg))
}

async fn test_send(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TestSendBody>,
) -> Result<Response, ApiError> {
    let doc = service::find(&state, &id).await?;
    let v = test_send_step(&state, &ctx, &actor(&admin), &doc, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

pub(crate) fn outbox_view(m: &OutboxMessage) -> Value {
    json!({
        "id": m.id, "messageId": m.message_id, "state": m.state.as_str(),
        "campaignId": m.campaign_id, "waveId": m.wave_id, "step": m.step_key, "userId": m.user_id,
        "to": m.to, "cc": m.cc, "subject": m.subject, "attempts": m.attempts,
        "nextAttemptAt": crate::clock::rfc3339(m.next_attempt_at),
        "lastError": m.last_error,
        "createdAt": crate::clock::rfc3339(m.created_at),
        "sentAt": m.sent_at.map(crate::clock::rfc3339),
    })
}

#[derive(Deserialize)]
struct OutboxQuery {
    state: Option<String>,
    after: Option<String>,
    top: Option<u32>,
}

async fn outbox(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    let st = q
        .state
        .as_deref()
        .map(|s| {
            OutboxState::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "state '{s}' is not known; use pending, claimed, transmitting, sent, failed, uncertain or cancelled"
                ))
            })
        })
        .transpose()?;
    let msgs = state
        .store
        .list_outbox(&OutboxFilter {
            campaign_id: Some(doc.id),
            wave_id: None,
            state: st,
            user_id: None,
            after: q
                .after
                .as_deref()
                .map(|a| uuid_of("after", a))
                .transpose()?,
            limit: q.top.unwrap_or(100),
        })
        .await?;
    Ok(Json(
        json!({"value": msgs.iter().map(outbox_view).collect::<Vec<_>>()}),
    ))
}

async fn resend(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = uuid_of("message", &id)?;
    let m = state
        .store
        .get_outbox_message(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("outbox message {id} does not exist")))?;
    let now = state.now();
    let a = cutover_store::AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: ctx.id,
        actor: actor(&admin).audit_name(),
        action: "resendCampaignMessage".into(),
        target_type: "outboxMessage".into(),
        target_id: id.to_string(),
        target_name: Some(m.message_id.clone()),
        before: Some(json!({"state": m.state.as_str(), "lastError": m.last_error})),
        after: Some(json!({"state": "pending"})),
    };
    state.store.resend_outbox_message(id, now, &a).await?;
    state.outbox_wake.notify_one();
    let m = state
        .store
        .get_outbox_message(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("outbox message {id} does not exist")))?;
    Ok(Json(outbox_view(&m)))
}

/// Every failed message of the campaign goes out again (after the relay or its settings were
/// fixed); uncertain ones stay, each needing a look at the relay's log.
async fn resend_failed(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let doc = service::find(&state, &id).await?;
    let n = service::resend_failed(&state, &ctx, &actor(&admin), &doc).await?;
    Ok(Json(json!({"resent": n})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "\"plain\"");
        assert_eq!(csv_cell("a \"b\""), "\"a \"\"b\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "\"'+1\"");
        assert_eq!(csv_cell("@x"), "\"'@x\"");
        assert_eq!(csv_cell("-2"), "\"'-2\"");
        assert_eq!(csv_cell(""), "\"\"");
        assert_eq!(csv_cell("a,b\r\nc"), "\"a,b\r\nc\"");
    }
}
