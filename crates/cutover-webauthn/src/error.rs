//! The two error types of the crate: a refused configuration and a refused ceremony.
//!
//! `CeremonyError` is what the server records in the sign-in log and the audit log: every
//! variant has a stable camelCase [`CeremonyError::code`] and a `Display` sentence an operator
//! can act on. The user is never shown either (the pages say "that didn't work").

use webauthn_rs_core::error::WebauthnError;

/// Most characters of attacker-supplied text (an origin, a parser message) an error keeps,
/// so a hostile browser cannot flood the logs through an error message.
pub const MAX_ERROR_DETAIL_CHARS: usize = 160;

/// A refused piece of configuration: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    field: String,
    problem: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The configuration field at fault, e.g. `rpId`, `origin`, `trustRoots`, `catalogue`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// Why a registration or sign-in ceremony was refused.
///
/// The variants are ordered roughly as the checks run: the shape of the response, the client
/// data (type, challenge, origin), the authenticator data (RP ID, flags), the signature, then the
/// credential's history (counter, backup eligibility) and attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyError {
    /// The response is not the JSON a browser posts, or a field inside it does not decode.
    #[error(
        "the browser's response is malformed ({0}); a modified or broken client sent it, or the page's script posts the wrong shape"
    )]
    Malformed(String),
    /// The credential type is not `public-key`, or the client data is for the other ceremony
    /// (`webauthn.get` posted to registration or the reverse).
    #[error(
        "the response belongs to a different kind of ceremony (wrong type); the page posted a sign-in answer to registration or the reverse"
    )]
    WrongType,
    /// The client data's challenge is not the one this ceremony issued (a replay, or an answer
    /// to another ceremony).
    #[error(
        "the challenge in the response is not the one issued for this ceremony; it is a replayed or mixed-up answer, so start a new ceremony"
    )]
    ChallengeMismatch,
    /// The browser ran the ceremony on another origin than this relying party's.
    #[error(
        "the browser ran the ceremony on origin {presented}, not this server's origin; check the configured public URL and that users reach the server there"
    )]
    WrongOrigin {
        /// The origin the browser reported (truncated to [`MAX_ERROR_DETAIL_CHARS`]).
        presented: String,
    },
    /// The ceremony ran inside a cross-origin iframe, which is not allowed.
    #[error(
        "the ceremony ran inside a cross-origin frame, which this server does not allow; embed the sign-in pages only on their own origin"
    )]
    CrossOrigin,
    /// The authenticator data is scoped to another RP ID.
    #[error(
        "the authenticator signed for a different RP ID than this server's; the passkey was made for another domain, or the RP ID setting changed"
    )]
    WrongRpId,
    /// The authenticator did not report user presence.
    #[error(
        "the authenticator did not report that a user was present; the user must touch or unlock the authenticator"
    )]
    UserNotPresent,
    /// The authenticator did not report user verification (PIN, biometric), which is required.
    #[error(
        "the authenticator did not verify the user (no PIN or biometric), which passkeys here require; the user must set up a PIN or biometric on it"
    )]
    UserNotVerified,
    /// The assertion's signature does not verify with the stored public key.
    #[error(
        "the signature does not verify with the passkey's stored public key; the response was altered or signed by another key"
    )]
    BadSignature,
    /// The credential used was not one this ceremony allowed.
    #[error(
        "the passkey used was not offered in this sign-in; the user chose a passkey this account does not allow here"
    )]
    UnknownCredential,
    /// The response names another credential than the stored one it is checked against.
    #[error(
        "the response's credential id differs from the stored passkey it was checked against; look the passkey up by the response's id"
    )]
    CredentialMismatch,
    /// The signature counter did not increase: two copies of the private key may exist.
    #[error(
        "the passkey's signature counter did not increase (stored {stored}, presented {presented}); the authenticator may have been cloned, so review this user's passkeys"
    )]
    PossibleClone {
        /// The counter the server had stored.
        stored: u32,
        /// The counter the authenticator presented.
        presented: u32,
    },
    /// The authenticator's backup eligibility differs from what it reported at registration.
    #[error(
        "the passkey's backup eligibility changed since registration (registered {registered}, now {presented}); treat it as a different authenticator and have the user register it again"
    )]
    BackupEligibilityChanged {
        /// Backup eligibility at registration.
        registered: bool,
        /// Backup eligibility now.
        presented: bool,
    },
    /// Registration of a credential this user already has (it was in the exclude list).
    #[error(
        "this authenticator already holds a passkey for this account; the user can sign in with it or remove it first"
    )]
    AlreadyRegistered,
    /// Attestation is required but the authenticator gave none (format `none` or self
    /// attestation, no certificate).
    #[error(
        "attestation is required but the authenticator gave no certificate attestation; use an authenticator that attests, or relax the attestation requirement"
    )]
    AttestationMissing,
    /// The attestation verified but does not chain to a trusted root (or its model is not one
    /// the trusted root may attest).
    #[error(
        "the authenticator's attestation does not chain to a trusted root; add its vendor's root certificate to the trust roots, or refuse this model"
    )]
    AttestationUntrusted,
    /// The attestation statement itself is invalid or of a format this server cannot check.
    #[error(
        "the authenticator's attestation statement is invalid or of an unsupported format ({0}); the authenticator is faulty or the response was altered"
    )]
    AttestationInvalid(String),
    /// The credential's key algorithm is not one this server offered (or can verify).
    #[error(
        "the authenticator chose a key algorithm this server does not accept; it needs ES256 (P-256) or RS256 keys"
    )]
    AlgorithmNotAllowed,
    /// The caller's request to start a ceremony was invalid (empty user name, too many
    /// credentials, a stored credential that does not parse).
    #[error("the ceremony could not start: {0}")]
    InvalidRequest(String),
    /// A library failure that fits no other kind; the text is the library's error.
    #[error("the WebAuthn library refused the response: {0}")]
    Library(String),
}

