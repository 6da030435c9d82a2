//! Schemes, their parameters, and recomputing an on-prem digest from a password.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::error::VerifyError;
use crate::limits::*;

/// An on-prem password hash scheme Cutover imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Scheme {
    /// `{SSHA}`: SHA-1 over password then salt.
    Ssha,
    /// `{SSHA256}`: SHA-256 over password then salt (OpenLDAP pw-sha2).
    Ssha256,
    /// `{SSHA512}`: SHA-512 over password then salt (OpenLDAP pw-sha2).
    Ssha512,
    /// `{PBKDF2-SHA256}`: PBKDF2-HMAC-SHA256 (OpenLDAP contrib pw-pbkdf2).
    Pbkdf2Sha256,
    /// `{CRYPT}$6$`: sha512-crypt (Drepper).
    Sha512Crypt,
    /// `{ARGON2}`: argon2i, argon2d or argon2id (OpenLDAP argon2 module, PHC string).
    Argon2,
    /// `sambaNTPassword`: MD4 over the UTF-16LE password.
    NtHash,
}

impl Scheme {
    /// Every scheme.
    pub const ALL: [Scheme; 7] = [
        Scheme::Ssha,
        Scheme::Ssha256,
        Scheme::Ssha512,
        Scheme::Pbkdf2Sha256,
        Scheme::Sha512Crypt,
        Scheme::Argon2,
        Scheme::NtHash,
    ];

    /// Short upper-case name for reports: `"SSHA"`, `"PBKDF2-SHA256"`, `"CRYPT-SHA512"`, `"NT"`…
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Ssha => "SSHA",
            Scheme::Ssha256 => "SSHA256",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Pbkdf2Sha256 => "PBKDF2-SHA256",
            Scheme::Sha512Crypt => "CRYPT-SHA512",
            Scheme::Argon2 => "ARGON2",
            Scheme::NtHash => "NT",
        }
    }

    /// How the scheme appears in the directory, for error messages.
    pub(crate) const fn tag(self) -> &'static str {
        match self {
            Scheme::Ssha => "{SSHA}",
            Scheme::Ssha256 => "{SSHA256}",
            Scheme::Ssha512 => "{SSHA512}",
            Scheme::Pbkdf2Sha256 => "{PBKDF2-SHA256}",
            Scheme::Sha512Crypt => "{CRYPT} $6$ (sha512-crypt)",
            Scheme::Argon2 => "{ARGON2}",
            Scheme::NtHash => "sambaNTPassword",
        }
    }

    /// Digest length of the fixed-length schemes.
    pub(crate) const fn fixed_digest_len(self) -> Option<usize> {
        match self {
            Scheme::Ssha => Some(20),
            Scheme::Ssha256 => Some(32),
            Scheme::Ssha512 | Scheme::Sha512Crypt => Some(64),
            Scheme::NtHash => Some(16),
            Scheme::Pbkdf2Sha256 | Scheme::Argon2 => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which argon2 function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Argon2Variant {
    /// Data-dependent memory access.
    Argon2d,
    /// Data-independent memory access.
    Argon2i,
    /// Hybrid.
    Argon2id,
}

impl Argon2Variant {
    /// The PHC identifier: `"argon2d"`, `"argon2i"`, `"argon2id"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Argon2Variant::Argon2d => "argon2d",
            Argon2Variant::Argon2i => "argon2i",
            Argon2Variant::Argon2id => "argon2id",
        }
    }
}

/// Argon2 cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Argon2Params {
    /// Which function.
    pub variant: Argon2Variant,
    /// Algorithm version as the PHC string writes it: 16 (0x10) or 19 (0x13).
    pub version: u32,
    /// `m`, memory in KiB.
    pub memory_kib: u32,
    /// `t`, passes.
    pub time_cost: u32,
    /// `p`, lanes.
    pub parallelism: u32,
}

/// Everything needed, besides the password, to recompute an on-prem digest.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemeParams {
    /// Salt bytes (empty for the NT hash; may be empty for sha512-crypt).
    #[serde(with = "crate::serde_b64::vec", default)]
    pub salt: Vec<u8>,
    /// PBKDF2 iterations or sha512-crypt rounds (after crypt's clamping); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u32>,
    /// Argon2 parameters, for [`Scheme::Argon2`] only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argon2: Option<Argon2Params>,
    /// Digest length in bytes.
    pub output_len: u32,
}

impl fmt::Debug for SchemeParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine as _;
        f.debug_struct("SchemeParams")
            .field(
                "salt",
                &base64::engine::general_purpose::STANDARD.encode(&self.salt),
            )
            .field("iterations", &self.iterations)
            .field("argon2", &self.argon2)
            .field("output_len", &self.output_len)
            .finish()
    }
}

/// A parameter outside what Cutover evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParamProblem {
    /// Over a cost limit.
    Cost {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    /// Not meaningful for the scheme.
    Invalid(String),
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamProblem::Cost { what, value, limit } => {
                write!(f, "{what} {value} is over the limit of {limit}")
            }
            ParamProblem::Invalid(reason) => f.write_str(reason),
        }
    }
}

