//! `/admin/policies` (staged rollout, Conditional Access with state badges and last change,
//! named locations, the authentication methods policy and the Temporary Access Pass policy)
//! and `/admin/policies/ca/{id}`: one Conditional Access policy in words, its report-only
//! impact over a window with charts by reason and by platform, the enforcement gate, and the
//! what-if tool (the same engine as `POST /api/v1/identity/conditionalAccess/evaluate`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use cutover_core::ClientAppType;
use cutover_core::conditional_access::{
    CaResult, ConditionalAccessPolicy, Decision, Evaluation, GrantControls,
};
use cutover_core::methods_policy::{Enforcement, MethodTarget, PolicyMethod};
use cutover_store::{CaPolicyRow, StoreError};
use uuid::Uuid;

use super::groups::method_name;
use super::svg;
use super::{
    AdminUi, Nav, UiError, admin_page, admin_page_status, badge, group_link, link, not_found,
    params, require_admin, return_to, select_field, table, text_field, time_html, user_link,
};
use crate::AppState;
use crate::conditional_access::{SignInContext, evaluate_sign_in, impact_and_gate, user_agent_of};
use crate::pages::esc;

/// Ids of one condition list resolved to names on the policy page; the rest are counted.
pub(crate) const MAX_NAMED_IDS: usize = 25;
/// The impact windows the policy page offers (query value, seconds, label).
pub(crate) const IMPACT_WINDOWS: [(&str, i64, &str); 4] = [
    ("24h", 86_400, "last 24 hours"),
    ("48h", 172_800, "last 48 hours"),
    ("7d", 604_800, "last 7 days"),
    ("30d", 2_592_000, "last 30 days"),
];
/// The window shown when none is asked for (the enforcement gate's).
const DEFAULT_WINDOW: &str = "48h";

/// A badge for a stored Conditional Access state.
pub(crate) fn state_badge(state: &str) -> String {
    match state {
        CaPolicyRow::ENABLED => badge("enabled", "ok"),
        CaPolicyRow::REPORT_ONLY => badge("report-only", "warn"),
        CaPolicyRow::DISABLED => badge("disabled", ""),
        other => badge(other, ""),
    }
}

/// A badge for one policy's result.
pub(crate) fn result_badge(r: CaResult) -> String {
    let kind = match r {
        CaResult::Success | CaResult::ReportOnlySuccess => "ok",
        CaResult::Failure | CaResult::ReportOnlyFailure => "bad",
        CaResult::Interrupted | CaResult::ReportOnlyInterrupted => "warn",
        CaResult::NotApplied | CaResult::ReportOnlyNotApplied => "",
    };
    badge(r.as_str(), kind)
}

