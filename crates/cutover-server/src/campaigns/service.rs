//! What the campaign API, the admin pages and the scheduler share: load a campaign, compute a
//! wave's progress and the prerequisites, change a wave's state (confirm, enforce through the
//! Conditional Access gate, roll back) with its audit row, and decide the communication steps
//! that are due. Decisions are `cutover_core::campaign`'s; this module gathers their facts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cutover_core::campaign::{
    self, CaFacts, CampaignSpec, CheckedCampaign, CheckedWave, EnforceFacts, EnforceVerdict,
    FieldError, MemberFacts, PasskeyFact, PrereqFacts, StepSpec, StepState, WaveProgress,
    WaveStatus,
};
use cutover_core::conditional_access::{ConditionalAccessPolicy, PolicyState};
use cutover_core::device::DeviceFamily;
use cutover_core::methods_policy::PolicyMethod;
use cutover_core::{MemberRef, Timestamp};
use cutover_store::{
    AuditEvent, CampaignRow, OutboxMessage, OutboxState, SendDecision, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ApiError;
use crate::{AppState, RequestCtx};

/// Who changes a campaign: an application through the API, an administrator on the admin
/// pages, or Cutover itself (the scheduler).
#[derive(Debug, Clone)]
pub enum Actor {
    App(String),
    User(String),
    System,
}

impl Actor {
    pub fn audit_name(&self) -> String {
        match self {
            Actor::App(client) => format!("app:{client}"),
            Actor::User(upn) => format!("user:{upn}"),
            Actor::System => "system".into(),
        }
    }
}

/// Members read per page from the store.
const MEMBER_PAGE: u32 = 1_000;
/// The largest wave whose members are read (a larger group is refused with a message).
pub const MAX_WAVE_MEMBERS: usize = 200_000;

/// What is stored in a campaign row: the definition (with every wave's id and the resolved
/// communication steps) and each wave's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    spec: CampaignSpec,
    #[serde(default)]
    statuses: BTreeMap<Uuid, WaveStatus>,
}

/// A stored campaign, checked.
#[derive(Debug, Clone)]
pub struct Document {
    pub id: Uuid,
    pub spec: CampaignSpec,
    pub campaign: CheckedCampaign,
    pub statuses: BTreeMap<Uuid, WaveStatus>,
    pub created_at: Timestamp,
    pub modified_at: Timestamp,
}

fn field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Document {
    pub fn from_row(row: &CampaignRow) -> Result<Self, String> {
        let stored: Stored = serde_json::from_value(row.document.clone()).map_err(|e| {
            format!(
                "campaign {} is stored in a form this version cannot read: {e}",
                row.id
            )
        })?;
        let campaign = campaign::check(&stored.spec, &mut Uuid::now_v7)
            .map_err(|e| format!("campaign {} no longer checks: {}", row.id, field_errors(&e)))?;
        Ok(Self {
            id: row.id,
            spec: stored.spec,
            campaign,
            statuses: stored.statuses,
            created_at: row.created_at,
            modified_at: row.modified_at,
        })
    }

    /// Check `spec` (new waves get ids) and fix what was resolved into it, so that reading
    /// it back gives the same campaign.
    pub fn new(id: Uuid, mut spec: CampaignSpec, now: Timestamp) -> Result<Self, ApiError> {
        let campaign = campaign::check(&spec, &mut Uuid::now_v7).map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalidCampaign",
                field_errors(&e),
            )
        })?;
        for (w, c) in spec.waves.iter_mut().zip(&campaign.waves) {
            w.id = Some(c.id);
        }
        spec.communications = Some(campaign.steps.clone());
        spec.preset = None;
        Ok(Self {
            id,
            spec,
            campaign,
            statuses: BTreeMap::new(),
            created_at: now,
            modified_at: now,
        })
    }

    pub fn to_row(&self) -> Result<CampaignRow, ApiError> {
        let stored = Stored {
            spec: self.spec.clone(),
            statuses: self.statuses.clone(),
        };
        Ok(CampaignRow {
            id: self.id,
            display_name: self.campaign.display_name.clone(),
            document: serde_json::to_value(&stored).map_err(ApiError::internal)?,
            created_at: self.created_at,
            modified_at: self.modified_at,
        })
    }

    pub fn wave(&self, id: Uuid) -> Option<&CheckedWave> {
        self.campaign.waves.iter().find(|w| w.id == id)
    }

    pub fn status(&self, id: Uuid) -> WaveStatus {
        self.statuses.get(&id).cloned().unwrap_or_default()
    }
}

