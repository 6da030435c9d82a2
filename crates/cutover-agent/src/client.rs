//! The agent's HTTPS client of `/agent/v1`: one reqwest client (rustls; only the configured
//! CA when there is one; no redirects), typed errors by what the agent does about them, and
//! the session (a signed challenge, renewed before it expires and after a 401).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use cutover_agent_proto::{
    AgentErrorResponse, AgentKeys, ChallengeRequest, ChallengeResponse, SessionRequest,
    SessionResponse, session_proof,
};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::{Host, Url};
use uuid::Uuid;

use crate::state::KeyRing;

/// Limit for establishing a TCP + TLS connection to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for one ordinary call (everything but the long poll).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A long poll may take this much longer than the wait it asked for.
pub const POLL_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// Largest answer the agent reads from the server.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Longest server error message kept (logs, status output).
pub const MAX_ERROR_MESSAGE_LEN: usize = 512;
/// Renew a session when less than this is left of it ...
pub const SESSION_RENEW_MARGIN: Duration = Duration::from_secs(60);
/// ... or less than this fraction (1/N) of its lifetime, whichever comes first.
pub const SESSION_RENEW_FRACTION: u32 = 4;
/// A session lifetime the server states is clamped to this range.
pub const MIN_SESSION_SECS: i64 = 5;
pub const MAX_SESSION_SECS: i64 = 24 * 3600;
/// The error codes with which the server refuses this agent altogether.
pub const REFUSED_CODES: [&str; 2] = ["agentDisabled", "agentUnknown"];

const USER_AGENT: &str = concat!("cutover-agent/", env!("CARGO_PKG_VERSION"));

/// Why a call failed, by what the agent does next.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// No answer (DNS, TCP, TLS, timeout): back off and retry.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// 401: the session is invalid or expired; open a new one and retry once.
    #[error("the server did not accept the session (401): {0}")]
    Unauthorized(String),
    /// 403 `agentDisabled` / `agentUnknown`: an administrator disabled or deleted this agent.
    #[error("the server refuses this agent ({code}): {message}")]
    Refused { code: String, message: String },
    /// Any other non-2xx answer.
    #[error("the server answered {status} ({code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// A 2xx answer that is not what the protocol says.
    #[error("the server's answer is malformed: {0}")]
    Malformed(String),
}

impl CallError {
    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
    /// Worth retrying the same request later (no answer, or a server-side failure).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// An `http(s)` base URL the agent may use: https anywhere, http only to this host.
pub fn check_server_url(s: &str) -> Result<Url> {
    let mut url = Url::parse(s.trim()).map_err(|e| {
        anyhow!("invalid server URL '{s}': {e}; expected e.g. https://login.contoso.example")
    })?;
    if url.cannot_be_a_base() || url.host().is_none() {
        bail!("invalid server URL '{s}': expected e.g. https://login.contoso.example");
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => bail!(
            "the server URL '{s}' uses http://: passwords would cross the network unencrypted. \
             Use https:// (http:// is accepted only for 127.0.0.1, ::1 and localhost)"
        ),
        other => bail!("invalid server URL '{s}': scheme {other} is not https"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("the server URL '{s}' must not contain credentials");
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The error text of a reqwest failure with its causes (the URL carries no secret).
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    crate::stats::truncate(out, MAX_ERROR_MESSAGE_LEN)
}

/// The HTTP client of one server.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    base: Url,
}

impl ServerClient {
    /// `ca_pem`: when given, the only CA trusted for the server.
    pub fn new(server: &str, ca_pem: Option<&[u8]>) -> Result<Self> {
        let base = check_server_url(server)?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(base.scheme() == "https");
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow!("the CA file is not a PEM certificate: {e}"))?;
            if certs.is_empty() {
                bail!("the CA file holds no PEM certificate");
            }
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTPS client: {e}"))?;
        Ok(Self { http, base })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, endpoint: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty().extend(["agent", "v1", endpoint]);
        }
        url
    }

    /// `POST /agent/v1/<endpoint>` with a JSON body.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &Req,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let mut rb = self
            .http
            .post(self.url(endpoint))
            .timeout(timeout)
            .json(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb).await
    }

    /// `GET /agent/v1/<endpoint>`.
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let mut rb = self.http.get(self.url(endpoint)).timeout(timeout);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb).await
    }

    async fn send<Resp: DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<Resp, CallError> {
        let mut resp = rb
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| CallError::Transport(describe(&e)))?;
        let status = resp.status();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if body.len() + c.len() > MAX_RESPONSE_BYTES {
                        return Err(CallError::Malformed(format!(
                            "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
                        )));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(CallError::Transport(describe(&e))),
            }
        }
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                CallError::Malformed(crate::stats::truncate(
                    format!("{status}: {e}"),
                    MAX_ERROR_MESSAGE_LEN,
                ))
            });
        }
        let (code, message) = match serde_json::from_slice::<AgentErrorResponse>(&body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                status
                    .canonical_reason()
                    .unwrap_or("error")
                    .replace(' ', ""),
                crate::stats::truncate(
                    String::from_utf8_lossy(&body).trim().to_owned(),
                    MAX_ERROR_MESSAGE_LEN,
                ),
            ),
        };
        let message = crate::stats::truncate(message, MAX_ERROR_MESSAGE_LEN);
        Err(match status {
            StatusCode::UNAUTHORIZED => CallError::Unauthorized(format!("{code}: {message}")),
            StatusCode::FORBIDDEN if REFUSED_CODES.contains(&code.as_str()) => {
                CallError::Refused { code, message }
            }
            _ => CallError::Api {
                status: status.as_u16(),
                code,
                message,
            },
        })
    }
}

