//! Temporary Access Passes end to end (SPEC §6.3): issuing under the policy, the pass page
//! the identifier step routes to (even in a federated domain), one-time use under a race,
//! validity windows and tokens capped at the pass's end, and smart lockout on pass guesses.
//!
//! Time only moves by stepping the in-process server's `ManualClock`; every loop is bounded.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cutover_server::clock::{Clock, parse_rfc3339, rfc3339};
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Admin, Fixture, InProcess, auth_url, browser, hidden, location, pkce, redeem, seed,
};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// What a person sees after a wrong password or pass, and after a lock.
const INCORRECT: &str = "Your account or password is incorrect";
/// What a person sees after the right pass that cannot be used.
const NOT_USABLE: &str = "This Temporary Access Pass cannot be used now";
const PASS_HEADING: &str = "Enter your Temporary Access Pass";
const POLICY: &str = "/policies/temporaryAccessPass";

fn methods(user: &str) -> String {
    format!("/users/{user}/authentication/temporaryAccessPassMethods")
}

async fn enable_passes(admin: &Admin) {
    let (status, body) = admin
        .call(Method::PUT, POLICY, Some(json!({"enabled": true})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true, "{body}");
}

/// Issue a pass; returns the 201 answer (with the secret).
async fn issue(admin: &Admin, user: &str, body: Value) -> Value {
    let (status, v) = admin.call(Method::POST, &methods(user), Some(body)).await;
    assert_eq!(status, 201, "issuing a pass: {v}");
    assert!(v["temporaryAccessPass"].is_string(), "{v}");
    v
}

fn secret(v: &Value) -> String {
    v["temporaryAccessPass"].as_str().unwrap().to_owned()
}

/// The user's passes as the API lists them (never with the secret).
async fn passes(admin: &Admin, user: &str) -> Vec<Value> {
    let list = admin.get(&methods(user)).await;
    let value = list["value"].as_array().unwrap().clone();
    assert!(value.len() <= 1, "one pass per user at most: {list}");
    for p in &value {
        assert!(p.get("temporaryAccessPass").is_none(), "secret listed: {p}");
    }
    value
}

/// A pass that is not `pass`: its first character replaced by another of the alphabet.
fn wrong_pass(pass: &str, n: usize) -> String {
    let alphabet = cutover_core::tap::ALPHABET;
    let first = pass.as_bytes()[0];
    let mut picks = alphabet.iter().filter(|c| **c != first);
    let c = char::from(*picks.nth(n % (alphabet.len() - 1)).unwrap());
    let wrong = format!("{c}{}", &pass[1..]);
    assert_ne!(wrong, pass);
    wrong
}

/// The newest sign-in record of `upn`.
async fn last_sign_in(admin: &Admin, upn: &str) -> Value {
    admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={upn}&$top=1"
        ))
        .await["value"][0]
        .clone()
}

async fn sign_ins(admin: &Admin, upn: &str) -> Vec<Value> {
    admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={upn}&$top=200"
        ))
        .await["value"]
        .as_array()
        .unwrap()
        .clone()
}

async fn audits(admin: &Admin, action: &str) -> Vec<Value> {
    admin
        .get(&format!("/auditLogs/directoryAudits?action={action}"))
        .await["value"]
        .as_array()
        .unwrap()
        .clone()
}

/// The claims of a JWT (the signature is the relying party's business, not this test's).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// Which page the identifier step led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Pass,
    Password,
}

/// A sign-in transaction standing on its credential page.
#[derive(Debug, Clone)]
struct Step {
    http: reqwest::Client,
    page: Page,
    t: String,
    csrf: String,
    verifier: String,
}

