//! The admin side of pass-through agents and smart lockout (SPEC §5.3, §7):
//! registration tokens (`/api/v1/agents/registrationTokens`), the agent fleet with each agent's
//! health and last heartbeat (`/api/v1/agents`), the smart-lockout policy with the warnings the
//! agents' directory policies call for (`/api/v1/policies/smartLockout`), and a user's lockout
//! state and unlock (`/api/v1/users/{id}/lockout`).
//!
//! Health, the fleet warning and the lockout rules are `cutover_core::{pta, lockout}`; the
//! agent protocol and its heartbeat are `crate::pta`. This module reads, writes with audit rows,
//! and maps the agent protocol's heartbeat onto the admin API's views.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cutover_agent_proto::Heartbeat;
use cutover_core::Timestamp;
use cutover_core::lockout::{DirectoryLockout, LockoutSettings, directory_warnings, status};
use cutover_core::pta::{
    AgentHealth, DEFAULT_REGISTRATION_TOKEN_SECS, MAX_AGENTS, MAX_REGISTRATION_TOKEN_SECS,
    MIN_HEALTHY_AGENTS, MIN_REGISTRATION_TOKEN_SECS, fleet_warning,
};
use cutover_proto::agents as proto;
use cutover_store::{AgentRecord, StoreError, UserRecord};
use serde_json::json;
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit, created, find_user};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

/// Characters of a registration token's stored (keyed) hash that name it in the audit log;
/// the token itself is never written anywhere.
const TOKEN_FINGERPRINT_CHARS: usize = 16;

/// Audit actions written by this module.
pub const CREATE_TOKEN_ACTION: &str = "createAgentRegistrationToken";
pub const ENABLE_AGENT_ACTION: &str = "enableAgent";
pub const DISABLE_AGENT_ACTION: &str = "disableAgent";
pub const DELETE_AGENT_ACTION: &str = "deleteAgent";
pub const UPDATE_LOCKOUT_ACTION: &str = "updateSmartLockoutPolicy";
pub const UNLOCK_USER_ACTION: &str = "unlockUser";

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/agents/registrationTokens",
            post(create_registration_token),
        )
        .route("/agents", get(list_agents))
        .route(
            "/agents/{id}",
            get(get_agent).patch(update_agent).delete(delete_agent),
        )
        .route(
            "/policies/smartLockout",
            get(get_lockout_policy).put(put_lockout_policy),
        )
        .route("/users/{id}/lockout", get(user_lockout))
        .route("/users/{id}/lockout/unlock", post(unlock_user))
}

// ---- views (pure) ---------------------------------------------------------------------------

/// The token lifetime asked for, or the default; refused outside
/// [`MIN_REGISTRATION_TOKEN_SECS`]..=[`MAX_REGISTRATION_TOKEN_SECS`].
pub fn registration_token_lifetime(asked: Option<i64>) -> Result<i64, String> {
    let secs = asked.unwrap_or(DEFAULT_REGISTRATION_TOKEN_SECS);
    if (MIN_REGISTRATION_TOKEN_SECS..=MAX_REGISTRATION_TOKEN_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(format!(
            "lifetimeSecs must be between {MIN_REGISTRATION_TOKEN_SECS} and {MAX_REGISTRATION_TOKEN_SECS} seconds (default {DEFAULT_REGISTRATION_TOKEN_SECS}), got {secs}"
        ))
    }
}

/// The warnings about the policy alone (report-only mode), whatever the directories say.
fn policy_only_warnings(settings: &LockoutSettings) -> Vec<String> {
    directory_warnings(settings, &DirectoryLockout::default())
}

/// What one directory's lockout policy means for Cutover's, without the policy-only warnings
/// (those belong to the policy, not to each agent).
pub fn agent_lockout_warnings(settings: &LockoutSettings, dir: &DirectoryLockout) -> Vec<String> {
    let general = policy_only_warnings(settings);
    directory_warnings(settings, dir)
        .into_iter()
        .filter(|w| !general.contains(w))
        .collect()
}

