//! The agent against a small fake of the `/agent/v1` server (the real server's end-to-end
//! tests live in the `cutover` crate): register, session, long poll, results, heartbeat,
//! 401 renewal, key rotation while running, status, graceful drain and refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cutover_agent::{CheckStatus, DirectoryCheck, LinkCondition, RegisterOptions, SystemMonoClock};
use cutover_agent_proto::*;
use cutover_core::lockout::DirectoryLockout;
use cutover_core::pta::PtaResult;
use uuid::Uuid;

// ---- fake directory ---------------------------------------------------------------------

#[derive(Clone, Default)]
struct Dir {
    checks: Arc<Mutex<Vec<String>>>,
}

impl DirectoryCheck for Dir {
    async fn check(&self, upn: &str, _id: Option<&str>, password: &[u8]) -> (PtaResult, String) {
        self.checks.lock().unwrap().push(upn.to_owned());
        match password {
            b"right" => (PtaResult::Success, "bound".into()),
            b"slow" => {
                tokio::time::sleep(Duration::from_millis(800)).await;
                (PtaResult::Success, "bound slowly".into())
            }
            _ => (
                PtaResult::InvalidCredentials,
                "ldap 49 invalidCredentials".into(),
            ),
        }
    }
    async fn probe(&self) -> Result<DirectoryLockout, String> {
        Ok(DirectoryLockout {
            threshold: Some(5),
            duration_secs: Some(900),
        })
    }
}

// ---- fake server ------------------------------------------------------------------------

#[derive(Default)]
struct Fake {
    token: String,
    agent: Option<(Uuid, AgentPublicKeys)>,
    enabled: bool,
    key_generation: u32,
    challenges: HashSet<String>,
    sessions: HashSet<String>,
    queue: VecDeque<WorkItem>,
    results: Vec<ResultItem>,
    heartbeats: Vec<Heartbeat>,
    calls: HashMap<&'static str, u32>,
}

#[derive(Clone)]
struct S(Arc<Mutex<Fake>>, Arc<tokio::sync::Notify>);

fn err(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(AgentErrorResponse {
            error: AgentErrorBody {
                code: code.into(),
                message: format!("fake: {code}"),
            },
        }),
    )
        .into_response()
}

fn authed(s: &S, h: &HeaderMap, what: &'static str) -> Result<(), Response> {
    let mut f = s.0.lock().unwrap();
    *f.calls.entry(what).or_default() += 1;
    let token = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !f.sessions.contains(token) {
        return Err(err(StatusCode::UNAUTHORIZED, "sessionInvalid"));
    }
    if !f.enabled {
        return Err(err(StatusCode::FORBIDDEN, "agentDisabled"));
    }
    Ok(())
}

async fn register(State(s): State<S>, Json(r): Json<RegisterRequest>) -> Response {
    let mut f = s.0.lock().unwrap();
    if r.token != f.token {
        return err(StatusCode::BAD_REQUEST, "registrationTokenUnknown");
    }
    if !verify_signature(
        &r.keys.signing_key,
        &register_proof(&r.token, &r.keys),
        &r.proof,
    ) || r.protocol != PROTOCOL_VERSION
    {
        return err(StatusCode::BAD_REQUEST, "proofInvalid");
    }
    let id = Uuid::new_v4();
    f.agent = Some((id, r.keys));
    f.enabled = true;
    f.key_generation = 1;
    f.token.clear();
    Json(RegisterResponse {
        agent_id: id,
        healthy_agents: 0,
        warning: Some("Only 0 pass-through agents are healthy".into()),
    })
    .into_response()
}

async fn challenge(State(s): State<S>, Json(r): Json<ChallengeRequest>) -> Response {
    let mut f = s.0.lock().unwrap();
    if f.agent.as_ref().map(|a| a.0) != Some(r.agent_id) {
        return err(StatusCode::FORBIDDEN, "agentUnknown");
    }
    let c = Uuid::new_v4().to_string();
    f.challenges.insert(c.clone());
    Json(ChallengeResponse {
        challenge: c,
        expires_in_secs: 60,
    })
    .into_response()
}

async fn session(State(s): State<S>, Json(r): Json<SessionRequest>) -> Response {
    let mut f = s.0.lock().unwrap();
    let Some((id, keys)) = f.agent.clone() else {
        return err(StatusCode::FORBIDDEN, "agentUnknown");
    };
    if !f.challenges.remove(&r.challenge)
        || !verify_signature(
            &keys.signing_key,
            &session_proof(id, &r.challenge),
            &r.signature,
        )
    {
        return err(StatusCode::UNAUTHORIZED, "signatureInvalid");
    }
    if !f.enabled {
        return err(StatusCode::FORBIDDEN, "agentDisabled");
    }
    let t = Uuid::new_v4().to_string();
    f.sessions.insert(t.clone());
    *f.calls.entry("session").or_default() += 1;
    Json(SessionResponse {
        token: t,
        expires_in_secs: 900,
    })
    .into_response()
}

