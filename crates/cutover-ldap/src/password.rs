//! Pass-through password checking: does this password open this account in the on-premises
//! directory *right now*, and if not, why not?
//!
//! A pass-through agent gets a user principal name, optionally the user's immutable id (the
//! anchor the sync server exported) and a password. [`PasswordChecker::check`] finds the
//! user's entry with the service account (one filter search, cached for [`DN_CACHE_TTL`]),
//! then binds as that DN on a pooled bind connection with the password policy request
//! control (draft-behera-ldap-password-policy) and maps the answer:
//!
//! | directory answer                                        | [`BindOutcome`]          |
//! |---------------------------------------------------------|--------------------------|
//! | 0, no ppolicy error                                     | `Success`                |
//! | 0 + ppolicy `changeAfterReset`                          | `MustChangePassword`     |
//! | 49 + ppolicy `accountLocked`                            | `AccountLocked`          |
//! | … and `pwdAccountLockedTime` is `000001010000Z`         | `AccountDisabled`        |
//! | 49 + ppolicy `passwordExpired`                          | `PasswordExpired`        |
//! | 49, Active Directory `data 52e/525/530/531`             | `InvalidCredentials`     |
//! | 49, AD `data 532`                                       | `PasswordExpired`        |
//! | 49, AD `data 533/701`                                   | `AccountDisabled`        |
//! | 49, AD `data 773`                                       | `MustChangePassword`     |
//! | 49, AD `data 775`                                       | `AccountLocked`          |
//! | 49 otherwise                                            | `InvalidCredentials`     |
//! | refused, timeout, connection lost, 51 busy, 52 unavail. | `DirectoryUnavailable`   |
//! | anything else                                           | `AgentError`             |
//!
//! An empty password is refused without a bind (an empty simple bind is an anonymous bind,
//! RFC 4513 §5.1.2). [`CheckReport::detail`] explains the outcome for the administrator's log
//! (e.g. `ldap 49 invalidCredentials; ppolicy accountLocked`); it never holds the password
//! and is not meant for the end user (it tells whether an account exists).
//!
//! Connections: one service connection (ldap3 multiplexes, so concurrent checks share it for
//! their searches; it is replaced when it breaks) and up to `pool_size` bind connections, each
//! used by one check at a time. A bind connection is opened with [`Directory::connect`] (so it
//! first binds as the service account) and then rebinds as each user; after a timeout, a
//! broken connection or any answer other than 0 or 49 it is dropped, never reused.
//!
//! Known limits:
//! - The password is sent as text (ldap3's `simple_bind` takes `&str`): a password that is not
//!   valid UTF-8 is answered `AgentError` without a bind.
//! - The cache holds the anchor too: an entry deleted and re-created under the same UPN within
//!   [`DN_CACHE_TTL`] is still compared with the old anchor until a check fails (a failure
//!   searches again); a fresh lookup is only made on failures, as a rename needs.
//! - The directory's real ppolicy default (`olcPPolicyDefault`) is in cn=config; [`probe`]
//!   guesses it from the readable `pwdPolicy` entries.
//!
//! [`probe`]: PasswordChecker::probe

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ldap3::controls::RawControl;
use ldap3::{ResultEntry, Scope, SearchEntry, SearchOptions, SearchResult};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::config::{DEFAULT_ANCHOR_ATTRIBUTE, DEFAULT_PAGE_SIZE, LdapConfig, SearchScope};
use crate::directory::{Directory, transport_error};
use crate::entry::{anchor_value, merge_attributes};
use crate::error::{LdapError, ResultCode};
use crate::filter::{check_filter, escape_filter_value};
use crate::paging::element;

/// The password policy control (draft-behera-ldap-password-policy), request and response.
pub const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
/// `pwdAccountLockedTime` of an account an OpenLDAP administrator locked for good.
pub const PERMANENT_LOCK_TIME: &str = "000001010000Z";
/// The placeholder in `user_filter` replaced by the (escaped) user principal name.
pub const UPN_PLACEHOLDER: &str = "{upn}";

pub const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 5;
/// A sign-in waits for the check: longer than this is never useful.
pub const MAX_CHECK_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_POOL_SIZE: usize = 8;
pub const MAX_POOL_SIZE: usize = 64;
/// How long a UPN → (DN, anchor) lookup is reused.
pub const DN_CACHE_TTL: Duration = Duration::from_secs(60);
/// At most this many UPNs are cached (the oldest goes first when full).
pub const DN_CACHE_MAX_ENTRIES: usize = 10_000;
/// Longer user principal names are refused without a search (AD's rangeUpper is 1024).
pub const MAX_UPN_BYTES: usize = 1024;
/// Longer passwords are refused without a bind.
pub const MAX_PASSWORD_BYTES: usize = 4096;
/// After the service connection could not be opened, checks within this time get the same
/// answer at once instead of each waiting for its own connect.
pub const CONNECT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// A check waits at most this many `timeout_secs` for a free bind connection.
pub const POOL_WAIT_TIMEOUTS: u32 = 3;
/// At most this many characters of the server's diagnostic message go into a detail.
pub const MAX_DIAGNOSTIC_CHARS: usize = 256;
/// At most this many `pwdPolicy` entries are read by [`PasswordChecker::probe`].
pub const MAX_POLICY_ENTRIES: i32 = 100;
/// Integers in the ppolicy control longer than this are refused.
const MAX_BER_INTEGER_BYTES: usize = 8;
/// ldap3's own per-operation timeout fires first; this is the backstop around it.
const TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// Where and how to check passwords: the `[directory]` section of a pass-through agent's
/// configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PasswordCheckConfig {
    /// `ldap://host[:389]` or `ldaps://host[:636]`.
    pub url: String,
    /// The service account that searches for the user's DN.
    pub bind_dn: String,
    /// File holding the service account's password (trailing newlines ignored).
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Name of an environment variable holding the service account's password.
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file with the CA certificate(s) to trust; default: the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Limit for each operation (connect, TLS, bind, search), 1..=60 seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Where the users are (searched with subtree scope).
    pub base_dn: String,
    /// RFC 4515 filter with `{upn}`, e.g. `(&(objectClass=inetOrgPerson)(mail={upn}))`.
    pub user_filter: String,
    /// When set and the caller passes an immutable id, the entry's value of this attribute
    /// must equal it (`entryUUID`; `objectGUID` is compared as base64 of its 16 bytes).
    #[serde(default)]
    pub anchor_attribute: Option<String>,
    /// Bind connections kept open, 1..=64.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_timeout_secs() -> u64 {
    DEFAULT_CHECK_TIMEOUT_SECS
}
fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}

impl PasswordCheckConfig {
    /// A configuration with every default, the service password read from `bind_password_file`.
    pub fn new(
        url: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password_file: impl Into<PathBuf>,
        base_dn: impl Into<String>,
        user_filter: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            bind_dn: bind_dn.into(),
            bind_password_file: Some(bind_password_file.into()),
            bind_password_env: None,
            starttls: false,
            ca_file: None,
            timeout_secs: DEFAULT_CHECK_TIMEOUT_SECS,
            base_dn: base_dn.into(),
            user_filter: user_filter.into(),
            anchor_attribute: None,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    /// Check every setting (files are not opened); the error names the field.
    pub fn validate(&self) -> Result<(), LdapError> {
        self.to_ldap_config().map(|_| ())
    }

    /// The connection settings in the connector's own terms, validated.
    fn to_ldap_config(&self) -> Result<LdapConfig, LdapError> {
        let base = self.base_dn.trim();
        if base.is_empty() {
            return Err(LdapError::config(
                "base_dn",
                "is empty; give the DN to search for users under, e.g. ou=people,dc=example,dc=com",
            ));
        }
        if !base.contains('=') {
            return Err(LdapError::config(
                "base_dn",
                format!(
                    "{:?} is not a DN (expected attr=value[,...], e.g. ou=people,dc=example,dc=com)",
                    self.base_dn
                ),
            ));
        }
        check_user_filter(&self.user_filter).map_err(|p| LdapError::config("user_filter", p))?;
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            return Err(LdapError::config(
                "pool_size",
                format!("must be 1..={MAX_POOL_SIZE}, got {}", self.pool_size),
            ));
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_CHECK_TIMEOUT_SECS {
            return Err(LdapError::config(
                "timeout_secs",
                format!(
                    "must be 1..={MAX_CHECK_TIMEOUT_SECS}, got {} (a sign-in is waiting)",
                    self.timeout_secs
                ),
            ));
        }
        if let Some(a) = &self.anchor_attribute
            && a.trim().is_empty()
        {
            return Err(LdapError::config(
                "anchor_attribute",
                "is empty; leave it out, or name the attribute (e.g. entryUUID)",
            ));
        }
        let cfg = LdapConfig {
            url: self.url.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password_file: self.bind_password_file.clone(),
            bind_password_env: self.bind_password_env.clone(),
            starttls: self.starttls,
            ca_file: self.ca_file.clone(),
            timeout_secs: self.timeout_secs,
            page_size: DEFAULT_PAGE_SIZE,
            anchor_attribute: self
                .anchor_attribute
                .clone()
                .unwrap_or_else(|| DEFAULT_ANCHOR_ATTRIBUTE.to_owned()),
            users: SearchScope::new(base),
            groups: SearchScope::new(base),
        };
        // url, bind_dn, the password source, TLS settings and anchor_attribute, by the
        // connector's own rules (its field names are the same as ours).
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `user_filter` must hold `{upn}` and be one valid filter once it is replaced.
fn check_user_filter(template: &str) -> Result<(), String> {
    if !template.contains(UPN_PLACEHOLDER) {
        return Err(format!(
            "must contain {UPN_PLACEHOLDER} where the user principal name goes, e.g. (&(objectClass=inetOrgPerson)(mail={UPN_PLACEHOLDER})); got {template:?}"
        ));
    }
    // A value with every character that needs escaping: the template must stay one filter.
    check_filter(&user_filter(template, "a*b(c)d\\e\0f@example.com"))
}

/// The search filter for `upn`: the template with every `{upn}` replaced by the escaped value.
fn user_filter(template: &str, upn: &str) -> String {
    template
        .trim()
        .replace(UPN_PLACEHOLDER, &escape_filter_value(upn))
}

/// What a password check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    Success,
    InvalidCredentials,
    AccountLocked,
    PasswordExpired,
    MustChangePassword,
    AccountDisabled,
    DirectoryUnavailable,
    AgentError,
}

/// The outcome of one check, with the reason for the administrator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub outcome: BindOutcome,
    /// E.g. `ldap 49 invalidCredentials; ppolicy accountLocked`, `noSuchUser`. Never the
    /// password; may name the account, so it is for the administrator, not the end user.
    pub detail: String,
    /// The DN the check bound as (or found), when it got that far.
    pub dn: Option<String>,
}

/// The directory's own account lockout, as far as the service account can read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectoryLockoutPolicy {
    /// Failed binds before the account locks; `Some(0)`: the directory does not lock.
    pub max_failures: Option<u32>,
    /// How long a lock lasts; `Some(0)`: until an administrator unlocks it.
    pub lockout_duration_secs: Option<i64>,
}

