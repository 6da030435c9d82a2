//! `/admin/signins` and `/admin/audit`: the sign-in log and the audit log, filtered and paged
//! (newest first), with the changes of an audit row shown field by field.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use cutover_core::conditional_access::CaResult;
use cutover_core::signin_log::{SignInRecord, SignInResult};
use cutover_store::{AuditEvent, AuditFilter, Cursor, SignInFilter};
use serde_json::Value;
use uuid::Uuid;

use super::{
    AdminUi, Nav, UiError, admin_page, bad_filter, badge, link, params, require_admin, return_to,
    select_field, table, text_field, time_html, user_link,
};
use crate::AppState;
use crate::pages::esc;

/// Rows per page of either log.
pub(crate) const LOG_PAGE: u32 = 50;
/// Fields of one audit row's change shown in the table; the rest are counted.
pub(crate) const MAX_CHANGE_FIELDS: usize = 12;
/// Characters of one changed value shown; longer values are cut with "…".
pub(crate) const MAX_CHANGE_CHARS: usize = 160;
/// Characters of a whole before/after JSON shown under "Show JSON".
const MAX_JSON_CHARS: usize = 4_000;

/// Names for the sign-in rows: applications by client id, CA policies by id.
pub(super) struct Names {
    apps: HashMap<String, String>,
    policies: HashMap<Uuid, String>,
}

impl Names {
    pub(super) async fn load(state: &AppState) -> Result<Self, cutover_store::StoreError> {
        let mut apps: HashMap<String, String> = state
            .store
            .list_applications(cutover_core::limits::MAX_PAGE_SIZE)
            .await?
            .into_iter()
            .map(|a| (a.client_id, a.display_name))
            .collect();
        apps.insert(crate::my::MY_CLIENT_ID.into(), "Cutover (own pages)".into());
        let policies = state
            .store
            .list_ca_policies()
            .await?
            .into_iter()
            .map(|p| (p.id, p.display_name))
            .collect();
        Ok(Self { apps, policies })
    }
}

fn result_badge(r: SignInResult) -> String {
    match r {
        SignInResult::Success => badge("success", "ok"),
        SignInResult::Failure => badge("failure", "bad"),
        SignInResult::Interrupted => badge("interrupted", "warn"),
    }
}

/// The table rows of sign-in records (shared with the user page).
/// `with_user`: a column naming the user (left out on a user's own page).
pub(super) fn sign_in_rows(
    records: &[SignInRecord],
    names: &Names,
    with_user: bool,
) -> Vec<Vec<String>> {
    records
        .iter()
        .map(|r| {
            let who = r.user_principal_name.as_deref().unwrap_or("—");
            let user = match r.user_id {
                Some(id) => user_link(id, who),
                None => esc(who),
            };
            let app = match r.client_id.as_deref() {
                Some(c) => match names.apps.get(c) {
                    Some(n) => esc(n),
                    None => format!("<code>{}</code>", esc(c)),
                },
                None => "—".into(),
            };
            let result = match &r.failure_reason {
                Some(f) => format!(
                    "{}<br><span class=\"small\">{}</span>",
                    result_badge(r.result),
                    esc(f)
                ),
                None => result_badge(r.result),
            };
            let ca: Vec<String> = r
                .conditional_access
                .iter()
                .filter(|p| CaResult::parse(&p.result).is_none_or(CaResult::applied))
                .map(|p| {
                    let name = names
                        .policies
                        .get(&p.policy_id)
                        .cloned()
                        .unwrap_or_else(|| p.policy_id.to_string());
                    format!("{}: {}", esc(&name), esc(&p.result))
                })
                .collect();
            let mut row = vec![time_html(r.created_at)];
            if with_user {
                row.push(user);
            }
            row.extend([
                app,
                result,
                format!(
                    "{}<br><span class=\"small\">{}</span>",
                    esc(r.route.as_deref().unwrap_or("not routed")),
                    esc(&r.authentication_methods.join(" + "))
                ),
                format!(
                    "{}<br><span class=\"small\">{}</span>",
                    esc(r.ip_address.as_deref().unwrap_or("—")),
                    esc(r.device_platform.as_deref().unwrap_or("unknown platform"))
                ),
                if ca.is_empty() {
                    "—".into()
                } else {
                    ca.join("<br>")
                },
            ]);
            row
        })
        .collect()
}

