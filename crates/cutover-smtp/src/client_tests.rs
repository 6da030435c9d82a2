//! Client tests against scripted fake SMTP servers on 127.0.0.1:0 (one connection each).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;
use crate::address::Mailbox;
use crate::inspect::ParsedMessage;

/// The server side of one connection, reading lines and writing scripted replies.
struct Peer<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    async fn send(&mut self, text: &str) {
        let w = self.io.get_mut();
        // A client that already gave up may have closed: that is fine for a script.
        let _ = w.write_all(text.as_bytes()).await;
        let _ = w.flush().await;
    }

    /// The next line without CRLF, or None at EOF.
    async fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = self.io.read_until(b'\n', &mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        let s = String::from_utf8(buf).expect("client sent UTF-8");
        assert!(s.ends_with("\r\n"), "client line without CRLF: {s:?}");
        Some(s.trim_end_matches("\r\n").to_owned())
    }

    async fn expect(&mut self, prefix: &str) -> String {
        let l = self
            .line()
            .await
            .unwrap_or_else(|| panic!("EOF, expected {prefix}"));
        assert!(l.starts_with(prefix), "expected {prefix:?}, got {l:?}");
        l
    }

    /// DATA lines up to (not including) the lone ".", as sent (dot-stuffed).
    async fn data(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await.expect("EOF inside DATA");
            if l == "." {
                return lines;
            }
            lines.push(l);
        }
    }

    /// Greeting + EHLO with these extension lines.
    async fn hello(&mut self, extensions: &[&str]) {
        self.send("220 fake.test ESMTP ready\r\n").await;
        self.ehlo(extensions).await;
    }

    async fn ehlo(&mut self, extensions: &[&str]) {
        self.expect("EHLO cutover.test").await;
        let mut reply = String::from("250");
        reply.push(if extensions.is_empty() { ' ' } else { '-' });
        reply.push_str("fake.test greets cutover.test\r\n");
        for (i, e) in extensions.iter().enumerate() {
            let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{sep}{e}\r\n"));
        }
        self.send(&reply).await;
    }
}

/// Undo dot-stuffing and join the DATA lines back into message bytes.
fn unstuff(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.strip_prefix('.').unwrap_or(l).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn fake<F, Fut>(script: F) -> (u16, JoinHandle<()>)
where
    F: FnOnce(Peer<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        script(Peer {
            io: BufReader::new(s),
        })
        .await;
    });
    (port, handle)
}

fn cfg(port: u16) -> SmtpConfig {
    SmtpConfig {
        tls: TlsMode::None,
        helo_name: "cutover.test".to_owned(),
        ..SmtpConfig::new("127.0.0.1", port)
    }
}

fn message(n: u32) -> Message {
    Message {
        from: Mailbox::named("Cutover", "noreply@cutover.example"),
        to: vec![Mailbox::named("Alice", "alice@example.com")],
        cc: vec![Mailbox::named("Bob", "bob@example.com")],
        subject: format!("Message {n}"),
        text: format!("Hello,\n.this line starts with a dot\nmessage {n}\n"),
        html: Some(format!("<p>message {n}</p>")),
        message_id: format!("<m{n}@cutover>"),
        date: 1_798_761_600,
        extra_headers: Vec::new(),
    }
}

fn rcpts(m: &Message) -> Vec<String> {
    m.envelope_recipients()
}

