//! A software authenticator (and the browser around it) for tests and benchmarks: it reads the
//! options `start_registration` / `start_authentication` produce and answers with the JSON a
//! browser would post, signing with P-256 keys held by ring.
//!
//! Every credential gets its own key, as on a real authenticator. A [`SoftCredential`] is
//! `Clone`, and a clone is a cloned authenticator: the same private key with its own counter.
//! [`SoftSettings`] bends the answers for negative tests (flags, counter, RP ID, client data
//! type, cross-origin, a corrupted signature, packed attestation).
//!
//! Not for production: keys live in memory, there is no user to verify.

use crate::credential::CredentialId;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;
use webauthn_rs_core::proto::{COSEAlgorithm, COSEEC2Key, COSEKey, COSEKeyType, ECDSACurve};

/// COSE algorithm identifier of ES256.
const ES256: i64 = -7;
/// Bytes of a generated credential id.
const CREDENTIAL_ID_BYTES: usize = 32;

/// The attestation statement a [`SoftAuthenticator`] produces at registration.
#[derive(Clone, Default)]
pub enum SoftAttestation {
    /// Format `none`, empty statement.
    #[default]
    None,
    /// Format `packed` signed by the credential key itself, no certificate.
    SelfAttestation,
    /// Format `packed` signed by an attestation key, with its certificate chain (`x5c`, leaf
    /// first).
    Packed {
        /// The attestation key.
        key: Arc<EcdsaKeyPair>,
        /// DER certificates, leaf first.
        x5c: Vec<Vec<u8>>,
    },
}

impl SoftAttestation {
    /// Packed attestation with a P-256 key (PKCS#8 DER) and its certificate chain (DER, leaf
    /// first).
    pub fn packed(key_pkcs8: &[u8], x5c: Vec<Vec<u8>>) -> Result<Self, String> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            key_pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| format!("attestation key: {e}"))?;
        Ok(SoftAttestation::Packed {
            key: Arc::new(key),
            x5c,
        })
    }
}

impl fmt::Debug for SoftAttestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoftAttestation::None => f.write_str("None"),
            SoftAttestation::SelfAttestation => f.write_str("SelfAttestation"),
            SoftAttestation::Packed { x5c, .. } => {
                write!(f, "Packed {{ certificates: {}, .. }}", x5c.len())
            }
        }
    }
}

/// How the software authenticator and its browser behave; the defaults are a well-behaved
/// device-bound authenticator that counts.
#[derive(Debug, Clone)]
pub struct SoftSettings {
    /// Set the UP flag.
    pub user_present: bool,
    /// Set the UV flag.
    pub user_verified: bool,
    /// Set the BE flag (a passkey that may be synced).
    pub backup_eligible: bool,
    /// Set the BS flag (a passkey that is synced).
    pub backed_up: bool,
    /// How much each sign-in adds to the counter; 0 for authenticators that do not count
    /// (many synced passkeys always send 0).
    pub counter_step: u32,
    /// Hash this RP ID into authenticator data instead of the one the options name.
    pub rp_id_override: Option<String>,
    /// Put this `type` in client data instead of `webauthn.create` / `webauthn.get`.
    pub client_data_type_override: Option<String>,
    /// Say `crossOrigin: true` in client data.
    pub cross_origin: bool,
    /// Alter the assertion signature after signing.
    pub corrupt_signature: bool,
    /// The registration's attestation.
    pub attestation: SoftAttestation,
    /// Transports the browser reports at registration.
    pub transports: Vec<String>,
    /// Give the next created credential this id instead of random bytes (to test duplicate
    /// registrations).
    pub fixed_credential_id: Option<Vec<u8>>,
}

impl Default for SoftSettings {
    fn default() -> Self {
        SoftSettings {
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backed_up: false,
            counter_step: 1,
            rp_id_override: None,
            client_data_type_override: None,
            cross_origin: false,
            corrupt_signature: false,
            attestation: SoftAttestation::None,
            transports: vec!["internal".to_owned()],
            fixed_credential_id: None,
        }
    }
}

/// A software authenticator of one model (AAGUID).
#[derive(Debug, Clone)]
pub struct SoftAuthenticator {
    aaguid: Uuid,
    rng: SystemRandom,
    /// How it behaves; change between calls to simulate a misbehaving device.
    pub settings: SoftSettings,
}

/// A credential the software authenticator created: the private key, the RP ID, the user
/// handle and the counter. A clone shares the key and copies the counter.
#[derive(Clone)]
pub struct SoftCredential {
    id: Vec<u8>,
    key: Arc<EcdsaKeyPair>,
    rp_id: String,
    user_handle: Option<Vec<u8>>,
    sign_count: u32,
}

