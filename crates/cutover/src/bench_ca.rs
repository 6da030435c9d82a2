//! The Conditional Access phases of `cutover bench`.
//!
//! In the pure core, on every core: `conditional_access::evaluate` per sign-in with 1, 50 and
//! 200 policies over `--ca-groups` groups, from the core's own deterministic generator
//! (`bench_inputs`: the signing-in user is a direct member of every one of the groups; a fifth
//! of the policies include all users, the others 1–20 groups, about a quarter of them drawn
//! from the user's; named locations of 320 ranges each, every kind of grant, a quarter of the
//! policies report-only and one in twenty disabled).
//!
//! On each backend, after the other phases: full password sign-ins with 200 policies created
//! through the admin API, divided by the same sign-ins with none. The policies are built so
//! that they cost what they would in a tenant without changing the sign-in's outcome: 190
//! report-only, each naming three of 50 groups (every bench user is a direct member of ten,
//! so each is in scope of about three in five), and 10 enabled past the gate with
//! `?force=true` that block but never apply to the bench users (another client app type, or
//! another application). A sign-in still succeeds only if no enforced policy applies, which
//! the phase checks by completing every sign-in. The rounds go without (half), with (two
//! halves), without (half): the policies are deleted again before the last round, so that
//! warm-up and drift fall on both kinds alike.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutover_core::conditional_access::{Decision, bench_inputs, evaluate};
use serde_json::{Value, json};

use super::routing::{parallel_cpu_batched, timer_overhead};
use super::{AdminApi, PHASE_TIME_LIMIT, Phase, Server, Target, id_of, sign_in_round, summarize};

/// The policy counts of the core phase.
pub const CORE_POLICY_COUNTS: [usize; 3] = [1, 50, 200];
/// The core generator's seed: every run evaluates the same inputs.
const SEED: u64 = 0xca5e_2026_1122;
/// One evaluation in this many is timed on its own for p50/p99.
pub const SAMPLE_EVERY: usize = 4;

/// Policies the server phase creates.
pub const SERVER_POLICIES: usize = 200;
/// Of which one in this many is enabled (forced past the gate) and never applies.
const ENFORCED_EVERY: usize = 20;
/// Groups the server phase creates; the bench users are members of a fifth of them each.
pub const SERVER_GROUPS: usize = 50;
/// Memberships repeat with this period: user `j` is in every group `g` with `g ≡ j`.
const MEMBERSHIP_PERIOD: usize = 5;
/// Groups each report-only policy includes (consecutive ones: 3 of the 5 residues).
const GROUPS_PER_POLICY: usize = 3;

const POLICIES_PATH: &str = "/identity/conditionalAccess/policies";

// --- the core ----------------------------------------------------------------------------

/// One policy count's figures.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreRow {
    pub policies: usize,
    /// Policies the engine evaluated (the disabled ones are skipped).
    pub evaluated: usize,
    /// Of those, the ones that applied to the sign-in (report-only included).
    pub applied: usize,
    /// The decision the enforced ones add up to (the same every time: the inputs are fixed).
    pub decision: &'static str,
    pub done: usize,
    pub per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Evaluations per second ÷ raw argon2id verifications per second.
    pub per_argon2id_verification: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreResult {
    /// The user's groups (a direct member of all of them).
    pub groups: usize,
    pub rows: Vec<CoreRow>,
    /// Median cost of the per-evaluation timer, in µs (included in p50 and p99).
    pub timer_overhead_us: f64,
    /// One evaluation in this many was timed for p50 and p99; the rate counts all.
    pub sampled_one_in: usize,
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Block { .. } => "block",
        Decision::StepUp { .. } => "stepUp",
        Decision::Reauthenticate { .. } => "reauthenticate",
    }
}

