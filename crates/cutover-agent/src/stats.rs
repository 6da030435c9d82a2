//! What the agent counts and reports in its heartbeat, and the monotonic time source it counts
//! with (injected, so tests step it instead of sleeping).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cutover_agent_proto::AgentStats;
use cutover_core::pta::{MAX_RESULT_DETAIL_LEN, PtaResult};

/// Width of the "last minute" window.
pub const MINUTE: Duration = Duration::from_secs(60);
/// The window is kept in buckets of this many seconds.
const BUCKET_SECS: u64 = 1;
const BUCKETS: usize = (MINUTE.as_secs() / BUCKET_SECS) as usize;
/// Clock ticks per second in `/proc/self/stat` (Linux `USER_HZ`, fixed by the kernel ABI).
pub const USER_HZ: u64 = 100;

/// A monotonic time source: time elapsed since an arbitrary origin.
pub trait MonoClock: Send + Sync + 'static {
    fn now(&self) -> Duration;
}

/// The process's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemMonoClock {
    origin: Instant,
}

impl Default for SystemMonoClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl MonoClock for SystemMonoClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicU64,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.millis
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl MonoClock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// Events in the last [`MINUTE`], in one-second buckets.
#[derive(Debug, Clone)]
pub struct SlidingMinute {
    /// (bucket index since the origin, count) per slot.
    slots: [(u64, u64); BUCKETS],
}

impl Default for SlidingMinute {
    fn default() -> Self {
        Self {
            slots: [(u64::MAX, 0); BUCKETS],
        }
    }
}

impl SlidingMinute {
    fn bucket(now: Duration) -> u64 {
        now.as_secs() / BUCKET_SECS
    }

    pub fn record(&mut self, now: Duration) {
        let b = Self::bucket(now);
        let slot = &mut self.slots[(b % BUCKETS as u64) as usize];
        if slot.0 != b {
            *slot = (b, 0);
        }
        slot.1 = slot.1.saturating_add(1);
    }

    /// Events whose bucket lies within the last minute (the current bucket included).
    pub fn count(&self, now: Duration) -> u64 {
        let b = Self::bucket(now);
        self.slots
            .iter()
            .filter(|(at, _)| *at != u64::MAX && *at <= b && b - *at < BUCKETS as u64)
            .map(|(_, n)| *n)
            .sum()
    }
}

#[derive(Debug, Default)]
struct Counters {
    validations: u64,
    by_result: BTreeMap<String, u64>,
    minute: SlidingMinute,
    errors: u64,
    last_error: Option<String>,
    late: u64,
    in_flight: u32,
}

/// The agent's live counters (shared by its tasks; read by [`crate::AgentHandle::stats`]).
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Counters>,
}

/// Cut `s` to at most `max` bytes, on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One validation finished with `result`. `agentError` and `directoryUnavailable` also
    /// count as errors.
    pub fn record_result(&self, result: PtaResult, detail: &str, now: Duration) {
        let mut c = self.lock();
        c.validations = c.validations.saturating_add(1);
        *c.by_result.entry(result.as_str().to_owned()).or_default() += 1;
        c.minute.record(now);
        if matches!(
            result,
            PtaResult::AgentError | PtaResult::DirectoryUnavailable
        ) {
            c.errors = c.errors.saturating_add(1);
            c.last_error = Some(truncate(
                format!("{}: {detail}", result.as_str()),
                MAX_RESULT_DETAIL_LEN,
            ));
        }
    }

    /// Something failed on the agent's side (a result that could not be delivered, a call
    /// the server refused, ...).
    pub fn record_error(&self, message: impl Into<String>) {
        let mut c = self.lock();
        c.errors = c.errors.saturating_add(1);
        c.last_error = Some(truncate(message.into(), MAX_RESULT_DETAIL_LEN));
    }

    pub fn record_late(&self, n: u64) {
        let mut c = self.lock();
        c.late = c.late.saturating_add(n);
    }

    pub fn begin(&self) {
        let mut c = self.lock();
        c.in_flight = c.in_flight.saturating_add(1);
    }

    pub fn end(&self) {
        let mut c = self.lock();
        c.in_flight = c.in_flight.saturating_sub(1);
    }

    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// The counters as the heartbeat sends them (without process figures).
    pub fn snapshot(&self, now: Duration) -> AgentStats {
        let c = self.lock();
        AgentStats {
            validations: c.validations,
            by_result: c.by_result.clone(),
            last_minute: c.minute.count(now),
            errors: c.errors,
            last_error: c.last_error.clone(),
            in_flight: c.in_flight,
            late: c.late,
            cpu_ms: 0,
            rss_bytes: 0,
        }
    }

    /// [`Self::snapshot`] plus this process's CPU time and resident memory.
    pub fn snapshot_with_process(&self, now: Duration) -> AgentStats {
        let mut s = self.snapshot(now);
        let p = process_usage();
        s.cpu_ms = p.cpu_ms;
        s.rss_bytes = p.rss_bytes;
        s
    }
}