pub async fn load(state: &AppState, id: Uuid) -> Result<Document, ApiError> {
    let row = state
        .store
        .get_campaign(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("campaign {id} does not exist")))?;
    Document::from_row(&row).map_err(ApiError::internal)
}

/// A campaign by id or exact display name.
pub async fn find(state: &AppState, key: &str) -> Result<Document, ApiError> {
    if let Ok(id) = Uuid::parse_str(key) {
        return load(state, id).await;
    }
    for row in state.store.list_campaigns().await? {
        if row.display_name == key {
            return Document::from_row(&row).map_err(ApiError::internal);
        }
    }
    Err(ApiError::not_found(format!(
        "no campaign has the id or name '{key}'"
    )))
}

pub async fn list(state: &AppState) -> Result<Vec<Document>, ApiError> {
    let mut out = Vec::new();
    for row in state.store.list_campaigns().await? {
        match Document::from_row(&row) {
            Ok(d) => out.push(d),
            Err(e) => {
                tracing::error!(error = %e, "a stored campaign cannot be read; it is left out of the list")
            }
        }
    }
    Ok(out)
}

/// An audit row of a change to campaign `target` (its id and name).
pub fn audit(
    ctx: &RequestCtx,
    actor: &Actor,
    now: Timestamp,
    action: &str,
    target: (Uuid, &str),
    before: Option<Value>,
    after: Option<Value>,
) -> AuditEvent {
    let (doc_id, name) = target;
    AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: ctx.id,
        actor: actor.audit_name(),
        action: action.into(),
        target_type: "campaign".into(),
        target_id: doc_id.to_string(),
        target_name: Some(name.to_owned()),
        before,
        after,
    }
}

/// The campaign as the API shows it (the waves with their state now).
pub fn view(doc: &Document, now: Timestamp) -> Value {
    let waves: Vec<Value> = doc
        .spec
        .waves
        .iter()
        .zip(&doc.campaign.waves)
        .map(|(spec, w)| {
            let status = doc.status(w.id);
            let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), json!(w.id));
                m.insert("effectiveTargetPercent".into(), json!(w.target_percent));
                m.insert(
                    "phaseNow".into(),
                    json!(campaign::wave_phase_now(w, &status, now)),
                );
                m.insert("status".into(), json!(status));
            }
            v
        })
        .collect();
    json!({
        "id": doc.id,
        "displayName": doc.campaign.display_name,
        "description": doc.campaign.description,
        "targetPercent": doc.campaign.target_percent,
        "waves": waves,
        "communications": doc.campaign.steps,
        "utcOffsetMinutes": doc.campaign.utc_offset_minutes,
        "createdAt": crate::clock::rfc3339(doc.created_at),
        "modifiedAt": crate::clock::rfc3339(doc.modified_at),
    })
}

/// Refuse a wave group larger than [`MAX_WAVE_MEMBERS`], saying what to do.
pub fn check_wave_size(group_id: Uuid, members: usize) -> Result<(), ApiError> {
    if members > MAX_WAVE_MEMBERS {
        return Err(ApiError::bad_request(format!(
            "group {group_id} has more than {MAX_WAVE_MEMBERS} members; split the wave into smaller groups"
        )));
    }
    Ok(())
}

/// The user ids of a group's direct members.
pub async fn member_ids(state: &AppState, group_id: Uuid) -> Result<Vec<Uuid>, ApiError> {
    let mut out = Vec::new();
    let mut after: Option<MemberRef> = None;
    loop {
        let page = state
            .store
            .list_group_members(group_id, MEMBER_PAGE, after)
            .await?;
        // The store may clamp the page size: only an empty page ends the list.
        let Some(last) = page.last().cloned() else {
            break;
        };
        after = Some(last);
        out.extend(
            page.iter()
                .filter(|m| m.kind == cutover_core::MemberKind::User)
                .map(|m| m.id),
        );
        check_wave_size(group_id, out.len())?;
    }
    Ok(out)
}

