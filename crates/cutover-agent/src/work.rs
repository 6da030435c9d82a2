//! One validation: the deadline check, the envelope, the bind, the result.

use std::future::Future;
use std::time::Duration;

use cutover_agent_proto::{ResultItem, WorkItem, envelope_aad};
use cutover_core::lockout::DirectoryLockout;
use cutover_core::pta::{MAX_REQUEST_DEADLINE_MS, MAX_RESULT_DETAIL_LEN, PtaResult};
use cutover_ldap::{BindOutcome, CheckReport, PasswordChecker};
use uuid::Uuid;

use crate::state::KeyRing;
use crate::stats::{MonoClock, truncate};

/// A check may run this much past the request's deadline before the agent gives up on it
/// (the answer would be late anyway; the slot is needed for the next request).
pub const CHECK_GRACE: Duration = Duration::from_secs(2);
/// Details the agent writes itself.
pub const DETAIL_DEADLINE_EXPIRED: &str = "deadlineExpired";
pub const DETAIL_ENVELOPE: &str = "envelopeDoesNotOpen";
pub const DETAIL_CHECK_TIMEOUT: &str =
    "directoryTimeout: the directory did not answer before the request's deadline";
pub const DETAIL_BAD_UPN: &str = "invalidUserPrincipalName";

/// The directory as the agent uses it: the real one is `cutover_ldap`'s [`PasswordChecker`];
/// tests put a fake in its place.
pub trait DirectoryCheck: Send + Sync + 'static {
    /// Check one password: the result code and a detail for the admin (never the password).
    fn check(
        &self,
        upn: &str,
        immutable_id: Option<&str>,
        password: &[u8],
    ) -> impl Future<Output = (PtaResult, String)> + Send;

    /// Reachability and the directory's own lockout policy.
    fn probe(&self) -> impl Future<Output = Result<DirectoryLockout, String>> + Send;
}

/// Each bind outcome is the result code of the same name.
pub fn pta_result(o: &BindOutcome) -> PtaResult {
    match o {
        BindOutcome::Success => PtaResult::Success,
        BindOutcome::InvalidCredentials => PtaResult::InvalidCredentials,
        BindOutcome::AccountLocked => PtaResult::AccountLocked,
        BindOutcome::PasswordExpired => PtaResult::PasswordExpired,
        BindOutcome::MustChangePassword => PtaResult::MustChangePassword,
        BindOutcome::AccountDisabled => PtaResult::AccountDisabled,
        BindOutcome::DirectoryUnavailable => PtaResult::DirectoryUnavailable,
        BindOutcome::AgentError => PtaResult::AgentError,
    }
}

fn report_detail(r: &CheckReport) -> String {
    match &r.dn {
        Some(dn) if !r.detail.contains(dn.as_str()) => format!("{} (dn: {dn})", r.detail),
        _ => r.detail.clone(),
    }
}

impl DirectoryCheck for PasswordChecker {
    async fn check(
        &self,
        upn: &str,
        immutable_id: Option<&str>,
        password: &[u8],
    ) -> (PtaResult, String) {
        let r = PasswordChecker::check(self, upn, immutable_id, password).await;
        (pta_result(&r.outcome), report_detail(&r))
    }

    async fn probe(&self) -> Result<DirectoryLockout, String> {
        PasswordChecker::probe(self)
            .await
            .map(|p| DirectoryLockout {
                threshold: p.max_failures,
                duration_secs: p.lockout_duration_secs,
            })
            .map_err(|e| e.to_string())
    }
}

/// Whether a request received at `received` with `remaining_ms` left has expired at `now`
/// (all on the agent's own monotonic clock).
pub fn deadline_passed(received: Duration, remaining_ms: i64, now: Duration) -> bool {
    time_left(received, remaining_ms, now).is_none()
}

/// Time left before the request's deadline, `None` when it has passed. The server's figure is
/// capped at [`MAX_REQUEST_DEADLINE_MS`].
pub fn time_left(received: Duration, remaining_ms: i64, now: Duration) -> Option<Duration> {
    let budget = Duration::from_millis(remaining_ms.clamp(0, MAX_REQUEST_DEADLINE_MS) as u64);
    let spent = now.saturating_sub(received);
    budget.checked_sub(spent).filter(|d| !d.is_zero())
}

fn valid_upn(upn: &str) -> bool {
    !upn.is_empty()
        && upn.len() <= cutover_core::limits::MAX_UPN_LEN
        && !upn.chars().any(char::is_control)
}

