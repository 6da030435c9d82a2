//! The LDAP connector (`cutover-ldap`) against a real OpenLDAP: each test starts its own
//! slapd with `scripts/slapd-start.sh` on a free port in a temp folder and stops it on drop.
//! A slapd that cannot be started fails the test (install it with scripts/install-deps.sh).

use std::collections::BTreeSet;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cutover_ldap::{
    Directory, GeneralizedTime, LdapConfig, LdapEntry, LdapError, ObjectSet, ResultCode,
    SearchScope, SearchStats,
};

const SYNC_PW: &str = "sync-pw";
/// Every test user is an inetOrgPerson; the service account is left out of the user scope.
const USERS_FILTER: &str = "(&(objectClass=inetOrgPerson)(!(uid=svc-sync)))";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// A throwaway slapd, stopped (and its folder deleted) on drop; kept when the test failed.
pub(crate) struct Slapd {
    pub(crate) dir: PathBuf,
    pub(crate) uri: String,
    ldaps_uri: Option<String>,
    pub(crate) base: String,
    admin_dn: String,
    admin_pw: String,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let keep = std::thread::panicking();
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/slapd-stop.sh"))
            .arg(&self.dir);
        if keep {
            cmd.arg("--keep");
            eprintln!(
                "slapd state kept for inspection in {} (log: slapd.log)",
                self.dir.display()
            );
        }
        let _ = cmd.status();
    }
}

impl Slapd {
    pub(crate) fn start() -> Self {
        Self::start_with(&[], false)
    }

