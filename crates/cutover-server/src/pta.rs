//! Pass-through authentication (SPEC §5.3): the agents' protocol (`/agent/v1/*`) and the
//! dispatch of a password check to them.
//!
//! ```text
//!  sign-in (any node) ── seal to each healthy agent ──► pta_requests + envelopes (store)
//!        │   wake local polls (Notify)                       │
//!        │                                   agent long-poll (any node) claims it, binds on-prem
//!        ◄── local signal, or the node's batched watcher ◄── /results marks it done
//!  deadline: abandon atomically → the answer if one came, else `cutover_core::pta::at_deadline`
//!  (one retry on another agent only when no result came back)
//! ```
//!
//! Agents authenticate by their Ed25519 key: a stateless challenge (HMAC, 60 s) signed by the
//! agent opens a session; the session token (HMAC over agent id, key generation and expiry)
//! is checked on every call against the agent's current row (enabled, same key generation),
//! read through a per-node cache of [`AGENT_CACHE_MS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cutover_agent_proto::{
    AgentErrorBody, AgentErrorResponse, ChallengeRequest, ChallengeResponse, Heartbeat,
    HeartbeatResponse, PROTOCOL_VERSION, PollRequest, PollResponse, RegisterRequest,
    RegisterResponse, RejectedResult, ResultsRequest, ResultsResponse, RotateKeysRequest,
    RotateKeysResponse, SealedPassword, SelfView, SessionRequest, SessionResponse, WorkItem,
    check_public_keys, envelope_aad, register_proof, rotate_proof, seal_password, session_proof,
    verify_signature,
};
use cutover_core::Timestamp;
use cutover_core::pta::{
    AGENT_CHALLENGE_SECS, AGENT_SESSION_SECS, AgentHealth, AgentLiveness, AtDeadline,
    DeadlineAction, HEARTBEAT_INTERVAL_SECS, MAX_AGENT_LABEL_LEN, MAX_POLL_BATCH, MAX_POLL_WAIT_MS,
    PtaResult, agent_health, at_deadline, fleet_warning,
};
use cutover_store::{
    AgentRecord, AuditEvent, CompleteOutcome, PtaRequestRow, PtaRequestState, StoreError,
};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use crate::{AppState, RequestCtx};

/// A node reads the agent table at most this often (enable/disable/delete take effect on
/// other nodes within this time; on the node that made the change at once).
pub const AGENT_CACHE_MS: u64 = 1_000;
/// An idle long poll looks for work enqueued by other nodes this often (work enqueued on its
/// own node wakes it at once).
pub const WORK_CHECK_MS: u64 = 25;
/// Each node reads the states of all its waiting requests in one query this often, to see
/// answers that reached another node (answers that reach this node wake their waiter at once).
pub const RESULT_CHECK_MS: u64 = 20;
/// A password is sealed to at most this many of the eligible agents, chosen at random per
/// request (any of them may take it; the retry goes to others): more envelopes would only add
/// sealing and writes, not availability.
pub const MAX_ENVELOPES_PER_REQUEST: usize = 3;
/// Largest body an agent may post (results, heartbeats).
pub const MAX_AGENT_BODY_BYTES: usize = 256 * 1024;
/// The keyed-hash domain of registration tokens.
pub const REGISTRATION_TOKEN_DOMAIN: &str = "agent-registration-token";

/// The store's hash of a one-time registration token (the token itself is never stored).
pub fn registration_token_hash(state: &AppState, token: &str) -> String {
    state.hasher.hash(REGISTRATION_TOKEN_DOMAIN, token)
}

/// The agent's last heartbeat as it sent it; `None` before the first one (or when the stored
/// body no longer parses, which is logged).
pub fn heartbeat_of(a: &AgentRecord) -> Option<Heartbeat> {
    let v = a.heartbeat.as_ref()?;
    match serde_json::from_value::<Heartbeat>(v.clone()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(agent_id = %a.id, error = %e, "an agent's stored heartbeat does not parse; treating the agent as not reporting");
            None
        }
    }
}

/// An agent's health now.
pub fn health_of(a: &AgentRecord, now: Timestamp) -> AgentHealth {
    agent_health(
        AgentLiveness {
            enabled: a.enabled,
            last_heartbeat: a.last_heartbeat,
            directory_reachable: heartbeat_of(a).is_some_and(|h| h.directory.reachable),
        },
        now,
    )
}

/// Healthy agents among `agents` and the fleet warning.
pub fn fleet_of(agents: &[AgentRecord], now: Timestamp) -> (usize, Option<String>) {
    let healthy = agents
        .iter()
        .filter(|a| health_of(a, now) == AgentHealth::Healthy)
        .count();
    (healthy, fleet_warning(healthy, agents.len()))
}

