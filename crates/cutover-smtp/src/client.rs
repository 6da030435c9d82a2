//! The SMTP client (RFC 5321), with STARTTLS (RFC 3207), implicit TLS (RFC 8314), AUTH PLAIN
//! and LOGIN (RFC 4954, 4616) and a two-phase send for idempotent delivery.
//!
//! ```no_run
//! # async fn demo(cfg: cutover_smtp::SmtpConfig, msg: cutover_smtp::Message) -> Result<(), Box<dyn std::error::Error>> {
//! use cutover_smtp::SmtpConnection;
//! let bytes = msg.to_bytes()?;
//! let mut conn = SmtpConnection::connect(&cfg).await?; // greeting, EHLO, STARTTLS, EHLO, AUTH
//! let staged = conn
//!     .stage(&msg.from.address, &msg.envelope_recipients(), &bytes)
//!     .await?; // MAIL FROM, RCPT TO, DATA, the body without the final dot
//! // ... record "transmitting" in the outbox here ...
//! let delivered = staged.commit().await?; // the final dot, and the server's reply
//! conn.quit().await;
//! # let _ = delivered; Ok(()) }
//! ```
//!
//! Every error is a [`SendError`] whose [`Kind`] tells what to do: [`Kind::Transient`] — nothing
//! was accepted, try again later; [`Kind::Permanent`] — retrying will not help (fix the
//! configuration, the address or the message); [`Kind::Uncertain`] — the final dot was sent
//! but no reply came back, so the server may have accepted the message: resending may
//! deliver it twice.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::address::{address_problem, printable};
use crate::encoding::{check_crlf_lines, dot_stuff};
use crate::message::{MAX_LINE_BYTES, MAX_RECIPIENTS, Message, MessageError};
use crate::reply::{Capabilities, MAX_REPLY_LINE_BYTES, MAX_REPLY_LINES, Reply, parse_reply_line};

/// Time to establish the TCP connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the server's 220 greeting. RFC 5321 §4.5.3.2.1 suggests 5 minutes; a relay that
/// takes more than a minute to greet is treated as unavailable (transient), which is safe
/// because nothing has been sent yet.
pub const DEFAULT_GREETING_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for the reply to each command (EHLO, STARTTLS and its handshake, AUTH, MAIL, RCPT,
/// DATA, RSET). RFC 5321 suggests 2-5 minutes; one minute is plenty for a relay and, before
/// the final dot, a timeout is always safe to retry.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Time to write each block of message data (RFC 5321 §4.5.3.2.5 suggests 3 minutes).
pub const DEFAULT_DATA_BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for the reply to the final dot. RFC 5321 §4.5.3.2.6 suggests 10 minutes, because
/// giving up here is what makes an outcome [`Kind::Uncertain`]; 5 minutes bounds a sending
/// worker while still waiting far longer than any working relay needs to queue a message.
pub const DEFAULT_DATA_END_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest message accepted by [`SmtpConnection::stage`], before dot-stuffing.
pub const MAX_DATA_BYTES: usize = 16 * 1024 * 1024;
/// Longest AUTH user name or password.
pub const MAX_CREDENTIAL_BYTES: usize = 1024;
/// Longest HELO name (a domain name).
pub const MAX_HELO_NAME_BYTES: usize = 255;
/// The EHLO name of [`SmtpConfig::new`]; a real deployment sets its own domain name.
pub const DEFAULT_HELO_NAME: &str = "localhost";
/// Bytes written per data block.
const DATA_BLOCK_BYTES: usize = 64 * 1024;

/// How the connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text throughout. AUTH is then refused unless the server is on loopback.
    None,
    /// STARTTLS is required: a server that does not offer it is refused (permanent).
    StartTls,
    /// STARTTLS when the server offers it, plain text otherwise (opportunistic).
    StartTlsIfOffered,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

/// AUTH user name and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Per-step time limits; see the `DEFAULT_*` constants for the reasoning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub greeting: Duration,
    pub command: Duration,
    pub data_block: Duration,
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            greeting: DEFAULT_GREETING_TIMEOUT,
            command: DEFAULT_COMMAND_TIMEOUT,
            data_block: DEFAULT_DATA_BLOCK_TIMEOUT,
            data_end: DEFAULT_DATA_END_TIMEOUT,
        }
    }
}