impl fmt::Debug for SoftCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftCredential")
            .field("id", &URL_SAFE_NO_PAD.encode(&self.id))
            .field("rp_id", &self.rp_id)
            .field("sign_count", &self.sign_count)
            .finish_non_exhaustive()
    }
}

impl SoftCredential {
    /// The credential id.
    pub fn credential_id(&self) -> CredentialId {
        CredentialId::from_generated(&self.id)
    }

    /// The counter the next sign-in starts from.
    pub fn sign_count(&self) -> u32 {
        self.sign_count
    }

    /// Sets the counter (e.g. back, to simulate a clone that fell behind).
    pub fn set_sign_count(&mut self, count: u32) {
        self.sign_count = count;
    }

    /// The user handle returned with each assertion.
    pub fn user_handle(&self) -> Option<&[u8]> {
        self.user_handle.as_deref()
    }

    /// Sets (or removes) the user handle returned with each assertion.
    pub fn set_user_handle(&mut self, handle: Option<Vec<u8>>) {
        self.user_handle = handle;
    }
}

impl SoftAuthenticator {
    /// A software authenticator reporting `aaguid`, with default settings.
    pub fn new(aaguid: Uuid) -> Self {
        SoftAuthenticator {
            aaguid,
            rng: SystemRandom::new(),
            settings: SoftSettings::default(),
        }
    }

