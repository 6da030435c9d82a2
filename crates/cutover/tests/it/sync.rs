//! `cutover sync` end to end: a real OpenLDAP (scripts/slapd-start.sh), a real `cutover serve`,
//! and the `cutover sync` binary as an operator runs it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::harness::{Admin, ServerProcess, attempt_sign_in, auth_url, pkce, redeem, scratch_dir};
use crate::ldap_connector::Slapd;

pub(crate) const USERS_FILTER: &str = "(&(objectClass=inetOrgPerson)(!(uid=svc-sync)))";
const PBKDF2_VALUE: &str =
    "{PBKDF2-SHA256}10000$EBESExQVFhcYGRobHB0eHw$emOHkewv1RqkDAo3NLUTwNJKu1ifHGaVgETo03gmtnw";
const PBKDF2_PASSWORD: &str = "Corr3ct horse";
/// The NT hash of "password".
const NT_HASH: &str = "8846F7EAEE8FB117AD06BDD830B7586C";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/cb";

pub(crate) struct SyncEnv {
    pub(crate) slapd: Slapd,
    pub(crate) server: ServerProcess,
    pub(crate) admin: Admin,
    pub(crate) dir: PathBuf,
    client_id: String,
    secret_file: PathBuf,
    pub(crate) rp_client_id: String,
    pub(crate) rp_secret: String,
}

pub(crate) fn slappasswd(args: &[&str]) -> String {
    let out = std::process::Command::new("slappasswd")
        .args(["-o", "module-path=/usr/lib/ldap"])
        .args(args)
        .output()
        .expect("run slappasswd (package slapd)");
    assert!(
        out.status.success(),
        "slappasswd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An access token for an application (client credentials).
pub(crate) async fn app_token(base: &str, client_id: &str, secret: &str) -> String {
    Admin::login(
        base,
        &json!({"clientId": client_id, "clientSecret": secret}),
    )
    .await
    .token
}

/// The JSON document at the start of a command's output (log lines may follow it).
fn first_json(out: &str) -> Value {
    let start = out.find('{').unwrap_or_else(|| panic!("no JSON in: {out}"));
    serde_json::Deserializer::from_str(&out[start..])
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("invalid JSON in: {out}"))
}

pub(crate) fn user_ldif(base: &str, uid: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: User {uid}\nsn: {uid}\nmail: {uid}@example.test\n{extra}"
    )
}

impl SyncEnv {
    pub(crate) async fn start() -> Self {
        Self::start_with(Slapd::start()).await
    }

    /// With a directory that does not offer RFC 4533 content synchronisation.
    async fn start_without_content_sync() -> Self {
        Self::start_with(Slapd::start_with(
            &[("SLAPD_NO_SYNCPROV", Path::new("1"))],
            false,
        ))
        .await
    }

    async fn start_with(slapd: Slapd) -> Self {
        let dir = scratch_dir("sync");
        let server = ServerProcess::start(&dir.join("server"), &[]);
        let admin = Admin::login(&server.base, &server.credentials()).await;
        admin
            .post(
                "/domains",
                json!({"id": "example.test", "authenticationType": "managed"}),
            )
            .await;
        let app = admin
            .post(
                "/applications",
                json!({"displayName": "sync", "clientType": "confidential", "grantTypes": ["client_credentials"],
                       "appRoles": ["Directory.Sync"]}),
            )
            .await;
        let rp = admin
            .post("/applications", json!({"displayName": "Payroll", "redirectUris": [REDIRECT], "clientType": "confidential"}))
            .await;
        let secret_file = dir.join("sync-secret");
        std::fs::write(&secret_file, app["clientSecret"].as_str().unwrap()).unwrap();
        SyncEnv {
            slapd,
            server,
            admin,
            dir,
            client_id: app["clientId"].as_str().unwrap().to_owned(),
            secret_file,
            rp_client_id: rp["clientId"].as_str().unwrap().to_owned(),
            rp_secret: rp["clientSecret"].as_str().unwrap().to_owned(),
        }
    }