/// Where and how to connect. Certificates are always verified: against the system's roots
/// plus `extra_roots` (e.g. the organisation's private CA). There is no switch to skip it.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub credentials: Option<Credentials>,
    /// The name this client gives in EHLO (the sending host's domain name).
    pub helo_name: String,
    pub timeouts: Timeouts,
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl SmtpConfig {
    /// A config with default timeouts, no credentials and no extra roots.
    /// A config with the secure defaults: STARTTLS required, EHLO name [`DEFAULT_HELO_NAME`]
    /// (set `helo_name` to this server's domain name), default timeouts, no credentials and
    /// no extra roots. Set the public fields for anything else.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            tls: TlsMode::StartTls,
            credentials: None,
            helo_name: DEFAULT_HELO_NAME.to_owned(),
            timeouts: Timeouts::default(),
            extra_roots: Vec::new(),
        }
    }

    /// Trust the CA certificates in a PEM file's contents (e.g. the organisation's private
    /// CA) besides the system's roots. Returns how many were added.
    pub fn add_root_pem(&mut self, pem: &[u8]) -> Result<usize, SendError> {
        use rustls::pki_types::pem::PemObject as _;
        let bad = |m: String| SendError::new(Kind::Permanent, Stage::Config, m);
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| bad(format!("not a readable PEM file: {e}")))?;
            let mut check = rustls::RootCertStore::empty();
            check
                .add(cert.clone())
                .map_err(|e| bad(format!("a certificate in it is not a usable CA: {e}")))?;
            self.extra_roots.push(cert);
            added += 1;
        }
        if added == 0 {
            return Err(bad(
                "no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)".to_owned(),
            ));
        }
        Ok(added)
    }

    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<(), SendError> {
        let bad = |message: String| Err(SendError::new(Kind::Permanent, Stage::Config, message));
        let host = self.host.trim();
        if host.is_empty() {
            return bad("smtp host is empty".to_owned());
        }
        if host
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '/')
        {
            return bad(format!(
                "smtp host '{}' must be a bare host name or IP address (no spaces, no URL)",
                printable(host)
            ));
        }
        if self.port == 0 {
            return bad("smtp port is 0; use 587 (STARTTLS), 465 (implicit TLS) or 25".to_owned());
        }
        let helo = &self.helo_name;
        if helo.is_empty() {
            return bad("helo_name is empty; set it to this server's domain name".to_owned());
        }
        if helo.len() > MAX_HELO_NAME_BYTES {
            return bad(format!(
                "helo_name is {} bytes long; at most {MAX_HELO_NAME_BYTES} are allowed",
                helo.len()
            ));
        }
        if !helo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b))
        {
            return bad(format!(
                "helo_name '{}' must be a domain name or an address literal like [192.0.2.1] (letters, digits, '-', '.')",
                printable(helo)
            ));
        }
        if let Some(c) = &self.credentials {
            if c.username.is_empty() {
                return bad(
                    "smtp username is empty (remove the credentials to send without AUTH)"
                        .to_owned(),
                );
            }
            for (field, value) in [("username", &c.username), ("password", &c.password)] {
                if value.len() > MAX_CREDENTIAL_BYTES {
                    return bad(format!(
                        "smtp {field} is {} bytes long; at most {MAX_CREDENTIAL_BYTES} are allowed",
                        value.len()
                    ));
                }
                if value.contains('\0') {
                    return bad(format!(
                        "smtp {field} contains a NUL character, which AUTH PLAIN cannot carry"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What an error means for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Not accepted, and trying again later may work (4xx, connection refused or lost before
    /// the final dot, a timeout before the final dot, a protocol error before it).
    Transient,
    /// Not accepted, and trying again will not help (5xx, a bad address, AUTH refused, TLS
    /// refused or unverifiable, a message too big, a configuration error).
    Permanent,
    /// The final dot was written but no reply came (connection lost, timeout, garbled reply):
    /// the server may have accepted the message. Resending may deliver it twice.
    Uncertain,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Transient => "transient",
            Kind::Permanent => "permanent",
            Kind::Uncertain => "uncertain",
        })
    }
}

/// Another name for [`Kind`].
pub type ErrorKind = Kind;

/// Where in the session an error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Config,
    Message,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    /// Writing the final dot and waiting for its reply.
    Commit,
    Reset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Config => "configuration",
            Stage::Message => "message",
            Stage::Connect => "connect",
            Stage::Tls => "TLS handshake",
            Stage::Greeting => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Commit => "end of data",
            Stage::Reset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

/// A failed step: what kind of failure, where, the server's reply if there was one, and an
/// explanation for the operator. Never contains the password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct SendError {
    pub kind: Kind,
    pub stage: Stage,
    pub reply: Option<(u16, String)>,
    pub message: String,
}

impl SendError {
    pub fn new(kind: Kind, stage: Stage, message: impl Into<String>) -> Self {
        Self {
            kind,
            stage,
            reply: None,
            message: message.into(),
        }
    }

    fn with_reply(mut self, reply: &Reply) -> Self {
        self.reply = Some(reply.pair());
        self
    }

    /// Whether sending the same message again later is the right thing to do. False for
    /// [`Kind::Uncertain`]: the caller decides (the message may already be delivered).
    pub fn retryable(&self) -> bool {
        self.kind == Kind::Transient
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "SMTP {} failed ({}): {}",
            self.stage, self.kind, self.message
        );
        if let Some((code, text)) = &self.reply {
            s.push_str(&format!("; the server replied {code} {text}"));
        }
        s
    }
}

