//! The admin web UI (`/admin…`): server-rendered HTML pages for the people who run Cutover —
//! a dashboard with charts, users, groups, policies (with the Conditional Access what-if), the
//! sign-in log and the audit log. No JavaScript at all (the pages' CSP has no `script-src`);
//! charts are inline SVG from [`svg`], each with a title, a description and its numbers as a
//! table or visible labels.
//!
//! **Access** (SPEC: "signed in with an admin account and passkey/MFA"): the direct members of
//! the group whose display name is `ServerConfig::admin_group` (default
//! [`crate::DEFAULT_ADMIN_GROUP`]), signed in with a session that meets the built-in `mfa`
//! strength (a passkey, password + authenticator app, or a Temporary Access Pass). The guard
//! [`require_admin`] sends a visitor without a session through Cutover's own sign-in pages
//! (asking for `mfa`) and back, steps a weak session up the same way, and answers a signed-in
//! non-member with a 403 page that names the group and how to be added to it.
//!
//! Every state-changing form carries the session's CSRF token ([`AdminUi::csrf`], checked by
//! [`check_csrf`]) and every change is audited with actor `user:{upn}` ([`audit_event`]).
//!
//! ## Building more admin pages (e.g. `/admin/campaigns…` in `crate::campaigns`)
//!
//! Everything a page of another module needs is `pub(crate)` here:
//!
//! ```ignore
//! use axum::extract::{State, Form};
//! use axum::http::{HeaderMap, Uri};
//! use crate::ui::{self, Nav, UiError, svg};
//!
//! async fn campaign_page(
//!     State(state): State<Arc<AppState>>,
//!     headers: HeaderMap,
//!     uri: Uri,
//! ) -> Result<Response, UiError> {
//!     // Signed-in, strong, a member of the admin group — or the redirect / 403 to return.
//!     let admin = ui::require_admin(&state, &headers, &ui::return_to(&uri)).await?;
//!     let ring = svg::progress_ring("Finance: enrolled", 72.5, 95.0);
//!     let body = format!("<section class=\"panel\"><h2>Finance</h2>{ring}</section>");
//!     Ok(ui::admin_page(&admin, Nav::Campaigns, "Passkey campaigns", &body))
//! }
//!
//! async fn campaign_action(
//!     State(state): State<Arc<AppState>>,
//!     Extension(ctx): Extension<RequestCtx>,
//!     headers: HeaderMap,
//!     Form(form): Form<MyForm>,            // with `csrf: Option<String>`
//! ) -> Result<Response, UiError> {
//!     let admin = ui::require_admin(&state, &headers, "/admin/campaigns").await?;
//!     ui::check_csrf(&admin, form.csrf.as_deref())?;
//!     let audit = ui::audit_event(&admin, &ctx, state.now(), "enforceCampaignWave",
//!         ("campaignWave", wave_id.to_string(), Some(name)), before, after);
//!     // … write with the audit row, then redirect (303) back to the page.
//! }
//! ```
//!
//! In a form: `<input type="hidden" name="csrf" value="{esc(&admin.csrf)}">`. Layout helpers:
//! [`admin_page`] / [`admin_page_status`] (header, navigation, `<main>` with the `<h1>`),
//! [`admin_error`] (an error inside the layout), [`table`], [`badge`], [`time_html`],
//! [`params`] (a query string read without failing). Charts: [`svg::stacked_bars`],
//! [`svg::line_chart`], [`svg::hbars`], [`svg::progress_ring`].

// `UiError` is a whole response by design (see its documentation).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cutover_core::Timestamp;
use cutover_core::authorize::Prompt;
use cutover_core::strength::{BuiltIn, meets_built_in, methods_from_amr};
use cutover_store::{AuditEvent, SsoSession, StoreError, UserRecord};
use serde::Deserialize;
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::pages::{self, esc};
use crate::signin::SESSION_COOKIE;
use crate::{AppState, RequestCtx};

mod dashboard;
mod groups;
mod logs;
mod policies;
pub(crate) mod svg;
mod users;

