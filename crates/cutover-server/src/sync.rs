//! The sync API (`/sync/v1`): where `cutover sync` reads Cutover's synced state, exports
//! batches under the fencing lease, and reports its runs (SPEC §5.1–5.2). Also the admin API's
//! read side of it (`/api/v1/sync/servers`).
//!
//! Thin by design: decisions live in `cutover_core::sync` (the planner runs on the sync server;
//! the fence check runs inside the store's batch transaction). This module authenticates the
//! caller, validates sizes, seals password wraps under the key-encryption key, and maps store
//! outcomes to HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use cutover_core::sync::lease::FenceError;
use cutover_core::sync::plan::{EXPORT_BATCH_MAX_OPS, SyncedUserState};
use cutover_core::sync::{SyncOp, Watermark, WrappedHash};
use cutover_core::{SYNC_APP_ROLE, Timestamp};
use cutover_proto::sync as proto;
use cutover_store::{
    AuditEvent, SyncBatchOutcome, SyncBatchWrite, SyncServerRecord, SyncServerRegistration,
};
use serde_json::Value;
use uuid::Uuid;

use crate::admin::{Admin, ApiJson};
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::{AppState, RequestCtx};

pub use cutover_proto::sync::{MAX_PENDING_ROWS, MAX_SYNC_BODY_BYTES};
/// Rows per snapshot page.
pub const MAX_SNAPSHOT_PAGE: u32 = 2_000;
const SEAL_LABEL: &str = "synced password";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/servers/{name}", put(register))
        .route("/servers/{name}/promote", post(promote))
        .route("/servers/{name}/demote", post(demote))
        .route("/servers/{name}/exports", post(export))
        .route("/servers/{name}/report", put(report))
        .route("/snapshot", get(snapshot_meta))
        .route("/snapshot/users", get(snapshot_users))
        .route("/snapshot/groups", get(snapshot_groups))
}

/// Admin API routes, nested under `/api/v1`.
pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/sync/servers", get(list_servers))
        .route("/sync/servers/{name}", get(get_server))
        .route("/sync/servers/{name}/pendingExports", get(pending_exports))
}

/// The authenticated sync server (an application holding `Directory.Sync`).
struct SyncCaller {
    client_id: String,
}

impl axum::extract::FromRequestParts<Arc<AppState>> for SyncCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client_id =
            crate::admin::application_with_role(&parts.headers, state, &[SYNC_APP_ROLE]).await?;
        Ok(SyncCaller { client_id })
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "a sync server name is 1-64 characters of letters, digits, '-', '_' and '.'",
        ))
    }
}

fn sync_audit(
    ctx: &RequestCtx,
    caller: &SyncCaller,
    now: Timestamp,
    action: &str,
    server: &str,
) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: ctx.id,
        actor: format!("app:{}", caller.client_id),
        action: action.into(),
        target_type: "syncServer".into(),
        target_id: server.into(),
        target_name: Some(server.into()),
        before: None,
        after: None,
    }
}

/// The caller must be the application that registered `name`.
async fn own_server(
    state: &AppState,
    caller: &SyncCaller,
    name: &str,
) -> Result<SyncServerRecord, ApiError> {
    check_name(name)?;
    let record = state.store.get_sync_server(name).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "sync server {name} has not registered; start it once (`cutover sync run --once`) first"
        ))
    })?;
    if record.client_id != caller.client_id {
        return Err(ApiError::forbidden(format!(
            "sync server {name} is registered by another application; each sync server acts only for itself"
        )));
    }
    Ok(record)
}

fn fence_error(e: FenceError) -> ApiError {
    let code = match e {
        FenceError::NoHolder => "noLeaseHolder",
        FenceError::NotHolder { .. } => "notLeaseHolder",
        FenceError::StaleEpoch { .. } => "staleEpoch",
    };
    ApiError::new(StatusCode::CONFLICT, code, e.to_string())
}

