//! Passkey rollout campaigns end to end: progress over a generated population against a direct
//! count, the communications through a real SMTP server (Python's aiosmtpd, started by
//! `scripts/smtp-start.sh`) on schedule and never twice — even when the SMTP server or Cutover
//! itself is killed mid-send —, and a wave's enforcement through the Conditional Access gate
//! and its rollback.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cutover_core::Timestamp;
use cutover_core::device::DeviceFamily;
use cutover_server::campaigns::{SmtpSettings, SmtpTls};
use cutover_server::clock::Clock as _;
use cutover_store::{AuditEvent, PasskeyRecord};
use cutover_webauthn::soft::SoftAuthenticator;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Admin, InProcess, ServerProcess, scratch_dir};
use crate::passkey_e2e::{localhost_client, register_soft, secret_attempt, soft_sign_in};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const POLICIES: &str = "/identity/conditionalAccess/policies";
const DAY: i64 = 86_400;

// --- a real SMTP server ------------------------------------------------------------------------

/// The project's aiosmtpd sink (`e2e/smtp-sink.py` through `scripts/smtp-start.sh`).
pub(crate) struct Sink {
    pub dir: PathBuf,
    pub port: u16,
    pid: u32,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Sink {
    /// Start a sink on `port` (0: a free one) keeping its mail in `dir`.
    pub(crate) fn start(dir: &Path, port: u16, extra: &[&str]) -> Self {
        let out = Command::new(repo_root().join("scripts/smtp-start.sh"))
            .arg(dir)
            .arg(port.to_string())
            .args(extra)
            .output()
            .expect("scripts/smtp-start.sh runs");
        assert!(
            out.status.success(),
            "the SMTP sink did not start (run scripts/install-deps.sh for python3-aiosmtpd): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in {line:?}"))
                .to_owned()
        };
        Self {
            dir: dir.to_owned(),
            port: field("SMTP_PORT").parse().unwrap(),
            pid: field("SMTP_PID").parse().unwrap(),
        }
    }

    /// Kill it at once (no goodbye to its clients).
    pub(crate) fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }

    /// One JSON object per accepted message: mailFrom, rcptTos, messageId, file.
    pub(crate) fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The stored message of a log entry.
    pub(crate) fn message(&self, entry: &Value) -> cutover_smtp::inspect::ParsedMessage {
        let file = entry["file"].as_str().expect("file in the sink's log");
        let path = if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            self.dir.join(file)
        };
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        cutover_smtp::inspect::ParsedMessage::parse(&raw).expect("a parsable message")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait (bounded) until `check` holds; the delivery loop works in the background.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn smtp_to(sink_port: u16) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: sink_port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        ca_file: None,
    }
}

fn rfc(t: Timestamp) -> String {
    cutover_core::campaign::when::format_rfc3339(t)
}

// --- directory helpers ---------------------------------------------------------------------------

async fn domain(admin: &Admin) {
    admin
        .post(
            "/domains",
            json!({"id": "contoso.example", "authenticationType": "managed"}),
        )
        .await;
}

/// A user; returns its id.
async fn user(admin: &Admin, name: &str, mail: Option<&str>, manager: Option<&str>) -> String {
    let mut body = json!({"userPrincipalName": format!("{name}@contoso.example"),
        "displayName": name.to_uppercase(), "accountEnabled": true});
    if let Some(m) = mail {
        body["mail"] = json!(m);
    }
    if let Some(m) = manager {
        body["managerId"] = json!(m);
    }
    admin.post("/users", body).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `n` users `{prefix}00…` with their own address: their ids.
async fn users_with_mail(admin: &Admin, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{prefix}{i:02}");
        ids.push(user(admin, &name, Some(&format!("{name}@contoso.example")), None).await);
    }
    ids
}

