//! `/admin/groups` and `/admin/groups/{id}`: groups by name (paged), a group's direct members
//! (paged) and every policy that names it — staged rollout, Conditional Access, the
//! authentication methods policy, and the admin UI's own access.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use cutover_core::conditional_access::ConditionalAccessPolicy;
use cutover_core::methods_policy::PolicyMethod;
use cutover_core::{Group, MemberKind, MemberRef};
use uuid::Uuid;

use super::{
    Nav, UiError, admin_page, badge, group_link, link, not_found, params, require_admin, return_to,
    table, time_html, user_link,
};
use crate::AppState;
use crate::pages::esc;

/// Groups per page of the list, and members per page of a group.
pub(crate) const GROUPS_PAGE: u32 = 50;

/// A member position for the "next" link: `user:UUID`.
fn member_cursor(m: &MemberRef) -> String {
    format!("{}:{}", m.kind.as_str(), m.id)
}

fn parse_member_cursor(s: &str) -> Option<MemberRef> {
    let (kind, id) = s.split_once(':')?;
    Some(MemberRef {
        kind: MemberKind::parse(kind)?,
        id: Uuid::parse_str(id).ok()?,
    })
}

/// The methods whose policy target includes (`true`) or excludes (`false`) `group`.
pub(crate) fn methods_naming(
    policy: &cutover_core::methods_policy::AuthenticationMethodsPolicy,
    group: Uuid,
) -> Vec<(PolicyMethod, bool)> {
    [
        PolicyMethod::Passkey,
        PolicyMethod::Totp,
        PolicyMethod::TemporaryAccessPass,
        PolicyMethod::Password,
    ]
    .into_iter()
    .filter_map(|m| {
        let t = policy.target(m);
        if t.include_groups.contains(&group) {
            Some((m, true))
        } else if t.exclude_groups.contains(&group) {
            Some((m, false))
        } else {
            None
        }
    })
    .collect()
}

/// How a Conditional Access policy names `group`: `included`, `excluded`, or not at all.
pub(crate) fn ca_naming(policy: &ConditionalAccessPolicy, group: Uuid) -> Option<&'static str> {
    let names = |list: &[String]| {
        list.iter()
            .any(|g| Uuid::parse_str(g).is_ok_and(|g| g == group))
    };
    if names(&policy.conditions.users.include_groups) {
        Some("included")
    } else if names(&policy.conditions.users.exclude_groups) {
        Some("excluded")
    } else {
        None
    }
}

pub(crate) fn method_name(m: PolicyMethod) -> &'static str {
    match m {
        PolicyMethod::Passkey => "Passkeys",
        PolicyMethod::Totp => "Authenticator app",
        PolicyMethod::TemporaryAccessPass => "Temporary Access Pass",
        PolicyMethod::Password => "Password",
    }
}

fn group_row(g: &Group, admin_group: &str) -> Vec<String> {
    vec![
        group_link(g.id, &g.display_name),
        esc(g.source.as_str()),
        esc(g.membership_kind.as_str()),
        esc(g.description.as_deref().unwrap_or("")),
        if g.display_name == admin_group {
            badge("grants admin UI", "info")
        } else {
            String::new()
        },
    ]
}

pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let p = params(raw.as_deref());
    let after = match (
        p.get("afterName"),
        p.get("afterId").map(|i| Uuid::parse_str(i)),
    ) {
        (Some(n), Some(Ok(id))) => Some((n.clone(), id)),
        (None, None) => None,
        _ => {
            return Err(super::bad_filter(
                &admin,
                Nav::Groups,
                "afterName and afterId: give both (a group's name and id), as the “Next” link does",
            ));
        }
    };
    let mut groups = state.store.list_groups(GROUPS_PAGE + 1, after).await?;
    let more = groups.len() > GROUPS_PAGE as usize;
    groups.truncate(GROUPS_PAGE as usize);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| group_row(g, &state.config.admin_group))
        .collect();
    let next = match groups.last().filter(|_| more) {
        Some(g) => format!(
            "<nav class=\"pager\" aria-label=\"Pages\"><a id=\"next\" rel=\"next\" href=\"{}\">Next →</a></nav>",
            esc(&link(
                "/admin/groups",
                &[
                    ("afterName", g.display_name.as_str()),
                    ("afterId", g.id.to_string().as_str())
                ]
            ))
        ),
        None => String::new(),
    };
    let body = format!(
        "<p class=\"muted\">By name. Members of <strong>{ag}</strong> may use these administration pages.</p>{t}{next}",
        ag = esc(&state.config.admin_group),
        t = table(
            "groups",
            "",
            &["Group", "Source", "Membership", "Description", "Notes"],
            &rows,
            "No group exists."
        ),
    );
    Ok(admin_page(&admin, Nav::Groups, "Groups", &body))
}