#[tokio::test]
async fn happy_path_two_messages_on_one_connection() {
    let (m1, m2) = (message(1), message(2));
    let (b1, b2) = (m1.to_bytes().unwrap(), m2.to_bytes().unwrap());
    let (want1, want2) = (b1.clone(), b2.clone());
    let (port, server) = fake(move |mut p| async move {
        p.hello(&["PIPELINING", "SIZE 100000", "8BITMIME"]).await;
        for (i, want) in [want1, want2].into_iter().enumerate() {
            let mail = p.expect("MAIL FROM:<noreply@cutover.example>").await;
            // SIZE counts the bytes on the wire: dot-stuffed, with the final ".\r\n".
            let wire = crate::encoding::dot_stuff(&want).len() + 3;
            assert_eq!(
                mail,
                format!("MAIL FROM:<noreply@cutover.example> SIZE={wire}")
            );
            p.send("250 2.1.0 ok\r\n").await;
            p.expect("RCPT TO:<alice@example.com>").await;
            p.send("250 2.1.5 ok\r\n").await;
            p.expect("RCPT TO:<bob@example.com>").await;
            p.send("250 2.1.5 ok\r\n").await;
            p.expect("DATA").await;
            p.send("354 go ahead\r\n").await;
            let lines = p.data().await;
            assert!(
                lines.iter().any(|l| l == "..this line starts with a dot"),
                "{lines:?}"
            );
            assert_eq!(unstuff(&lines), want);
            p.send(&format!("250 2.0.0 queued as Q{i}\r\n")).await;
            p.expect("RSET").await;
            p.send("250 2.0.0 flushed\r\n").await;
        }
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
        assert_eq!(p.line().await, None);
    })
    .await;

    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    assert!(!conn.is_tls());
    assert_eq!(conn.capabilities().size, Some(100_000));
    for (i, (m, b)) in [(&m1, &b1), (&m2, &b2)].into_iter().enumerate() {
        let staged = conn.stage(&m.from.address, &rcpts(m), b).await.unwrap();
        assert_eq!(staged.accepted(), ["alice@example.com", "bob@example.com"]);
        assert!(staged.refused().is_empty());
        let d = staged.commit().await.unwrap();
        assert_eq!(d.reply, (250, format!("2.0.0 queued as Q{i}")));
        assert!(d.refused.is_empty());
        conn.reset().await.unwrap();
    }
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn stage_stops_before_the_final_dot() {
    let m = message(1);
    let bytes = m.to_bytes().unwrap();
    let body_lines = bytes.split(|&b| b == b'\n').count() - 1;
    let dot_seen = Arc::new(AtomicBool::new(false));
    let seen = dot_seen.clone();
    let (body_done_tx, body_done_rx) = tokio::sync::oneshot::channel();
    let (port, server) = fake(move |mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:<noreply@cutover.example>").await;
        p.send("250 ok\r\n").await;
        for _ in 0..2 {
            p.expect("RCPT TO:").await;
            p.send("250 ok\r\n").await;
        }
        p.expect("DATA").await;
        p.send("354 go ahead\r\n").await;
        for _ in 0..body_lines {
            let l = p.line().await.unwrap();
            assert_ne!(l, ".");
        }
        body_done_tx.send(()).unwrap();
        p.expect(".").await;
        seen.store(true, Ordering::SeqCst);
        p.send("250 queued\r\n").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage(&m.from.address, &rcpts(&m), &bytes)
        .await
        .unwrap();
    body_done_rx.await.unwrap();
    assert!(
        !dot_seen.load(Ordering::SeqCst),
        "the dot must wait for commit()"
    );
    staged.commit().await.unwrap();
    assert!(dot_seen.load(Ordering::SeqCst));
    server.await.unwrap();
}

#[tokio::test]
async fn temporary_refusal_is_transient_and_connection_stays_usable() {
    let m = message(1);
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("451 4.3.0 try again later\r\n").await;
        p.expect("RSET").await;
        p.send("250 ok\r\n").await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.data().await;
        p.send("452 4.3.1 insufficient storage\r\n").await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let bytes = m.to_bytes().unwrap();
    let e = conn
        .stage(&m.from.address, &rcpts(&m), &bytes)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::MailFrom));
    assert_eq!(e.reply, Some((451, "4.3.0 try again later".into())));
    assert!(e.retryable());
    assert!(e.to_string().contains("451 4.3.0 try again later"), "{e}");
    conn.reset().await.unwrap();
    let staged = conn
        .stage(&m.from.address, &rcpts(&m), &bytes)
        .await
        .unwrap();
    let e = staged.commit().await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Commit));
    assert_eq!(e.reply.unwrap().0, 452);
    assert!(conn.broken().is_none());
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn some_recipients_refused_the_rest_get_it() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:<>").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:<a@example.com>").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:<gone@example.com>").await;
        p.send("550-5.1.1 no such\r\n550 5.1.1 user\r\n").await;
        p.expect("RCPT TO:<busy@example.com>").await;
        p.send("450 4.2.1 mailbox busy\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        assert_eq!(p.data().await, ["Subject: x", "", "hi"]);
        p.send("250 ok\r\n").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let list: Vec<String> = ["a@example.com", "gone@example.com", "busy@example.com"]
        .map(String::from)
        .to_vec();
    let d = conn
        .stage("", &list, b"Subject: x\r\n\r\nhi")
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    assert_eq!(d.accepted, ["a@example.com"]);
    assert_eq!(
        d.refused,
        [
            (
                "gone@example.com".to_owned(),
                550,
                "5.1.1 no such 5.1.1 user".to_owned()
            ),
            (
                "busy@example.com".to_owned(),
                450,
                "4.2.1 mailbox busy".to_owned()
            ),
        ]
    );
    server.await.unwrap();
}

