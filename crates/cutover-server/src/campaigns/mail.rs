//! The e-mail outbox's delivery loop.
//!
//! Messages enter the outbox in the same transaction as the decision to send them (see
//! [`super::service::run_due`]); this loop hands them to the SMTP relay. Every node runs it;
//! the store lets exactly one node claim a message (with a lease).
//!
//! Never twice: a message is marked `transmitting` in the database just before the final
//! `<CRLF>.<CRLF>` of its DATA is written — the moment the relay can accept it. If the node dies
//! before that mark, the relay never had a complete message and it is sent again (after the
//! lease). If the node dies after it, or the connection drops before the relay answers, nobody
//! can know whether the relay took it: the message becomes `uncertain`, is never sent again
//! automatically, and the admin pages show it with its Message-ID so an operator can check the
//! relay's log and resend it explicitly. A relay's explicit 4xx answer is retried with a growing
//! pause, at most [`MAX_ATTEMPTS`] times; a 5xx answer fails the message at once.
//!
//! A relay that cannot be used at all — unreachable, refusing TLS, refusing the credentials —
//! says nothing about the messages: they are *deferred*, their attempts not counted, and wait
//! (with a pause that grows to [`MAX_RELAY_RETRY_SECS`]) until the relay or its settings are
//! fixed. The batch stops at the first such failure, the log says once per pass what to fix,
//! `/metrics` shows `cutover_smtp_relay_up 0`, and the campaign page shows the relay's error.

use std::sync::Arc;
use std::time::Duration;

use cutover_core::Timestamp;
use cutover_smtp::{Credentials, ErrorKind, Mailbox, Message, SmtpConfig, SmtpConnection, TlsMode};
use cutover_store::{OutboxMessage, OutboxOutcome, StoreError};

use super::{SmtpSettings, SmtpTls};
use crate::AppState;

/// Attempts of one message before it is failed.
pub const MAX_ATTEMPTS: u32 = 10;
/// The pause after the first failed attempt; it doubles with each further one.
pub const FIRST_RETRY_SECS: i64 = 60;
/// The longest pause between two attempts.
pub const MAX_RETRY_SECS: i64 = 3_600;
/// How the error of a message starts when the relay could not be reached.
const CONNECT_ERROR: &str = "connecting to the SMTP relay";
/// The longest pause before the relay is tried again after it could not be used.
pub const MAX_RELAY_RETRY_SECS: i64 = 900;

/// What this node knows of the relay from its last connections (shown on the campaign page).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayHealth {
    /// Connections that failed in a row (0 after one worked).
    pub consecutive_failures: u32,
    /// When the current run of failures began.
    pub down_since: Option<Timestamp>,
    /// When the last connection failed.
    pub last_failed_at: Option<Timestamp>,
    /// The last failure's explanation (never a credential: the SMTP client does not print
    /// them).
    pub last_error: Option<String>,
    /// When a connection last worked.
    pub last_ok_at: Option<Timestamp>,
}

impl RelayHealth {
    /// A connection failed at `at`.
    pub fn failed(&mut self, at: Timestamp, error: String) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.down_since.get_or_insert(at);
        self.last_failed_at = Some(at);
        self.last_error = Some(error);
    }

    /// Whether this node should try the relay at `now`: always while it works; after a
    /// failure, only once the pause of [`Self::retry_after_secs`] has passed — so an outage
    /// costs one connection attempt (and one log line) per pause, not one per poll.
    pub fn may_try(&self, now: Timestamp) -> bool {
        match self.last_failed_at {
            Some(at) if self.consecutive_failures > 0 => {
                now.millis() >= at.plus_secs(self.retry_after_secs()).millis()
            }
            _ => true,
        }
    }

    /// A connection worked at `at`.
    pub fn reached(&mut self, at: Timestamp) {
        *self = Self {
            last_ok_at: Some(at),
            ..Self::default()
        };
    }

    /// How long deferred messages wait: a minute after the first failure, doubling with each
    /// further one, at most [`MAX_RELAY_RETRY_SECS`].
    pub fn retry_after_secs(&self) -> i64 {
        let exp = self.consecutive_failures.saturating_sub(1).min(16);
        (FIRST_RETRY_SECS << exp).min(MAX_RELAY_RETRY_SECS)
    }
}