pub(super) async fn detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let group = match Uuid::parse_str(&id) {
        Ok(gid) => state.store.get_group(gid).await?,
        Err(_) => None,
    };
    let Some(group) = group else {
        return Err(not_found(&admin, Nav::Groups, "group", &id));
    };
    let p = params(raw.as_deref());
    let after = match p.get("after") {
        Some(a) => Some(parse_member_cursor(a).ok_or_else(|| {
            super::bad_filter(
                &admin,
                Nav::Groups,
                &format!("after: '{a}' is not a member position (kind:id); use the “Next” link"),
            )
        })?),
        None => None,
    };
    let mut members = state
        .store
        .list_group_members(group.id, GROUPS_PAGE + 1, after)
        .await?;
    let more = members.len() > GROUPS_PAGE as usize;
    members.truncate(GROUPS_PAGE as usize);
    let mut rows = Vec::with_capacity(members.len());
    for m in &members {
        rows.push(match m.kind {
            MemberKind::User => match state.store.get_user(m.id).await? {
                Some(u) => vec![
                    user_link(u.user.id, &u.user.display_name),
                    esc(u.user.upn.as_str()),
                    "user".into(),
                ],
                None => vec![esc(&m.id.to_string()), "—".into(), "user (deleted)".into()],
            },
            MemberKind::Group => match state.store.get_group(m.id).await? {
                Some(g) => vec![
                    group_link(g.id, &g.display_name),
                    "—".into(),
                    "group".into(),
                ],
                None => vec![esc(&m.id.to_string()), "—".into(), "group (deleted)".into()],
            },
            MemberKind::Contact => vec![esc(&m.id.to_string()), "—".into(), "contact".into()],
        });
    }
    let next = match members.last().filter(|_| more) {
        Some(m) => format!(
            "<nav class=\"pager\" aria-label=\"Pages\"><a id=\"next\" rel=\"next\" href=\"{}\">Next members →</a></nav>",
            esc(&link(
                &format!("/admin/groups/{}", group.id),
                &[("after", member_cursor(m).as_str())]
            ))
        ),
        None => String::new(),
    };

    // Every policy that names the group.
    let mut naming: Vec<Vec<String>> = Vec::new();
    if group.display_name == state.config.admin_group {
        naming.push(vec![
            "Admin web UI".into(),
            "server setting <code>admin_group</code>".into(),
            "direct members may use these pages".into(),
        ]);
    }
    for r in state.store.list_rollout_policies().await? {
        if r.applies_to.contains(&group.id) {
            naming.push(vec![
                "Staged rollout".into(),
                format!("{} ({})", esc(&r.display_name), esc(r.feature.as_str())),
                if r.is_enabled {
                    "applies to the group (policy enabled)".into()
                } else {
                    "applies to the group (policy disabled)".into()
                },
            ]);
        }
    }
    for row in state.store.list_ca_policies().await? {
        let Ok(policy) = serde_json::from_str::<ConditionalAccessPolicy>(&row.policy) else {
            continue;
        };
        if let Some(how) = ca_naming(&policy, group.id) {
            naming.push(vec![
                "Conditional Access".into(),
                format!(
                    "<a href=\"/admin/policies/ca/{}\">{}</a> {}",
                    row.id,
                    esc(&row.display_name),
                    super::policies::state_badge(&row.state)
                ),
                esc(how),
            ]);
        }
    }
    let methods = crate::passkeys::load_methods_policy(&state).await?;
    for (m, included) in methods_naming(&methods, group.id) {
        naming.push(vec![
            "Authentication methods".into(),
            esc(method_name(m)),
            if included { "included" } else { "excluded" }.into(),
        ]);
    }

    let body = format!(
        "<section class=\"panel\" aria-labelledby=\"group-h\"><h2 id=\"group-h\">Group</h2><dl class=\"kv\">\
         <dt>Id</dt><dd><code>{id}</code></dd><dt>Source</dt><dd>{source}{anchor}</dd>\
         <dt>Membership</dt><dd>{kind}</dd><dt>Description</dt><dd>{desc}</dd><dt>Created</dt><dd>{created}</dd></dl></section>\
         <section class=\"panel\" aria-labelledby=\"members-h\"><h2 id=\"members-h\">Direct members</h2>{members}{next}</section>\
         <section class=\"panel\" aria-labelledby=\"naming-h\"><h2 id=\"naming-h\">Policies that name this group</h2>{naming}</section>",
        id = group.id,
        source = esc(group.source.as_str()),
        anchor = group
            .immutable_id
            .as_deref()
            .map(|a| format!(
                " <span class=\"small\">anchor <code>{}</code></span>",
                esc(a)
            ))
            .unwrap_or_default(),
        kind = esc(group.membership_kind.as_str()),
        desc = esc(group.description.as_deref().unwrap_or("—")),
        created = time_html(group.created_at),
        members = table(
            "members",
            "",
            &["Member", "User principal name", "Kind"],
            &rows,
            "The group has no direct members."
        ),
        naming = table(
            "naming",
            "",
            &["Where", "Policy", "How"],
            &naming,
            "No policy names this group."
        ),
    );
    Ok(admin_page(&admin, Nav::Groups, &group.display_name, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_positions_round_trip_and_refuse_junk() {
        let m = MemberRef {
            kind: MemberKind::Group,
            id: Uuid::from_u128(7),
        };
        assert_eq!(parse_member_cursor(&member_cursor(&m)), Some(m));
        for bad in [
            "",
            "user",
            "user:",
            "robot:00000000-0000-0000-0000-000000000007",
            "user:xyz",
        ] {
            assert_eq!(parse_member_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_methods_policy_names_groups_it_includes_or_excludes() {
        let g = Uuid::from_u128(1);
        let mut p = cutover_core::methods_policy::AuthenticationMethodsPolicy::default();
        assert!(methods_naming(&p, g).is_empty());
        p.totp.all_users = false;
        p.totp.include_groups.insert(g);
        p.password.exclude_groups.insert(g);
        assert_eq!(
            methods_naming(&p, g),
            vec![(PolicyMethod::Totp, true), (PolicyMethod::Password, false)]
        );
    }
}
