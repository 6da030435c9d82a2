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