async fn all_refused(codes: [&'static str; 2]) -> SendError {
    let (port, server) = fake(move |mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        for c in codes {
            p.expect("RCPT TO:").await;
            p.send(&format!("{c}\r\n")).await;
        }
        p.expect("RSET").await;
        p.send("250 ok\r\n").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let list = vec!["a@example.com".to_owned(), "b@example.com".to_owned()];
    let e = conn
        .stage("x@example.com", &list, b"hi\r\n")
        .await
        .unwrap_err();
    server.await.unwrap();
    assert!(conn.broken().is_none());
    e
}

#[tokio::test]
async fn every_recipient_refused() {
    let e = all_refused(["550 5.1.1 unknown", "553 5.1.3 bad"]).await;
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::RcptTo));
    assert!(
        e.message.contains("<a@example.com>: 550 5.1.1 unknown"),
        "{e}"
    );
    assert!(e.message.contains("<b@example.com>: 553 5.1.3 bad"), "{e}");
    assert!(!e.retryable());
    // A 4xx among them (greylisting): worth another try.
    let e = all_refused(["550 5.1.1 unknown", "451 4.7.1 greylisted"]).await;
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::RcptTo));
}

#[tokio::test]
async fn auth_refused_is_permanent_and_never_shows_the_password() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["AUTH LOGIN PLAIN"]).await;
        let l = p.expect("AUTH PLAIN ").await;
        let token = l.strip_prefix("AUTH PLAIN ").unwrap();
        let decoded = B64.decode(token).unwrap();
        assert_eq!(decoded, b"\0mailer\0s3cret-pw");
        p.send("535 5.7.8 authentication credentials invalid\r\n")
            .await;
    })
    .await;
    let mut c = cfg(port);
    c.credentials = Some(Credentials {
        username: "mailer".into(),
        password: "s3cret-pw".into(),
    });
    assert!(!format!("{c:?}").contains("s3cret-pw"));
    assert!(format!("{c:?}").contains("<redacted>"));
    let e = SmtpConnection::connect(&c).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Auth));
    assert_eq!(e.reply.as_ref().unwrap().0, 535);
    assert!(e.to_string().contains("'mailer'"), "{e}");
    assert!(!e.to_string().contains("s3cret-pw"));
    assert!(!format!("{e:?}").contains("s3cret-pw"));
    server.await.unwrap();
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["AUTH=LOGIN", "AUTH LOGIN CRAM-MD5"]).await;
        p.expect("AUTH LOGIN").await;
        p.send("334 VXNlcm5hbWU6\r\n").await;
        assert_eq!(p.line().await.unwrap(), B64.encode("mailer"));
        p.send("334 UGFzc3dvcmQ6\r\n").await;
        assert_eq!(p.line().await.unwrap(), B64.encode("pw"));
        p.send("235 2.7.0 ok\r\n").await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let mut c = cfg(port);
    c.credentials = Some(Credentials {
        username: "mailer".into(),
        password: "pw".into(),
    });
    let conn = SmtpConnection::connect(&c).await.unwrap();
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn auth_without_tls_to_a_remote_server_is_refused_before_sending() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["AUTH PLAIN"]).await;
        // Nothing more: the password must not be sent.
        assert_eq!(p.line().await, None);
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    // Pretend the server is elsewhere on the network (tests only reach loopback).
    conn.peer = Some("192.0.2.25:25".parse().unwrap());
    let e = conn
        .auth(&Credentials {
            username: "mailer".into(),
            password: "pw".into(),
        })
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Auth));
    assert!(e.message.contains("refusing to send the password"), "{e}");
    assert!(e.message.contains("StartTls or Implicit"), "{e}");
    drop(conn);
    server.await.unwrap();
}