pub(crate) fn view(record: &SyncServerRecord, holder: Option<&str>) -> proto::SyncServerView {
    let last_run = record
        .last_report
        .as_ref()
        .and_then(|r| serde_json::from_value(r.clone()).ok());
    let pending_changes = record
        .pending
        .as_ref()
        .and_then(|p| p.get("changes"))
        .and_then(Value::as_array)
        .map(|a| a.len() as u64);
    proto::SyncServerView {
        name: record.name.clone(),
        role: if holder == Some(record.name.as_str()) {
            proto::SyncRole::Active
        } else {
            proto::SyncRole::Staging
        },
        host: record.host.clone(),
        version: record.version.clone(),
        registered_at: rfc3339(record.registered_at),
        last_seen_at: rfc3339(record.last_seen_at),
        last_run,
        alert: record.alert.clone(),
        pending_changes,
    }
}

/// `PUT /sync/v1/servers/{name}`: a sync server announces itself at start. A server configured
/// as active takes the lease if it is free (or already its own — moving the epoch on, which
/// fences off writes of its previous incarnation); a lease held by another server is left
/// alone, and the response says who holds it.
async fn register(
    State(state): State<Arc<AppState>>,
    caller: SyncCaller,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<proto::RegisterSyncServer>,
) -> Result<Json<proto::RegisterResponse>, ApiError> {
    check_name(&name)?;
    if req.host.len() > 255 || req.version.len() > 64 {
        return Err(ApiError::bad_request("host or version is too long"));
    }
    let now = state.now();
    let record = state
        .store
        .register_sync_server(&SyncServerRegistration {
            name: name.clone(),
            client_id: caller.client_id.clone(),
            host: req.host,
            version: req.version,
            staging: req.staging,
            now,
        })
        .await?;
    let lease = if req.staging {
        state.store.sync_lease().await?
    } else {
        let audit = sync_audit(&ctx, &caller, now, "syncLeaseTaken", &name);
        match state.store.take_sync_lease(&name, false, &audit).await? {
            Ok(l) => {
                tracing::info!(server = %name, epoch = l.epoch, "sync server took the export lease");
                l
            }
            Err(_) => state.store.sync_lease().await?,
        }
    };
    let record = state.store.get_sync_server(&name).await?.unwrap_or(record);
    let watermark = record
        .watermark
        .as_deref()
        .and_then(|w| serde_json::from_str::<Watermark>(w).ok());
    Ok(Json(proto::RegisterResponse {
        server: view(&record, lease.holder.as_deref()),
        lease,
        watermark,
    }))
}

/// `POST /sync/v1/servers/{name}/promote`: take the export lease (failover). The old holder is
/// demoted at once: its next export is refused with `staleEpoch`/`notLeaseHolder`.
async fn promote(
    State(state): State<Arc<AppState>>,
    caller: SyncCaller,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<proto::PromoteRequest>,
) -> Result<Json<cutover_core::sync::lease::Lease>, ApiError> {
    own_server(&state, &caller, &name).await?;
    let audit = sync_audit(&ctx, &caller, state.now(), "syncServerPromoted", &name);
    let lease = state
        .store
        .take_sync_lease(&name, req.force, &audit)
        .await?
        .map_err(fence_error)?;
    tracing::warn!(server = %name, epoch = lease.epoch, "sync server promoted: it is now the only exporter");
    Ok(Json(lease))
}

/// `POST /sync/v1/servers/{name}/demote`: the holder gives the lease up.
async fn demote(
    State(state): State<Arc<AppState>>,
    caller: SyncCaller,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
) -> Result<Json<cutover_core::sync::lease::Lease>, ApiError> {
    own_server(&state, &caller, &name).await?;
    let audit = sync_audit(&ctx, &caller, state.now(), "syncServerDemoted", &name);
    let lease = state
        .store
        .release_sync_lease(&name, &audit)
        .await?
        .map_err(fence_error)?;
    tracing::warn!(server = %name, epoch = lease.epoch, "sync server demoted: no server exports now");
    Ok(Json(lease))
}

