//! Wire types for pass-through agents and smart lockout: registration tokens
//! (`/api/v1/agents/registrationTokens`), the agent fleet (`/api/v1/agents`), the smart-lockout
//! policy (`/api/v1/policies/smartLockout`) and a user's lockout state
//! (`/api/v1/users/{id}/lockout`).
//!
//! The agents' own heartbeat shape belongs to the agent protocol crate; these are the admin
//! API's views of it, and the server maps one onto the other.

use std::collections::BTreeMap;

use cutover_core::lockout::{LockoutSettings, LockoutStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/v1/agents/registrationTokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRegistrationToken {
    /// How long the token may be used, in seconds (default one hour, at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<i64>,
}

/// A new registration token: shown once, stored only as a keyed hash.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationTokenView {
    /// The single-use token for `cutover agent register`.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    pub lifetime_secs: i64,
    /// The server URL agents register with (`cutover agent register --server`).
    pub issuer: String,
}

impl std::fmt::Debug for RegistrationTokenView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationTokenView")
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// One registered pass-through agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub id: Uuid,
    pub host: String,
    pub version: String,
    pub enabled: bool,
    /// `healthy`, `directoryUnreachable`, `stale`, `offline` or `disabled`; only healthy agents
    /// are sent passwords.
    pub health: String,
    /// 1 at registration, one more at each key rotation.
    pub key_generation: u32,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_rotated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    /// Seconds since the last heartbeat, by the server's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_age_secs: Option<i64>,
    /// When the agent process started (from its last heartbeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<AgentStatsView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryView>,
    /// What this agent's directory lockout policy means for Cutover's (SPEC §7).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// An agent's counters since it started, from its last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatsView {
    pub validations: u64,
    /// Per result code (`success`, `invalidCredentials`, …).
    #[serde(default)]
    pub by_result: BTreeMap<String, u64>,
    /// Validations in the last 60 seconds.
    pub last_minute: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub in_flight: u32,
    /// Results the server refused as late.
    pub late: u64,
    pub cpu_ms: u64,
    pub rss_bytes: u64,
}

/// The agent's view of its directory, from its last heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryView {
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The directory's own lockout threshold (0: no lockout), when the agent could read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockout_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lockout_duration_secs: Option<i64>,
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentList {
    pub value: Vec<AgentView>,
    pub registered_agents: usize,
    pub healthy_agents: usize,
    /// The most agents that may be registered.
    pub max_agents: usize,
    /// Fewer healthy agents than this is warned about.
    pub min_healthy_agents: usize,
    /// Set when fewer than `minHealthyAgents` are healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `PATCH /api/v1/agents/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAgent {
    /// `false` refuses the agent on every connection and stops sending it passwords at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `GET` and `PUT /api/v1/policies/smartLockout`. A `PUT` takes `policy` alone as its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmartLockoutPolicyView {
    pub policy: LockoutSettings,
    /// The on-prem directories' own lockout policies, as the agents read them.
    #[serde(default)]
    pub directories: Vec<DirectoryLockoutView>,
    /// Where the policy does not shield the directories, and report-only mode.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One agent's report of its directory's lockout policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryLockoutView {
    pub agent_id: Uuid,
    pub host: String,
    /// 0: the directory does not lock accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
}

/// `GET /api/v1/users/{id}/lockout` and `POST …/lockout/unlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLockoutView {
    pub user_id: Uuid,
    pub user_principal_name: String,
    /// The policy's threshold, to read the failure counts against.
    pub threshold: u32,
    /// Lock ends are Unix milliseconds.
    pub status: LockoutStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields() {
        let ok: CreateRegistrationToken = serde_json::from_str(r#"{"lifetimeSecs": 600}"#).unwrap();
        assert_eq!(ok.lifetime_secs, Some(600));
        let empty: CreateRegistrationToken = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.lifetime_secs, None);
        assert!(serde_json::from_str::<CreateRegistrationToken>(r#"{"lifetime": 600}"#).is_err());
        assert!(serde_json::from_str::<UpdateAgent>(r#"{"enable": true}"#).is_err());
        let u: UpdateAgent = serde_json::from_str(r#"{"enabled": false}"#).unwrap();
        assert_eq!(u.enabled, Some(false));
    }

    #[test]
    fn the_token_is_never_in_debug_output() {
        let v = RegistrationTokenView {
            token: "s3cret-token".into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
            lifetime_secs: 3600,
            issuer: "https://login.contoso.example".into(),
        };
        let shown = format!("{v:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["token"], "s3cret-token");
        assert_eq!(json["expiresAt"], "2030-01-01T00:00:00Z");
        assert_eq!(json["lifetimeSecs"], 3600);
    }

    #[test]
    fn the_policy_view_nests_what_a_put_takes() {
        let view = SmartLockoutPolicyView {
            policy: LockoutSettings::default(),
            directories: vec![],
            warnings: vec![],
        };
        let json = serde_json::to_value(&view).unwrap();
        // The `policy` member is exactly a PUT body.
        let back: LockoutSettings = serde_json::from_value(json["policy"].clone()).unwrap();
        assert_eq!(back, LockoutSettings::default());
        assert_eq!(json["policy"]["durationSecs"], 60);
        assert_eq!(json["policy"]["mode"], "enforced");
    }
}