#[tokio::test]
async fn auth_not_offered_or_unsupported() {
    for (ext, needle) in [
        (None, "does not offer AUTH"),
        (Some("AUTH CRAM-MD5 XOAUTH2"), "only PLAIN and LOGIN"),
    ] {
        let (port, server) = fake(move |mut p| async move {
            p.hello(&ext.into_iter().collect::<Vec<_>>()).await;
            assert_eq!(p.line().await, None);
        })
        .await;
        let mut c = cfg(port);
        c.credentials = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        });
        let e = SmtpConnection::connect(&c).await.unwrap_err();
        assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Auth));
        assert!(e.message.contains(needle), "{e}");
        server.await.unwrap();
    }
}

#[tokio::test]
async fn server_closing_right_after_the_final_dot_is_uncertain() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.data().await;
        // Crash before replying: the message may or may not be queued.
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage("x@example.com", &["a@example.com".to_owned()], b"hi\r\n")
        .await
        .unwrap();
    let e = staged.commit().await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Uncertain, Stage::Commit));
    assert!(!e.retryable());
    assert!(e.message.contains("may or may not have accepted"), "{e}");
    assert!(conn.broken().is_some());
    let again = conn
        .stage("x@example.com", &["a@example.com".to_owned()], b"hi\r\n")
        .await
        .unwrap_err();
    assert_eq!(again.kind, Kind::Transient);
    assert!(again.message.contains("connect again"), "{again}");
    server.await.unwrap();
}

#[tokio::test]
async fn server_closing_during_data_before_the_dot_is_transient() {
    // The server reads the whole body, then goes away before the client sends the dot.
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.expect("line one").await;
        p.expect("line two").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage(
            "x@example.com",
            &["a@example.com".to_owned()],
            b"line one\r\nline two\r\n",
        )
        .await
        .unwrap();
    server.await.unwrap(); // the server has closed
    let e = staged.commit().await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Commit), "{e}");
    assert!(e.message.contains("before the final dot was sent"), "{e}");
    assert!(e.retryable());
}

#[tokio::test]
async fn server_closing_early_in_a_large_data_is_transient() {
    // The server stops reading after two lines of a 4 MiB body and closes (a reset).
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.line().await;
        p.line().await;
    })
    .await;
    let mut body = Vec::new();
    while body.len() < 4 * 1024 * 1024 {
        body.extend_from_slice(&[b'x'; 900]);
        body.extend_from_slice(b"\r\n");
    }
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage("x@example.com", &["a@example.com".to_owned()], &body)
        .await;
    server.await.unwrap();
    let e = match staged {
        Err(e) => e,
        Ok(s) => s.commit().await.unwrap_err(),
    };
    assert_eq!(e.kind, Kind::Transient, "{e}");
    assert!(matches!(e.stage, Stage::Data | Stage::Commit), "{e}");
}

#[tokio::test]
async fn a_reply_during_data_means_not_accepted() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.expect("hi").await;
        p.send("421 4.4.2 idle timeout, closing\r\n").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage("x@example.com", &["a@example.com".to_owned()], b"hi\r\n")
        .await
        .unwrap();
    server.await.unwrap();
    let e = staged.commit().await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Commit), "{e}");
    assert_eq!(e.reply.unwrap().0, 421);
}

#[tokio::test]
async fn dropping_a_staged_message_breaks_the_connection() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.expect("hi").await;
        assert_eq!(
            p.line().await,
            None,
            "no dot, no RSET: the client just hangs up"
        );
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage("x@example.com", &["a@example.com".to_owned()], b"hi\r\n")
        .await
        .unwrap();
    drop(staged);
    let e = conn.reset().await.unwrap_err();
    assert_eq!(e.kind, Kind::Transient);
    assert!(e.message.contains("no longer usable"), "{e}");
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn size_limit_is_checked_before_mail_from() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["SIZE 100"]).await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let body = [b"a".repeat(200), b"\r\n".to_vec()].concat();
    let e = conn
        .stage("x@example.com", &["a@example.com".to_owned()], &body)
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Data));
    assert!(e.message.contains("at most 100 (SIZE)"), "{e}");
    conn.quit().await;
    server.await.unwrap();
}

