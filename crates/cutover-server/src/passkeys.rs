//! Passkeys over HTTP (SPEC §6.1): the WebAuthn ceremonies' server half, with the challenge
//! state kept server-side (single use, shared by every node through the database), the
//! methods policy (`/api/v1/policies/authenticationMethodsPolicy`, with `…/preview`), and the
//! passkey sign-in from the identifier page (autofill or button).
//!
//! The WebAuthn vocabulary lives in `cutover-webauthn`; the rules (who may use which model,
//! when a session may register) in `cutover_core::methods_policy`. This module moves bytes
//! between them, the store and the pages.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use cutover_core::Timestamp;
use cutover_core::methods_policy::{AuthenticationMethodsPolicy, PasskeyFact, PolicyMethod};
use cutover_core::signin_log::{FailureReason, SignInResult};
use cutover_core::strength::UsedMethod;
use cutover_store::{AuditEvent, PasskeyRecord, StoreError, UserRecord, WebauthnChallenge};
use cutover_webauthn::{CeremonyError, RelyingParty};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::{Admin, ApiJson, audit};
use crate::error::{ApiError, PageError};
use crate::pages;
use crate::{AppState, RequestCtx};

/// The setting that holds the methods policy (JSON of [`AuthenticationMethodsPolicy`]).
pub const METHODS_POLICY_SETTING: &str = "authenticationMethodsPolicy";
pub const METHODS_POLICY_ACTION: &str = "updateAuthenticationMethodsPolicy";
pub const REGISTER_ACTION: &str = "registerPasskey";
pub const DELETE_ACTION: &str = "deletePasskey";
pub const CLONE_ACTION: &str = "passkeyPossibleClone";
/// How long a ceremony's challenge may be answered (the browser's own timeout is shorter).
pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Most passkeys one user may register.
pub const MAX_PASSKEYS_PER_USER: u32 = 20;
/// Longest passkey name, in characters.
pub const MAX_PASSKEY_NAME_CHARS: usize = 64;
/// Largest credential JSON a browser may post (a registration with attestation certificates
/// is a few KiB; the request body limit bounds it as well).
pub const MAX_CREDENTIAL_JSON_BYTES: usize = 32 * 1024;
/// Passkeys read per page when the preview or the report walks all of them.
const SCAN_PAGE: u32 = 500;

const KIND_REGISTRATION: &str = "registration";
const KIND_AUTHENTICATION: &str = "authentication";

/// The passkey side of the server: the relying party (when the issuer allows one), the
/// authenticator catalogue and the attestation roots.
pub struct PasskeyRuntime {
    pub rp: Option<RelyingParty>,
    /// Why passkeys are off, when `rp` is `None` (logged at start, shown on pages).
    pub unavailable: Option<String>,
    pub catalogue: cutover_webauthn::catalogue::Catalogue,
    pub trust: Option<cutover_webauthn::AttestationTrust>,
}

/// Passkey settings of the node (not in the database: they describe how the node is reached).
#[derive(Debug, Clone, Default)]
pub struct PasskeyConfig {
    /// The WebAuthn relying-party id; default: the issuer's host name. Set it to a parent
    /// domain (e.g. `corp.example` for `https://login.corp.example`) only on purpose: it
    /// decides which passkeys exist, and changing it later orphans every passkey.
    pub rp_id: Option<String>,
    /// An operator's AAGUID catalogue (JSON), merged over the bundled one.
    pub aaguid_catalogue: Option<String>,
    /// PEM certificates of the attestation roots trusted when the methods policy enforces
    /// attestation.
    pub attestation_roots_pem: Option<String>,
}