    /// Start with extra environment for slapd-start.sh; `ldaps` also opens an ldaps:// port.
    pub(crate) fn start_with(env: &[(&str, &Path)], ldaps: bool) -> Self {
        let mut last = String::new();
        for _attempt in 0..5 {
            let dir = std::env::temp_dir()
                .join(format!("cutover-slapd-{}", uuid::Uuid::new_v4().simple()));
            let mut cmd = Command::new("bash");
            cmd.arg(repo_root().join("scripts/slapd-start.sh"))
                .arg(&dir)
                .arg(free_port().to_string())
                .env("SLAPD_START_TIMEOUT", "30");
            for (k, v) in env {
                cmd.env(k, v);
            }
            if ldaps {
                cmd.env("SLAPD_LDAPS_PORT", free_port().to_string());
            }
            let out = cmd
                .output()
                .expect("run scripts/slapd-start.sh (bash must be installed)");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let var = |name: &str| {
                    stdout
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                        .map(str::to_owned)
                };
                let need = |name: &str| {
                    var(name)
                        .unwrap_or_else(|| panic!("slapd-start.sh printed no {name}: {stdout}"))
                };
                return Self {
                    uri: need("LDAP_URI"),
                    ldaps_uri: var("LDAPS_URI"),
                    base: need("LDAP_BASE"),
                    admin_dn: need("LDAP_ADMIN_DN"),
                    admin_pw: need("LDAP_ADMIN_PW"),
                    dir: PathBuf::from(need("SLAPD_DIR")),
                };
            }
            let _ = Command::new("bash")
                .arg(repo_root().join("scripts/slapd-stop.sh"))
                .arg(&dir)
                .status();
            last = stderr;
            // Another process took the free port between our probe and slapd's bind: retry.
            if !last.contains("already in use") {
                break;
            }
        }
        panic!(
            "scripts/slapd-start.sh could not start slapd (needs the slapd and ldap-utils packages: scripts/install-deps.sh):\n{last}"
        );
    }

    fn ldap_tool(&self, tool: &str, args: &[&str], input: &str) {
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.uri,
                "-D",
                &self.admin_dn,
                "-w",
                &self.admin_pw,
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {tool} (ldap-utils): {e}"));
        // Feed stdin from another thread: the tool's output must be drained meanwhile, or a
        // large LDIF fills the pipe and both sides wait forever.
        let mut stdin = child.stdin.take().unwrap();
        let feed = input.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(feed.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "{tool} failed: {}\ninput:\n{input}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub(crate) fn add(&self, ldif: &str) {
        self.ldap_tool("ldapadd", &[], ldif);
    }

    pub(crate) fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", &[], ldif);
    }

    pub(crate) fn delete(&self, dn: &str) {
        self.ldap_tool("ldapdelete", &[dn], "");
    }

    /// ldapmodify as the rootdn with the relax control (`-e relax`): sets operational
    /// attributes the directory otherwise refuses (e.g. ppolicy's pwdChangedTime).
    pub(crate) fn modify_relax(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", &["-e", "relax"], ldif);
    }

    fn user_dn(&self, uid: &str) -> String {
        format!("uid={uid},ou=people,{}", self.base)
    }

    /// Add inetOrgPerson users `uid`s under ou=people.
    fn add_users(&self, uids: &[&str]) {
        let ldif: Vec<String> = uids
            .iter()
            .map(|uid| {
                format!(
                    "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: User {uid}\nsn: {uid}\nmail: {uid}@example.test\n",
                    self.user_dn(uid)
                )
            })
            .collect();
        self.add(&ldif.join("\n"));
    }

    /// A password file for svc-sync holding `password` (with the usual trailing newline).
    pub(crate) fn password_file(&self, password: &str) -> PathBuf {
        let path = self
            .dir
            .join(format!("pw-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, format!("{password}\n")).unwrap();
        path
    }

    /// The connector's configuration: bind as svc-sync, users without the service account.
    fn config(&self, page_size: u32) -> LdapConfig {
        let mut users = SearchScope::new(format!("ou=people,{}", self.base));
        users.filter = USERS_FILTER.to_owned();
        let mut groups = SearchScope::new(format!("ou=groups,{}", self.base));
        groups.filter = "(objectClass=groupOfNames)".to_owned();
        let mut cfg = LdapConfig::new(
            &self.uri,
            format!("uid=svc-sync,ou=people,{}", self.base),
            self.password_file(SYNC_PW),
            users,
            groups,
        );
        cfg.page_size = page_size;
        cfg.timeout_secs = 10;
        cfg
    }
}

/// Run a search and collect what it hands over.
async fn collect(
    dir: &mut Directory,
    which: ObjectSet,
    attributes: &[&str],
    since: Option<&GeneralizedTime>,
) -> (Vec<LdapEntry>, SearchStats) {
    let mut entries = Vec::new();
    let stats = dir
        .search(which, attributes, since, |e| {
            entries.push(e);
            ControlFlow::Continue(())
        })
        .await
        .expect("search");
    (entries, stats)
}

fn uids(entries: &[LdapEntry]) -> BTreeSet<String> {
    entries
        .iter()
        .map(|e| e.first_str("uid").expect("uid").to_owned())
        .collect()
}

#[tokio::test]
async fn ldap_full_paged_search_returns_anchors_and_raw_bytes() {
    let slapd = Slapd::start();
    slapd.add_users(&["u1", "u2", "u4", "u5"]);
    // Raw bytes given to slapd as base64 LDIF: non-UTF-8 (0xff 0xfe) in jpegPhoto and
    // userPassword (octet strings; description is a Directory String, which slapd only takes
    // as UTF-8) and non-ASCII UTF-8 in description.
    slapd.add(&format!(
        "dn: {}\nobjectClass: inetOrgPerson\nuid: u3\ncn: User u3\nsn: u3\n\
         jpegPhoto:: //4=\nuserPassword:: //4=\ndescription:: R3LDvMOfZQ==\n",
        slapd.user_dn("u3")
    ));
    slapd.add(&format!(
        "dn: cn=staff,ou=groups,{b}\nobjectClass: groupOfNames\ncn: staff\nmember: {u1}\nmember: {u2}\n\n\
         dn: cn=admins,ou=groups,{b}\nobjectClass: groupOfNames\ncn: admins\nmember: {u1}\n",
        b = slapd.base,
        u1 = slapd.user_dn("u1"),
        u2 = slapd.user_dn("u2"),
    ));

    let mut dir = Directory::connect(&slapd.config(2)).await.expect("connect");
    let (users, stats) = collect(
        &mut dir,
        ObjectSet::Users,
        &[
            "uid",
            "cn",
            "description",
            "jpegPhoto",
            "userPassword",
            "memberOf",
        ],
        None,
    )
    .await;
    assert_eq!(
        uids(&users),
        ["u1", "u2", "u3", "u4", "u5"].map(String::from).into()
    );
    assert_eq!(stats.entries, 5);
    assert_eq!(stats.pages, 3, "5 entries at page_size 2: {stats:?}");
    assert!(stats.skipped.is_empty(), "{stats:?}");
    assert!(!stats.stopped_early);

    for u in &users {
        // entryUUID: 8-4-4-4-12 hex.
        assert_eq!(u.anchor.len(), 36, "{u:?}");
        assert_eq!(u.first_str("entryUUID"), Some(u.anchor.as_str()));
        assert!(u.modify_timestamp.is_some(), "{u:?}");
        assert!(u.attributes.contains_key("modifytimestamp"), "{u:?}");
        // Only what was asked for (plus anchor and modifyTimestamp), names lower-cased.
        for name in u.attributes.keys() {
            assert!(
                [
                    "uid",
                    "cn",
                    "description",
                    "jpegphoto",
                    "userpassword",
                    "memberof",
                    "entryuuid",
                    "modifytimestamp"
                ]
                .contains(&name.as_str()),
                "unexpected attribute {name} in {u:?}"
            );
        }
        assert!(u.values("mail").is_empty());
    }
    let anchors: BTreeSet<_> = users.iter().map(|u| u.anchor.clone()).collect();
    assert_eq!(anchors.len(), 5, "anchors are distinct");
    let max = users
        .iter()
        .filter_map(|u| u.modify_timestamp.clone())
        .max();
    assert_eq!(stats.max_modify_timestamp, max);

    let u3 = users.iter().find(|u| u.dn == slapd.user_dn("u3")).unwrap();
    assert_eq!(u3.values("jpegPhoto"), [vec![0xff, 0xfe]]);
    // svc-sync may read password hashes (here: raw bytes too).
    assert_eq!(u3.values("userPassword"), [vec![0xff, 0xfe]]);
    assert_eq!(u3.values("description"), ["Grüße".as_bytes().to_vec()]);
    assert_eq!(u3.values("cn"), [b"User u3".to_vec()]);
    // memberOf is operational (memberof overlay): it comes back because it was named.
    let u1 = users.iter().find(|u| u.dn == slapd.user_dn("u1")).unwrap();
    let member_of: BTreeSet<_> = u1
        .values("memberOf")
        .iter()
        .map(|v| String::from_utf8(v.clone()).unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(
        member_of,
        [
            format!("cn=admins,ou=groups,{}", slapd.base),
            format!("cn=staff,ou=groups,{}", slapd.base)
        ]
        .into()
    );

    let (groups, gstats) = collect(&mut dir, ObjectSet::Groups, &["cn", "member"], None).await;
    assert_eq!(gstats.entries, 2);
    assert_eq!(gstats.pages, 1);
    let staff = groups
        .iter()
        .find(|g| g.first_str("cn") == Some("staff"))
        .unwrap();
    assert_eq!(staff.values("member").len(), 2);
    dir.unbind().await;
}

#[tokio::test]
async fn ldap_delta_search_returns_entries_changed_since_the_watermark() {
    let slapd = Slapd::start();
    slapd.add_users(&["d1", "d2", "d3"]);
    let mut dir = Directory::connect(&slapd.config(500))
        .await
        .expect("connect");
    let (all, full) = collect(&mut dir, ObjectSet::Users, &["uid"], None).await;
    assert_eq!(all.len(), 3);
    let watermark = full.max_modify_timestamp.clone().expect("watermark");

    // modifyTimestamp has one-second resolution: change d2 in a later second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: cn\ncn: Changed d2\n",
        slapd.user_dn("d2")
    ));

    let (changed, delta) =
        collect(&mut dir, ObjectSet::Users, &["uid", "cn"], Some(&watermark)).await;
    assert!(uids(&changed).contains("d2"), "{changed:?}");
    let d2 = changed
        .iter()
        .find(|e| e.first_str("uid") == Some("d2"))
        .unwrap();
    assert_eq!(d2.first_str("cn"), Some("Changed d2"));
    let d2_time = d2.modify_timestamp.clone().unwrap();
    assert!(d2_time > watermark, "{d2_time} > {watermark}");
    assert_eq!(delta.max_modify_timestamp.as_ref(), Some(&d2_time));

    // Since d2's change: only d2 (the others were last changed before).
    let (only, stats) = collect(&mut dir, ObjectSet::Users, &["uid"], Some(&d2_time)).await;
    assert_eq!(uids(&only), ["d2".to_owned()].into(), "{only:?}");
    assert_eq!(stats.entries, 1);

    let future = GeneralizedTime::parse("29991231235959Z").unwrap();
    let (none, stats) = collect(&mut dir, ObjectSet::Users, &["uid"], Some(&future)).await;
    assert!(none.is_empty());
    assert_eq!(
        (stats.entries, stats.pages, stats.max_modify_timestamp),
        (0, 1, None)
    );
    dir.unbind().await;
}