/// The headers of [`sign_in_rows`] with the user column.
pub(super) const SIGN_IN_HEADERS: [&str; 7] = [
    "Time (UTC)",
    "User",
    "Application",
    "Result",
    "Route and methods",
    "Client",
    "Conditional Access",
];

/// A value for a shell command line, single-quoted.
fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// The `before` cursor of a page link, or the refusal naming it.
fn cursor_param(
    admin: &AdminUi,
    nav: Nav,
    p: &HashMap<String, String>,
) -> Result<Option<Cursor>, UiError> {
    p.get("before")
        .map(|raw| {
            Cursor::decode(raw).ok_or_else(|| {
                bad_filter(
                    admin,
                    nav,
                    &format!(
                        "before: '{raw}' is not a page position; use the “Older” link of the list"
                    ),
                )
            })
        })
        .transpose()
}

pub(super) async fn sign_ins(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let nav = Nav::SignIns;
    let p = params(raw.as_deref());
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let mut filter = SignInFilter {
        top: LOG_PAGE,
        older_than: cursor_param(&admin, nav, &p)?,
        ..SignInFilter::default()
    };
    if let Some(u) = p.get("user") {
        if let Ok(id) = Uuid::parse_str(u) {
            filter.user_id = Some(id);
        } else if u.contains('@') {
            filter.user_principal_name = Some(u.clone());
        } else {
            return Err(bad_filter(
                &admin,
                nav,
                &format!(
                    "user: '{u}' is neither a user principal name (name@domain) nor a user id"
                ),
            ));
        }
    }
    if let Some(a) = p.get("app") {
        filter.client_id = Some(a.clone());
    }
    if let Some(r) = p.get("result") {
        if SignInResult::parse(r).is_none() {
            return Err(bad_filter(
                &admin,
                nav,
                &format!("result: '{r}' is not one of success, failure, interrupted"),
            ));
        }
        filter.result = Some(r.clone());
    }
    if let Some(r) = p.get("route") {
        if r != "managed" && r != "federated" {
            return Err(bad_filter(
                &admin,
                nav,
                &format!("route: '{r}' is not one of managed, federated"),
            ));
        }
        filter.route = Some(r.clone());
    }
    if let Some(c) = p.get("ca") {
        if CaResult::parse(c).is_none() {
            let all: Vec<&str> = CaResult::ALL.iter().map(|r| r.as_str()).collect();
            return Err(bad_filter(
                &admin,
                nav,
                &format!(
                    "ca (Conditional Access result): '{c}' is not one of {}",
                    all.join(", ")
                ),
            ));
        }
        filter.ca_result = Some(c.clone());
    }
    if let Some(pid) = p.get("policy") {
        filter.ca_policy = Some(Uuid::parse_str(pid).map_err(|_| {
            bad_filter(
                &admin,
                nav,
                &format!("policy: '{pid}' is not a Conditional Access policy id"),
            )
        })?);
    }
    let records = state.store.list_sign_ins(&filter).await?;
    let names = Names::load(&state).await?;

    let mut apps: Vec<(String, String)> = names
        .apps
        .iter()
        .map(|(c, n)| (c.clone(), format!("{n} ({c})")))
        .collect();
    apps.sort_by_key(|a| a.1.to_lowercase());
    apps.insert(0, (String::new(), "Any application".into()));
    if !get("app").is_empty() && !names.apps.contains_key(get("app")) {
        apps.push((get("app").to_owned(), get("app").to_owned()));
    }
    let opt = |v: &[&str], any: &str| -> Vec<(String, String)> {
        std::iter::once((String::new(), any.to_owned()))
            .chain(v.iter().map(|s| ((*s).to_owned(), (*s).to_owned())))
            .collect()
    };
    let ca_values: Vec<&str> = CaResult::ALL.iter().map(|r| r.as_str()).collect();
    let mut policies: Vec<(String, String)> = names
        .policies
        .iter()
        .map(|(id, n)| (id.to_string(), n.clone()))
        .collect();
    policies.sort_by_key(|a| a.1.to_lowercase());
    policies.insert(0, (String::new(), "Any policy".into()));
    let form = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/signins\" role=\"search\" aria-label=\"Filter the sign-in log\">\
         {user}{app}{result}{route}{ca}{policy}<div><button type=\"submit\" class=\"primary\" id=\"apply-filters\">Filter</button> \
         <a href=\"/admin/signins\">Clear</a></div></form>",
        user = text_field("user", "User (UPN or id)", get("user"), "name@domain"),
        app = select_field("app", "Application", get("app"), &apps),
        result = select_field(
            "result",
            "Result",
            get("result"),
            &opt(&["success", "failure", "interrupted"], "Any result")
        ),
        route = select_field(
            "route",
            "Route",
            get("route"),
            &opt(&["managed", "federated"], "Any route")
        ),
        ca = select_field(
            "ca",
            "Conditional Access result",
            get("ca"),
            &opt(&ca_values, "Any")
        ),
        policy = select_field(
            "policy",
            "Conditional Access policy",
            get("policy"),
            &policies
        ),
    );
    let mut cli = String::from("cutover admin --output jsonl sign-ins --all --since 7d");
    for (k, flag) in [
        ("user", "--user"),
        ("app", "--app"),
        ("result", "--result"),
        ("route", "--route"),
    ] {
        if let Some(v) = p.get(k) {
            cli.push_str(&format!(" {flag} {}", shell_quote(v)));
        }
    }
    cli.push_str(" > sign-ins.jsonl");
    let next = pager(
        &records,
        LOG_PAGE,
        |r| (r.created_at, r.id),
        "/admin/signins",
        &p,
    );
    let body = format!(
        "{form}<p class=\"muted\" id=\"result-count\" data-count=\"{n}\">{n} sign-ins on this page, newest first.</p>{t}{next}\
         <section class=\"panel\" aria-labelledby=\"export-h\"><h2 id=\"export-h\">Export</h2>\
         <p>The whole log as JSON lines (one record per line) from the command line:</p><pre id=\"export-cli\">{cli}</pre>\
         <p class=\"muted\">Or page through <code>GET /api/v1/auditLogs/signIns</code> (same filters: userPrincipalName, clientId, result, route, caResult, caPolicy).</p></section>",
        n = records.len(),
        t = table(
            "sign-ins",
            "",
            &SIGN_IN_HEADERS,
            &sign_in_rows(&records, &names, true),
            "No sign-in matches these filters."
        ),
        cli = esc(&cli),
    );
    Ok(admin_page(&admin, Nav::SignIns, "Sign-in log", &body))
}

