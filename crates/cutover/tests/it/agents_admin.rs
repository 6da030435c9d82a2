//! The admin side of pass-through agents and smart lockout, over HTTP and through
//! `cutover admin`: registration tokens within their bounds and never in the audit log, the
//! fleet view and its warning, enable / disable / delete with their audit rows, the
//! smart-lockout policy with the directories' warnings, and a user's lockout state and unlock.
//!
//! Agents are put into the database directly (as a registration through the agent protocol
//! would leave them), so these tests do not depend on the agent; the protocol has its own.

use cutover_core::Timestamp;
use cutover_core::lockout::{CheckOutcome, Location, LockoutSettings, LockoutState, admit, record};
use cutover_core::pta::MAX_REGISTRATION_TOKEN_SECS;
use cutover_server::clock::Clock;
use cutover_store::{AgentRecord, AuditEvent, Store};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::federation_cli::cli;
use crate::harness::*;

/// The audit rows with this action, newest first.
async fn audits(admin: &Admin, action: &str) -> Vec<Value> {
    admin
        .get(&format!(
            "/auditLogs/directoryAudits?action={action}&$top=500"
        ))
        .await["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The message of an API error body.
fn message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(i64::try_from(ms).unwrap())
}

fn test_audit(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        created_at: now(),
        correlation_id: Uuid::now_v7(),
        actor: "test".into(),
        action: action.into(),
        target_type: "agent".into(),
        target_id: target.into(),
        target_name: None,
        before: None,
        after: None,
    }
}

/// Register an agent straight in the store, as `POST /agent/v1/register` would.
async fn put_agent(store: &dyn Store, host: &str) -> Uuid {
    let token_hash = format!("test-token-{}", Uuid::new_v4());
    let at = now();
    store
        .create_agent_token(
            &token_hash,
            at.plus_secs(600),
            at,
            &test_audit("testToken", host),
        )
        .await
        .unwrap();
    let agent = AgentRecord {
        id: Uuid::now_v7(),
        host: host.into(),
        version: "0.1.0-test".into(),
        signing_key: "not-a-key".into(),
        encryption_key: "not-a-key".into(),
        key_generation: 1,
        enabled: true,
        created_at: at,
        keys_rotated_at: None,
        last_heartbeat: None,
        heartbeat: None,
    };
    store
        .register_agent(&token_hash, &agent, at, &test_audit("testRegister", host))
        .await
        .unwrap()
        .unwrap();
    agent.id
}

