//! Pass-through password checks (`cutover_ldap::PasswordChecker`) against a real OpenLDAP with
//! the ppolicy overlay (`SLAPD_PPOLICY=1 scripts/slapd-start.sh`): every outcome is produced by
//! putting a real account into that state. A slapd that cannot be started fails the test.
//!
//! How each state is made (see also the header of scripts/slapd-start.sh):
//! - locked: five binds with a wrong password (pwdMaxFailure 5), or the rootdn sets
//!   pwdAccountLockedTime to now;
//! - disabled: the rootdn sets pwdAccountLockedTime to 000001010000Z;
//! - expired: pwdChangedTime set to 2000 with the relax control (older than pwdMaxAge);
//! - must change: pwdReset TRUE.

use std::path::Path;

use base64::Engine as _;
use std::process::Command;
use std::time::{Duration, Instant};

use cutover_ldap::{
    BindOutcome, CheckReport, DirectoryLockoutPolicy, PasswordCheckConfig, PasswordChecker,
};

use crate::ldap_connector::Slapd;

pub(crate) const SYNC_PW: &str = "sync-pw";
pub(crate) const FILTER: &str = "(&(objectClass=inetOrgPerson)(mail={upn}))";

pub(crate) fn start() -> Slapd {
    Slapd::start_with(&[("SLAPD_PPOLICY", Path::new("1"))], false)
}

pub(crate) fn user_dn(slapd: &Slapd, uid: &str) -> String {
    format!("uid={uid},ou=people,{}", slapd.base)
}

pub(crate) fn upn(uid: &str) -> String {
    format!("{uid}@example.test")
}

pub(crate) fn password(uid: &str) -> String {
    format!("pw-{uid}")
}

/// inetOrgPerson users with mail uid@example.test and password pw-uid (stored as given).
pub(crate) fn add_users(slapd: &Slapd, uids: &[&str]) {
    let ldif: Vec<String> = uids
        .iter()
        .map(|uid| {
            format!(
                "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {}\nuserPassword: {}\n",
                user_dn(slapd, uid),
                upn(uid),
                password(uid)
            )
        })
        .collect();
    slapd.add(&ldif.join("\n"));
}

pub(crate) fn config(slapd: &Slapd) -> PasswordCheckConfig {
    let mut cfg = PasswordCheckConfig::new(
        &slapd.uri,
        format!("uid=svc-sync,ou=people,{}", slapd.base),
        slapd.password_file(SYNC_PW),
        format!("ou=people,{}", slapd.base),
        FILTER,
    );
    cfg.timeout_secs = 5;
    cfg
}

fn checker(slapd: &Slapd) -> PasswordChecker {
    PasswordChecker::new(config(slapd)).expect("valid configuration")
}

