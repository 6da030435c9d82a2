//! The authenticator app (TOTP, SPEC §6.2) and step-up (SPEC §3 step 6, §6.5) end to end:
//! enrolment on the security-info pages behind a recent strong sign-in, `acr_values=mfa` sign-ins
//! that stop at `/login/mfa` for a code, replayed and skewed codes, the attempt limit, a step-up
//! from an existing password session, and the staged `multiFactorAuthentication` feature after
//! a real upstream IdP.
//!
//! Time only moves by stepping the in-process server's `ManualClock` (the federated test runs a
//! server process on the system clock and computes codes for it); codes are computed with
//! `cutover_core::totp::code_at` from the key the enrolment page shows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cutover_core::totp::{TotpParams, base32_decode, code_at};
use cutover_server::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Admin, Fixture, InProcess, auth_url, browser, hidden, location, pkce, query_param, redeem, seed,
};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const TOTP_PAGE: &str = "/my/security/totp";
const MFA_PAGE: &str = "/login/mfa";
/// What a person sees after a wrong or replayed code.
const WRONG_CODE: &str = "That code is not right, or it was already used";
const TOO_MANY: &str = "Too many wrong codes";
const STEP_SECS: i64 = 30;

/// An answer: the status and, for a redirect, where to; otherwise the page.
pub(crate) type Answer = (u16, String);

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status().as_u16();
    if status == 303 || status == 302 {
        (status, location(&res))
    } else {
        (status, res.text().await.unwrap_or_default())
    }
}

pub(crate) async fn get(http: &reqwest::Client, url: &str) -> Answer {
    answer(http.get(url).send().await.unwrap()).await
}

