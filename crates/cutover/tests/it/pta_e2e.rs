//! Pass-through sign-ins end to end: a real OpenLDAP with ppolicy (`SLAPD_PPOLICY=1
//! scripts/slapd-start.sh`), real agents (`cutover_agent`, registered with one-time tokens
//! over the agent protocol), and the server's sign-in pages walked like a browser.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cutover_agent::{DirectoryCheck, RegisterOptions};
use cutover_server::ServerConfig;
use serde_json::{Value, json};

use crate::harness::{
    Admin, InProcess, attempt_sign_in, auth_url, browser, location, pkce, scratch_dir,
};
use crate::ldap_connector::Slapd;
use crate::pta_ldap::{self, FILTER, SYNC_PW, upn, user_dn};

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/cb";
pub(crate) const DOMAIN: &str = "example.test";

/// A directory, a server whose domain checks passwords through agents, and what agents need
/// to register.
pub(crate) struct PtaEnv {
    pub slapd: Slapd,
    pub server: InProcess,
    pub admin: Admin,
    pub client_id: String,
    pub dir: PathBuf,
    /// The agents' `[directory]` configuration file.
    pub directory_config: PathBuf,
}

impl PtaEnv {
    /// Users `uids` in both the directory (password `pw-<uid>`) and Cutover (synced, anchor
    /// `anchor-<uid>`); the server tuned by `tune`.
    pub(crate) async fn start(uids: &[&str], tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let slapd = pta_ldap::start();
        let server = InProcess::start_with(tune).await;
        Self::with(slapd, server, uids, true).await
    }

    /// Set up an environment on a running directory and server; `seed_domain`: create the
    /// domain and the application (the first node of several).
    pub(crate) async fn with(slapd: Slapd, server: InProcess, uids: &[&str], seed: bool) -> Self {
        let admin = Admin::login(&server.base, &server.creds).await;
        let client_id = if seed {
            admin
                .post(
                    "/domains",
                    json!({"id": DOMAIN, "authenticationType": "managed",
                           "passwordValidation": "passthroughAuthentication"}),
                )
                .await;
            let app = admin
                .post(
                    "/applications",
                    json!({"displayName": "Payroll", "redirectUris": [REDIRECT], "clientType": "public"}),
                )
                .await;
            app["clientId"].as_str().unwrap().to_owned()
        } else {
            String::new()
        };
        let dir = scratch_dir("pta-e2e");
        let directory_config = dir.join("directory.toml");
        std::fs::write(
            &directory_config,
            format!(
                "url = \"{}\"\nbind_dn = \"uid=svc-sync,ou=people,{}\"\nbind_password_file = \"{}\"\nbase_dn = \"ou=people,{}\"\nuser_filter = \"{}\"\ntimeout_secs = 5\n",
                slapd.uri,
                slapd.base,
                slapd.password_file(SYNC_PW).display(),
                slapd.base,
                FILTER
            ),
        )
        .unwrap();
        let env = Self {
            slapd,
            server,
            admin,
            client_id,
            dir,
            directory_config,
        };
        env.add_users(uids).await;
        env
    }

    /// Add users to the directory and to Cutover.
    pub(crate) async fn add_users(&self, uids: &[&str]) {
        if uids.is_empty() {
            return;
        }
        pta_ldap::add_users(&self.slapd, uids);
        for uid in uids {
            self.admin
                .post(
                    "/users",
                    json!({"userPrincipalName": upn(uid), "displayName": uid, "accountEnabled": true,
                           "source": "synced", "immutableId": format!("anchor-{uid}")}),
                )
                .await;
        }
    }

    /// A fresh one-time registration token.
    pub(crate) async fn token(&self) -> String {
        let t = self
            .admin
            .post("/agents/registrationTokens", json!({}))
            .await;
        t["token"].as_str().unwrap().to_owned()
    }

    /// Register an agent named `host` against `server` (a base URL); returns its state dir.
    pub(crate) async fn register_at(&self, server: &str, host: &str) -> PathBuf {
        let state_dir = self.dir.join(host);
        let token = self.token().await;
        let reg = cutover_agent::register(RegisterOptions {
            server: server.to_owned(),
            token,
            ca_file: None,
            state_dir: state_dir.clone(),
            directory_config: self.directory_config.clone(),
            skip_directory_check: false,
            force: false,
            host: Some(host.to_owned()),
            concurrency: 16,
        })
        .await
        .expect("register an agent");
        assert_eq!(reg.state_dir, state_dir);
        state_dir
    }

    /// Register and start an agent that checks passwords against the directory.
    pub(crate) async fn agent(&self, host: &str) -> cutover_agent::AgentHandle {
        let dir = self.register_at(&self.server.base, host).await;
        cutover_agent::start(&dir).await.expect("start the agent")
    }