fn stats_view(s: &cutover_agent_proto::AgentStats) -> proto::AgentStatsView {
    proto::AgentStatsView {
        validations: s.validations,
        by_result: s.by_result.clone(),
        last_minute: s.last_minute,
        errors: s.errors,
        last_error: s.last_error.clone(),
        in_flight: s.in_flight,
        late: s.late,
        cpu_ms: s.cpu_ms,
        rss_bytes: s.rss_bytes,
    }
}

fn directory_view(d: &cutover_agent_proto::DirectoryStatus) -> proto::DirectoryView {
    proto::DirectoryView {
        reachable: d.reachable,
        error: d.error.clone(),
        lockout_threshold: d.lockout.and_then(|l| l.threshold),
        lockout_duration_secs: d.lockout.and_then(|l| l.duration_secs),
    }
}

/// One agent as the admin API shows it, at `now`.
pub fn agent_view(
    a: &AgentRecord,
    health: AgentHealth,
    heartbeat: Option<&Heartbeat>,
    settings: &LockoutSettings,
    now: Timestamp,
) -> proto::AgentView {
    let warnings = heartbeat
        .and_then(|h| h.directory.lockout)
        .map(|l| agent_lockout_warnings(settings, &l))
        .unwrap_or_default();
    proto::AgentView {
        id: a.id,
        host: a.host.clone(),
        version: a.version.clone(),
        enabled: a.enabled,
        health: health.as_str().into(),
        key_generation: a.key_generation,
        created_at: rfc3339(a.created_at),
        keys_rotated_at: a.keys_rotated_at.map(rfc3339),
        last_heartbeat: a.last_heartbeat.map(rfc3339),
        last_heartbeat_age_secs: a.last_heartbeat.map(|t| now.secs_since(t).max(0)),
        started_at: heartbeat.map(|h| rfc3339(Timestamp::from_millis(h.started_at))),
        stats: heartbeat.map(|h| stats_view(&h.stats)),
        directory: heartbeat.map(|h| directory_view(&h.directory)),
        warnings,
    }
}

/// The smart-lockout policy with the directories the agents report and every warning: the
/// policy-only ones first, then each distinct one a directory calls for.
pub fn lockout_policy_view(
    settings: LockoutSettings,
    agents: &[(&AgentRecord, Option<Heartbeat>)],
) -> proto::SmartLockoutPolicyView {
    let mut directories = Vec::new();
    let mut warnings = policy_only_warnings(&settings);
    for (a, hb) in agents {
        let Some(lockout) = hb.as_ref().and_then(|h| h.directory.lockout) else {
            continue;
        };
        directories.push(proto::DirectoryLockoutView {
            agent_id: a.id,
            host: a.host.clone(),
            threshold: lockout.threshold,
            duration_secs: lockout.duration_secs,
        });
        for w in directory_warnings(&settings, &lockout) {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    proto::SmartLockoutPolicyView {
        policy: settings,
        directories,
        warnings,
    }
}

/// The audit shape of an agent.
fn agent_audit_shape(a: &AgentRecord) -> serde_json::Value {
    json!({
        "id": a.id,
        "host": a.host,
        "version": a.version,
        "enabled": a.enabled,
        "keyGeneration": a.key_generation,
        "createdAt": rfc3339(a.created_at),
    })
}

// ---- registration tokens --------------------------------------------------------------------

async fn create_registration_token(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(req): ApiJson<proto::CreateRegistrationToken>,
) -> Result<Response, ApiError> {
    let lifetime = registration_token_lifetime(req.lifetime_secs).map_err(ApiError::bad_request)?;
    let now = state.now();
    let expires_at = now.plus_secs(lifetime);
    let token = crate::crypto::random_token();
    let hash = crate::pta::registration_token_hash(&state, &token);
    let fingerprint: String = hash.chars().take(TOKEN_FINGERPRINT_CHARS).collect();
    let a = audit(
        &ctx,
        &admin,
        now,
        CREATE_TOKEN_ACTION,
        ("agentRegistrationToken", fingerprint.clone(), None),
        None,
        Some(json!({
            "expiresAt": rfc3339(expires_at),
            "lifetimeSecs": lifetime,
        })),
    );
    state
        .store
        .create_agent_token(&hash, expires_at, now, &a)
        .await?;
    tracing::info!(token = %fingerprint, lifetime_secs = lifetime, "agent registration token created");
    Ok(created(proto::RegistrationTokenView {
        token,
        expires_at: rfc3339(expires_at),
        lifetime_secs: lifetime,
        issuer: state.config.issuer.clone(),
    }))
}

// ---- agents ---------------------------------------------------------------------------------

fn parse_agent_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not an agent id (a UUID, as `cutover admin agents list` shows)",
            raw.chars().take(80).collect::<String>()
        ))
    })
}