/// A heartbeat as an agent sends it: the directory reachable and locking after 10 wrong
/// passwords for 10 minutes.
fn heartbeat(host: &str) -> Value {
    json!({
        "host": host,
        "version": "0.1.0-test",
        "startedAt": now().millis() - 60_000,
        "stats": {
            "validations": 42,
            "byResult": {"success": 40, "invalidCredentials": 2},
            "lastMinute": 5,
            "errors": 1,
            "lastError": "bind timed out",
            "inFlight": 0,
            "late": 0,
            "cpuMs": 120,
            "rssBytes": 8_388_608
        },
        "directory": {
            "reachable": true,
            "lockout": {"threshold": 10, "durationSecs": 600}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_are_bounded_shown_once_and_kept_out_of_the_audit_log() {
    let server = InProcess::start().await;
    let admin = Admin::login(&server.base, &server.creds).await;
    let path = "/agents/registrationTokens";

    let default = admin.post(path, json!({})).await;
    assert_eq!(default["lifetimeSecs"], 3_600);
    assert_eq!(
        default["expiresAt"],
        cutover_server::clock::rfc3339(server.clock.now().plus_secs(3_600))
    );
    assert_eq!(default["issuer"], server.base);
    let mut tokens = vec![default["token"].as_str().unwrap().to_owned()];
    // The edges are accepted...
    for secs in [60, MAX_REGISTRATION_TOKEN_SECS] {
        let t = admin.post(path, json!({"lifetimeSecs": secs})).await;
        assert_eq!(t["lifetimeSecs"], secs);
        tokens.push(t["token"].as_str().unwrap().to_owned());
    }
    // ...and every token is a different, long random value.
    assert!(tokens.iter().all(|t| t.len() >= 40), "{tokens:?}");
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3);
    // One second out on either side is refused, naming the field.
    for secs in [59, MAX_REGISTRATION_TOKEN_SECS + 1, 0, -5] {
        let (status, v) = admin
            .call(Method::POST, path, Some(json!({"lifetimeSecs": secs})))
            .await;
        assert_eq!(status, 400, "{secs}: {v}");
        assert!(message(&v).contains("lifetimeSecs"), "{v}");
        assert!(message(&v).contains(&secs.to_string()), "{v}");
    }
    let (status, v) = admin
        .call(Method::POST, path, Some(json!({"lifetime": 600})))
        .await;
    assert_eq!(status, 400, "a typo is an error: {v}");
    assert!(message(&v).contains("lifetime"), "{v}");

    // Three rows for three tokens (refusals write none), none holding a token.
    let rows = audits(&admin, "createAgentRegistrationToken").await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[0]["after"]["lifetimeSecs"],
        MAX_REGISTRATION_TOKEN_SECS
    );
    assert_eq!(rows[0]["targetType"], "agentRegistrationToken");
    let whole_log = admin
        .get("/auditLogs/directoryAudits?$top=500")
        .await
        .to_string();
    for t in &tokens {
        assert!(
            !whole_log.contains(t.as_str()),
            "token {t} in the audit log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_agents_the_fleet_warns_and_unknown_agents_are_not_found() {
    let server = InProcess::start().await;
    let admin = Admin::login(&server.base, &server.creds).await;

    let list = admin.get("/agents").await;
    assert_eq!(list["value"], json!([]));
    assert_eq!(list["registeredAgents"], 0);
    assert_eq!(list["healthyAgents"], 0);
    assert_eq!(list["maxAgents"], 40);
    assert_eq!(list["minHealthyAgents"], 3);
    let warning = list["warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("No pass-through agent is registered"),
        "{list}"
    );

    let unknown = format!("/agents/{}", Uuid::new_v4());
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"enabled": false}))),
        (Method::DELETE, None),
    ] {
        let (status, v) = admin.call(method.clone(), &unknown, body).await;
        assert_eq!(status, 404, "{method} {unknown}: {v}");
        assert!(message(&v).contains("no pass-through agent"), "{v}");
    }
    let (status, v) = admin.call(Method::GET, "/agents/not-an-id", None).await;
    assert_eq!(status, 400, "{v}");
    assert!(message(&v).contains("not an agent id"), "{v}");
    let (status, v) = admin
        .call(Method::PATCH, &unknown, Some(json!({"enable": false})))
        .await;
    assert_eq!(status, 400, "a typo is an error: {v}");
    assert!(audits(&admin, "disableAgent").await.is_empty());
    assert!(audits(&admin, "deleteAgent").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_lockout_policy_is_validated_and_audited() {
    let server = InProcess::start().await;
    let admin = Admin::login(&server.base, &server.creds).await;
    let path = "/policies/smartLockout";

    let v = admin.get(path).await;
    assert_eq!(
        v["policy"],
        json!({"threshold": 10, "durationSecs": 60, "maxDurationSecs": 3_600,
               "resetAfterSecs": 86_400, "mode": "enforced"})
    );
    assert_eq!(v["directories"], json!([]));
    assert_eq!(v["warnings"], json!([]));

    let valid = json!({"threshold": 5, "durationSecs": 900, "maxDurationSecs": 7_200,
                       "resetAfterSecs": 86_400, "mode": "reportOnly"});
    let with = |field: &str, value: Value| {
        let mut b = valid.clone();
        b[field] = value;
        b
    };
    for (body, names) in [
        (with("threshold", json!(0)), "threshold"),
        (with("threshold", json!(101)), "threshold"),
        (with("durationSecs", json!(4)), "durationSecs"),
        (with("maxDurationSecs", json!(600)), "maxDurationSecs"),
        (with("resetAfterSecs", json!(60)), "resetAfterSecs"),
        (with("mode", json!("sometimes")), "sometimes"),
        (with("lockoutThreshold", json!(5)), "lockoutThreshold"),
    ] {
        let (status, e) = admin.call(Method::PUT, path, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {e}");
        assert!(message(&e).contains(names), "{body}: {e}");
    }
    assert!(audits(&admin, "updateSmartLockoutPolicy").await.is_empty());

    let (status, v) = admin.call(Method::PUT, path, Some(valid.clone())).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["policy"], valid);
    // Report-only is said at once.
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(warnings[0].as_str().unwrap().contains("report-only"), "{v}");
    assert_eq!(admin.get(path).await["policy"], valid);

    let rows = audits(&admin, "updateSmartLockoutPolicy").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["before"]["threshold"], 10);
    assert_eq!(rows[0]["after"], valid);
    assert_eq!(rows[0]["actor"], "app:cutover-admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_user_is_not_locked_and_an_unlock_is_audited() {
    let server = InProcess::start().await;
    let admin = Admin::login(&server.base, &server.creds).await;
    admin
        .post("/domains", json!({"id": "contoso.example"}))
        .await;
    let user = admin
        .post(
            "/users",
            json!({"userPrincipalName": "User1@contoso.example", "displayName": "User One"}),
        )
        .await;
    let id = user["id"].as_str().unwrap();

    for key in [id, "user1@contoso.example"] {
        let v = admin.get(&format!("/users/{key}/lockout")).await;
        assert_eq!(v["userId"], id);
        assert_eq!(v["userPrincipalName"], "User1@contoso.example");
        assert_eq!(v["threshold"], 10);
        assert_eq!(v["status"]["locked"], false, "{v}");
        assert_eq!(v["status"]["familiarFailures"], 0);
        assert_eq!(v["status"]["unfamiliarFailures"], 0);
        assert_eq!(v["status"]["familiarNetworks"], json!([]));
    }

    let v = admin
        .post(&format!("/users/{id}/lockout/unlock"), json!({}))
        .await;
    assert_eq!(v["status"]["locked"], false, "{v}");
    let rows = audits(&admin, "unlockUser").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["targetId"], id);
    assert_eq!(rows[0]["targetName"], "User1@contoso.example");
    assert_eq!(rows[0]["before"]["locked"], false);
    assert_eq!(rows[0]["after"]["locked"], false);

    let (status, v) = admin
        .call(Method::GET, "/users/nobody@contoso.example/lockout", None)
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/users/{}/lockout/unlock", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(audits(&admin, "unlockUser").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_agents_are_shown_changed_and_deleted_through_the_cli() {
    let dir = scratch_dir("agents-admin-cli");
    let server = ServerProcess::start(&dir, &[]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let store = cutover_store::connect(&format!("sqlite:{}", dir.join("cutover.db").display()))
        .await
        .expect("open the server's database");
    let run = |args: &[&str], code: i32| {
        let r = cli(&dir, args, "");
        assert_eq!(
            r.code, code,
            "cutover admin {args:?}: exit {}\n{}\n{}",
            r.code, r.out, r.err
        );
        r
    };

    let live = put_agent(store.as_ref(), "pta1.corp.example").await;
    let silent = put_agent(store.as_ref(), "pta2.corp.example").await;
    store
        .record_agent_heartbeat(live, now(), &heartbeat("pta1.corp.example"))
        .await
        .unwrap();

    // The API: one healthy agent out of two, with its heartbeat and the directory's policy.
    let list = admin.get("/agents").await;
    assert_eq!(list["registeredAgents"], 2, "{list}");
    assert_eq!(list["healthyAgents"], 1, "{list}");
    assert!(
        list["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("Only 1 pass-through agent is healthy"),
        "{list}"
    );
    let one = admin.get(&format!("/agents/{live}")).await;
    assert_eq!(one["health"], "healthy", "{one}");
    assert_eq!(one["stats"]["validations"], 42);
    assert_eq!(one["stats"]["byResult"]["invalidCredentials"], 2);
    assert_eq!(one["directory"]["lockoutThreshold"], 10);
    assert_eq!(one["directory"]["lockoutDurationSecs"], 600);
    // The default policy (10 wrong passwords, 60 s) does not shield a 10 / 600 s directory.
    assert_eq!(one["warnings"].as_array().unwrap().len(), 2, "{one}");
    let other = admin.get(&format!("/agents/{silent}")).await;
    assert_eq!(other["health"], "offline");
    assert!(other.get("lastHeartbeat").is_none(), "{other}");
    let policy = admin.get("/policies/smartLockout").await;
    assert_eq!(
        policy["directories"].as_array().unwrap().len(),
        1,
        "{policy}"
    );
    assert_eq!(policy["directories"][0]["agentId"], live.to_string());
    assert_eq!(policy["warnings"].as_array().unwrap().len(), 2, "{policy}");

    // The CLI's table and fleet warning.
    let r = run(&["agents", "list"], 0);
    assert!(r.out.contains("pta1.corp.example"), "{}", r.out);
    assert!(
        r.out.contains("healthy") && r.out.contains("offline"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("2 registered (at most 40), 1 healthy."),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("warning: Only 1 pass-through agent is healthy"),
        "{}",
        r.out
    );
    let live_id = live.to_string();
    let r = run(&["agents", "show", &live_id], 0);
    assert!(r.out.contains("locks after 10 for 10m"), "{}", r.out);
    assert!(
        r.out.contains("warning: Cutover's lockout threshold"),
        "{}",
        r.out
    );
    let r = run(&["agents", "show", &Uuid::new_v4().to_string()], 1);
    assert!(r.err.contains("no pass-through agent"), "{}", r.err);

    // Disable: refused connections, no passwords, audited with before and after.
    let r = run(&["agents", "disable", &live_id], 0);
    assert!(r.out.contains("Disabled pass-through agent"), "{}", r.out);
    assert!(
        r.out.contains("warning: None of the 2 registered"),
        "{}",
        r.out
    );
    let one = admin.get(&format!("/agents/{live}")).await;
    assert_eq!(one["enabled"], false);
    assert_eq!(one["health"], "disabled");
    let rows = audits(&admin, "disableAgent").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["targetId"], live_id);
    assert_eq!(rows[0]["targetName"], "pta1.corp.example");
    assert_eq!(rows[0]["before"], json!({"enabled": true}));
    assert_eq!(rows[0]["after"], json!({"enabled": false}));
    // Asking for the state it is in already writes nothing.
    let (status, _) = admin
        .call(
            Method::PATCH,
            &format!("/agents/{live}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(audits(&admin, "disableAgent").await.len(), 1);
    let r = run(&["agents", "enable", &live_id], 0);
    assert!(r.out.contains("health now: healthy"), "{}", r.out);
    assert_eq!(audits(&admin, "enableAgent").await.len(), 1);

    // A policy that shields the directory: lower threshold, longer lock.
    let r = run(
        &["lockout", "set", "--threshold", "5", "--duration", "15m"],
        0,
    );
    assert!(
        r.out.contains("Updated the smart-lockout policy."),
        "{}",
        r.out
    );
    assert!(!r.out.contains("warning:"), "{}", r.out);
    let r = run(&["lockout", "show"], 0);
    assert!(r.out.contains("pta1.corp.example"), "{}", r.out);
    assert!(r.out.contains("locks after 10 for 10m"), "{}", r.out);
    let r = run(&["--output", "json", "lockout", "show"], 0);
    let shown: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(shown["policy"]["threshold"], 5);
    assert_eq!(shown["policy"]["durationSecs"], 900);
    assert_eq!(shown["warnings"], json!([]));
    let r = run(&["lockout", "set", "--threshold", "0"], 1);
    assert!(
        r.err.contains("threshold must be between 1 and 100"),
        "{}",
        r.err
    );

    // Delete.
    let silent_id = silent.to_string();
    let r = run(&["agents", "delete", &silent_id], 0);
    assert!(
        r.out.contains(&format!(
            "Deleted pass-through agent {silent_id} (pta2.corp.example)"
        )),
        "{}",
        r.out
    );
    let (status, _) = admin
        .call(Method::GET, &format!("/agents/{silent}"), None)
        .await;
    assert_eq!(status, 404);
    let rows = audits(&admin, "deleteAgent").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["before"]["host"], "pta2.corp.example");
    assert_eq!(admin.get("/agents").await["registeredAgents"], 1);

    // A token with the exact command for the agent host; never in the audit log.
    let r = run(&["agents", "token", "--lifetime", "30m"], 0);
    let issuer = server.credentials()["issuer"]
        .as_str()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let prefix = format!("cutover agent register --server {issuer} --token ");
    let line = r
        .out
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no register command in:\n{}", r.out));
    let token = line
        .strip_suffix(" --directory-config FILE")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(r.out.contains("valid for 30m"), "{}", r.out);
    let log = admin
        .get("/auditLogs/directoryAudits?$top=500")
        .await
        .to_string();
    assert!(!log.contains(token), "the token is in the audit log");
    let r = run(&["agents", "token", "--lifetime", "2d"], 2);
    assert!(r.err.contains("from 1m to 24h"), "{}", r.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_user_is_shown_and_unlocked_through_the_cli() {
    let dir = scratch_dir("lockout-cli");
    let server = ServerProcess::start(&dir, &[]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let store = cutover_store::connect(&format!("sqlite:{}", dir.join("cutover.db").display()))
        .await
        .expect("open the server's database");
    let run = |args: &[&str], code: i32| {
        let r = cli(&dir, args, "");
        assert_eq!(
            r.code, code,
            "cutover admin {args:?}: exit {}\n{}\n{}",
            r.code, r.out, r.err
        );
        r
    };
    admin
        .post("/domains", json!({"id": "contoso.example"}))
        .await;
    let user = admin
        .post(
            "/users",
            json!({"userPrincipalName": "user2@contoso.example", "displayName": "User Two"}),
        )
        .await;
    let id = Uuid::parse_str(user["id"].as_str().unwrap()).unwrap();

    let r = run(&["users", "lockout", "user2@contoso.example"], 0);
    assert!(r.out.contains("0 of 10 wrong passwords"), "{}", r.out);

    // Ten distinct wrong passwords from elsewhere, as the sign-in gate records them.
    let at = now();
    let settings = LockoutSettings::default();
    let spray = move |mut st: LockoutState| {
        for i in 0..10u32 {
            let attempt = Uuid::from_u128(u128::from(i) + 1);
            st = admit(st, &settings, attempt, Location::Unfamiliar, at).0;
            let wrong = CheckOutcome::BadPassword {
                key: format!("wrong-{i}"),
            };
            st = record(st, &settings, attempt, Location::Unfamiliar, &wrong, at).0;
        }
        st
    };
    store.update_lockout_state(id, &spray).await.unwrap();

    let v = admin.get(&format!("/users/{id}/lockout")).await;
    assert_eq!(v["status"]["locked"], true, "{v}");
    assert_eq!(v["status"]["unfamiliarLocks"], 1, "{v}");
    let r = run(&["users", "lockout", "user2@contoso.example"], 0);
    assert!(r.out.contains("1 lock, locked until"), "{}", r.out);

    let r = run(&["users", "unlock", "user2@contoso.example"], 0);
    assert!(
        r.out.contains("Unlocked user2@contoso.example"),
        "{}",
        r.out
    );
    let v = admin.get(&format!("/users/{id}/lockout")).await;
    assert_eq!(v["status"]["locked"], false, "{v}");
    assert_eq!(v["status"]["unfamiliarFailures"], 0, "{v}");
    let rows = audits(&admin, "unlockUser").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["before"]["locked"], true);
    assert_eq!(rows[0]["before"]["unfamiliarLocks"], 1);
    assert_eq!(rows[0]["after"]["locked"], false);

    let r = run(
        &["--output", "json", "users", "lockout", &id.to_string()],
        0,
    );
    let shown: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(shown["status"]["locked"], false);
    let r = run(&["users", "unlock", "nobody@contoso.example"], 1);
    assert!(r.err.contains("no user"), "{}", r.err);
}
