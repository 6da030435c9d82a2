//! Parsing directory values into [`OnPremHash`].
//!
//! Every function here takes untrusted bytes and returns an error, never panics. Errors name
//! the scheme seen and never quote the value.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::crypt_b64::{self, CRYPT_SALT_MAX};
use crate::error::HashFormatError;
use crate::hash::{
    Argon2Params, Argon2Variant, OnPremHash, ParamProblem, Scheme, SchemeParams, check_params,
};
use crate::limits::*;

const USER_PASSWORD: &str = "userPassword";
const SAMBA_NT_PASSWORD: &str = "sambaNTPassword";

/// Longest `{TAG}` name considered a scheme tag at all.
const MAX_TAG_LEN: usize = 32;

/// Scheme tags Cutover recognises but does not import (upper case). Any other tag is not a
/// scheme OpenLDAP knows either, so OpenLDAP compares the whole value as cleartext.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "SHA",
    "SHA1",
    "SHA224",
    "SHA256",
    "SHA384",
    "SHA512",
    "SSHA1",
    "SSHA224",
    "SSHA384",
    "SHA3-256",
    "SHA3-512",
    "SSHA3-256",
    "SSHA3-512",
    "MD4",
    "MD5",
    "SMD5",
    "NS-MTA-MD5",
    "APR1",
    "BSDMD5",
    "SASL",
    "KERBEROS",
    "K5KEY",
    "UNIX",
    "RADIUS",
    "PBKDF2",
    "PBKDF2-SHA1",
    "PBKDF2-SHA384",
    "PBKDF2-SHA512",
    "PBKDF2_SHA1",
    "PBKDF2_SHA256",
    "PBKDF2_SHA512",
    "BCRYPT",
    "SCRYPT",
    "TOTP1",
    "TOTP256",
    "TOTP512",
    "CRYPT-MD5",
    "CRYPT-SHA256",
    "CRYPT-SHA512",
    "CRYPT-YESCRYPT",
    "GOST_YESCRYPT",
    "AES",
    "DES",
    "3DES",
];

/// Tags that mean "this is the password itself".
const CLEARTEXT_TAGS: &[&str] = &["CLEARTEXT", "CLEAR", "PLAIN"];

/// Base64 that accepts values with or without padding and ignores non-zero trailing bits.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

fn malformed(scheme: &str, reason: impl Into<String>) -> HashFormatError {
    HashFormatError::Malformed {
        scheme: scheme.to_owned(),
        reason: reason.into(),
    }
}

