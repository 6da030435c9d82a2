//! Two `cutover serve` processes on one PostgreSQL database behave as one service.

use serde_json::json;

use crate::harness::*;

const REDIRECT: &str = "http://127.0.0.1:9/cb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_users_sessions_and_codes() {
    let db = fresh_postgres().await;
    let dir_a = scratch_dir("node-a");
    let a = ServerProcess::start(&dir_a, &["--database", &db]);
    // A node without the database's key-encryption key refuses to start, and says why.
    let dir_c = scratch_dir("node-c");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &db,
            "--data-dir",
        ])
        .arg(&dir_c)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key-encryption-key"), "{err}");
    let wrong = dir_c.join("other-kek");
    std::fs::write(
        &wrong,
        format!(
            "{}\n",
            cutover_server::crypto::KeyEncryptionKey::generate().to_text()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &db,
            "--data-dir",
        ])
        .arg(&dir_c)
        .arg("--key-encryption-key-file")
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the one"),
        "a different key is refused"
    );

    // Both nodes answer as one issuer, as they would behind a load balancer, and share the
    // key-encryption key.
    let dir_b = scratch_dir("node-b");
    let kek = dir_a.join("key-encryption-key");
    let b = ServerProcess::start(
        &dir_b,
        &[
            "--database",
            &db,
            "--issuer",
            &a.base,
            "--key-encryption-key-file",
            kek.to_str().unwrap(),
        ],
    );
    assert!(
        a.stdout_lines
            .iter()
            .any(|l| l.contains("postgres database")),
        "{:?}",
        a.stdout_lines
    );
    assert!(
        dir_a.join("admin-credentials").exists(),
        "the first node writes the credential"
    );
    assert!(
        !dir_b.join("admin-credentials").exists(),
        "the second node finds the admin app and writes nothing"
    );

    // The user is created through node B; node A serves the sign-in.
    let admin_b = Admin::login(&b.base, &a.credentials()).await;
    let f = seed(&admin_b, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let http = browser();
    // Authorize and the identifier page on A, the password page on B.
    let back = sign_in(
        &http,
        &a.base,
        &auth_url(&a.base, &f.client_id, REDIRECT, &challenge, &[]),
        &f.upn,
        &f.password,
        Some(&b.base),
    )
    .await;
    let code = query_param(&back, "code").expect("code");
    // Token on B.
    let (status, tokens) = redeem(&b.base, &f, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    // Userinfo on A with a token B signed: the keys are shared.
    let res = reqwest::Client::new()
        .get(format!("{}/oauth2/userinfo", a.base))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Replaying the code on A fails: single use across nodes.
    let (status, _) = redeem(&a.base, &f, &code, &verifier).await;
    assert_eq!(status, 400);
    // The session cookie set by B is honoured by A.
    let back = redirect_of(
        &http,
        auth_url(
            &a.base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("prompt", "none")],
        ),
    )
    .await;
    assert!(
        query_param(&back, "code").is_some(),
        "SSO works across nodes"
    );
    // Both nodes see the same sign-in log.
    let admin_a = Admin::login(&a.base, &a.credentials()).await;
    let log = admin_a
        .get(&format!("/auditLogs/signIns?userPrincipalName={}", f.upn))
        .await;
    assert!(
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["result"] == json!("success"))
    );
    // The database holds the signing keys and the HMAC key only sealed.
    let store = cutover_store::connect(&db).await.unwrap();
    let keys = store.list_signing_keys().await.unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert!(
            k.private_key.starts_with("aesgcm1:"),
            "key {} is sealed",
            k.kid
        );
    }
    assert!(
        store
            .get_setting("hmacKey")
            .await
            .unwrap()
            .unwrap()
            .starts_with("aesgcm1:")
    );
}

/// A federated sign-in may leave for the upstream IdP from one node and come back to another:
/// its secrets (state, nonce, PKCE verifier) are in the shared sign-in transaction, and each
/// node fetches the upstream's discovery and keys for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_sign_in_returns_to_another_node() {
    use crate::federation::{CALLBACK, meta_refresh};
    use crate::upstream::{Upstream, UpstreamClient, upstream_login};

    let db = fresh_postgres().await;
    let dir_a = scratch_dir("fed-node-a");
    let a = ServerProcess::start(&dir_a, &["--database", &db]);
    let dir_b = scratch_dir("fed-node-b");
    let kek = dir_a.join("key-encryption-key");
    let b = ServerProcess::start(
        &dir_b,
        &[
            "--database",
            &db,
            "--issuer",
            &a.base,
            "--key-encryption-key-file",
            kek.to_str().unwrap(),
        ],
    );
    let upstream = Upstream::start(
        &[UpstreamClient {
            client_id: "cutover".into(),
            client_secret: "upstream-secret".into(),
            redirect_uris: vec![format!("{}{CALLBACK}", a.base)],
            mode: "normal",
        }],
        json!({"fed1": {"immutable_id": "anchor-fed1"}}),
    )
    .await;
    let admin = Admin::login(&b.base, &a.credentials()).await;
    let idp = admin
        .post(
            "/identityProviders",
            json!({"displayName": "Corp IdP", "issuer": upstream.issuer, "clientId": "cutover",
                   "clientSecret": "upstream-secret", "immutableIdClaim": "immutable_id"}),
        )
        .await;
    admin
        .post(
            "/domains",
            json!({"id": "fed.example", "authenticationType": "federated", "identityProviderId": idp["id"]}),
        )
        .await;
    admin
        .post(
            "/users",
            json!({"userPrincipalName": "fed1@fed.example", "displayName": "Fed One", "accountEnabled": true,
                   "source": "synced", "immutableId": "anchor-fed1"}),
        )
        .await;
    let app = admin
        .post(
            "/applications",
            json!({"displayName": "Payroll", "redirectUris": [REDIRECT], "clientType": "confidential"}),
        )
        .await;
    let f = Fixture {
        user_id: String::new(),
        upn: "fed1@fed.example".into(),
        password: String::new(),
        client_id: app["clientId"].as_str().unwrap().into(),
        client_secret: app["clientSecret"].as_str().unwrap().into(),
        redirect_uri: REDIRECT.into(),
    };

    // Authorize and the identifier page on A ...
    let http = browser();
    let (verifier, challenge) = pkce();
    let login = redirect_of(
        &http,
        auth_url(&a.base, &f.client_id, REDIRECT, &challenge, &[]),
    )
    .await;
    let page = http
        .get(format!("{}{login}", a.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hop = http
        .post(format!("{}/login/identifier", a.base))
        .form(&[
            ("t", hidden(&page, "t").as_str()),
            ("csrf", &hidden(&page, "csrf")),
            ("username", "fed1@fed.example"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let callback = upstream_login(
        &http,
        &meta_refresh(&hop),
        "fed1",
        &format!("{}{CALLBACK}", a.base),
    )
    .await;
    // ... the callback on B (as a load balancer may send it) ...
    let on_b = callback.replacen(&a.base, &b.base, 1);
    let res = http.get(&on_b).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let back = location(&res);
    let code = query_param(&back, "code").expect("code");
    // ... and the code redeemed on A.
    let (status, tokens) = redeem(&a.base, &f, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let log = admin
        .get("/auditLogs/signIns?userPrincipalName=fed1@fed.example")
        .await;
    assert_eq!(log["value"][0]["route"], "federated", "{log}");
    assert_eq!(log["value"][0]["result"], "success", "{log}");
}