#[test]
fn prepare_data_checks_and_stuffs() {
    let caps = Capabilities::default();
    assert_eq!(prepare_data(b".a\r\nb", &caps).unwrap(), b"..a\r\nb\r\n");
    assert_eq!(prepare_data(b"", &caps).unwrap(), b"");
    let e = prepare_data(b"a\nb", &caps).unwrap_err();
    assert!(e.message.contains("bare LF"), "{e}");
    let e = prepare_data("é\r\n".as_bytes(), &caps).unwrap_err();
    assert!(e.message.contains("8BITMIME"), "{e}");
    let eight = Capabilities {
        eight_bit_mime: true,
        ..Capabilities::default()
    };
    assert!(prepare_data("é\r\n".as_bytes(), &eight).is_ok());

    // SIZE: exactly the limit on the wire (data + ".\r\n") passes, one more byte does not.
    let body = b"abcde\r\n".to_vec();
    let exact = Capabilities {
        size: Some(body.len() as u64 + 3),
        ..Capabilities::default()
    };
    assert!(prepare_data(&body, &exact).is_ok());
    let short = Capabilities {
        size: Some(body.len() as u64 + 2),
        ..Capabilities::default()
    };
    assert!(prepare_data(&body, &short).is_err());

    let mut big = Vec::with_capacity(MAX_DATA_BYTES + 1);
    while big.len() + 100 <= MAX_DATA_BYTES {
        big.extend_from_slice(&[b'z'; 98]);
        big.extend_from_slice(b"\r\n");
    }
    big.resize(MAX_DATA_BYTES, b'z');
    assert_eq!(big.len(), MAX_DATA_BYTES);
    assert!(prepare_data(&big, &caps).is_ok());
    big.push(b'z');
    let e = prepare_data(&big, &caps).unwrap_err();
    assert!(e.message.contains("at most 16777216"), "{e}");
}

#[test]
fn recipient_checks() {
    let list: Vec<String> = (0..MAX_RECIPIENTS)
        .map(|i| format!("u{i}@example.com"))
        .collect();
    assert!(check_recipients(&list).is_ok());
    let mut over = list.clone();
    over.push("one@example.com".into());
    let e = check_recipients(&over).unwrap_err();
    assert!(e.message.contains("at most 100"), "{e}");
    assert!(check_recipients(&[]).is_err());
    let e = check_recipients(&["a@example.com\r\nRSET".into()]).unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::RcptTo));
    assert!(e.message.contains("control character"), "{e}");
}

#[test]
fn config_validation_names_the_field() {
    let ok = cfg(25);
    assert!(ok.validate().is_ok());
    type Mutation = Box<dyn Fn(&mut SmtpConfig)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|c| c.host = " ".into()), "host is empty"),
        (Box::new(|c| c.host = "smtp://x".into()), "bare host name"),
        (Box::new(|c| c.port = 0), "port is 0"),
        (
            Box::new(|c| c.helo_name = String::new()),
            "helo_name is empty",
        ),
        (Box::new(|c| c.helo_name = "a b".into()), "helo_name 'a b'"),
        (Box::new(|c| c.helo_name = "x\r\nRCPT".into()), "helo_name"),
        (
            Box::new(|c| c.helo_name = "h".repeat(MAX_HELO_NAME_BYTES + 1)),
            "at most 255",
        ),
        (
            Box::new(|c| {
                c.credentials = Some(Credentials {
                    username: String::new(),
                    password: "p".into(),
                })
            }),
            "username is empty",
        ),
        (
            Box::new(|c| {
                c.credentials = Some(Credentials {
                    username: "u".into(),
                    password: "p".repeat(MAX_CREDENTIAL_BYTES + 1),
                })
            }),
            "password is 1025 bytes",
        ),
        (
            Box::new(|c| {
                c.credentials = Some(Credentials {
                    username: "u\0x".into(),
                    password: "p".into(),
                })
            }),
            "NUL",
        ),
    ];
    for (mutate, needle) in cases {
        let mut c = cfg(25);
        mutate(&mut c);
        let e = c.validate().unwrap_err();
        assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Config));
        assert!(e.message.contains(needle), "{needle}: {e}");
    }
    let mut c = cfg(25);
    c.helo_name = "h".repeat(MAX_HELO_NAME_BYTES);
    c.credentials = Some(Credentials {
        username: "u".repeat(MAX_CREDENTIAL_BYTES),
        password: "p".repeat(MAX_CREDENTIAL_BYTES),
    });
    assert!(c.validate().is_ok());
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Connect));
    assert!(e.message.contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test]
