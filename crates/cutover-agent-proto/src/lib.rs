//! The pass-through agent protocol (SPEC §5.3), shared by `cutover serve` and `cutover agent`.
//!
//! * **Transport**: the agent makes every connection (HTTPS to `/agent/v1/...`, JSON bodies);
//!   it never listens. Work reaches it through a long poll.
//! * **Identity**: at registration the agent generates two key pairs — Ed25519 to sign, X25519
//!   to receive passwords — and proves it holds the signing key. Later it signs a server
//!   challenge to get a short-lived session token ([`SessionRequest`]).
//! * **Passwords**: the server seals each password to every healthy agent's X25519 key with HPKE
//!   (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305). The
//!   additional data binds the request id, the agent id and the user, so a sealed password
//!   cannot be replayed into another request or opened as someone else's. The plaintext is
//!   padded to a multiple of [`PAD_BLOCK`] bytes so its length does not show.
#![forbid(unsafe_code)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cutover_core::pta::PtaResult;
use hpke::{Deserializable, Kem as _, Serializable};
use ring::rand::SecureRandom as _;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// The protocol version this build speaks (sent by the agent, checked by the server).
pub const PROTOCOL_VERSION: u32 = 1;
/// HPKE `info`: names the purpose, so these keys can never open anything else.
pub const HPKE_INFO: &[u8] = b"cutover pass-through password v1";
/// Password plaintexts are padded to a multiple of this.
pub const PAD_BLOCK: usize = 64;
/// Longest password an envelope carries.
pub const MAX_PASSWORD_LEN: usize = cutover_core::limits::MAX_PASSWORD_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("a key or field is not valid base64url or has the wrong length: {0}")]
    Malformed(&'static str),
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error(
        "the envelope does not open with this agent's key (wrong agent, wrong request, or tampered)"
    )]
    DoesNotOpen,
    #[error("no secure random numbers available")]
    Random,
}

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn unb64(s: &str, what: &'static str) -> Result<Vec<u8>, EnvelopeError> {
    URL_SAFE_NO_PAD
        .decode(s.trim())
        .map_err(|_| EnvelopeError::Malformed(what))
}

fn random<const N: usize>() -> Result<[u8; N], EnvelopeError> {
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| EnvelopeError::Random)?;
    Ok(out)
}

/// ring's system RNG for the HPKE crate (which takes a `rand_core` 0.6 RNG).
struct SystemRng;

impl hpke::rand_core::RngCore for SystemRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // This trait has no way to report failure. The system RNG only fails when the OS has
        // none, and then sealing must not go on with predictable bytes: stop this thread.
        #[allow(clippy::expect_used)]
        ring::rand::SystemRandom::new()
            .fill(dest)
            .expect("the operating system's random number generator failed");
    }
}

impl hpke::rand_core::CryptoRng for SystemRng {}

/// The additional data one envelope is bound to.
pub fn envelope_aad(request_id: Uuid, agent_id: Uuid, user_principal_name: &str) -> Vec<u8> {
    format!("cutover-pta-v1\0{request_id}\0{agent_id}\0{user_principal_name}").into_bytes()
}

/// A password sealed to one agent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedPassword {
    /// The HPKE encapsulated key (base64url).
    pub enc: String,
    /// The ciphertext with its tag (base64url).
    pub ct: String,
}

impl std::fmt::Debug for SealedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedPassword({} bytes)", self.ct.len())
    }
}

/// Seal `password` to an agent's public encryption key (base64url, 32 bytes).
pub fn seal_password(
    encryption_key: &str,
    password: &[u8],
    aad: &[u8],
) -> Result<SealedPassword, EnvelopeError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(EnvelopeError::TooLong);
    }
    let pk_bytes = unb64(encryption_key, "encryptionKey")?;
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&pk_bytes)
        .map_err(|_| EnvelopeError::Malformed("encryptionKey"))?;
    let padded_len = (password.len() + 2).div_ceil(PAD_BLOCK) * PAD_BLOCK;
    let mut plain = vec![0u8; padded_len];
    plain[..2].copy_from_slice(&(password.len() as u16).to_be_bytes());
    plain[2..2 + password.len()].copy_from_slice(password);
    let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
        &hpke::OpModeS::Base,
        &pk,
        HPKE_INFO,
        &plain,
        aad,
        &mut SystemRng,
    )
    .map_err(|_| EnvelopeError::DoesNotOpen)?;
    plain.fill(0);
    Ok(SealedPassword {
        enc: b64(&enc.to_bytes()),
        ct: b64(&ct),
    })
}