/// A bearer token and when to renew it.
struct SessionToken {
    token: String,
    renew_at: Instant,
}

/// The connection to the server as one agent: client, identity, keys and session.
pub struct Link {
    pub client: ServerClient,
    pub agent_id: Uuid,
    pub keys: Arc<KeyRing>,
    session: tokio::sync::Mutex<Option<SessionToken>>,
    /// The latest token handed out, to tell whether a 401 is about the current one.
    generation: Mutex<u64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("server", &self.client.base().as_str())
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// When to renew a session the server says lives `expires_in_secs`.
pub fn renew_after(expires_in_secs: i64) -> Duration {
    let life =
        Duration::from_secs(expires_in_secs.clamp(MIN_SESSION_SECS, MAX_SESSION_SECS) as u64);
    let margin = SESSION_RENEW_MARGIN.min(life / SESSION_RENEW_FRACTION);
    life - margin
}

impl Link {
    pub fn new(client: ServerClient, agent_id: Uuid, keys: Arc<KeyRing>) -> Self {
        Self {
            client,
            agent_id,
            keys,
            session: tokio::sync::Mutex::new(None),
            generation: Mutex::new(0),
        }
    }

    /// Open a session signed by `keys`.
    pub async fn open_session_with(&self, keys: &AgentKeys) -> Result<SessionResponse, CallError> {
        let ch: ChallengeResponse = self
            .client
            .post(
                "challenge",
                &ChallengeRequest {
                    agent_id: self.agent_id,
                },
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        let signature = keys.sign(&session_proof(self.agent_id, &ch.challenge));
        let s: SessionResponse = self
            .client
            .post(
                "session",
                &SessionRequest {
                    agent_id: self.agent_id,
                    challenge: ch.challenge,
                    signature,
                },
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        if s.token.is_empty() {
            return Err(CallError::Malformed("the session token is empty".into()));
        }
        Ok(s)
    }

    /// Open a session with the current keys (re-read from disk if they changed). When the
    /// server does not accept them and an unfinished rotation left new keys behind, try those
    /// and keep them if they work.
    async fn open_session(&self) -> Result<SessionResponse, CallError> {
        self.keys.reload_if_changed();
        let keys = self.keys.current();
        match self.open_session_with(&keys).await {
            Ok(s) => Ok(s),
            Err(e @ (CallError::Transport(_) | CallError::Malformed(_))) => Err(e),
            Err(e) => {
                let Some(pending) = self.keys.pending() else {
                    return Err(e);
                };
                match self.open_session_with(&pending).await {
                    Ok(s) => {
                        tracing::warn!(
                            "the server accepts the keys of an unfinished rotation (keys.json.new): finishing it"
                        );
                        if let Err(err) = self.keys.promote_pending() {
                            tracing::error!(error = %format!("{err:#}"), "cannot finish the key rotation");
                        }
                        Ok(s)
                    }
                    Err(_) => Err(e),
                }
            }
        }
    }

    /// A valid bearer token and its generation: the current session's, or a new one.
    pub async fn token(&self) -> Result<(String, u64), CallError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref()
            && Instant::now() < s.renew_at
        {
            let g = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
            return Ok((s.token.clone(), g));
        }
        let s = self.open_session().await?;
        let token = s.token.clone();
        *guard = Some(SessionToken {
            token: s.token,
            renew_at: Instant::now() + renew_after(s.expires_in_secs),
        });
        let mut g = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *g += 1;
        Ok((token, *g))
    }

    /// Forget the session if it is still the one of `generation` (a 401 answered it).
    pub async fn invalidate(&self, generation: u64) {
        let mut guard = self.session.lock().await;
        let g = *self.generation.lock().unwrap_or_else(|e| e.into_inner());
        if g == generation {
            *guard = None;
        }
    }

    /// Forget the session whatever it is (after a key rotation).
    pub async fn reset_session(&self) {
        *self.session.lock().await = None;
    }

    /// An authenticated POST; after a 401 a new session is opened and the call made once more.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let (token, generation) = self.token().await?;
        match self
            .client
            .post(endpoint, body, Some(&token), timeout)
            .await
        {
            Err(CallError::Unauthorized(_)) => {
                self.invalidate(generation).await;
                let (token, _) = self.token().await?;
                self.client
                    .post(endpoint, body, Some(&token), timeout)
                    .await
            }
            other => other,
        }
    }

