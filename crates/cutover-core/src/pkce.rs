//! Proof Key for Code Exchange (RFC 7636), S256 only: `plain` gives no protection and is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::limits::{PKCE_MAX_LEN, PKCE_MIN_LEN};

/// A code challenge accepted at the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge_method must be S256; 'plain' is refused")]
    PlainRefused,
    #[error("code_challenge_method '{0}' is not supported; use S256")]
    UnknownMethod(String),
    #[error("code_challenge must be 43 base64url characters (the SHA-256 of the verifier)")]
    MalformedChallenge,
}

impl CodeChallenge {
    /// `method` is the raw `code_challenge_method`; absent means `plain` (RFC 7636 §4.3).
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, PkceError> {
        match method {
            Some("S256") => {}
            None | Some("plain") => return Err(PkceError::PlainRefused),
            Some(other) => return Err(PkceError::UnknownMethod(other.chars().take(32).collect())),
        }
        let valid = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(PkceError::MalformedChallenge);
        }
        Ok(Self(challenge.to_owned()))
    }
    /// Rebuild from storage (already checked when it was accepted).
    pub fn from_stored(challenge: String) -> Self {
        Self(challenge)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether `verifier` is well-formed and hashes to this challenge (constant-time compare).
    pub fn verify(&self, verifier: &str) -> bool {
        if !is_well_formed_verifier(verifier) {
            return false;
        }
        let digest = Sha256::digest(verifier.as_bytes());
        let computed = URL_SAFE_NO_PAD.encode(digest);
        computed.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn is_well_formed_verifier(verifier: &str) -> bool {
    (PKCE_MIN_LEN..=PKCE_MAX_LEN).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of a verifier (used by tests and the benchmark client).
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256_challenge(verifier), challenge);
        let c = CodeChallenge::parse(challenge, Some("S256")).unwrap();
        assert!(c.verify(verifier));
        assert!(!c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
    }

    #[test]
    fn methods() {
        let ch = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(CodeChallenge::parse(ch, None), Err(PkceError::PlainRefused));
        assert_eq!(
            CodeChallenge::parse(ch, Some("plain")),
            Err(PkceError::PlainRefused)
        );
        assert!(matches!(
            CodeChallenge::parse(ch, Some("S512")),
            Err(PkceError::UnknownMethod(_))
        ));
        assert_eq!(
            CodeChallenge::parse("short", Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
        assert_eq!(
            CodeChallenge::parse(&format!("{ch}="), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
    }

    #[test]
    fn verifier_length_edges() {
        assert!(!is_well_formed_verifier(&"a".repeat(PKCE_MIN_LEN - 1)));
        assert!(is_well_formed_verifier(&"a".repeat(PKCE_MIN_LEN)));
        assert!(is_well_formed_verifier(&"a".repeat(PKCE_MAX_LEN)));
        assert!(!is_well_formed_verifier(&"a".repeat(PKCE_MAX_LEN + 1)));
        assert!(!is_well_formed_verifier(&format!("{}+", "a".repeat(50))));
    }

    proptest! {
        #[test]
        fn a_verifier_matches_only_its_own_challenge(v in "[A-Za-z0-9._~-]{43,128}", w in "[A-Za-z0-9._~-]{43,128}") {
            let c = CodeChallenge::parse(&s256_challenge(&v), Some("S256")).unwrap();
            prop_assert!(c.verify(&v));
            prop_assert_eq!(c.verify(&w), v == w);
        }
    }
}
