//! A real headless Chromium signs in through the pages (HTML, cookies and redirects in a
//! browser), driven by `e2e/browser-signin.mjs` and `e2e/browser-federation.mjs`
//! (playwright-core).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::federation::{FedEnv, features, last_sign_in, stage_pilot_group};
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
    // A report-only Conditional Access policy that would block everyone: the browser's
    // sign-in goes through, and the records say what the policy would have done.
    let policy = admin
        .post(
            "/identity/conditionalAccess/policies",
            json!({
                "displayName": "Would block everyone",
                "conditions": {
                    "users": {"includeUsers": ["All"]},
                    "applications": {"includeApplications": ["All"]},
                    "clientAppTypes": ["browser"]
                },
                "grantControls": {"operator": "OR", "builtInControls": ["block"]}
            }),
        )
        .await;
    assert_eq!(
        policy["state"], "enabledForReportingButNotEnforced",
        "{policy}"
    );
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

    // Both the sign-in and the session reuse were judged by the report-only policy.
    let judged = admin
        .get(&format!(
            "/auditLogs/signIns?caPolicy={}&caResult=reportOnlyFailure",
            policy["id"].as_str().unwrap()
        ))
        .await;
    let judged = judged["value"].as_array().unwrap();
    assert_eq!(judged.len(), 2, "{judged:?}");
    assert!(
        judged.iter().all(|r| r["result"] == "success"),
        "report-only changes nothing: {judged:?}"
    );
    assert!(
        judged.iter().all(|r| r["devicePlatform"] == "linux"),
        "the platform comes from the real browser's User-Agent: {judged:?}"
    );

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

