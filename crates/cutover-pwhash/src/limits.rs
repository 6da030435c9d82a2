//! Cost and size limits.
//!
//! The directory is not trusted: every limit here is checked when a value is parsed (and again
//! before a stored [`crate::WrappedHash`] is evaluated), so that neither a hostile directory nor
//! a tampered store can make each sign-in burn seconds of CPU or gigabytes of memory.

/// Longest accepted directory value (`userPassword` or `sambaNTPassword`), in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// Longest accepted salt of any scheme, in bytes.
pub const MAX_SALT_LEN: usize = 64;

/// Most PBKDF2 iterations a `{PBKDF2-SHA256}` value may ask for.
pub const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;

/// Shortest accepted `{PBKDF2-SHA256}` derived key, in bytes (shorter keys match too many
/// passwords to be worth importing).
pub const MIN_PBKDF2_KEY_LEN: usize = 16;

/// Longest accepted `{PBKDF2-SHA256}` derived key, in bytes (each further 32 bytes costs a whole
/// extra run of the iterations).
pub const MAX_PBKDF2_KEY_LEN: usize = 64;

/// Most sha512-crypt rounds a `{CRYPT}$6$` value may ask for (after crypt's own clamping).
pub const MAX_CRYPT_ROUNDS: u32 = 1_000_000;

/// sha512-crypt's rounds when the value has no `rounds=` part.
pub const CRYPT_ROUNDS_DEFAULT: u32 = 5_000;

/// sha512-crypt's own lower clamp: `rounds=` below this means this many.
pub const CRYPT_ROUNDS_MIN: u32 = 1_000;

/// sha512-crypt's own upper clamp: `rounds=` above this means this many.
pub const CRYPT_ROUNDS_MAX: u32 = 999_999_999;

/// Most memory an `{ARGON2}` value may ask for, in KiB (256 MiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 262_144;

/// Most argon2 passes (`t`).
pub const MAX_ARGON2_TIME_COST: u32 = 16;

/// Most argon2 lanes (`p`).
pub const MAX_ARGON2_PARALLELISM: u32 = 16;

/// Longest argon2 output, in bytes.
pub const MAX_ARGON2_OUTPUT_LEN: usize = 128;

/// Most PBKDF2 iterations a stored [`crate::WrappedHash`] may ask for.
pub const MAX_WRAP_ITERATIONS: u32 = 1_000_000;

/// Longest password [`crate::verify`] evaluates, in bytes of UTF-8 (sha512-crypt's cost grows
/// with the password's length).
pub const MAX_PASSWORD_LEN: usize = 1024;
