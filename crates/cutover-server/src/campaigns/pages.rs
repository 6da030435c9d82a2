//! The campaign pages of the admin web UI (`/admin/campaigns…`): the list with each wave's
//! progress, a form to create a campaign, and a campaign's page — per wave the live
//! prerequisites checklist, enrolment against the target (a ring), enrolment over time (a
//! line chart), enrolment by device family (bars), the stragglers (with a CSV download), the
//! wave's actions (confirm, enforce through the Conditional Access gate, roll back) and the
//! communication plan with previews, a test-send and the outbox.
//!
//! Same rules as every admin page (see `crate::ui`): no JavaScript, charts as SVG with their
//! numbers visible, every form CSRF-checked, every change audited as `user:{upn}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use cutover_core::campaign::{self, CheckedWave, Enforcement, Phase, StepState, WaveProgress};
use cutover_core::device::DeviceFamily;
use cutover_store::OutboxFilter;
use serde_json::{Value, json};
use uuid::Uuid;

use super::api;
use super::service::{self, Actor, Document, WaveChange};
use crate::pages::esc;
use crate::ui::{self, AdminUi, Nav, UiError, svg};
use crate::{AppState, RequestCtx};

/// Wave rows on the creation form.
pub const FORM_WAVES: usize = 4;
/// Groups offered on the creation form.
pub const FORM_GROUPS: u32 = 500;
/// Stragglers listed on the page (the CSV has them all).
pub const STRAGGLERS_SHOWN: usize = 25;
/// Days the enrolment chart shows (the latest ones).
pub const CHART_DAYS: usize = 60;
/// Outbox messages per page.
pub const OUTBOX_PAGE: u32 = 100;
/// Waves whose progress the dashboard and the campaign list compute on each load (newest
/// campaigns first); the rest are counted and linked.
pub const MAX_LISTED_WAVES: usize = 24;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/campaigns", get(list).post(create))
        .route("/admin/campaigns/new", get(new_form))
        .route("/admin/campaigns/{id}", get(detail))
        .route("/admin/campaigns/{id}/edit", get(edit_form).post(edit))
        .route("/admin/campaigns/{id}/preview", get(preview))
        .route("/admin/campaigns/{id}/outbox", get(outbox))
        .route("/admin/campaigns/{id}/run", post(run))
        .route("/admin/campaigns/{id}/test-send", post(test_send))
        .route(
            "/admin/campaigns/{id}/waves/{wave}/stragglers.csv",
            get(stragglers_csv),
        )
        .route(
            "/admin/campaigns/{id}/waves/{wave}/{action}",
            post(wave_action),
        )
        .route("/admin/outbox/{id}/resend", post(resend))
        .route(
            "/admin/campaigns/{id}/outbox/resendFailed",
            post(resend_failed),
        )
}

fn ctx_actor(admin: &AdminUi) -> Actor {
    Actor::User(admin.user.user.upn.to_string())
}

/// An API error as an error page inside the layout.
fn api_error(admin: &AdminUi, e: crate::error::ApiError) -> UiError {
    let title = match e.status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::BAD_REQUEST => "This cannot be used",
        _ => "Something went wrong",
    };
    UiError::from(ui::admin_error(
        admin,
        Nav::Campaigns,
        e.status,
        title,
        &e.message,
    ))
}

/// A campaign form posted by an administrator of this session: the admin and the campaign.
async fn posted(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    id: &str,
) -> Result<(AdminUi, Document), UiError> {
    let admin = ui::require_admin(state, headers, "/admin/campaigns").await?;
    ui::check_csrf(&admin, form.get("csrf").map(String::as_str))?;
    let doc = load_doc(state, &admin, id).await?;
    Ok((admin, doc))
}

async fn load_doc(state: &AppState, admin: &AdminUi, id: &str) -> Result<Document, UiError> {
    let Ok(uid) = Uuid::parse_str(id) else {
        return Err(ui::not_found(admin, Nav::Campaigns, "campaign", id));
    };
    match service::load(state, uid).await {
        Ok(d) => Ok(d),
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            Err(ui::not_found(admin, Nav::Campaigns, "campaign", id))
        }
        Err(e) => Err(api_error(admin, e)),
    }
}

fn wave_state_badge(doc: &Document, w: &CheckedWave, now: cutover_core::Timestamp) -> String {
    let status = doc.status(w.id);
    let phase = campaign::wave_phase_now(w, &status, now);
    let (text, kind) = match serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .as_deref()
    {
        Some("scheduled") => ("Scheduled", "muted"),
        Some("registering") => ("Registering", "info"),
        Some("enforcementDue") => ("Enforcement due", "warn"),
        Some("enforced") => ("Enforced", "ok"),
        Some("rolledBack") => ("Rolled back", "warn"),
        _ => ("—", "muted"),
    };
    ui::badge(text, kind)
}

