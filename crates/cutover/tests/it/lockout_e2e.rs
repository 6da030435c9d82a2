//! Smart lockout end to end (SPEC §7): a password spray against pass-through accounts that
//! never reaches the directory's own lockout, parallel guesses held to the threshold, repeated
//! passwords, growing locks, an administrator's unlock, familiar networks and report-only mode.
//!
//! Client networks are simulated with `X-Forwarded-For` (the server trusts it here); time only
//! moves by stepping the server's `ManualClock`. Every wait and every pool of work is bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover_server::clock::Clock;
use serde_json::{Value, json};

use crate::harness::{Admin, InProcess, auth_url, hidden, location, pkce, seed};
use crate::ldap_connector::Slapd;
use crate::pta_e2e::{PtaEnv, REDIRECT};
use crate::pta_ldap::{self, SYNC_PW, upn, user_dn};

/// What a person sees after a wrong password, a lock, or an on-prem lock alike.
const INCORRECT: &str = "Your account or password is incorrect";

/// A longest single HTTP exchange; a hung request fails the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A browser on a simulated client network: cookies, no redirects followed, and the address
/// the trusted proxy would append.
fn browser_at(ip: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", ip.parse().expect("an address"));
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// A sign-in transaction standing on the password page (it stays there after a failure).
#[derive(Debug, Clone)]
struct PasswordStep {
    t: String,
    csrf: String,
}

impl PasswordStep {
    /// A page of this transaction with its own identifiers taken out, to compare pages of
    /// different transactions.
    fn normalized(&self, page: &str) -> String {
        page.replace(&self.t, "{t}").replace(&self.csrf, "{csrf}")
    }
}

/// Authorize, then name the user: the transaction is on the password page.
async fn open(http: &reqwest::Client, base: &str, client_id: &str, upn: &str) -> PasswordStep {
    let (_verifier, challenge) = pkce();
    let url = auth_url(base, client_id, REDIRECT, &challenge, &[]);
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303, "authorize");
    let login = location(&res);
    let html = http
        .get(format!("{base}{login}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    assert_eq!(res.status(), 303, "identifier of {upn}");
    let html = http
        .get(format!("{base}{}", location(&res)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("autocomplete=\"current-password\""), "{html}");
    PasswordStep {
        csrf: hidden(&html, "csrf"),
        t,
    }
}

/// Post a password on the transaction: (status, the redirect on 303, else the page).
async fn submit(
    http: &reqwest::Client,
    base: &str,
    step: &PasswordStep,
    password: &str,
) -> (u16, String) {
    let res = http
        .post(format!("{base}/login/password"))
        .form(&[
            ("t", step.t.as_str()),
            ("csrf", step.csrf.as_str()),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    if status == 303 {
        (status, location(&res))
    } else {
        (status, res.text().await.unwrap_or_default())
    }
}

/// One whole sign-in from a fresh browser on `ip` (a fresh one: no SSO session to reuse).
async fn sign_in_from(ip: &str, base: &str, client_id: &str, upn: &str, pw: &str) -> (u16, String) {
    let http = browser_at(ip);
    let step = open(&http, base, client_id, upn).await;
    submit(&http, base, &step, pw).await
}

fn is_signed_in(r: &(u16, String)) -> bool {
    r.0 == 303 && r.1.starts_with(REDIRECT) && r.1.contains("code=")
}

#[track_caller]
fn assert_signed_in(r: &(u16, String)) {
    assert!(is_signed_in(r), "expected a redirect with a code: {r:?}");
}

/// The wrong-password page: what a guess, a lock and a locked right password all look like.
#[track_caller]
fn assert_incorrect(r: &(u16, String)) {
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1.contains(INCORRECT), "{}", r.1);
}

/// Run `jobs` on `workers` tasks pulling from one queue (`f` gets the worker's index), within
/// `limit`; the results in no particular order.
async fn pool<J, R, F, Fut>(jobs: Vec<J>, workers: usize, limit: Duration, f: F) -> Vec<R>
where
    J: Send + 'static,
    R: Send + 'static,
    F: Fn(usize, J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let queue = Arc::new(std::sync::Mutex::new(VecDeque::from(jobs)));
    let f = Arc::new(f);
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (queue, f) = (queue.clone(), f.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let job = queue.lock().unwrap().pop_front();
                let Some(job) = job else {
                    return out;
                };
                out.push(f(w, job).await);
            }
        });
    }
    tokio::time::timeout(limit, async move {
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.extend(r.expect("a worker failed"));
        }
        all
    })
    .await
    .unwrap_or_else(|_| panic!("the work did not finish within {limit:?}"))
}

/// A user's lockout status (`GET /users/{upn}/lockout`).
async fn lockout_of(admin: &Admin, upn: &str) -> Value {
    admin.get(&format!("/users/{upn}/lockout")).await["status"].clone()
}