    /// Answers registration options (`{ "publicKey": { … } }` or the inner object) for a page
    /// on `origin`: creates a P-256 credential and returns the JSON the browser would post.
    pub fn create(&self, options: &Value, origin: &str) -> Result<(Value, SoftCredential), String> {
        let options = options.get("publicKey").unwrap_or(options);
        let rp_id = text_at(options, &["rp", "id"])?;
        let challenge = base64_at(options, &["challenge"])?;
        let user_handle = base64_at(options, &["user", "id"])?;
        let offers_es256 = options
            .get("pubKeyCredParams")
            .and_then(Value::as_array)
            .is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p.get("alg").and_then(Value::as_i64) == Some(ES256))
            });
        if !offers_es256 {
            return Err("the options do not offer ES256".into());
        }

        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.rng)
            .map_err(|_| "key generation failed".to_owned())?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &self.rng)
                .map_err(|e| format!("key: {e}"))?;
        let id = match &self.settings.fixed_credential_id {
            Some(id) => id.clone(),
            None => {
                let mut id = vec![0u8; CREDENTIAL_ID_BYTES];
                self.rng
                    .fill(&mut id)
                    .map_err(|_| "random generation failed".to_owned())?;
                id
            }
        };
        let credential = SoftCredential {
            id,
            key: Arc::new(key),
            rp_id: rp_id.clone(),
            user_handle: Some(user_handle),
            sign_count: 0,
        };

        let mut auth_data =
            self.auth_data_head(&rp_id, crate::wire::flags::ATTESTED_CREDENTIAL_DATA, 0);
        auth_data.extend_from_slice(self.aaguid.as_bytes());
        let id_length = u16::try_from(credential.id.len()).map_err(|_| "credential id too long")?;
        auth_data.extend_from_slice(&id_length.to_be_bytes());
        auth_data.extend_from_slice(&credential.id);
        auth_data.extend_from_slice(&cose_key(credential.key.public_key().as_ref())?);

        let client_data = self.client_data("webauthn.create", &challenge, origin)?;
        let signed = signed_bytes(&auth_data, &client_data);
        let statement = match &self.settings.attestation {
            SoftAttestation::None => ("none", cbor::Item::Map(Vec::new())),
            SoftAttestation::SelfAttestation => {
                let sig = sign(&credential.key, &self.rng, &signed)?;
                (
                    "packed",
                    cbor::Item::Map(vec![
                        (cbor::Item::Text("alg".into()), cbor::Item::Int(ES256)),
                        (cbor::Item::Text("sig".into()), cbor::Item::Bytes(sig)),
                    ]),
                )
            }
            SoftAttestation::Packed { key, x5c } => {
                let sig = sign(key, &self.rng, &signed)?;
                let chain = x5c.iter().cloned().map(cbor::Item::Bytes).collect();
                (
                    "packed",
                    cbor::Item::Map(vec![
                        (cbor::Item::Text("alg".into()), cbor::Item::Int(ES256)),
                        (cbor::Item::Text("sig".into()), cbor::Item::Bytes(sig)),
                        (cbor::Item::Text("x5c".into()), cbor::Item::Array(chain)),
                    ]),
                )
            }
        };
        let (format, statement) = statement;
        let attestation_object = cbor::encode(&cbor::Item::Map(vec![
            (
                cbor::Item::Text("fmt".into()),
                cbor::Item::Text(format.into()),
            ),
            (cbor::Item::Text("attStmt".into()), statement),
            (
                cbor::Item::Text("authData".into()),
                cbor::Item::Bytes(auth_data),
            ),
        ]));

        let id_text = URL_SAFE_NO_PAD.encode(&credential.id);
        let response = json!({
            "id": id_text,
            "rawId": id_text,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "attestationObject": URL_SAFE_NO_PAD.encode(&attestation_object),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "transports": self.settings.transports,
            },
            "clientExtensionResults": { "credProps": { "rk": true } },
        });
        Ok((response, credential))
    }

    /// Answers sign-in options for a page on `origin` with `credential`, adding
    /// [`SoftSettings::counter_step`] to its counter first. Refuses (as a browser would find no
    /// credential) when the options name another RP ID or an allow list without it.
    pub fn get(
        &self,
        credential: &mut SoftCredential,
        options: &Value,
        origin: &str,
    ) -> Result<Value, String> {
        let options = options.get("publicKey").unwrap_or(options);
        let rp_id = text_at(options, &["rpId"])?;
        let challenge = base64_at(options, &["challenge"])?;
        if rp_id != credential.rp_id {
            return Err(format!(
                "the credential belongs to {}, the options ask for {rp_id}",
                credential.rp_id
            ));
        }
        let allow = options
            .get("allowCredentials")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let id_text = URL_SAFE_NO_PAD.encode(&credential.id);
        if !allow.is_empty()
            && !allow
                .iter()
                .any(|c| c.get("id").and_then(Value::as_str) == Some(id_text.as_str()))
        {
            return Err("the credential is not in allowCredentials".into());
        }

        credential.sign_count = credential
            .sign_count
            .saturating_add(self.settings.counter_step);
        let auth_data = self.auth_data_head(&rp_id, 0, credential.sign_count);
        let client_data = self.client_data("webauthn.get", &challenge, origin)?;
        let mut signature = sign(
            &credential.key,
            &self.rng,
            &signed_bytes(&auth_data, &client_data),
        )?;
        if self.settings.corrupt_signature
            && let Some(last) = signature.last_mut()
        {
            // The last byte belongs to s: the DER stays well-formed, the signature does not verify.
            *last ^= 0x01;
        }
        Ok(json!({
            "id": id_text,
            "rawId": id_text,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "response": {
                "authenticatorData": URL_SAFE_NO_PAD.encode(&auth_data),
                "clientDataJSON": URL_SAFE_NO_PAD.encode(&client_data),
                "signature": URL_SAFE_NO_PAD.encode(&signature),
                "userHandle": credential.user_handle.as_ref().map(|h| URL_SAFE_NO_PAD.encode(h)),
            },
            "clientExtensionResults": {},
        }))
    }

    /// RP ID hash, flags and counter: the 37 bytes every authenticator data starts with.
    fn auth_data_head(&self, rp_id: &str, extra_flags: u8, count: u32) -> Vec<u8> {
        use crate::wire::flags;
        let settings = &self.settings;
        let hashed = settings.rp_id_override.as_deref().unwrap_or(rp_id);
        let mut flag_byte = extra_flags;
        for (on, bit) in [
            (settings.user_present, flags::USER_PRESENT),
            (settings.user_verified, flags::USER_VERIFIED),
            (settings.backup_eligible, flags::BACKUP_ELIGIBLE),
            (settings.backed_up, flags::BACKED_UP),
        ] {
            if on {
                flag_byte |= bit;
            }
        }
        let mut data = digest(&SHA256, hashed.as_bytes()).as_ref().to_vec();
        data.push(flag_byte);
        data.extend_from_slice(&count.to_be_bytes());
        data
    }

    fn client_data(
        &self,
        ceremony: &str,
        challenge: &[u8],
        origin: &str,
    ) -> Result<Vec<u8>, String> {
        let kind = self
            .settings
            .client_data_type_override
            .as_deref()
            .unwrap_or(ceremony);
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": URL_SAFE_NO_PAD.encode(challenge),
            "origin": origin,
            "crossOrigin": self.settings.cross_origin,
        }))
        .map_err(|e| e.to_string())
    }
}

/// What an assertion or attestation signs: authenticator data, then SHA-256 of client data.
fn signed_bytes(auth_data: &[u8], client_data: &[u8]) -> Vec<u8> {
    let mut signed = auth_data.to_vec();
    signed.extend_from_slice(digest(&SHA256, client_data).as_ref());
    signed
}