impl CeremonyError {
    /// A stable camelCase code for logs and audit records (e.g. `wrongOrigin`, `possibleClone`).
    pub fn code(&self) -> &'static str {
        match self {
            CeremonyError::Malformed(_) => "malformed",
            CeremonyError::WrongType => "wrongType",
            CeremonyError::ChallengeMismatch => "challengeMismatch",
            CeremonyError::WrongOrigin { .. } => "wrongOrigin",
            CeremonyError::CrossOrigin => "crossOrigin",
            CeremonyError::WrongRpId => "wrongRpId",
            CeremonyError::UserNotPresent => "userNotPresent",
            CeremonyError::UserNotVerified => "userNotVerified",
            CeremonyError::BadSignature => "badSignature",
            CeremonyError::UnknownCredential => "unknownCredential",
            CeremonyError::CredentialMismatch => "credentialMismatch",
            CeremonyError::PossibleClone { .. } => "possibleClone",
            CeremonyError::BackupEligibilityChanged { .. } => "backupEligibilityChanged",
            CeremonyError::AlreadyRegistered => "alreadyRegistered",
            CeremonyError::AttestationMissing => "attestationMissing",
            CeremonyError::AttestationUntrusted => "attestationUntrusted",
            CeremonyError::AttestationInvalid(_) => "attestationInvalid",
            CeremonyError::AlgorithmNotAllowed => "algorithmNotAllowed",
            CeremonyError::InvalidRequest(_) => "invalidRequest",
            CeremonyError::Library(_) => "library",
        }
    }

    pub(crate) fn malformed(what: impl std::fmt::Display) -> Self {
        CeremonyError::Malformed(bounded(&what.to_string()))
    }
}

/// `text` cut to [`MAX_ERROR_DETAIL_CHARS`] characters (with an ellipsis when cut), control
/// characters replaced, so attacker text is safe to put in a log line.
pub(crate) fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_ERROR_DETAIL_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_ERROR_DETAIL_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// What the response said, read by the adapter itself, that the mapping of a library error
/// needs: the library's errors carry no detail.
#[derive(Debug, Default)]
pub(crate) struct ErrorContext {
    /// The origin in the client data, when it could be read.
    pub presented_origin: Option<String>,
    /// The counter in the authenticator data, when it could be read.
    pub presented_counter: Option<u32>,
    /// The counter the server had stored (sign-in only).
    pub stored_counter: u32,
    /// Backup eligibility at registration (sign-in only).
    pub registered_backup_eligible: bool,
    /// Backup eligibility in the authenticator data, when it could be read.
    pub presented_backup_eligible: Option<bool>,
    /// Whether the response's credential id is one of the excluded ones (registration only).
    pub excluded: bool,
    /// Whether the attestation statement carries a certificate chain (registration only).
    pub has_certificate: bool,
}