impl From<MessageError> for SendError {
    fn from(e: MessageError) -> Self {
        SendError::new(Kind::Permanent, Stage::Message, e.to_string())
    }
}

/// A recipient the server refused at RCPT TO: address, reply code (4xx: for now, 5xx: for
/// good) and the reply's text.
pub type Refusal = (String, u16, String);

/// The server accepted the message (250 to the final dot) for `accepted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub accepted: Vec<String>,
    /// Recipients refused at RCPT TO; the message went to the others.
    pub refused: Vec<Refusal>,
    /// The server's reply to the final dot (often carries its queue id).
    pub reply: (u16, String),
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Closed,
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Closed => Err(closed_error()),
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Stream::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Stream::Closed => Err(closed_error()),
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
            Stream::Closed => Ok(()),
        };
    }
}

fn closed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "connection already closed",
    )
}

/// Why reading a reply failed.
enum ReadFail {
    Timeout(Duration),
    Closed,
    Io(std::io::Error),
    Protocol(String),
}

impl fmt::Display for ReadFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFail::Timeout(d) => write!(f, "no reply within {} s", d.as_secs_f64()),
            ReadFail::Closed => f.write_str("the server closed the connection"),
            ReadFail::Io(e) => write!(f, "connection error: {e}"),
            ReadFail::Protocol(p) => write!(f, "protocol error: {p}"),
        }
    }
}

/// An open SMTP session, greeted, EHLO'd, secured and authenticated as configured. One
/// connection can carry several messages, one after the other.
pub struct SmtpConnection {
    stream: Stream,
    rbuf: Vec<u8>,
    caps: Capabilities,
    timeouts: Timeouts,
    helo_name: String,
    /// `host:port`, for messages.
    server: String,
    peer: Option<SocketAddr>,
    tls_active: bool,
    /// Set once the session is out of step (I/O error, timeout, protocol error, a staged
    /// message dropped): every later call fails fast with this reason.
    broken: Option<String>,
}

impl fmt::Debug for SmtpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConnection")
            .field("server", &self.server)
            .field("tls_active", &self.tls_active)
            .field("capabilities", &self.caps)
            .field("broken", &self.broken)
            .finish()
    }
}

fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn tls_connector(cfg: &SmtpConfig) -> Result<TlsConnector, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in native_roots() {
        let _ = roots.add(cert.clone());
    }
    for (i, cert) in cfg.extra_roots.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            SendError::new(
                Kind::Permanent,
                Stage::Config,
                format!("extra_roots[{i}] is not a usable CA certificate: {e}"),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(SendError::new(
            Kind::Permanent,
            Stage::Config,
            "no trusted CA certificates: the system has none (install ca-certificates) and extra_roots is empty",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            SendError::new(
                Kind::Permanent,
                Stage::Config,
                format!("TLS library misconfigured: {e}"),
            )
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn tls_hint(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature | C::BadEncoding => {
                "the server's certificate is not issued by a trusted CA: add the CA certificate to extra_roots (or the system store)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server's certificate does not name the configured host: connect with a host name the certificate lists"
            }
            C::Expired | C::ExpiredContext { .. } => {
                "the server's certificate has expired (or this machine's clock is wrong)"
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)"
            }
            _ => "check the server's certificate",
        },
        rustls::Error::InvalidMessage(_) => {
            "is the server speaking TLS here? Port 465 is implicit TLS; on 587 or 25 use STARTTLS"
        }
        _ => "check the server's TLS configuration",
    }
}

