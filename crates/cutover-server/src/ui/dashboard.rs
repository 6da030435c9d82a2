//! `/admin`: the dashboard — sign-ins by route and by method over the last
//! [`DASHBOARD_DAYS`] days, the passkey campaigns, staged-rollout users per feature, the
//! report-only impact of Conditional Access policies, pass-through agent health and directory
//! sync. Every read is bounded; a panel says what it counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use cutover_core::Timestamp;
use cutover_core::limits::MAX_PAGE_SIZE;
use cutover_core::signin_log::{SignInRecord, SignInResult};
use cutover_store::{CaPolicyRow, Cursor, SignInFilter};

use super::svg::{self, ChartOpts};
use super::{Nav, UiError, admin_page, badge, require_admin, return_to, table, time_html};
use crate::AppState;
use crate::pages::esc;

/// Days of sign-ins the charts cover (today included).
pub(crate) const DASHBOARD_DAYS: usize = 14;
/// Most sign-in records the dashboard reads (the newest); the panel says when it stopped.
pub(crate) const MAX_DASHBOARD_SIGN_INS: usize = 20_000;
/// Most group members the staged-rollout panel reads, over all policies.
pub(crate) const MAX_DASHBOARD_ROLLOUT_MEMBERS: usize = 20_000;
/// Most report-only policies whose impact the dashboard computes (each reads the log).
pub(crate) const MAX_DASHBOARD_IMPACT_POLICIES: usize = 10;
/// Method combinations drawn as their own series; the rest are "other".
pub(crate) const METHOD_SERIES: usize = 6;
/// The window of the report-only impact (the enforcement gate's).
const IMPACT_WINDOW_SECS: i64 = crate::conditional_access::IMPACT_WINDOW_SECS;
const DAY_MS: i64 = 86_400_000;

pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, UiError> {
    let admin = require_admin(&state, &headers, &return_to(&uri)).await?;
    let now = state.now();
    let mut body = String::new();
    body.push_str(&sign_in_panel(&state, now).await?);
    body.push_str(&campaigns_panel(&state).await);
    body.push_str(&rollout_panel(&state).await?);
    body.push_str(&impact_panel(&state, now).await?);
    body.push_str("<div class=\"grid\">");
    body.push_str(&agents_panel(&state, now).await?);
    body.push_str(&sync_panel(&state).await?);
    body.push_str("</div>");
    Ok(admin_page(&admin, Nav::Dashboard, "Dashboard", &body))
}

// ---- sign-ins per day ---------------------------------------------------------------------

/// Sign-ins per day by route and by method: what the two stacked bar charts draw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DailyCounts {
    /// `MM-DD` of each day, oldest first.
    pub days: Vec<String>,
    /// `managed`, `federated`, `not routed`: one count per day each.
    pub by_route: Vec<(String, Vec<f64>)>,
    /// The [`METHOD_SERIES`] commonest method combinations, then `other`.
    pub by_method: Vec<(String, Vec<f64>)>,
    /// `success`, `failure`, `interrupted`: one count per day each.
    pub by_result: Vec<(String, Vec<f64>)>,
    /// Records that fell in the window.
    pub counted: usize,
}

/// The midnight (UTC) that starts the first of `days` days ending with `now`'s day.
pub(crate) fn first_day(now: Timestamp, days: usize) -> Timestamp {
    let today = now.millis().div_euclid(DAY_MS) * DAY_MS;
    Timestamp::from_millis(today - (days.saturating_sub(1) as i64) * DAY_MS)
}

/// How a record names its methods on the chart: `password + totp`, or `none`.
fn method_label(r: &SignInRecord) -> String {
    if r.authentication_methods.is_empty() {
        "none".into()
    } else {
        r.authentication_methods.join(" + ")
    }
}