/// The passkeys of the wave group's members, as progress reads them.
async fn passkey_facts(state: &AppState, group_id: Uuid) -> Result<Vec<PasskeyFact>, ApiError> {
    Ok(state
        .store
        .passkeys_of_group_members(group_id)
        .await?
        .into_iter()
        .map(|p| PasskeyFact {
            user_id: p.user_id,
            created_at: p.created_at,
            device_family: DeviceFamily::parse(&p.device_family).unwrap_or(DeviceFamily::Unknown),
        })
        .collect())
}

/// A wave's progress now, with the daily series from its registration opening.
/// Members whose account is disabled are left out of every figure and counted apart.
pub async fn wave_progress(state: &AppState, wave: &CheckedWave) -> Result<WaveProgress, ApiError> {
    let ids = member_ids(state, wave.group_id).await?;
    let users = state.store.users_by_ids(&ids).await?;
    let members: Vec<Uuid> = users
        .iter()
        .filter(|u| u.account_enabled)
        .map(|u| u.id)
        .collect();
    let facts = passkey_facts(state, wave.group_id).await?;
    let now = state.now();
    let from = wave.registration_opens.min(now);
    let mut p = campaign::progress(&members, &facts, from, now);
    p.disabled_members = (users.len() - members.len()) as u64;
    Ok(p)
}

/// The live checklist of a wave: methods policy, pass policy, break-glass, the enforcing CA
/// policy.
pub async fn prerequisites(
    state: &AppState,
    shared: &SharedFacts,
    wave: &CheckedWave,
) -> Result<Vec<campaign::Check>, ApiError> {
    let groups: BTreeSet<Uuid> = [wave.group_id].into_iter().collect();
    let ca_policy = match wave.ca_policy_id {
        None => None,
        Some(id) => Some(ca_facts(state, id, wave.group_id).await?),
    };
    Ok(campaign::prerequisites(&PrereqFacts {
        passkeys_enabled_for_group: shared.methods.allows(PolicyMethod::Passkey, &groups),
        tap_enabled_for_group: shared.tap_enabled
            && shared
                .methods
                .allows(PolicyMethod::TemporaryAccessPass, &groups),
        break_glass_enabled: shared.break_glass_enabled,
        break_glass_drilled_90d: shared.break_glass_drilled_90d,
        ca_policy,
    }))
}

/// What every wave's checklist shares (the methods policy, the pass policy, the break-glass
/// accounts): read once per request, whatever the number of waves.
pub struct SharedFacts {
    methods: cutover_core::methods_policy::AuthenticationMethodsPolicy,
    tap_enabled: bool,
    break_glass_enabled: u32,
    break_glass_drilled_90d: u32,
}

impl SharedFacts {
    pub async fn load(state: &AppState) -> Result<Self, ApiError> {
        let now = state.now();
        let methods = crate::passkeys::load_methods_policy(state).await?;
        let tap = crate::tap::load_policy(state).await?;
        let glass = crate::break_glass::accounts(state).await?;
        let enabled: Vec<_> = glass
            .iter()
            .filter(|a| a.user.user.account_enabled)
            .collect();
        let drilled = enabled
            .iter()
            .filter(|a| {
                a.last_drill
                    .is_some_and(|t| now.secs_since(t) <= crate::break_glass::DRILL_MAX_AGE_SECS)
            })
            .count();
        Ok(Self {
            methods,
            tap_enabled: tap.enabled,
            break_glass_enabled: enabled.len() as u32,
            break_glass_drilled_90d: drilled as u32,
        })
    }
}

async fn ca_facts(state: &AppState, id: Uuid, group: Uuid) -> Result<CaFacts, ApiError> {
    Ok(match state.store.get_ca_policy(id).await? {
        Some(row) => ca_facts_of(&row, group),
        None => CaFacts {
            exists: false,
            state: String::new(),
            includes_group: false,
            requires_phishing_resistant: false,
        },
    })
}

/// What the checklist and the enforcement check read of a wave's CA policy.
fn ca_facts_of(row: &cutover_store::CaPolicyRow, group: Uuid) -> CaFacts {
    let policy: Option<ConditionalAccessPolicy> = serde_json::from_str(&row.policy).ok();
    let g = group.to_string();
    let includes_group = policy.as_ref().is_some_and(|p| {
        let u = &p.conditions.users;
        (u.include_groups.contains(&g) || u.include_users.iter().any(|x| x == "All"))
            && !u.exclude_groups.contains(&g)
    });
    let requires_phishing_resistant = policy
        .as_ref()
        .and_then(|p| p.grant_controls.as_ref())
        .and_then(|g| g.authentication_strength.as_ref())
        .is_some_and(|s| s.id == "phishingResistantMfa");
    CaFacts {
        exists: true,
        state: row.state.clone(),
        includes_group,
        requires_phishing_resistant,
    }
}