/// Messages one node claims at once (and sends over one connection).
pub const CLAIM_BATCH: u32 = 20;
/// Batches one pass of the loop sends at most before it pauses for `outbox_poll`.
pub const MAX_BATCHES_PER_TICK: u32 = 50;
/// How long a claim holds a message by default (and how long a `transmitting` mark waits
/// before the message is judged uncertain); `--outbox-lease-secs`.
pub const DEFAULT_LEASE_SECS: i64 = 300;
/// The shortest lease accepted: a claim must outlast one message's transmission.
pub const MIN_LEASE_SECS: i64 = 5;
/// The longest lease accepted.
pub const MAX_LEASE_SECS: i64 = 3_600;

/// When to try again after `attempts` failed attempts, or `None` when they are used up.
pub fn retry_after(attempts: u32) -> Option<i64> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let exp = attempts.saturating_sub(1).min(16);
    Some((FIRST_RETRY_SECS << exp).min(MAX_RETRY_SECS))
}

/// What one pass of the loop did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryReport {
    pub claimed: u32,
    pub sent: u32,
    pub retried: u32,
    pub deferred: u32,
    pub failed: u32,
    pub uncertain: u32,
}

/// The loop: every `outbox_poll`, deliver what is due. Without an SMTP relay it does nothing
/// (messages wait, and the admin pages say why).
pub(crate) async fn delivery_loop(state: Arc<AppState>) {
    let node = format!("node-{}", uuid::Uuid::new_v4());
    let Some(smtp) = state.config.campaigns.smtp.clone() else {
        return;
    };
    let helo = url::Url::parse(&state.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".into());
    let config = match smtp_config(&smtp, &helo, state.config.campaigns.outbox_lease_secs) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "campaign e-mails cannot be sent: the SMTP settings are unusable; fix them and restart");
            return;
        }
    };
    let mut tick = tokio::time::interval(state.config.campaigns.outbox_poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.outbox_wake.notified() => {}
        }
        // A relay that could not be used is left alone until its pause has passed (the
        // messages it deferred are not due before then either).
        let relay_ready = state.relay.lock().map_or(true, |h| h.may_try(state.now()));
        if !relay_ready {
            continue;
        }
        // Drain what is due, batch after batch (bounded per pass) over one connection, while
        // batches come back full and deliver something; a relay that refuses everything
        // waits for the next pass.
        let mut total = DeliveryReport::default();
        let mut conn: Option<SmtpConnection> = None;
        for _ in 0..MAX_BATCHES_PER_TICK {
            match deliver_once(&state, &config, &node, &mut conn).await {
                Ok(r) => {
                    total.claimed += r.claimed;
                    total.sent += r.sent;
                    total.retried += r.retried;
                    total.deferred += r.deferred;
                    total.failed += r.failed;
                    total.uncertain += r.uncertain;
                    if r.claimed < CLAIM_BATCH || r.sent == 0 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the e-mail outbox could not be read or updated in the database; trying again at the next pass");
                    break;
                }
            }
        }
        if let Some(c) = conn {
            c.quit().await;
        }
        if total.claimed > 0 {
            tracing::info!(
                claimed = total.claimed,
                sent = total.sent,
                retried = total.retried,
                deferred = total.deferred,
                failed = total.failed,
                uncertain = total.uncertain,
                "campaign e-mails delivered"
            );
            refresh_outbox_gauge(&state).await;
        }
    }
}

