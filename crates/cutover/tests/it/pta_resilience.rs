//! Pass-through authentication when agents die, stall, misbehave, are revoked or rotate their
//! keys, when the fleet is full, and when sign-ins land on a node the agent is not connected
//! to. Real OpenLDAP with ppolicy, real agents (`cutover_agent`) and, where an agent must
//! misbehave in ways the real one never does, a hand-driven client of `/agent/v1`.
//!
//! Every wait is bounded in time and in tries; no sleep stands in for an assertion.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover_agent::{DirectoryCheck, LinkCondition};
use cutover_agent_proto::{
    AgentKeys, ChallengeRequest, PROTOCOL_VERSION, RegisterRequest, SessionRequest, StoredKeys,
    register_proof, session_proof,
};
use cutover_core::lockout::DirectoryLockout;
use cutover_core::pta::{MAX_AGENTS, MAX_POLL_WAIT_MS, PtaResult};
use cutover_ldap::PasswordChecker;
use cutover_server::ServerConfig;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Admin, InProcess, browser, fresh_postgres};
use crate::pta_e2e::{PtaEnv, REDIRECT};
use crate::pta_ldap::{self, password, upn};

// ---- helpers ---------------------------------------------------------------------------------

/// Wait until `check` holds: at most `within`, polling every 50 ms.
async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let step = Duration::from_millis(50);
    let tries = within.as_millis() / step.as_millis() + 1;
    let until = Instant::now() + within;
    for _ in 0..tries {
        if check().await {
            return;
        }
        if Instant::now() >= until {
            break;
        }
        tokio::time::sleep(step).await;
    }
    assert!(check().await, "{what} did not happen within {within:?}");
}

fn signed_in(r: &(u16, String)) -> bool {
    r.0 == 303 && r.1.starts_with(REDIRECT) && r.1.contains("code=")
}

#[track_caller]
fn assert_signed_in(r: &(u16, String)) {
    assert!(signed_in(r), "expected a sign-in: {} {}", r.0, r.1);
}

/// A browser (cookies, no redirects) whose User-Agent names it: the sign-in record carries
/// the User-Agent, which ties each record to the attempt that made it.
fn tagged_browser(user_agent: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
        .build()
        .unwrap()
}

/// Every sign-in record, newest first (all pages, bounded).
async fn all_sign_ins(admin: &Admin) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/auditLogs/signIns?$top=500".to_owned();
    for _ in 0..100 {
        let page = admin.get(&path).await;
        out.extend(page["value"].as_array().unwrap().iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(next) => path = next.strip_prefix("/api/v1").unwrap().to_owned(),
            None => return out,
        }
    }
    panic!("more than 100 pages of sign-in records");
}

/// Audit rows of one action (one page is plenty here).
async fn audits(admin: &Admin, action: &str) -> Vec<Value> {
    let page = admin
        .get(&format!(
            "/auditLogs/directoryAudits?action={action}&$top=500"
        ))
        .await;
    page["value"].as_array().unwrap().clone()
}

/// A user's smart-lockout view and its failure count (familiar + unfamiliar).
async fn lockout_failures(admin: &Admin, uid: &str) -> (u64, Value) {
    let v = admin.get(&format!("/users/{}/lockout", upn(uid))).await;
    let st = &v["status"];
    let n = st["familiarFailures"].as_u64().expect("familiarFailures")
        + st["unfamiliarFailures"]
            .as_u64()
            .expect("unfamiliarFailures");
    (n, v)
}

async fn set_enabled(admin: &Admin, id: Uuid, enabled: bool) {
    let (s, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/agents/{id}"),
            Some(json!({ "enabled": enabled })),
        )
        .await;
    assert_eq!(s, 200, "PATCH agent {id}: {v}");
    assert_eq!(v["enabled"], enabled, "{v}");
}

async fn delete_agent(admin: &Admin, id: Uuid) {
    let (s, v) = admin
        .call(reqwest::Method::DELETE, &format!("/agents/{id}"), None)
        .await;
    assert_eq!(s, 204, "DELETE agent {id}: {v}");
}

/// Ask an agent to stop and wait (bounded) until it has.
async fn stop(agent: cutover_agent::AgentHandle) {
    agent.shutdown();
    tokio::time::timeout(Duration::from_secs(20), agent.wait())
        .await
        .expect("the agent stops within 20 s")
        .expect("the agent stops cleanly");
}

#[track_caller]
fn assert_agent_error(r: &(u16, Value), status: u16, code: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["error"]["code"], code, "{}", r.1);
    assert!(
        r.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error says what is wrong: {}",
        r.1
    );
}