/// Drop this node's cached agent list (after an admin change).
pub fn invalidate_agents(state: &AppState) {
    if let Ok(mut c) = state.pta.agents.lock() {
        *c = None;
    }
}

/// The per-node pass-through state: the agent cache, the work signal for long polls, and the
/// waiters for answers.
#[derive(Default)]
pub struct PtaHub {
    agents: Mutex<Option<(std::time::Instant, Arc<Vec<AgentRecord>>)>>,
    work: Notify,
    waiters: Mutex<HashMap<Uuid, oneshot::Sender<()>>>,
    /// The node is shutting down: long polls answer at once with nothing.
    closing: std::sync::atomic::AtomicBool,
    /// How long this node's last answered checks took, to answer a name Cutover does not
    /// know after a delay like a real check's (no timing tells names apart).
    latencies: Mutex<LatencySamples>,
}

/// The last [`LATENCY_SAMPLES`] durations of answered checks.
#[derive(Debug, Default)]
pub struct LatencySamples {
    ring: std::collections::VecDeque<Duration>,
}

/// How many recent check durations a node keeps.
pub const LATENCY_SAMPLES: usize = 64;

impl LatencySamples {
    pub fn record(&mut self, d: Duration) {
        if self.ring.len() == LATENCY_SAMPLES {
            self.ring.pop_front();
        }
        self.ring.push_back(d);
    }

    /// One of the recorded durations, picked by `random` (uniform over the samples);
    /// `None` before any check was answered.
    pub fn pick(&self, random: u64) -> Option<Duration> {
        if self.ring.is_empty() {
            return None;
        }
        let i = (random % self.ring.len() as u64) as usize;
        self.ring.get(i).copied()
    }
}

impl std::fmt::Debug for PtaHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtaHub").finish_non_exhaustive()
    }
}

