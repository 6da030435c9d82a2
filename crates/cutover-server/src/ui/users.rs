//! `/admin/users` (search and paging) and `/admin/users/{id}`: the profile, source, groups,
//! methods (passkeys with model and device family, authenticator app, Temporary Access Pass,
//! password), staged-rollout state per feature, smart lockout (with the unlock action), the
//! break-glass flag and the last sign-ins.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cutover_core::device::DeviceFamily;
use cutover_core::limits::MAX_PAGE_SIZE;
use cutover_core::methods_policy::PolicyMethod;
use cutover_core::staged::{RolloutFeature, eligibility};
use cutover_core::tap::{TapUsability, usability};
use cutover_core::{Source, User, UserPrincipalName};
use cutover_store::{SignInFilter, StoreError, UserFilter, UserRecord};
use serde::Deserialize;
use uuid::Uuid;

use super::logs::{Names, SIGN_IN_HEADERS, sign_in_rows};
use super::{
    AdminUi, Nav, UiError, admin_page, audit_event, badge, check_csrf, group_link, link, not_found,
    params, require_admin, return_to, table, text_field, time_html, user_link,
};
use crate::pages::esc;
use crate::{AppState, RequestCtx};

/// Users per page of the list.
pub(crate) const USERS_PAGE: usize = 50;
/// Most users one search reads before it stops (the page then offers to continue).
pub(crate) const MAX_USER_SCAN: usize = 10_000;
/// Sign-ins shown on a user's page.
pub(crate) const USER_SIGN_INS: u32 = 50;

/// The user named by `key`: an id, or a user principal name.
pub(super) async fn find_user(
    state: &AppState,
    key: &str,
) -> Result<Option<UserRecord>, StoreError> {
    if let Ok(id) = Uuid::parse_str(key) {
        return state.store.get_user(id).await;
    }
    match UserPrincipalName::parse(key) {
        Ok(upn) => state.store.get_user_by_upn(&upn.normalized()).await,
        Err(_) => Ok(None),
    }
}

/// Whether `u` matches the search text `q` (lower case): a part of the user principal name
/// or of the display name.
pub(crate) fn matches(u: &User, q: &str) -> bool {
    u.upn.normalized().contains(q) || u.display_name.to_lowercase().contains(q)
}

