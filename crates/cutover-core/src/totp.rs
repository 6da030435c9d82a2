//! TOTP second factor (RFC 6238 over RFC 4226's HOTP): code computation, the verification rules
//! (skew, replay, attempt limit), the `otpauth://` enrolment URI and base32 for secrets.
//!
//! Every function here is pure. The secret, the current time and the previous [`TotpState`] are
//! arguments; [`verify`] returns the state the caller must store next. The store must run
//! [`verify`] on the user's locked row (as it does for lockout), or two parallel submissions of
//! the same code could both be accepted.
//!
//! Secrets are taken as `&[u8]` and never stored in a type here, so no `Debug` can print one;
//! no error message contains input.

use hmac::digest::{Digest, Key, KeyInit};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::Timestamp;

/// Length of the secrets Cutover generates: 160 bits, RFC 4226 §4's recommendation.
pub const SECRET_BYTES: usize = 20;
/// Shortest secret accepted: RFC 4226 §4's minimum of 128 bits.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest secret accepted (the SHA-512 test vectors use 64 bytes).
pub const MAX_SECRET_BYTES: usize = 64;
/// Steps accepted on either side of the current one, for clock drift and typing time.
pub const ALLOWED_SKEW_STEPS: u64 = 1;
/// Refused attempts within [`FAILED_ATTEMPT_WINDOW_SECS`] after which attempts are not checked.
pub const MAX_FAILED_ATTEMPTS: usize = 5;
/// How long a refused attempt counts against [`MAX_FAILED_ATTEMPTS`].
pub const FAILED_ATTEMPT_WINDOW_SECS: i64 = 300;
/// How long a started enrolment waits for its first code.
pub const ENROLMENT_TTL_SECS: i64 = 600;
/// The step length when none is chosen (RFC 6238 §5.2).
pub const DEFAULT_PERIOD_SECS: u32 = 30;
/// Bounds of the step length an enrolment may use.
pub const MIN_PERIOD_SECS: u32 = 15;
pub const MAX_PERIOD_SECS: u32 = 120;
/// Decimal digits of a 31-bit truncated value: the most a code can meaningfully have.
const MAX_CODE_DIGITS: u32 = 10;

/// The HMAC hash (RFC 6238 §1.2 allows SHA-1, SHA-256 and SHA-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TotpAlgorithm {
    /// What every authenticator app supports; the default.
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl TotpAlgorithm {
    /// The name in an `otpauth://` URI's `algorithm` parameter.
    pub const fn uri_name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }
}

/// How codes are computed for one enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TotpParams {
    pub algorithm: TotpAlgorithm,
    /// Code length: 6 or 8.
    pub digits: u32,
    /// Step length in seconds.
    pub period_secs: u32,
}

impl Default for TotpParams {
    fn default() -> Self {
        Self {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period_secs: DEFAULT_PERIOD_SECS,
        }
    }
}

impl TotpParams {
    /// Check the parameters on their own; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.digits, 6 | 8) {
            return Err(format!("digits must be 6 or 8, got {}", self.digits));
        }
        if !(MIN_PERIOD_SECS..=MAX_PERIOD_SECS).contains(&self.period_secs) {
            return Err(format!(
                "periodSecs must be between {MIN_PERIOD_SECS} and {MAX_PERIOD_SECS}, got {}",
                self.period_secs
            ));
        }
        Ok(())
    }
}

/// Check a secret's length (never its value: the message holds no byte of it).
pub fn check_secret(secret: &[u8]) -> Result<(), String> {
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&secret.len()) {
        return Err(format!(
            "secret must be between {MIN_SECRET_BYTES} and {MAX_SECRET_BYTES} bytes, got {}",
            secret.len()
        ));
    }
    Ok(())
}

/// Whether an enrolment started at `started` can no longer be confirmed at `now`.
pub fn enrolment_expired(started: Timestamp, now: Timestamp) -> bool {
    now.secs_since(started) >= ENROLMENT_TTL_SECS
}