fn sign(key: &EcdsaKeyPair, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, String> {
    key.sign(rng, message)
        .map(|s| s.as_ref().to_vec())
        .map_err(|_| "signing failed".to_owned())
}

/// The COSE_Key of an uncompressed P-256 point (`04 || x || y`): kty EC2, alg ES256, crv P-256.
fn cose_key(public_key: &[u8]) -> Result<Vec<u8>, String> {
    let (x, y) = split_point(public_key)?;
    Ok(cbor::encode(&cbor::Item::Map(vec![
        (cbor::Item::Int(1), cbor::Item::Int(2)),
        (cbor::Item::Int(3), cbor::Item::Int(ES256)),
        (cbor::Item::Int(-1), cbor::Item::Int(1)),
        (cbor::Item::Int(-2), cbor::Item::Bytes(x.to_vec())),
        (cbor::Item::Int(-3), cbor::Item::Bytes(y.to_vec())),
    ])))
}

fn split_point(public_key: &[u8]) -> Result<(&[u8], &[u8]), String> {
    match public_key {
        [0x04, rest @ ..] if rest.len() == 64 => Ok(rest.split_at(32)),
        _ => Err("not an uncompressed P-256 point".into()),
    }
}

fn text_at(value: &Value, path: &[&str]) -> Result<String, String> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the options have no {}", path.join(".")))
}

fn base64_at(value: &Value, path: &[&str]) -> Result<Vec<u8>, String> {
    let text = text_at(value, path)?;
    crate::wire::decode_base64url(&text)
        .ok_or_else(|| format!("{} is not base64url", path.join(".")))
}

/// One P-256 public key in the library's COSE form, a message and its signature: the unit of
/// work of a sign-in's signature check, for a benchmark's baseline.
#[derive(Debug, Clone)]
pub struct RawVerifier {
    key: COSEKey,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl RawVerifier {
    /// Verifies the signature once through webauthn-rs-core's `COSEKey::verify_signature`,
    /// the function a sign-in's signature check calls (point decoding, DER signature parsing,
    /// ECDSA P-256 verification); true when it verifies.
    pub fn verify_once(&self) -> bool {
        self.key
            .verify_signature(&self.signature, &self.message)
            .unwrap_or(false)
    }
}

/// A [`RawVerifier`] over a fresh key, signing a message of an assertion's shape (37 bytes of
/// authenticator data and a 32-byte client data hash).
pub fn raw_verifier() -> Result<RawVerifier, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| "key generation failed".to_owned())?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| format!("key: {e}"))?;
    let mut auth_data = digest(&SHA256, b"localhost").as_ref().to_vec();
    auth_data.push(crate::wire::flags::USER_PRESENT | crate::wire::flags::USER_VERIFIED);
    auth_data.extend_from_slice(&1u32.to_be_bytes());
    let message = signed_bytes(
        &auth_data,
        br#"{"type":"webauthn.get","challenge":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","origin":"http://localhost:8080","crossOrigin":false}"#,
    );
    let signature = sign(&key, &rng, &message)?;
    let (x, y) = split_point(key.public_key().as_ref())?;
    Ok(RawVerifier {
        key: COSEKey {
            type_: COSEAlgorithm::ES256,
            key: COSEKeyType::EC_EC2(COSEEC2Key {
                curve: ECDSACurve::SECP256R1,
                x: x.to_vec(),
                y: y.to_vec(),
            }),
        },
        message,
        signature,
    })
}

/// The little CBOR (RFC 8949) the authenticator writes: integers, byte and text strings,
/// arrays and maps, definite lengths, in the order given (callers write canonical order).
mod cbor {
    pub enum Item {
        Int(i64),
        Bytes(Vec<u8>),
        Text(String),
        Array(Vec<Item>),
        Map(Vec<(Item, Item)>),
    }

    pub fn encode(item: &Item) -> Vec<u8> {
        let mut out = Vec::new();
        write(item, &mut out);
        out
    }

    fn write(item: &Item, out: &mut Vec<u8>) {
        match item {
            Item::Int(n) if *n >= 0 => head(0, n.unsigned_abs(), out),
            // A negative integer n is written as major type 1 with argument -1 - n.
            Item::Int(n) => head(1, n.unsigned_abs() - 1, out),
            Item::Bytes(bytes) => {
                head(2, bytes.len() as u64, out);
                out.extend_from_slice(bytes);
            }
            Item::Text(text) => {
                head(3, text.len() as u64, out);
                out.extend_from_slice(text.as_bytes());
            }
            Item::Array(items) => {
                head(4, items.len() as u64, out);
                for item in items {
                    write(item, out);
                }
            }
            Item::Map(pairs) => {
                head(5, pairs.len() as u64, out);
                for (key, value) in pairs {
                    write(key, out);
                    write(value, out);
                }
            }
        }
    }

