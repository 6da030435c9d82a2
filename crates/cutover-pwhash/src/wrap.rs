//! The salted one-way wrap Cutover stores instead of the on-prem hash.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::VerifyError;
use crate::hash::{OnPremHash, Scheme, SchemeParams};
use crate::limits::MAX_WRAP_ITERATIONS;

/// Length of the wrap salt, in bytes.
pub const WRAP_SALT_LEN: usize = 10;

/// PBKDF2 iterations [`wrap`] uses.
pub const WRAP_ITERATIONS: u32 = 1000;

/// Length of the wrap, in bytes.
pub const WRAP_LEN: usize = 32;

/// What Cutover stores for a synced password hash: the scheme and parameters to recompute the
/// on-prem digest from a typed password, and PBKDF2-HMAC-SHA256 of that digest's canonical
/// bytes. `Debug` never prints `wrap`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrappedHash {
    /// On-prem scheme.
    pub scheme: Scheme,
    /// On-prem parameters.
    pub params: SchemeParams,
    /// Wrap salt.
    #[serde(with = "crate::serde_b64::array")]
    pub salt: [u8; WRAP_SALT_LEN],
    /// Wrap PBKDF2 iterations.
    pub iterations: u32,
    /// PBKDF2-HMAC-SHA256(canonical bytes, salt, iterations).
    #[serde(with = "crate::serde_b64::array")]
    pub wrap: [u8; WRAP_LEN],
}

impl fmt::Debug for WrappedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedHash")
            .field("scheme", &self.scheme)
            .field("params", &self.params)
            .field("salt", &self.salt)
            .field("iterations", &self.iterations)
            .field("wrap", &"<redacted>")
            .finish()
    }
}

fn wrap_bytes(hash: &OnPremHash, salt: &[u8; WRAP_SALT_LEN], iterations: u32) -> [u8; WRAP_LEN] {
    let mut out = [0u8; WRAP_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(&hash.canonical_bytes(), salt, iterations, &mut out);
    out
}

fn wrap_iterations_usable(iterations: u32) -> bool {
    (1..=MAX_WRAP_ITERATIONS).contains(&iterations)
}

/// Wraps `hash` one-way with `salt` (fresh random bytes from the caller) and
/// [`WRAP_ITERATIONS`].
pub fn wrap(hash: &OnPremHash, salt: [u8; WRAP_SALT_LEN]) -> WrappedHash {
    WrappedHash {
        scheme: hash.scheme,
        params: hash.params.clone(),
        salt,
        iterations: WRAP_ITERATIONS,
        wrap: wrap_bytes(hash, &salt, WRAP_ITERATIONS),
    }
}

/// Whether `hash`, freshly read from the directory, is the hash `stored` wraps: same scheme,
/// same parameters and, re-wrapped with `stored`'s salt and iterations, the same wrap (compared
/// in constant time). For change detection; `false` too when `stored` is unusable.
pub fn same_hash(hash: &OnPremHash, stored: &WrappedHash) -> bool {
    if hash.scheme != stored.scheme
        || hash.params != stored.params
        || !wrap_iterations_usable(stored.iterations)
    {
        return false;
    }
    let fresh = wrap_bytes(hash, &stored.salt, stored.iterations);
    bool::from(fresh.ct_eq(&stored.wrap))
}

/// Checks a typed password against `stored`: recomputes the on-prem digest with the stored
/// scheme and parameters, wraps it with the stored salt and iterations and compares in
/// constant time.
///
/// Errors when `stored` cannot be evaluated (parameters over today's limits or inconsistent
/// with the scheme, iterations out of range) or the password is over
/// [`crate::MAX_PASSWORD_LEN`]; a wrong password is `Ok(false)`.
pub fn verify(password: &str, stored: &WrappedHash) -> Result<bool, VerifyError> {
    if !wrap_iterations_usable(stored.iterations) {
        return Err(VerifyError::UnusableWrap {
            iterations: stored.iterations,
            max: MAX_WRAP_ITERATIONS,
        });
    }
    let hash = OnPremHash::compute(password, stored.scheme, stored.params.clone())?;
    let fresh = wrap_bytes(&hash, &stored.salt, stored.iterations);
    Ok(bool::from(fresh.ct_eq(&stored.wrap)))
}