/// CPU time and resident memory of this process (zero where `/proc` does not exist).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessUsage {
    pub cpu_ms: u64,
    pub rss_bytes: u64,
}

pub fn process_usage() -> ProcessUsage {
    ProcessUsage {
        cpu_ms: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_ms_from_stat(&s))
            .unwrap_or(0),
        rss_bytes: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| rss_from_status(&s))
            .unwrap_or(0),
    }
}

/// `utime + stime` (fields 14 and 15 of `/proc/<pid>/stat`) in milliseconds. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after the last
/// `)`.
pub fn cpu_ms_from_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state): utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime).saturating_mul(1000) / USER_HZ)
}

/// `VmRSS` of `/proc/<pid>/status` in bytes.
pub fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    let unit = parts.next().unwrap_or("kB");
    Some(match unit {
        "kB" => n.saturating_mul(1024),
        "mB" | "MB" => n.saturating_mul(1024 * 1024),
        _ => n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn sliding_minute_forgets_what_is_older_than_a_minute() {
        let mut m = SlidingMinute::default();
        assert_eq!(m.count(s(0)), 0);
        m.record(s(0));
        m.record(s(0));
        m.record(s(30));
        assert_eq!(m.count(s(30)), 3);
        assert_eq!(m.count(s(59)), 3);
        assert_eq!(m.count(s(60)), 1, "the two at 0 s fell out");
        assert_eq!(m.count(s(89)), 1);
        assert_eq!(m.count(s(90)), 0);
        // A slot reused after a full turn starts from zero.
        m.record(s(120));
        assert_eq!(m.count(s(120)), 1);
        // Every second of a minute, then a long silence.
        let mut m = SlidingMinute::default();
        for t in 0..60 {
            m.record(s(1000 + t));
        }
        assert_eq!(m.count(s(1059)), 60);
        assert_eq!(m.count(s(1060)), 59);
        assert_eq!(m.count(s(5000)), 0);
        // Asking about the past counts nothing from the future.
        assert_eq!(m.count(s(10)), 0);
    }

    #[test]
    fn stats_count_results_errors_and_the_last_minute() {
        let st = Stats::default();
        st.begin();
        st.begin();
        st.record_result(PtaResult::Success, "bound", s(1));
        st.record_result(PtaResult::InvalidCredentials, "49", s(2));
        st.record_result(PtaResult::AgentError, &"x".repeat(2000), s(3));
        st.end();
        st.record_late(2);
        let snap = st.snapshot(s(10));
        assert_eq!(snap.validations, 3);
        assert_eq!(snap.by_result.get("success"), Some(&1));
        assert_eq!(snap.by_result.get("invalidCredentials"), Some(&1));
        assert_eq!(snap.by_result.get("agentError"), Some(&1));
        assert_eq!(snap.errors, 1);
        assert!(snap.last_error.as_ref().unwrap().len() <= MAX_RESULT_DETAIL_LEN);
        assert_eq!(snap.in_flight, 1);
        assert_eq!(snap.late, 2);
        assert_eq!(snap.last_minute, 3);
        assert_eq!(st.snapshot(s(62)).last_minute, 1);
        st.end();
        st.end();
        assert_eq!(st.in_flight(), 0);
    }

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (cutover agent) S 1 4242 4242 0 -1 4194560 1433 0 0 0 250 50 0 0 20 0 9 0 12345 123456789 2048 18446744073709551615";
        assert_eq!(cpu_ms_from_stat(stat), Some(3000));
        assert_eq!(cpu_ms_from_stat("garbage"), None);
        assert_eq!(cpu_ms_from_stat("1 (x) S 1 2"), None);
        let status = "Name:\tcutover\nVmPeak:\t  99 kB\nVmRSS:\t   2048 kB\nThreads:\t9\n";
        assert_eq!(rss_from_status(status), Some(2048 * 1024));
        assert_eq!(rss_from_status("Name: x\n"), None);
        assert_eq!(truncate("é".repeat(10), 5), "éé");
        // On Linux the real files parse.
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_usage().rss_bytes > 0);
        }
    }
}
