//! Reading the few facts the adapter needs from a browser's response itself, beside the library:
//! the origin and cross-origin flag in the client data, the counter, flags and AAGUID in the
//! authenticator data, whether an attestation statement carries certificates.
//!
//! Every reader takes untrusted bytes and answers `None`/`false` rather than failing: these
//! facts only refine an error or fill in a detail the library does not expose.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_cbor_2::Value as Cbor;
use uuid::Uuid;

/// base64url as browsers write it, padding optional (the same leniency webauthn-rs-proto has).
pub(crate) const BASE64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Authenticator data flag bits (WebAuthn §6.1).
pub(crate) mod flags {
    pub const USER_PRESENT: u8 = 0x01;
    pub const USER_VERIFIED: u8 = 0x04;
    pub const BACKUP_ELIGIBLE: u8 = 0x08;
    pub const BACKED_UP: u8 = 0x10;
    pub const ATTESTED_CREDENTIAL_DATA: u8 = 0x40;
}

/// Offset of the flags byte in authenticator data (after the 32-byte RP ID hash).
const FLAGS_AT: usize = 32;
/// Offset of the big-endian signature counter.
const COUNTER_AT: usize = 33;
/// Offset of the AAGUID in attested credential data.
const AAGUID_AT: usize = 37;

pub(crate) fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    BASE64URL_LENIENT.decode(text).ok()
}

/// The `origin` member of client data JSON.
pub(crate) fn client_data_origin(client_data_json: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(client_data_json).ok()?;
    value.get("origin")?.as_str().map(str::to_owned)
}

/// Whether client data JSON says the ceremony ran in a cross-origin frame.
pub(crate) fn client_data_cross_origin(client_data_json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(client_data_json)
        .ok()
        .and_then(|v| v.get("crossOrigin").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// The signature counter in authenticator data (bytes 33..37, big-endian).
pub(crate) fn auth_data_counter(auth_data: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = auth_data.get(COUNTER_AT..COUNTER_AT + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// The flags byte of authenticator data.
pub(crate) fn auth_data_flags(auth_data: &[u8]) -> Option<u8> {
    auth_data.get(FLAGS_AT).copied()
}

/// The AAGUID of the attested credential data; nil when absent.
pub(crate) fn auth_data_aaguid(auth_data: &[u8]) -> Uuid {
    let attested =
        auth_data_flags(auth_data).is_some_and(|f| f & flags::ATTESTED_CREDENTIAL_DATA != 0);
    if !attested {
        return Uuid::nil();
    }
    auth_data
        .get(AAGUID_AT..AAGUID_AT + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(Uuid::from_bytes)
        .unwrap_or_else(Uuid::nil)
}

/// The members of an attestation object (a CBOR map with text keys).
fn attestation_member(attestation_object: &[u8], key: &str) -> Option<Cbor> {
    let Cbor::Map(map) = serde_cbor_2::from_slice::<Cbor>(attestation_object).ok()? else {
        return None;
    };
    map.into_iter()
        .find(|(k, _)| matches!(k, Cbor::Text(t) if t == key))
        .map(|(_, v)| v)
}

/// `authData` of an attestation object.
pub(crate) fn attestation_auth_data(attestation_object: &[u8]) -> Option<Vec<u8>> {
    match attestation_member(attestation_object, "authData")? {
        Cbor::Bytes(bytes) => Some(bytes),
        _ => None,
    }
}

/// Whether the attestation statement carries a certificate chain (`x5c`), i.e. is more than
/// `none` or self attestation.
pub(crate) fn attestation_has_certificate(attestation_object: &[u8]) -> bool {
    let Some(Cbor::Map(statement)) = attestation_member(attestation_object, "attStmt") else {
        return false;
    };
    statement.iter().any(|(k, v)| {
        matches!(k, Cbor::Text(t) if t == "x5c") && matches!(v, Cbor::Array(a) if !a.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_answer_none_on_short_or_odd_input() {
        assert_eq!(auth_data_counter(&[0; 36]), None);
        assert_eq!(auth_data_counter(&[0; 37]), Some(0));
        let mut data = vec![0u8; 37];
        data[33..37].copy_from_slice(&[0, 0, 1, 2]);
        assert_eq!(auth_data_counter(&data), Some(258));
        assert_eq!(auth_data_flags(&[]), None);
        assert_eq!(auth_data_aaguid(&data), Uuid::nil());
        data[32] = flags::ATTESTED_CREDENTIAL_DATA;
        assert_eq!(
            auth_data_aaguid(&data),
            Uuid::nil(),
            "flag set but too short"
        );
        assert_eq!(client_data_origin(b"not json"), None);
        assert_eq!(client_data_origin(br#"{"origin":5}"#), None);
        assert_eq!(
            client_data_origin(br#"{"origin":"https://a.example"}"#).as_deref(),
            Some("https://a.example")
        );
        assert!(!client_data_cross_origin(br#"{"crossOrigin":"yes"}"#));
        assert!(client_data_cross_origin(br#"{"crossOrigin":true}"#));
        assert_eq!(attestation_auth_data(b"\xff\x00"), None);
        assert!(!attestation_has_certificate(&[]));
    }

    #[test]
    fn lenient_base64url_takes_padding_or_not() {
        assert_eq!(decode_base64url("AQ"), Some(vec![1]));
        assert_eq!(decode_base64url("AQ=="), Some(vec![1]));
        assert_eq!(decode_base64url("A+=="), None);
    }
}
