//! SMTP for Cutover: the message builder and the client that delivers campaign e-mails
//! through the organisation's mail server.
//!
//! - [`Message`] → [`Message::to_bytes`]: RFC 5322 headers, MIME (`multipart/alternative`
//!   text + HTML, quoted-printable UTF-8), RFC 2047 encoded-words, CRLF only, lines ≤ 998,
//!   header injection refused. Pure: the date is an argument.
//! - [`SmtpConnection`]: RFC 5321 client over tokio with STARTTLS / implicit TLS (rustls,
//!   certificates always verified), AUTH PLAIN/LOGIN (only over TLS or to loopback), SIZE,
//!   dot-stuffing, bounded replies, and a **two-phase send**: [`SmtpConnection::stage`] sends
//!   everything but the final dot, [`Staged::commit`] sends it. The caller records "about to
//!   commit" in between, so that after a crash it knows which messages may have gone out.
//! - [`SendError`] classifies every failure as [`Kind::Transient`] (retry),
//!   [`Kind::Permanent`] (don't) or [`Kind::Uncertain`] (the dot went out, the verdict did
//!   not come back).
//! - [`inspect`]: a small reader for the messages this crate writes (tests, previews).
#![forbid(unsafe_code)]

pub mod address;
mod client;
pub mod encoding;
pub mod inspect;
pub mod message;
pub mod reply;

pub use address::{Mailbox, validate_address};
pub use client::{
    Credentials, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATA_BLOCK_TIMEOUT,
    DEFAULT_DATA_END_TIMEOUT, DEFAULT_GREETING_TIMEOUT, DEFAULT_HELO_NAME, Delivered, ErrorKind,
    Kind, MAX_CREDENTIAL_BYTES, MAX_DATA_BYTES, MAX_HELO_NAME_BYTES, Refusal, SendError,
    SmtpConfig, SmtpConnection, Stage, Staged, Timeouts, TlsMode,
};
pub use inspect::ParsedMessage;
pub use message::{Message, MessageError};
pub use rustls::pki_types::CertificateDer;

#[cfg(test)]
mod real_sink;