/// `warning` of the ppolicy response control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpolicyWarning {
    TimeBeforeExpiration(i64),
    GraceAuthNsRemaining(i64),
}

/// `error` of the ppolicy response control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpolicyError {
    PasswordExpired,
    AccountLocked,
    ChangeAfterReset,
    PasswordModNotAllowed,
    MustSupplyOldPassword,
    InsufficientPasswordQuality,
    PasswordTooShort,
    PasswordTooYoung,
    PasswordInHistory,
    /// A value this draft does not define.
    Other(i64),
}

impl PpolicyError {
    fn from_code(code: i64) -> Self {
        match code {
            0 => Self::PasswordExpired,
            1 => Self::AccountLocked,
            2 => Self::ChangeAfterReset,
            3 => Self::PasswordModNotAllowed,
            4 => Self::MustSupplyOldPassword,
            5 => Self::InsufficientPasswordQuality,
            6 => Self::PasswordTooShort,
            7 => Self::PasswordTooYoung,
            8 => Self::PasswordInHistory,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for PpolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PasswordExpired => "passwordExpired",
            Self::AccountLocked => "accountLocked",
            Self::ChangeAfterReset => "changeAfterReset",
            Self::PasswordModNotAllowed => "passwordModNotAllowed",
            Self::MustSupplyOldPassword => "mustSupplyOldPassword",
            Self::InsufficientPasswordQuality => "insufficientPasswordQuality",
            Self::PasswordTooShort => "passwordTooShort",
            Self::PasswordTooYoung => "passwordTooYoung",
            Self::PasswordInHistory => "passwordInHistory",
            Self::Other(n) => return write!(f, "error {n}"),
        })
    }
}

/// The ppolicy response control's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PpolicyResponse {
    pub warning: Option<PpolicyWarning>,
    pub error: Option<PpolicyError>,
}

const BER_SEQUENCE: u8 = 0x30;
const TAG_WARNING: u8 = 0xa0; // [0] constructed (a CHOICE is always explicitly tagged)
const TAG_TIME_BEFORE_EXPIRATION: u8 = 0x80; // [0] primitive
const TAG_GRACE_AUTHNS_REMAINING: u8 = 0x81; // [1] primitive
const TAG_ERROR: u8 = 0x81; // [1] primitive (implicit ENUMERATED)

/// Read the ppolicy response control's value:
///
/// ```text
/// PasswordPolicyResponseValue ::= SEQUENCE {
///     warning [0] CHOICE { timeBeforeExpiration [0] INTEGER, graceAuthNsRemaining [1] INTEGER } OPTIONAL,
///     error   [1] ENUMERATED { passwordExpired (0), accountLocked (1), changeAfterReset (2), ... } OPTIONAL }
/// ```
///
/// Total: every input gives a value or an error, never a panic.
pub fn parse_ppolicy_response(value: &[u8]) -> Result<PpolicyResponse, String> {
    let (mut rest, trailing) = element(value, BER_SEQUENCE)?;
    if !trailing.is_empty() {
        return Err(format!("{} bytes after the SEQUENCE", trailing.len()));
    }
    let mut out = PpolicyResponse::default();
    if rest.first() == Some(&TAG_WARNING) {
        let (warning, after) = element(rest, TAG_WARNING)?;
        let tag = *warning.first().ok_or("warning is empty")?;
        let (int, extra) = element(warning, tag)?;
        if !extra.is_empty() {
            return Err("warning holds more than one element".to_owned());
        }
        let n = ber_integer(int)?;
        out.warning = Some(match tag {
            TAG_TIME_BEFORE_EXPIRATION => PpolicyWarning::TimeBeforeExpiration(n),
            TAG_GRACE_AUTHNS_REMAINING => PpolicyWarning::GraceAuthNsRemaining(n),
            other => return Err(format!("unknown warning tag {other:#04x}")),
        });
        rest = after;
    }
    if rest.first() == Some(&TAG_ERROR) {
        let (int, after) = element(rest, TAG_ERROR)?;
        out.error = Some(PpolicyError::from_code(ber_integer(int)?));
        rest = after;
    }
    if let Some(tag) = rest.first() {
        return Err(format!("unexpected element with tag {tag:#04x}"));
    }
    Ok(out)
}

/// A BER INTEGER/ENUMERATED's contents: two's complement, big-endian, 1..=8 bytes.
fn ber_integer(bytes: &[u8]) -> Result<i64, String> {
    let (&first, _) = bytes.split_first().ok_or("empty integer")?;
    if bytes.len() > MAX_BER_INTEGER_BYTES {
        return Err(format!(
            "integer of {} bytes (at most {MAX_BER_INTEGER_BYTES})",
            bytes.len()
        ));
    }
    let mut n: i64 = if first & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        n = (n << 8) | i64::from(*b);
    }
    Ok(n)
}

/// Active Directory's reason for a 49, from the diagnostic message's `data XXX`
/// (e.g. `80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 775, v3839`).
fn ad_data_code(diagnostic: &str) -> Option<u32> {
    let at = diagnostic.find("data ")?;
    let hex: String = diagnostic[at + "data ".len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    if hex.is_empty() || hex.len() > 8 {
        return None;
    }
    u32::from_str_radix(&hex, 16).ok()
}

/// What an AD `data` code means: outcome and name.
fn ad_data_outcome(code: u32) -> (BindOutcome, &'static str) {
    match code {
        0x52e => (BindOutcome::InvalidCredentials, "invalidCredentials"),
        0x525 => (BindOutcome::InvalidCredentials, "noSuchUser"),
        0x530 => (BindOutcome::InvalidCredentials, "notPermittedAtThisTime"),
        0x531 => (
            BindOutcome::InvalidCredentials,
            "notPermittedAtThisWorkstation",
        ),
        0x532 => (BindOutcome::PasswordExpired, "passwordExpired"),
        0x533 => (BindOutcome::AccountDisabled, "accountDisabled"),
        0x701 => (BindOutcome::AccountDisabled, "accountExpired"),
        0x773 => (BindOutcome::MustChangePassword, "mustResetPassword"),
        0x775 => (BindOutcome::AccountLocked, "accountLocked"),
        _ => (BindOutcome::InvalidCredentials, "unrecognised"),
    }
}

/// How a bind answer maps, before the lock check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mapped {
    Final(BindOutcome, String),
    /// Locked: `pwdAccountLockedTime` decides between locked and disabled.
    Locked(String),
}

/// Map a bind's result code, diagnostic message and ppolicy response control (`None`: the
/// directory sent none) to an outcome.
fn map_bind_result(
    rc: u32,
    diagnostic: &str,
    ppolicy: Option<Result<PpolicyResponse, String>>,
) -> Mapped {
    use BindOutcome as O;
    let code = ResultCode(rc);
    let mut detail = format!("ldap {rc} {}", code.name());
    let mut error = None;
    let mut unreadable = false;
    match &ppolicy {
        None => {}
        Some(Ok(p)) => {
            if let Some(e) = p.error {
                detail.push_str(&format!("; ppolicy {e}"));
                error = Some(e);
            }
            match p.warning {
                Some(PpolicyWarning::TimeBeforeExpiration(s)) => {
                    detail.push_str(&format!("; ppolicy timeBeforeExpiration {s}"));
                }
                Some(PpolicyWarning::GraceAuthNsRemaining(n)) => {
                    detail.push_str(&format!("; ppolicy graceAuthNsRemaining {n}"));
                }
                None => {}
            }
        }
        Some(Err(why)) => {
            unreadable = true;
            detail.push_str(&format!("; ppolicy control unreadable: {why}"));
        }
    }
    let ad = if rc == 49 && error.is_none() {
        ad_data_code(diagnostic)
    } else {
        None
    };
    if let Some(data) = ad {
        let (_, name) = ad_data_outcome(data);
        detail.push_str(&format!("; ad data {data:x} {name}"));
    }
    let diagnostic = diagnostic.trim();
    if !diagnostic.is_empty() {
        let shown: String = diagnostic.chars().take(MAX_DIAGNOSTIC_CHARS).collect();
        let cut = if shown.len() < diagnostic.len() {
            "…"
        } else {
            ""
        };
        detail.push_str(&format!("; server says {shown:?}{cut}"));
    }
    match (rc, error) {
        (0, None) if unreadable => Mapped::Final(O::AgentError, detail),
        (0, None) => Mapped::Final(O::Success, detail),
        (0 | 49, Some(PpolicyError::ChangeAfterReset)) => {
            Mapped::Final(O::MustChangePassword, detail)
        }
        (0 | 49, Some(PpolicyError::PasswordExpired)) => Mapped::Final(O::PasswordExpired, detail),
        (0 | 49, Some(PpolicyError::AccountLocked)) => Mapped::Locked(detail),
        (0, Some(_)) => Mapped::Final(O::AgentError, detail),
        (49, Some(_)) => Mapped::Final(O::InvalidCredentials, detail),
        (49, None) => match ad {
            Some(data) => Mapped::Final(ad_data_outcome(data).0, detail),
            None => Mapped::Final(O::InvalidCredentials, detail),
        },
        (51 | 52, _) => Mapped::Final(O::DirectoryUnavailable, detail),
        _ => Mapped::Final(O::AgentError, detail),
    }
}

/// A check that ended before (or instead of) a usable bind answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    outcome: BindOutcome,
    detail: String,
}

impl Failure {
    fn new(outcome: BindOutcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
        }
    }

    /// Sort a connector error: the directory is not there, or something is wrong here.
    fn from_error(context: &str, e: &LdapError) -> Self {
        let outcome = match e {
            LdapError::Connect { .. }
            | LdapError::Timeout { .. }
            | LdapError::Connection { .. } => BindOutcome::DirectoryUnavailable,
            LdapError::Bind { code, .. }
                if *code == ResultCode::BUSY || *code == ResultCode::UNAVAILABLE =>
            {
                BindOutcome::DirectoryUnavailable
            }
            _ => BindOutcome::AgentError,
        };
        Self::new(outcome, format!("{context}: {e}"))
    }

    fn report(self, dn: Option<String>) -> CheckReport {
        CheckReport {
            outcome: self.outcome,
            detail: self.detail,
            dn,
        }
    }
}

enum ServiceError {
    /// The service connection could not be opened (also remembered for the backoff).
    Connect(LdapError, Failure),
    /// This attempt failed.
    Fresh(LdapError),
    /// A connect failed within [`CONNECT_RETRY_BACKOFF`]; not tried again yet.
    Recent(Failure),
}

impl ServiceError {
    fn failure(self, context: &str) -> Failure {
        match self {
            Self::Fresh(e) => Failure::from_error(context, &e),
            Self::Connect(_, f) | Self::Recent(f) => f,
        }
    }
}

