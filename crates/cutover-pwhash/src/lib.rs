//! The vocabulary of on-prem password hashes for password hash sync.
//!
//! A sync server reads the password hashes an OpenLDAP directory exposes (one value of
//! `userPassword`, or `sambaNTPassword`) and sends Cutover a *salted one-way wrap* of each hash,
//! never the hash itself. At sign-in Cutover recomputes the on-prem hash from the typed password
//! with the same scheme and parameters, wraps it the same way and compares in constant time.
//!
//! This crate is pure: no IO, no clock, no randomness (wrap salts are arguments), no async.
//!
//! * [`parse_user_password`] / [`parse_nt_hash`] turn a directory value into an [`OnPremHash`],
//!   refusing cleartext, unsupported schemes and parameters whose cost a hostile directory could
//!   use to make every sign-in burn seconds or gigabytes (see the `MAX_*` constants).
//! * [`wrap`] turns an [`OnPremHash`] into a [`WrappedHash`]: PBKDF2-HMAC-SHA256 over the
//!   hash's canonical bytes with a caller-supplied salt and [`WRAP_ITERATIONS`].
//! * [`same_hash`] tells whether a freshly read hash is the one already wrapped (change
//!   detection); [`verify`] checks a typed password against a [`WrappedHash`].
//!
//! Canonical bytes are the raw digest for every scheme (for `{SSHA*}` the hash part without
//! the salt, for `{PBKDF2-SHA256}` the derived key, for sha512-crypt the 64 decoded digest bytes,
//! for `{ARGON2}` the raw output), except the NT hash, whose canonical form is the UTF-16LE
//! encoding of its upper-case hexadecimal string (the transform other hash-sync products use).
#![forbid(unsafe_code)]

mod crypt_b64;
mod error;
mod hash;
mod limits;
mod parse;
mod serde_b64;
mod wrap;

#[cfg(test)]
mod tests;

pub use error::{HashFormatError, VerifyError};
pub use hash::{Argon2Params, Argon2Variant, OnPremHash, Scheme, SchemeParams};
pub use limits::{
    CRYPT_ROUNDS_DEFAULT, CRYPT_ROUNDS_MAX, CRYPT_ROUNDS_MIN, MAX_ARGON2_MEMORY_KIB,
    MAX_ARGON2_OUTPUT_LEN, MAX_ARGON2_PARALLELISM, MAX_ARGON2_TIME_COST, MAX_CRYPT_ROUNDS,
    MAX_PASSWORD_LEN, MAX_PBKDF2_ITERATIONS, MAX_PBKDF2_KEY_LEN, MAX_SALT_LEN, MAX_VALUE_LEN,
    MAX_WRAP_ITERATIONS, MIN_PBKDF2_KEY_LEN,
};
pub use parse::{parse_nt_hash, parse_user_password};
pub use wrap::{WRAP_ITERATIONS, WRAP_LEN, WRAP_SALT_LEN, WrappedHash, same_hash, verify, wrap};