/// HMAC of `message` under `secret`, built from a block-sized key so that construction cannot
/// fail: RFC 2104 §2 pads a key up to the block size with zeros and hashes a longer one first,
/// which is what the `hmac` crate's fallible `new_from_slice` does too.
fn hmac_of<M, D>(secret: &[u8], message: &[u8]) -> Vec<u8>
where
    M: Mac + KeyInit,
    D: Digest,
{
    let mut key = Key::<M>::default();
    let hashed;
    let material: &[u8] = if secret.len() > key.len() {
        hashed = D::digest(secret);
        &hashed
    } else {
        secret
    };
    for (slot, byte) in key.iter_mut().zip(material) {
        *slot = *byte;
    }
    let mut mac = <M as KeyInit>::new(&key);
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The HOTP value for `counter` (RFC 4226 §5.3: dynamic truncation, then modulo 10^digits).
///
/// Digits above 10 give the whole 31-bit value, as a modulus beyond it changes nothing.
pub fn hotp(secret: &[u8], counter: u64, params: TotpParams) -> u32 {
    let message = counter.to_be_bytes();
    let mac = match params.algorithm {
        TotpAlgorithm::Sha1 => hmac_of::<Hmac<Sha1>, Sha1>(secret, &message),
        TotpAlgorithm::Sha256 => hmac_of::<Hmac<Sha256>, Sha256>(secret, &message),
        TotpAlgorithm::Sha512 => hmac_of::<Hmac<Sha512>, Sha512>(secret, &message),
    };
    // The low four bits of the last byte pick where the four bytes are read; every HMAC here is
    // at least 20 bytes long, so the read never runs short (and iterating cannot panic if it did).
    let offset = mac.last().map_or(0, |b| usize::from(b & 0x0f));
    let binary = mac
        .iter()
        .skip(offset)
        .take(4)
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
        & 0x7fff_ffff;
    let modulus = 10u64.pow(params.digits.min(MAX_CODE_DIGITS));
    u32::try_from(u64::from(binary) % modulus).unwrap_or(binary)
}

/// The step (RFC 6238's T) containing `unix_secs`; times before the epoch fall in step 0.
fn step_at(unix_secs: i64, period_secs: u32) -> u64 {
    let period = i64::from(period_secs.max(1));
    u64::try_from(unix_secs.div_euclid(period)).unwrap_or(0)
}

/// The code for one step, zero-padded to `digits` (at most 10).
fn code_for_step(secret: &[u8], step: u64, params: TotpParams) -> String {
    let width = params.digits.min(MAX_CODE_DIGITS) as usize;
    format!("{:0width$}", hotp(secret, step, params))
}

/// The code an authenticator shows at `unix_secs`, zero-padded to `digits`.
pub fn code_at(secret: &[u8], params: TotpParams, unix_secs: i64) -> String {
    code_for_step(secret, step_at(unix_secs, params.period_secs), params)
}

/// What [`verify`] remembers between attempts, per enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TotpState {
    /// The step of the last accepted code: it and every earlier step are spent.
    pub last_step: Option<u64>,
    /// Unix seconds of the refused attempts still inside the window.
    pub failures: Vec<i64>,
}

/// The answer to one typed code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum TotpCheck {
    /// The code is right and fresh; `step` is now spent.
    Accepted { step: u64 },
    /// No step in the skew window has this code.
    Invalid,
    /// The code is right for a step that is spent (used, or earlier than one used).
    Replayed,
    /// Too many refused attempts in the window: not checked. Try again after `retry_after_secs`.
    TooManyAttempts { retry_after_secs: i64 },
    /// The input is not `digits` decimal digits (spaces aside), or the enrolment itself is
    /// unusable (params or secret outside their limits; nothing the user types can pass).
    Malformed,
}

/// The typed code with spaces removed, if it is exactly `digits` ASCII digits.
///
/// Spaces anywhere are dropped, not just at the ends: apps show "123 456" and people type what
/// they see. Anything else (letters, other scripts' digits, signs) makes the input malformed.
fn normalise_code(typed: &str, digits: u32) -> Option<String> {
    let wanted = usize::try_from(digits).ok()?;
    let mut code = String::with_capacity(wanted);
    for c in typed.chars().filter(|c| !c.is_whitespace()) {
        if !c.is_ascii_digit() || code.len() == wanted {
            return None;
        }
        code.push(c);
    }
    (code.len() == wanted).then_some(code)
}

