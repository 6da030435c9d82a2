//! An upstream OpenID Connect provider for the federation tests: `e2e/upstream-idp.mjs`, a real
//! `oidc-provider` (npm, panva) on an ephemeral loopback port, whose token endpoint can be told
//! to misbehave per client (wrong audience, broken signature, server error).
//!
//! [`Upstream::start`] spawns it and waits for its ready line; [`upstream_login`] walks its
//! sign-in pages like a browser. The self-test at the bottom proves both without Cutover.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClaimsVerificationError, ClientId, ClientSecret, IssuerUrl, Nonce,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::harness::{browser, location, pkce, query_param, required_env};

/// How long the upstream may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses [`upstream_login`] looks at before it gives up (a sign-in takes four).
const MAX_LOGIN_STEPS: usize = 12;

/// One client registered at the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    /// `"normal"`, `"wrong-audience"`, `"bad-signature"` or `"token-error"`.
    pub mode: &'static str,
}

/// A running `e2e/upstream-idp.mjs`; killed and reaped on drop.
pub struct Upstream {
    /// `http://127.0.0.1:PORT`, also the base of every endpoint (`/auth`, `/token`, `/jwks`).
    pub issuer: String,
    child: Child,
    /// Held open: the script exits as soon as its stdin closes.
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    /// Start `e2e/upstream-idp.mjs` (from `CUTOVER_TEST_NODE_DIR`) with these clients and
    /// accounts (`accounts`: a JSON object, login -> claims). Waits for the ready line; panics
    /// with the script's stderr if it dies or stays silent for [`READY_TIMEOUT`].
    pub async fn start(clients: &[UpstreamClient], accounts: Value) -> Upstream {
        assert!(
            accounts.is_object(),
            "accounts must be a JSON object: {accounts}"
        );
        let node_dir = required_env("CUTOVER_TEST_NODE_DIR");
        let config = json!({
            "clients": clients.iter().map(|c| json!({
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "redirect_uris": c.redirect_uris,
                "mode": c.mode,
            })).collect::<Vec<_>>(),
            "accounts": accounts,
        });
        let mut child = Command::new("node")
            .arg("upstream-idp.mjs")
            .current_dir(&node_dir)
            .env("UPSTREAM_CONFIG", config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn node {node_dir}/upstream-idp.mjs (node and e2e/node_modules come from scripts/install-deps.sh): {e}")
            });
        let stdout = child.stdout.take().expect("stdout");
        let stderr_pipe = child.stderr.take().expect("stderr");
        // Owned by the guard from here on: killed and reaped on every path, panics included.
        let mut upstream = Upstream {
            issuer: String::new(),
            stdin: child.stdin.take(),
            child,
            stderr: Arc::new(Mutex::new(String::new())),
        };

        let stderr_done = {
            let sink = upstream.stderr.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr_pipe);
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                let _ = done_tx.send(());
            });
            done_rx
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(line)) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v["ready"] == true
                        && let Some(issuer) = v["issuer"].as_str()
                    {
                        upstream.issuer = issuer.to_owned();
                        return upstream;
                    }
                    seen.push(line);
                }
                Ok(None) => {
                    // stdout closed: the script is exiting. Let its stderr drain (bounded).
                    let _ = tokio::time::timeout(Duration::from_secs(5), stderr_done).await;
                    let status = upstream.child.try_wait();
                    panic!(
                        "upstream-idp.mjs exited before it was ready ({status:?}); stdout: {seen:?}; stderr:\n{}",
                        upstream.stderr()
                    );
                }
                Err(_) => panic!(
                    "upstream-idp.mjs was not ready within {READY_TIMEOUT:?}; stdout: {seen:?}; stderr:\n{}",
                    upstream.stderr()
                ),
            }
        }
    }

    /// What the script wrote to stderr so far (warnings, tamper notes, server errors).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The authorization endpoint.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/auth", self.issuer)
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }
}

