//! The passkey-campaign phases of `cutover bench`.
//!
//! - Core: a wave's progress (`cutover_core::campaign::progress`: enrolled, two or more, by
//!   device family, the daily series, the stragglers) over a generated population, against
//!   the baseline of sorting the same passkeys by user and time once — the least any progress
//!   report must do.
//! - Server: campaign e-mails through the whole path — the step decided with its messages in
//!   one transaction, then claimed, staged, marked and committed by the delivery loop — to an
//!   SMTP sink in this process, against the baseline of the same SMTP client sending the same
//!   number of messages to the same sink directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use cutover_core::Timestamp;
use cutover_core::campaign::{PasskeyFact, progress};
use cutover_core::device::DeviceFamily;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

use super::{AdminApi, PHASE_TIME_LIMIT, Server, id_of, percentile};

/// The core phase's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressResult {
    pub members: usize,
    pub passkeys: usize,
    pub computations: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub sort_baseline_per_sec: f64,
    /// Progress computations per second ÷ sorts of the same passkeys per second.
    pub ratio: f64,
}

/// A small deterministic generator: the same population every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// `members` users, 0–3 passkeys each (about 1.4 on average) of every family, registered
/// over the last 60 days.
fn population(members: usize, now: Timestamp) -> (Vec<Uuid>, Vec<PasskeyFact>) {
    let mut rng = Lcg(9);
    let ids: Vec<Uuid> = (0..members)
        .map(|i| Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | i as u128))
        .collect();
    let mut facts = Vec::new();
    for id in &ids {
        let n = match rng.next(10) {
            0..=2 => 0,
            3..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        for _ in 0..n {
            facts.push(PasskeyFact {
                user_id: *id,
                created_at: now.minus_secs(rng.next(60 * 86_400) as i64),
                device_family: DeviceFamily::ALL[rng.next(DeviceFamily::ALL.len() as u64) as usize],
            });
        }
    }
    (ids, facts)
}

/// Progress of a wave of `members`, `rounds` times, against sorting its passkeys `rounds` times.
pub fn run_core(members: usize, rounds: usize, now: Timestamp) -> ProgressResult {
    let (ids, facts) = population(members, now);
    let from = now.minus_secs(90 * 86_400);
    let rounds = rounds.max(1);
    let bar = super::bar(rounds * 2, "core: campaign progress");
    let limit = Instant::now();
    let mut lat = Vec::with_capacity(rounds);
    let started = Instant::now();
    let mut checksum = 0u64;
    for _ in 0..rounds {
        let t = Instant::now();
        let p = progress(&ids, &facts, from, now);
        checksum = checksum.wrapping_add(p.enrolled);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        bar.inc(1);
        if limit.elapsed() > PHASE_TIME_LIMIT {
            break;
        }
    }
    let done = lat.len();
    let per_sec = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let started = Instant::now();
    let mut sorted = 0usize;
    for _ in 0..done {
        let mut keys: Vec<(Uuid, Timestamp)> =
            facts.iter().map(|f| (f.user_id, f.created_at)).collect();
        keys.sort_unstable();
        sorted += keys.len();
        bar.inc(1);
    }
    let sort_per_sec = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    bar.finish_and_clear();
    std::hint::black_box((checksum, sorted));
    lat.sort_by(f64::total_cmp);
    ProgressResult {
        members,
        passkeys: facts.len(),
        computations: done,
        per_sec,
        p50_ms: percentile(&lat, 50.0),
        sort_baseline_per_sec: sort_per_sec,
        ratio: per_sec / sort_per_sec.max(1e-9),
    }
}

/// An SMTP server in this process that accepts everything on 127.0.0.1 and counts the
/// messages; stopped when dropped.
pub struct Sink {
    pub port: u16,
    pub received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, counter.clone()));
            }
        });
        Ok(Self {
            port,
            received,
            task,
        })
    }
}

/// Longest line the sink reads; a longer one ends the session.
const MAX_SINK_LINE: usize = 4096;

async fn session(stream: tokio::net::TcpStream, counter: Arc<AtomicU64>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    if w.write_all(b"220 bench sink\r\n").await.is_err() {
        return;
    }
    let mut in_data = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r)
            .take(MAX_SINK_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let cmd = text.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if in_data {
            if cmd == "." {
                in_data = false;
                counter.fetch_add(1, Ordering::Relaxed);
                b"250 queued\r\n"
            } else {
                continue;
            }
        } else if cmd.starts_with("EHLO") {
            b"250-bench sink\r\n250 8BITMIME\r\n"
        } else if cmd == "DATA" {
            in_data = true;
            b"354 go on\r\n"
        } else if cmd == "QUIT" {
            let _ = w.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"250 ok\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn bench_message(i: usize) -> cutover_smtp::Message {
    cutover_smtp::Message {
        from: cutover_smtp::Mailbox::named("IT Security", "it@bench.example"),
        to: vec![cutover_smtp::Mailbox::new(format!("mail{i}@bench.example"))],
        cc: vec![],
        subject: "Passkeys are coming on 1 March".into(),
        text: "Hello,\n\nset up your passkey: https://login.bench.example/my/enrol\n".repeat(8),
        html: Some(
            "<p>Hello,</p><p>set up your passkey: <a href=\"https://login.bench.example/my/enrol\">here</a></p>"
                .repeat(8),
        ),
        message_id: format!("<{}@bench.example>", Uuid::new_v4()),
        date: 1_800_000_000,
        extra_headers: vec![],
    }
}

/// The baseline: `messages` sent by the SMTP client straight to the sink, over one connection.
pub async fn raw_smtp(sink: &Sink, messages: usize) -> anyhow::Result<f64> {
    let mut cfg = cutover_smtp::SmtpConfig::new("127.0.0.1".to_owned(), sink.port);
    cfg.tls = cutover_smtp::TlsMode::None;
    let bar = super::bar(messages, "baseline: raw SMTP sends");
    let started = Instant::now();
    let mut conn = cutover_smtp::SmtpConnection::connect(&cfg)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the bench sink: {e}"))?;
    for i in 0..messages {
        conn.send(&bench_message(i))
            .await
            .map_err(|e| anyhow::anyhow!("raw SMTP send: {e}"))?;
        bar.inc(1);
        if started.elapsed() > PHASE_TIME_LIMIT {
            bail!("the raw SMTP baseline took longer than {PHASE_TIME_LIMIT:?}");
        }
    }
    let per_sec = messages as f64 / started.elapsed().as_secs_f64().max(1e-9);
    conn.quit().await;
    bar.finish_and_clear();
    Ok(per_sec)
}

/// The server phase's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailResult {
    pub messages: usize,
    /// Time to decide the step: its audience, every message rendered, all written in one
    /// transaction.
    pub decide_ms: f64,
    pub outbox_per_sec: f64,
    pub raw_per_sec: f64,
    /// E-mails delivered per second through the outbox ÷ raw SMTP sends per second.
    pub ratio: f64,
}