/// One `/agent/v1` call by hand: (status, JSON body or the text as a string).
async fn agent_call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    endpoint: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = http.request(method, format!("{base}/agent/v1/{endpoint}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Register an agent over the wire with fresh keys: (status, body, keys).
async fn register_by_hand(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    host: &str,
) -> (u16, Value, AgentKeys) {
    let keys = AgentKeys::generate().unwrap();
    let public = keys.public();
    let req = RegisterRequest {
        token: token.to_owned(),
        host: host.to_owned(),
        version: "test".into(),
        protocol: PROTOCOL_VERSION,
        proof: keys.sign(&register_proof(token, &public)),
        keys: public,
    };
    let (s, v) = agent_call(
        http,
        base,
        reqwest::Method::POST,
        "register",
        None,
        Some(serde_json::to_string(&req).unwrap()),
    )
    .await;
    (s, v, keys)
}

/// An agent identity driven by hand over `/agent/v1` (keys read from a state directory, or
/// made here).
struct WireAgent {
    http: reqwest::Client,
    base: String,
    id: Uuid,
    keys: AgentKeys,
}

impl WireAgent {
    /// The identity a registered agent keeps in its state directory (`agent.toml`,
    /// `keys.json`).
    fn load(base: &str, state_dir: &Path) -> Self {
        let cfg = cutover_agent::state::StateDir::new(state_dir)
            .read_config()
            .expect("agent.toml");
        let text = std::fs::read_to_string(state_dir.join("keys.json")).expect("keys.json");
        let stored: StoredKeys = serde_json::from_str(&text).expect("keys.json parses");
        Self {
            http: reqwest::Client::new(),
            base: base.to_owned(),
            id: cfg.agent_id,
            keys: AgentKeys::from_stored(&stored).expect("usable keys"),
        }
    }

    async fn post(&self, endpoint: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.post_raw(endpoint, token, body.to_string()).await
    }

    async fn post_raw(&self, endpoint: &str, token: Option<&str>, body: String) -> (u16, Value) {
        agent_call(
            &self.http,
            &self.base,
            reqwest::Method::POST,
            endpoint,
            token,
            Some(body),
        )
        .await
    }

    async fn get(&self, endpoint: &str, token: Option<&str>) -> (u16, Value) {
        agent_call(
            &self.http,
            &self.base,
            reqwest::Method::GET,
            endpoint,
            token,
            None,
        )
        .await
    }

    async fn challenge(&self) -> (u16, Value) {
        let req = ChallengeRequest { agent_id: self.id };
        self.post("challenge", None, &serde_json::to_value(&req).unwrap())
            .await
    }

    /// Open a session with a challenge signed by `keys` (this agent's or others).
    async fn session_signed_by(&self, keys: &AgentKeys) -> (u16, Value) {
        let (s, ch) = self.challenge().await;
        assert_eq!(s, 200, "challenge: {ch}");
        let challenge = ch["challenge"].as_str().unwrap().to_owned();
        let req = SessionRequest {
            agent_id: self.id,
            signature: keys.sign(&session_proof(self.id, &challenge)),
            challenge,
        };
        self.post("session", None, &serde_json::to_value(&req).unwrap())
            .await
    }

    async fn session(&self) -> String {
        let (s, v) = self.session_signed_by(&self.keys).await;
        assert_eq!(s, 200, "session: {v}");
        v["token"].as_str().unwrap().to_owned()
    }
}

// ---- directory checks that misbehave -----------------------------------------------------

/// The real directory, until `hold` is set: from then on every check hangs until the agent
/// is killed (each one noted in `held`: the user and when).
struct Holdable {
    inner: PasswordChecker,
    hold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl DirectoryCheck for Holdable {
    async fn check(
        &self,
        upn: &str,
        immutable_id: Option<&str>,
        password: &[u8],
    ) -> (PtaResult, String) {
        if self.hold.load(Ordering::SeqCst) {
            self.held
                .lock()
                .unwrap()
                .push((upn.to_owned(), Instant::now()));
            std::future::pending::<()>().await;
        }
        <PasswordChecker as DirectoryCheck>::check(&self.inner, upn, immutable_id, password).await
    }

    async fn probe(&self) -> Result<DirectoryLockout, String> {
        <PasswordChecker as DirectoryCheck>::probe(&self.inner).await
    }
}

/// Answers `invalidCredentials` for everything, `delay` after being asked.
struct Slow {
    delay: Duration,
    started: Arc<AtomicUsize>,
}

impl DirectoryCheck for Slow {
    async fn check(&self, _: &str, _: Option<&str>, _: &[u8]) -> (PtaResult, String) {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        (
            PtaResult::InvalidCredentials,
            "slow directory says no".into(),
        )
    }

    async fn probe(&self) -> Result<DirectoryLockout, String> {
        Ok(DirectoryLockout::default())
    }
}

/// Answers `agentError` for everything, at once.
struct Broken;

impl DirectoryCheck for Broken {
    async fn check(&self, _: &str, _: Option<&str>, _: &[u8]) -> (PtaResult, String) {
        (PtaResult::AgentError, "broken on purpose".into())
    }

    async fn probe(&self) -> Result<DirectoryLockout, String> {
        Ok(DirectoryLockout::default())
    }
}

// ---- 1. one of three agents dies under load --------------------------------------------------

const LOAD_TOTAL: usize = 300;
const LOAD_BROWSERS: usize = 12;
const LOAD_USERS: usize = 60;
const LOAD_DEADLINE_MS: i64 = 1_500;

#[derive(Debug)]
enum Outcome {
    Success,
    Failed(u16),
    Panicked(String),
    Hung,
}

#[derive(Debug)]
struct Attempt {
    uid: String,
    user_agent: String,
    started: Instant,
    latency: Duration,
    outcome: Outcome,
}

fn percentile(sorted: &[u128], p: usize) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pta_three_agents_one_killed_under_load() {
    let uids: Vec<String> = (0..LOAD_USERS).map(|i| format!("load{i:02}")).collect();
    let uid_refs: Vec<&str> = uids.iter().map(String::as_str).collect();
    let env =
        Arc::new(PtaEnv::start(&uid_refs, |c| c.pass_through_deadline_ms = LOAD_DEADLINE_MS).await);
    let a = env.agent("agent-a").await;
    let b = env.agent("agent-b").await;
    let hold = Arc::new(AtomicBool::new(false));
    let held = Arc::new(Mutex::new(Vec::new()));
    let victim = env
        .agent_with(
            "agent-victim",
            Holdable {
                inner: PasswordChecker::new(pta_ldap::config(&env.slapd)).unwrap(),
                hold: hold.clone(),
                held: held.clone(),
            },
        )
        .await;
    let (a_id, b_id, victim_id) = (a.agent_id(), b.agent_id(), victim.agent_id());
    env.wait_healthy(3).await;

    let deadline = Duration::from_millis(LOAD_DEADLINE_MS as u64);
    // A sign-in may wait out two deadlines (the retry); more than that plus slack is a hang.
    let bound = deadline * 3 + Duration::from_secs(5);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::with_capacity(LOAD_TOTAL)));
    let run_started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..LOAD_BROWSERS {
        let (env, next, done, attempts) =
            (env.clone(), next.clone(), done.clone(), attempts.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= LOAD_TOTAL {
                    return;
                }
                let uid = format!("load{:02}", n % LOAD_USERS);
                let user_agent = format!("pta-load/{n}");
                let started = Instant::now();
                // Its own task: a panic in the page walk is counted, not lost.
                let task = {
                    let (env, ua, uid) = (env.clone(), user_agent.clone(), uid.clone());
                    tokio::spawn(async move {
                        let http = tagged_browser(&ua);
                        env.attempt_with(&http, &env.server.base, &uid, &password(&uid))
                            .await
                    })
                };
                let abort = task.abort_handle();
                let outcome = match tokio::time::timeout(bound, task).await {
                    Ok(Ok(r)) if signed_in(&r) => Outcome::Success,
                    Ok(Ok((status, _))) => Outcome::Failed(status),
                    Ok(Err(e)) => Outcome::Panicked(e.to_string()),
                    Err(_) => {
                        abort.abort();
                        Outcome::Hung
                    }
                };
                attempts.lock().unwrap().push(Attempt {
                    uid,
                    user_agent,
                    started,
                    latency: started.elapsed(),
                    outcome,
                });
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // A third of the way in, the victim's next password check hangs, and then its process
    // "dies" with that request claimed and unanswered.
    eventually(
        "a third of the sign-ins finishing",
        Duration::from_secs(120),
        async || done.load(Ordering::SeqCst) >= LOAD_TOTAL / 3,
    )
    .await;
    hold.store(true, Ordering::SeqCst);
    eventually(
        "the victim taking a password check",
        Duration::from_secs(15),
        async || !held.lock().unwrap().is_empty(),
    )
    .await;
    let killed_at = Instant::now();
    let done_at_kill = done.load(Ordering::SeqCst);
    victim.kill();
    eventually(
        "the killed agent ending",
        Duration::from_secs(5),
        async || victim.is_finished(),
    )
    .await;

    // Each attempt is bounded, so the run is too (generously: as if a worker's whole share
    // hung).
    let run_bound = run_started + bound * (LOAD_TOTAL / LOAD_BROWSERS + 2) as u32;
    for w in workers {
        tokio::time::timeout(run_bound.saturating_duration_since(Instant::now()), w)
            .await
            .expect("the load run finishes")
            .expect("a load worker does not panic");
    }
    let wall = run_started.elapsed();
    let attempts = std::mem::take(&mut *attempts.lock().unwrap());
    assert_eq!(attempts.len(), LOAD_TOTAL);
    let held = std::mem::take(&mut *held.lock().unwrap());
    let held_checks = held.len();

    // The records, one per attempt, found by the attempt's User-Agent.
    let records: HashMap<String, Value> = all_sign_ins(&env.admin)
        .await
        .into_iter()
        .filter_map(|r| {
            let ua = r["userAgent"].as_str()?.to_owned();
            ua.starts_with("pta-load/").then_some((ua, r))
        })
        .collect();

    let mut successes = 0;
    let mut hangs = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies: Vec<u128> = Vec::new();
    for at in &attempts {
        match &at.outcome {
            Outcome::Success => {
                successes += 1;
                latencies.push(at.latency.as_millis());
            }
            Outcome::Failed(status) => {
                let reason = records
                    .get(&at.user_agent)
                    .and_then(|r| r["failureReason"].as_str())
                    .unwrap_or("noRecord");
                *failures.entry(format!("{status} {reason}")).or_default() += 1;
            }
            Outcome::Panicked(e) => *failures.entry(format!("panic: {e}")).or_default() += 1,
            Outcome::Hung => hangs += 1,
        }
    }
    latencies.sort_unstable();
    let mut by_agent: BTreeMap<String, usize> = BTreeMap::new();
    for r in records.values() {
        let name = match r["agentId"].as_str() {
            Some(id) if id == a_id.to_string() => "agent-a",
            Some(id) if id == b_id.to_string() => "agent-b",
            Some(id) if id == victim_id.to_string() => "agent-victim",
            Some(_) => "another agent",
            None => "no agent",
        };
        *by_agent.entry(name.into()).or_default() += 1;
    }
    let slow = attempts.iter().filter(|at| at.latency > deadline).count();
    // The sign-ins whose check the victim held: for each held check, the attempts of that
    // user in flight at that moment (normally exactly one).
    let survivor =
        |rec: &Value| rec["agentId"] == a_id.to_string() || rec["agentId"] == b_id.to_string();
    let held_attempts: Vec<(&str, Vec<&Attempt>)> = held
        .iter()
        .map(|(who, when)| {
            let candidates = attempts
                .iter()
                .filter(|at| {
                    upn(&at.uid) == *who && at.started <= *when && at.started + at.latency >= *when
                })
                .collect();
            (who.as_str(), candidates)
        })
        .collect();
    let retried: Vec<&Attempt> = held_attempts
        .iter()
        .filter_map(|(_, c)| {
            c.iter().copied().find(|at| {
                matches!(at.outcome, Outcome::Success)
                    && at.latency >= deadline
                    && survivor(&records[&at.user_agent])
            })
        })
        .collect();
    println!(
        "pta load: {LOAD_TOTAL} sign-ins, {LOAD_BROWSERS} browsers, {LOAD_USERS} users, deadline {LOAD_DEADLINE_MS} ms; \
         victim killed after {done_at_kill} done with {held_checks} check(s) in its hands"
    );
    println!(
        "pta load: successes {successes}/{LOAD_TOTAL} ({:.1} %), failures {failures:?}, hangs {hangs} (bound {} ms), \
         slower than the deadline {slow}, retried after the victim held their check {} ({:?} ms)",
        successes as f64 * 100.0 / LOAD_TOTAL as f64,
        bound.as_millis(),
        retried.len(),
        retried
            .iter()
            .map(|at| at.latency.as_millis())
            .collect::<Vec<_>>()
    );
    println!(
        "pta load: latency p50 {} ms, p99 {} ms, max {} ms; wall {:.1} s; records by agent {by_agent:?}",
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().copied().unwrap_or(0),
        wall.as_secs_f64()
    );

    assert_eq!(hangs, 0, "no sign-in may hang");
    assert!(failures.is_empty(), "every sign-in succeeds: {failures:?}");
    assert_eq!(successes, LOAD_TOTAL);
    assert_eq!(records.len(), LOAD_TOTAL, "one record per sign-in");
    for at in &attempts {
        let rec = &records[&at.user_agent];
        assert_eq!(rec["result"], "success", "{rec}");
        let agent: Uuid = rec["agentId"]
            .as_str()
            .unwrap_or_else(|| panic!("the record names an agent: {rec}"))
            .parse()
            .unwrap();
        assert!(
            [a_id, b_id, victim_id].contains(&agent),
            "the record names one of the agents: {rec}"
        );
        // Nothing started after the kill can have been answered by the dead agent.
        if at.started > killed_at {
            assert_ne!(agent, victim_id, "a dead agent answered: {rec}");
        }
    }
    assert!(
        by_agent.get("agent-victim").copied().unwrap_or(0) > 0,
        "the victim took its share before it died: {by_agent:?}"
    );
    // Every check the victim held (it died holding them) was retried after the deadline and
    // answered by a surviving agent: the sign-in took longer than the deadline, succeeded,
    // and its record names agent-a or agent-b.
    assert!(held_checks >= 1);
    for (who, candidates) in &held_attempts {
        assert!(
            !candidates.is_empty(),
            "no sign-in of {who} was in flight when the victim took its check"
        );
        assert!(
            candidates.iter().any(|at| {
                matches!(at.outcome, Outcome::Success)
                    && at.latency >= deadline
                    && survivor(&records[&at.user_agent])
            }),
            "the sign-in of {who} whose check the victim held was not retried on a surviving agent: {:?}",
            candidates
                .iter()
                .map(|at| (
                    &at.user_agent,
                    at.latency,
                    &records[&at.user_agent]["agentId"]
                ))
                .collect::<Vec<_>>()
        );
    }
    assert!(!retried.is_empty());

    stop(a).await;
    stop(b).await;
}

// ---- 2. a slow agent, a broken agent, a garbage client -------------------------------------

const SLOW_DEADLINE_MS: i64 = 3_000;

#[tokio::test]
async fn pta_slow_and_broken_agents() {
    let users = ["alice", "bob", "carol", "dave"];
    let env = PtaEnv::start(&users, |c| c.pass_through_deadline_ms = SLOW_DEADLINE_MS).await;
    let base = env.server.base.clone();

    // The garbage client: a registered agent that never runs (never healthy, so no password
    // is ever sealed to it), driven by hand. Its oversized long poll runs through the whole
    // test.
    let garbage_dir = env.register_at(&base, "garbage").await;
    let garbage = WireAgent::load(&base, &garbage_dir);
    let token = garbage.session().await;
    let long_poll = {
        let (http, url, token) = (
            garbage.http.clone(),
            format!("{base}/agent/v1/poll"),
            token.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let res = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"max": 100_000, "waitMs": 999_999}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body, started.elapsed())
        })
    };

    // -- An agent that answers agentError for everything, alone.
    let broken = env.agent_with("broken", Broken).await;
    let broken_id = broken.agent_id();
    env.wait_healthy(1).await;
    for _ in 0..3 {
        let r = env.attempt("alice", "pw-alice").await;
        assert_eq!(r.0, 503, "{}", r.1);
        assert!(r.1.contains("cannot be checked right now"), "{}", r.1);
        let rec = env.last_sign_in("alice").await;
        assert_eq!(rec["failureReason"], "agentError", "{rec}");
        assert_eq!(rec["agentId"], broken_id.to_string(), "{rec}");
    }
    assert_eq!(
        broken.stats().by_result.get("agentError"),
        Some(&3),
        "{:?}",
        broken.stats()
    );
    let (failures, view) = lockout_failures(&env.admin, "alice").await;
    assert_eq!(
        failures, 0,
        "an agent's error is not a wrong password: {view}"
    );
    assert_eq!(view["status"]["checksInFlight"], 0, "{view}");
    assert_eq!(view["status"]["locked"], false, "{view}");
    stop(broken).await;
    delete_agent(&env.admin, broken_id).await;

    // -- A slow agent takes the check and sits on it past the deadline; a normal agent comes
    // up meanwhile and gets the retry.
    let normal_dir = env.register_at(&base, "normal").await;
    let slow_started = Arc::new(AtomicUsize::new(0));
    let slow = env
        .agent_with(
            "slow",
            Slow {
                delay: Duration::from_millis(SLOW_DEADLINE_MS as u64 + 1_000),
                started: slow_started.clone(),
            },
        )
        .await;
    let slow_id = slow.agent_id();
    env.wait_healthy(1).await;
    let t0 = Instant::now();
    let sign_in = async {
        let r = env.attempt("bob", "pw-bob").await;
        (r, t0.elapsed())
    };
    let ((r, latency), normal) = tokio::join!(sign_in, async {
        eventually(
            "the slow agent taking the check",
            Duration::from_secs(10),
            async || slow_started.load(Ordering::SeqCst) >= 1,
        )
        .await;
        let normal = cutover_agent::start(&normal_dir)
            .await
            .expect("start the normal agent");
        env.wait_healthy(2).await;
        (normal, t0.elapsed())
    });
    let (normal, normal_up_after) = normal;
    assert!(
        normal_up_after < Duration::from_millis(SLOW_DEADLINE_MS as u64),
        "the normal agent must be up before the first deadline (took {normal_up_after:?})"
    );
    assert_signed_in(&r);
    assert!(
        latency >= Duration::from_millis(SLOW_DEADLINE_MS as u64),
        "the sign-in waited out the slow agent's deadline: {latency:?}"
    );
    let normal_id = normal.agent_id();
    println!(
        "pta slow: signed in after {latency:?} (deadline {SLOW_DEADLINE_MS} ms; the normal agent was up after {normal_up_after:?})"
    );
    let rec = env.last_sign_in("bob").await;
    assert_eq!(rec["result"], "success", "{rec}");
    assert_eq!(
        rec["agentId"],
        normal_id.to_string(),
        "the retry went to the normal agent: {rec}"
    );
    // The slow agent's answer comes after the deadline and is refused as late.
    eventually(
        "the slow agent's answer being refused as late",
        Duration::from_secs(15),
        async || slow.stats().late >= 1,
    )
    .await;
    let stats = slow.stats();
    assert_eq!(stats.late, 1, "{stats:?}");
    assert_eq!(
        stats.by_result.get("invalidCredentials"),
        Some(&1),
        "{stats:?}"
    );
    let (failures, view) = lockout_failures(&env.admin, "bob").await;
    assert_eq!(
        failures, 0,
        "a late invalidCredentials is not counted: {view}"
    );
    stop(slow).await;
    delete_agent(&env.admin, slow_id).await;

    // The lockout view does count: a wrong password through the normal agent.
    let r = env.attempt("carol", "wrong").await;
    assert_eq!(r.0, 200, "{}", r.1);
    let rec = env.last_sign_in("carol").await;
    assert_eq!(rec["failureReason"], "invalidPassword", "{rec}");
    assert_eq!(rec["agentId"], normal_id.to_string(), "{rec}");
    let (failures, view) = lockout_failures(&env.admin, "carol").await;
    assert_eq!(failures, 1, "{view}");

    // -- Garbage on the agent protocol.
    let g = &garbage;
    let r = g
        .post_raw("results", Some(&token), "this is {not json".into())
        .await;
    assert_agent_error(&r, 400, "invalidRequest");
    let unknown = Uuid::now_v7();
    let r = g
        .post(
            "results",
            Some(&token),
            &json!({"results": [{"requestId": unknown, "result": "success", "elapsedMs": 3}]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["accepted"], json!([]), "{}", r.1);
    assert_eq!(
        r.1["rejected"],
        json!([{"requestId": unknown, "reason": "unknown"}]),
        "{}",
        r.1
    );
    let r = g
        .post(
            "results",
            Some(&token),
            &json!({"results": [{"requestId": unknown, "result": "probablyFine", "elapsedMs": 3}]}),
        )
        .await;
    assert_agent_error(&r, 400, "invalidRequest");
    // A session token with one character changed (in its MAC, not its last character, whose
    // low bits base64 may not carry).
    let mut tampered: Vec<char> = token.chars().collect();
    let i = tampered.len() - 8;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    assert_ne!(tampered, token);
    let r = g.get("self", Some(&tampered)).await;
    assert_agent_error(&r, 401, "invalidSession");
    let r = g
        .post("poll", Some(&tampered), &json!({"max": 1, "waitMs": 0}))
        .await;
    assert_agent_error(&r, 401, "invalidSession");
    let r = g.get("self", None).await;
    assert_agent_error(&r, 401, "invalidSession");
    let r = g
        .post(
            "results",
            None,
            &json!({"results": [{"requestId": unknown, "result": "success", "elapsedMs": 3}]}),
        )
        .await;
    assert_agent_error(&r, 401, "invalidSession");
    // The untouched token still works.
    let r = g.get("self", Some(&token)).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["agentId"], garbage.id.to_string(), "{}", r.1);

    // The server keeps working.
    assert_signed_in(&env.attempt("dave", "pw-dave").await);
    let rec = env.last_sign_in("dave").await;
    assert_eq!(rec["agentId"], normal_id.to_string(), "{rec}");

    // The oversized long poll was clamped: it came back empty within the server's longest
    // wait, having waited it.
    let max_wait = Duration::from_millis(u64::from(MAX_POLL_WAIT_MS));
    let (status, body, waited) =
        tokio::time::timeout(max_wait + Duration::from_secs(10), long_poll)
            .await
            .expect("the clamped poll returns within the server's longest wait")
            .unwrap();
    println!("pta garbage: a poll asking for 999999 ms returned after {waited:?}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requests"], json!([]), "{body}");
    assert!(
        waited <= max_wait + Duration::from_secs(3),
        "waited {waited:?}"
    );
    assert!(
        waited + Duration::from_secs(2) >= max_wait,
        "an idle poll waits the longest wait: {waited:?}"
    );
    stop(normal).await;
}