/// The user's entry as found by the search.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    dn: String,
    anchor: Option<String>,
}

/// UPN → entry, for [`DN_CACHE_TTL`], at most `max` entries.
struct DnCache {
    map: HashMap<String, (Found, Instant)>,
    ttl: Duration,
    max: usize,
}

impl DnCache {
    fn new(ttl: Duration, max: usize) -> Self {
        Self {
            map: HashMap::new(),
            ttl,
            max,
        }
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.ttl
    }

    fn get(&mut self, upn: &str, now: Instant) -> Option<Found> {
        let (found, at) = self.map.get(upn)?;
        if self.fresh(*at, now) {
            return Some(found.clone());
        }
        self.map.remove(upn);
        None
    }

    fn insert(&mut self, upn: &str, found: Found, now: Instant) {
        if self.max == 0 {
            return;
        }
        if !self.map.contains_key(upn) && self.map.len() >= self.max {
            let ttl = self.ttl;
            self.map
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            while self.map.len() >= self.max {
                let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.map.remove(&oldest);
            }
        }
        self.map.insert(upn.to_owned(), (found, now));
    }

    fn remove(&mut self, upn: &str) {
        self.map.remove(upn);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

struct ServiceState {
    conn: Option<Arc<Directory>>,
    failed: Option<(Instant, Failure)>,
}

/// Has a failed connect at `at` been remembered long enough to try again at `now`?
fn backoff_over(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) >= CONNECT_RETRY_BACKOFF
}

/// How long a check waits for a free bind connection.
fn pool_wait(timeout: Duration) -> Duration {
    timeout.saturating_mul(POOL_WAIT_TIMEOUTS)
}

struct Inner {
    cfg: PasswordCheckConfig,
    ldap_cfg: LdapConfig,
    limit: Duration,
    service: tokio::sync::Mutex<ServiceState>,
    permits: Semaphore,
    idle: Mutex<Vec<Directory>>,
    cache: Mutex<DnCache>,
}

/// Checks passwords against the directory. Cheap to clone; all clones share the
/// connections and the cache, and any number of tasks may call [`check`](Self::check) at once.
#[derive(Clone)]
pub struct PasswordChecker {
    inner: Arc<Inner>,
}

impl fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordChecker")
            .field("url", &self.inner.cfg.url)
            .field("bind_dn", &self.inner.cfg.bind_dn)
            .field("base_dn", &self.inner.cfg.base_dn)
            .field("pool_size", &self.inner.cfg.pool_size)
            .finish_non_exhaustive()
    }
}

/// Refusals that need neither the directory nor the password's content.
fn precheck(upn: &str, password: &[u8]) -> Option<Failure> {
    use BindOutcome::InvalidCredentials as Invalid;
    if password.is_empty() {
        // An empty simple bind is an anonymous bind: never send it.
        return Some(Failure::new(Invalid, "emptyPassword"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(Failure::new(
            Invalid,
            format!("passwordTooLong (more than {MAX_PASSWORD_BYTES} bytes; not sent)"),
        ));
    }
    if upn.trim().is_empty() {
        return Some(Failure::new(Invalid, "emptyUpn"));
    }
    if upn.len() > MAX_UPN_BYTES {
        return Some(Failure::new(
            Invalid,
            format!("upnTooLong (more than {MAX_UPN_BYTES} bytes; not searched)"),
        ));
    }
    None
}

/// Does the entry's anchor equal the caller's immutable id? `objectGUID` (base64) exactly,
/// textual anchors such as `entryUUID` ignoring ASCII case.
fn anchor_matches(attribute: &str, anchor: Option<&str>, immutable_id: &str) -> bool {
    let Some(anchor) = anchor else {
        return false;
    };
    let id = immutable_id.trim();
    if attribute.eq_ignore_ascii_case("objectGUID") {
        anchor == id
    } else {
        anchor.eq_ignore_ascii_case(id)
    }
}

/// A future that turns a panic while it is polled into `None`. ldap3 reads an operation's
/// result (`LdapResult`: result code, diagnostic message as UTF-8, ...) in the task that awaits
/// it, with `expect`s; a broken or hostile directory must give an outcome, not a panic.
struct Fenced<'a, T>(Pin<Box<dyn Future<Output = T> + Send + 'a>>);

impl<'a, T> Fenced<'a, T> {
    fn new(f: impl Future<Output = T> + Send + 'a) -> Self {
        Self(Box::pin(f))
    }
}

impl<T> Future for Fenced<'_, T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // After a panic the inner future is never polled again: this returns Ready.
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

/// ldap3's entry parser panics on a malformed entry; a broken directory must give an error.
fn construct_entry(entry: ResultEntry) -> Option<SearchEntry> {
    std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(entry))).ok()
}

/// The first value of `name` (any case) as text.
fn first_text(entry: &SearchEntry, name: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
}

fn all_text(entry: &SearchEntry, name: &str) -> Vec<String> {
    entry
        .attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().cloned())
        .collect()
}

/// The DN without its first RDN (`ou=people,dc=x` → `dc=x`); `None` for a one-RDN DN.
fn parent_dn(dn: &str) -> Option<&str> {
    let mut escaped = false;
    let mut quoted = false;
    for (i, c) in dn.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' | ';' if !quoted => {
                let rest = dn[i + 1..].trim();
                return (!rest.is_empty()).then_some(rest);
            }
            _ => {}
        }
    }
    None
}

/// A DN for comparison: ASCII lower case, no spaces around `,` and `=`.
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase()
}

/// Is `suffix` the DN `dn` or one of its ancestors?
fn dn_within(dn: &str, suffix: &str) -> bool {
    let (dn, suffix) = (normalize_dn(dn), normalize_dn(suffix));
    !suffix.is_empty() && (dn == suffix || dn.ends_with(&format!(",{suffix}")))
}

/// The lockout settings of one ppolicy `pwdPolicy` entry.
fn ppolicy_lockout(entry: &SearchEntry) -> DirectoryLockoutPolicy {
    let lockout =
        first_text(entry, "pwdLockout").is_some_and(|v| v.trim().eq_ignore_ascii_case("TRUE"));
    let max_failures = if lockout {
        match first_text(entry, "pwdMaxFailure") {
            // The overlay's default for pwdMaxFailure is 0: failures do not lock.
            None => Some(0),
            Some(v) => v.trim().parse::<u32>().ok(),
        }
    } else {
        Some(0)
    };
    DirectoryLockoutPolicy {
        max_failures,
        lockout_duration_secs: first_text(entry, "pwdLockoutDuration")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|d| *d >= 0),
    }
}

/// Which of several `pwdPolicy` entries is the default: the one named `cn=default`, else the
/// only one, else the one that locks after the fewest failures (the overlay's real default,
/// `olcPPolicyDefault`, is in cn=config, which the service account cannot read).
fn choose_policy(entries: &[SearchEntry]) -> DirectoryLockoutPolicy {
    if let Some(e) = entries.iter().find(|e| {
        normalize_dn(&e.dn)
            .split(',')
            .next()
            .is_some_and(|rdn| rdn == "cn=default")
    }) {
        return ppolicy_lockout(e);
    }
    let all: Vec<DirectoryLockoutPolicy> = entries.iter().map(ppolicy_lockout).collect();
    match all.as_slice() {
        [] => DirectoryLockoutPolicy::default(),
        [one] => *one,
        many => many
            .iter()
            .filter(|p| p.max_failures.is_some_and(|n| n > 0))
            .min_by_key(|p| p.max_failures)
            .or_else(|| many.first())
            .copied()
            .unwrap_or_default(),
    }
}

/// AD's `lockoutDuration`: a negative count of 100-ns intervals; `i64::MIN` (and 0): until
/// an administrator unlocks.
fn ad_duration_secs(raw: &str) -> Option<i64> {
    let v = raw.trim().parse::<i64>().ok()?;
    match v {
        i64::MIN | 0 => Some(0),
        v if v < 0 => Some(v.checked_neg()? / 10_000_000),
        _ => None,
    }
}

fn ad_lockout(entry: &SearchEntry) -> DirectoryLockoutPolicy {
    DirectoryLockoutPolicy {
        max_failures: first_text(entry, "lockoutThreshold").and_then(|v| v.trim().parse().ok()),
        lockout_duration_secs: first_text(entry, "lockoutDuration")
            .and_then(|v| ad_duration_secs(&v)),
    }
}

fn ppolicy_request() -> RawControl {
    RawControl {
        ctype: PPOLICY_OID.to_owned(),
        crit: false,
        val: None,
    }
}