/// A password opened by the agent; zeroed when dropped, never printed.
pub struct OpenedPassword(Vec<u8>);

impl OpenedPassword {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for OpenedPassword {
    fn drop(&mut self) {
        self.0.fill(0);
    }
}

impl std::fmt::Debug for OpenedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedPassword(***)")
    }
}

/// An agent's two key pairs. The private halves never leave the agent's state directory.
pub struct AgentKeys {
    signing_pkcs8: Vec<u8>,
    signing: Ed25519KeyPair,
    encryption_secret: [u8; 32],
}

impl std::fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentKeys")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// The public halves, as the server stores them (base64url, 32 bytes each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPublicKeys {
    pub signing_key: String,
    pub encryption_key: String,
}

/// The on-disk form of [`AgentKeys`] (the agent stores it with mode 0600).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredKeys {
    pub signing_pkcs8: String,
    pub encryption_secret: String,
}

impl std::fmt::Debug for StoredKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredKeys(***)")
    }
}

impl AgentKeys {
    pub fn generate() -> Result<Self, EnvelopeError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| EnvelopeError::Random)?;
        let secret: [u8; 32] = random()?;
        Self::from_parts(pkcs8.as_ref().to_vec(), secret)
    }

    fn from_parts(
        signing_pkcs8: Vec<u8>,
        encryption_secret: [u8; 32],
    ) -> Result<Self, EnvelopeError> {
        let signing = Ed25519KeyPair::from_pkcs8(&signing_pkcs8)
            .map_err(|_| EnvelopeError::Malformed("signingPkcs8"))?;
        Ok(Self {
            signing_pkcs8,
            signing,
            encryption_secret,
        })
    }

    pub fn to_stored(&self) -> StoredKeys {
        StoredKeys {
            signing_pkcs8: b64(&self.signing_pkcs8),
            encryption_secret: b64(&self.encryption_secret),
        }
    }

    pub fn from_stored(s: &StoredKeys) -> Result<Self, EnvelopeError> {
        let pkcs8 = unb64(&s.signing_pkcs8, "signingPkcs8")?;
        let secret: [u8; 32] = unb64(&s.encryption_secret, "encryptionSecret")?
            .try_into()
            .map_err(|_| EnvelopeError::Malformed("encryptionSecret"))?;
        Self::from_parts(pkcs8, secret)
    }

    fn hpke_keys(
        &self,
    ) -> (
        <Kem as hpke::Kem>::PrivateKey,
        <Kem as hpke::Kem>::PublicKey,
    ) {
        // The stored secret is the input keying material of RFC 9180 DeriveKeyPair.
        Kem::derive_keypair(&self.encryption_secret)
    }

    pub fn public(&self) -> AgentPublicKeys {
        AgentPublicKeys {
            signing_key: b64(self.signing.public_key().as_ref()),
            encryption_key: b64(&self.hpke_keys().1.to_bytes()),
        }
    }

    pub fn sign(&self, message: &[u8]) -> String {
        b64(self.signing.sign(message).as_ref())
    }

    /// Open a password sealed to this agent for `aad`.
    pub fn open_password(
        &self,
        sealed: &SealedPassword,
        aad: &[u8],
    ) -> Result<OpenedPassword, EnvelopeError> {
        let enc_bytes = unb64(&sealed.enc, "enc")?;
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc_bytes)
            .map_err(|_| EnvelopeError::Malformed("enc"))?;
        let ct = unb64(&sealed.ct, "ct")?;
        let (sk, _) = self.hpke_keys();
        let mut plain = hpke::single_shot_open::<Aead, Kdf, Kem>(
            &hpke::OpModeR::Base,
            &sk,
            &enc,
            HPKE_INFO,
            &ct,
            aad,
        )
        .map_err(|_| EnvelopeError::DoesNotOpen)?;
        let out = (|| {
            if plain.len() < 2 || plain.len() % PAD_BLOCK != 0 {
                return None;
            }
            let n = u16::from_be_bytes([plain[0], plain[1]]) as usize;
            (n <= MAX_PASSWORD_LEN && 2 + n <= plain.len()).then(|| plain[2..2 + n].to_vec())
        })();
        plain.fill(0);
        out.map(OpenedPassword).ok_or(EnvelopeError::DoesNotOpen)
    }
}

/// Check an agent's Ed25519 signature (all base64url).
pub fn verify_signature(signing_key: &str, message: &[u8], signature: &str) -> bool {
    let (Ok(pk), Ok(sig)) = (
        unb64(signing_key, "signingKey"),
        unb64(signature, "signature"),
    ) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(message, &sig)
        .is_ok()
}