fn source_badge(u: &User) -> String {
    match u.source {
        Source::Cloud => badge("cloud", ""),
        Source::Synced => badge("synced", "info"),
    }
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let p = params(raw.as_deref());
    let q = p.get("q").map(|s| s.to_lowercase()).unwrap_or_default();
    let mut after = p.get("after").cloned();
    let mut found: Vec<User> = Vec::new();
    let mut scanned = 0usize;
    // Read pages in UPN order until a page and one more match are found (the one more says
    // whether there is a next page), the directory ends, or the scan limit is reached.
    let (more, stopped_at) = loop {
        let page = state
            .store
            .list_users(&UserFilter {
                upn_prefix: None,
                after_upn: after.clone(),
                top: MAX_PAGE_SIZE,
            })
            .await?;
        let full = page.len() == MAX_PAGE_SIZE as usize;
        let mut more = false;
        for u in page {
            scanned += 1;
            after = Some(u.upn.normalized());
            if q.is_empty() || matches(&u, &q) {
                if found.len() == USERS_PAGE {
                    more = true;
                    break;
                }
                found.push(u);
            }
            if scanned >= MAX_USER_SCAN {
                break;
            }
        }
        if more {
            break (true, None);
        }
        if scanned >= MAX_USER_SCAN && full {
            break (false, after.clone());
        }
        if !full {
            break (false, None);
        }
    };
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|u| {
            vec![
                user_link(u.id, &u.display_name),
                esc(u.upn.as_str()),
                source_badge(u),
                if u.account_enabled {
                    badge("enabled", "ok")
                } else {
                    badge("disabled", "bad")
                },
                if u.break_glass {
                    badge("break-glass", "warn")
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let qv = p.get("q").map(String::as_str).unwrap_or("");
    let next = if more {
        found.last().map(|u| {
            format!(
                "<nav class=\"pager\" aria-label=\"Pages\"><a id=\"next\" rel=\"next\" href=\"{}\">Next →</a></nav>",
                esc(&link("/admin/users", &[("q", qv), ("after", u.upn.normalized().as_str())]))
            )
        })
    } else {
        stopped_at.map(|at| {
            format!(
                "<p class=\"muted\" id=\"scan-limit\">Searched {MAX_USER_SCAN} users without filling the page. \
                 <a id=\"next\" href=\"{}\">Search further</a></p>",
                esc(&link("/admin/users", &[("q", qv), ("after", at.as_str())]))
            )
        })
    }
    .unwrap_or_default();
    let body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/users\" role=\"search\" aria-label=\"Search users\">\
         {field}<div><button type=\"submit\" class=\"primary\">Search</button> <a href=\"/admin/users\">Clear</a></div></form>\
         {t}{next}",
        field = text_field(
            "q",
            "Name or user principal name",
            qv,
            "part of a name or UPN"
        ),
        t = table(
            "users",
            "",
            &["Name", "User principal name", "Source", "Account", "Flags"],
            &rows,
            "No user matches."
        ),
    );
    Ok(admin_page(&admin, Nav::Users, "Users", &body))
}

pub(super) async fn detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let Some(record) = find_user(&state, &id).await? else {
        return Err(not_found(&admin, Nav::Users, "user", &id));
    };
    let p = params(raw.as_deref());
    let now = state.now();
    let u = &record.user;
    let mut body = String::new();
    if p.get("done").map(String::as_str) == Some("unlocked") {
        body.push_str("<div class=\"notice\" role=\"status\" id=\"notice\">The account was unlocked (audited).</div>");
    }

    // Profile.
    let manager = match u.manager_id {
        Some(m) => match state.store.get_user(m).await? {
            Some(mr) => user_link(m, &mr.user.display_name),
            None => esc(&m.to_string()),
        },
        None => "—".into(),
    };
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"profile-h\"><h2 id=\"profile-h\">Profile</h2><dl class=\"kv\" id=\"profile\">\
         <dt>Display name</dt><dd id=\"display-name\">{name}</dd>\
         <dt>User principal name</dt><dd>{upn}</dd><dt>Id</dt><dd><code>{id}</code></dd>\
         <dt>Source</dt><dd>{source}{anchor}</dd>\
         <dt>Mail</dt><dd>{mail}</dd><dt>Department</dt><dd>{dept}</dd><dt>Manager</dt><dd>{manager}</dd>\
         <dt>Account</dt><dd>{enabled}</dd><dt>Break-glass account</dt><dd id=\"break-glass\">{glass}</dd>\
         <dt>Created</dt><dd>{created}</dd><dt>Updated</dt><dd>{updated}</dd></dl></section>",
        name = esc(&u.display_name),
        upn = esc(u.upn.as_str()),
        id = u.id,
        source = source_badge(u),
        anchor = u
            .immutable_id
            .as_deref()
            .map(|a| format!(" <span class=\"small\">anchor <code>{}</code></span>", esc(a)))
            .unwrap_or_default(),
        mail = esc(u.mail.as_deref().unwrap_or("—")),
        dept = esc(u.department.as_deref().unwrap_or("—")),
        enabled = if u.account_enabled {
            badge("enabled", "ok")
        } else {
            badge("disabled", "bad")
        },
        glass = if u.break_glass {
            format!("{} never federated, never staged, excluded from every policy", badge("yes", "warn"))
        } else {
            "no".into()
        },
        created = time_html(u.created_at),
        updated = time_html(u.updated_at),
    ));

    // Groups.
    let group_ids = state.store.groups_of_member(u.id).await?;
    let mut groups = Vec::new();
    for g in &group_ids {
        if let Some(g) = state.store.get_group(*g).await? {
            groups.push(g);
        }
    }
    groups.sort_by(|a, b| {
        a.display_name
            .to_lowercase()
            .cmp(&b.display_name.to_lowercase())
    });
    let group_rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                group_link(g.id, &g.display_name),
                esc(g.source.as_str()),
                if g.display_name == state.config.admin_group {
                    badge("grants admin UI", "info")
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"groups-h\"><h2 id=\"groups-h\">Groups</h2>{}</section>",
        table("user-groups", "Direct groups", &["Group", "Source", "Notes"], &group_rows, "Not a member of any group.")
    ));

    // Methods.
    body.push_str(&methods_section(&state, &record, now).await?);

    // Staged rollout.
    let domain = state.store.get_domain(u.upn.domain().as_str()).await?;
    let staged = state.store.get_staged_state(u.id).await?;
    let target = crate::rollout::staged_target(&state, &record, domain.as_ref()).await?;
    let feature_rows: Vec<Vec<String>> = RolloutFeature::ALL
        .iter()
        .map(|f| {
            let eff = staged.effective.contains(*f);
            let want = target.desired.contains(*f);
            vec![
                esc(f.as_str()),
                if want {
                    badge("desired", "info")
                } else {
                    "—".into()
                },
                if eff {
                    badge("effective", "ok")
                } else {
                    "—".into()
                },
                match (want, eff) {
                    (true, false) => "switches at the next interactive sign-in".into(),
                    (false, true) => "returns at the next interactive sign-in".into(),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"staged-h\"><h2 id=\"staged-h\">Staged rollout</h2>\
         <p>Eligibility: <strong id=\"eligibility\">{el}</strong>{since}{held}</p>{t}</section>",
        el = esc(eligibility(u, domain.as_ref()).code()),
        since = staged
            .changed_at
            .map(|t| format!("; effective features last changed {}", time_html(t)))
            .unwrap_or_default(),
        held = target
            .held
            .map(|h| format!("; held back: <code>{}</code>", esc(h.code())))
            .unwrap_or_default(),
        t = table("staged", "Staged-rollout state per feature", &["Feature", "Desired", "Effective", "Next"], &feature_rows, ""),
    ));

    // Lockout.
    let settings = crate::lockout::load_settings(&state).await?;
    let lock = state.store.get_lockout_state(u.id).await?;
    let st = cutover_core::lockout::status(&lock, &settings, now);
    let until = st
        .familiar_locked_until
        .into_iter()
        .chain(st.unfamiliar_locked_until)
        .max();
    let unlock = if st.locked || st.familiar_failures + st.unfamiliar_failures > 0 {
        format!(
            "<form method=\"post\" action=\"/admin/users/{id}/unlock\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <button type=\"submit\" class=\"danger\" id=\"unlock\">Unlock and reset the failure counts</button></form>",
            id = u.id,
            c = esc(&admin.csrf),
        )
    } else {
        String::new()
    };
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"lockout-h\"><h2 id=\"lockout-h\">Smart lockout</h2>\
         <p id=\"lockout\" data-locked=\"{locked}\">{state_badge}{until} — failures from familiar networks: {ff}, from unfamiliar ones: {uf} (threshold {th}).</p>{unlock}</section>",
        locked = st.locked,
        state_badge = if st.locked { badge("locked", "bad") } else { badge("not locked", "ok") },
        until = until.map(|t| format!(" until {}", time_html(t))).unwrap_or_default(),
        ff = st.familiar_failures,
        uf = st.unfamiliar_failures,
        th = settings.threshold,
    ));

    // Sign-ins.
    let records = state
        .store
        .list_sign_ins(&SignInFilter {
            user_id: Some(u.id),
            top: USER_SIGN_INS,
            ..SignInFilter::default()
        })
        .await?;
    let names = Names::load(&state).await?;
    let headers: Vec<&str> = SIGN_IN_HEADERS
        .iter()
        .copied()
        .filter(|h| *h != "User")
        .collect();
    body.push_str(&format!(
        "<section class=\"panel\" aria-labelledby=\"signins-h\"><h2 id=\"signins-h\">Last sign-ins</h2>{t}\
         <p><a href=\"{all}\">All of this user's sign-ins</a></p></section>",
        t = table(
            "user-sign-ins",
            &format!("The last {USER_SIGN_INS} sign-ins, newest first"),
            &headers,
            &sign_in_rows(&records, &names, false),
            "No sign-in recorded."
        ),
        all = esc(&link("/admin/signins", &[("user", u.id.to_string().as_str())])),
    ));
    Ok(admin_page(&admin, Nav::Users, &u.display_name, &body))
}

