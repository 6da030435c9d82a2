//! The passkey phase of `cutover bench`: full sign-ins with a passkey from the identifier page
//! (authorize → sign-in page → assertion options → assertion → code → token), with a software
//! authenticator (`cutover_webauthn::soft`) in the place of the browser's. The baseline is raw
//! P-256 signature verifications per second ([`cutover_webauthn::raw_verifier`]): the one
//! piece of cryptography a passkey sign-in cannot avoid.
//!
//! Seeding is untimed and goes through the pages, as a user would: each simulated user signs
//! in with a multi-use Temporary Access Pass (a strong sign-in, which may register), opens
//! Security info and adds one passkey. Every request of this phase goes to the server's
//! issuer origin, `http://localhost:PORT`: the passkey is made for that relying party, the
//! client data names that origin, and the cookies are that host's.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cutover_webauthn::soft::{SoftAuthenticator, SoftCredential};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{
    PHASE_TIME_LIMIT, Server, Target, authorize, browser, form_field, location,
    parallel_http_samples, password_sign_in, redeem, seed_tap,
};

/// The name each benchmark passkey is registered under.
const PASSKEY_NAME: &str = "Bench authenticator";

/// Users with one registered passkey each, and the authenticator that holds them.
pub(super) struct PasskeyUsers {
    /// The application of the plain phase, reached at the issuer origin.
    target: Target,
    authenticator: SoftAuthenticator,
    /// By the index in `target.users`. Locked for a whole assertion, so that one
    /// credential's counter reaches the server in order (one sign-in at a time per
    /// credential, as with one person at one device).
    credentials: Vec<Mutex<SoftCredential>>,
}

/// `users` cloud users (`passkey{i}@bench.example`) of the plain phase's domain, each with a
/// pass and then one passkey, registered through the pages.
pub(super) async fn seed(
    server: &Server,
    plain: &Target,
    users: usize,
) -> anyhow::Result<PasskeyUsers> {
    let holders = seed_tap(server, plain, users, "passkey").await?;
    let target = Target {
        base: server.origin.clone(),
        ..holders
    };
    // The all-zero AAGUID, as synced passkeys (and authenticators that do not attest) send.
    let authenticator = SoftAuthenticator::new(uuid::Uuid::nil());
    let mut credentials = Vec::with_capacity(target.users.len());
    for upn in &target.users {
        let credential = register(&target, &authenticator, upn)
            .await
            .with_context(|| format!("registering a passkey for {upn}"))?;
        credentials.push(Mutex::new(credential));
    }
    Ok(PasskeyUsers {
        target,
        authenticator,
        credentials,
    })
}

/// The JSON body of a successful answer; the server's message otherwise.
async fn json_ok(res: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = res.status();
    let body = res.text().await?;
    if !status.is_success() {
        bail!("{what}: {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: not JSON: {body}"))
}

/// The ceremony id and the `{"publicKey": …}` options of an options answer.
fn ceremony(options: &Value, what: &str) -> anyhow::Result<(String, Value)> {
    let id = options["challenge"]
        .as_str()
        .with_context(|| format!("{what}: no challenge id in {options}"))?;
    Ok((
        id.to_owned(),
        json!({"publicKey": options["publicKey"].clone()}),
    ))
}

/// The part of `html` from the form with this id on.
fn form<'a>(html: &'a str, id: &str, what: &str) -> anyhow::Result<&'a str> {
    html.find(&format!("id=\"{id}\""))
        .map(|at| &html[at..])
        .with_context(|| format!("{what} has no form {id}"))
}