/// `POST /sync/v1/servers/{name}/exports`: apply one batch, atomically, fenced by the lease.
async fn export(
    State(state): State<Arc<AppState>>,
    caller: SyncCaller,
    Extension(ctx): Extension<RequestCtx>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<proto::ExportBatchRequest>,
) -> Result<Json<proto::ExportBatchResponse>, ApiError> {
    own_server(&state, &caller, &name).await?;
    if req.ops.len() > EXPORT_BATCH_MAX_OPS {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {EXPORT_BATCH_MAX_OPS} ops; this one has {}",
            req.ops.len()
        )));
    }
    if req.batch_id.is_empty() || req.batch_id.len() > 128 {
        return Err(ApiError::bad_request("batchId must be 1-128 characters"));
    }
    let sealed_passwords = req
        .ops
        .iter()
        .map(|op| match op {
            SyncOp::SetPasswordHash { hash, .. } => serde_json::to_vec(hash)
                .map(|bytes| Some(state.config.key_encryption_key.seal(SEAL_LABEL, &bytes)))
                .map_err(|e| ApiError::bad_request(format!("password hash: {e}"))),
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let deletes = req.ops.iter().filter(|o| o.is_delete()).count();
    let now = state.now();
    let mut audit = sync_audit(&ctx, &caller, now, "syncExport", &name);
    if let Some(allowed) = req.allow_deletes {
        audit.action = "syncExportDeleteThresholdOverridden".into();
        audit.before =
            Some(serde_json::json!({ "allowDeletes": allowed, "deletesInBatch": deletes }));
        tracing::warn!(server = %name, allowed, deletes, "sync export over the delete threshold, allowed by an operator");
    }
    let watermark = req
        .watermark
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("watermark: {e}")))?;
    let outcome = state
        .store
        .apply_sync_batch(&SyncBatchWrite {
            server: name.clone(),
            epoch: req.epoch,
            batch_id: req.batch_id.clone(),
            ops: req.ops,
            sealed_passwords,
            watermark,
            now,
            audit,
        })
        .await?;
    match outcome {
        SyncBatchOutcome::Applied(result) => {
            tracing::info!(server = %name, batch = %req.batch_id, added = result.added, updated = result.updated,
                deleted = result.deleted, passwords = result.passwords, rejected = result.rejected.len(), "sync batch applied");
            Ok(Json(proto::ExportBatchResponse {
                result,
                duplicate: false,
            }))
        }
        SyncBatchOutcome::Duplicate(result) => Ok(Json(proto::ExportBatchResponse {
            result,
            duplicate: true,
        })),
        SyncBatchOutcome::Fenced(e) => {
            tracing::warn!(server = %name, epoch = req.epoch, reason = %e, "refused a sync export from a server that is not the active one");
            Err(fence_error(e))
        }
    }
}

/// `PUT /sync/v1/servers/{name}/report`: the outcome of a run, with what is pending.
async fn report(
    State(state): State<Arc<AppState>>,
    caller: SyncCaller,
    Path(name): Path<String>,
    ApiJson(mut req): ApiJson<proto::ReportRequest>,
) -> Result<StatusCode, ApiError> {
    own_server(&state, &caller, &name).await?;
    req.pending.truncate_to(MAX_PENDING_ROWS);
    let alert = match req.report.outcome {
        proto::RunOutcome::DeleteThresholdExceeded => Some(req.report.message.clone().unwrap_or_else(|| {
            "the last run would have deleted more objects than the threshold allows; nothing was exported".into()
        })),
        _ => None,
    };
    if let Some(a) = &alert {
        tracing::error!(server = %name, alert = %a, "sync run stopped for review");
    }
    let report =
        serde_json::to_value(&req.report).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let pending =
        serde_json::to_value(&req.pending).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .store
        .put_sync_report(&name, &report, &pending, alert.as_deref(), state.now())
        .await
        .map_err(|e| match e {
            cutover_store::StoreError::NotFound => {
                ApiError::not_found(format!("sync server {name} has not registered"))
            }
            other => other.into(),
        })?;
    state.metrics.observe_sync_run(&req.report);
    Ok(StatusCode::NO_CONTENT)
}

