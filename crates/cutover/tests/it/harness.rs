//! Test harness: start `cutover serve` processes or in-process servers, drive the admin API,
//! and walk the sign-in pages like a browser without JavaScript.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cutover_server::clock::{Clock, ManualClock};
use cutover_server::crypto::Argon2Params;
use cutover_server::{AppState, ServerConfig};
use serde_json::{Value, json};

/// Cheap but valid argon2 parameters for tests (the benchmark uses the real defaults).
pub const TEST_ARGON2: Argon2Params = Argon2Params {
    memory_kib: 8192,
    iterations: 1,
    parallelism: 1,
};

/// How long a spawned server may take to say it is listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A required test component's setting; a missing one fails the test with instructions.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the full suite with scripts/test.sh, which installs and starts the test components")
    })
}

pub fn scratch_dir(tag: &str) -> PathBuf {
    let base = std::env::var("CUTOVER_TEST_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = base.join(format!("{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A fresh PostgreSQL database on the test cluster.
pub async fn fresh_postgres() -> String {
    let base = required_env("CUTOVER_TEST_POSTGRES_URL");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    cutover_store::create_postgres_database(&base, &name)
        .await
        .expect("create a test database")
}

/// A `cutover serve` child process, killed on drop.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub stdout_lines: Vec<String>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Start `cutover serve` on a free loopback port with `extra` arguments.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg("127.0.0.1:0");
        cmd.args(extra);
        cmd.env(
            "CUTOVER_ARGON2_MEMORY_KIB",
            TEST_ARGON2.memory_kib.to_string(),
        )
        .env(
            "CUTOVER_ARGON2_ITERATIONS",
            TEST_ARGON2.iterations.to_string(),
        )
        .env("CUTOVER_LOG", "warn")
        .env_remove("CUTOVER_DATABASE")
        .env_remove("CUTOVER_ISSUER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("spawn cutover serve");
        // Owned by the guard from here on: dropped (killed and reaped) on every path.
        let mut server = Self {
            child,
            base: String::new(),
            data_dir: data_dir.to_path_buf(),
            stdout_lines: Vec::new(),
        };
        let stdout = server.child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!(
                    "cutover serve did not start within {STARTUP_TIMEOUT:?}; stdout so far: {:?}",
                    server.stdout_lines
                );
            };
            let found = line
                .strip_prefix("Cutover is listening on ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned);
            server.stdout_lines.push(line);
            if let Some(base) = found {
                server.base = base;
                return server;
            }
        }
    }

    /// Send SIGTERM and wait (at most `limit`) for the process to exit; `None` when it did
    /// not (it is killed on drop then).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn credentials(&self) -> Value {
        let text = std::fs::read_to_string(self.data_dir.join("admin-credentials"))
            .expect("admin-credentials");
        serde_json::from_str(&text).expect("credentials JSON")
    }
}

/// An in-process server on a [`ManualClock`], for tests that step time.
pub struct InProcess {
    pub base: String,
    pub clock: ManualClock,
    pub creds: Value,
    /// The node's state (its store, for tests that build large populations directly).
    pub state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InProcess {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Start with the configuration adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = scratch_dir("inproc");
        let db = format!("sqlite:{}", dir.join("c.db").display());
        let kek = cutover_server::crypto::KeyEncryptionKey::generate();
        Self::start_node(&db, kek, None, tune).await
    }

    /// One node of several on the database `db` (they share `kek` and the admin
    /// credentials: `creds` is `None` for the first node, which creates them). Each node
    /// has its own clock, started at the system time.
    pub async fn start_node(
        db: &str,
        kek: cutover_server::crypto::KeyEncryptionKey,
        creds: Option<Value>,
        tune: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let store = cutover_store::connect(db).await.expect("database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let clock = ManualClock::new(cutover_server::clock::SystemClock.now());
        let config = ServerConfig {
            issuer: base.clone(),
            argon2: TEST_ARGON2,
            trust_forwarded_for: false,
            key_encryption_key: kek,
            synced_password_expiry_days: None,
            pass_through_deadline_ms: cutover_core::pta::DEFAULT_REQUEST_DEADLINE_MS,
            passkeys: Default::default(),
            admin_group: cutover_server::DEFAULT_ADMIN_GROUP.into(),
            campaigns: Default::default(),
        };
        let mut config = config;
        tune(&mut config);
        let state = AppState::new(store, Arc::new(clock.clone()), config)
            .await
            .expect("state");
        let creds = match creds {
            Some(c) => c,
            None => {
                let creds = cutover_server::bootstrap::ensure_admin_application(&state)
                    .await
                    .unwrap()
                    .expect("fresh admin app");
                serde_json::to_value(&creds).unwrap()
            }
        };
        let served = state.clone();
        let task = tokio::spawn(async move {
            let _ = cutover_server::serve(served, listener, std::future::pending()).await;
        });
        Self {
            base,
            clock,
            creds,
            state,
            task,
        }
    }
}

/// An HTTP client that keeps cookies and never follows redirects (tests look at each hop).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Admin API client authenticated with the bootstrap credentials.
pub struct Admin {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Admin {
    pub async fn login(base: &str, creds: &Value) -> Self {
        Self::login_with(base, creds, reqwest::Client::new()).await
    }

