//! `/metrics` end to end (docs/METRICS.md): real sign-ins through the pages checked by a real
//! pass-through agent against a real OpenLDAP, a smart lock, an agent driven by hand over
//! `/agent/v1` that never polls (so a request waits in the queue, deterministically), sync run
//! reports through the sync API, and agent health moved by stepping the server's clock. Every
//! assertion reads the series a Prometheus scrape would read.
//!
//! Every wait is bounded; no sleep stands in for an assertion.

use std::time::{Duration, Instant};

use cutover_agent_proto::{
    AgentKeys, ChallengeRequest, DirectoryStatus, Heartbeat, PROTOCOL_VERSION, RegisterRequest,
    SessionRequest, register_proof, session_proof,
};
use cutover_core::pta::HEARTBEAT_OFFLINE_SECS;
use cutover_core::sync::ExportResult;
use cutover_core::sync::plan::{DeleteGate, PlanSummary};
use cutover_proto::sync::{PendingExports, ReportRequest, RunKind, RunOutcome, RunReport};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Admin, browser};
use crate::pta_e2e::{PtaEnv, REDIRECT};
use crate::pta_ldap::password;

/// One scrape, with the admin's token (the admin role may read metrics).
pub(crate) async fn scrape(admin: &Admin) -> String {
    let res = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// The value of the sample whose name and labels are exactly `series`; `None` when absent.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[track_caller]
fn assert_series(text: &str, series: &str, want: f64) {
    assert_eq!(value(text, series), Some(want), "{series} in:\n{text}");
}

/// Scrape until `series` has the value `want` (at most `within`, every 50 ms); returns that
/// scrape.
async fn scrape_until(admin: &Admin, series: &str, want: f64, within: Duration) -> String {
    let until = Instant::now() + within;
    let tries = within.as_millis() / 50 + 1;
    let mut text = String::new();
    for _ in 0..tries {
        text = scrape(admin).await;
        if value(&text, series) == Some(want) || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_series(&text, series, want);
    text
}

/// Every metric family is announced by `# HELP` and `# TYPE`, and every sample belongs to an
/// announced family.
fn assert_well_formed(text: &str) {
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}"
            );
            typed.push(name.to_owned());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| typed.iter().any(|t| t == f))
                .unwrap_or(name);
            assert!(
                typed.iter().any(|t| t == family),
                "sample without TYPE: {line}"
            );
        }
    }
}

/// An agent identity driven by hand: it registers, opens a session and sends the heartbeats
/// it is told to, and never polls, so what is queued for it stays pending.
struct HandAgent {
    http: reqwest::Client,
    base: String,
    id: Uuid,
    token: String,
}

impl HandAgent {
    async fn call(&self, endpoint: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/agent/v1/{endpoint}", self.base))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn register(env: &PtaEnv, host: &str) -> Self {
        let mut agent = HandAgent {
            http: reqwest::Client::new(),
            base: env.server.base.clone(),
            id: Uuid::nil(),
            token: String::new(),
        };
        let keys = AgentKeys::generate().unwrap();
        let token = env.token().await;
        let public = keys.public();
        let req = RegisterRequest {
            proof: keys.sign(&register_proof(&token, &public)),
            token,
            host: host.to_owned(),
            version: "hand".into(),
            protocol: PROTOCOL_VERSION,
            keys: public,
        };
        let (s, v) = agent
            .call("register", None, serde_json::to_value(&req).unwrap())
            .await;
        assert_eq!(s, 200, "register by hand: {v}");
        agent.id = v["agentId"].as_str().unwrap().parse().unwrap();
        let req = ChallengeRequest { agent_id: agent.id };
        let (s, v) = agent
            .call("challenge", None, serde_json::to_value(&req).unwrap())
            .await;
        assert_eq!(s, 200, "challenge: {v}");
        let challenge = v["challenge"].as_str().unwrap().to_owned();
        let req = SessionRequest {
            agent_id: agent.id,
            signature: keys.sign(&session_proof(agent.id, &challenge)),
            challenge,
        };
        let (s, v) = agent
            .call("session", None, serde_json::to_value(&req).unwrap())
            .await;
        assert_eq!(s, 200, "session: {v}");
        agent.token = v["token"].as_str().unwrap().to_owned();
        agent
    }

