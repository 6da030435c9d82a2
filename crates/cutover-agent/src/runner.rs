//! `cutover agent run`: the long-poll loop, the validation tasks, the result poster, the
//! heartbeat and the directory probe, and the graceful drain.
//!
//! ```text
//!   poll loop ──(WorkItem, permit)──► validation task ──(ResultItem)──► result poster ──► /results
//!      ▲ asks for max = free slots          │ LDAP bind                      (small batches)
//!   directory probe (every 30 s) ──► DirectoryStatus ──► heartbeat (every 10 s) ──► /heartbeat
//! ```

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use cutover_agent_proto::{
    AgentStats, DirectoryStatus, Heartbeat, HeartbeatResponse, PollRequest, PollResponse,
    ResultItem, ResultsRequest, ResultsResponse, WorkItem,
};
use cutover_core::pta::{
    HEARTBEAT_INTERVAL_SECS, HEARTBEAT_STALE_SECS, MAX_AGENT_LABEL_LEN, MAX_POLL_BATCH,
    MAX_POLL_WAIT_MS,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::backoff::{Backoff, refused_delay};
use crate::client::{
    CallError, Link, LinkCondition, LinkState, POLL_TIMEOUT_MARGIN, REQUEST_TIMEOUT, ServerClient,
};
use crate::state::{KeyRing, StateDir};
use crate::stats::{MonoClock, Stats, SystemMonoClock, truncate};
use crate::work::{DirectoryCheck, validate};

/// How long one poll waits for work.
pub const POLL_WAIT_MS: u32 = MAX_POLL_WAIT_MS;
/// Most results posted in one call.
pub const MAX_RESULTS_BATCH: usize = 32;
/// A result that could not be delivered is retried until this long after its request's
/// deadline (the server refuses it as late after that anyway).
pub const RESULT_RETRY_GRACE: Duration = Duration::from_secs(5);
/// The directory is probed at most this often (for the heartbeat's directory status).
pub const DIRECTORY_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// Limit for one probe.
pub const DIRECTORY_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first heartbeat waits this long at most for the first directory probe.
pub const FIRST_PROBE_WAIT: Duration = Duration::from_secs(5);
/// Heartbeat intervals the server may ask for are clamped to this range (an agent silent
/// for [`HEARTBEAT_STALE_SECS`] is no longer healthy).
pub const MIN_HEARTBEAT_SECS: u64 = 1;
pub const MAX_HEARTBEAT_SECS: u64 = (HEARTBEAT_STALE_SECS / 2) as u64;
/// After a stop is asked for, in-flight validations and their results get this long.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for the last heartbeat.
pub const LAST_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's label for this host: `$HOSTNAME`, else `/etc/hostname`, else `unknown`.
pub fn host_label() -> String {
    let h = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    truncate(h.trim().to_owned(), MAX_AGENT_LABEL_LEN)
}

pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn directory_status(
    probe: Result<cutover_core::lockout::DirectoryLockout, String>,
) -> DirectoryStatus {
    match probe {
        Ok(l) => DirectoryStatus {
            reachable: true,
            error: None,
            lockout: Some(l),
        },
        Err(e) => DirectoryStatus {
            reachable: false,
            error: Some(truncate(e, cutover_core::pta::MAX_RESULT_DETAIL_LEN)),
            lockout: None,
        },
    }
}

/// Everything the agent's tasks share.
struct Shared<D> {
    link: Link,
    directory: D,
    stats: Arc<Stats>,
    clock: Arc<dyn MonoClock>,
    link_state: Arc<LinkState>,
    host: String,
    started_at: i64,
    server: String,
}

impl<D> Shared<D> {
    fn agent_id(&self) -> Uuid {
        self.link.agent_id
    }

    fn stats_now(&self) -> AgentStats {
        self.stats.snapshot_with_process(self.clock.now())
    }

    /// Sleep `d`, or less if a stop is asked for; true when stopping.
    async fn pause(&self, d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        stopped || *stop.borrow()
    }

    fn failed(&self, what: &str, e: &CallError, backoff: &mut Backoff) -> Duration {
        self.link_state.failed(what, e);
        if e.is_refused() {
            refused_delay()
        } else {
            backoff.next_delay()
        }
    }
}

/// A running agent, started by [`start`] or [`start_with`]. Dropping the handle stops the
/// agent as [`AgentHandle::shutdown`] does.
pub struct AgentHandle {
    agent_id: Uuid,
    stats: Arc<Stats>,
    clock: Arc<dyn MonoClock>,
    link_state: Arc<LinkState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    pub fn agent_id(&self) -> Uuid {
        self.agent_id
    }

    /// The live counters, as the next heartbeat would send them.
    pub fn stats(&self) -> AgentStats {
        self.stats.snapshot_with_process(self.clock.now())
    }

    /// The connection as the agent sees it: `starting`, `connected`, `unreachable`,
    /// `refused` (disabled or deleted), `failing`, `stopping`.
    pub fn condition(&self) -> LinkCondition {
        self.link_state.get()
    }

    /// Ask the agent to stop: no more polls; in-flight validations finish and are reported
    /// (within [`DRAIN_TIMEOUT`]), then a last heartbeat.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Stop the agent at once, as if its process died: no drain, nothing in flight is
    /// answered, no last heartbeat (tests of the server's failover).
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Whether the agent's task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Wait for the agent to end.
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| anyhow!("the agent task failed: {e}"))?
    }
}