/// `messages` wave members with an address, a campaign whose announcement is due, the step
/// decided, and every message delivered by the server's loop to `sink`.
pub async fn email_phase(
    server: &Server,
    sink: &Sink,
    messages: usize,
    raw_per_sec: f64,
    backend: &str,
) -> anyhow::Result<EmailResult> {
    let api = AdminApi::login(server).await?;
    let bar = super::bar(messages, &format!("[{backend}] seeding campaign members"));
    let mut ids = Vec::with_capacity(messages);
    for i in 0..messages {
        let u = api
            .post(
                "/users",
                json!({"userPrincipalName": format!("mail{i}@bench.example"),
                       "displayName": format!("Mail {i}"), "mail": format!("mail{i}@bench.example")}),
            )
            .await?;
        ids.push(id_of(&u)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let bar = super::bar(
        messages,
        &format!("[{backend}] adding them to the wave's group"),
    );
    let group = id_of(
        &api.post(
            "/groups",
            json!({"displayName": "Bench wave", "membershipKind": "assigned"}),
        )
        .await?,
    )?;
    for id in &ids {
        api.post(&format!("/groups/{group}/members"), json!({"id": id}))
            .await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let at = |secs: i64| cutover_core::campaign::when::format_rfc3339(Timestamp::from_secs(secs));
    let c = api
        .post(
            "/campaigns",
            json!({"displayName": "Bench campaign", "waves": [{
                "displayName": "Everyone", "phase": "organisation", "groupId": group,
                "registrationOpens": at(now - 86_400), "enforcementDate": at(now + 7 * 86_400 - 60)}]}),
        )
        .await?;
    let cid = id_of(&c)?;
    let before = sink.received.load(Ordering::Relaxed);
    let t = Instant::now();
    let run = api
        .post(&format!("/campaigns/{cid}/communications/run"), json!({}))
        .await?;
    let decide_ms = t.elapsed().as_secs_f64() * 1000.0;
    if run["messages"].as_u64() != Some(messages as u64) {
        bail!("[{backend}] the announcement should have {messages} messages: {run}");
    }
    let bar = super::bar(messages, &format!("[{backend}] campaign e-mails"));
    let t = Instant::now();
    loop {
        let got = sink.received.load(Ordering::Relaxed) - before;
        bar.set_position(got);
        if got >= messages as u64 {
            break;
        }
        if t.elapsed() > PHASE_TIME_LIMIT {
            bail!(
                "[{backend}] only {got} of {messages} campaign e-mails arrived within {PHASE_TIME_LIMIT:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outbox_per_sec = messages as f64 / t.elapsed().as_secs_f64().max(1e-9);
    bar.finish_and_clear();
    let comms = api.get(&format!("/campaigns/{cid}/communications")).await?;
    let sent = comms["outbox"]["sent"].as_u64().unwrap_or(0);
    if sent < messages as u64 {
        // The sink has them; the last marks may still be on their way.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(EmailResult {
        messages,
        decide_ms,
        outbox_per_sec,
        raw_per_sec,
        ratio: outbox_per_sec / raw_per_sec.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_population_is_deterministic_and_realistic() {
        let now = Timestamp::from_secs(1_800_000_000);
        let (ids, a) = population(1000, now);
        let (_, b) = population(1000, now);
        assert_eq!(ids.len(), 1000);
        assert_eq!(a.len(), b.len());
        let per_user = a.len() as f64 / 1000.0;
        assert!((1.0..2.0).contains(&per_user), "{per_user}");
        let p = progress(&ids, &a, now.minus_secs(90 * 86_400), now);
        assert!(p.enrolled > 600 && p.enrolled < 800, "{}", p.enrolled);
    }

    #[tokio::test]
    async fn the_sink_counts_what_the_client_sends() {
        let sink = Sink::start().await.unwrap();
        let per_sec = raw_smtp(&sink, 5).await.unwrap();
        assert!(per_sec > 0.0);
        assert_eq!(sink.received.load(Ordering::Relaxed), 5);
    }
}