/// One attribute of an entry, read as svc-sync with ldapsearch.
fn read_attr(slapd: &Slapd, dn: &str, attr: &str) -> Option<String> {
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &slapd.uri])
        .args(["-D", &format!("uid=svc-sync,ou=people,{}", slapd.base)])
        .args([
            "-w",
            SYNC_PW,
            "-b",
            dn,
            "-s",
            "base",
            "(objectClass=*)",
            attr,
        ])
        .output()
        .expect("run ldapsearch (ldap-utils)");
    assert!(
        out.status.success(),
        "ldapsearch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{attr}: ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

pub(crate) fn slapd_log(slapd: &Slapd) -> String {
    std::fs::read_to_string(slapd.dir.join("slapd.log")).expect("read slapd.log")
}

/// How many simple binds as `dn` slapd has logged.
pub(crate) fn binds_as(slapd: &Slapd, dn: &str) -> usize {
    slapd_log(slapd)
        .matches(&format!("BIND dn=\"{dn}\" method=128"))
        .count()
}

/// Wait until slapd's log shows `n` binds as `dn` (the log is written as slapd goes).
fn wait_for_binds(slapd: &Slapd, dn: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while binds_as(slapd, dn) < n {
        assert!(
            Instant::now() < deadline,
            "slapd logged {} binds as {dn}, expected {n}",
            binds_as(slapd, dn)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connections_accepted(slapd: &Slapd) -> usize {
    slapd_log(slapd).matches(" ACCEPT from ").count()
}

#[track_caller]
fn assert_report(r: &CheckReport, outcome: BindOutcome, detail_has: &str, dn: Option<&str>) {
    assert_eq!(r.outcome, outcome, "{r:?}");
    assert!(
        r.detail.contains(detail_has),
        "detail should contain {detail_has:?}: {r:?}"
    );
    assert_eq!(r.dn.as_deref(), dn, "{r:?}");
}

#[tokio::test]
async fn pta_success_invalid_credentials_and_no_bind_for_empty_password() {
    let slapd = start();
    add_users(&slapd, &["alice", "twin1", "twin2"]);
    // A password that needs every byte sent as it is. Set when the entry is added: a
    // password the rootdn replaces later is an administrator's reset (pwdReset, so
    // MustChangePassword under this policy).
    let odd = "pä ss\u{1F511}\\*()\"'";
    slapd.add(&format!(
        "dn: {}\nobjectClass: inetOrgPerson\nuid: bob\ncn: bob\nsn: bob\nmail: {}\nuserPassword:: {}\n",
        user_dn(&slapd, "bob"),
        upn("bob"),
        base64::engine::general_purpose::STANDARD.encode(odd)
    ));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mail\nmail: twin@example.test\n\ndn: {}\nchangetype: modify\nreplace: mail\nmail: twin@example.test\n",
        user_dn(&slapd, "twin1"),
        user_dn(&slapd, "twin2")
    ));
    let c = checker(&slapd);
    let alice = user_dn(&slapd, "alice");
    let bob = user_dn(&slapd, "bob");

    let r = c.check(&upn("alice"), None, b"pw-alice").await;
    assert_report(&r, BindOutcome::Success, "ldap 0 success", Some(&alice));
    let r = c.check(&upn("bob"), None, odd.as_bytes()).await;
    assert_report(&r, BindOutcome::Success, "ldap 0 success", Some(&bob));
    // A UPN is matched as the directory matches mail (case-insensitively).
    let r = c.check("ALICE@Example.Test", None, b"pw-alice").await;
    assert_report(&r, BindOutcome::Success, "ldap 0 success", Some(&alice));

    let r = c.check(&upn("alice"), None, b"wrong").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::InvalidCredentials,
            detail: "ldap 49 invalidCredentials".into(),
            dn: Some(alice.clone())
        }
    );
    // A password that differs only in case or by a trailing newline is wrong.
    let r = c.check(&upn("alice"), None, b"PW-ALICE").await;
    assert_eq!(r.outcome, BindOutcome::InvalidCredentials, "{r:?}");
    let r = c.check(&upn("alice"), None, b"pw-alice\n").await;
    assert_eq!(r.outcome, BindOutcome::InvalidCredentials, "{r:?}");

    let r = c.check(&upn("nobody"), None, b"pw-nobody").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::InvalidCredentials,
            detail: "noSuchUser".into(),
            dn: None
        }
    );
    // Filter metacharacters in the UPN are escaped: no wildcard match.
    let r = c.check("*", None, b"pw-alice").await;
    assert_report(&r, BindOutcome::InvalidCredentials, "noSuchUser", None);
    let r = c.check("alice*)(mail=*", None, b"pw-alice").await;
    assert_report(&r, BindOutcome::InvalidCredentials, "noSuchUser", None);
    let r = c.check("twin@example.test", None, b"pw-twin1").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::InvalidCredentials,
            detail: "ambiguousUser".into(),
            dn: None
        }
    );

    // The empty password: refused here, never sent (it would be an anonymous bind).
    let alice_binds = binds_as(&slapd, &alice);
    let r = c.check(&upn("alice"), None, b"").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::InvalidCredentials,
            detail: "emptyPassword".into(),
            dn: None
        }
    );
    // A later bind as bob is logged; by then a bind as alice would have been too.
    let bob_binds = binds_as(&slapd, &bob);
    let r = c.check(&upn("bob"), None, odd.as_bytes()).await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");
    wait_for_binds(&slapd, &bob, bob_binds + 1);
    assert_eq!(
        binds_as(&slapd, &alice),
        alice_binds,
        "the empty password must not reach the directory"
    );
    assert!(
        !slapd_log(&slapd).contains("unauthenticated bind"),
        "no empty simple bind was sent"
    );
    // The details never hold a password.
    for pw in ["pw-alice", odd] {
        assert!(!r.detail.contains(pw));
    }
}