/// Load the state directory and start the agent with the directory it configures.
pub async fn start(state_dir: &Path) -> Result<AgentHandle> {
    let dir = StateDir::new(state_dir);
    let cfg = dir.read_config()?;
    let checker = cutover_ldap::PasswordChecker::new(cfg.directory_config(&dir.root)?)
        .map_err(|e| anyhow!("[directory] in {}: {e}", dir.config().display()))?;
    start_with(state_dir, checker, Arc::new(SystemMonoClock::default())).await
}

/// Start an agent from a state directory with any [`DirectoryCheck`] and clock (tests).
pub async fn start_with<D: DirectoryCheck>(
    state_dir: &Path,
    directory: D,
    clock: Arc<dyn MonoClock>,
) -> Result<AgentHandle> {
    let dir = StateDir::new(state_dir);
    let cfg = dir.read_config()?;
    for w in dir.permission_warnings() {
        tracing::warn!("{w}");
    }
    let ca = match &cfg.ca_file {
        Some(p) => {
            let p = dir.root.join(p);
            Some(
                std::fs::read(&p)
                    .with_context(|| format!("cannot read the server CA file {}", p.display()))?,
            )
        }
        None => None,
    };
    let client = ServerClient::new(&cfg.server, ca.as_deref())?;
    let keys = Arc::new(KeyRing::load(&dir)?);
    let stats = Arc::new(Stats::default());
    let link_state = Arc::new(LinkState::default());
    let shared = Arc::new(Shared {
        link: Link::new(client, cfg.agent_id, keys),
        directory,
        stats: stats.clone(),
        clock: clock.clone(),
        link_state: link_state.clone(),
        host: truncate(cfg.host.clone(), MAX_AGENT_LABEL_LEN),
        started_at: unix_millis(),
        server: cfg.server.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(
        agent_id = %cfg.agent_id,
        server = %cfg.server,
        concurrency = cfg.concurrency,
        state_dir = %dir.root.display(),
        "pass-through agent starting"
    );
    let task = tokio::spawn(supervise(shared, cfg.concurrency, stop_rx));
    Ok(AgentHandle {
        agent_id: cfg.agent_id,
        stats,
        clock,
        link_state,
        stop: stop_tx,
        task,
    })
}

/// Run the agent of `state_dir` until `shutdown` resolves, then drain and return.
pub async fn run(state_dir: &Path, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let handle = start(state_dir).await?;
    run_handle(handle, shutdown).await
}

/// Drive a started agent until `shutdown` resolves (or the agent ends by itself).
pub async fn run_handle(
    handle: AgentHandle,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut handle = handle;
    tokio::select! {
        _ = &mut shutdown => {
            tracing::info!("stopping: finishing the validations in flight");
            handle.shutdown();
            handle.wait().await
        }
        r = &mut handle.task => r.map_err(|e| anyhow!("the agent task failed: {e}"))?,
    }
}

async fn supervise<D: DirectoryCheck>(
    shared: Arc<Shared<D>>,
    concurrency: usize,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let (dir_tx, dir_rx) = watch::channel::<Option<DirectoryStatus>>(None);
    let probe = tokio::spawn(probe_loop(shared.clone(), dir_tx, stop.clone()));
    let heartbeat = tokio::spawn(heartbeat_loop(shared.clone(), dir_rx.clone(), stop.clone()));
    let (res_tx, res_rx) = mpsc::channel::<Ready>(concurrency.max(1) * 2);
    let poster = tokio::spawn(results_loop(shared.clone(), res_rx));
    // Spawned tasks outlive a dropped handle: when this task is aborted (`AgentHandle::kill`),
    // these end with it, as they would with the process (no more heartbeats or results).
    let _end_with_me = [
        probe.abort_handle(),
        heartbeat.abort_handle(),
        poster.abort_handle(),
    ]
    .map(AbortOnDrop);
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    poll_loop(&shared, &sem, &res_tx, &mut tasks, stop.clone()).await;

    // ---- drain --------------------------------------------------------------------------
    shared.link_state.stopping();
    drop(res_tx);
    heartbeat.abort();
    let in_flight = shared.stats.in_flight();
    let mut poster = poster;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
        let _ = (&mut poster).await;
    })
    .await;
    match drained {
        Ok(()) => tracing::info!(
            in_flight,
            "drained: every validation in flight was reported"
        ),
        Err(_) => {
            tasks.abort_all();
            poster.abort();
            tracing::warn!(
                left = shared.stats.in_flight(),
                "stopped before every validation in flight was reported ({} s limit)",
                DRAIN_TIMEOUT.as_secs()
            );
        }
    }
    probe.abort();
    let last = Heartbeat {
        host: shared.host.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: shared.started_at,
        stats: shared.stats_now(),
        directory: dir_rx.borrow().clone().unwrap_or_default(),
    };
    match tokio::time::timeout(
        LAST_HEARTBEAT_TIMEOUT,
        shared
            .link
            .post::<_, HeartbeatResponse>("heartbeat", &last, LAST_HEARTBEAT_TIMEOUT),
    )
    .await
    {
        Ok(Ok(_)) => tracing::info!("last heartbeat sent; agent stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "agent stopped; the last heartbeat failed"),
        Err(_) => tracing::warn!("agent stopped; the last heartbeat timed out"),
    }
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A result waiting to be posted, and until when it is worth posting.
struct Ready {
    item: ResultItem,
    give_up_at: Duration,
}

async fn poll_loop<D: DirectoryCheck>(
    shared: &Arc<Shared<D>>,
    sem: &Arc<Semaphore>,
    res_tx: &mpsc::Sender<Ready>,
    tasks: &mut JoinSet<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let free = sem.available_permits();
        if free == 0 {
            tokio::select! {
                p = sem.clone().acquire_owned() => drop(p),
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        let max = (free as u32).min(MAX_POLL_BATCH);
        let req = PollRequest {
            max,
            wait_ms: POLL_WAIT_MS,
        };
        let timeout = Duration::from_millis(u64::from(POLL_WAIT_MS)) + POLL_TIMEOUT_MARGIN;
        let res = tokio::select! {
            r = shared.link.post::<_, PollResponse>("poll", &req, timeout) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let requests = match res {
            Ok(r) => {
                shared.link_state.ok(&shared.server);
                backoff.reset();
                r.requests
            }
            Err(e) => {
                let d = shared.failed("poll", &e, &mut backoff);
                if shared.pause(d, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        let received = shared.clock.now();
        if requests.len() > max as usize {
            tracing::warn!(
                asked = max,
                got = requests.len(),
                "the server sent more requests than asked for; the extra ones wait for a free slot"
            );
        }
        for item in requests {
            let Ok(permit) = sem.clone().acquire_owned().await else {
                return;
            };
            shared.stats.begin();
            let shared = shared.clone();
            let res_tx = res_tx.clone();
            tasks.spawn(async move {
                let item: WorkItem = item;
                let result = validate(
                    &shared.directory,
                    &shared.link.keys,
                    shared.agent_id(),
                    &item,
                    received,
                    shared.clock.as_ref(),
                )
                .await;
                drop(permit);
                let now = shared.clock.now();
                shared.stats.record_result(
                    result.result,
                    result.detail.as_deref().unwrap_or(""),
                    now,
                );
                shared.stats.end();
                tracing::debug!(
                    request_id = %item.request_id,
                    correlation_id = %item.correlation_id,
                    result = result.result.as_str(),
                    elapsed_ms = result.elapsed_ms,
                    "validated"
                );
                let left =
                    crate::work::time_left(received, item.remaining_ms, now).unwrap_or_default();
                let ready = Ready {
                    item: result,
                    give_up_at: now + left + RESULT_RETRY_GRACE,
                };
                if res_tx.send(ready).await.is_err() {
                    shared
                        .stats
                        .record_error("a result was dropped: the poster stopped");
                }
            });
        }
    }
}

async fn results_loop<D: DirectoryCheck>(shared: Arc<Shared<D>>, mut rx: mpsc::Receiver<Ready>) {
    let mut backoff = Backoff::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_RESULTS_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        loop {
            let body = ResultsRequest {
                results: batch.iter().map(|r| r.item.clone()).collect(),
            };
            match shared
                .link
                .post::<_, ResultsResponse>("results", &body, REQUEST_TIMEOUT)
                .await
            {
                Ok(resp) => {
                    backoff.reset();
                    let late = resp.rejected.iter().filter(|r| r.reason == "late").count();
                    shared.stats.record_late(late as u64);
                    for r in resp.rejected.iter().filter(|r| r.reason != "late") {
                        tracing::warn!(request_id = %r.request_id, reason = %r.reason, "the server refused a result");
                    }
                    if late > 0 {
                        tracing::info!(late, "results arrived after the server stopped waiting");
                    }
                    break;
                }
                Err(e) if e.is_transient() => {
                    let now = shared.clock.now();
                    let before = batch.len();
                    batch.retain(|r| r.give_up_at > now);
                    let dropped = before - batch.len();
                    if dropped > 0 {
                        shared.stats.record_error(format!(
                            "{dropped} result(s) could not be delivered before their deadline: {e}"
                        ));
                    }
                    if batch.is_empty() {
                        break;
                    }
                    let d = shared.failed("results", &e, &mut backoff);
                    let wait = batch
                        .iter()
                        .map(|r| r.give_up_at.saturating_sub(now))
                        .max()
                        .unwrap_or_default()
                        .min(d);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    shared.link_state.failed("results", &e);
                    shared.stats.record_error(format!(
                        "{} result(s) refused by the server: {e}",
                        batch.len()
                    ));
                    break;
                }
            }
        }
    }
}

async fn probe_loop<D: DirectoryCheck>(
    shared: Arc<Shared<D>>,
    tx: watch::Sender<Option<DirectoryStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_reachable: Option<bool> = None;
    loop {
        let status =
            match tokio::time::timeout(DIRECTORY_PROBE_TIMEOUT, shared.directory.probe()).await {
                Ok(r) => directory_status(r),
                Err(_) => directory_status(Err(format!(
                    "the directory did not answer the probe within {} s",
                    DIRECTORY_PROBE_TIMEOUT.as_secs()
                ))),
            };
        if last_reachable != Some(status.reachable) {
            if status.reachable {
                tracing::info!(lockout = ?status.lockout, "the directory is reachable");
            } else {
                tracing::error!(
                    error = status.error.as_deref().unwrap_or(""),
                    "the directory is NOT reachable: the server sends this agent no passwords until it is"
                );
            }
            last_reachable = Some(status.reachable);
        }
        let _ = tx.send(Some(status));
        if shared.pause(DIRECTORY_PROBE_INTERVAL, &mut stop).await {
            return;
        }
    }
}

async fn heartbeat_loop<D: DirectoryCheck>(
    shared: Arc<Shared<D>>,
    mut dir_rx: watch::Receiver<Option<DirectoryStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tokio::time::timeout(FIRST_PROBE_WAIT, dir_rx.wait_for(Option::is_some)).await;
    let mut backoff = Backoff::new();
    let default_interval = Duration::from_secs(HEARTBEAT_INTERVAL_SECS as u64);
    loop {
        if *stop.borrow() {
            return;
        }
        let hb = Heartbeat {
            host: shared.host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: shared.started_at,
            stats: shared.stats_now(),
            directory: dir_rx.borrow().clone().unwrap_or_default(),
        };
        let next = match shared
            .link
            .post::<_, HeartbeatResponse>("heartbeat", &hb, REQUEST_TIMEOUT)
            .await
        {
            Ok(r) => {
                shared.link_state.ok(&shared.server);
                backoff.reset();
                Duration::from_secs(
                    u64::try_from(r.interval_secs)
                        .unwrap_or(HEARTBEAT_INTERVAL_SECS as u64)
                        .clamp(MIN_HEARTBEAT_SECS, MAX_HEARTBEAT_SECS),
                )
            }
            Err(e) => {
                let d = shared.failed("heartbeat", &e, &mut backoff);
                if e.is_refused() {
                    d
                } else {
                    d.min(default_interval)
                }
            }
        };
        if shared.pause(next, &mut stop).await {
            return;
        }
    }
}
