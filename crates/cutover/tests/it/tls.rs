//! Cutover serving HTTPS itself: a certificate made for the test, a client that trusts only
//! it, the whole sign-in over TLS, and `Secure` cookies.

use serde_json::Value;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_secure_cookies() {
    let dir = scratch_dir("tls");
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let server = ServerProcess::start(
        &dir,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );

    let root = reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap();
    let client = || {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let discovery: Value = client()
        .get(format!("{}/.well-known/openid-configuration", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["issuer"],
        server.base.as_str(),
        "the issuer is the https URL"
    );
    assert!(
        discovery["token_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    // A client that does not trust the certificate cannot talk to it.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = server.base.replace("https://", "http://");
    let res = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await;
    assert!(res.map(|r| !r.status().is_success()).unwrap_or(true));

    let admin = Admin::login_with(&server.base, &server.credentials(), client()).await;
    let f = seed(&admin, "https://app.contoso.example/cb").await;
    let (verifier, challenge) = pkce();
    let http = client();
    let res = http
        .get(auth_url(
            &server.base,
            &f.client_id,
            &f.redirect_uri,
            &challenge,
            &[],
        ))
        .send()
        .await
        .unwrap();
    let set_cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert!(
        set_cookie
            .iter()
            .any(|c| c.starts_with("cutover_bb=") && c.contains("; Secure")),
        "{set_cookie:?}"
    );
    let back = sign_in(
        &http,
        &server.base,
        &auth_url(&server.base, &f.client_id, &f.redirect_uri, &challenge, &[]),
        &f.upn,
        &f.password,
        None,
    )
    .await;
    let code = query_param(&back, "code").expect("a code over https");
    let tokens: Value = http
        .post(format!("{}/oauth2/token", server.base))
        .basic_auth(&f.client_id, Some(&f.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", f.redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tokens["id_token"].is_string(), "{tokens}");

    // The CLI reaches the HTTPS server when told which CA to trust, and explains when not.
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("admin")
            .arg("--data-dir")
            .arg(&dir)
            .args(extra)
            .args(["domains", "list"])
            .output()
            .unwrap()
    };
    let ok = cli(&["--ca-cert", cert.to_str().unwrap()]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("contoso.example"));
    let refused = cli(&[]);
    assert!(
        !refused.status.success(),
        "an untrusted certificate is refused"
    );
}