/// Count `records` per day from `start` (a midnight) over `days` days. Records outside the
/// window are left out. Pure: the same records give the same counts in the same order.
pub(crate) fn daily_counts(records: &[SignInRecord], start: Timestamp, days: usize) -> DailyCounts {
    let labels: Vec<String> = (0..days)
        .map(|d| {
            let t =
                crate::clock::rfc3339(Timestamp::from_millis(start.millis() + d as i64 * DAY_MS));
            t.get(5..10).unwrap_or("").to_owned()
        })
        .collect();
    let routes = ["managed", "federated", "not routed"];
    let mut by_route: Vec<Vec<f64>> = vec![vec![0.0; days]; routes.len()];
    let results = ["success", "failure", "interrupted"];
    let mut by_result: Vec<Vec<f64>> = vec![vec![0.0; days]; results.len()];
    let mut methods: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut counted = 0;
    for r in records {
        let offset = r.created_at.millis() - start.millis();
        if offset < 0 {
            continue;
        }
        let day = (offset / DAY_MS) as usize;
        if day >= days {
            continue;
        }
        counted += 1;
        let ri = match r.route.as_deref() {
            Some("managed") => 0,
            Some("federated") => 1,
            _ => 2,
        };
        if let Some(v) = by_route.get_mut(ri).and_then(|s| s.get_mut(day)) {
            *v += 1.0;
        }
        let rs = match r.result {
            SignInResult::Success => 0,
            SignInResult::Failure => 1,
            SignInResult::Interrupted => 2,
        };
        if let Some(v) = by_result.get_mut(rs).and_then(|s| s.get_mut(day)) {
            *v += 1.0;
        }
        let m = methods
            .entry(method_label(r))
            .or_insert_with(|| vec![0.0; days]);
        if let Some(v) = m.get_mut(day) {
            *v += 1.0;
        }
    }
    // Commonest first (ties by name), the tail folded into "other".
    let mut ranked: Vec<(String, Vec<f64>)> = methods.into_iter().collect();
    ranked.sort_by(|a, b| {
        let (ta, tb) = (a.1.iter().sum::<f64>(), b.1.iter().sum::<f64>());
        tb.total_cmp(&ta).then_with(|| a.0.cmp(&b.0))
    });
    let mut by_method: Vec<(String, Vec<f64>)> = Vec::new();
    let mut other = vec![0.0; days];
    for (i, (name, counts)) in ranked.into_iter().enumerate() {
        if i < METHOD_SERIES {
            by_method.push((name, counts));
        } else {
            for (o, c) in other.iter_mut().zip(&counts) {
                *o += c;
            }
        }
    }
    if other.iter().any(|v| *v > 0.0) {
        by_method.push(("other".into(), other));
    }
    DailyCounts {
        days: labels,
        by_route: routes
            .iter()
            .map(|r| (*r).to_owned())
            .zip(by_route)
            .collect(),
        by_method,
        by_result: results
            .iter()
            .map(|r| (*r).to_owned())
            .zip(by_result)
            .collect(),
        counted,
    }
}

/// The newest sign-ins since `since`, at most `max`, page by page; and whether it stopped
/// before the window's start.
pub(crate) async fn read_sign_ins(
    state: &AppState,
    since: Timestamp,
    max: usize,
) -> Result<(Vec<SignInRecord>, bool), cutover_store::StoreError> {
    let mut out: Vec<SignInRecord> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = state
            .store
            .list_sign_ins(&SignInFilter {
                since: Some(since),
                older_than: cursor,
                top: MAX_PAGE_SIZE,
                ..SignInFilter::default()
            })
            .await?;
        let full = page.len() == MAX_PAGE_SIZE as usize;
        cursor = page.last().map(|r| Cursor {
            created_at: r.created_at,
            id: r.id,
        });
        for r in page {
            if out.len() >= max {
                return Ok((out, true));
            }
            out.push(r);
        }
        if !full {
            return Ok((out, false));
        }
    }
}

/// A day-by-series table under a chart.
fn series_table(id: &str, caption: &str, days: &[String], series: &[(String, Vec<f64>)]) -> String {
    let mut headers: Vec<String> = vec!["Day".into()];
    headers.extend(series.iter().map(|s| format!("#{}", s.0)));
    headers.push("#Total".into());
    let rows: Vec<Vec<String>> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut row = vec![esc(d)];
            let mut total = 0.0;
            for s in series {
                let v = s.1.get(i).copied().unwrap_or(0.0);
                total += v;
                row.push(svg::fmt_num(v));
            }
            row.push(svg::fmt_num(total));
            row
        })
        .collect();
    let h: Vec<&str> = headers.iter().map(String::as_str).collect();
    format!(
        "<details><summary>Show the numbers</summary>{}</details>",
        table(id, caption, &h, &rows, "No sign-ins.")
    )
}