fn cost(what: &'static str, value: u64, limit: u64) -> Result<(), ParamProblem> {
    if value > limit {
        Err(ParamProblem::Cost { what, value, limit })
    } else {
        Ok(())
    }
}

fn invalid(reason: impl Into<String>) -> ParamProblem {
    ParamProblem::Invalid(reason.into())
}

fn check_len(len: u32, min: usize, max: usize, what: &str) -> Result<(), ParamProblem> {
    let len = len as usize;
    if (min..=max).contains(&len) {
        Ok(())
    } else if min == max {
        Err(invalid(format!("{what} is {len} bytes, expected {min}")))
    } else {
        Err(invalid(format!(
            "{what} is {len} bytes, expected {min} to {max}"
        )))
    }
}

/// Checks that `params` are what `scheme` needs and within every limit. Cost problems come
/// first, so a hostile value is reported as such.
pub(crate) fn check_params(scheme: Scheme, params: &SchemeParams) -> Result<(), ParamProblem> {
    cost(
        "salt length (bytes)",
        params.salt.len() as u64,
        MAX_SALT_LEN as u64,
    )?;
    let no_iterations = || match params.iterations {
        None => Ok(()),
        Some(_) => Err(invalid("unexpected iteration count")),
    };
    let no_argon2 = || match params.argon2 {
        None => Ok(()),
        Some(_) => Err(invalid("unexpected argon2 parameters")),
    };
    match scheme {
        Scheme::Ssha | Scheme::Ssha256 | Scheme::Ssha512 => {
            no_iterations()?;
            no_argon2()?;
            if params.salt.is_empty() {
                return Err(invalid("empty salt"));
            }
            let len = scheme.fixed_digest_len().unwrap_or_default();
            check_len(params.output_len, len, len, "digest")
        }
        Scheme::Pbkdf2Sha256 => {
            no_argon2()?;
            let iterations = params
                .iterations
                .ok_or_else(|| invalid("missing iteration count"))?;
            cost(
                "PBKDF2 iterations",
                iterations.into(),
                MAX_PBKDF2_ITERATIONS.into(),
            )?;
            cost(
                "derived key length (bytes)",
                params.output_len.into(),
                MAX_PBKDF2_KEY_LEN as u64,
            )?;
            if iterations == 0 {
                return Err(invalid("zero iterations"));
            }
            if params.salt.is_empty() {
                return Err(invalid("empty salt"));
            }
            check_len(
                params.output_len,
                MIN_PBKDF2_KEY_LEN,
                MAX_PBKDF2_KEY_LEN,
                "derived key",
            )
        }
        Scheme::Sha512Crypt => {
            no_argon2()?;
            let rounds = params.iterations.ok_or_else(|| invalid("missing rounds"))?;
            cost(
                "sha512-crypt rounds",
                rounds.into(),
                MAX_CRYPT_ROUNDS.into(),
            )?;
            if rounds < CRYPT_ROUNDS_MIN {
                return Err(invalid(format!(
                    "{rounds} rounds is under crypt's minimum of {CRYPT_ROUNDS_MIN}"
                )));
            }
            if params.salt.len() > crate::crypt_b64::CRYPT_SALT_MAX {
                return Err(invalid(format!(
                    "salt is {} bytes, crypt uses at most {}",
                    params.salt.len(),
                    crate::crypt_b64::CRYPT_SALT_MAX
                )));
            }
            if params.salt.contains(&b'$') {
                return Err(invalid("salt contains '$'"));
            }
            check_len(params.output_len, 64, 64, "digest")
        }
        Scheme::Argon2 => {
            no_iterations()?;
            let a = params
                .argon2
                .ok_or_else(|| invalid("missing argon2 parameters"))?;
            cost(
                "argon2 memory (KiB)",
                a.memory_kib.into(),
                MAX_ARGON2_MEMORY_KIB.into(),
            )?;
            cost(
                "argon2 time cost",
                a.time_cost.into(),
                MAX_ARGON2_TIME_COST.into(),
            )?;
            cost(
                "argon2 parallelism",
                a.parallelism.into(),
                MAX_ARGON2_PARALLELISM.into(),
            )?;
            cost(
                "argon2 output length (bytes)",
                params.output_len.into(),
                MAX_ARGON2_OUTPUT_LEN as u64,
            )?;
            argon2_params(a, params.output_len)?;
            if params.salt.len() < argon2::MIN_SALT_LEN {
                return Err(invalid(format!(
                    "salt is {} bytes, argon2 needs at least {}",
                    params.salt.len(),
                    argon2::MIN_SALT_LEN
                )));
            }
            Ok(())
        }
        Scheme::NtHash => {
            no_iterations()?;
            no_argon2()?;
            if !params.salt.is_empty() {
                return Err(invalid("unexpected salt"));
            }
            check_len(params.output_len, 16, 16, "digest")
        }
    }
}