impl SmtpConnection {
    /// Connect, read the greeting, EHLO, STARTTLS (as configured) and EHLO again, then AUTH
    /// (when credentials are set).
    pub async fn connect(cfg: &SmtpConfig) -> Result<Self, SendError> {
        cfg.validate()?;
        let host = cfg.host.trim();
        let connector = match cfg.tls {
            TlsMode::None => None,
            _ => Some(tls_connector(cfg)?),
        };
        let server_name = match cfg.tls {
            TlsMode::None => None,
            _ => Some(ServerName::try_from(host.to_owned()).map_err(|e| {
                SendError::new(
                    Kind::Permanent,
                    Stage::Config,
                    format!(
                        "smtp host '{}' cannot be checked against a TLS certificate: {e}",
                        printable(host)
                    ),
                )
            })?),
        };
        let server = format!("{host}:{}", cfg.port);
        let tcp = match tokio::time::timeout(
            cfg.timeouts.connect,
            TcpStream::connect((host, cfg.port)),
        )
        .await
        {
            Err(_) => {
                return Err(SendError::new(
                    Kind::Transient,
                    Stage::Connect,
                    format!(
                        "no connection to {server} within {} s (is the host reachable and the port open?)",
                        cfg.timeouts.connect.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(SendError::new(
                    Kind::Transient,
                    Stage::Connect,
                    format!("cannot connect to {server}: {e}"),
                ));
            }
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr().ok();
        let mut conn = SmtpConnection {
            stream: Stream::Plain(tcp),
            rbuf: Vec::with_capacity(2 * MAX_REPLY_LINE_BYTES),
            caps: Capabilities::default(),
            timeouts: cfg.timeouts,
            helo_name: cfg.helo_name.clone(),
            server,
            peer,
            tls_active: false,
            broken: None,
        };

        if let (TlsMode::Implicit, Some(connector), Some(name)) =
            (cfg.tls, &connector, &server_name)
        {
            conn.handshake(connector, name.clone()).await?;
        }

        let greeting = conn
            .read_reply(conn.timeouts.greeting, Stage::Greeting)
            .await?;
        if greeting.code != 220 {
            conn.broken = Some("greeting refused".to_owned());
            let kind = if greeting.is_transient() {
                Kind::Transient
            } else {
                Kind::Permanent
            };
            return Err(SendError::new(
                kind,
                Stage::Greeting,
                format!("{} does not accept mail sessions now", conn.server),
            )
            .with_reply(&greeting));
        }

        conn.ehlo().await?;

        if matches!(cfg.tls, TlsMode::StartTls | TlsMode::StartTlsIfOffered) {
            let required = cfg.tls == TlsMode::StartTls;
            if !conn.caps.starttls {
                if required {
                    return Err(SendError::new(
                        Kind::Permanent,
                        Stage::StartTls,
                        format!(
                            "{} does not offer STARTTLS, and tls = StartTls requires it (use implicit TLS on port 465 if the server offers that)",
                            conn.server
                        ),
                    ));
                }
                tracing::warn!(server = %conn.server, "SMTP server does not offer STARTTLS; continuing without TLS");
            } else {
                let reply = conn.command("STARTTLS", Stage::StartTls).await?;
                if reply.code == 220 {
                    if !conn.rbuf.is_empty() {
                        conn.broken = Some("data after STARTTLS".to_owned());
                        return Err(SendError::new(
                            Kind::Permanent,
                            Stage::StartTls,
                            format!(
                                "{} sent more data right after its 220 to STARTTLS (refused: possible command injection)",
                                conn.server
                            ),
                        ));
                    }
                    if let (Some(connector), Some(name)) = (&connector, &server_name) {
                        conn.handshake(connector, name.clone()).await?;
                    }
                    conn.ehlo().await?;
                } else if required {
                    let kind = if reply.is_transient() {
                        Kind::Transient
                    } else {
                        Kind::Permanent
                    };
                    return Err(SendError::new(
                        kind,
                        Stage::StartTls,
                        format!("{} refused STARTTLS", conn.server),
                    )
                    .with_reply(&reply));
                } else {
                    tracing::warn!(server = %conn.server, code = reply.code, "SMTP server refused STARTTLS; continuing without TLS");
                }
            }
        }

        if let Some(credentials) = &cfg.credentials {
            conn.auth(credentials).await?;
        }
        Ok(conn)
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// What the server announced in its (last) EHLO.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Why the connection can no longer be used, if it cannot.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    fn is_loopback(&self) -> bool {
        self.peer.is_some_and(|p| p.ip().is_loopback())
    }

    async fn handshake(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
    ) -> Result<(), SendError> {
        let tcp = match std::mem::replace(&mut self.stream, Stream::Closed) {
            Stream::Plain(tcp) => tcp,
            other => {
                self.stream = other;
                self.broken = Some("TLS started twice".to_owned());
                return Err(SendError::new(
                    Kind::Permanent,
                    Stage::Tls,
                    "TLS is already active on this connection",
                ));
            }
        };
        self.rbuf.clear();
        match tokio::time::timeout(self.timeouts.command, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.tls_active = true;
                Ok(())
            }
            Ok(Err(e)) => {
                self.broken = Some("TLS handshake failed".to_owned());
                if let Some(r) = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Err(SendError::new(
                        Kind::Permanent,
                        Stage::Tls,
                        format!("TLS with {} failed: {r}; {}", self.server, tls_hint(r)),
                    ))
                } else {
                    Err(SendError::new(
                        Kind::Transient,
                        Stage::Tls,
                        format!(
                            "the connection to {} failed during the TLS handshake: {e}",
                            self.server
                        ),
                    ))
                }
            }
            Err(_) => {
                self.broken = Some("TLS handshake timed out".to_owned());
                Err(SendError::new(
                    Kind::Transient,
                    Stage::Tls,
                    format!(
                        "no TLS handshake with {} within {} s",
                        self.server,
                        self.timeouts.command.as_secs_f64()
                    ),
                ))
            }
        }
    }

    async fn ehlo(&mut self) -> Result<(), SendError> {
        let line = format!("EHLO {}", self.helo_name);
        let reply = self.command(&line, Stage::Ehlo).await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.is_permanent() {
            // A server without ESMTP: HELO, and no extensions.
            let line = format!("HELO {}", self.helo_name);
            let helo = self.command(&line, Stage::Ehlo).await?;
            if helo.code == 250 {
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(self.refused(Stage::Ehlo, &helo, "refused HELO and EHLO".to_owned()));
        }
        Err(self.refused(Stage::Ehlo, &reply, "refused EHLO".to_owned()))
    }

    async fn auth(&mut self, c: &Credentials) -> Result<(), SendError> {
        if !self.tls_active && !self.is_loopback() {
            return Err(SendError::new(
                Kind::Permanent,
                Stage::Auth,
                format!(
                    "refusing to send the password for '{}' unencrypted to {}: set tls to StartTls or Implicit (AUTH without TLS is only allowed to a loopback server)",
                    printable(&c.username),
                    self.server
                ),
            ));
        }
        let offered = self.caps.auth.clone();
        if offered.is_empty() {
            let hint = if self.tls_active {
                ""
            } else {
                " (many servers offer AUTH only after STARTTLS)"
            };
            return Err(SendError::new(
                Kind::Permanent,
                Stage::Auth,
                format!(
                    "{} does not offer AUTH{hint}; remove the credentials or fix the server",
                    self.server
                ),
            ));
        }
        let user = printable(&c.username);
        let final_reply = if offered.iter().any(|m| m == "PLAIN") {
            let token = B64.encode(format!("\0{}\0{}", c.username, c.password));
            self.secret_command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN <credentials>")
                .await?
        } else if offered.iter().any(|m| m == "LOGIN") {
            let r = self.command("AUTH LOGIN", Stage::Auth).await?;
            if r.code != 334 {
                return Err(self.refused(
                    Stage::Auth,
                    &r,
                    format!("refused AUTH LOGIN for '{user}'"),
                ));
            }
            let r = self
                .secret_command(&B64.encode(&c.username), "<user name>")
                .await?;
            if r.code != 334 {
                return Err(self.refused(
                    Stage::Auth,
                    &r,
                    format!("refused the user name '{user}' (AUTH LOGIN)"),
                ));
            }
            self.secret_command(&B64.encode(&c.password), "<password>")
                .await?
        } else {
            return Err(SendError::new(
                Kind::Permanent,
                Stage::Auth,
                format!(
                    "{} offers AUTH {}, but only PLAIN and LOGIN are supported",
                    self.server,
                    offered.join(" ")
                ),
            ));
        };
        if final_reply.code == 235 {
            return Ok(());
        }
        Err(self.refused(
            Stage::Auth,
            &final_reply,
            format!("refused the credentials for '{user}' (check the user name and password)"),
        ))
    }

    /// An error for a negative reply: 4xx transient, 5xx permanent, anything else a protocol
    /// error (transient; the session is then out of step).
    fn refused(&mut self, stage: Stage, reply: &Reply, what: String) -> SendError {
        let kind = if reply.is_permanent() {
            Kind::Permanent
        } else {
            if !reply.is_transient() {
                self.broken = Some(format!("unexpected reply {} at {stage}", reply.code));
            }
            Kind::Transient
        };
        SendError::new(kind, stage, format!("{} {what}", self.server)).with_reply(reply)
    }

    fn fail_if_broken(&self, stage: Stage) -> Result<(), SendError> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(SendError::new(
                Kind::Transient,
                stage,
                format!(
                    "the connection to {} is no longer usable ({why}); connect again",
                    self.server
                ),
            )),
        }
    }

    async fn write(
        &mut self,
        data: &[u8],
        timeout: Duration,
        stage: Stage,
    ) -> Result<(), SendError> {
        match tokio::time::timeout(timeout, self.stream.write_all(data)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.broken = Some(format!("write failed: {e}"));
                Err(SendError::new(
                    Kind::Transient,
                    stage,
                    format!("cannot write to {}: {e}", self.server),
                ))
            }
            Err(_) => {
                self.broken = Some("write timed out".to_owned());
                Err(SendError::new(
                    Kind::Transient,
                    stage,
                    format!(
                        "{} did not take data for {} s",
                        self.server,
                        timeout.as_secs_f64()
                    ),
                ))
            }
        }
    }