async fn sign_in_panel(state: &AppState, now: Timestamp) -> Result<String, UiError> {
    let start = first_day(now, DASHBOARD_DAYS);
    let (records, truncated) = read_sign_ins(state, start, MAX_DASHBOARD_SIGN_INS).await?;
    let counts = daily_counts(&records, start, DASHBOARD_DAYS);
    let note = if truncated {
        format!(
            "Counted the newest {} sign-ins since {} UTC (the dashboard reads at most {MAX_DASHBOARD_SIGN_INS}; older ones in the window are left out — use the <a href=\"/admin/signins\">sign-in log</a> or <code>cutover admin sign-ins</code> for all).",
            counts.counted,
            esc(&super::short_time(start)),
        )
    } else {
        format!(
            "Counted {} sign-ins since {} UTC (every record of the last {DASHBOARD_DAYS} days).",
            counts.counted,
            esc(&super::short_time(start)),
        )
    };
    let route_chart = svg::stacked_bars(
        &format!("Sign-ins per day by route, last {DASHBOARD_DAYS} days"),
        &counts.days,
        &counts.by_route,
        &ChartOpts {
            desc: Some(
                "Managed: checked by Cutover; federated: by the upstream identity provider; not routed: application tokens and attempts that stopped before routing.",
            ),
            ..ChartOpts::default()
        },
    );
    let (managed, federated) = (
        counts.by_route[0].1.iter().sum::<f64>(),
        counts.by_route[1].1.iter().sum::<f64>(),
    );
    let managed_share = if managed + federated > 0.0 {
        managed / (managed + federated) * 100.0
    } else {
        0.0
    };
    let ring = svg::progress_ring(
        "Routed sign-ins checked by Cutover (managed)",
        managed_share,
        100.0,
    );
    let result_chart = svg::line_chart(
        &format!("Sign-ins per day by result, last {DASHBOARD_DAYS} days"),
        &counts.days,
        &counts.by_result,
        None,
        false,
    );
    let method_chart = svg::stacked_bars(
        &format!("Sign-ins per day by method, last {DASHBOARD_DAYS} days"),
        &counts.days,
        &counts.by_method,
        &ChartOpts::default(),
    );
    Ok(format!(
        "<section class=\"panel\" id=\"sign-ins\" aria-labelledby=\"sign-ins-h\"><h2 id=\"sign-ins-h\">Sign-ins</h2>\
         <p class=\"muted\" id=\"sign-ins-counted\" data-counted=\"{n}\">{note}</p>\
         <div class=\"grid\"><div><h3>Cut-over progress</h3>{ring}\
         <p class=\"small\" id=\"managed-share\">{managed} managed and {federated} federated sign-ins: {share} checked by Cutover.</p></div>\
         <div><h3>Results</h3><dl class=\"kv\" id=\"result-totals\">{totals}</dl></div></div>\
         <h3>By result</h3>{result_chart}{result_table}\
         <h3>By route</h3>{route_chart}{route_table}\
         <h3>By method</h3>{method_chart}{method_table}</section>",
        n = counts.counted,
        totals = counts
            .by_result
            .iter()
            .map(|(name, v)| format!(
                "<dt>{}</dt><dd>{}</dd>",
                esc(name),
                svg::fmt_num(v.iter().sum())
            ))
            .collect::<String>(),
        managed = svg::fmt_num(managed),
        federated = svg::fmt_num(federated),
        share = esc(&svg::fmt_pct(managed_share)),
        result_table = series_table(
            "sign-ins-by-result",
            "Sign-ins per day by result",
            &counts.days,
            &counts.by_result
        ),
        route_table = series_table(
            "sign-ins-by-route",
            "Sign-ins per day by route",
            &counts.days,
            &counts.by_route
        ),
        method_table = series_table(
            "sign-ins-by-method",
            "Sign-ins per day by method",
            &counts.days,
            &counts.by_method
        ),
    ))
}

// ---- campaigns ------------------------------------------------------------------------------

/// The passkey campaigns panel: every wave's enrolment against its target, and the way in to
/// `/admin/campaigns`.
async fn campaigns_panel(state: &AppState) -> String {
    format!(
        "<section class=\"panel\" id=\"campaigns\" aria-labelledby=\"campaigns-h\"><h2 id=\"campaigns-h\">Passkey campaigns</h2>\
         {cards}<p><a href=\"/admin/campaigns\" id=\"campaigns-link\">Open the passkey campaigns</a> (waves, enrolment by device family, e-mails, enforcement and rollback).</p></section>",
        cards = crate::campaigns::pages::dashboard_cards(state).await
    )
}

// ---- staged rollout -------------------------------------------------------------------------