// ---- 3. revoked and rotated agents --------------------------------------------------------

#[tokio::test]
async fn pta_revoked_and_rotated_agents() {
    let users = ["alice", "bob", "carol"];
    let env = PtaEnv::start(&users, |c| c.pass_through_deadline_ms = 1_500).await;
    let base = env.server.base.clone();
    let http = reqwest::Client::new();

    // -- Disable, then delete.
    let dir_a = env.register_at(&base, "agent-a").await;
    let a = cutover_agent::start(&dir_a).await.expect("start agent-a");
    let a_id = a.agent_id();
    env.wait_healthy(1).await;
    assert_signed_in(&env.attempt("alice", "pw-alice").await);
    assert_eq!(env.last_sign_in("alice").await["agentId"], a_id.to_string());
    let wire_a = WireAgent::load(&base, &dir_a);
    let a_token = wire_a.session().await;
    assert_eq!(wire_a.get("self", Some(&a_token)).await.0, 200);

    set_enabled(&env.admin, a_id, false).await;
    // Its open session is refused on the next call, and so is a new one.
    assert_agent_error(
        &wire_a.get("self", Some(&a_token)).await,
        403,
        "agentDisabled",
    );
    assert_agent_error(
        &wire_a
            .post("poll", Some(&a_token), &json!({"max": 1, "waitMs": 0}))
            .await,
        403,
        "agentDisabled",
    );
    assert_agent_error(&wire_a.challenge().await, 403, "agentDisabled");
    let r = env.attempt("alice", "pw-alice").await;
    assert_eq!(r.0, 503, "{}", r.1);
    let rec = env.last_sign_in("alice").await;
    assert_eq!(rec["failureReason"], "noAgentAvailable", "{rec}");
    assert_eq!(rec["agentId"], Value::Null, "{rec}");

    // -- A registration token works once.
    let token = env.token().await;
    let (s, first, _) = register_by_hand(&http, &base, &token, "twice-1").await;
    assert_eq!(s, 200, "{first}");
    let twice_id: Uuid = first["agentId"].as_str().unwrap().parse().unwrap();
    let r = register_by_hand(&http, &base, &token, "twice-2").await;
    assert_agent_error(&(r.0, r.1), 403, "registrationTokenUsed");

    // -- A session signed with another key.
    let (s, v, keys) = register_by_hand(&http, &base, &env.token().await, "signer").await;
    assert_eq!(s, 200, "{v}");
    let signer_id: Uuid = v["agentId"].as_str().unwrap().parse().unwrap();
    let signer = WireAgent {
        http: http.clone(),
        base: base.clone(),
        id: signer_id,
        keys,
    };
    let wrong = AgentKeys::generate().unwrap();
    assert_agent_error(
        &signer.session_signed_by(&wrong).await,
        401,
        "invalidSession",
    );
    let (s, v) = signer.session_signed_by(&signer.keys).await;
    assert_eq!(s, 200, "the right key opens a session: {v}");

    // -- Key rotation.
    let dir_b = env.register_at(&base, "agent-b").await;
    let b = cutover_agent::start(&dir_b).await.expect("start agent-b");
    let b_id = b.agent_id();
    env.wait_healthy(1).await;
    assert_signed_in(&env.attempt("bob", "pw-bob").await);
    assert_eq!(env.last_sign_in("bob").await["agentId"], b_id.to_string());
    let old_b = WireAgent::load(&base, &dir_b);
    let old_token = old_b.session().await;
    let r = old_b.get("self", Some(&old_token)).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["keyGeneration"], 1, "{}", r.1);

    let rotation = cutover_agent::rotate_keys(&dir_b)
        .await
        .expect("rotate agent-b's keys");
    assert_eq!(rotation.agent_id, b_id);
    assert_eq!(rotation.key_generation, 2);
    assert_agent_error(
        &old_b.get("self", Some(&old_token)).await,
        401,
        "invalidSession",
    );
    assert_agent_error(
        &old_b.session_signed_by(&old_b.keys).await,
        401,
        "invalidSession",
    );
    let new_b = WireAgent::load(&base, &dir_b);
    assert_ne!(new_b.keys.public(), old_b.keys.public());
    let new_token = new_b.session().await;
    let r = new_b.get("self", Some(&new_token)).await;
    assert_eq!(r.1["keyGeneration"], 2, "{}", r.1);
    // The running agent picks the new keys up: sign-ins go on through it.
    for uid in ["bob", "carol"] {
        assert_signed_in(&env.attempt(uid, &password(uid)).await);
        let rec = env.last_sign_in(uid).await;
        assert_eq!(rec["agentId"], b_id.to_string(), "{rec}");
    }
    let view = env.admin.get(&format!("/agents/{b_id}")).await;
    assert_eq!(view["keyGeneration"], 2, "{view}");

    // The disabled agent has learned it is refused (its next heartbeat or poll).
    eventually(
        "agent-a seeing itself refused",
        Duration::from_secs(30),
        async || matches!(a.condition(), LinkCondition::Refused(ref c) if c == "agentDisabled"),
    )
    .await;

    // -- Deleted: unknown.
    delete_agent(&env.admin, a_id).await;
    assert_agent_error(&wire_a.challenge().await, 403, "agentUnknown");
    assert_agent_error(
        &wire_a.get("self", Some(&a_token)).await,
        403,
        "agentUnknown",
    );

    // -- The audit log.
    let registered: HashSet<String> = audits(&env.admin, "registerAgent")
        .await
        .iter()
        .map(|r| r["targetId"].as_str().unwrap().to_owned())
        .collect();
    for id in [a_id, b_id, twice_id, signer_id] {
        assert!(
            registered.contains(&id.to_string()),
            "registerAgent {id}: {registered:?}"
        );
    }
    assert_eq!(
        registered.len(),
        4,
        "the refused registration wrote nothing"
    );
    let rotated = audits(&env.admin, "rotateAgentKeys").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["targetId"], b_id.to_string(), "{}", rotated[0]);
    assert_eq!(
        rotated[0]["actor"],
        format!("agent:{b_id}"),
        "{}",
        rotated[0]
    );
    assert_eq!(rotated[0]["after"]["keyGeneration"], 2, "{}", rotated[0]);
    for action in ["disableAgent", "deleteAgent"] {
        let rows = audits(&env.admin, action).await;
        assert!(
            rows.iter().any(|r| r["targetId"] == a_id.to_string()),
            "{action} of agent-a: {rows:?}"
        );
    }

    stop(a).await;
    stop(b).await;
}