    /// Send a command line and read its reply (both within the command timeout).
    async fn command(&mut self, line: &str, stage: Stage) -> Result<Reply, SendError> {
        tracing::debug!(server = %self.server, "C: {line}");
        self.command_inner(line, stage).await
    }

    /// Like [`command`](Self::command), but the line is never logged.
    async fn secret_command(&mut self, line: &str, shown: &str) -> Result<Reply, SendError> {
        tracing::debug!(server = %self.server, "C: {shown}");
        self.command_inner(line, Stage::Auth).await
    }

    async fn command_inner(&mut self, line: &str, stage: Stage) -> Result<Reply, SendError> {
        self.fail_if_broken(stage)?;
        let mut data = Vec::with_capacity(line.len() + 2);
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(b"\r\n");
        self.write(&data, self.timeouts.command, stage).await?;
        self.read_reply(self.timeouts.command, stage).await
    }

    /// Read one reply within `timeout`; any failure breaks the session and is transient.
    async fn read_reply(&mut self, timeout: Duration, stage: Stage) -> Result<Reply, SendError> {
        match self.read_reply_raw(timeout).await {
            Ok(r) => {
                tracing::debug!(server = %self.server, "S: {} {}", r.code, r.text());
                Ok(r)
            }
            Err(fail) => {
                self.broken = Some(fail.to_string());
                Err(SendError::new(
                    Kind::Transient,
                    stage,
                    format!("{}: {fail}", self.server),
                ))
            }
        }
    }