/// The name the sign-in pages show for the admin web UI ("to continue to …").
pub const ADMIN_APP_NAME: &str = "Cutover administration";
/// The keyed-hash label of the admin pages' CSRF tokens (the security-info pages use their own).
pub(crate) const CSRF_LABEL: &str = "admin-csrf";
/// Longest path and query a sign-in returns to; a longer one returns to the path alone.
pub(crate) const MAX_RETURN_TO_LEN: usize = 1024;
/// Most query parameters a page reads; the rest are ignored.
pub(crate) const MAX_QUERY_PARAMS: usize = 32;
/// Longest query parameter value a page reads (characters); longer ones are cut.
pub(crate) const MAX_PARAM_CHARS: usize = 512;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(dashboard::page))
        .route("/admin/", get(dashboard::page))
        .route("/admin/users", get(users::list))
        .route("/admin/users/{id}", get(users::detail))
        .route("/admin/users/{id}/unlock", post(users::unlock))
        .route("/admin/groups", get(groups::list))
        .route("/admin/groups/{id}", get(groups::detail))
        .route("/admin/policies", get(policies::list))
        .route("/admin/policies/ca/{id}", get(policies::ca_detail))
        .route("/admin/signins", get(logs::sign_ins))
        .route("/admin/audit", get(logs::audit))
        .route("/admin/signout", post(sign_out))
}

/// A path of the admin web UI: `/admin`, `/admin/…` or `/admin?…`.
pub(crate) fn is_admin_path(p: &str) -> bool {
    p == "/admin" || p.starts_with("/admin/") || p.starts_with("/admin?")
}

/// Where a sign-in started from this request should come back to: its path and query (the
/// path alone when the whole is too long).
pub(crate) fn return_to(uri: &Uri) -> String {
    let full = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    if full.len() <= MAX_RETURN_TO_LEN {
        full
    } else {
        uri.path().chars().take(MAX_RETURN_TO_LEN).collect()
    }
}

/// A signed-in administrator on a strong session.
pub(crate) struct AdminUi {
    pub user: UserRecord,
    pub session: SsoSession,
    /// The CSRF token of this session's forms.
    pub csrf: String,
}

impl AdminUi {
    /// The audit actor of this administrator's changes.
    pub(crate) fn actor(&self) -> String {
        format!("user:{}", self.user.user.upn)
    }
}

/// A page that could not be shown as asked: the response that says why (a redirect to the
/// sign-in pages, a 403, a 404, a 400 naming a filter, a 503). Build one with
/// `UiError(response)` or `UiError::from(response)`; `?` converts store errors.
///
/// It is a whole response (128 bytes), returned at most once per request: Clippy's
/// `result_large_err` is allowed for it in this module, and a module of other admin pages
/// returning it allows it too.
pub(crate) struct UiError(pub Response);

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<Response> for UiError {
    fn from(r: Response) -> Self {
        Self(r)
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error on an admin page");
        Self::from(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                pages::error_page(
                    "The database did not answer",
                    "The page could not be read from the database. Reload it in a moment; if it keeps failing, check the server's log and /readyz.",
                ),
            )
                .into_response(),
        )
    }
}

impl From<crate::error::PageError> for UiError {
    fn from(e: crate::error::PageError) -> Self {
        Self::from(e.into_response())
    }
}

/// The signed-in user of this browser and their session, when both exist and the account is
/// enabled.
async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(SsoSession, UserRecord)>, StoreError> {
    let Some(value) = crate::signin::read_cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let id_hash = state.hasher.hash("session", &value);
    let Some(session) = state.store.get_session(&id_hash, state.now()).await? else {
        return Ok(None);
    };
    Ok(state
        .store
        .get_user(session.user_id)
        .await?
        .filter(|u| u.user.account_enabled)
        .map(|u| (session, u)))
}

/// Whether the session's methods meet the built-in `mfa` strength.
pub(crate) fn session_is_strong(session: &SsoSession) -> bool {
    meets_built_in(&methods_from_amr(&session.methods), BuiltIn::Mfa)
}