    /// The initial byte (major type, additional information) and the argument's bytes.
    fn head(major: u8, argument: u64, out: &mut Vec<u8>) {
        let major = major << 5;
        if argument < 24 {
            out.push(major | argument as u8);
        } else if let Ok(n) = u8::try_from(argument) {
            out.extend_from_slice(&[major | 24, n]);
        } else if let Ok(n) = u16::try_from(argument) {
            out.push(major | 25);
            out.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(argument) {
            out.push(major | 26);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn encodes_rfc_8949_examples() {
            let cases: Vec<(Item, &[u8])> = vec![
                (Item::Int(0), &[0x00]),
                (Item::Int(23), &[0x17]),
                (Item::Int(24), &[0x18, 0x18]),
                (Item::Int(1000), &[0x19, 0x03, 0xe8]),
                (Item::Int(1_000_000), &[0x1a, 0x00, 0x0f, 0x42, 0x40]),
                (
                    Item::Int(1_000_000_000_000),
                    &[0x1b, 0x00, 0x00, 0x00, 0xe8, 0xd4, 0xa5, 0x10, 0x00],
                ),
                (Item::Int(-1), &[0x20]),
                (Item::Int(-7), &[0x26]),
                (Item::Int(-100), &[0x38, 0x63]),
                (Item::Int(-1000), &[0x39, 0x03, 0xe7]),
                (
                    Item::Int(i64::MIN),
                    &[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                ),
                (Item::Bytes(vec![1, 2, 3, 4]), &[0x44, 1, 2, 3, 4]),
                (Item::Text("IETF".into()), &[0x64, 0x49, 0x45, 0x54, 0x46]),
                (
                    Item::Array(vec![Item::Int(1), Item::Int(2), Item::Int(3)]),
                    &[0x83, 1, 2, 3],
                ),
                (
                    Item::Map(vec![
                        (Item::Int(1), Item::Int(2)),
                        (Item::Int(3), Item::Int(4)),
                    ]),
                    &[0xa2, 1, 2, 3, 4],
                ),
                (Item::Map(Vec::new()), &[0xa0]),
            ];
            for (item, expected) in cases {
                assert_eq!(encode(&item), expected);
            }
        }

        #[test]
        fn long_strings_use_wider_lengths() {
            let encoded = encode(&Item::Bytes(vec![0; 300]));
            assert_eq!(&encoded[..3], &[0x59, 0x01, 0x2c]);
            assert_eq!(encoded.len(), 303);
        }

        #[test]
        fn the_library_reads_what_we_write() {
            let item = Item::Map(vec![
                (Item::Text("fmt".into()), Item::Text("none".into())),
                (Item::Int(-3), Item::Array(vec![Item::Bytes(vec![9; 40])])),
            ]);
            let value: serde_cbor_2::Value = serde_cbor_2::from_slice(&encode(&item)).unwrap();
            let serde_cbor_2::Value::Map(map) = value else {
                panic!("not a map");
            };
            assert_eq!(
                map.get(&serde_cbor_2::Value::Text("fmt".into())),
                Some(&serde_cbor_2::Value::Text("none".into()))
            );
            assert_eq!(
                map.get(&serde_cbor_2::Value::Integer(-3)),
                Some(&serde_cbor_2::Value::Array(vec![
                    serde_cbor_2::Value::Bytes(vec![9; 40])
                ]))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_verifier_verifies_and_detects_tampering() {
        let verifier = raw_verifier().unwrap();
        assert!(verifier.verify_once());
        let mut tampered = verifier.clone();
        tampered.message[0] ^= 1;
        assert!(!tampered.verify_once());
        let mut garbage = verifier;
        garbage.signature = vec![0x30, 0x00];
        assert!(!garbage.verify_once());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let verifier = SoftAuthenticator::new(Uuid::nil());
        let debug = format!("{verifier:?}");
        assert!(debug.contains("SoftAuthenticator"));
        let attestation = SoftAttestation::Packed {
            key: Arc::new(
                EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_ASN1_SIGNING,
                    EcdsaKeyPair::generate_pkcs8(
                        &ECDSA_P256_SHA256_ASN1_SIGNING,
                        &SystemRandom::new(),
                    )
                    .unwrap()
                    .as_ref(),
                    &SystemRandom::new(),
                )
                .unwrap(),
            ),
            x5c: vec![vec![1, 2, 3]],
        };
        assert_eq!(format!("{attestation:?}"), "Packed { certificates: 1, .. }");
    }
}
