//! Cutover's LDAP directory connector: the thin adapter the sync server uses to read users
//! and groups from an on-premises directory (OpenLDAP, Active Directory, 389 DS, ...).
//!
//! It binds (simple bind, over `ldaps://`, StartTLS or plain `ldap://`), runs paged searches
//! (RFC 2696) of the configured user and group scopes, full or delta (`modifyTimestamp >=`
//! a watermark), and lists the anchors in scope to detect deletions. Entries come back as DN +
//! anchor + raw attribute values; mapping them to Cutover's model happens elsewhere.
//!
//! [`PasswordChecker`] is the pass-through side: it checks a user's password with a bind
//! against the directory (password policy control, Active Directory's reasons) and maps the
//! answer to a [`BindOutcome`].
//!
//! ```no_run
//! # async fn demo(cfg: cutover_ldap::LdapConfig) -> Result<(), cutover_ldap::LdapError> {
//! use std::ops::ControlFlow;
//! use cutover_ldap::{Directory, ObjectSet};
//!
//! let mut dir = Directory::connect(&cfg).await?;
//! let stats = dir
//!     .search(ObjectSet::Users, &["uid", "cn", "mail"], None, |entry| {
//!         println!("{} {}", entry.anchor, entry.dn);
//!         ControlFlow::Continue(())
//!     })
//!     .await?;
//! let watermark = stats.max_modify_timestamp; // for the next delta: `since`
//! let present = dir.anchors(ObjectSet::Users).await?; // anchors not in here were deleted
//! dir.unbind().await;
//! # let _ = (watermark, present); Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod config;
mod content_sync;
mod directory;
mod entry;
mod error;
#[cfg(test)]
mod fake_ldap;
mod filter;
mod paging;
mod password;
mod time;

pub use config::{
    DEFAULT_ANCHOR_ATTRIBUTE, DEFAULT_FILTER, DEFAULT_PAGE_SIZE, DEFAULT_TIMEOUT_SECS, LdapConfig,
    MAX_PAGE_SIZE, MAX_TIMEOUT_SECS, ObjectSet, ScopeKind, SearchScope, Secret,
};
pub use content_sync::{ContentSyncOutcome, SYNC_REQUEST_OID, SyncEvent, uuid_text};
pub use directory::{Directory, SearchStats};
pub use entry::{LdapEntry, SkippedEntry};
pub use error::{LdapError, ResultCode};
pub use filter::escape_filter_value;
pub use password::{
    BindOutcome, CONNECT_RETRY_BACKOFF, CheckReport, DEFAULT_CHECK_TIMEOUT_SECS, DEFAULT_POOL_SIZE,
    DN_CACHE_MAX_ENTRIES, DN_CACHE_TTL, DirectoryLockoutPolicy, MAX_CHECK_TIMEOUT_SECS,
    MAX_DIAGNOSTIC_CHARS, MAX_PASSWORD_BYTES, MAX_POLICY_ENTRIES, MAX_POOL_SIZE, MAX_UPN_BYTES,
    PERMANENT_LOCK_TIME, POOL_WAIT_TIMEOUTS, PPOLICY_OID, PasswordCheckConfig, PasswordChecker,
    PpolicyError, PpolicyResponse, PpolicyWarning, UPN_PLACEHOLDER, parse_ppolicy_response,
};
pub use time::{GeneralizedTime, InvalidGeneralizedTime};