impl PasswordChecker {
    /// Validate the configuration. Nothing is opened until the first check or probe.
    pub fn new(cfg: PasswordCheckConfig) -> Result<Self, LdapError> {
        let ldap_cfg = cfg.to_ldap_config()?;
        let limit = Duration::from_secs(cfg.timeout_secs);
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Semaphore::new(cfg.pool_size),
                idle: Mutex::new(Vec::with_capacity(cfg.pool_size)),
                cache: Mutex::new(DnCache::new(DN_CACHE_TTL, DN_CACHE_MAX_ENTRIES)),
                service: tokio::sync::Mutex::new(ServiceState {
                    conn: None,
                    failed: None,
                }),
                limit,
                ldap_cfg,
                cfg,
            }),
        })
    }

    /// The configuration this checker was made with.
    pub fn config(&self) -> &PasswordCheckConfig {
        &self.inner.cfg
    }

    /// Check `password` for the user `upn` (and, with `anchor_attribute` configured, that the
    /// entry is the one with `immutable_id`). Never fails: every problem is an outcome.
    pub async fn check(
        &self,
        upn: &str,
        immutable_id: Option<&str>,
        password: &[u8],
    ) -> CheckReport {
        if let Some(refused) = precheck(upn, password) {
            return refused.report(None);
        }
        let Ok(password) = std::str::from_utf8(password) else {
            // ldap3 sends simple-bind passwords as text only.
            return Failure::new(
                BindOutcome::AgentError,
                "the password is not valid UTF-8; this agent's LDAP client cannot send it (not checked)",
            )
            .report(None);
        };
        let cached = self.cache().get(upn, Instant::now());
        let from_cache = cached.is_some();
        let found = match cached {
            Some(found) => found,
            None => match self.lookup(upn).await {
                Ok(found) => {
                    self.cache().insert(upn, found.clone(), Instant::now());
                    found
                }
                Err(f) => return f.report(None),
            },
        };
        let report = self.check_entry(&found, immutable_id, password).await;
        if !from_cache
            || matches!(
                report.outcome,
                BindOutcome::Success
                    | BindOutcome::MustChangePassword
                    | BindOutcome::DirectoryUnavailable
            )
        {
            return report;
        }
        // The DN came from the cache and did not work: the user may have been renamed or
        // replaced. Search once more; bind again only if the search finds another entry.
        self.cache().remove(upn);
        match self.lookup(upn).await {
            Ok(fresh) => {
                self.cache().insert(upn, fresh.clone(), Instant::now());
                if fresh == found {
                    report
                } else {
                    tracing::debug!(old = %found.dn, new = %fresh.dn, "cached entry changed; checking the new one");
                    self.check_entry(&fresh, immutable_id, password).await
                }
            }
            Err(f)
                if matches!(
                    f.outcome,
                    BindOutcome::DirectoryUnavailable | BindOutcome::AgentError
                ) =>
            {
                CheckReport {
                    detail: format!(
                        "{}; repeating the search failed: {}",
                        report.detail, f.detail
                    ),
                    ..report
                }
            }
            Err(f) => f.report(None),
        }
    }

    /// Connect and bind as the service account (if not connected yet) and read the
    /// directory's lockout policy: OpenLDAP ppolicy `pwdPolicy` entries under the base DN's
    /// parent (or the base DN), else Active Directory's `lockoutThreshold`/`lockoutDuration`
    /// on the naming context root above the base DN. What cannot be read is `None`.
    pub async fn probe(&self) -> Result<DirectoryLockoutPolicy, LdapError> {
        let as_error = |e: ServiceError| match e {
            ServiceError::Fresh(e) | ServiceError::Connect(e, _) => e,
            ServiceError::Recent(f) => LdapError::Connection {
                url: self.inner.cfg.url.clone(),
                operation: "connecting".to_owned(),
                detail: f.detail,
            },
        };
        self.service(false).await.map_err(as_error)?;
        let base = self.inner.cfg.base_dn.trim().to_owned();
        let mut bases = Vec::new();
        if let Some(parent) = parent_dn(&base) {
            bases.push(parent.to_owned());
        }
        bases.push(base.clone());
        for b in &bases {
            let (entries, res) = self
                .search(
                    false,
                    b,
                    Scope::Subtree,
                    "(objectClass=pwdPolicy)",
                    &["cn", "pwdLockout", "pwdMaxFailure", "pwdLockoutDuration"],
                    MAX_POLICY_ENTRIES,
                )
                .await
                .map_err(as_error)?;
            match res.rc {
                0 | 4 if !entries.is_empty() => return Ok(choose_policy(&entries)),
                0 | 4 => break,
                rc => {
                    tracing::debug!(base = %b, rc, "cannot search for pwdPolicy entries here");
                }
            }
        }
        // Active Directory: the domain root entry above the base DN.
        let (root, _) = self
            .search(
                false,
                "",
                Scope::Base,
                "(objectClass=*)",
                &["namingContexts", "defaultNamingContext"],
                1,
            )
            .await
            .map_err(as_error)?;
        let mut contexts: Vec<String> = root
            .iter()
            .flat_map(|e| {
                let mut v = all_text(e, "namingContexts");
                v.extend(all_text(e, "defaultNamingContext"));
                v
            })
            .filter(|nc| dn_within(&base, nc))
            .collect();
        contexts.sort_by_key(|nc| std::cmp::Reverse(nc.len()));
        let Some(domain) = contexts.first() else {
            return Ok(DirectoryLockoutPolicy::default());
        };
        let (entries, res) = self
            .search(
                false,
                domain,
                Scope::Base,
                "(objectClass=*)",
                &["lockoutThreshold", "lockoutDuration"],
                1,
            )
            .await
            .map_err(as_error)?;
        if res.rc != 0 {
            return Ok(DirectoryLockoutPolicy::default());
        }
        Ok(entries.first().map(ad_lockout).unwrap_or_default())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DnCache> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The service connection: the open one, or a new one.
    async fn service(&self, backoff: bool) -> Result<Arc<Directory>, ServiceError> {
        let mut state = self.inner.service.lock().await;
        if let Some(dir) = &state.conn {
            if !dir.ldap.clone().is_closed() {
                return Ok(Arc::clone(dir));
            }
            state.conn = None;
        }
        if backoff
            && let Some((at, f)) = &state.failed
            && !backoff_over(*at, Instant::now())
        {
            return Err(ServiceError::Recent(f.clone()));
        }
        match Directory::connect(&self.inner.ldap_cfg).await {
            Ok(dir) => {
                let dir = Arc::new(dir);
                state.conn = Some(Arc::clone(&dir));
                state.failed = None;
                Ok(dir)
            }
            Err(e) => {
                let failure = Failure::from_error("connecting with the service account", &e);
                state.failed = Some((Instant::now(), failure.clone()));
                Err(ServiceError::Connect(e, failure))
            }
        }
    }

    /// Forget the service connection `dir` (if it is still the current one).
    async fn drop_service(&self, dir: &Arc<Directory>) {
        let mut state = self.inner.service.lock().await;
        if state.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, dir)) {
            state.conn = None;
        }
    }

    /// One search on the service connection; a broken connection is replaced and the search
    /// repeated once.
    async fn search(
        &self,
        backoff: bool,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        sizelimit: i32,
    ) -> Result<(Vec<SearchEntry>, ldap3::LdapResult), ServiceError> {
        let limit = self.inner.limit;
        let secs = self.inner.cfg.timeout_secs;
        let operation = format!("search under {base:?} for {filter}");
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
        let mut retried = false;
        loop {
            let dir = self.service(backoff).await?;
            let mut ldap = dir.ldap.clone();
            let search = ldap
                .with_search_options(SearchOptions::new().sizelimit(sizelimit))
                .with_timeout(limit)
                .search(base, scope, filter, attrs.clone());
            match timeout(limit + TIMEOUT_SLACK, Fenced::new(search)).await {
                Ok(None) => {
                    self.drop_service(&dir).await;
                    return Err(ServiceError::Fresh(LdapError::Connection {
                        url: dir.url.clone(),
                        operation,
                        detail: "the directory sent an answer this client cannot read".to_owned(),
                    }));
                }
                Ok(Some(Ok(SearchResult(raw, res)))) => {
                    let mut entries = Vec::with_capacity(raw.len());
                    for r in raw {
                        if r.is_ref() || r.is_intermediate() {
                            continue;
                        }
                        let Some(e) = construct_entry(r) else {
                            return Err(ServiceError::Fresh(LdapError::Connection {
                                url: dir.url.clone(),
                                operation,
                                detail: "the directory sent an entry this client cannot read"
                                    .to_owned(),
                            }));
                        };
                        entries.push(e);
                    }
                    return Ok((entries, res));
                }
                Ok(Some(Err(ldap3::LdapError::FilterParsing))) => {
                    return Err(ServiceError::Fresh(LdapError::config(
                        "user_filter",
                        format!("is not a valid LDAP filter (RFC 4515) for this value: {filter:?}"),
                    )));
                }
                Ok(Some(Err(ldap3::LdapError::Timeout { .. }))) | Err(_) => {
                    // A silent connection may be dead: the next search gets a new one.
                    self.drop_service(&dir).await;
                    return Err(ServiceError::Fresh(LdapError::Timeout { operation, secs }));
                }
                Ok(Some(Err(e))) => {
                    self.drop_service(&dir).await;
                    if retried {
                        return Err(ServiceError::Fresh(transport_error(
                            &dir.url, &operation, e,
                        )));
                    }
                    retried = true;
                }
            }
        }
    }

    /// Find the one entry for `upn`.
    async fn lookup(&self, upn: &str) -> Result<Found, Failure> {
        let cfg = &self.inner.cfg;
        let filter = user_filter(&cfg.user_filter, upn);
        let anchor_attr = cfg.anchor_attribute.as_deref().map(str::trim);
        let attrs = [anchor_attr.unwrap_or("1.1")];
        let (entries, res) = self
            .search(true, cfg.base_dn.trim(), Scope::Subtree, &filter, &attrs, 2)
            .await
            .map_err(|e| e.failure("searching for the user"))?;
        match res.rc {
            0 | 4 => {}
            51 | 52 => {
                return Err(Failure::new(
                    BindOutcome::DirectoryUnavailable,
                    format!(
                        "searching for the user: ldap {} {}",
                        res.rc,
                        ResultCode(res.rc).name()
                    ),
                ));
            }
            rc => {
                return Err(Failure::new(
                    BindOutcome::AgentError,
                    format!(
                        "searching for the user under {} failed: ldap {rc} {}{}",
                        cfg.base_dn.trim(),
                        ResultCode(rc).name(),
                        if res.text.trim().is_empty() {
                            String::new()
                        } else {
                            format!(" (server says {:?})", res.text.trim())
                        }
                    ),
                ));
            }
        }
        if res.rc == 4 || entries.len() > 1 {
            return Err(Failure::new(
                BindOutcome::InvalidCredentials,
                "ambiguousUser",
            ));
        }
        let Some(entry) = entries.into_iter().next() else {
            return Err(Failure::new(BindOutcome::InvalidCredentials, "noSuchUser"));
        };
        let anchor = anchor_attr.and_then(|attr| {
            let attributes = merge_attributes(entry.attrs, entry.bin_attrs);
            match attributes
                .get(&attr.to_ascii_lowercase())
                .map(Vec::as_slice)
            {
                Some([one]) => anchor_value(attr, one).ok(),
                _ => None,
            }
        });
        Ok(Found {
            dn: entry.dn,
            anchor,
        })
    }

    /// Anchor check, bind, mapping, lock check for one entry.
    async fn check_entry(
        &self,
        found: &Found,
        immutable_id: Option<&str>,
        password: &str,
    ) -> CheckReport {
        let dn = Some(found.dn.clone());
        if let (Some(attr), Some(id)) = (&self.inner.cfg.anchor_attribute, immutable_id)
            && !anchor_matches(attr.trim(), found.anchor.as_deref(), id)
        {
            return Failure::new(BindOutcome::InvalidCredentials, "anchorMismatch").report(dn);
        }
        let res = match self.bind(&found.dn, password).await {
            Ok(res) => res,
            Err(f) => return f.report(dn),
        };
        let ppolicy = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == PPOLICY_OID)
            .map(|c| match &c.1.val {
                Some(v) => parse_ppolicy_response(v),
                None => Err("the control has no value".to_owned()),
            });
        match map_bind_result(res.rc, &res.text, ppolicy) {
            Mapped::Final(outcome, detail) => CheckReport {
                outcome,
                detail,
                dn,
            },
            Mapped::Locked(detail) => self.locked_or_disabled(&found.dn, detail).await,
        }
    }

    /// A locked OpenLDAP account whose `pwdAccountLockedTime` is [`PERMANENT_LOCK_TIME`] was
    /// disabled by an administrator.
    async fn locked_or_disabled(&self, dn: &str, detail: String) -> CheckReport {
        let read = self
            .search(
                true,
                dn,
                Scope::Base,
                "(objectClass=*)",
                &["pwdAccountLockedTime"],
                1,
            )
            .await;
        let (outcome, note) = match read {
            Ok((entries, res)) if res.rc == 0 => {
                match entries
                    .first()
                    .and_then(|e| first_text(e, "pwdAccountLockedTime"))
                {
                    Some(t) if t.trim() == PERMANENT_LOCK_TIME => (
                        BindOutcome::AccountDisabled,
                        format!(
                            "pwdAccountLockedTime {PERMANENT_LOCK_TIME} (locked for good by an administrator)"
                        ),
                    ),
                    Some(t) => (
                        BindOutcome::AccountLocked,
                        format!("pwdAccountLockedTime {}", t.trim()),
                    ),
                    None => (
                        BindOutcome::AccountLocked,
                        "no pwdAccountLockedTime".to_owned(),
                    ),
                }
            }
            Ok((_, res)) => (
                BindOutcome::AccountLocked,
                format!(
                    "pwdAccountLockedTime not readable: ldap {} {}",
                    res.rc,
                    ResultCode(res.rc).name()
                ),
            ),
            Err(e) => (
                BindOutcome::AccountLocked,
                format!(
                    "pwdAccountLockedTime not readable: {}",
                    e.failure("reading the entry").detail
                ),
            ),
        };
        CheckReport {
            outcome,
            detail: format!("{detail}; {note}"),
            dn: Some(dn.to_owned()),
        }
    }

    fn take_idle(&self) -> Option<Directory> {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(dir) = idle.pop() {
            if !dir.ldap.clone().is_closed() {
                return Some(dir);
            }
        }
        None
    }

    fn put_back(&self, dir: Directory) {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.inner.cfg.pool_size {
            idle.push(dir);
        }
    }

    /// Bind as `dn` on a pooled connection, with the ppolicy request control.
    async fn bind(&self, dn: &str, password: &str) -> Result<ldap3::LdapResult, Failure> {
        let limit = self.inner.limit;
        let secs = self.inner.cfg.timeout_secs;
        let wait = pool_wait(limit);
        let _permit = match timeout(wait, self.inner.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(Failure::new(
                    BindOutcome::AgentError,
                    "the bind connection pool is closed",
                ));
            }
            Err(_) => {
                return Err(Failure::new(
                    BindOutcome::DirectoryUnavailable,
                    format!(
                        "all {} bind connections stayed busy for {} s",
                        self.inner.cfg.pool_size,
                        wait.as_secs()
                    ),
                ));
            }
        };
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.take_idle() {
                Some(conn) => (conn, true),
                None => match Directory::connect(&self.inner.ldap_cfg).await {
                    Ok(conn) => (conn, false),
                    Err(e) => return Err(Failure::from_error("opening a bind connection", &e)),
                },
            };
            let bind = conn
                .ldap
                .with_controls(ppolicy_request())
                .with_timeout(limit)
                .simple_bind(dn, password);
            match timeout(limit + TIMEOUT_SLACK, Fenced::new(bind)).await {
                Ok(None) => {
                    return Err(Failure::new(
                        BindOutcome::AgentError,
                        format!(
                            "bind as {dn}: the directory sent an answer this client cannot read"
                        ),
                    ));
                }
                Ok(Some(Ok(res))) => {
                    // 0 and 49 leave the connection in a known state (bound as the user, or
                    // anonymous); after anything else it is dropped, not reused.
                    if matches!(res.rc, 0 | 49) {
                        self.put_back(conn);
                    }
                    return Ok(res);
                }
                Ok(Some(Err(ldap3::LdapError::Timeout { .. }))) | Err(_) => {
                    return Err(Failure::new(
                        BindOutcome::DirectoryUnavailable,
                        format!("bind as {dn} did not finish within {secs} s"),
                    ));
                }
                Ok(Some(Err(e))) => {
                    let error = transport_error(&conn.url, &format!("bind as {dn}"), e);
                    drop(conn);
                    // An idle connection the directory closed in the meantime: one more try
                    // on a new one.
                    if reused && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(Failure::from_error("binding", &error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PasswordCheckConfig {
        PasswordCheckConfig::new(
            "ldap://127.0.0.1:389",
            "uid=svc-sync,ou=people,dc=example,dc=test",
            "/nonexistent/pw",
            "ou=people,dc=example,dc=test",
            "(&(objectClass=inetOrgPerson)(mail={upn}))",
        )
    }

    fn field_error(c: PasswordCheckConfig) -> String {
        match PasswordChecker::new(c) {
            Ok(_) => panic!("accepted"),
            Err(LdapError::Config { field, problem }) => format!("{field}: {problem}"),
            Err(e) => panic!("not a config error: {e}"),
        }
    }

    #[test]
    fn checker_is_send_sync_and_clone() {
        fn assert<T: Send + Sync + Clone + 'static>() {}
        assert::<PasswordChecker>();
        fn assert_future<F: std::future::Future + Send>(_: F) {}
        let c = PasswordChecker::new(cfg()).unwrap();
        assert_future(c.check("a", None, b"x"));
        assert_future(c.probe());
    }

    #[test]
    fn config_from_toml_with_defaults_and_unknown_fields_refused() {
        #[derive(Deserialize)]
        struct Agent {
            directory: PasswordCheckConfig,
        }
        let a: Agent = toml::from_str(
            r#"
            [directory]
            url = "ldaps://dc1.example.com"
            bind_dn = "svc@example.com"
            bind_password_env = "PTA_PW"
            base_dn = "dc=example,dc=com"
            user_filter = "(&(objectClass=user)(userPrincipalName={upn}))"
            anchor_attribute = "objectGUID"
            "#,
        )
        .unwrap();
        let d = a.directory;
        assert_eq!(d.timeout_secs, DEFAULT_CHECK_TIMEOUT_SECS);
        assert_eq!(d.timeout_secs, 5);
        assert_eq!(d.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(d.pool_size, 8);
        assert!(!d.starttls);
        assert_eq!(d.anchor_attribute.as_deref(), Some("objectGUID"));
        PasswordChecker::new(d).unwrap();

        let e = toml::from_str::<Agent>(
            r#"
            [directory]
            url = "ldap://x"
            bind_dn = "cn=a,dc=x"
            bind_password_env = "PW"
            base_dn = "dc=x"
            user_filter = "(uid={upn})"
            page_size = 5
            "#,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("unknown field `page_size`"), "{e}");
    }

    #[test]
    fn pool_size_limits() {
        for (n, ok) in [
            (0, false),
            (1, true),
            (MAX_POOL_SIZE, true),
            (MAX_POOL_SIZE + 1, false),
        ] {
            let mut c = cfg();
            c.pool_size = n;
            if ok {
                PasswordChecker::new(c).unwrap();
            } else {
                assert_eq!(
                    field_error(c),
                    format!("pool_size: must be 1..=64, got {n}")
                );
            }
        }
        assert_eq!(MAX_POOL_SIZE, 64);
    }

    #[test]
    fn timeout_limits() {
        for (n, ok) in [
            (0, false),
            (1, true),
            (MAX_CHECK_TIMEOUT_SECS, true),
            (MAX_CHECK_TIMEOUT_SECS + 1, false),
        ] {
            let mut c = cfg();
            c.timeout_secs = n;
            if ok {
                PasswordChecker::new(c).unwrap();
            } else {
                let e = field_error(c);
                assert!(e.starts_with("timeout_secs: must be 1..=60, got"), "{e}");
            }
        }
    }

    #[test]
    fn other_settings_are_checked_by_name() {
        let mut c = cfg();
        c.base_dn = " ".into();
        assert!(field_error(c).starts_with("base_dn: is empty"));
        let mut c = cfg();
        c.base_dn = "people".into();
        assert!(field_error(c).starts_with("base_dn: \"people\" is not a DN"));
        let mut c = cfg();
        c.url = "http://x".into();
        assert!(field_error(c).starts_with("url: scheme \"http\""));
        let mut c = cfg();
        c.bind_password_env = Some("PW".into());
        assert!(field_error(c).starts_with("bind_password_env: set only one"));
        let mut c = cfg();
        c.anchor_attribute = Some("entry UUID".into());
        assert!(field_error(c).starts_with("anchor_attribute:"));
        let mut c = cfg();
        c.anchor_attribute = Some(String::new());
        assert!(field_error(c).starts_with("anchor_attribute: is empty"));
        let mut c = cfg();
        c.starttls = true;
        c.url = "ldaps://x".into();
        assert!(field_error(c).starts_with("starttls:"));
    }

    #[test]
    fn user_filter_template() {
        for bad in [
            "(mail=alice@example.com)",
            "(mail={UPN})",
            "mail={upn}",
            "(mail={upn})(uid=x)",
            "(&(mail={upn})",
            "(={upn})",
            "",
        ] {
            let mut c = cfg();
            c.user_filter = bad.into();
            let e = field_error(c);
            assert!(e.starts_with("user_filter: "), "{bad}: {e}");
        }
        for good in [
            "(mail={upn})",
            " (|(mail={upn})(userPrincipalName={upn})) ",
            "(&(objectClass=user)(userPrincipalName={upn})(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
        ] {
            let mut c = cfg();
            c.user_filter = good.into();
            PasswordChecker::new(c).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        // The value is escaped, every occurrence replaced.
        assert_eq!(
            user_filter(" (|(mail={upn})(uid={upn})) ", "a*)(uid=*"),
            "(|(mail=a\\2a\\29\\28uid=\\2a)(uid=a\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(user_filter("(mail={upn})", "jürgen@x"), "(mail=jürgen@x)");
        assert!(check_filter(&user_filter("(mail={upn})", "(\\*\0)")).is_ok());
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let mut c = cfg();
        c.bind_password_file = None;
        c.bind_password_env = Some("PTA_SECRET_VAR".into());
        let checker = PasswordChecker::new(c.clone()).unwrap();
        let d = format!("{checker:?} {c:?}");
        assert!(d.contains("PasswordChecker"), "{d}");
        // Only the variable's name, never a value; and the checker never keeps a password.
        assert!(!d.contains("sync-pw"), "{d}");
        let r = precheck("alice@example.test", b"").unwrap().report(None);
        assert_eq!(format!("{r:?}").matches("emptyPassword").count(), 1);
    }

    #[test]
    fn refusals_without_the_directory_at_their_edges() {
        let ok_upn = "a".repeat(MAX_UPN_BYTES);
        let long_upn = "a".repeat(MAX_UPN_BYTES + 1);
        let ok_pw = vec![b'x'; MAX_PASSWORD_BYTES];
        let long_pw = vec![b'x'; MAX_PASSWORD_BYTES + 1];
        assert_eq!(precheck(&ok_upn, &ok_pw), None);
        assert_eq!(precheck("u", b"x"), None);
        let f = precheck(&long_upn, b"x").unwrap();
        assert_eq!(f.outcome, BindOutcome::InvalidCredentials);
        assert!(f.detail.starts_with("upnTooLong"), "{}", f.detail);
        let f = precheck("u", &long_pw).unwrap();
        assert_eq!(f.outcome, BindOutcome::InvalidCredentials);
        assert!(f.detail.starts_with("passwordTooLong"), "{}", f.detail);
        assert_eq!(
            precheck("u", b"").unwrap(),
            Failure::new(BindOutcome::InvalidCredentials, "emptyPassword")
        );
        assert_eq!(
            precheck("  ", b"x").unwrap(),
            Failure::new(BindOutcome::InvalidCredentials, "emptyUpn")
        );
        // Any bytes are a password; only emptiness and length are refused up front.
        assert_eq!(precheck("u", &[0, 0xff, b'\n', b' ']), None);
    }

    #[tokio::test]
    async fn checks_that_never_reach_the_directory() {
        // Nothing listens at this URL; these answers come before any connection.
        let c = PasswordChecker::new(cfg()).unwrap();
        let r = c.check("alice@example.test", None, b"").await;
        assert_eq!(
            r,
            CheckReport {
                outcome: BindOutcome::InvalidCredentials,
                detail: "emptyPassword".into(),
                dn: None
            }
        );
        let r = c.check("alice@example.test", None, &[0xff, 0xfe]).await;
        assert_eq!(r.outcome, BindOutcome::AgentError);
        assert!(r.detail.contains("not valid UTF-8"), "{}", r.detail);
    }

    #[test]
    fn ppolicy_values() {
        let p = |v: &[u8]| parse_ppolicy_response(v);
        assert_eq!(p(&[0x30, 0x00]).unwrap(), PpolicyResponse::default());
        // error only: accountLocked
        assert_eq!(
            p(&[0x30, 0x03, 0x81, 0x01, 0x01]).unwrap(),
            PpolicyResponse {
                warning: None,
                error: Some(PpolicyError::AccountLocked)
            }
        );
        for (code, e) in [
            (0u8, PpolicyError::PasswordExpired),
            (1, PpolicyError::AccountLocked),
            (2, PpolicyError::ChangeAfterReset),
            (3, PpolicyError::PasswordModNotAllowed),
            (4, PpolicyError::MustSupplyOldPassword),
            (5, PpolicyError::InsufficientPasswordQuality),
            (6, PpolicyError::PasswordTooShort),
            (7, PpolicyError::PasswordTooYoung),
            (8, PpolicyError::PasswordInHistory),
            (9, PpolicyError::Other(9)),
            (0xff, PpolicyError::Other(-1)),
        ] {
            assert_eq!(p(&[0x30, 0x03, 0x81, 0x01, code]).unwrap().error, Some(e));
        }
        // warning: timeBeforeExpiration 3600 (0x0e10)
        assert_eq!(
            p(&[0x30, 0x06, 0xa0, 0x04, 0x80, 0x02, 0x0e, 0x10]).unwrap(),
            PpolicyResponse {
                warning: Some(PpolicyWarning::TimeBeforeExpiration(3600)),
                error: None
            }
        );
        // warning graceAuthNsRemaining 2 and error passwordExpired
        assert_eq!(
            p(&[0x30, 0x08, 0xa0, 0x03, 0x81, 0x01, 0x02, 0x81, 0x01, 0x00]).unwrap(),
            PpolicyResponse {
                warning: Some(PpolicyWarning::GraceAuthNsRemaining(2)),
                error: Some(PpolicyError::PasswordExpired)
            }
        );
        // Long-form length and an 8-byte integer (the largest accepted).
        let mut v = vec![0x30, 0x81, 0x0c, 0xa0, 0x0a, 0x80, 0x08];
        v.extend([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            p(&v).unwrap().warning,
            Some(PpolicyWarning::TimeBeforeExpiration(i64::MAX))
        );
        assert_eq!(ber_integer(&[0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap(), i64::MIN);
    }

    #[test]
    fn malformed_ppolicy_values_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x31, 0x00],
            &[0x30, 0x80],                                     // indefinite length
            &[0x30, 0x01],                                     // truncated
            &[0x30, 0x00, 0x00],                               // trailing byte
            &[0x30, 0x02, 0x81, 0x00],                         // empty ENUMERATED
            &[0x30, 0x03, 0x81, 0x02, 0x01],                   // length beyond the end
            &[0x30, 0x02, 0xa0, 0x00],                         // empty warning
            &[0x30, 0x05, 0xa0, 0x03, 0x82, 0x01, 0x01],       // unknown warning choice
            &[0x30, 0x03, 0x82, 0x01, 0x01],                   // unknown element
            &[0x30, 0x06, 0x81, 0x01, 0x01, 0xa0, 0x01, 0x00], // warning after error
            &[0x30, 0x08, 0xa0, 0x06, 0x80, 0x01, 0x01, 0x80, 0x01, 0x01], // two warnings
            &[0x30, 0x85, 0xff, 0xff, 0xff, 0xff, 0xff],       // 5-byte length
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],             // 4 GiB announced
            &[0x30, 0x0c, 0x81, 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0], // 9-byte integer
        ] {
            assert!(parse_ppolicy_response(bad).is_err(), "{bad:x?}");
        }
        // Every prefix of a valid value, and every single-byte change: never a panic.
        let good = [0x30, 0x08, 0xa0, 0x03, 0x81, 0x01, 0x02, 0x81, 0x01, 0x00];
        for n in 0..good.len() {
            assert!(parse_ppolicy_response(&good[..n]).is_err(), "prefix {n}");
        }
        for i in 0..good.len() {
            for b in 0..=255u8 {
                let mut v = good;
                v[i] = b;
                let _ = parse_ppolicy_response(&v);
            }
        }
    }

    #[test]
    fn ber_integer_limits() {
        assert!(ber_integer(&[]).is_err());
        assert_eq!(
            ber_integer(&[0x01; MAX_BER_INTEGER_BYTES]).unwrap(),
            0x0101_0101_0101_0101
        );
        assert!(ber_integer(&[0x01; MAX_BER_INTEGER_BYTES + 1]).is_err());
        assert_eq!(ber_integer(&[0xff, 0xfe]).unwrap(), -2);
    }

    fn locked_control() -> Option<Result<PpolicyResponse, String>> {
        Some(Ok(PpolicyResponse {
            warning: None,
            error: Some(PpolicyError::AccountLocked),
        }))
    }

    fn with_error(e: PpolicyError) -> Option<Result<PpolicyResponse, String>> {
        Some(Ok(PpolicyResponse {
            warning: None,
            error: Some(e),
        }))
    }

    fn outcome(m: Mapped) -> (BindOutcome, String) {
        match m {
            Mapped::Final(o, d) => (o, d),
            Mapped::Locked(d) => (BindOutcome::AccountLocked, format!("LOCKCHECK {d}")),
        }
    }

    #[test]
    fn openldap_ppolicy_mapping() {
        use BindOutcome as O;
        assert_eq!(
            outcome(map_bind_result(0, "", None)),
            (O::Success, "ldap 0 success".into())
        );
        assert_eq!(
            outcome(map_bind_result(0, "", Some(Ok(PpolicyResponse::default())))),
            (O::Success, "ldap 0 success".into())
        );
        assert_eq!(
            outcome(map_bind_result(
                0,
                "",
                Some(Ok(PpolicyResponse {
                    warning: Some(PpolicyWarning::TimeBeforeExpiration(60)),
                    error: None
                }))
            )),
            (
                O::Success,
                "ldap 0 success; ppolicy timeBeforeExpiration 60".into()
            )
        );
        assert_eq!(
            outcome(map_bind_result(
                0,
                "",
                with_error(PpolicyError::ChangeAfterReset)
            )),
            (
                O::MustChangePassword,
                "ldap 0 success; ppolicy changeAfterReset".into()
            )
        );
        assert_eq!(
            map_bind_result(49, "", locked_control()),
            Mapped::Locked("ldap 49 invalidCredentials; ppolicy accountLocked".into())
        );
        assert_eq!(
            outcome(map_bind_result(
                49,
                "",
                with_error(PpolicyError::PasswordExpired)
            )),
            (
                O::PasswordExpired,
                "ldap 49 invalidCredentials; ppolicy passwordExpired".into()
            )
        );
        assert_eq!(
            outcome(map_bind_result(49, "", None)),
            (O::InvalidCredentials, "ldap 49 invalidCredentials".into())
        );
        assert_eq!(
            outcome(map_bind_result(
                49,
                "",
                Some(Ok(PpolicyResponse::default()))
            ))
            .0,
            O::InvalidCredentials
        );
        // A success with a control that cannot be read: is a password change required?
        // Unknown, so not a success.
        let (o, d) = outcome(map_bind_result(0, "", Some(Err("truncated".into()))));
        assert_eq!(o, O::AgentError);
        assert_eq!(d, "ldap 0 success; ppolicy control unreadable: truncated");
        assert_eq!(
            outcome(map_bind_result(49, "", Some(Err("x".into())))).0,
            O::InvalidCredentials
        );
        // A modify-only error on a bind is unexpected.
        assert_eq!(
            outcome(map_bind_result(
                0,
                "",
                with_error(PpolicyError::PasswordTooShort)
            ))
            .0,
            O::AgentError
        );
        assert_eq!(
            outcome(map_bind_result(49, "", with_error(PpolicyError::Other(42)))),
            (
                O::InvalidCredentials,
                "ldap 49 invalidCredentials; ppolicy error 42".into()
            )
        );
    }

    #[test]
    fn other_result_codes() {
        use BindOutcome as O;
        assert_eq!(
            outcome(map_bind_result(51, "", None)).0,
            O::DirectoryUnavailable
        );
        assert_eq!(
            outcome(map_bind_result(52, "shutting down", None)),
            (
                O::DirectoryUnavailable,
                "ldap 52 unavailable; server says \"shutting down\"".into()
            )
        );
        for rc in [1, 2, 3, 8, 13, 32, 34, 48, 50, 53, 80, 4711] {
            assert_eq!(
                outcome(map_bind_result(rc, "", None)).0,
                O::AgentError,
                "{rc}"
            );
        }
        let (_, d) = outcome(map_bind_result(
            53,
            "unauthenticated bind (DN with no password) disallowed",
            None,
        ));
        assert_eq!(
            d,
            "ldap 53 unwillingToPerform; server says \"unauthenticated bind (DN with no password) disallowed\""
        );
    }

    #[test]
    fn diagnostics_are_cut_at_the_limit() {
        let exact = "d".repeat(MAX_DIAGNOSTIC_CHARS);
        let (_, d) = outcome(map_bind_result(80, &exact, None));
        assert!(d.ends_with(&format!("{exact:?}")), "{d}");
        let long = "é".repeat(MAX_DIAGNOSTIC_CHARS + 1);
        let (_, d) = outcome(map_bind_result(80, &long, None));
        let shown = "é".repeat(MAX_DIAGNOSTIC_CHARS);
        assert!(d.ends_with(&format!("{shown:?}…")), "{d}");
    }

    #[test]
    fn active_directory_data_codes() {
        use BindOutcome as O;
        let msg = |data: &str| {
            format!(
                "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data {data}, v3839\0"
            )
        };
        for (data, expected, name) in [
            ("52e", O::InvalidCredentials, "invalidCredentials"),
            ("525", O::InvalidCredentials, "noSuchUser"),
            ("530", O::InvalidCredentials, "notPermittedAtThisTime"),
            (
                "531",
                O::InvalidCredentials,
                "notPermittedAtThisWorkstation",
            ),
            ("532", O::PasswordExpired, "passwordExpired"),
            ("533", O::AccountDisabled, "accountDisabled"),
            ("701", O::AccountDisabled, "accountExpired"),
            ("773", O::MustChangePassword, "mustResetPassword"),
            ("775", O::AccountLocked, "accountLocked"),
            ("568", O::InvalidCredentials, "unrecognised"),
        ] {
            let (o, d) = outcome(map_bind_result(49, &msg(data), None));
            assert_eq!(o, expected, "{data}");
            assert!(
                d.starts_with(&format!(
                    "ldap 49 invalidCredentials; ad data {data} {name}; server says"
                )),
                "{d}"
            );
        }
        assert_eq!(ad_data_code("…, data 52E, v4563"), Some(0x52e));
        assert_eq!(ad_data_code("data 775"), Some(0x775));
        for none in [
            "",
            "data",
            "data ",
            "data xyz",
            "data 123456789",
            "no code here",
            "metadata",
        ] {
            assert_eq!(ad_data_code(none), None, "{none:?}");
        }
        // "data" is only read from a 49 without a ppolicy error.
        assert_eq!(outcome(map_bind_result(0, &msg("775"), None)).0, O::Success);
        assert_eq!(
            outcome(map_bind_result(
                49,
                &msg("775"),
                with_error(PpolicyError::PasswordExpired)
            ))
            .0,
            O::PasswordExpired
        );
    }

    #[test]
    fn connector_errors_are_sorted() {
        use BindOutcome as O;
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let f = Failure::from_error(
            "connecting",
            &LdapError::Connect {
                url: "ldap://x".into(),
                error: io(),
            },
        );
        assert_eq!(f.outcome, O::DirectoryUnavailable);
        assert!(
            f.detail
                .starts_with("connecting: cannot connect to ldap://x"),
            "{}",
            f.detail
        );
        for (code, expected) in [
            (ResultCode::BUSY, O::DirectoryUnavailable),
            (ResultCode::UNAVAILABLE, O::DirectoryUnavailable),
            (ResultCode::INVALID_CREDENTIALS, O::AgentError),
        ] {
            let e = LdapError::Bind {
                bind_dn: "cn=svc".into(),
                code,
                message: String::new(),
                hint: String::new(),
            };
            assert_eq!(Failure::from_error("c", &e).outcome, expected);
        }
        assert_eq!(
            Failure::from_error(
                "c",
                &LdapError::Timeout {
                    operation: "x".into(),
                    secs: 1
                }
            )
            .outcome,
            O::DirectoryUnavailable
        );
        assert_eq!(
            Failure::from_error("c", &LdapError::config("url", "bad")).outcome,
            O::AgentError
        );
    }

    #[test]
    fn dn_cache_ttl_edge() {
        let mut c = DnCache::new(DN_CACHE_TTL, DN_CACHE_MAX_ENTRIES);
        let t0 = Instant::now();
        let f = Found {
            dn: "uid=a,dc=x".into(),
            anchor: Some("1".into()),
        };
        c.insert("a@x", f.clone(), t0);
        assert_eq!(
            c.get("a@x", t0 + DN_CACHE_TTL - Duration::from_millis(1)),
            Some(f)
        );
        assert_eq!(c.get("a@x", t0 + DN_CACHE_TTL), None);
        assert_eq!(c.len(), 0, "an expired entry is dropped when met");
        assert_eq!(DN_CACHE_TTL, Duration::from_secs(60));
    }

    #[test]
    fn dn_cache_size_edge() {
        let mut c = DnCache::new(DN_CACHE_TTL, DN_CACHE_MAX_ENTRIES);
        let t0 = Instant::now();
        let found = |i: usize| Found {
            dn: format!("uid=u{i},dc=x"),
            anchor: None,
        };
        for i in 0..DN_CACHE_MAX_ENTRIES {
            c.insert(
                &format!("u{i}"),
                found(i),
                t0 + Duration::from_micros(i as u64),
            );
        }
        assert_eq!(c.len(), DN_CACHE_MAX_ENTRIES);
        assert_eq!(DN_CACHE_MAX_ENTRIES, 10_000);
        // Replacing an entry does not evict another.
        c.insert("u5", found(5), t0 + Duration::from_secs(1));
        assert_eq!(c.len(), DN_CACHE_MAX_ENTRIES);
        assert!(c.get("u0", t0).is_some());
        // One more: the oldest goes.
        let now = t0 + Duration::from_secs(2);
        c.insert("new", found(0), now);
        assert_eq!(c.len(), DN_CACHE_MAX_ENTRIES);
        assert!(c.get("u0", now).is_none());
        assert!(c.get("u1", now).is_some());
        assert!(c.get("new", now).is_some());
        // When entries have expired, they make the room.
        let later = t0 + DN_CACHE_TTL + Duration::from_secs(1);
        c.insert("newer", found(1), later);
        // (u5 was refreshed at t0 + 1 s: exactly DN_CACHE_TTL old now, so expired too.)
        assert_eq!(c.len(), 2, "only new and newer are fresh");
        c.remove("newer");
        assert!(c.get("newer", later).is_none());
    }

    #[test]
    fn connect_backoff_and_pool_wait_edges() {
        let t0 = Instant::now();
        assert!(!backoff_over(
            t0,
            t0 + CONNECT_RETRY_BACKOFF - Duration::from_millis(1)
        ));
        assert!(backoff_over(t0, t0 + CONNECT_RETRY_BACKOFF));
        assert!(
            !backoff_over(t0 + Duration::from_secs(5), t0),
            "a clock going back is no panic"
        );
        assert_eq!(pool_wait(Duration::from_secs(5)), Duration::from_secs(15));
        assert_eq!(pool_wait(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn anchors_compare() {
        let uuid = "8831e8fc-7a9f-1041-9d87-dffda8cc4f01";
        assert!(anchor_matches(
            "entryUUID",
            Some(uuid),
            &uuid.to_ascii_uppercase()
        ));
        assert!(anchor_matches(
            "entryUUID",
            Some(uuid),
            &format!(" {uuid} ")
        ));
        assert!(!anchor_matches("entryUUID", Some(uuid), "8831e8fc"));
        assert!(!anchor_matches("entryUUID", None, uuid));
        assert!(anchor_matches("objectGUID", Some("AAECAw=="), "AAECAw=="));
        assert!(!anchor_matches("objectGUID", Some("AAECAw=="), "aaecaw=="));
    }

    #[test]
    fn dn_helpers() {
        assert_eq!(
            parent_dn("ou=people,dc=example,dc=test"),
            Some("dc=example,dc=test")
        );
        assert_eq!(parent_dn("dc=test"), None);
        assert_eq!(parent_dn("dc=test,"), None);
        assert_eq!(parent_dn("cn=a\\,b,dc=x"), Some("dc=x"));
        assert_eq!(parent_dn("cn=\"a,b\",dc=x"), Some("dc=x"));
        assert_eq!(parent_dn("ou=x, dc=y"), Some("dc=y"));
        assert_eq!(parent_dn(""), None);
        assert!(dn_within(
            "OU=People, DC=Example,DC=com",
            "dc=example,dc=com"
        ));
        assert!(dn_within("dc=example,dc=com", "DC=example, DC=com"));
        assert!(!dn_within("dc=badexample,dc=com", "dc=example,dc=com"));
        assert!(!dn_within("dc=example,dc=com", ""));
    }

    fn entry(dn: &str, attrs: &[(&str, &str)]) -> SearchEntry {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in attrs {
            map.entry((*k).to_owned())
                .or_default()
                .push((*v).to_owned());
        }
        SearchEntry {
            dn: dn.to_owned(),
            attrs: map,
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn ppolicy_entries_read() {
        let default = entry(
            "cn=default,ou=policies,dc=x",
            &[
                ("pwdLockout", "TRUE"),
                ("pwdMaxFailure", "5"),
                ("pwdLockoutDuration", "300"),
            ],
        );
        let strict = entry(
            "cn=strict,ou=policies,dc=x",
            &[
                ("pwdLockout", "TRUE"),
                ("pwdMaxFailure", "3"),
                ("pwdLockoutDuration", "0"),
            ],
        );
        let off = entry(
            "cn=off,dc=x",
            &[("pwdLockout", "FALSE"), ("pwdMaxFailure", "5")],
        );
        let want = |m, d| DirectoryLockoutPolicy {
            max_failures: m,
            lockout_duration_secs: d,
        };
        assert_eq!(ppolicy_lockout(&default), want(Some(5), Some(300)));
        assert_eq!(ppolicy_lockout(&off), want(Some(0), None));
        assert_eq!(
            ppolicy_lockout(&entry("cn=p", &[("pwdLockout", "TRUE")])),
            want(Some(0), None)
        );
        assert_eq!(
            ppolicy_lockout(&entry(
                "cn=p",
                &[
                    ("pwdLockout", "TRUE"),
                    ("pwdMaxFailure", "-1"),
                    ("pwdLockoutDuration", "x")
                ]
            )),
            want(None, None)
        );
        assert_eq!(
            choose_policy(&[strict.clone(), default.clone()]),
            want(Some(5), Some(300))
        );
        assert_eq!(
            choose_policy(std::slice::from_ref(&strict)),
            want(Some(3), Some(0))
        );
        assert_eq!(
            choose_policy(&[off.clone(), strict.clone()]),
            want(Some(3), Some(0))
        );
        assert_eq!(
            choose_policy(&[off.clone(), off.clone()]),
            want(Some(0), None)
        );
        assert_eq!(choose_policy(&[]), DirectoryLockoutPolicy::default());
    }

    #[test]
    fn active_directory_lockout() {
        assert_eq!(ad_duration_secs("-18000000000"), Some(1800));
        assert_eq!(ad_duration_secs("-9223372036854775808"), Some(0));
        assert_eq!(ad_duration_secs("0"), Some(0));
        assert_eq!(ad_duration_secs("18000000000"), None);
        assert_eq!(ad_duration_secs("soon"), None);
        let e = entry(
            "dc=example,dc=com",
            &[
                ("lockoutThreshold", "10"),
                ("lockoutDuration", "-6000000000"),
            ],
        );
        assert_eq!(
            ad_lockout(&e),
            DirectoryLockoutPolicy {
                max_failures: Some(10),
                lockout_duration_secs: Some(600)
            }
        );
        assert_eq!(
            ad_lockout(&entry("dc=x", &[])),
            DirectoryLockoutPolicy::default()
        );
    }

    // --- a fake directory, to drive the paths a real OpenLDAP does not take -----------------

    /// What the fake directory answers to a bind as a user (service binds always succeed).
    #[derive(Clone)]
    struct UserBind {
        rc: u8,
        diagnostic: Vec<u8>,
        /// The ppolicy response control's value, if one is sent.
        ppolicy: Option<Vec<u8>>,
        /// Never answer.
        silent: bool,
    }

    const FAKE_SVC: &str = "cn=svc,dc=fake";
    const FAKE_USER: &str = "uid=u,dc=fake";

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n <= 0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend(content);
        out
    }

    fn message(id: &[u8], op: Vec<u8>, controls: Option<Vec<u8>>) -> Vec<u8> {
        let mut body = tlv(0x02, id);
        body.extend(op);
        if let Some(c) = controls {
            body.extend(tlv(0xa0, &c));
        }
        tlv(0x30, &body)
    }

    fn ldap_result(op: u8, rc: u8, diagnostic: &[u8]) -> Vec<u8> {
        let mut c = tlv(0x0a, &[rc]);
        c.extend(tlv(0x04, b""));
        c.extend(tlv(0x04, diagnostic));
        tlv(op, &c)
    }

    use crate::fake_ldap::read_message;

    struct Fake {
        cfg: PasswordCheckConfig,
        accepted: Arc<std::sync::atomic::AtomicUsize>,
        /// Every user bind request as received (whole LDAPMessage).
        user_binds: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    /// A fake directory on a free loopback port: binds, and a search that finds FAKE_USER.
    async fn fake_directory(user_bind: UserBind) -> Fake {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let user_binds = Arc::new(Mutex::new(Vec::new()));
        let (acc, binds) = (Arc::clone(&accepted), Arc::clone(&user_binds));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let (ub, binds) = (user_bind.clone(), Arc::clone(&binds));
                tokio::spawn(async move {
                    while let Some(msg) = read_message(&mut s).await {
                        let (content, _) = element(&msg, 0x30).unwrap();
                        let (id, rest) = element(content, 0x02).unwrap();
                        let mut replies = Vec::new();
                        match rest[0] {
                            0x60 => {
                                let (bind, _) = element(rest, 0x60).unwrap();
                                let (_, bind) = element(bind, 0x02).unwrap();
                                let (name, _) = element(bind, 0x04).unwrap();
                                if name == FAKE_SVC.as_bytes() {
                                    replies.push(message(id, ldap_result(0x61, 0, b""), None));
                                } else {
                                    binds.lock().unwrap().push(msg.clone());
                                    if ub.silent {
                                        continue;
                                    }
                                    let controls = ub.ppolicy.as_ref().map(|v| {
                                        let mut c = tlv(0x04, PPOLICY_OID.as_bytes());
                                        c.extend(tlv(0x04, v));
                                        tlv(0x30, &c)
                                    });
                                    replies.push(message(
                                        id,
                                        ldap_result(0x61, ub.rc, &ub.diagnostic),
                                        controls,
                                    ));
                                }
                            }
                            0x63 => {
                                let mut entry = tlv(0x04, FAKE_USER.as_bytes());
                                entry.extend(tlv(0x30, b""));
                                replies.push(message(id, tlv(0x64, &entry), None));
                                replies.push(message(id, ldap_result(0x65, 0, b""), None));
                            }
                            0x42 => return,
                            _ => {}
                        }
                        for r in replies {
                            if s.write_all(&r).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let mut cfg = PasswordCheckConfig::new(
            format!("ldap://127.0.0.1:{port}"),
            FAKE_SVC,
            "/unused",
            "dc=fake",
            "(mail={upn})",
        );
        // Set by cargo for every test process: no password file to clean up.
        cfg.bind_password_file = None;
        cfg.bind_password_env = Some("CARGO_PKG_NAME".to_owned());
        cfg.timeout_secs = 1;
        cfg.pool_size = 1;
        Fake {
            cfg,
            accepted,
            user_binds,
        }
    }

    fn plain(rc: u8, diagnostic: &str) -> UserBind {
        UserBind {
            rc,
            diagnostic: diagnostic.as_bytes().to_vec(),
            ppolicy: None,
            silent: false,
        }
    }

    #[tokio::test]
    async fn the_bind_carries_the_ppolicy_request_control_and_the_password() {
        let fake = fake_directory(plain(0, "")).await;
        let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
        let r = c.check("u@fake", None, "sécret\u{0}x".as_bytes()).await;
        assert_eq!(
            r,
            CheckReport {
                outcome: BindOutcome::Success,
                detail: "ldap 0 success".into(),
                dn: Some(FAKE_USER.into())
            }
        );
        let binds = fake.user_binds.lock().unwrap().clone();
        assert_eq!(binds.len(), 1);
        let (content, _) = element(&binds[0], 0x30).unwrap();
        let (_, rest) = element(content, 0x02).unwrap();
        let (bind, controls) = element(rest, 0x60).unwrap();
        let (_, bind) = element(bind, 0x02).unwrap();
        let (name, bind) = element(bind, 0x04).unwrap();
        assert_eq!(name, FAKE_USER.as_bytes());
        let (simple, _) = element(bind, 0x80).unwrap();
        assert_eq!(simple, "sécret\u{0}x".as_bytes());
        // [0] Controls { Control { controlType ppolicy OID } } (not critical: no criticality).
        let (controls, _) = element(controls, 0xa0).unwrap();
        let (control, _) = element(controls, 0x30).unwrap();
        let (oid, rest) = element(control, 0x04).unwrap();
        assert_eq!(oid, PPOLICY_OID.as_bytes());
        assert!(rest.is_empty(), "no criticality, no value: {rest:x?}");
    }

    #[tokio::test]
    async fn active_directory_answers_through_the_wire() {
        for (data, outcome) in [
            ("775", BindOutcome::AccountLocked),
            ("533", BindOutcome::AccountDisabled),
            ("532", BindOutcome::PasswordExpired),
            ("773", BindOutcome::MustChangePassword),
            ("52e", BindOutcome::InvalidCredentials),
        ] {
            let diagnostic = format!(
                "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data {data}, v3839"
            );
            let fake = fake_directory(plain(49, &diagnostic)).await;
            let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
            let r = c.check("u@fake", None, b"pw").await;
            assert_eq!(r.outcome, outcome, "{data}: {r:?}");
            assert!(r.detail.contains(&format!("ad data {data}")), "{r:?}");
            assert!(!r.detail.contains("pw\""), "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_malformed_control_on_success_is_not_a_success() {
        let fake = fake_directory(UserBind {
            ppolicy: Some(vec![0x30, 0x05, 0x81]),
            ..plain(0, "")
        })
        .await;
        let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
        let r = c.check("u@fake", None, b"pw").await;
        assert_eq!(r.outcome, BindOutcome::AgentError, "{r:?}");
        assert!(
            r.detail
                .starts_with("ldap 0 success; ppolicy control unreadable: truncated"),
            "{r:?}"
        );

        let fake = fake_directory(UserBind {
            ppolicy: Some(vec![0x30, 0x03, 0x81, 0x01, 0x02]),
            ..plain(0, "")
        })
        .await;
        let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
        let r = c.check("u@fake", None, b"pw").await;
        assert_eq!(r.outcome, BindOutcome::MustChangePassword, "{r:?}");
    }

    #[tokio::test]
    async fn busy_and_unexpected_answers_drop_the_bind_connection() {
        use std::sync::atomic::Ordering;
        for (rc, outcome) in [
            (51, BindOutcome::DirectoryUnavailable),
            (52, BindOutcome::DirectoryUnavailable),
            (53, BindOutcome::AgentError),
            (80, BindOutcome::AgentError),
        ] {
            let fake = fake_directory(plain(rc, "")).await;
            let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
            for _ in 0..2 {
                let r = c.check("u@fake", None, b"pw").await;
                assert_eq!(r.outcome, outcome, "{rc}: {r:?}");
            }
            // Service connection + one bind connection per check: none was reused.
            assert_eq!(fake.accepted.load(Ordering::SeqCst), 3, "{rc}");
        }
        // 49 leaves a known state: the bind connection is reused.
        let fake = fake_directory(plain(49, "")).await;
        let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
        for _ in 0..3 {
            let r = c.check("u@fake", None, b"pw").await;
            assert_eq!(r.outcome, BindOutcome::InvalidCredentials, "{r:?}");
        }
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_silent_bind_is_unavailable_within_the_timeout_and_not_reused() {
        use std::sync::atomic::Ordering;
        let fake = fake_directory(UserBind {
            silent: true,
            ..plain(0, "")
        })
        .await;
        let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
        let started = Instant::now();
        let r = c.check("u@fake", None, b"pw").await;
        assert_eq!(
            r,
            CheckReport {
                outcome: BindOutcome::DirectoryUnavailable,
                detail: format!("bind as {FAKE_USER} did not finish within 1 s"),
                dn: Some(FAKE_USER.into())
            }
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let r = c.check("u@fake", None, b"pw").await;
        assert_eq!(r.outcome, BindOutcome::DirectoryUnavailable);
        assert_eq!(
            fake.accepted.load(Ordering::SeqCst),
            3,
            "a timed-out connection is dropped"
        );
    }

    #[tokio::test]
    async fn an_unreadable_bind_response_is_an_error_not_a_panic() {
        use std::sync::atomic::Ordering;
        // ldap3 reads the diagnostic message as UTF-8 with an expect.
        let fake = fake_directory(UserBind {
            diagnostic: vec![0xff, 0xfe, b'x'],
            ..plain(49, "")
        })
        .await;
        let c = PasswordChecker::new(fake.cfg.clone()).unwrap();
        for _ in 0..2 {
            let r = c.check("u@fake", None, b"pw").await;
            assert_eq!(
                r,
                CheckReport {
                    outcome: BindOutcome::AgentError,
                    detail: format!(
                        "bind as {FAKE_USER}: the directory sent an answer this client cannot read"
                    ),
                    dn: Some(FAKE_USER.into())
                }
            );
        }
        assert_eq!(
            fake.accepted.load(Ordering::SeqCst),
            3,
            "the connection that gave it is not reused"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_remembered_briefly() {
        // A port nothing listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cfg = cfg();
        cfg.url = format!("ldap://127.0.0.1:{port}");
        cfg.bind_password_file = None;
        cfg.bind_password_env = Some("CARGO_PKG_NAME".to_owned());
        let c = PasswordChecker::new(cfg).unwrap();
        let r = c.check("u@x", None, b"pw").await;
        assert_eq!(r.outcome, BindOutcome::DirectoryUnavailable, "{r:?}");
        assert!(
            r.detail.starts_with(
                "connecting with the service account: cannot connect to ldap://127.0.0.1:"
            ),
            "{r:?}"
        );
        assert_eq!(
            c.check("u@x", None, b"pw").await,
            r,
            "the same answer within the backoff"
        );
        assert!(c.probe().await.is_err());
    }
}