async fn greeting_codes() {
    for (greeting, kind) in [
        ("421 4.3.2 too busy\r\n", Kind::Transient),
        ("554 5.7.1 go away\r\n", Kind::Permanent),
    ] {
        let (port, server) = fake(move |mut p| async move {
            p.send(greeting).await;
        })
        .await;
        let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
        assert_eq!((e.kind, e.stage), (kind, Stage::Greeting), "{e}");
        server.await.unwrap();
    }
}

#[tokio::test]
async fn helo_fallback_for_servers_without_esmtp() {
    let (port, server) = fake(|mut p| async move {
        p.send("220 old.test SMTP\r\n").await;
        p.expect("EHLO cutover.test").await;
        p.send("502 5.5.1 command not implemented\r\n").await;
        p.expect("HELO cutover.test").await;
        p.send("250 old.test\r\n").await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    assert_eq!(conn.capabilities(), &Capabilities::default());
    conn.quit().await;
    server.await.unwrap();
}

// --- hostile servers: bounded, never a hang ------------------------------------------------

#[tokio::test]
async fn endless_reply_line_is_a_protocol_error() {
    let (port, server) = fake(|mut p| async move {
        p.send("220 ").await;
        let chunk = "A".repeat(64 * 1024);
        // Keep sending until the client hangs up.
        for _ in 0..1024 {
            if p.io.get_mut().write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
        panic!("the client kept reading 64 MiB of one line");
    })
    .await;
    let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Greeting));
    assert!(e.message.contains("longer than 512 bytes"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn endless_multiline_reply_is_a_protocol_error() {
    let (port, server) = fake(|mut p| async move {
        p.send("220 hi\r\n").await;
        p.expect("EHLO").await;
        for _ in 0..100_000 {
            if p.io.get_mut().write_all(b"250-X-JUNK\r\n").await.is_err() {
                return;
            }
        }
    })
    .await;
    let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Ehlo));
    assert!(e.message.contains("more than 100 lines"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn reply_limits_at_the_edge() {
    // A 512-byte line (CRLF included) and a 100-line reply are accepted...
    let (port, server) = fake(|mut p| async move {
        p.send(&format!("220 {}\r\n", "g".repeat(MAX_REPLY_LINE_BYTES - 6)))
            .await;
        p.expect("EHLO").await;
        let mut r = String::new();
        for _ in 0..MAX_REPLY_LINES - 1 {
            r.push_str("250-X\r\n");
        }
        r.push_str("250 SIZE 1000\r\n");
        p.send(&r).await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    assert_eq!(conn.capabilities().size, Some(1000));
    conn.quit().await;
    server.await.unwrap();

    // ...one byte or one line more is not.
    let (port, server) = fake(|mut p| async move {
        p.send(&format!("220 {}\r\n", "g".repeat(MAX_REPLY_LINE_BYTES - 5)))
            .await;
    })
    .await;
    let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
    assert!(e.message.contains("longer than 512"), "{e}");
    server.await.unwrap();
    let (port, server) = fake(|mut p| async move {
        p.send("220 hi\r\n").await;
        p.expect("EHLO").await;
        let mut r = String::new();
        for _ in 0..MAX_REPLY_LINES {
            r.push_str("250-X\r\n");
        }
        r.push_str("250 SIZE 1000\r\n");
        p.send(&r).await;
    })
    .await;
    let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
    assert!(e.message.contains("more than 100 lines"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn garbage_and_mixed_codes_are_protocol_errors() {
    for (greeting, needle) in [
        ("HELLO THERE\r\n", "three-digit code"),
        ("220-a\r\n250 b\r\n", "changed its code"),
        ("220_x\r\n", "after the code"),
    ] {
        let (port, server) = fake(move |mut p| async move {
            p.send(greeting).await;
        })
        .await;
        let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
        assert_eq!(e.stage, Stage::Greeting);
        assert!(e.message.contains(needle), "{e}");
        server.await.unwrap();
    }
}

/// A server that never answers: keeps the connection open until the client leaves.
async fn hold(mut p: Peer<TcpStream>) {
    let mut sink = Vec::new();
    let _ = p.io.read_to_end(&mut sink).await;
}

#[tokio::test(start_paused = true)]
async fn silent_greeting_times_out() {
    let (port, server) = fake(hold).await;
    let e = SmtpConnection::connect(&cfg(port)).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::Greeting));
    assert!(e.message.contains("no reply within 60 s"), "{e}");
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn silent_after_mail_from_times_out_transient() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        hold(p).await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let started = tokio::time::Instant::now();
    let e = conn
        .stage("x@example.com", &["a@example.com".to_owned()], b"hi\r\n")
        .await
        .unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::MailFrom));
    assert!(started.elapsed() >= DEFAULT_COMMAND_TIMEOUT);
    drop(conn);
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn silent_after_the_final_dot_is_uncertain() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("MAIL FROM:").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        p.data().await;
        hold(p).await;
    })
    .await;
    let mut conn = SmtpConnection::connect(&cfg(port)).await.unwrap();
    let staged = conn
        .stage("x@example.com", &["a@example.com".to_owned()], b"hi\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let e = staged.commit().await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Uncertain, Stage::Commit));
    assert!(e.message.contains("no reply within 300 s"), "{e}");
    assert!(started.elapsed() >= DEFAULT_DATA_END_TIMEOUT);
    drop(conn);
    server.await.unwrap();
}

// --- TLS --------------------------------------------------------------------------------------

struct TestCa {
    cert: CertificateDer<'static>,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn test_cert() -> TestCa {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    TestCa {
        cert,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
    }
}

#[tokio::test]
async fn starttls_with_a_private_ca_then_auth_and_send() {
    let ca = test_cert();
    let acceptor = ca.acceptor.clone();
    let (port, server) = fake(move |mut p| async move {
        p.hello(&["STARTTLS", "SIZE 1000000"]).await;
        p.expect("STARTTLS").await;
        p.send("220 2.0.0 ready to start TLS\r\n").await;
        let tls = acceptor.accept(p.io.into_inner()).await.unwrap();
        let mut p = Peer {
            io: BufReader::new(tls),
        };
        p.ehlo(&["AUTH PLAIN LOGIN", "SIZE 1000000"]).await;
        let l = p.expect("AUTH PLAIN ").await;
        assert_eq!(
            B64.decode(l.trim_start_matches("AUTH PLAIN ")).unwrap(),
            b"\0mailer\0pw"
        );
        p.send("235 2.7.0 ok\r\n").await;
        p.expect("MAIL FROM:<noreply@cutover.example> SIZE=").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:<alice@example.com>").await;
        p.send("250 ok\r\n").await;
        p.expect("RCPT TO:<bob@example.com>").await;
        p.send("250 ok\r\n").await;
        p.expect("DATA").await;
        p.send("354 go\r\n").await;
        let lines = p.data().await;
        let parsed = ParsedMessage::parse(&unstuff(&lines)).unwrap();
        assert_eq!(parsed.header("subject"), Some("Message 7"));
        p.send("250 queued\r\n").await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let mut c = cfg(port);
    c.tls = TlsMode::StartTls;
    c.extra_roots = vec![ca.cert.clone()];
    c.credentials = Some(Credentials {
        username: "mailer".into(),
        password: "pw".into(),
    });
    let mut conn = SmtpConnection::connect(&c).await.unwrap();
    assert!(conn.is_tls());
    let d = conn.send(&message(7)).await.unwrap();
    assert_eq!(d.accepted.len(), 2);
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn implicit_tls() {
    let ca = test_cert();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = ca.acceptor.clone();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(s).await.unwrap();
        let mut p = Peer {
            io: BufReader::new(tls),
        };
        p.hello(&["AUTH PLAIN"]).await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    });
    let mut c = cfg(port);
    c.tls = TlsMode::Implicit;
    c.extra_roots = vec![ca.cert.clone()];
    let conn = SmtpConnection::connect(&c).await.unwrap();
    assert!(conn.is_tls());
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn untrusted_certificate_is_refused() {
    let ca = test_cert();
    let acceptor = ca.acceptor.clone();
    let (port, server) = fake(move |mut p| async move {
        p.hello(&["STARTTLS"]).await;
        p.expect("STARTTLS").await;
        p.send("220 go\r\n").await;
        // The client aborts the handshake.
        assert!(acceptor.accept(p.io.into_inner()).await.is_err());
    })
    .await;
    let mut c = cfg(port);
    c.tls = TlsMode::StartTls; // no extra root: the self-signed cert is unknown
    let e = SmtpConnection::connect(&c).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::Tls), "{e}");
    assert!(e.message.contains("extra_roots"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["AUTH PLAIN"]).await;
        assert_eq!(p.line().await, None, "nothing may be sent in plain text");
    })
    .await;
    let mut c = cfg(port);
    c.tls = TlsMode::StartTls;
    c.credentials = Some(Credentials {
        username: "u".into(),
        password: "p".into(),
    });
    let e = SmtpConnection::connect(&c).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::StartTls));
    assert!(e.message.contains("does not offer STARTTLS"), "{e}");
    server.await.unwrap();
}

#[tokio::test]
async fn starttls_if_offered_falls_back_to_plain_text() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&[]).await;
        p.expect("QUIT").await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let mut c = cfg(port);
    c.tls = TlsMode::StartTlsIfOffered;
    let conn = SmtpConnection::connect(&c).await.unwrap();
    assert!(!conn.is_tls());
    conn.quit().await;
    server.await.unwrap();
}