    async fn heartbeat(&self, directory_reachable: bool) {
        let hb = Heartbeat {
            host: "hand".into(),
            version: "hand".into(),
            directory: DirectoryStatus {
                reachable: directory_reachable,
                ..Default::default()
            },
            ..Default::default()
        };
        let (s, v) = self
            .call(
                "heartbeat",
                Some(&self.token),
                serde_json::to_value(&hb).unwrap(),
            )
            .await;
        assert_eq!(s, 200, "heartbeat: {v}");
    }
}

/// One sign-in of `uid` from a fresh browser: (status of the password post, redirect or page).
async fn attempt(env: &PtaEnv, uid: &str, pw: &str) -> (u16, String) {
    env.attempt_with(&browser(), &env.server.base, uid, pw)
        .await
}

fn run_report(
    kind: RunKind,
    outcome: RunOutcome,
    staging: bool,
    start: &str,
    end: &str,
    summary: PlanSummary,
) -> ReportRequest {
    ReportRequest {
        report: RunReport {
            run_id: Uuid::new_v4().to_string(),
            kind,
            staging,
            started_at: start.into(),
            finished_at: end.into(),
            outcome,
            message: None,
            summary,
            exported: ExportResult::default(),
            gate: DeleteGate::Open,
            delta_method: None,
            skipped: 0,
        },
        pending: PendingExports {
            server: String::new(),
            computed_at: end.into(),
            kind,
            summary,
            gate: DeleteGate::Open,
            changes: Vec::new(),
            problems: Vec::new(),
            truncated: false,
        },
    }
}

