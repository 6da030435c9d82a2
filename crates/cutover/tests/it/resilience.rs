//! Bad input and a database outage: clear errors, no panic, nothing half-written.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

/// A TCP proxy in front of PostgreSQL that the test can cut, as a network outage would.
struct Cuttable {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
    live: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cuttable {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch) = tokio::sync::watch::channel(true);
        let live = Arc::new(AtomicUsize::new(0));
        let counter = live.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let mut watch = watch.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    if !*watch.borrow() {
                        return; // refuse while cut: drop the connection at once
                    }
                    let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (mut ri, mut wi) = inbound.split();
                    let (mut ro, mut wo) = out.split();
                    let a = tokio::io::copy(&mut ri, &mut wo);
                    let b = tokio::io::copy(&mut ro, &mut wi);
                    let cut = watch.wait_for(|up| !*up);
                    tokio::select! { _ = a => {}, _ = b => {}, _ = cut => {} }
                    counter.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            up,
            live,
            task,
        }
    }

    /// Cut every connection and refuse new ones; returns once no connection is left open.
    async fn cut(&self) {
        self.up.send_replace(false);
        for _ in 0..500 {
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the proxy could not close its connections");
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_clear_errors_and_writes_nothing() {
    let db = fresh_postgres().await;
    let url = url::Url::parse(&db).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Cuttable::start(upstream).await;
    let mut via_proxy = url.clone();
    via_proxy.set_port(Some(proxy.port)).unwrap();

    let dir = scratch_dir("outage");
    let server = ServerProcess::start(&dir, &["--database", via_proxy.as_str()]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let f = seed(&admin, "http://127.0.0.1:9/cb").await;

    proxy.cut().await;
    let (status, body) = admin
        .call(
            Method::POST,
            "/users",
            Some(json!({"userPrincipalName": "during@contoso.example", "displayName": "During"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body}"
    );
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/token", server.base))
        .basic_auth(&f.client_id, Some(&f.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    let (_, challenge) = pkce();
    let res = browser()
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
    assert_eq!(res.status(), 503);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("temporarily unavailable")
    );
    let ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);

    // Back up: the service recovers by itself and the refused write did not happen.
    proxy.restore();
    let (status, _) = admin
        .call(Method::GET, "/users/during@contoso.example", None)
        .await;
    assert_eq!(
        status, 404,
        "the write refused during the outage left nothing behind"
    );
    let audit = admin.get("/auditLogs/directoryAudits?$top=500").await;
    assert!(!audit.to_string().contains("during@contoso.example"));
    let back = sign_in(
        &browser(),
        &server.base,
        &auth_url(&server.base, &f.client_id, &f.redirect_uri, &challenge, &[]),
        &f.upn,
        &f.password,
        None,
    )
    .await;
    assert!(query_param(&back, "code").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_input_never_breaks_the_server() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, "http://127.0.0.1:9/cb").await;
    let sync_app = admin
        .post(
            "/applications",
            json!({"displayName": "sync", "grantTypes": ["client_credentials"], "appRoles": ["Directory.Sync"]}),
        )
        .await;
    let sync = Admin::login(&srv.base, &sync_app).await;
    let base = srv.base.clone();
    let http = browser();
    let rt = tokio::runtime::Handle::current();

    // Random query strings, form bodies and JSON-ish bodies at every entry point.
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let junk = proptest::collection::vec(any::<u8>(), 0..400);
    let outcome = runner.run(&(junk, 0usize..22), |(bytes, which)| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let enc: String = url::form_urlencoded::byte_serialize(&bytes).collect();
        let (base, http, admin, sync, client_id, shown) = (base.clone(), http.clone(), &admin, &sync, f.client_id.clone(), text.clone());
        let status = tokio::task::block_in_place(|| {
            rt.block_on(async move {
                let req = match which {
                    0 => http.get(format!("{base}/oauth2/authorize?{text}")),
                    1 => http.get(format!("{base}/oauth2/authorize?client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&state={enc}&scope={enc}&code_challenge={enc}&code_challenge_method=S256&response_type=code&max_age={enc}&prompt={enc}")),
                    2 => http.post(format!("{base}/oauth2/token")).header("content-type", "application/x-www-form-urlencoded").body(bytes.clone()),
                    3 => http.post(format!("{base}/login/identifier")).header("content-type", "application/x-www-form-urlencoded").body(bytes.clone()),
                    4 => http.post(format!("{base}/login/password")).header("content-type", "application/x-www-form-urlencoded").body(bytes.clone()),
                    5 => http.get(format!("{base}/oauth2/userinfo")).header("authorization", format!("Bearer {}", text.replace(['\r', '\n'], ""))),
                    6 => admin.http.post(format!("{base}/api/v1/users")).bearer_auth(&admin.token).header("content-type", "application/json").body(bytes.clone()),
                    7 => admin.http.get(format!("{base}/api/v1/auditLogs/signIns?{text}")).bearer_auth(&admin.token),
                    8 => sync.http.post(format!("{base}/sync/v1/servers/junk/exports")).bearer_auth(&sync.token).header("content-type", "application/json").body(bytes.clone()),
                    9 => sync.http.get(format!("{base}/sync/v1/snapshot/users?{text}")).bearer_auth(&sync.token),
                    11 => http.get(format!("{base}/federation/callback?{text}")),
                    12 => http.get(format!("{base}/federation/callback?state={enc}.{enc}&code={enc}&error_description={enc}")),
                    13 => admin.http.post(format!("{base}/api/v1/policies/featureRolloutPolicies")).bearer_auth(&admin.token).header("content-type", "application/json").body(bytes.clone()),
                    14 => admin.http.post(format!("{base}/api/v1/identityProviders")).bearer_auth(&admin.token).header("content-type", "application/json").body(bytes.clone()),
                    // The pass-through agents' protocol and the lockout and agent admin API.
                    15 => http.post(format!("{base}/agent/v1/register")).header("content-type", "application/json").body(bytes.clone()),
                    16 => http.post(format!("{base}/agent/v1/challenge")).header("content-type", "application/json").body(bytes.clone()),
                    17 => http.post(format!("{base}/agent/v1/session")).header("content-type", "application/json").body(bytes.clone()),
                    18 => http.post(format!("{base}/agent/v1/results")).header("authorization", format!("Bearer {}", text.replace(['\r', '\n'], ""))).header("content-type", "application/json").body(bytes.clone()),
                    19 => admin.http.put(format!("{base}/api/v1/policies/smartLockout")).bearer_auth(&admin.token).header("content-type", "application/json").body(bytes.clone()),
                    20 => admin.http.post(format!("{base}/api/v1/agents/registrationTokens")).bearer_auth(&admin.token).header("content-type", "application/json").body(bytes.clone()),
                    21 => admin.http.get(format!("{base}/api/v1/users/{enc}/lockout")).bearer_auth(&admin.token),
                    _ => http.get(format!("{base}/oauth2/logout?id_token_hint={enc}&post_logout_redirect_uri={enc}")),
                };
                match req.send().await {
                    Ok(res) => res.status().as_u16(),
                    // A request the client library itself refuses to send (invalid header) is fine.
                    Err(e) if e.is_builder() => 400,
                    Err(e) => panic!("request failed: {e}"),
                }
            })
        });
        prop_assert!(status < 500, "entry point {} answered {} to {:?}", which, status, shown);
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let ok = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(ok.status(), 200, "the server is still up");
}