/// The argon2 crate's view of the parameters, refusing what it cannot evaluate.
fn argon2_params(
    a: Argon2Params,
    output_len: u32,
) -> Result<argon2::Argon2<'static>, ParamProblem> {
    let version = match a.version {
        0x10 => argon2::Version::V0x10,
        0x13 => argon2::Version::V0x13,
        other => return Err(invalid(format!("unknown argon2 version {other}"))),
    };
    let algorithm = match a.variant {
        Argon2Variant::Argon2d => argon2::Algorithm::Argon2d,
        Argon2Variant::Argon2i => argon2::Algorithm::Argon2i,
        Argon2Variant::Argon2id => argon2::Algorithm::Argon2id,
    };
    if a.time_cost == 0 {
        return Err(invalid("argon2 time cost is 0"));
    }
    if a.parallelism == 0 {
        return Err(invalid("argon2 parallelism is 0"));
    }
    if u64::from(a.memory_kib) < 8 * u64::from(a.parallelism) {
        return Err(invalid(format!(
            "argon2 memory {} KiB is under 8 KiB per lane ({} lanes)",
            a.memory_kib, a.parallelism
        )));
    }
    let params = argon2::Params::new(
        a.memory_kib,
        a.time_cost,
        a.parallelism,
        Some(output_len as usize),
    )
    .map_err(|e| invalid(format!("argon2 parameters refused: {e}")))?;
    Ok(argon2::Argon2::new(algorithm, version, params))
}

/// A password hash read from the directory: scheme, parameters and digest.
///
/// `Debug` never prints the digest.
#[derive(Clone)]
pub struct OnPremHash {
    pub(crate) scheme: Scheme,
    pub(crate) params: SchemeParams,
    pub(crate) digest: Vec<u8>,
}

impl fmt::Debug for OnPremHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnPremHash")
            .field("scheme", &self.scheme)
            .field("params", &self.params)
            .field("digest", &"<redacted>")
            .finish()
    }
}

impl OnPremHash {
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The parameters needed to recompute the digest.
    pub fn params(&self) -> &SchemeParams {
        &self.params
    }

    /// Recomputes the on-prem hash of `password` with `scheme` and `params`, as the directory
    /// would when the user set that password.
    pub fn compute(
        password: &str,
        scheme: Scheme,
        params: SchemeParams,
    ) -> Result<OnPremHash, VerifyError> {
        if password.len() > MAX_PASSWORD_LEN {
            return Err(VerifyError::PasswordTooLong {
                len: password.len(),
                max: MAX_PASSWORD_LEN,
            });
        }
        let unusable = |p: ParamProblem| VerifyError::UnusableParams {
            scheme,
            reason: p.to_string(),
        };
        check_params(scheme, &params).map_err(unusable)?;
        let pw = password.as_bytes();
        let digest = match scheme {
            Scheme::Ssha => salted::<Sha1>(pw, &params.salt),
            Scheme::Ssha256 => salted::<Sha256>(pw, &params.salt),
            Scheme::Ssha512 => salted::<Sha512>(pw, &params.salt),
            Scheme::Pbkdf2Sha256 => {
                let iterations = params.iterations.unwrap_or_default();
                let mut dk = vec![0u8; params.output_len as usize];
                pbkdf2::pbkdf2_hmac::<Sha256>(pw, &params.salt, iterations, &mut dk);
                dk
            }
            Scheme::Sha512Crypt => {
                let rounds = params.iterations.unwrap_or_default() as usize;
                let crypt_params = sha_crypt::Sha512Params::new(rounds)
                    .map_err(|_| unusable(invalid("rounds refused by sha512-crypt")))?;
                sha_crypt::sha512_crypt(pw, &params.salt, &crypt_params)
                    .map_err(|_| unusable(invalid("sha512-crypt refused the parameters")))?
                    .to_vec()
            }
            Scheme::Argon2 => {
                let a = params
                    .argon2
                    .ok_or_else(|| unusable(invalid("missing argon2 parameters")))?;
                let argon = argon2_params(a, params.output_len).map_err(unusable)?;
                let mut out = vec![0u8; params.output_len as usize];
                argon
                    .hash_password_into(pw, &params.salt, &mut out)
                    .map_err(|e| unusable(invalid(format!("argon2 refused: {e}"))))?;
                out
            }
            Scheme::NtHash => {
                let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
                md4::Md4::digest(&utf16).to_vec()
            }
        };
        Ok(OnPremHash {
            scheme,
            params,
            digest,
        })
    }

    /// The bytes the wrap is computed over: the raw digest, except for the NT hash, where it
    /// is the UTF-16LE encoding of the upper-case hexadecimal digest.
    pub(crate) fn canonical_bytes(&self) -> Vec<u8> {
        match self.scheme {
            Scheme::NtHash => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                self.digest
                    .iter()
                    .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]])
                    .flat_map(|c| [c, 0])
                    .collect()
            }
            _ => self.digest.clone(),
        }
    }
}

/// `H(password || salt)`, the `{SSHA*}` construction.
fn salted<D: Digest>(password: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut h = D::new();
    h.update(password);
    h.update(salt);
    h.finalize().to_vec()
}