/// Validate one work item: skip it when its deadline passed, open the envelope, bind, and
/// answer with the result (the password is dropped right after the bind).
pub async fn validate<D: DirectoryCheck>(
    dir: &D,
    keys: &KeyRing,
    agent_id: Uuid,
    item: &WorkItem,
    received: Duration,
    clock: &dyn MonoClock,
) -> ResultItem {
    let answer = |result: PtaResult, detail: String| ResultItem {
        request_id: item.request_id,
        result,
        detail: Some(truncate(detail, MAX_RESULT_DETAIL_LEN)),
        elapsed_ms: clock.now().saturating_sub(received).as_millis() as u64,
    };
    let Some(left) = time_left(received, item.remaining_ms, clock.now()) else {
        return answer(PtaResult::AgentError, DETAIL_DEADLINE_EXPIRED.into());
    };
    if !valid_upn(&item.user_principal_name) {
        return answer(PtaResult::AgentError, DETAIL_BAD_UPN.into());
    }
    let aad = envelope_aad(item.request_id, agent_id, &item.user_principal_name);
    let opened = match keys.current().open_password(&item.password, &aad) {
        Ok(p) => Ok(p),
        // Keys rotated by `cutover agent rotate-keys` while this process ran.
        Err(e) => {
            if keys.reload_if_changed() {
                keys.current().open_password(&item.password, &aad)
            } else {
                Err(e)
            }
        }
    };
    let password = match opened {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(request_id = %item.request_id, error = %e, "a password envelope does not open");
            return answer(PtaResult::AgentError, DETAIL_ENVELOPE.into());
        }
    };
    let checked = tokio::time::timeout(
        left + CHECK_GRACE,
        dir.check(
            &item.user_principal_name,
            item.immutable_id.as_deref(),
            password.expose(),
        ),
    )
    .await;
    drop(password);
    match checked {
        Ok((result, detail)) => answer(result, detail),
        Err(_) => answer(PtaResult::DirectoryUnavailable, DETAIL_CHECK_TIMEOUT.into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::Mutex;

    use cutover_agent_proto::{AgentKeys, seal_password};

    use super::*;
    use crate::state::StateDir;
    use crate::stats::ManualClock;

    /// (upn, immutable id, password) of one check.
    pub(crate) type Call = (String, Option<String>, Vec<u8>);

    /// A directory that knows one password per user and records what it was asked.
    #[derive(Default)]
    pub(crate) struct FakeDirectory {
        pub calls: Mutex<Vec<Call>>,
        pub reachable: std::sync::atomic::AtomicBool,
    }

    impl DirectoryCheck for Arc<FakeDirectory> {
        fn check(
            &self,
            upn: &str,
            immutable_id: Option<&str>,
            password: &[u8],
        ) -> impl Future<Output = (PtaResult, String)> + Send {
            self.calls.lock().unwrap().push((
                upn.to_owned(),
                immutable_id.map(str::to_owned),
                password.to_vec(),
            ));
            let r = match password {
                b"right" => (PtaResult::Success, "bound".to_owned()),
                b"locked" => (PtaResult::AccountLocked, "locked".to_owned()),
                _ => (
                    PtaResult::InvalidCredentials,
                    "invalidCredentials (49)".into(),
                ),
            };
            std::future::ready(r)
        }

        fn probe(&self) -> impl Future<Output = Result<DirectoryLockout, String>> + Send {
            std::future::ready(
                if self.reachable.load(std::sync::atomic::Ordering::SeqCst) {
                    Ok(DirectoryLockout {
                        threshold: Some(10),
                        duration_secs: Some(600),
                    })
                } else {
                    Err("connection refused".to_owned())
                },
            )
        }
    }

    pub(crate) fn work_item(
        keys: &AgentKeys,
        agent: Uuid,
        password: &[u8],
        remaining_ms: i64,
    ) -> WorkItem {
        let request_id = Uuid::new_v4();
        let upn = "user1@corp.example";
        let sealed = seal_password(
            &keys.public().encryption_key,
            password,
            &envelope_aad(request_id, agent, upn),
        )
        .unwrap();
        WorkItem {
            request_id,
            correlation_id: Uuid::new_v4(),
            user_principal_name: upn.into(),
            immutable_id: Some("anchor-1".into()),
            remaining_ms,
            password: sealed,
        }
    }

    #[test]
    fn every_bind_outcome_maps_to_its_result() {
        let pairs = [
            (BindOutcome::Success, PtaResult::Success),
            (
                BindOutcome::InvalidCredentials,
                PtaResult::InvalidCredentials,
            ),
            (BindOutcome::AccountLocked, PtaResult::AccountLocked),
            (BindOutcome::PasswordExpired, PtaResult::PasswordExpired),
            (
                BindOutcome::MustChangePassword,
                PtaResult::MustChangePassword,
            ),
            (BindOutcome::AccountDisabled, PtaResult::AccountDisabled),
            (
                BindOutcome::DirectoryUnavailable,
                PtaResult::DirectoryUnavailable,
            ),
            (BindOutcome::AgentError, PtaResult::AgentError),
        ];
        for (o, r) in &pairs {
            assert_eq!(pta_result(o), *r);
        }
        // One-to-one: every result code is reached exactly once.
        let mut seen: Vec<PtaResult> = pairs.iter().map(|(o, _)| pta_result(o)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), PtaResult::ALL.len());
    }

    #[test]
    fn deadline_arithmetic() {
        let ms = Duration::from_millis;
        assert!(!deadline_passed(ms(1000), 5000, ms(1000)));
        assert!(!deadline_passed(ms(1000), 5000, ms(5999)));
        assert!(deadline_passed(ms(1000), 5000, ms(6000)));
        assert!(deadline_passed(ms(1000), 0, ms(1000)));
        assert!(deadline_passed(ms(1000), -5, ms(1000)));
        assert_eq!(time_left(ms(0), 5000, ms(4000)), Some(ms(1000)));
        // A clock that went "backwards" (cannot, but) spends nothing.
        assert_eq!(time_left(ms(10), 100, ms(0)), Some(ms(100)));
        // An absurd deadline is capped.
        assert_eq!(
            time_left(ms(0), i64::MAX, ms(0)),
            Some(ms(MAX_REQUEST_DEADLINE_MS as u64))
        );
    }

    #[tokio::test]
    async fn expired_requests_are_answered_without_a_bind() {
        let tmp = crate::state::tests::TempDir::new();
        let dir = StateDir::new(&tmp.0);
        let keys = AgentKeys::generate().unwrap();
        let agent = Uuid::from_u128(3);
        let item = work_item(&keys, agent, b"right", 5000);
        let ring = KeyRing::in_memory(&dir, AgentKeys::from_stored(&keys.to_stored()).unwrap());
        let fake = Arc::new(FakeDirectory::default());
        let clock = ManualClock::default();
        clock.advance(Duration::from_secs(100));
        let received = clock.now();

        // Within the deadline: bound, with the password and anchor.
        clock.advance(Duration::from_millis(4999));
        let r = validate(&fake, &ring, agent, &item, received, &clock).await;
        assert_eq!(r.result, PtaResult::Success);
        assert_eq!(r.elapsed_ms, 4999);
        assert_eq!(r.request_id, item.request_id);
        {
            let calls = fake.calls.lock().unwrap();
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].0, "user1@corp.example");
            assert_eq!(calls[0].1.as_deref(), Some("anchor-1"));
            assert_eq!(calls[0].2, b"right");
        }

        // Past it: agentError deadlineExpired, and no bind.
        clock.advance(Duration::from_millis(1));
        let r = validate(&fake, &ring, agent, &item, received, &clock).await;
        assert_eq!(r.result, PtaResult::AgentError);
        assert_eq!(r.detail.as_deref(), Some(DETAIL_DEADLINE_EXPIRED));
        assert_eq!(r.elapsed_ms, 5000);
        assert_eq!(fake.calls.lock().unwrap().len(), 1);

        // Nothing left from the start.
        let dead = work_item(&keys, agent, b"right", 0);
        let r = validate(&fake, &ring, agent, &dead, clock.now(), &clock).await;
        assert_eq!(r.detail.as_deref(), Some(DETAIL_DEADLINE_EXPIRED));
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn envelopes_for_someone_else_do_not_reach_the_directory() {
        let tmp = crate::state::tests::TempDir::new();
        let dir = StateDir::new(&tmp.0);
        let keys = AgentKeys::generate().unwrap();
        let agent = Uuid::from_u128(3);
        let ring = KeyRing::in_memory(&dir, AgentKeys::from_stored(&keys.to_stored()).unwrap());
        let fake = Arc::new(FakeDirectory::default());
        let clock = ManualClock::default();
        // Sealed for another agent id.
        let item = work_item(&keys, Uuid::from_u128(4), b"right", 5000);
        let r = validate(&fake, &ring, agent, &item, clock.now(), &clock).await;
        assert_eq!(r.result, PtaResult::AgentError);
        assert_eq!(r.detail.as_deref(), Some(DETAIL_ENVELOPE));
        // Another user name than the one sealed.
        let mut item = work_item(&keys, agent, b"right", 5000);
        item.user_principal_name = "user2@corp.example".into();
        let r = validate(&fake, &ring, agent, &item, clock.now(), &clock).await;
        assert_eq!(r.detail.as_deref(), Some(DETAIL_ENVELOPE));
        item.user_principal_name = String::new();
        let r = validate(&fake, &ring, agent, &item, clock.now(), &clock).await;
        assert_eq!(r.detail.as_deref(), Some(DETAIL_BAD_UPN));
        assert!(fake.calls.lock().unwrap().is_empty());
        // A wrong password is the directory's verdict.
        let item = work_item(&keys, agent, b"wrong", 5000);
        let r = validate(&fake, &ring, agent, &item, clock.now(), &clock).await;
        assert_eq!(r.result, PtaResult::InvalidCredentials);
        assert!(!format!("{r:?}").contains("wrong"));
    }
}