#[tokio::test]
async fn starttls_refused_when_required() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["STARTTLS"]).await;
        p.expect("STARTTLS").await;
        p.send("454 4.7.0 TLS not available\r\n").await;
    })
    .await;
    let mut c = cfg(port);
    c.tls = TlsMode::StartTls;
    let e = SmtpConnection::connect(&c).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Transient, Stage::StartTls));
    assert_eq!(e.reply.unwrap().0, 454);
    server.await.unwrap();
}

#[tokio::test]
async fn data_injected_after_starttls_is_refused() {
    let (port, server) = fake(|mut p| async move {
        p.hello(&["STARTTLS"]).await;
        p.expect("STARTTLS").await;
        p.send("220 go\r\n250-INJECTED\r\n250 AUTH PLAIN\r\n").await;
    })
    .await;
    let mut c = cfg(port);
    c.tls = TlsMode::StartTls;
    let e = SmtpConnection::connect(&c).await.unwrap_err();
    assert_eq!((e.kind, e.stage), (Kind::Permanent, Stage::StartTls));
    assert!(e.message.contains("injection"), "{e}");
    server.await.unwrap();
}

#[test]
fn errors_read_well() {
    let e = SendError {
        kind: Kind::Permanent,
        stage: Stage::RcptTo,
        reply: Some((550, "5.1.1 no such user".into())),
        message: "mx.example:25 refused every recipient".into(),
    };
    assert_eq!(
        e.to_string(),
        "SMTP RCPT TO failed (permanent): mx.example:25 refused every recipient; the server replied 550 5.1.1 no such user"
    );
    let from_msg: SendError = MessageError::NoRecipients.into();
    assert_eq!(
        (from_msg.kind, from_msg.stage),
        (Kind::Permanent, Stage::Message)
    );
}

#[test]
fn defaults_and_root_pem() {
    let c = SmtpConfig::new("smtp.example.com", 587);
    assert_eq!(c.tls, TlsMode::StartTls, "secure by default");
    assert_eq!(c.helo_name, DEFAULT_HELO_NAME);
    assert_eq!(c.timeouts, Timeouts::default());
    assert!(c.validate().is_ok());
    assert_eq!(
        Credentials::new("u", "p"),
        Credentials {
            username: "u".into(),
            password: "p".into()
        }
    );

    let mut c = SmtpConfig::new("smtp.example.com", 587);
    let a = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.test".to_owned()]).unwrap();
    let pem = format!("{}{}", a.cert.pem(), b.cert.pem());
    assert_eq!(c.add_root_pem(pem.as_bytes()).unwrap(), 2);
    assert_eq!(c.extra_roots, [a.cert.der().clone(), b.cert.der().clone()]);
    let e = c.add_root_pem(b"not a certificate\n").unwrap_err();
    assert!(e.message.contains("no certificate in it"), "{e}");
    let e = c
        .add_root_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap_err();
    assert_eq!(e.stage, Stage::Config);
}