/// What a policy grants, in words.
pub(crate) fn grant_words(g: Option<&GrantControls>) -> String {
    let Some(g) = g else {
        return "no grant controls (session controls only)".into();
    };
    if g.built_in_controls.iter().any(|c| c == "block") {
        return "block access".into();
    }
    let mut parts: Vec<String> = g
        .built_in_controls
        .iter()
        .map(|c| match c.as_str() {
            "mfa" => "multi-factor authentication".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    if let Some(s) = &g.authentication_strength {
        parts.push(format!("authentication strength '{}'", s.id));
    }
    if parts.is_empty() {
        return "grant access".into();
    }
    let op = if g.operator == cutover_core::conditional_access::GrantOperator::And {
        " and "
    } else {
        " or "
    };
    format!("require {}", parts.join(op))
}

/// The target of one method in words, with group names.
async fn target_words(state: &AppState, t: &MethodTarget) -> Result<String, StoreError> {
    if !t.enabled {
        return Ok(badge("off", ""));
    }
    let mut out = badge("on", "ok");
    if t.all_users {
        out.push_str(" for all users");
    } else {
        out.push_str(" for ");
        out.push_str(&group_names(state, t.include_groups.iter().copied()).await?);
    }
    if !t.exclude_groups.is_empty() {
        out.push_str(", except ");
        out.push_str(&group_names(state, t.exclude_groups.iter().copied()).await?);
    }
    Ok(out)
}

async fn group_names(
    state: &AppState,
    ids: impl Iterator<Item = Uuid>,
) -> Result<String, StoreError> {
    let ids: Vec<Uuid> = ids.collect();
    let mut out = Vec::new();
    for id in ids.iter().take(MAX_NAMED_IDS) {
        out.push(match state.store.get_group(*id).await? {
            Some(g) => group_link(g.id, &g.display_name),
            None => format!("{} (deleted)", esc(&id.to_string())),
        });
    }
    if ids.len() > MAX_NAMED_IDS {
        out.push(format!("and {} more", ids.len() - MAX_NAMED_IDS));
    }
    Ok(out.join(", "))
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let mut body = String::new();

    // Staged rollout.
    let mut rows = Vec::new();
    for p in state.store.list_rollout_policies().await? {
        rows.push(vec![
            esc(&p.display_name),
            esc(p.feature.as_str()),
            if p.is_enabled {
                badge("enabled", "ok")
            } else {
                badge("disabled", "")
            },
            group_names(&state, p.applies_to.iter().copied()).await?,
            time_html(p.updated_at),
        ]);
    }
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"rollout-h\"><h2 id=\"rollout-h\">Staged rollout</h2>{}</section>",
        table(
            "rollout-policies",
            "",
            &["Policy", "Feature", "State", "Groups", "Last change"],
            &rows,
            "No feature rollout policy exists."
        )
    ));

    // Conditional Access.
    let rows: Vec<Vec<String>> = state
        .store
        .list_ca_policies()
        .await?
        .iter()
        .map(|r| {
            let grant = serde_json::from_str::<ConditionalAccessPolicy>(&r.policy)
                .map(|p| grant_words(p.grant_controls.as_ref()))
                .unwrap_or_else(|_| "cannot be read".into());
            vec![
                format!(
                    "<a href=\"/admin/policies/ca/{}\">{}</a>",
                    r.id,
                    esc(&r.display_name)
                ),
                state_badge(&r.state),
                esc(&grant),
                time_html(r.modified_at),
                time_html(r.state_changed_at),
            ]
        })
        .collect();
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"ca-h\"><h2 id=\"ca-h\">Conditional Access</h2>{}</section>",
        table(
            "ca-policies",
            "",
            &["Policy", "State", "Grant", "Last change", "State since"],
            &rows,
            "No Conditional Access policy exists."
        )
    ));

    // Named locations.
    let rows: Vec<Vec<String>> = state
        .store
        .list_named_locations()
        .await?
        .iter()
        .map(|l| {
            let ranges = serde_json::from_str::<cutover_core::conditional_access::NamedLocation>(
                &l.location,
            )
            .map(|n| n.ip_ranges.len().to_string())
            .unwrap_or_else(|_| "?".into());
            vec![
                esc(&l.display_name),
                if l.is_trusted {
                    badge("trusted", "info")
                } else {
                    String::new()
                },
                ranges,
                time_html(l.modified_at),
            ]
        })
        .collect();
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"loc-h\"><h2 id=\"loc-h\">Named locations</h2>{}</section>",
        table(
            "named-locations",
            "",
            &["Location", "Trusted", "#IP ranges", "Last change"],
            &rows,
            "No named location exists."
        )
    ));

    // Methods.
    let m = crate::passkeys::load_methods_policy(&state).await?;
    let mut rows = Vec::new();
    for method in [
        PolicyMethod::Passkey,
        PolicyMethod::Totp,
        PolicyMethod::TemporaryAccessPass,
        PolicyMethod::Password,
    ] {
        let mut extra = String::new();
        if method == PolicyMethod::Passkey {
            if m.passkey.enforce_attestation {
                extra.push_str("attestation enforced; ");
            }
            if let Some(r) = &m.passkey.key_restrictions {
                extra.push_str(&format!(
                    "{} {} authenticator models",
                    match r.enforcement {
                        Enforcement::Allow => "only",
                        Enforcement::Block => "blocks",
                    },
                    r.aaguids.len()
                ));
            }
        }
        rows.push(vec![
            esc(method_name(method)),
            target_words(&state, m.target(method)).await?,
            esc(extra.trim_end_matches("; ")),
        ]);
    }
    let tap = crate::tap::load_policy(&state).await?;
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"methods-h\"><h2 id=\"methods-h\">Authentication methods</h2>{t}\
         <h3>Temporary Access Pass policy</h3><p id=\"tap-policy\">{on}: default lifetime {def} min (allowed {min}–{max} min), {len} characters, \
         {once}.</p></section>",
        t = table("methods-policy", "", &["Method", "Who may use it", "Restrictions"], &rows, ""),
        on = if tap.enabled { badge("on", "ok") } else { badge("off", "") },
        def = tap.default_lifetime_secs / 60,
        min = tap.min_lifetime_secs / 60,
        max = tap.max_lifetime_secs / 60,
        len = tap.length,
        once = if tap.require_one_time {
            "every pass one-time"
        } else if tap.default_one_time {
            "one-time unless asked otherwise"
        } else {
            "multi-use unless asked otherwise"
        },
    ));
    Ok(admin_page(&admin, Nav::Policies, "Policies", &body))
}