// ---- 4. the fleet limit ---------------------------------------------------------------------

#[tokio::test]
async fn pta_forty_agents_at_most() {
    let server = InProcess::start().await;
    let admin = Admin::login(&server.base, &server.creds).await;
    let http = reqwest::Client::new();
    let token = async || {
        admin.post("/agents/registrationTokens", json!({})).await["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut ids = Vec::new();
    for i in 0..MAX_AGENTS {
        let (s, v, _) =
            register_by_hand(&http, &server.base, &token().await, &format!("host-{i}")).await;
        assert_eq!(s, 200, "agent {i}: {v}");
        ids.push(v["agentId"].as_str().unwrap().to_owned());
    }
    let list = admin.get("/agents").await;
    assert_eq!(list["registeredAgents"], MAX_AGENTS, "{list}");
    assert_eq!(list["maxAgents"], MAX_AGENTS, "{list}");

    let extra = token().await;
    let r = register_by_hand(&http, &server.base, &extra, "host-41").await;
    assert_agent_error(&(r.0, r.1.clone()), 409, "tooManyAgents");
    let message = r.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&MAX_AGENTS.to_string()) && message.contains("delete"),
        "the refusal says how to fix it: {message}"
    );
    assert_eq!(
        admin.get("/agents").await["registeredAgents"],
        MAX_AGENTS,
        "the refused agent was not stored"
    );

    delete_agent(&admin, ids[0].parse().unwrap()).await;
    // The refused registration did not spend its token: it works now.
    let (s, v, _) = register_by_hand(&http, &server.base, &extra, "host-41").await;
    assert_eq!(s, 200, "{v}");
    let r = register_by_hand(&http, &server.base, &token().await, "host-42").await;
    assert_agent_error(&(r.0, r.1), 409, "tooManyAgents");
    assert_eq!(admin.get("/agents").await["registeredAgents"], MAX_AGENTS);
}