async fn rollout_panel(state: &AppState) -> Result<String, UiError> {
    let policies = state.store.list_rollout_policies().await?;
    let mut budget = MAX_DASHBOARD_ROLLOUT_MEMBERS;
    let mut truncated = false;
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for p in &policies {
        let mut seen: HashSet<uuid::Uuid> = HashSet::new();
        let mut switched = 0u64;
        'groups: for g in &p.applies_to {
            let mut after = None;
            loop {
                let page = state
                    .store
                    .rollout_group_members(*g, after, MAX_PAGE_SIZE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.user.id);
                for m in &page {
                    if budget == 0 {
                        truncated = true;
                        break 'groups;
                    }
                    budget -= 1;
                    if seen.insert(m.user.id) && m.staged.effective.contains(p.feature) {
                        switched += 1;
                    }
                }
                if page.len() < MAX_PAGE_SIZE as usize {
                    break;
                }
            }
        }
        bars.push((
            format!("{} ({})", p.feature.as_str(), p.display_name),
            switched as f64,
        ));
        rows.push(vec![
            esc(p.feature.as_str()),
            esc(&p.display_name),
            if p.is_enabled {
                badge("enabled", "ok")
            } else {
                badge("disabled", "")
            },
            p.applies_to.len().to_string(),
            seen.len().to_string(),
            switched.to_string(),
        ]);
    }
    if policies.is_empty() {
        return Ok("<section class=\"panel\" id=\"rollout\" aria-labelledby=\"rollout-h\"><h2 id=\"rollout-h\">Staged rollout</h2>\
                   <p class=\"muted\">No feature rollout policy exists. See <a href=\"/admin/policies\">policies</a>.</p></section>".into());
    }
    let chart = svg::hbars(
        "Users switched to each staged-rollout feature",
        &bars,
        false,
    );
    let note = if truncated {
        format!(
            "<p class=\"muted\">Stopped after {MAX_DASHBOARD_ROLLOUT_MEMBERS} group members: the counts are lower bounds.</p>"
        )
    } else {
        String::new()
    };
    Ok(format!(
        "<section class=\"panel\" id=\"rollout\" aria-labelledby=\"rollout-h\"><h2 id=\"rollout-h\">Staged rollout</h2>\
         <p class=\"muted\">Users whose sign-ins the feature routes now (it takes effect at a user's next interactive sign-in).</p>\
         {chart}{note}{t}</section>",
        t = table(
            "rollout-table",
            "Staged-rollout users per feature",
            &[
                "Feature",
                "Policy",
                "State",
                "#Groups",
                "#Members",
                "#Switched"
            ],
            &rows,
            "",
        ),
    ))
}

// ---- report-only impact ---------------------------------------------------------------------

async fn impact_panel(state: &AppState, now: Timestamp) -> Result<String, UiError> {
    let report_only: Vec<CaPolicyRow> = state
        .store
        .list_ca_policies()
        .await?
        .into_iter()
        .filter(|p| p.state == CaPolicyRow::REPORT_ONLY)
        .collect();
    let head = "<section class=\"panel\" id=\"impact\" aria-labelledby=\"impact-h\"><h2 id=\"impact-h\">Report-only Conditional Access</h2>";
    if report_only.is_empty() {
        return Ok(format!(
            "{head}<p class=\"muted\">No Conditional Access policy is in report-only mode. See <a href=\"/admin/policies\">policies</a>.</p></section>"
        ));
    }
    let since = now.minus_secs(IMPACT_WINDOW_SECS);
    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for p in report_only.iter().take(MAX_DASHBOARD_IMPACT_POLICIES) {
        let (imp, gate) = crate::conditional_access::impact_and_gate(state, p, since).await?;
        bars.push((p.display_name.clone(), imp.interruption_rate));
        rows.push(vec![
            format!(
                "<a href=\"/admin/policies/ca/{}\">{}</a>",
                p.id,
                esc(&p.display_name)
            ),
            imp.records.to_string(),
            imp.applied_users.to_string(),
            imp.interrupted_users.to_string(),
            svg::fmt_pct(imp.interruption_rate),
            if gate.allowed {
                badge("gate open", "ok")
            } else {
                badge("gate closed", "warn")
            },
        ]);
    }
    let more = if report_only.len() > MAX_DASHBOARD_IMPACT_POLICIES {
        format!(
            "<p class=\"muted\">Showing the first {MAX_DASHBOARD_IMPACT_POLICIES} of {} report-only policies (by name); the others are on <a href=\"/admin/policies\">policies</a>.</p>",
            report_only.len()
        )
    } else {
        String::new()
    };
    let chart = svg::hbars(
        "Share of each report-only policy's users it would interrupt, last 48 h",
        &bars,
        true,
    );
    Ok(format!(
        "{head}<p class=\"muted\">Over the last 48 hours: sign-ins each policy evaluated, the users it applied to and those it would have interrupted or blocked if enforced.</p>\
         {chart}{t}{more}</section>",
        t = table(
            "impact-table",
            "Report-only impact, last 48 h",
            &[
                "Policy",
                "#Sign-ins evaluated",
                "#Users applied",
                "#Would interrupt",
                "#Rate",
                "Enforcement gate"
            ],
            &rows,
            "",
        ),
    ))
}

