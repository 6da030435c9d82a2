//! A real headless Chromium signs in through the pages (HTML, cookies and redirects in a
//! browser), driven by `e2e/browser-signin.mjs` (playwright-core).

use serde_json::Value;

use crate::harness::*;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_and_reuses_the_session() {
    let node_dir = required_env("CUTOVER_TEST_NODE_DIR");
    let chromium = required_env("CUTOVER_TEST_CHROMIUM");
    let dir = scratch_dir("browser");
    let server = ServerProcess::start(&dir, &[]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let f = seed(&admin, REDIRECT).await;
    let (verifier, challenge) = pkce();
    let url = auth_url(&server.base, &f.client_id, REDIRECT, &challenge, &[]);

    let shots = dir.join("screenshots");
    let out = tokio::process::Command::new("node")
        .arg(format!("{node_dir}/browser-signin.mjs"))
        .env("CHROMIUM", &chromium)
        .env("AUTH_URL", &url)
        .env("USERNAME", &f.upn)
        .env("PASSWORD", &f.password)
        .env("REDIRECT_PREFIX", REDIRECT)
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .await
        .expect("run node (installed by scripts/install-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("browser script output: {stdout}\n{stderr}"));
    assert_eq!(
        result["ok"], true,
        "browser sign-in failed: {result}\n{stderr}"
    );
    let first = result["first"].as_str().unwrap();
    assert_eq!(query_param(first, "state").as_deref(), Some("st-123"));
    assert_eq!(
        result["secondShowedForm"], false,
        "the SSO session signs the second request in without a page"
    );
    let second = result["second"].as_str().unwrap();
    assert!(query_param(second, "code").is_some());
    let cookies = result["cookies"].as_array().unwrap();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "cutover_session")
        .expect("session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Lax");
    assert!(shots.join("identifier.png").exists() && shots.join("password.png").exists());

    // The code the browser carried works at the token endpoint.
    let (status, tokens) = redeem(
        &server.base,
        &f,
        &query_param(second, "code").unwrap(),
        &verifier,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
}