impl PasskeyRuntime {
    /// Build from the issuer and the node's passkey settings. An issuer on an IP address
    /// cannot carry passkeys (an RP id is a host name): passkeys are then off, with the reason.
    pub fn new(issuer: &str, cfg: &PasskeyConfig) -> Result<Self, String> {
        let mut catalogue = cutover_webauthn::catalogue::Catalogue::bundled();
        if let Some(raw) = &cfg.aaguid_catalogue {
            let extra = cutover_webauthn::catalogue::Catalogue::from_json(raw)
                .map_err(|e| format!("the AAGUID catalogue file is invalid: {e}"))?;
            catalogue = catalogue.merged(extra);
        }
        let trust = match &cfg.attestation_roots_pem {
            Some(pem) => Some(
                cutover_webauthn::AttestationTrust::from_pem(pem)
                    .map_err(|e| format!("the attestation roots file is invalid: {e}"))?,
            ),
            None => None,
        };
        let origin = url::Url::parse(issuer).map_err(|e| format!("issuer: {e}"))?;
        let host = match origin.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            _ => {
                return Ok(Self {
                    rp: None,
                    unavailable: Some(format!(
                        "passkeys are off: the issuer {issuer} names an IP address, and a WebAuthn relying party needs a host name (use e.g. http://localhost:PORT or the https:// name users type)"
                    )),
                    catalogue,
                    trust,
                });
            }
        };
        let rp_id = cfg.rp_id.clone().unwrap_or(host);
        let mut origin_only = origin.clone();
        origin_only.set_path("");
        let rp = RelyingParty::new(&rp_id, "Cutover", &origin_only)
            .map_err(|e| format!("passkeys: {e}"))?;
        Ok(Self {
            rp: Some(rp),
            unavailable: None,
            catalogue,
            trust,
        })
    }

    /// The authenticator's name from the catalogue, if it is known.
    pub fn authenticator_name(&self, aaguid: Uuid) -> Option<String> {
        self.catalogue.name_of(aaguid).map(str::to_owned)
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login/passkey/options", post(signin_options))
        .route("/login/passkey", post(signin_post))
        .route("/static/passkey.js", get(script))
}

pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/policies/authenticationMethodsPolicy",
            get(get_policy).put(put_policy),
        )
        .route(
            "/policies/authenticationMethodsPolicy/preview",
            post(preview_policy),
        )
}

const SCRIPT: &str = include_str!("../static/passkey.js");

async fn script() -> Response {
    let mut res = SCRIPT.into_response();
    let h = res.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    res
}

// --- the methods policy --------------------------------------------------------------------

/// The stored methods policy; the defaults when none is stored. A stored value that no longer
/// validates is logged and replaced by the defaults for this request.
pub async fn load_methods_policy(
    state: &AppState,
) -> Result<AuthenticationMethodsPolicy, StoreError> {
    let Some(raw) = state.store.get_setting(METHODS_POLICY_SETTING).await? else {
        return Ok(AuthenticationMethodsPolicy::default());
    };
    match serde_json::from_str::<AuthenticationMethodsPolicy>(&raw)
        .map_err(|e| e.to_string())
        .and_then(|p| p.validate().map(|()| p))
    {
        Ok(p) => Ok(p),
        Err(e) => {
            tracing::error!(error = %e, "the stored authentication methods policy is invalid; the defaults apply until an administrator saves a valid one (PUT /api/v1/policies/authenticationMethodsPolicy)");
            Ok(AuthenticationMethodsPolicy::default())
        }
    }
}