/// Evaluate `evaluations` times for each of [`CORE_POLICY_COUNTS`] over `groups` groups.
pub fn run_core(evaluations: usize, groups: usize, argon_per_sec: f64) -> CoreResult {
    let mut rows = Vec::new();
    for policies in CORE_POLICY_COUNTS {
        let started = Instant::now();
        let (checked, owned) = bench_inputs(policies, groups, SEED);
        let facts = owned.facts();
        let once = evaluate(&checked, &facts);
        let applied = once.results.iter().filter(|r| r.result.applied()).count();
        eprintln!(
            "conditional access: {policies} policies, {groups} groups generated and checked in {} ms ({} evaluated, {applied} apply; decision {})",
            started.elapsed().as_millis(),
            once.results.len(),
            decision_name(&once.decision)
        );
        let p = parallel_cpu_batched(
            evaluations,
            SAMPLE_EVERY,
            &format!("conditional access: {policies} policies"),
            |_| {
                black_box(evaluate(black_box(&checked), black_box(&facts)));
            },
        );
        rows.push(CoreRow {
            policies,
            evaluated: once.results.len(),
            applied,
            decision: decision_name(&once.decision),
            done: p.done,
            per_sec: p.per_sec,
            p50_us: p.p50_ms * 1000.0,
            p99_us: p.p99_ms * 1000.0,
            per_argon2id_verification: p.per_sec / argon_per_sec.max(1e-9),
        });
    }
    CoreResult {
        groups,
        rows,
        timer_overhead_us: timer_overhead().as_secs_f64() * 1e6,
        sampled_one_in: SAMPLE_EVERY,
    }
}

/// The core rows of the printed table.
pub fn print_core(r: &CoreResult) {
    println!(
        "ca        Conditional Access evaluation in the core, one sign-in by a user directly in {} groups;",
        r.groups
    );
    println!(
        "          policies from the core's seeded generator: a fifth include all users, the others 1-20 groups"
    );
    println!(
        "          (a quarter of them the user's); named locations of 320 ranges; every kind of grant;"
    );
    println!("          a quarter report-only, one in twenty disabled");
    println!(
        "{:<9} {:<28} {:>8} {:>10} {:>9} {:>9} {:>11}",
        "", "measure", "done", "per sec", "p50 µs", "p99 µs", "ratio"
    );
    for row in &r.rows {
        println!(
            "{:<9} {:<28} {:>8} {:>10.0} {:>9.3} {:>9.3} {:>8.0} ÷ argon2id/s",
            "core",
            format!(
                "CA evaluation, {} {}",
                row.policies,
                if row.policies == 1 {
                    "policy"
                } else {
                    "policies"
                }
            ),
            row.done,
            row.per_sec,
            row.p50_us,
            row.p99_us,
            row.per_argon2id_verification
        );
    }
    let applied: Vec<String> = r
        .rows
        .iter()
        .map(|row| {
            format!(
                "{}: {} of {} evaluated apply, {}",
                row.policies, row.applied, row.evaluated, row.decision
            )
        })
        .collect();
    println!("{:<9} {}", "", applied.join("; "));
    if let Some(last) = r.rows.last() {
        println!(
            "{:<9} one evaluation with {} policies costs {:.4} % of one argon2id verification; p50/p99 from one",
            "",
            last.policies,
            100.0 / last.per_argon2id_verification.max(1e-9)
        );
    }
    println!(
        "{:<9} evaluation in {} timed alone (the clock's own {:.3} µs included); the rate counts every one",
        "", r.sampled_one_in, r.timer_overhead_us
    );
}

// --- the server ------------------------------------------------------------------------------

/// The server phase's figures.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerResult {
    pub policies: usize,
    pub report_only: usize,
    /// Enabled with `?force=true`; none applies to the bench users.
    pub enforced: usize,
    pub groups: usize,
    /// Groups each bench user is a direct member of.
    pub groups_per_user: usize,
    /// Report-only policies whose groups include the first bench user (before exclusions).
    pub in_scope_of_first_user: usize,
    /// Per-policy results on the first bench user's last measured sign-in record.
    pub results_recorded: usize,
    /// Of those, report-only results of policies that applied.
    pub report_only_applied: usize,
    /// The same full password sign-ins with no policy (rounds before and after).
    pub without: Phase,
    /// With the policies (the rounds in between).
    pub with_policies: Phase,
    /// Sign-ins per second with the policies ÷ without.
    pub with_over_without: f64,
    /// The server process's CPU time (user + system) per measured sign-in, in ms, without
    /// and with the policies (`None` where `/proc` cannot tell).
    pub server_cpu_ms_without: Option<f64>,
    pub server_cpu_ms_with: Option<f64>,
}