/// Maps a webauthn-rs-core error to the crate's vocabulary.
pub(crate) fn map_library_error(error: WebauthnError, context: &ErrorContext) -> CeremonyError {
    use WebauthnError as W;
    match error {
        W::InvalidClientDataType => CeremonyError::WrongType,
        W::MismatchedChallenge | W::ChallengeNotFound => CeremonyError::ChallengeMismatch,
        W::InvalidRPOrigin => CeremonyError::WrongOrigin {
            presented: context
                .presented_origin
                .as_deref()
                .map(bounded)
                .unwrap_or_else(|| "(unreadable)".to_owned()),
        },
        W::CredentialCrossOrigin => CeremonyError::CrossOrigin,
        W::InvalidRPIDHash => CeremonyError::WrongRpId,
        W::UserNotPresent => CeremonyError::UserNotPresent,
        W::UserNotVerified => CeremonyError::UserNotVerified,
        W::AuthenticationFailure | W::SignatureInvalid => CeremonyError::BadSignature,
        W::CredentialNotFound => CeremonyError::CredentialMismatch,
        W::CredentialPossibleCompromise => CeremonyError::PossibleClone {
            stored: context.stored_counter,
            presented: context.presented_counter.unwrap_or(0),
        },
        W::CredentialBackupEligibilityInconsistent => CeremonyError::BackupEligibilityChanged {
            registered: context.registered_backup_eligible,
            presented: context
                .presented_backup_eligible
                .unwrap_or(!context.registered_backup_eligible),
        },
        // With synchronised authenticators allowed, the library raises this only for the flag
        // combination "backed up but not backup eligible", which the specification forbids.
        W::CredentialMayNotBeHardwareBound => {
            CeremonyError::malformed("authenticator data says backed up but not backup eligible")
        }
        // The library reports an excluded credential with the same error as an algorithm
        // that was not offered; the adapter tells them apart by the exclude list.
        W::CredentialAlteredAlgFromRequest if context.excluded => CeremonyError::AlreadyRegistered,
        W::CredentialExcludedFromRequest | W::CredentialAlreadyExists => {
            CeremonyError::AlreadyRegistered
        }
        W::CredentialAlteredAlgFromRequest
        | W::COSEKeyInvalidType
        | W::COSEKeyEDUnsupported
        | W::SshPublicKeyEDUnsupported
        | W::COSEKeyInvalidAlgorithm
        | W::COSEKeyECDSAInvalidCurve
        | W::COSEKeyEDDSAInvalidCurve
        | W::CredentialInsecureCryptography => CeremonyError::AlgorithmNotAllowed,
        // A trust store was given and the statement carried no certificate to check.
        W::AttestationNotVerifiable if !context.has_certificate => {
            CeremonyError::AttestationMissing
        }
        W::AttestationNotVerifiable
        | W::AttestationChainNotTrusted(_)
        | W::AttestationUntrustedAaguid
        | W::AttestationFormatMissingAaguid
        | W::AttestationCertificateTrustStoreEmpty
        | W::MissingAttestationCaList
        | W::AttestationTrustFailure
        | W::TrustFailure => CeremonyError::AttestationUntrusted,
        e @ (W::AttestationNotSupported
        | W::AttestationStatementMapInvalid
        | W::AttestationStatementResponseMissing
        | W::AttestationStatementResponseInvalid
        | W::AttestationStatementSigMissing
        | W::AttestationStatementSigInvalid
        | W::AttestationStatementVerMissing
        | W::AttestationStatementVerInvalid
        | W::AttestationStatementVerUnsupported
        | W::AttestationStatementX5CMissing
        | W::AttestationStatementX5CInvalid
        | W::AttestationStatementAlgMissing
        | W::AttestationStatementCertInfoMissing
        | W::AttestationStatementMissingExtension
        | W::AttestationStatementPubAreaMissing
        | W::AttestationStatementAlgMismatch
        | W::AttestationStatementAlgInvalid
        | W::AttestationCertificateAAGUIDMismatch
        | W::AttestationCertificateNonceMismatch
        | W::AttestationTpmStInvalid
        | W::AttestationTpmPubAreaMismatch
        | W::AttestationTpmExtraDataInvalid
        | W::AttestationTpmExtraDataMismatch
        | W::AttestationTpmPubAreaHashUnknown
        | W::AttestationTpmPubAreaHashInvalid
        | W::AttestationTpmAttestCertifyInvalid
        | W::AttestationCertificateRequirementsNotMet
        | W::AttestationLeafCertMissing
        | W::AttestationCredentialSubjectKeyMismatch
        | W::CertificatePublicKeyInvalid
        | W::CertificatePublicKeyAlgorthimMismatch
        | W::X509DerInvalid) => CeremonyError::AttestationInvalid(format!("{e:?}")),
        e @ (W::ParseBase64Failure(_)
        | W::ParseCBORFailure(_)
        | W::ParseJSONFailure(_)
        | W::ParseNOMFailure
        | W::ParseInsufficientBytesAvailable
        | W::MissingAttestationCredentialData
        | W::InvalidExtensions
        | W::AuthenticatorDataMissingExtension
        | W::COSEKeyInvalidCBORValue
        | W::COSEKeyECDSAXYInvalid
        | W::COSEKeyRSANEInvalid
        | W::COSEKeyEDDSAXInvalid
        | W::EcdsaPointInvalid
        | W::RsaParametersInvalid) => CeremonyError::malformed(format!("{e}")),
        W::InvalidUsername | W::InvalidUserUniqueId => CeremonyError::InvalidRequest(
            "the user's id, name and display name must not be empty".into(),
        ),
        other => CeremonyError::Library(bounded(&format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_long_text_and_control_characters() {
        let long = "a".repeat(MAX_ERROR_DETAIL_CHARS + 1);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_DETAIL_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "b".repeat(MAX_ERROR_DETAIL_CHARS);
        assert_eq!(bounded(&exact), exact);
        assert_eq!(bounded("a\nb\u{1b}c"), "a?b?c");
    }

    #[test]
    fn codes_are_stable_camel_case() {
        let all = [
            CeremonyError::Malformed(String::new()),
            CeremonyError::WrongType,
            CeremonyError::ChallengeMismatch,
            CeremonyError::WrongOrigin {
                presented: String::new(),
            },
            CeremonyError::CrossOrigin,
            CeremonyError::WrongRpId,
            CeremonyError::UserNotPresent,
            CeremonyError::UserNotVerified,
            CeremonyError::BadSignature,
            CeremonyError::UnknownCredential,
            CeremonyError::CredentialMismatch,
            CeremonyError::PossibleClone {
                stored: 1,
                presented: 1,
            },
            CeremonyError::BackupEligibilityChanged {
                registered: false,
                presented: true,
            },
            CeremonyError::AlreadyRegistered,
            CeremonyError::AttestationMissing,
            CeremonyError::AttestationUntrusted,
            CeremonyError::AttestationInvalid(String::new()),
            CeremonyError::AlgorithmNotAllowed,
            CeremonyError::InvalidRequest(String::new()),
            CeremonyError::Library(String::new()),
        ];
        let mut codes: Vec<&str> = all.iter().map(CeremonyError::code).collect();
        for code in &codes {
            assert!(code.chars().all(|c| c.is_ascii_alphabetic()), "{code}");
            assert!(code.starts_with(|c: char| c.is_ascii_lowercase()), "{code}");
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
    }

    #[test]
    fn clone_error_names_both_counters() {
        let context = ErrorContext {
            stored_counter: 7,
            presented_counter: Some(5),
            ..ErrorContext::default()
        };
        let error = map_library_error(WebauthnError::CredentialPossibleCompromise, &context);
        assert_eq!(
            error,
            CeremonyError::PossibleClone {
                stored: 7,
                presented: 5
            }
        );
        assert!(error.to_string().contains("stored 7, presented 5"));
    }

    #[test]
    fn excluded_credential_is_told_apart_from_a_wrong_algorithm() {
        let excluded = ErrorContext {
            excluded: true,
            ..ErrorContext::default()
        };
        assert_eq!(
            map_library_error(WebauthnError::CredentialAlteredAlgFromRequest, &excluded),
            CeremonyError::AlreadyRegistered
        );
        assert_eq!(
            map_library_error(
                WebauthnError::CredentialAlteredAlgFromRequest,
                &ErrorContext::default()
            ),
            CeremonyError::AlgorithmNotAllowed
        );
    }
}