/// The `action` of the devInteractions login form, if `html` is that form.
fn login_form_action(html: &str) -> Option<String> {
    if !html.contains(r#"name="prompt" value="login""#) || !html.contains(r#"name="login""#) {
        return None;
    }
    let start = html.find(r#"action=""#)? + r#"action=""#.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}

/// Drive the upstream's sign-in for a browser-like client (cookie store on, redirects off, as
/// [`browser`] builds): from `authorize_url` (an upstream `/auth` URL), follow redirects and
/// submit the devInteractions login form with `login` (any password is accepted) until a
/// redirect whose Location starts with `stop_prefix`; returns that full URL.
///
/// Walk: `GET /auth` → 303 `/interaction/UID` → 200 form → `POST /interaction/UID`
/// (`prompt=login`, `login`, `password`) → 303 `/auth/UID` → 303 `stop_prefix?code=…&state=…&iss=…`.
/// With a live upstream session `/auth` redirects back at once. Panics (with the last
/// response body) on anything else, or after [`MAX_LOGIN_STEPS`] responses.
pub async fn upstream_login(
    http: &reqwest::Client,
    authorize_url: &str,
    login: &str,
    stop_prefix: &str,
) -> String {
    let mut url = url::Url::parse(authorize_url)
        .unwrap_or_else(|e| panic!("authorize_url {authorize_url:?}: {e}"));
    let mut res = http
        .get(url.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let mut submitted = false;
    for _ in 0..MAX_LOGIN_STEPS {
        let status = res.status();
        if status.is_redirection() {
            let loc = location(&res);
            let next = url
                .join(&loc)
                .unwrap_or_else(|e| panic!("bad Location {loc:?} from {url}: {e}"));
            if loc.starts_with(stop_prefix) {
                return loc;
            }
            if next.as_str().starts_with(stop_prefix) {
                return next.into();
            }
            url = next;
            res = http
                .get(url.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            continue;
        }
        let body = res.text().await.unwrap_or_default();
        let action = (status == reqwest::StatusCode::OK)
            .then(|| login_form_action(&body))
            .flatten();
        let Some(action) = action else {
            panic!("upstream sign-in: unexpected {status} at {url}: {body}");
        };
        assert!(
            !submitted,
            "upstream sign-in: the login form came back after it was submitted, at {url}: {body}"
        );
        submitted = true;
        url = url
            .join(&action)
            .unwrap_or_else(|e| panic!("bad form action {action:?} at {url}: {e}"));
        res = http
            .post(url.clone())
            .form(&[
                ("prompt", "login"),
                ("login", login),
                ("password", "any-password"),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    }
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    panic!(
        "upstream sign-in: no redirect to {stop_prefix} within {MAX_LOGIN_STEPS} steps; last {status} at {url}: {body}"
    );
}

// --- self-test: the harness against the real upstream, no Cutover involved ------------------

const REDIRECT: &str = "http://127.0.0.1:9/cb";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UpstreamClaims {
    immutable_id: Option<String>,
    upn: Option<String>,
}
impl AdditionalClaims for UpstreamClaims {}

type UpstreamIdToken = openidconnect::IdToken<
    UpstreamClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

fn client(mode: &'static str) -> UpstreamClient {
    UpstreamClient {
        client_id: format!("cutover-{mode}"),
        client_secret: format!("secret-{mode}-{}", uuid::Uuid::new_v4().simple()),
        redirect_uris: vec![REDIRECT.to_owned()],
        mode,
    }
}

/// Sign `login` in at the upstream for `c` and redeem the code with Basic credentials and
/// the PKCE verifier. Returns (nonce, token endpoint status, token endpoint body).
async fn sign_in_and_redeem(
    up: &Upstream,
    c: &UpstreamClient,
    login: &str,
) -> (String, u16, Value) {
    let (verifier, challenge) = pkce();
    let state = format!("st-{}", uuid::Uuid::new_v4().simple());
    let nonce = format!("n-{}", uuid::Uuid::new_v4().simple());
    let mut auth = url::Url::parse(&up.authorization_endpoint()).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", &c.client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    let back = upstream_login(&browser(), auth.as_str(), login, REDIRECT).await;
    assert!(back.starts_with(&format!("{REDIRECT}?")), "{back}");
    assert_eq!(query_param(&back, "state"), Some(state), "{back}");
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(up.issuer.as_str())
    );
    assert_eq!(query_param(&back, "error"), None, "{back}");
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));

    let res = reqwest::Client::new()
        .post(up.token_endpoint())
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("token response is not JSON ({e}): {status} {text}"));
    (nonce, status, body)
}

fn id_token_of(body: &Value) -> UpstreamIdToken {
    body["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token in {body}"))
        .parse()
        .unwrap_or_else(|e| panic!("id_token does not parse ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_issues_real_tokens_and_tampers_on_request() {
    let normal = client("normal");
    let wrong_audience = client("wrong-audience");
    let bad_signature = client("bad-signature");
    let token_error = client("token-error");
    let up = Upstream::start(
        &[
            normal.clone(),
            wrong_audience.clone(),
            bad_signature.clone(),
            token_error.clone(),
        ],
        json!({"alice": {"immutable_id": "imm-alice-0001", "upn": "alice@contoso.example"}}),
    )
    .await;
    assert!(up.issuer.starts_with("http://127.0.0.1:"), "{}", up.issuer);

    let rp_http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let issuer = IssuerUrl::new(up.issuer.clone()).unwrap();
    let meta = CoreProviderMetadata::discover_async(issuer.clone(), &rp_http)
        .await
        .expect("discovery and JWKS");
    assert_eq!(meta.jwks_uri().as_str(), format!("{}/jwks", up.issuer));
    assert_eq!(
        meta.token_endpoint().map(|u| u.as_str().to_owned()),
        Some(up.token_endpoint())
    );
    assert!(!meta.jwks().keys().is_empty(), "JWKS has a key");
    let verifier_for = |c: &UpstreamClient| {
        CoreIdTokenVerifier::new_confidential_client(
            ClientId::new(c.client_id.clone()),
            ClientSecret::new(c.client_secret.clone()),
            issuer.clone(),
            meta.jwks().clone(),
        )
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
    };

    // normal: a real ID token for the client, with the nonce and the account's claims.
    let (nonce, status, body) = sign_in_and_redeem(&up, &normal, "alice").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    let token = id_token_of(&body);
    let claims = token
        .claims(&verifier_for(&normal), &Nonce::new(nonce.clone()))
        .expect("the normal client's ID token validates against the upstream JWKS");
    assert_eq!(claims.subject().as_str(), "alice");
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec![normal.client_id.as_str()]
    );
    assert_eq!(claims.issuer().as_str(), up.issuer);
    assert_eq!(
        claims.nonce().map(|n| n.secret().as_str()),
        Some(nonce.as_str())
    );
    assert_eq!(
        claims.additional_claims().immutable_id.as_deref(),
        Some("imm-alice-0001")
    );
    assert_eq!(
        claims.additional_claims().upn.as_deref(),
        Some("alice@contoso.example")
    );
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("alice")
    );
    // A wrong nonce is refused, so the check above means something.
    assert!(matches!(
        token.claims(&verifier_for(&normal), &Nonce::new("other".into())),
        Err(ClaimsVerificationError::InvalidNonce(_))
    ));
    // The same token for another client is refused on its audience.
    assert!(matches!(
        token.claims(&verifier_for(&wrong_audience), &Nonce::new(nonce)),
        Err(ClaimsVerificationError::InvalidAudience(_))
    ));

    // A login with no account entry still signs in; it just has no immutable_id.
    let (nonce, status, body) = sign_in_and_redeem(&up, &normal, "bob").await;
    assert_eq!(status, 200, "{body}");
    let token = id_token_of(&body);
    let claims = token
        .claims(&verifier_for(&normal), &Nonce::new(nonce))
        .expect("validates");
    assert_eq!(claims.subject().as_str(), "bob");
    assert_eq!(claims.additional_claims().immutable_id, None);

    // wrong-audience: the signature is the upstream's own, only the audience is wrong.
    let (nonce, status, body) = sign_in_and_redeem(&up, &wrong_audience, "alice").await;
    assert_eq!(status, 200, "{body}");
    let token = id_token_of(&body);
    let err = token
        .claims(&verifier_for(&wrong_audience), &Nonce::new(nonce.clone()))
        .expect_err("an ID token for someone else must not validate");
    assert!(
        matches!(err, ClaimsVerificationError::InvalidAudience(_)),
        "{err:?}"
    );
    let claims = token
        .claims(
            &verifier_for(&wrong_audience).require_audience_match(false),
            &Nonce::new(nonce),
        )
        .expect("the re-signed token still has a valid signature");
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec!["someone-else"]
    );
    assert_eq!(
        claims.additional_claims().immutable_id.as_deref(),
        Some("imm-alice-0001")
    );

    // bad-signature: the claims are right, the signature is not.
    let (nonce, status, body) = sign_in_and_redeem(&up, &bad_signature, "alice").await;
    assert_eq!(status, 200, "{body}");
    let token = id_token_of(&body);
    let err = token
        .claims(&verifier_for(&bad_signature), &Nonce::new(nonce.clone()))
        .expect_err("a broken signature must not validate");
    assert!(
        matches!(err, ClaimsVerificationError::SignatureVerification(_)),
        "{err:?}"
    );
    let claims = token
        .claims(
            &verifier_for(&bad_signature).insecure_disable_signature_check(),
            &Nonce::new(nonce),
        )
        .expect("everything but the signature is in order");
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec![bad_signature.client_id.as_str()]
    );

    // token-error: HTTP 500 and no token at all.
    let (_, status, body) = sign_in_and_redeem(&up, &token_error, "alice").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"], "server_error", "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
    assert!(body.get("access_token").is_none(), "{body}");

    // Dropping the guard stops the upstream: its port no longer answers.
    let issuer_url = up.issuer.clone();
    drop(up);
    let after = reqwest::Client::new()
        .get(format!("{issuer_url}/.well-known/openid-configuration"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        after.is_err(),
        "the upstream still answers after drop: {after:?}"
    );
}