impl PtaHub {
    /// The node is shutting down: waiting long polls return empty now (their agents poll
    /// another node or come back), and new ones return at once.
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.work.notify_waiters();
    }

    /// A delay like a real check's, for a name no agent is asked about.
    pub fn lookalike_delay(&self) -> Option<Duration> {
        let r = u64::from_le_bytes(crate::crypto::random_bytes(8).try_into().unwrap_or([0; 8]));
        self.latencies.lock().ok()?.pick(r)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn wake(&self, request: Uuid) {
        if let Ok(mut w) = self.waiters.lock()
            && let Some(tx) = w.remove(&request)
        {
            let _ = tx.send(());
        }
    }

    fn waiting(&self) -> Vec<Uuid> {
        self.waiters
            .lock()
            .map(|w| w.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// Removes a waiter however the wait ends.
struct WaiterGuard<'a> {
    hub: &'a PtaHub,
    id: Uuid,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.hub.waiters.lock() {
            w.remove(&self.id);
        }
    }
}

/// The registered agents, at most [`AGENT_CACHE_MS`] old.
pub async fn agents(state: &AppState) -> Result<Arc<Vec<AgentRecord>>, StoreError> {
    if let Ok(c) = state.pta.agents.lock()
        && let Some((at, list)) = c.as_ref()
        && at.elapsed() < Duration::from_millis(AGENT_CACHE_MS)
    {
        return Ok(list.clone());
    }
    let list = Arc::new(state.store.list_agents().await?);
    if let Ok(mut c) = state.pta.agents.lock() {
        *c = Some((std::time::Instant::now(), list.clone()));
    }
    Ok(list)
}

/// Watch the states of this node's waiting requests (answers posted to other nodes). Runs for
/// the life of the server.
pub(crate) async fn result_watcher(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_millis(RESULT_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids = state.pta.waiting();
        if ids.is_empty() {
            continue;
        }
        for chunk in ids.chunks(1000) {
            match state.store.pta_request_states(chunk).await {
                Ok(states) => {
                    for (id, st) in states {
                        if matches!(st, PtaRequestState::Done { .. }) {
                            state.pta.wake(id);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read pass-through request states; waiting sign-ins fall back to their deadline")
                }
            }
        }
    }
}

// ---- dispatch ----------------------------------------------------------------------------

/// How a pass-through check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtaOutcome {
    /// An agent answered.
    Answered {
        agent_id: Uuid,
        result: PtaResult,
        detail: Option<String>,
    },
    /// No agent could take it (none healthy, or none took it in time on either attempt).
    NoAgent,
    /// An agent took it and no answer came back on either attempt (the last agent that took
    /// it, if known).
    Timeout { agent_id: Option<Uuid> },
}

/// The agents a request may go to: the healthy ones; when none is healthy, those that are
/// alive but cannot reach the directory (their answer, `directoryUnavailable`, says more
/// than `noAgentAvailable`).
fn eligible(agents: &[AgentRecord], exclude: &[Uuid], now: Timestamp) -> Vec<AgentRecord> {
    let pick = |want: AgentHealth| -> Vec<AgentRecord> {
        agents
            .iter()
            .filter(|a| !exclude.contains(&a.id) && health_of(a, now) == want)
            .cloned()
            .collect()
    };
    let healthy = pick(AgentHealth::Healthy);
    if healthy.is_empty() {
        pick(AgentHealth::DirectoryUnreachable)
    } else {
        healthy
    }
}

/// At most [`MAX_ENVELOPES_PER_REQUEST`] of `agents`, starting at `offset` (random per
/// request) and wrapping around, so load spreads evenly over the fleet.
fn spread(mut agents: Vec<AgentRecord>, offset: usize) -> Vec<AgentRecord> {
    if agents.len() > MAX_ENVELOPES_PER_REQUEST {
        let n = agents.len();
        agents.rotate_left(offset % n);
        agents.truncate(MAX_ENVELOPES_PER_REQUEST);
    }
    agents
}

fn random_offset() -> usize {
    crate::crypto::random_bytes(4)
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
}

/// Check `password` of the user through an agent, with the configured deadline per attempt
/// and at most one retry (SPEC §5.3).
pub async fn validate(
    state: &AppState,
    user_principal_name: &str,
    immutable_id: Option<&str>,
    password: &[u8],
    correlation_id: Uuid,
) -> Result<PtaOutcome, StoreError> {
    let started = std::time::Instant::now();
    let deadline_ms = state.config.pass_through_deadline_ms;
    let mut tried: Vec<Uuid> = Vec::new();
    let mut exclude: Vec<Uuid> = Vec::new();
    let mut last_claimer: Option<Uuid> = None;
    for attempt in 1..=2u32 {
        let now = state.now();
        let list = agents(state).await?;
        let mut targets = spread(eligible(&list, &exclude, now), random_offset());
        if targets.is_empty() {
            return Ok(match last_claimer {
                Some(a) => PtaOutcome::Timeout { agent_id: Some(a) },
                None => PtaOutcome::NoAgent,
            });
        }
        let id = Uuid::now_v7();
        let deadline = now.plus_millis(deadline_ms);
        // Seal to every target; a deleted agent (Conflict) drops out once and we seal again.
        let mut enqueued = false;
        for _ in 0..2 {
            let mut envelopes = Vec::with_capacity(targets.len());
            for a in &targets {
                let aad = envelope_aad(id, a.id, user_principal_name);
                match seal_password(&a.encryption_key, password, &aad) {
                    Ok(s) => envelopes.push((
                        a.id,
                        serde_json::to_string(&s)
                            .map_err(|e| StoreError::Database(e.to_string()))?,
                    )),
                    Err(e) => {
                        tracing::error!(agent_id = %a.id, error = %e, "cannot seal a password to this agent's key; the agent is skipped (rotate its keys or register it again)")
                    }
                }
            }
            if envelopes.is_empty() {
                break;
            }
            let row = PtaRequestRow {
                id,
                correlation_id,
                user_principal_name: user_principal_name.to_owned(),
                immutable_id: immutable_id.map(str::to_owned),
                created_at: now,
                deadline,
                attempt,
                envelopes,
            };
            match state.store.enqueue_pta_request(&row).await {
                Ok(()) => {
                    enqueued = true;
                    break;
                }
                Err(StoreError::Conflict(_)) => {
                    invalidate_agents(state);
                    let fresh = agents(state).await?;
                    targets = spread(eligible(&fresh, &exclude, now), random_offset());
                }
                Err(e) => return Err(e),
            }
        }
        if !enqueued {
            return Ok(match last_claimer {
                Some(a) => PtaOutcome::Timeout { agent_id: Some(a) },
                None => PtaOutcome::NoAgent,
            });
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = state.pta.waiters.lock() {
            w.insert(id, tx);
        }
        let _guard = WaiterGuard {
            hub: &state.pta,
            id,
        };
        // Wake this node's waiting polls (waking only one was measured no faster: the
        // claim is cheap when it finds nothing). Polls of other nodes find it at their next
        // check (`WORK_CHECK_MS`).
        state.pta.work.notify_waiters();
        let wait = Duration::from_millis(u64::try_from(deadline_ms).unwrap_or(0));
        let woken = matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(())));
        // Woken by an answer: read it (no write). Otherwise stop waiting atomically: an
        // answer that came first still stands.
        let answered = if woken {
            state
                .store
                .pta_request_states(&[id])
                .await?
                .into_iter()
                .find(|(r, s)| *r == id && matches!(s, PtaRequestState::Done { .. }))
                .map(|(_, s)| s)
        } else {
            None
        };
        let before = match answered {
            Some(done) => Some(done),
            None => state.store.abandon_pta_request(id).await?,
        };
        let at = match before {
            Some(PtaRequestState::Done {
                agent_id,
                result,
                detail,
                ..
            }) => {
                if let Err(e) = state.store.delete_pta_request(id).await {
                    tracing::debug!(error = %e, "could not delete an answered pass-through request; it is purged later");
                }
                if let Ok(mut l) = state.pta.latencies.lock() {
                    l.record(started.elapsed());
                }
                state.metrics.observe_pass_through(started.elapsed());
                return Ok(PtaOutcome::Answered {
                    agent_id,
                    result,
                    detail,
                });
            }
            Some(PtaRequestState::Claimed { agent_id, .. }) => AtDeadline::ClaimedBy(agent_id),
            Some(PtaRequestState::Abandoned {
                claimed_by: Some(a),
            }) => AtDeadline::ClaimedBy(a),
            _ => AtDeadline::Unclaimed,
        };
        if let AtDeadline::ClaimedBy(a) = at {
            tracing::warn!(agent_id = %a, attempt, deadline_ms, "a pass-through agent took a password check and did not answer in time");
            last_claimer = Some(a);
            if !tried.contains(&a) {
                tried.push(a);
            }
        } else {
            tracing::warn!(
                attempt,
                deadline_ms,
                agents = targets.len(),
                "no pass-through agent took a password check in time"
            );
        }
        match at_deadline(attempt, at, &tried) {
            DeadlineAction::UseAnswer => unreachable_answer()?,
            DeadlineAction::Retry { exclude: ex } => exclude = ex,
            DeadlineAction::GiveUp { .. } => break,
        }
    }
    Ok(match last_claimer {
        Some(a) => PtaOutcome::Timeout { agent_id: Some(a) },
        None => PtaOutcome::NoAgent,
    })
}

/// `at_deadline` says "use the answer" only for an answered request, which returned above.
fn unreachable_answer() -> Result<(), StoreError> {
    Err(StoreError::Database(
        "pass-through dispatch: an answer was reported but not found".into(),
    ))
}

// ---- the agent protocol ------------------------------------------------------------------

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/register", post(register))
        .route("/challenge", post(challenge))
        .route("/session", post(session))
        .route("/poll", post(poll))
        .route("/results", post(results))
        .route("/heartbeat", post(heartbeat))
        .route("/keys", post(rotate_keys))
        .route("/self", get(self_view))
}

