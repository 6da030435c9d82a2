//! Wire types for Temporary Access Passes, in the Graph shape
//! (`/api/v1/users/{id}/authentication/temporaryAccessPassMethods`), and their policy
//! (`/api/v1/policies/temporaryAccessPass`, the core's `TapPolicy` as it is).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST …/temporaryAccessPassMethods`: every field optional; the policy supplies defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTemporaryAccessPass {
    /// RFC 3339; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_in_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_usable_once: Option<bool>,
}

/// A user's pass as the API shows it. `temporary_access_pass` (the secret) is present only in
/// the answer that created it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemporaryAccessPassView {
    pub id: Uuid,
    pub created_date_time: String,
    pub start_date_time: String,
    pub lifetime_in_minutes: i64,
    pub is_usable_once: bool,
    pub is_usable: bool,
    /// `enabledByPolicy` when usable, else `expired`, `notYetValid`, `oneTimeUsed` or
    /// `disabledByPolicy`.
    pub method_usability_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_access_pass: Option<String>,
}

impl std::fmt::Debug for TemporaryAccessPassView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryAccessPassView")
            .field("id", &self.id)
            .field("start_date_time", &self.start_date_time)
            .field("lifetime_in_minutes", &self.lifetime_in_minutes)
            .field("is_usable_once", &self.is_usable_once)
            .field("is_usable", &self.is_usable)
            .field("method_usability_reason", &self.method_usability_reason)
            .field(
                "temporary_access_pass",
                &self.temporary_access_pass.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_never_shows_in_debug_and_requests_refuse_typos() {
        let v = TemporaryAccessPassView {
            id: Uuid::from_u128(1),
            created_date_time: "2026-01-01T00:00:00Z".into(),
            start_date_time: "2026-01-01T00:00:00Z".into(),
            lifetime_in_minutes: 60,
            is_usable_once: true,
            is_usable: true,
            method_usability_reason: "enabledByPolicy".into(),
            used_date_time: None,
            temporary_access_pass: Some("K7PQ2XWA".into()),
        };
        assert!(!format!("{v:?}").contains("K7PQ2XWA"));
        assert!(serde_json::to_string(&v).unwrap().contains("K7PQ2XWA"));
        assert!(
            serde_json::from_str::<CreateTemporaryAccessPass>(r#"{"lifetimeInMinute": 60}"#)
                .is_err()
        );
        let ok: CreateTemporaryAccessPass =
            serde_json::from_str(r#"{"lifetimeInMinutes": 60, "isUsableOnce": true}"#).unwrap();
        assert_eq!(ok.lifetime_in_minutes, Some(60));
    }
}