/// Store a changed document with its audit row; a concurrent change is a 409 that says to
/// reload.
pub async fn save(
    state: &AppState,
    doc: &mut Document,
    audit: &AuditEvent,
) -> Result<(), ApiError> {
    let expected = doc.modified_at;
    doc.modified_at = state.now();
    let row = doc.to_row()?;
    state
        .store
        .update_campaign(&row, expected, audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::conflict(format!(
                "{m}: the campaign changed since it was read; reload it and try again"
            )),
            other => other.into(),
        })
}

/// Send every failed message of the campaign again (uncertain ones stay: each needs a look
/// at the relay's log first). Audited once, with the count; none is not an error.
pub async fn resend_failed(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    doc: &Document,
) -> Result<u64, ApiError> {
    let now = state.now();
    let failed = state.store.outbox_counts(Some(doc.id)).await?.failed;
    let a = audit(
        ctx,
        actor,
        now,
        "resendFailedCampaignMessages",
        (doc.id, &doc.campaign.display_name),
        Some(json!({"failed": failed})),
        Some(json!({"state": "pending"})),
    );
    let n = state
        .store
        .resend_failed_outbox(Some(doc.id), now, &a)
        .await?;
    if n > 0 {
        tracing::info!(campaign = %doc.campaign.display_name, messages = n, actor = %actor.audit_name(), "every failed campaign e-mail was queued to be sent again");
        state.outbox_wake.notify_one();
    }
    Ok(n)
}

/// What a wave's state change did.
pub enum WaveChange {
    Done(Value),
    /// Refused: the status code's body (reasons, and the CA gate's verdict when it refused).
    Refused(Value),
}

fn wave_of(doc: &Document, wave_id: Uuid) -> Result<&CheckedWave, ApiError> {
    doc.wave(wave_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "campaign '{}' has no wave {wave_id}",
            doc.campaign.display_name
        ))
    })
}

/// The administrator confirms that the wave's exit criteria are met (the confirmation step
/// before enforcement).
pub async fn confirm(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    campaign_id: Uuid,
    wave_id: Uuid,
) -> Result<WaveChange, ApiError> {
    let doc = load(state, campaign_id).await?;
    wave_of(&doc, wave_id)?;
    let who = actor.audit_name();
    match record_transition(
        state,
        ctx,
        actor,
        campaign_id,
        wave_id,
        "confirmCampaignWave",
        |s, at| campaign::confirm(s, &who, at),
    )
    .await?
    {
        Ok(doc) => Ok(WaveChange::Done(view(&doc, state.now()))),
        Err(why) => Ok(WaveChange::Refused(json!({
            "error": {"code": "waveNotConfirmable", "message": why},
        }))),
    }
}