    /// An authenticated GET, with the same 401 handling.
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let (token, generation) = self.token().await?;
        match self.client.get(endpoint, Some(&token), timeout).await {
            Err(CallError::Unauthorized(_)) => {
                self.invalidate(generation).await;
                let (token, _) = self.token().await?;
                self.client.get(endpoint, Some(&token), timeout).await
            }
            other => other,
        }
    }
}

/// The agent's connection as its log tells it: each change is logged once, not each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCondition {
    Starting,
    Connected,
    Unreachable,
    Refused(String),
    Failing(String),
    Stopping,
}

impl LinkCondition {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Starting => "starting",
            Self::Connected => "connected",
            Self::Unreachable => "unreachable",
            Self::Refused(_) => "refused",
            Self::Failing(_) => "failing",
            Self::Stopping => "stopping",
        }
    }
}

#[derive(Debug)]
pub struct LinkState {
    condition: Mutex<LinkCondition>,
}

impl Default for LinkState {
    fn default() -> Self {
        Self {
            condition: Mutex::new(LinkCondition::Starting),
        }
    }
}

impl LinkState {
    pub fn get(&self) -> LinkCondition {
        self.condition
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, c: LinkCondition) -> bool {
        let mut g = self.condition.lock().unwrap_or_else(|e| e.into_inner());
        if *g == c {
            return false;
        }
        *g = c;
        true
    }

    pub fn stopping(&self) {
        self.set(LinkCondition::Stopping);
    }

    pub fn ok(&self, server: &str) {
        let was = self.get();
        if was != LinkCondition::Stopping && self.set(LinkCondition::Connected) {
            if was == LinkCondition::Starting {
                tracing::info!(%server, "connected to the server: session open, waiting for work");
            } else {
                tracing::info!(%server, was = was.as_str(), "connected to the server again");
            }
        }
    }

    /// Record a failed call; logs only when the condition changes.
    pub fn failed(&self, what: &str, e: &CallError) {
        let c = match e {
            CallError::Transport(_) => LinkCondition::Unreachable,
            CallError::Refused { code, .. } => LinkCondition::Refused(code.clone()),
            CallError::Unauthorized(_) => LinkCondition::Failing("unauthorized".into()),
            CallError::Api { status, code, .. } => {
                LinkCondition::Failing(format!("{status} {code}"))
            }
            CallError::Malformed(_) => LinkCondition::Failing("malformed".into()),
        };
        if self.get() == LinkCondition::Stopping || !self.set(c) {
            tracing::debug!(%what, error = %e, "call failed again");
            return;
        }
        match e {
            CallError::Transport(_) => tracing::warn!(
                %what, error = %e,
                "lost the server; retrying with backoff (up to {} s between attempts)",
                crate::backoff::BACKOFF_MAX.as_secs()
            ),
            CallError::Refused { code, message } if code == "agentDisabled" => tracing::error!(
                %what, %message,
                "an administrator DISABLED this agent: it receives no passwords. Re-enable it in Cutover (admin API or UI); the agent retries every {} s and resumes by itself",
                crate::backoff::REFUSED_BACKOFF.as_secs()
            ),
            CallError::Refused { code, message } => tracing::error!(
                %what, %code, %message,
                "the server does not know this agent (deleted by an administrator?): it receives no passwords. \
                 Register it again (`cutover agent register --force ...` with a new token); retrying every {} s meanwhile",
                crate::backoff::REFUSED_BACKOFF.as_secs()
            ),
            _ => {
                tracing::error!(%what, error = %e, "the server refused a call; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        for ok in [
            "https://login.contoso.example",
            "https://login.contoso.example/base/",
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "http://[::1]:8080",
        ] {
            check_server_url(ok).unwrap();
        }
        for bad in [
            "http://login.contoso.example",
            "http://10.0.0.1",
            "ftp://x",
            "not a url",
            "https://user:pw@login.contoso.example",
            "mailto:a@b",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
        let c = ServerClient::new("https://login.contoso.example/base/", None).unwrap();
        assert_eq!(
            c.url("poll").as_str(),
            "https://login.contoso.example/base/agent/v1/poll"
        );
        let c = ServerClient::new("https://login.contoso.example", None).unwrap();
        assert_eq!(
            c.url("self").as_str(),
            "https://login.contoso.example/agent/v1/self"
        );
        assert!(ServerClient::new("https://x.example", Some(b"not pem")).is_err());
    }

    #[test]
    fn session_renewal_comes_before_expiry() {
        assert_eq!(renew_after(900), Duration::from_secs(840));
        assert_eq!(renew_after(100), Duration::from_secs(75));
        assert_eq!(renew_after(0), Duration::from_millis(3750));
        assert!(renew_after(i64::MAX) <= Duration::from_secs(MAX_SESSION_SECS as u64));
        assert!(renew_after(-5) > Duration::ZERO);
    }
}