    async fn read_reply_raw(&mut self, timeout: Duration) -> Result<Reply, ReadFail> {
        match tokio::time::timeout(timeout, self.read_reply_lines()).await {
            Ok(r) => r,
            Err(_) => Err(ReadFail::Timeout(timeout)),
        }
    }

    async fn read_reply_lines(&mut self) -> Result<Reply, ReadFail> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let raw = self.read_line().await?;
            let line = parse_reply_line(&raw).map_err(ReadFail::Protocol)?;
            match code {
                None => code = Some(line.code),
                Some(c) if c != line.code => {
                    return Err(ReadFail::Protocol(format!(
                        "a multi-line reply changed its code from {c} to {}",
                        line.code
                    )));
                }
                Some(_) => {}
            }
            lines.push(line.text);
            if line.last {
                return Ok(Reply {
                    code: line.code,
                    lines,
                });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ReadFail::Protocol(format!(
                    "a reply of more than {MAX_REPLY_LINES} lines"
                )));
            }
        }
    }

    /// One line (without CRLF), at most [`MAX_REPLY_LINE_BYTES`] with its line break.
    async fn read_line(&mut self) -> Result<Vec<u8>, ReadFail> {
        loop {
            if let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
                if pos + 1 > MAX_REPLY_LINE_BYTES {
                    return Err(ReadFail::Protocol(format!(
                        "a reply line longer than {MAX_REPLY_LINE_BYTES} bytes"
                    )));
                }
                let mut line: Vec<u8> = self.rbuf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.rbuf.len() >= MAX_REPLY_LINE_BYTES {
                return Err(ReadFail::Protocol(format!(
                    "a reply line longer than {MAX_REPLY_LINE_BYTES} bytes"
                )));
            }
            let mut chunk = [0u8; 1024];
            let n = self.stream.read(&mut chunk).await.map_err(ReadFail::Io)?;
            if n == 0 {
                return Err(ReadFail::Closed);
            }
            self.rbuf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }

    /// Start a transaction: MAIL FROM, RCPT TO for each recipient, DATA, and the message
    /// (dot-stuffed) without the final `.` — which [`Staged::commit`] sends. `envelope_from`
    /// may be empty (a null reverse-path, `<>`). `message` must use CRLF line breaks with lines
    /// ≤ 998 bytes (as [`Message::to_bytes`] writes them); 8-bit bytes need a server that
    /// offers 8BITMIME. Refused before anything is sent when the server's SIZE is smaller.
    ///
    /// Recipients refused at RCPT TO are reported in the outcome; if all are refused the
    /// error is permanent (transient if any refusal was 4xx).
    pub async fn stage<'a>(
        &'a mut self,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Staged<'a>, SendError> {
        self.fail_if_broken(Stage::MailFrom)?;
        if !envelope_from.is_empty()
            && let Some(p) = address_problem(envelope_from)
        {
            return Err(SendError::new(
                Kind::Permanent,
                Stage::MailFrom,
                format!("envelope sender '{}' {p}", printable(envelope_from)),
            ));
        }
        check_recipients(recipients)?;
        let data = prepare_data(message, &self.caps)?;

        let mut mail = format!("MAIL FROM:<{envelope_from}>");
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", data.len() + 3));
        }
        if !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let reply = self.command(&mail, Stage::MailFrom).await?;
        if reply.code != 250 {
            return Err(self.refused(
                Stage::MailFrom,
                &reply,
                format!("refused the sender <{envelope_from}>"),
            ));
        }

        let mut accepted = Vec::new();
        let mut refused: Vec<Refusal> = Vec::new();
        for rcpt in recipients {
            let reply = self
                .command(&format!("RCPT TO:<{rcpt}>"), Stage::RcptTo)
                .await?;
            if reply.code == 250 || reply.code == 251 {
                accepted.push(rcpt.clone());
            } else if reply.is_transient() || reply.is_permanent() {
                refused.push((rcpt.clone(), reply.code, reply.text()));
            } else {
                return Err(self.refused(
                    Stage::RcptTo,
                    &reply,
                    format!("gave an unexpected reply to RCPT TO:<{rcpt}>"),
                ));
            }
        }
        if accepted.is_empty() {
            self.reset_quietly().await;
            let any_transient = refused.iter().any(|(_, code, _)| (400..500).contains(code));
            let list = refused
                .iter()
                .map(|(a, c, t)| format!("<{a}>: {c} {t}"))
                .collect::<Vec<_>>()
                .join("; ");
            let mut e = SendError::new(
                if any_transient {
                    Kind::Transient
                } else {
                    Kind::Permanent
                },
                Stage::RcptTo,
                format!("{} refused every recipient ({list})", self.server),
            );
            e.reply = refused.first().map(|(_, c, t)| (*c, t.clone()));
            return Err(e);
        }

        let reply = self.command("DATA", Stage::Data).await?;
        if reply.code != 354 {
            let e = self.refused(Stage::Data, &reply, "refused DATA".to_owned());
            if self.broken.is_none() {
                self.reset_quietly().await;
            }
            return Err(e);
        }
        for block in data.chunks(DATA_BLOCK_BYTES) {
            self.write(block, self.timeouts.data_block, Stage::Data)
                .await?;
        }
        // Until commit() the session is mid-DATA: a Staged dropped unsent leaves it unusable.
        self.broken =
            Some("a staged message was neither committed nor abandoned cleanly".to_owned());
        Ok(Staged {
            conn: self,
            accepted,
            refused,
        })
    }

    /// Build, stage and commit a [`Message`] in one call (envelope sender: the From address;
    /// recipients: To + Cc). For test sends; the outbox uses [`stage`](Self::stage) and
    /// [`Staged::commit`] to record the commit point.
    pub async fn send(&mut self, message: &Message) -> Result<Delivered, SendError> {
        let bytes = message.to_bytes()?;
        let recipients = message.envelope_recipients();
        let staged = self
            .stage(&message.from.address, &recipients, &bytes)
            .await?;
        staged.commit().await
    }

    /// RSET: abandon any transaction and make the session ready for the next message.
    pub async fn reset(&mut self) -> Result<(), SendError> {
        let reply = self.command("RSET", Stage::Reset).await?;
        if reply.code == 250 {
            Ok(())
        } else {
            Err(self.refused(Stage::Reset, &reply, "refused RSET".to_owned()))
        }
    }

    async fn reset_quietly(&mut self) {
        if let Err(e) = self.reset().await {
            tracing::debug!(server = %self.server, "RSET after a refusal failed: {e}");
        }
    }

    /// QUIT and close. Failures here do not matter to any message already committed, so they
    /// are only logged.
    pub async fn quit(mut self) {
        if self.broken.is_none()
            && let Err(e) = self.command("QUIT", Stage::Quit).await
        {
            tracing::debug!(server = %self.server, "QUIT: {e}");
        }
        let _ = tokio::time::timeout(self.timeouts.command, self.stream.shutdown()).await;
    }
}