async fn poll(State(s): State<S>, h: HeaderMap, Json(r): Json<PollRequest>) -> Response {
    if let Err(e) = authed(&s, &h, "poll") {
        return e;
    }
    assert!(r.max >= 1 && r.wait_ms <= cutover_core::pta::MAX_POLL_WAIT_MS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let notified = s.1.notified();
        {
            let mut f = s.0.lock().unwrap();
            if !f.queue.is_empty() {
                let n = (r.max as usize).min(f.queue.len());
                let requests: Vec<WorkItem> = f.queue.drain(..n).collect();
                return Json(PollResponse { requests }).into_response();
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Json(PollResponse { requests: vec![] }).into_response();
        }
    }
}

async fn results(State(s): State<S>, h: HeaderMap, Json(r): Json<ResultsRequest>) -> Response {
    if let Err(e) = authed(&s, &h, "results") {
        return e;
    }
    let mut f = s.0.lock().unwrap();
    let accepted = r.results.iter().map(|r| r.request_id).collect();
    f.results.extend(r.results);
    Json(ResultsResponse {
        accepted,
        rejected: vec![],
    })
    .into_response()
}

async fn heartbeat(State(s): State<S>, h: HeaderMap, Json(r): Json<Heartbeat>) -> Response {
    if let Err(e) = authed(&s, &h, "heartbeat") {
        return e;
    }
    s.0.lock().unwrap().heartbeats.push(r);
    Json(HeartbeatResponse {
        server_time: 0,
        interval_secs: 1,
    })
    .into_response()
}

async fn keys(State(s): State<S>, h: HeaderMap, Json(r): Json<RotateKeysRequest>) -> Response {
    if let Err(e) = authed(&s, &h, "keys") {
        return e;
    }
    let mut f = s.0.lock().unwrap();
    let Some((id, _)) = f.agent.clone() else {
        return err(StatusCode::FORBIDDEN, "agentUnknown");
    };
    if !verify_signature(&r.keys.signing_key, &rotate_proof(id, &r.keys), &r.proof) {
        return err(StatusCode::BAD_REQUEST, "proofInvalid");
    }
    f.agent = Some((id, r.keys));
    f.key_generation += 1;
    Json(RotateKeysResponse {
        key_generation: f.key_generation,
    })
    .into_response()
}

async fn self_view(State(s): State<S>, h: HeaderMap) -> Response {
    if let Err(e) = authed(&s, &h, "self") {
        return e;
    }
    let f = s.0.lock().unwrap();
    Json(SelfView {
        agent_id: f.agent.as_ref().unwrap().0,
        enabled: f.enabled,
        health: if f.heartbeats.is_empty() {
            "offline"
        } else {
            "healthy"
        }
        .into(),
        key_generation: f.key_generation,
        last_heartbeat: None,
        healthy_agents: 1,
        warning: Some("Only 1 pass-through agent is healthy".into()),
    })
    .into_response()
}

async fn start_fake(token: &str) -> (S, SocketAddr) {
    let s = S(
        Arc::new(Mutex::new(Fake {
            token: token.into(),
            ..Fake::default()
        })),
        Arc::new(tokio::sync::Notify::new()),
    );
    let app = Router::new()
        .route("/agent/v1/register", post(register))
        .route("/agent/v1/challenge", post(challenge))
        .route("/agent/v1/session", post(session))
        .route("/agent/v1/poll", post(poll))
        .route("/agent/v1/results", post(results))
        .route("/agent/v1/heartbeat", post(heartbeat))
        .route("/agent/v1/keys", post(keys))
        .route("/agent/v1/self", get(self_view))
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (s, addr)
}

impl S {
    fn enqueue(&self, password: &[u8]) -> Uuid {
        let request_id = Uuid::new_v4();
        {
            let mut f = self.0.lock().unwrap();
            let (agent, keys) = f.agent.clone().unwrap();
            let upn = "user1@corp.example";
            let sealed = seal_password(
                &keys.encryption_key,
                password,
                &envelope_aad(request_id, agent, upn),
            )
            .unwrap();
            f.queue.push_back(WorkItem {
                request_id,
                correlation_id: Uuid::new_v4(),
                user_principal_name: upn.into(),
                immutable_id: None,
                remaining_ms: 5_000,
                password: sealed,
            });
        }
        self.1.notify_waiters();
        request_id
    }

    fn result_of(&self, id: Uuid) -> Option<ResultItem> {
        let f = self.0.lock().unwrap();
        f.results.iter().find(|r| r.request_id == id).cloned()
    }

    async fn wait_result(&self, id: Uuid) -> ResultItem {
        for _ in 0..200 {
            if let Some(r) = self.result_of(id) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no result for {id}");
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn directory_file(root: &Path) -> PathBuf {
    let p = root.join("directory.toml");
    std::fs::write(
        &p,
        r#"
url = "ldap://127.0.0.1:1389"
bind_dn = "cn=agent,dc=example,dc=com"
bind_password_file = "bind-password"
base_dn = "ou=people,dc=example,dc=com"
user_filter = "(&(objectClass=inetOrgPerson)(mail={upn}))"
"#,
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_lifecycle_against_a_fake_server() {
    let tmp = TempDir(std::env::temp_dir().join(format!("cutover-agent-it-{}", Uuid::new_v4())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let state = tmp.0.join("state");
    let (fake, addr) = start_fake("one-time-token").await;
    let server = format!("http://127.0.0.1:{}", addr.port());
    let dir = Dir::default();

    // ---- register ---------------------------------------------------------------------
    let mut opts = RegisterOptions::new(&server, "wrong", &state, directory_file(&tmp.0));
    let e = cutover_agent::register_with(opts.clone(), dir.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not know this registration token"), "{e}");
    assert!(!state.join("agent.toml").exists());
    assert!(!format!("{opts:?}").contains("one-time-token"));
    opts.token = " one-time-token\n".into();
    opts.host = Some("agent-host-1".into());
    let reg = cutover_agent::register_with(opts.clone(), dir.clone())
        .await
        .unwrap();
    assert_eq!(reg.directory_lockout.unwrap().threshold, Some(5));
    assert!(reg.warning.is_some());
    let e = cutover_agent::register_with(opts.clone(), dir.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already registered") && e.contains("--force"),
        "{e}"
    );
    let cfg = std::fs::read_to_string(state.join("agent.toml")).unwrap();
    assert!(
        cfg.contains(&reg.agent_id.to_string()) && cfg.contains("[directory]"),
        "{cfg}"
    );
    assert!(
        cfg.contains(&tmp.0.join("bind-password").display().to_string()),
        "{cfg}"
    );

    // ---- run: results, heartbeat ----------------------------------------------------------
    let agent =
        cutover_agent::start_with(&state, dir.clone(), Arc::new(SystemMonoClock::default()))
            .await
            .unwrap();
    assert_eq!(agent.agent_id(), reg.agent_id);
    let ok = fake.enqueue(b"right");
    let bad = fake.enqueue(b"wrong");
    assert_eq!(fake.wait_result(ok).await.result, PtaResult::Success);
    let r = fake.wait_result(bad).await;
    assert_eq!(r.result, PtaResult::InvalidCredentials);
    assert_eq!(r.detail.as_deref(), Some("ldap 49 invalidCredentials"));
    assert_eq!(agent.condition(), LinkCondition::Connected);
    wait_until("a heartbeat with two validations", || {
        fake.0
            .lock()
            .unwrap()
            .heartbeats
            .last()
            .is_some_and(|h| h.stats.validations == 2)
    })
    .await;
    {
        let f = fake.0.lock().unwrap();
        let h = f.heartbeats.last().unwrap();
        assert_eq!(h.host, "agent-host-1");
        assert!(h.directory.reachable);
        assert_eq!(h.directory.lockout.unwrap().duration_secs, Some(900));
        assert_eq!(h.stats.by_result.get("success"), Some(&1));
        assert_eq!(h.stats.last_minute, 2);
        assert!(h.stats.rss_bytes > 0);
    }
    assert_eq!(agent.stats().validations, 2);

    // ---- a 401 opens a new session and the call goes through --------------------------
    let sessions_before = fake
        .0
        .lock()
        .unwrap()
        .calls
        .get("session")
        .copied()
        .unwrap_or(0);
    fake.0.lock().unwrap().sessions.clear();
    let id = fake.enqueue(b"right");
    assert_eq!(fake.wait_result(id).await.result, PtaResult::Success);
    assert!(fake.0.lock().unwrap().calls["session"] > sessions_before);

    // ---- rotate the keys while the agent runs --------------------------------------------
    let old_public = fake.0.lock().unwrap().agent.clone().unwrap().1;
    let rot = cutover_agent::rotate_keys(&state).await.unwrap();
    assert_eq!(rot.key_generation, 2);
    let new_public = fake.0.lock().unwrap().agent.clone().unwrap().1;
    assert_ne!(old_public, new_public);
    assert_eq!(rot.keys.signing_key, new_public.signing_key);
    assert!(!state.join("keys.json.new").exists());
    // Sealed to the new key: the running agent picks keys.json up again.
    let id = fake.enqueue(b"right");
    assert_eq!(fake.wait_result(id).await.result, PtaResult::Success);

    // ---- status -------------------------------------------------------------------------
    let st = cutover_agent::status_with(&state, dir.clone())
        .await
        .unwrap();
    assert!(st.ok, "{st:#?}");
    assert_eq!(st.agent.as_ref().unwrap().key_generation, 2);
    assert!(
        st.checks
            .iter()
            .any(|c| c.name == "fleet" && c.status == CheckStatus::Warn)
    );
    let json = serde_json::to_string(&st).unwrap();
    let stored: StoredKeys =
        serde_json::from_str(&std::fs::read_to_string(state.join("keys.json")).unwrap()).unwrap();
    assert!(!json.contains(&stored.encryption_secret) && !json.contains(&stored.signing_pkcs8));

    // ---- graceful drain: the validation in flight is reported --------------------------
    let heartbeats_before = fake.0.lock().unwrap().heartbeats.len();
    let slow = fake.enqueue(b"slow");
    wait_until("the slow check to start", || {
        dir.checks.lock().unwrap().len() == 5
    })
    .await;
    assert_eq!(agent.stats().in_flight, 1);
    agent.shutdown();
    agent.wait().await.unwrap();
    assert_eq!(fake.result_of(slow).unwrap().result, PtaResult::Success);
    {
        let f = fake.0.lock().unwrap();
        assert!(f.heartbeats.len() > heartbeats_before);
        assert_eq!(f.heartbeats.last().unwrap().stats.validations, 5);
        assert_eq!(f.heartbeats.last().unwrap().stats.in_flight, 0);
    }

    // ---- disabled by an admin: refused, logged, retried, never a crash ------------------
    let agent =
        cutover_agent::start_with(&state, dir.clone(), Arc::new(SystemMonoClock::default()))
            .await
            .unwrap();
    wait_until("connected", || {
        agent.condition() == LinkCondition::Connected
    })
    .await;
    {
        let mut f = fake.0.lock().unwrap();
        f.enabled = false;
        f.sessions.clear();
    }
    fake.1.notify_waiters();
    wait_until(
        "refused",
        || matches!(agent.condition(), LinkCondition::Refused(ref c) if c == "agentDisabled"),
    )
    .await;
    assert!(!agent.is_finished());
    let st = cutover_agent::status_with(&state, dir.clone())
        .await
        .unwrap();
    assert!(!st.ok);
    let server_check = st.checks.iter().find(|c| c.name == "server").unwrap();
    assert!(
        server_check.fix.as_ref().unwrap().contains("re-enable"),
        "{server_check:?}"
    );
    let stop = tokio::time::Instant::now();
    agent.shutdown();
    agent.wait().await.unwrap();
    assert!(
        stop.elapsed() < Duration::from_secs(8),
        "stopping waits for no backoff"
    );
}

#[tokio::test]
async fn run_stops_when_the_shutdown_future_resolves() {
    let tmp = TempDir(std::env::temp_dir().join(format!("cutover-agent-it-{}", Uuid::new_v4())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let state = tmp.0.join("state");
    let (_fake, addr) = start_fake("t").await;
    let server = format!("http://localhost:{}", addr.port());
    let mut opts = RegisterOptions::new(&server, "t", &state, directory_file(&tmp.0));
    opts.skip_directory_check = true;
    let reg = cutover_agent::register_with(opts, Dir::default())
        .await
        .unwrap();
    assert!(reg.directory_lockout.is_none());
    let agent =
        cutover_agent::start_with(&state, Dir::default(), Arc::new(SystemMonoClock::default()))
            .await
            .unwrap();
    cutover_agent::run_handle(agent, tokio::time::sleep(Duration::from_millis(300)))
        .await
        .unwrap();
}

/// A TLS server that answers every request with a 401 (enough to tell a handshake happened).
async fn tls_server(made: &rcgen::CertifiedKey<rcgen::KeyPair>) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let chain = vec![made.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"error":{"code":"sessionInvalid","message":"no session"}}"#;
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn with_a_ca_file_only_that_ca_is_trusted() {
    use cutover_agent::client::ServerClient;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let addr = tls_server(&made).await;
    let url = format!("https://localhost:{}", addr.port());
    let timeout = Duration::from_secs(5);

    let trusted = ServerClient::new(&url, Some(made.cert.pem().as_bytes())).unwrap();
    let e = trusted
        .get::<SelfView>("self", Some("t"), timeout)
        .await
        .unwrap_err();
    assert!(
        matches!(e, cutover_agent::CallError::Unauthorized(_)),
        "{e}"
    );

    let wrong_ca = ServerClient::new(&url, Some(other.cert.pem().as_bytes())).unwrap();
    let e = wrong_ca
        .get::<SelfView>("self", Some("t"), timeout)
        .await
        .unwrap_err();
    assert!(matches!(e, cutover_agent::CallError::Transport(_)), "{e}");

    let web_pki = ServerClient::new(&url, None).unwrap();
    let e = web_pki
        .get::<SelfView>("self", Some("t"), timeout)
        .await
        .unwrap_err();
    assert!(matches!(e, cutover_agent::CallError::Transport(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_rotations_are_settled() {
    let tmp = TempDir(std::env::temp_dir().join(format!("cutover-agent-it-{}", Uuid::new_v4())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let state = tmp.0.join("state");
    let (fake, addr) = start_fake("t").await;
    let server = format!("http://127.0.0.1:{}", addr.port());
    let opts = RegisterOptions::new(&server, "t", &state, directory_file(&tmp.0));
    cutover_agent::register_with(opts, Dir::default())
        .await
        .unwrap();
    let write_keys = |k: &AgentKeys, name: &str| {
        std::fs::write(
            state.join(name),
            serde_json::to_vec(&k.to_stored()).unwrap(),
        )
        .unwrap()
    };

    // Keys the server never saw: rotate-keys discards them and rotates.
    let stray = AgentKeys::generate().unwrap();
    write_keys(&stray, "keys.json.new");
    let r = cutover_agent::rotate_keys(&state).await.unwrap();
    assert_eq!(r.key_generation, 2);
    assert_ne!(r.keys.signing_key, stray.public().signing_key);
    assert!(!state.join("keys.json.new").exists());

    // The server took new keys but the answer was lost: the agent finishes the rotation.
    let taken = AgentKeys::generate().unwrap();
    write_keys(&taken, "keys.json.new");
    {
        let mut f = fake.0.lock().unwrap();
        let id = f.agent.as_ref().unwrap().0;
        f.agent = Some((id, taken.public()));
    }
    let agent =
        cutover_agent::start_with(&state, Dir::default(), Arc::new(SystemMonoClock::default()))
            .await
            .unwrap();
    let id = fake.enqueue(b"right");
    assert_eq!(fake.wait_result(id).await.result, PtaResult::Success);
    assert!(!state.join("keys.json.new").exists());
    let on_disk: StoredKeys =
        serde_json::from_str(&std::fs::read_to_string(state.join("keys.json")).unwrap()).unwrap();
    assert_eq!(
        AgentKeys::from_stored(&on_disk).unwrap().public(),
        taken.public()
    );
    agent.shutdown();
    agent.wait().await.unwrap();
}

#[tokio::test]
async fn a_killed_agent_sends_nothing_more() {
    let tmp = TempDir(std::env::temp_dir().join(format!("cutover-agent-it-{}", Uuid::new_v4())));
    std::fs::create_dir_all(&tmp.0).unwrap();
    let state = tmp.0.join("state");
    let (fake, addr) = start_fake("t").await;
    let server = format!("http://127.0.0.1:{}", addr.port());
    let mut opts = RegisterOptions::new(&server, "t", &state, directory_file(&tmp.0));
    opts.skip_directory_check = true;
    cutover_agent::register_with(opts, Dir::default())
        .await
        .unwrap();
    let agent =
        cutover_agent::start_with(&state, Dir::default(), Arc::new(SystemMonoClock::default()))
            .await
            .unwrap();
    // The fake asks for a heartbeat every second.
    wait_until("two heartbeats", || {
        fake.0.lock().unwrap().heartbeats.len() >= 2
    })
    .await;
    agent.kill();
    wait_until("the agent ending", || agent.is_finished()).await;
    let seen = fake.0.lock().unwrap().heartbeats.len();
    // Three heartbeat intervals of silence: a dead process sends nothing (its heartbeat task
    // used to outlive the killed agent).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.0.lock().unwrap().heartbeats.len(), seen);
}