/// Sign in with the user's pass, open Security info and add a passkey; returns it.
async fn register(
    t: &Target,
    authenticator: &SoftAuthenticator,
    upn: &str,
) -> anyhow::Result<SoftCredential> {
    let http = browser(&t.base)?;
    password_sign_in(&http, t, upn)
        .await
        .context("the pass sign-in before registration")?;
    let page = http
        .get(format!("{}/my/security", t.base))
        .send()
        .await?
        .text()
        .await?;
    let csrf = form_field(
        form(
            &page,
            "add-passkey-form",
            "Security info (after a pass sign-in, which must allow registration)",
        )?,
        "csrf",
    )?;
    let res = http
        .post(format!("{}/my/security/passkeys/options", t.base))
        .form(&[("csrf", csrf.as_str()), ("name", PASSKEY_NAME)])
        .send()
        .await?;
    let (challenge, options) = ceremony(
        &json_ok(res, "registration options").await?,
        "registration options",
    )?;
    let (response, credential) = authenticator
        .create(&options, &t.base)
        .map_err(|e| anyhow::anyhow!("the soft authenticator refused the options: {e}"))?;
    let res = http
        .post(format!("{}/my/security/passkeys", t.base))
        .form(&[
            ("csrf", csrf.as_str()),
            ("challenge", &challenge),
            ("credential", &response.to_string()),
        ])
        .send()
        .await?;
    let back = location(&res)?;
    if back != "/my/security?done=added" {
        let error = url::Url::parse(&format!("{}{back}", t.base))?
            .query_pairs()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.into_owned());
        bail!(
            "the server did not add the passkey: {}",
            error.unwrap_or(back)
        );
    }
    Ok(credential)
}

/// The message of a refused sign-in page, for the report.
fn page_error(html: &str) -> String {
    html.find("class=\"error\"")
        .and_then(|at| {
            let rest = &html[at..];
            let start = rest.find('>')? + 1;
            let end = rest.find("</")?;
            (start <= end).then(|| rest[start..end].to_owned())
        })
        .unwrap_or_else(|| html.chars().take(300).collect())
}

/// One full passkey sign-in of the user `i % users`, in a new browser. Returns the token
/// response.
async fn sign_in(p: &PasskeyUsers, i: usize) -> anyhow::Result<Value> {
    let t = &p.target;
    let http = browser(&t.base)?;
    let (verifier, html) = authorize(&http, t).await?;
    // The identifier page has two forms with the same t and csrf; the passkey one is used.
    let passkey_form = form(&html, "passkey-form", "the identifier page")?;
    let txn = form_field(passkey_form, "t")?;
    let csrf = form_field(passkey_form, "csrf")?;
    let res = http
        .post(format!("{}/login/passkey/options", t.base))
        .form(&[("t", txn.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await?;
    let (challenge, options) =
        ceremony(&json_ok(res, "sign-in options").await?, "sign-in options")?;
    let res = {
        let mut credential = p.credentials[i % p.credentials.len()].lock().await;
        let assertion = p
            .authenticator
            .get(&mut credential, &options, &t.base)
            .map_err(|e| anyhow::anyhow!("the soft authenticator refused the options: {e}"))?;
        http.post(format!("{}/login/passkey", t.base))
            .form(&[
                ("t", txn.as_str()),
                ("csrf", csrf.as_str()),
                ("challenge", &challenge),
                ("credential", &assertion.to_string()),
            ])
            .send()
            .await?
    };
    if !res.status().is_redirection() {
        let status = res.status();
        let html = res.text().await.unwrap_or_default();
        bail!(
            "the passkey sign-in of {} was refused ({status}): {}",
            t.users[i % t.users.len()],
            page_error(&html)
        );
    }
    let back = location(&res)?;
    redeem(&http, t, &back, &verifier).await
}

/// One round of `count` passkey sign-ins with `concurrency` clients, bounded by
/// [`PHASE_TIME_LIMIT`]: the latencies (ms) and the wall time.
pub(super) async fn round(
    p: &Arc<PasskeyUsers>,
    count: usize,
    concurrency: usize,
    what: &str,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let p = p.clone();
    parallel_http_samples(count, concurrency, what, PHASE_TIME_LIMIT, move |i| {
        let p = p.clone();
        async move {
            sign_in(&p, i).await?;
            Ok(())
        }
    })
    .await
}