/// Check a typed code at `now` against the enrolment's `secret`, `params` and `state`; returns
/// the state to store and the answer.
///
/// - Refused attempts older than [`FAILED_ATTEMPT_WINDOW_SECS`] are forgotten. With
///   [`MAX_FAILED_ATTEMPTS`] still inside it, the attempt is refused unchecked (and not counted,
///   so the refusal ends when the oldest of them leaves the window).
/// - Codes of the steps within [`ALLOWED_SKEW_STEPS`] of now are compared in constant time, all
///   of them, whatever matches.
/// - A code for a step at or before `last_step` is [`TotpCheck::Replayed`]: each code passes
///   once, and once a later code was used the earlier ones are spent too.
/// - Every attempt that is not accepted counts as a failure, malformed and replayed ones
///   included: the limit bounds what anyone can submit per window whatever its shape, so no
///   kind of input is free to send. (The shape of a code is public, so a form can check it
///   before submitting and spare an honest typo.) An unusable enrolment is the exception: it is
///   not the user's attempt that failed.
/// - Acceptance clears the failures and spends the step.
pub fn verify(
    secret: &[u8],
    params: TotpParams,
    typed: &str,
    state: &TotpState,
    now: Timestamp,
) -> (TotpState, TotpCheck) {
    let now_secs = now.secs();
    let mut next = TotpState {
        last_step: state.last_step,
        failures: state
            .failures
            .iter()
            .copied()
            .filter(|at| now_secs.saturating_sub(*at) < FAILED_ATTEMPT_WINDOW_SECS)
            .collect(),
    };

    if next.failures.len() >= MAX_FAILED_ATTEMPTS {
        // Attempts resume once fewer than the maximum remain in the window, i.e. when the
        // failure at this index (counting from the oldest) leaves it.
        let mut sorted = next.failures.clone();
        sorted.sort_unstable();
        let gate = sorted
            .get(sorted.len() - MAX_FAILED_ATTEMPTS)
            .copied()
            .unwrap_or(now_secs);
        let retry_after_secs = gate
            .saturating_add(FAILED_ATTEMPT_WINDOW_SECS)
            .saturating_sub(now_secs)
            .max(1);
        return (next, TotpCheck::TooManyAttempts { retry_after_secs });
    }

    if params.validate().is_err() || check_secret(secret).is_err() {
        return (next, TotpCheck::Malformed);
    }

    let Some(code) = normalise_code(typed, params.digits) else {
        next.failures.push(now_secs);
        return (next, TotpCheck::Malformed);
    };

    let current = step_at(now_secs, params.period_secs);
    let spent = state.last_step;
    let mut any_match = Choice::from(0);
    let mut fresh_match = Choice::from(0);
    let mut accepted_step = 0u64;
    // Latest first, so that when (rarely) two candidates share a code the earliest fresh step
    // wins and the fewest future codes are spent.
    let first = current.saturating_sub(ALLOWED_SKEW_STEPS);
    let last = current.saturating_add(ALLOWED_SKEW_STEPS);
    for step in (first..=last).rev() {
        let expected = code_for_step(secret, step, params);
        let matches = expected.as_bytes().ct_eq(code.as_bytes());
        // Whether a step is spent is not secret; only `matches` is.
        let fresh = Choice::from(u8::from(spent.is_none_or(|s| step > s)));
        let take = matches & fresh;
        accepted_step = u64::conditional_select(&accepted_step, &step, take);
        any_match |= matches;
        fresh_match |= take;
    }

    if bool::from(fresh_match) {
        next.failures.clear();
        next.last_step = Some(accepted_step);
        return (
            next,
            TotpCheck::Accepted {
                step: accepted_step,
            },
        );
    }
    next.failures.push(now_secs);
    let check = if bool::from(any_match) {
        TotpCheck::Replayed
    } else {
        TotpCheck::Invalid
    };
    (next, check)
}