impl SmtpConnection {
    /// Before the final dot: has the server already closed the connection or said something
    /// (e.g. `421` mid-DATA)? Then the dot is not sent and the outcome is certain: not
    /// accepted. Looks only at what has already arrived; never waits.
    async fn check_silent_before_dot(&mut self) -> Result<(), SendError> {
        let not_sent = "before the final dot was sent, so the message was not accepted";
        if self.rbuf.is_empty() {
            let mut probe = [0u8; 1024];
            match tokio::time::timeout(Duration::ZERO, self.stream.read(&mut probe)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => {
                    self.broken = Some("closed by the server".to_owned());
                    return Err(SendError::new(
                        Kind::Transient,
                        Stage::Commit,
                        format!("{} closed the connection {not_sent}", self.server),
                    ));
                }
                Ok(Ok(n)) => self
                    .rbuf
                    .extend_from_slice(probe.get(..n).unwrap_or_default()),
                Ok(Err(e)) => {
                    self.broken = Some(format!("connection error: {e}"));
                    return Err(SendError::new(
                        Kind::Transient,
                        Stage::Commit,
                        format!("connection error with {} {not_sent}: {e}", self.server),
                    ));
                }
            }
        }
        let reply = self.read_reply(self.timeouts.command, Stage::Commit).await;
        self.broken = Some("the server spoke during DATA".to_owned());
        let reply = reply?;
        let kind = if reply.is_permanent() {
            Kind::Permanent
        } else {
            Kind::Transient
        };
        Err(SendError::new(
            kind,
            Stage::Commit,
            format!("{} replied during DATA, {not_sent}", self.server),
        )
        .with_reply(&reply))
    }
}