/// Decodes standard base64, padded or not; with `dot_is_plus`, also OpenLDAP's "adapted"
/// base64 (`.` for `+`). Trailing `=` must be correct padding when present.
fn decode_b64(text: &[u8], dot_is_plus: bool) -> Option<Vec<u8>> {
    let mut end = text.len();
    while end > 0 && text[end - 1] == b'=' && text.len() - end < 2 {
        end -= 1;
    }
    let body = &text[..end];
    if end != text.len() && !text.len().is_multiple_of(4) {
        return None;
    }
    let body: Cow<'_, [u8]> = if dot_is_plus && body.contains(&b'.') {
        Cow::Owned(
            body.iter()
                .map(|&c| if c == b'.' { b'+' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(body)
    };
    LENIENT_B64.decode(body.as_ref()).ok()
}

/// A non-empty run of ASCII digits, saturating at `u64::MAX`.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Refuses `value` over `limit` as too costly, else narrows it.
fn within(
    scheme: Scheme,
    what: &'static str,
    value: u64,
    limit: u32,
) -> Result<u32, HashFormatError> {
    if value > u64::from(limit) {
        return Err(HashFormatError::CostTooHigh {
            scheme: scheme.tag().to_owned(),
            what,
            value,
            limit: limit.into(),
        });
    }
    u32::try_from(value).map_err(|_| malformed(scheme.tag(), "number out of range"))
}

/// Final checks shared by every scheme: limits and consistency of the parameters.
fn finish(
    scheme: Scheme,
    params: SchemeParams,
    digest: Vec<u8>,
) -> Result<OnPremHash, HashFormatError> {
    check_params(scheme, &params).map_err(|problem| match problem {
        ParamProblem::Cost { what, value, limit } => HashFormatError::CostTooHigh {
            scheme: scheme.tag().to_owned(),
            what,
            value,
            limit,
        },
        ParamProblem::Invalid(reason) => malformed(scheme.tag(), reason),
    })?;
    if digest.len() != params.output_len as usize {
        return Err(malformed(scheme.tag(), "digest length does not match"));
    }
    Ok(OnPremHash {
        scheme,
        params,
        digest,
    })
}

fn check_size(attribute: &'static str, value: &[u8]) -> Result<(), HashFormatError> {
    if value.is_empty() {
        return Err(HashFormatError::Empty { attribute });
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(HashFormatError::TooLong {
            attribute,
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Splits `{TAG}rest`; `None` when the value does not start with a plausible tag.
fn split_tag(value: &[u8]) -> Option<(String, &[u8])> {
    let inner = value.strip_prefix(b"{")?;
    let close = inner
        .iter()
        .take(MAX_TAG_LEN + 1)
        .position(|&c| c == b'}')?;
    let tag = &inner[..close];
    let plausible = !tag.is_empty()
        && tag
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !plausible {
        return None;
    }
    let tag = String::from_utf8(tag.to_ascii_uppercase()).ok()?;
    Some((tag, &inner[close + 1..]))
}

/// Parses one value of LDAP `userPassword`.
///
/// Accepts `{SSHA}`, `{SSHA256}`, `{SSHA512}`, `{PBKDF2-SHA256}`, `{CRYPT}$6$` (sha512-crypt)
/// and `{ARGON2}`, tags in any case. Refuses cleartext (untagged values, unrecognised tags,
/// `{CLEARTEXT}`), other schemes, malformed values and values over the cost limits.
pub fn parse_user_password(value: &[u8]) -> Result<OnPremHash, HashFormatError> {
    check_size(USER_PASSWORD, value)?;
    let Some((tag, rest)) = split_tag(value) else {
        return Err(HashFormatError::CleartextPassword);
    };
    match tag.as_str() {
        "SSHA" => parse_salted(Scheme::Ssha, rest),
        "SSHA256" => parse_salted(Scheme::Ssha256, rest),
        "SSHA512" => parse_salted(Scheme::Ssha512, rest),
        "PBKDF2-SHA256" => parse_pbkdf2(rest),
        "CRYPT" => parse_crypt(rest),
        "ARGON2" => parse_argon2(rest),
        t if CLEARTEXT_TAGS.contains(&t) => Err(HashFormatError::CleartextPassword),
        t if KNOWN_UNSUPPORTED.contains(&t) => Err(HashFormatError::UnsupportedScheme {
            scheme: format!("{{{t}}}"),
        }),
        _ => Err(HashFormatError::CleartextPassword),
    }
}

/// Parses `sambaNTPassword`: 32 hexadecimal characters, any case.
pub fn parse_nt_hash(value: &[u8]) -> Result<OnPremHash, HashFormatError> {
    check_size(SAMBA_NT_PASSWORD, value)?;
    if value.len() != 32 || !value.iter().all(u8::is_ascii_hexdigit) {
        return Err(malformed(
            SAMBA_NT_PASSWORD,
            "expected 32 hexadecimal characters",
        ));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    };
    let digest = value
        .chunks_exact(2)
        .map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1]))
        .collect();
    let params = SchemeParams {
        output_len: 16,
        ..SchemeParams::default()
    };
    finish(Scheme::NtHash, params, digest)
}

/// `{SSHA*}`: base64(digest || salt).
fn parse_salted(scheme: Scheme, rest: &[u8]) -> Result<OnPremHash, HashFormatError> {
    let tag = scheme.tag();
    if rest.is_empty() {
        return Err(malformed(tag, "nothing after the scheme tag"));
    }
    let raw = decode_b64(rest, false).ok_or_else(|| malformed(tag, "not valid base64"))?;
    let len = scheme.fixed_digest_len().unwrap_or_default();
    if raw.len() <= len {
        return Err(malformed(
            tag,
            format!(
                "decodes to {} bytes, expected the {len}-byte digest followed by a salt",
                raw.len()
            ),
        ));
    }
    let (digest, salt) = raw.split_at(len);
    let params = SchemeParams {
        salt: salt.to_vec(),
        output_len: len as u32,
        ..SchemeParams::default()
    };
    finish(scheme, params, digest.to_vec())
}

/// `{PBKDF2-SHA256}<iterations>$<salt>$<derived key>`, salt and key in adapted base64.
fn parse_pbkdf2(rest: &[u8]) -> Result<OnPremHash, HashFormatError> {
    let scheme = Scheme::Pbkdf2Sha256;
    let tag = scheme.tag();
    let parts: Vec<&[u8]> = rest.split(|&c| c == b'$').collect();
    let [iterations, salt, dk] = parts.as_slice() else {
        return Err(malformed(tag, "expected <iterations>$<salt>$<derived key>"));
    };
    let iterations = parse_decimal(iterations)
        .ok_or_else(|| malformed(tag, "iteration count is not a decimal number"))?;
    let iterations = within(
        scheme,
        "PBKDF2 iterations",
        iterations,
        MAX_PBKDF2_ITERATIONS,
    )?;
    let salt = decode_b64(salt, true).ok_or_else(|| malformed(tag, "salt is not valid base64"))?;
    let dk =
        decode_b64(dk, true).ok_or_else(|| malformed(tag, "derived key is not valid base64"))?;
    let params = SchemeParams {
        salt,
        iterations: Some(iterations),
        argon2: None,
        output_len: dk.len() as u32,
    };
    finish(scheme, params, dk)
}

/// Names a crypt format other than sha512-crypt, without quoting the value.
fn crypt_kind(rest: &[u8]) -> &'static str {
    match rest.first() {
        Some(b'!' | b'*') => "locked or disabled entry ('!' or '*' prefix)",
        Some(b'_') => "_ (BSDi extended DES)",
        Some(b'$') => {
            let id = rest[1..].split(|&c| c == b'$').next().unwrap_or_default();
            match id {
                b"1" => "$1$ (md5-crypt)",
                b"2" => "$2$ (bcrypt)",
                b"2a" => "$2a$ (bcrypt)",
                b"2b" => "$2b$ (bcrypt)",
                b"2x" => "$2x$ (bcrypt)",
                b"2y" => "$2y$ (bcrypt)",
                b"3" => "$3$ (NT-hash crypt)",
                b"5" => "$5$ (sha256-crypt)",
                b"7" => "$7$ (scrypt)",
                b"y" => "$y$ (yescrypt)",
                b"gy" => "$gy$ (gost-yescrypt)",
                b"md5" => "$md5$ (Sun md5-crypt)",
                b"sha1" => "$sha1$ (sha1-crypt)",
                b"argon2i" | b"argon2d" | b"argon2id" => "argon2 in crypt form (use {ARGON2})",
                _ => "with an unrecognised crypt id",
            }
        }
        _ if rest.len() == 13 && rest.iter().all(|c| crypt_b64::ALPHABET.contains(c)) => {
            "traditional DES crypt"
        }
        _ => "in an unrecognised crypt format",
    }
}

/// `{CRYPT}...`: sha512-crypt only.
fn parse_crypt(rest: &[u8]) -> Result<OnPremHash, HashFormatError> {
    if rest.is_empty() {
        return Err(malformed("{CRYPT}", "nothing after the scheme tag"));
    }
    match rest.strip_prefix(b"$6$") {
        Some(after) => parse_sha512_crypt(after),
        None => Err(HashFormatError::UnsupportedScheme {
            scheme: format!("{{CRYPT}} {}", crypt_kind(rest)),
        }),
    }
}

/// After `$6$`: `[rounds=N$]salt$hash`.
fn parse_sha512_crypt(rest: &[u8]) -> Result<OnPremHash, HashFormatError> {
    let scheme = Scheme::Sha512Crypt;
    let tag = scheme.tag();
    let (rounds, rest) = match rest.strip_prefix(b"rounds=") {
        Some(after) => {
            let end = after
                .iter()
                .position(|&c| c == b'$')
                .ok_or_else(|| malformed(tag, "rounds= is not followed by '$'"))?;
            let rounds = parse_decimal(&after[..end])
                .ok_or_else(|| malformed(tag, "rounds= is not a decimal number"))?;
            // crypt's own rule: out-of-range rounds are clamped, not refused.
            let rounds = rounds.clamp(CRYPT_ROUNDS_MIN.into(), CRYPT_ROUNDS_MAX.into());
            (rounds, &after[end + 1..])
        }
        None => (u64::from(CRYPT_ROUNDS_DEFAULT), rest),
    };
    let rounds = within(scheme, "sha512-crypt rounds", rounds, MAX_CRYPT_ROUNDS)?;
    let split = rest
        .iter()
        .position(|&c| c == b'$')
        .ok_or_else(|| malformed(tag, "no '$' between salt and hash"))?;
    let (salt, hash) = (&rest[..split], &rest[split + 1..]);
    if salt.len() > CRYPT_SALT_MAX {
        return Err(malformed(
            tag,
            format!(
                "salt is {} characters; crypt uses at most {CRYPT_SALT_MAX}, so this value can never match",
                salt.len()
            ),
        ));
    }
    if salt.contains(&0) {
        return Err(malformed(tag, "salt contains a NUL byte"));
    }
    let digest = crypt_b64::decode_sha512(hash).ok_or_else(|| {
        malformed(
            tag,
            format!(
                "hash is not {} crypt-base64 characters",
                crypt_b64::SHA512_ENCODED_LEN
            ),
        )
    })?;
    let params = SchemeParams {
        salt: salt.to_vec(),
        iterations: Some(rounds),
        argon2: None,
        output_len: 64,
    };
    finish(scheme, params, digest.to_vec())
}

/// `{ARGON2}$argon2id$v=19$m=…,t=…,p=…$salt$hash` (PHC string, base64 without padding).
fn parse_argon2(rest: &[u8]) -> Result<OnPremHash, HashFormatError> {
    let scheme = Scheme::Argon2;
    let tag = scheme.tag();
    let shape = || malformed(tag, "expected $argon2id$v=19$m=…,t=…,p=…$salt$hash");
    let mut parts = rest.split(|&c| c == b'$');
    if parts.next() != Some(b"".as_slice()) {
        return Err(shape());
    }
    let variant = match parts.next().ok_or_else(shape)? {
        b"argon2i" => Argon2Variant::Argon2i,
        b"argon2d" => Argon2Variant::Argon2d,
        b"argon2id" => Argon2Variant::Argon2id,
        _ => {
            return Err(malformed(
                tag,
                "unknown argon2 variant (expected argon2i, argon2d or argon2id)",
            ));
        }
    };
    let mut field = parts.next().ok_or_else(shape)?;
    let version = match field.strip_prefix(b"v=") {
        Some(v) => {
            let v = parse_decimal(v).ok_or_else(|| malformed(tag, "v= is not a decimal number"))?;
            field = parts.next().ok_or_else(shape)?;
            u32::try_from(v).map_err(|_| malformed(tag, "unknown argon2 version"))?
        }
        // The PHC format's rule: no version means the original 0x10.
        None => 0x10,
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in field.split(|&c| c == b',') {
        let (slot, value) = if let Some(v) = pair.strip_prefix(b"m=") {
            (&mut m, v)
        } else if let Some(v) = pair.strip_prefix(b"t=") {
            (&mut t, v)
        } else if let Some(v) = pair.strip_prefix(b"p=") {
            (&mut p, v)
        } else {
            return Err(malformed(
                tag,
                "unsupported argon2 parameter (only m, t and p)",
            ));
        };
        if slot.is_some() {
            return Err(malformed(tag, "argon2 parameter given twice"));
        }
        *slot = Some(
            parse_decimal(value)
                .ok_or_else(|| malformed(tag, "argon2 parameter is not a decimal number"))?,
        );
    }
    let (Some(m), Some(t), Some(p)) = (m, t, p) else {
        return Err(malformed(
            tag,
            "missing one of the argon2 parameters m, t, p",
        ));
    };
    let memory_kib = within(scheme, "argon2 memory (KiB)", m, MAX_ARGON2_MEMORY_KIB)?;
    let time_cost = within(scheme, "argon2 time cost", t, MAX_ARGON2_TIME_COST)?;
    let parallelism = within(scheme, "argon2 parallelism", p, MAX_ARGON2_PARALLELISM)?;
    let salt = parts.next().ok_or_else(shape)?;
    let hash = parts.next().ok_or_else(shape)?;
    if parts.next().is_some() {
        return Err(shape());
    }
    let salt = decode_b64(salt, false).ok_or_else(|| malformed(tag, "salt is not valid base64"))?;
    let hash = decode_b64(hash, false).ok_or_else(|| malformed(tag, "hash is not valid base64"))?;
    let params = SchemeParams {
        salt,
        iterations: None,
        argon2: Some(Argon2Params {
            variant,
            version,
            memory_kib,
            time_cost,
            parallelism,
        }),
        output_len: hash.len() as u32,
    };
    finish(scheme, params, hash)
}