    /// Log in with a client of the caller's making (e.g. one that trusts a test CA).
    pub async fn login_with(base: &str, creds: &Value, http: reqwest::Client) -> Self {
        let res = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(
                creds["clientId"].as_str().unwrap(),
                creds["clientSecret"].as_str(),
            )
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "admin client credentials grant");
        let body: Value = res.json().await.unwrap();
        Self {
            base: base.to_owned(),
            http,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 201 || status == 200, "POST {path}: {status} {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }
}

/// A directory for sign-in tests: a managed domain, a user with a password, a group holding
/// the user, and a confidential application. Returns (user id, client id, client secret).
pub struct Fixture {
    pub user_id: String,
    pub upn: String,
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

pub async fn seed(admin: &Admin, redirect_uri: &str) -> Fixture {
    admin
        .post(
            "/domains",
            json!({"id": "contoso.example", "authenticationType": "managed"}),
        )
        .await;
    let password = "Correct-Horse-Battery-9".to_string();
    let user = admin
        .post(
            "/users",
            json!({"userPrincipalName": "User1@contoso.example", "displayName": "User One", "accountEnabled": true,
                   "mail": "user1@contoso.example", "passwordProfile": {"password": password}}),
        )
        .await;
    let group = admin
        .post(
            "/groups",
            json!({"displayName": "Pilot", "membershipKind": "assigned"}),
        )
        .await;
    admin
        .post(
            &format!("/groups/{}/members", group["id"].as_str().unwrap()),
            json!({"id": user["id"]}),
        )
        .await;
    let app = admin
        .post(
            "/applications",
            json!({"displayName": "Payroll", "redirectUris": [redirect_uri], "clientType": "confidential",
                   "postLogoutRedirectUris": ["http://127.0.0.1:9/signed-out"]}),
        )
        .await;
    Fixture {
        user_id: user["id"].as_str().unwrap().to_owned(),
        upn: "user1@contoso.example".into(),
        password,
        client_id: app["clientId"].as_str().unwrap().to_owned(),
        client_secret: app["clientSecret"].as_str().unwrap().to_owned(),
        redirect_uri: redirect_uri.to_owned(),
    }
}

/// The value of a hidden form field.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in page: {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Walk the sign-in pages from an authorization URL, without judging the outcome: returns the
/// response to the identifier post when it did not move on, else the response to the password
/// post. `password_base` lets the password step go to another node.
pub async fn attempt_sign_in(
    http: &reqwest::Client,
    base: &str,
    auth_url: &str,
    upn: &str,
    password: &str,
    password_base: Option<&str>,
) -> reqwest::Response {
    let res = http.get(auth_url).send().await.unwrap();
    assert_eq!(
        res.status(),
        303,
        "authorize should send the browser to the sign-in page"
    );
    let login = location(&res);
    assert!(login.starts_with("/login?t="), "{login}");
    let page = http.get(format!("{base}{login}")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
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
    if res.status() != 303 {
        return res;
    }
    let pw_base = password_base.unwrap_or(base);
    let pw_page = http
        .get(format!("{pw_base}{}", location(&res)))
        .send()
        .await
        .unwrap();
    let html = pw_page.text().await.unwrap();
    assert!(html.contains("autocomplete=\"current-password\""), "{html}");
    http.post(format!("{pw_base}/login/password"))
        .form(&[
            ("t", t.as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

/// Sign in through the pages; returns the final redirect to the client.
pub async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    auth_url: &str,
    upn: &str,
    password: &str,
    password_base: Option<&str>,
) -> String {
    let res = attempt_sign_in(http, base, auth_url, upn, password, password_base).await;
    assert_eq!(
        res.status(),
        303,
        "sign-in should end in a redirect: {}",
        res.text().await.unwrap_or_default()
    );
    location(&res)
}

/// A PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = cutover_core::pkce::s256_challenge(&verifier);
    (verifier, challenge)
}

pub fn auth_url(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut url = url::Url::parse(&format!("{base}/oauth2/authorize")).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid profile email offline_access")
            .append_pair("state", "st-123")
            .append_pair("nonce", "n-456")
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Exchange a code at `base`'s token endpoint (client_secret_post); returns (status, body).
pub async fn redeem(base: &str, f: &Fixture, code: &str, verifier: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", f.redirect_uri.as_str()),
            ("code_verifier", verifier),
            ("client_id", f.client_id.as_str()),
            ("client_secret", f.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// Sign the fixture's user in from a fresh browser with PKCE.
/// Returns (browser, verifier, challenge, the redirect back to the client).
pub async fn signed_in_browser(
    base: &str,
    f: &Fixture,
) -> (reqwest::Client, String, String, String) {
    let (verifier, challenge) = pkce();
    let http = browser();
    let url = auth_url(base, &f.client_id, &f.redirect_uri, &challenge, &[]);
    let back = sign_in(&http, base, &url, &f.upn, &f.password, None).await;
    (http, verifier, challenge, back)
}

/// GET `url` without following redirects and return where it points.
pub async fn redirect_of(http: &reqwest::Client, url: String) -> String {
    location(&http.get(url).send().await.unwrap())
}