#[tokio::test]
async fn ldap_anchors_list_everything_in_scope_and_show_deletions() {
    let slapd = Slapd::start();
    slapd.add_users(&["a1", "a2", "a3", "a4"]);
    let mut dir = Directory::connect(&slapd.config(3)).await.expect("connect");
    let (users, _) = collect(&mut dir, ObjectSet::Users, &["uid"], None).await;
    let by_uid = |uid: &str| {
        users
            .iter()
            .find(|u| u.first_str("uid") == Some(uid))
            .unwrap()
            .anchor
            .clone()
    };
    let before = dir.anchors(ObjectSet::Users).await.expect("anchors");
    assert_eq!(before, users.iter().map(|u| u.anchor.clone()).collect());
    assert_eq!(before.len(), 4);

    slapd.delete(&slapd.user_dn("a3"));
    let after = dir.anchors(ObjectSet::Users).await.expect("anchors");
    let gone: Vec<_> = before.difference(&after).cloned().collect();
    assert_eq!(gone, [by_uid("a3")]);
    assert!(dir.anchors(ObjectSet::Groups).await.unwrap().is_empty());
    dir.unbind().await;
}

#[tokio::test]
async fn ldap_callback_can_stop_a_search_and_the_connection_stays_usable() {
    let slapd = Slapd::start();
    slapd.add_users(&["s1", "s2", "s3", "s4", "s5"]);
    let mut dir = Directory::connect(&slapd.config(2)).await.expect("connect");
    let mut seen = 0;
    let stats = dir
        .search(ObjectSet::Users, &["uid"], None, |_| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .expect("search");
    assert_eq!((seen, stats.entries, stats.pages), (3, 3, 2), "{stats:?}");
    assert!(stats.stopped_early);
    assert_eq!(dir.anchors(ObjectSet::Users).await.unwrap().len(), 5);
    dir.unbind().await;
}

#[tokio::test]
async fn ldap_wrong_password_is_a_bind_error_with_code_49() {
    let slapd = Slapd::start();
    let mut cfg = slapd.config(500);
    let file = slapd.password_file("not-the-password");
    cfg.bind_password_file = Some(file.clone());
    let err = Directory::connect(&cfg).await.expect_err("bind must fail");
    let msg = err.to_string();
    assert!(matches!(err, LdapError::Bind { .. }), "{msg}");
    assert_eq!(err.result_code(), Some(ResultCode::INVALID_CREDENTIALS));
    assert!(msg.contains("invalidCredentials (49)"), "{msg}");
    assert!(msg.contains("uid=svc-sync"), "{msg}");
    assert!(
        msg.contains(&format!(
            "check bind_dn and the password in bind_password_file {}",
            file.display()
        )),
        "{msg}"
    );
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert!(!format!("{err:?}").contains("not-the-password"));
}

#[tokio::test]
async fn ldap_missing_base_dn_is_a_no_such_object_error() {
    let slapd = Slapd::start();
    let mut cfg = slapd.config(500);
    cfg.users.base_dn = format!("ou=nobody,{}", slapd.base);
    let mut dir = Directory::connect(&cfg).await.expect("connect");
    let err = dir
        .search(ObjectSet::Users, &["uid"], None, |_| {
            ControlFlow::Continue(())
        })
        .await
        .expect_err("no such base");
    let msg = err.to_string();
    assert_eq!(err.result_code(), Some(ResultCode::NO_SUCH_OBJECT), "{msg}");
    assert!(
        msg.contains(&format!("under ou=nobody,{}", slapd.base)),
        "{msg}"
    );
    assert!(msg.contains("noSuchObject (32)"), "{msg}");
    assert!(msg.contains("users.base_dn does not exist"), "{msg}");
    assert!(
        msg.contains(&format!("closest existing entry is {}", slapd.base)),
        "{msg}"
    );
    // The groups scope still works on the same connection.
    assert!(dir.anchors(ObjectSet::Groups).await.unwrap().is_empty());
}

#[tokio::test]
async fn ldap_closed_port_is_a_connect_error() {
    let port = free_port();
    let url = format!("ldap://127.0.0.1:{port}");
    let pw = std::env::temp_dir().join(format!("cutover-ldap-pw-{}", uuid::Uuid::new_v4()));
    std::fs::write(&pw, "x\n").unwrap();
    let cfg = LdapConfig::new(
        &url,
        "cn=svc,dc=example,dc=test",
        &pw,
        SearchScope::new("ou=people,dc=example,dc=test"),
        SearchScope::new("ou=groups,dc=example,dc=test"),
    );
    let err = Directory::connect(&cfg).await.expect_err("nothing listens");
    std::fs::remove_file(&pw).unwrap();
    let msg = err.to_string();
    assert!(matches!(err, LdapError::Connect { .. }), "{msg}");
    assert!(msg.contains(&format!("cannot connect to {url}")), "{msg}");
    assert!(
        msg.contains("is the directory running, and is `url` right?"),
        "{msg}"
    );
}

#[tokio::test]
async fn ldap_tls_problems_are_explained() {
    // A plain slapd: ldaps:// to its port, and StartTLS it does not offer.
    let plain = Slapd::start();
    let mut cfg = plain.config(500);
    cfg.url = plain.uri.replace("ldap://", "ldaps://");
    let msg = Directory::connect(&cfg).await.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("TLS with {} failed", cfg.url)),
        "{msg}"
    );
    assert!(msg.contains("speaking TLS on this port"), "{msg}");

    let mut cfg = plain.config(500);
    cfg.starttls = true;
    let err = Directory::connect(&cfg).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LdapError::Tls { .. }), "{msg}");
    assert!(msg.contains("refused StartTLS"), "{msg}");
    drop(plain);

    // A slapd with a certificate for 127.0.0.1, trusted through ca_file.
    let certs = std::env::temp_dir().join(format!("cutover-ldap-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&certs).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["ldap.example.test".to_owned()]).unwrap();
    let other_ca = certs.join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).unwrap();
    let tls = Slapd::start_with(
        &[
            ("SLAPD_TLS_CERT", cert.as_path()),
            ("SLAPD_TLS_KEY", key.as_path()),
        ],
        true,
    );

    let mut cfg = tls.config(2);
    cfg.starttls = true;
    cfg.ca_file = Some(cert.clone());
    tls.add_users(&["t1", "t2", "t3"]);
    let mut dir = Directory::connect(&cfg).await.expect("StartTLS + bind");
    let (users, stats) = collect(&mut dir, ObjectSet::Users, &["uid"], None).await;
    assert_eq!((users.len(), stats.pages), (3, 2));
    dir.unbind().await;

    let mut cfg = tls.config(500);
    cfg.url = tls.ldaps_uri.clone().expect("LDAPS_URI");
    cfg.ca_file = Some(cert.clone());
    let mut dir = Directory::connect(&cfg).await.expect("ldaps + bind");
    assert_eq!(dir.anchors(ObjectSet::Users).await.unwrap().len(), 3);
    dir.unbind().await;

    // A CA that did not issue the server's certificate.
    cfg.ca_file = Some(other_ca);
    let msg = Directory::connect(&cfg).await.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("TLS with {} failed", cfg.url)),
        "{msg}"
    );
    assert!(
        msg.contains("set ca_file to the PEM file of the CA"),
        "{msg}"
    );
    std::fs::remove_dir_all(&certs).unwrap();
}