/// Whether `user_id` is a direct member of a group named `group_name` (exactly).
async fn is_member(state: &AppState, user_id: Uuid, group_name: &str) -> Result<bool, StoreError> {
    for g in state.store.groups_of_member(user_id).await? {
        if state
            .store
            .get_group(g)
            .await?
            .is_some_and(|g| g.display_name == group_name)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The group named `name` (the first by id when several are), found by one keyed read.
pub(crate) async fn group_named(
    state: &AppState,
    name: &str,
) -> Result<Option<cutover_core::Group>, StoreError> {
    Ok(state
        .store
        .list_groups(5, Some((name.to_owned(), Uuid::nil())))
        .await?
        .into_iter()
        .find(|g| g.display_name == name))
}

/// The administrator of this request, or the response to send instead: the sign-in pages
/// (asking for `mfa`) when there is no session, a fresh sign-in of the same user asking for
/// `mfa` when the session is weaker, a 403 page when the user is not a direct member of the
/// admin group. `return_to` (a path of the admin UI; `/admin` otherwise) is where the sign-in
/// comes back to.
pub(crate) async fn require_admin(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    return_to: &str,
) -> Result<AdminUi, Response> {
    let return_to = if is_admin_path(return_to)
        && return_to.len() <= MAX_RETURN_TO_LEN
        && return_to.bytes().all(|b| b.is_ascii_graphic())
    {
        return_to
    } else {
        "/admin"
    };
    let found = current_session(state, headers)
        .await
        .map_err(|e| UiError::from(e).into_response())?;
    let Some((session, user)) = found else {
        return Err(sign_in(state, headers, return_to, Prompt::Default, None).await);
    };
    if !session_is_strong(&session) {
        tracing::info!(user = %user.user.upn, methods = ?session.methods, "admin UI: the session is not strong enough; stepping up to mfa");
        return Err(sign_in(
            state,
            headers,
            return_to,
            Prompt::Login,
            Some(user.user.upn.to_string()),
        )
        .await);
    }
    let member = is_member(state, user.user.id, &state.config.admin_group)
        .await
        .map_err(|e| UiError::from(e).into_response())?;
    if !member {
        tracing::warn!(user = %user.user.upn, group = %state.config.admin_group, "admin UI refused: the user is not a direct member of the admin group");
        return Err(forbidden(state, &user).await);
    }
    let csrf = state.hasher.hash(CSRF_LABEL, &session.id_hash);
    Ok(AdminUi {
        user,
        session,
        csrf,
    })
}

async fn sign_in(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    return_to: &str,
    prompt: Prompt,
    hint: Option<String>,
) -> Response {
    match crate::my::start_sign_in(state, headers, return_to, prompt, hint, Some(BuiltIn::Mfa))
        .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The 403 page: who is signed in, which group grants access, how to be added.
async fn forbidden(state: &AppState, user: &UserRecord) -> Response {
    let group = &state.config.admin_group;
    let upn = user.user.upn.to_string();
    let how = match group_named(state, group).await {
        Ok(Some(g)) => format!(
            "<p>An administrator can add you with the command line:</p>\
             <pre id=\"cli-hint\">cutover admin groups add-member {id} {upn}</pre>\
             <p>or the admin API: <code>POST /api/v1/groups/{id}/members</code> with <code>{{\"id\": \"{uid}\"}}</code>.</p>",
            id = g.id,
            upn = esc(&upn),
            uid = user.user.id,
        ),
        Ok(None) => format!(
            "<p>No group with this name exists yet. An administrator creates it and adds you with the command line:</p>\
             <pre id=\"cli-hint\">cutover admin groups create \"{g}\"\ncutover admin groups add-member &lt;GROUP_ID&gt; {upn}</pre>\
             <p>(or the admin API: <code>POST /api/v1/groups</code>, then <code>POST /api/v1/groups/{{id}}/members</code>).</p>",
            g = esc(group),
            upn = esc(&upn),
        ),
        Err(e) => {
            tracing::error!(error = %e, "reading the admin group for the 403 page failed");
            "<p>Ask an administrator to add you to the group (<code>cutover admin groups add-member GROUP_ID UPN</code>).</p>".to_owned()
        }
    };
    let body = format!(
        "<h1>You do not have access to the administration pages</h1>\
         <p id=\"who\">You are signed in as <strong>{name}</strong> ({upn}).</p>\
         <p id=\"group\">These pages are for direct members of the group <strong>{g}</strong> (the server's <code>admin_group</code> setting).</p>\
         {how}\
         <p><a href=\"/oauth2/logout\">Sign out</a> to sign in with another account, or go to <a href=\"/my/security\">your security info</a>.</p>",
        name = esc(&user.user.display_name),
        upn = esc(&upn),
        g = esc(group),
    );
    (
        StatusCode::FORBIDDEN,
        document("Access denied", &body, None),
    )
        .into_response()
}

/// Check the CSRF token of an admin form: the refusal page otherwise.
pub(crate) fn check_csrf(admin: &AdminUi, presented: Option<&str>) -> Result<(), UiError> {
    use subtle::ConstantTimeEq;
    if presented.is_some_and(|p| p.as_bytes().ct_eq(admin.csrf.as_bytes()).into()) {
        return Ok(());
    }
    tracing::warn!(user = %admin.user.user.upn, "an admin form was refused: CSRF token missing or wrong");
    Err(UiError::from(admin_error(
        admin,
        Nav::None,
        StatusCode::FORBIDDEN,
        "The form could not be verified",
        "For your security the form was refused (its token is missing or belongs to another session). Open the page again and retry.",
    )))
}

/// An audit row of an administrator's change through the web UI (actor `user:{upn}`).
pub(crate) fn audit_event(
    admin: &AdminUi,
    ctx: &RequestCtx,
    now: Timestamp,
    action: &str,
    target: crate::admin::Target<'_>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
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

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /admin/signout`: end this browser's session (CSRF-checked) and say so.
async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    use subtle::ConstantTimeEq;
    if let Some((session, user)) = current_session(&state, &headers).await? {
        let expected = state.hasher.hash(CSRF_LABEL, &session.id_hash);
        let ok = form
            .csrf
            .as_deref()
            .is_some_and(|p| p.as_bytes().ct_eq(expected.as_bytes()).into());
        if !ok {
            tracing::warn!(user = %user.user.upn, "admin sign-out refused: CSRF token missing or wrong");
            return Err(UiError::from(
                (
                    StatusCode::FORBIDDEN,
                    pages::error_page(
                        "The form could not be verified",
                        "For your security the sign-out was refused. Open the administration pages again and retry.",
                    ),
                )
                    .into_response(),
            ));
        }
        state.store.delete_session(&session.id_hash).await?;
        tracing::info!(user = %user.user.upn, "signed out of the admin web UI");
    }
    let mut res = pages::signed_out_page().into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        crate::signin::cookie(SESSION_COOKIE, "", 0, state.config.secure_cookies()),
    );
    Ok(res)
}

// ---- layout -------------------------------------------------------------------------------

/// The sections of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Dashboard,
    Users,
    Groups,
    Policies,
    Campaigns,
    SignIns,
    Audit,
    /// A page of no section (an error).
    None,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 7] = [
        (Nav::Dashboard, "/admin", "Dashboard"),
        (Nav::Users, "/admin/users", "Users"),
        (Nav::Groups, "/admin/groups", "Groups"),
        (Nav::Policies, "/admin/policies", "Policies"),
        (Nav::Campaigns, "/admin/campaigns", "Passkey campaigns"),
        (Nav::SignIns, "/admin/signins", "Sign-in log"),
        (Nav::Audit, "/admin/audit", "Audit log"),
    ];
}

const STYLE: &str = "*{box-sizing:border-box}\
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f3f4f6;color:#111827;font-size:15px;line-height:1.45}\
a{color:#1d4ed8}.skip{position:absolute;left:-999px;top:.5rem}.skip:focus{left:.5rem;background:#fff;padding:.4rem;z-index:10}\
header.top{display:flex;align-items:center;justify-content:space-between;gap:.5rem 1rem;flex-wrap:wrap;background:#1e293b;color:#f8fafc;padding:.6rem 1.25rem}\
header.top .brand{font-weight:700;font-size:1.1rem;color:#fff;text-decoration:none}header.top .brand span{font-weight:400;color:#cbd5e1;margin-left:.4rem}\
header.top .who{display:flex;align-items:center;flex-wrap:wrap;gap:.4rem .75rem;font-size:.9rem}header.top .since{color:#cbd5e1;font-size:.8rem}header.top form{margin:0}\
header.top button{background:transparent;color:#f8fafc;border:1px solid #94a3b8;border-radius:.25rem;padding:.25rem .6rem;cursor:pointer;font:inherit}\
.shell{display:flex;align-items:stretch;min-height:calc(100vh - 3rem)}\
nav.side{width:13rem;flex:none;background:#fff;border-right:1px solid #e5e7eb;padding:1rem .5rem}\
nav.side ul{list-style:none;margin:0;padding:0}nav.side a{display:block;padding:.45rem .75rem;border-radius:.3rem;color:#1f2937;text-decoration:none}\
nav.side a:hover{background:#f1f5f9}nav.side a[aria-current=page]{background:#e0e7ff;color:#1e3a8a;font-weight:600}\
main{flex:1;min-width:0;padding:1.25rem 1.75rem 3rem;max-width:84rem}\
h1{font-size:1.5rem;margin:.25rem 0 1rem}h2{font-size:1.15rem;margin:1.5rem 0 .6rem}h3{font-size:1rem;margin:1rem 0 .4rem}\
section.panel{background:#fff;border:1px solid #e5e7eb;border-radius:.5rem;padding:1rem 1.25rem;margin:0 0 1.25rem}\
section.panel>h2:first-child{margin-top:0}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(15rem,1fr));gap:1rem}\
.stat{font-size:1.6rem;font-weight:700;margin:0}.muted,.small{color:#4b5563;font-size:.875rem}\
.table-wrap{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:.5rem 0;background:#fff}\
caption{text-align:left;font-weight:600;padding:.25rem 0;color:#374151}\
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e5e7eb;font-size:.875rem;vertical-align:top}\
thead th{background:#f9fafb;font-weight:600;white-space:nowrap}.num{text-align:right;font-variant-numeric:tabular-nums}\
.badge{display:inline-block;font-size:.75rem;padding:.1rem .45rem;border-radius:999px;background:#e5e7eb;color:#111827;white-space:nowrap}\
.badge.ok{background:#dcfce7;color:#14532d}.badge.warn{background:#fef3c7;color:#78350f}.badge.bad{background:#fee2e2;color:#7f1d1d}.badge.info{background:#e0e7ff;color:#1e3a8a}\
form.filters{display:flex;flex-wrap:wrap;gap:.75rem;align-items:flex-end;background:#fff;border:1px solid #e5e7eb;border-radius:.5rem;padding:.75rem 1rem;margin:0 0 1rem}\
form.filters label,form.stack label{display:block;font-weight:600;font-size:.85rem;margin-bottom:.2rem}\
form.stack{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.75rem;align-items:end}\
input[type=text],input[type=search],select{padding:.4rem .5rem;font:inherit;border:1px solid #9ca3af;border-radius:.25rem;min-width:10rem;max-width:100%;background:#fff}\
input:focus,select:focus,button:focus,a:focus{outline:2px solid #2563eb;outline-offset:1px}\
button.primary{background:#1d4ed8;color:#fff;border:0;border-radius:.25rem;padding:.45rem .9rem;font:inherit;cursor:pointer}\
button.danger{background:#fff;color:#b91c1c;border:1px solid #b91c1c;border-radius:.25rem;padding:.35rem .75rem;font:inherit;cursor:pointer}\
.error{background:#fef2f2;border-left:4px solid #b91c1c;padding:.6rem .8rem;margin:0 0 1rem}\
.notice{background:#f0fdf4;border-left:4px solid #15803d;padding:.6rem .8rem;margin:0 0 1rem}\
.pager{display:flex;gap:1rem;margin:.5rem 0}\
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}dl.kv dt{font-weight:600;color:#374151}dl.kv dd{margin:0;overflow-wrap:anywhere}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.8rem}\
pre{background:#f8fafc;border:1px solid #e5e7eb;padding:.6rem;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}\
svg.chart{display:block;height:auto;margin:.5rem 0}time{white-space:nowrap}form.stack input,form.stack select{width:100%;min-width:0}details summary{cursor:pointer;color:#1d4ed8}\
ul.changes{margin:0;padding-left:1rem}ul.changes li{overflow-wrap:anywhere}\
@media (max-width:800px){.shell{display:block}nav.side{width:auto;border-right:0;border-bottom:1px solid #e5e7eb;padding:.5rem}\
nav.side ul{display:flex;flex-wrap:wrap;gap:.25rem}main{padding:1rem}section.panel{padding:.75rem}dl.kv{grid-template-columns:1fr}dl.kv dd{margin-bottom:.4rem}}";

/// A whole page: the header (product, signed-in admin, sign-out), the navigation (when
/// `nav` is given: `(admin, current section)`), and `body` (already escaped) in `<main>`.
fn document(title: &str, body: &str, nav: Option<(&AdminUi, Nav)>) -> pages::Page {
    let (who, menu) = match nav {
        Some((admin, current)) => {
            let who = format!(
                "<div class=\"who\"><span id=\"signed-in-as\">Signed in as <strong>{name}</strong> <span class=\"upn\">({upn})</span> \
                 <span class=\"since\">since {since} UTC with {methods}</span></span>\
                 <form method=\"post\" action=\"/admin/signout\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
                 <button type=\"submit\" id=\"sign-out\">Sign out</button></form></div>",
                name = esc(&admin.user.user.display_name),
                upn = esc(admin.user.user.upn.as_str()),
                c = esc(&admin.csrf),
                since = esc(&short_time(admin.session.auth_time)),
                methods = esc(&admin.session.methods.join(" + ")),
            );
            let mut items = String::new();
            for (n, href, label) in Nav::ALL {
                let current = if n == current {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                items.push_str(&format!("<li><a href=\"{href}\"{current}>{label}</a></li>"));
            }
            (
                who,
                format!("<nav class=\"side\" aria-label=\"Administration\"><ul>{items}</ul></nav>"),
            )
        }
        None => (String::new(), String::new()),
    };
    pages::document(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} – Cutover administration</title><link rel=\"icon\" href=\"data:,\"><style>{STYLE}</style></head>\
         <body><a class=\"skip\" href=\"#content\">Skip to content</a>\
         <header class=\"top\"><a class=\"brand\" href=\"/admin\">Cutover<span>Administration</span></a>{who}</header>\
         <div class=\"shell\">{menu}<main id=\"content\">{body}</main></div></body></html>",
        t = esc(title),
    ))
}

/// An admin page: `<h1>{title}</h1>` then `body` (already-escaped HTML), 200.
pub(crate) fn admin_page(admin: &AdminUi, nav: Nav, title: &str, body: &str) -> Response {
    admin_page_status(admin, nav, StatusCode::OK, title, body)
}

/// [`admin_page`] with another status.
pub(crate) fn admin_page_status(
    admin: &AdminUi,
    nav: Nav,
    status: StatusCode,
    title: &str,
    body: &str,
) -> Response {
    let html = format!("<h1>{}</h1>{body}", esc(title));
    (status, document(title, &html, Some((admin, nav)))).into_response()
}

/// An error inside the layout: what went wrong and what to do, with a way back.
pub(crate) fn admin_error(
    admin: &AdminUi,
    nav: Nav,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let body = format!(
        "<div class=\"error\" role=\"alert\" id=\"error\">{}</div><p><a href=\"/admin\">Back to the dashboard</a></p>",
        esc(message)
    );
    admin_page_status(admin, nav, status, title, &body)
}

/// 404 inside the layout for an object that does not exist.
pub(crate) fn not_found(admin: &AdminUi, nav: Nav, what: &str, id: &str) -> UiError {
    UiError::from(admin_error(
        admin,
        nav,
        StatusCode::NOT_FOUND,
        &format!("No such {what}"),
        &format!(
            "There is no {what} '{id}'. It may have been deleted; go back to the list and pick it again."
        ),
    ))
}

/// 400 inside the layout for a filter (or form field) that cannot be read: the message names it.
pub(crate) fn bad_filter(admin: &AdminUi, nav: Nav, message: &str) -> UiError {
    UiError::from(admin_error(
        admin,
        nav,
        StatusCode::BAD_REQUEST,
        "This filter cannot be used",
        message,
    ))
}

/// A table: `headers` (text, escaped here; a header starting with `#` is numeric and
/// right-aligned), rows of cells that are already HTML. `empty` is shown instead of an empty
/// table.
pub(crate) fn table(
    id: &str,
    caption: &str,
    headers: &[&str],
    rows: &[Vec<String>],
    empty: &str,
) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\" id=\"{}\">{}</p>", esc(id), esc(empty));
    }
    let num: Vec<bool> = headers.iter().map(|h| h.starts_with('#')).collect();
    let mut out = format!("<div class=\"table-wrap\"><table id=\"{}\">", esc(id));
    if !caption.is_empty() {
        out.push_str(&format!("<caption>{}</caption>", esc(caption)));
    }
    out.push_str("<thead><tr>");
    for (h, n) in headers.iter().zip(&num) {
        let label = h.strip_prefix('#').unwrap_or(h);
        out.push_str(&format!(
            "<th scope=\"col\"{}>{}</th>",
            if *n { " class=\"num\"" } else { "" },
            esc(label)
        ));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let n = num.get(i).copied().unwrap_or(false);
            out.push_str(&format!(
                "<td{}>{cell}</td>",
                if n { " class=\"num\"" } else { "" }
            ));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A small coloured label: `kind` is `ok`, `warn`, `bad`, `info` or `` (neutral).
pub(crate) fn badge(text: &str, kind: &str) -> String {
    format!("<span class=\"badge {}\">{}</span>", esc(kind), esc(text))
}

/// `YYYY-MM-DD HH:MM` (UTC) in a `<time>` element.
pub(crate) fn time_html(t: Timestamp) -> String {
    let full = rfc3339(t);
    format!(
        "<time datetime=\"{}\">{}</time>",
        esc(&full),
        esc(&short_time(t))
    )
}

/// `YYYY-MM-DD HH:MM` (UTC).
pub(crate) fn short_time(t: Timestamp) -> String {
    let full = rfc3339(t);
    full.get(..16).map_or(full.clone(), |s| s.replace('T', " "))
}

/// The query string's parameters (first value of each name wins), read without ever
/// failing: at most [`MAX_QUERY_PARAMS`], values cut to [`MAX_PARAM_CHARS`], blank values
/// left out.
pub(crate) fn params(raw: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).take(MAX_QUERY_PARAMS) {
        let v: String = v.trim().chars().take(MAX_PARAM_CHARS).collect();
        if !v.is_empty() {
            out.entry(k.into_owned()).or_insert(v);
        }
    }
    out
}

/// `path?k=v&…` with the pairs encoded (pairs with an empty value left out).
pub(crate) fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("{path}?{}", q.finish())
    } else {
        path.to_owned()
    }
}