/// Resolve a condition list (`All`, `None`, `AllTrusted`, ids) to names with `name_of`.
async fn id_list<F, Fut>(list: &[String], name_of: F) -> Result<String, StoreError>
where
    F: Fn(Uuid) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, StoreError>>,
{
    if list.is_empty() {
        return Ok("—".into());
    }
    let mut out = Vec::new();
    for raw in list.iter().take(MAX_NAMED_IDS) {
        out.push(match Uuid::parse_str(raw) {
            Ok(id) => name_of(id)
                .await?
                .unwrap_or_else(|| format!("{} (not found)", esc(raw))),
            Err(_) => format!("<strong>{}</strong>", esc(raw)),
        });
    }
    if list.len() > MAX_NAMED_IDS {
        out.push(format!("and {} more", list.len() - MAX_NAMED_IDS));
    }
    Ok(out.join(", "))
}

/// The policy's conditions and controls in words.
async fn readable(state: &AppState, p: &ConditionalAccessPolicy) -> Result<String, StoreError> {
    let user = |id: Uuid| async move {
        Ok(state
            .store
            .get_user(id)
            .await?
            .map(|u| user_link(id, u.user.upn.as_str())))
    };
    let group = |id: Uuid| async move {
        Ok(state
            .store
            .get_group(id)
            .await?
            .map(|g| group_link(id, &g.display_name)))
    };
    let app = |id: Uuid| async move {
        Ok(state
            .store
            .get_application(id)
            .await?
            .map(|a| esc(&a.display_name)))
    };
    let location = |id: Uuid| async move {
        Ok(state
            .store
            .get_named_location(id)
            .await?
            .map(|l| esc(&l.display_name)))
    };
    let c = &p.conditions;
    let (loc_in, loc_out) = match &c.locations {
        Some(l) => (
            id_list(&l.include_locations, location).await?,
            id_list(&l.exclude_locations, location).await?,
        ),
        None => ("any (and unknown addresses)".into(), "—".into()),
    };
    let (plat_in, plat_out) = match &c.platforms {
        Some(pl) => (
            esc(&pl.include_platforms.join(", ")),
            esc(&pl.exclude_platforms.join(", ")),
        ),
        None => ("any".into(), "—".into()),
    };
    let session = p
        .session_controls
        .as_ref()
        .and_then(|s| s.sign_in_frequency.as_ref())
        .filter(|f| f.is_enabled)
        .map(|f| {
            format!(
                "sign in again every {} {}",
                f.value.unwrap_or(0),
                f.unit.map_or("", |u| match u {
                    cutover_core::conditional_access::FrequencyUnit::Hours => "hours",
                    cutover_core::conditional_access::FrequencyUnit::Days => "days",
                })
            )
        })
        .unwrap_or_else(|| "—".into());
    Ok(format!(
        "<dl class=\"kv\" id=\"policy-words\">\
         <dt>Users included</dt><dd>{ui}</dd><dt>Users excluded</dt><dd>{ue}</dd>\
         <dt>Groups included</dt><dd>{gi}</dd><dt>Groups excluded</dt><dd>{ge}</dd>\
         <dt>Applications included</dt><dd>{ai}</dd><dt>Applications excluded</dt><dd>{ae}</dd>\
         <dt>Client app types</dt><dd>{cat}</dd>\
         <dt>Locations included</dt><dd>{li}</dd><dt>Locations excluded</dt><dd>{lo}</dd>\
         <dt>Platforms included</dt><dd>{pi}</dd><dt>Platforms excluded</dt><dd>{po}</dd>\
         <dt>Grant</dt><dd id=\"grant\">{grant}</dd><dt>Session</dt><dd>{session}</dd></dl>",
        ui = id_list(&c.users.include_users, user).await?,
        ue = id_list(&c.users.exclude_users, user).await?,
        gi = id_list(&c.users.include_groups, group).await?,
        ge = id_list(&c.users.exclude_groups, group).await?,
        ai = id_list(&c.applications.include_applications, app).await?,
        ae = id_list(&c.applications.exclude_applications, app).await?,
        cat = esc(&c.client_app_types.join(", ")),
        li = loc_in,
        lo = loc_out,
        pi = plat_in,
        po = plat_out,
        grant = esc(&grant_words(p.grant_controls.as_ref())),
    ))
}