fn day(t: cutover_core::Timestamp) -> String {
    crate::clock::rfc3339(t)
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

/// A compact bar of a wave's enrolment against its target (for lists and the dashboard).
fn mini_bar(p: &WaveProgress, target: f64) -> String {
    let pct = if p.enrolled_percent.is_finite() {
        p.enrolled_percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    format!(
        "<div class=\"mini\" role=\"img\" aria-label=\"{pct:.1} % enrolled of a {target:.0} % target\">\
         <span class=\"fill\" style=\"width:{pct:.1}%\"></span><span class=\"target\" style=\"left:{target:.1}%\"></span></div>\
         <span class=\"num\">{pct:.1} %</span> <span class=\"muted\">({} of {})</span>",
        p.enrolled, p.members
    )
}

const MINI_STYLE: &str = "<style>.mini{position:relative;display:inline-block;width:8rem;max-width:40vw;height:.8rem;background:#e5e7eb;border-radius:.2rem;vertical-align:middle}\
.mini .fill{position:absolute;left:0;top:0;bottom:0;background:#2563eb;border-radius:.2rem}\
.mini .target{position:absolute;top:-.2rem;bottom:-.2rem;width:2px;background:#111827}\
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}\
.checklist{list-style:none;padding:0}.checklist li{margin:.3rem 0}.checklist .yes{color:#15803d;font-weight:700}.checklist .no{color:#b91c1c;font-weight:700}\
.actions{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;margin:.5rem 0}.actions form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:0}\
.actions label{font-size:.875rem}.mailpreview{border:1px solid #d1d5db;padding:1rem;background:#fff;max-width:40rem;overflow-wrap:anywhere}\
.charts{display:grid;grid-template-columns:minmax(0,14rem) minmax(0,1fr);gap:1rem;align-items:center}.charts svg,.wide-chart svg{max-width:100%}\
.wave-facts{overflow-wrap:anywhere}\
input[type=email],input[type=date],input[type=number]{padding:.4rem .5rem;font:inherit;border:1px solid #9ca3af;border-radius:.25rem;max-width:100%;width:100%;background:#fff}\
#campaign-form>div>label,#campaign-form fieldset label{display:block;font-weight:600;font-size:.85rem;margin:.6rem 0 .2rem}#campaign-form input,#campaign-form select{width:100%}\
#campaign-form fieldset{border:1px solid #e5e7eb;border-radius:.4rem;margin:1rem 0;padding:.25rem 1rem 1rem;display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:0 1rem}\
#campaign-form legend{font-weight:600}#campaign-form>button{margin-top:1rem}\
@media (max-width:800px){.charts{grid-template-columns:minmax(0,1fr)}}</style>";

/// Which waves the dashboard lists: `(campaign index, wave index)` of at most `max` waves, the
/// newest campaigns first, and how many are left out. `campaigns` gives each campaign's
/// creation time and number of waves.
pub(crate) fn listed_waves(
    campaigns: &[(cutover_core::Timestamp, usize)],
    max: usize,
) -> (Vec<(usize, usize)>, usize) {
    let mut order: Vec<usize> = (0..campaigns.len()).collect();
    order.sort_by(|a, b| campaigns[*b].0.cmp(&campaigns[*a].0).then(a.cmp(b)));
    let total: usize = campaigns.iter().map(|c| c.1).sum();
    let shown: Vec<(usize, usize)> = order
        .into_iter()
        .flat_map(|ci| (0..campaigns[ci].1).map(move |wi| (ci, wi)))
        .take(max)
        .collect();
    let hidden = total - shown.len();
    (shown, hidden)
}

/// The campaign cards of the admin dashboard: every wave's enrolment against its target.
pub(crate) async fn dashboard_cards(state: &AppState) -> String {
    let docs = match service::list(state).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e.message, "the dashboard could not read the campaigns");
            return "<p class=\"muted\">The campaigns could not be read; see the server's log.</p>"
                .into();
        }
    };
    if docs.is_empty() {
        return "<p class=\"muted\" id=\"no-campaigns\">No passkey campaign yet. <a href=\"/admin/campaigns/new\">Create one</a>.</p>".into();
    }
    let now = state.now();
    let mut rows = Vec::new();
    let (shown, hidden) = listed_waves(
        &docs
            .iter()
            .map(|d| (d.created_at, d.campaign.waves.len()))
            .collect::<Vec<_>>(),
        MAX_LISTED_WAVES,
    );
    for (di, wi) in shown {
        let (d, w) = (&docs[di], &docs[di].campaign.waves[wi]);
        let cell = match service::wave_progress(state, w).await {
            Ok(p) => mini_bar(&p, w.target_percent),
            Err(e) => esc(&e.message),
        };
        rows.push(vec![
            format!(
                "<a href=\"/admin/campaigns/{}\">{}</a>",
                d.id,
                esc(&d.campaign.display_name)
            ),
            esc(&w.display_name),
            wave_state_badge(d, w, now),
            cell,
        ]);
    }
    let more = if hidden > 0 {
        format!(
            "<p class=\"muted\">{hidden} more wave(s) of older campaigns are not shown here; open their campaign.</p>"
        )
    } else {
        String::new()
    };
    format!(
        "{MINI_STYLE}{}{more}",
        ui::table(
            "campaign-cards",
            "Enrolment per wave (the line marks the target)",
            &["Campaign", "Wave", "State", "Enrolled"],
            &rows,
            "No waves."
        )
    )
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    let cards = dashboard_cards(&state).await;
    let docs = service::list(&state)
        .await
        .map_err(|e| api_error(&admin, e))?;
    let now = state.now();
    let all: Vec<Vec<String>> = docs
        .iter()
        .map(|d| {
            let enforced = d
                .campaign
                .waves
                .iter()
                .filter(|w| d.status(w.id).enforcement == Enforcement::Enforced)
                .count();
            let next = d
                .campaign
                .waves
                .iter()
                .map(|w| w.enforcement_date)
                .filter(|t| *t >= now)
                .min();
            vec![
                format!(
                    "<a href=\"/admin/campaigns/{}\">{}</a>",
                    d.id,
                    esc(&d.campaign.display_name)
                ),
                d.campaign.waves.len().to_string(),
                enforced.to_string(),
                next.map_or_else(|| "—".into(), ui::time_html),
                ui::time_html(d.created_at),
            ]
        })
        .collect();
    let table = ui::table(
        "campaigns",
        "Every campaign",
        &[
            "Campaign",
            "#Waves",
            "#Enforced",
            "Next enforcement date",
            "Created",
        ],
        &all,
        "No campaign yet.",
    );
    let body = format!(
        "<p>A campaign moves groups of users to passkeys in waves: e-mails on a schedule, help for each device, \
         enforcement only at the target, and a rollback that deletes nothing. <a href=\"/admin/campaigns/new\" id=\"new-campaign\">New campaign</a></p>\
         <section class=\"panel\" aria-labelledby=\"all-h\"><h2 id=\"all-h\">Campaigns</h2>{table}</section>\
         <section class=\"panel\" aria-labelledby=\"waves-h\"><h2 id=\"waves-h\">Waves</h2>{cards}</section>"
    );
    Ok(ui::admin_page(
        &admin,
        Nav::Campaigns,
        "Passkey campaigns",
        &body,
    ))
}