/// The newest sign-in records of a user (at most 500).
async fn sign_ins(admin: &Admin, upn: &str) -> Vec<Value> {
    let page = admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={upn}&$top=500"
        ))
        .await;
    page["value"].as_array().cloned().unwrap_or_default()
}

/// Records counted by (failure reason or "success", lockout decision).
fn tally<'a>(records: impl IntoIterator<Item = &'a Value>) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for r in records {
        let reason = r["failureReason"].as_str().unwrap_or("success").to_owned();
        let decision = r["lockoutDecision"].as_str().unwrap_or("?").to_owned();
        *out.entry((reason, decision)).or_insert(0) += 1;
    }
    out
}

fn count(t: &BTreeMap<(String, String), usize>, reason: &str, decision: &str) -> usize {
    t.get(&(reason.to_owned(), decision.to_owned()))
        .copied()
        .unwrap_or(0)
}

async fn put_policy(admin: &Admin, body: Value) -> (u16, Value) {
    admin
        .call(reqwest::Method::PUT, "/policies/smartLockout", Some(body))
        .await
}

fn policy(threshold: u32, duration_secs: i64, mode: &str) -> Value {
    json!({"threshold": threshold, "durationSecs": duration_secs, "maxDurationSecs": 3_600,
           "resetAfterSecs": 86_400, "mode": mode})
}

/// Results the agents reported as `result`, summed over agents.
fn agent_results(agents: &[&cutover_agent::AgentHandle], result: &str) -> u64 {
    agents
        .iter()
        .map(|a| a.stats().by_result.get(result).copied().unwrap_or(0))
        .sum()
}

fn agent_validations(agents: &[&cutover_agent::AgentHandle]) -> u64 {
    agents.iter().map(|a| a.stats().validations).sum()
}

/// Simple binds per DN in slapd's log.
fn binds_by_dn(slapd: &Slapd) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in pta_ldap::slapd_log(slapd).lines() {
        let Some(i) = line.find("BIND dn=\"") else {
            continue;
        };
        let rest = &line[i + "BIND dn=\"".len()..];
        if let Some(end) = rest.find('"')
            && rest[end..].starts_with("\" method=128")
        {
            *out.entry(rest[..end].to_owned()).or_insert(0) += 1;
        }
    }
    out
}