/// The `otpauth://totp/` URI an authenticator app enrols from (as a QR code or a link).
///
/// Issuer and account are percent-encoded (a space as `%20`, which apps read, not `+`); the
/// label is `issuer:account`, or the account alone when the issuer is empty.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8], params: TotpParams) -> String {
    let issuer = percent_encode(issuer);
    let account = percent_encode(account);
    let label = if issuer.is_empty() {
        account
    } else {
        format!("{issuer}:{account}")
    };
    let mut uri = format!("otpauth://totp/{label}?secret={}", base32_encode(secret));
    if !issuer.is_empty() {
        uri.push_str("&issuer=");
        uri.push_str(&issuer);
    }
    uri.push_str(&format!(
        "&algorithm={}&digits={}&period={}",
        params.algorithm.uri_name(),
        params.digits,
        params.period_secs
    ));
    uri
}

/// Percent-encode everything but `A–Z a–z 0–9 * - . _`. The form encoder writes a space as
/// `+` (and a literal `+` as `%2B`), so each `+` piece it yields is a space.
fn percent_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .map(|piece| if piece == "+" { "%20" } else { piece })
        .collect()
}

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 §6 base32, upper case, without padding (what `otpauth://` URIs carry).
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer = 0u16;
    let mut bits = 0u32;
    for byte in bytes {
        buffer = (buffer << 8) | u16::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(base32_char(buffer >> bits));
        }
        // Keep only the bits not yet written (fewer than 5), so the buffer never overflows.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(base32_char(buffer << (5 - bits)));
    }
    out
}

fn base32_char(index: u16) -> char {
    BASE32_ALPHABET
        .get(usize::from(index & 0x1f))
        .map_or('A', |b| char::from(*b))
}

/// Why a base32 text was refused; never contains the text (it is usually a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Base32Error {
    #[error("character {position} is not base32")]
    InvalidCharacter { position: usize },
    #[error("base32 text cannot have this length")]
    InvalidLength,
    #[error("base32 text has non-zero bits after its last byte")]
    NonZeroPadding,
}

