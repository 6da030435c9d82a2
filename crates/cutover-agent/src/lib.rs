//! The pass-through authentication agent (SPEC §5.3): `cutover agent register | run | status |
//! rotate-keys`.
//!
//! The agent runs on a host near the on-premises directory. It makes outbound HTTPS calls only
//! (it never listens): it long-polls Cutover's `/agent/v1/poll` for sign-ins whose password
//! must be checked on-prem, opens each sealed password with its X25519 key
//! ([`cutover_agent_proto`]), checks it with an LDAP bind (`cutover_ldap::password`), and posts
//! the result. A heartbeat every 10 s reports its counters and whether it can reach the
//! directory; only healthy agents receive passwords.
//!
//! Driving an agent from a test:
//!
//! ```no_run
//! # async fn demo(state: &std::path::Path) -> anyhow::Result<()> {
//! let agent = cutover_agent::start(state).await?;   // registered earlier with `register`
//! // ... sign in through the server ...
//! let stats = agent.stats();                         // what the next heartbeat sends
//! assert!(stats.validations > 0);
//! agent.shutdown();                                  // drain: in-flight results are posted
//! agent.wait().await?;
//! # Ok(()) }
//! ```
//!
//! The state directory (default [`DEFAULT_STATE_DIR`]) holds `agent.toml`, `keys.json` (mode
//! 0600) and, when the server has a private CA, `server-ca.pem`; see [`state`].
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod backoff;
pub mod client;
pub mod ops;
pub mod runner;
pub mod state;
pub mod stats;
pub mod work;

pub use client::{CallError, LinkCondition, check_server_url};
pub use ops::{
    Check, CheckStatus, KeyInfo, RegisterOptions, Registration, Rotation, StatusReport,
    fingerprint, register, register_with, rotate_keys, status, status_with,
};
pub use runner::{AgentHandle, host_label, run, run_handle, start, start_with};
pub use state::{AgentConfig, DEFAULT_CONCURRENCY, DEFAULT_STATE_DIR, MAX_CONCURRENCY};
pub use stats::{ManualClock, MonoClock, SystemMonoClock};
pub use work::DirectoryCheck;