/// Enforce a wave: the campaign's own criteria (enrolment at the target, confirmed, its CA
/// policy present and report-only), then the CA enforcement gate switches the policy on
/// (`force` passes the gate, audited; never the campaign's own criteria).
pub async fn enforce(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    campaign_id: Uuid,
    wave_id: Uuid,
    force: bool,
) -> Result<WaveChange, ApiError> {
    let doc = load(state, campaign_id).await?;
    let wave = wave_of(&doc, wave_id)?.clone();
    let status = doc.status(wave_id);
    let progress = wave_progress(state, &wave).await?;
    let policy = match wave.ca_policy_id {
        Some(id) => state.store.get_ca_policy(id).await?,
        None => None,
    };
    let ca = match &policy {
        Some(row) => Some(ca_facts_of(row, wave.group_id)),
        None => None,
    };
    let facts = EnforceFacts {
        members: progress.members,
        enrolled: progress.enrolled,
        confirmed: status.confirmed_at.is_some(),
        ca_policy_present: ca.is_some(),
        ca_policy_report_only: ca
            .as_ref()
            .is_some_and(|c| c.state == cutover_store::CaPolicyRow::REPORT_ONLY),
        ca_policy_includes_group: ca.as_ref().is_some_and(|c| c.includes_group),
        ca_policy_requires_phishing_resistant: ca
            .as_ref()
            .is_some_and(|c| c.requires_phishing_resistant),
        already_enforced: status.enforcement == campaign::Enforcement::Enforced,
        ca_gate_refusals: Vec::new(),
    };
    if let EnforceVerdict::Refused(reasons) = campaign::may_enforce(wave.target_percent, &facts) {
        tracing::warn!(campaign = %doc.campaign.display_name, wave = %wave.display_name, reasons = ?reasons.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), "a wave's enforcement was refused");
        return Ok(WaveChange::Refused(json!({
            "error": {"code": "waveNotReady", "message": format!("wave '{}' cannot be enforced yet: {}", wave.display_name, reasons.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("; "))},
            "reasons": reasons,
            "progress": {"members": progress.members, "enrolled": progress.enrolled, "enrolledPercent": progress.enrolled_percent, "targetPercent": wave.target_percent},
        })));
    }
    let Some(policy) = policy else {
        return Err(ApiError::internal("the wave's policy vanished"));
    };
    let policy_view = match crate::conditional_access::set_state(
        state,
        ctx,
        &actor.audit_name(),
        policy.id,
        PolicyState::Enabled,
        force,
    )
    .await?
    {
        Ok(v) => v,
        Err(refusal) => {
            let mut body = refusal;
            if let Value::Object(m) = &mut body {
                m.insert(
                    "error".into(),
                    json!({"code": "enforcementGateRefused", "message": format!(
                        "the Conditional Access enforcement gate refused to enable '{}' for wave '{}': {}",
                        policy.display_name, wave.display_name,
                        m.get("error").and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("see the gate's reasons")
                    )}),
                );
            }
            return Ok(WaveChange::Refused(body));
        }
    };
    let forced_gate = policy_view
        .pointer("/enforcementGate/gate/allowed")
        .and_then(Value::as_bool)
        == Some(false);
    let who = actor.audit_name();
    let summary = format!(
        "{} of {} members enrolled ({:.1} %); policy '{}' enabled",
        progress.enrolled, progress.members, progress.enrolled_percent, policy.display_name
    );
    let recorded = record_transition(
        state,
        ctx,
        actor,
        campaign_id,
        wave_id,
        if forced_gate {
            "forceEnforceCampaignWave"
        } else {
            "enforceCampaignWave"
        },
        |s, at| {
            if forced_gate {
                let gate = EnforceVerdict::Refused(vec![campaign::Refusal {
                    code: "caGate",
                    message: "the Conditional Access enforcement gate refused".into(),
                }]);
                campaign::enforce(
                    s,
                    &gate,
                    &who,
                    at,
                    Some(&format!(
                        "forced past the Conditional Access enforcement gate; {summary}"
                    )),
                )
            } else {
                campaign::enforce(s, &EnforceVerdict::Allowed, &who, at, None)
            }
        },
    )
    .await;
    let recorded = match recorded {
        Ok(r) => r,
        Err(e) => {
            undo_enforcement(state, ctx, actor, policy.id, &e.message).await;
            return Err(e);
        }
    };
    match recorded {
        Ok(doc) => Ok(WaveChange::Done(json!({
            "campaign": view(&doc, state.now()),
            "policy": policy_view,
        }))),
        // The policy is on but the wave could not say so: put the policy back, so that no
        // policy is enforced without a wave that can roll it back — unless another request
        // enforced the wave meanwhile (a double click): then the policy is meant to be on,
        // and the wave says so.
        Err(why) => {
            if let Ok(now_doc) = load(state, campaign_id).await
                && now_doc.status(wave_id).enforcement == campaign::Enforcement::Enforced
            {
                tracing::info!(campaign = %now_doc.campaign.display_name, wave = %wave.display_name, "a wave was enforced by another request at the same time; its policy stays on");
                return Ok(WaveChange::Refused(json!({
                    "error": {"code": "waveAlreadyEnforced", "message": format!("wave '{}' was enforced by another request at the same moment; nothing more was changed", wave.display_name)},
                })));
            }
            undo_enforcement(state, ctx, actor, policy.id, &why).await;
            Ok(WaveChange::Refused(json!({
                "error": {"code": "waveNotEnforceable", "message": format!("{why}; the policy was put back to report-only")},
            })))
        }
    }
}