#[tokio::test]
async fn pta_locked_by_failed_binds_and_by_the_administrator() {
    let slapd = start();
    add_users(&slapd, &["lena", "lars"]);
    let c = checker(&slapd);
    let lena = user_dn(&slapd, "lena");

    // pwdMaxFailure 5: five wrong passwords lock the account; the fifth answer is still a
    // plain failure, after it even the right password is refused as locked.
    for i in 1..=5 {
        let r = c.check(&upn("lena"), None, b"wrong").await;
        assert_eq!(
            r.outcome,
            BindOutcome::InvalidCredentials,
            "attempt {i}: {r:?}"
        );
    }
    let r = c.check(&upn("lena"), None, b"pw-lena").await;
    assert_report(
        &r,
        BindOutcome::AccountLocked,
        "ldap 49 invalidCredentials; ppolicy accountLocked; pwdAccountLockedTime 2",
        Some(&lena),
    );
    assert!(read_attr(&slapd, &lena, "pwdAccountLockedTime").is_some());

    // Locked by the administrator (pwdAccountLockedTime = now).
    let lars = user_dn(&slapd, "lars");
    assert_eq!(
        c.check(&upn("lars"), None, b"pw-lars").await.outcome,
        BindOutcome::Success
    );
    let now = chrono_like_now();
    slapd.modify(&format!(
        "dn: {lars}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: {now}\n"
    ));
    let r = c.check(&upn("lars"), None, b"pw-lars").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::AccountLocked,
            detail: format!(
                "ldap 49 invalidCredentials; ppolicy accountLocked; pwdAccountLockedTime {now}"
            ),
            dn: Some(lars.clone())
        }
    );
    // Unlocked again: the next check succeeds on the same pooled connections.
    slapd.modify(&format!(
        "dn: {lars}\nchangetype: modify\ndelete: pwdAccountLockedTime\n"
    ));
    let r = c.check(&upn("lars"), None, b"pw-lars").await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");
}

/// The current UTC time as a GeneralizedTime (YYYYmmddHHMMSSZ), from `date`.
pub(crate) fn chrono_like_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y%m%d%H%M%SZ"])
        .output()
        .expect("run date");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn pta_disabled_expired_and_must_change() {
    let slapd = start();
    add_users(&slapd, &["dora", "ezra", "mia"]);
    let c = checker(&slapd);

    // Disabled: OpenLDAP's permanent administrative lock.
    let dora = user_dn(&slapd, "dora");
    slapd.modify(&format!(
        "dn: {dora}\nchangetype: modify\nreplace: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n"
    ));
    let r = c.check(&upn("dora"), None, b"pw-dora").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::AccountDisabled,
            detail: "ldap 49 invalidCredentials; ppolicy accountLocked; pwdAccountLockedTime 000001010000Z (locked for good by an administrator)".into(),
            dn: Some(dora.clone())
        }
    );
    // A wrong password for a disabled account: still disabled (the lock answers first).
    let r = c.check(&upn("dora"), None, b"wrong").await;
    assert_eq!(r.outcome, BindOutcome::AccountDisabled, "{r:?}");

    // Expired: last changed in 2000, pwdMaxAge one year (pwdChangedTime needs relax).
    let ezra = user_dn(&slapd, "ezra");
    slapd.modify_relax(&format!(
        "dn: {ezra}\nchangetype: modify\nreplace: pwdChangedTime\npwdChangedTime: 20000101000000Z\n"
    ));
    let r = c.check(&upn("ezra"), None, b"pw-ezra").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::PasswordExpired,
            detail: "ldap 49 invalidCredentials; ppolicy passwordExpired".into(),
            dn: Some(ezra.clone())
        }
    );
    // The wrong password for an expired account is just wrong.
    let r = c.check(&upn("ezra"), None, b"wrong").await;
    assert_report(&r, BindOutcome::InvalidCredentials, "ldap 49", Some(&ezra));

    // Must change: reset by an administrator (pwdReset, pwdMustChange TRUE in the policy).
    let mia = user_dn(&slapd, "mia");
    slapd.modify(&format!(
        "dn: {mia}\nchangetype: modify\nreplace: pwdReset\npwdReset: TRUE\n"
    ));
    let r = c.check(&upn("mia"), None, b"pw-mia").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::MustChangePassword,
            detail: "ldap 0 success; ppolicy changeAfterReset".into(),
            dn: Some(mia.clone())
        }
    );
    let r = c.check(&upn("mia"), None, b"wrong").await;
    assert_eq!(r.outcome, BindOutcome::InvalidCredentials, "{r:?}");
    // The pooled connection last bound as mia (restricted session) serves the next user.
    let r = c.check(&upn("ezra"), None, b"pw-ezra").await;
    assert_eq!(r.outcome, BindOutcome::PasswordExpired, "{r:?}");
}