async fn snapshot_meta(
    State(state): State<Arc<AppState>>,
    _caller: SyncCaller,
) -> Result<Json<proto::SnapshotMeta>, ApiError> {
    let domains = state
        .store
        .list_domains()
        .await?
        .into_iter()
        .map(|d| d.name.as_str().to_ascii_lowercase())
        .collect();
    Ok(Json(proto::SnapshotMeta {
        domains,
        cloud_upns: state.store.cloud_upns().await?,
        lease: state.store.sync_lease().await?,
    }))
}

fn page_params(q: &HashMap<String, String>) -> Result<(String, u32), ApiError> {
    let after = q.get("after").cloned().unwrap_or_default();
    let top = match q.get("top") {
        Some(t) => t
            .parse::<u32>()
            .ok()
            .filter(|t| (1..=MAX_SNAPSHOT_PAGE).contains(t))
            .ok_or_else(|| ApiError::bad_request(format!("top must be 1-{MAX_SNAPSHOT_PAGE}")))?,
        None => MAX_SNAPSHOT_PAGE,
    };
    Ok((after, top))
}

/// `GET /sync/v1/snapshot/users?after=&top=`: synced users by anchor. Password wraps are opened
/// for the sync server, which compares them with what the directory holds (the wrap is one-way;
/// the sync server already reads the on-prem hashes themselves).
async fn snapshot_users(
    State(state): State<Arc<AppState>>,
    _caller: SyncCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::SyncedUsersPage>, ApiError> {
    let (after, top) = page_params(&q)?;
    let rows = state.store.synced_users(&after, top).await?;
    let next = (rows.len() as u32 == top)
        .then(|| rows.last().map(|r| r.image.anchor.clone()))
        .flatten();
    let value = rows
        .into_iter()
        .map(|r| {
            let password_hash = r
                .sealed_password
                .as_deref()
                .and_then(|s| open_wrap(&state, &r.image.anchor, s));
            SyncedUserState {
                image: r.image,
                manager_anchor: r.manager_anchor,
                password_hash,
            }
        })
        .collect();
    Ok(Json(proto::SyncedUsersPage { value, next }))
}

/// Open a sealed wrap; a wrap that cannot be opened (key changed, tampering) reads as absent,
/// so the next hash cycle writes it again — and says so in the log.
pub(crate) fn open_wrap(state: &AppState, anchor: &str, sealed: &str) -> Option<WrappedHash> {
    match state
        .config
        .key_encryption_key
        .open(SEAL_LABEL, sealed)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<WrappedHash>(&b).map_err(|e| e.to_string()))
    {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(anchor, error = %e, "a synced password cannot be opened (was the key-encryption key replaced?); the user cannot sign in with it until the next hash sync");
            None
        }
    }
}

async fn snapshot_groups(
    State(state): State<Arc<AppState>>,
    _caller: SyncCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<proto::SyncedGroupsPage>, ApiError> {
    let (after, top) = page_params(&q)?;
    let value = state.store.synced_groups(&after, top).await?;
    let next = (value.len() as u32 == top)
        .then(|| value.last().map(|g| g.image.anchor.clone()))
        .flatten();
    Ok(Json(proto::SyncedGroupsPage { value, next }))
}

async fn list_servers(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<cutover_proto::ListResponse<proto::SyncServerView>>, ApiError> {
    let lease = state.store.sync_lease().await?;
    let servers = state.store.list_sync_servers().await?;
    Ok(Json(cutover_proto::ListResponse::new(
        servers
            .iter()
            .map(|s| view(s, lease.holder.as_deref()))
            .collect(),
    )))
}

async fn get_server(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<proto::SyncServerView>, ApiError> {
    let lease = state.store.sync_lease().await?;
    let s = state
        .store
        .get_sync_server(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no sync server is named {name}")))?;
    Ok(Json(view(&s, lease.holder.as_deref())))
}

/// `GET /api/v1/sync/servers/{name}/pendingExports`: what the server's last run would export
/// (staging) or did not export (stopped by the delete threshold).
async fn pending_exports(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = state
        .store
        .get_sync_server(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no sync server is named {name}")))?;
    let pending = s.pending.ok_or_else(|| {
        ApiError::not_found(format!("sync server {name} has not reported a run yet"))
    })?;
    Ok(Json(pending))
}