pub(crate) async fn post(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> Answer {
    answer(http.post(url).form(form).send().await.unwrap()).await
}

/// The claims of a JWT (the signature is the relying party's business, not this test's).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn amr(id_token: &Value) -> Vec<String> {
    id_token["amr"]
        .as_array()
        .unwrap_or_else(|| panic!("no amr: {id_token}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The text of the element with `id` (its first text run).
fn text_of(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in: {html}"));
    let start = html[at..].find('>').unwrap() + at + 1;
    let end = html[start..].find('<').unwrap() + start;
    html[start..end].to_owned()
}

/// The newest `n` sign-in records of `upn`, newest first.
pub(crate) async fn sign_ins(admin: &Admin, upn: &str, n: usize) -> Vec<Value> {
    admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={upn}&$top={n}"
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

/// A browser that has authorized at the client: the PKCE verifier and the first hop.
pub(crate) async fn authorize(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    extra: &[(&str, &str)],
) -> (String, Answer) {
    let (verifier, challenge) = pkce();
    let first = get(
        http,
        &auth_url(base, client_id, REDIRECT, &challenge, extra),
    )
    .await;
    (verifier, first)
}

/// From the identifier page `login` (`/login?t=…`): name `upn`, then type `credential` on the
/// password (or pass) page; the answer to the credential post.
pub(crate) async fn identify_and_type(
    http: &reqwest::Client,
    base: &str,
    login: &str,
    upn: &str,
    credential: &str,
) -> Answer {
    assert!(login.starts_with("/login?t="), "{login}");
    let (_, html) = get(http, &format!("{base}{login}")).await;
    let t = hidden(&html, "t");
    let next = post(
        http,
        &format!("{base}/login/identifier"),
        &[
            ("t", t.as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("username", upn),
        ],
    )
    .await;
    assert_eq!(next.0, 303, "identifier: {}", next.1);
    let (_, page) = get(http, &format!("{base}{}", next.1)).await;
    post(
        http,
        &format!("{base}/login/password"),
        &[
            ("t", t.as_str()),
            ("csrf", &hidden(&page, "csrf")),
            ("password", credential),
        ],
    )
    .await
}

/// On the second-factor page `mfa` (`/login/mfa?t=…`): type `code`.
pub(crate) async fn type_code(http: &reqwest::Client, base: &str, mfa: &str, code: &str) -> Answer {
    assert!(mfa.starts_with(&format!("{MFA_PAGE}?t=")), "{mfa}");
    let (status, html) = get(http, &format!("{base}{mfa}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<label for=\"otp\">"), "{html}");
    assert!(html.contains("id=\"verify\""), "{html}");
    post(
        http,
        &format!("{base}{MFA_PAGE}"),
        &[
            ("t", hidden(&html, "t").as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("otp", code),
        ],
    )
    .await
}

/// Redeem the code of a redirect to the client: the ID token's claims.
pub(crate) async fn id_token_of(base: &str, f: &Fixture, back: &Answer, verifier: &str) -> Value {
    assert_eq!(back.0, 303, "expected a redirect to the client: {}", back.1);
    assert!(back.1.starts_with(REDIRECT), "{}", back.1);
    let code = query_param(&back.1, "code").unwrap_or_else(|| panic!("no code: {}", back.1));
    let (status, tokens) = redeem(base, f, &code, verifier).await;
    assert_eq!(status, 200, "{tokens}");
    claims(tokens["id_token"].as_str().unwrap())
}

/// A six-digit code that is none of the codes around `now` (a wrong guess, never a lucky one).
fn wrong_code(secret: &[u8], now_secs: i64) -> String {
    let near: Vec<String> = (-2..=2)
        .map(|k| code_at(secret, TotpParams::default(), now_secs + k * STEP_SECS))
        .collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .unwrap()
}

pub(crate) async fn enable_passes(admin: &Admin) {
    let (status, body) = admin
        .call(
            Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Issue a one-time pass for `user` (id or UPN); returns the secret.
async fn issue_pass(admin: &Admin, user: &str) -> String {
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/users/{user}/authentication/temporaryAccessPassMethods"),
            Some(json!({"isUsableOnce": true})),
        )
        .await;
    assert_eq!(status, 201, "issuing a pass: {v}");
    v["temporaryAccessPass"].as_str().unwrap().to_owned()
}

/// The enrolment page as it stands: the key, the form's CSRF token and enrolment id.
struct EnrolPage {
    secret: Vec<u8>,
    csrf: String,
    id: String,
}

fn enrol_page(html: &str) -> EnrolPage {
    assert!(
        html.contains("<img id=\"qr\" src=\"data:image/svg+xml;base64,"),
        "a QR code: {html}"
    );
    assert!(html.contains("<label for=\"otp\">"), "{html}");
    assert!(html.contains("id=\"verify\""), "{html}");
    let key = text_of(html, "secret");
    assert!(
        key.split(' ').all(|g| g.len() == 4),
        "grouped in fours: {key}"
    );
    let secret = base32_decode(&key).expect("the key is base32");
    assert_eq!(secret.len(), cutover_core::totp::SECRET_BYTES);
    EnrolPage {
        secret,
        csrf: hidden(html, "csrf"),
        id: hidden(html, "id"),
    }
}

/// Sign `upn` in with a fresh one-time pass from a fresh browser (an SSO session strong
/// enough to register), open the enrolment page and confirm it with the current code at
/// `now_secs()`; returns the key and the browser.
pub(crate) async fn enrol_with_pass(
    base: &str,
    admin: &Admin,
    client_id: &str,
    upn: &str,
    now_secs: impl Fn() -> i64,
) -> (Vec<u8>, reqwest::Client) {
    let pass = issue_pass(admin, upn).await;
    let http = browser();
    let (_, first) = authorize(&http, base, client_id, &[]).await;
    let back = identify_and_type(&http, base, &first.1, upn, &pass).await;
    assert_eq!(back.0, 303, "pass sign-in: {}", back.1);
    assert!(back.1.starts_with(REDIRECT), "{}", back.1);
    let (status, html) = get(&http, &format!("{base}{TOTP_PAGE}")).await;
    assert_eq!(status, 200, "{html}");
    let page = enrol_page(&html);
    let code = code_at(&page.secret, TotpParams::default(), now_secs());
    let done = post(
        &http,
        &format!("{base}{TOTP_PAGE}"),
        &[("csrf", &page.csrf), ("id", &page.id), ("otp", &code)],
    )
    .await;
    assert_eq!(done.0, 200, "{}", done.1);
    assert!(
        done.1.contains("Your authenticator app is set up"),
        "{}",
        done.1
    );
    let confirmed = audits(admin, "confirmTotp").await;
    assert_eq!(
        confirmed.len(),
        1,
        "the confirmation is audited: {confirmed:?}"
    );
    assert_eq!(
        confirmed[0]["after"]["status"], "confirmed",
        "{}",
        confirmed[0]
    );
    (page.secret, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_needs_a_recent_strong_sign_in_and_a_first_code() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();

    // A password alone does not unlock registration: no key is made, nothing is stored.
    let http = browser();
    let (_, first) = authorize(&http, base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    assert!(back.1.starts_with(REDIRECT), "{}", back.1);
    let (status, html) = get(&http, &format!("{base}{TOTP_PAGE}")).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("Sign in again"), "{html}");
    assert!(html.contains("Temporary Access Pass"), "{html}");
    assert!(html.contains("id=\"signin-again\""), "{html}");
    assert!(
        !html.contains("id=\"qr\"") && !html.contains("id=\"secret\""),
        "{html}"
    );
    assert!(audits(&admin, "registerTotp").await.is_empty());

    // After a Temporary Access Pass: the QR code and the key; a wrong code is refused on the
    // same page with the same key, the right one confirms.
    enable_passes(&admin).await;
    let pass = issue_pass(&admin, &f.upn).await;
    let http = browser();
    let (_, first) = authorize(&http, base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, base, &first.1, &f.upn, &pass).await;
    assert!(back.1.starts_with(REDIRECT), "{}", back.1);
    // No session: the enrolment page sends the browser through the sign-in first.
    let (status, to) = get(&browser(), &format!("{base}{TOTP_PAGE}")).await;
    assert_eq!((status, to.starts_with("/login?t=")), (303, true), "{to}");
    let (status, html) = get(&http, &format!("{base}{TOTP_PAGE}")).await;
    assert_eq!(status, 200, "{html}");
    let page = enrol_page(&html);
    // A second look shows the same pending enrolment (the app may have scanned it already).
    let (_, again) = get(&http, &format!("{base}{TOTP_PAGE}")).await;
    assert_eq!(enrol_page(&again).secret, page.secret);
    let started = audits(&admin, "registerTotp").await;
    assert_eq!(started.len(), 1, "{started:?}");
    let actor = |a: &Value| a["actor"].as_str().unwrap_or("").to_lowercase();
    assert_eq!(
        actor(&started[0]),
        format!("user:{}", f.upn),
        "{}",
        started[0]
    );
    assert_eq!(started[0]["targetId"], f.user_id.as_str(), "{}", started[0]);

    let now = srv.clock.now().secs();
    let url = format!("{base}{TOTP_PAGE}");
    // Without the CSRF token: refused.
    let forged = post(
        &http,
        &url,
        &[
            ("id", page.id.as_str()),
            ("otp", &code_at(&page.secret, TotpParams::default(), now)),
        ],
    )
    .await;
    assert_eq!(forged.0, 403, "{}", forged.1);
    let wrong = post(
        &http,
        &url,
        &[
            ("csrf", page.csrf.as_str()),
            ("id", &page.id),
            ("otp", &wrong_code(&page.secret, now)),
        ],
    )
    .await;
    assert_eq!(wrong.0, 200, "{}", wrong.1);
    assert!(wrong.1.contains("That code is not right"), "{}", wrong.1);
    assert_eq!(enrol_page(&wrong.1).secret, page.secret);
    let code = code_at(&page.secret, TotpParams::default(), now);
    let done = post(
        &http,
        &url,
        &[
            ("csrf", page.csrf.as_str()),
            ("id", &page.id),
            ("otp", &code),
        ],
    )
    .await;
    assert!(
        done.1.contains("Your authenticator app is set up"),
        "{}",
        done.1
    );
    // Set up: the page says so and offers removal (the pass's window is still open).
    let (_, html) = get(&http, &url).await;
    assert!(html.contains("data-confirmed=\"true\""), "{html}");
    assert!(html.contains("id=\"remove-totp\""), "{html}");
    assert!(
        !html.contains("id=\"qr\""),
        "the key is never shown again: {html}"
    );

    // Removal is audited; after it the user can enrol again.
    let removed = post(
        &http,
        &format!("{base}{TOTP_PAGE}/remove"),
        &[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("id", &hidden(&html, "id")),
        ],
    )
    .await;
    assert_eq!(removed.0, 200, "{}", removed.1);
    let deleted = audits(&admin, "deleteTotp").await;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(
        actor(&deleted[0]),
        format!("user:{}", f.upn),
        "{}",
        deleted[0]
    );
    let (_, html) = get(&http, &url).await;
    let fresh = enrol_page(&html);
    assert_ne!(fresh.secret, page.secret, "a new key");

    // The pass's registration window (10 minutes) closes: the gate refuses again.
    srv.clock
        .advance_secs(cutover_core::tap::REGISTRATION_WINDOW_SECS);
    let (status, html) = get(&http, &url).await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("id=\"gate\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_mfa_steps_up_to_a_code_once_per_code_with_a_limit() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    let mfa = [("acr_values", "mfa")];
    let now = || srv.clock.now().secs();

    // No second factor yet: the sign-in cannot meet `mfa` and fails, saying why.
    let http = browser();
    let (_, first) = authorize(&http, base, &f.client_id, &mfa).await;
    let refused = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    assert_eq!(refused.0, 403, "{}", refused.1);
    assert!(
        refused.1.contains("none is registered for your account"),
        "{}",
        refused.1
    );
    let rec = &sign_ins(&admin, &f.upn, 1).await[0];
    assert_eq!(
        (&rec["result"], &rec["failureReason"]),
        (&json!("failure"), &json!("secondFactorNotRegistered")),
        "{rec}"
    );

    enable_passes(&admin).await;
    let (secret, _) = enrol_with_pass(base, &admin, &f.client_id, &f.upn, now).await;
    let params = TotpParams::default();

    // acr_values=mfa: password, then the code page, then the client. The enrolment's code is
    // spent, so the clock moves to the next step first.
    srv.clock.advance_secs(STEP_SECS);
    let http = browser();
    let (verifier, first) = authorize(&http, base, &f.client_id, &mfa).await;
    let to_mfa = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    assert_eq!(to_mfa.0, 303, "{}", to_mfa.1);
    assert!(
        to_mfa.1.starts_with(&format!("{MFA_PAGE}?t=")),
        "{}",
        to_mfa.1
    );
    let code = code_at(&secret, params, now());
    let back = type_code(&http, base, &to_mfa.1, &code).await;
    let id = id_token_of(base, &f, &back, &verifier).await;
    assert_eq!(id["acr"], "mfa", "{id}");
    let methods = amr(&id);
    for m in ["pwd", "otp", "mfa"] {
        assert!(methods.iter().any(|a| a == m), "{m} in {id}");
    }
    let recs = sign_ins(&admin, &f.upn, 2).await;
    assert_eq!(
        (&recs[0]["result"], &recs[0]["authenticationMethods"]),
        (&json!("success"), &json!(["password", "totp"])),
        "{}",
        recs[0]
    );
    assert_eq!(
        recs[1]["result"], "interrupted",
        "the password step: {}",
        recs[1]
    );

    // The same code again, in a new sign-in within its window: replayed, refused.
    let http = browser();
    let (_, first) = authorize(&http, base, &f.client_id, &mfa).await;
    let to_mfa = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    let replay = type_code(&http, base, &to_mfa.1, &code).await;
    assert_eq!(replay.0, 200, "{}", replay.1);
    assert!(replay.1.contains(WRONG_CODE), "{}", replay.1);
    let rec = &sign_ins(&admin, &f.upn, 1).await[0];
    assert_eq!(
        (&rec["result"], &rec["failureReason"]),
        (&json!("failure"), &json!("invalidSecondFactor")),
        "{rec}"
    );

    // One step of skew: the previous step's code passes (it is later than the one spent)…
    srv.clock.advance_secs(2 * STEP_SECS);
    let http = browser();
    let (verifier, first) = authorize(&http, base, &f.client_id, &mfa).await;
    let to_mfa = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    let back = type_code(
        &http,
        base,
        &to_mfa.1,
        &code_at(&secret, params, now() - STEP_SECS),
    )
    .await;
    assert_eq!(id_token_of(base, &f, &back, &verifier).await["acr"], "mfa");
    // …two steps back does not.
    srv.clock.advance_secs(3 * STEP_SECS);
    let http = browser();
    let (_, first) = authorize(&http, base, &f.client_id, &mfa).await;
    let to_mfa = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    let old = type_code(
        &http,
        base,
        &to_mfa.1,
        &code_at(&secret, params, now() - 2 * STEP_SECS),
    )
    .await;
    assert_eq!(old.0, 200, "{}", old.1);
    assert!(old.1.contains(WRONG_CODE), "{}", old.1);

    // Five wrong codes within 300 s, then even the right code is refused until the clock steps
    // past the window; the sign-in transaction waits meanwhile.
    srv.clock
        .advance_secs(cutover_core::totp::FAILED_ATTEMPT_WINDOW_SECS + 1);
    let http = browser();
    let (verifier, first) = authorize(&http, base, &f.client_id, &mfa).await;
    let to_mfa = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    for i in 0..cutover_core::totp::MAX_FAILED_ATTEMPTS {
        let r = type_code(&http, base, &to_mfa.1, &wrong_code(&secret, now())).await;
        assert!(r.1.contains(WRONG_CODE), "wrong code {i}: {}", r.1);
    }
    let limited = type_code(&http, base, &to_mfa.1, &code_at(&secret, params, now())).await;
    assert_eq!(limited.0, 200, "{}", limited.1);
    assert!(limited.1.contains(TOO_MANY), "{}", limited.1);
    srv.clock.advance_secs(200);
    let limited = type_code(&http, base, &to_mfa.1, &code_at(&secret, params, now())).await;
    assert!(limited.1.contains(TOO_MANY), "{}", limited.1);
    srv.clock.advance_secs(101);
    let back = type_code(&http, base, &to_mfa.1, &code_at(&secret, params, now())).await;
    assert_eq!(id_token_of(base, &f, &back, &verifier).await["acr"], "mfa");
    let failures = sign_ins(&admin, &f.upn, 20)
        .await
        .into_iter()
        .filter(|r| r["failureReason"] == "invalidSecondFactor")
        .count();
    // The replay, the code two steps back, five wrong codes and two refused by the limit.
    assert_eq!(failures, 9);

    // A strength a code cannot give: the page asks for a passkey and takes no code.
    srv.clock.advance_secs(STEP_SECS);
    let http = browser();
    let (_, first) = authorize(
        &http,
        base,
        &f.client_id,
        &[("acr_values", "phishingResistantMfa")],
    )
    .await;
    let to_mfa = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    assert!(
        to_mfa.1.starts_with(&format!("{MFA_PAGE}?t=")),
        "{}",
        to_mfa.1
    );
    let (status, html) = get(&http, &format!("{base}{}", to_mfa.1)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("A passkey is needed"), "{html}");
    assert!(!html.contains("id=\"otp\""), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_session_steps_up_without_the_password() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    let now = || srv.clock.now().secs();
    enable_passes(&admin).await;
    let (secret, _) = enrol_with_pass(base, &admin, &f.client_id, &f.upn, now).await;
    srv.clock.advance_secs(STEP_SECS);

    // A password session (no acr asked for).
    let http = browser();
    let (verifier, first) = authorize(&http, base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, base, &first.1, &f.upn, &f.password).await;
    let id = id_token_of(base, &f, &back, &verifier).await;
    assert_eq!(id["acr"], "1", "{id}");

    // prompt=none cannot step up: interaction_required, back at the client.
    let (_, none) = authorize(
        &http,
        base,
        &f.client_id,
        &[("acr_values", "mfa"), ("prompt", "none")],
    )
    .await;
    assert_eq!(none.0, 303, "{}", none.1);
    assert_eq!(
        query_param(&none.1, "error").as_deref(),
        Some("interaction_required"),
        "{}",
        none.1
    );

    // acr_values=mfa from the same browser: straight to the code page, no password.
    let (verifier, first) = authorize(&http, base, &f.client_id, &[("acr_values", "mfa")]).await;
    assert_eq!(first.0, 303, "{}", first.1);
    assert!(
        first.1.starts_with(&format!("{MFA_PAGE}?t=")),
        "{}",
        first.1
    );
    let back = type_code(
        &http,
        base,
        &first.1,
        &code_at(&secret, TotpParams::default(), now()),
    )
    .await;
    let id = id_token_of(base, &f, &back, &verifier).await;
    assert_eq!(id["acr"], "mfa", "{id}");
    let methods = amr(&id);
    assert!(
        methods.iter().any(|m| m == "otp") && methods.iter().any(|m| m == "pwd"),
        "{id}"
    );
    let rec = &sign_ins(&admin, &f.upn, 1).await[0];
    assert_eq!(
        rec["authenticationMethods"],
        json!(["previousSession", "totp"]),
        "{rec}"
    );

    // The stepped-up session now meets `mfa`: reused without another code.
    let (verifier, again) = authorize(&http, base, &f.client_id, &[("acr_values", "mfa")]).await;
    assert!(again.1.starts_with(REDIRECT), "{}", again.1);
    assert_eq!(id_token_of(base, &f, &again, &verifier).await["acr"], "mfa");
}

/// The staged `multiFactorAuthentication` feature (SPEC §4): after the upstream IdP signs a
/// user of the feature's group in, Cutover asks for the second factor.
#[tokio::test(flavor = "multi_thread")]
async fn staged_mfa_asks_for_a_code_after_the_upstream_sign_in() {
    use crate::federation::{CALLBACK, FedEnv, group_id, meta_refresh};
    use crate::upstream::upstream_login;
    const PILOT: &str = "pilot1@example.test";

    let fx = FedEnv::start(false).await;
    let admin = &fx.env.admin;
    let rp = &fx.rp;
    let base = rp.base.as_str();
    let system_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let f = Fixture {
        user_id: String::new(),
        upn: PILOT.into(),
        password: String::new(),
        client_id: rp.client_id.clone(),
        client_secret: rp.secret.clone(),
        redirect_uri: REDIRECT.into(),
    };

    // The Pilot group gets the staged MFA feature.
    let policy = admin
        .post(
            "/policies/featureRolloutPolicies",
            json!({"displayName": "MFA pilot", "feature": "multiFactorAuthentication", "isEnabled": true}),
        )
        .await;
    let pid = policy["id"].as_str().unwrap().to_owned();
    admin
        .post(
            &format!("/policies/featureRolloutPolicies/{pid}/appliesTo"),
            json!({"id": group_id(admin, "Pilot").await}),
        )
        .await;

    // A one-time pass (it goes ahead of federation) lets the pilot enrol an authenticator
    // app; that completed sign-in also makes the feature effective.
    enable_passes(admin).await;
    let (secret, _) = enrol_with_pass(base, admin, &rp.client_id, PILOT, system_now).await;
    let enrolled_at = system_now();
    let staged = admin.get(&format!("/users/{PILOT}/stagedRollout")).await;
    assert!(
        staged["effective"]
            .to_string()
            .contains("multiFactorAuthentication"),
        "{staged}"
    );

    // A federated sign-in: the upstream, then Cutover's code page, then the client.
    let http = browser();
    let (verifier, first) = authorize(&http, base, &rp.client_id, &[]).await;
    let (_, html) = get(&http, &format!("{base}{}", first.1)).await;
    let idp_page = post(
        &http,
        &format!("{base}/login/identifier"),
        &[
            ("t", hidden(&html, "t").as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("username", PILOT),
        ],
    )
    .await;
    assert_eq!(idp_page.0, 200, "{}", idp_page.1);
    let callback = upstream_login(
        &http,
        &meta_refresh(&idp_page.1),
        "pilot1",
        &format!("{base}{CALLBACK}"),
    )
    .await;
    let to_mfa = get(&http, &callback).await;
    assert_eq!(to_mfa.0, 303, "{}", to_mfa.1);
    assert!(
        to_mfa.1.starts_with(&format!("{MFA_PAGE}?t=")),
        "{}",
        to_mfa.1
    );
    // The enrolment spent its step's code: the next step's (within the skew of now).
    let code = code_at(&secret, TotpParams::default(), enrolled_at + STEP_SECS);
    let back = type_code(&http, base, &to_mfa.1, &code).await;
    let id = id_token_of(base, &f, &back, &verifier).await;
    assert_eq!(id["acr"], "mfa", "{id}");
    let methods = amr(&id);
    assert!(
        methods.iter().any(|m| m == "fed") && methods.iter().any(|m| m == "otp"),
        "{id}"
    );
    let rec = &sign_ins(admin, PILOT, 1).await[0];
    assert_eq!(rec["result"], "success", "{rec}");
    assert_eq!(rec["route"], "federated", "{rec}");
    let listed = rec["authenticationMethods"].to_string();
    assert!(
        listed.contains("federated") && listed.contains("totp"),
        "{rec}"
    );
}