/// Rows of a `name → count` map as bars and as a table, most first.
fn ranked(map: &std::collections::BTreeMap<String, u64>) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = map.iter().map(|(k, v)| (k.clone(), *v as f64)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows
}

/// The decision in words, policies by name.
fn decision_words(d: &Decision, names: &HashMap<Uuid, String>) -> String {
    let list = |ids: &[Uuid]| {
        ids.iter()
            .map(|i| names.get(i).cloned().unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match d {
        Decision::Allow => "Allow: no enforced policy blocks or interrupts this sign-in.".into(),
        Decision::Block { policies } => format!("Block, by {}.", list(policies)),
        Decision::StepUp {
            requirement,
            policies,
        } => format!(
            "Step up to {}, required by {}.",
            requirement.explain(),
            list(policies)
        ),
        Decision::Reauthenticate { policies } => format!(
            "Sign in again: the sign-in frequency of {} is exceeded.",
            list(policies)
        ),
    }
}

/// The what-if inputs as the form sends them.
struct WhatIfInput<'a> {
    user: &'a str,
    app: &'a str,
    client: &'a str,
    ip: &'a str,
    platform: &'a str,
    methods: &'a str,
}

const METHOD_CHOICES: [(&str, &str); 6] = [
    ("pwd", "Password"),
    ("pwd otp", "Password + authenticator app"),
    ("swk", "Passkey (synced)"),
    ("hwk", "Passkey (device-bound)"),
    ("tap", "Temporary Access Pass"),
    ("fed", "Federated (upstream identity provider)"),
];
const PLATFORMS: [&str; 5] = ["android", "iOS", "windows", "macOS", "linux"];

/// Run the what-if: every policy's result for the sign-in described, or the message naming
/// the field that cannot be used.
async fn what_if(
    state: &AppState,
    w: &WhatIfInput<'_>,
) -> Result<Result<Evaluation, String>, StoreError> {
    let Some(user) = super::users::find_user(state, w.user).await? else {
        return Ok(Err(format!(
            "User: no user '{}' (give a user principal name or id)",
            w.user
        )));
    };
    if w.app.is_empty() {
        return Ok(Err(
            "Application: choose the application the sign-in is for".into(),
        ));
    }
    // A client id (which may look like a UUID itself), or the application's id.
    let mut app = state.store.get_application_by_client_id(w.app).await?;
    if app.is_none()
        && let Ok(id) = Uuid::parse_str(w.app)
    {
        app = state.store.get_application(id).await?;
    }
    let Some(app) = app else {
        return Ok(Err(format!("Application: no application '{}'", w.app)));
    };
    let client_app_type = if w.client.is_empty() {
        app.client_app_type
    } else {
        match ClientAppType::parse(w.client) {
            Some(c) => c,
            None => {
                return Ok(Err(format!(
                    "Client type: '{}' is not one of browser, mobileAppsAndDesktopClients, exchangeActiveSync, other",
                    w.client
                )));
            }
        }
    };
    if !w.ip.is_empty() && w.ip.parse::<IpAddr>().is_err() {
        return Ok(Err(format!("IP address: '{}' is not an IP address", w.ip)));
    }
    let ua = if w.platform.is_empty() {
        None
    } else {
        match user_agent_of(w.platform) {
            Some(ua) => Some(ua),
            None => {
                return Ok(Err(format!(
                    "Platform: '{}' is not one of {}",
                    w.platform,
                    PLATFORMS.join(", ")
                )));
            }
        }
    };
    let methods = if w.methods.is_empty() {
        "pwd"
    } else {
        w.methods
    };
    if !METHOD_CHOICES.iter().any(|(v, _)| *v == methods) {
        return Ok(Err(format!(
            "Methods: '{methods}' is not one of the choices offered"
        )));
    }
    let amr: Vec<String> = methods.split(' ').map(str::to_owned).collect();
    let evaluation = evaluate_sign_in(
        state,
        &SignInContext {
            user: &user,
            app_id: app.id,
            client_app_type,
            ip: (!w.ip.is_empty()).then_some(w.ip),
            user_agent: ua,
            amr: &amr,
            auth_time: state.now(),
        },
    )
    .await?;
    Ok(Ok(evaluation))
}

pub(super) async fn ca_detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin: AdminUi = require_admin(&state, &headers, &return_to(&uri)).await?;
    let row = match Uuid::parse_str(&id) {
        Ok(pid) => state.store.get_ca_policy(pid).await?,
        Err(_) => None,
    };
    let Some(row) = row else {
        return Err(not_found(
            &admin,
            Nav::Policies,
            "Conditional Access policy",
            &id,
        ));
    };
    let p = params(raw.as_deref());
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let window = p.get("window").map_or(DEFAULT_WINDOW, String::as_str);
    let Some((_, window_secs, window_label)) = IMPACT_WINDOWS.iter().find(|w| w.0 == window) else {
        let offered: Vec<&str> = IMPACT_WINDOWS.iter().map(|w| w.0).collect();
        return Err(super::bad_filter(
            &admin,
            Nav::Policies,
            &format!("window: '{window}' is not one of {}", offered.join(", ")),
        ));
    };
    let now = state.now();
    let mut body = String::new();

    // The policy.
    let policy = serde_json::from_str::<ConditionalAccessPolicy>(&row.policy);
    let words = match &policy {
        Ok(pol) => readable(&state, pol).await?,
        Err(e) => format!(
            "<div class=\"error\" role=\"alert\">The stored policy cannot be read ({}); it is not evaluated until it is saved again.</div>",
            esc(&e.to_string())
        ),
    };
    let pretty = serde_json::from_str::<serde_json::Value>(&row.policy)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| row.policy.clone());
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"policy-h\"><h2 id=\"policy-h\">Policy</h2>\
         <p>State: {state} since {since}; last change {modified}; created {created}.</p>{words}\
         <details><summary>Show JSON</summary><pre>{json}</pre></details></section>",
        state = state_badge(&row.state),
        since = time_html(row.state_changed_at),
        modified = time_html(row.modified_at),
        created = time_html(row.created_at),
        json = esc(&pretty),
    ));

    // Report-only impact.
    let (imp, gate) = impact_and_gate(&state, &row, now.minus_secs(*window_secs)).await?;
    let window_links: Vec<String> = IMPACT_WINDOWS
        .iter()
        .map(|(v, _, label)| {
            if *v == window {
                format!("<strong aria-current=\"true\">{}</strong>", esc(label))
            } else {
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&link(
                        &format!("/admin/policies/ca/{}", row.id),
                        &[("window", *v)]
                    )),
                    esc(label)
                )
            }
        })
        .collect();
    let not_report_only = if row.state == CaPolicyRow::REPORT_ONLY {
        String::new()
    } else {
        format!(
            "<p class=\"muted\">The impact counts report-only results; this policy is {} now, so only its report-only period (if any) counts. \
             Its enforced results are in the <a href=\"{}\">sign-in log</a>.</p>",
            esc(match row.state.as_str() {
                CaPolicyRow::ENABLED => "enabled",
                _ => "disabled",
            }),
            esc(&link(
                "/admin/signins",
                &[("policy", row.id.to_string().as_str())]
            ))
        )
    };
    let reasons = ranked(&imp.by_reason);
    let platforms = ranked(&imp.by_platform);
    let reason_rows: Vec<Vec<String>> = reasons
        .iter()
        .map(|(k, v)| vec![esc(k), svg::fmt_num(*v)])
        .collect();
    let platform_rows: Vec<Vec<String>> = platforms
        .iter()
        .map(|(k, v)| vec![esc(k), svg::fmt_num(*v)])
        .collect();
    let user_rows: Vec<Vec<String>> = imp
        .users
        .iter()
        .map(|u| {
            vec![
                user_link(u.user_id, &u.user_principal_name),
                result_badge(u.result),
                esc(&u.reason),
                esc(&u.platform),
                u.sign_ins.to_string(),
                time_html(u.last_at),
            ]
        })
        .collect();
    let gate_html = if gate.allowed {
        format!(
            "<p id=\"gate\" data-allowed=\"true\">{} Enabling it now would pass the enforcement gate.</p>",
            badge("gate open", "ok")
        )
    } else {
        let items: Vec<String> = gate
            .reasons
            .iter()
            .map(|r| {
                format!(
                    "<li><code>{}</code>: {}</li>",
                    esc(r.code.as_str()),
                    esc(&r.message)
                )
            })
            .collect();
        format!(
            "<div id=\"gate\" data-allowed=\"false\"><p>{} Enabling it now would be refused (an administrator may force it; that is audited):</p><ul>{}</ul></div>",
            badge("gate closed", "warn"),
            items.join("")
        )
    };
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"impact-h\"><h2 id=\"impact-h\">Report-only impact</h2>\
         <p>Window: {links}.</p>{not_report_only}\
         <div class=\"grid\" id=\"impact-figures\">\
         <div><p class=\"muted\">Sign-ins evaluated</p><p class=\"stat\" id=\"impact-records\">{records}</p></div>\
         <div><p class=\"muted\">Users it applied to</p><p class=\"stat\" id=\"impact-applied\">{applied}</p></div>\
         <div><p class=\"muted\">Users it would interrupt or block</p><p class=\"stat\" id=\"impact-interrupted\">{interrupted} ({rate})</p></div>\
         <div><p class=\"muted\">Users it would block</p><p class=\"stat\">{blocked}</p></div></div>\
         <p class=\"muted\">From {start} to {end} UTC{evidence}.</p>\
         <h3>Stopped users by reason</h3>{reason_chart}{reason_table}\
         <h3>Stopped users by platform</h3>{platform_chart}{platform_table}\
         <h3>Users it would stop</h3>{users}\
         <h3>Enforcement gate</h3>{gate_html}</section>",
        links = window_links.join(" · "),
        records = imp.records,
        applied = imp.applied_users,
        interrupted = imp.interrupted_users,
        rate = esc(&svg::fmt_pct(imp.interruption_rate)),
        blocked = imp.blocked_users,
        start = esc(&super::short_time(imp.window_start)),
        end = esc(&super::short_time(imp.window_end)),
        evidence = imp
            .evidence_since
            .map(|t| format!("; report-only evidence since {}", time_html(t)))
            .unwrap_or_default(),
        reason_chart = svg::hbars(&format!("Stopped users by reason, {window_label}"), &reasons, false),
        reason_table = table("impact-reasons", "", &["Reason", "#Users"], &reason_rows, "Nobody would have been stopped."),
        platform_chart = svg::hbars(&format!("Stopped users by platform, {window_label}"), &platforms, false),
        platform_table = table("impact-platforms", "", &["Platform", "#Users"], &platform_rows, "Nobody would have been stopped."),
        users = table(
            "impact-users",
            &format!("At most {} users, by name", cutover_core::conditional_access::MAX_IMPACT_SAMPLE),
            &["User", "Result", "Reason", "Platform", "#Sign-ins", "Last"],
            &user_rows,
            "Nobody would have been stopped."
        ),
    ));

    // What-if.
    let input = WhatIfInput {
        user: get("user"),
        app: get("app"),
        client: get("client"),
        ip: get("ip"),
        platform: get("platform"),
        methods: get("methods"),
    };
    let apps = state
        .store
        .list_applications(cutover_core::limits::MAX_PAGE_SIZE)
        .await?;
    let mut app_opts: Vec<(String, String)> = apps
        .iter()
        .map(|a| {
            (
                a.client_id.clone(),
                format!("{} ({})", a.display_name, a.client_id),
            )
        })
        .collect();
    app_opts.sort_by_key(|a| a.1.to_lowercase());
    app_opts.insert(0, (String::new(), "Choose…".into()));
    let client_opts: Vec<(String, String)> =
        std::iter::once((String::new(), "The application's own type".to_owned()))
            .chain(
                [
                    ClientAppType::Browser,
                    ClientAppType::MobileAppsAndDesktopClients,
                    ClientAppType::ExchangeActiveSync,
                    ClientAppType::Other,
                ]
                .iter()
                .map(|c| (c.as_str().to_owned(), c.as_str().to_owned())),
            )
            .collect();
    let platform_opts: Vec<(String, String)> =
        std::iter::once((String::new(), "Unknown".to_owned()))
            .chain(PLATFORMS.iter().map(|p| ((*p).to_owned(), (*p).to_owned())))
            .collect();
    let method_opts: Vec<(String, String)> = METHOD_CHOICES
        .iter()
        .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
        .collect();
    let mut status = StatusCode::OK;
    let result_html = if input.user.is_empty() {
        "<p class=\"muted\">Describe a sign-in to see what every enabled and report-only policy would do.</p>".to_owned()
    } else {
        match what_if(&state, &input).await? {
            Err(message) => {
                status = StatusCode::BAD_REQUEST;
                format!(
                    "<div class=\"error\" role=\"alert\" id=\"what-if-error\">{}</div>",
                    esc(&message)
                )
            }
            Ok(evaluation) => {
                let rows_by_id: HashMap<Uuid, CaPolicyRow> = state
                    .store
                    .list_ca_policies()
                    .await?
                    .into_iter()
                    .map(|r| (r.id, r))
                    .collect();
                let names: HashMap<Uuid, String> = rows_by_id
                    .iter()
                    .map(|(k, r)| (*k, r.display_name.clone()))
                    .collect();
                let rows: Vec<Vec<String>> = evaluation
                    .results
                    .iter()
                    .map(|r| {
                        let this = if r.policy_id == row.id {
                            " <span class=\"badge info\">this policy</span>"
                        } else {
                            ""
                        };
                        vec![
                            format!(
                                "<a href=\"/admin/policies/ca/{}\">{}</a>{this}",
                                r.policy_id,
                                esc(&r.display_name)
                            ),
                            rows_by_id
                                .get(&r.policy_id)
                                .map_or_else(String::new, |p| state_badge(&p.state)),
                            result_badge(r.result),
                            esc(&r.reason),
                        ]
                    })
                    .collect();
                format!(
                    "<p id=\"what-if-decision\"><strong>{}</strong></p>{}",
                    esc(&decision_words(&evaluation.decision, &names)),
                    table(
                        "what-if-results",
                        "Each policy's result",
                        &["Policy", "State", "Result", "Reason"],
                        &rows,
                        "No enabled or report-only policy exists."
                    )
                )
            }
        }
    };
    body.push_str(&format!(
        "<section class=\"panel\" id=\"what-if\" aria-labelledby=\"what-if-h\"><h2 id=\"what-if-h\">What if…</h2>\
         <form class=\"stack\" method=\"get\" action=\"/admin/policies/ca/{id}#what-if\">\
         <input type=\"hidden\" name=\"window\" value=\"{window}\">\
         {user}{app}{client}{ip}{platform}{methods}\
         <div><button type=\"submit\" class=\"primary\" id=\"run-what-if\">Evaluate</button></div></form>{result_html}</section>",
        id = row.id,
        window = esc(window),
        user = text_field("user", "User (UPN or id)", input.user, "name@domain"),
        app = super::select_field("app", "Application", input.app, &app_opts),
        client = select_field("client", "Client type", input.client, &client_opts),
        ip = text_field("ip", "IP address", input.ip, "e.g. 203.0.113.7"),
        platform = select_field("platform", "Device platform", input.platform, &platform_opts),
        methods = select_field("methods", "Methods used so far", if input.methods.is_empty() { "pwd" } else { input.methods }, &method_opts),
    ));
    Ok(admin_page_status(
        &admin,
        Nav::Policies,
        status,
        &row.display_name,
        &body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::conditional_access::{AuthenticationStrengthRef, GrantOperator};

    #[test]
    fn grants_read_as_words() {
        let g = |ops: GrantOperator, c: &[&str], s: Option<&str>| GrantControls {
            operator: ops,
            built_in_controls: c.iter().map(|x| (*x).to_owned()).collect(),
            authentication_strength: s.map(|id| AuthenticationStrengthRef { id: id.into() }),
        };
        assert_eq!(
            grant_words(None),
            "no grant controls (session controls only)"
        );
        assert_eq!(
            grant_words(Some(&g(GrantOperator::Or, &["block"], None))),
            "block access"
        );
        assert_eq!(
            grant_words(Some(&g(
                GrantOperator::Or,
                &["mfa"],
                Some("phishingResistantMfa")
            ))),
            "require multi-factor authentication or authentication strength 'phishingResistantMfa'"
        );
        assert_eq!(
            grant_words(Some(&g(GrantOperator::And, &["mfa"], Some("x")))),
            "require multi-factor authentication and authentication strength 'x'"
        );
        assert_eq!(
            grant_words(Some(&g(GrantOperator::And, &[], None))),
            "grant access"
        );
    }

    #[test]
    fn decisions_name_policies() {
        let id = Uuid::from_u128(3);
        let names = HashMap::from([(id, "Block legacy".to_owned())]);
        assert_eq!(
            decision_words(&Decision::Block { policies: vec![id] }, &names),
            "Block, by Block legacy."
        );
        let other = Uuid::from_u128(4);
        assert!(
            decision_words(
                &Decision::Reauthenticate {
                    policies: vec![other]
                },
                &names
            )
            .contains(&other.to_string())
        );
        assert!(decision_words(&Decision::Allow, &names).starts_with("Allow"));
    }

    #[test]
    fn counts_rank_most_first_then_by_name() {
        let m = std::collections::BTreeMap::from([
            ("b".to_owned(), 2u64),
            ("a".to_owned(), 2),
            ("c".to_owned(), 5),
        ]);
        let r = ranked(&m);
        let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn every_offered_window_is_distinct_and_the_default_is_offered() {
        assert!(IMPACT_WINDOWS.iter().any(|w| w.0 == DEFAULT_WINDOW));
        let names: std::collections::BTreeSet<&str> = IMPACT_WINDOWS.iter().map(|w| w.0).collect();
        assert_eq!(names.len(), IMPACT_WINDOWS.len());
    }
}