fn check_recipients(recipients: &[String]) -> Result<(), SendError> {
    if recipients.is_empty() {
        return Err(SendError::new(
            Kind::Permanent,
            Stage::RcptTo,
            "no recipients: give at least one envelope recipient",
        ));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(SendError::new(
            Kind::Permanent,
            Stage::RcptTo,
            format!(
                "{} recipients; at most {MAX_RECIPIENTS} are allowed per message (split the message)",
                recipients.len()
            ),
        ));
    }
    for (i, r) in recipients.iter().enumerate() {
        if let Some(p) = address_problem(r) {
            return Err(SendError::new(
                Kind::Permanent,
                Stage::RcptTo,
                format!("recipient {i} '{}' {p}", printable(r)),
            ));
        }
    }
    Ok(())
}

/// The DATA payload without the final `.CRLF`: checked, dot-stuffed, ending with CRLF.
pub(crate) fn prepare_data(message: &[u8], caps: &Capabilities) -> Result<Vec<u8>, SendError> {
    let bad = |m: String| SendError::new(Kind::Permanent, Stage::Data, m);
    if message.len() > MAX_DATA_BYTES {
        return Err(bad(format!(
            "the message is {} bytes; at most {MAX_DATA_BYTES} are allowed",
            message.len()
        )));
    }
    if let Some(problem) = check_crlf_lines(message, MAX_LINE_BYTES) {
        return Err(bad(format!("the message cannot be sent as is: {problem}")));
    }
    if !message.is_ascii() && !caps.eight_bit_mime {
        return Err(bad(
            "the message has 8-bit bytes and the server does not offer 8BITMIME (encode the body as quoted-printable or base64)"
                .to_owned(),
        ));
    }
    let mut data = dot_stuff(message);
    if !data.is_empty() && !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    if let Some(limit) = caps.size {
        let total = data.len() as u64 + 3;
        if total > limit {
            return Err(bad(format!(
                "the message is {total} bytes on the wire; the server accepts at most {limit} (SIZE)"
            )));
        }
    }
    Ok(data)
}

/// A transaction whose message has been sent up to, not including, the final dot. Call
/// [`commit`](Self::commit) to send the dot. Dropping it instead leaves the connection
/// unusable (SMTP cannot cancel DATA): drop the connection too, and nothing is delivered.
#[must_use = "nothing is delivered until commit() sends the final dot"]
pub struct Staged<'a> {
    conn: &'a mut SmtpConnection,
    accepted: Vec<String>,
    refused: Vec<Refusal>,
}

impl fmt::Debug for Staged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("server", &self.conn.server)
            .field("accepted", &self.accepted)
            .field("refused", &self.refused)
            .finish()
    }
}

impl Staged<'_> {
    /// Recipients the server accepted at RCPT TO.
    pub fn accepted(&self) -> &[String] {
        &self.accepted
    }

    /// Recipients the server refused at RCPT TO.
    pub fn refused(&self) -> &[Refusal] {
        &self.refused
    }

    /// Send the final dot and read the server's verdict. After this returns `Ok`, the server
    /// has taken responsibility for the message; [`Kind::Uncertain`] means the dot went out
    /// but the verdict was lost. The connection stays usable after `Ok` and after a 4xx/5xx.
    pub async fn commit(self) -> Result<Delivered, SendError> {
        let conn = self.conn;
        conn.broken = None;
        conn.check_silent_before_dot().await?;
        conn.write(b".\r\n", conn.timeouts.data_block, Stage::Commit)
            .await
            .map_err(|mut e| {
                e.message.push_str(
                    " (the final dot was not written, so the server cannot have accepted the message)",
                );
                e
            })?;
        tracing::debug!(server = %conn.server, "C: .");
        match conn.read_reply_raw(conn.timeouts.data_end).await {
            Ok(reply) if reply.is_positive() => {
                tracing::debug!(server = %conn.server, "S: {} {}", reply.code, reply.text());
                Ok(Delivered {
                    accepted: self.accepted,
                    refused: self.refused,
                    reply: reply.pair(),
                })
            }
            Ok(reply) if reply.is_transient() || reply.is_permanent() => {
                let kind = if reply.is_transient() {
                    Kind::Transient
                } else {
                    Kind::Permanent
                };
                Err(SendError::new(
                    kind,
                    Stage::Commit,
                    format!("{} did not accept the message", conn.server),
                )
                .with_reply(&reply))
            }
            Ok(reply) => {
                conn.broken = Some(format!("unexpected reply {} to the final dot", reply.code));
                Err(SendError::new(
                    Kind::Uncertain,
                    Stage::Commit,
                    format!(
                        "{} gave an unexpected reply to the final dot; the message may or may not have been accepted",
                        conn.server
                    ),
                )
                .with_reply(&reply))
            }
            Err(fail) => {
                conn.broken = Some(fail.to_string());
                Err(SendError::new(
                    Kind::Uncertain,
                    Stage::Commit,
                    format!(
                        "{}: {fail} after the final dot was sent; the server may or may not have accepted the message (do not resend blindly: look for its Message-ID at the recipient or in the server's log)",
                        conn.server
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
