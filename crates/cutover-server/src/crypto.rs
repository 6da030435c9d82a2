//! Cryptography Cutover's shell needs: random tokens, keyed hashes, password hashing and
//! ES256 JSON Web Tokens. `ring` does the primitives; nothing here is hand-rolled crypto.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cutover_core::Secret;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hmac, signature};
use serde_json::Value;

/// Bytes of randomness in codes, refresh tokens, session ids and client secrets (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG failing means the OS cannot give randomness; nothing safe can continue.
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random generator failed");
    buf
}

/// A fresh opaque token: 256 random bits, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(TOKEN_BYTES))
}

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A server-wide HMAC key (shared by all nodes through the database). Codes, refresh tokens,
/// session ids and client secrets are stored as `keyed_hash(value)`: high-entropy values need no
/// slow hash, and without the key a stolen table reveals nothing usable.
#[derive(Clone)]
pub struct Hasher {
    key: hmac::Key,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher(***)")
    }
}

impl Hasher {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }
    /// Keyed hash of `value` in a named domain (so a code can never be replayed as a session id).
    pub fn hash(&self, domain: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        hex(ctx.sign().as_ref())
    }
    /// Constant-time check of `value` against a stored `hash`.
    pub fn verify(&self, domain: &str, value: &str, hash: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.hash(domain, value)
            .as_bytes()
            .ct_eq(hash.as_bytes())
            .into()
    }
}

/// The key that seals other keys at rest (AES-256-GCM): token signing keys and the HMAC key
/// are stored in the database only in sealed form, so a database dump alone cannot mint
/// tokens. It lives outside the database (a file, by default in the data directory), and
/// every node of one database must have the same one.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(***)")
    }
}

/// Prefix of a value sealed by [`KeyEncryptionKey::seal`] (format version 1).
const SEALED_PREFIX: &str = "aesgcm1:";

impl KeyEncryptionKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        k.copy_from_slice(&random_bytes(32));
        Self(k)
    }

    /// Parse the base64url text of a key file (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| "the key-encryption key is not base64url text".to_string())?;
        let k: [u8; 32] = bytes.try_into().map_err(|_| {
            "the key-encryption key must be 32 bytes (43 base64url characters)".to_string()
        })?;
        Ok(Self(k))
    }

    pub fn to_text(&self) -> String {
        b64(&self.0)
    }

    /// A public check value: lets a node tell whether it holds the database's key without
    /// revealing the key.
    pub fn fingerprint(&self) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        hex(hmac::sign(&key, b"cutover key-encryption-key check v1").as_ref())
    }

    fn aead(&self) -> ring::aead::LessSafeKey {
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &self.0)
            .expect("a 32-byte AES-256 key is always valid");
        ring::aead::LessSafeKey::new(unbound)
    }

    /// Encrypt `plaintext`, bound to `label` (e.g. the key id) so a sealed value cannot be
    /// moved to another row.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; 12] = random_bytes(12).try_into().expect("12 random bytes");
        let mut buf = plaintext.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce_bytes),
                ring::aead::Aad::from(label.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        format!("{SEALED_PREFIX}{}", b64(&out))
    }

    /// Decrypt a value sealed under `label`; fails on any other key, label or a changed byte.
    pub fn open(&self, label: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| format!("{label} is not sealed with a key-encryption key"))?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| format!("{label}: sealed value is not base64url"))?;
        if raw.len() < 12 + 16 {
            return Err(format!("{label}: sealed value is too short"));
        }
        let (nonce, ct) = raw.split_at(12);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| format!("{label}: bad nonce"))?;
        let mut buf = ct.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, ring::aead::Aad::from(label.as_bytes()), &mut buf)
            .map_err(|_| format!("{label} cannot be decrypted with this key-encryption key"))?;
        Ok(plain.to_vec())
    }
}

/// argon2id cost parameters (OWASP's first recommendation by default: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields, default)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    fn engine(self) -> Result<argon2::Argon2<'static>, String> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// Check the parameters once at startup.
    pub fn validate(self) -> Result<(), String> {
        if self.memory_kib < 8 * 1024 {
            return Err(format!(
                "argon2 memory_kib = {} is below the safe minimum of 8192",
                self.memory_kib
            ));
        }
        self.engine().map(|_| ())
    }

    /// Hash a password into a PHC string (`$argon2id$v=19$m=…`).
    pub fn hash(self, password: &Secret) -> Result<String, String> {
        use argon2::PasswordHasher;
        let salt = argon2::password_hash::SaltString::encode_b64(&random_bytes(16))
            .map_err(|e| e.to_string())?;
        let hash = self
            .engine()?
            .hash_password(password.expose().as_bytes(), &salt)
            .map_err(|e| e.to_string())?;
        Ok(hash.to_string())
    }
}