fn no_agent(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no pass-through agent {id}"))
}

async fn find_agent(state: &AppState, raw: &str) -> Result<AgentRecord, ApiError> {
    let id = parse_agent_id(raw)?;
    state.store.get_agent(id).await?.ok_or_else(|| no_agent(id))
}

async fn view_of(state: &AppState, a: &AgentRecord) -> Result<proto::AgentView, ApiError> {
    let settings = crate::lockout::load_settings(state).await?;
    let now = state.now();
    let hb = crate::pta::heartbeat_of(a);
    Ok(agent_view(
        a,
        crate::pta::health_of(a, now),
        hb.as_ref(),
        &settings,
        now,
    ))
}

async fn list_agents(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<proto::AgentList>, ApiError> {
    let agents = state.store.list_agents().await?;
    let settings = crate::lockout::load_settings(&state).await?;
    let now = state.now();
    let value: Vec<proto::AgentView> = agents
        .iter()
        .map(|a| {
            let hb = crate::pta::heartbeat_of(a);
            agent_view(
                a,
                crate::pta::health_of(a, now),
                hb.as_ref(),
                &settings,
                now,
            )
        })
        .collect();
    let healthy = value
        .iter()
        .filter(|v| v.health == AgentHealth::Healthy.as_str())
        .count();
    Ok(Json(proto::AgentList {
        registered_agents: value.len(),
        healthy_agents: healthy,
        max_agents: MAX_AGENTS,
        min_healthy_agents: MIN_HEALTHY_AGENTS,
        warning: fleet_warning(healthy, value.len()),
        value,
    }))
}

async fn get_agent(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::AgentView>, ApiError> {
    let a = find_agent(&state, &id).await?;
    Ok(Json(view_of(&state, &a).await?))
}

async fn update_agent(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<proto::UpdateAgent>,
) -> Result<Json<proto::AgentView>, ApiError> {
    let before = find_agent(&state, &id).await?;
    let Some(enabled) = req.enabled.filter(|e| *e != before.enabled) else {
        // Nothing to change: no write, no audit row.
        return Ok(Json(view_of(&state, &before).await?));
    };
    let action = if enabled {
        ENABLE_AGENT_ACTION
    } else {
        DISABLE_AGENT_ACTION
    };
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        action,
        ("agent", before.id.to_string(), Some(before.host.clone())),
        Some(json!({"enabled": before.enabled})),
        Some(json!({"enabled": enabled})),
    );
    state
        .store
        .set_agent_enabled(before.id, enabled, &a)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => no_agent(before.id),
            other => other.into(),
        })?;
    // This node stops (or starts) sending the agent passwords at once; others within their
    // cache time.
    crate::pta::invalidate_agents(&state);
    tracing::info!(agent_id = %before.id, host = %before.host, enabled, "pass-through agent {}", if enabled { "enabled" } else { "disabled" });
    let after = state
        .store
        .get_agent(before.id)
        .await?
        .ok_or_else(|| no_agent(before.id))?;
    Ok(Json(view_of(&state, &after).await?))
}