/// RFC 4533 refreshOnly against slapd's syncprov: the first request returns everything and a
/// cookie; with the cookie, only what changed since (adds and modifications with their
/// attributes), and the anchors match `entryUUID`.
#[tokio::test]
async fn ldap_content_sync_reports_changes_since_the_cookie() {
    use cutover_ldap::SyncEvent;
    let slapd = Slapd::start();
    slapd.add_users(&["c1", "c2", "c3"]);
    let mut dir = Directory::connect(&slapd.config(100))
        .await
        .expect("connect");
    assert!(dir.offers_content_sync().await.expect("root DSE"));
    let (events, first) = content_sync_events(&mut dir, None).await;
    assert_eq!(first.changed, 3, "{events:?}");
    let cookie = first.cookie.clone().expect("a cookie");
    let (all, _) = collect(&mut dir, ObjectSet::Users, &["uid"], None).await;
    let anchors: BTreeSet<String> = all.iter().map(|e| e.anchor.clone()).collect();
    for e in &events {
        let SyncEvent::Changed(entry) = e else {
            panic!("{e:?}")
        };
        assert!(
            anchors.contains(&entry.anchor),
            "anchor {} is the entryUUID",
            entry.anchor
        );
    }

    // Nothing changed: nothing reported.
    let (events, unchanged) = content_sync_events(&mut dir, Some(cookie.clone())).await;
    assert_eq!(unchanged.changed, 0, "{events:?}");

    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: cn\ncn: Renamed\n",
        slapd.user_dn("c2")
    ));
    slapd.add_users(&["c4"]);
    let (events, next) =
        content_sync_events(&mut dir, Some(unchanged.cookie.clone().unwrap_or(cookie))).await;
    let changed: BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Changed(entry) => entry.first_str("uid").map(str::to_owned),
            SyncEvent::Deleted(_) => None,
        })
        .collect();
    assert_eq!(
        changed,
        ["c2".to_owned(), "c4".to_owned()].into(),
        "{events:?}"
    );
    let c2 = events
        .iter()
        .find_map(|e| match e {
            SyncEvent::Changed(entry) if entry.first_str("uid") == Some("c2") => {
                Some(entry.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(c2.first_str("cn"), Some("Renamed"));
    assert!(next.cookie.is_some());
}

async fn content_sync_events(
    dir: &mut Directory,
    cookie: Option<Vec<u8>>,
) -> (
    Vec<cutover_ldap::SyncEvent>,
    cutover_ldap::ContentSyncOutcome,
) {
    let mut events = Vec::new();
    let out = dir
        .content_sync(ObjectSet::Users, &["uid", "cn"], cookie.as_deref(), |e| {
            events.push(e);
            ControlFlow::Continue(())
        })
        .await
        .expect("content sync");
    (events, out)
}