/// The creation form, with `values` (from a refused attempt) filled in and `error` above it.
async fn form_page(
    state: &AppState,
    admin: &AdminUi,
    values: &HashMap<String, String>,
    error: Option<&str>,
) -> Result<Response, UiError> {
    let groups = state.store.list_groups(FORM_GROUPS, None).await?;
    let more_groups = if groups.len() == FORM_GROUPS as usize {
        format!(
            "<p class=\"muted\" id=\"groups-cut\">The lists show the first {FORM_GROUPS} groups by name; for a group further down, create the campaign with <code>cutover admin campaigns create --file</code> or the API.</p>"
        )
    } else {
        String::new()
    };
    let policies = state.store.list_ca_policies().await?;
    let v = |k: &str| esc(values.get(k).map(String::as_str).unwrap_or(""));
    let selected = |k: &str, option: &str| {
        if values.get(k).map(String::as_str) == Some(option) {
            " selected"
        } else {
            ""
        }
    };
    let mut waves = String::new();
    for i in 0..FORM_WAVES {
        let mut phase_opts = String::new();
        for p in Phase::ALL {
            phase_opts.push_str(&format!(
                "<option value=\"{v}\"{s}>{l}</option>",
                v = p.as_str(),
                s = selected(&format!("wave{i}_phase"), p.as_str()),
                l = esc(p.label())
            ));
        }
        let mut group_opts = String::from("<option value=\"\">— choose a group —</option>");
        for g in &groups {
            let id = g.id.to_string();
            group_opts.push_str(&format!(
                "<option value=\"{id}\"{s}>{n}</option>",
                s = selected(&format!("wave{i}_group"), &id),
                n = esc(&g.display_name)
            ));
        }
        let mut policy_opts = String::from("<option value=\"\">— none yet —</option>");
        for p in &policies {
            let id = p.id.to_string();
            policy_opts.push_str(&format!(
                "<option value=\"{id}\"{s}>{n} ({st})</option>",
                s = selected(&format!("wave{i}_policy"), &id),
                n = esc(&p.display_name),
                st = esc(&p.state)
            ));
        }
        waves.push_str(&format!(
            "<fieldset><legend>Wave {n}{opt}</legend>\
             <div><label for=\"wave{i}_name\">Name</label><input type=\"text\" id=\"wave{i}_name\" name=\"wave{i}_name\" value=\"{name}\" maxlength=\"128\"></div>\
             <div><label for=\"wave{i}_phase\">Phase</label><select id=\"wave{i}_phase\" name=\"wave{i}_phase\">{phase_opts}</select></div>\
             <div><label for=\"wave{i}_group\">Group</label><select id=\"wave{i}_group\" name=\"wave{i}_group\">{group_opts}</select></div>\
             <div><label for=\"wave{i}_opens\">Registration opens</label><input type=\"date\" id=\"wave{i}_opens\" name=\"wave{i}_opens\" value=\"{opens}\"></div>\
             <div><label for=\"wave{i}_enforce\">Enforcement date</label><input type=\"date\" id=\"wave{i}_enforce\" name=\"wave{i}_enforce\" value=\"{enforce}\"></div>\
             <div><label for=\"wave{i}_policy\">Conditional Access policy that will require passkeys</label><select id=\"wave{i}_policy\" name=\"wave{i}_policy\">{policy_opts}</select></div>\
             </fieldset>",
            n = i + 1,
            opt = if i == 0 { "" } else { " (optional)" },
            name = v(&format!("wave{i}_name")),
            opens = v(&format!("wave{i}_opens")),
            enforce = v(&format!("wave{i}_enforce")),
        ));
    }
    let err = error
        .map(|e| {
            format!(
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let preset = values
        .get("preset")
        .map(String::as_str)
        .unwrap_or("standard");
    let chosen_clock = values.get("utc_offset").map(String::as_str).unwrap_or("0");
    let mut clock_opts = String::new();
    for m in campaign::CAMPAIGN_UTC_OFFSET_MINUTES.step_by(15) {
        let v = m.to_string();
        clock_opts.push_str(&format!(
            "<option value=\"{v}\"{s}>{l}</option>",
            s = if v == chosen_clock { " selected" } else { "" },
            l = utc_offset_label(m),
        ));
    }
    let body = format!(
        "{MINI_STYLE}{err}{more_groups}<p class=\"muted\">Each wave is a group with the date its members are invited to register and the date passkeys become required. Create the wave's Conditional Access policy (report-only) first, so that it can be picked here.</p>\
         <form method=\"post\" action=\"/admin/campaigns\" id=\"campaign-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div><label for=\"name\">Name</label><input type=\"text\" id=\"name\" name=\"name\" required maxlength=\"128\" value=\"{name}\"></div>\
         <div><label for=\"description\">Description</label><input type=\"text\" id=\"description\" name=\"description\" maxlength=\"2048\" value=\"{desc}\"></div>\
         <div><label for=\"target\">Target (percent of each wave enrolled before enforcement)</label><input type=\"number\" id=\"target\" name=\"target\" min=\"1\" max=\"100\" step=\"0.1\" value=\"{target}\"></div>\
         <div><label for=\"preset\">E-mails</label><select id=\"preset\" name=\"preset\">\
         <option value=\"standard\"{ps}>Standard: 7 days before, on the day, 7 days after (stragglers, manager in CC)</option>\
         <option value=\"extended\"{pe}>Extended: 60, 45, 30, 15, 7 and 1 day(s) before, on the day, 7 days after</option></select></div>\
         <div><label for=\"utc_offset\">The organisation's clock (the dates below are midnight on it; e-mails write dates on it)</label><select id=\"utc_offset\" name=\"utc_offset\">{clock_opts}</select></div>\
         {waves}<button type=\"submit\" class=\"primary\" id=\"create-campaign\">Create the campaign</button></form>",
        csrf = esc(&admin.csrf),
        name = v("name"),
        desc = v("description"),
        target = values
            .get("target")
            .map(|t| esc(t))
            .unwrap_or_else(|| "95".into()),
        ps = if preset == "standard" {
            " selected"
        } else {
            ""
        },
        pe = if preset == "extended" {
            " selected"
        } else {
            ""
        },
    );
    Ok(ui::admin_page_status(
        admin,
        Nav::Campaigns,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "New passkey campaign",
        &body,
    ))
}

async fn new_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    form_page(&state, &admin, &HashMap::new(), None).await
}

/// `UTC`, `UTC+01:00`, `UTC-03:30`.
fn utc_offset_label(minutes: i32) -> String {
    if minutes == 0 {
        return "UTC".into();
    }
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.unsigned_abs();
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

/// The campaign definition a creation form describes (rows without a name are ignored).
fn spec_from_form(f: &HashMap<String, String>) -> Result<Value, String> {
    let get = |k: &str| f.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let offset: i32 = match get("utc_offset") {
        None => 0,
        Some(o) => o
            .parse()
            .ok()
            .filter(|m| campaign::CAMPAIGN_UTC_OFFSET_MINUTES.contains(m) && m % 15 == 0)
            .ok_or_else(|| {
                format!("the organisation's clock '{o}' is not a UTC offset in minutes")
            })?,
    };
    let suffix = match utc_offset_label(offset).strip_prefix("UTC") {
        Some("") | None => "Z".to_owned(),
        Some(hm) => hm.to_owned(),
    };
    let date = |k: &str, label: &str| -> Result<String, String> {
        let d = get(k).ok_or_else(|| format!("{label} is missing"))?;
        let ok = d.len() == 10
            && d.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !ok {
            return Err(format!("{label} '{d}' is not a date (YYYY-MM-DD)"));
        }
        Ok(format!("{d}T00:00:00{suffix}"))
    };
    let mut waves = Vec::new();
    for i in 0..FORM_WAVES {
        let Some(name) = get(&format!("wave{i}_name")) else {
            continue;
        };
        let n = i + 1;
        let group = get(&format!("wave{i}_group"))
            .ok_or_else(|| format!("wave {n} ('{name}'): choose its group"))?;
        let mut w = json!({
            "displayName": name,
            "phase": get(&format!("wave{i}_phase")).unwrap_or("pilot"),
            "groupId": group,
            "registrationOpens": date(&format!("wave{i}_opens"), &format!("wave {n}: the registration date"))?,
            "enforcementDate": date(&format!("wave{i}_enforce"), &format!("wave {n}: the enforcement date"))?,
        });
        if let Some(p) = get(&format!("wave{i}_policy")) {
            w["caPolicyId"] = json!(p);
        }
        waves.push(w);
    }
    if waves.is_empty() {
        return Err("give at least one wave a name, a group and its dates".into());
    }
    let mut spec = json!({
        "displayName": get("name").unwrap_or(""),
        "waves": waves,
        "preset": get("preset").unwrap_or("standard"),
    });
    if let Some(d) = get("description") {
        spec["description"] = json!(d);
    }
    if offset != 0 {
        spec["utcOffsetMinutes"] = json!(offset);
    }
    if let Some(t) = get("target") {
        let t: f64 = t
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite())
            .ok_or_else(|| format!("the target '{t}' is not a number"))?;
        spec["targetPercent"] = json!(t);
    }
    Ok(spec)
}

async fn create(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, "/admin/campaigns/new").await?;
    ui::check_csrf(&admin, form.get("csrf").map(String::as_str))?;
    let spec = match spec_from_form(&form).and_then(|v| {
        serde_json::from_value::<campaign::CampaignSpec>(v).map_err(|e| e.to_string())
    }) {
        Ok(s) => s,
        Err(e) => return form_page(&state, &admin, &form, Some(&e)).await,
    };
    match api::create_campaign(&state, &ctx, &ctx_actor(&admin), spec).await {
        Ok(doc) => {
            Ok(Redirect::to(&format!("/admin/campaigns/{}?done=created", doc.id)).into_response())
        }
        Err(e) if e.status.is_client_error() => {
            form_page(&state, &admin, &form, Some(&e.message)).await
        }
        Err(e) => Err(api_error(&admin, e)),
    }
}

fn checklist(checks: &[campaign::Check]) -> String {
    let mut s = String::from("<ul class=\"checklist\">");
    for c in checks {
        s.push_str(&format!(
            "<li data-check=\"{k}\" data-ok=\"{ok}\"><span class=\"{cls}\" aria-hidden=\"true\">{mark}</span><span class=\"sr-only\">{said}: </span> <strong>{t}</strong>{d}</li>",
            k = esc(c.key),
            ok = c.ok,
            cls = if c.ok { "yes" } else { "no" },
            mark = if c.ok { "✓" } else { "✗" },
            said = if c.ok { "Met" } else { "Not met" },
            t = esc(&c.title),
            d = if c.ok && c.detail.is_empty() {
                String::new()
            } else {
                format!(" — {}", esc(&c.detail))
            },
        ));
    }
    s.push_str("</ul>");
    s
}

/// The daily series as chart data: the last [`CHART_DAYS`] days, as percentages of members.
fn series_chart(w: &CheckedWave, p: &WaveProgress) -> String {
    let start = p.series.len().saturating_sub(CHART_DAYS);
    let points = &p.series[start..];
    let labels: Vec<String> = points
        .iter()
        .map(|d| day(d.day_start).get(5..).unwrap_or_default().to_owned())
        .collect();
    let pct = |n: u64| {
        if p.members == 0 {
            0.0
        } else {
            n as f64 * 100.0 / p.members as f64
        }
    };
    let enrolled: Vec<f64> = points.iter().map(|d| pct(d.enrolled)).collect();
    let two: Vec<f64> = points.iter().map(|d| pct(d.two_or_more)).collect();
    svg::line_chart(
        &format!("{}: enrolled over time (% of members)", w.display_name),
        &labels,
        &[
            ("At least one passkey".into(), enrolled),
            ("Two or more".into(), two),
        ],
        Some(w.target_percent),
        true,
    )
}

/// Enrolled members per device family over the last [`CHART_DAYS`] days (the families some
/// member has a passkey of).
fn family_series_chart(w: &CheckedWave, p: &WaveProgress) -> String {
    let start = p.series.len().saturating_sub(CHART_DAYS);
    let points = &p.series[start..];
    let Some(last) = points.last() else {
        return String::new();
    };
    if last.by_family.is_empty() {
        return String::new();
    }
    let labels: Vec<String> = points
        .iter()
        .map(|d| day(d.day_start).get(5..).unwrap_or_default().to_owned())
        .collect();
    // The biggest families first (the chart keeps the first ones when there are many).
    let mut families: Vec<(&str, u64)> = last.by_family.iter().map(|(f, n)| (*f, *n)).collect();
    families.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let series: Vec<(String, Vec<f64>)> = families
        .iter()
        .map(|(f, _)| {
            (
                DeviceFamily::parse(f).map_or_else(|| (*f).to_owned(), |x| x.label().to_owned()),
                points
                    .iter()
                    .map(|d| d.by_family.get(f).copied().unwrap_or(0) as f64)
                    .collect(),
            )
        })
        .collect();
    svg::line_chart(
        &format!(
            "{}: enrolled users by device family over time",
            w.display_name
        ),
        &labels,
        &series,
        None,
        false,
    )
}

fn family_chart(w: &CheckedWave, p: &WaveProgress) -> String {
    let mut rows: Vec<(String, f64)> = p
        .by_family
        .iter()
        .filter(|(_, c)| c.users > 0)
        .map(|(k, c)| {
            (
                DeviceFamily::parse(k).map_or_else(|| k.clone(), |f| f.label().to_owned()),
                c.users as f64,
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if rows.is_empty() {
        return "<p class=\"muted\">No passkeys registered yet.</p>".into();
    }
    svg::hbars(
        &format!("{}: enrolled users by device family", w.display_name),
        &rows,
        false,
    )
}

/// The wave's Conditional Access policy as the enforcement decision needs it: a link, its
/// state, and while report-only, what its sweep saw and what the enforcement gate says now.
async fn policy_summary(
    state: &AppState,
    w: &CheckedWave,
    now: cutover_core::Timestamp,
) -> Result<String, crate::error::ApiError> {
    let Some(id) = w.ca_policy_id else {
        return Ok("<p id=\"policy-none\" class=\"muted\">No Conditional Access policy is linked to this wave: there is nothing to enforce. Link a policy that requires phishing-resistant MFA for the wave's group (report-only first).</p>".into());
    };
    let Some(row) = state.store.get_ca_policy(id).await? else {
        return Ok(format!(
            "<p id=\"policy-missing\" class=\"error\">The linked Conditional Access policy {id} no longer exists.</p>"
        ));
    };
    let state_label = match row.state.as_str() {
        cutover_store::CaPolicyRow::REPORT_ONLY => "report-only",
        cutover_store::CaPolicyRow::ENABLED => "on (enforced)",
        _ => "off",
    };
    let head = format!(
        "Policy <a href=\"/admin/policies/ca/{id}\">{name}</a>: <strong>{state_label}</strong>.",
        name = esc(&row.display_name),
    );
    if row.state != cutover_store::CaPolicyRow::REPORT_ONLY {
        return Ok(format!("<p id=\"policy-{}\">{head}</p>", w.id));
    }
    let since = now.minus_secs(crate::conditional_access::IMPACT_WINDOW_SECS);
    let (imp, gate) = crate::conditional_access::impact_and_gate(state, &row, since).await?;
    let evidence = match imp.evidence_since {
        Some(t) => format!("evidence since {}", ui::time_html(t)),
        None => "no report-only evidence yet".into(),
    };
    let verdict = if gate.allowed {
        ui::badge("the gate would open", "ok")
    } else {
        format!(
            "{} {}",
            ui::badge("the gate would refuse", "warn"),
            esc(&gate
                .reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        )
    };
    Ok(format!(
        "<p id=\"policy-{wid}\">{head} Its sweep over the last {hours} h: {records} sign-in(s) of {applied} user(s); <strong>{interrupted}</strong> would have been interrupted ({rate}); {evidence}. {verdict}</p>",
        wid = w.id,
        hours = crate::conditional_access::IMPACT_WINDOW_SECS / 3600,
        records = imp.records,
        applied = imp.applied_users,
        interrupted = imp.interrupted_users,
        rate = svg::fmt_pct(imp.interruption_rate),
    ))
}

async fn wave_section(
    state: &AppState,
    admin: &AdminUi,
    doc: &Document,
    w: &CheckedWave,
    plan: &[(Uuid, String, StepState)],
    shared: &service::SharedFacts,
) -> Result<String, crate::error::ApiError> {
    let now = state.now();
    let status = doc.status(w.id);
    let p = service::wave_progress(state, w).await?;
    let checks = service::prerequisites(state, shared, w).await?;
    let ring = svg::progress_ring(
        &format!("{}: enrolled", w.display_name),
        p.enrolled_percent,
        w.target_percent,
    );
    let users = state
        .store
        .users_by_ids(&p.stragglers[..p.stragglers.len().min(STRAGGLERS_SHOWN)])
        .await?;
    let straggler_rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                format!(
                    "<a href=\"/admin/users/{}\">{}</a>",
                    u.id,
                    esc(u.upn.as_str())
                ),
                esc(&u.display_name),
                esc(u.department.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let csrf = esc(&admin.csrf);
    let action = |name: &str, label: &str, extra: &str| {
        format!(
            "<form method=\"post\" action=\"/admin/campaigns/{c}/waves/{w}/{name}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{extra}\
             <button type=\"submit\" id=\"{name}-{w}\" class=\"{cls}\">{label}</button></form>",
            c = doc.id,
            w = w.id,
            cls = if name == "rollback" {
                "danger"
            } else {
                "primary"
            },
        )
    };
    let mut actions = String::new();
    match status.enforcement {
        Enforcement::Enforced => actions.push_str(&action("rollback", "Roll back wave", "")),
        _ => {
            if status.confirmed_at.is_none() {
                actions.push_str(&action("confirm", "Confirm the wave is ready", ""));
            }
            actions.push_str(&action(
                "enforce",
                "Enforce the wave",
                "<label><input type=\"checkbox\" name=\"force\" value=\"true\"> pass the Conditional Access gate's refusal (audited)</label>",
            ));
        }
    }
    let policy = policy_summary(state, w, now).await?;
    let confirmed = match (&status.confirmed_by, status.confirmed_at) {
        (Some(by), Some(at)) => format!("Confirmed by {} on {}.", esc(by), ui::time_html(at)),
        _ => "Not confirmed yet.".into(),
    };
    let history: Vec<Vec<String>> = status
        .history
        .iter()
        .rev()
        .take(10)
        .map(|t| {
            vec![
                ui::time_html(t.at),
                esc(&t.action),
                esc(&t.actor),
                esc(t.detail.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    let steps: Vec<Vec<String>> = plan
        .iter()
        .filter(|(wid, _, _)| *wid == w.id)
        .map(|(_, key, st)| {
            let (label, due) = match st {
                StepState::NotYet { due_at } => ("not yet", *due_at),
                StepState::Due(d) => ("due now", d.due_at),
                StepState::Missed { due_at } => ("missed", *due_at),
                StepState::Stopped { due_at } => ("stopped (rolled back)", *due_at),
                StepState::Done { due_at } => ("sent", *due_at),
            };
            vec![
                esc(key),
                esc(label),
                ui::time_html(due),
                format!(
                    "<a href=\"{}\">preview</a>",
                    esc(&ui::link(
                        &format!("/admin/campaigns/{}/preview", doc.id),
                        &[("wave", &w.id.to_string()), ("step", key)]
                    ))
                ),
            ]
        })
        .collect();
    Ok(format!(
        "<section class=\"panel wave\" id=\"wave-{wid}\" data-wave=\"{wid}\" data-enrolled=\"{enrolled}\" data-members=\"{members}\" aria-labelledby=\"wave-{wid}-h\">\
         <h2 id=\"wave-{wid}-h\">{name} {badge}</h2>\
         <p class=\"muted wave-facts\">{phase} · group <a href=\"/admin/groups/{gid}\">{gname}</a> · registration from {opens} · enforcement {enforce} (times in UTC; the campaign's clock is {clock}) · target {target:.0} %</p>\
         <h3>Prerequisites</h3>{checks}\
         <h3>Progress</h3>\
         <p id=\"progress-{wid}\"><strong>{pct:.1} %</strong> enrolled ({enrolled} of {members}), <strong>{two}</strong> with two or more passkeys, <strong>{strag}</strong> without a passkey.{disabled}</p>\
         <div class=\"charts\">{ring}{families}</div><div class=\"wide-chart\">{series}</div><div class=\"wide-chart\">{family_series}</div>\
         <h3>Stragglers</h3>{stable}<p><a href=\"/admin/campaigns/{cid}/waves/{wid}/stragglers.csv\" id=\"csv-{wid}\">Download all {strag} as CSV</a></p>\
         <h3>Enforcement</h3>{policy}<p>{readiness} {confirmed}</p><div class=\"actions\">{actions}</div>{htable}\
         <h3>E-mails</h3>{stepstable}\
         </section>",
        wid = w.id,
        cid = doc.id,
        name = esc(&w.display_name),
        badge = wave_state_badge(doc, w, now),
        phase = esc(w.phase.label()),
        gid = w.group_id,
        gname = esc(&state
            .store
            .get_group(w.group_id)
            .await?
            .map_or_else(|| w.group_id.to_string(), |g| g.display_name)),
        readiness = match campaign::members_needed(w.target_percent, p.members) {
            Some(needed) if p.enrolled >= needed && p.members > 0 => format!(
                "The wave is at its target ({} enrolled, {} needed).",
                p.enrolled, needed
            ),
            Some(needed) => format!(
                "The wave needs {} more enrolled member(s) to reach its target ({} of {}).",
                needed.saturating_sub(p.enrolled),
                p.enrolled,
                needed
            ),
            None => "The wave's target cannot be computed.".into(),
        },
        clock = utc_offset_label(doc.campaign.utc_offset_minutes),
        opens = ui::time_html(w.registration_opens),
        enforce = ui::time_html(w.enforcement_date),
        target = w.target_percent,
        checks = checklist(&checks),
        pct = p.enrolled_percent,
        enrolled = p.enrolled,
        members = p.members,
        two = p.two_or_more,
        strag = p.stragglers.len(),
        disabled = match p.disabled_members {
            0 => String::new(),
            n => format!(" {n} disabled account(s) in the group are not counted."),
        },
        series = series_chart(w, &p),
        family_series = family_series_chart(w, &p),
        families = family_chart(w, &p),
        stable = ui::table(
            &format!("stragglers-{}", w.id),
            &format!(
                "The first {} (of {})",
                straggler_rows.len(),
                p.stragglers.len()
            ),
            &["User", "Name", "Department"],
            &straggler_rows,
            "Everyone in this wave has a passkey."
        ),
        htable = ui::table(
            &format!("history-{}", w.id),
            "History",
            &["When", "Action", "By", "Detail"],
            &history,
            "Nothing has happened to this wave yet."
        ),
        stepstable = ui::table(
            &format!("steps-{}", w.id),
            "",
            &["Step", "State", "Due", ""],
            &steps,
            "No e-mail steps."
        ),
    ))
}

async fn detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    let doc = load_doc(&state, &admin, &id).await?;
    let q = ui::params(q.as_deref());
    let now = state.now();
    let decided = state
        .store
        .list_send_decisions(doc.id)
        .await?
        .into_iter()
        .map(|d| d.key)
        .collect();
    let plan = campaign::schedule(doc.id, &doc.campaign, &doc.statuses, &decided, now);
    let shared = service::SharedFacts::load(&state)
        .await
        .map_err(|e| api_error(&admin, e))?;
    let mut waves = String::new();
    for w in &doc.campaign.waves {
        waves.push_str(
            &wave_section(&state, &admin, &doc, w, &plan, &shared)
                .await
                .map_err(|e| api_error(&admin, e))?,
        );
    }
    let error = crate::my::signed_error(
        &state,
        q.get("error").map(String::as_str),
        q.get("sig").map(String::as_str),
    );
    let notice = match (q.get("done").map(String::as_str), error) {
        (_, Some(e)) => format!(
            "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
            esc(e)
        ),
        (Some(d), _) => {
            let text = match d {
                "created" => "The campaign was created. Check each wave's prerequisites below.",
                "updated" => "The campaign was saved.",
                "confirm" => "The wave is confirmed.",
                "enforce" => "The wave is enforced: its Conditional Access policy is on.",
                "rollback" => {
                    "The wave was rolled back: its policy is report-only again. No passkey was deleted."
                }
                "run" => "Due e-mails were put in the outbox.",
                "testSend" => "The test e-mail is in the outbox.",
                _ => "Done.",
            };
            format!(
                "<div class=\"notice\" role=\"status\" id=\"notice\">{}</div>",
                esc(text)
            )
        }
        _ => String::new(),
    };
    let counts = state.store.outbox_counts(Some(doc.id)).await?;
    let smtp = if state.config.campaigns.smtp.is_some() {
        relay_banner(&state)
    } else {
        "<div class=\"error\" role=\"status\" id=\"no-smtp\">No SMTP relay is configured on this server: e-mails wait in the outbox. Start it with <code>--smtp-host</code> (see <code>cutover serve --help</code>).</div>".into()
    };
    let csrf = esc(&admin.csrf);
    let step_opts: String = doc
        .campaign
        .steps
        .iter()
        .map(|s| format!("<option value=\"{k}\">{k}</option>", k = esc(&s.key)))
        .collect();
    let wave_opts: String = doc
        .campaign
        .waves
        .iter()
        .map(|w| {
            format!(
                "<option value=\"{}\">{}</option>",
                w.id,
                esc(&w.display_name)
            )
        })
        .collect();
    let comms = format!(
        "<section class=\"panel\" id=\"communications\" aria-labelledby=\"comms-h\"><h2 id=\"comms-h\">E-mails</h2>{smtp}\
         <p id=\"outbox-counts\">Outbox: <strong>{sent}</strong> sent, <strong>{pending}</strong> waiting, <strong>{failed}</strong> failed, <strong>{uncertain}</strong> uncertain. \
         <a href=\"/admin/campaigns/{cid}/outbox\">Open the outbox</a></p>\
         <div class=\"actions\"><form method=\"post\" action=\"/admin/campaigns/{cid}/run\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" class=\"primary\" id=\"run-due\">Send what is due now</button></form></div>\
         <h3>Send a test</h3><form method=\"post\" action=\"/admin/campaigns/{cid}/test-send\" id=\"test-send\" class=\"stack\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <div><label for=\"ts-wave\">Wave</label><select id=\"ts-wave\" name=\"wave\">{wave_opts}</select></div>\
         <div><label for=\"ts-step\">Step</label><select id=\"ts-step\" name=\"step\">{step_opts}</select></div>\
         <div><label for=\"ts-to\">To</label><input type=\"email\" id=\"ts-to\" name=\"to\" required></div>\
         <div><button type=\"submit\" class=\"primary\">Send a test</button></div></form></section>",
        cid = doc.id,
        sent = counts.sent,
        pending = counts.pending + counts.claimed + counts.transmitting,
        failed = counts.failed,
        uncertain = counts.uncertain,
    );
    let body = format!(
        "{MINI_STYLE}{notice}<p>{desc}</p><p class=\"muted\">Target {target:.0} % · {n} wave(s) · created {created} · <a href=\"/admin/campaigns/{edit_id}/edit\" id=\"edit-link\">Edit the definition (waves, dates, e-mails)</a></p>\
         <div class=\"waves\">{waves}</div>{comms}",
        desc = esc(doc.campaign.description.as_deref().unwrap_or("")),
        target = doc.campaign.target_percent,
        n = doc.campaign.waves.len(),
        created = ui::time_html(doc.created_at),
        edit_id = doc.id,
    );
    Ok(ui::admin_page(
        &admin,
        Nav::Campaigns,
        &doc.campaign.display_name,
        &body,
    ))
}

fn back(doc_id: Uuid, done: &str) -> Response {
    Redirect::to(&ui::link(
        &format!("/admin/campaigns/{doc_id}"),
        &[("done", done)],
    ))
    .into_response()
}

/// Back to the campaign page with an error it shows (signed, so a crafted link shows nothing).
fn back_with_error(state: &AppState, doc_id: Uuid, message: &str) -> Response {
    Redirect::to(&crate::my::with_error(
        state,
        &format!("/admin/campaigns/{doc_id}"),
        message,
    ))
    .into_response()
}

/// The first sentence a refusal's JSON body gives (its message and reasons).
fn refusal_text(body: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = body.pointer("/error/message").and_then(Value::as_str) {
        parts.push(m.to_owned());
    }
    parts.join(" ")
}

async fn wave_action(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path((id, wave, action)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let (admin, doc) = posted(&state, &headers, &form, &id).await?;
    let Some(w) = Uuid::parse_str(&wave)
        .ok()
        .filter(|w| doc.wave(*w).is_some())
    else {
        return Err(ui::not_found(&admin, Nav::Campaigns, "wave", &wave));
    };
    let actor = ctx_actor(&admin);
    let change = match action.as_str() {
        "confirm" => service::confirm(&state, &ctx, &actor, doc.id, w).await,
        "enforce" => {
            let force = form.get("force").is_some_and(|f| f == "true");
            service::enforce(&state, &ctx, &actor, doc.id, w, force).await
        }
        "rollback" => service::roll_back(&state, &ctx, &actor, doc.id, w).await,
        other => return Err(ui::not_found(&admin, Nav::Campaigns, "action", other)),
    }
    .map_err(|e| api_error(&admin, e))?;
    Ok(match change {
        WaveChange::Done(_) => back(doc.id, &action),
        WaveChange::Refused(body) => back_with_error(&state, doc.id, &refusal_text(&body)),
    })
}

async fn run(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let (admin, doc) = posted(&state, &headers, &form, &id).await?;
    service::run_due(&state, &ctx, &ctx_actor(&admin), &doc)
        .await
        .map_err(|e| api_error(&admin, e))?;
    Ok(back(doc.id, "run"))
}

async fn test_send(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let (admin, doc) = posted(&state, &headers, &form, &id).await?;
    let Some(wave_id) = form.get("wave").and_then(|w| Uuid::parse_str(w).ok()) else {
        return Ok(back_with_error(
            &state,
            doc.id,
            "choose a wave for the test e-mail",
        ));
    };
    let body = api::TestSendBody {
        wave_id,
        step: form.get("step").cloned().unwrap_or_default(),
        to: form.get("to").cloned().unwrap_or_default(),
    };
    match api::test_send_step(&state, &ctx, &ctx_actor(&admin), &doc, &body).await {
        Ok(_) => Ok(back(doc.id, "testSend")),
        Err(e) if e.status.is_client_error() => Ok(back_with_error(&state, doc.id, &e.message)),
        Err(e) => Err(api_error(&admin, e)),
    }
}

async fn preview(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    let doc = load_doc(&state, &admin, &id).await?;
    let q = ui::params(q.as_deref());
    let Some(wave_id) = q.get("wave").and_then(|w| Uuid::parse_str(w).ok()) else {
        return Err(ui::bad_filter(
            &admin,
            Nav::Campaigns,
            "wave: give the id of one of the campaign's waves",
        ));
    };
    let body = api::PreviewBody {
        wave_id,
        step: q.get("step").cloned().unwrap_or_default(),
        user_id: None,
    };
    let v = api::preview_step(&state, &doc, &body)
        .await
        .map_err(|e| api_error(&admin, e))?;
    let html = format!(
        "<p><a href=\"/admin/campaigns/{cid}\">Back to {name}</a></p>\
         <p id=\"audience\">Audience now: <strong>{r}</strong> recipient(s), {cc} with their manager in CC, {sk} skipped (already enrolled, no address or disabled).</p>\
         <h2>Subject</h2><p id=\"subject\">{subject}</p>\
         <h2>HTML part</h2><div class=\"mailpreview\" id=\"html-part\">{html}</div>\
         <h2>Plain-text part</h2><pre id=\"text-part\">{text}</pre>",
        cid = doc.id,
        name = esc(&doc.campaign.display_name),
        r = v["audience"]["recipients"],
        cc = v["audience"]["withManagerCc"],
        sk = v["audience"]["skipped"],
        subject = esc(v["subject"].as_str().unwrap_or("")),
        // The rendered Markdown is Cutover's own escaped output.
        html = v["html"].as_str().unwrap_or(""),
        text = esc(v["text"].as_str().unwrap_or("")),
    );
    Ok(ui::admin_page(
        &admin,
        Nav::Campaigns,
        &format!("Preview: {}", body.step),
        &html,
    ))
}

async fn outbox(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    let doc = load_doc(&state, &admin, &id).await?;
    let q = ui::params(q.as_deref());
    let st = match q.get("state") {
        None => None,
        Some(s) => Some(cutover_store::OutboxState::parse(s).ok_or_else(|| {
            ui::bad_filter(&admin, Nav::Campaigns, &format!("state '{s}' is not known; use pending, claimed, transmitting, sent, failed, uncertain or cancelled"))
        })?),
    };
    let after = q.get("after").and_then(|a| Uuid::parse_str(a).ok());
    let msgs = state
        .store
        .list_outbox(&OutboxFilter {
            campaign_id: Some(doc.id),
            state: st,
            after,
            limit: OUTBOX_PAGE,
            ..Default::default()
        })
        .await?;
    let csrf = esc(&admin.csrf);
    let rows: Vec<Vec<String>> = msgs
        .iter()
        .map(|m| {
            let resend = if matches!(
                m.state,
                cutover_store::OutboxState::Failed | cutover_store::OutboxState::Uncertain
            ) {
                format!(
                    "<form method=\"post\" action=\"/admin/outbox/{id}/resend\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"campaign\" value=\"{cid}\"><button type=\"submit\" class=\"small\">Send again</button></form>",
                    id = m.id,
                    cid = doc.id,
                )
            } else {
                String::new()
            };
            vec![
                ui::time_html(m.created_at),
                ui::badge(m.state.as_str(), match m.state {
                    cutover_store::OutboxState::Sent => "ok",
                    cutover_store::OutboxState::Failed | cutover_store::OutboxState::Uncertain => "warn",
                    _ => "muted",
                }),
                esc(&m.to.join(", ")),
                esc(&m.cc.join(", ")),
                esc(m.step_key.as_deref().unwrap_or("")),
                esc(&m.message_id),
                m.attempts.to_string(),
                esc(m.last_error.as_deref().unwrap_or("")),
                resend,
            ]
        })
        .collect();
    let next = if msgs.len() == OUTBOX_PAGE as usize {
        msgs.last()
            .map(|m| {
                format!(
                    "<p><a href=\"{}\">Next page</a></p>",
                    esc(&ui::link(
                        &format!("/admin/campaigns/{}/outbox", doc.id),
                        &[
                            ("state", q.get("state").map(String::as_str).unwrap_or("")),
                            ("after", &m.id.to_string())
                        ]
                    ))
                )
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut filters = String::new();
    for s in ["", "pending", "sent", "failed", "uncertain", "cancelled"] {
        filters.push_str(&format!(
            " <a href=\"{}\">{}</a>",
            esc(&ui::link(
                &format!("/admin/campaigns/{}/outbox", doc.id),
                &[("state", s)]
            )),
            if s.is_empty() { "all" } else { s }
        ));
    }
    let failed = state.store.outbox_counts(Some(doc.id)).await?.failed;
    let bulk = if failed > 0 {
        format!(
            "<form method=\"post\" action=\"/admin/campaigns/{cid}/outbox/resendFailed\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" id=\"resend-failed\">Send all {failed} failed messages again</button></form> <span class=\"muted\">after fixing what failed them (the relay, its settings, an address); uncertain messages are not included.</span>",
            cid = doc.id,
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p><a href=\"/admin/campaigns/{cid}\">Back to {name}</a> · Show:{filters}</p>{relay}{bulk}\
         <p class=\"muted\">An <strong>uncertain</strong> message may or may not have been accepted by the SMTP relay (the connection ended before it answered); it is never sent again automatically. Check the relay's log for its Message-ID before sending it again.</p>{table}{next}",
        cid = doc.id,
        name = esc(&doc.campaign.display_name),
        relay = relay_banner(&state),
        table = ui::table(
            "outbox",
            "Messages",
            &[
                "Created",
                "State",
                "To",
                "Cc",
                "Step",
                "Message-ID",
                "#Attempts",
                "Last error",
                ""
            ],
            &rows,
            "No messages."
        ),
    );
    Ok(ui::admin_page(&admin, Nav::Campaigns, "Outbox", &body))
}

async fn resend(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, "/admin/campaigns").await?;
    ui::check_csrf(&admin, form.get("csrf").map(String::as_str))?;
    let Ok(mid) = Uuid::parse_str(&id) else {
        return Err(ui::not_found(&admin, Nav::Campaigns, "message", &id));
    };
    let Some(m) = state.store.get_outbox_message(mid).await? else {
        return Err(ui::not_found(&admin, Nav::Campaigns, "message", &id));
    };
    let now = state.now();
    let a = ui::audit_event(
        &admin,
        &ctx,
        now,
        "resendCampaignMessage",
        ("outboxMessage", mid.to_string(), Some(m.message_id.clone())),
        Some(json!({"state": m.state.as_str(), "lastError": m.last_error})),
        Some(json!({"state": "pending"})),
    );
    match state.store.resend_outbox_message(mid, now, &a).await {
        Ok(()) => state.outbox_wake.notify_one(),
        Err(cutover_store::StoreError::Conflict(msg)) => {
            return Err(UiError::from(ui::admin_error(
                &admin,
                Nav::Campaigns,
                StatusCode::CONFLICT,
                "Not possible now",
                &msg,
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let to = match m.campaign_id {
        Some(c) => format!("/admin/campaigns/{c}/outbox"),
        None => "/admin/campaigns".into(),
    };
    Ok(Redirect::to(&to).into_response())
}

/// Longest campaign definition the editor accepts (a campaign at every limit fits; its
/// form-encoded body stays under `MAX_CAMPAIGN_BODY_BYTES`).
pub const MAX_EDIT_BYTES: usize = 512 * 1024;
const _: () =
    assert!(MAX_EDIT_BYTES * 3 + 64 * 1024 <= cutover_core::limits::MAX_CAMPAIGN_BODY_BYTES);

/// The editor: the whole definition as JSON (ids and steps explicit), with what was refused.
fn edit_page(
    admin: &AdminUi,
    doc: &Document,
    text: &str,
    version: i64,
    error: Option<&str>,
) -> Response {
    let err = error
        .map(|e| {
            format!(
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{MINI_STYLE}{err}<p><a href=\"/admin/campaigns/{cid}\">Back to {name}</a></p>\
         <p class=\"muted\">The campaign's whole definition: waves (keep each wave's <code>id</code>: a wave without one is a new wave, whose e-mails are decided again), <code>communications</code> (each step's <code>offsetDays</code> from the enforcement date, <code>audience</code> <code>all</code> or <code>notEnrolled</code>, <code>ccManager</code>, and its template: a one-line subject and a Markdown body with <code>{{{{firstName}}}}</code>, <code>{{{{enrolLink}}}}</code>, <code>{{{{enforcementDate}}}}</code>, <code>{{{{daysLeft}}}}</code>, <code>{{{{helpdesk}}}}</code>…), <code>targetPercent</code> and <code>utcOffsetMinutes</code>. Everything is checked before anything is saved; docs/CAMPAIGNS.md lists every field. An enforced wave keeps its group and policy.</p>\
         <form method=\"post\" action=\"/admin/campaigns/{cid}/edit\" id=\"edit-campaign\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"version\" value=\"{version}\">\
         <div><label for=\"definition\">Definition (JSON)</label><textarea id=\"definition\" name=\"definition\" rows=\"30\" spellcheck=\"false\" style=\"width:100%;font-family:monospace\">{text}</textarea></div>\
         <button type=\"submit\" class=\"primary\" id=\"save-campaign\">Save the campaign</button></form>",
        cid = doc.id,
        name = esc(&doc.campaign.display_name),
        csrf = esc(&admin.csrf),
        text = esc(text),
    );
    // A refusal is shown on the page itself, with the text kept (a 200: the browser shows a
    // form to fix, not a failed load).
    ui::admin_page(
        admin,
        Nav::Campaigns,
        &format!("Edit: {}", doc.campaign.display_name),
        &body,
    )
}

async fn edit_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    let doc = load_doc(&state, &admin, &id).await?;
    let text = serde_json::to_string_pretty(&doc.campaign.to_spec())
        .map_err(|e| api_error(&admin, crate::error::ApiError::internal(e)))?;
    Ok(edit_page(
        &admin,
        &doc,
        &text,
        doc.modified_at.millis(),
        None,
    ))
}

async fn edit(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let (admin, doc) = posted(&state, &headers, &form, &id).await?;
    let text = form.get("definition").map(String::as_str).unwrap_or("");
    let version: Option<i64> = form.get("version").and_then(|v| v.parse().ok());
    let refuse = |msg: &str| edit_page(&admin, &doc, text, doc.modified_at.millis(), Some(msg));
    if version != Some(doc.modified_at.millis()) {
        return Ok(refuse(
            "The campaign was changed since this page was opened (by someone else, or a wave's state changed). Your text is below; open the editor again to start from the current definition.",
        ));
    }
    if text.len() > MAX_EDIT_BYTES {
        return Ok(refuse(&format!(
            "The definition is longer than {MAX_EDIT_BYTES} bytes."
        )));
    }
    let patch = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            // What the editor's text leaves out is removed, not kept.
            for k in ["description", "targetPercent", "utcOffsetMinutes"] {
                m.entry(k).or_insert(Value::Null);
            }
            m
        }
        Ok(_) => return Ok(refuse("The definition must be a JSON object ({ … }).")),
        Err(e) => {
            return Ok(refuse(&format!("The definition is not valid JSON: {e}.")));
        }
    };
    match api::update_campaign(&state, &ctx, &ctx_actor(&admin), &doc, patch).await {
        Ok(doc) => Ok(back(doc.id, "updated")),
        Err(e) if e.status.is_client_error() => Ok(refuse(&e.message)),
        Err(e) => Err(api_error(&admin, e)),
    }
}

/// Send every failed message of the campaign again.
async fn resend_failed(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let (admin, doc) = posted(&state, &headers, &form, &id).await?;
    service::resend_failed(&state, &ctx, &ctx_actor(&admin), &doc)
        .await
        .map_err(|e| api_error(&admin, e))?;
    Ok(Redirect::to(&format!("/admin/campaigns/{}/outbox", doc.id)).into_response())
}

/// What this node knows of the SMTP relay, when its last connection failed.
fn relay_banner(state: &AppState) -> String {
    let Ok(h) = state.relay.lock() else {
        return String::new();
    };
    if h.consecutive_failures == 0 {
        return String::new();
    }
    format!(
        "<div class=\"error\" role=\"status\" id=\"relay-down\">This server cannot use the SMTP relay (since {since}, {n} failed connection(s)): <code>{error}</code>. E-mails wait in the outbox without using up their retries, and go out once the relay answers or its settings are fixed.</div>",
        since = h.down_since.map(ui::time_html).unwrap_or_default(),
        n = h.consecutive_failures,
        error = esc(h.last_error.as_deref().unwrap_or("")),
    )
}

async fn stragglers_csv(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, wave)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
    let doc = load_doc(&state, &admin, &id).await?;
    let Some(w) = Uuid::parse_str(&wave).ok().and_then(|w| doc.wave(w)) else {
        return Err(ui::not_found(&admin, Nav::Campaigns, "wave", &wave));
    };
    let csv = api::stragglers_csv(&state, w)
        .await
        .map_err(|e| api_error(&admin, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_dashboard_lists_the_newest_waves_up_to_the_limit() {
        use cutover_core::Timestamp;
        let old = (Timestamp::from_secs(1), 20);
        let new = (Timestamp::from_secs(2), 4);
        let (shown, hidden) = listed_waves(&[old, new], MAX_LISTED_WAVES);
        assert_eq!(shown.len(), 24);
        assert_eq!(hidden, 0);
        assert_eq!(shown[0], (1, 0), "the newest campaign first");
        let (shown, hidden) = listed_waves(&[(Timestamp::from_secs(1), 21), new], MAX_LISTED_WAVES);
        assert_eq!(shown.len(), MAX_LISTED_WAVES);
        assert_eq!(hidden, 1, "the 25th wave is left out and counted");
        assert_eq!(shown.last(), Some(&(0, 19)));
        assert_eq!(listed_waves(&[], MAX_LISTED_WAVES), (vec![], 0));
    }

    #[test]
    fn the_creation_form_becomes_a_campaign_definition() {
        let f = form(&[
            ("name", "Passkeys 2027"),
            ("target", "90"),
            ("preset", "extended"),
            ("wave0_name", "Pilot"),
            ("wave0_phase", "pilot"),
            ("wave0_group", "0190a0a0-0000-7000-8000-000000000001"),
            ("wave0_opens", "2027-01-04"),
            ("wave0_enforce", "2027-01-25"),
            ("wave1_name", ""),
        ]);
        let v = spec_from_form(&f).unwrap();
        assert_eq!(v["waves"].as_array().unwrap().len(), 1);
        assert_eq!(v["waves"][0]["enforcementDate"], "2027-01-25T00:00:00Z");
        assert!(v.get("utcOffsetMinutes").is_none(), "UTC unless chosen");
        assert_eq!(v["targetPercent"], 90.0);
        assert_eq!(v["preset"], "extended");
        let spec: campaign::CampaignSpec = serde_json::from_value(v).unwrap();
        assert_eq!(spec.waves[0].display_name, "Pilot");

        // Dates are midnight on the organisation's clock.
        for (offset, suffix) in [("60", "+01:00"), ("-300", "-05:00"), ("345", "+05:45")] {
            let f = form(&[
                ("name", "Passkeys 2027"),
                ("utc_offset", offset),
                ("wave0_name", "Pilot"),
                ("wave0_group", "0190a0a0-0000-7000-8000-000000000001"),
                ("wave0_opens", "2027-01-04"),
                ("wave0_enforce", "2027-01-25"),
            ]);
            let v = spec_from_form(&f).unwrap();
            assert_eq!(
                v["waves"][0]["enforcementDate"],
                format!("2027-01-25T00:00:00{suffix}")
            );
            assert_eq!(v["utcOffsetMinutes"], offset.parse::<i64>().unwrap());
            let spec: campaign::CampaignSpec = serde_json::from_value(v).unwrap();
            let c = campaign::check(&spec, &mut uuid::Uuid::new_v4).unwrap();
            assert_eq!(
                c.waves[0].enforcement_date.millis(),
                1_800_835_200_000 - offset.parse::<i64>().unwrap() * 60_000,
                "{offset}"
            );
        }
        for bad in ["50", "900", "-735", "UTC+1"] {
            let e = spec_from_form(&form(&[
                ("name", "X"),
                ("utc_offset", bad),
                ("wave0_name", "P"),
            ]))
            .unwrap_err();
            assert!(e.contains("not a UTC offset"), "{bad}: {e}");
        }
        assert_eq!(utc_offset_label(0), "UTC");
        assert_eq!(utc_offset_label(-210), "UTC-03:30");
        assert_eq!(utc_offset_label(840), "UTC+14:00");

        let e = spec_from_form(&form(&[("name", "X")])).unwrap_err();
        assert!(e.contains("at least one wave"), "{e}");
        let e = spec_from_form(&form(&[("name", "X"), ("wave0_name", "P")])).unwrap_err();
        assert!(e.contains("choose its group"), "{e}");
        let e = spec_from_form(&form(&[
            ("name", "X"),
            ("wave0_name", "P"),
            ("wave0_group", "g"),
            ("wave0_opens", "04/01/2027"),
            ("wave0_enforce", "2027-01-25"),
        ]))
        .unwrap_err();
        assert!(e.contains("not a date"), "{e}");
        let e = spec_from_form(&form(&[
            ("name", "X"),
            ("target", "lots"),
            ("wave0_name", "P"),
            ("wave0_group", "g"),
            ("wave0_opens", "2027-01-04"),
            ("wave0_enforce", "2027-01-25"),
        ]))
        .unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }
}