/// The "Older" link when the page was full.
fn pager<T>(
    rows: &[T],
    page: u32,
    position: impl Fn(&T) -> (cutover_core::Timestamp, Uuid),
    path: &str,
    p: &HashMap<String, String>,
) -> String {
    let Some(last) = rows.last().filter(|_| rows.len() >= page as usize) else {
        return String::new();
    };
    let (created_at, id) = position(last);
    let cursor = Cursor { created_at, id }.encode();
    let mut pairs: Vec<(&str, &str)> = p
        .iter()
        .filter(|(k, _)| k.as_str() != "before")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs.push(("before", cursor.as_str()));
    format!(
        "<nav class=\"pager\" aria-label=\"Pages\"><a href=\"{}\" id=\"older\" rel=\"next\">Older →</a></nav>",
        esc(&link(path, &pairs))
    )
}

/// One field's change: (field, before, after), each value as compact JSON cut to
/// [`MAX_CHANGE_CHARS`]; "—" where a side has no value.
pub(crate) fn changes(
    before: Option<&Value>,
    after: Option<&Value>,
) -> Vec<(String, String, String)> {
    fn show(v: Option<&Value>) -> String {
        match v {
            None | Some(Value::Null) => "—".into(),
            Some(Value::String(s)) => cut(s),
            Some(other) => cut(&other.to_string()),
        }
    }
    fn cut(s: &str) -> String {
        if s.chars().count() <= MAX_CHANGE_CHARS {
            s.to_owned()
        } else {
            let mut t: String = s.chars().take(MAX_CHANGE_CHARS - 1).collect();
            t.push('…');
            t
        }
    }
    let empty = serde_json::Map::new();
    match (before, after) {
        (None | Some(Value::Null), None | Some(Value::Null)) => vec![],
        (b, a)
            if b.is_none_or(|v| v.is_object() || v.is_null())
                && a.is_none_or(|v| v.is_object() || v.is_null()) =>
        {
            let bo = b.and_then(Value::as_object).unwrap_or(&empty);
            let ao = a.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = bo.keys().chain(ao.keys()).collect();
            // A field that is null on one side and missing on the other did not change.
            let value = |o: &'_ serde_json::Map<String, Value>, k: &str| {
                o.get(k).filter(|v| !v.is_null()).cloned()
            };
            keys.into_iter()
                .filter(|k| value(bo, k) != value(ao, k))
                .map(|k| (k.clone(), show(bo.get(k)), show(ao.get(k))))
                .collect()
        }
        (b, a) if b != a => vec![("value".into(), show(b), show(a))],
        _ => vec![],
    }
}