/// The groups a user belongs to directly, as the methods policy targets them.
pub async fn user_groups(state: &AppState, user_id: Uuid) -> Result<BTreeSet<Uuid>, StoreError> {
    Ok(state
        .store
        .groups_of_member(user_id)
        .await?
        .into_iter()
        .collect())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyView {
    #[serde(flatten)]
    policy: AuthenticationMethodsPolicy,
    /// What the administrator should know about this policy on this server.
    warnings: Vec<String>,
}

fn policy_warnings(state: &AppState, p: &AuthenticationMethodsPolicy) -> Vec<String> {
    let mut w = Vec::new();
    if p.passkey.enforce_attestation && state.passkeys.trust.is_none() {
        w.push("passkey.enforceAttestation is on but this server has no attestation roots (serve --attestation-roots FILE): every passkey registration will be refused".into());
    }
    if let Some(why) = &state.passkeys.unavailable {
        w.push(why.clone());
    }
    if !p.password.enabled {
        w.push("password is disabled: users without a passkey or a Temporary Access Pass cannot sign in to managed domains".into());
    }
    w
}

async fn get_policy(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<PolicyView>, ApiError> {
    let policy = load_methods_policy(&state).await?;
    let warnings = policy_warnings(&state, &policy);
    Ok(Json(PolicyView { policy, warnings }))
}

async fn put_policy(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Extension(ctx): Extension<RequestCtx>,
    ApiJson(policy): ApiJson<AuthenticationMethodsPolicy>,
) -> Result<Json<PolicyView>, ApiError> {
    policy.validate().map_err(ApiError::bad_request)?;
    let before = load_methods_policy(&state).await?;
    let a = audit(
        &ctx,
        &admin,
        state.now(),
        METHODS_POLICY_ACTION,
        ("policy", "authenticationMethodsPolicy".into(), None),
        Some(json!(before)),
        Some(json!(policy)),
    );
    let raw = serde_json::to_string(&policy).map_err(ApiError::internal)?;
    state
        .store
        .put_setting(METHODS_POLICY_SETTING, &raw, &a)
        .await?;
    tracing::info!(actor = %admin.actor(), "the authentication methods policy was changed");
    let warnings = policy_warnings(&state, &policy);
    Ok(Json(PolicyView { policy, warnings }))
}

/// Every registered passkey with its user and the user's groups, for the preview and the
/// registration report.
pub async fn passkey_facts(
    state: &AppState,
) -> Result<Vec<(PasskeyFact, PasskeyRecord)>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    let mut users: std::collections::HashMap<Uuid, (String, BTreeSet<Uuid>)> =
        std::collections::HashMap::new();
    loop {
        let page = state.store.list_all_passkeys(after, SCAN_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let full = page.len() == SCAN_PAGE as usize;
        for p in page {
            if let std::collections::hash_map::Entry::Vacant(slot) = users.entry(p.user_id) {
                let Some(u) = state.store.get_user(p.user_id).await? else {
                    continue;
                };
                let groups = user_groups(state, p.user_id).await?;
                slot.insert((u.user.upn.to_string(), groups));
            }
            let Some((upn, groups)) = users.get(&p.user_id) else {
                continue;
            };
            out.push((
                PasskeyFact {
                    user_id: p.user_id,
                    user_principal_name: upn.clone(),
                    credential_id: p.id,
                    name: p.name.clone(),
                    aaguid: (!p.aaguid.is_nil()).then_some(p.aaguid),
                    groups: groups.clone(),
                },
                p,
            ));
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

async fn preview_policy(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(after): ApiJson<AuthenticationMethodsPolicy>,
) -> Result<Json<Value>, ApiError> {
    after.validate().map_err(ApiError::bad_request)?;
    let before = load_methods_policy(&state).await?;
    let facts: Vec<PasskeyFact> = passkey_facts(&state)
        .await?
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    let p = cutover_core::methods_policy::preview(&before, &after, &facts);
    let named = |v: &[PasskeyFact]| -> Vec<Value> {
        v.iter()
            .map(|f| {
                json!({
                    "userId": f.user_id,
                    "userPrincipalName": f.user_principal_name,
                    "passkeyId": f.credential_id,
                    "name": f.name,
                    "aaguid": f.aaguid,
                    "authenticatorName": f.aaguid.and_then(|a| state.passkeys.authenticator_name(a)),
                })
            })
            .collect()
    };
    Ok(Json(json!({
        "passkeysConsidered": facts.len(),
        "stopWorking": named(&p.stop_working),
        "startWorking": named(&p.start_working),
        "usersLeftWithoutPasskey": p.users_left_without_passkey,
        "warnings": policy_warnings(&state, &after),
    })))
}

// --- ceremonies ----------------------------------------------------------------------------

/// Why a ceremony could not start or finish, as the person is told.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error during a passkey ceremony");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Passkeys are temporarily unavailable. Wait a minute and try again.",
        )
    }
}

fn rp(state: &AppState) -> Result<&RelyingParty, Refusal> {
    state.passkeys.rp.as_ref().ok_or_else(|| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Passkeys are not available on this server. Sign in another way; your administrator can find the reason in the server log.",
        )
    })
}

#[derive(Serialize, Deserialize)]
struct RegistrationChallenge {
    name: String,
    state: Value,
}

#[derive(Serialize, Deserialize)]
struct AuthenticationChallenge {
    /// The sign-in transaction the challenge belongs to.
    txn: String,
    state: Value,
}

async fn put_challenge(
    state: &AppState,
    kind: &str,
    user_id: Option<Uuid>,
    payload: Value,
) -> Result<String, Refusal> {
    let now = state.now();
    let id = crate::crypto::random_token();
    state
        .store
        .put_webauthn_challenge(&WebauthnChallenge {
            id: id.clone(),
            kind: kind.into(),
            user_id,
            state: payload.to_string(),
            created_at: now,
            expires_at: now.plus_secs(CHALLENGE_TTL_SECS),
        })
        .await?;
    Ok(id)
}

/// Store the challenge `id`, replacing one stored under the same id. Two requests racing on
/// one id: the loser retries once, the last one stands.
async fn replace_challenge(state: &AppState, id: &str, payload: Value) -> Result<(), Refusal> {
    let now = state.now();
    let row = WebauthnChallenge {
        id: id.to_owned(),
        kind: KIND_AUTHENTICATION.into(),
        user_id: None,
        state: payload.to_string(),
        created_at: now,
        expires_at: now.plus_secs(CHALLENGE_TTL_SECS),
    };
    for _ in 0..2 {
        state.store.take_webauthn_challenge(id, now).await?;
        match state.store.put_webauthn_challenge(&row).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Refusal::new(
        StatusCode::CONFLICT,
        "Another passkey request for this sign-in is in progress. Try again.",
    ))
}

