//! Token signing keys shared by every node through the database: the newest unretired key
//! signs, and every key stays in JWKS until the tokens it signed have expired.

use std::sync::{Arc, RwLock};

use cutover_core::Timestamp;
use cutover_core::limits::RETIRED_KEY_PUBLISH_SECS;
use cutover_store::{SigningKey, Store, StoreError};
use serde_json::Value;

use crate::crypto::{Es256Key, KeyEncryptionKey};

/// How often a node re-reads the key table on its own (another node may have rotated).
pub const KEY_REFRESH_SECS: i64 = 30;
/// A verification with an unknown `kid` re-reads the table at most this often.
pub const KEY_MISS_REFRESH_SECS: i64 = 1;

pub struct LoadedKey {
    pub key: Es256Key,
    pub public: Vec<u8>,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

impl LoadedKey {
    pub fn published_at(&self, now: Timestamp) -> bool {
        self.retired_at
            .is_none_or(|r| now < r.plus_secs(RETIRED_KEY_PUBLISH_SECS))
    }
}

struct Ring {
    keys: Vec<Arc<LoadedKey>>,
    loaded_at: Timestamp,
}

pub struct KeyRing {
    store: Arc<dyn Store>,
    kek: KeyEncryptionKey,
    ring: RwLock<Ring>,
}

impl KeyRing {
    /// Load the keys, creating the first one when the database has no active key.
    pub async fn load(
        store: Arc<dyn Store>,
        now: Timestamp,
        kek: KeyEncryptionKey,
    ) -> Result<Self, String> {
        let mut keys = read_keys(&*store, &kek).await?;
        if !keys.iter().any(|k| k.retired_at.is_none()) {
            create_key(&*store, &kek, now).await?;
            keys = read_keys(&*store, &kek).await?;
        }
        Ok(Self {
            store,
            kek,
            ring: RwLock::new(Ring {
                keys,
                loaded_at: now,
            }),
        })
    }

    fn snapshot(&self) -> Vec<Arc<LoadedKey>> {
        self.ring.read().map(|r| r.keys.clone()).unwrap_or_default()
    }

    /// The key new tokens are signed with: the newest unretired one.
    pub fn active(&self) -> Option<Arc<LoadedKey>> {
        self.snapshot().into_iter().find(|k| k.retired_at.is_none())
    }

    /// Re-read the key table.
    pub async fn refresh(&self, now: Timestamp) -> Result<(), String> {
        let keys = read_keys(&*self.store, &self.kek).await?;
        if let Ok(mut r) = self.ring.write() {
            *r = Ring {
                keys,
                loaded_at: now,
            };
        }
        Ok(())
    }

    /// Re-read when the last read is older than `max_age_secs`.
    pub async fn refresh_if_older(&self, now: Timestamp, max_age_secs: i64) {
        let loaded_at = self
            .ring
            .read()
            .map(|r| r.loaded_at)
            .unwrap_or(Timestamp(0));
        if now.secs_since(loaded_at) >= max_age_secs
            && let Err(e) = self.refresh(now).await
        {
            tracing::warn!(error = %e, "could not refresh signing keys; keeping the ones loaded");
        }
    }

    /// A published key by id, re-reading the table once if it is unknown (another node rotated).
    pub async fn find(&self, kid: &str, now: Timestamp) -> Option<Arc<LoadedKey>> {
        let hit = |keys: Vec<Arc<LoadedKey>>| {
            keys.into_iter()
                .find(|k| k.key.kid == kid && k.published_at(now))
        };
        if let Some(k) = hit(self.snapshot()) {
            return Some(k);
        }
        self.refresh_if_older(now, KEY_MISS_REFRESH_SECS).await;
        hit(self.snapshot())
    }

    /// The JWKS document.
    pub fn jwks(&self, now: Timestamp) -> Value {
        let keys: Vec<Value> = self
            .snapshot()
            .iter()
            .filter(|k| k.published_at(now))
            .map(|k| k.key.public_jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Create a new key and retire the others; they stay published until their tokens expire.
    /// `audit` is completed with the new key id and committed with the change.
    pub async fn rotate(
        &self,
        now: Timestamp,
        mut audit: cutover_store::AuditEvent,
    ) -> Result<String, String> {
        let (row, kid) = new_key_row(&self.kek, now)?;
        audit.target_id = kid.clone();
        self.store
            .rotate_signing_key(&row, &audit)
            .await
            .map_err(|e| format!("rotating the signing key failed: {e}"))?;
        tracing::info!(kid = %kid, "rotated the token signing key");
        self.refresh(now).await?;
        Ok(kid)
    }

    pub fn all(&self) -> Vec<Arc<LoadedKey>> {
        self.snapshot()
    }
}

fn new_key_row(kek: &KeyEncryptionKey, now: Timestamp) -> Result<(SigningKey, String), String> {
    let (key, pkcs8) = Es256Key::generate()?;
    let row = SigningKey {
        kid: key.kid.clone(),
        algorithm: "ES256".into(),
        // Sealed, bound to its key id: the database never holds the private key in clear.
        private_key: kek.seal(&key.kid, &pkcs8),
        public_jwk: key.public_jwk.to_string(),
        created_at: now,
        retired_at: None,
    };
    Ok((row, key.kid))
}

async fn create_key(
    store: &dyn Store,
    kek: &KeyEncryptionKey,
    now: Timestamp,
) -> Result<String, String> {
    let (row, kid) = new_key_row(kek, now)?;
    store
        .insert_signing_key(&row)
        .await
        .map_err(|e: StoreError| format!("storing a new signing key failed: {e}"))?;
    tracing::info!(kid = %kid, "created the first ES256 token signing key");
    Ok(kid)
}

async fn read_keys(
    store: &dyn Store,
    kek: &KeyEncryptionKey,
) -> Result<Vec<Arc<LoadedKey>>, String> {
    let rows = store
        .list_signing_keys()
        .await
        .map_err(|e| format!("reading signing keys failed: {e}"))?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        if row.algorithm != "ES256" {
            continue;
        }
        let pkcs8 = kek.open(&row.kid, &row.private_key)?;
        let key = Es256Key::from_pkcs8(&row.kid, &pkcs8)?;
        let public = key.public_key_bytes();
        keys.push(Arc::new(LoadedKey {
            key,
            public,
            created_at: row.created_at,
            retired_at: row.retired_at,
        }));
    }
    // Newest first, as the store lists them.
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    Ok(keys)
}
