//! Passkey rollout campaigns (SPEC §9): the HTTP and background shell around
//! `cutover_core::campaign`.
//!
//! - [`api`]: `/api/v1/campaigns…` — campaigns and waves, prerequisites, progress, stragglers
//!   (CSV), the wave's confirmation, enforcement (through the Conditional Access gate) and
//!   rollback, communications (schedule, run due steps, preview, test-send, outbox).
//! - [`service`]: what the API, the admin pages and the scheduler share: load a campaign,
//!   compute its progress and prerequisites, change a wave's state with its audit row.
//! - [`mail`]: the outbox — the decision to send a step and its messages are written in one
//!   transaction; a delivery loop hands them to the SMTP relay in two phases, so that a
//!   restart never sends a message twice.
//! - [`enrol`]: the registration page campaign e-mails link to, with device guidance.
//! - [`pages`]: the campaign pages of the admin web UI.

use std::path::PathBuf;

use cutover_core::{Secret, Timestamp};

pub mod api;
pub mod enrol;
pub mod mail;
pub mod pages;
pub mod service;

pub use enrol::Guidance;
pub use service::{Actor, Document};

/// How a node reaches the organisation's SMTP relay.
#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// `starttls` (required, the default), `starttls-if-offered`, `tls` (implicit, port 465),
    /// `none` (loopback relays only).
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Extra trusted root certificates (PEM) for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// TLS towards the SMTP relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    StartTlsIfOffered,
    Implicit,
}

impl SmtpTls {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "starttls" => Some(Self::StartTls),
            "starttls-if-offered" => Some(Self::StartTlsIfOffered),
            "tls" => Some(Self::Implicit),
            _ => None,
        }
    }
}

/// Outgoing e-mail and enrolment guidance settings of this node.
#[derive(Debug, Clone)]
pub struct CampaignsConfig {
    /// The SMTP relay; `None`: messages wait in the outbox (the admin pages say so).
    pub smtp: Option<SmtpSettings>,
    /// The sender of campaign e-mails (`From:`), e.g. `IT Security <it-security@contoso.example>`.
    pub mail_from: String,
    /// Shown in e-mails and on the enrolment page as whom to ask for help.
    pub helpdesk: Option<String>,
    /// The device guidance of the enrolment page.
    pub guidance: Guidance,
    /// How often the delivery loop looks for messages to send.
    pub outbox_poll: std::time::Duration,
    /// How often the scheduler looks for due communication steps.
    pub schedule_interval: std::time::Duration,
    /// How long a node's claim on an outbox message lasts before another node may take it
    /// over (and a `transmitting` mark is judged uncertain).
    pub outbox_lease_secs: i64,
}

impl Default for CampaignsConfig {
    fn default() -> Self {
        Self {
            smtp: None,
            mail_from: "Cutover <cutover@localhost>".into(),
            helpdesk: None,
            guidance: Guidance::default(),
            outbox_poll: std::time::Duration::from_millis(DEFAULT_OUTBOX_POLL_MS),
            schedule_interval: std::time::Duration::from_secs(DEFAULT_SCHEDULE_INTERVAL_SECS),
            outbox_lease_secs: mail::DEFAULT_LEASE_SECS,
        }
    }
}

/// Default pause of the delivery loop between looks at the outbox.
pub const DEFAULT_OUTBOX_POLL_MS: u64 = 1_000;
/// Default pause of the scheduler between looks for due steps.
pub const DEFAULT_SCHEDULE_INTERVAL_SECS: u64 = 60;

/// A day as the pages and e-mails show it: `12 March 2027`.
pub fn day_label(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.secs())
        .ok()
        .map(|d| format!("{} {} {}", d.day(), d.month(), d.year()))
        .unwrap_or_else(|| crate::clock::rfc3339(t))
}
