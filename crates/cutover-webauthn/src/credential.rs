//! What a registered passkey is to the rest of Cutover: its id, the opaque stored form, and the
//! facts a registration or a sign-in yields.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;
use webauthn_rs_core::proto::Credential;

/// Most bytes a credential id may have (WebAuthn Level 3, §6.5.1: "credentialIdLength … MUST
/// be <= 1023").
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;

/// A credential id that is not base64url of 1 to [`MAX_CREDENTIAL_ID_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential id: {0}")]
pub struct InvalidCredentialId(&'static str);

/// A WebAuthn credential id: opaque bytes chosen by the authenticator, written as base64url
/// without padding (the form browsers and the `passkeys.credential_id` column use).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId {
    bytes: Vec<u8>,
    text: String,
}

impl CredentialId {
    /// The id of these bytes (1 to [`MAX_CREDENTIAL_ID_BYTES`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InvalidCredentialId> {
        if bytes.is_empty() {
            return Err(InvalidCredentialId("empty"));
        }
        if bytes.len() > MAX_CREDENTIAL_ID_BYTES {
            return Err(InvalidCredentialId("longer than 1023 bytes"));
        }
        Ok(CredentialId {
            bytes: bytes.to_vec(),
            text: URL_SAFE_NO_PAD.encode(bytes),
        })
    }

    /// The id of bytes the caller knows to be 1 to [`MAX_CREDENTIAL_ID_BYTES`] long.
    pub(crate) fn from_generated(bytes: &[u8]) -> Self {
        CredentialId {
            bytes: bytes.to_vec(),
            text: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    /// The base64url text form (no padding).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl FromStr for CredentialId {
    type Err = InvalidCredentialId;

    /// Parses the base64url form; padding, the standard alphabet and non-canonical trailing
    /// bits are refused, so one id has exactly one text form.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > MAX_CREDENTIAL_ID_BYTES.div_ceil(3) * 4 {
            return Err(InvalidCredentialId("longer than 1023 bytes"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| InvalidCredentialId("not base64url without padding"))?;
        CredentialId::from_bytes(&bytes)
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({})", self.text)
    }
}

impl Serialize for CredentialId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for CredentialId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A stored passkey: webauthn-rs-core's `Credential` (public key, registration policy,
/// attestation) serialised as JSON. Opaque to callers, who keep [`StoredCredential::as_json`]
/// in the `passkeys.credential` column and give it back with [`StoredCredential::from_json`].
///
/// The signature counter inside is *not* authoritative: the caller keeps the counter in its own
/// column and passes it to `finish_authentication`.
#[derive(Clone)]
pub struct StoredCredential {
    json: String,
    parsed: Credential,
    id: CredentialId,
}

impl StoredCredential {
    /// Reads a stored credential, checking that it is the library's credential format.
    pub fn from_json(json: &str) -> Result<Self, InvalidStoredCredential> {
        let parsed: Credential =
            serde_json::from_str(json).map_err(|e| InvalidStoredCredential(e.to_string()))?;
        StoredCredential::from_library(parsed, json.to_owned())
    }

    pub(crate) fn from_credential(parsed: Credential) -> Result<Self, InvalidStoredCredential> {
        let json =
            serde_json::to_string(&parsed).map_err(|e| InvalidStoredCredential(e.to_string()))?;
        StoredCredential::from_library(parsed, json)
    }

    fn from_library(parsed: Credential, json: String) -> Result<Self, InvalidStoredCredential> {
        let id = CredentialId::from_bytes(&parsed.cred_id)
            .map_err(|e| InvalidStoredCredential(e.to_string()))?;
        Ok(StoredCredential { json, parsed, id })
    }

    /// The JSON text to store.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The credential's id.
    pub fn credential_id(&self) -> &CredentialId {
        &self.id
    }

    /// Whether the authenticator said at registration that the credential may be backed up or
    /// synced (a passkey in a password manager or platform keychain).
    pub fn backup_eligible(&self) -> bool {
        self.parsed.backup_eligible
    }

    pub(crate) fn library(&self) -> &Credential {
        &self.parsed
    }
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("credential_id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Stored credential JSON that is not the library's credential format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored credential does not parse: {0}")]
pub struct InvalidStoredCredential(String);

/// What a successful registration yields: the credential to store and the facts the server
/// keeps in its own columns.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// The credential id (unique across all users).
    pub credential_id: CredentialId,
    /// The opaque stored form.
    pub stored: StoredCredential,
    /// The authenticator model from the attested credential data; all zero when the
    /// authenticator (or the browser, for attestation `none`) withholds it.
    /// Self-reported unless `attested` is true.
    pub aaguid: Uuid,
    /// The credential may be backed up or synced (BE flag).
    pub backup_eligible: bool,
    /// The credential is backed up now (BS flag).
    pub backed_up: bool,
    /// The signature counter at registration.
    pub sign_count: u32,
    /// The attestation statement format: `none`, `packed`, `tpm`, `android-key`, `fido-u2f`,
    /// `apple`.
    pub attestation_format: String,
    /// True iff the attestation verified and chained to the trust roots passed to
    /// `finish_registration`.
    pub attested: bool,
    /// Transport hints the browser reported (`usb`, `nfc`, `ble`, `internal`, `hybrid`);
    /// hints only, never a security property.
    pub transports: Vec<String>,
    /// The authenticator verified the user (UV flag).
    pub user_verified: bool,
    /// The browser's unsigned hint whether the credential is discoverable (`credProps.rk`);
    /// `None` when the browser did not say.
    pub discoverable: Option<bool>,
}

