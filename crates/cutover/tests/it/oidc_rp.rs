//! End to end with a real OpenID Connect relying-party library (the `openidconnect` crate):
//! discovery, code + PKCE through the sign-in pages, ID token validation against JWKS,
//! userinfo, refresh with rotation — and the negative cases.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Value, json};

use crate::harness::*;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn rp_http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relying_party_library_signs_in_refreshes_and_reads_userinfo() {
    let dir = scratch_dir("rp");
    let server = ServerProcess::start(&dir, &[]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let f = seed(&admin, REDIRECT).await;
    let http = rp_http();

    let meta =
        CoreProviderMetadata::discover_async(IssuerUrl::new(server.base.clone()).unwrap(), &http)
            .await
            .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(f.client_id.clone()),
        Some(ClientSecret::new(f.client_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    let browser = browser();
    let back = sign_in(
        &browser,
        &server.base,
        url.as_str(),
        "USER1@contoso.example",
        &f.password,
        None,
    )
    .await;
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(csrf.secret().as_str())
    );
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(server.base.as_str())
    );
    let code = query_param(&back, "code").expect("code");

    let tokens = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let verifier_cfg = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let id_token = tokens.id_token().expect("id_token");
    let claims = id_token
        .claims(&verifier_cfg, &nonce)
        .expect("ID token validates against JWKS");
    assert_eq!(claims.subject().as_str(), f.user_id);
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("User1@contoso.example")
    );
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("user1@contoso.example")
    );
    assert!(claims.auth_time().is_some());
    // A password alone is single-factor, and the relying party library reads it so.
    assert_eq!(
        claims.auth_context_ref().map(|a| a.as_str()),
        Some("1"),
        "acr of a password sign-in"
    );
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier_cfg).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));

    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), f.user_id);
    assert_eq!(
        info.email().map(|e| e.as_str()),
        Some("user1@contoso.example")
    );

    let rt = tokens
        .refresh_token()
        .expect("refresh token with offline_access")
        .clone();
    let refreshed = client
        .exchange_refresh_token(&rt)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let rt2 = refreshed
        .refresh_token()
        .expect("rotated refresh token")
        .clone();
    assert_ne!(rt2.secret(), rt.secret(), "refresh tokens rotate");
    // Replaying the spent refresh token fails and revokes the grant: the new one dies too.
    assert!(
        client
            .exchange_refresh_token(&rt)
            .unwrap()
            .request_async(&http)
            .await
            .is_err(),
        "replayed refresh token refused"
    );
    assert!(
        client
            .exchange_refresh_token(&rt2)
            .unwrap()
            .request_async(&http)
            .await
            .is_err(),
        "grant revoked after replay"
    );
    let res = reqwest::Client::new()
        .get(format!("{}/oauth2/userinfo", server.base))
        .bearer_auth(refreshed.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "access tokens of a revoked grant stop working at userinfo"
    );

    // The sign-in log has the interactive password sign-in, the refresh and the failed replay.
    let log = admin
        .get(&format!("/auditLogs/signIns?userPrincipalName={}", f.upn))
        .await;
    let records = log["value"].as_array().unwrap();
    let interactive = records
        .iter()
        .find(|r| r["isInteractive"] == json!(true))
        .expect("interactive record");
    assert_eq!(interactive["result"], "success");
    assert_eq!(interactive["route"], "managed");
    assert_eq!(interactive["routeReason"], "managedDomain");
    assert_eq!(interactive["authenticationMethods"], json!(["password"]));
    assert_eq!(interactive["lockoutDecision"], "allowed");
    assert!(
        interactive["createdDateTime"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let all = admin.get("/auditLogs/signIns?result=failure").await;
    assert!(
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["failureReason"] == "refreshTokenReplayed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_cases_are_refused_in_rfc_vocabulary() {
    let dir = scratch_dir("neg");
    let server = ServerProcess::start(&dir, &[]);
    let base = server.base.clone();
    let admin = Admin::login(&base, &server.credentials()).await;
    let f = seed(&admin, REDIRECT).await;

    // Code reuse: the second redemption fails, and the tokens from the first are revoked.
    let (http, verifier, _, back) = signed_in_browser(&base, &f).await;
    let code = query_param(&back, "code").unwrap();
    let (status, first) = redeem(&base, &f, &code, &verifier).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = redeem(&base, &f, &code, &verifier).await;
    assert_eq!(
        (status, second["error"].as_str()),
        (400, Some("invalid_grant")),
        "{second}"
    );
    let res = reqwest::Client::new()
        .get(format!("{base}/oauth2/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "code reuse revokes tokens issued from it"
    );
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let refresh = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&f.client_id, Some(&f.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refresh.status(),
        400,
        "refresh token of a replayed code is dead"
    );

    // Wrong PKCE verifier (the browser session now answers without pages).
    let (_, challenge) = pkce();
    let res = http
        .get(auth_url(&base, &f.client_id, REDIRECT, &challenge, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(
        back.starts_with(REDIRECT),
        "SSO session answers a second request: {back}"
    );
    let (wrong_verifier, _) = pkce();
    let (status, body) = redeem(
        &base,
        &f,
        &query_param(&back, "code").unwrap(),
        &wrong_verifier,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    // Unregistered redirect URI: an error page, never a redirect.
    for bad in [
        "http://127.0.0.1:9/callback/",
        "https://evil.example/callback",
        "http://127.0.0.1:9/CALLBACK",
    ] {
        let res = http
            .get(auth_url(&base, &f.client_id, bad, &challenge, &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(
            res.headers().get("location").is_none(),
            "never redirects to {bad}"
        );
        let page = res.text().await.unwrap();
        assert!(page.contains("has not registered"), "{page}");
    }
    // Unknown client: error page.
    let res = http
        .get(auth_url(&base, "no-such-client", REDIRECT, &challenge, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());

    // prompt=none without a session: login_required back at the client.
    let fresh = browser();
    let res = fresh
        .get(auth_url(
            &base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("prompt", "none")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "{back}"
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st-123"));
    // prompt=none with the session: a code, no page.
    let back = redirect_of(
        &http,
        auth_url(
            &base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("prompt", "none")],
        ),
    )
    .await;
    assert!(query_param(&back, "code").is_some());
    // A login_hint naming another account is not answered from this user's session.
    let back = redirect_of(
        &http,
        auth_url(
            &base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("login_hint", "someone.else@contoso.example")],
        ),
    )
    .await;
    assert!(
        back.starts_with("/login?t="),
        "another account's hint shows the pages"
    );
    let back = redirect_of(
        &http,
        auth_url(
            &base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("login_hint", "USER1@contoso.example")],
        ),
    )
    .await;
    assert!(
        query_param(&back, "code").is_some(),
        "the session user's own hint is answered"
    );
    // prompt=login shows the pages even with a session.
    let back = redirect_of(
        &http,
        auth_url(
            &base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("prompt", "login")],
        ),
    )
    .await;
    assert!(back.starts_with("/login?t="));
    // PKCE: plain is refused, a repeated parameter is refused, errors go back with state.
    let plain = auth_url(&base, &f.client_id, REDIRECT, &challenge, &[])
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let res = http.get(plain).send().await.unwrap();
    let back = location(&res);
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );
    assert!(
        query_param(&back, "error_description")
            .unwrap()
            .contains("plain")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st-123"));
    let dup = auth_url(
        &base,
        &f.client_id,
        REDIRECT,
        &challenge,
        &[("scope", "openid")],
    );
    let back = location(&http.get(dup).send().await.unwrap());
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );

    // Wrong client secret: 401 invalid_client, with a sign-in record.
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(&f.client_id, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    let log = admin.get("/auditLogs/signIns?result=failure").await;
    assert!(
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["failureReason"] == "invalidClient")
    );

    // Malformed token requests of several kinds.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "invalid_request"),
        (vec![("grant_type", "password")], "unsupported_grant_type"),
        (
            vec![("grant_type", "authorization_code")],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("redirect_uri", REDIRECT),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "nope")],
            "invalid_grant",
        ),
    ];
    for (form, want) in cases {
        let res = reqwest::Client::new()
            .post(format!("{base}/oauth2/token"))
            .basic_auth(&f.client_id, Some(&f.client_secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(want)),
            "{form:?}: {body}"
        );
    }
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unknown_user_and_disabled_account() {
    let dir = scratch_dir("pw");
    let server = ServerProcess::start(&dir, &[]);
    let base = server.base.clone();
    let admin = Admin::login(&base, &server.credentials()).await;
    let f = seed(&admin, REDIRECT).await;
    let (_, challenge) = pkce();

    async fn attempt(base: &str, url: &str, upn: &str, password: &str) -> (u16, String) {
        let res = attempt_sign_in(&browser(), base, url, upn, password, None).await;
        (res.status().as_u16(), res.text().await.unwrap())
    }

    let url = auth_url(&base, &f.client_id, REDIRECT, &challenge, &[]);
    let (s1, wrong_pw) = attempt(&base, &url, &f.upn, "wrong-password").await;
    let (s2, no_user) = attempt(&base, &url, "nobody@contoso.example", "whatever-it-is").await;
    let (s3, no_domain) = attempt(&base, &url, "someone@unknown.example", "whatever-it-is").await;
    assert_eq!((s1, s2, s3), (200, 200, 200));
    let msg = "Your account or password is incorrect";
    for page in [&wrong_pw, &no_user, &no_domain] {
        assert!(
            page.contains(msg),
            "the same generic message whatever failed: {page}"
        );
        assert!(page.contains("role=\"alert\""));
    }
    let (s, bad_name) = attempt(&base, &url, "not an email", "x").await;
    assert_eq!(s, 200);
    assert!(bad_name.contains("name@domain"), "{bad_name}");

    // Disable the account: the right password now gets a clear (post-password) message.
    let (status, _) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/users/{}", f.upn),
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, disabled) = attempt(&base, &url, &f.upn, &f.password).await;
    assert!(disabled.contains("disabled"), "{disabled}");

    let log = admin.get("/auditLogs/signIns?result=failure&$top=50").await;
    let reasons: Vec<&str> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["failureReason"].as_str())
        .collect();
    for want in [
        "invalidPassword",
        "unknownUser",
        "unknownDomain",
        "accountDisabled",
    ] {
        assert!(
            reasons.contains(&want),
            "sign-in log lacks {want}: {reasons:?}"
        );
    }
    // No password ever reaches the log.
    let everything = admin.get("/auditLogs/signIns?$top=500").await.to_string();
    assert!(!everything.contains("wrong-password") && !everything.contains(&f.password));

    // CSRF: a form without the right token is refused.
    let http = browser();
    let res = http.get(&url).send().await.unwrap();
    let login = location(&res);
    let html = http
        .get(format!("{base}{login}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = http
        .post(format!("{base}/login/identifier"))
        .form(&[
            ("t", hidden(&html, "t").as_str()),
            ("csrf", "forged"),
            ("username", f.upn.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Another browser cannot continue this browser's sign-in.
    let other = browser();
    let res = other.get(format!("{base}{login}")).send().await.unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_clears_the_session_and_returns_only_to_registered_uris() {
    let dir = scratch_dir("logout");
    let server = ServerProcess::start(&dir, &[]);
    let base = server.base.clone();
    let admin = Admin::login(&base, &server.credentials()).await;
    let f = seed(&admin, REDIRECT).await;
    let (http, verifier, challenge, back) = signed_in_browser(&base, &f).await;
    let (_, tokens) = redeem(&base, &f, &query_param(&back, "code").unwrap(), &verifier).await;
    let id_token = tokens["id_token"].as_str().unwrap();

    let mut url = url::Url::parse(&format!("{base}/oauth2/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "http://127.0.0.1:9/signed-out")
        .append_pair("state", "bye");
    let res = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "http://127.0.0.1:9/signed-out?state=bye");
    // The session is gone: prompt=none now fails.
    let back = redirect_of(
        &http,
        auth_url(
            &base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("prompt", "none")],
        ),
    )
    .await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required")
    );

    // An unregistered post-logout URI gets the signed-out page, not a redirect.
    let mut url = url::Url::parse(&format!("{base}/oauth2/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "https://evil.example/");
    let res = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("signed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_page_apps_may_fetch_token_and_userinfo_but_not_the_pages() {
    let srv = InProcess::start().await;
    let http = reqwest::Client::new();
    for path in [
        "/oauth2/token",
        "/oauth2/userinfo",
        "/oauth2/jwks",
        "/.well-known/openid-configuration",
    ] {
        let res = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", srv.base))
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(res.headers()["access-control-allow-origin"], "*", "{path}");
        assert!(
            res.headers()
                .get("access-control-allow-credentials")
                .is_none(),
            "{path}: never with credentials"
        );
    }
    let res = http
        .get(format!("{}/oauth2/jwks", srv.base))
        .header("origin", "https://spa.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    for path in ["/oauth2/authorize", "/login/password", "/api/v1/users"] {
        let res = http
            .get(format!("{}{path}", srv.base))
            .header("origin", "https://spa.example")
            .send()
            .await
            .unwrap();
        assert!(
            res.headers().get("access-control-allow-origin").is_none(),
            "{path} is not for cross-origin fetches"
        );
    }
}
