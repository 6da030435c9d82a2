//! Errors. None of them ever carries the directory value or a password: only the scheme tag
//! seen, fixed text and numbers.

use crate::hash::Scheme;

/// What Cutover imports, for operator-facing messages.
pub(crate) const SUPPORTED: &str = "{SSHA}, {SSHA256}, {SSHA512}, {PBKDF2-SHA256}, {CRYPT} sha512-crypt, {ARGON2}, sambaNTPassword";

/// Why a directory value cannot be imported.
///
/// `scheme` fields name what was seen (`"{MD5}"`, `"{CRYPT} $1$ (md5-crypt)"`,
/// `"sambaNTPassword"`), never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashFormatError {
    /// The value is empty.
    #[error(
        "{attribute} is empty, so there is no password hash to import; the user keeps signing in through federation or pass-through authentication"
    )]
    Empty {
        /// `userPassword` or `sambaNTPassword`.
        attribute: &'static str,
    },
    /// The value is longer than [`crate::MAX_VALUE_LEN`].
    #[error(
        "{attribute} value is {len} bytes, over Cutover's limit of {max} bytes, so it is not imported; the user keeps signing in through federation or pass-through authentication"
    )]
    TooLong {
        /// `userPassword` or `sambaNTPassword`.
        attribute: &'static str,
        /// Length seen.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `userPassword` has no scheme tag, an unrecognised one, or `{CLEARTEXT}`: OpenLDAP treats
    /// such a value as the password itself.
    #[error(
        "userPassword holds a cleartext password (no recognised {{SCHEME}} tag; OpenLDAP compares such values as plain text), which Cutover never imports; hash it in the directory (e.g. {{SSHA512}} or {{ARGON2}}) and resync; until then the user keeps signing in through federation or pass-through authentication"
    )]
    CleartextPassword,
    /// A known scheme Cutover does not import.
    #[error(
        "userPassword uses {scheme}, which Cutover does not import (supported: {supported}); the user keeps signing in through federation or pass-through authentication",
        supported = SUPPORTED
    )]
    UnsupportedScheme {
        /// The scheme seen, e.g. `{MD5}` or `{CRYPT} $y$ (yescrypt)`.
        scheme: String,
    },
    /// The value claims a supported scheme but does not follow its format.
    #[error(
        "{scheme} value is malformed ({reason}), so it is not imported; fix or reset the password in the directory; until then the user keeps signing in through federation or pass-through authentication"
    )]
    Malformed {
        /// The scheme seen.
        scheme: String,
        /// What is wrong, in fixed words and numbers.
        reason: String,
    },
    /// The value asks for more work or memory than Cutover allows per sign-in.
    #[error(
        "{scheme} value asks for {what} {value}, over Cutover's limit of {limit}, so it is not imported (each sign-in would recompute it); rehash the password with a lower cost; until then the user keeps signing in through federation or pass-through authentication"
    )]
    CostTooHigh {
        /// The scheme seen.
        scheme: String,
        /// Which parameter, e.g. `"PBKDF2 iterations"`.
        what: &'static str,
        /// The value asked for.
        value: u64,
        /// The limit.
        limit: u64,
    },
}

impl HashFormatError {
    /// A stable camelCase code for reports and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty",
            Self::TooLong { .. } => "tooLong",
            Self::CleartextPassword => "cleartextPassword",
            Self::UnsupportedScheme { .. } => "unsupportedScheme",
            Self::Malformed { .. } => "malformed",
            Self::CostTooHigh { .. } => "costTooHigh",
        }
    }

    /// The scheme (or attribute) the error is about, when there is one.
    pub fn scheme(&self) -> Option<&str> {
        match self {
            Self::Empty { attribute } | Self::TooLong { attribute, .. } => Some(attribute),
            Self::CleartextPassword => None,
            Self::UnsupportedScheme { scheme }
            | Self::Malformed { scheme, .. }
            | Self::CostTooHigh { scheme, .. } => Some(scheme),
        }
    }
}

/// Why a stored [`crate::WrappedHash`] cannot be checked against a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The stored scheme parameters are outside what this version evaluates (limits lowered,
    /// store tampered with, or written by another version).
    #[error(
        "stored {scheme} hash parameters can no longer be evaluated ({reason}); resync the user's password hash"
    )]
    UnusableParams {
        /// The stored scheme.
        scheme: Scheme,
        /// What is wrong, in fixed words and numbers.
        reason: String,
    },
    /// The stored wrap's iteration count is outside `1..=MAX_WRAP_ITERATIONS`.
    #[error(
        "stored wrap iteration count {iterations} is outside 1..={max}; resync the user's password hash"
    )]
    UnusableWrap {
        /// Iterations stored.
        iterations: u32,
        /// The limit.
        max: u32,
    },
    /// The typed password is longer than [`crate::MAX_PASSWORD_LEN`].
    #[error("password is {len} bytes, over the limit of {max} bytes")]
    PasswordTooLong {
        /// Length typed.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl VerifyError {
    /// A stable camelCase code for reports and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnusableParams { .. } => "unusableParams",
            Self::UnusableWrap { .. } => "unusableWrap",
            Self::PasswordTooLong { .. } => "passwordTooLong",
        }
    }
}