#[tokio::test]
async fn pta_anchor_mismatch_and_renamed_user() {
    let slapd = start();
    add_users(&slapd, &["ann", "other"]);
    let mut cfg = config(&slapd);
    cfg.anchor_attribute = Some("entryUUID".into());
    let c = PasswordChecker::new(cfg).unwrap();
    let ann = user_dn(&slapd, "ann");
    let ann_uuid = read_attr(&slapd, &ann, "entryUUID").expect("entryUUID");
    let other_uuid = read_attr(&slapd, &user_dn(&slapd, "other"), "entryUUID").unwrap();

    let r = c.check(&upn("ann"), Some(&ann_uuid), b"pw-ann").await;
    assert_report(&r, BindOutcome::Success, "ldap 0 success", Some(&ann));
    let r = c
        .check(&upn("ann"), Some(&ann_uuid.to_ascii_uppercase()), b"pw-ann")
        .await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");
    // Without an immutable id the anchor is not checked.
    let r = c.check(&upn("ann"), None, b"pw-ann").await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");

    // Another entry's anchor: refused without a bind as ann.
    let before = binds_as(&slapd, &ann);
    let r = c.check(&upn("ann"), Some(&other_uuid), b"pw-ann").await;
    assert_eq!(
        r,
        CheckReport {
            outcome: BindOutcome::InvalidCredentials,
            detail: "anchorMismatch".into(),
            dn: Some(ann.clone())
        }
    );
    let r = c.check(&upn("ann"), Some("not-an-anchor"), b"pw-ann").await;
    assert_report(
        &r,
        BindOutcome::InvalidCredentials,
        "anchorMismatch",
        Some(&ann),
    );
    let r = c.check(&upn("ann"), None, b"pw-ann").await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");
    wait_for_binds(&slapd, &ann, before + 1);
    assert_eq!(binds_as(&slapd, &ann), before + 1, "no bind for a mismatch");

    // Renamed within the cache's lifetime: the cached DN fails, one new search finds the
    // entry under its new name (same anchor) and the check succeeds.
    slapd.modify(&format!(
        "dn: {ann}\nchangetype: modrdn\nnewrdn: uid=ann2\ndeleteoldrdn: 1\n"
    ));
    let ann2 = user_dn(&slapd, "ann2");
    let r = c.check(&upn("ann"), Some(&ann_uuid), b"pw-ann").await;
    assert_report(&r, BindOutcome::Success, "ldap 0 success", Some(&ann2));

    // Deleted and re-created with the same name and mail: a new entryUUID, so the old
    // immutable id no longer matches. (A checker that looked the UPN up within the last
    // DN_CACHE_TTL still holds the old anchor until a bind fails: see the module's notes.)
    slapd.delete(&ann2);
    slapd.add(&format!(
        "dn: {ann2}\nobjectClass: inetOrgPerson\nuid: ann2\ncn: ann\nsn: ann\nmail: {}\nuserPassword: pw-ann\n",
        upn("ann")
    ));
    let new_uuid = read_attr(&slapd, &ann2, "entryUUID").unwrap();
    assert_ne!(new_uuid, ann_uuid);
    let mut cfg = config(&slapd);
    cfg.anchor_attribute = Some("entryUUID".into());
    let fresh = PasswordChecker::new(cfg).unwrap();
    let r = fresh.check(&upn("ann"), Some(&ann_uuid), b"pw-ann").await;
    assert_report(
        &r,
        BindOutcome::InvalidCredentials,
        "anchorMismatch",
        Some(&ann2),
    );
    let r = fresh.check(&upn("ann"), Some(&new_uuid), b"pw-ann").await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");
    // The old checker: a failed bind makes it search again, and then it knows the new anchor.
    let r = c.check(&upn("ann"), Some(&new_uuid), b"wrong").await;
    assert_report(
        &r,
        BindOutcome::InvalidCredentials,
        "ldap 49 invalidCredentials",
        Some(&ann2),
    );
    let r = c.check(&upn("ann"), Some(&ann_uuid), b"pw-ann").await;
    assert_report(
        &r,
        BindOutcome::InvalidCredentials,
        "anchorMismatch",
        Some(&ann2),
    );
}