/// Authorize and name the user from `http`: the identifier post's answer and the transaction.
async fn identify(
    http: &reqwest::Client,
    base: &str,
    f: &Fixture,
    upn: &str,
) -> (reqwest::Response, String, String) {
    let (verifier, challenge) = pkce();
    let res = http
        .get(auth_url(base, &f.client_id, REDIRECT, &challenge, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "authorize");
    let login = location(&res);
    assert!(login.starts_with("/login?t="), "{login}");
    let html = http
        .get(format!("{base}{login}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    (res, t, verifier)
}

/// Authorize and name the user from a fresh browser: the transaction on the page the
/// identifier step redirected to (the pass page or the password page).
async fn open(base: &str, f: &Fixture, upn: &str) -> Step {
    let http = browser();
    let (res, t, verifier) = identify(&http, base, f, upn).await;
    assert_eq!(res.status(), 303, "identifier of {upn}");
    let next = location(&res);
    assert_eq!(next, format!("/login/password?t={t}"));
    let html = http
        .get(format!("{base}{next}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let page = if html.contains(PASS_HEADING) {
        assert!(html.contains("autocomplete=\"one-time-code\""), "{html}");
        assert!(html.contains("name=\"password\""), "{html}");
        assert!(!html.contains("current-password"), "{html}");
        Page::Pass
    } else {
        assert!(html.contains("autocomplete=\"current-password\""), "{html}");
        Page::Password
    };
    Step {
        csrf: hidden(&html, "csrf"),
        http,
        page,
        t,
        verifier,
    }
}

/// Post a pass or password on the step's page: (status, the redirect on 303, else the page).
async fn submit(base: &str, step: &Step, typed: &str) -> (u16, String) {
    let res = step
        .http
        .post(format!("{base}/login/password"))
        .form(&[
            ("t", step.t.as_str()),
            ("csrf", step.csrf.as_str()),
            ("password", typed),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    if status == 303 {
        (status, location(&res))
    } else {
        (status, res.text().await.unwrap_or_default())
    }
}

/// The code of a redirect back to the client.
#[track_caller]
fn code_of(r: &(u16, String)) -> String {
    assert_eq!(r.0, 303, "expected a redirect with a code: {}", r.1);
    assert!(r.1.starts_with(REDIRECT), "{}", r.1);
    crate::harness::query_param(&r.1, "code").unwrap_or_else(|| panic!("no code: {}", r.1))
}

#[track_caller]
fn assert_refused(r: &(u16, String), message: &str) {
    assert_ne!(r.0, 303, "expected a refusal, got a redirect to {}", r.1);
    assert!(r.1.contains(message), "expected {message:?}: {}", r.1);
    assert!(r.1.contains(PASS_HEADING), "the pass page again: {}", r.1);
}

/// Sign in with `typed` on the pass page and redeem the code: the token response.
async fn sign_in_with_pass(base: &str, f: &Fixture, upn: &str, typed: &str) -> Value {
    let step = open(base, f, upn).await;
    assert_eq!(step.page, Page::Pass, "{upn} has a usable pass");
    let code = code_of(&submit(base, &step, typed).await);
    let (status, tokens) = redeem(base, f, &code, &step.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

#[track_caller]
fn assert_tap_amr(tokens: &Value) {
    let id = claims(tokens["id_token"].as_str().unwrap());
    let amr: Vec<&str> = id["amr"]
        .as_array()
        .unwrap_or_else(|| panic!("no amr: {id}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(amr.contains(&"tap") && amr.contains(&"mfa"), "{id}");
    assert!(!amr.contains(&"pwd"), "{id}");
    assert_eq!(id["acr"], "mfa", "a pass is multi-factor: {id}");
}

async fn refresh(base: &str, f: &Fixture, rt: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&f.client_id, Some(&f.client_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_issue_sign_in_and_usability() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();

    // Off until the policy says otherwise.
    let policy = admin.get(POLICY).await;
    assert_eq!(policy["enabled"], false, "{policy}");
    let (status, body) = admin
        .call(Method::POST, &methods(&f.upn), Some(json!({})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("disabledByPolicy")),
        "{body}"
    );
    assert!(passes(&admin, &f.upn).await.is_empty());
    enable_passes(&admin).await;
    let policy = admin.get(POLICY).await;
    assert_eq!(
        (
            &policy["enabled"],
            &policy["defaultLifetimeSecs"],
            &policy["maxLifetimeSecs"]
        ),
        (&json!(true), &json!(3_600), &json!(8 * 3_600)),
        "the other settings keep their defaults: {policy}"
    );
    // Requests outside the policy are refused with what to change.
    let now = srv.clock.now();
    for (req, code) in [
        (json!({"lifetimeInMinutes": 5}), "lifetimeOutOfRange"),
        (json!({"lifetimeInMinutes": 9 * 60}), "lifetimeOutOfRange"),
        (
            json!({"startDateTime": rfc3339(now.minus_secs(3_600))}),
            "startInPast",
        ),
    ] {
        let (status, body) = admin
            .call(Method::POST, &methods(&f.upn), Some(req.clone()))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{req}: {body}"
        );
    }
    assert!(audits(&admin, "createTemporaryAccessPass").await.is_empty());

    // A one-time pass.
    let created = issue(&admin, &f.upn, json!({"isUsableOnce": true})).await;
    let pass = secret(&created);
    let pass_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(pass.len(), 8, "the policy's default length: {created:?}");
    assert_eq!(
        (
            &created["isUsableOnce"],
            &created["isUsable"],
            &created["methodUsabilityReason"]
        ),
        (&json!(true), &json!(true), &json!("enabledByPolicy")),
        "{created}"
    );
    assert_eq!(created["lifetimeInMinutes"], 60, "{created}");

    // Two sign-ins reach the pass page before the pass is used: the identifier step routes a
    // user with a usable pass to it instead of the password page.
    let first = open(base, &f, &f.upn).await;
    let second = open(base, &f, &f.upn).await;
    assert_eq!((first.page, second.page), (Page::Pass, Page::Pass));

    // A wrong pass: the generic message, recorded as a wrong password.
    let wrong = submit(base, &first, &wrong_pass(&pass, 0)).await;
    assert_refused(&wrong, INCORRECT);
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(
        (
            &rec["result"],
            &rec["failureReason"],
            &rec["authenticationMethods"]
        ),
        (
            &json!("failure"),
            &json!("invalidPassword"),
            &json!(["temporaryAccessPass"])
        ),
        "{rec}"
    );

    // The right pass, typed as people do (lower case, a space in the middle): a code.
    let typed = format!("{} {}", pass[..4].to_lowercase(), pass[4..].to_lowercase());
    let code = code_of(&submit(base, &first, &typed).await);
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(
        (
            &rec["result"],
            &rec["authenticationMethods"],
            &rec["routeReason"]
        ),
        (
            &json!("success"),
            &json!(["temporaryAccessPass"]),
            &json!("temporaryAccessPass")
        ),
        "{rec}"
    );
    let (status, tokens) = redeem(base, &f, &code, &first.verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_tap_amr(&tokens);
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], f.user_id.as_str(), "{id}");

    // Spent.
    let listed = passes(&admin, &f.upn).await;
    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert_eq!(
        (&p["id"], &p["isUsable"], &p["methodUsabilityReason"]),
        (&json!(pass_id), &json!(false), &json!("oneTimeUsed")),
        "{p}"
    );
    assert!(p["usedDateTime"].is_string(), "{p}");
    let one = admin.get(&format!("{}/{pass_id}", methods(&f.upn))).await;
    assert_eq!(one["methodUsabilityReason"], "oneTimeUsed", "{one}");
    assert!(one.get("temporaryAccessPass").is_none(), "{one}");

    // The sign-in that was already on the pass page: the right pass is refused now.
    let again = submit(base, &second, &pass).await;
    assert_refused(&again, NOT_USABLE);
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(
        (&rec["result"], &rec["failureReason"]),
        (&json!("failure"), &json!("temporaryAccessPassNotUsable")),
        "{rec}"
    );
    // A new sign-in is no longer routed to the pass page: the password page, where the spent
    // pass is just a wrong password and the password works.
    let step = open(base, &f, &f.upn).await;
    assert_eq!(step.page, Page::Password);
    let (status, page) = submit(base, &step, &pass).await;
    assert_ne!(status, 303);
    assert!(page.contains(INCORRECT), "{page}");
    assert_eq!(
        last_sign_in(&admin, &f.upn).await["failureReason"],
        "invalidPassword"
    );
    code_of(&submit(base, &step, &f.password).await);

    // Audited once, with what was issued.
    let created_audits = audits(&admin, "createTemporaryAccessPass").await;
    assert_eq!(created_audits.len(), 1, "{created_audits:?}");
    assert_eq!(created_audits[0]["targetId"], f.user_id.as_str());
    assert!(
        created_audits[0].to_string().contains(&pass_id),
        "{}",
        created_audits[0]
    );
    assert!(
        !created_audits[0].to_string().contains(&pass),
        "the secret is never audited: {}",
        created_audits[0]
    );

    // A new pass replaces the old one.
    let replacement = issue(&admin, &f.upn, json!({"isUsableOnce": false})).await;
    let new_id = replacement["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, pass_id);
    assert_ne!(secret(&replacement), pass);
    let listed = passes(&admin, &f.upn).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (&listed[0]["id"], &listed[0]["isUsable"]),
        (&json!(new_id), &json!(true))
    );
    let (status, _) = admin
        .call(Method::GET, &format!("{}/{pass_id}", methods(&f.upn)), None)
        .await;
    assert_eq!(status, 404, "the replaced pass is gone");
    let created_audits = audits(&admin, "createTemporaryAccessPass").await;
    assert_eq!(created_audits.len(), 2, "{created_audits:?}");

    // Deleted: gone, audited, and the user is back on the password page.
    let (status, body) = admin
        .call(
            Method::DELETE,
            &format!("{}/{new_id}", methods(&f.upn)),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(passes(&admin, &f.upn).await.is_empty());
    let deleted = audits(&admin, "deleteTemporaryAccessPass").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(deleted[0]["targetId"], f.user_id.as_str());
    assert!(deleted[0].to_string().contains(&new_id), "{}", deleted[0]);
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("{}/{new_id}", methods(&f.upn)),
            None,
        )
        .await;
    assert_eq!(status, 404, "deleting twice");
    assert_eq!(open(base, &f, &f.upn).await.page, Page::Password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tap_fifty_parallel_uses_of_a_one_time_pass_succeed_once() {
    const N: usize = 50;
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    enable_passes(&admin).await;
    // Smart lockout holds concurrent checks of one user to its threshold (each in-flight check
    // reserves a possible failure); at the default of 10 most of the 50 would be turned away
    // before reaching the pass. At its maximum, all 50 race for the pass itself.
    let mut lockout = admin.get("/policies/smartLockout").await["policy"].clone();
    lockout["threshold"] = json!(100);
    let (status, body) = admin
        .call(Method::PUT, "/policies/smartLockout", Some(lockout))
        .await;
    assert_eq!(status, 200, "{body}");
    let pass = secret(&issue(&admin, &f.upn, json!({"isUsableOnce": true})).await);

    // Every browser on the pass page first.
    let mut steps = Vec::with_capacity(N);
    for _ in 0..N {
        let step = open(&srv.base, &f, &f.upn).await;
        assert_eq!(step.page, Page::Pass);
        steps.push(step);
    }
    // Then all at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = tokio::task::JoinSet::new();
    for step in steps {
        let (barrier, base, pass) = (barrier.clone(), srv.base.clone(), pass.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            submit(&base, &step, &pass).await
        });
    }
    let mut codes = 0;
    let mut refusals = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("a sign-in task");
        if r.0 == 303 {
            code_of(&r);
            codes += 1;
        } else {
            assert_refused(&r, NOT_USABLE);
            refusals += 1;
        }
    }
    assert_eq!((codes, refusals), (1, N - 1));

    let records = sign_ins(&admin, &f.upn).await;
    let successes = records.iter().filter(|r| r["result"] == "success").count();
    assert_eq!(successes, 1, "one success recorded");
    let failures: Vec<&Value> = records
        .iter()
        .filter(|r| r["result"] == "failure")
        .collect();
    assert_eq!(failures.len(), N - 1);
    for r in failures {
        // Every loser reached the pass and found it spent; none was judged a wrong pass.
        assert_eq!(r["failureReason"], "temporaryAccessPassNotUsable", "{r}");
    }
    let p = &passes(&admin, &f.upn).await[0];
    assert_eq!(p["methodUsabilityReason"], "oneTimeUsed", "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_not_yet_valid_and_expired() {
    let srv = InProcess::start().await;
    let mut admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    enable_passes(&admin).await;

    // A pass for later is not usable yet: the identifier step does not offer it.
    let start = srv.clock.now().plus_secs(2 * 3_600);
    let later = issue(
        &admin,
        &f.upn,
        json!({"startDateTime": rfc3339(start), "lifetimeInMinutes": 60, "isUsableOnce": true}),
    )
    .await;
    assert_eq!(
        (&later["isUsable"], &later["methodUsabilityReason"]),
        (&json!(false), &json!("notYetValid")),
        "{later}"
    );
    assert_eq!(open(base, &f, &f.upn).await.page, Page::Password);
    assert_eq!(
        passes(&admin, &f.upn).await[0]["methodUsabilityReason"],
        "notYetValid"
    );

    // Two hours on, it is.
    srv.clock.advance_secs(2 * 3_600);
    // (The admin's own token has expired meanwhile.)
    admin = Admin::login(&srv.base, &srv.creds).await;
    assert_eq!(
        passes(&admin, &f.upn).await[0]["methodUsabilityReason"],
        "enabledByPolicy"
    );
    let tokens = sign_in_with_pass(base, &f, &f.upn, &secret(&later)).await;
    assert_tap_amr(&tokens);

    // A multi-use pass of one hour: tokens never outlive it.
    let multi = issue(
        &admin,
        &f.upn,
        json!({"lifetimeInMinutes": 60, "isUsableOnce": false}),
    )
    .await;
    let pass = secret(&multi);
    let end = parse_rfc3339(multi["startDateTime"].as_str().unwrap())
        .unwrap()
        .plus_secs(3_600)
        .secs();
    srv.clock.advance_secs(10 * 60);
    let tokens = sign_in_with_pass(base, &f, &f.upn, &pass).await;
    assert_tap_amr(&tokens);
    let now = srv.clock.now().secs();
    let expires_in = tokens["expires_in"].as_i64().unwrap();
    assert!(
        expires_in <= 3_600 && expires_in <= end - now && expires_in > 0,
        "expires_in {expires_in}, {} s of the pass left",
        end - now
    );
    let at = claims(tokens["access_token"].as_str().unwrap());
    assert!(at["exp"].as_i64().unwrap() <= end, "{at} ends after {end}");
    // Multi-use: a second sign-in works too.
    let second = sign_in_with_pass(base, &f, &f.upn, &pass).await;
    assert_tap_amr(&second);

    // A refresh inside the window is capped as well.
    srv.clock.advance_secs(20 * 60);
    let (status, refreshed) = refresh(base, &f, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{refreshed}");
    let now = srv.clock.now().secs();
    let expires_in = refreshed["expires_in"].as_i64().unwrap();
    assert!(
        expires_in > 0 && expires_in <= end - now,
        "expires_in {expires_in}, {} s of the pass left",
        end - now
    );
    assert!(
        claims(refreshed["access_token"].as_str().unwrap())["exp"]
            .as_i64()
            .unwrap()
            <= end
    );

    // Past the pass's end: no refresh, and the pass reads expired.
    srv.clock.advance_secs(end - now + 1);
    admin = Admin::login(&srv.base, &srv.creds).await;
    let (status, body) = refresh(base, &f, refreshed["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, body) = refresh(base, &f, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the other grant of the pass ends too: {body}"
    );
    let p = &passes(&admin, &f.upn).await[0];
    assert_eq!(
        (&p["isUsable"], &p["methodUsabilityReason"]),
        (&json!(false), &json!("expired")),
        "{p}"
    );
    assert_eq!(open(base, &f, &f.upn).await.page, Page::Password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_takes_precedence_over_federation() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    enable_passes(&admin).await;

    // A federated domain whose identity provider listens nowhere: nobody can sign in upstream.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let idp = admin
        .post(
            "/identityProviders",
            json!({"displayName": "Legacy", "issuer": format!("http://127.0.0.1:{port}"),
                   "clientId": "cutover", "clientSecret": "never-used"}),
        )
        .await;
    admin
        .post(
            "/domains",
            json!({"id": "fabrikam.example", "authenticationType": "federated",
                   "identityProviderId": idp["id"]}),
        )
        .await;
    let upn = "fed1@fabrikam.example";
    admin
        .post(
            "/users",
            json!({"userPrincipalName": upn, "displayName": "Fed One", "accountEnabled": true,
                   "source": "synced", "immutableId": "anchor-fed1"}),
        )
        .await;

    // Without a pass the user is sent to the (unreachable) upstream, not to a Cutover page.
    let (res, _, _) = identify(&browser(), base, &f, upn).await;
    let status = res.status().as_u16();
    let answer = res.text().await.unwrap_or_default();
    assert!(!answer.contains(PASS_HEADING), "{answer}");
    assert_ne!(status, 303, "{answer}");
    let rec = last_sign_in(&admin, upn).await;
    assert_eq!(rec["route"], "federated", "{rec}");

    // With a usable pass: the pass page, and a sign-in at Cutover.
    let pass = secret(&issue(&admin, upn, json!({})).await);
    let tokens = sign_in_with_pass(base, &f, upn, &pass).await;
    assert_tap_amr(&tokens);
    let rec = last_sign_in(&admin, upn).await;
    assert_eq!(
        (
            &rec["result"],
            &rec["route"],
            &rec["routeReason"],
            &rec["authenticationMethods"]
        ),
        (
            &json!("success"),
            &json!("managed"),
            &json!("temporaryAccessPass"),
            &json!(["temporaryAccessPass"])
        ),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_wrong_passes_lock_the_account() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    enable_passes(&admin).await;
    let pass = secret(&issue(&admin, &f.upn, json!({"isUsableOnce": false})).await);
    let threshold = admin.get("/policies/smartLockout").await["policy"]["threshold"]
        .as_u64()
        .expect("the lockout threshold") as usize;
    assert!((1..=28).contains(&threshold), "{threshold}");

    // Distinct wrong passes (a repeated one is not counted again) on one pass page.
    let step = open(base, &f, &f.upn).await;
    assert_eq!(step.page, Page::Pass);
    for n in 0..threshold {
        let r = submit(base, &step, &wrong_pass(&pass, n)).await;
        assert_refused(&r, INCORRECT);
        assert_eq!(
            last_sign_in(&admin, &f.upn).await["failureReason"],
            "invalidPassword",
            "guess {n}"
        );
    }
    let lock = admin.get(&format!("/users/{}/lockout", f.upn)).await;
    assert_eq!(lock["status"]["locked"], true, "{lock}");

    // Locked: even the right pass is answered like a wrong one, and the pass is not spent.
    let r = submit(base, &step, &pass).await;
    assert_refused(&r, INCORRECT);
    assert!(!r.1.contains(NOT_USABLE), "{}", r.1);
    let rec = last_sign_in(&admin, &f.upn).await;
    assert_eq!(
        (&rec["result"], &rec["failureReason"]),
        (&json!("failure"), &json!("accountLockedSmartLockout")),
        "{rec}"
    );
    let fresh = open(base, &f, &f.upn).await;
    assert_eq!(fresh.page, Page::Pass, "the pass is still usable");
    assert_refused(&submit(base, &fresh, &pass).await, INCORRECT);

    // The administrator unlocks: the pass works.
    admin
        .post(&format!("/users/{}/lockout/unlock", f.upn), json!({}))
        .await;
    let tokens = sign_in_with_pass(base, &f, &f.upn, &pass).await;
    assert_tap_amr(&tokens);
}

/// A disabled account with the right one-time pass is told it is disabled (only the pass's
/// holder learns that) and the pass is not spent; the same wrong pass retyped in another
/// case or spacing is one guess, not several; the staged-rollout view shows the pass route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_disabled_accounts_keep_their_pass_and_retyped_guesses_count_once() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    enable_passes(&admin).await;
    let pass = secret(&issue(&admin, &f.upn, json!({"isUsableOnce": true})).await);
    let view = admin.get(&format!("/users/{}/stagedRollout", f.upn)).await;
    assert_eq!(
        view["route"]["reason"], "temporaryAccessPass",
        "the view shows the route the next sign-in takes: {view}"
    );

    let step = open(base, &f, &f.upn).await;
    assert_eq!(step.page, Page::Pass);
    let wrong = wrong_pass(&pass, 0);
    for typed in [
        wrong.clone(),
        wrong.to_lowercase(),
        format!(" {} {} ", &wrong[..4], &wrong[4..]),
    ] {
        assert_refused(&submit(base, &step, &typed).await, INCORRECT);
    }
    let lock = admin.get(&format!("/users/{}/lockout", f.upn)).await;
    let failures = lock["status"]["unfamiliarFailures"].as_u64().unwrap_or(0)
        + lock["status"]["familiarFailures"].as_u64().unwrap_or(0);
    assert_eq!(failures, 1, "one guess, typed three ways: {lock}");

    let (s, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/users/{}", f.user_id),
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = submit(base, &step, &pass).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.contains("disabled"), "{}", r.1);
    assert_eq!(
        last_sign_in(&admin, &f.upn).await["failureReason"],
        "accountDisabled"
    );
    let listed = passes(&admin, &f.upn).await;
    assert_eq!(listed[0]["isUsable"], true, "not spent: {listed:?}");
    // Enabled again, the same pass signs in.
    let (s, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/users/{}", f.user_id),
            Some(json!({"accountEnabled": true})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let tokens = sign_in_with_pass(base, &f, &f.upn, &pass).await;
    assert_tap_amr(&tokens);
}