fn expired_challenge() -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "This passkey request has expired or was already used. Try again.",
    )
}

/// Check a passkey name typed by the user.
pub fn check_name(raw: &str) -> Result<String, Refusal> {
    let name = raw.trim();
    let bad = |m: &str| Refusal::new(StatusCode::BAD_REQUEST, m);
    if name.is_empty() {
        return Err(bad(
            "Give the passkey a name you will recognise, such as \"Work laptop\" or \"My phone\".",
        ));
    }
    if name.chars().count() > MAX_PASSKEY_NAME_CHARS {
        return Err(bad(&format!(
            "The name may be at most {MAX_PASSKEY_NAME_CHARS} characters."
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("The name must not contain control characters."));
    }
    Ok(name.to_owned())
}

/// Start registering a passkey for `user` (the caller checked the session's registration gate).
pub async fn start_registration(
    state: &AppState,
    user: &UserRecord,
    name: &str,
) -> Result<(String, Value), Refusal> {
    let rp = rp(state)?;
    let name = check_name(name)?;
    let policy = load_methods_policy(state).await?;
    let groups = user_groups(state, user.user.id).await?;
    if !policy.allows(PolicyMethod::Passkey, &groups) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Your organisation does not allow passkeys for your account yet.",
        ));
    }
    let existing = state.store.list_passkeys(user.user.id).await?;
    if existing.len() >= MAX_PASSKEYS_PER_USER as usize {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            format!(
                "You already have {MAX_PASSKEYS_PER_USER} passkeys, the most allowed. Remove one you no longer use first."
            ),
        ));
    }
    if policy.passkey.enforce_attestation && state.passkeys.trust.is_none() {
        tracing::error!(
            "passkey registration refused: the methods policy enforces attestation but this server has no attestation roots (serve --attestation-roots FILE)"
        );
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Passkeys cannot be registered right now because of a server setting. Contact your helpdesk.",
        ));
    }
    let exclude: Vec<cutover_webauthn::CredentialId> = existing
        .iter()
        .filter_map(|p| p.credential_id.parse().ok())
        .collect();
    let entity = cutover_webauthn::UserEntity {
        id: user.user.id.as_bytes().to_vec(),
        name: user.user.upn.to_string(),
        display_name: if user.user.display_name.trim().is_empty() {
            user.user.upn.to_string()
        } else {
            user.user.display_name.clone()
        },
    };
    let (options, reg_state) = rp
        .start_registration(&entity, &exclude, policy.passkey.enforce_attestation)
        .map_err(|e| {
            tracing::error!(error = %e, "could not start a passkey registration");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The passkey registration could not start. Try again.",
            )
        })?;
    let payload = json!(RegistrationChallenge {
        name,
        state: serde_json::to_value(&reg_state).map_err(|e| {
            tracing::error!(error = %e, "could not keep a passkey registration's state");
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "Try again.")
        })?,
    });
    let id = put_challenge(state, KIND_REGISTRATION, Some(user.user.id), payload).await?;
    Ok((id, options))
}

fn ceremony_refusal(e: &CeremonyError) -> Refusal {
    let msg = match e {
        CeremonyError::AttestationMissing | CeremonyError::AttestationUntrusted => {
            "Your organisation only accepts security keys and authenticators that can prove their make and model, and this one could not. Use an approved security key, or ask your helpdesk which ones are allowed."
        }
        CeremonyError::UserNotVerified => {
            "The authenticator did not verify you (PIN, fingerprint or face). Try again and complete the check."
        }
        CeremonyError::WrongOrigin { .. } | CeremonyError::WrongRpId => {
            "The passkey was created for a different site, so it was refused. Make sure you are on your organisation's sign-in page."
        }
        CeremonyError::AlgorithmNotAllowed => {
            "This authenticator uses a signature algorithm Cutover does not accept. Use a different one."
        }
        _ => "The passkey could not be verified. Try again.",
    };
    Refusal::new(StatusCode::BAD_REQUEST, msg)
}

fn parse_credential(raw: &str) -> Result<Value, Refusal> {
    if raw.len() > MAX_CREDENTIAL_JSON_BYTES {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The passkey response is too large.",
        ));
    }
    serde_json::from_str(raw).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "The browser's passkey response could not be read. Try again.",
        )
    })
}