fn pretty(v: Option<&Value>) -> String {
    let s = v.map_or("—".into(), |v| {
        serde_json::to_string_pretty(v).unwrap_or_default()
    });
    if s.chars().count() <= MAX_JSON_CHARS {
        s
    } else {
        let mut t: String = s.chars().take(MAX_JSON_CHARS).collect();
        t.push_str("\n… (cut; the API returns it whole)");
        t
    }
}

/// How an audit row's change reads: one line per field that changed.
fn change_cell(a: &AuditEvent) -> String {
    let list = changes(a.before.as_ref(), a.after.as_ref());
    if list.is_empty() {
        return "<span class=\"muted\">no field changed</span>".into();
    }
    // A creation lists the new values, a deletion the old ones, a change both.
    let (label, one_side): (&str, Option<bool>) = match (&a.before, &a.after) {
        (None | Some(Value::Null), Some(_)) => ("created with", Some(true)),
        (Some(_), None | Some(Value::Null)) => ("deleted; it had", Some(false)),
        _ => ("", None),
    };
    let mut out = String::new();
    if !label.is_empty() {
        out.push_str(&format!("<span class=\"small\">{label}</span>"));
    }
    out.push_str("<ul class=\"changes\">");
    for (field, b, after) in list.iter().take(MAX_CHANGE_FIELDS) {
        let shown = match one_side {
            Some(true) => esc(after),
            Some(false) => esc(b),
            None => format!("{} → {}", esc(b), esc(after)),
        };
        out.push_str(&format!("<li><code>{}</code>: {shown}</li>", esc(field)));
    }
    if list.len() > MAX_CHANGE_FIELDS {
        out.push_str(&format!(
            "<li class=\"muted\">and {} more</li>",
            list.len() - MAX_CHANGE_FIELDS
        ));
    }
    out.push_str("</ul>");
    out.push_str(&format!(
        "<details><summary>Show JSON</summary><p class=\"small\">Before</p><pre>{}</pre><p class=\"small\">After</p><pre>{}</pre></details>",
        esc(&pretty(a.before.as_ref())),
        esc(&pretty(a.after.as_ref()))
    ));
    out
}

fn target_cell(a: &AuditEvent) -> String {
    let name = a.target_name.as_deref().unwrap_or(&a.target_id);
    let linked = match (a.target_type.as_str(), Uuid::parse_str(&a.target_id)) {
        ("user", Ok(id)) => user_link(id, name),
        ("group", Ok(id)) => super::group_link(id, name),
        ("conditionalAccessPolicy", Ok(id)) => {
            format!("<a href=\"/admin/policies/ca/{id}\">{}</a>", esc(name))
        }
        _ => esc(name),
    };
    format!(
        "{linked}<br><span class=\"small\">{} {}</span>",
        esc(&a.target_type),
        esc(&a.target_id)
    )
}