/// A process's CPU time (user + system) in ms, from `/proc/<pid>/stat`.
fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // The kernel's clock tick is 100 Hz on Linux.
    Some(ticks as f64 * 10.0)
}

/// Latencies, wall time and the server's CPU ms of the rounds of one kind (`None` once a
/// round's could not be read).
struct Rounds {
    lat: Vec<f64>,
    time: Duration,
    cpu_ms: Option<f64>,
}

impl Rounds {
    fn new() -> Self {
        Self {
            lat: Vec::new(),
            time: Duration::ZERO,
            cpu_ms: Some(0.0),
        }
    }

    fn add(&mut self, (lat, time): (Vec<f64>, Duration), cpu_ms: Option<f64>) {
        self.lat.extend(lat);
        self.time += time;
        self.cpu_ms = self.cpu_ms.zip(cpu_ms).map(|(a, b)| a + b);
    }

    fn per_sign_in(&self) -> Option<f64> {
        self.cpu_ms
            .filter(|_| !self.lat.is_empty())
            .map(|c| c / self.lat.len() as f64)
    }
}

/// Whether server policy `i` is one of the enforced ones.
fn is_enforced(i: usize) -> bool {
    i.is_multiple_of(ENFORCED_EVERY)
}

fn policy_body(i: usize, enforced: bool) -> Value {
    let groups: Vec<usize> = (0..GROUPS_PER_POLICY)
        .map(|k| (i + k) % SERVER_GROUPS)
        .collect();
    let mut users = json!({"includeUsers": [], "includeGroups": groups});
    // One in seven also excludes a group: the exclusion path is exercised too.
    if i % 7 == 3 {
        users["excludeGroups"] = json!([(i + 1) % SERVER_GROUPS]);
    }
    let (applications, client_app_types) = if enforced && (i / ENFORCED_EVERY).is_multiple_of(2) {
        // Another client app type than the bench application's (browser).
        (json!(["All"]), json!(["exchangeActiveSync", "other"]))
    } else if enforced {
        // Another application than the bench one.
        (
            json!([uuid::Uuid::from_u128(0xbe4c_0000 + i as u128)]),
            json!(["all"]),
        )
    } else {
        (json!(["All"]), json!(["all"]))
    };
    let mut body = json!({
        "displayName": format!("Bench policy {i}"),
        "state": "enabledForReportingButNotEnforced",
        "conditions": {
            "users": users,
            "applications": {"includeApplications": applications},
            "clientAppTypes": client_app_types,
        },
    });
    if enforced {
        body["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]});
        return body;
    }
    match i % 4 {
        0 => body["grantControls"] = json!({"operator": "OR", "builtInControls": ["mfa"]}),
        1 => body["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]}),
        2 => {
            body["grantControls"] =
                json!({"operator": "AND", "authenticationStrength": {"id": "phishingResistantMfa"}})
        }
        _ => {
            body["sessionControls"] =
                json!({"signInFrequency": {"isEnabled": true, "value": 1, "type": "hours"}})
        }
    }
    body
}

/// Create the [`SERVER_GROUPS`] groups and put each bench user in a fifth of them. Returns
/// the group ids.
async fn seed_groups(api: &AdminApi, target: &Target) -> anyhow::Result<Vec<String>> {
    let mut groups = Vec::new();
    for n in 0..SERVER_GROUPS {
        let g = api
            .post(
                "/groups",
                json!({"displayName": format!("CA bench group {n}")}),
            )
            .await?;
        groups.push(id_of(&g)?);
    }
    for (j, upn) in target.users.iter().enumerate() {
        let id = id_of(&api.get(&format!("/users/{upn}")).await?)?;
        for g in (0..SERVER_GROUPS).filter(|g| g % MEMBERSHIP_PERIOD == j % MEMBERSHIP_PERIOD) {
            api.post(
                &format!("/groups/{}/members", groups[g]),
                json!({"id": id, "memberType": "user"}),
            )
            .await?;
        }
    }
    Ok(groups)
}

/// Create the [`SERVER_POLICIES`] policies (group indices replaced by `groups`' ids) and
/// force the enforced ones on. Returns the policy ids.
async fn create_policies(api: &AdminApi, groups: &[String]) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut enforce = Vec::new();
    for i in 0..SERVER_POLICIES {
        let enforced = is_enforced(i);
        let mut body = policy_body(i, enforced);
        for list in ["includeGroups", "excludeGroups"] {
            if let Some(Value::Array(v)) = body["conditions"]["users"].get_mut(list) {
                for g in v.iter_mut() {
                    let n = g.as_u64().context("a group index")? as usize;
                    *g = json!(groups[n]);
                }
            }
        }
        let p = api.post(POLICIES_PATH, body).await?;
        let id = id_of(&p)?;
        if enforced {
            enforce.push(id.clone());
        }
        ids.push(id);
    }
    for id in &enforce {
        let req = api
            .http
            .patch(format!(
                "{}/api/v1{POLICIES_PATH}/{id}?force=true",
                api.base
            ))
            .json(&json!({"state": "enabled"}));
        let p = api
            .send(req, "PATCH …/policies/{id}?force=true (enable)")
            .await?;
        if p["state"] != "enabled" {
            bail!("policy {id} is not enabled after a forced switch: {p}");
        }
    }
    Ok(ids)
}

async fn delete_policies(api: &AdminApi, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let res = api
            .http
            .delete(format!("{}/api/v1{POLICIES_PATH}/{id}", api.base))
            .bearer_auth(&api.token)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("deleting policy {id}: {}", res.status());
        }
    }
    let left = api.get(POLICIES_PATH).await?;
    if left["value"].as_array().is_some_and(|v| !v.is_empty()) {
        bail!("policies are left after deleting the benchmark's: {left}");
    }
    Ok(())
}