/// Finish a registration: verify, apply the policy (attestation, model restrictions), store.
#[allow(clippy::too_many_arguments)]
pub async fn finish_registration(
    state: &AppState,
    ctx: &RequestCtx,
    user: &UserRecord,
    challenge_id: &str,
    credential_json: &str,
) -> Result<PasskeyRecord, Refusal> {
    let rp = rp(state)?;
    let now = state.now();
    let challenge = state
        .store
        .take_webauthn_challenge(challenge_id, now)
        .await?
        .filter(|c| c.kind == KIND_REGISTRATION && c.user_id == Some(user.user.id))
        .ok_or_else(expired_challenge)?;
    let saved: RegistrationChallenge = serde_json::from_str(&challenge.state).map_err(|e| {
        tracing::error!(error = %e, "unreadable passkey registration state");
        expired_challenge()
    })?;
    let reg_state: cutover_webauthn::RegistrationState = serde_json::from_value(saved.state)
        .map_err(|e| {
            tracing::error!(error = %e, "unreadable passkey registration state");
            expired_challenge()
        })?;
    let response = parse_credential(credential_json)?;
    let policy = load_methods_policy(state).await?;
    let trust = if policy.passkey.enforce_attestation {
        Some(state.passkeys.trust.as_ref().ok_or_else(|| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Passkeys cannot be registered right now because of a server setting. Contact your helpdesk.",
            )
        })?)
    } else {
        None
    };
    let made = rp
        .finish_registration(&reg_state, &response, trust)
        .map_err(|e| {
            tracing::warn!(user = %user.user.upn, reason = e.code(), error = %e, "a passkey registration was refused");
            ceremony_refusal(&e)
        })?;
    let groups = user_groups(state, user.user.id).await?;
    let aaguid = (!made.aaguid.is_nil()).then_some(made.aaguid);
    if !policy.passkey_allowed(&groups, aaguid) {
        tracing::warn!(user = %user.user.upn, aaguid = %made.aaguid, "a passkey registration was refused: the methods policy's key restrictions do not allow this authenticator model");
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Your organisation does not allow this kind of authenticator. Use an approved security key or device, or ask your helpdesk which ones are allowed.",
        ));
    }
    let family = cutover_core::device::family_of_passkey(&cutover_core::device::PasskeyEvidence {
        user_agent: ctx.user_agent.as_deref().unwrap_or(""),
        model_hint: ctx.ua_model.as_deref(),
        transports: &made.transports,
        aaguid: made.aaguid,
    });
    let record = PasskeyRecord {
        id: Uuid::now_v7(),
        user_id: user.user.id,
        credential_id: made.credential_id.to_string(),
        name: saved.name,
        aaguid: made.aaguid,
        credential: made.stored.as_json().to_owned(),
        backup_eligible: made.backup_eligible,
        backed_up: made.backed_up,
        sign_count: made.sign_count,
        device_family: family.as_str().to_owned(),
        attestation_format: made.attestation_format.clone(),
        attested: made.attested,
        transports: made.transports.clone(),
        created_at: now,
        last_used_at: None,
    };
    let a = user_audit(
        ctx,
        user,
        now,
        REGISTER_ACTION,
        Some(json!({
            "passkeyId": record.id,
            "name": record.name,
            "aaguid": record.aaguid,
            "authenticatorName": state.passkeys.authenticator_name(record.aaguid),
            "backedUp": record.backed_up,
            "deviceFamily": record.device_family,
            "attestationFormat": record.attestation_format,
        })),
    );
    state
        .store
        .add_passkey(&record, MAX_PASSKEYS_PER_USER, &a)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => {
                tracing::warn!(user = %user.user.upn, reason = %m, "a passkey registration was refused by the store");
                Refusal::new(
                    StatusCode::CONFLICT,
                    "This passkey is already registered, or you have the most passkeys allowed.",
                )
            }
            other => other.into(),
        })?;
    tracing::info!(user = %user.user.upn, passkey = %record.id, family = %record.device_family, backed_up = record.backed_up, "a passkey was registered");
    Ok(record)
}

/// An audit event the user caused themselves (on the security-info page, or a sign-in).
pub fn user_audit(
    ctx: &RequestCtx,
    user: &UserRecord,
    now: Timestamp,
    action: &str,
    after: Option<Value>,
) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: ctx.id,
        actor: format!("user:{}", user.user.upn),
        action: action.into(),
        target_type: "user".into(),
        target_id: user.user.id.to_string(),
        target_name: Some(user.user.upn.to_string()),
        before: None,
        after,
    }
}