async fn delete_agent(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let before = find_agent(&state, &id).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        DELETE_AGENT_ACTION,
        ("agent", before.id.to_string(), Some(before.host.clone())),
        Some(agent_audit_shape(&before)),
        None,
    );
    state
        .store
        .delete_agent(before.id, &a)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => no_agent(before.id),
            other => other.into(),
        })?;
    crate::pta::invalidate_agents(&state);
    tracing::info!(agent_id = %before.id, host = %before.host, "pass-through agent deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- smart lockout --------------------------------------------------------------------------

async fn lockout_view_now(
    state: &AppState,
    settings: LockoutSettings,
) -> Result<proto::SmartLockoutPolicyView, ApiError> {
    let agents = state.store.list_agents().await?;
    let with_heartbeats: Vec<(&AgentRecord, Option<Heartbeat>)> = agents
        .iter()
        .map(|a| (a, crate::pta::heartbeat_of(a)))
        .collect();
    Ok(lockout_policy_view(settings, &with_heartbeats))
}

async fn get_lockout_policy(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<proto::SmartLockoutPolicyView>, ApiError> {
    let settings = crate::lockout::load_settings(&state).await?;
    Ok(Json(lockout_view_now(&state, settings).await?))
}

async fn put_lockout_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(settings): ApiJson<LockoutSettings>,
) -> Result<Json<proto::SmartLockoutPolicyView>, ApiError> {
    settings.validate().map_err(ApiError::bad_request)?;
    let before = crate::lockout::load_settings(&state).await?;
    let value = serde_json::to_string(&settings).map_err(ApiError::internal)?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        UPDATE_LOCKOUT_ACTION,
        (
            "smartLockoutPolicy",
            crate::lockout::SETTING_KEY.to_owned(),
            None,
        ),
        Some(json!(before)),
        Some(json!(settings)),
    );
    state
        .store
        .put_setting(crate::lockout::SETTING_KEY, &value, &a)
        .await?;
    let view = lockout_view_now(&state, settings).await?;
    tracing::info!(
        threshold = settings.threshold,
        duration_secs = settings.duration_secs,
        mode = ?settings.mode,
        warnings = view.warnings.len(),
        "smart lockout policy changed"
    );
    for w in &view.warnings {
        tracing::warn!("{w}");
    }
    Ok(Json(view))
}

fn user_lockout_view(
    user: &UserRecord,
    settings: &LockoutSettings,
    state: &cutover_core::lockout::LockoutState,
    now: Timestamp,
) -> proto::UserLockoutView {
    proto::UserLockoutView {
        user_id: user.user.id,
        user_principal_name: user.user.upn.to_string(),
        threshold: settings.threshold,
        status: status(state, settings, now),
    }
}