// ---- 5. two nodes on one PostgreSQL database ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pta_two_nodes_on_postgres() {
    let db = fresh_postgres().await;
    let kek = cutover_server::crypto::KeyEncryptionKey::generate();
    let kek_b = cutover_server::crypto::KeyEncryptionKey::from_text(&kek.to_text()).unwrap();
    let tune = |c: &mut ServerConfig| c.pass_through_deadline_ms = 2_000;
    let node_a = InProcess::start_node(&db, kek, None, tune).await;
    let node_b = InProcess::start_node(&db, kek_b, Some(node_a.creds.clone()), tune).await;
    let users = ["alice", "bob", "carol"];
    let env = PtaEnv::with(pta_ldap::start(), node_a, &users, true).await;

    // The agent knows node A only.
    let agent = env.agent("agent-1").await;
    let id = agent.agent_id();
    env.wait_healthy(1).await;
    let admin_b = Admin::login(&node_b.base, &env.server.creds).await;
    eventually(
        "node B seeing the agent healthy",
        Duration::from_secs(10),
        async || admin_b.get("/agents").await["healthyAgents"] == 1,
    )
    .await;

    // Every page of these sign-ins is served by node B.
    for uid in users {
        let t0 = Instant::now();
        let r = env
            .attempt_with(&browser(), &node_b.base, uid, &password(uid))
            .await;
        assert_signed_in(&r);
        println!(
            "pta two nodes: {uid} signed in on node B in {:?}",
            t0.elapsed()
        );
        let rec = env.last_sign_in(uid).await;
        assert_eq!(rec["result"], "success", "{rec}");
        assert_eq!(rec["agentId"], id.to_string(), "{rec}");
    }
    let r = env
        .attempt_with(&browser(), &node_b.base, "alice", "not-her-password")
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.contains("account or password is incorrect"), "{}", r.1);
    let rec = env.last_sign_in("alice").await;
    assert_eq!(rec["failureReason"], "invalidPassword", "{rec}");
    assert_eq!(rec["agentId"], id.to_string(), "{rec}");
    let stats = agent.stats();
    assert_eq!(stats.by_result.get("success"), Some(&3), "{stats:?}");
    assert_eq!(
        stats.by_result.get("invalidCredentials"),
        Some(&1),
        "{stats:?}"
    );
    stop(agent).await;
    drop(node_b);
}