/// The wall clock (for tests against a server process, which runs on it).
fn wall_now() -> Timestamp {
    Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

async fn group_of(admin: &Admin, name: &str, members: &[String]) -> String {
    let g = admin
        .post(
            "/groups",
            json!({"displayName": name, "membershipKind": "assigned"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for m in members {
        admin
            .post(&format!("/groups/{g}/members"), json!({"id": m}))
            .await;
    }
    g
}

/// A passkey stored directly (the progress and schedule tests need many, quickly).
async fn stored_passkey(srv: &InProcess, user_id: Uuid, family: DeviceFamily, at: Timestamp) {
    store_passkey(&*srv.state.store, user_id, family, at).await;
}

/// [`stored_passkey`] into any store (e.g. a server process's database, opened beside it).
async fn store_passkey(
    store: &dyn cutover_store::Store,
    user_id: Uuid,
    family: DeviceFamily,
    at: Timestamp,
) {
    let id = Uuid::now_v7();
    let record = PasskeyRecord {
        id,
        user_id,
        credential_id: format!("cred-{id}"),
        name: format!("{} passkey", family.label()),
        aaguid: Uuid::nil(),
        credential: "{}".into(),
        backup_eligible: true,
        backed_up: !matches!(family, DeviceFamily::SecurityKey),
        sign_count: 0,
        device_family: family.as_str().into(),
        attestation_format: "none".into(),
        attested: false,
        transports: vec![],
        created_at: at,
        last_used_at: None,
    };
    let audit = AuditEvent {
        id: Uuid::now_v7(),
        created_at: at,
        correlation_id: Uuid::now_v7(),
        actor: "test".into(),
        action: "registerPasskey".into(),
        target_type: "user".into(),
        target_id: user_id.to_string(),
        target_name: None,
        before: None,
        after: None,
    };
    store
        .add_passkey(&record, 100, &audit)
        .await
        .expect("passkey stored");
}

/// A campaign of one wave over `group`, enforcement `enforce_in` seconds from now.
async fn one_wave_campaign(
    admin: &Admin,
    now: Timestamp,
    group: &str,
    enforce_in: i64,
    policy: Option<&str>,
) -> (String, String) {
    let mut wave = json!({
        "displayName": "Finance", "phase": "department", "groupId": group,
        "registrationOpens": rfc(now.minus_secs(30 * DAY)),
        "enforcementDate": rfc(now.plus_secs(enforce_in)),
    });
    if let Some(p) = policy {
        wave["caPolicyId"] = json!(p);
    }
    let c = admin
        .post(
            "/campaigns",
            json!({"displayName": "Passkeys 2027", "waves": [wave]}),
        )
        .await;
    (
        c["id"].as_str().unwrap().to_owned(),
        c["waves"][0]["id"].as_str().unwrap().to_owned(),
    )
}

// --- progress ---------------------------------------------------------------------------------

/// A small deterministic generator (no dependency, same population every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_over_1000_users_matches_a_direct_count() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    domain(&admin).await;
    let now = srv.clock.now();
    let mut rng = Lcg(2027);
    // 1,000 users; 900 in the wave's group; passkeys of every family, 0–3 each, registered on
    // days spread over the last 20 days. The 100 outside the group have passkeys too (they
    // must not count).
    let mut members: Vec<(Uuid, String)> = Vec::new();
    let mut outsiders = Vec::new();
    for i in 0..1000 {
        let name = format!("u{i:04}");
        let id: Uuid = user(
            &admin,
            &name,
            Some(&format!("{name}@contoso.example")),
            None,
        )
        .await
        .parse()
        .unwrap();
        if i % 10 == 9 {
            outsiders.push(id);
        } else {
            members.push((id, name));
        }
    }
    let group = group_of(
        &admin,
        "Everyone",
        &members.iter().map(|m| m.0.to_string()).collect::<Vec<_>>(),
    )
    .await;
    // What the test expects, counted directly from what it generates.
    let mut per_user: HashMap<Uuid, Vec<(Timestamp, DeviceFamily)>> = HashMap::new();
    for (id, _) in &members {
        let n = match rng.next(10) {
            0..=2 => 0,
            3..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        for _ in 0..n {
            let fam = DeviceFamily::ALL[rng.next(DeviceFamily::ALL.len() as u64) as usize];
            let at = now.minus_secs((rng.next(20) as i64) * DAY + rng.next(DAY as u64) as i64);
            stored_passkey(&srv, *id, fam, at).await;
            per_user.entry(*id).or_default().push((at, fam));
        }
    }
    for id in &outsiders {
        stored_passkey(&srv, *id, DeviceFamily::IPhone, now.minus_secs(DAY)).await;
    }
    let (cid, wid) = one_wave_campaign(&admin, now, &group, 10 * DAY, None).await;

    let prog = admin
        .get(&format!("/campaigns/{cid}/progress?wave={wid}"))
        .await;
    let w = &prog["waves"][0];
    let enrolled = per_user.values().filter(|v| !v.is_empty()).count() as u64;
    let two = per_user.values().filter(|v| v.len() >= 2).count() as u64;
    assert_eq!(w["members"], 900, "{w}");
    assert_eq!(w["enrolled"], enrolled, "{w}");
    assert_eq!(w["twoOrMore"], two, "{w}");
    assert_eq!(w["stragglers"], 900 - enrolled, "{w}");
    let pct = w["enrolledPercent"].as_f64().unwrap();
    assert!(
        (pct - enrolled as f64 * 100.0 / 900.0).abs() < 0.01,
        "{pct}"
    );
    for fam in DeviceFamily::ALL {
        let users = per_user
            .values()
            .filter(|v| v.iter().any(|(_, f)| *f == fam))
            .count() as u64;
        let keys = per_user
            .values()
            .flatten()
            .filter(|(_, f)| *f == fam)
            .count() as u64;
        let got = &w["byDeviceFamily"][fam.as_str()];
        assert_eq!(got["users"], users, "{}: {got}", fam.as_str());
        assert_eq!(got["passkeys"], keys, "{}: {got}", fam.as_str());
    }
    // The series: the last day counts everyone enrolled now; a day ten days ago counts those
    // whose first passkey came before that day ended.
    let series = w["series"].as_array().unwrap();
    let last = series.last().unwrap();
    assert_eq!(last["enrolled"], enrolled, "{last}");
    assert_eq!(last["twoOrMore"], two, "{last}");
    let day_end =
        |t: Timestamp| Timestamp::from_millis((t.millis().div_euclid(DAY * 1000) + 1) * DAY * 1000);
    let ten_days_ago = now.minus_secs(10 * DAY);
    let label = cutover_core::campaign::when::format_rfc3339(ten_days_ago)[..10].to_owned();
    let point = series.iter().find(|p| p["day"] == label.as_str()).unwrap();
    let cut = day_end(ten_days_ago);
    let direct = per_user
        .values()
        .filter(|v| v.iter().any(|(at, _)| *at < cut))
        .count() as u64;
    assert_eq!(point["enrolled"], direct, "{point}");
    // By family on that day and today: members with a passkey of the family by the day's end.
    for (p, cut) in [(point, cut), (last, day_end(now))] {
        for fam in DeviceFamily::ALL {
            let direct = per_user
                .values()
                .filter(|v| v.iter().any(|(at, f)| *f == fam && *at < cut))
                .count() as u64;
            let got = p["byDeviceFamily"][fam.as_str()].as_u64().unwrap_or(0);
            assert_eq!(got, direct, "{} on {}: {p}", fam.as_str(), p["day"]);
        }
    }

    // The stragglers: the JSON list and the CSV agree with the count, and name the right people.
    let stragglers = admin
        .get(&format!(
            "/campaigns/{cid}/waves/{wid}/stragglers?format=json"
        ))
        .await;
    let listed: BTreeSet<String> = stragglers["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = members
        .iter()
        .filter(|(id, _)| per_user.get(id).is_none_or(Vec::is_empty))
        .map(|(_, n)| format!("{n}@contoso.example"))
        .collect();
    assert_eq!(listed, expected);
    let res = admin
        .http
        .get(format!(
            "{}/api/v1/campaigns/{cid}/waves/{wid}/stragglers?format=csv",
            admin.base
        ))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = res.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "userPrincipalName,displayName,mail,department,manager,accountEnabled"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), expected.len());
    for upn in expected.iter().take(20) {
        assert!(
            rows.iter().any(|r| r.starts_with(&format!("\"{upn}\""))),
            "{upn} in the CSV"
        );
    }
    let (status, v) = admin
        .call(
            Method::GET,
            &format!("/campaigns/{cid}/waves/{wid}/stragglers?format=xml"),
            None,
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // Offboarded accounts (disabled) leave every figure: 3 stragglers and 2 enrolled members.
    let (none, some): (Vec<_>, Vec<_>) = members
        .iter()
        .partition(|(id, _)| per_user.get(id).is_none_or(Vec::is_empty));
    let off: Vec<&(Uuid, String)> = none
        .iter()
        .take(3)
        .chain(some.iter().take(2))
        .copied()
        .collect();
    for (id, _) in &off {
        let (status, v) = admin
            .call(
                Method::PATCH,
                &format!("/users/{id}"),
                Some(json!({"accountEnabled": false})),
            )
            .await;
        assert!((200..300).contains(&status), "{v}");
    }
    let prog = admin
        .get(&format!("/campaigns/{cid}/progress?wave={wid}"))
        .await;
    let w = &prog["waves"][0];
    assert_eq!(w["members"], 895, "{w}");
    assert_eq!(w["disabledMembers"], 5, "{w}");
    assert_eq!(w["enrolled"], enrolled - 2, "{w}");
    assert_eq!(w["stragglers"], 895 - (enrolled - 2), "{w}");
    let left = admin
        .get(&format!(
            "/campaigns/{cid}/waves/{wid}/stragglers?format=json"
        ))
        .await;
    let names: BTreeSet<&str> = left["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    for (_, n) in off.iter().take(3) {
        assert!(
            !names.contains(format!("{n}@contoso.example").as_str()),
            "{n}"
        );
    }
}

// --- communications through a real SMTP server ------------------------------------------------

fn rcpts(entry: &Value) -> BTreeSet<String> {
    entry["rcptTos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_lowercase())
        .collect()
}

async fn run_due(admin: &Admin, cid: &str) -> Value {
    admin
        .post(&format!("/campaigns/{cid}/communications/run"), json!({}))
        .await
}

async fn outbox_states(admin: &Admin, cid: &str) -> BTreeMap<String, u64> {
    let v = admin.get(&format!("/campaigns/{cid}/communications")).await;
    v["outbox"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_go_out_on_schedule_to_the_right_people_once() {
    let dir = scratch_dir("smtp-schedule");
    let sink = Sink::start(&dir.join("mail"), 0, &[]);
    let port = sink.port;
    let srv = InProcess::start_with(|c| {
        c.campaigns.smtp = Some(smtp_to(port));
        c.campaigns.mail_from = "IT Security <it-security@contoso.example>".into();
        c.campaigns.helpdesk = Some("the IT desk".into());
        c.campaigns.outbox_poll = Duration::from_millis(100);
        c.campaigns.schedule_interval = Duration::from_secs(3600);
    })
    .await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    domain(&admin).await;
    let boss = user(&admin, "boss", Some("boss@contoso.example"), None).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        let name = format!("member{n}");
        ids.push(
            user(
                &admin,
                &name,
                Some(&format!("{name}@contoso.example")),
                Some(&boss),
            )
            .await,
        );
    }
    // One member has no address: skipped, and said so.
    ids.push(user(&admin, "nomail", None, Some(&boss)).await);
    let group = group_of(&admin, "Finance", &ids).await;
    let now = srv.clock.now();
    // The announcement (T-7) was due a minute ago.
    let (cid, wid) = one_wave_campaign(&admin, now, &group, 7 * DAY - 60, None).await;

    let run = run_due(&admin, &cid).await;
    assert_eq!(run["messages"], 5, "{run}");
    assert_eq!(run["decided"][0]["step"], "announcement", "{run}");
    let skipped = run["decided"][0]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{run}");
    assert_eq!(skipped[0]["reason"], "noMail", "{run}");
    // A second pass (or another node) decides nothing more.
    let again = run_due(&admin, &cid).await;
    assert_eq!(again["messages"], 0, "{again}");
    until("5 announcements", Duration::from_secs(30), || async {
        sink.log().len() >= 5
    })
    .await;
    let log = sink.log();
    assert_eq!(log.len(), 5);
    let to: BTreeSet<String> = log.iter().flat_map(rcpts).collect();
    let expected: BTreeSet<String> = (1..=5)
        .map(|n| format!("member{n}@contoso.example"))
        .collect();
    assert_eq!(to, expected, "everyone with an address, no manager");
    for e in &log {
        assert_eq!(rcpts(e).len(), 1, "one recipient each: {e}");
        assert_eq!(e["mailFrom"], "it-security@contoso.example");
        let m = sink.message(e);
        assert!(m.header("Cc").is_none(), "no Cc on the announcement");
        let subject = m.decoded_header("Subject").unwrap();
        assert!(!subject.is_empty());
        let parts = m.parts();
        assert_eq!(parts.len(), 2, "text and HTML");
        let text = parts[0].decoded_text();
        assert!(
            text.contains(&format!("/my/enrol?c={cid}&w={wid}")),
            "the link to the enrolment page: {text}"
        );
        assert!(
            parts[1].decoded_text().contains("<a href="),
            "HTML with a link"
        );
    }
    let ids_sent: BTreeSet<&str> = log
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    assert_eq!(ids_sent.len(), 5, "distinct Message-IDs");

    // Two members register before the day.
    stored_passkey(&srv, ids[0].parse().unwrap(), DeviceFamily::IPhone, now).await;
    stored_passkey(&srv, ids[1].parse().unwrap(), DeviceFamily::Windows, now).await;

    // T-0: the day-of message goes to everyone with an address again.
    srv.clock.advance_secs(7 * DAY);
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let run = run_due(&admin, &cid).await;
    assert_eq!(run["decided"][0]["step"], "dayOf", "{run}");
    assert_eq!(run["messages"], 5, "{run}");
    until("5 day-of messages", Duration::from_secs(30), || async {
        sink.log().len() >= 10
    })
    .await;

    // T+7: the reminder goes to the three stragglers with an address, their manager in CC.
    srv.clock.advance_secs(7 * DAY);
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let run = run_due(&admin, &cid).await;
    assert_eq!(run["decided"][0]["step"], "reminder", "{run}");
    assert_eq!(run["messages"], 3, "{run}");
    until("3 reminders", Duration::from_secs(30), || async {
        sink.log().len() >= 13
    })
    .await;
    let log = sink.log();
    assert_eq!(log.len(), 13, "nothing more");
    for e in &log[10..] {
        let r = rcpts(e);
        assert!(
            r.contains("boss@contoso.example"),
            "manager in the envelope: {e}"
        );
        let m = sink.message(e);
        assert_eq!(
            m.addresses("Cc"),
            vec!["boss@contoso.example".to_owned()],
            "manager in CC"
        );
        let to = m.addresses("To");
        assert_eq!(to.len(), 1);
        assert!(
            ["member3", "member4", "member5"]
                .iter()
                .any(|n| to[0] == format!("{n}@contoso.example")),
            "a straggler: {to:?}"
        );
    }
    for e in &log[..10] {
        assert!(
            !rcpts(e).contains("boss@contoso.example"),
            "no CC before: {e}"
        );
    }
    let states = outbox_states(&admin, &cid).await;
    assert_eq!(states["sent"], 13, "{states:?}");
    assert_eq!(
        states["pending"] + states["failed"] + states["uncertain"],
        0,
        "{states:?}"
    );
    // The plan shows every step done, and the decisions are audited.
    let comms = admin.get(&format!("/campaigns/{cid}/communications")).await;
    assert!(
        comms["plan"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"]["state"] == "done"),
        "{comms}"
    );
    let audits = admin
        .get("/auditLogs/directoryAudits?action=sendCampaignStep")
        .await;
    assert_eq!(audits["value"].as_array().unwrap().len(), 3, "{audits}");

    // The metrics count them.
    let text = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l == "cutover_emails_total{result=\"sent\"} 13"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l == "cutover_email_outbox_messages{state=\"sent\"} 13"),
        "{text}"
    );

    // Preview and test-send.
    let preview = admin
        .post(
            &format!("/campaigns/{cid}/communications/preview"),
            json!({"waveId": wid, "step": "reminder"}),
        )
        .await;
    assert_eq!(preview["audience"]["recipients"], 3, "{preview}");
    assert_eq!(preview["audience"]["withManagerCc"], 3, "{preview}");
    assert!(
        preview["html"].as_str().unwrap().contains("<p>"),
        "{preview}"
    );
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/communications/testSend"),
            Some(json!({"waveId": wid, "step": "announcement", "to": "admin@contoso.example"})),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    until("the test e-mail", Duration::from_secs(30), || async {
        sink.log().len() >= 14
    })
    .await;
    let test = sink.log().pop().unwrap();
    assert_eq!(rcpts(&test), ["admin@contoso.example".to_owned()].into());
    assert!(
        sink.message(&test)
            .decoded_header("Subject")
            .unwrap()
            .starts_with("[Test] ")
    );
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/communications/testSend"),
            Some(
                json!({"waveId": wid, "step": "announcement", "to": "not an address\r\nBcc: x@y"}),
            ),
        )
        .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_smtp_server_mid_send_loses_nothing_and_duplicates_nothing() {
    let dir = scratch_dir("smtp-kill");
    let maildir = dir.join("mail");
    let sink = Sink::start(&maildir, 0, &["--delay-ms", "300"]);
    let port = sink.port;
    let srv = InProcess::start_with(|c| {
        c.campaigns.smtp = Some(smtp_to(port));
        c.campaigns.outbox_poll = Duration::from_millis(100);
        c.campaigns.schedule_interval = Duration::from_secs(3600);
    })
    .await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    domain(&admin).await;
    let ids = users_with_mail(&admin, "k", 12).await;
    let group = group_of(&admin, "Sales", &ids).await;
    let (cid, _) = one_wave_campaign(&admin, srv.clock.now(), &group, 7 * DAY - 60, None).await;
    assert_eq!(run_due(&admin, &cid).await["messages"], 12);
    until("3 delivered", Duration::from_secs(30), || async {
        sink.log().len() >= 3
    })
    .await;
    sink.kill();
    // The loop notices: nothing stays claimed or in transmission.
    until("the outbox to settle", Duration::from_secs(30), || async {
        let s = outbox_states(&admin, &cid).await;
        s["claimed"] + s["transmitting"] == 0
            && s["pending"] + s["sent"] + s["uncertain"] + s["failed"] == 12
    })
    .await;
    let settled = outbox_states(&admin, &cid).await;
    assert!(settled["pending"] > 0, "some wait for a retry: {settled:?}");
    assert_eq!(settled["failed"], 0, "{settled:?}");
    drop(sink);
    let sink = Sink::start(&maildir, port, &[]);
    // Retries wait 1, 2, 4… minutes: step the clock until the outbox is drained.
    for _ in 0..20 {
        let s = outbox_states(&admin, &cid).await;
        if s["pending"] + s["claimed"] + s["transmitting"] == 0 {
            break;
        }
        srv.clock.advance_secs(5 * 60);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let end = outbox_states(&admin, &cid).await;
    assert_eq!(end["sent"] + end["uncertain"], 12, "{end:?}");
    assert_eq!(end["failed"], 0, "{end:?}");
    let log = sink.log();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &log {
        *seen
            .entry(e["messageId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "no duplicates: {seen:?}");
    // Every message the outbox calls sent is at the server exactly once; the uncertain one (if
    // the kill came while a reply was pending) is there at most once and waits for a person.
    let outbox = admin.get(&format!("/campaigns/{cid}/outbox?top=100")).await;
    for m in outbox["value"].as_array().unwrap() {
        let id = m["messageId"].as_str().unwrap();
        match m["state"].as_str().unwrap() {
            "sent" => assert_eq!(seen.get(id), Some(&1), "{m}"),
            "uncertain" => assert!(seen.get(id).copied().unwrap_or(0) <= 1, "{m}"),
            other => panic!("unexpected state {other}: {m}"),
        }
    }
    assert!(end["uncertain"] <= 1, "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cutover_never_sends_twice() {
    let dir = scratch_dir("smtp-restart");
    let sink = Sink::start(&dir.join("mail"), 0, &["--delay-ms", "400"]);
    let data = dir.join("data");
    let port = sink.port.to_string();
    let args = [
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        port.as_str(),
        "--smtp-tls",
        "none",
        "--mail-from",
        "IT <it@contoso.example>",
        "--outbox-lease-secs",
        "5",
    ];
    let server = ServerProcess::start(&data, &args);
    let creds = server.credentials();
    let admin = Admin::login(&server.base, &creds).await;
    domain(&admin).await;
    let ids = users_with_mail(&admin, "r", 10).await;
    let group = group_of(&admin, "Ops", &ids).await;
    let now = wall_now();
    let (cid, _) = one_wave_campaign(&admin, now, &group, 7 * DAY - 60, None).await;
    assert_eq!(run_due(&admin, &cid).await["messages"], 10);
    until("2 delivered", Duration::from_secs(30), || async {
        sink.log().len() >= 2
    })
    .await;
    // Kill Cutover in the middle of the batch (SIGKILL: no chance to tidy up).
    drop(server);
    let at_kill = sink.log().len();
    assert!(at_kill < 10, "killed mid-send ({at_kill} delivered)");
    let server = ServerProcess::start(&data, &args);
    let admin = Admin::login(&server.base, &creds).await;
    until(
        "the restarted node to finish the batch",
        Duration::from_secs(60),
        || async {
            let s = outbox_states(&admin, &cid).await;
            s["sent"] + s["uncertain"] == 10
        },
    )
    .await;
    let end = outbox_states(&admin, &cid).await;
    let log = sink.log();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &log {
        *seen
            .entry(e["messageId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "no duplicates after the restart: {seen:?}"
    );
    assert!(
        end["uncertain"] <= 1,
        "at most the message in flight is uncertain: {end:?}"
    );
    // Every sent message arrived once; an uncertain one may or may not have.
    let n = log.len() as u64;
    assert!(
        n >= end["sent"] && n <= end["sent"] + end["uncertain"],
        "{n} in the sink, outbox {end:?}"
    );
    drop(server);
}

// --- enforcement and rollback ------------------------------------------------------------------

/// A report-only policy requiring phishing-resistant MFA of `group`.
fn passkeys_for(group: &str) -> Value {
    json!({
        "displayName": "Finance needs passkeys",
        "conditions": {
            "users": {"includeUsers": [], "includeGroups": [group]},
            "applications": {"includeApplications": ["All"]},
            "clientAppTypes": ["all"]
        },
        "grantControls": {"operator": "OR", "authenticationStrength": {"id": "phishingResistantMfa"}}
    })
}

async fn audits(admin: &Admin, action: &str) -> Vec<Value> {
    admin
        .get(&format!("/auditLogs/directoryAudits?action={action}"))
        .await["value"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_is_enforced_only_at_its_target_confirmed_and_through_the_gate_and_rolls_back() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    domain(&admin).await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(user(&admin, &format!("f{n:02}"), None, None).await);
    }
    let group = group_of(&admin, "Finance", &ids).await;
    let policy = admin.post(POLICIES, passkeys_for(&group)).await;
    let pid = policy["id"].as_str().unwrap().to_owned();
    assert_eq!(policy["state"], "enabledForReportingButNotEnforced");
    let now = srv.clock.now();
    let (cid, wid) = one_wave_campaign(&admin, now, &group, DAY, Some(&pid)).await;

    // The live checklist: passes are off, there are no break-glass accounts; the methods
    // policy and the CA policy are fine.
    let pre = admin.get(&format!("/campaigns/{cid}/prerequisites")).await;
    let checks: BTreeMap<String, bool> = pre["waves"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_owned(),
                c["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(checks["methodsPolicy"], "{pre}");
    assert!(!checks["tapPolicy"], "{pre}");
    assert!(!checks["breakGlass"], "{pre}");
    assert!(checks["caPolicy"], "{pre}");
    assert_eq!(pre["waves"][0]["ready"], false);
    crate::totp_e2e::enable_passes(&admin).await;
    let pre = admin.get(&format!("/campaigns/{cid}/prerequisites")).await;
    assert!(
        pre["waves"][0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["key"] == "tapPolicy" && c["ok"] == true),
        "{pre}"
    );

    // 18 of 20 (90 %) and not confirmed: refused with both reasons; the policy stays report-only.
    for id in &ids[..18] {
        stored_passkey(&srv, id.parse().unwrap(), DeviceFamily::Windows, now).await;
    }
    let enforce = format!("/campaigns/{cid}/waves/{wid}/enforce");
    let (status, v) = admin.call(Method::POST, &enforce, None).await;
    assert_eq!(status, 409, "{v}");
    let codes: BTreeSet<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains("enrolmentBelowTarget"), "{v}");
    assert!(codes.contains("notConfirmed"), "{v}");
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabledForReportingButNotEnforced"
    );

    // 19 of 20 is exactly 95 %; confirmed. Now the Conditional Access gate decides: no
    // report-only evidence yet, no break-glass accounts — refused, with its reasons.
    stored_passkey(&srv, ids[18].parse().unwrap(), DeviceFamily::MacOs, now).await;
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/waves/{wid}/confirm"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/waves/{wid}/confirm"),
            None,
        )
        .await;
    assert_eq!(status, 409, "confirmed twice: {v}");
    let (status, v) = admin.call(Method::POST, &enforce, None).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "enforcementGateRefused", "{v}");
    assert_eq!(v["gate"]["allowed"], false, "{v}");
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabledForReportingButNotEnforced"
    );

    // Forced past the gate (audited twice: the wave and the policy).
    let (status, v) = admin
        .call(Method::POST, &format!("{enforce}?force=true"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["policy"]["state"], "enabled", "{v}");
    assert_eq!(
        v["campaign"]["waves"][0]["status"]["enforcement"], "enforced",
        "{v}"
    );
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabled"
    );
    assert_eq!(audits(&admin, "forceEnforceCampaignWave").await.len(), 1);
    assert_eq!(
        audits(&admin, "forceEnableConditionalAccessPolicy")
            .await
            .len(),
        1
    );
    // Replaying the definition without wave ids keeps the wave (matched by its group): no new
    // wave, no e-mail decided again; an enforced wave's policy cannot be swapped.
    let replay = json!({"waves": [{
        "displayName": "Finance", "phase": "department", "groupId": group,
        "registrationOpens": rfc(now.minus_secs(30 * DAY)),
        "enforcementDate": rfc(now.plus_secs(2 * DAY)), "caPolicyId": pid}]});
    let (status, v) = admin
        .call(Method::PATCH, &format!("/campaigns/{cid}"), Some(replay))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["waves"][0]["id"], wid.as_str(), "{v}");
    assert_eq!(v["waves"][0]["status"]["enforcement"], "enforced", "{v}");
    let other = admin.post(POLICIES, json!({
        "displayName": "Another",
        "conditions": {"users": {"includeGroups": [group]}, "applications": {"includeApplications": ["All"]}, "clientAppTypes": ["all"]},
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}})).await;
    let swap = json!({"waves": [{
        "id": wid, "displayName": "Finance", "phase": "department", "groupId": group,
        "registrationOpens": rfc(now.minus_secs(30 * DAY)),
        "enforcementDate": rfc(now.plus_secs(2 * DAY)), "caPolicyId": other["id"]}]});
    let (status, v) = admin
        .call(Method::PATCH, &format!("/campaigns/{cid}"), Some(swap))
        .await;
    assert_eq!(status, 409, "{v}");
    // An enforced wave's campaign cannot be deleted (its policy would be left on).
    let (status, v) = admin
        .call(Method::DELETE, &format!("/campaigns/{cid}"), None)
        .await;
    assert_eq!(status, 409, "{v}");

    // Roll back: the policy is report-only again, nothing is deleted, confirmation is needed again.
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/waves/{wid}/rollback"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["campaign"]["waves"][0]["status"]["enforcement"], "rolledBack",
        "{v}"
    );
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabledForReportingButNotEnforced"
    );
    let prog = admin.get(&format!("/campaigns/{cid}/progress")).await;
    assert_eq!(
        prog["waves"][0]["enrolled"], 19,
        "no passkey deleted: {prog}"
    );
    assert_eq!(audits(&admin, "rollBackCampaignWave").await.len(), 1);
    let history: Vec<String> = v["campaign"]["waves"][0]["status"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, ["confirm", "forceEnforce", "rollBack"]);
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/waves/{wid}/rollback"),
            None,
        )
        .await;
    assert_eq!(status, 409, "rolled back twice: {v}");
    let (status, v) = admin.call(Method::POST, &enforce, None).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "notConfirmed"),
        "{v}"
    );
}

/// The gate without force: two members enrol with passkeys (after a pass), sign in with them
/// two days later, two break-glass accounts are drilled — 48 h of report-only evidence with
/// nobody interrupted — and the wave is enforced; a member without a passkey is then blocked
/// from the password path, and the rollback lets them in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_enforces_a_ready_wave_without_force_and_the_rollback_reopens_the_door() {
    let srv =
        InProcess::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let base = srv.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = crate::harness::seed(&admin, REDIRECT).await;
    crate::totp_e2e::enable_passes(&admin).await;
    let pass_for = |upn: String| {
        let admin = &admin;
        async move {
            admin
                .post(
                    &format!("/users/{upn}/authentication/temporaryAccessPassMethods"),
                    json!({"isUsableOnce": true, "lifetimeInMinutes": 60}),
                )
                .await["temporaryAccessPass"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let m1 = user(&admin, "alice", Some("alice@contoso.example"), None).await;
    let m2 = user(&admin, "bob", Some("bob@contoso.example"), None).await;
    let group = group_of(&admin, "Finance", &[m1.clone(), m2.clone()]).await;
    let policy = admin.post(POLICIES, passkeys_for(&group)).await;
    let pid = policy["id"].as_str().unwrap().to_owned();
    let (cid, wid) = one_wave_campaign(&admin, srv.clock.now(), &group, DAY, Some(&pid)).await;

    // Both members register a passkey after a pass sign-in.
    let mut keys = Vec::new();
    for name in ["alice", "bob"] {
        let upn = format!("{name}@contoso.example");
        let pass = pass_for(upn.clone()).await;
        let http = localhost_client(&srv.base);
        let r = secret_attempt(&http, &base, &f.client_id, &upn, &pass).await;
        assert!(r.as_ref().is_ok_and(|r| r.contains("code=")), "{r:?}");
        let device = SoftAuthenticator::new(Uuid::nil());
        let cred = register_soft(&http, &base, &device, &format!("{name}'s key"))
            .await
            .expect("registered");
        // A crafted link cannot make Cutover's page say something it did not say.
        let page = http
            .get(format!(
                "{base}/my/enrol?error=Call+us+on+555-0100&sig=forged"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Set up your passkey"), "{page}");
        assert!(
            !page.contains("555-0100"),
            "an unsigned message is not shown"
        );
        keys.push((device, cred));
    }
    // Two break-glass accounts, signed in and drilled.
    for n in [1, 2] {
        let upn = format!("glass{n}@contoso.example");
        admin
            .post(
                "/users",
                json!({"userPrincipalName": upn, "displayName": format!("Glass {n}"),
                       "accountEnabled": true, "breakGlass": true}),
            )
            .await;
        let pass = pass_for(upn.clone()).await;
        let http = localhost_client(&srv.base);
        let r = secret_attempt(&http, &base, &f.client_id, &upn, &pass).await;
        assert!(r.is_ok(), "{r:?}");
        let (status, v) = admin
            .call(
                Method::POST,
                "/breakGlass/drills",
                Some(json!({"user": upn})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/waves/{wid}/confirm"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // Two days later the members sign in with their passkeys (report-only success).
    srv.clock.advance_secs(49 * 3600);
    for (device, cred) in &mut keys {
        let r = soft_sign_in(&base, &srv.base, &f.client_id, device, cred, false).await;
        assert!(r.as_ref().is_ok_and(|r| r.contains("code=")), "{r:?}");
    }
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let pre = admin.get(&format!("/campaigns/{cid}/prerequisites")).await;
    assert_eq!(pre["waves"][0]["ready"], true, "{pre}");
    // A double click: two enforcements at once. One enforces; the other is refused, and
    // neither leaves the policy disagreeing with the wave.
    let enforce_path = format!("/campaigns/{cid}/waves/{wid}/enforce");
    let (a, b) = tokio::join!(
        admin.call(Method::POST, &enforce_path, None),
        admin.call(Method::POST, &enforce_path, None)
    );
    let mut outcomes = [a, b];
    outcomes.sort_by_key(|(s, _)| *s);
    let [(status, v), (second, refused)] = outcomes;
    assert_eq!(status, 200, "{v}");
    assert_eq!(second, 409, "{refused}");
    let code = refused["error"]["code"].as_str().unwrap_or_default();
    assert!(
        [
            "waveNotReady",
            "waveAlreadyEnforced",
            "enforcementGateRefused",
            "conflict"
        ]
        .contains(&code),
        "{refused}"
    );
    let p = admin.get(&format!("{POLICIES}/{pid}")).await;
    assert_eq!(p["state"], "enabled", "the policy stays on: {p}");
    let c = admin.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(c["waves"][0]["status"]["enforcement"], "enforced", "{c}");
    // A later click is refused up front, naming why.
    let (status_again, again) = admin.call(Method::POST, &enforce_path, None).await;
    assert_eq!(status_again, 409, "{again}");
    assert!(
        again["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "alreadyEnforced"),
        "{again}"
    );
    assert_eq!(
        v["policy"]["enforcementGate"]["gate"]["allowed"], true,
        "{v}"
    );
    assert_eq!(audits(&admin, "enforceCampaignWave").await.len(), 1);
    assert!(audits(&admin, "forceEnforceCampaignWave").await.is_empty());

    // Enforced: a password alone no longer gets Alice in (she must use her passkey).
    admin
        .call(
            Method::PATCH,
            &format!("/users/{m1}"),
            Some(json!({"passwordProfile": {"password": "Alice-Password-123"}})),
        )
        .await;
    let http = localhost_client(&srv.base);
    let blocked = secret_attempt(
        &http,
        &base,
        &f.client_id,
        "alice@contoso.example",
        "Alice-Password-123",
    )
    .await;
    assert!(
        !blocked.as_ref().is_ok_and(|r| r.contains("code=")),
        "a password alone is not enough once enforced: {blocked:?}"
    );
    // Rolled back: report-only again, the password works again, the passkeys are still there.
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/waves/{wid}/rollback"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let http = localhost_client(&srv.base);
    let open = secret_attempt(
        &http,
        &base,
        &f.client_id,
        "alice@contoso.example",
        "Alice-Password-123",
    )
    .await;
    assert!(open.as_ref().is_ok_and(|r| r.contains("code=")), "{open:?}");
    let prog = admin.get(&format!("/campaigns/{cid}/progress")).await;
    assert_eq!(prog["waves"][0]["enrolled"], 2, "{prog}");
}

// --- the relay with STARTTLS and AUTH ----------------------------------------------------------

/// A self-signed certificate for 127.0.0.1 (PEM chain, PEM key) written into `dir`.
fn relay_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (c, k) = (dir.join("relay.pem"), dir.join("relay.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_is_reached_over_starttls_with_auth_and_a_wrong_password_holds_the_mail() {
    let dir = scratch_dir("smtp-tls");
    let (cert, key) = relay_certificate(&dir.join("tls"));
    let sink = Sink::start(
        &dir.join("mail"),
        0,
        &[
            "--starttls-cert",
            cert.to_str().unwrap(),
            "--starttls-key",
            key.to_str().unwrap(),
            "--auth",
            "cutover:relay-secret",
            "--require-auth",
        ],
    );
    for (password, delivered) in [("relay-secret", true), ("wrong", false)] {
        let port = sink.port;
        let ca = cert.clone();
        let srv = InProcess::start_with(move |c| {
            c.campaigns.smtp = Some(SmtpSettings {
                host: "127.0.0.1".into(),
                port,
                tls: SmtpTls::StartTls,
                username: Some("cutover".into()),
                password: Some(cutover_core::Secret::new(password)),
                ca_file: Some(ca),
            });
            c.campaigns.outbox_poll = Duration::from_millis(100);
            c.campaigns.schedule_interval = Duration::from_secs(3600);
        })
        .await;
        let admin = Admin::login(&srv.base, &srv.creds).await;
        domain(&admin).await;
        let u = user(&admin, "tls1", Some("tls1@contoso.example"), None).await;
        let group = group_of(&admin, "Tls", &[u]).await;
        let (cid, wid) = one_wave_campaign(&admin, srv.clock.now(), &group, 30 * DAY, None).await;
        let before = sink.log().len();
        let (status, v) = admin
            .call(
                Method::POST,
                &format!("/campaigns/{cid}/communications/testSend"),
                Some(json!({"waveId": wid, "step": "announcement", "to": "ops@contoso.example"})),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        until(
            "the test e-mail's outcome",
            Duration::from_secs(30),
            || async {
                let s = outbox_states(&admin, &cid).await;
                let o = admin.get(&format!("/campaigns/{cid}/outbox")).await;
                s["sent"] == 1 || o["value"][0]["lastError"].is_string()
            },
        )
        .await;
        let states = outbox_states(&admin, &cid).await;
        let outbox = admin.get(&format!("/campaigns/{cid}/outbox")).await;
        let m = &outbox["value"][0];
        let relay_up = crate::metrics_e2e::value(
            &crate::metrics_e2e::scrape(&admin).await,
            "cutover_smtp_relay_up",
        );
        if delivered {
            assert_eq!(states["sent"], 1, "{outbox}");
            assert_eq!(sink.log().len(), before + 1);
            assert_eq!(relay_up, Some(1.0));
        } else {
            // 535: the relay refuses Cutover's settings. That says nothing about the message:
            // it waits, its retries untouched, with the relay's answer as its last error.
            assert_eq!(states["failed"], 0, "{outbox}");
            assert_eq!(m["state"], "pending", "{m}");
            assert_eq!(m["attempts"], 0, "{m}");
            let err = m["lastError"].as_str().unwrap();
            assert!(
                err.contains("535") || err.to_lowercase().contains("auth"),
                "{err}"
            );
            assert!(!err.contains("wrong"), "no password in the error: {err}");
            assert_eq!(sink.log().len(), before, "nothing delivered");
            assert_eq!(relay_up, Some(0.0), "/metrics says the relay is down");
            // Nothing failed: a bulk resend has nothing to do.
            let v = admin
                .post(&format!("/campaigns/{cid}/outbox/resendFailed"), json!({}))
                .await;
            assert_eq!(v["resent"], 0, "{v}");
        }
    }
}

/// Messages the relay refused for good (an unknown recipient) are failed; once the cause is
/// fixed, one action sends every failed message of the campaign again, audited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_message_is_sent_again_in_one_step() {
    let dir = scratch_dir("smtp-bulk-resend");
    let sink = Sink::start(&dir.join("mail"), 0, &["--reject-rcpt", "bounce"]);
    let port = sink.port;
    let srv = InProcess::start_with(move |c| {
        c.campaigns.smtp = Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            ca_file: None,
        });
        c.campaigns.outbox_poll = Duration::from_millis(100);
        c.campaigns.schedule_interval = Duration::from_secs(3600);
    })
    .await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    domain(&admin).await;
    let mut ids = users_with_mail(&admin, "bounce", 2).await;
    ids.push(user(&admin, "fine", Some("fine@contoso.example"), None).await);
    let group = group_of(&admin, "Bulk", &ids).await;
    let (cid, _) = one_wave_campaign(&admin, srv.clock.now(), &group, 7 * DAY - 60, None).await;
    assert_eq!(run_due(&admin, &cid).await["messages"], 3);
    until("1 sent, 2 failed", Duration::from_secs(30), || async {
        let s = outbox_states(&admin, &cid).await;
        s["sent"] == 1 && s["failed"] == 2
    })
    .await;
    let failed = admin
        .get(&format!("/campaigns/{cid}/outbox?state=failed"))
        .await;
    for m in failed["value"].as_array().unwrap() {
        assert_eq!(m["attempts"], 1, "a 550 is not retried: {m}");
        assert!(m["lastError"].as_str().unwrap().contains("550"), "{m}");
    }
    let v = admin
        .post(&format!("/campaigns/{cid}/outbox/resendFailed"), json!({}))
        .await;
    assert_eq!(v["resent"], 2, "{v}");
    let a = audits(&admin, "resendFailedCampaignMessages").await;
    assert_eq!(a.len(), 1, "{a:?}");
    // (The relay still refuses them: they fail again, each after one more attempt.)
    until("2 failed again", Duration::from_secs(30), || async {
        let o = admin
            .get(&format!("/campaigns/{cid}/outbox?state=failed"))
            .await;
        o["value"].as_array().is_some_and(|v| v.len() == 2)
    })
    .await;
    assert_eq!(outbox_states(&admin, &cid).await["sent"], 1);
    assert_eq!(sink.log().len(), 1, "the one good address got one e-mail");
    let after = admin
        .get(&format!("/campaigns/{cid}/outbox?state=failed"))
        .await;
    for m in after["value"].as_array().unwrap() {
        assert_eq!(m["attempts"], 1, "counted from 0 again: {m}");
    }
    let counter = crate::metrics_e2e::value(
        &crate::metrics_e2e::scrape(&admin).await,
        "cutover_emails_total{result=\"failed\"}",
    );
    assert_eq!(counter, Some(4.0), "two failures, twice");
}

// --- the CLI ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_commands_drive_the_api() {
    use crate::federation_cli::cli;
    let dir = scratch_dir("campaigns-cli");
    let sink = Sink::start(&dir.join("mail"), 0, &[]);
    let port = sink.port.to_string();
    let server = ServerProcess::start(
        &dir,
        &[
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &port,
            "--smtp-tls",
            "none",
        ],
    );
    let admin = Admin::login(&server.base, &server.credentials()).await;
    domain(&admin).await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        let name = format!("c{n}");
        ids.push(
            user(
                &admin,
                &name,
                Some(&format!("{name}@contoso.example")),
                None,
            )
            .await,
        );
    }
    let group = group_of(&admin, "Finance", &ids).await;
    let run = |args: &[&str], code: i32| {
        let r = cli(&dir, args, "");
        assert_eq!(
            r.code, code,
            "cutover admin {args:?}: exit {}\n{}\n{}",
            r.code, r.out, r.err
        );
        r
    };
    let r = run(&["campaigns", "list"], 0);
    assert!(r.out.starts_with("No campaigns yet"), "{}", r.out);
    let now = wall_now();
    let file = dir.join("campaign.json");
    std::fs::write(
        &file,
        json!({"displayName": "Passkeys 2027", "waves": [{
            "displayName": "Finance", "phase": "department", "groupId": group,
            "registrationOpens": rfc(now.minus_secs(DAY)),
            "enforcementDate": rfc(now.plus_secs(7 * DAY - 60)),
        }]})
        .to_string(),
    )
    .unwrap();
    let r = run(
        &["campaigns", "create", "--file", file.to_str().unwrap()],
        0,
    );
    assert!(
        r.out.contains("Created the campaign 'Passkeys 2027'"),
        "{}",
        r.out
    );
    // A bad file is refused with the field named.
    std::fs::write(
        &file,
        json!({"displayName": "Broken", "waves": [{
            "displayName": "X", "phase": "pilot", "groupId": group,
            "registrationOpens": rfc(now), "enforcementDate": rfc(now.minus_secs(DAY)),
        }]})
        .to_string(),
    )
    .unwrap();
    let r = run(
        &["campaigns", "create", "--file", file.to_str().unwrap()],
        1,
    );
    assert!(r.err.contains("waves[0]"), "{}", r.err);

    // Two of three enrol (written straight into the server's database).
    let store = cutover_store::connect(&format!("sqlite:{}", dir.join("cutover.db").display()))
        .await
        .unwrap();
    for (i, fam) in [(0, DeviceFamily::IPhone), (1, DeviceFamily::Windows)] {
        store_passkey(&*store, ids[i].parse().unwrap(), fam, now).await;
    }
    let r = run(&["campaigns", "list"], 0);
    assert!(
        r.out.contains("Finance") && r.out.contains("registering"),
        "{}",
        r.out
    );
    let r = run(&["campaigns", "progress", "Passkeys 2027"], 0);
    assert!(r.out.contains("66.7 % enrolled (2 of 3"), "{}", r.out);
    assert!(
        r.out.contains("iPhone") && r.out.contains("windows"),
        "{}",
        r.out
    );
    let r = run(&["campaigns", "show", "Passkeys 2027"], 0);
    assert!(r.out.contains("Wave 'Finance': NOT ready"), "{}", r.out);
    assert!(r.out.contains("[ ] At least 2 break-glass"), "{}", r.out);
    let csv = dir.join("stragglers.csv");
    let r = run(
        &[
            "campaigns",
            "stragglers",
            "Passkeys 2027",
            "Finance",
            "--csv",
            csv.to_str().unwrap(),
        ],
        0,
    );
    assert!(r.out.contains("Wrote 1 straggler(s)"), "{}", r.out);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.contains("\"c3@contoso.example\""), "{text}");
    let r = run(&["campaigns", "stragglers", "Passkeys 2027", "Nope"], 1);
    assert!(r.err.contains("its waves are: Finance"), "{}", r.err);
    let r = run(
        &[
            "campaigns",
            "preview",
            "Passkeys 2027",
            "Finance",
            "reminder",
        ],
        0,
    );
    assert!(
        r.out
            .contains("Audience now: 1 recipient(s), 0 with their manager in CC"),
        "{}",
        r.out
    );
    let r = run(&["campaigns", "send-due", "Passkeys 2027"], 0);
    assert!(
        r.out.contains("1 step(s) decided, 3 e-mail(s)"),
        "{}",
        r.out
    );
    let r = run(&["campaigns", "send-due", "Passkeys 2027"], 0);
    assert!(
        r.out.contains("0 step(s) decided, 0 e-mail(s)"),
        "{}",
        r.out
    );
    let r = run(
        &[
            "campaigns",
            "test-send",
            "Passkeys 2027",
            "Finance",
            "dayOf",
            "--to",
            "me@contoso.example",
        ],
        0,
    );
    assert!(
        r.out.contains("Queued a test e-mail to me@contoso.example"),
        "{}",
        r.out
    );
    until("4 e-mails", Duration::from_secs(30), || async {
        sink.log().len() >= 4
    })
    .await;
    let r = run(&["campaigns", "comms", "Passkeys 2027"], 0);
    assert!(
        r.out.contains("announcement") && r.out.contains("done"),
        "{}",
        r.out
    );
    let r = run(
        &["campaigns", "outbox", "Passkeys 2027", "--state", "sent"],
        0,
    );
    assert_eq!(
        r.out.lines().filter(|l| l.contains("sent")).count(),
        4,
        "{}",
        r.out
    );
    // Not at the target: enforcement is refused, with the reasons, and nothing changes.
    run(&["campaigns", "confirm", "Passkeys 2027", "Finance"], 0);
    let r = run(
        &["campaigns", "enforce", "Passkeys 2027", "Finance", "--yes"],
        1,
    );
    assert!(r.err.contains("Not enforced:"), "{}", r.err);
    assert!(r.err.contains("target"), "{}", r.err);
    let r = run(&["campaigns", "rollback", "Passkeys 2027", "Finance"], 1);
    assert!(r.err.to_lowercase().contains("not enforced"), "{}", r.err);
    let r = run(&["campaigns", "delete", "Passkeys 2027"], 1);
    assert!(r.err.contains("--yes"), "{}", r.err);
    let r = run(&["campaigns", "delete", "Passkeys 2027", "--yes"], 0);
    assert!(r.out.contains("Deleted"), "{}", r.out);
    drop(server);
}