/// What a successful sign-in yields: the facts that change with each use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertionOutcome {
    /// The counter the authenticator presented; store it (it only moves forward, or stays 0
    /// for authenticators that do not count).
    pub sign_count: u32,
    /// The credential is backed up now (BS flag); it may change between sign-ins.
    pub backed_up: bool,
    /// The backup eligibility (BE flag); always equal to the registered one.
    pub backup_eligible: bool,
    /// The authenticator verified the user (always true: sign-ins require it).
    pub user_verified: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_id_round_trips_through_text() {
        let id = CredentialId::from_bytes(&[0xfb, 0xff, 0x01]).unwrap();
        assert_eq!(id.as_str(), "-_8B");
        assert_eq!(id.to_string(), "-_8B");
        assert_eq!("-_8B".parse::<CredentialId>().unwrap(), id);
        assert_eq!(id.bytes(), &[0xfb, 0xff, 0x01]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"-_8B\"");
        assert_eq!(serde_json::from_str::<CredentialId>(&json).unwrap(), id);
    }

    #[test]
    fn credential_id_text_has_one_form() {
        assert!("-_8B".parse::<CredentialId>().is_ok());
        assert!("+/8B".parse::<CredentialId>().is_err(), "standard alphabet");
        assert!("AQ==".parse::<CredentialId>().is_err(), "padding");
        assert!(
            "AR".parse::<CredentialId>().is_err(),
            "non-canonical trailing bits"
        );
        assert!("".parse::<CredentialId>().is_err(), "empty");
    }

    #[test]
    fn credential_id_length_edge() {
        let longest = vec![7u8; MAX_CREDENTIAL_ID_BYTES];
        let id = CredentialId::from_bytes(&longest).unwrap();
        assert_eq!(id.as_str().parse::<CredentialId>().unwrap(), id);
        let too_long = vec![7u8; MAX_CREDENTIAL_ID_BYTES + 1];
        assert!(CredentialId::from_bytes(&too_long).is_err());
        assert!(
            URL_SAFE_NO_PAD
                .encode(&too_long)
                .parse::<CredentialId>()
                .is_err()
        );
    }

    #[test]
    fn stored_credential_refuses_other_json() {
        assert!(StoredCredential::from_json("{}").is_err());
        assert!(StoredCredential::from_json("not json").is_err());
        assert!(StoredCredential::from_json("[1,2]").is_err());
    }
}