/// Make slapd's log hold every bind made so far: bind as `marker` and wait (bounded) until that
/// bind shows.
async fn settle_slapd_log(slapd: &Slapd, marker: &str) {
    let dn = user_dn(slapd, marker);
    let before = pta_ldap::binds_as(slapd, &dn);
    let out = Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.uri, "-D", &dn, "-w"])
        .arg(pta_ldap::password(marker))
        .output()
        .expect("run ldapwhoami (ldap-utils)");
    assert!(
        out.status.success(),
        "ldapwhoami as {marker}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let until = Instant::now() + Duration::from_secs(10);
    while pta_ldap::binds_as(slapd, &dn) <= before {
        assert!(Instant::now() < until, "slapd did not log the marker bind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries under ou=people matching `filter`, each with the values of `attr`, read as
/// svc-sync (which reads the ppolicy operational attributes).
fn ldap_entries(slapd: &Slapd, filter: &str, attr: &str) -> BTreeMap<String, Vec<String>> {
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &slapd.uri])
        .args(["-D", &format!("uid=svc-sync,ou=people,{}", slapd.base)])
        .args(["-w", SYNC_PW, "-b", &format!("ou=people,{}", slapd.base)])
        .args([filter, attr])
        .output()
        .expect("run ldapsearch (ldap-utils)");
    assert!(
        out.status.success(),
        "ldapsearch {filter}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut entries = BTreeMap::new();
    let mut current: Option<String> = None;
    let prefix = format!("{attr}: ");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(dn) = line.strip_prefix("dn: ") {
            entries.insert(dn.to_owned(), Vec::new());
            current = Some(dn.to_owned());
        } else if let (Some(v), Some(dn)) = (line.strip_prefix(&prefix), current.as_ref()) {
            entries.get_mut(dn).unwrap().push(v.to_owned());
        }
    }
    entries
}

impl PtaEnv {
    /// Add many users: one LDIF for the directory, then the Cutover users 16 at a time.
    async fn add_users_in_bulk(&self, uids: &[String]) {
        let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
        pta_ldap::add_users(&self.slapd, &refs);
        let (http, base, token) = (
            self.admin.http.clone(),
            self.admin.base.clone(),
            self.admin.token.clone(),
        );
        pool(
            uids.to_vec(),
            16,
            Duration::from_secs(300),
            move |_, uid: String| {
                let (http, base, token) = (http.clone(), base.clone(), token.clone());
                async move {
                    let res = http
                        .post(format!("{base}/api/v1/users"))
                        .bearer_auth(token)
                        .json(&json!({"userPrincipalName": upn(&uid), "displayName": uid,
                                      "accountEnabled": true, "source": "synced",
                                      "immutableId": format!("anchor-{uid}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201, "create {uid}: {:?}", res.text().await);
                }
            },
        )
        .await;
    }

    /// The smart-lockout policy once every one of `n` agents has reported its directory's
    /// lockout (bounded).
    async fn policy_with_directories(&self, n: usize) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.admin.get("/policies/smartLockout").await;
            if v["directories"].as_array().map_or(0, Vec::len) >= n {
                return v;
            }
            assert!(
                Instant::now() < until,
                "the agents did not report the directory's lockout: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn warnings(view: &Value) -> Vec<String> {
    view["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

// ---- the spray -------------------------------------------------------------------------------

const ACCOUNTS: usize = 1_000;
const LEGIT: usize = 300;
const SPRAY_PASSWORDS: usize = 20;
const SAFE_THRESHOLD: u32 = 4;
const IN_FLIGHT: usize = 16;
const ATTACKER_NETWORKS: [&str; 2] = ["203.0.113", "198.51.100"];

fn account(n: usize) -> String {
    format!("u{n:04}")
}

/// 300 of the 1,000 accounts belong to people who sign in: every tenth account's first three.
fn is_legit(n: usize) -> bool {
    n % 10 < 3
}

/// A legitimate user's home address (a /24 of their own).
fn home_ip(n: usize) -> String {
    format!("10.{}.{}.20", 1 + n / 256, n % 256)
}

fn home_network(n: usize) -> String {
    format!("10.{}.{}.0/24", 1 + n / 256, n % 256)
}

/// The passwords a spray tries: common ones, the same list for every account.
fn spray_password(k: usize) -> String {
    format!("Season{k:02}-2025!")
}

enum Job {
    /// The attacker: one transaction on the account, every spray password on it.
    Spray(usize),
    /// The account's owner signs in from home.
    Legit(usize),
}

enum Outcome {
    Spray {
        account: usize,
        successes: usize,
        /// Answers other than the wrong-password page (status and a snippet).
        odd: Vec<String>,
    },
    Legit {
        account: usize,
        answer: (u16, String),
    },
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_spray_against_pass_through() {
    let started = Instant::now();
    let env = PtaEnv::start(&["marker"], |c| c.trust_forwarded_for = true).await;
    let uids: Vec<String> = (0..ACCOUNTS).map(account).collect();
    env.add_users_in_bulk(&uids).await;
    let users_added = started.elapsed();
    let a1 = env.agent("agent-1").await;
    let a2 = env.agent("agent-2").await;
    env.wait_healthy(2).await;
    let agents = [&a1, &a2];

    // The directory locks after 5 wrong passwords for 300 s; the default policy (10, 60 s)
    // would let a spray lock people out on-prem, and says so once the agents report it.
    let view = env.policy_with_directories(2).await;
    assert_eq!(view["directories"][0]["threshold"], 5, "{view}");
    assert_eq!(view["directories"][0]["durationSecs"], 300, "{view}");
    let w = warnings(&view);
    assert!(
        w.iter()
            .any(|w| w.contains("threshold (10) is not below the directory's (5)")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("duration (60 s) is not longer than the directory's (300 s)")),
        "{w:?}"
    );
    let (s, view) = put_policy(&env.admin, policy(SAFE_THRESHOLD, 600, "enforced")).await;
    assert_eq!(s, 200, "{view}");
    assert!(
        warnings(&view).iter().all(|w| !w.contains("directory")),
        "the safe setting leaves no warning about the directory: {view}"
    );
    let view = env.admin.get("/policies/smartLockout").await;
    assert_eq!(view["policy"]["threshold"], SAFE_THRESHOLD, "{view}");
    assert!(warnings(&view).is_empty(), "{view}");

    // The legitimate users sign in once from home: their network becomes familiar.
    let base = env.server.base.clone();
    let client_id = env.client_id.clone();
    let t = Instant::now();
    let first: Vec<(usize, (u16, String))> = pool(
        (0..ACCOUNTS).filter(|n| is_legit(*n)).collect(),
        IN_FLIGHT,
        Duration::from_secs(300),
        {
            let (base, client_id) = (base.clone(), client_id.clone());
            move |_, n: usize| {
                let (base, client_id) = (base.clone(), client_id.clone());
                async move {
                    let r = sign_in_from(
                        &home_ip(n),
                        &base,
                        &client_id,
                        &upn(&account(n)),
                        &pta_ldap::password(&account(n)),
                    )
                    .await;
                    (n, r)
                }
            }
        },
    )
    .await;
    let first_round = t.elapsed();
    assert_eq!(first.len(), LEGIT);
    for (n, r) in &first {
        assert!(
            is_signed_in(r),
            "{}: first sign-in from home: {r:?}",
            account(*n)
        );
    }
    let invalid_before = agent_results(&agents, "invalidCredentials");
    let success_before = agent_results(&agents, "success");
    assert_eq!(invalid_before, 0);
    assert_eq!(success_before, LEGIT as u64);

    // The spray and the people, at once: the attacker's accounts interleaved with the owners
    // signing in (an owner right after the attack on their account began).
    let mut jobs = Vec::new();
    for n in 0..ACCOUNTS {
        jobs.push(Job::Spray(n));
        if is_legit(n) {
            jobs.push(Job::Legit(n));
        }
    }
    let attackers: Arc<Vec<reqwest::Client>> = Arc::new(
        (0..IN_FLIGHT)
            .map(|w| browser_at(&format!("{}.{}", ATTACKER_NETWORKS[w % 2], 10 + w)))
            .collect(),
    );
    let t = Instant::now();
    let outcomes = pool(jobs, IN_FLIGHT, Duration::from_secs(900), {
        let (base, client_id) = (base.clone(), client_id.clone());
        move |w, job: Job| {
            let (base, client_id, attackers) = (base.clone(), client_id.clone(), attackers.clone());
            async move {
                match job {
                    Job::Spray(n) => {
                        let http = &attackers[w];
                        let step = open(http, &base, &client_id, &upn(&account(n))).await;
                        let mut successes = 0;
                        let mut odd = Vec::new();
                        for k in 0..SPRAY_PASSWORDS {
                            let r = submit(http, &base, &step, &spray_password(k)).await;
                            if r.0 == 303 {
                                successes += 1;
                            } else if r.0 != 200 || !r.1.contains(INCORRECT) {
                                odd.push(format!(
                                    "{} {}",
                                    r.0,
                                    r.1.chars().take(300).collect::<String>()
                                ));
                            }
                        }
                        Outcome::Spray {
                            account: n,
                            successes,
                            odd,
                        }
                    }
                    Job::Legit(n) => {
                        let answer = sign_in_from(
                            &home_ip(n),
                            &base,
                            &client_id,
                            &upn(&account(n)),
                            &pta_ldap::password(&account(n)),
                        )
                        .await;
                        Outcome::Legit { account: n, answer }
                    }
                }
            }
        }
    })
    .await;
    let spray_time = t.elapsed();

    let mut attacker_successes = 0;
    let mut odd_answers = Vec::new();
    let mut legit_refused = Vec::new();
    let mut legit_ok = 0;
    for o in &outcomes {
        match o {
            Outcome::Spray {
                account: n,
                successes,
                odd,
            } => {
                attacker_successes += successes;
                odd_answers.extend(odd.iter().map(|o| format!("{}: {o}", account(*n))));
            }
            Outcome::Legit { account: n, answer } => {
                if is_signed_in(answer) {
                    legit_ok += 1;
                } else {
                    legit_refused.push(format!("{}: {answer:?}", account(*n)));
                }
            }
        }
    }
    let attacker_binds = agent_results(&agents, "invalidCredentials") - invalid_before;
    let legit_binds = agent_results(&agents, "success") - success_before;
    let bound = u64::from(SAFE_THRESHOLD) * ACCOUNTS as u64;

    // What reached the directory, per account, from slapd's own log.
    settle_slapd_log(&env.slapd, "marker").await;
    let binds = binds_by_dn(&env.slapd);
    let max_binds = |legit: bool| {
        (0..ACCOUNTS)
            .filter(|n| is_legit(*n) == legit)
            .map(|n| {
                binds
                    .get(&user_dn(&env.slapd, &account(n)))
                    .copied()
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    };
    let (max_binds_attacked_only, max_binds_legit) = (max_binds(false), max_binds(true));
    // The directory's own state: nothing locked, no account near its 5 failures.
    let locked_on_prem = ldap_entries(&env.slapd, "(pwdAccountLockedTime=*)", "dn");
    let with_failures = ldap_entries(&env.slapd, "(pwdFailureTime=*)", "pwdFailureTime");
    let max_failures_on_prem = with_failures.values().map(Vec::len).max().unwrap_or(0);

    println!(
        "spray: {ACCOUNTS} accounts x {SPRAY_PASSWORDS} passwords from {:?}, {LEGIT} people signing in at once, {IN_FLIGHT} in flight",
        ATTACKER_NETWORKS
    );
    println!(
        "spray: attacker successes {attacker_successes}; unexpected answers to the attacker {}",
        odd_answers.len()
    );
    println!(
        "spray: legitimate sign-ins {legit_ok} of {LEGIT} succeeded, refused {}",
        legit_refused.len()
    );
    println!(
        "spray: attacker binds that reached the directory {attacker_binds} (bound threshold x accounts = {bound}); legitimate binds {legit_binds}"
    );
    println!(
        "spray: slapd binds per account at most {max_binds_attacked_only} (attacked only), {max_binds_legit} (attacked and signed in twice)"
    );
    println!(
        "spray: on-prem locked accounts {}; accounts with on-prem failures {} (at most {max_failures_on_prem} each, ppolicy locks at 5)",
        locked_on_prem.len(),
        with_failures.len()
    );
    println!(
        "spray: times: users added {users_added:?}, first sign-ins {first_round:?}, spray {spray_time:?}, total so far {:?}",
        started.elapsed()
    );

    assert_eq!(attacker_successes, 0);
    assert!(
        odd_answers.is_empty(),
        "{:?}",
        &odd_answers[..odd_answers.len().min(5)]
    );
    assert!(
        legit_refused.is_empty(),
        "{:?}",
        &legit_refused[..legit_refused.len().min(5)]
    );
    assert_eq!(legit_ok, LEGIT);
    assert_eq!(legit_binds, LEGIT as u64);
    assert!(attacker_binds <= bound, "{attacker_binds} > {bound}");
    assert!(
        max_binds_attacked_only <= SAFE_THRESHOLD as usize,
        "{max_binds_attacked_only}"
    );
    assert!(
        max_binds_legit <= SAFE_THRESHOLD as usize + 2,
        "{max_binds_legit}"
    );
    assert!(locked_on_prem.is_empty(), "{locked_on_prem:?}");
    assert!(max_failures_on_prem < 5, "{max_failures_on_prem}");
    assert!(
        !with_failures.is_empty(),
        "the spray did reach the directory"
    );

    // The sign-in log: per attacked account, the threshold's worth of checked wrong passwords
    // and the rest refused by smart lockout; the owner's sign-ins from home were allowed.
    for n in [0, 5, 997] {
        let name = upn(&account(n));
        let records = sign_ins(&env.admin, &name).await;
        let from_attacker: Vec<&Value> = records
            .iter()
            .filter(|r| {
                let ip = r["ipAddress"].as_str().unwrap_or("");
                ATTACKER_NETWORKS.iter().any(|net| ip.starts_with(net))
            })
            .collect();
        let t = tally(from_attacker.iter().copied());
        println!("spray: sign-in log of {name}, attacker's attempts: {t:?}");
        assert_eq!(from_attacker.len(), SPRAY_PASSWORDS, "{t:?}");
        assert_eq!(
            count(&t, "invalidPassword", "allowed"),
            SAFE_THRESHOLD as usize,
            "{t:?}"
        );
        assert_eq!(
            count(&t, "accountLockedSmartLockout", "locked"),
            SPRAY_PASSWORDS - SAFE_THRESHOLD as usize,
            "{t:?}"
        );
        assert!(
            records
                .iter()
                .all(|r| r["failureReason"] != "onPremAccountLocked"),
            "{records:?}"
        );
        let status = lockout_of(&env.admin, &name).await;
        assert_eq!(status["locked"], true, "{status}");
        assert_eq!(status["unfamiliarLocks"], 1, "{status}");
        assert_eq!(status["familiarFailures"], 0, "{status}");
        if is_legit(n) {
            let home: Vec<&Value> = records
                .iter()
                .filter(|r| r["ipAddress"] == home_ip(n))
                .collect();
            let t = tally(home.iter().copied());
            assert_eq!(count(&t, "success", "allowed"), 2, "{t:?}");
            assert_eq!(home.len(), 2, "{t:?}");
            assert_eq!(
                status["familiarNetworks"],
                json!([home_network(n)]),
                "{status}"
            );
        }
    }
    println!("spray: whole test {:?}", started.elapsed());
    a1.shutdown();
    a2.shutdown();
}

// ---- parallel guesses --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_parallel_guesses_at_one_account() {
    const GUESSES: usize = 200;
    const THRESHOLD: usize = 10;
    const IP: &str = "192.0.2.44";
    let env = PtaEnv::start(&["target", "marker"], |c| c.trust_forwarded_for = true).await;
    // This test is about Cutover's own threshold under parallel guesses, so the directory
    // locks later than Cutover does (20 here). With the test directory's 5 the directory
    // would lock first: that case, and the setting that avoids it, is the spray test's.
    env.slapd.modify(&format!(
        "dn: cn=default,ou=policies,{}\nchangetype: modify\nreplace: pwdMaxFailure\npwdMaxFailure: 20\n",
        env.slapd.base
    ));
    let a1 = env.agent("agent-1").await;
    let a2 = env.agent("agent-2").await;
    env.wait_healthy(2).await;
    let agents = [&a1, &a2];
    let base = env.server.base.clone();
    let client_id = env.client_id.clone();
    let target = upn("target");
    let target_dn = user_dn(&env.slapd, "target");
    let http = browser_at(IP);

    // 200 transactions on the password page (the first one alone: it sets the browser cookie
    // the others share).
    let t = Instant::now();
    let mut steps = vec![open(&http, &base, &client_id, &target).await];
    steps.extend(
        pool(vec![(); GUESSES - 1], 16, Duration::from_secs(120), {
            let (http, base, client_id, target) = (
                http.clone(),
                base.clone(),
                client_id.clone(),
                target.clone(),
            );
            move |_, ()| {
                let (http, base, client_id, target) = (
                    http.clone(),
                    base.clone(),
                    client_id.clone(),
                    target.clone(),
                );
                async move { open(&http, &base, &client_id, &target).await }
            }
        })
        .await,
    );
    let prepared = t.elapsed();
    let validations_before = agent_validations(&agents);
    settle_slapd_log(&env.slapd, "marker").await;
    let binds_before = pta_ldap::binds_as(&env.slapd, &target_dn);

    // All 200 wrong guesses, each a different password, released at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(GUESSES));
    let mut set = tokio::task::JoinSet::new();
    for (i, step) in steps.into_iter().enumerate() {
        let (http, base, barrier) = (http.clone(), base.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            let r = submit(&http, &base, &step, &format!("guess-{i:03}")).await;
            (step, r)
        });
    }
    let t = Instant::now();
    let answers = tokio::time::timeout(Duration::from_secs(120), async move {
        let mut all = Vec::new();
        while let Some(r) = set.join_next().await {
            all.push(r.expect("a guess task failed"));
        }
        all
    })
    .await
    .expect("200 guesses within 2 minutes");
    let guessing = t.elapsed();
    assert_eq!(answers.len(), GUESSES);
    // Every answer is the same wrong-password page, checked or refused.
    let page = answers[0].0.normalized(&answers[0].1.1);
    for (step, r) in &answers {
        assert_incorrect(r);
        assert_eq!(step.normalized(&r.1), page, "every answer looks the same");
    }

    let invalid = agent_results(&agents, "invalidCredentials");
    let validations = agent_validations(&agents) - validations_before;
    settle_slapd_log(&env.slapd, "marker").await;
    let binds = pta_ldap::binds_as(&env.slapd, &target_dn) - binds_before;
    let t = tally(&sign_ins(&env.admin, &target).await);
    println!(
        "parallel: {GUESSES} guesses in {guessing:?} (prepared in {prepared:?}): agents checked {validations} ({invalid} invalidCredentials), slapd binds {binds}, threshold {THRESHOLD}; records {t:?}"
    );
    assert!(validations <= THRESHOLD as u64, "{validations}");
    assert!(invalid <= THRESHOLD as u64, "{invalid}");
    assert!(binds <= THRESHOLD, "{binds}");
    let locked_on_prem = ldap_entries(&env.slapd, "(pwdAccountLockedTime=*)", "dn");
    assert!(locked_on_prem.is_empty(), "{locked_on_prem:?}");
    let checked = count(&t, "invalidPassword", "allowed");
    let refused = count(&t, "accountLockedSmartLockout", "locked");
    assert_eq!(checked, validations as usize, "{t:?}");
    assert_eq!(checked + refused, GUESSES, "{t:?}");

    // Locked now, for the first lock's minute from the moment the threshold was reached.
    let status = lockout_of(&env.admin, &target).await;
    assert_eq!(status["locked"], true, "{status}");
    assert_eq!(status["unfamiliarLocks"], 1, "{status}");
    assert_eq!(status["checksInFlight"], 0, "{status}");
    assert_eq!(
        status["unfamiliarLockedUntil"].as_i64(),
        Some(env.server.clock.now().millis() + 60_000),
        "{status}"
    );

    // The right password while locked: the same page, a record saying why, no agent asked,
    // no bind.
    let step = open(&http, &base, &client_id, &target).await;
    let r = submit(&http, &base, &step, &pta_ldap::password("target")).await;
    assert_incorrect(&r);
    assert_eq!(step.normalized(&r.1), page);
    let rec = env.last_sign_in("target").await;
    assert_eq!(rec["failureReason"], "accountLockedSmartLockout", "{rec}");
    assert_eq!(rec["lockoutDecision"], "locked", "{rec}");
    assert_eq!(rec["agentId"], Value::Null, "{rec}");
    assert_eq!(rec["ipAddress"], IP, "{rec}");
    assert_eq!(agent_validations(&agents) - validations_before, validations);
    settle_slapd_log(&env.slapd, "marker").await;
    assert_eq!(
        pta_ldap::binds_as(&env.slapd, &target_dn) - binds_before,
        binds,
        "no bind for a locked account"
    );

    // Past the lock the right password signs in. The agents' health is judged by the server's
    // clock, so after the step they count again once their next heartbeat (every 10 s) lands.
    env.server.clock.advance_secs(61);
    let t = Instant::now();
    env.wait_healthy(2).await;
    println!(
        "parallel: agents healthy again {:?} after the clock step",
        t.elapsed()
    );
    let r = submit(&http, &base, &step, &pta_ldap::password("target")).await;
    assert_signed_in(&r);
    let rec = env.last_sign_in("target").await;
    assert_eq!(rec["result"], "success", "{rec}");
    assert_eq!(rec["lockoutDecision"], "allowed", "{rec}");
    let status = lockout_of(&env.admin, &target).await;
    assert_eq!(status["locked"], false, "{status}");
    assert_eq!(status["unfamiliarFailures"], 0, "{status}");
    assert_eq!(
        status["familiarNetworks"],
        json!(["192.0.2.0/24"]),
        "{status}"
    );
    a1.shutdown();
    a2.shutdown();
}

// ---- cloud users -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_same_wrong_password_does_not_lock() {
    let srv = InProcess::start_with(|c| c.trust_forwarded_for = true).await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let http = browser_at("192.0.2.77");
    let step = open(&http, &srv.base, &f.client_id, &f.upn).await;
    for i in 0..30 {
        let r = submit(&http, &srv.base, &step, "Tr0ub4dor&3").await;
        assert_eq!(r.0, 200, "attempt {i}: {}", r.1);
        assert!(r.1.contains(INCORRECT), "attempt {i}: {}", r.1);
    }
    let status = lockout_of(&admin, &f.upn).await;
    println!("same wrong password x30: {status}");
    assert_eq!(status["locked"], false, "{status}");
    assert_eq!(status["unfamiliarFailures"], 1, "{status}");
    assert_eq!(status["familiarFailures"], 0, "{status}");
    let t = tally(&sign_ins(&admin, &f.upn).await);
    assert_eq!(count(&t, "invalidPassword", "allowed"), 30, "{t:?}");
    assert_eq!(t.len(), 1, "{t:?}");

    assert_signed_in(&submit(&http, &srv.base, &step, &f.password).await);
    let status = lockout_of(&admin, &f.upn).await;
    assert_eq!(status["unfamiliarFailures"], 0, "{status}");
    assert_eq!(
        status["familiarNetworks"],
        json!(["192.0.2.0/24"]),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_locks_grow_unlock_and_report_only() {
    const HOME: &str = "10.20.30.40";
    const ATTACKER: &str = "203.0.113.66";
    const ELSEWHERE: &str = "198.51.100.23";
    let srv = InProcess::start_with(|c| c.trust_forwarded_for = true).await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.as_str();
    let now = || srv.clock.now().millis();
    let records_from = |records: &[Value], ip: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["ipAddress"] == ip)
            .cloned()
            .collect()
    };

    // The owner signs in from home: that network is familiar.
    assert_signed_in(&sign_in_from(HOME, base, &f.client_id, &f.upn, &f.password).await);

    // Ten different wrong passwords from elsewhere lock the unfamiliar counter for 60 s.
    let attacker = browser_at(ATTACKER);
    let step = open(&attacker, base, &f.client_id, &f.upn).await;
    let mut wrong_page = String::new();
    for i in 0..10 {
        let r = submit(&attacker, base, &step, &format!("wrong-{i}")).await;
        assert_incorrect(&r);
        wrong_page = r.1;
    }
    let status = lockout_of(&admin, &f.upn).await;
    assert_eq!(status["locked"], true, "{status}");
    assert_eq!(
        status["unfamiliarLockedUntil"].as_i64(),
        Some(now() + 60_000),
        "{status}"
    );
    assert_eq!(status["unfamiliarLocks"], 1, "{status}");
    assert_eq!(status["familiarFailures"], 0, "{status}");
    // The right password from there is refused, with exactly the wrong-password page.
    let r = submit(&attacker, base, &step, &f.password).await;
    assert_incorrect(&r);
    assert_eq!(
        r.1, wrong_page,
        "a lock looks exactly like a wrong password"
    );
    let rec = &sign_ins(&admin, &f.upn).await[0];
    assert_eq!(rec["failureReason"], "accountLockedSmartLockout", "{rec}");
    assert_eq!(rec["lockoutDecision"], "locked", "{rec}");
    assert_eq!(rec["ipAddress"], ATTACKER, "{rec}");

    // The owner at home is not held up by it.
    assert_signed_in(&sign_in_from(HOME, base, &f.client_id, &f.upn, &f.password).await);
    let rec = &sign_ins(&admin, &f.upn).await[0];
    assert_eq!(rec["result"], "success", "{rec}");
    assert_eq!(rec["lockoutDecision"], "allowed", "{rec}");
    assert_eq!(rec["ipAddress"], HOME, "{rec}");
    let status = lockout_of(&admin, &f.upn).await;
    assert_eq!(
        status["locked"], true,
        "the attacker's lock stays: {status}"
    );

    // After the lock one more wrong password locks again at once, twice as long.
    srv.clock.advance_secs(61);
    let status = lockout_of(&admin, &f.upn).await;
    assert_eq!(status["locked"], false, "{status}");
    assert_incorrect(&submit(&attacker, base, &step, "wrong-10").await);
    let status = lockout_of(&admin, &f.upn).await;
    println!("second lock: {status}");
    assert_eq!(status["locked"], true, "{status}");
    assert_eq!(status["unfamiliarLocks"], 2, "{status}");
    assert_eq!(
        status["unfamiliarLockedUntil"].as_i64(),
        Some(now() + 120_000),
        "{status}"
    );
    assert_incorrect(&submit(&attacker, base, &step, &f.password).await);
    assert_eq!(
        sign_ins(&admin, &f.upn).await[0]["failureReason"],
        "accountLockedSmartLockout"
    );

    // An administrator unlocks: the right password works at once, and the change is audited.
    let (s, v) = admin
        .call(
            reqwest::Method::POST,
            &format!("/users/{}/lockout/unlock", f.upn),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"]["locked"], false, "{v}");
    assert_signed_in(&submit(&attacker, base, &step, &f.password).await);
    let audits = admin
        .get("/auditLogs/directoryAudits?action=unlockUser")
        .await;
    let row = &audits["value"][0];
    println!("unlock audit: {row}");
    assert_eq!(row["action"], "unlockUser", "{audits}");
    assert_eq!(row["targetId"], f.user_id.as_str(), "{row}");
    assert_eq!(row["before"]["locked"], true, "{row}");
    assert_eq!(row["after"]["locked"], false, "{row}");

    // Report-only: past the threshold the attempts are still checked, the right password
    // signs in, and the records say what enforcement would have done.
    let (s, v) = put_policy(&admin, policy(10, 60, "reportOnly")).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        warnings(&v).iter().any(|w| w.contains("report-only")),
        "{v}"
    );
    let elsewhere = browser_at(ELSEWHERE);
    let step = open(&elsewhere, base, &f.client_id, &f.upn).await;
    for i in 0..12 {
        assert_incorrect(&submit(&elsewhere, base, &step, &format!("other-{i}")).await);
    }
    assert_signed_in(&submit(&elsewhere, base, &step, &f.password).await);
    let t = tally(&records_from(&sign_ins(&admin, &f.upn).await, ELSEWHERE));
    println!("report-only records: {t:?}");
    assert_eq!(count(&t, "invalidPassword", "allowed"), 10, "{t:?}");
    assert_eq!(count(&t, "invalidPassword", "reportOnlyLocked"), 2, "{t:?}");
    assert_eq!(count(&t, "success", "reportOnlyLocked"), 1, "{t:?}");
    assert_eq!(t.len(), 3, "{t:?}");

    // Out-of-range thresholds are refused, naming the field; the policy stays as it was.
    for bad in [0, 101] {
        let (s, v) = put_policy(&admin, policy(bad, 60, "enforced")).await;
        assert_eq!(s, 400, "threshold {bad}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("threshold"), "{v}");
    }
    let view = admin.get("/policies/smartLockout").await;
    assert_eq!(view["policy"], policy(10, 60, "reportOnly"), "{view}");
}

/// Two server nodes on one PostgreSQL database: 100 parallel distinct guesses at one cloud
/// account, half through each node, are counted on one row — at most the threshold of them
/// are checked, and the account ends locked on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_counts_across_two_nodes_on_postgres() {
    let db = crate::harness::fresh_postgres().await;
    let kek = cutover_server::crypto::KeyEncryptionKey::generate();
    let a = InProcess::start_node(&db, kek.clone(), None, |c| c.trust_forwarded_for = true).await;
    let b = InProcess::start_node(&db, kek, Some(a.creds.clone()), |c| {
        c.trust_forwarded_for = true
    })
    .await;
    let admin = Admin::login(&a.base, &a.creds).await;
    let f = seed(&admin, REDIRECT).await;
    // One open transaction per guess, alternately on each node, all prepared first.
    let mut steps = Vec::new();
    for i in 0..100 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let http = browser_at("203.0.113.9");
        let step = open(&http, base, &f.client_id, &f.upn).await;
        steps.push((http, base.clone(), step, format!("guess-{i}")));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(steps.len()));
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|(http, base, step, pw)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                submit(&http, &base, &step, &pw).await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.0, 200, "{}", r.1);
        assert!(r.1.contains(INCORRECT), "{}", r.1);
    }
    let t = tally(&sign_ins(&admin, &f.upn).await);
    println!("two nodes, 100 parallel guesses: {t:?}");
    assert_eq!(
        count(&t, "invalidPassword", "allowed"),
        10,
        "exactly the threshold checked: {t:?}"
    );
    assert_eq!(
        count(&t, "accountLockedSmartLockout", "locked"),
        90,
        "{t:?}"
    );
    // Locked for both nodes: the right password is refused on either.
    for base in [&a.base, &b.base] {
        let r = sign_in_from("203.0.113.9", base, &f.client_id, &f.upn, &f.password).await;
        assert!(r.1.contains(INCORRECT), "{base}: {r:?}");
    }
    let status = lockout_of(&admin, &f.upn).await;
    assert_eq!(status["locked"], true, "{status}");
}
