//! Lifetimes tested by stepping a clock, never by sleeping: codes, sign-in pages, SSO
//! sessions with `max_age`, and access tokens.

use cutover_core::limits::{
    ACCESS_TOKEN_TTL_SECS, AUTH_CODE_TTL_SECS, REFRESH_TOKEN_TTL_SECS, SIGN_IN_TXN_TTL_SECS,
    SSO_SESSION_TTL_SECS,
};

use crate::harness::*;

const REDIRECT: &str = "http://127.0.0.1:9/cb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire_at_their_edge() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let (http, verifier, _, back) = signed_in_browser(&srv.base, &f).await;
    srv.clock.advance_secs(AUTH_CODE_TTL_SECS - 1);
    let (status, _) = redeem(
        &srv.base,
        &f,
        &query_param(&back, "code").unwrap(),
        &verifier,
    )
    .await;
    assert_eq!(status, 200, "a code is good one second before it expires");

    let (verifier, challenge) = pkce();
    let back = redirect_of(
        &http,
        auth_url(&srv.base, &f.client_id, REDIRECT, &challenge, &[]),
    )
    .await;
    let code = query_param(&back, "code").unwrap();
    srv.clock.advance_secs(AUTH_CODE_TTL_SECS);
    let (status, body) = redeem(&srv.base, &f, &code, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired at exactly its lifetime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_pages_expire() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let http = browser();
    let (_, challenge) = pkce();
    let back = redirect_of(
        &http,
        auth_url(&srv.base, &f.client_id, REDIRECT, &challenge, &[]),
    )
    .await;
    let login = back;
    let html = http
        .get(format!("{}{login}", srv.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    srv.clock.advance_secs(SIGN_IN_TXN_TTL_SECS);
    let res = http
        .post(format!("{}/login/identifier", srv.base))
        .form(&[
            ("t", hidden(&html, "t").as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("username", f.upn.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_honour_max_age_and_expire() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let (http, verifier, challenge, back) = signed_in_browser(&srv.base, &f).await;
    let (_, tokens) = redeem(
        &srv.base,
        &f,
        &query_param(&back, "code").unwrap(),
        &verifier,
    )
    .await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    srv.clock.advance_secs(120);
    let back = redirect_of(
        &http,
        auth_url(
            &srv.base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("max_age", "120")],
        ),
    )
    .await;
    assert!(
        query_param(&back, "code").is_some(),
        "a session exactly max_age old is reused"
    );
    let back = redirect_of(
        &http,
        auth_url(
            &srv.base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("max_age", "119")],
        ),
    )
    .await;
    assert!(back.starts_with("/login?t="), "an older session asks again");

    let userinfo = |token: String| {
        let base = srv.base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/oauth2/userinfo"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(userinfo(access.clone()).await, 200);
    srv.clock.advance_secs(ACCESS_TOKEN_TTL_SECS - 120);
    assert_eq!(userinfo(access).await, 401, "access tokens expire");

    srv.clock.advance_secs(SSO_SESSION_TTL_SECS);
    let back = redirect_of(
        &http,
        auth_url(
            &srv.base,
            &f.client_id,
            REDIRECT,
            &challenge,
            &[("prompt", "none")],
        ),
    )
    .await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "SSO sessions expire"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_stay_published_until_their_tokens_expire() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let jwks = || async {
        reqwest::get(format!("{}/oauth2/jwks", srv.base))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let before = jwks().await["keys"].as_array().unwrap().len();
    assert_eq!(before, 1);
    let new_key = admin
        .post("/signingKeys/rotate", serde_json::json!({}))
        .await;
    assert_eq!(new_key["active"], true);
    assert_eq!(
        jwks().await["keys"].as_array().unwrap().len(),
        2,
        "old key still published"
    );
    // Tokens signed by the old key still verify.
    let (status, _) = admin.call(reqwest::Method::GET, "/domains", None).await;
    assert_eq!(status, 200);
    srv.clock
        .advance_secs(cutover_core::limits::ACCESS_TOKEN_TTL_SECS - 1);
    let (status, _) = admin.call(reqwest::Method::GET, "/domains", None).await;
    assert_eq!(status, 200, "an old-key token is good until its own expiry");
    srv.clock
        .advance_secs(cutover_core::limits::RETIRED_KEY_PUBLISH_SECS);
    let keys = jwks().await;
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        1,
        "retired key leaves JWKS after its tokens expired"
    );
    assert_eq!(keys["keys"][0]["kid"], new_key["kid"]);
    // The first admin token has expired by now; a fresh one is signed with the new key.
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let audit = admin
        .get("/auditLogs/directoryAudits?action=rotateSigningKey")
        .await;
    assert_eq!(audit["value"][0]["targetId"], new_key["kid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_expire_and_each_rotation_starts_a_new_lifetime() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let (_, verifier, _, back) = signed_in_browser(&srv.base, &f).await;
    let (_, tokens) = redeem(
        &srv.base,
        &f,
        &query_param(&back, "code").unwrap(),
        &verifier,
    )
    .await;
    let refresh = |rt: String| {
        let (base, id, secret) = (
            srv.base.clone(),
            f.client_id.clone(),
            f.client_secret.clone(),
        );
        async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/oauth2/token"))
                .basic_auth(id, Some(secret))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    srv.clock.advance_secs(REFRESH_TOKEN_TTL_SECS - 1);
    let (status, next) = refresh(tokens["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(status, 200, "good one second before it expires: {next}");
    srv.clock.advance_secs(REFRESH_TOKEN_TTL_SECS);
    let (status, body) = refresh(next["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired at exactly its lifetime"
    );
}