    /// Register and start an agent with another directory check (a slow or broken one).
    pub(crate) async fn agent_with<D: DirectoryCheck>(
        &self,
        host: &str,
        check: D,
    ) -> cutover_agent::AgentHandle {
        let dir = self.register_at(&self.server.base, host).await;
        cutover_agent::start_with(
            &dir,
            check,
            std::sync::Arc::new(cutover_agent::SystemMonoClock::default()),
        )
        .await
        .expect("start the agent")
    }

    /// Wait (bounded) until the server counts `n` healthy agents; returns the agent list.
    pub(crate) async fn wait_healthy(&self, n: usize) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let list = self.admin.get("/agents").await;
            if list["healthyAgents"].as_u64() == Some(n as u64) {
                return list;
            }
            assert!(
                Instant::now() < until,
                "{n} agents did not become healthy: {list}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One sign-in from a fresh browser: (status of the password post, its body or the
    /// redirect).
    pub(crate) async fn attempt(&self, uid: &str, password: &str) -> (u16, String) {
        self.attempt_with(&browser(), &self.server.base, uid, password)
            .await
    }

    pub(crate) async fn attempt_with(
        &self,
        http: &reqwest::Client,
        base: &str,
        uid: &str,
        password: &str,
    ) -> (u16, String) {
        let (_verifier, challenge) = pkce();
        let url = auth_url(base, &self.client_id, REDIRECT, &challenge, &[]);
        let res = attempt_sign_in(http, base, &url, &upn(uid), password, None).await;
        let status = res.status().as_u16();
        if status == 303 {
            (status, location(&res))
        } else {
            (status, res.text().await.unwrap_or_default())
        }
    }

    /// The newest sign-in record of a user.
    pub(crate) async fn last_sign_in(&self, uid: &str) -> Value {
        let page = self
            .admin
            .get(&format!(
                "/auditLogs/signIns?userPrincipalName={}&$top=1",
                upn(uid)
            ))
            .await;
        page["value"][0].clone()
    }
}

#[track_caller]
fn assert_signed_in(r: &(u16, String)) {
    assert_eq!(r.0, 303, "{}", r.1);
    assert!(
        r.1.starts_with(REDIRECT) && r.1.contains("code="),
        "{}",
        r.1
    );
}

#[track_caller]
fn assert_record(rec: &Value, failure: Option<&str>, agent: Option<uuid::Uuid>) {
    assert_eq!(
        rec["failureReason"].as_str(),
        failure,
        "failure reason: {rec}"
    );
    assert_eq!(
        rec["result"],
        if failure.is_some() {
            "failure"
        } else {
            "success"
        },
        "{rec}"
    );
    assert_eq!(
        rec["agentId"].as_str(),
        agent.map(|a| a.to_string()).as_deref(),
        "the record names the agent: {rec}"
    );
    assert_eq!(
        rec["authenticationMethods"],
        json!(["passthroughAuthentication"]),
        "{rec}"
    );
}

#[tokio::test]
async fn pta_every_result_code_end_to_end() {
    let users = [
        "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank",
    ];
    let env = PtaEnv::start(&users, |c| c.pass_through_deadline_ms = 1_000).await;
    let dn = |uid: &str| user_dn(&env.slapd, uid);

    // With no agent: a clear failure, no password checked anywhere.
    let r = env.attempt("alice", "pw-alice").await;
    assert_eq!(r.0, 503, "{}", r.1);
    assert!(r.1.contains("cannot be checked right now"), "{}", r.1);
    assert_record(
        &env.last_sign_in("alice").await,
        Some("noAgentAvailable"),
        None,
    );
    let list = env.admin.get("/agents").await;
    assert!(
        list["warning"]
            .as_str()
            .unwrap()
            .contains("No pass-through agent is registered"),
        "{list}"
    );

    let agent = env.agent("agent-1").await;
    let id = agent.agent_id();
    let list = env.wait_healthy(1).await;
    assert_eq!(list["value"][0]["host"], "agent-1", "{list}");
    assert!(
        list["warning"].as_str().unwrap().contains("Only 1"),
        "fewer than three healthy agents is a warning: {list}"
    );

    // On-prem states, each made for real.
    env.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: {}\n",
        dn("carol"),
        pta_ldap::chrono_like_now()
    ));
    env.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n",
        dn("dave")
    ));
    env.slapd.modify_relax(&format!(
        "dn: {}\nchangetype: modify\nreplace: pwdChangedTime\npwdChangedTime: 20000101000000Z\n",
        dn("erin")
    ));
    env.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n",
        dn("frank")
    ));
    // Disabled in Cutover, fine on-prem: the password is right, the account is not.
    let gina = env.admin.get(&format!("/users/{}", upn("gina"))).await;
    let (s, v) = env
        .admin
        .call(
            reqwest::Method::PATCH,
            &format!("/users/{}", gina["id"].as_str().unwrap()),
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    assert_signed_in(&env.attempt("alice", "pw-alice").await);
    assert_record(&env.last_sign_in("alice").await, None, Some(id));

    let cases = [
        ("bob", "wrong-password", "invalidPassword", 200),
        ("carol", "pw-carol", "onPremAccountLocked", 200),
        ("dave", "pw-dave", "onPremAccountDisabled", 200),
        ("erin", "pw-erin", "passwordExpired", 200),
        ("frank", "pw-frank", "passwordMustChange", 200),
        ("gina", "pw-gina", "accountDisabled", 200),
    ];
    for (uid, pw, reason, status) in cases {
        let r = env.attempt(uid, pw).await;
        assert_eq!(r.0, status, "{uid}: {}", r.1);
        let rec = env.last_sign_in(uid).await;
        assert_record(&rec, Some(reason), Some(id));
        assert_eq!(rec["lockoutDecision"], "allowed", "{rec}");
    }
    // A lock or a disabled account on-prem looks like a wrong password to the person.
    let r = env.attempt("carol", "pw-carol").await;
    assert!(r.1.contains("account or password is incorrect"), "{}", r.1);

    // The agent counted what it did (its heartbeat carries the same figures to the server).
    let stats = agent.stats();
    assert_eq!(stats.by_result.get("success"), Some(&2), "{stats:?}");
    assert_eq!(
        stats.by_result.get("invalidCredentials"),
        Some(&1),
        "{stats:?}"
    );

    // A wrong password never reaches the directory a second time once Cutover's lockout is
    // in the way; an empty password never reaches it at all.
    let before = pta_ldap::binds_as(&env.slapd, &dn("hank"));
    let r = env.attempt("hank", "").await;
    assert_eq!(r.0, 200);
    assert_eq!(pta_ldap::binds_as(&env.slapd, &dn("hank")), before);

    // The directory stops: the agent says so, the sign-in says so.
    let status = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slapd-stop.sh"))
        .arg(&env.slapd.dir)
        .arg("--keep")
        .status()
        .expect("run slapd-stop.sh");
    assert!(status.success());
    let r = env.attempt("alice", "pw-alice").await;
    assert_eq!(r.0, 503, "{}", r.1);
    assert_record(
        &env.last_sign_in("alice").await,
        Some("directoryUnavailable"),
        Some(id),
    );
    // Disabled by an administrator: no password goes to it.
    let (s, v) = env
        .admin
        .call(
            reqwest::Method::PATCH,
            &format!("/agents/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let r = env.attempt("alice", "pw-alice").await;
    assert_eq!(r.0, 503, "{}", r.1);
    assert_record(
        &env.last_sign_in("alice").await,
        Some("noAgentAvailable"),
        None,
    );
    agent.shutdown();
    agent.wait().await.expect("the agent drains and stops");
}

/// The directory locks first (ppolicy pwdMaxFailure 5 under Cutover's default threshold of
/// 10, which the policy view warns about): its lock answers count, so Cutover still locks at
/// its own threshold and the directory sees at most that many binds, however long the
/// guessing goes on.
#[tokio::test]
async fn pta_binds_stay_bounded_when_the_directory_locks_first() {
    let env = PtaEnv::start(&["ivy"], |_| {}).await;
    let _agent = env.agent("agent-1").await;
    env.wait_healthy(1).await;
    let dn = user_dn(&env.slapd, "ivy");
    let before = pta_ldap::binds_as(&env.slapd, &dn);
    let mut reasons = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..30 {
        let r = env.attempt("ivy", &format!("guess-{i}")).await;
        assert_eq!(r.0, 200, "{}", r.1);
        assert!(r.1.contains("account or password is incorrect"), "{}", r.1);
        let rec = env.last_sign_in("ivy").await;
        *reasons
            .entry(rec["failureReason"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let binds = pta_ldap::binds_as(&env.slapd, &dn) - before;
    println!("30 guesses: {reasons:?}, {binds} binds reached the directory");
    assert_eq!(reasons.get("invalidPassword"), Some(&5), "{reasons:?}");
    assert_eq!(reasons.get("onPremAccountLocked"), Some(&5), "{reasons:?}");
    assert_eq!(
        reasons.get("accountLockedSmartLockout"),
        Some(&20),
        "{reasons:?}"
    );
    assert_eq!(binds, 10, "at most Cutover's threshold of binds");
    let status = env
        .admin
        .get(&format!("/users/{}/lockout", upn("ivy")))
        .await;
    assert_eq!(status["status"]["locked"], true, "{status}");
}