/// Check that public keys have the right shape before storing them.
pub fn check_public_keys(keys: &AgentPublicKeys) -> Result<(), EnvelopeError> {
    let s = unb64(&keys.signing_key, "signingKey")?;
    if s.len() != 32 {
        return Err(EnvelopeError::Malformed("signingKey"));
    }
    let e = unb64(&keys.encryption_key, "encryptionKey")?;
    <Kem as hpke::Kem>::PublicKey::from_bytes(&e)
        .map_err(|_| EnvelopeError::Malformed("encryptionKey"))?;
    Ok(())
}

/// What the agent signs to register: the token and both public keys (proof of possession).
pub fn register_proof(token: &str, keys: &AgentPublicKeys) -> Vec<u8> {
    format!(
        "cutover-agent-register-v1\n{token}\n{}\n{}",
        keys.signing_key, keys.encryption_key
    )
    .into_bytes()
}

/// What the agent signs to open a session.
pub fn session_proof(agent_id: Uuid, challenge: &str) -> Vec<u8> {
    format!("cutover-agent-session-v1\n{agent_id}\n{challenge}").into_bytes()
}

/// What the agent signs with its **new** signing key to rotate (the request itself travels on
/// a session opened with the old key).
pub fn rotate_proof(agent_id: Uuid, keys: &AgentPublicKeys) -> Vec<u8> {
    format!(
        "cutover-agent-rotate-v1\n{agent_id}\n{}\n{}",
        keys.signing_key, keys.encryption_key
    )
    .into_bytes()
}

// ---- wire types (JSON, camelCase; requests refuse unknown fields) --------------------------