/// Return a policy switched on for a wave back to report-only after the wave's own record
/// failed (best effort; a failure here is logged for an operator).
async fn undo_enforcement(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    policy_id: Uuid,
    why: &str,
) {
    tracing::error!(policy = %policy_id, reason = %why, "a wave's enforcement could not be recorded after its policy was switched on; switching the policy back to report-only");
    if let Err(e) = crate::conditional_access::set_state(
        state,
        ctx,
        &actor.audit_name(),
        policy_id,
        PolicyState::EnabledForReportingButNotEnforced,
        false,
    )
    .await
    {
        tracing::error!(policy = %policy_id, error = %e.message, "the policy could NOT be switched back to report-only: do it by hand (cutover admin ca set-state)");
    }
}

/// Roll a wave back: its CA policy returns to report-only; nothing else changes (no passkey,
/// registration or message is deleted).
pub async fn roll_back(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    campaign_id: Uuid,
    wave_id: Uuid,
) -> Result<WaveChange, ApiError> {
    let doc = load(state, campaign_id).await?;
    let wave = wave_of(&doc, wave_id)?.clone();
    let status = doc.status(wave_id);
    if let Err(why) = campaign::may_roll_back(&status) {
        return Ok(WaveChange::Refused(json!({
            "error": {"code": "waveNotEnforced", "message": why},
        })));
    }
    let mut policy_view = Value::Null;
    if let Some(id) = wave.ca_policy_id {
        match crate::conditional_access::set_state(
            state,
            ctx,
            &actor.audit_name(),
            id,
            PolicyState::EnabledForReportingButNotEnforced,
            false,
        )
        .await
        {
            Ok(Ok(v)) => policy_view = v,
            Ok(Err(body)) => return Ok(WaveChange::Refused(body)),
            // A deleted policy enforces nothing: the rollback still records itself.
            Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let who = actor.audit_name();
    match record_transition(
        state,
        ctx,
        actor,
        campaign_id,
        wave_id,
        "rollBackCampaignWave",
        |s, at| {
            campaign::roll_back(
                s,
                &who,
                at,
                Some("policy back to report-only; passkeys kept"),
            )
        },
    )
    .await?
    {
        Ok(doc) => Ok(WaveChange::Done(json!({
            "campaign": view(&doc, state.now()),
            "policy": policy_view,
        }))),
        Err(why) => Ok(WaveChange::Refused(json!({
            "error": {"code": "waveNotEnforced", "message": why},
            "policy": policy_view,
        }))),
    }
}

/// Apply a pure wave transition to the stored campaign with its audit row; `Ok(Err(why))`
/// when the transition refuses. A concurrent change of the campaign is retried.
async fn record_transition(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    campaign_id: Uuid,
    wave_id: Uuid,
    audit_action: &str,
    change: impl Fn(&WaveStatus, Timestamp) -> Result<WaveStatus, String>,
) -> Result<Result<Document, String>, ApiError> {
    for _ in 0..3 {
        let mut doc = load(state, campaign_id).await?;
        let Some(wave) = doc.wave(wave_id) else {
            return Ok(Err(format!(
                "wave {wave_id} is no longer part of the campaign (it was changed meanwhile)"
            )));
        };
        let name = format!("{} / {}", doc.campaign.display_name, wave.display_name);
        let now = state.now();
        let before = doc.status(wave_id);
        let status = match change(&before, now) {
            Ok(s) => s,
            Err(why) => return Ok(Err(why)),
        };
        doc.statuses.insert(wave_id, status.clone());
        let a = audit(
            ctx,
            actor,
            now,
            audit_action,
            (doc.id, &name),
            Some(json!(before)),
            Some(json!(status)),
        );
        match save(state, &mut doc, &a).await {
            Ok(()) => return Ok(Ok(doc)),
            Err(e) if e.status == axum::http::StatusCode::CONFLICT => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        "the campaign kept changing while the wave's state was recorded; reload it",
    ))
}

/// The facts of each member the audience rules and the messages need.
pub async fn member_facts(
    state: &AppState,
    wave: &CheckedWave,
) -> Result<Vec<MemberFacts>, ApiError> {
    let ids = member_ids(state, wave.group_id).await?;
    let facts = passkey_facts(state, wave.group_id).await?;
    let enrolled: BTreeSet<Uuid> = facts.iter().map(|f| f.user_id).collect();
    let users = state.store.users_by_ids(&ids).await?;
    let managers: Vec<Uuid> = users.iter().filter_map(|u| u.manager_id).collect();
    let manager_mail: HashMap<Uuid, Option<String>> = state
        .store
        .users_by_ids(&managers)
        .await?
        .into_iter()
        .map(|m| (m.id, m.mail.clone()))
        .collect();
    Ok(users
        .into_iter()
        .map(|u| MemberFacts {
            user_id: u.id,
            display_name: u.display_name.clone(),
            mail: u.mail.clone(),
            enrolled: enrolled.contains(&u.id),
            manager_mail: u
                .manager_id
                .and_then(|m| manager_mail.get(&m).cloned().flatten()),
            account_enabled: u.account_enabled,
        })
        .collect())
}

/// The link of a campaign e-mail: the enrolment page for this campaign and wave.
pub fn enrol_link(state: &AppState, campaign_id: Uuid, wave_id: Uuid) -> String {
    format!(
        "{}{}?c={campaign_id}&w={wave_id}",
        state.config.issuer,
        super::enrol::ENROL_PATH
    )
}

/// One message of a step to one recipient.
pub fn render_for(
    state: &AppState,
    doc: &Document,
    wave: &CheckedWave,
    step: &StepSpec,
    display_name: &str,
    now: Timestamp,
) -> campaign::RenderedMessage {
    let link = enrol_link(state, doc.id, wave.id);
    let helpdesk = state
        .config
        .campaigns
        .helpdesk
        .clone()
        .unwrap_or_else(|| "your helpdesk".into());
    let ctx = campaign::MessageContext {
        display_name,
        campaign_name: &doc.campaign.display_name,
        wave_name: &wave.display_name,
        enforcement_date: wave.enforcement_date,
        now,
        utc_offset_minutes: doc.campaign.utc_offset_minutes,
        enrol_link: &link,
        helpdesk: &helpdesk,
    };
    let vars = campaign::template_variables(&ctx);
    campaign::render_message(&step.template, &vars)
}

fn message_id(state: &AppState, id: Uuid) -> String {
    let host = url::Url::parse(&state.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "cutover.invalid".into());
    format!("<{id}@{host}>")
}

/// What one scheduler pass decided for one campaign.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub decided: Vec<Value>,
    pub missed: Vec<Value>,
    pub messages: u32,
}

/// Decide the communication steps of `doc` that are due now: each decision and its messages
/// are written in one transaction, once (a step another node or an earlier pass decided is
/// left alone).
pub async fn run_due(
    state: &AppState,
    ctx: &RequestCtx,
    actor: &Actor,
    doc: &Document,
) -> Result<RunReport, ApiError> {
    let now = state.now();
    let decided: BTreeSet<String> = state
        .store
        .list_send_decisions(doc.id)
        .await?
        .into_iter()
        .map(|d| d.key)
        .collect();
    let mut report = RunReport::default();
    for (wave_id, step_key, st) in
        campaign::schedule(doc.id, &doc.campaign, &doc.statuses, &decided, now)
    {
        let (Some(wave), Some(step)) = (
            doc.wave(wave_id),
            doc.campaign.steps.iter().find(|s| s.key == step_key),
        ) else {
            continue;
        };
        match st {
            StepState::Due(due) => {
                let members = member_facts(state, wave).await?;
                let aud = campaign::audience(step, &members);
                let names: HashMap<Uuid, &str> = members
                    .iter()
                    .map(|m| (m.user_id, m.display_name.as_str()))
                    .collect();
                let mut messages = Vec::with_capacity(aud.recipients.len());
                for r in &aud.recipients {
                    let rendered = render_for(
                        state,
                        doc,
                        wave,
                        step,
                        names.get(&r.user_id).copied().unwrap_or(""),
                        now,
                    );
                    let id = Uuid::now_v7();
                    messages.push(OutboxMessage {
                        id,
                        idempotency_key: format!("{}:user:{}", due.decision_key, r.user_id),
                        campaign_id: Some(doc.id),
                        wave_id: Some(wave.id),
                        step_key: Some(step.key.clone()),
                        user_id: Some(r.user_id),
                        mail_from: state.config.campaigns.mail_from.clone(),
                        to: vec![r.to.clone()],
                        cc: r.cc.clone(),
                        subject: rendered.subject,
                        text_body: rendered.text,
                        html_body: rendered.html,
                        message_id: message_id(state, id),
                        state: OutboxState::Pending,
                        attempts: 0,
                        next_attempt_at: now,
                        lease_until: None,
                        claimed_by: None,
                        last_error: None,
                        created_at: now,
                        sent_at: None,
                    });
                }
                let skipped: Vec<Value> = aud
                    .skipped
                    .iter()
                    .map(|(u, why)| json!({"userId": u, "reason": why}))
                    .collect();
                let decision = SendDecision {
                    key: due.decision_key.clone(),
                    campaign_id: doc.id,
                    wave_id: wave.id,
                    step_key: step.key.clone(),
                    decided_at: now,
                    recipients: messages.len() as u32,
                    skipped: Value::Array(skipped.clone()),
                };
                let a = audit(
                    ctx,
                    actor,
                    now,
                    "sendCampaignStep",
                    (
                        doc.id,
                        &format!(
                            "{} / {} / {}",
                            doc.campaign.display_name, wave.display_name, step.key
                        ),
                    ),
                    None,
                    Some(
                        json!({"waveId": wave.id, "step": step.key, "recipients": messages.len(), "skipped": skipped.len()}),
                    ),
                );
                if state
                    .store
                    .record_send_decision(&decision, &messages, Some(&a))
                    .await?
                {
                    tracing::info!(campaign = %doc.campaign.display_name, wave = %wave.display_name, step = %step.key, recipients = messages.len(), skipped = skipped.len(), "a campaign step was decided; its e-mails are in the outbox");
                    state.outbox_wake.notify_one();
                    report.messages += messages.len() as u32;
                    report.decided.push(json!({"waveId": wave.id, "step": step.key, "recipients": messages.len(), "skipped": skipped}));
                }
            }
            StepState::Missed { due_at } => {
                let key = campaign::decision_key(doc.id, wave.id, &step.key);
                let decision = SendDecision {
                    key,
                    campaign_id: doc.id,
                    wave_id: wave.id,
                    step_key: step.key.clone(),
                    decided_at: now,
                    recipients: 0,
                    skipped: json!([{"reason": "missed", "dueAt": crate::clock::rfc3339(due_at)}]),
                };
                if state
                    .store
                    .record_send_decision(&decision, &[], None)
                    .await?
                {
                    tracing::warn!(campaign = %doc.campaign.display_name, wave = %wave.display_name, step = %step.key, due = %crate::clock::rfc3339(due_at), "a campaign step was due more than two days ago and is skipped, not sent late (was the server down, or the campaign created after the date?)");
                    report.missed.push(json!({"waveId": wave.id, "step": step.key, "dueAt": crate::clock::rfc3339(due_at)}));
                }
            }
            _ => {}
        }
    }
    Ok(report)
}

/// The scheduler: every `schedule_interval`, decide the due steps of every campaign.
pub(crate) async fn schedule_loop(state: std::sync::Arc<AppState>) {
    let mut tick = tokio::time::interval(state.config.campaigns.schedule_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ctx = RequestCtx {
            id: Uuid::now_v7(),
            ip: None,
            user_agent: None,
            ua_model: None,
        };
        let docs = match list(&state).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e.message, "campaigns could not be read for the schedule; trying again");
                continue;
            }
        };
        for doc in docs {
            if let Err(e) = run_due(&state, &ctx, &Actor::System, &doc).await {
                tracing::warn!(campaign = %doc.campaign.display_name, error = %e.message, "the campaign's due e-mails could not be decided; trying again at the next pass");
            }
        }
        super::mail::refresh_outbox_gauge(&state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wave_group_may_hold_up_to_the_limit() {
        let g = Uuid::nil();
        assert!(check_wave_size(g, MAX_WAVE_MEMBERS).is_ok());
        let e = check_wave_size(g, MAX_WAVE_MEMBERS + 1).unwrap_err();
        assert!(e.message.contains("split the wave"), "{}", e.message);
    }

    #[test]
    fn actors_are_named_as_the_audit_log_names_them() {
        assert_eq!(
            Actor::App("cutover-admin".into()).audit_name(),
            "app:cutover-admin"
        );
        assert_eq!(
            Actor::User("ada@contoso.example".into()).audit_name(),
            "user:ada@contoso.example"
        );
        assert_eq!(Actor::System.audit_name(), "system");
    }
}