/// Full password sign-ins of `target`'s users without policies and with
/// [`SERVER_POLICIES`], `signins` of each: without (first half), the policies created,
/// with (both halves), the policies deleted, without (second half). One untimed round first,
/// and one after the policies are created (which also checks that the sign-ins still
/// succeed). Each kind is bounded by [`PHASE_TIME_LIMIT`] in all.
pub async fn server_phase(
    server: &Server,
    target: &Arc<Target>,
    backend: &str,
    signins: usize,
    concurrency: usize,
) -> anyhow::Result<ServerResult> {
    let api = AdminApi::login(server).await?;
    let conc = concurrency.max(1);
    eprintln!("[{backend}] Conditional Access: {SERVER_GROUPS} groups and memberships");
    let groups = seed_groups(&api, target).await?;
    sign_in_round(
        target,
        conc,
        conc,
        &format!("[{backend}] warm-up, no CA policies"),
        PHASE_TIME_LIMIT,
    )
    .await?;
    let halves = [signins / 2, signins - signins / 2];
    let mut without = Rounds::new();
    let mut with = Rounds::new();
    let pid = server.child.id();
    // One timed round, and the server's CPU time it took.
    let round = |half: usize, what: &str| {
        let label = format!("[{backend}] {what} ({}/2)", half + 1);
        async move {
            let before = cpu_ms(pid);
            let r = sign_in_round(
                target,
                halves[half],
                concurrency,
                &label,
                PHASE_TIME_LIMIT / 2,
            )
            .await?;
            let cpu = before.zip(cpu_ms(pid)).map(|(b, a)| a - b);
            anyhow::Ok((r, cpu))
        }
    };
    let (r, cpu) = round(0, "sign-ins, no CA policies").await?;
    without.add(r, cpu);

    eprintln!("[{backend}] Conditional Access: creating {SERVER_POLICIES} policies");
    let ids = create_policies(&api, &groups).await?;
    sign_in_round(
        target,
        conc,
        conc,
        &format!("[{backend}] warm-up, {SERVER_POLICIES} CA policies"),
        PHASE_TIME_LIMIT,
    )
    .await
    .with_context(|| {
        format!(
            "[{backend}] Conditional Access check: with {SERVER_POLICIES} policies (report-only, or enforced but not applying to the bench users) every password sign-in must still succeed"
        )
    })?;
    for half in [0, 1] {
        let (r, cpu) = round(half, &format!("sign-ins, {SERVER_POLICIES} CA policies")).await?;
        with.add(r, cpu);
    }

    // The policies were evaluated and recorded: the first user's last sign-in record.
    let first = &target.users[0];
    let page = api
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={first}&$top=1"
        ))
        .await?;
    let results = page["value"][0]["conditionalAccess"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let report_only_applied = results
        .iter()
        .filter(|r| {
            r["result"]
                .as_str()
                .is_some_and(|s| s.starts_with("reportOnly") && s != "reportOnlyNotApplied")
        })
        .count();
    if results.len() != SERVER_POLICIES {
        bail!(
            "[{backend}] the last sign-in of {first} records {} Conditional Access results, not {SERVER_POLICIES}: the policies were not evaluated as expected",
            results.len()
        );
    }

    eprintln!("[{backend}] Conditional Access: deleting the policies");
    delete_policies(&api, &ids).await?;
    let (r, cpu) = round(1, "sign-ins, no CA policies").await?;
    without.add(r, cpu);

    let server_cpu_ms_without = without.per_sign_in();
    let server_cpu_ms_with = with.per_sign_in();
    let without = summarize(without.lat, without.time);
    let with_policies = summarize(with.lat, with.time);
    let enforced = (0..SERVER_POLICIES).filter(|&i| is_enforced(i)).count();
    let in_scope_of_first_user = (0..SERVER_POLICIES)
        .filter(|&i| !is_enforced(i))
        .filter(|i| (0..GROUPS_PER_POLICY).any(|k| (i + k) % MEMBERSHIP_PERIOD == 0))
        .count();
    Ok(ServerResult {
        policies: SERVER_POLICIES,
        report_only: SERVER_POLICIES - enforced,
        enforced,
        groups: SERVER_GROUPS,
        groups_per_user: SERVER_GROUPS / MEMBERSHIP_PERIOD,
        in_scope_of_first_user,
        results_recorded: results.len(),
        report_only_applied,
        with_over_without: with_policies.per_sec / without.per_sec.max(1e-9),
        server_cpu_ms_without,
        server_cpu_ms_with,
        without,
        with_policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_core::conditional_access::{
        ConditionalAccessPolicy, NamedLocations, PolicyContext,
    };
    use std::collections::BTreeMap;

    #[test]
    fn every_server_policy_body_checks_and_no_enforced_one_applies_to_the_bench_sign_ins() {
        let locations = NamedLocations::default();
        let strengths = BTreeMap::new();
        let ctx = PolicyContext {
            locations: &locations,
            custom_strengths: &strengths,
        };
        for i in 0..SERVER_POLICIES {
            let enforced = is_enforced(i);
            let mut body = policy_body(i, enforced);
            body["id"] = json!(uuid::Uuid::from_u128(i as u128 + 1));
            for list in ["includeGroups", "excludeGroups"] {
                if let Some(Value::Array(v)) = body["conditions"]["users"].get_mut(list) {
                    for g in v.iter_mut() {
                        *g = json!(uuid::Uuid::from_u128(1000 + g.as_u64().unwrap() as u128));
                    }
                }
            }
            let p: ConditionalAccessPolicy = serde_json::from_value(body.clone())
                .unwrap_or_else(|e| panic!("policy {i}: {e}\n{body}"));
            p.check(&ctx)
                .unwrap_or_else(|e| panic!("policy {i}: {e}\n{body}"));
            if enforced {
                let c = &body["conditions"];
                assert!(
                    c["clientAppTypes"] != json!(["all"])
                        || c["applications"]["includeApplications"] != json!(["All"]),
                    "an enforced policy must not apply to the bench sign-ins: {body}"
                );
            }
        }
    }

    #[test]
    fn the_core_phase_runs_each_policy_count() {
        let r = run_core(40, 30, 100.0);
        assert_eq!(r.rows.len(), CORE_POLICY_COUNTS.len());
        for (row, n) in r.rows.iter().zip(CORE_POLICY_COUNTS) {
            assert_eq!(row.policies, n);
            assert_eq!(row.done, 40);
            assert!(row.evaluated <= n && row.applied <= row.evaluated);
        }
    }
}