    /// Write a sync.toml for server `name`: `top` goes among the top-level keys, `tables` at
    /// the end.
    pub(crate) fn config(&self, name: &str, staging: bool, top: &str, tables: &str) -> PathBuf {
        let pw = self.slapd.password_file("sync-pw");
        let base = &self.slapd.base;
        let text = format!(
            r#"name = "{name}"
staging = {staging}
{top}

[cutover]
url = "{url}"
client_id = "{client_id}"
client_secret_file = "{secret}"

[ldap]
url = "{ldap}"
bind_dn = "uid=svc-sync,ou=people,{base}"
bind_password_file = "{pw}"
page_size = 200

[ldap.users]
base_dn = "ou=people,{base}"
filter = "{USERS_FILTER}"

[ldap.groups]
base_dn = "ou=groups,{base}"
filter = "(|(objectClass=groupOfNames)(objectClass=posixGroup))"

{tables}
"#,
            url = self.server.base,
            client_id = self.client_id,
            secret = self.secret_file.display(),
            ldap = self.slapd.uri,
            pw = pw.display(),
        );
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Run `cutover sync --config CFG ARGS…`; returns (exit code, stdout + stderr).
    async fn sync(&self, cfg: &Path, args: &[&str]) -> (i32, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("sync")
            .arg("--config")
            .arg(cfg)
            .args(args)
            .env("CUTOVER_LOG", "warn")
            .output()
            .await
            .expect("run cutover sync");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    pub(crate) async fn run_ok(&self, cfg: &Path, args: &[&str]) -> String {
        let (code, out) = self.sync(cfg, args).await;
        assert_eq!(code, 0, "cutover sync {args:?} failed:\n{out}");
        out
    }

    pub(crate) async fn users(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut path = "/users?$top=500".to_owned();
        loop {
            let page = self.admin.get(&path).await;
            all.extend(page["value"].as_array().unwrap().iter().cloned());
            match page["@odata.nextLink"].as_str() {
                Some(next) => path = next.trim_start_matches("/api/v1").to_owned(),
                None => break,
            }
        }
        all
    }

    pub(crate) async fn user(&self, upn: &str) -> Option<Value> {
        let (status, v) = self
            .admin
            .call(reqwest::Method::GET, &format!("/users/{upn}"), None)
            .await;
        (status == 200).then_some(v)
    }

    async fn server_view(&self, name: &str) -> Value {
        self.admin.get(&format!("/sync/servers/{name}")).await
    }

    async fn signs_in(&self, upn: &str, password: &str) -> bool {
        signs_in(
            &self.server.base,
            &self.rp_client_id,
            &self.rp_secret,
            upn,
            password,
        )
        .await
    }
}

/// Sign in through the OIDC pages; true when the password was accepted and the code redeems
/// for tokens.
async fn signs_in(base: &str, client_id: &str, secret: &str, upn: &str, password: &str) -> bool {
    let http = crate::harness::browser();
    let (verifier, challenge) = pkce();
    let url = auth_url(base, client_id, REDIRECT, &challenge, &[]);
    let res = attempt_sign_in(&http, base, &url, upn, password, None).await;
    if res.status() != 303 {
        return false;
    }
    let location = crate::harness::location(&res);
    let Some(code) = crate::harness::query_param(&location, "code") else {
        return false;
    };
    let f = crate::harness::Fixture {
        user_id: String::new(),
        upn: upn.into(),
        password: password.into(),
        client_id: client_id.into(),
        client_secret: secret.into(),
        redirect_uri: REDIRECT.into(),
    };
    let (status, tokens) = redeem(base, &f, &code, &verifier).await;
    status == 200 && tokens["id_token"].is_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_imports_every_format_stages_exports_and_fails_over() {
    let env = SyncEnv::start().await;
    let base = env.slapd.base.clone();
    let ssha = slappasswd(&["-h", "{SSHA}", "-s", "alice-pw"]);
    let ssha512 = slappasswd(&[
        "-o",
        "module-load=pw-sha2",
        "-h",
        "{SSHA512}",
        "-s",
        "bob-pw",
    ]);
    let crypt = slappasswd(&["-h", "{CRYPT}", "-c", "$6$%.16s", "-s", "carol-pw"]);
    let argon2 = slappasswd(&[
        "-o",
        "module-load=argon2",
        "-h",
        "{ARGON2}",
        "-s",
        "erin-pw",
    ]);
    let ldif = [
        user_ldif(&base, "alice", &format!("userPassword: {ssha}\n")),
        user_ldif(&base, "bob", &format!("userPassword: {ssha512}\nmanager: uid=alice,ou=people,{base}\n")),
        user_ldif(&base, "carol", &format!("userPassword: {crypt}\n")),
        user_ldif(&base, "dave", &format!("objectClass: sambaSamAccount\nsambaNTPassword: {NT_HASH}\n")),
        user_ldif(&base, "erin", &format!("userPassword: {argon2}\n")),
        user_ldif(&base, "frank", &format!("userPassword: {PBKDF2_VALUE}\n")),
        user_ldif(&base, "mallory", "userPassword: {MD5}X03MO1qnZdYdgyfeuILPmQ==\n"),
        format!("dn: cn=staff,ou=groups,{base}\nobjectClass: groupOfNames\ncn: staff\nmember: uid=alice,ou=people,{base}\nmember: uid=bob,ou=people,{base}\n"),
        format!("dn: cn=devs,ou=groups,{base}\nobjectClass: posixGroup\ncn: devs\ngidNumber: 2001\nmemberUid: carol\nmemberUid: dave\n"),
    ]
    .join("\n");
    env.slapd.add(&ldif);

    let active = env.config("sync-a", false, "", "");
    let staging = env.config("sync-b", true, "", "");

    // The staging server shows what the active one will do, and exports nothing.
    let out = env
        .run_ok(&staging, &["pending-exports", "--output", "json"])
        .await;
    let pending = first_json(&out);
    assert_eq!(pending["summary"]["adds"], 9, "{pending}");
    assert_eq!(pending["summary"]["passwordChanges"], 6, "{pending}");
    let md5 = pending["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["rule"] == "passwordHashSync")
        .expect("md5 problem");
    assert!(
        md5["dn"].as_str().unwrap().starts_with("uid=mallory"),
        "{md5}"
    );
    let table = env.run_ok(&staging, &["pending-exports"]).await;
    assert!(
        table.contains("Add")
            && table.contains("alice@example.test")
            && table.contains("userPrincipalName"),
        "{table}"
    );
    env.run_ok(&staging, &["run", "--once"]).await;
    assert!(
        env.users().await.is_empty(),
        "a staging server must not export"
    );
    let b = env.server_view("sync-b").await;
    assert_eq!(b["role"], "staging");
    let (status, stored) = env
        .admin
        .call(
            reqwest::Method::GET,
            "/sync/servers/sync-b/pendingExports",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored["summary"], pending["summary"]);
    // The same, as an admin reads it with the CLI.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("admin")
            .arg("--data-dir")
            .arg(&env.server.data_dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let servers = cli(&["sync", "servers"]);
    assert!(
        servers.contains("sync-b") && servers.contains("staging"),
        "{servers}"
    );
    let table = cli(&["sync", "pending-exports", "sync-b"]);
    assert!(
        table.contains("alice@example.test") && table.contains("passwordHashSync"),
        "{table}"
    );

    // The active server exports exactly that.
    env.run_ok(&active, &["run", "--once"]).await;
    let a = env.server_view("sync-a").await;
    assert_eq!(a["role"], "active", "{a}");
    assert_eq!(
        a["lastRun"]["summary"]["adds"], pending["summary"]["adds"],
        "{a}"
    );
    assert_eq!(a["lastRun"]["exported"]["added"], 9, "{a}");
    assert_eq!(a["lastRun"]["exported"]["passwords"], 6, "{a}");
    assert_eq!(env.users().await.len(), 7);
    let bob = env.user("bob@example.test").await.unwrap();
    let alice = env.user("alice@example.test").await.unwrap();
    assert_eq!(bob["source"], "synced");
    assert_eq!(bob["managerId"], alice["id"], "{bob}");

    // Every supported format signs in through the OIDC flow with the on-prem password.
    for (upn, pw) in [
        ("alice@example.test", "alice-pw"),
        ("bob@example.test", "bob-pw"),
        ("carol@example.test", "carol-pw"),
        ("dave@example.test", "password"),
        ("erin@example.test", "erin-pw"),
        ("frank@example.test", PBKDF2_PASSWORD),
    ] {
        assert!(
            env.signs_in(upn, pw).await,
            "{upn} should sign in with the on-prem password"
        );
        assert!(
            !env.signs_in(upn, "wrong-password").await,
            "{upn} must refuse a wrong password"
        );
    }
    assert!(!env.signs_in("mallory@example.test", "anything").await);

    // Idempotent: a second run exports nothing new.
    env.run_ok(&active, &["run", "--once"]).await;
    let a = env.server_view("sync-a").await;
    assert_eq!(a["lastRun"]["kind"], "delta", "{a}");
    assert_eq!(a["lastRun"]["deltaMethod"], "contentSync", "{a}");
    let s = &a["lastRun"]["summary"];
    assert_eq!(
        (
            s["adds"].as_u64(),
            s["updates"].as_u64(),
            s["deletes"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{a}"
    );

    // Directory changes: rename, delete, membership and manager changes, a password change.
    let new_ssha = slappasswd(&["-h", "{SSHA}", "-s", "alice-new-pw"]);
    env.slapd.modify(&format!(
        "dn: uid=alice,ou=people,{base}\nchangetype: modify\nreplace: userPassword\nuserPassword: {new_ssha}\n\n\
         dn: uid=carol,ou=people,{base}\nchangetype: modify\nreplace: mail\nmail: caroline@example.test\n\n\
         dn: uid=bob,ou=people,{base}\nchangetype: modify\nreplace: manager\nmanager: uid=erin,ou=people,{base}\n\n\
         dn: cn=staff,ou=groups,{base}\nchangetype: modify\ndelete: member\nmember: uid=bob,ou=people,{base}\n"
    ));
    env.slapd.delete(&format!("uid=dave,ou=people,{base}"));
    // The staging server's view before the change…
    let out = env
        .run_ok(&staging, &["pending-exports", "--output", "json"])
        .await;
    let before = first_json(&out);
    // …equals what the active server then does.
    env.run_ok(&active, &["run", "--once"]).await;
    let a = env.server_view("sync-a").await;
    for k in ["adds", "updates", "deletes", "passwordChanges"] {
        assert_eq!(
            a["lastRun"]["summary"][k], before["summary"][k],
            "{k}: staging {before} vs active {a}"
        );
    }
    assert_eq!(a["lastRun"]["summary"]["deletes"], 1);
    assert_eq!(a["lastRun"]["deltaMethod"], "contentSync", "{a}");
    assert!(env.user("dave@example.test").await.is_none());
    assert!(env.user("caroline@example.test").await.is_some());
    let bob = env.user("bob@example.test").await.unwrap();
    let erin = env.user("erin@example.test").await.unwrap();
    assert_eq!(bob["managerId"], erin["id"]);
    assert!(env.signs_in("alice@example.test", "alice-new-pw").await);
    assert!(
        !env.signs_in("alice@example.test", "alice-pw").await,
        "the old password must stop working"
    );
    let out = env
        .run_ok(&staging, &["pending-exports", "--output", "json"])
        .await;
    let after = first_json(&out);
    assert_eq!(after["changes"].as_array().unwrap().len(), 0, "{after}");

    // A rename (modrdn): the anchor stays, so it is the same Cutover user, and the group and
    // manager references that the directory rewrote still resolve to it.
    let alice_id = env.user("alice@example.test").await.unwrap()["id"].clone();
    env.slapd.modify(&format!(
        "dn: uid=alice,ou=people,{base}\nchangetype: modrdn\nnewrdn: uid=alice.l\ndeleteoldrdn: 1\n"
    ));
    env.run_ok(&active, &["run", "--once"]).await;
    let a = env.server_view("sync-a").await;
    assert_eq!(a["lastRun"]["summary"]["adds"], 0, "{a}");
    assert_eq!(a["lastRun"]["summary"]["deletes"], 0, "{a}");
    assert_eq!(
        env.user("alice@example.test").await.unwrap()["id"],
        alice_id
    );
    let groups = env.admin.get("/groups").await;
    let staff = groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == "staff")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let members = env.admin.get(&format!("/groups/{staff}/members")).await;
    assert!(
        members["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == alice_id),
        "{members}"
    );

    // The password-hash cycle alone carries an on-prem password change.
    let bob_new = slappasswd(&[
        "-o",
        "module-load=pw-sha2",
        "-h",
        "{SSHA512}",
        "-s",
        "bob-new-pw",
    ]);
    env.slapd.modify(&format!(
        "dn: uid=bob,ou=people,{base}\nchangetype: modify\nreplace: userPassword\nuserPassword: {bob_new}\n"
    ));
    env.run_ok(&active, &["run", "--once", "--passwords"]).await;
    let a = env.server_view("sync-a").await;
    assert_eq!(a["lastRun"]["kind"], "passwords", "{a}");
    assert_eq!(a["lastRun"]["exported"]["passwords"], 1, "{a}");
    assert!(env.signs_in("bob@example.test", "bob-new-pw").await);
    assert!(!env.signs_in("bob@example.test", "bob-pw").await);

    // Failover: promote the staging server; the old active one's exports are refused.
    env.slapd.add(&user_ldif(&base, "grace", ""));
    let out = env.run_ok(&staging, &["promote"]).await;
    assert!(out.contains("active sync server"), "{out}");
    // A write still in flight from the old active server carries its old epoch: refused.
    let http = reqwest::Client::new();
    let token = app_token(
        &env.server.base,
        &env.client_id,
        &std::fs::read_to_string(&env.secret_file).unwrap(),
    )
    .await;
    let late = http
        .post(format!(
            "{}/sync/v1/servers/sync-a/exports",
            env.server.base
        ))
        .bearer_auth(&token)
        .json(
            &json!({"epoch": 1, "batchId": "late-1", "ops": [{"op": "deleteUser", "anchor": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 409);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["error"]["code"], "notLeaseHolder", "{body}");
    // Another sync application cannot act for a server it did not register.
    let other = env
        .admin
        .post(
            "/applications",
            json!({"displayName": "other sync", "grantTypes": ["client_credentials"], "appRoles": ["Directory.Sync"]}),
        )
        .await;
    let other_token = app_token(
        &env.server.base,
        other["clientId"].as_str().unwrap(),
        other["clientSecret"].as_str().unwrap(),
    )
    .await;
    let hijack = http
        .post(format!(
            "{}/sync/v1/servers/sync-b/promote",
            env.server.base
        ))
        .bearer_auth(&other_token)
        .json(&json!({"force": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(hijack.status(), 403);
    // Its next run finds it is no longer the holder and runs as staging: nothing exported.
    let out = env.run_ok(&active, &["run", "--once"]).await;
    assert!(out.contains("staging: nothing exported"), "{out}");
    assert!(
        env.user("grace@example.test").await.is_none(),
        "a demoted server must not write"
    );
    env.run_ok(&staging, &["run", "--once"]).await;
    assert!(env.user("grace@example.test").await.is_some());
    assert_eq!(env.server_view("sync-b").await["role"], "active");
    assert_eq!(env.server_view("sync-a").await["role"], "staging");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_threshold_at_499_500_501_and_the_override() {
    // (Also the delta path of a directory without content synchronisation.)
    let env = SyncEnv::start_without_content_sync().await;
    let base = env.slapd.base.clone();
    let n = 1500;
    let ldif: Vec<String> = (0..n)
        .map(|i| user_ldif(&base, &format!("u{i:05}"), ""))
        .collect();
    env.slapd.add(&ldif.join("\n"));
    let cfg = env.config("sync-a", false, "password_hash_sync = false", "");
    env.run_ok(&cfg, &["run", "--once"]).await;
    assert_eq!(env.users().await.len(), n);
    let mut next = 0;
    let mut delete = |count: usize| {
        let dns: Vec<String> = (next..next + count)
            .map(|i| format!("uid=u{i:05},ou=people,{base}"))
            .collect();
        next += count;
        dns
    };
    for count in [499, 500] {
        for dn in delete(count) {
            env.slapd.delete(&dn);
        }
        env.run_ok(&cfg, &["run", "--once"]).await;
        assert_eq!(
            env.server_view("sync-a").await["lastRun"]["exported"]["deleted"],
            count as u64
        );
    }
    let remaining = n - 999;
    assert_eq!(env.users().await.len(), remaining);
    for dn in delete(501) {
        env.slapd.delete(&dn);
    }
    let (code, out) = env.sync(&cfg, &["run", "--once"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--allow-deletes 501"), "{out}");
    assert_eq!(env.users().await.len(), remaining, "nothing may be deleted");
    let view = env.server_view("sync-a").await;
    assert_eq!(view["lastRun"]["outcome"], "deleteThresholdExceeded");
    assert!(view["alert"].as_str().unwrap().contains("501"), "{view}");
    let pending = env.admin.get("/sync/servers/sync-a/pendingExports").await;
    assert_eq!(pending["summary"]["deletes"], 501);
    // An override below the count does not open the gate; one at the count does, once.
    let (code, _) = env
        .sync(&cfg, &["run", "--once", "--allow-deletes", "500"])
        .await;
    assert_eq!(code, 2);
    env.run_ok(&cfg, &["run", "--once", "--allow-deletes", "501"])
        .await;
    assert_eq!(env.users().await.len(), remaining - 501);
    let audit = env
        .admin
        .get("/auditLogs/directoryAudits?action=syncExportDeleteThresholdOverridden")
        .await;
    assert!(
        !audit["value"].as_array().unwrap().is_empty(),
        "the override must be audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_export_resumes_without_loss_or_duplication() {
    let env = SyncEnv::start().await;
    let base = env.slapd.base.clone();
    let n = 4000;
    let ssha = slappasswd(&["-h", "{SSHA}", "-s", "pw"]);
    let ldif: Vec<String> = (0..n)
        .map(|i| {
            user_ldif(
                &base,
                &format!("k{i:05}"),
                &format!("userPassword: {ssha}\n"),
            )
        })
        .collect();
    env.slapd.add(&ldif.join("\n"));
    let cfg = env.config("sync-a", false, "", "");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["sync", "--config"])
        .arg(&cfg)
        .args(["run", "--once"])
        .env("CUTOVER_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait (bounded) until some batches have committed, then kill -9.
    let mut seen = 0;
    for _ in 0..600 {
        seen = env.users().await.len();
        if seen > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let after_kill = env.users().await.len();
    assert!(
        after_kill > 0,
        "the export should have started before the kill ({seen})"
    );
    env.run_ok(&cfg, &["run", "--once"]).await;
    let view = env.server_view("sync-a").await;
    assert_eq!(
        view["lastRun"]["kind"], "full",
        "the watermark must not have advanced: {view}"
    );
    let added = view["lastRun"]["exported"]["added"].as_u64().unwrap() as usize;
    assert_eq!(
        after_kill + added,
        n,
        "each user added exactly once ({after_kill} before the kill)"
    );
    assert_eq!(env.users().await.len(), n);
    // Equal to a clean run: nothing left to do, and passwords were all exported.
    env.run_ok(&cfg, &["run", "--once"]).await;
    let view = env.server_view("sync-a").await;
    let s = &view["lastRun"]["summary"];
    assert_eq!(
        (
            s["adds"].as_u64(),
            s["updates"].as_u64(),
            s["passwordChanges"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{view}"
    );
    assert!(env.signs_in("k00000@example.test", "pw").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_directory_data_gets_per_object_errors() {
    let env = SyncEnv::start().await;
    let base = env.slapd.base.clone();
    let huge = "x".repeat(5000);
    let ldif = [
        user_ldif(&base, "ok1", ""),
        user_ldif(&base, "huge", "").replace("cn: User huge", &format!("cn: {huge}")),
        user_ldif(&base, "dup1", "").replace("mail: dup1@example.test", "mail: same@example.test"),
        user_ldif(&base, "dup2", "").replace("mail: dup2@example.test", "mail: same@example.test"),
        user_ldif(
            &base,
            "loopa",
            &format!("manager: uid=loopb,ou=people,{base}\n"),
        ),
        user_ldif(
            &base,
            "loopb",
            &format!("manager: uid=loopa,ou=people,{base}\n"),
        ),
        user_ldif(&base, "foreign", "").replace(
            "mail: foreign@example.test",
            "mail: foreign@unregistered.example",
        ),
    ]
    .join("\n");
    env.slapd.add(&ldif);
    let cfg = env.config("sync-a", false, "", "");
    env.run_ok(&cfg, &["run", "--once"]).await;
    let view = env.server_view("sync-a").await;
    assert_eq!(view["lastRun"]["outcome"], "completedWithErrors", "{view}");
    let pending = env.admin.get("/sync/servers/sync-a/pendingExports").await;
    let codes: Vec<(String, String)> = pending["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["dn"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_owned(),
                p["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("uid=huge", "ruleError"),
        ("uid=dup2", "duplicateUpn"),
        ("uid=loopa", "managerLoop"),
        ("uid=loopb", "managerLoop"),
        ("uid=foreign", "unknownDomain"),
    ] {
        assert!(
            codes
                .iter()
                .any(|(d, c)| d == expected.0 && c == expected.1),
            "{expected:?} missing in {codes:?}"
        );
    }
    // Everything else synced: ok1, dup1, loopa, loopb (without managers).
    let upns: Vec<String> = env
        .users()
        .await
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .collect();
    for upn in [
        "ok1@example.test",
        "same@example.test",
        "loopa@example.test",
        "loopb@example.test",
    ] {
        assert!(upns.contains(&upn.to_owned()), "{upn} missing: {upns:?}");
    }
    assert_eq!(upns.len(), 4, "{upns:?}");
}

/// Every `syncExport` audit event (one per applied batch), oldest last.
async fn export_events(env: &SyncEnv) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = "/auditLogs/directoryAudits?action=syncExport&$top=500".to_owned();
    for _ in 0..100 {
        let page = env.admin.get(&path).await;
        all.extend(page["value"].as_array().unwrap().iter().cloned());
        match page["@odata.nextLink"].as_str() {
            Some(next) => path = next.trim_start_matches("/api/v1").to_owned(),
            None => break,
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_under_load_fences_the_running_old_server() {
    let env = SyncEnv::start().await;
    let base = env.slapd.base.clone();
    let first: Vec<String> = (0..300)
        .map(|i| user_ldif(&base, &format!("p{i:04}"), ""))
        .collect();
    env.slapd.add(&first.join("\n"));
    let active = env.config(
        "sync-a",
        false,
        "password_hash_sync = false",
        "[schedule]\ndelta_interval_secs = 1\npassword_interval_secs = 1",
    );
    let staging = env.config("sync-b", true, "password_hash_sync = false", "");

    // The old active server runs on its schedule (a delta every second) throughout.
    let log = env.dir.join("sync-a.log");
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["sync", "--config"])
        .arg(&active)
        .env("CUTOVER_LOG", "warn")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait (bounded) for its first full run to land.
    for _ in 0..300 {
        if env.users().await.len() == 300 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        env.users().await.len(),
        300,
        "the active daemon should have exported the first users"
    );

    // Load: the directory keeps changing while the staging server is promoted.
    let mut promoted_epoch = 0;
    for round in 0..20 {
        let batch: Vec<String> = (0..10)
            .map(|i| user_ldif(&base, &format!("q{round:02}{i}"), ""))
            .collect();
        env.slapd.add(&batch.join("\n"));
        if round == 10 {
            let out = env.run_ok(&staging, &["promote"]).await;
            let epoch = out
                .split("(epoch ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .unwrap();
            promoted_epoch = epoch.parse::<u64>().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    // Let the old server try a few more times, then stop it and bring the new one up to date.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    env.run_ok(&staging, &["run", "--once"]).await;
    assert_eq!(
        env.users().await.len(),
        500,
        "every directory user is in Cutover"
    );

    let events = export_events(&env).await;
    for e in &events {
        if e["targetId"] == "sync-a" {
            assert!(
                e["after"]["epoch"].as_u64().unwrap() < promoted_epoch,
                "the demoted server wrote at epoch {promoted_epoch} or later: {e}"
            );
        }
    }
    let added: u64 = events
        .iter()
        .map(|e| e["after"]["added"].as_u64().unwrap())
        .sum();
    assert_eq!(
        added, 500,
        "each user was added exactly once across both servers"
    );
    let view = env.server_view("sync-a").await;
    assert_eq!(view["role"], "staging", "{view}");
}

/// The optional cloud expiry of synced passwords, by stepping the server's clock; the export
/// goes straight through the sync API (as `cutover sync` sends it).
#[tokio::test(flavor = "multi_thread")]
async fn synced_password_expiry_by_stepping_the_clock() {
    const DAY: i64 = 24 * 60 * 60;
    let srv =
        crate::harness::InProcess::start_with(|c| c.synced_password_expiry_days = Some(90)).await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    admin
        .post(
            "/domains",
            json!({"id": "example.test", "authenticationType": "managed"}),
        )
        .await;
    let sync_app = admin
        .post(
            "/applications",
            json!({"displayName": "sync", "grantTypes": ["client_credentials"], "appRoles": ["Directory.Sync"]}),
        )
        .await;
    let rp = admin
        .post(
            "/applications",
            json!({"displayName": "Payroll", "redirectUris": [REDIRECT]}),
        )
        .await;
    let http = reqwest::Client::new();
    let bearer = app_token(
        &srv.base,
        sync_app["clientId"].as_str().unwrap(),
        sync_app["clientSecret"].as_str().unwrap(),
    )
    .await;
    let reg: Value = http
        .put(format!("{}/sync/v1/servers/s1", srv.base))
        .bearer_auth(&bearer)
        .json(&json!({"host": "h", "version": "t", "staging": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let epoch = reg["lease"]["epoch"].as_u64().unwrap();
    let hash = cutover_pwhash::wrap(
        &cutover_pwhash::parse_nt_hash(NT_HASH.as_bytes()).unwrap(),
        [7; 10],
    );
    let res = http
        .post(format!("{}/sync/v1/servers/s1/exports", srv.base))
        .bearer_auth(&bearer)
        .json(&json!({"epoch": epoch, "batchId": "b1", "ops": [
            {"op": "upsertUser", "anchor": "a1", "userPrincipalName": "nt@example.test", "displayName": "NT",
             "mail": null, "department": null, "accountEnabled": true},
            {"op": "setPasswordHash", "anchor": "a1", "hash": hash},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let rp_id = rp["clientId"].as_str().unwrap();
    let rp_secret = rp["clientSecret"].as_str().unwrap();
    assert!(signs_in(&srv.base, rp_id, rp_secret, "nt@example.test", "password").await);
    srv.clock.advance_secs(90 * DAY - 60);
    assert!(
        signs_in(&srv.base, rp_id, rp_secret, "nt@example.test", "password").await,
        "day 89"
    );
    srv.clock.advance_secs(60);
    assert!(
        !signs_in(&srv.base, rp_id, rp_secret, "nt@example.test", "password").await,
        "day 90: expired"
    );
    // (90 days on, the admin's token has long expired.)
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let log = admin.get("/auditLogs/signIns?$top=10").await;
    let last = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userPrincipalName"] == "nt@example.test")
        .unwrap_or_else(|| panic!("no sign-in of nt@example.test: {log}"));
    assert_eq!(last["failureReason"], "passwordExpired", "{last}");
    assert_eq!(
        last["authenticationMethods"][0], "passwordHashSync",
        "{last}"
    );
}

/// A run that cannot read the directory fails loudly, exports nothing, and the admin sees why.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_cannot_reach_the_directory_is_reported_as_failed() {
    let env = SyncEnv::start().await;
    let cfg = env.config("sync-a", false, "", "");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&env.slapd.uri, &format!("ldap://127.0.0.1:{port}"));
    std::fs::write(&cfg, text).unwrap();
    let (code, out) = env.sync(&cfg, &["run", "--once"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("directory") && out.contains(&port.to_string()),
        "{out}"
    );
    let view = env.server_view("sync-a").await;
    assert_eq!(view["lastRun"]["outcome"], "failed", "{view}");
    assert!(
        view["lastRun"]["message"]
            .as_str()
            .unwrap()
            .contains(&port.to_string()),
        "{view}"
    );
    assert!(env.users().await.is_empty());
}