async fn methods_section(
    state: &AppState,
    record: &UserRecord,
    now: cutover_core::Timestamp,
) -> Result<String, UiError> {
    let u = &record.user;
    let policy = crate::passkeys::load_methods_policy(state).await?;
    let groups = crate::passkeys::user_groups(state, u.id).await?;
    let allowed = |m: PolicyMethod| {
        if policy.allows(m, &groups) {
            badge("allowed by policy", "ok")
        } else {
            badge("not allowed by policy", "warn")
        }
    };
    let passkeys = state.store.list_passkeys(u.id).await?;
    let rows: Vec<Vec<String>> = passkeys
        .iter()
        .map(|p| {
            let model = state
                .passkeys
                .authenticator_name(p.aaguid)
                .unwrap_or_else(|| "Unknown model".into());
            vec![
                esc(&p.name),
                format!(
                    "{}<br><span class=\"small\">{}</span>",
                    esc(&model),
                    p.aaguid
                ),
                esc(DeviceFamily::parse(&p.device_family)
                    .map_or("Unknown device", DeviceFamily::label)),
                if p.backed_up {
                    badge("synced", "info")
                } else {
                    badge("device-bound", "")
                },
                time_html(p.created_at),
                p.last_used_at.map_or("never".into(), time_html),
            ]
        })
        .collect();
    let totp = match state.store.get_totp(u.id).await? {
        Some(t) => match t.confirmed_at {
            Some(at) => format!("{} since {}", badge("set up", "ok"), time_html(at)),
            None => format!(
                "{} started {}",
                badge("set-up not finished", "warn"),
                time_html(t.created_at)
            ),
        },
        None => badge("not set up", ""),
    };
    let tap = match state.store.get_tap(u.id).await? {
        Some(stored) => {
            let effective = crate::tap::effective_policy(state, u.id).await?;
            let t = &stored.tap;
            let use_state = match usability(t, &effective, now) {
                TapUsability::Usable => badge("usable", "ok"),
                TapUsability::NotUsable(r) => badge(r.code(), "warn"),
            };
            format!(
                "{use_state} {kind}, valid {from} to {to}{used}; issued by {by}",
                kind = if t.one_time { "one-time" } else { "multi-use" },
                from = time_html(t.starts_at),
                to = time_html(t.expires_at),
                used = t
                    .used_at
                    .map(|x| format!(", used {}", time_html(x)))
                    .unwrap_or_default(),
                by = esc(&stored.created_by),
            )
        }
        None => badge("none", ""),
    };
    let password = match (&record.password_hash, &record.synced_password) {
        (_, Some(_)) => "synced password hash",
        (Some(_), None) => "set in Cutover",
        (None, None) => "none",
    };
    Ok(format!(
        "<section class=\"panel\" aria-labelledby=\"methods-h\"><h2 id=\"methods-h\">Authentication methods</h2>\
         <h3>Passkeys</h3><p>{pk_allowed}</p>{pk}\
         <dl class=\"kv\" id=\"methods\">\
         <dt>Authenticator app</dt><dd id=\"totp\">{totp} {totp_allowed}</dd>\
         <dt>Temporary Access Pass</dt><dd id=\"tap\">{tap} {tap_allowed}</dd>\
         <dt>Password</dt><dd id=\"password\">{password}{changed} {pw_allowed}</dd></dl></section>",
        pk_allowed = allowed(PolicyMethod::Passkey),
        pk = table(
            "passkeys",
            "Passkeys",
            &[
                "Name",
                "Model",
                "Device family",
                "Kind",
                "Added",
                "Last used"
            ],
            &rows,
            "No passkey registered."
        ),
        totp_allowed = allowed(PolicyMethod::Totp),
        tap_allowed = allowed(PolicyMethod::TemporaryAccessPass),
        pw_allowed = allowed(PolicyMethod::Password),
        changed = record
            .password_changed_at
            .map(|t| format!(", changed {}", time_html(t)))
            .unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /admin/users/{id}/unlock`: smart lockout's unlock, audited as the administrator.
pub(super) async fn unlock(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let back = Uuid::parse_str(&id).map_or_else(
        |_| "/admin/users".to_owned(),
        |u| format!("/admin/users/{u}"),
    );
    let admin: AdminUi = require_admin(&state, &headers, &back).await?;
    check_csrf(&admin, form.csrf.as_deref())?;
    let Some(user) = find_user(&state, &id).await? else {
        return Err(not_found(&admin, Nav::Users, "user", &id));
    };
    let settings = crate::lockout::load_settings(&state).await?;
    let now = state.now();
    let seen = state.store.get_lockout_state(user.user.id).await?;
    let a = audit_event(
        &admin,
        &ctx,
        now,
        crate::agents_admin::UNLOCK_USER_ACTION,
        (
            "user",
            user.user.id.to_string(),
            Some(user.user.upn.to_string()),
        ),
        Some(serde_json::json!(cutover_core::lockout::status(
            &seen, &settings, now
        ))),
        Some(serde_json::json!(cutover_core::lockout::status(
            &cutover_core::lockout::unlock(seen.clone()),
            &settings,
            now
        ))),
    );
    match state.store.unlock_user(user.user.id, &a).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(not_found(&admin, Nav::Users, "user", &id)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %user.user.upn, admin = %admin.user.user.upn, "smart lockout: an administrator unlocked the user from the admin web UI");
    Ok(Redirect::to(&format!("/admin/users/{}?done=unlocked", user.user.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::Timestamp;

    fn user(upn: &str, name: &str) -> User {
        User {
            id: Uuid::nil(),
            upn: UserPrincipalName::parse(upn).unwrap(),
            source: Source::Cloud,
            immutable_id: None,
            display_name: name.into(),
            mail: None,
            department: None,
            manager_id: None,
            account_enabled: true,
            break_glass: false,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn search_matches_part_of_the_upn_or_the_name_in_any_case() {
        let u = user("Ada.Lovelace@Contoso.example", "Ada Lovelace");
        for q in ["ada", "lovelace@contoso", "ada lov", "contoso.example"] {
            assert!(matches(&u, q), "{q}");
        }
        assert!(!matches(&u, "grace"));
    }
}
