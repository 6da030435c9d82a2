//! The client against a real SMTP server: e2e/smtp-sink.py (Python aiosmtpd) with STARTTLS
//! (an rcgen certificate) and AUTH required. Fails — never skips — when python3/aiosmtpd is
//! missing: run scripts/install-deps.sh.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{
    Credentials, Kind, Mailbox, Message, ParsedMessage, SmtpConfig, SmtpConnection, Stage, TlsMode,
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$PYTHON`, else the first of `python3` and `/usr/bin/python3` that can import aiosmtpd
/// (Debian's python3-aiosmtpd is only visible to the system Python).
fn python_with_aiosmtpd() -> String {
    let candidates: Vec<String> = match std::env::var("PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["python3".to_owned(), "/usr/bin/python3".to_owned()],
    };
    for c in &candidates {
        let ok = std::process::Command::new(c)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return c.clone();
        }
    }
    panic!(
        "no python3 with aiosmtpd (tried {candidates:?}): the SMTP sink tests need it; run scripts/install-deps.sh (Debian package python3-aiosmtpd)"
    );
}

struct Sink {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Sink {
    async fn start(dir: &Path, extra: &[&str]) -> Sink {
        let py = python_with_aiosmtpd();
        let script = repo_root().join("e2e/smtp-sink.py");
        assert!(script.is_file(), "{} is missing", script.display());
        let stderr = std::fs::File::create(dir.join("sink.stderr")).unwrap();
        let mut child = Command::new(&py)
            .arg(&script)
            .args(["--port", "0", "--maildir"])
            .arg(dir.join("maildir"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {py} {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await;
        let log = || std::fs::read_to_string(dir.join("sink.stderr")).unwrap_or_default();
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "the SMTP sink did not report 'ready PORT' ({other:?}); its log:\n{}",
                log()
            ),
        };
        let port = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line from the sink: {line:?}; log:\n{}",
                    log()
                )
            });
        Sink {
            child,
            port,
            dir: dir.join("maildir"),
        }
    }

    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("cutover-smtp-sink-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn campaign_mail() -> Message {
    Message {
        from: Mailbox::named("Cutover IT", "it-noreply@cutover.example"),
        to: vec![Mailbox::named("Zoë Lefèvre", "zoe@example.com")],
        cc: vec![Mailbox::named("Marc Dubois (manager)", "marc@example.com")],
        subject: "Rappel : créez votre clé d'accès 🔑 avant vendredi".to_owned(),
        text: "Bonjour Zoë,\n\nvous n'avez pas encore de clé d'accès.\n.Cette ligne commence par un point.\n".to_owned(),
        html: Some("<p>Bonjour Zoë,</p>\n<p><a href=\"https://id.example/enrol\">Créer ma clé</a></p>".to_owned()),
        message_id: "<0190f000-aaaa-7000-8000-000000000001@cutover>".to_owned(),
        date: 1_799_366_400,
        extra_headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
    }
}

fn plain_mail() -> Message {
    Message {
        from: Mailbox::new("it-noreply@cutover.example"),
        to: vec![Mailbox::new("bob@example.com")],
        cc: Vec::new(),
        subject: "Passkeys 2027: the pilot starts".to_owned(),
        text: "Hello Bob".to_owned(),
        html: None,
        message_id: "<0190f000-aaaa-7000-8000-000000000002@cutover>".to_owned(),
        date: 1_799_366_400,
        extra_headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_auth_and_two_messages_through_aiosmtpd() {
    let dir = scratch_dir();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let sink = Sink::start(
        &dir,
        &[
            "--starttls-cert",
            cert.to_str().unwrap(),
            "--starttls-key",
            key.to_str().unwrap(),
            "--auth",
            "mailer:s3cret",
            "--require-auth",
        ],
    )
    .await;

    let mut cfg = SmtpConfig {
        helo_name: "cutover.test".to_owned(),
        ..SmtpConfig::new("127.0.0.1", sink.port)
    };
    cfg.extra_roots = vec![ck.cert.der().clone()];
    cfg.credentials = Some(Credentials {
        username: "mailer".into(),
        password: "s3cret".into(),
    });

    // Wrong password: refused for good.
    let mut wrong = cfg.clone();
    wrong.credentials = Some(Credentials {
        username: "mailer".into(),
        password: "nope".into(),
    });
    let e = SmtpConnection::connect(&wrong).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Auth), "{e}");
    assert_eq!(e.reply.as_ref().map(|r| r.0), Some(535), "{e}");

    // Without TLS the sink offers no AUTH (and requires STARTTLS).
    let mut plain = cfg.clone();
    plain.tls = TlsMode::None;
    let e = SmtpConnection::connect(&plain).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Auth), "{e}");
    assert!(e.message.contains("only after STARTTLS"), "{e}");

    // Two messages over one connection.
    let (a, b) = (campaign_mail(), plain_mail());
    let mut conn = SmtpConnection::connect(&cfg).await.unwrap();
    assert!(conn.is_tls());
    assert!(conn.capabilities().size.is_some());
    for m in [&a, &b] {
        let bytes = m.to_bytes().unwrap();
        let staged = conn
            .stage(&m.from.address, &m.envelope_recipients(), &bytes)
            .await
            .unwrap();
        let d = staged.commit().await.unwrap();
        assert_eq!(d.reply.0, 250, "{d:?}");
        assert!(d.refused.is_empty());
        conn.reset().await.unwrap();
    }
    conn.quit().await;

    let log = sink.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["mailFrom"], "it-noreply@cutover.example");
    assert_eq!(
        log[0]["rcptTos"],
        serde_json::json!(["zoe@example.com", "marc@example.com"])
    );
    assert_eq!(log[0]["messageId"], a.message_id.as_str());
    assert_eq!(log[1]["rcptTos"], serde_json::json!(["bob@example.com"]));
    assert_eq!(log[1]["messageId"], b.message_id.as_str());

    let files: Vec<_> = std::fs::read_dir(sink.dir.join("new")).unwrap().collect();
    assert_eq!(files.len(), 2);
    let read = |entry: &serde_json::Value| {
        let rel = entry["file"].as_str().unwrap();
        let raw = std::fs::read(sink.dir.join(rel)).unwrap();
        ParsedMessage::parse(&raw).unwrap()
    };

    let got_a = read(&log[0]);
    assert_eq!(got_a.decoded_header("subject").unwrap(), a.subject);
    assert_eq!(
        got_a.decoded_header("to").unwrap(),
        "Zoë Lefèvre <zoe@example.com>"
    );
    assert_eq!(got_a.addresses("cc"), ["marc@example.com"]);
    assert_eq!(
        got_a.decoded_header("cc").unwrap(),
        "\"Marc Dubois (manager)\" <marc@example.com>"
    );
    assert_eq!(got_a.header("message-id"), Some(a.message_id.as_str()));
    assert_eq!(got_a.header("auto-submitted"), Some("auto-generated"));
    assert!(got_a.header("bcc").is_none());
    let parts = got_a.parts();
    assert_eq!(parts.len(), 2);
    assert!(
        parts[0]
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(parts[0].decoded_text(), a.text.replace('\n', "\r\n"));
    assert!(
        parts[1]
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(
        parts[1].decoded_text(),
        a.html.clone().unwrap().replace('\n', "\r\n")
    );

    let got_b = read(&log[1]);
    assert_eq!(got_b.header("subject"), Some(b.subject.as_str()));
    assert_eq!(got_b.addresses("to"), ["bob@example.com"]);
    assert!(got_b.header("cc").is_none());
    assert!(got_b.parts().is_empty());
    assert_eq!(got_b.decoded_text(), "Hello Bob\r\n");

    sink.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The sink stores the message, then dies before its 250 (a relay crash at the worst
/// moment): the client must report `Uncertain` — the message is in the Maildir although the
/// client never heard the reply, so resending it would deliver it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_after_storing_before_replying_is_uncertain() {
    let dir = scratch_dir();
    let mut sink = Sink::start(&dir, &["--delay-ms", "10000"]).await;
    let cfg = SmtpConfig {
        tls: TlsMode::None,
        helo_name: "cutover.test".to_owned(),
        ..SmtpConfig::new("127.0.0.1", sink.port)
    };
    let m = plain_mail();
    let bytes = m.to_bytes().unwrap();
    let mut conn = SmtpConnection::connect(&cfg).await.unwrap();
    let staged = conn
        .stage(&m.from.address, &m.envelope_recipients(), &bytes)
        .await
        .unwrap();
    let log_path = sink.dir.join("log.jsonl");
    let killer = async {
        // Wait (bounded) until the sink has stored the message, then kill it.
        for _ in 0..500 {
            if std::fs::read_to_string(&log_path).is_ok_and(|s| s.lines().count() == 1) {
                sink.child.start_kill().unwrap();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    let (outcome, killed) = tokio::join!(staged.commit(), killer);
    assert!(killed, "the sink never logged the message");
    let e = outcome.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Uncertain, Stage::Commit), "{e}");
    assert!(!e.retryable());
    assert_eq!(
        sink.log().len(),
        1,
        "the message is stored although no 250 came"
    );
    let _ = sink.child.wait().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
