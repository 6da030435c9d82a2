//! The admin REST API and the `cutover admin` CLI on top of it: every change audited, bad
//! input refused with a message that names the problem, and nothing half-written.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("admin")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run cutover admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_builds_a_directory_and_reads_the_logs() {
    let dir = scratch_dir("cli");
    let server = ServerProcess::start(&dir, &[]);
    let ok = |args: &[&str]| {
        let (success, out, err) = cli(&dir, args);
        assert!(success, "cutover admin {args:?} failed: {out}\n{err}");
        out
    };
    ok(&["domains", "create", "contoso.example"]);
    let user: Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "users",
        "create",
        "user1@contoso.example",
        "--display-name",
        "User One",
        "--password",
        "Correct-Horse-Battery-9",
        "--department",
        "Finance",
    ]))
    .unwrap();
    assert_eq!(user["department"], "Finance");
    let group: Value =
        serde_json::from_str(&ok(&["--output", "json", "groups", "create", "Pilot"])).unwrap();
    let gid = group["id"].as_str().unwrap();
    ok(&["groups", "add-member", gid, "user1@contoso.example"]);
    let members = ok(&["groups", "members", gid]);
    assert!(members.contains("user1@contoso.example"), "{members}");
    let app: Value = serde_json::from_str(&ok(&[
        "--output",
        "json",
        "apps",
        "create",
        "Payroll",
        "--redirect-uri",
        "https://payroll.contoso.example/cb",
    ]))
    .unwrap();
    assert!(
        app["clientSecret"].as_str().unwrap().len() >= 40,
        "a confidential app gets a high-entropy secret once"
    );
    let listed = ok(&["--output", "json", "apps", "list"]);
    assert!(
        !listed.contains(app["clientSecret"].as_str().unwrap()),
        "the secret is never shown again"
    );
    let table = ok(&["users", "list"]);
    assert!(
        table.contains("user1@contoso.example") && table.contains("User One"),
        "{table}"
    );

    // A duplicate (case-insensitively) is refused with the API's message and a failing exit code.
    let (success, _, err) = cli(
        &dir,
        &[
            "users",
            "create",
            "USER1@contoso.example",
            "--display-name",
            "Again",
        ],
    );
    assert!(!success);
    assert!(err.contains("already exists"), "{err}");

    let audit = ok(&["--output", "json", "audit", "--since", "1h"]);
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = audit["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for want in [
        "createDomain",
        "createUser",
        "createGroup",
        "addGroupMember",
        "createApplication",
    ] {
        assert!(actions.contains(&want), "audit lacks {want}: {actions:?}");
    }
    // JSON lines: one audit event per line, each a complete object.
    let lines = ok(&["--output", "jsonl", "audit", "--since", "1h"]);
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(events.len(), audit["value"].as_array().unwrap().len());
    assert!(events.iter().all(|e| e["action"].is_string()));
    // --all follows the server's next links: two records a page, every record once.
    let paged = ok(&[
        "--output", "jsonl", "audit", "--since", "1h", "--top", "2", "--all",
    ]);
    let paged: Vec<Value> = paged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        paged, events,
        "paging returns the same records in the same order"
    );
    let first_page = ok(&["--output", "json", "audit", "--since", "1h", "--top", "2"]);
    let first_page: Value = serde_json::from_str(&first_page).unwrap();
    assert!(
        first_page["@odata.nextLink"]
            .as_str()
            .unwrap()
            .contains("%24skiptoken="),
        "{first_page}"
    );
    // Directory lists page too: one user a page, every user once.
    ok(&[
        "users",
        "create",
        "user2@contoso.example",
        "--display-name",
        "User Two",
    ]);
    let paged: Value = serde_json::from_str(&ok(&[
        "--output", "json", "users", "list", "--top", "1", "--all",
    ]))
    .unwrap();
    let names: Vec<&str> = paged["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["user1@contoso.example", "user2@contoso.example"]
    );
    let one: Value =
        serde_json::from_str(&ok(&["--output", "json", "users", "list", "--top", "1"])).unwrap();
    assert!(
        one["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with("/api/v1/users?"),
        "{one}"
    );
    let sign_ins = ok(&["sign-ins", "--user", "user1@contoso.example"]);
    assert!(sign_ins.contains("(none)") || sign_ins.lines().count() >= 1);
    let _ = server;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_bad_input_clearly_and_writes_nothing() {
    let dir = scratch_dir("api");
    let server = ServerProcess::start(&dir, &[]);
    let base = server.base.clone();
    let admin = Admin::login(&base, &server.credentials()).await;
    let f = seed(&admin, "http://127.0.0.1:9/cb").await;

    // Authentication and authorisation.
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let app_token = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&f.client_id, Some(&f.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/users"))
        .bearer_auth(app_token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "an app without the admin role is refused"
    );
    let res = reqwest::Client::new()
        .get(format!("{base}/api/v1/users"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let audits_before = admin.get("/auditLogs/directoryAudits?$top=500").await["value"]
        .as_array()
        .unwrap()
        .len();
    use cutover_core::limits::{
        MAX_ATTRIBUTE_LEN, MAX_DISPLAY_NAME_LEN, MAX_PASSWORD_LEN, MAX_REDIRECT_URIS,
    };
    let long = "x".repeat(MAX_DISPLAY_NAME_LEN + 1);
    let long_mail = format!("{}@contoso.example", "m".repeat(MAX_ATTRIBUTE_LEN));
    let long_password = "p".repeat(MAX_PASSWORD_LEN + 1);
    let too_many_uris: Vec<String> = (0..=MAX_REDIRECT_URIS)
        .map(|i| format!("https://app.example/cb{i}"))
        .collect();
    let cases: Vec<(Method, &str, Value, u16, &str)> = vec![
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayname": "typo"}),
            400,
            "displayname",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "not-an-upn", "displayName": "x"}),
            400,
            "userPrincipalName",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@fabrikam.example", "displayName": "x"}),
            400,
            "not registered",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayName": long}),
            400,
            "at most 256",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayName": "x", "passwordProfile": {"password": "short"}}),
            400,
            "at least 8",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayName": "x", "passwordProfile": {"password": long_password}}),
            400,
            "at most 256",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayName": "x", "mail": long_mail}),
            400,
            "mail may be at most",
        ),
        (
            Method::POST,
            "/applications",
            json!({"displayName": "A", "redirectUris": too_many_uris}),
            400,
            "at most 32",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayName": "x", "source": "synced"}),
            400,
            "immutableId",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "USER1@CONTOSO.EXAMPLE", "displayName": "dup"}),
            409,
            "already exists",
        ),
        (
            Method::POST,
            "/users",
            json!({"userPrincipalName": "a@contoso.example", "displayName": "x", "managerId": "00000000-0000-0000-0000-000000000000"}),
            400,
            "managerId",
        ),
        (
            Method::POST,
            "/domains",
            json!({"id": "contoso.example"}),
            409,
            "already registered",
        ),
        (
            Method::POST,
            "/domains",
            json!({"id": "bad domain"}),
            400,
            "not a valid domain",
        ),
        (
            Method::POST,
            "/domains",
            json!({"id": "x.example", "authenticationType": "magic"}),
            400,
            "managed or federated",
        ),
        (
            Method::DELETE,
            "/domains/contoso.example",
            Value::Null,
            409,
            "still has users",
        ),
        (
            Method::POST,
            "/applications",
            json!({"displayName": "A", "redirectUris": ["http://evil.example/cb"]}),
            400,
            "loopback",
        ),
        (
            Method::POST,
            "/applications",
            json!({"displayName": "A", "redirectUris": ["https://a.example/cb#x"]}),
            400,
            "fragment",
        ),
        (
            Method::POST,
            "/applications",
            json!({"displayName": "A", "clientType": "public", "grantTypes": ["client_credentials"]}),
            400,
            "public client",
        ),
        (
            Method::POST,
            "/applications",
            json!({"displayName": "A", "redirectUris": []}),
            400,
            "at least one redirect URI",
        ),
        (
            Method::POST,
            "/applications",
            json!({"displayName": "A", "grantTypes": ["client_credentials"], "appRoles": ["God.Mode"]}),
            400,
            "not a known role",
        ),
        (
            Method::POST,
            "/groups",
            json!({"displayName": "G", "membershipKind": "sometimes"}),
            400,
            "assigned or dynamic",
        ),
        (
            Method::GET,
            "/users/not-a-user",
            Value::Null,
            400,
            "neither",
        ),
        (
            Method::GET,
            "/users/ghost@contoso.example",
            Value::Null,
            404,
            "no user",
        ),
        (
            Method::GET,
            "/groups/123",
            Value::Null,
            400,
            "not a group id",
        ),
        (
            Method::GET,
            "/auditLogs/signIns?since=yesterday",
            Value::Null,
            400,
            "RFC 3339",
        ),
        (
            Method::GET,
            "/auditLogs/directoryAudits?$skiptoken=not-a-token",
            Value::Null,
            400,
            "skiptoken",
        ),
        (
            Method::GET,
            "/auditLogs/signIns?result=maybe",
            Value::Null,
            400,
            "success, failure",
        ),
        (
            Method::GET,
            "/nothing-here",
            Value::Null,
            404,
            "openapi.json",
        ),
    ];
    for (method, path, body, want_status, want_text) in cases {
        let (status, v) = admin
            .call(method.clone(), path, (!body.is_null()).then_some(body))
            .await;
        assert_eq!(status, want_status, "{method} {path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(want_text),
            "{method} {path}: message {msg:?} should mention {want_text:?}"
        );
    }
    // The display-name limit's edge is accepted.
    // The limits' edges are accepted.
    let edge = "y".repeat(MAX_DISPLAY_NAME_LEN);
    let edge_password = "q".repeat(MAX_PASSWORD_LEN);
    admin
        .post(
            "/users",
            json!({"userPrincipalName": "edge@contoso.example", "displayName": edge,
                   "passwordProfile": {"password": edge_password}}),
        )
        .await;

    // Not JSON, and a body over the limit.
    let res = admin
        .http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = admin
        .http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&admin.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let huge = json!({"userPrincipalName": "big@contoso.example", "displayName": "z".repeat(cutover_core::limits::MAX_BODY_BYTES)});
    // Its own client: the server answers 413 without reading the body and closes that
    // connection, which a shared client's pool could otherwise hand to the next request.
    let res = reqwest::Client::new()
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&admin.token)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // Refused requests left no audit rows; the one accepted did.
    let audits_after = admin.get("/auditLogs/directoryAudits?$top=500").await["value"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(audits_after, audits_before + 1);

    // Updates carry before and after; the hash never appears.
    let (status, v) = admin.call(Method::PATCH, &format!("/users/{}", f.user_id), Some(json!({"department": "Payroll", "mail": null, "passwordProfile": {"password": "Another-Long-Pass-1"}}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["mail"], Value::Null);
    let audit = admin
        .get(&format!(
            "/auditLogs/directoryAudits?targetId={}",
            f.user_id
        ))
        .await;
    let last = &audit["value"][0];
    assert_eq!(last["action"], "updateUserAndResetPassword");
    assert_eq!(last["before"]["mail"], "user1@contoso.example");
    assert_eq!(last["after"]["department"], "Payroll");
    assert_eq!(last["actor"], "app:cutover-admin");
    assert!(
        !audit.to_string().contains("Another-Long-Pass-1")
            && !audit.to_string().contains("$argon2")
    );

    // The OpenAPI document is served and names the paths.
    let doc: Value = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/api/v1/domains",
        "/api/v1/users",
        "/api/v1/groups/{id}/members",
        "/api/v1/applications",
        "/api/v1/auditLogs/signIns",
        "/api/v1/auditLogs/directoryAudits",
    ] {
        assert!(doc["paths"][p].is_object(), "openapi lacks {p}");
    }

    // Deleting a user removes the membership and revokes nothing else.
    let groups = admin.get("/groups").await;
    let gid = groups["value"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = admin
        .call(Method::DELETE, &format!("/users/{}", f.upn), None)
        .await;
    assert_eq!(status, 204);
    let members = admin.get(&format!("/groups/{gid}/members")).await;
    assert_eq!(members["value"].as_array().unwrap().len(), 0);
}

#[test]
fn unsafe_configurations_are_refused_at_startup() {
    let dir = scratch_dir("unsafe");
    for (args, want) in [
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--issuer",
                "http://login.contoso.example",
            ],
            "TLS",
        ),
        (vec!["--listen", "0.0.0.0:0"], "unencrypted"),
        (vec!["--listen", "not-an-address"], "not an address"),
        (
            vec!["--listen", "127.0.0.1:0", "--database", "mysql://x"],
            "sqlite: or postgres://",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&dir)
            .args(&args)
            .env("CUTOVER_LOG", "error")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_admin_secret_can_be_reset_by_the_operator() {
    let dir = scratch_dir("reset");
    let first = ServerProcess::start(&dir, &[]);
    let old = first.credentials();
    drop(first);
    let second = ServerProcess::start(&dir, &["--reset-admin-secret"]);
    let new = second.credentials();
    assert_ne!(old["clientSecret"], new["clientSecret"]);
    let kept = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("admin-credentials.replaced-")
        });
    assert!(kept, "the old file is kept beside the new one");
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/token", second.base))
        .basic_auth(
            old["clientId"].as_str().unwrap(),
            old["clientSecret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the old secret stops working");
    let admin = Admin::login(&second.base, &new).await;
    let audit = admin
        .get("/auditLogs/directoryAudits?action=resetAdminSecret")
        .await;
    assert_eq!(audit["value"][0]["actor"], "system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_admin_route_exists() {
    let srv = InProcess::start().await;
    let http = reqwest::Client::new();
    for (method, path, _) in cutover_server::openapi::ADMIN_ROUTES {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{member}", "00000000-0000-0000-0000-000000000000");
        let url = format!("{}/api/v1{concrete}", srv.base);
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = http.request(m, &url).send().await.unwrap();
        assert_eq!(
            res.status(),
            401,
            "{method} {path} should exist and ask for a token"
        );
    }
}

/// The benchmark command keeps working (tiny counts; nothing about speed is asserted).
#[test]
fn bench_command_runs_and_reports_ratios() {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "bench",
            "--signins",
            "2",
            "--grants",
            "4",
            "--hashes",
            "2",
            "--signatures",
            "20",
            "--concurrency",
            "1",
            "--routing-users",
            "200",
            "--routing-groups",
            "20",
            "--routing-decisions",
            "1000",
            "--passkey-verifications",
            "20",
            "--ca-evaluations",
            "20",
            "--ca-groups",
            "100",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "raw argon2id verifications/s",
        "CA evaluation, 1 policy",
        "CA evaluation, 200 policies",
        "password, no CA policies",
        "password, 200 CA policies",
        "÷ without CA/s",
        "200 results on a sign-in's record",
        "full password sign-ins",
        "÷ argon2id/s",
        "decisions, index prebuilt",
        "decisions, index per call",
        "staged-rollout sign-ins",
        "÷ plain sign-ins/s",
        "pass (TAP) sign-ins",
        "raw P-256 verifications/s",
        "passkey sign-ins",
        "÷ P-256 verify/s",
        "client_credentials grants",
        "refresh_token grants",
        "÷ ES256/s",
        "idle RSS",
    ] {
        assert!(
            stdout.contains(want),
            "bench output lacks {want:?}:\n{stdout}"
        );
    }
}

/// The pass-through benchmark keeps working: a real directory with its five users, three
/// real agent processes, tiny counts; nothing about speed is asserted.
#[test]
fn bench_pta_command_runs_and_reports_ratios() {
    let slapd = crate::pta_ldap::start();
    let users: Vec<String> = (0..5).map(|i| format!("bench{i}")).collect();
    let ldif: Vec<String> = users
        .iter()
        .map(|u| {
            format!(
                "dn: uid={u},ou=people,{}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u}\nsn: {u}\nmail: {u}@bench.example\nuserPassword: pw-{u}\n",
                slapd.base
            )
        })
        .collect();
    slapd.add(&ldif.join("\n"));
    let config = slapd.dir.join("bench-directory.toml");
    std::fs::write(
        &config,
        format!(
            "url = \"{}\"\nbind_dn = \"uid=svc-sync,ou=people,{}\"\nbind_password_file = \"{}\"\nbase_dn = \"ou=people,{}\"\nuser_filter = \"(&(objectClass=inetOrgPerson)(mail={{upn}}))\"\n",
            slapd.uri,
            slapd.base,
            slapd.password_file(crate::pta_ldap::SYNC_PW).display(),
            slapd.base
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["bench-pta", "--directory-config"])
        .arg(&config)
        .args(["--users", "5", "--validations", "20", "--concurrency", "2"])
        .env("CUTOVER_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "direct checks (baseline)",
        "pass-through, 1 agent",
        "pass-through, 3 agents",
        "ratio, 1 agent ÷ direct checks",
        "ratio, 3 agents ÷ direct checks",
        "per core",
        "ms CPU per validation",
        "agent 3 during '3 agents'",
    ] {
        assert!(
            stdout.contains(want),
            "bench-pta output lacks {want:?}:\n{stdout}"
        );
    }
    // A directory without the benchmark's users is a clear error, not a number.
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["bench-pta", "--directory-config"])
        .arg(&config)
        .args([
            "--users",
            "5",
            "--upn-domain",
            "nowhere.example",
            "--validations",
            "5",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not hold the benchmark users"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_for_a_scraper_application_only() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, "http://127.0.0.1:9/cb").await;
    let _ = signed_in_browser(&srv.base, &f).await;
    let scraper = admin
        .post(
            "/applications",
            json!({"displayName": "Prometheus", "grantTypes": ["client_credentials"], "appRoles": ["Metrics.Read"]}),
        )
        .await;
    let token: Value = reqwest::Client::new()
        .post(format!("{}/oauth2/token", srv.base))
        .basic_auth(
            scraper["clientId"].as_str().unwrap(),
            scraper["clientSecret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{}/metrics", srv.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    assert!(
        text.contains(
            "cutover_sign_ins_total{result=\"success\",route=\"managed\",interactive=\"true\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("cutover_http_request_duration_seconds_bucket{endpoint=\"/login/password\",method=\"POST\",status=\"303\",le=\"+Inf\"} 1"), "{text}");
    assert!(
        !text.contains("user1@contoso.example"),
        "no user data in metrics"
    );

    let res = http
        .get(format!("{}/metrics", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "metrics need a token");
    let res = http
        .get(format!("{}/api/v1/users", srv.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "the scraper's role reads metrics and nothing else"
    );
    let res = http
        .get(format!("{}/metrics", srv.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the admin role may read metrics too");
}
