//! Prometheus metrics, in the text exposition format, without a metrics library: sign-in
//! attempts by result and route, and HTTP latency histograms by endpoint. Every label takes
//! values from a fixed set, so the series stay bounded whatever clients send.
//!
//! `/metrics` asks for an application token holding `Metrics.Read` (or the admin role):
//! Prometheus fetches one itself with its `oauth2` client-credentials scrape setting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use cutover_core::signin_log::SignInRecord;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The endpoint label of a request path: one of a fixed set, so cardinality stays bounded.
pub fn endpoint_label(path: &str) -> &'static str {
    const EXACT: &[&str] = &[
        "/.well-known/openid-configuration",
        "/oauth2/jwks",
        "/oauth2/authorize",
        "/oauth2/token",
        "/oauth2/userinfo",
        "/oauth2/logout",
        "/login",
        "/login/identifier",
        "/login/password",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    if let Some(e) = EXACT.iter().find(|e| **e == path) {
        return e;
    }
    if let Some(rest) = path.strip_prefix("/agent/v1/") {
        return match rest {
            "register" => "/agent/v1/register",
            "challenge" => "/agent/v1/challenge",
            "session" => "/agent/v1/session",
            "poll" => "/agent/v1/poll",
            "results" => "/agent/v1/results",
            "heartbeat" => "/agent/v1/heartbeat",
            "keys" => "/agent/v1/keys",
            "self" => "/agent/v1/self",
            _ => "other",
        };
    }
    match path
        .strip_prefix("/api/v1/")
        .and_then(|rest| rest.split('/').next())
    {
        Some("domains") => "/api/v1/domains",
        Some("users") => "/api/v1/users",
        Some("groups") => "/api/v1/groups",
        Some("applications") => "/api/v1/applications",
        Some("auditLogs") => "/api/v1/auditLogs",
        Some("signingKeys") => "/api/v1/signingKeys",
        Some("openapi.json") => "/api/v1/openapi.json",
        Some("agents") => "/api/v1/agents",
        Some("policies") => "/api/v1/policies",
        _ => "other",
    }
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "HEAD" => "HEAD",
        _ => "OTHER",
    }
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

type SignInKey = (&'static str, &'static str, bool);
type HttpKey = (&'static str, &'static str, u16);

/// This node's counters. Each node reports its own; Prometheus adds them up.
#[derive(Debug, Default)]
pub struct Metrics {
    sign_ins: Mutex<BTreeMap<SignInKey, u64>>,
    http: Mutex<BTreeMap<HttpKey, Histogram>>,
    lockouts: Mutex<BTreeMap<&'static str, u64>>,
    pass_through: Mutex<BTreeMap<&'static str, u64>>,
    break_glass_sign_ins: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub fn count_sign_in(&self, r: &SignInRecord) {
        let route = match r.route.as_deref() {
            Some("managed") => "managed",
            Some("federated") => "federated",
            _ => "none",
        };
        if let Ok(mut m) = self.sign_ins.lock() {
            *m.entry((r.result.as_str(), route, r.is_interactive))
                .or_default() += 1;
        }
    }

    /// A smart-lockout event: `locked` (an attempt refused), `lockedNow` (a lock started),
    /// `reportOnlyLocked` (report-only mode would have refused).
    pub fn count_lockout(&self, event: &'static str) {
        if let Ok(mut m) = self.lockouts.lock() {
            *m.entry(event).or_default() += 1;
        }
    }

    /// A pass-through validation's end on this node, by result code (or `noAgentAvailable`,
    /// `agentTimeout`).
    pub fn count_pass_through(&self, result: &'static str) {
        if let Ok(mut m) = self.pass_through.lock() {
            *m.entry(result).or_default() += 1;
        }
    }

    /// A completed sign-in of a break-glass account (each one is an alert).
    pub fn count_break_glass_sign_in(&self) {
        self.break_glass_sign_ins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn observe_request(&self, path: &str, method: &str, status: u16, elapsed: Duration) {
        let key = (endpoint_label(path), method_label(method), status);
        if let Ok(mut m) = self.http.lock() {
            m.entry(key).or_default().observe(elapsed.as_secs_f64());
        }
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP cutover_sign_ins_total Sign-in attempts recorded in the sign-in log, by result, route and whether a person was present.\n");
        out.push_str("# TYPE cutover_sign_ins_total counter\n");
        if let Ok(m) = self.sign_ins.lock() {
            for ((result, route, interactive), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "cutover_sign_ins_total{{result=\"{result}\",route=\"{route}\",interactive=\"{interactive}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP cutover_lockout_events_total Smart-lockout events on this node: attempts refused (locked), locks started (lockedNow), report-only refusals.\n");
        out.push_str("# TYPE cutover_lockout_events_total counter\n");
        if let Ok(m) = self.lockouts.lock() {
            for (event, n) in m.iter() {
                let _ = writeln!(out, "cutover_lockout_events_total{{event=\"{event}\"}} {n}");
            }
        }
        out.push_str("# HELP cutover_pass_through_validations_total Pass-through password validations finished on this node, by result.\n");
        out.push_str("# TYPE cutover_pass_through_validations_total counter\n");
        if let Ok(m) = self.pass_through.lock() {
            for (result, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "cutover_pass_through_validations_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP cutover_break_glass_sign_ins_total Completed sign-ins of break-glass accounts on this node (alert on any increase).\n");
        out.push_str("# TYPE cutover_break_glass_sign_ins_total counter\n");
        let _ = writeln!(
            out,
            "cutover_break_glass_sign_ins_total {}",
            self.break_glass_sign_ins
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        out.push_str("# HELP cutover_http_request_duration_seconds Time from request to response, by endpoint, method and status.\n");
        out.push_str("# TYPE cutover_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.http.lock() {
            for ((endpoint, method, status), h) in m.iter() {
                let labels =
                    format!("endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"");
                for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
                    let _ = writeln!(
                        out,
                        "cutover_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "cutover_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "cutover_http_request_duration_seconds_sum{{{labels}}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "cutover_http_request_duration_seconds_count{{{labels}}} {}",
                    h.count
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(endpoint_label("/oauth2/token"), "/oauth2/token");
        assert_eq!(
            endpoint_label("/api/v1/users/user1@contoso.example"),
            "/api/v1/users"
        );
        assert_eq!(
            endpoint_label("/api/v1/groups/1/members/2"),
            "/api/v1/groups"
        );
        assert_eq!(endpoint_label("/anything/else?x"), "other");
        assert_eq!(endpoint_label("/api/v1/../../etc"), "other");
        assert_eq!(method_label("BREW"), "OTHER");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("/oauth2/token", "POST", 200, Duration::from_millis(3));
        m.observe_request("/oauth2/token", "POST", 200, Duration::from_millis(30));
        m.observe_request("/oauth2/token", "POST", 200, Duration::from_secs(20));
        let text = m.render();
        let line = |le: &str| {
            let needle =
                format!("endpoint=\"/oauth2/token\",method=\"POST\",status=\"200\",le=\"{le}\"}} ");
            text.lines()
                .find(|l| l.contains(&needle))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(line("0.005").as_deref(), Some("1"));
        assert_eq!(line("0.05").as_deref(), Some("2"));
        assert_eq!(line("10").as_deref(), Some("2"));
        assert_eq!(line("+Inf").as_deref(), Some("3"));
        assert!(text.contains("cutover_http_request_duration_seconds_count{endpoint=\"/oauth2/token\",method=\"POST\",status=\"200\"} 3"));
    }
}