/// Remove one of the user's passkeys.
pub async fn remove(
    state: &AppState,
    ctx: &RequestCtx,
    user: &UserRecord,
    passkey_id: Uuid,
    actor: Option<String>,
) -> Result<(), StoreError> {
    let mut a = user_audit(
        ctx,
        user,
        state.now(),
        DELETE_ACTION,
        Some(json!({"passkeyId": passkey_id})),
    );
    if let Some(actor) = actor {
        a.actor = actor;
    }
    state
        .store
        .delete_passkey(user.user.id, passkey_id, &a)
        .await?;
    tracing::info!(user = %user.user.upn, passkey = %passkey_id, "a passkey was removed");
    Ok(())
}

// --- sign-in with a passkey ------------------------------------------------------------------

#[derive(Deserialize)]
struct OptionsForm {
    t: Option<String>,
    csrf: Option<String>,
}

fn json_refusal(r: Refusal) -> Response {
    (r.status, Json(json!({"message": r.message}))).into_response()
}

/// Options for a discoverable (username-less) assertion, bound to the sign-in transaction:
/// the identifier page asks for them on load (autofill) and when the button is used.
async fn signin_options(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<OptionsForm>,
) -> Response {
    let (txn_id, _txn, bb) =
        match crate::signin::load_txn(&state, &headers, form.t.as_deref()).await {
            Ok(v) => v,
            Err(e) => return json_refusal(Refusal::new(e.status, e.message)),
        };
    if let Err(e) = crate::signin::check_csrf(&state, &txn_id, &bb, form.csrf.as_deref()) {
        return json_refusal(Refusal::new(e.status, e.message));
    }
    let result = async {
        let rp = rp(&state)?;
        let (options, auth_state) = rp.start_authentication(&[]).map_err(|e| {
            tracing::error!(error = %e, "could not start a passkey sign-in");
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "Try again.")
        })?;
        let payload = json!(AuthenticationChallenge {
            txn: txn_id.clone(),
            state: serde_json::to_value(&auth_state).map_err(|e| {
                tracing::error!(error = %e, "could not keep a passkey sign-in's state");
                Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "Try again.")
            })?,
        });
        // One outstanding challenge per sign-in: its id is derived from the transaction, so
        // a new one replaces the previous (an abandoned autofill request, say) — without
        // writing the transaction, which the identifier form may be updating meanwhile.
        let id = state.hasher.hash("passkey-challenge", &txn_id);
        replace_challenge(&state, &id, payload).await?;
        Ok::<_, Refusal>(json!({"challenge": id, "publicKey": options["publicKey"]}))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(r) => json_refusal(r),
    }
}

#[derive(Deserialize)]
struct AssertionForm {
    t: Option<String>,
    csrf: Option<String>,
    challenge: Option<String>,
    credential: Option<String>,
}

/// The verified outcome of an assertion.
pub struct Verified {
    pub user: UserRecord,
    pub passkey: PasskeyRecord,
    pub backed_up: bool,
}

/// What went wrong with an assertion, for the record and the page.
pub struct AssertionFailure {
    pub reason: FailureReason,
    /// The user the credential belongs to, when that is known.
    pub user: Option<UserRecord>,
    pub detail: String,
}

impl AssertionFailure {
    fn new(reason: FailureReason, user: Option<UserRecord>, detail: impl Into<String>) -> Self {
        Self {
            reason,
            user,
            detail: detail.into(),
        }
    }
}