async fn user_lockout(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<proto::UserLockoutView>, ApiError> {
    let user = find_user(&state, &id).await?;
    let settings = crate::lockout::load_settings(&state).await?;
    let st = state.store.get_lockout_state(user.user.id).await?;
    Ok(Json(user_lockout_view(&user, &settings, &st, state.now())))
}

async fn unlock_user(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    Path(id): Path<String>,
) -> Result<Json<proto::UserLockoutView>, ApiError> {
    let user = find_user(&state, &id).await?;
    let settings = crate::lockout::load_settings(&state).await?;
    let now = state.now();
    // What the admin saw just before unlocking; the unlock itself runs on the locked row.
    let seen = state.store.get_lockout_state(user.user.id).await?;
    let a = audit(
        &ctx,
        &admin,
        now,
        UNLOCK_USER_ACTION,
        (
            "user",
            user.user.id.to_string(),
            Some(user.user.upn.to_string()),
        ),
        Some(json!(status(&seen, &settings, now))),
        Some(json!(status(
            &cutover_core::lockout::unlock(seen.clone()),
            &settings,
            now
        ))),
    );
    let (_, after) = state
        .store
        .unlock_user(user.user.id, &a)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found(format!("no user {}", user.user.id)),
            other => other.into(),
        })?;
    tracing::info!(user_id = %user.user.id, "smart lockout: an administrator unlocked the user");
    Ok(Json(user_lockout_view(&user, &settings, &after, now)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cutover_agent_proto::{AgentStats, DirectoryStatus};
    use cutover_core::lockout::LockoutMode;

    use super::*;

    fn agent(n: u128) -> AgentRecord {
        AgentRecord {
            id: Uuid::from_u128(n),
            host: format!("agent{n}.corp.example"),
            version: "0.1.0".into(),
            signing_key: "sk".into(),
            encryption_key: "ek".into(),
            key_generation: 2,
            enabled: true,
            created_at: Timestamp::from_secs(1_700_000_000),
            keys_rotated_at: Some(Timestamp::from_secs(1_700_000_100)),
            last_heartbeat: Some(Timestamp::from_secs(1_700_000_200)),
            heartbeat: None,
        }
    }

    fn heartbeat(lockout: Option<DirectoryLockout>) -> Heartbeat {
        Heartbeat {
            host: "agent1.corp.example".into(),
            version: "0.1.0".into(),
            started_at: 1_700_000_000_500,
            stats: AgentStats {
                validations: 12,
                by_result: BTreeMap::from([
                    ("success".to_owned(), 10),
                    ("invalidCredentials".to_owned(), 2),
                ]),
                last_minute: 3,
                errors: 1,
                last_error: Some("bind timed out".into()),
                in_flight: 0,
                late: 0,
                cpu_ms: 40,
                rss_bytes: 1 << 20,
            },
            directory: DirectoryStatus {
                reachable: true,
                error: None,
                lockout,
            },
        }
    }

    const DIR: DirectoryLockout = DirectoryLockout {
        threshold: Some(10),
        duration_secs: Some(600),
    };

    #[test]
    fn token_lifetime_edges() {
        assert_eq!(
            registration_token_lifetime(None),
            Ok(DEFAULT_REGISTRATION_TOKEN_SECS)
        );
        assert_eq!(registration_token_lifetime(Some(60)), Ok(60));
        assert_eq!(
            registration_token_lifetime(Some(MAX_REGISTRATION_TOKEN_SECS)),
            Ok(MAX_REGISTRATION_TOKEN_SECS)
        );
        for bad in [
            59,
            MAX_REGISTRATION_TOKEN_SECS + 1,
            0,
            -1,
            i64::MIN,
            i64::MAX,
        ] {
            let e = registration_token_lifetime(Some(bad)).unwrap_err();
            assert!(e.starts_with("lifetimeSecs"), "{e}");
            assert!(e.contains(&bad.to_string()), "{e}");
        }
    }

    #[test]
    fn an_agent_view_carries_its_heartbeat() {
        let a = agent(1);
        let hb = heartbeat(Some(DIR));
        let now = Timestamp::from_secs(1_700_000_207);
        let v = agent_view(
            &a,
            AgentHealth::Healthy,
            Some(&hb),
            &LockoutSettings::default(),
            now,
        );
        assert_eq!(v.health, "healthy");
        assert_eq!(v.key_generation, 2);
        assert_eq!(v.created_at, "2023-11-14T22:13:20Z");
        assert_eq!(v.keys_rotated_at.as_deref(), Some("2023-11-14T22:15:00Z"));
        assert_eq!(v.last_heartbeat.as_deref(), Some("2023-11-14T22:16:40Z"));
        assert_eq!(v.last_heartbeat_age_secs, Some(7));
        assert_eq!(v.started_at.as_deref(), Some("2023-11-14T22:13:20Z"));
        let stats = v.stats.unwrap();
        assert_eq!(stats.validations, 12);
        assert_eq!(stats.by_result["invalidCredentials"], 2);
        assert_eq!(stats.last_error.as_deref(), Some("bind timed out"));
        let dir = v.directory.unwrap();
        assert!(dir.reachable);
        assert_eq!(dir.lockout_threshold, Some(10));
        assert_eq!(dir.lockout_duration_secs, Some(600));
        // The defaults (10, 60 s) do not shield a directory locking at 10 for 600 s.
        assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
    }

    #[test]
    fn an_agent_that_never_reported_has_no_heartbeat_fields() {
        let mut a = agent(2);
        a.last_heartbeat = None;
        a.keys_rotated_at = None;
        let v = agent_view(
            &a,
            AgentHealth::Offline,
            None,
            &LockoutSettings::default(),
            Timestamp::from_secs(1_700_000_300),
        );
        assert_eq!(v.health, "offline");
        assert_eq!(v.last_heartbeat, None);
        assert_eq!(v.last_heartbeat_age_secs, None);
        assert_eq!(v.stats, None);
        assert_eq!(v.directory, None);
        assert!(v.warnings.is_empty());
        let json = serde_json::to_value(&v).unwrap();
        assert!(json.get("lastHeartbeat").is_none(), "{json}");
        assert_eq!(json["keyGeneration"], 2);
    }

    #[test]
    fn a_heartbeat_from_the_future_has_age_zero() {
        let a = agent(3);
        let v = agent_view(
            &a,
            AgentHealth::Healthy,
            None,
            &LockoutSettings::default(),
            Timestamp::from_secs(1_700_000_100),
        );
        assert_eq!(v.last_heartbeat_age_secs, Some(0));
    }

    #[test]
    fn report_only_is_warned_once_for_the_policy_not_per_agent() {
        let report_only = LockoutSettings {
            mode: LockoutMode::ReportOnly,
            threshold: 5,
            duration_secs: 900,
            max_duration_secs: 3_600,
            reset_after_secs: 86_400,
        };
        assert!(agent_lockout_warnings(&report_only, &DIR).is_empty());
        let (a1, a2, a3) = (agent(1), agent(2), agent(3));
        let agents = [
            (&a1, Some(heartbeat(Some(DIR)))),
            (&a2, Some(heartbeat(Some(DIR)))),
            (&a3, None),
        ];
        let v = lockout_policy_view(report_only, &agents);
        assert_eq!(v.directories.len(), 2);
        assert_eq!(v.directories[0].agent_id, a1.id);
        assert_eq!(v.directories[1].host, "agent2.corp.example");
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].contains("report-only"));
    }

    #[test]
    fn directory_warnings_are_merged_without_repeats() {
        let d1 = agent(1);
        let d2 = agent(2);
        let other = DirectoryLockout {
            threshold: Some(5),
            duration_secs: None,
        };
        let agents = [
            (&d1, Some(heartbeat(Some(DIR)))),
            (&d2, Some(heartbeat(Some(DIR)))),
            (&d1, Some(heartbeat(Some(other)))),
        ];
        let v = lockout_policy_view(LockoutSettings::default(), &agents);
        // Two for the 10/600 s directory (reported twice), one for the threshold of 5.
        assert_eq!(v.warnings.len(), 3, "{:?}", v.warnings);
        assert!(v.warnings[2].contains("at most 4"));
        // A policy that shields every directory has nothing to say.
        let safe = LockoutSettings {
            threshold: 4,
            duration_secs: 900,
            max_duration_secs: 3_600,
            reset_after_secs: 86_400,
            mode: LockoutMode::Enforced,
        };
        assert!(lockout_policy_view(safe, &agents).warnings.is_empty());
        // No agent reports a directory: no directories, no warnings.
        assert_eq!(
            lockout_policy_view(LockoutSettings::default(), &[]),
            proto::SmartLockoutPolicyView {
                policy: LockoutSettings::default(),
                directories: vec![],
                warnings: vec![],
            }
        );
    }
}