/// A link to a user's page.
pub(crate) fn user_link(id: Uuid, label: &str) -> String {
    format!("<a href=\"/admin/users/{id}\">{}</a>", esc(label))
}

/// A link to a group's page.
pub(crate) fn group_link(id: Uuid, label: &str) -> String {
    format!("<a href=\"/admin/groups/{id}\">{}</a>", esc(label))
}

/// A text input with its label, for a filter form.
pub(crate) fn text_field(name: &str, label: &str, value: &str, hint: &str) -> String {
    format!(
        "<div><label for=\"f-{n}\">{l}</label><input type=\"text\" id=\"f-{n}\" name=\"{n}\" value=\"{v}\"{p}></div>",
        n = esc(name),
        l = esc(label),
        v = esc(value),
        p = if hint.is_empty() {
            String::new()
        } else {
            format!(" placeholder=\"{}\"", esc(hint))
        },
    )
}

/// A select with its label; `options` are (value, label), the empty value meaning "any".
pub(crate) fn select_field(
    name: &str,
    label: &str,
    value: &str,
    options: &[(String, String)],
) -> String {
    let mut o = String::new();
    for (v, l) in options {
        o.push_str(&format!(
            "<option value=\"{}\"{}>{}</option>",
            esc(v),
            if v == value { " selected" } else { "" },
            esc(l)
        ));
    }
    format!(
        "<div><label for=\"f-{n}\">{l}</label><select id=\"f-{n}\" name=\"{n}\">{o}</select></div>",
        n = esc(name),
        l = esc(label),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths_and_return_targets() {
        for ok in ["/admin", "/admin/", "/admin/users/x", "/admin?x=1"] {
            assert!(is_admin_path(ok), "{ok}");
        }
        for no in ["/adminx", "/my/security", "//admin", "admin", "", "/ADMIN"] {
            assert!(!is_admin_path(no), "{no}");
        }
        let uri: Uri = "/admin/signins?user=a%40b.example&result=failure"
            .parse()
            .unwrap();
        assert_eq!(
            return_to(&uri),
            "/admin/signins?user=a%40b.example&result=failure"
        );
        let at = format!("/admin/users?q={}", "a".repeat(MAX_RETURN_TO_LEN - 15));
        assert_eq!(at.len(), MAX_RETURN_TO_LEN);
        assert_eq!(return_to(&at.parse().unwrap()), at);
        let over = format!("/admin/users?q={}", "a".repeat(MAX_RETURN_TO_LEN - 14));
        assert_eq!(return_to(&over.parse().unwrap()), "/admin/users");
    }

    #[test]
    fn params_never_fail_and_are_bounded() {
        let p = params(Some("a=1&a=2&b=%ZZ&c=&d=%3Cscript%3E&e=+x+"));
        assert_eq!(p.get("a").map(String::as_str), Some("1"));
        assert_eq!(p.get("b").map(String::as_str), Some("%ZZ"));
        assert!(!p.contains_key("c"));
        assert_eq!(p.get("d").map(String::as_str), Some("<script>"));
        assert_eq!(p.get("e").map(String::as_str), Some("x"));
        assert!(params(None).is_empty());
        let many: Vec<String> = (0..MAX_QUERY_PARAMS + 1)
            .map(|i| format!("k{i}=v"))
            .collect();
        let p = params(Some(&many.join("&")));
        assert_eq!(p.len(), MAX_QUERY_PARAMS);
        assert!(!p.contains_key(&format!("k{MAX_QUERY_PARAMS}")));
        let long = format!("q={}", "x".repeat(MAX_PARAM_CHARS + 1));
        assert_eq!(params(Some(&long))["q"].chars().count(), MAX_PARAM_CHARS);
        let exact = format!("q={}", "x".repeat(MAX_PARAM_CHARS));
        assert_eq!(params(Some(&exact))["q"].chars().count(), MAX_PARAM_CHARS);
    }

    #[test]
    fn tables_escape_headers_and_mark_numbers() {
        let t = table(
            "t",
            "<cap>",
            &["Name", "#Count"],
            &[vec!["a".into(), "3".into()]],
            "none",
        );
        assert!(t.contains("<th scope=\"col\">Name</th>"), "{t}");
        assert!(
            t.contains("<th scope=\"col\" class=\"num\">Count</th>"),
            "{t}"
        );
        assert!(t.contains("<td class=\"num\">3</td>"), "{t}");
        assert!(t.contains("&lt;cap&gt;"));
        assert!(table("t", "", &["A"], &[], "<none>").contains("&lt;none&gt;"));
        assert_eq!(
            link("/admin/signins", &[("user", "a b@c"), ("result", "")]),
            "/admin/signins?user=a+b%40c"
        );
        assert_eq!(link("/admin/audit", &[("x", "")]), "/admin/audit");
        assert_eq!(short_time(Timestamp::from_secs(0)), "1970-01-01 00:00");
    }
}
