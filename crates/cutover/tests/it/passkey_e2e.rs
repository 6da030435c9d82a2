//! Passkeys in a real browser (SPEC §6.1): headless Chromium with a WebAuthn virtual
//! authenticator, driven step by step through `e2e/passkey-driver.mjs`, against an in-process
//! Cutover whose issuer is `http://localhost:PORT` (a relying-party id is a host name).
//!
//! The journey: the helpdesk issues a Temporary Access Pass; the user signs in with it, opens
//! Security info and adds a passkey; signs in with it by button and by autofill; a cloned
//! authenticator (its counter set back), a replayed assertion, an assertion made on another
//! origin and one made for another RP id are refused; an AAGUID block list — previewed first —
//! stops the passkey; enforced attestation refuses an authenticator that cannot prove its
//! model; a second passkey on a phone (spoofed iPhone User-Agent) is added and the first one
//! removed, after which it no longer signs in.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::{
    Admin, InProcess, auth_url, hidden, location, pkce, query_param, redeem, required_env,
    scratch_dir, seed,
};
use cutover_webauthn::soft::{SoftAttestation, SoftAuthenticator, SoftCredential};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
/// One driver command's bound (the driver bounds each step itself; this is the backstop).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The browser driver: one JSON command per line in, one JSON answer per line out.
pub(crate) struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    pub(crate) fn start(base: &str, shots: &std::path::Path) -> Self {
        let node_dir = required_env("CUTOVER_TEST_NODE_DIR");
        let chromium = required_env("CUTOVER_TEST_CHROMIUM");
        let mut child = tokio::process::Command::new("node")
            .arg(format!("{node_dir}/passkey-driver.mjs"))
            .env("CHROMIUM", chromium)
            .env("BASE", base)
            .env("REDIRECT_PREFIX", REDIRECT)
            .env("SCREENSHOT_DIR", shots)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node (installed by scripts/install-deps.sh)");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Send a command; returns its answer (whatever `ok` says).
    pub(crate) async fn try_send(&mut self, cmd: Value) -> Value {
        let line = format!("{cmd}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser driver did not answer {cmd} in time"))
            .unwrap()
            .unwrap_or_else(|| panic!("the browser driver exited during {cmd}"));
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("driver said: {answer}"))
    }

    /// Send a command that must succeed, with no console error on the page.
    pub(crate) async fn send(&mut self, cmd: Value) -> Value {
        let v = self.try_send(cmd.clone()).await;
        assert_eq!(v["ok"], true, "{cmd} failed: {v}");
        assert_eq!(
            v["consoleErrors"].as_array().map_or(0, Vec::len),
            0,
            "console errors during {cmd}: {v}"
        );
        v
    }

    pub(crate) async fn close(mut self) {
        let _ = self.try_send(json!({"cmd": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The newest sign-in record of the user.
async fn last_sign_in(admin: &Admin, upn: &str) -> Value {
    admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={upn}&$top=1"
        ))
        .await["value"][0]
        .clone()
}

async fn set_methods_policy(admin: &Admin, policy: Value) -> Value {
    let (status, v) = admin
        .call(
            Method::PUT,
            "/policies/authenticationMethodsPolicy",
            Some(policy),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

fn default_policy() -> Value {
    json!({
        "passkey": {"target": {"enabled": true, "allUsers": true}},
        "totp": {"enabled": true, "allUsers": true},
        "temporaryAccessPass": {"enabled": true, "allUsers": true},
        "password": {"enabled": true, "allUsers": true},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_passkeys_register_sign_in_and_refuse_what_they_must() {
    // Checked first: a missing browser fails the test before anything is started.
    required_env("CUTOVER_TEST_NODE_DIR");
    required_env("CUTOVER_TEST_CHROMIUM");
    let server =
        InProcess::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let base = server.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&server.base, &server.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let user = f.user_id.clone();
    let shots = scratch_dir("passkeys").join("screenshots");
    let (status, v) = admin
        .call(
            Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let url = |extra: &[(&str, &str)]| {
        let (verifier, challenge) = pkce();
        (
            auth_url(&base, &f.client_id, REDIRECT, &challenge, extra),
            verifier,
        )
    };

    let mut d = Driver::start(&base, &shots);
    d.send(json!({"cmd": "newContext"})).await;

    // --- a password-only session may not add a passkey --------------------------------
    let (u, _) = url(&[]);
    let r = d
        .send(json!({"cmd": "signInPassword", "authUrl": u, "username": f.upn, "password": f.password}))
        .await;
    assert!(
        r["redirect"].as_str().is_some_and(|r| r.contains("code=")),
        "{r}"
    );
    let s = d.send(json!({"cmd": "security"})).await;
    assert_eq!(s["heading"], "Security info", "{s}");
    assert_eq!(
        s["gateAllowed"], false,
        "a password alone is not a strong sign-in: {s}"
    );
    assert_eq!(s["family"], "linux", "{s}");

    // --- the pass unlocks registration; add a passkey -----------------------------------
    // Multi-use: the user signs in with it on the laptop and on the phone.
    let tap = admin
        .post(
            &format!("/users/{user}/authentication/temporaryAccessPassMethods"),
            json!({"isUsableOnce": false, "lifetimeInMinutes": 60}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d
        .send(json!({"cmd": "signInPass", "authUrl": u, "username": f.upn, "pass": tap}))
        .await;
    assert!(
        r["redirect"].as_str().is_some_and(|r| r.contains("code=")),
        "{r}"
    );
    let s = d.send(json!({"cmd": "security"})).await;
    assert_eq!(s["gateAllowed"], true, "{s}");
    assert_eq!(s["rows"].as_array().unwrap().len(), 0, "{s}");
    let s = d
        .send(json!({"cmd": "addPasskey", "name": "Work laptop"}))
        .await;
    assert!(
        s["notice"]
            .as_str()
            .is_some_and(|n| n.contains("was added")),
        "{s}"
    );
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{s}");
    assert_eq!(rows[0]["name"], "Work laptop");
    assert_eq!(
        rows[0]["kind"], "Device-bound",
        "the virtual authenticator does not sync: {s}"
    );
    let listed = admin
        .get(&format!("/users/{user}/authentication/passkeyMethods"))
        .await;
    let pk = listed["value"][0].clone();
    assert_eq!(pk["displayName"], "Work laptop", "{listed}");
    assert_eq!(pk["deviceFamily"], "linux", "{listed}");
    assert_eq!(pk["isBackedUp"], false, "{listed}");
    let aaguid = pk["aaGuid"].as_str().unwrap().to_owned();
    assert_eq!(
        rows[0]["authenticator"].as_str().unwrap(),
        pk["model"].as_str().unwrap_or("Unknown authenticator"),
        "the page names the model the catalogue knows"
    );
    let registered = admin
        .get("/auditLogs/directoryAudits?action=registerPasskey&$top=5")
        .await;
    assert!(
        registered["value"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "the registration is audited: {registered}"
    );

    // --- sign in with the passkey: button, then autofill --------------------------------
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, verifier) = url(&[]);
    let r = d.send(json!({"cmd": "passkeyButton", "authUrl": u})).await;
    let redirect = r["redirect"]
        .as_str()
        .unwrap_or_else(|| panic!("passkey sign-in: {r}"));
    let code = query_param(redirect, "code").unwrap();
    let (status, tokens) = redeem(&server.base, &f, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "phishingResistantMfa", "{id}");
    let amr: Vec<&str> = id["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(amr.contains(&"hwk") && amr.contains(&"mfa"), "{id}");
    assert!(!amr.contains(&"pwd"), "no password was used: {id}");
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(rec["result"], "success", "{rec}");

    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d
        .send(json!({"cmd": "passkeyAutofill", "authUrl": u}))
        .await;
    assert!(
        r["redirect"].as_str().is_some_and(|r| r.contains("code=")),
        "autofill (conditional mediation) signs in: {r}"
    );
    assert_eq!(r["sawIdentifier"], true, "from the identifier page: {r}");

    // --- the passkey as the second step: the pass is MFA, not phishing-resistant --------
    let (u, verifier) = url(&[("acr_values", "phishingResistantMfa")]);
    d.send(json!({"cmd": "clearCookies"})).await;
    let r = d
        .send(json!({"cmd": "secretThenPasskey", "authUrl": u, "username": f.upn, "secret": tap}))
        .await;
    assert_eq!(r["secondStepHeading"], "A passkey is needed", "{r}");
    let redirect = r["redirect"]
        .as_str()
        .unwrap_or_else(|| panic!("second step: {r}"));
    let (status, tokens) = redeem(
        &server.base,
        &f,
        &query_param(redirect, "code").unwrap(),
        &verifier,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["acr"], "phishingResistantMfa", "{id}");
    let amr: Vec<&str> = id["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        amr.contains(&"tap") && amr.contains(&"hwk"),
        "both steps count: {id}"
    );

    // --- a replayed assertion is refused ------------------------------------------------
    let old = d.send(json!({"cmd": "lastAssertion"})).await;
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d
        .send(json!({"cmd": "replayAssertion", "authUrl": u, "credential": old["credential"]}))
        .await;
    assert!(
        r["redirect"].is_null(),
        "a replayed assertion must not sign in: {r}"
    );
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not be verified")),
        "{r}"
    );
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(rec["failureReason"], "passkeyRejected", "{rec}");

    // --- an assertion made on another origin (another port of localhost) ---------------
    let (u, _) = url(&[]);
    let r = d.send(json!({"cmd": "foreignOrigin", "authUrl": u})).await;
    assert!(r["redirect"].is_null(), "{r}");
    assert!(r["signedOrigin"].as_str().is_some_and(|o| o != base), "{r}");
    assert!(r["error"].is_string(), "{r}");
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(rec["failureReason"], "passkeyRejected", "{rec}");

    // --- ... and for another RP id (a copy of the key for sub.localhost) ---------------
    let creds = d.send(json!({"cmd": "credentials"})).await;
    let cred = creds["credentials"][0].clone();
    d.send(json!({"cmd": "addCredentialForRp", "credential": cred, "rpId": "sub.localhost"}))
        .await;
    let (u, _) = url(&[]);
    let r = d
        .send(json!({"cmd": "foreignOrigin", "authUrl": u, "rpId": "sub.localhost"}))
        .await;
    assert!(r["redirect"].is_null(), "{r}");
    assert!(r["error"].is_string(), "{r}");
    d.send(json!({"cmd": "restoreCredential", "credential": cred}))
        .await;

    // --- a cloned authenticator: the counter goes back ---------------------------------
    let creds = d.send(json!({"cmd": "credentials"})).await;
    let before = creds["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rpId"] == "localhost")
        .unwrap()
        .clone();
    let count_before = before["signCount"].as_u64().unwrap();
    assert!(
        count_before >= 2,
        "the virtual authenticator counts: {before}"
    );
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d.send(json!({"cmd": "passkeyButton", "authUrl": u})).await;
    assert!(r["redirect"].is_string(), "{r}");
    // The copy made before that sign-in now signs with a count the server has seen.
    d.send(json!({"cmd": "restoreCredential", "credential": before}))
        .await;
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d.send(json!({"cmd": "passkeyButton", "authUrl": u})).await;
    assert!(
        r["redirect"].is_null(),
        "a cloned authenticator must not sign in: {r}"
    );
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("may have been copied")),
        "{r}"
    );
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(rec["failureReason"], "passkeyPossibleClone", "{rec}");
    let audits = admin
        .get("/auditLogs/directoryAudits?action=passkeyPossibleClone&$top=5")
        .await;
    assert_eq!(
        audits["value"].as_array().map_or(0, Vec::len),
        1,
        "audited once: {audits}"
    );
    // The genuine authenticator goes on (its counter is ahead of the server's again).
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d.send(json!({"cmd": "passkeyButton", "authUrl": u})).await;
    assert!(r["redirect"].is_string(), "{r}");

    // --- an AAGUID block list, previewed first, stops the passkey -----------------------
    let mut blocked = default_policy();
    blocked["passkey"]["keyRestrictions"] = json!({"enforcement": "block", "aaguids": [aaguid]});
    let (status, preview) = admin
        .call(
            Method::POST,
            "/policies/authenticationMethodsPolicy/preview",
            Some(blocked.clone()),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert!(
        preview["stopWorking"][0]["userPrincipalName"]
            .as_str()
            .is_some_and(|u| u.eq_ignore_ascii_case(&f.upn)),
        "the preview names the user: {preview}"
    );
    assert_eq!(
        preview["stopWorking"][0]["name"], "Work laptop",
        "{preview}"
    );
    assert_eq!(
        preview["usersLeftWithoutPasskey"].as_array().map(Vec::len),
        Some(1),
        "{preview}"
    );
    set_methods_policy(&admin, blocked).await;
    d.send(json!({"cmd": "clearCookies"})).await;
    let (u, _) = url(&[]);
    let r = d.send(json!({"cmd": "passkeyButton", "authUrl": u})).await;
    assert!(
        r["redirect"].is_null(),
        "a blocked model must not sign in: {r}"
    );
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(rec["failureReason"], "methodNotAllowedByPolicy", "{rec}");
    set_methods_policy(&admin, default_policy()).await;

    // --- a phone: attestation enforcement, then a second passkey; remove the first -----
    let laptop = d.send(json!({"cmd": "credentials"})).await["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rpId"] == "localhost")
        .unwrap()
        .clone();
    d.send(json!({"cmd": "newContext", "userAgent": IPHONE_UA}))
        .await;
    let (u, _) = url(&[]);
    let r = d
        .send(json!({"cmd": "signInPass", "authUrl": u, "username": f.upn, "pass": tap}))
        .await;
    assert!(r["redirect"].is_string(), "{r}");
    let mut enforced = default_policy();
    enforced["passkey"]["enforceAttestation"] = json!(true);
    let v = set_methods_policy(&admin, enforced).await;
    assert!(
        v["warnings"].as_array().is_some_and(|w| w
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("attestation")))),
        "enforcing attestation without roots is flagged: {v}"
    );
    let s = d.send(json!({"cmd": "security"})).await;
    assert_eq!(s["family"], "iPhone", "{s}");
    assert!(
        s["guidance"]
            .as_str()
            .is_some_and(|g| g.contains("iCloud Keychain")),
        "{s}"
    );
    // (The refused request shows as a failed fetch in the console: expected here.)
    let s = d
        .try_send(json!({"cmd": "addPasskey", "name": "iPhone"}))
        .await;
    assert_eq!(s["ok"], true, "{s}");
    assert!(
        s["error"].is_string(),
        "an authenticator that cannot prove its model is refused: {s}"
    );
    assert_eq!(
        s["rows"].as_array().unwrap().len(),
        1,
        "nothing was added: {s}"
    );
    set_methods_policy(&admin, default_policy()).await;
    let s = d.send(json!({"cmd": "security"})).await;
    let s2 = d.send(json!({"cmd": "addPasskey", "name": "iPhone"})).await;
    assert!(s["rows"].as_array().unwrap().len() == 1, "{s}");
    let rows = s2["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "second passkey: {s2}");
    assert!(
        rows.iter()
            .any(|r| r["name"] == "iPhone" && r["device"].as_str().unwrap().contains("iPhone")),
        "{s2}"
    );
    let s = d
        .send(json!({"cmd": "removePasskey", "name": "Work laptop"}))
        .await;
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{s}");
    assert_eq!(rows[0]["name"], "iPhone");
    let report = admin
        .get("/reports/authenticationMethods/userRegistrationDetails")
        .await;
    let mine = report["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["userPrincipalName"]
                .as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(&f.upn))
        })
        .unwrap()
        .clone();
    assert_eq!(mine["passkeyCount"], 1, "{mine}");
    assert_eq!(mine["isPasswordlessCapable"], true, "{mine}");
    assert_eq!(mine["deviceFamilies"], json!(["iPhone"]), "{mine}");

    // The removed passkey, back in a fresh authenticator, no longer signs in.
    d.send(json!({"cmd": "newContext"})).await;
    d.send(json!({"cmd": "addCredentialForRp", "credential": laptop, "rpId": "localhost"}))
        .await;
    let (u, _) = url(&[]);
    let r = d.send(json!({"cmd": "passkeyButton", "authUrl": u})).await;
    assert!(
        r["redirect"].is_null(),
        "a removed passkey must not sign in: {r}"
    );
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not registered")),
        "{r}"
    );
    d.close().await;
    assert!(
        shots.join("01-password.png").exists()
            || std::fs::read_dir(&shots).is_ok_and(|mut d| d.next().is_some())
    );
}

// --- the same server path with a software authenticator (no browser) ------------------------

/// A browser-like HTTP client of `http://localhost:PORT` (cookies kept, redirects not followed).
pub(crate) fn localhost_client(server_base: &str) -> reqwest::Client {
    let addr: std::net::SocketAddr = server_base.trim_start_matches("http://").parse().unwrap();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

/// Sign in through the pages with a Temporary Access Pass; the client keeps the session.
async fn pass_session(http: &reqwest::Client, base: &str, client_id: &str, upn: &str, pass: &str) {
    let r = secret_attempt(http, base, client_id, upn, pass).await;
    assert!(
        r.as_ref().is_ok_and(|r| r.contains("code=")),
        "pass sign-in: {r:?}"
    );
}

/// Register `device`'s passkey through Security info; `Ok(credential)` or `Err(the page's error)`.
pub(crate) async fn register_soft(
    http: &reqwest::Client,
    base: &str,
    device: &SoftAuthenticator,
    name: &str,
) -> Result<SoftCredential, String> {
    let html = http
        .get(format!("{base}/my/security"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    if !html.contains("id=\"add-passkey-form\"") {
        // No form: the page explains why (the registration gate).
        let gate = html.split("id=\"gate\"").nth(1).unwrap_or_default();
        return Err(gate.split("</div>").next().unwrap_or_default().to_owned());
    }
    let csrf = hidden(&html, "csrf");
    let res = http
        .post(format!("{base}/my/security/passkeys/options"))
        .form(&[("csrf", csrf.as_str()), ("name", name)])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let options: Value = res.json().await.unwrap();
    if !status.is_success() {
        return Err(options["message"].as_str().unwrap_or_default().to_owned());
    }
    let (response, credential) = device
        .create(&json!({"publicKey": options["publicKey"]}), base)
        .unwrap();
    let res = http
        .post(format!("{base}/my/security/passkeys"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("challenge", options["challenge"].as_str().unwrap()),
            ("credential", &response.to_string()),
        ])
        .send()
        .await
        .unwrap();
    let back = location(&res);
    match query_param(&format!("{base}{back}"), "error") {
        Some(e) => Err(e),
        None => {
            assert!(back.ends_with("done=added"), "{back}");
            Ok(credential)
        }
    }
}

/// A passkey sign-in through the identifier page; `Ok(redirect)` or `Err(the page's text)`.
pub(crate) async fn soft_sign_in(
    base: &str,
    server_base: &str,
    client_id: &str,
    device: &SoftAuthenticator,
    credential: &mut SoftCredential,
    answer_withdrawn: bool,
) -> Result<String, String> {
    let http = localhost_client(server_base);
    let html = identifier_page(&http, base, client_id).await;
    let (t, csrf) = (hidden(&html, "t"), hidden(&html, "csrf"));
    let ask = || async {
        http.post(format!("{base}/login/passkey/options"))
            .form(&[("t", t.as_str()), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let options = ask().await;
    if answer_withdrawn {
        // A second request replaces the first challenge (same handle, new bytes); the
        // answer below is to the first.
        let newer = ask().await;
        assert_ne!(
            newer["publicKey"]["challenge"],
            options["publicKey"]["challenge"]
        );
    }
    let assertion = device
        .get(
            credential,
            &json!({"publicKey": options["publicKey"]}),
            base,
        )
        .unwrap();
    let res = http
        .post(format!("{base}/login/passkey"))
        .form(&[
            ("t", t.as_str()),
            ("csrf", csrf.as_str()),
            ("challenge", options["challenge"].as_str().unwrap()),
            ("credential", &assertion.to_string()),
        ])
        .send()
        .await
        .unwrap();
    if res.status().is_redirection() {
        Ok(location(&res))
    } else {
        Err(res.text().await.unwrap())
    }
}

/// An attestation vendor: a root CA (PEM) and the packed attestation its devices make.
fn vendor(name: &str) -> (String, SoftAttestation) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.distinguished_name
        .push(DnType::CommonName, format!("{name} Root CA"));
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(
        root,
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
    )
    .unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CountryName, "SE");
    leaf.distinguished_name.push(DnType::OrganizationName, name);
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "Authenticator Attestation");
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{name} attestation"));
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &root).unwrap();
    let attestation =
        SoftAttestation::packed(&leaf_key.serialize_der(), vec![leaf_cert.der().to_vec()]).unwrap();
    (root.pem(), attestation)
}

/// YubiKey 5 Series, as the bundled catalogue names it.
const YUBIKEY: uuid::Uuid = uuid::uuid!("cb69481e-8ff7-4039-93ec-0a2729a154a8");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_rp_id_and_the_registration_window_through_http() {
    let (root_pem, attestation) = vendor("Acme Keys");
    let server = InProcess::start_with(|c| {
        c.issuer = c.issuer.replace("127.0.0.1", "localhost");
        c.passkeys.attestation_roots_pem = Some(root_pem);
    })
    .await;
    let base = server.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&server.base, &server.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let (status, v) = admin
        .call(
            Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let tap = admin
        .post(
            &format!(
                "/users/{}/authentication/temporaryAccessPassMethods",
                f.user_id
            ),
            json!({"isUsableOnce": true, "lifetimeInMinutes": 60}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = localhost_client(&server.base);
    pass_session(&http, &base, &f.client_id, &f.upn, &tap).await;

    // Enforced attestation: a key without attestation is refused, the vendor's key is accepted.
    let mut enforced = default_policy();
    enforced["passkey"]["enforceAttestation"] = json!(true);
    let v = set_methods_policy(&admin, enforced).await;
    assert_eq!(v["warnings"], json!([]), "roots are configured: {v}");
    let plain = SoftAuthenticator::new(YUBIKEY);
    let refused = register_soft(&http, &base, &plain, "No attestation").await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("prove their make")),
        "{refused:?}"
    );
    let mut attested = SoftAuthenticator::new(YUBIKEY);
    attested.settings.attestation = attestation;
    attested.settings.transports = vec!["usb".into(), "nfc".into()];
    let mut key = register_soft(&http, &base, &attested, "Blue key")
        .await
        .unwrap();
    let listed = admin
        .get(&format!(
            "/users/{}/authentication/passkeyMethods",
            f.user_id
        ))
        .await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1, "{listed}");
    let pk = &listed["value"][0];
    assert_eq!(pk["isAttested"], true, "{pk}");
    assert_eq!(pk["attestationFormat"], "packed", "{pk}");
    assert_eq!(pk["model"], "YubiKey 5 Series", "{pk}");
    assert_eq!(
        pk["deviceFamily"], "securityKey",
        "a usb/nfc key is a security key: {pk}"
    );
    // Attestation is a registration rule: the key signs in whatever the policy says now.
    assert!(
        soft_sign_in(
            &base,
            &server.base,
            &f.client_id,
            &attested,
            &mut key,
            false
        )
        .await
        .is_ok_and(|r| r.contains("code="))
    );

    // Only the sign-in's newest challenge can be answered.
    let r = soft_sign_in(&base, &server.base, &f.client_id, &attested, &mut key, true).await;
    assert!(r.is_err(), "a withdrawn challenge: {r:?}");
    assert_eq!(
        last_sign_in(&admin, &f.upn).await["failureReason"],
        "passkeyRejected"
    );

    // An assertion whose authenticator data names another RP id is refused.
    let mut wrong_rp = attested.clone();
    wrong_rp.settings.rp_id_override = Some("evil.example".into());
    let r = soft_sign_in(
        &base,
        &server.base,
        &f.client_id,
        &wrong_rp,
        &mut key,
        false,
    )
    .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        last_sign_in(&admin, &f.upn).await["failureReason"],
        "passkeyRejected"
    );
    // A counter that never advances (0 after a count) is a clone, refused.
    let mut stuck = key.clone();
    stuck.set_sign_count(0);
    let mut zero = attested.clone();
    zero.settings.counter_step = 0;
    let r = soft_sign_in(&base, &server.base, &f.client_id, &zero, &mut stuck, false).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(
        last_sign_in(&admin, &f.upn).await["failureReason"],
        "passkeyPossibleClone"
    );

    // The one-time pass's window: 10 minutes to register, then no more.
    set_methods_policy(&admin, default_policy()).await;
    server
        .clock
        .advance_secs(cutover_core::tap::REGISTRATION_WINDOW_SECS);
    let late = register_soft(&http, &base, &SoftAuthenticator::new(YUBIKEY), "Too late").await;
    assert!(
        late.as_ref()
            .is_err_and(|e| e.contains("sign-in from the last few minutes")),
        "{late:?}"
    );
}

/// Start a sign-in at the client and open the identifier page it leads to (its HTML).
async fn identifier_page(http: &reqwest::Client, base: &str, client_id: &str) -> String {
    let (_, challenge) = pkce();
    let res = http
        .get(auth_url(base, client_id, REDIRECT, &challenge, &[]))
        .send()
        .await
        .unwrap();
    let login = location(&res);
    http.get(format!("{base}{login}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A password (or pass) typed on the second page; `Ok(redirect)` or `Err(the page)`.
pub(crate) async fn secret_attempt(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    upn: &str,
    secret: &str,
) -> Result<String, String> {
    let html = identifier_page(http, base, client_id).await;
    let t = hidden(&html, "t");
    let res = http
        .post(format!("{base}/login/identifier"))
        .form(&[
            ("t", t.as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("username", upn),
        ])
        .send()
        .await
        .unwrap();
    let next = location(&res);
    let html = http
        .get(format!("{base}{next}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = http
        .post(format!("{base}/login/password"))
        .form(&[
            ("t", t.as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("password", secret),
        ])
        .send()
        .await
        .unwrap();
    if res.status().is_redirection() {
        Ok(location(&res))
    } else {
        Err(res.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_policy_targets_apply_at_sign_in_and_registration() {
    let server =
        InProcess::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let base = server.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&server.base, &server.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let groups = admin.get("/groups").await;
    let pilot = groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == "Pilot")
        .unwrap()["id"]
        .clone();
    let (status, v) = admin
        .call(
            Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let passes = format!(
        "/users/{}/authentication/temporaryAccessPassMethods",
        f.user_id
    );
    let tap = admin
        .post(
            &passes,
            json!({"isUsableOnce": false, "lifetimeInMinutes": 60}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();

    // Passes excluded for the user's group: the pass stops working (the password page
    // comes back), the API says why, and no new pass can be issued.
    let mut no_passes = default_policy();
    no_passes["temporaryAccessPass"]["excludeGroups"] = json!([pilot]);
    set_methods_policy(&admin, no_passes).await;
    let listed = admin.get(&passes).await;
    assert_eq!(listed["value"][0]["isUsable"], false, "{listed}");
    assert_eq!(
        listed["value"][0]["methodUsabilityReason"], "disabledByPolicy",
        "{listed}"
    );
    let (status, v) = admin.call(Method::POST, &passes, Some(json!({}))).await;
    assert_eq!(status, 400, "{v}");
    let http = localhost_client(&server.base);
    let r = secret_attempt(&http, &base, &f.client_id, &f.upn, &f.password).await;
    assert!(
        r.as_ref().is_ok_and(|r| r.contains("code=")),
        "the password works again: {r:?}"
    );

    // Passwords taken away from the group: the right password is refused, and says why.
    let mut no_passwords = default_policy();
    no_passwords["password"]["excludeGroups"] = json!([pilot]);
    no_passwords["temporaryAccessPass"]["excludeGroups"] = json!([pilot]);
    let v = set_methods_policy(&admin, no_passwords).await;
    assert!(
        v["warnings"].as_array().is_some_and(|w| w.is_empty()),
        "passwords stay on for others: {v}"
    );
    let r = secret_attempt(
        &localhost_client(&server.base),
        &base,
        &f.client_id,
        &f.upn,
        &f.password,
    )
    .await;
    assert!(
        r.as_ref()
            .is_err_and(|page| page.contains("does not allow this sign-in method")),
        "{r:?}"
    );
    assert_eq!(
        last_sign_in(&admin, &f.upn).await["failureReason"],
        "methodNotAllowedByPolicy"
    );

    // An allow list of models is checked at registration too.
    set_methods_policy(&admin, default_policy()).await;
    let http = localhost_client(&server.base);
    pass_session(&http, &base, &f.client_id, &f.upn, &tap).await;
    let mut allow_other = default_policy();
    allow_other["passkey"]["keyRestrictions"] =
        json!({"enforcement": "allow", "aaguids": ["ee882879-721c-4913-9775-3dfcce97072a"]});
    set_methods_policy(&admin, allow_other).await;
    let r = register_soft(
        &http,
        &base,
        &SoftAuthenticator::new(YUBIKEY),
        "Not allowed",
    )
    .await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.contains("does not allow this kind of authenticator")),
        "{r:?}"
    );
    let mut allow_mine = default_policy();
    allow_mine["passkey"]["keyRestrictions"] =
        json!({"enforcement": "allow", "aaguids": [YUBIKEY.to_string()]});
    set_methods_policy(&admin, allow_mine).await;
    let key = register_soft(&http, &base, &SoftAuthenticator::new(YUBIKEY), "Allowed").await;
    assert!(key.is_ok(), "{key:?}");
}