/// An `/agent/v1` error: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct AgentError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AgentError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
    }
    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalidSession", message)
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        let api = crate::error::ApiError::from(e);
        Self::new(api.status, api.code, api.message)
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let body = AgentErrorResponse {
            error: AgentErrorBody {
                code: self.code.into(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body, refused with a clear message (not axum's plain text) when it does not parse.
struct AgentJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for AgentJson<T> {
    type Rejection = AgentError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AgentError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AgentError::bad_request(format!("cannot read the body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(AgentJson)
            .map_err(|e| AgentError::bad_request(format!("the body is not a valid request: {e}")))
    }
}

fn mac_of(state: &AppState, domain: &str, payload: &str) -> String {
    state.hasher.hash(domain, payload)
}

/// A challenge: `<agent>.<expiry ms>.<nonce>.<mac>`, valid [`AGENT_CHALLENGE_SECS`].
fn new_challenge(state: &AppState, agent_id: Uuid, now: Timestamp) -> String {
    let payload = format!(
        "{agent_id}.{}.{}",
        now.plus_secs(AGENT_CHALLENGE_SECS).millis(),
        crate::crypto::random_token()
    );
    let mac = mac_of(state, "agent-challenge", &payload);
    format!("{payload}.{mac}")
}

fn check_challenge(state: &AppState, agent_id: Uuid, challenge: &str, now: Timestamp) -> bool {
    let Some((payload, mac)) = challenge.rsplit_once('.') else {
        return false;
    };
    if !state.hasher.verify("agent-challenge", payload, mac) {
        return false;
    }
    let mut parts = payload.split('.');
    let (Some(a), Some(exp)) = (parts.next(), parts.next()) else {
        return false;
    };
    a == agent_id.to_string() && exp.parse::<i64>().is_ok_and(|e| now.millis() < e)
}

/// A session token: `<agent>.<key generation>.<expiry ms>.<mac>`.
fn new_session(state: &AppState, agent_id: Uuid, generation: u32, now: Timestamp) -> String {
    let payload = format!(
        "{agent_id}.{generation}.{}",
        now.plus_secs(AGENT_SESSION_SECS).millis()
    );
    let mac = mac_of(state, "agent-session", &payload);
    format!("{payload}.{mac}")
}

fn check_session(state: &AppState, token: &str, now: Timestamp) -> Option<(Uuid, u32)> {
    let (payload, mac) = token.rsplit_once('.')?;
    if !state.hasher.verify("agent-session", payload, mac) {
        return None;
    }
    let mut parts = payload.split('.');
    let agent = parts.next()?.parse::<Uuid>().ok()?;
    let generation = parts.next()?.parse::<u32>().ok()?;
    let exp = parts.next()?.parse::<i64>().ok()?;
    (now.millis() < exp).then_some((agent, generation))
}

/// The current row of a known, enabled agent, or the refusal the agent acts on.
async fn usable_agent(
    state: &AppState,
    agent_id: Uuid,
    fresh: bool,
) -> Result<AgentRecord, AgentError> {
    if fresh {
        invalidate_agents(state);
    }
    let list = agents(state).await?;
    let Some(a) = list.iter().find(|a| a.id == agent_id) else {
        return Err(AgentError::new(
            StatusCode::FORBIDDEN,
            "agentUnknown",
            "This agent is not registered (it was deleted): register it again with a new token (cutover admin agents token).",
        ));
    };
    if !a.enabled {
        return Err(AgentError::new(
            StatusCode::FORBIDDEN,
            "agentDisabled",
            "An administrator disabled this agent: it receives no password checks until it is enabled again (cutover admin agents enable).",
        ));
    }
    Ok(a.clone())
}

/// An authenticated agent session.
pub struct AgentSession {
    pub agent: AgentRecord,
}

impl FromRequestParts<Arc<AppState>> for AgentSession {
    type Rejection = AgentError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, AgentError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| AgentError::unauthorized("a session token is required (Authorization: Bearer …); open one with /agent/v1/challenge and /agent/v1/session"))?;
        let (agent_id, generation) =
            check_session(state, token.trim(), state.now()).ok_or_else(|| {
                AgentError::unauthorized(
                    "the session token is invalid or expired: open a new session",
                )
            })?;
        let agent = usable_agent(state, agent_id, false).await?;
        if agent.key_generation != generation {
            return Err(AgentError::unauthorized(
                "the agent's keys were rotated since this session opened: open a new session with the current keys",
            ));
        }
        Ok(Self { agent })
    }
}

/// A host or version label an agent sent: trimmed, control characters replaced, clipped.
fn label(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars() {
        if out.len() + c.len_utf8() > MAX_AGENT_LABEL_LEN {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

fn ctx_of(parts_ctx: Option<axum::Extension<RequestCtx>>) -> Uuid {
    parts_ctx.map(|c| c.0.id).unwrap_or_else(Uuid::now_v7)
}

fn agent_audit(
    correlation_id: Uuid,
    now: Timestamp,
    action: &str,
    agent: &AgentRecord,
    after: Option<serde_json::Value>,
) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id,
        actor: format!("agent:{}", agent.id),
        action: action.into(),
        target_type: "agent".into(),
        target_id: agent.id.to_string(),
        target_name: Some(agent.host.clone()),
        before: None,
        after,
    }
}

async fn register(
    State(state): State<Arc<AppState>>,
    ctx: Option<axum::Extension<RequestCtx>>,
    AgentJson(req): AgentJson<RegisterRequest>,
) -> Result<Json<RegisterResponse>, AgentError> {
    if req.protocol != PROTOCOL_VERSION {
        return Err(AgentError::bad_request(format!(
            "this server speaks agent protocol {PROTOCOL_VERSION}, the agent {}: install the agent of the server's version",
            req.protocol
        )));
    }
    check_public_keys(&req.keys).map_err(|e| {
        AgentError::bad_request(format!("the agent's public keys are invalid: {e}"))
    })?;
    if !verify_signature(
        &req.keys.signing_key,
        &register_proof(&req.token, &req.keys),
        &req.proof,
    ) {
        return Err(AgentError::bad_request(
            "the registration proof does not verify with the agent's signing key",
        ));
    }
    let now = state.now();
    let agent = AgentRecord {
        id: Uuid::now_v7(),
        host: label(&req.host),
        version: label(&req.version),
        signing_key: req.keys.signing_key.clone(),
        encryption_key: req.keys.encryption_key.clone(),
        key_generation: 1,
        enabled: true,
        created_at: now,
        keys_rotated_at: None,
        last_heartbeat: None,
        heartbeat: None,
    };
    let audit = agent_audit(
        ctx_of(ctx),
        now,
        "registerAgent",
        &agent,
        Some(serde_json::json!({"host": agent.host, "version": agent.version})),
    );
    let hash = registration_token_hash(&state, req.token.trim());
    match state
        .store
        .register_agent(&hash, &agent, now, &audit)
        .await?
    {
        Ok(()) => {}
        Err(refusal) => {
            tracing::warn!(code = refusal.code(), host = %agent.host, "an agent registration was refused");
            let status = match refusal {
                cutover_core::pta::RegistrationRefusal::TooManyAgents { .. } => {
                    StatusCode::CONFLICT
                }
                _ => StatusCode::FORBIDDEN,
            };
            return Err(AgentError::new(status, refusal.code(), refusal.message()));
        }
    }
    invalidate_agents(&state);
    let list = agents(&state).await?;
    let (healthy, warning) = fleet_of(&list, now);
    tracing::info!(agent_id = %agent.id, host = %agent.host, version = %agent.version, "a pass-through agent registered");
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    Ok(Json(RegisterResponse {
        agent_id: agent.id,
        healthy_agents: healthy,
        warning,
    }))
}

async fn challenge(
    State(state): State<Arc<AppState>>,
    AgentJson(req): AgentJson<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, AgentError> {
    // Unknown and disabled agents learn so here, before signing anything.
    usable_agent(&state, req.agent_id, false).await?;
    Ok(Json(ChallengeResponse {
        challenge: new_challenge(&state, req.agent_id, state.now()),
        expires_in_secs: AGENT_CHALLENGE_SECS,
    }))
}

async fn session(
    State(state): State<Arc<AppState>>,
    AgentJson(req): AgentJson<SessionRequest>,
) -> Result<Json<SessionResponse>, AgentError> {
    let now = state.now();
    if !check_challenge(&state, req.agent_id, &req.challenge, now) {
        return Err(AgentError::unauthorized(
            "the challenge is invalid or expired: ask for a new one",
        ));
    }
    // A fresh read: a session opens with the keys stored now (a rotation may just have run).
    let agent = usable_agent(&state, req.agent_id, true).await?;
    if !verify_signature(
        &agent.signing_key,
        &session_proof(agent.id, &req.challenge),
        &req.signature,
    ) {
        tracing::warn!(agent_id = %agent.id, host = %agent.host, "an agent session was refused: the signature does not match the agent's registered key");
        return Err(AgentError::unauthorized(
            "the signature does not match this agent's registered key",
        ));
    }
    Ok(Json(SessionResponse {
        token: new_session(&state, agent.id, agent.key_generation, now),
        expires_in_secs: AGENT_SESSION_SECS,
    }))
}

async fn poll(
    State(state): State<Arc<AppState>>,
    s: AgentSession,
    AgentJson(req): AgentJson<PollRequest>,
) -> Result<Json<PollResponse>, AgentError> {
    let max = req.max.clamp(1, MAX_POLL_BATCH);
    let wait = Duration::from_millis(u64::from(req.wait_ms.min(MAX_POLL_WAIT_MS)));
    let until = tokio::time::Instant::now() + wait;
    let mut first = true;
    loop {
        let notified = state.pta.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // A waiting poll learns within the cache's age that an administrator disabled or
        // deleted its agent (the claim below never hands such an agent anything anyway).
        if !first {
            usable_agent(&state, s.agent.id, false).await?;
        }
        first = false;
        let now = state.now();
        let claimed = state.store.claim_pta_requests(s.agent.id, now, max).await?;
        if !claimed.is_empty() {
            let mut requests = Vec::with_capacity(claimed.len());
            for c in claimed {
                let password: SealedPassword = match serde_json::from_str(&c.envelope) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(request_id = %c.id, error = %e, "a stored pass-through envelope does not parse; the request times out");
                        continue;
                    }
                };
                requests.push(WorkItem {
                    request_id: c.id,
                    correlation_id: c.correlation_id,
                    user_principal_name: c.user_principal_name,
                    immutable_id: c.immutable_id,
                    remaining_ms: c.deadline.millis().saturating_sub(now.millis()).max(0),
                    password,
                });
            }
            return Ok(Json(PollResponse { requests }));
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || state.pta.is_closing() {
            return Ok(Json(PollResponse { requests: vec![] }));
        }
        let nap = left.min(Duration::from_millis(WORK_CHECK_MS));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

async fn results(
    State(state): State<Arc<AppState>>,
    s: AgentSession,
    AgentJson(req): AgentJson<ResultsRequest>,
) -> Result<Json<ResultsResponse>, AgentError> {
    if req.results.len() > MAX_POLL_BATCH as usize {
        return Err(AgentError::bad_request(format!(
            "at most {MAX_POLL_BATCH} results per call, got {}",
            req.results.len()
        )));
    }
    let now = state.now();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for r in req.results {
        let outcome = state
            .store
            .complete_pta_request(r.request_id, s.agent.id, r.result, r.detail.as_deref(), now)
            .await?;
        let reason = match outcome {
            CompleteOutcome::Accepted => {
                state.pta.wake(r.request_id);
                accepted.push(r.request_id);
                continue;
            }
            CompleteOutcome::Late => "late",
            CompleteOutcome::NotYours => "notYours",
            CompleteOutcome::Unknown => "unknown",
        };
        tracing::info!(agent_id = %s.agent.id, request_id = %r.request_id, reason, "an agent's answer was not used");
        rejected.push(RejectedResult {
            request_id: r.request_id,
            reason: reason.into(),
        });
    }
    Ok(Json(ResultsResponse { accepted, rejected }))
}

async fn heartbeat(
    State(state): State<Arc<AppState>>,
    s: AgentSession,
    AgentJson(mut hb): AgentJson<Heartbeat>,
) -> Result<Json<HeartbeatResponse>, AgentError> {
    hb.host = label(&hb.host);
    hb.version = label(&hb.version);
    hb.stats.last_error = hb
        .stats
        .last_error
        .map(|e| cutover_core::pta::clean_detail(&e));
    hb.directory.error = hb
        .directory
        .error
        .map(|e| cutover_core::pta::clean_detail(&e));
    hb.stats
        .by_result
        .retain(|k, _| PtaResult::parse(k).is_some());
    let body = serde_json::to_value(&hb).map_err(|e| AgentError::bad_request(e.to_string()))?;
    let now = state.now();
    let was = health_of(&s.agent, now);
    state
        .store
        .record_agent_heartbeat(s.agent.id, now, &body)
        .await?;
    let mut after = s.agent.clone();
    after.last_heartbeat = Some(now);
    after.heartbeat = Some(body);
    let is = health_of(&after, now);
    if was != is {
        tracing::info!(agent_id = %s.agent.id, host = %hb.host, from = was.as_str(), to = is.as_str(), "pass-through agent health changed");
        invalidate_agents(&state);
    }
    Ok(Json(HeartbeatResponse {
        server_time: now.millis(),
        interval_secs: HEARTBEAT_INTERVAL_SECS,
    }))
}

async fn rotate_keys(
    State(state): State<Arc<AppState>>,
    ctx: Option<axum::Extension<RequestCtx>>,
    s: AgentSession,
    AgentJson(req): AgentJson<RotateKeysRequest>,
) -> Result<Json<RotateKeysResponse>, AgentError> {
    check_public_keys(&req.keys)
        .map_err(|e| AgentError::bad_request(format!("the new public keys are invalid: {e}")))?;
    if !verify_signature(
        &req.keys.signing_key,
        &rotate_proof(s.agent.id, &req.keys),
        &req.proof,
    ) {
        return Err(AgentError::bad_request(
            "the rotation proof does not verify with the new signing key",
        ));
    }
    let now = state.now();
    let audit = agent_audit(
        ctx_of(ctx),
        now,
        "rotateAgentKeys",
        &s.agent,
        Some(serde_json::json!({"keyGeneration": s.agent.key_generation + 1})),
    );
    let generation = state
        .store
        .rotate_agent_keys(
            s.agent.id,
            &req.keys.signing_key,
            &req.keys.encryption_key,
            s.agent.key_generation,
            now,
            &audit,
        )
        .await?;
    invalidate_agents(&state);
    tracing::info!(agent_id = %s.agent.id, key_generation = generation, "a pass-through agent rotated its keys");
    Ok(Json(RotateKeysResponse {
        key_generation: generation,
    }))
}

async fn self_view(
    State(state): State<Arc<AppState>>,
    s: AgentSession,
) -> Result<Json<SelfView>, AgentError> {
    let now = state.now();
    let list = agents(&state).await?;
    let (healthy, warning) = fleet_of(&list, now);
    Ok(Json(SelfView {
        agent_id: s.agent.id,
        enabled: s.agent.enabled,
        health: health_of(&s.agent, now).as_str().into(),
        key_generation: s.agent.key_generation,
        last_heartbeat: s.agent.last_heartbeat.map(|t| t.millis()),
        healthy_agents: healthy,
        warning,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: u128, enabled: bool, seen: Option<i64>, reachable: bool) -> AgentRecord {
        AgentRecord {
            id: Uuid::from_u128(id),
            host: format!("h{id}"),
            version: "1".into(),
            signing_key: String::new(),
            encryption_key: String::new(),
            key_generation: 1,
            enabled,
            created_at: Timestamp::from_millis(0),
            keys_rotated_at: None,
            last_heartbeat: seen.map(Timestamp::from_millis),
            heartbeat: seen.map(|_| {
                serde_json::json!({
                    "host": "h", "version": "1", "startedAt": 0,
                    "stats": {"validations": 0, "byResult": {}, "lastMinute": 0, "errors": 0,
                              "inFlight": 0, "late": 0, "cpuMs": 0, "rssBytes": 0},
                    "directory": {"reachable": reachable}
                })
            }),
        }
    }

    #[test]
    fn healthy_agents_first_then_those_without_a_directory() {
        let now = Timestamp::from_millis(100_000);
        let list = vec![
            agent(1, true, Some(99_000), true),
            agent(2, true, Some(99_000), false),
            agent(3, false, Some(99_000), true),
            agent(4, true, Some(10_000), true),
            agent(5, true, None, true),
        ];
        assert_eq!(health_of(&list[0], now), AgentHealth::Healthy);
        assert_eq!(health_of(&list[1], now), AgentHealth::DirectoryUnreachable);
        assert_eq!(health_of(&list[2], now), AgentHealth::Disabled);
        assert_eq!(health_of(&list[3], now), AgentHealth::Stale);
        assert_eq!(health_of(&list[4], now), AgentHealth::Offline);
        let ids = |v: Vec<AgentRecord>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(eligible(&list, &[], now)), vec![Uuid::from_u128(1)]);
        assert_eq!(
            ids(eligible(&list, &[Uuid::from_u128(1)], now)),
            vec![Uuid::from_u128(2)],
            "with the healthy one excluded, one without its directory still answers precisely"
        );
        let (healthy, warning) = fleet_of(&list, now);
        assert_eq!(healthy, 1);
        assert!(warning.unwrap().contains("Only 1"));
    }

    #[test]
    fn lookalike_delays_come_from_the_last_answered_checks() {
        let mut l = LatencySamples::default();
        assert_eq!(l.pick(7), None, "no check answered yet: no delay");
        for ms in 0..(LATENCY_SAMPLES as u64 + 10) {
            l.record(Duration::from_millis(ms));
        }
        // Only the newest LATENCY_SAMPLES are kept; every one can be picked.
        let picked: std::collections::BTreeSet<u64> = (0..LATENCY_SAMPLES as u64)
            .filter_map(|r| l.pick(r))
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(picked.len(), LATENCY_SAMPLES);
        assert_eq!(picked.first(), Some(&10));
        assert_eq!(picked.last(), Some(&(LATENCY_SAMPLES as u64 + 9)));
        assert_eq!(l.pick(u64::MAX), l.pick(u64::MAX % LATENCY_SAMPLES as u64));
    }

    #[test]
    fn a_request_goes_to_at_most_three_agents_spread_over_the_fleet() {
        let fleet: Vec<AgentRecord> = (0..10)
            .map(|i| agent(i, true, Some(99_000), true))
            .collect();
        let ids = |v: Vec<AgentRecord>| v.into_iter().map(|a| a.id.as_u128()).collect::<Vec<_>>();
        assert_eq!(ids(spread(fleet.clone(), 0)), vec![0, 1, 2]);
        assert_eq!(ids(spread(fleet.clone(), 8)), vec![8, 9, 0], "wraps around");
        assert_eq!(ids(spread(fleet.clone(), 23)), vec![3, 4, 5]);
        // Every agent is first for some offset: load spreads over all of them.
        let firsts: std::collections::BTreeSet<u128> =
            (0..10).map(|o| ids(spread(fleet.clone(), o))[0]).collect();
        assert_eq!(firsts.len(), 10);
        // Fewer agents than the cap: all of them, in order.
        assert_eq!(ids(spread(fleet[..2].to_vec(), 7)), vec![0, 1]);
        assert!(spread(vec![], 5).is_empty());
    }
}