/// Decode RFC 4648 base32: either case, spaces anywhere, `=` padding at the end or none.
///
/// Refused: any other character, a length no encoding produces (1, 3 or 6 characters in the
/// last group) and unused trailing bits that are not zero, so each byte string has exactly one
/// accepted spelling (apart from case, spaces and padding) and a mistyped last character is
/// caught more often.
pub fn base32_decode(text: &str) -> Result<Vec<u8>, Base32Error> {
    let body = text.trim_end_matches(|c: char| c == '=' || c.is_whitespace());
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let mut buffer = 0u16;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    for (position, c) in body.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let value = match c.to_ascii_uppercase() {
            upper @ 'A'..='Z' => u16::from(upper as u8 - b'A'),
            digit @ '2'..='7' => u16::from(digit as u8 - b'2') + 26,
            _ => return Err(Base32Error::InvalidCharacter { position }),
        };
        symbols += 1;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(Base32Error::InvalidLength);
    }
    if buffer != 0 {
        return Err(Base32Error::NonZeroPadding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHA1_SECRET: &[u8] = b"12345678901234567890";
    const SHA256_SECRET: &[u8] = b"12345678901234567890123456789012";
    const SHA512_SECRET: &[u8] =
        b"1234567890123456789012345678901234567890123456789012345678901234";

    fn params(algorithm: TotpAlgorithm, digits: u32) -> TotpParams {
        TotpParams {
            algorithm,
            digits,
            period_secs: 30,
        }
    }

    #[test]
    fn rfc6238_appendix_b_vectors() {
        // (T, SHA1, SHA256, SHA512), 8 digits, 30-second steps.
        let table = [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in table {
            let p1 = params(TotpAlgorithm::Sha1, 8);
            let p256 = params(TotpAlgorithm::Sha256, 8);
            let p512 = params(TotpAlgorithm::Sha512, 8);
            assert_eq!(code_at(SHA1_SECRET, p1, t), sha1, "SHA1 at {t}");
            assert_eq!(code_at(SHA256_SECRET, p256, t), sha256, "SHA256 at {t}");
            assert_eq!(code_at(SHA512_SECRET, p512, t), sha512, "SHA512 at {t}");
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_values() {
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, value) in (0u64..).zip(expected) {
            assert_eq!(
                hotp(SHA1_SECRET, counter, TotpParams::default()),
                value,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn block_key_hmac_matches_the_crate_for_every_key_length() {
        for len in 0..200usize {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let message = 42u64.to_be_bytes();
            let mut reference = <Hmac<Sha512> as KeyInit>::new_from_slice(&key).unwrap();
            reference.update(&message);
            assert_eq!(
                hmac_of::<Hmac<Sha512>, Sha512>(&key, &message),
                reference.finalize().into_bytes().to_vec(),
                "SHA512 key of {len} bytes"
            );
            let mut reference = <Hmac<Sha1> as KeyInit>::new_from_slice(&key).unwrap();
            reference.update(&message);
            assert_eq!(
                hmac_of::<Hmac<Sha1>, Sha1>(&key, &message),
                reference.finalize().into_bytes().to_vec(),
                "SHA1 key of {len} bytes"
            );
        }
    }

    #[test]
    fn codes_are_zero_padded_and_odd_params_do_not_panic() {
        // RFC 6238 at T=1111111109 with SHA1 starts with a zero.
        assert_eq!(
            code_at(SHA1_SECRET, params(TotpAlgorithm::Sha1, 8), 1_111_111_109).len(),
            8
        );
        for digits in [0, 1, 9, 10, 11, u32::MAX] {
            for period_secs in [0, 1, u32::MAX] {
                let p = TotpParams {
                    algorithm: TotpAlgorithm::Sha1,
                    digits,
                    period_secs,
                };
                let code = code_at(SHA1_SECRET, p, i64::MIN);
                assert!(code.len() <= 10, "{code}");
                let _ = code_at(&[], p, i64::MAX);
                let (_, check) = verify(&[], p, "123456", &TotpState::default(), Timestamp(0));
                assert_eq!(check, TotpCheck::Malformed);
            }
        }
    }

    #[test]
    fn params_validation_edges() {
        let ok = TotpParams::default();
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.algorithm, TotpAlgorithm::Sha1);
        assert_eq!((ok.digits, ok.period_secs), (6, 30));
        for (digits, valid) in [(5, false), (6, true), (7, false), (8, true), (9, false)] {
            let p = TotpParams { digits, ..ok };
            assert_eq!(p.validate().is_ok(), valid, "digits {digits}");
            if !valid {
                assert!(p.validate().unwrap_err().contains("digits"));
            }
        }
        for (period_secs, valid) in [(14, false), (15, true), (120, true), (121, false)] {
            let p = TotpParams { period_secs, ..ok };
            assert_eq!(p.validate().is_ok(), valid, "period {period_secs}");
            if !valid {
                assert!(p.validate().unwrap_err().contains("periodSecs"));
            }
        }
    }

    #[test]
    fn params_and_state_serialise_in_camel_case() {
        let p = TotpParams {
            algorithm: TotpAlgorithm::Sha256,
            digits: 8,
            period_secs: 60,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"algorithm":"sha256","digits":8,"periodSecs":60}"#);
        assert_eq!(serde_json::from_str::<TotpParams>(&json).unwrap(), p);
        assert!(
            serde_json::from_str::<TotpParams>(
                r#"{"algorithm":"sha1","digits":6,"periodSecs":30,"x":1}"#
            )
            .is_err()
        );
        let state = TotpState {
            last_step: Some(7),
            failures: vec![1, 2],
        };
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, r#"{"lastStep":7,"failures":[1,2]}"#);
        assert_eq!(
            serde_json::from_str::<TotpState>("{}").unwrap(),
            TotpState::default()
        );
    }

    #[test]
    fn secret_length_limits() {
        assert!(check_secret(&[0; MIN_SECRET_BYTES - 1]).is_err());
        assert!(check_secret(&[0; MIN_SECRET_BYTES]).is_ok());
        assert!(check_secret(&[0; SECRET_BYTES]).is_ok());
        assert!(check_secret(&[0; MAX_SECRET_BYTES]).is_ok());
        assert!(check_secret(&[0; MAX_SECRET_BYTES + 1]).is_err());
        // A 160-bit secret is 32 base32 characters, as apps expect.
        assert_eq!(base32_encode(&[0xab; SECRET_BYTES]).len(), 32);
    }

    #[test]
    fn enrolment_expires_at_its_ttl() {
        let started = Timestamp::from_secs(1_000);
        assert!(!enrolment_expired(started, started));
        assert!(!enrolment_expired(
            started,
            started.plus_secs(ENROLMENT_TTL_SECS - 1)
        ));
        assert!(enrolment_expired(
            started,
            started.plus_secs(ENROLMENT_TTL_SECS)
        ));
    }

    // --- verify ---------------------------------------------------------------------------

    /// 2009-02-13T23:31:30Z, the start of a step.
    const NOW: i64 = 1_234_567_890;

    fn p() -> TotpParams {
        TotpParams::default()
    }

    fn code(unix_secs: i64) -> String {
        code_at(SHA1_SECRET, p(), unix_secs)
    }

    fn at(unix_secs: i64) -> Timestamp {
        Timestamp::from_secs(unix_secs)
    }

    /// A well-formed code that matches no step within the skew of `unix_secs`.
    fn wrong_code(unix_secs: i64) -> String {
        let candidates: Vec<String> = (-1..=1).map(|k| code(unix_secs + 30 * k)).collect();
        (0..1_000_000u32)
            .map(|n| format!("{n:06}"))
            .find(|c| !candidates.contains(c))
            .unwrap()
    }

    fn check(typed: &str, state: &TotpState, now: i64) -> (TotpState, TotpCheck) {
        verify(SHA1_SECRET, p(), typed, state, at(now))
    }

    #[test]
    fn current_code_is_accepted_and_spends_its_step() {
        let step = (NOW / 30) as u64;
        let (state, result) = check(&code(NOW), &TotpState::default(), NOW);
        assert_eq!(result, TotpCheck::Accepted { step });
        assert_eq!(state.last_step, Some(step));
        assert!(state.failures.is_empty());
    }

    #[test]
    fn one_step_of_skew_either_way_but_not_two() {
        let step = (NOW / 30) as u64;
        let fresh = TotpState::default();
        assert_eq!(
            check(&code(NOW - 30), &fresh, NOW).1,
            TotpCheck::Accepted { step: step - 1 }
        );
        assert_eq!(
            check(&code(NOW + 30), &fresh, NOW).1,
            TotpCheck::Accepted { step: step + 1 }
        );
        // Skip the rare case where a far code equals a near one by chance.
        let near: Vec<String> = (-1..=1).map(|k| code(NOW + 30 * k)).collect();
        for far in [NOW - 60, NOW + 60] {
            assert!(!near.contains(&code(far)));
            assert_eq!(
                check(&code(far), &fresh, NOW).1,
                TotpCheck::Invalid,
                "{far}"
            );
        }
    }

    #[test]
    fn the_same_code_twice_is_a_replay() {
        let (state, first) = check(&code(NOW), &TotpState::default(), NOW);
        assert!(matches!(first, TotpCheck::Accepted { .. }));
        let (state, second) = check(&code(NOW), &state, NOW + 5);
        assert_eq!(second, TotpCheck::Replayed);
        assert_eq!(
            state.failures,
            vec![NOW + 5],
            "a replay counts as a failure"
        );
    }

    #[test]
    fn an_older_step_after_a_newer_one_is_a_replay() {
        let (state, first) = check(&code(NOW + 30), &TotpState::default(), NOW);
        assert_eq!(
            first,
            TotpCheck::Accepted {
                step: (NOW / 30) as u64 + 1
            }
        );
        assert_eq!(check(&code(NOW), &state, NOW).1, TotpCheck::Replayed);
        assert_eq!(check(&code(NOW - 30), &state, NOW).1, TotpCheck::Replayed);
        // The next step after the spent one still works when its time comes.
        assert!(matches!(
            check(&code(NOW + 60), &state, NOW + 60).1,
            TotpCheck::Accepted { .. }
        ));
    }

    #[test]
    fn five_failures_refuse_the_sixth_attempt_until_the_window_passes() {
        let wrong = wrong_code(NOW);
        let mut state = TotpState::default();
        for i in 0..MAX_FAILED_ATTEMPTS as i64 {
            let (next, result) = check(&wrong, &state, NOW + i);
            assert_eq!(result, TotpCheck::Invalid);
            state = next;
        }
        assert_eq!(state.failures.len(), MAX_FAILED_ATTEMPTS);

        // Refused unchecked, even with the right code, and not counted.
        let (refused, result) = check(&code(NOW + 10), &state, NOW + 10);
        assert_eq!(
            result,
            TotpCheck::TooManyAttempts {
                retry_after_secs: FAILED_ATTEMPT_WINDOW_SECS - 10
            }
        );
        assert_eq!(refused, state);

        // One second before the oldest failure leaves the window: still refused.
        let edge = NOW + FAILED_ATTEMPT_WINDOW_SECS - 1;
        assert_eq!(
            check(&code(edge), &state, edge).1,
            TotpCheck::TooManyAttempts {
                retry_after_secs: 1
            }
        );

        // Once it has left, the right code passes and the failures are cleared.
        let later = NOW + FAILED_ATTEMPT_WINDOW_SECS;
        let (state, result) = check(&code(later), &state, later);
        assert!(matches!(result, TotpCheck::Accepted { .. }), "{result:?}");
        assert!(state.failures.is_empty());
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let state = TotpState {
            last_step: None,
            failures: std::iter::repeat_n(NOW - FAILED_ATTEMPT_WINDOW_SECS, 10)
                .chain([NOW - 1])
                .collect(),
        };
        let (next, result) = check(&wrong_code(NOW), &state, NOW);
        assert_eq!(result, TotpCheck::Invalid);
        assert_eq!(next.failures, vec![NOW - 1, NOW]);
    }

    #[test]
    fn more_failures_than_the_limit_wait_for_enough_of_them_to_leave() {
        // Seven failures (two nodes raced): the refusal ends when the third oldest leaves.
        let failures: Vec<i64> = (0..7).map(|i| NOW + i * 10).collect();
        let state = TotpState {
            last_step: None,
            failures,
        };
        let now = NOW + 100;
        assert_eq!(
            check(&code(now), &state, now).1,
            TotpCheck::TooManyAttempts {
                retry_after_secs: NOW + 20 + FAILED_ATTEMPT_WINDOW_SECS - now
            }
        );
    }

    #[test]
    fn malformed_inputs_are_refused_and_counted() {
        let malformed = [
            "",
            "   ",
            "12345",
            "1234567",
            "abcdef",
            "12a456",
            "-12345",
            "１２３４５６",
        ];
        for typed in malformed {
            let (next, result) = check(typed, &TotpState::default(), NOW);
            assert_eq!(result, TotpCheck::Malformed, "{typed:?}");
            assert_eq!(next.failures, vec![NOW], "{typed:?}");
        }
        // They use up the attempt budget like wrong codes do.
        let mut state = TotpState::default();
        for typed in malformed.iter().take(MAX_FAILED_ATTEMPTS) {
            state = check(typed, &state, NOW).0;
        }
        assert!(matches!(
            check(&code(NOW), &state, NOW).1,
            TotpCheck::TooManyAttempts { .. }
        ));
    }

    #[test]
    fn spaces_anywhere_are_ignored() {
        let right = code(NOW);
        for typed in [
            format!("{} {}", &right[..3], &right[3..]),
            format!("{} {} {}", &right[..2], &right[2..4], &right[4..]),
            format!("  {right}\t"),
        ] {
            assert!(
                matches!(
                    check(&typed, &TotpState::default(), NOW).1,
                    TotpCheck::Accepted { .. }
                ),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn an_unusable_enrolment_is_malformed_and_not_counted() {
        let bad_params = TotpParams { digits: 7, ..p() };
        let (state, result) = verify(
            SHA1_SECRET,
            bad_params,
            "1234567",
            &TotpState::default(),
            at(NOW),
        );
        assert_eq!((result, state.failures.len()), (TotpCheck::Malformed, 0));
        let short = &SHA1_SECRET[..MIN_SECRET_BYTES - 1];
        let typed = code_at(short, p(), NOW);
        let (state, result) = verify(short, p(), &typed, &TotpState::default(), at(NOW));
        assert_eq!((result, state.failures.len()), (TotpCheck::Malformed, 0));
    }

    #[test]
    fn eight_digit_sha512_enrolment_verifies() {
        let p = TotpParams {
            algorithm: TotpAlgorithm::Sha512,
            digits: 8,
            period_secs: 60,
        };
        let typed = code_at(SHA512_SECRET, p, NOW);
        let (_, result) = verify(SHA512_SECRET, p, &typed, &TotpState::default(), at(NOW));
        assert_eq!(
            result,
            TotpCheck::Accepted {
                step: (NOW / 60) as u64
            }
        );
    }

    // --- otpauth URI and base32 -----------------------------------------------------------

    #[test]
    fn otpauth_uri_encodes_label_and_issuer() {
        let uri = otpauth_uri(
            "ACME Co",
            "jane doe@example.com",
            b"foobar",
            TotpParams::default(),
        );
        assert_eq!(
            uri,
            "otpauth://totp/ACME%20Co:jane%20doe%40example.com?secret=MZXW6YTBOI\
             &issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        );
        let parsed = url::Url::parse(&uri).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert!(pairs.contains(&("issuer".into(), "ACME Co".into())));
        assert!(pairs.contains(&("secret".into(), "MZXW6YTBOI".into())));
    }

    #[test]
    fn otpauth_uri_escapes_separators_and_handles_no_issuer() {
        let p = TotpParams {
            algorithm: TotpAlgorithm::Sha256,
            digits: 8,
            period_secs: 60,
        };
        let uri = otpauth_uri("A:B&C", "x+y?#", b"f", p);
        assert_eq!(
            uri,
            "otpauth://totp/A%3AB%26C:x%2By%3F%23?secret=MY&issuer=A%3AB%26C\
             &algorithm=SHA256&digits=8&period=60"
        );
        assert_eq!(
            otpauth_uri("", "jane", b"f", TotpParams::default()),
            "otpauth://totp/jane?secret=MY&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn rfc4648_base32_vectors_without_padding() {
        let table = [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ];
        for (plain, encoded) in table {
            assert_eq!(base32_encode(plain.as_bytes()), encoded, "{plain:?}");
            assert_eq!(
                base32_decode(encoded).unwrap(),
                plain.as_bytes(),
                "{encoded:?}"
            );
        }
    }

    #[test]
    fn base32_decode_is_lenient_about_case_spaces_and_padding() {
        assert_eq!(base32_decode("mzxw 6ytb oi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("MY======").unwrap(), b"f");
        assert_eq!(base32_decode(" MZXQ==== ").unwrap(), b"fo");
    }

    #[test]
    fn base32_decode_refuses_what_no_encoder_writes() {
        assert_eq!(
            base32_decode("MZXW1"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            base32_decode("MZ=XW"),
            Err(Base32Error::InvalidCharacter { position: 2 })
        );
        assert_eq!(
            base32_decode("MZXW-6"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        assert_eq!(
            base32_decode("MZXWé"),
            Err(Base32Error::InvalidCharacter { position: 4 })
        );
        for bad_length in ["M", "MZX", "MZXW6Y", "MZXW6YTBO"] {
            assert_eq!(
                base32_decode(bad_length),
                Err(Base32Error::InvalidLength),
                "{bad_length}"
            );
        }
        // "MY" is "f"; "MZ" would leave a 1 in the unused bits.
        assert_eq!(base32_decode("MZ"), Err(Base32Error::NonZeroPadding));
        let message = base32_decode("SECRET!").unwrap_err().to_string();
        assert!(!message.contains("SECRET"), "{message}");
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let encoded = base32_encode(&bytes);
            prop_assert!(!encoded.contains('='));
            prop_assert_eq!(base32_decode(&encoded).unwrap(), bytes.clone());
            prop_assert_eq!(base32_decode(&encoded.to_ascii_lowercase()).unwrap(), bytes);
        }

        #[test]
        fn verify_never_panics(
            typed in ".{0,20}",
            now in any::<i64>(),
            last_step in proptest::option::of(any::<u64>()),
            failures in proptest::collection::vec(any::<i64>(), 0..8),
        ) {
            let state = TotpState { last_step, failures };
            let _ = verify(SHA1_SECRET, TotpParams::default(), &typed, &state, Timestamp(now));
        }
    }
}