#[tokio::test]
async fn pta_directory_unavailable() {
    let slapd = start();
    add_users(&slapd, &["uma"]);
    let c = checker(&slapd);
    let r = c.check(&upn("uma"), None, b"pw-uma").await;
    assert_eq!(r.outcome, BindOutcome::Success, "{r:?}");

    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slapd-stop.sh"))
        .arg(&slapd.dir)
        .arg("--keep")
        .status()
        .expect("run slapd-stop.sh");
    assert!(status.success());

    // The cached DN, the pooled bind connection and the service connection all point at a
    // directory that is gone.
    let started = Instant::now();
    let r = c.check(&upn("uma"), None, b"pw-uma").await;
    assert_eq!(r.outcome, BindOutcome::DirectoryUnavailable, "{r:?}");
    assert!(!r.detail.contains("pw-uma"), "{r:?}");
    // A user not in the cache: the search cannot run.
    let r = c.check(&upn("someone"), None, b"pw").await;
    assert_eq!(r.outcome, BindOutcome::DirectoryUnavailable, "{r:?}");
    assert!(r.detail.contains("cannot connect"), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connection refused is answered at once"
    );
    assert!(c.probe().await.is_err());

    // A checker that never reached the directory.
    let fresh = checker(&slapd);
    let r = fresh.check(&upn("uma"), None, b"pw-uma").await;
    assert_eq!(r.outcome, BindOutcome::DirectoryUnavailable, "{r:?}");
    let e = fresh.probe().await.unwrap_err().to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pta_200_concurrent_checks_with_a_pool_of_4() {
    const GOOD_USERS: usize = 25;
    const CHECKS_PER_GOOD_USER: usize = 6;
    const BAD_USERS: usize = 50;
    let slapd = start();
    let good: Vec<String> = (0..GOOD_USERS).map(|i| format!("good{i}")).collect();
    let bad: Vec<String> = (0..BAD_USERS).map(|i| format!("bad{i}")).collect();
    let all: Vec<&str> = good.iter().chain(&bad).map(String::as_str).collect();
    add_users(&slapd, &all);
    let mut cfg = config(&slapd);
    cfg.pool_size = 4;
    let c = PasswordChecker::new(cfg).unwrap();
    let accepted_before = connections_accepted(&slapd);

    let mut tasks = Vec::new();
    for round in 0..CHECKS_PER_GOOD_USER {
        for uid in &good {
            let (c, uid) = (c.clone(), uid.clone());
            tasks.push(tokio::spawn(async move {
                let r = c.check(&upn(&uid), None, password(&uid).as_bytes()).await;
                (uid, round, true, r)
            }));
        }
    }
    // One wrong password per user: far from pwdMaxFailure.
    for uid in &bad {
        let (c, uid) = (c.clone(), uid.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.check(&upn(&uid), None, b"wrong").await;
            (uid, 0, false, r)
        }));
    }
    assert_eq!(tasks.len(), 200);
    let mut successes = 0;
    let mut failures = 0;
    for t in tasks {
        let (uid, round, right, r) = t.await.expect("check task");
        let dn = user_dn(&slapd, &uid);
        if right {
            assert_eq!(
                r.outcome,
                BindOutcome::Success,
                "{uid} round {round}: {r:?}"
            );
            successes += 1;
        } else {
            assert_eq!(r.outcome, BindOutcome::InvalidCredentials, "{uid}: {r:?}");
            failures += 1;
        }
        assert_eq!(r.dn.as_deref(), Some(dn.as_str()), "{r:?}");
    }
    assert_eq!((successes, failures), (150, 50));
    // One service connection and at most pool_size bind connections were opened.
    let opened = connections_accepted(&slapd) - accepted_before;
    eprintln!("200 checks, pool_size 4: {opened} connections opened");
    assert!(
        (2..=5).contains(&opened),
        "{opened} connections for 200 checks with a pool of 4"
    );
}

#[tokio::test]
async fn pta_probe_reads_the_lockout_policy() {
    let slapd = start();
    let c = checker(&slapd);
    assert_eq!(
        c.probe().await.expect("probe"),
        DirectoryLockoutPolicy {
            max_failures: Some(5),
            lockout_duration_secs: Some(300)
        }
    );
    // Base DN at the top of the tree: the policy is found below it too.
    let mut cfg = config(&slapd);
    cfg.base_dn = slapd.base.clone();
    let top = PasswordChecker::new(cfg).unwrap();
    assert_eq!(
        top.probe().await.unwrap(),
        DirectoryLockoutPolicy {
            max_failures: Some(5),
            lockout_duration_secs: Some(300)
        }
    );

    // Without ppolicy there is no policy entry: nothing known.
    let plain = Slapd::start();
    let c = checker(&plain);
    assert_eq!(c.probe().await.unwrap(), DirectoryLockoutPolicy::default());

    // A wrong service password: an error, not a guess.
    let mut cfg = config(&slapd);
    cfg.bind_password_file = Some(slapd.password_file("not-the-password"));
    let e = PasswordChecker::new(cfg)
        .unwrap()
        .probe()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalidCredentials (49)"), "{e}");
}