/// Verify a password against a PHC string; the parameters come from the string itself.
/// Constant-time in the comparison (the argon2 crate compares in constant time).
pub fn verify_password(password: &Secret, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    match argon2::PasswordHash::new(phc) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// An ES256 key pair loaded for signing, with its public JWK.
pub struct Es256Key {
    pub kid: String,
    pair: signature::EcdsaKeyPair,
    pub public_jwk: Value,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Es256Key {
    /// Generate a new key; returns it with its PKCS#8 encoding for storage.
    pub fn generate() -> Result<(Self, Vec<u8>), String> {
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(|_| "generating an ES256 key failed".to_string())?;
        let kid = b64(&random_bytes(12));
        let key = Self::from_pkcs8(&kid, pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &rng,
        )
        .map_err(|e| format!("stored signing key {kid} is not a valid P-256 PKCS#8 key: {e}"))?;
        use signature::KeyPair;
        let public = pair.public_key().as_ref();
        // Uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
        if public.len() != 65 {
            return Err(format!(
                "signing key {kid} has an unexpected public key length"
            ));
        }
        let public_jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&public[1..33]),
            "y": b64(&public[33..65]),
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
        });
        Ok(Self {
            kid: kid.to_owned(),
            pair,
            public_jwk,
        })
    }

    /// Sign `claims` as a compact JWS with header `typ`.
    pub fn sign_jwt(&self, typ: &str, claims: &Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": typ, "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = self
            .pair
            .sign(&rng, signing_input.as_bytes())
            .expect("ECDSA signing with a valid key and the system RNG cannot fail");
        format!("{signing_input}.{}", b64(sig.as_ref()))
    }

    /// Raw public key bytes (uncompressed point), for verification.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        use signature::KeyPair;
        self.pair.public_key().as_ref().to_vec()
    }
}

/// Why a presented JWT was refused (for the server log; callers answer `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("unsupported header")]
    Header,
    #[error("signed by an unknown key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
}

/// The parts of a compact JWS, decoded but not yet verified.
pub struct UnverifiedJwt<'a> {
    pub kid: String,
    pub typ: Option<String>,
    signing_input: &'a str,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

impl<'a> UnverifiedJwt<'a> {
    pub fn parse(token: &'a str) -> Result<Self, JwtError> {
        if token.len() > 16 * 1024 {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.splitn(3, '.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Malformed);
        };
        if s.contains('.') {
            return Err(JwtError::Malformed);
        }
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(JwtError::Header);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::Header)?
            .to_owned();
        let typ = header.get("typ").and_then(Value::as_str).map(str::to_owned);
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        Ok(Self {
            kid,
            typ,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature,
            payload,
        })
    }

    /// Check the signature with `public_key` (uncompressed P-256 point) and return the claims.
    pub fn verify(self, public_key: &[u8]) -> Result<Value, JwtError> {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public_key)
            .verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| JwtError::Signature)?;
        serde_json::from_slice(&self.payload).map_err(|_| JwtError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_roundtrip_and_tamper() {
        let (key, _) = Es256Key::generate().unwrap();
        let token = key.sign_jwt("JWT", &serde_json::json!({"sub": "u1"}));
        let parsed = UnverifiedJwt::parse(&token).unwrap();
        assert_eq!(parsed.kid, key.kid);
        assert_eq!(parsed.verify(&key.public_key_bytes()).unwrap()["sub"], "u1");

        let (other, _) = Es256Key::generate().unwrap();
        let parsed = UnverifiedJwt::parse(&token).unwrap();
        assert_eq!(
            parsed.verify(&other.public_key_bytes()),
            Err(JwtError::Signature)
        );

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(br#"{"sub":"admin"}"#);
        parts[1] = &forged;
        let tampered = parts.join(".");
        assert_eq!(
            UnverifiedJwt::parse(&tampered)
                .unwrap()
                .verify(&key.public_key_bytes()),
            Err(JwtError::Signature)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert!(UnverifiedJwt::parse(junk).is_err(), "{junk}");
        }
        let none_alg = format!("{}.{}.", b64(br#"{"alg":"none","kid":"x"}"#), b64(b"{}"));
        assert_eq!(
            UnverifiedJwt::parse(&none_alg).err(),
            Some(JwtError::Header)
        );
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_label() {
        let kek = KeyEncryptionKey::generate();
        let sealed = kek.seal("kid-1", b"private key bytes");
        assert!(!sealed.contains("private"));
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private key bytes");
        assert!(kek.open("kid-2", &sealed).is_err(), "bound to its label");
        assert!(
            KeyEncryptionKey::generate().open("kid-1", &sealed).is_err(),
            "bound to its key"
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(
            kek.open("kid-1", &tampered).is_err(),
            "a changed byte is detected"
        );
        assert!(kek.open("kid-1", "plaintext").is_err());
        assert_ne!(
            kek.seal("x", b"same"),
            kek.seal("x", b"same"),
            "fresh nonce each time"
        );
        let again = KeyEncryptionKey::from_text(&format!("  {}\n", kek.to_text())).unwrap();
        assert_eq!(again.fingerprint(), kek.fingerprint());
        assert!(KeyEncryptionKey::from_text("c2hvcnQ").is_err());
        assert!(!format!("{kek:?}").contains(&kek.to_text()));
    }

    #[test]
    fn keyed_hashes_are_domain_separated() {
        let h = Hasher::new(b"k");
        assert_ne!(h.hash("code", "x"), h.hash("session", "x"));
        assert!(h.verify("code", "x", &h.hash("code", "x")));
        assert!(!h.verify("code", "y", &h.hash("code", "x")));
        assert_ne!(Hasher::new(b"other").hash("code", "x"), h.hash("code", "x"));
    }

    #[test]
    fn password_hash_roundtrip_with_cheap_params() {
        let p = Argon2Params {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        p.validate().unwrap();
        let h = p.hash(&Secret::new("correct horse")).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&Secret::new("correct horse"), &h));
        assert!(!verify_password(&Secret::new("wrong horse"), &h));
        assert!(!verify_password(&Secret::new("x"), "not a phc string"));
        assert!(
            Argon2Params {
                memory_kib: 1024,
                ..p
            }
            .validate()
            .is_err()
        );
    }
}