/// Set the outbox gauge of `/metrics` from the database (every node reports the same).
pub(crate) async fn refresh_outbox_gauge(state: &AppState) {
    match state.store.outbox_counts(None).await {
        Ok(c) => state.metrics.set_outbox_gauge(&[
            ("pending", c.pending),
            ("claimed", c.claimed),
            ("transmitting", c.transmitting),
            ("sent", c.sent),
            ("failed", c.failed),
            ("uncertain", c.uncertain),
            ("cancelled", c.cancelled),
        ]),
        Err(e) => tracing::debug!(error = %e, "the outbox could not be counted for /metrics"),
    }
}

/// The SMTP client's settings from the node's.
pub fn smtp_config(
    s: &SmtpSettings,
    helo_name: &str,
    lease_secs: i64,
) -> Result<SmtpConfig, String> {
    let mut cfg = SmtpConfig::new(s.host.clone(), s.port);
    cfg.helo_name = helo_name.to_owned();
    // Writing the final dot and waiting for the relay's answer must end within the
    // `transmitting` lease, or another node would call a message uncertain while its answer
    // is still on the way.
    let within = Duration::from_secs(lease_secs.max(MIN_LEASE_SECS) as u64 * 4 / 5);
    cfg.timeouts.data_block = cfg.timeouts.data_block.min(within / 2);
    cfg.timeouts.data_end = cfg.timeouts.data_end.min(within / 2);
    cfg.tls = match s.tls {
        SmtpTls::None => TlsMode::None,
        SmtpTls::StartTls => TlsMode::StartTls,
        SmtpTls::StartTlsIfOffered => TlsMode::StartTlsIfOffered,
        SmtpTls::Implicit => TlsMode::Implicit,
    };
    if let Some(user) = &s.username {
        let password = s
            .password
            .as_ref()
            .ok_or_else(|| format!("SMTP user '{user}' has no password configured"))?;
        cfg.credentials = Some(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    if let Some(path) = &s.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the SMTP CA file {}: {e}", path.display()))?;
        cfg.add_root_pem(&pem)
            .map_err(|e| format!("the SMTP CA file {}: {e}", path.display()))?;
    }
    Ok(cfg)
}

/// The message as it goes on the wire.
pub fn build_message(m: &OutboxMessage) -> Result<Message, String> {
    let from = Mailbox::parse(&m.mail_from).map_err(|e| format!("sender: {e}"))?;
    let to =
        m.to.iter()
            .map(|a| Mailbox::parse(a).map_err(|e| format!("recipient: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
    let cc =
        m.cc.iter()
            .map(|a| Mailbox::parse(a).map_err(|e| format!("cc: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
    Ok(Message {
        from,
        to,
        cc,
        subject: m.subject.clone(),
        text: m.text_body.clone(),
        html: Some(m.html_body.clone()),
        message_id: m.message_id.clone(),
        date: m.created_at.secs(),
        extra_headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
    })
}

/// Claim what is due and send it over `conn` (opened when `None`; left open for the next
/// batch, or `None` after an error).
pub async fn deliver_once(
    state: &AppState,
    config: &SmtpConfig,
    node: &str,
    conn: &mut Option<SmtpConnection>,
) -> Result<DeliveryReport, StoreError> {
    let now = state.now();
    let batch = state
        .store
        .claim_outbox(
            node,
            now,
            now.plus_secs(state.config.campaigns.outbox_lease_secs),
            CLAIM_BATCH,
        )
        .await?;
    let mut report = DeliveryReport {
        claimed: batch.len() as u32,
        ..Default::default()
    };
    if batch.is_empty() {
        return Ok(report);
    }
    // Once the relay cannot be used, the rest of the batch is deferred with it, without
    // trying (and waiting for) a connection each.
    let mut relay_down: Option<OutboxOutcome> = None;
    for msg in batch {
        let outcome = match &relay_down {
            Some(deferred) => Some(deferred.clone()),
            None => send_one(state, config, node, conn, &msg).await?,
        };
        if relay_down.is_none()
            && let Some(d @ OutboxOutcome::Deferred { .. }) = &outcome
        {
            relay_down = Some(d.clone());
        }
        let Some(outcome) = outcome else { continue };
        let label = match &outcome {
            OutboxOutcome::Sent { .. } => {
                report.sent += 1;
                "sent"
            }
            OutboxOutcome::Retry { .. } => {
                report.retried += 1;
                "retried"
            }
            OutboxOutcome::Deferred { .. } => {
                report.deferred += 1;
                "deferred"
            }
            OutboxOutcome::Failed { .. } => {
                report.failed += 1;
                "failed"
            }
            OutboxOutcome::Uncertain { .. } => {
                report.uncertain += 1;
                "uncertain"
            }
        };
        match &outcome {
            OutboxOutcome::Failed { error } => {
                tracing::error!(message_id = %msg.message_id, to = ?msg.to, error = %error, "a campaign e-mail could not be delivered and will not be retried; fix the cause and resend it from the outbox")
            }
            OutboxOutcome::Uncertain { error } => {
                tracing::error!(message_id = %msg.message_id, to = ?msg.to, error = %error, "the SMTP relay may or may not have accepted a campaign e-mail; it will not be sent again automatically — check the relay's log for this Message-ID, then resend it from the outbox if it is not there")
            }
            OutboxOutcome::Retry { error, .. } => {
                tracing::warn!(message_id = %msg.message_id, error = %error, "a campaign e-mail will be retried")
            }
            // Said once for the batch, where the connection failed.
            OutboxOutcome::Sent { .. } | OutboxOutcome::Deferred { .. } => {}
        }
        if state.store.finish_outbox(msg.id, node, &outcome).await? {
            state.metrics.count_email(label);
        } else {
            tracing::warn!(message_id = %msg.message_id, outcome = label, "a campaign e-mail's outcome was not recorded: another node holds it now (its lease ran out)");
        }
    }
    Ok(report)
}

/// The outcome of a message the relay accepted for the recipients not in `refused`: failed
/// when it refused every `To` (only the copy went out: the person it was for did not get it).
fn delivered(
    to: &[String],
    cc: &[String],
    refused: &[(String, u16, String)],
    at: Timestamp,
) -> OutboxOutcome {
    let all_to_refused = !to.is_empty()
        && to
            .iter()
            .all(|t| refused.iter().any(|r| r.0.eq_ignore_ascii_case(t)));
    if all_to_refused {
        OutboxOutcome::Failed {
            error: format!(
                "the SMTP relay refused the recipient {} (the copy went to {})",
                to.join(", "),
                cc.join(", ")
            ),
        }
    } else {
        OutboxOutcome::Sent { at }
    }
}

fn retry_or_fail(attempts: u32, now: Timestamp, error: String) -> OutboxOutcome {
    match retry_after(attempts) {
        Some(secs) => OutboxOutcome::Retry {
            error,
            next_attempt_at: now.plus_secs(secs),
        },
        None => OutboxOutcome::Failed {
            error: format!("{error} (gave up after {attempts} attempts)"),
        },
    }
}

/// One message: `None` when another node took it over (nothing to record).
async fn send_one(
    state: &AppState,
    config: &SmtpConfig,
    node: &str,
    conn: &mut Option<SmtpConnection>,
    msg: &OutboxMessage,
) -> Result<Option<OutboxOutcome>, StoreError> {
    let now = state.now();
    let message = match build_message(msg) {
        Ok(m) => m,
        Err(e) => return Ok(Some(OutboxOutcome::Failed { error: e })),
    };
    let bytes = match message.to_bytes() {
        Ok(b) => b,
        Err(e) => {
            return Ok(Some(OutboxOutcome::Failed {
                error: e.to_string(),
            }));
        }
    };
    let envelope_from = message.from.address.clone();
    let rcpts = message.envelope_recipients();
    if conn.is_none() {
        let failure =
            match tokio::time::timeout(CONNECT_TIMEOUT, SmtpConnection::connect(config)).await {
                Ok(Ok(c)) => {
                    *conn = Some(c);
                    None
                }
                Ok(Err(e)) => Some((
                    format!("{CONNECT_ERROR}: {e}"),
                    e.kind == ErrorKind::Permanent,
                )),
                Err(_) => Some((
                    format!(
                        "{CONNECT_ERROR}: no answer within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                    false,
                )),
            };
        let Some((error, settings)) = failure else {
            relay_reached(state, now);
            return send_staged(state, node, conn, msg, &envelope_from, &rcpts, &bytes).await;
        };
        return Ok(Some(relay_failed(state, now, error, settings)));
    }
    send_staged(state, node, conn, msg, &envelope_from, &rcpts, &bytes).await
}

/// How long a connection to the relay (with its greeting, TLS and AUTH) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

fn relay_reached(state: &AppState, now: Timestamp) {
    state.metrics.set_relay_up(true);
    let Ok(mut h) = state.relay.lock() else {
        return;
    };
    if h.consecutive_failures > 0 {
        tracing::info!(
            down_since = %h.down_since.map(crate::clock::rfc3339).unwrap_or_default(),
            "the SMTP relay can be used again; deferred campaign e-mails go out now"
        );
    }
    h.reached(now);
}

/// The relay could not be used: the message (and the rest of its batch) is deferred.
/// `settings`: the relay answered, and refused what Cutover is set up to do (TLS, AUTH).
fn relay_failed(state: &AppState, now: Timestamp, error: String, settings: bool) -> OutboxOutcome {
    state.metrics.set_relay_up(false);
    let wait = match state.relay.lock() {
        Ok(mut h) => {
            h.failed(now, error.clone());
            h.retry_after_secs()
        }
        Err(_) => FIRST_RETRY_SECS,
    };
    if settings {
        tracing::error!(error = %error, retry_in_secs = wait, "the SMTP relay refused Cutover's connection settings: campaign e-mails wait in the outbox (their retries are not used up); fix --smtp-host/--smtp-port/--smtp-tls/--smtp-user/--smtp-password-file and restart, and they go out");
    } else {
        tracing::error!(error = %error, retry_in_secs = wait, "the SMTP relay cannot be reached: campaign e-mails wait in the outbox (their retries are not used up) and go out when it answers again");
    }
    OutboxOutcome::Deferred {
        error,
        next_attempt_at: now.plus_secs(wait),
    }
}

/// Stage the message on the open connection, mark it transmitting, and commit it.
async fn send_staged(
    state: &AppState,
    node: &str,
    conn: &mut Option<SmtpConnection>,
    msg: &OutboxMessage,
    envelope_from: &str,
    rcpts: &[String],
    bytes: &[u8],
) -> Result<Option<OutboxOutcome>, StoreError> {
    let now = state.now();
    let Some(c) = conn.as_mut() else {
        return Ok(None);
    };
    let staged = match c.stage(envelope_from, rcpts, bytes).await {
        Ok(s) => s,
        Err(e) => {
            // Nothing was committed: the relay has no complete message.
            *conn = None;
            let error = format!("SMTP relay refused the message: {e}");
            return Ok(Some(if e.kind == ErrorKind::Permanent {
                OutboxOutcome::Failed { error }
            } else {
                retry_or_fail(msg.attempts, now, error)
            }));
        }
    };
    if !state
        .store
        .mark_outbox_transmitting(
            msg.id,
            node,
            state
                .now()
                .plus_secs(state.config.campaigns.outbox_lease_secs),
        )
        .await?
    {
        // Our claim ended (the lease ran out and another node has it): drop the connection
        // without the final dot, so this copy is never delivered.
        drop(staged);
        *conn = None;
        return Ok(None);
    }
    let at = state.now();
    Ok(Some(match staged.commit().await {
        Ok(done) => {
            for (rcpt, code, text) in &done.refused {
                tracing::warn!(message_id = %msg.message_id, recipient = %rcpt, code, reply = %text, "the SMTP relay refused one recipient of a campaign e-mail; the others got it");
            }
            delivered(&msg.to, &msg.cc, &done.refused, at)
        }
        Err(e) => {
            *conn = None;
            match e.kind {
                ErrorKind::Uncertain => OutboxOutcome::Uncertain {
                    error: e.to_string(),
                },
                // The relay answered no to the complete message: it did not take it.
                ErrorKind::Transient => retry_or_fail(msg.attempts, at, e.to_string()),
                ErrorKind::Permanent => OutboxOutcome::Failed {
                    error: e.to_string(),
                },
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_whose_every_recipient_but_the_copy_was_refused_failed() {
        let at = Timestamp::from_secs(1);
        let to = vec!["ann@contoso.example".to_owned()];
        let cc = vec!["boss@contoso.example".to_owned()];
        let refused = |who: &str| vec![(who.to_owned(), 550, "no such user".to_owned())];
        assert_eq!(delivered(&to, &cc, &[], at), OutboxOutcome::Sent { at });
        assert_eq!(
            delivered(&to, &cc, &refused("boss@contoso.example"), at),
            OutboxOutcome::Sent { at },
            "the person got it; the manager's copy bounced"
        );
        assert!(matches!(
            delivered(&to, &cc, &refused("ANN@contoso.example"), at),
            OutboxOutcome::Failed { error } if error.contains("ann@contoso.example") && error.contains("boss@")
        ));
    }

    #[test]
    fn a_relay_that_cannot_be_used_is_tried_again_later_and_forgotten_once_it_works() {
        let mut h = RelayHealth::default();
        let t = Timestamp::from_secs(1_000);
        h.failed(t, "connection refused".into());
        assert_eq!((h.consecutive_failures, h.down_since), (1, Some(t)));
        assert_eq!(h.retry_after_secs(), 60);
        h.failed(t.plus_secs(60), "535 authentication failed".into());
        assert_eq!(
            h.down_since,
            Some(t),
            "the outage began with the first failure"
        );
        assert_eq!(h.last_error.as_deref(), Some("535 authentication failed"));
        assert_eq!(h.retry_after_secs(), 120);
        for _ in 0..100 {
            h.failed(t.plus_secs(120), "x".into());
        }
        assert_eq!(h.retry_after_secs(), MAX_RELAY_RETRY_SECS, "capped");
        // Tried again only once the pause has passed.
        let last = h.last_failed_at.unwrap();
        assert!(!h.may_try(last.plus_secs(MAX_RELAY_RETRY_SECS - 1)));
        assert!(h.may_try(last.plus_secs(MAX_RELAY_RETRY_SECS)));
        assert!(
            RelayHealth::default().may_try(t),
            "a relay never tried is tried"
        );
        h.reached(t.plus_secs(900));
        assert_eq!(
            h,
            RelayHealth {
                last_ok_at: Some(t.plus_secs(900)),
                ..RelayHealth::default()
            }
        );
        assert_eq!(h.retry_after_secs(), 60);
        assert!(h.may_try(t.plus_secs(900)));
    }

    #[test]
    fn retries_double_up_to_the_cap_and_end_after_the_last_attempt() {
        assert_eq!(retry_after(1), Some(60));
        assert_eq!(retry_after(2), Some(120));
        assert_eq!(retry_after(3), Some(240));
        assert_eq!(retry_after(5), Some(960));
        assert_eq!(retry_after(6), Some(1920));
        assert_eq!(retry_after(7), Some(MAX_RETRY_SECS), "capped at an hour");
        assert_eq!(retry_after(MAX_ATTEMPTS - 1), Some(MAX_RETRY_SECS));
        assert_eq!(retry_after(MAX_ATTEMPTS), None);
        assert_eq!(retry_after(u32::MAX), None);
        assert_eq!(retry_after(0), Some(60));
        let out = retry_or_fail(MAX_ATTEMPTS, Timestamp::from_secs(0), "x".into());
        assert!(
            matches!(out, OutboxOutcome::Failed { error } if error.contains("gave up after 10"))
        );
    }
}