pub(super) async fn audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let nav = Nav::Audit;
    let p = params(raw.as_deref());
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    for (k, what) in [
        (
            "actor",
            "an actor (user:name@domain, app:CLIENT_ID or system)",
        ),
        ("action", "an action name (e.g. createUser)"),
        ("target", "an object id"),
    ] {
        if let Some(v) = p.get(k)
            && v.chars().any(char::is_whitespace)
        {
            return Err(bad_filter(
                &admin,
                nav,
                &format!("{k}: '{v}' contains spaces; give {what}"),
            ));
        }
    }
    let filter = AuditFilter {
        actor: p.get("actor").cloned(),
        action: p.get("action").cloned(),
        target_id: p.get("target").cloned(),
        older_than: cursor_param(&admin, nav, &p)?,
        top: LOG_PAGE,
        ..AuditFilter::default()
    };
    let events = state.store.list_audit_events(&filter).await?;
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|a| {
            vec![
                time_html(a.created_at),
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&link("/admin/audit", &[("actor", a.actor.as_str())])),
                    esc(&a.actor)
                ),
                format!(
                    "<a href=\"{}\">{}</a>",
                    esc(&link("/admin/audit", &[("action", a.action.as_str())])),
                    esc(&a.action)
                ),
                target_cell(a),
                change_cell(a),
            ]
        })
        .collect();
    let form = format!(
        "<form class=\"filters\" method=\"get\" action=\"/admin/audit\" role=\"search\" aria-label=\"Filter the audit log\">\
         {actor}{action}{target}<div><button type=\"submit\" class=\"primary\" id=\"apply-filters\">Filter</button> \
         <a href=\"/admin/audit\">Clear</a></div></form>",
        actor = text_field(
            "actor",
            "Actor",
            get("actor"),
            "user:name@domain, app:…, system"
        ),
        action = text_field("action", "Action", get("action"), "e.g. createUser"),
        target = text_field("target", "Target id", get("target"), "object id"),
    );
    let next = pager(
        &events,
        LOG_PAGE,
        |a| (a.created_at, a.id),
        "/admin/audit",
        &p,
    );
    let body = format!(
        "{form}<p class=\"muted\" id=\"result-count\" data-count=\"{n}\">{n} changes on this page, newest first. \
         Filters match exactly; export with <code>cutover admin --output jsonl audit --all</code>.</p>{t}{next}",
        n = events.len(),
        t = table(
            "audit",
            "",
            &["Time (UTC)", "Actor", "Action", "Target", "Changes"],
            &rows,
            "No change matches these filters."
        ),
    );
    Ok(admin_page(&admin, Nav::Audit, "Audit log", &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_list_the_fields_that_differ() {
        let b = json!({"displayName": "A", "accountEnabled": true, "mail": "a@x"});
        let a = json!({"displayName": "B", "accountEnabled": true, "department": "Ops"});
        assert_eq!(
            changes(Some(&b), Some(&a)),
            vec![
                ("department".into(), "—".into(), "Ops".into()),
                ("displayName".into(), "A".into(), "B".into()),
                ("mail".into(), "a@x".into(), "—".into()),
            ]
        );
        // Created and deleted objects: every field, one side empty; null is no value.
        assert_eq!(
            changes(None, Some(&json!({"x": 1, "y": null}))),
            vec![("x".into(), "—".into(), "1".into())]
        );
        assert!(changes(Some(&json!({"y": null})), Some(&json!({}))).is_empty());
        assert_eq!(
            changes(Some(&json!({"x": [1]})), None),
            vec![("x".into(), "[1]".into(), "—".into())]
        );
        assert!(changes(None, None).is_empty());
        assert!(changes(Some(&Value::Null), None).is_empty());
        assert!(changes(Some(&b), Some(&b)).is_empty());
        // Not objects: the whole value.
        assert_eq!(
            changes(Some(&json!("on")), Some(&json!("off"))),
            vec![("value".into(), "on".into(), "off".into())]
        );
    }

    #[test]
    fn long_values_are_cut_at_the_edge() {
        let at = "x".repeat(MAX_CHANGE_CHARS);
        let over = "x".repeat(MAX_CHANGE_CHARS + 1);
        let c = changes(None, Some(&json!({"a": at, "b": over})));
        assert_eq!(c[0].2.chars().count(), MAX_CHANGE_CHARS);
        assert!(!c[0].2.ends_with('…'));
        assert_eq!(c[1].2.chars().count(), MAX_CHANGE_CHARS);
        assert!(c[1].2.ends_with('…'));
    }

    #[test]
    fn shell_values_are_quoted() {
        assert_eq!(shell_quote("a@b"), "'a@b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
