//! The agent as an operator runs it: `cutover agent register | status | run` as processes
//! against a `cutover serve` process that serves HTTPS with a certificate from its own CA, the
//! agent trusting that CA only; a pass-through sign-in over TLS; SIGTERM drains the agent.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;
use crate::pta_ldap::{self, FILTER, SYNC_PW};

fn self_signed(dir: &Path, tag: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = dir.join(format!("{tag}-cert.pem"));
    let key = dir.join(format!("{tag}-key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.pem())
}

fn agent_cmd(state_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cutover"));
    c.arg("agent")
        .arg("--state-dir")
        .arg(state_dir)
        .env("CUTOVER_LOG", "info");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_cli_over_tls_with_a_pinned_ca() {
    let slapd = pta_ldap::start();
    pta_ldap::add_users(&slapd, &["tina"]);
    let dir = scratch_dir("pta-cli");
    let (cert, key, pem) = self_signed(&dir, "server");
    let (other_ca, _, _) = self_signed(&dir, "other");
    let server = ServerProcess::start(
        &dir.join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let root = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
    let client = || {
        reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let admin = Admin::login_with(&server.base, &server.credentials(), client()).await;
    admin
        .post(
            "/domains",
            json!({"id": "example.test", "authenticationType": "managed",
                   "passwordValidation": "passthroughAuthentication"}),
        )
        .await;
    admin
        .post(
            "/users",
            json!({"userPrincipalName": "tina@example.test", "displayName": "Tina", "accountEnabled": true,
                   "source": "synced", "immutableId": "anchor-tina"}),
        )
        .await;
    let app = admin
        .post(
            "/applications",
            json!({"displayName": "Payroll", "redirectUris": ["http://127.0.0.1:9/cb"], "clientType": "public"}),
        )
        .await;
    let directory = dir.join("directory.toml");
    std::fs::write(
        &directory,
        format!(
            "url = \"{}\"\nbind_dn = \"uid=svc-sync,ou=people,{}\"\nbind_password_file = \"{}\"\nbase_dn = \"ou=people,{}\"\nuser_filter = \"{FILTER}\"\n",
            slapd.uri,
            slapd.base,
            slapd.password_file(SYNC_PW).display(),
            slapd.base
        ),
    )
    .unwrap();
    let token = admin
        .post("/agents/registrationTokens", json!({"lifetimeSecs": 600}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let state = dir.join("agent");

    // A CA that did not sign the server's certificate: refused, the token is not spent, and
    // the message says where to look.
    let out = agent_cmd(&state)
        .args(["register", "--server", &server.base, "--token-file"])
        .arg(&token_file)
        .arg("--directory-config")
        .arg(&directory)
        .arg("--ca-file")
        .arg(&other_ca)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    // Without a CA file the system's roots do not know this certificate either.
    let out = agent_cmd(&state)
        .args(["register", "--server", &server.base, "--token-file"])
        .arg(&token_file)
        .arg("--directory-config")
        .arg(&directory)
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The right CA: registered, and the CA is pinned in the state directory.
    let out = agent_cmd(&state)
        .args(["register", "--server", &server.base, "--token-file"])
        .arg(&token_file)
        .arg("--directory-config")
        .arg(&directory)
        .arg("--ca-file")
        .arg(&cert)
        .args(["--host", "dc-side-1"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(state.join("server-ca.pem").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys.json is private: {mode:o}");
    }
    // The token is single use.
    let out = agent_cmd(&dir.join("agent-2"))
        .args(["register", "--server", &server.base, "--token-file"])
        .arg(&token_file)
        .arg("--directory-config")
        .arg(&directory)
        .arg("--ca-file")
        .arg(&cert)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already used"), "{err}");

    // Run it; it becomes healthy; status checks everything from the agent's side.
    let mut run = agent_cmd(&state)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let list = admin.get("/agents").await;
        if list["healthyAgents"] == 1 {
            assert_eq!(list["value"][0]["host"], "dc-side-1", "{list}");
            break;
        }
        assert!(
            Instant::now() < until,
            "the agent never became healthy: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = agent_cmd(&state)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");

    // A pass-through sign-in over TLS.
    let (_v, challenge) = pkce();
    let url = auth_url(
        &server.base,
        app["clientId"].as_str().unwrap(),
        "http://127.0.0.1:9/cb",
        &challenge,
        &[],
    );
    let back = sign_in(
        &client(),
        &server.base,
        &url,
        "tina@example.test",
        "pw-tina",
        None,
    )
    .await;
    assert!(back.contains("code="), "{back}");
    let rec = &admin
        .get("/auditLogs/signIns?userPrincipalName=tina@example.test&$top=1")
        .await["value"][0];
    assert_eq!(rec["result"], "success", "{rec}");
    assert!(rec["agentId"].is_string(), "{rec}");

    // The server stops while the agent's long poll waits (up to 25 s): the poll is answered
    // at once, so the server's graceful stop does not wait for it.
    let mut server = server;
    // (Under 5 s: without the prompt answer it would take the 10 s SHUTDOWN_GRACE.)
    let stopped = server.terminate(Duration::from_secs(5));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "the server stops promptly and cleanly with an agent connected: {stopped:?}"
    );

    // SIGTERM: the agent drains and exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            let _ = run.kill();
            panic!("the agent did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "the agent exits 0 after a drain: {code:?}");
}