/// Verify an assertion against the challenge `challenge_id` (taken: single use) that was
/// issued for `binding` (the sign-in transaction). `expected_user`: the user must be this one
/// (a second-factor step), else any registered passkey identifies its user.
pub async fn verify_assertion(
    state: &AppState,
    ctx: &RequestCtx,
    binding: &str,
    challenge_id: &str,
    credential_json: &str,
    expected_user: Option<Uuid>,
) -> Result<Result<Verified, AssertionFailure>, StoreError> {
    let now = state.now();
    let Some(rp) = state.passkeys.rp.as_ref() else {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            None,
            "passkeys are not available on this server",
        )));
    };
    let Some(challenge) = state
        .store
        .take_webauthn_challenge(challenge_id, now)
        .await?
        .filter(|c| c.kind == KIND_AUTHENTICATION)
    else {
        // Named in the record when the credential is known: a replay is an event about a user.
        let user = identify(state, credential_json).await?;
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            user,
            "challenge unknown, expired, withdrawn or already used (a replayed assertion is refused here)",
        )));
    };
    let Ok(saved) = serde_json::from_str::<AuthenticationChallenge>(&challenge.state) else {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            None,
            "unreadable challenge state",
        )));
    };
    if saved.txn != binding {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            None,
            "the challenge belongs to another sign-in",
        )));
    }
    let Ok(auth_state) =
        serde_json::from_value::<cutover_webauthn::AuthenticationState>(saved.state)
    else {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            None,
            "unreadable challenge state",
        )));
    };
    let response = match parse_credential(credential_json) {
        Ok(v) => v,
        Err(r) => {
            return Ok(Err(AssertionFailure::new(
                FailureReason::PasskeyRejected,
                None,
                r.message,
            )));
        }
    };
    let (cred_id, user_handle) = match RelyingParty::assertion_ids(&response) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(AssertionFailure::new(
                FailureReason::PasskeyRejected,
                None,
                format!("{}: {e}", e.code()),
            )));
        }
    };
    let Some(passkey) = state
        .store
        .get_passkey_by_credential_id(&cred_id.to_string())
        .await?
    else {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyNotRegistered,
            None,
            format!("credential {cred_id} is not registered"),
        )));
    };
    let Some(user) = state.store.get_user(passkey.user_id).await? else {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyNotRegistered,
            None,
            "the passkey's user no longer exists",
        )));
    };
    if let Some(h) = &user_handle
        && h.as_slice() != user.user.id.as_bytes()
    {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            Some(user),
            "the assertion's user handle names another user",
        )));
    }
    if expected_user.is_some_and(|u| u != user.user.id) {
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyRejected,
            Some(user),
            "the passkey belongs to another user than the one signing in",
        )));
    }
    let policy = load_methods_policy(state).await?;
    let groups = user_groups(state, user.user.id).await?;
    let aaguid = (!passkey.aaguid.is_nil()).then_some(passkey.aaguid);
    if !policy.passkey_allowed(&groups, aaguid) {
        return Ok(Err(AssertionFailure::new(
            FailureReason::MethodNotAllowedByPolicy,
            Some(user),
            format!(
                "the methods policy does not allow this passkey (model {})",
                passkey.aaguid
            ),
        )));
    }
    let stored = match cutover_webauthn::StoredCredential::from_json(&passkey.credential) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(passkey = %passkey.id, error = %e, "a stored passkey cannot be read; the user must register it again");
            return Ok(Err(AssertionFailure::new(
                FailureReason::PasskeyRejected,
                Some(user),
                "the stored credential is unreadable",
            )));
        }
    };
    let outcome =
        match rp.finish_authentication(&auth_state, &response, &stored, passkey.sign_count) {
            Ok(o) => o,
            Err(CeremonyError::PossibleClone { stored, presented }) => {
                report_clone(state, ctx, &user, &passkey, stored, presented).await?;
                return Ok(Err(AssertionFailure::new(
                    FailureReason::PasskeyPossibleClone,
                    Some(user),
                    format!("signature counter {presented} did not advance past {stored}"),
                )));
            }
            Err(e) => {
                return Ok(Err(AssertionFailure::new(
                    FailureReason::PasskeyRejected,
                    Some(user),
                    format!("{}: {e}", e.code()),
                )));
            }
        };
    // One conditional update: of two uses presenting the same counter (a clone racing the
    // original, on any node) only one advances it.
    if !state
        .store
        .record_passkey_use(passkey.id, outcome.sign_count, outcome.backed_up, now)
        .await?
    {
        let current = state
            .store
            .get_passkey_by_credential_id(&passkey.credential_id)
            .await?
            .map_or(passkey.sign_count, |p| p.sign_count);
        report_clone(state, ctx, &user, &passkey, current, outcome.sign_count).await?;
        return Ok(Err(AssertionFailure::new(
            FailureReason::PasskeyPossibleClone,
            Some(user),
            format!(
                "signature counter {} did not advance past {current}",
                outcome.sign_count
            ),
        )));
    }
    Ok(Ok(Verified {
        user,
        passkey,
        backed_up: outcome.backed_up,
    }))
}

/// The user whose registered passkey an assertion claims to come from, unverified: for the
/// sign-in record of a refusal only.
async fn identify(
    state: &AppState,
    credential_json: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let Ok(response) = parse_credential(credential_json) else {
        return Ok(None);
    };
    let Ok((cred_id, _)) = RelyingParty::assertion_ids(&response) else {
        return Ok(None);
    };
    match state
        .store
        .get_passkey_by_credential_id(&cred_id.to_string())
        .await?
    {
        Some(p) => state.store.get_user(p.user_id).await,
        None => Ok(None),
    }
}