/// How long a browser script may run: it bounds itself to 60 s; this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// Run `e2e/<script>` with `envs`; returns its one JSON line (whatever `ok` says) and stderr.
async fn run_browser_script(script: &str, envs: &[(&str, &str)]) -> (Value, String) {
    let node_dir = required_env("CUTOVER_TEST_NODE_DIR");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(Path::new(&node_dir).join(script))
        .envs(envs.iter().copied())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not exit within {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| {
            panic!("run node {script} (installed by scripts/install-deps.sh): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("{script} output: {stdout}\n{stderr}"));
    (result, stderr)
}

/// One sign-in of pilot1 from a fresh browser context through `e2e/browser-federation.mjs`,
/// expecting `expect` (`federated` or `managed`). Returns the script's report (whatever `ok`
/// says), its stderr, and the PKCE verifier that goes with the code it may have brought back.
async fn browser_federation_run(
    fx: &FedEnv,
    chromium: &str,
    shots: &Path,
    expect: &str,
    password: &str,
) -> (Value, String, String) {
    let (verifier, challenge) = pkce();
    let url = auth_url(
        &fx.rp.base,
        &fx.rp.client_id,
        crate::sync::REDIRECT,
        &challenge,
        &[],
    );
    let shots = shots.to_string_lossy();
    let (result, stderr) = run_browser_script(
        "browser-federation.mjs",
        &[
            ("CHROMIUM", chromium),
            ("AUTH_URL", &url),
            ("USERNAME", "pilot1@example.test"),
            ("UPSTREAM_LOGIN", "pilot1"),
            ("PASSWORD", password),
            ("REDIRECT_PREFIX", crate::sync::REDIRECT),
            ("EXPECT", expect),
            ("SCREENSHOT_DIR", &shots),
        ],
    )
    .await;
    (result, stderr, verifier)
}

/// [`browser_federation_run`] that must succeed by `expect`, back at the client with a code.
async fn browser_federation_sign_in(
    fx: &FedEnv,
    chromium: &str,
    shots: &Path,
    expect: &str,
    password: &str,
) -> (Value, String) {
    let (result, stderr, verifier) =
        browser_federation_run(fx, chromium, shots, expect, password).await;
    assert_eq!(
        result["ok"], true,
        "browser sign-in ({expect}) failed: {result}\n{stderr}"
    );
    assert_eq!(result["route"], expect, "{result}");
    let redirect = result["redirect"].as_str().unwrap();
    assert!(
        redirect.starts_with(&format!("{}?", crate::sync::REDIRECT)),
        "{result}"
    );
    assert_eq!(query_param(redirect, "state").as_deref(), Some("st-123"));
    assert_eq!(query_param(redirect, "error"), None, "{result}");
    assert!(query_param(redirect, "code").is_some(), "{result}");
    (result, verifier)
}

/// A federated run went through Cutover's interstitial to the upstream's login page.
fn assert_federated_pages(run: &Value) {
    assert_eq!(
        (&run["sawUpstreamLogin"], &run["sawPasswordPage"]),
        (&json!(true), &json!(false)),
        "{run}"
    );
    let page = &run["interstitial"];
    assert_eq!(
        (
            &run["sawInterstitial"],
            &page["heading"],
            &page["continueIsTheHop"]
        ),
        (
            &json!(true),
            &json!("Taking you to your organisation's sign-in page"),
            &json!(true)
        ),
        "Cutover's interstitial page, whose link goes where its meta refresh does, leads to the upstream: {run}"
    );
    assert_eq!(page["continueText"], "Continue to Corp IdP", "{run}");
}

/// Redeem the code a browser run brought back; the tokens must come out.
async fn redeem_browser_code(fx: &FedEnv, result: &Value, verifier: &str) -> Value {
    fx.rp
        .redeem(result["redirect"].as_str().unwrap(), verifier)
        .await
}

/// Staged rollout in a real browser: pilot1 of the federated domain signs in at the upstream
/// IdP (through Cutover's interstitial); once group Pilot is in a passwordHashSync rollout
/// policy, exactly one more federated sign-in follows, then Cutover's own password page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_walks_the_federated_then_managed_journey() {
    // Checked first: a missing browser fails the test before anything is started.
    required_env("CUTOVER_TEST_NODE_DIR");
    let chromium = required_env("CUTOVER_TEST_CHROMIUM");
    let fx = FedEnv::start(false).await;
    let admin = &fx.env.admin;
    const PILOT: &str = "pilot1@example.test";
    let shots = fx.env.dir.join("screenshots");

    // 1. A federated domain: the upstream's login page, then back to the client with a code.
    let (run1, verifier) =
        browser_federation_sign_in(&fx, &chromium, &shots.join("1-federated"), "federated", "")
            .await;
    assert_federated_pages(&run1);
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(
        (&rec["route"], &rec["routeReason"], &rec["result"]),
        (
            &json!("federated"),
            &json!("federatedDomain"),
            &json!("success")
        ),
        "{rec}"
    );
    redeem_browser_code(&fx, &run1, &verifier).await;
    // The script tells a wrong route apart: expecting the password page now fails, clearly.
    // (It stops at the upstream's login form: no sign-in is completed, nothing moves.)
    let (wrong, stderr, _) = browser_federation_run(
        &fx,
        &chromium,
        &shots.join("1-not-managed"),
        "managed",
        "pilot-pw",
    )
    .await;
    assert_eq!(wrong["ok"], false, "{wrong}\n{stderr}");
    assert!(
        wrong["error"]
            .as_str()
            .unwrap()
            .contains("but the browser went to the upstream IdP's login page"),
        "{wrong}"
    );
    assert!(
        wrong["pageUrl"]
            .as_str()
            .unwrap()
            .starts_with(&fx.upstream.issuer),
        "{wrong}"
    );

    // 2. The admin stages group Pilot for password hash sync.
    stage_pilot_group(admin).await;

    // 3. Exactly one more federated sign-in; it switches pilot1 at its end.
    let (run2, verifier) =
        browser_federation_sign_in(&fx, &chromium, &shots.join("2-federated"), "federated", "")
            .await;
    assert_federated_pages(&run2);
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(
        (&rec["route"], &rec["result"]),
        (&json!("federated"), &json!("success")),
        "{rec}"
    );
    assert_eq!(
        features(&rec["stagedRollout"]["effectiveAfter"]),
        vec!["passwordHashSync"],
        "{rec}"
    );
    redeem_browser_code(&fx, &run2, &verifier).await;

    // 4. From now on: Cutover's own password page, never the upstream.
    let (run3, verifier) = browser_federation_sign_in(
        &fx,
        &chromium,
        &shots.join("3-managed"),
        "managed",
        "pilot-pw",
    )
    .await;
    assert_eq!(
        (
            &run3["sawPasswordPage"],
            &run3["sawUpstreamLogin"],
            &run3["sawInterstitial"]
        ),
        (&json!(true), &json!(false), &json!(false)),
        "{run3}"
    );
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(
        (&rec["route"], &rec["routeReason"], &rec["result"]),
        (
            &json!("managed"),
            &json!("stagedRolloutPasswordHashSync"),
            &json!("success")
        ),
        "{rec}"
    );
    let tokens = redeem_browser_code(&fx, &run3, &verifier).await;
    assert!(tokens["access_token"].is_string(), "{tokens}");

    for (run, names) in [
        (
            "1-federated",
            &["identifier", "interstitial", "upstream-login"][..],
        ),
        (
            "2-federated",
            &["identifier", "interstitial", "upstream-login"][..],
        ),
        ("3-managed", &["identifier", "password"][..]),
    ] {
        for name in names {
            let png = shots.join(run).join(format!("{name}.png"));
            assert!(png.exists(), "screenshot {}", png.display());
        }
    }
    eprintln!("screenshots: {}", shots.display());
}