// ---- agents and sync ------------------------------------------------------------------------

async fn agents_panel(state: &AppState, now: Timestamp) -> Result<String, UiError> {
    let agents = state.store.list_agents().await?;
    let head = "<section class=\"panel\" id=\"agents\" aria-labelledby=\"agents-h\"><h2 id=\"agents-h\">Pass-through agents</h2>";
    if agents.is_empty() {
        return Ok(format!(
            "{head}<p class=\"muted\">No pass-through agent is registered (<code>cutover admin agents token</code> issues a registration token).</p></section>"
        ));
    }
    let (healthy, warning) = crate::pta::fleet_of(&agents, now);
    let warn = warning
        .map(|w| format!("<div class=\"error\" role=\"status\">{}</div>", esc(&w)))
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let h = crate::pta::health_of(a, now);
            let kind = match h {
                cutover_core::pta::AgentHealth::Healthy => "ok",
                cutover_core::pta::AgentHealth::Disabled => "",
                cutover_core::pta::AgentHealth::Stale
                | cutover_core::pta::AgentHealth::DirectoryUnreachable => "warn",
                cutover_core::pta::AgentHealth::Offline => "bad",
            };
            vec![
                esc(&a.host),
                esc(&a.version),
                badge(h.as_str(), kind),
                a.last_heartbeat.map_or("never".into(), |t| {
                    format!("{} ({} s ago)", time_html(t), now.secs_since(t).max(0))
                }),
            ]
        })
        .collect();
    Ok(format!(
        "{head}<p class=\"stat\" id=\"agents-healthy\">{healthy} of {} healthy</p>{warn}{t}</section>",
        agents.len(),
        t = table(
            "agents-table",
            "",
            &["Host", "Version", "Health", "Last seen"],
            &rows,
            ""
        ),
    ))
}