/// A sync server named `name` registers through the sync API; returns its token.
async fn sync_server(env: &PtaEnv, name: &str, staging: bool) -> String {
    let app = env
        .admin
        .post(
            "/applications",
            json!({"displayName": format!("sync {name}"), "clientType": "confidential",
                   "grantTypes": ["client_credentials"], "appRoles": ["Directory.Sync"]}),
        )
        .await;
    let token = Admin::login(&env.server.base, &app).await.token;
    let res = reqwest::Client::new()
        .put(format!("{}/sync/v1/servers/{name}", env.server.base))
        .bearer_auth(&token)
        .json(&json!({"host": "sync.corp.example", "version": "test", "staging": staging}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    token
}

async fn report(env: &PtaEnv, name: &str, token: &str, r: &ReportRequest) {
    let res = reqwest::Client::new()
        .put(format!("{}/sync/v1/servers/{name}/report", env.server.base))
        .bearer_auth(token)
        .json(r)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        204,
        "{}",
        res.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_sign_ins_lockouts_agents_the_queue_and_sync_reports() {
    let env = PtaEnv::start(&["mia", "leo"], |c| c.pass_through_deadline_ms = 3_000).await;
    let admin = &env.admin;

    // Before anything happened: every fixed-set series is there, at zero.
    let text = scrape(admin).await;
    assert_well_formed(&text);
    assert_series(&text, "cutover_metrics_store_up", 1.0);
    for health in [
        "healthy",
        "directoryUnreachable",
        "stale",
        "offline",
        "disabled",
    ] {
        assert_series(
            &text,
            &format!("cutover_pass_through_agents{{health=\"{health}\"}}"),
            0.0,
        );
    }
    assert_series(
        &text,
        "cutover_pass_through_queue_requests{state=\"pending\"}",
        0.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_queue_requests{state=\"claimed\"}",
        0.0,
    );
    for result in ["sent", "retried", "failed", "uncertain"] {
        assert_series(
            &text,
            &format!("cutover_emails_total{{result=\"{result}\"}}"),
            0.0,
        );
    }
    assert_series(
        &text,
        "cutover_sync_pending_exports{role=\"active\",change=\"delete\"}",
        0.0,
    );
    assert!(
        !text.contains("cutover_sync_last_run_end_timestamp_seconds{"),
        "{text}"
    );
    assert_series(
        &text,
        "cutover_pass_through_validation_duration_seconds_count",
        0.0,
    );

    // A real agent: healthy.
    let real = env.agent("metrics-real").await;
    env.wait_healthy(1).await;
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"healthy\"}",
        1.0,
    );

    // A sign-in, checked by the agent.
    let r = attempt(&env, "mia", &password("mia")).await;
    assert!(
        r.0 == 303 && r.1.starts_with(REDIRECT),
        "mia signs in: {r:?}"
    );
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_sign_ins_total{result=\"success\",route=\"managed\",interactive=\"true\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validations_total{result=\"success\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validation_duration_seconds_count",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validation_duration_seconds_bucket{le=\"+Inf\"}",
        1.0,
    );
    for (endpoint, method) in [
        ("/oauth2/authorize", "GET"),
        ("/login", "GET"),
        ("/login/identifier", "POST"),
    ] {
        let status = if method == "GET" && endpoint == "/login" {
            200
        } else {
            303
        };
        assert!(
            value(&text, &format!("cutover_http_request_duration_seconds_count{{endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"}}"))
                .is_some_and(|n| n >= 1.0),
            "{endpoint} is labelled: {text}"
        );
    }
    assert_series(
        &text,
        "cutover_http_request_duration_seconds_count{endpoint=\"/login/password\",method=\"POST\",status=\"303\"}",
        1.0,
    );

    // A smart lock: two different wrong passwords lock leo (threshold 2), the next attempt is
    // refused even with the right password.
    let (s, v) = admin
        .call(
            reqwest::Method::PUT,
            "/policies/smartLockout",
            Some(
                json!({"threshold": 2, "durationSecs": 600, "maxDurationSecs": 3_600,
                        "resetAfterSecs": 86_400, "mode": "enforced"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for wrong in ["wrong-1", "wrong-2"] {
        let r = attempt(&env, "leo", wrong).await;
        assert_eq!(r.0, 200, "a wrong password stays on the page: {r:?}");
    }
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_lockout_events_total{event=\"lockedNow\"}",
        1.0,
    );
    assert_eq!(
        value(&text, "cutover_lockout_events_total{event=\"locked\"}"),
        None
    );
    let r = attempt(&env, "leo", &password("leo")).await;
    assert_eq!(r.0, 200, "locked: {r:?}");
    let text = scrape(admin).await;
    assert_series(&text, "cutover_lockout_events_total{event=\"locked\"}", 1.0);
    assert_series(
        &text,
        "cutover_sign_ins_total{result=\"failure\",route=\"managed\",interactive=\"true\"}",
        3.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validations_total{result=\"invalidCredentials\"}",
        2.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validation_duration_seconds_count",
        3.0,
    );

    // The real agent disabled (and stopped): only a hand-driven agent is left, healthy by its
    // heartbeat, and it never polls.
    let (s, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/agents/{}", real.agent_id()),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    real.shutdown();
    let hand = HandAgent::register(&env, "metrics-hand").await;
    hand.heartbeat(false).await;
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"disabled\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"directoryUnreachable\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"healthy\"}",
        0.0,
    );
    hand.heartbeat(true).await;
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"healthy\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"directoryUnreachable\"}",
        0.0,
    );

    // A sign-in now waits for an agent: the queue shows it pending while it waits, and empty
    // once the server gave up on it (twice the deadline: one retry). Unanswered, it adds
    // nothing to the latency histogram (3 answered checks so far).
    let waiting = tokio::spawn({
        let (http, base, client_id) = (browser(), env.server.base.clone(), env.client_id.clone());
        async move {
            let (_verifier, challenge) = crate::harness::pkce();
            let url = crate::harness::auth_url(&base, &client_id, REDIRECT, &challenge, &[]);
            let res = crate::harness::attempt_sign_in(
                &http,
                &base,
                &url,
                &crate::pta_ldap::upn("mia"),
                &password("mia"),
                None,
            )
            .await;
            res.status().as_u16()
        }
    });
    let text = scrape_until(
        admin,
        "cutover_pass_through_queue_requests{state=\"pending\"}",
        1.0,
        Duration::from_secs(20),
    )
    .await;
    assert_series(
        &text,
        "cutover_pass_through_queue_requests{state=\"claimed\"}",
        0.0,
    );
    let status = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting sign-in ends")
        .unwrap();
    assert_eq!(status, 503, "no agent took the check");
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_pass_through_queue_requests{state=\"pending\"}",
        0.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validations_total{result=\"noAgentAvailable\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_validation_duration_seconds_count",
        3.0,
    );

    // Silent past the offline limit (the server's clock stepped): offline.
    env.server.clock.advance_secs(HEARTBEAT_OFFLINE_SECS + 1);
    let text = scrape(admin).await;
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"offline\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"healthy\"}",
        0.0,
    );
    assert_series(
        &text,
        "cutover_pass_through_agents{health=\"disabled\"}",
        1.0,
    );

    // Sync runs reported through the sync API: a 90-second delta that exported, then a full
    // run stopped by the delete threshold, and a staging server's preview.
    let active = sync_server(&env, "sync-a", false).await;
    let staging = sync_server(&env, "sync-b", true).await;
    let exported = run_report(
        RunKind::Delta,
        RunOutcome::Success,
        false,
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:01:30Z",
        PlanSummary {
            adds: 3,
            updates: 4,
            ..Default::default()
        },
    );
    report(&env, "sync-a", &active, &exported).await;
    let text = scrape(admin).await;
    let labels = "role=\"active\",kind=\"delta\",outcome=\"success\"";
    assert_series(
        &text,
        &format!("cutover_sync_run_duration_seconds_bucket{{{labels},le=\"60\"}}"),
        0.0,
    );
    assert_series(
        &text,
        &format!("cutover_sync_run_duration_seconds_bucket{{{labels},le=\"120\"}}"),
        1.0,
    );
    assert_series(
        &text,
        &format!("cutover_sync_run_duration_seconds_sum{{{labels}}}"),
        90.0,
    );
    assert_series(
        &text,
        "cutover_sync_pending_exports{role=\"active\",change=\"add\"}",
        0.0,
    );
    assert_series(
        &text,
        "cutover_sync_last_run_end_timestamp_seconds{role=\"active\"}",
        1_893_456_090.0,
    );
    assert_series(
        &text,
        "cutover_sync_last_run_outcome{role=\"active\",outcome=\"success\"}",
        1.0,
    );

    let blocked = run_report(
        RunKind::Full,
        RunOutcome::DeleteThresholdExceeded,
        false,
        "2030-01-01T01:00:00Z",
        "2030-01-01T01:45:00Z",
        PlanSummary {
            adds: 1,
            deletes: 600,
            ..Default::default()
        },
    );
    report(&env, "sync-a", &active, &blocked).await;
    let preview = run_report(
        RunKind::Full,
        RunOutcome::Success,
        true,
        "2030-01-01T01:00:00Z",
        "2030-01-01T01:00:20Z",
        PlanSummary {
            adds: 7,
            password_changes: 2,
            ..Default::default()
        },
    );
    report(&env, "sync-b", &staging, &preview).await;
    let text = scrape(admin).await;
    assert_well_formed(&text);
    assert_series(
        &text,
        "cutover_sync_run_duration_seconds_count{role=\"active\",kind=\"full\",outcome=\"deleteThresholdExceeded\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_sync_run_duration_seconds_bucket{role=\"active\",kind=\"full\",outcome=\"deleteThresholdExceeded\",le=\"1800\"}",
        0.0,
    );
    assert_series(
        &text,
        "cutover_sync_run_duration_seconds_bucket{role=\"active\",kind=\"full\",outcome=\"deleteThresholdExceeded\",le=\"3600\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_sync_run_duration_seconds_count{role=\"staging\",kind=\"full\",outcome=\"success\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_sync_pending_exports{role=\"active\",change=\"delete\"}",
        600.0,
    );
    assert_series(
        &text,
        "cutover_sync_pending_exports{role=\"active\",change=\"add\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_sync_pending_exports{role=\"staging\",change=\"add\"}",
        7.0,
    );
    assert_series(
        &text,
        "cutover_sync_pending_exports{role=\"staging\",change=\"password\"}",
        2.0,
    );
    assert_series(
        &text,
        "cutover_sync_last_run_end_timestamp_seconds{role=\"active\"}",
        1_893_462_300.0,
    );
    assert_series(
        &text,
        "cutover_sync_last_run_outcome{role=\"active\",outcome=\"deleteThresholdExceeded\"}",
        1.0,
    );
    assert_series(
        &text,
        "cutover_sync_last_run_outcome{role=\"active\",outcome=\"success\"}",
        0.0,
    );

    // Nothing about a person leaks into the series.
    assert!(!text.contains("mia@") && !text.contains("leo@"), "{text}");
    drop(hand);
}