async fn report_clone(
    state: &AppState,
    ctx: &RequestCtx,
    user: &UserRecord,
    passkey: &PasskeyRecord,
    stored: u32,
    presented: u32,
) -> Result<(), StoreError> {
    tracing::error!(user = %user.user.upn, passkey = %passkey.id, name = %passkey.name, stored, presented, "possible cloned authenticator: the passkey's signature counter went backwards; the sign-in was refused. Investigate, and remove the passkey if the user cannot explain it");
    let mut a = user_audit(
        ctx,
        user,
        state.now(),
        CLONE_ACTION,
        Some(json!({
            "passkeyId": passkey.id,
            "name": passkey.name,
            "storedSignCount": stored,
            "presentedSignCount": presented,
        })),
    );
    a.actor = "system".into();
    state.store.insert_audit_event(&a).await
}

/// The methods a verified passkey contributes to the session.
pub fn used_method(v: &Verified) -> UsedMethod {
    let aaguid = (!v.passkey.aaguid.is_nil()).then_some(v.passkey.aaguid);
    UsedMethod::passkey(aaguid, v.backed_up)
}

async fn signin_post(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<AssertionForm>,
) -> Result<Response, PageError> {
    let (txn_id, mut txn, bb) =
        crate::signin::load_txn(&state, &headers, form.t.as_deref()).await?;
    crate::signin::check_csrf(&state, &txn_id, &bb, form.csrf.as_deref())?;
    let csrf = crate::signin::csrf_for(&state, &txn_id, &bb);
    // On the second-factor page the passkey must be the first factor's user's.
    let first = txn.first_factor.clone();
    let outcome = verify_assertion(
        &state,
        &ctx,
        &txn_id,
        form.challenge.as_deref().unwrap_or(""),
        form.credential.as_deref().unwrap_or(""),
        first.as_ref().map(|f| f.user_id),
    )
    .await?;
    let mut record = crate::signin::record_for_txn(&state, &ctx, &txn);
    record.authentication_methods = vec!["passkey".into()];
    match outcome {
        Err(f) => {
            tracing::warn!(reason = f.reason.code(), detail = %f.detail, user = ?f.user.as_ref().map(|u| u.user.upn.to_string()), "a passkey sign-in was refused");
            record.user_id = f.user.as_ref().map(|u| u.user.id);
            record.user_principal_name = f.user.as_ref().map(|u| u.user.upn.to_string());
            record.result = SignInResult::Failure;
            record.failure_reason = Some(f.reason.code().into());
            state.record_sign_in(&record).await?;
            Ok((
                StatusCode::OK,
                pages::identifier_page(
                    &txn_id,
                    &csrf,
                    &txn.app_name,
                    txn.username.as_deref(),
                    Some(f.reason.user_message()),
                )
                .with_form_target(&txn.redirect_uri),
            )
                .into_response())
        }
        Ok(v) => {
            if !v.user.user.account_enabled {
                record.user_id = Some(v.user.user.id);
                record.user_principal_name = Some(v.user.user.upn.to_string());
                record.failure_reason = Some(FailureReason::AccountDisabled.code().into());
                state.record_sign_in(&record).await?;
                return Err(PageError::new(
                    StatusCode::FORBIDDEN,
                    "Your account is disabled",
                    FailureReason::AccountDisabled.user_message(),
                ));
            }
            let domain = state
                .store
                .get_domain(v.user.user.upn.domain().as_str())
                .await?;
            // A passkey is Cutover's own credential: it signs the user in here whatever
            // their domain's route (like a Temporary Access Pass, it takes precedence over
            // federation), so the migration can end at passkeys.
            txn.username = Some(v.user.user.upn.to_string());
            if first.is_none() {
                txn.route = Some("managed".into());
                txn.route_reason = Some("passkey".into());
                txn.credential = Some("passkey".into());
            }
            record.user_principal_name = txn.username.clone();
            record.route = txn.route.clone();
            record.route_reason = txn.route_reason.clone();
            record.device_family = Some(v.passkey.device_family.clone());
            // A second step adds the passkey to what the first factor earned.
            let mut methods = first
                .as_ref()
                .map(|f| cutover_core::strength::methods_from_amr(&f.amr))
                .unwrap_or_default();
            methods.push(used_method(&v));
            let amr: Vec<String> = cutover_core::strength::amr(&methods)
                .into_iter()
                .map(str::to_owned)
                .collect();
            let mut names = first
                .as_ref()
                .map(|f| f.methods.clone())
                .unwrap_or_default();
            names.push("passkey".into());
            record.authentication_methods = names;
            crate::mfa::finish_or_step_up(
                &state,
                &ctx,
                &txn_id,
                &txn,
                &v.user,
                domain.as_ref(),
                record,
                amr,
                first.and_then(|f| f.not_after),
            )
            .await
        }
    }
}