async fn sync_panel(state: &AppState) -> Result<String, UiError> {
    use cutover_proto::sync::{RunOutcome, SyncRole};
    let lease = state.store.sync_lease().await?;
    let servers = state.store.list_sync_servers().await?;
    let head = "<section class=\"panel\" id=\"sync\" aria-labelledby=\"sync-h\"><h2 id=\"sync-h\">Directory sync</h2>";
    if servers.is_empty() {
        return Ok(format!(
            "{head}<p class=\"muted\">No sync server has registered.</p></section>"
        ));
    }
    let mut pending_total = 0u64;
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let v = crate::sync::view(s, lease.holder.as_deref());
            pending_total += v.pending_changes.unwrap_or(0);
            let run = v.last_run.as_ref().map_or("no run reported".into(), |r| {
                let (label, kind) = match r.outcome {
                    RunOutcome::Success => ("success", "ok"),
                    RunOutcome::CompletedWithErrors => ("completed with errors", "warn"),
                    RunOutcome::DeleteThresholdExceeded => ("delete threshold exceeded", "bad"),
                    RunOutcome::Demoted => ("demoted", "warn"),
                    RunOutcome::Failed => ("failed", "bad"),
                };
                format!("{} {}", badge(label, kind), esc(&r.finished_at))
            });
            vec![
                esc(&v.name),
                match v.role {
                    SyncRole::Active => badge("active", "info"),
                    SyncRole::Staging => badge("staging", ""),
                },
                time_html(s.last_seen_at),
                run,
                v.pending_changes.map_or("–".into(), |n| n.to_string()),
                v.alert.as_deref().map(esc).unwrap_or_default(),
            ]
        })
        .collect();
    Ok(format!(
        "{head}<p class=\"stat\" id=\"sync-pending\">{pending_total} pending exports</p>\
         <p class=\"muted\">Details: <code>cutover admin sync pending-exports NAME</code> or <code>GET /api/v1/sync/servers/NAME/pendingExports</code>.</p>{t}</section>",
        t = table(
            "sync-table",
            "",
            &[
                "Server",
                "Role",
                "Last seen",
                "Last run",
                "#Pending",
                "Alert"
            ],
            &rows,
            ""
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::signin_log::{LockoutDecision, SignInResult};
    use uuid::Uuid;

    fn rec(at: i64, route: Option<&str>, methods: &[&str]) -> SignInRecord {
        SignInRecord {
            id: Uuid::now_v7(),
            created_at: Timestamp::from_millis(at),
            correlation_id: Uuid::nil(),
            user_id: None,
            user_principal_name: None,
            app_id: None,
            client_id: None,
            ip_address: None,
            user_agent: None,
            client_app_type: None,
            device_platform: None,
            device_family: None,
            is_interactive: true,
            route: route.map(str::to_owned),
            route_reason: None,
            authentication_methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            staged_rollout_feature: None,
            staged_rollout: None,
            agent_id: None,
            conditional_access: vec![],
            lockout_decision: LockoutDecision::NotEvaluated,
            result: SignInResult::Success,
            failure_reason: None,
        }
    }

    #[test]
    fn the_window_starts_at_midnight_and_ends_today() {
        // 2026-05-14T10:30:00Z.
        let now = Timestamp::from_secs(1_778_754_600);
        let start = first_day(now, 14);
        assert_eq!(crate::clock::rfc3339(start), "2026-05-01T00:00:00Z");
        assert_eq!(
            first_day(now, 1).millis(),
            now.millis().div_euclid(DAY_MS) * DAY_MS
        );
        let c = daily_counts(&[], start, 14);
        assert_eq!(c.days.len(), 14);
        assert_eq!(c.days.first().map(String::as_str), Some("05-01"));
        assert_eq!(c.days.last().map(String::as_str), Some("05-14"));
        assert_eq!(c.counted, 0);
        assert!(c.by_method.is_empty());
        assert_eq!(c.by_route.len(), 3);
    }

    #[test]
    fn records_are_counted_by_day_route_and_method_inside_the_window_only() {
        let start = Timestamp::from_millis(100 * DAY_MS);
        let at = |day: i64, ms: i64| start.millis() + day * DAY_MS + ms;
        let records = vec![
            rec(at(0, 0), Some("managed"), &["password"]),
            rec(at(0, DAY_MS - 1), Some("managed"), &["password", "totp"]),
            rec(at(1, 5), Some("federated"), &["federated"]),
            rec(at(2, 5), None, &["clientSecret"]),
            rec(at(2, 6), None, &[]),
            // Outside: the millisecond before, and the first of the day after the window.
            rec(start.millis() - 1, Some("managed"), &["password"]),
            rec(at(3, 0), Some("managed"), &["password"]),
        ];
        let c = daily_counts(&records, start, 3);
        assert_eq!(c.counted, 5);
        assert_eq!(c.by_route[0], ("managed".into(), vec![2.0, 0.0, 0.0]));
        assert_eq!(c.by_route[1], ("federated".into(), vec![0.0, 1.0, 0.0]));
        assert_eq!(c.by_route[2], ("not routed".into(), vec![0.0, 0.0, 2.0]));
        assert_eq!(c.by_result[0], ("success".into(), vec![2.0, 1.0, 2.0]));
        assert_eq!(c.by_result[1].1, vec![0.0; 3]);
        let names: Vec<&str> = c.by_method.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "clientSecret",
                "federated",
                "none",
                "password",
                "password + totp"
            ],
            "ties by name"
        );
    }

    #[test]
    fn methods_beyond_the_series_limit_become_other() {
        let start = Timestamp::from_millis(0);
        let mut records = Vec::new();
        // Method i used i+1 times: the commonest METHOD_SERIES keep their own series.
        for i in 0..=METHOD_SERIES {
            for _ in 0..=i {
                records.push(rec(5, Some("managed"), &[&format!("m{i}")]));
            }
        }
        let c = daily_counts(&records, start, 1);
        assert_eq!(c.by_method.len(), METHOD_SERIES + 1);
        assert_eq!(c.by_method[0].0, format!("m{METHOD_SERIES}"));
        assert_eq!(c.by_method[METHOD_SERIES], ("other".into(), vec![1.0]));
        // Exactly METHOD_SERIES methods: no "other".
        let c = daily_counts(&records[1..], start, 1);
        assert_eq!(c.by_method.len(), METHOD_SERIES);
        assert!(c.by_method.iter().all(|s| s.0 != "other"));
    }
}