/// `POST /agent/v1/register` (no session; the one-time token authorises it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    pub token: String,
    pub host: String,
    pub version: String,
    pub protocol: u32,
    pub keys: AgentPublicKeys,
    /// `sign(register_proof(token, keys))`.
    pub proof: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    pub agent_id: Uuid,
    /// Healthy agents right now, and the fleet warning if fewer than three.
    pub healthy_agents: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `POST /agent/v1/challenge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChallengeRequest {
    pub agent_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeResponse {
    pub challenge: String,
    pub expires_in_secs: i64,
}

/// `POST /agent/v1/session`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionRequest {
    pub agent_id: Uuid,
    pub challenge: String,
    /// `sign(session_proof(agent_id, challenge))`.
    pub signature: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// Bearer token for the calls below.
    pub token: String,
    pub expires_in_secs: i64,
}

impl std::fmt::Debug for SessionResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SessionResponse(token: ***, expires_in_secs: {})",
            self.expires_in_secs
        )
    }
}

/// `POST /agent/v1/poll` (session): wait up to `waitMs` for up to `max` requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollRequest {
    pub max: u32,
    pub wait_ms: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollResponse {
    pub requests: Vec<WorkItem>,
}

/// One password to check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkItem {
    pub request_id: Uuid,
    pub correlation_id: Uuid,
    /// The user's sign-in name (normalised), for the directory search and the envelope's AAD.
    pub user_principal_name: String,
    /// The synced anchor, when the user came from the directory: an agent configured with the
    /// anchor attribute checks that the entry it found is this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_id: Option<String>,
    /// Milliseconds left before the server stops waiting: past it, the agent does not bind.
    pub remaining_ms: i64,
    pub password: SealedPassword,
}

/// `POST /agent/v1/results` (session).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultsRequest {
    pub results: Vec<ResultItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultItem {
    pub request_id: Uuid,
    pub result: PtaResult,
    /// For the admin: what the directory said (e.g. the LDAP result and diagnostic). Never
    /// the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Time the agent spent on it.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultsResponse {
    pub accepted: Vec<Uuid>,
    pub rejected: Vec<RejectedResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedResult {
    pub request_id: Uuid,
    /// `late` (the server gave up waiting), `notYours` (another agent holds it), `unknown`.
    pub reason: String,
}

/// `POST /agent/v1/heartbeat` (session), every [`cutover_core::pta::HEARTBEAT_INTERVAL_SECS`].
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Heartbeat {
    pub host: String,
    pub version: String,
    /// Unix milliseconds the agent process started.
    pub started_at: i64,
    pub stats: AgentStats,
    pub directory: DirectoryStatus,
}

/// Counters since the agent started.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentStats {
    pub validations: u64,
    /// Per result code (`success`, `invalidCredentials`, ...).
    pub by_result: std::collections::BTreeMap<String, u64>,
    /// Validations in the last 60 seconds.
    pub last_minute: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub in_flight: u32,
    /// Results the server refused as late.
    pub late: u64,
    /// CPU time used by the agent process, and its resident memory.
    pub cpu_ms: u64,
    pub rss_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectoryStatus {
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The directory's own lockout policy when the agent could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockout: Option<cutover_core::lockout::DirectoryLockout>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    pub server_time: i64,
    /// Send the next heartbeat after this many seconds.
    pub interval_secs: i64,
}

/// `POST /agent/v1/keys` (session opened with the old key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeysRequest {
    pub keys: AgentPublicKeys,
    /// `new_keys.sign(rotate_proof(agent_id, keys))`.
    pub proof: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateKeysResponse {
    pub key_generation: u32,
}

/// `GET /agent/v1/self` (session): the server's view of this agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfView {
    pub agent_id: Uuid,
    pub enabled: bool,
    pub health: String,
    pub key_generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<i64>,
    pub healthy_agents: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The error body every `/agent/v1` endpoint returns (same shape as the admin API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentErrorResponse {
    pub error: AgentErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentErrorBody {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_is_bound_to_request_agent_and_user() {
        let keys = AgentKeys::generate().unwrap();
        let public = keys.public();
        check_public_keys(&public).unwrap();
        let (r, a) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let aad = envelope_aad(r, a, "user1@corp.example");
        for pw in ["", "x", "correct horse battery staple", &"é".repeat(128)] {
            let sealed = seal_password(&public.encryption_key, pw.as_bytes(), &aad).unwrap();
            assert_eq!(
                unb64(&sealed.ct, "ct").unwrap().len() % PAD_BLOCK,
                16,
                "padded + tag"
            );
            assert_eq!(
                keys.open_password(&sealed, &aad).unwrap().expose(),
                pw.as_bytes()
            );
            for other in [
                envelope_aad(Uuid::from_u128(9), a, "user1@corp.example"),
                envelope_aad(r, Uuid::from_u128(9), "user1@corp.example"),
                envelope_aad(r, a, "user2@corp.example"),
            ] {
                assert_eq!(
                    keys.open_password(&sealed, &other).unwrap_err(),
                    EnvelopeError::DoesNotOpen
                );
            }
        }
        let sealed = seal_password(&public.encryption_key, b"pw", &aad).unwrap();
        let other = AgentKeys::generate().unwrap();
        assert_eq!(
            other.open_password(&sealed, &aad).unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
        let mut tampered = sealed.clone();
        let mut ct = unb64(&tampered.ct, "ct").unwrap();
        ct[3] ^= 1;
        tampered.ct = b64(&ct);
        assert_eq!(
            keys.open_password(&tampered, &aad).unwrap_err(),
            EnvelopeError::DoesNotOpen
        );
        assert_eq!(
            seal_password(&public.encryption_key, &[b'a'; MAX_PASSWORD_LEN + 1], &aad).unwrap_err(),
            EnvelopeError::TooLong
        );
        assert!(seal_password(&public.encryption_key, &[b'a'; MAX_PASSWORD_LEN], &aad).is_ok());
        assert!(matches!(
            seal_password("not-a-key", b"pw", &aad),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(!format!("{sealed:?}").contains(&sealed.ct));
    }

    #[test]
    fn keys_survive_storage_and_sign() {
        let keys = AgentKeys::generate().unwrap();
        let again = AgentKeys::from_stored(&keys.to_stored()).unwrap();
        assert_eq!(keys.public(), again.public());
        let msg = session_proof(Uuid::from_u128(5), "challenge");
        let sig = again.sign(&msg);
        assert!(verify_signature(&keys.public().signing_key, &msg, &sig));
        assert!(!verify_signature(
            &keys.public().signing_key,
            b"other",
            &sig
        ));
        let other = AgentKeys::generate().unwrap();
        assert!(!verify_signature(&other.public().signing_key, &msg, &sig));
        assert!(!verify_signature("%%%", &msg, &sig));
        assert!(!format!("{keys:?}").contains(&keys.to_stored().encryption_secret));
        assert_eq!(format!("{:?}", keys.to_stored()), "StoredKeys(***)");
    }

    #[test]
    fn malformed_public_keys_are_refused() {
        let good = AgentKeys::generate().unwrap().public();
        let short = AgentPublicKeys {
            signing_key: b64(&[1; 31]),
            ..good.clone()
        };
        assert!(check_public_keys(&short).is_err());
        let bad_enc = AgentPublicKeys {
            encryption_key: b64(&[1; 33]),
            ..good
        };
        assert!(check_public_keys(&bad_enc).is_err());
    }
}
