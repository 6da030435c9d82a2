//! Cutover's storage: one [`Store`] trait, implemented for SQLite (the embedded default) and
//! PostgreSQL (several stateless nodes on one database). This is the only crate that speaks SQL.
//!
//! Every method is one atomic unit: an admin change and its audit row commit together or not at
//! all; a code or refresh token is consumed by exactly one caller even when nodes race.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use cutover_core::domain_cutover::{BreakGlassFacts, FederatedSignIns};
use cutover_core::lockout::LockoutState;
use cutover_core::pta::{PtaResult, RegistrationRefusal};
use cutover_core::signin_log::SignInRecord;
use cutover_core::staged::{
    FeatureRolloutPolicy, FeatureSet, RuleViolation, SignInEnd, StagedState,
};
use cutover_core::sync::lease::{FenceError, Lease};
use cutover_core::sync::plan::SyncedGroupState;
use cutover_core::sync::{SyncOp, UserImage};
use cutover_core::tap::Tap;
use cutover_core::{
    Application, Domain, DomainAuthentication, Group, IdentityProvider, MemberRef, Timestamp, User,
};
use serde_json::Value;
use uuid::Uuid;

pub mod conformance;
mod sql;

pub use sql::{SqlStore, connect, create_postgres_database};

/// Storage failures, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness or reference rule refused the write; the message names it.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or timed out; nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back (a bug or manual tampering); the message says where.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One audit row: who changed what, with the state before and after.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: Uuid,
    pub created_at: Timestamp,
    pub correlation_id: Uuid,
    /// `app:<clientId>` for an API caller, `system` for Cutover itself.
    pub actor: String,
    /// e.g. `createUser`, `addGroupMember`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub target_name: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A token signing key. `private_key` is the PKCS#8 key as the server sealed it (AES-GCM under
/// the key-encryption key); the store never sees it in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: Timestamp,
    pub retired_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_key", &"***")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// The pages between `/authorize` and the code: opaque JSON owned by the HTTP layer.
#[derive(Debug, Clone, PartialEq)]
pub struct SignInTransaction {
    pub id: String,
    pub data: Value,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A browser SSO session; only the hash of the cookie value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSession {
    pub id_hash: String,
    pub user_id: Uuid,
    pub auth_time: Timestamp,
    pub methods: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What a user (or, for client credentials, an app) was granted; tokens point to it, and
/// revoking it invalidates every refresh token and access token issued under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: Uuid,
    pub client_id: String,
    pub user_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub auth_time: Option<Timestamp>,
    pub methods: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Tokens of this grant never outlive it (`None`: no cap). A grant obtained with a
    /// Temporary Access Pass is capped at the pass's expiry.
    pub not_after: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub code_hash: String,
    pub grant_id: Uuid,
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Result of redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: the code is now spent.
    Redeemed(AuthCode),
    /// The code was already used; the grant it created has now been revoked.
    Replayed {
        grant_id: Uuid,
    },
    NotFound,
}

/// Result of rotating a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The old token is spent and the new one stored; here is the grant.
    Rotated(Grant),
    /// The token had already been rotated: someone replayed it, so the grant is revoked.
    Replayed {
        grant_id: Uuid,
    },
    Expired,
    Revoked,
    NotFound,
}

/// A user as stored, with the password hash that only the sign-in path reads.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user: User,
    /// Cloud password (argon2id PHC string).
    pub password_hash: Option<String>,
    /// Synced password: the sealed wrap of the on-prem hash (SPEC §5.2).
    pub synced_password: Option<String>,
    /// When the password (cloud or synced) last changed.
    pub password_changed_at: Option<Timestamp>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("user", &self.user)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field(
                "synced_password",
                &self.synced_password.as_ref().map(|_| "***"),
            )
            .field("password_changed_at", &self.password_changed_at)
            .finish()
    }
}

/// Paging and filters for user lists.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Case-insensitive prefix of the user principal name.
    pub upn_prefix: Option<String>,
    /// Continue after this normalised user principal name (keyset paging).
    pub after_upn: Option<String>,
    pub top: u32,
}

/// A position in a time-ordered log (newest first): rows strictly older than this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: Timestamp,
    pub id: Uuid,
}

impl Cursor {
    /// `<unix ms>.<uuid>`, as used in `$skiptoken`.
    pub fn encode(self) -> String {
        format!("{}.{}", self.created_at.millis(), self.id)
    }
    pub fn decode(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('.')?;
        Some(Self {
            created_at: Timestamp(ms.parse().ok()?),
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Filters for the sign-in log.
#[derive(Debug, Clone, Default)]
pub struct SignInFilter {
    pub user_id: Option<Uuid>,
    pub user_principal_name: Option<String>,
    pub client_id: Option<String>,
    pub result: Option<String>,
    pub route: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only sign-ins in which this Conditional Access policy has a result (with `ca_result`:
    /// that result).
    pub ca_policy: Option<Uuid>,
    /// Only sign-ins in which a Conditional Access policy (with `ca_policy`: that policy) has
    /// this result, e.g. `reportOnlyFailure` (exact match).
    pub ca_result: Option<String>,
    /// Continue after this row (keyset paging).
    pub older_than: Option<Cursor>,
    pub top: u32,
}

/// Filters for the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Continue after this row (keyset paging).
    pub older_than: Option<Cursor>,
    pub top: u32,
}

/// Everything Cutover persists. Lists return newest first where time matters, bounded by `top`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and the benchmark.
    fn backend(&self) -> &'static str;
    /// Check that the database answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    // Settings shared by every node.
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>>;
    /// Store `value` under `key` unless a value is there; return the value that is stored.
    async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String>;
    /// Store `value` under `key`, replacing any value there, with the audit row, in one
    /// transaction.
    async fn put_setting(&self, key: &str, value: &str, audit: &AuditEvent) -> StoreResult<()>;

    // Token signing keys.
    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// Store `key` as the new active key and retire every other active key at its creation
    /// time, with the audit row, in one transaction. Returns how many keys were retired.
    async fn rotate_signing_key(&self, key: &SigningKey, audit: &AuditEvent) -> StoreResult<u64>;
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>>;

    // Domains.
    async fn create_domain(&self, domain: &Domain, audit: &AuditEvent) -> StoreResult<()>;
    async fn get_domain(&self, name: &str) -> StoreResult<Option<Domain>>;
    async fn list_domains(&self) -> StoreResult<Vec<Domain>>;
    /// Refused with `Conflict` while users still belong to the domain.
    async fn delete_domain(&self, name: &str, audit: &AuditEvent) -> StoreResult<()>;

    // Users.
    async fn create_user(&self, user: &UserRecord, audit: &AuditEvent) -> StoreResult<()>;
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>>;
    /// Case-insensitive lookup by the normalised user principal name.
    async fn get_user_by_upn(&self, upn_normalized: &str) -> StoreResult<Option<UserRecord>>;
    async fn list_users(&self, filter: &UserFilter) -> StoreResult<Vec<User>>;
    /// The synced user with this on-prem anchor (`immutableId`, exact match).
    async fn get_user_by_immutable_id(&self, immutable_id: &str)
    -> StoreResult<Option<UserRecord>>;
    /// Replace the user's attributes (and the hash when `password_hash` is `Some`). A new
    /// password or a disabled account also ends the user's SSO sessions, and a new password
    /// revokes their grants (refresh and access tokens): a reset signs the user out everywhere.
    async fn update_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Delete the user, their memberships and sessions, and revoke their grants.
    async fn delete_user(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;

    // Groups.
    async fn create_group(&self, group: &Group, audit: &AuditEvent) -> StoreResult<()>;
    async fn get_group(&self, id: Uuid) -> StoreResult<Option<Group>>;
    /// Groups by display name (then id), continuing after `after` = (display name, id).
    async fn list_groups(&self, top: u32, after: Option<(String, Uuid)>)
    -> StoreResult<Vec<Group>>;
    async fn delete_group(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;
    /// `Conflict` when the member is already there.
    async fn add_group_member(
        &self,
        group_id: Uuid,
        member: MemberRef,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn remove_group_member(
        &self,
        group_id: Uuid,
        member: MemberRef,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Members by kind, then id, continuing after `after`.
    async fn list_group_members(
        &self,
        group_id: Uuid,
        top: u32,
        after: Option<MemberRef>,
    ) -> StoreResult<Vec<MemberRef>>;
    /// Groups that directly contain `member_id`.
    async fn groups_of_member(&self, member_id: Uuid) -> StoreResult<Vec<Uuid>>;

    // Applications.
    async fn create_application(&self, app: &Application, audit: &AuditEvent) -> StoreResult<()>;
    async fn get_application(&self, id: Uuid) -> StoreResult<Option<Application>>;
    async fn get_application_by_client_id(
        &self,
        client_id: &str,
    ) -> StoreResult<Option<Application>>;
    async fn list_applications(&self, top: u32) -> StoreResult<Vec<Application>>;
    async fn delete_application(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;
    /// Replace a confidential application's client-secret hash.
    async fn set_application_secret(
        &self,
        id: Uuid,
        secret_hash: &str,
        audit: &AuditEvent,
    ) -> StoreResult<()>;

    // Sign-in transactions.
    async fn create_sign_in_transaction(&self, txn: &SignInTransaction) -> StoreResult<()>;
    /// `None` when missing or expired at `now`.
    async fn get_sign_in_transaction(
        &self,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<Option<SignInTransaction>>;
    async fn update_sign_in_transaction(&self, id: &str, data: &Value) -> StoreResult<()>;
    /// Delete the transaction; `true` only for the one caller that actually removed it.
    async fn delete_sign_in_transaction(&self, id: &str) -> StoreResult<bool>;

    // SSO sessions.
    async fn create_session(&self, session: &SsoSession) -> StoreResult<()>;
    /// `None` when missing or expired at `now`.
    async fn get_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<SsoSession>>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;

    // Grants, codes, refresh tokens.
    /// Store the grant and its code together.
    async fn create_grant_with_code(&self, grant: &Grant, code: &AuthCode) -> StoreResult<()>;
    async fn create_grant(&self, grant: &Grant) -> StoreResult<()>;
    async fn get_grant(&self, id: Uuid) -> StoreResult<Option<Grant>>;
    async fn revoke_grant(&self, id: Uuid, reason: &str, now: Timestamp) -> StoreResult<()>;
    /// Spend a code exactly once; a second redemption revokes the grant it created.
    async fn redeem_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<CodeRedemption>;
    async fn insert_refresh_token(
        &self,
        token_hash: &str,
        grant_id: Uuid,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// Spend `old_hash` and store `new_hash` in its place, atomically.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: Timestamp,
        new_expires_at: Timestamp,
    ) -> StoreResult<RefreshRotation>;

    // Logs.
    /// Store the record and, in the same transaction, one row per Conditional Access policy in
    /// its `conditional_access` (the policy id and result only; a policy listed twice is stored
    /// once, with its first result): what [`SignInFilter::ca_policy`],
    /// [`SignInFilter::ca_result`] and [`Store::ca_results_since`] read. `Conflict` when a
    /// sign-in with this id is stored; nothing is written then.
    async fn insert_sign_in(&self, record: &SignInRecord) -> StoreResult<()>;
    /// The records that pass every filter given, newest first (then by id, descending), each
    /// once, continuing after `older_than`, at most `top` (0: the default page size; clamped
    /// to `MAX_PAGE_SIZE`).
    async fn list_sign_ins(&self, filter: &SignInFilter) -> StoreResult<Vec<SignInRecord>>;
    async fn list_audit_events(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEvent>>;
    /// Record an event that comes with no other write (e.g. a refused sign-in that must be
    /// audited: a possibly cloned passkey).
    async fn insert_audit_event(&self, audit: &AuditEvent) -> StoreResult<()>;

    /// Delete expired transactions, sessions, codes and refresh tokens, pass-through requests
    /// whose deadline passed more than an hour ago (with any envelopes left), agent
    /// registration tokens used or expired more than a day ago, Temporary Access Passes
    /// expired more than a day ago, and expired WebAuthn challenges; returns rows removed.
    async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64>;

    // Directory sync (SPEC §5.1).
    async fn sync_lease(&self) -> StoreResult<Lease>;
    /// Record (or refresh) a sync server's registration; returns its record.
    async fn register_sync_server(
        &self,
        reg: &SyncServerRegistration,
    ) -> StoreResult<SyncServerRecord>;
    async fn list_sync_servers(&self) -> StoreResult<Vec<SyncServerRecord>>;
    async fn get_sync_server(&self, name: &str) -> StoreResult<Option<SyncServerRecord>>;
    /// `server` takes the export lease ([`cutover_core::sync::lease::promote`]) — only if the
    /// lease is held by nobody, by `server` itself, or `force` is set (an explicit promote).
    /// Returns the new lease, or the fence error that refused it.
    async fn take_sync_lease(
        &self,
        server: &str,
        force: bool,
        audit: &AuditEvent,
    ) -> StoreResult<Result<Lease, FenceError>>;
    /// The holder gives the lease up.
    async fn release_sync_lease(
        &self,
        server: &str,
        audit: &AuditEvent,
    ) -> StoreResult<Result<Lease, FenceError>>;
    /// Apply one export batch in one transaction, fenced by the lease: nothing is written unless
    /// `batch.epoch` is current and `batch.server` holds the lease. A batch id already applied
    /// returns the first result again without writing.
    async fn apply_sync_batch(&self, batch: &SyncBatchWrite) -> StoreResult<SyncBatchOutcome>;
    /// Store a sync server's run report, pending exports and alert (not fenced: staging
    /// servers report too).
    async fn put_sync_report(
        &self,
        server: &str,
        report: &Value,
        pending: &Value,
        alert: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Synced users with anchor greater than `after`, by anchor, at most `limit`.
    async fn synced_users(&self, after: &str, limit: u32) -> StoreResult<Vec<SyncedUserRow>>;
    async fn synced_groups(&self, after: &str, limit: u32) -> StoreResult<Vec<SyncedGroupState>>;
    /// Normalized UPNs of cloud-only users.
    async fn cloud_upns(&self) -> StoreResult<Vec<String>>;

    // Upstream identity providers (SPEC §2, §3 step 2).
    async fn create_identity_provider(
        &self,
        idp: &IdentityProvider,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn get_identity_provider(&self, id: Uuid) -> StoreResult<Option<IdentityProvider>>;
    async fn list_identity_providers(&self) -> StoreResult<Vec<IdentityProvider>>;
    /// Replace every field but `id` and `created_at`; `NotFound` when missing.
    async fn update_identity_provider(
        &self,
        idp: &IdentityProvider,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// `Conflict` (naming the domains) while a domain is federated to it; `NotFound` when missing.
    async fn delete_identity_provider(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;

    // Domains: authentication changes (federation settings, cut-over, rollback).
    /// Replace the domain's authentication; `NotFound` when missing.
    async fn set_domain_authentication(
        &self,
        name: &str,
        authentication: &DomainAuthentication,
        audit: &AuditEvent,
    ) -> StoreResult<()>;

    // Feature rollout policies (SPEC §4.1–4.2). Every change is checked by the rules in
    // `cutover_core::staged` inside the same transaction that writes it (serialised across
    // nodes), so two admins racing cannot slip past a limit.
    async fn list_rollout_policies(&self) -> StoreResult<Vec<FeatureRolloutPolicy>>;
    async fn get_rollout_policy(&self, id: Uuid) -> StoreResult<Option<FeatureRolloutPolicy>>;
    /// Create after `check_policy(p, None, others)`.
    async fn create_rollout_policy(
        &self,
        p: &FeatureRolloutPolicy,
        audit: &AuditEvent,
    ) -> StoreResult<Result<(), RuleViolation>>;
    /// Replace display name, description, enabled flag, `is_applied_to_organization` and
    /// `updated_at` (never `applies_to`) after `check_policy(p, Some(stored), others)`;
    /// `NotFound` when missing. Returns the stored policy after the write.
    async fn update_rollout_policy(
        &self,
        p: &FeatureRolloutPolicy,
        audit: &AuditEvent,
    ) -> StoreResult<Result<FeatureRolloutPolicy, RuleViolation>>;
    /// `NotFound` when missing.
    async fn delete_rollout_policy(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;
    /// Add a group after `check_add_group` with the group's facts counted in the same
    /// transaction; `NotFound` when the policy or the group is missing.
    /// Returns the policy after the write.
    async fn add_rollout_group(
        &self,
        policy_id: Uuid,
        group_id: Uuid,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Result<FeatureRolloutPolicy, RuleViolation>>;
    /// Remove a group after `check_remove_group`; `NotFound` when the policy is missing.
    async fn remove_rollout_group(
        &self,
        policy_id: Uuid,
        group_id: Uuid,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Result<FeatureRolloutPolicy, RuleViolation>>;

    // Per-user staged-rollout state (SPEC §4.3).
    /// The stored state; the default (nothing effective, never changed) when none is stored.
    async fn get_staged_state(&self, user_id: Uuid) -> StoreResult<StagedState>;
    /// The end of a sign-in: in one transaction (the user's state row locked), apply
    /// `cutover_core::staged::transition(stored, desired, end, now)`, store the new state, and
    /// when it changed write one audit row per feature enabled (`userEnabledForFeature`) and
    /// removed (`userRemovedFromFeature`), actor `system`, target the user, with
    /// `before`/`after` = `{"effective": [...]}` and this correlation id. Returns the state
    /// before and after.
    async fn finish_staged_sign_in(
        &self,
        user: &User,
        desired: FeatureSet,
        end: SignInEnd,
        now: Timestamp,
        correlation_id: Uuid,
    ) -> StoreResult<(StagedState, StagedState)>;

    /// The direct user members of `group_id` that exist, by user id after `after`, at most
    /// `limit` (clamped to `MAX_PAGE_SIZE`), each with their stored staged state, whether they
    /// have a synced password hash, and their direct groups that a rollout policy (enabled or
    /// not) applies to: what the rollout progress report needs, one page at a time.
    async fn rollout_group_members(
        &self,
        group_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<StagedMemberRow>>;

    // Domain cut-over preflight facts (SPEC §4.5).
    /// Synced users of the domain, and those of them without a synced password hash (their
    /// count and up to `sample` of their UPNs, by UPN).
    async fn domain_password_coverage(
        &self,
        domain: &str,
        sample: u32,
    ) -> StoreResult<PasswordCoverage>;
    /// Every break-glass account with its last successful sign-in (from the sign-in log). Their
    /// last drills: [`Store::break_glass_drills`].
    async fn break_glass_accounts(&self) -> StoreResult<Vec<BreakGlassFacts>>;
    /// Users of the domain with federated sign-ins since `since`: count and last time per
    /// user principal name, most recent first, at most `limit`.
    async fn federated_sign_ins(
        &self,
        domain: &str,
        since: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<FederatedSignIns>>;

    // Pass-through agents (SPEC §5.3).
    /// Store a single-use registration token (its hash only) valid until `expires_at`, with
    /// the audit row, in one transaction. `Conflict` when the hash is already stored.
    async fn create_agent_token(
        &self,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Register `agent` with the token, in one transaction under the registration lock (so two
    /// registrations cannot both be the 40th): read the token and count the registered agents
    /// (enabled or not), ask `cutover_core::pta::check_registration`, and when it allows, mark
    /// the token used by this agent at `now` and store the agent and the audit row. A refusal
    /// writes nothing (the token stays unused unless that was the refusal).
    async fn register_agent(
        &self,
        token_hash: &str,
        agent: &AgentRecord,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<Result<(), RegistrationRefusal>>;
    /// The agent with this id; `None` when missing.
    async fn get_agent(&self, id: Uuid) -> StoreResult<Option<AgentRecord>>;
    /// Every registered agent (at most `cutover_core::pta::MAX_AGENTS`), by creation time, then
    /// id.
    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>>;
    /// Enable or disable an agent, with the audit row; `NotFound` when missing.
    async fn set_agent_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Delete an agent and every envelope sealed to it, with the audit row; `NotFound` when
    /// missing. Requests it claimed keep its id (they time out or were answered).
    async fn delete_agent(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;
    /// Replace an agent's public keys if its stored key generation is `expected_generation`
    /// (compare-and-set; `Conflict` otherwise, `NotFound` when missing), with the audit row.
    /// Returns the new generation (the old one plus one).
    async fn rotate_agent_keys(
        &self,
        id: Uuid,
        signing_key: &str,
        encryption_key: &str,
        expected_generation: u32,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<u32>;
    /// Store the agent's heartbeat time and body; `NotFound` when the agent was deleted.
    async fn record_agent_heartbeat(
        &self,
        id: Uuid,
        now: Timestamp,
        heartbeat: &Value,
    ) -> StoreResult<()>;

    // The pass-through request queue (SPEC §5.3).
    /// Queue a pending request with its envelopes, in one transaction. `Conflict` when the id
    /// is taken or an envelope names an agent that does not exist (deleted meanwhile).
    async fn enqueue_pta_request(&self, request: &PtaRequestRow) -> StoreResult<()>;
    /// Take up to `limit` (clamped to `cutover_core::pta::MAX_POLL_BATCH`) pending requests
    /// for `agent_id`, oldest first: those whose deadline is after `now` and that have an
    /// envelope for this agent, when the agent exists and is enabled. They are marked claimed
    /// by it at `now` and every envelope of theirs is deleted (this agent gets its copy here),
    /// atomically: two agents (or two polls) never get the same request. When nothing is
    /// pending for the agent the answer comes from one read, with no write.
    async fn claim_pta_requests(
        &self,
        agent_id: Uuid,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedPtaRequest>>;
    /// Record an agent's answer. `Accepted` (now done, `detail` cleaned by
    /// `cutover_core::pta::clean_detail`) only when the request is claimed by `agent_id`;
    /// `Late` when this agent had claimed it but it was abandoned (or already answered: the
    /// first answer stands); `NotYours` when it is not claimed by this agent; `Unknown` when
    /// missing. Only `Accepted` writes.
    async fn complete_pta_request(
        &self,
        id: Uuid,
        agent_id: Uuid,
        result: PtaResult,
        detail: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<CompleteOutcome>;
    /// The state of each request of `ids` that exists, in the order of `ids` (duplicates once);
    /// missing ids are left out. Meant for up to 1000 ids per call (read 1000 per statement).
    async fn pta_request_states(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, PtaRequestState)>>;
    /// Stop waiting for a request, atomically on its locked row: a done request is returned
    /// unchanged (its answer stands); a pending or claimed one becomes abandoned, its envelopes
    /// are deleted, and the state it had is returned; an abandoned one is returned as it is.
    /// `None` when missing.
    async fn abandon_pta_request(&self, id: Uuid) -> StoreResult<Option<PtaRequestState>>;
    /// Delete a request and its envelopes; nothing happens when it is missing.
    async fn delete_pta_request(&self, id: Uuid) -> StoreResult<()>;

    // Scrape-time figures for `/metrics` (each one statement, cheap at any size).
    /// The pass-through requests still inside their deadline at `now` (a deadline equal to
    /// `now` is past, as for a claim): those waiting for an agent (`pending`) and those taken
    /// by one and not answered yet (`claimed`).
    async fn pta_queue_depth(&self, now: Timestamp) -> StoreResult<PtaQueueDepth>;
    /// Every registered sync server's last run report and alert, by name, without the
    /// (possibly large) pending exports that [`Store::list_sync_servers`] reads.
    async fn sync_run_reports(&self) -> StoreResult<Vec<SyncRunReportRow>>;

    // Smart lockout (SPEC §7).
    /// The user's stored lockout state; the default (nothing counted) when none is stored.
    async fn get_lockout_state(&self, user_id: Uuid) -> StoreResult<LockoutState>;
    /// In one transaction with the user's lockout row locked (created if missing), apply
    /// `step` to the stored state and store the result when it differs. Returns the state
    /// before and after. Concurrent calls for one user (on any node) run one after the other,
    /// so no update is lost. `NotFound` when the user does not exist.
    async fn update_lockout_state(
        &self,
        user_id: Uuid,
        step: &(dyn Fn(LockoutState) -> LockoutState + Send + Sync),
    ) -> StoreResult<(LockoutState, LockoutState)>;
    /// An administrator's unlock: `update_lockout_state` with `cutover_core::lockout::unlock`,
    /// and the audit row (always written) in the same transaction. `NotFound` when the user
    /// does not exist.
    async fn unlock_user(
        &self,
        user_id: Uuid,
        audit: &AuditEvent,
    ) -> StoreResult<(LockoutState, LockoutState)>;

    // Temporary Access Passes (SPEC §6.3).
    /// Store the user's pass, replacing the one they have (a user has at most one), with the
    /// audit row, in one transaction. Returns the pass it replaced, if any; of two racing
    /// calls each returns the pass it actually replaced. `NotFound` when the user does not
    /// exist; `Conflict` when another user's pass has this id. Nothing is written then.
    async fn put_tap(&self, tap: &StoredTap, audit: &AuditEvent) -> StoreResult<Option<Tap>>;
    /// The user's pass, used or expired included; `None` when they have none.
    async fn get_tap(&self, user_id: Uuid) -> StoreResult<Option<StoredTap>>;
    /// Delete the user's pass `tap_id`, with the audit row, in one transaction. `NotFound`
    /// when the user has no pass with that id (no audit row then).
    async fn delete_tap(&self, user_id: Uuid, tap_id: Uuid, audit: &AuditEvent) -> StoreResult<()>;
    /// Use the user's pass `tap_id` at `now` (the secret was checked by the caller). A
    /// one-time pass is spent by one conditional `UPDATE` (unused, `starts_at <= now <
    /// expires_at`): `true` only for the caller whose update marked it used at `now`, so of
    /// any number of racing callers on any node exactly one wins. A multi-use pass: `true`
    /// when `starts_at <= now < expires_at`, from one read, with no write. `false` otherwise
    /// (no such pass, already used, outside its validity).
    async fn consume_tap(&self, user_id: Uuid, tap_id: Uuid, now: Timestamp) -> StoreResult<bool>;

    // Passkeys (WebAuthn credentials).
    /// Register `passkey` for `passkey.user_id`, with the audit row, in one transaction that
    /// first locks the user's row (PostgreSQL locks it; SQLite takes the write lock) and then
    /// counts their passkeys, so the count cannot change before the insert: of concurrent adds
    /// for one user (on any node) no more succeed than there is room for. `NotFound` when the
    /// user does not exist; `Conflict` with [`PASSKEY_CREDENTIAL_REGISTERED`] when a passkey
    /// with this credential id (anyone's) or this id is stored; `Conflict` with
    /// [`PASSKEY_LIMIT_REACHED`] when the user has `max_per_user` passkeys or more. Nothing is
    /// written then.
    async fn add_passkey(
        &self,
        passkey: &PasskeyRecord,
        max_per_user: u32,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The user's passkeys, oldest first (then by id); empty when they have none.
    async fn list_passkeys(&self, user_id: Uuid) -> StoreResult<Vec<PasskeyRecord>>;
    /// The passkey with this credential id (exact match), whoever it belongs to; `None` when
    /// none is registered.
    async fn get_passkey_by_credential_id(
        &self,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyRecord>>;
    /// Every user's passkeys by id, those after `after`, at most `limit` (0: the default page
    /// size; clamped to `MAX_PAGE_SIZE`): keyset paging for reports over all passkeys.
    async fn list_all_passkeys(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<PasskeyRecord>>;
    /// Rename the user's passkey `id`, with the audit row, in one transaction. `NotFound` when
    /// the user has no passkey with that id (no audit row then).
    async fn rename_passkey(
        &self,
        user_id: Uuid,
        id: Uuid,
        name: &str,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Delete the user's passkey `id`, with the audit row, in one transaction. `NotFound` when
    /// the user has no passkey with that id (no audit row then).
    async fn delete_passkey(&self, user_id: Uuid, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;
    /// Record a sign-in with passkey `id` (the assertion was checked by the caller), by one
    /// conditional `UPDATE` (compare-and-set on the signature counter): when the stored count
    /// is lower than `presented_sign_count`, or both are 0 (an authenticator that never
    /// counts), it stores the presented count, `backed_up` and `last_used_at = now` and
    /// returns `true`. Otherwise (the counter did not move forward: a cloned authenticator, or
    /// a use on another node got there first) or when there is no such passkey it returns
    /// `false` and writes nothing. Of any number of racing calls presenting the same count
    /// above the stored one, exactly one gets `true`.
    async fn record_passkey_use(
        &self,
        id: Uuid,
        presented_sign_count: u32,
        backed_up: bool,
        now: Timestamp,
    ) -> StoreResult<bool>;

    // WebAuthn ceremonies in progress (server-side challenge state, single use).
    /// Store a ceremony's state. `Conflict` when a challenge with this id is stored (expired
    /// or not); `NotFound` when `user_id` names a user that does not exist.
    async fn put_webauthn_challenge(&self, challenge: &WebauthnChallenge) -> StoreResult<()>;
    /// Delete the challenge `id` and return it, in one statement (`DELETE … RETURNING`). `None`
    /// when it is missing, already taken, or expired at `now` (`expires_at <= now`: it is
    /// deleted all the same). Of any number of racing takes on any node at most one gets it.
    async fn take_webauthn_challenge(
        &self,
        id: &str,
        now: Timestamp,
    ) -> StoreResult<Option<WebauthnChallenge>>;

    // TOTP enrolments (one per user).
    /// Store the user's enrolment as given (its `version` included), replacing the one they
    /// have, pending or confirmed, with the audit row, in one transaction. `NotFound` when the
    /// user does not exist; `Conflict` when another user's enrolment has this id. Nothing is
    /// written then.
    async fn put_totp(&self, totp: &TotpRecord, audit: &AuditEvent) -> StoreResult<()>;
    /// The user's enrolment, pending or confirmed; `None` when they have none.
    async fn get_totp(&self, user_id: Uuid) -> StoreResult<Option<TotpRecord>>;
    /// Store the verifier's new `state` by one conditional `UPDATE` (compare-and-set on
    /// `version`): when the user's enrolment is `id` at `expected_version`, set `state`, bump
    /// `version` by one, set `confirmed_at` to `confirm_at` when that is `Some` and the
    /// enrolment is not confirmed yet (a confirmed one keeps its time), and return `true`.
    /// Otherwise return `false` and write nothing: another attempt (on any node) updated it
    /// first, and the caller re-reads and verifies again. This is what makes a code accepted
    /// once: of racing updates from the same version, exactly one gets `true`.
    async fn update_totp_state(
        &self,
        user_id: Uuid,
        id: Uuid,
        expected_version: i64,
        state: &str,
        confirm_at: Option<Timestamp>,
    ) -> StoreResult<bool>;
    /// Delete the user's enrolment `id`, with the audit row, in one transaction. `NotFound`
    /// when the user has no enrolment with that id (no audit row then).
    async fn delete_totp(&self, user_id: Uuid, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;

    // Conditional Access (SPEC §8). Policies and named locations are opaque JSON text here: the
    // server checks them with `cutover_core::conditional_access` before it writes them. Every
    // change (creation, update, deletion) runs under the Conditional Access lock (PostgreSQL
    // locks its row, SQLite takes the write lock), so a limit, a name's uniqueness and the
    // `modified_at` of an update are checked with no other change in between, on any node.
    /// Store a new policy, with the audit row, in one transaction under the lock: of concurrent
    /// creations no more succeed than there is room for. `Conflict` when a policy with this id
    /// is stored; `Conflict` with [`CA_POLICY_NAME_TAKEN`] when another policy's display name
    /// is the same but for case; `Conflict` with [`CA_POLICY_LIMIT_REACHED`] when
    /// `max_policies` or more policies are stored (checked in this order). Nothing is written
    /// then.
    async fn create_ca_policy(
        &self,
        policy: &CaPolicyRow,
        max_policies: u32,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The policy with this id; `None` when missing.
    async fn get_ca_policy(&self, id: Uuid) -> StoreResult<Option<CaPolicyRow>>;
    /// Every policy, by display name (case-insensitively: the names are unique that way), then
    /// id. There are at most as many as `create_ca_policy`'s limit let in.
    async fn list_ca_policies(&self) -> StoreResult<Vec<CaPolicyRow>>;
    /// Replace the policy's display name, state, JSON, `modified_at` and `state_changed_at`
    /// (never `created_at`; the caller sets `state_changed_at` when the state changes), with
    /// the audit row, in one transaction under the lock, when its stored `modified_at` is
    /// `expected_modified_at` (the one the caller read): optimistic concurrency. `NotFound`
    /// when missing; `Conflict` with [`CHANGED_SINCE_READ`] when another update got there first
    /// (re-read and retry); `Conflict` with [`CA_POLICY_NAME_TAKEN`] when another policy has
    /// the display name but for case. Nothing is written then. The stored `modified_at` is
    /// `policy.modified_at`, or `expected_modified_at` plus 1 ms when that is not later (so
    /// every update moves it, even between nodes whose clocks disagree).
    async fn update_ca_policy(
        &self,
        policy: &CaPolicyRow,
        expected_modified_at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Delete the policy, with the audit row, in one transaction. `NotFound` when missing (no
    /// audit row then). Its results in the sign-in log stay.
    async fn delete_ca_policy(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;

    /// Store a new named location, with the audit row, in one transaction under the lock, as
    /// [`Store::create_ca_policy`] does: `Conflict` when one with this id is stored; `Conflict`
    /// with [`NAMED_LOCATION_NAME_TAKEN`] when another's display name is the same but for case;
    /// `Conflict` with [`NAMED_LOCATION_LIMIT_REACHED`] when `max_locations` or more are stored
    /// (in this order). Nothing is written then.
    async fn create_named_location(
        &self,
        location: &NamedLocationRow,
        max_locations: u32,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The named location with this id; `None` when missing.
    async fn get_named_location(&self, id: Uuid) -> StoreResult<Option<NamedLocationRow>>;
    /// Every named location, by display name (case-insensitively), then id.
    async fn list_named_locations(&self) -> StoreResult<Vec<NamedLocationRow>>;
    /// Replace the named location's display name, JSON, trusted flag and `modified_at` (never
    /// `created_at`), as [`Store::update_ca_policy`] does: when its stored `modified_at` is
    /// `expected_modified_at`; `NotFound` when missing; `Conflict` with [`CHANGED_SINCE_READ`]
    /// when another update got there first; `Conflict` with [`NAMED_LOCATION_NAME_TAKEN`] when
    /// another has the display name but for case. The stored `modified_at` is
    /// `location.modified_at`, or `expected_modified_at` plus 1 ms when that is not later.
    async fn update_named_location(
        &self,
        location: &NamedLocationRow,
        expected_modified_at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Delete the named location, with the audit row, in one transaction. `NotFound` when
    /// missing (no audit row then). The store does not know which policies name it: the server
    /// checks that first.
    async fn delete_named_location(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;

    /// The sign-ins at or after `since` in which policy `policy_id` has a result, newest first
    /// (then by id, descending), continuing after `older_than`, at most `limit` (0: the default
    /// page size; clamped to [`MAX_CA_RESULTS_PAGE`]), read through the per-policy results
    /// index: what the impact report and the enforcement gate evaluate. A window of any length
    /// is covered by calling again with the last record as `older_than` until a page comes
    /// back short.
    async fn ca_results_since(
        &self,
        policy_id: Uuid,
        since: Timestamp,
        older_than: Option<Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<SignInRecord>>;

    // Break-glass drills (SPEC §8).
    /// Record a successful drill of break-glass account `user_id` at `at`, with the audit row,
    /// in one transaction: the account's last drill becomes `at` unless a later one is stored
    /// (one recorded out of order never moves it back; the audit row is written either way).
    /// `NotFound` when the user does not exist; `Conflict` with [`NOT_BREAK_GLASS`] when the
    /// user is not a break-glass account. Nothing is written then.
    async fn record_break_glass_drill(
        &self,
        user_id: Uuid,
        at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The last drill of every break-glass account that has one, by user id. A user deleted,
    /// or no longer a break-glass account, is left out (a user marked again gets their last
    /// drill back).
    async fn break_glass_drills(&self) -> StoreResult<Vec<(Uuid, Timestamp)>>;

    // ---- Passkey rollout campaigns and the e-mail outbox (issue 8) ----------------------
    // Campaigns are kept like Conditional Access policies: every change (creation, update,
    // deletion) runs under the campaigns lock (PostgreSQL locks its row, SQLite takes the write
    // lock), so the limit, a name's uniqueness and an update's `modified_at` are checked with no
    // other change in between, on any node.
    /// Store a new campaign, with the audit row, in one transaction under the lock: of
    /// concurrent creations no more succeed than there is room for. `Conflict` when a campaign
    /// with this id is stored; `Conflict` with [`CAMPAIGN_NAME_TAKEN`] when another campaign's
    /// display name is the same but for case; `Conflict` with [`CAMPAIGN_LIMIT_REACHED`] when
    /// `max_campaigns` or more campaigns are stored (checked in this order). Nothing is written
    /// then.
    async fn create_campaign(
        &self,
        row: &CampaignRow,
        max_campaigns: u32,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The campaign with this id; `None` when missing.
    async fn get_campaign(&self, id: Uuid) -> StoreResult<Option<CampaignRow>>;
    /// Every campaign, by display name (case-insensitively), then id.
    async fn list_campaigns(&self) -> StoreResult<Vec<CampaignRow>>;
    /// Replace the campaign's display name, document and `modified_at` (never `created_at`),
    /// with the audit row, under the lock, when its stored `modified_at` is
    /// `expected_modified_at`, as [`Store::update_ca_policy`] does: `NotFound` when missing;
    /// `Conflict` with [`CHANGED_SINCE_READ`] when another update got there first; `Conflict`
    /// with [`CAMPAIGN_NAME_TAKEN`] when another campaign has the name but for case. The stored
    /// `modified_at` is `row.modified_at`, or `expected_modified_at` plus 1 ms when that is not
    /// later.
    async fn update_campaign(
        &self,
        row: &CampaignRow,
        expected_modified_at: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// Delete the campaign, with the audit row, in one transaction under the lock: its send
    /// decisions go with it, and its outbox messages still `Pending` or `Claimed` become
    /// `Cancelled` (a node holding a claimed one then finds it gone at
    /// [`Store::mark_outbox_transmitting`]). Messages transmitting, sent, failed or uncertain
    /// stay as they are: the log of what was sent. `NotFound` when missing (nothing written).
    async fn delete_campaign(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()>;

    /// Write the decision to send and its outbox messages (and the audit row, if any) in one
    /// transaction. `Ok(true)`: written. `Ok(false)`: a decision with this key is stored
    /// (another node or an earlier run decided): nothing is written. Of concurrent calls with
    /// one key, on any node, exactly one gets `Ok(true)`. `NotFound` when the campaign does not
    /// exist; `Conflict` (naming the key) when a message's idempotency key is stored already or
    /// given twice: the whole transaction rolls back, decision included.
    async fn record_send_decision(
        &self,
        decision: &SendDecision,
        messages: &[OutboxMessage],
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool>;
    /// The campaign's send decisions, by `decided_at`, then key.
    async fn list_send_decisions(&self, campaign_id: Uuid) -> StoreResult<Vec<SendDecision>>;
    /// Queue one message outside any decision (a test-send), stored as given, with the audit
    /// row if any. `Conflict` (naming the key) when its idempotency key (or id) is stored.
    async fn enqueue_outbox_message(
        &self,
        message: &OutboxMessage,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<()>;

    // Delivery. Claiming is exclusive across nodes (PostgreSQL: `FOR UPDATE SKIP LOCKED`;
    // SQLite: the write lock).
    /// First, in the same transaction: every `Transmitting` message whose lease has expired
    /// (`lease_until <= now`) becomes `Uncertain` (its sender died after handing it to the SMTP
    /// server but before hearing back: it is never sent again automatically), and every
    /// `Claimed` one whose lease has expired becomes `Pending` again, unclaimed (its sender died
    /// before transmitting: safe to retry). Then claim up to `limit` (clamped to
    /// [`MAX_OUTBOX_CLAIM`]) `Pending` messages with `next_attempt_at <= now`, oldest first
    /// (by `created_at`, then id): they become `Claimed` by `node` until `lease_until`, with
    /// `attempts` one more. Returns them in that order. Two claimers never get the same message.
    /// When nothing is due or expired, the answer comes from one read, with no write.
    async fn claim_outbox(
        &self,
        node: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// `Claimed` by `node` (the lease is not checked) → `Transmitting`, its lease extended to
    /// `lease_until`. `Ok(false)` (nothing written) when the message is no longer claimed by
    /// this node (its lease expired and it was reclaimed, or its campaign was deleted): the
    /// caller must not transmit it then.
    async fn mark_outbox_transmitting(
        &self,
        id: Uuid,
        node: &str,
        lease_until: Timestamp,
    ) -> StoreResult<bool>;
    /// Record the end of an attempt on a message `Claimed` or `Transmitting` by `node`: `Sent`
    /// (at `sent_at`), `Retry` (→ `Pending`, unclaimed, due at `next_attempt_at`, with the
    /// error), `Failed` or `Uncertain` (with the error). Errors longer than
    /// [`MAX_OUTBOX_ERROR_LEN`] bytes are cut (on a character boundary). `Ok(false)` when the
    /// message is not held by this node any more: nothing is written. One exception: a message
    /// this node was transmitting whose lease ran out (now `Uncertain`) still takes a `Sent` —
    /// the relay's late acceptance answers the uncertainty.
    async fn finish_outbox(
        &self,
        id: Uuid,
        node: &str,
        outcome: &OutboxOutcome,
    ) -> StoreResult<bool>;
    /// The message with this id; `None` when missing.
    async fn get_outbox_message(&self, id: Uuid) -> StoreResult<Option<OutboxMessage>>;
    /// The messages that pass every filter given, by id (UUIDv7: creation order), those after
    /// `filter.after`, at most `filter.limit` (0: the default page size; clamped to
    /// `MAX_PAGE_SIZE`).
    async fn list_outbox(&self, filter: &OutboxFilter) -> StoreResult<Vec<OutboxMessage>>;
    /// How many messages are in each state: the campaign's, or all when `None`.
    async fn outbox_counts(&self, campaign_id: Option<Uuid>) -> StoreResult<OutboxCounts>;
    /// An admin's explicit resend of a `Failed` or `Uncertain` message: it becomes `Pending`,
    /// unclaimed, due at `now`, its attempts counted from 0 again (the last error stays until
    /// the next attempt), with the audit row, in one transaction. `NotFound` when missing;
    /// `Conflict` with [`OUTBOX_NOT_RESENDABLE`] in any other state. Nothing is written then.
    async fn resend_outbox_message(
        &self,
        id: Uuid,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// An admin's resend of every `Failed` message — of the campaign, or of all when `None`
    /// (after a relay outage or a fixed setting): each becomes `Pending`, unclaimed, due at
    /// `now`, attempts from 0, in one transaction with the audit row. `Uncertain` messages are
    /// left alone (each needs a look at the relay's log first). Returns how many; with none,
    /// nothing is written (not even the audit row).
    async fn resend_failed_outbox(
        &self,
        campaign_id: Option<Uuid>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> StoreResult<u64>;

    // Bulk reads for campaign progress and mail.
    /// The passkeys of every direct user member of the group (not of nested groups' members),
    /// in one query: by user id, then creation time, then id. Empty when the group is missing
    /// or has none.
    async fn passkeys_of_group_members(&self, group_id: Uuid) -> StoreResult<Vec<PasskeyFact>>;
    /// The users among `ids` that exist, in the order of `ids` (duplicates once); missing ids
    /// are left out. Any number of ids (read [`USERS_BY_IDS_PER_STATEMENT`] per statement).
    async fn users_by_ids(&self, ids: &[Uuid]) -> StoreResult<Vec<User>>;
}

/// The `StoreError::Conflict` message of [`Store::create_ca_policy`] and
/// [`Store::update_ca_policy`] when another policy has the display name (but for case).
pub const CA_POLICY_NAME_TAKEN: &str = "a Conditional Access policy with this name exists";
/// The `StoreError::Conflict` message of [`Store::create_ca_policy`] when as many policies
/// exist as may.
pub const CA_POLICY_LIMIT_REACHED: &str = "the most Conditional Access policies allowed exist";
/// The `StoreError::Conflict` message of [`Store::create_named_location`] and
/// [`Store::update_named_location`] when another named location has the display name (but for
/// case).
pub const NAMED_LOCATION_NAME_TAKEN: &str = "a named location with this name exists";
/// The `StoreError::Conflict` message of [`Store::create_named_location`] when as many named
/// locations exist as may.
pub const NAMED_LOCATION_LIMIT_REACHED: &str = "the most named locations allowed exist";
/// The `StoreError::Conflict` message of an optimistic update ([`Store::update_ca_policy`],
/// [`Store::update_named_location`]) when the object changed since the caller read it.
pub const CHANGED_SINCE_READ: &str = "it was changed since it was read; read it again";
/// The `StoreError::Conflict` message of [`Store::record_break_glass_drill`] when the user is
/// not a break-glass account.
pub const NOT_BREAK_GLASS: &str = "the user is not a break-glass account";
/// Most sign-ins one [`Store::ca_results_since`] call returns.
pub const MAX_CA_RESULTS_PAGE: u32 = 5_000;

/// A Conditional Access policy as stored. The policy itself is opaque JSON text (the server
/// checks it with the core before writing); the store keeps its name, state and times beside
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPolicyRow {
    pub id: Uuid,
    /// Unique among policies, compared case-insensitively (Unicode lower case).
    pub display_name: String,
    /// [`CaPolicyRow::ENABLED`], [`CaPolicyRow::DISABLED`] or [`CaPolicyRow::REPORT_ONLY`]
    /// (the database refuses anything else).
    pub state: String,
    /// The whole policy, JSON text.
    pub policy: String,
    pub created_at: Timestamp,
    /// The token of [`Store::update_ca_policy`]'s optimistic concurrency.
    pub modified_at: Timestamp,
    /// When `state` last changed (the caller sets it): how long a policy has been report-only.
    pub state_changed_at: Timestamp,
}

impl CaPolicyRow {
    pub const ENABLED: &str = "enabled";
    pub const DISABLED: &str = "disabled";
    /// Report-only: evaluated and logged, never enforced.
    pub const REPORT_ONLY: &str = "enabledForReportingButNotEnforced";
}

/// A named location as stored: its ranges (or countries) are opaque JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLocationRow {
    pub id: Uuid,
    /// Unique among named locations, compared case-insensitively (Unicode lower case).
    pub display_name: String,
    /// The location, JSON text.
    pub location: String,
    pub is_trusted: bool,
    pub created_at: Timestamp,
    /// The token of [`Store::update_named_location`]'s optimistic concurrency.
    pub modified_at: Timestamp,
}

/// The `StoreError::Conflict` message of [`Store::add_passkey`] when the credential id (or
/// Cutover's id) is registered already, to this user or another.
pub const PASSKEY_CREDENTIAL_REGISTERED: &str = "this passkey is registered already";
/// The `StoreError::Conflict` message of [`Store::add_passkey`] when the user has as many
/// passkeys as they may.
pub const PASSKEY_LIMIT_REACHED: &str = "the user has the most passkeys allowed";

/// A user's passkey (WebAuthn credential) as stored. Nothing in it is secret: the
/// authenticator keeps the private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// Cutover's id for the credential.
    pub id: Uuid,
    pub user_id: Uuid,
    /// The credential id, base64url; unique across all users.
    pub credential_id: String,
    /// The name the user gave it.
    pub name: String,
    /// The authenticator's model; all zero when it gave none.
    pub aaguid: Uuid,
    /// The WebAuthn library's serialised credential (public key etc.), opaque JSON text.
    pub credential: String,
    pub backup_eligible: bool,
    /// Synced (`true`) or bound to one device; updated at each use.
    pub backed_up: bool,
    /// The authenticator's signature counter at the last use (0 for one that never counts).
    pub sign_count: u32,
    /// e.g. `iPhone`, `androidSamsung`, `windows`, `securityKey`, `unknown` (opaque here).
    pub device_family: String,
    pub attestation_format: String,
    /// The attestation was verified.
    pub attested: bool,
    pub transports: Vec<String>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// The server-side state of a WebAuthn ceremony in progress, kept between issuing the challenge
/// and checking the browser's answer, and taken once.
#[derive(Clone, PartialEq, Eq)]
pub struct WebauthnChallenge {
    /// A random handle: whoever holds it can finish the ceremony (hidden in `Debug`).
    pub id: String,
    /// [`WebauthnChallenge::REGISTRATION`] or [`WebauthnChallenge::AUTHENTICATION`] (the
    /// database refuses anything else).
    pub kind: String,
    /// The user the ceremony is for; `None` for a sign-in that does not name the user yet.
    pub user_id: Option<Uuid>,
    /// The WebAuthn library's ceremony state, opaque JSON text (hidden in `Debug`).
    pub state: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl WebauthnChallenge {
    pub const REGISTRATION: &str = "registration";
    pub const AUTHENTICATION: &str = "authentication";
}

impl std::fmt::Debug for WebauthnChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebauthnChallenge")
            .field("id", &"***")
            .field("kind", &self.kind)
            .field("user_id", &self.user_id)
            .field("state", &"***")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A user's TOTP enrolment as stored; the secret arrives sealed by the server (the store never
/// sees it in clear).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user_id: Uuid,
    pub id: Uuid,
    /// The shared secret as the server sealed it (hidden in `Debug`).
    pub secret_sealed: String,
    /// Digits, period and algorithm, opaque JSON text.
    pub params: String,
    /// The verifier's state (last accepted step, recent failures), opaque JSON text.
    pub state: String,
    /// One more at each [`Store::update_totp_state`]: the compare-and-set's token.
    pub version: i64,
    pub created_at: Timestamp,
    /// `None` while the user is still enrolling.
    pub confirmed_at: Option<Timestamp>,
    pub name: String,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("user_id", &self.user_id)
            .field("id", &self.id)
            .field("secret_sealed", &"***")
            .field("params", &self.params)
            .field("state", &self.state)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("name", &self.name)
            .finish()
    }
}

/// A user's Temporary Access Pass as stored: the pass, the hash of its secret (the store never
/// sees the secret) and who issued it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTap {
    pub user_id: Uuid,
    pub tap: Tap,
    /// The keyed hash of the secret, as the server computes it.
    pub secret_hash: String,
    /// Who issued the pass, as the server names them (e.g. the caller's audit actor).
    pub created_by: String,
}

impl std::fmt::Debug for StoredTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTap")
            .field("user_id", &self.user_id)
            .field("tap", &self.tap)
            .field("secret_hash", &"***")
            .field("created_by", &self.created_by)
            .finish()
    }
}

/// A registered pass-through agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: Uuid,
    pub host: String,
    pub version: String,
    /// The agent's public signing key (as the agent protocol encodes it).
    pub signing_key: String,
    /// The agent's public encryption key, which passwords are sealed to.
    pub encryption_key: String,
    /// 1 at registration, one more at each key rotation.
    pub key_generation: u32,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub keys_rotated_at: Option<Timestamp>,
    pub last_heartbeat: Option<Timestamp>,
    /// The agent's last heartbeat body as sent (stats + directory status), JSON.
    pub heartbeat: Option<Value>,
}

/// How many pass-through requests are waiting, by state (see [`Store::pta_queue_depth`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtaQueueDepth {
    pub pending: u64,
    pub claimed: u64,
}

/// A sync server as `/metrics` reads it (see [`Store::sync_run_reports`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRunReportRow {
    pub name: String,
    pub last_seen_at: Timestamp,
    pub last_report: Option<Value>,
    pub alert: Option<String>,
}

/// A pass-through request to queue.
#[derive(Clone, PartialEq, Eq)]
pub struct PtaRequestRow {
    pub id: Uuid,
    pub correlation_id: Uuid,
    pub user_principal_name: String,
    pub immutable_id: Option<String>,
    pub created_at: Timestamp,
    pub deadline: Timestamp,
    /// 1 for the first sending, 2 for the retry.
    pub attempt: u32,
    /// (agent id, sealed password as opaque text) — one per agent the password was sealed to.
    pub envelopes: Vec<(Uuid, String)>,
}

impl std::fmt::Debug for PtaRequestRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtaRequestRow")
            .field("id", &self.id)
            .field("correlation_id", &self.correlation_id)
            .field("user_principal_name", &self.user_principal_name)
            .field("immutable_id", &self.immutable_id)
            .field("created_at", &self.created_at)
            .field("deadline", &self.deadline)
            .field("attempt", &self.attempt)
            .field(
                "envelopes",
                &self
                    .envelopes
                    .iter()
                    .map(|(agent, _)| (agent, "***"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A request as the agent that claimed it receives it, with its own envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedPtaRequest {
    pub id: Uuid,
    pub correlation_id: Uuid,
    pub user_principal_name: String,
    pub immutable_id: Option<String>,
    pub deadline: Timestamp,
    /// The password sealed to this agent.
    pub envelope: String,
}

impl std::fmt::Debug for ClaimedPtaRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedPtaRequest")
            .field("id", &self.id)
            .field("correlation_id", &self.correlation_id)
            .field("user_principal_name", &self.user_principal_name)
            .field("immutable_id", &self.immutable_id)
            .field("deadline", &self.deadline)
            .field("envelope", &"***")
            .finish()
    }
}

/// Where a pass-through request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtaRequestState {
    /// Waiting for an agent.
    Pending,
    /// Taken by an agent, not answered yet.
    Claimed { agent_id: Uuid, at: Timestamp },
    /// Answered by the agent that claimed it.
    Done {
        agent_id: Uuid,
        result: PtaResult,
        detail: Option<String>,
        at: Timestamp,
    },
    /// The server stopped waiting (the agent that had claimed it, if any).
    Abandoned { claimed_by: Option<Uuid> },
}

/// What became of an agent's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteOutcome {
    /// Stored: the request is done.
    Accepted,
    /// This agent's request, but the server stopped waiting (or it was already answered).
    Late,
    /// Not claimed by this agent.
    NotYours,
    /// No such request.
    Unknown,
}

/// One direct user member of a group, as the rollout progress report reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedMemberRow {
    pub user: User,
    /// The password page can check this user: a synced password hash or a password set in
    /// Cutover (neither is returned).
    pub has_password: bool,
    /// The stored staged state (the default when none is stored).
    pub staged: StagedState,
    /// The user's direct groups that some rollout policy applies to, by id.
    pub rollout_groups: Vec<Uuid>,
}

/// How many synced users of a domain have a synced password hash.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswordCoverage {
    pub synced_users: u64,
    pub without_hash_total: u64,
    pub without_hash_sample: Vec<String>,
}

/// A sync server announcing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncServerRegistration {
    pub name: String,
    /// The application the server authenticates as. A name registered by one application
    /// cannot be taken over by another (`StoreError::Conflict`).
    pub client_id: String,
    pub host: String,
    pub version: String,
    pub staging: bool,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncServerRecord {
    pub name: String,
    pub client_id: String,
    pub host: String,
    pub version: String,
    pub staging: bool,
    pub registered_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub watermark: Option<String>,
    pub last_report: Option<Value>,
    pub pending: Option<Value>,
    pub alert: Option<String>,
}

/// One export batch, ready to write. `sealed_passwords[i]` is the sealed wrap for `ops[i]` when
/// that op is `SetPasswordHash` (the store never sees a wrap in the clear).
#[derive(Debug, Clone)]
pub struct SyncBatchWrite {
    pub server: String,
    pub epoch: u64,
    pub batch_id: String,
    pub ops: Vec<SyncOp>,
    pub sealed_passwords: Vec<Option<String>>,
    /// Written with the batch (the run's last batch carries it).
    pub watermark: Option<String>,
    pub now: Timestamp,
    pub audit: AuditEvent,
}

pub use cutover_core::sync::{ExportResult as SyncBatchResult, RejectedOp as RejectedSyncOp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncBatchOutcome {
    Applied(SyncBatchResult),
    /// The batch id was applied before; this is its result, nothing was written now.
    Duplicate(SyncBatchResult),
    Fenced(FenceError),
}

/// A synced user as the snapshot returns it; the password stays sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncedUserRow {
    pub image: UserImage,
    pub manager_anchor: Option<String>,
    pub sealed_password: Option<String>,
}

impl std::fmt::Debug for SyncedUserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncedUserRow")
            .field("image", &self.image)
            .field("manager_anchor", &self.manager_anchor)
            .field(
                "sealed_password",
                &self.sealed_password.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

// ---- Passkey rollout campaigns and the e-mail outbox (issue 8) ----------------------------

/// The `StoreError::Conflict` message of [`Store::create_campaign`] and
/// [`Store::update_campaign`] when another campaign has the display name (but for case).
pub const CAMPAIGN_NAME_TAKEN: &str = "a campaign with this name exists";
/// The `StoreError::Conflict` message of [`Store::create_campaign`] when as many campaigns
/// exist as may.
pub const CAMPAIGN_LIMIT_REACHED: &str = "the most campaigns allowed exist";
/// The `StoreError::Conflict` message of [`Store::resend_outbox_message`] when the message is
/// neither failed nor uncertain (the message goes on with its state).
pub const OUTBOX_NOT_RESENDABLE: &str = "only a failed or uncertain message can be sent again";
/// Most messages one [`Store::claim_outbox`] call claims (a larger `limit` is clamped).
pub const MAX_OUTBOX_CLAIM: u32 = 100;
/// Longest error text (bytes) stored with an outbox message; longer ones are cut on a
/// character boundary.
pub const MAX_OUTBOX_ERROR_LEN: usize = 2_000;
/// Ids per statement in [`Store::users_by_ids`] (well under both backends' bind limits).
pub const USERS_BY_IDS_PER_STATEMENT: usize = 500;

/// A passkey rollout campaign: its checked definition and its waves' states as one JSON
/// document (the server validates it with `cutover_core::campaign` before storing it).
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRow {
    pub id: Uuid,
    /// Unique among campaigns, compared case-insensitively (Unicode lower case).
    pub display_name: String,
    pub document: Value,
    pub created_at: Timestamp,
    /// The token of [`Store::update_campaign`]'s optimistic concurrency.
    pub modified_at: Timestamp,
}

/// The decision to send one communication step of one wave: written once, with its outbox
/// messages, in one transaction ([`Store::record_send_decision`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SendDecision {
    /// Unique: a second decision with this key writes nothing.
    pub key: String,
    pub campaign_id: Uuid,
    pub wave_id: Uuid,
    pub step_key: String,
    pub decided_at: Timestamp,
    /// How many messages the decision queued.
    pub recipients: u32,
    /// Who was left out and why: `[{"userId": …, "reason": …}]`.
    pub skipped: Value,
}

/// Where an outbox message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting to be claimed once `next_attempt_at` has come.
    Pending,
    /// A node holds it (until `lease_until`) and has not started transmitting.
    Claimed,
    /// A node is handing it to the SMTP server (until `lease_until`).
    Transmitting,
    Sent,
    /// Given up (a permanent refusal, or out of retries).
    Failed,
    /// Its sender died mid-transmission, or could not tell whether the server accepted it:
    /// never sent again automatically (an admin may resend it).
    Uncertain,
    /// Its campaign was deleted before it went out.
    Cancelled,
}

impl OutboxState {
    pub const ALL: [OutboxState; 7] = [
        OutboxState::Pending,
        OutboxState::Claimed,
        OutboxState::Transmitting,
        OutboxState::Sent,
        OutboxState::Failed,
        OutboxState::Uncertain,
        OutboxState::Cancelled,
    ];

    /// `pending`, `claimed`, `transmitting`, `sent`, `failed`, `uncertain`, `cancelled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Claimed => "claimed",
            OutboxState::Transmitting => "transmitting",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Uncertain => "uncertain",
            OutboxState::Cancelled => "cancelled",
        }
    }

    /// The state [`OutboxState::as_str`] names (exact match); `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// One e-mail in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// A UUIDv7, so ids sort in creation order ([`Store::list_outbox`] pages by id).
    pub id: Uuid,
    /// Unique: e.g. `{decisionKey}:user:{userId}`, or `test:{uuid}` for a test-send.
    pub idempotency_key: String,
    pub campaign_id: Option<Uuid>,
    pub wave_id: Option<Uuid>,
    pub step_key: Option<String>,
    pub user_id: Option<Uuid>,
    pub mail_from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// The `Message-ID` header, fixed when queued so a resend is recognisable as the same mail.
    pub message_id: String,
    pub state: OutboxState,
    /// How many times it was claimed for sending.
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub lease_until: Option<Timestamp>,
    /// The node that claimed it last.
    pub claimed_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// Filters and paging for [`Store::list_outbox`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    pub campaign_id: Option<Uuid>,
    pub wave_id: Option<Uuid>,
    pub state: Option<OutboxState>,
    pub user_id: Option<Uuid>,
    /// Continue after this id (keyset paging).
    pub after: Option<Uuid>,
    /// 0: the default page size; clamped to `MAX_PAGE_SIZE`.
    pub limit: u32,
}

/// How an attempt to send a message ended ([`Store::finish_outbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxOutcome {
    /// The SMTP server accepted it.
    Sent { at: Timestamp },
    /// A temporary failure: try again at `next_attempt_at`.
    Retry {
        error: String,
        next_attempt_at: Timestamp,
    },
    /// The SMTP relay could not be reached or refused the connection (nothing about this
    /// message was tried): back to `Pending` at `next_attempt_at`, and the attempt it was
    /// claimed with is not counted — a relay outage, however long, does not use up a
    /// message's retries.
    Deferred {
        error: String,
        next_attempt_at: Timestamp,
    },
    /// A permanent failure, or out of retries.
    Failed { error: String },
    /// Whether the server accepted it is unknown (e.g. the connection dropped after the data
    /// was sent): never sent again automatically.
    Uncertain { error: String },
}

/// How many outbox messages are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub claimed: u64,
    pub transmitting: u64,
    pub sent: u64,
    pub failed: u64,
    pub uncertain: u64,
    pub cancelled: u64,
}

impl OutboxCounts {
    /// The count of one state.
    pub fn get(&self, state: OutboxState) -> u64 {
        match state {
            OutboxState::Pending => self.pending,
            OutboxState::Claimed => self.claimed,
            OutboxState::Transmitting => self.transmitting,
            OutboxState::Sent => self.sent,
            OutboxState::Failed => self.failed,
            OutboxState::Uncertain => self.uncertain,
            OutboxState::Cancelled => self.cancelled,
        }
    }

    /// Every message counted.
    pub fn total(&self) -> u64 {
        OutboxState::ALL.into_iter().map(|s| self.get(s)).sum()
    }
}

/// What campaign progress needs of a passkey ([`Store::passkeys_of_group_members`]): the
/// fields of [`PasskeyRecord`] by the same names, without the credential itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyFact {
    /// Cutover's id for the credential.
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: Timestamp,
    /// e.g. `iPhone`, `androidSamsung`, `windows`, `securityKey`, `unknown`.
    pub device_family: String,
    pub aaguid: Uuid,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub last_used_at: Option<Timestamp>,
}

#[cfg(test)]
mod outbox_tests {
    use super::{OutboxCounts, OutboxState};

    #[test]
    fn outbox_states_round_trip_by_name() {
        for state in OutboxState::ALL {
            assert_eq!(OutboxState::parse(state.as_str()), Some(state));
        }
        let names: std::collections::HashSet<_> =
            OutboxState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), OutboxState::ALL.len(), "names are distinct");
        for other in ["", "Pending", "pending ", "queued"] {
            assert_eq!(OutboxState::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn outbox_counts_by_state_and_total() {
        let counts = OutboxCounts {
            pending: 1,
            claimed: 2,
            transmitting: 3,
            sent: 4,
            failed: 5,
            uncertain: 6,
            cancelled: 7,
        };
        let by_state: Vec<u64> = OutboxState::ALL.iter().map(|s| counts.get(*s)).collect();
        assert_eq!(by_state, vec![1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(counts.total(), 28);
        assert_eq!(OutboxCounts::default().total(), 0);
    }
}

#[cfg(test)]
mod tests {
    /// The conformance suite on a throwaway SQLite file (PostgreSQL runs in the integration tests).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_conformance() {
        let dir = std::env::temp_dir().join(format!("cutover-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("c.db").display());
        let store = crate::connect(&url).await.expect("open sqlite");
        crate::conformance::run(store).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The PostgreSQL cluster to test against: `CUTOVER_TEST_DATABASE_URL`, else
    /// `CUTOVER_TEST_POSTGRES_URL` (what `scripts/pg-start.sh` prints; `scripts/test.sh` sets
    /// it). A test that needs it fails without it: it never skips.
    pub(crate) fn postgres_url() -> String {
        ["CUTOVER_TEST_DATABASE_URL", "CUTOVER_TEST_POSTGRES_URL"]
            .into_iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| {
                panic!(
                    "CUTOVER_TEST_POSTGRES_URL is not set: run scripts/test.sh, or start a cluster with scripts/pg-start.sh DIR PORT and export what it prints"
                )
            })
    }

    /// A fresh database on that cluster (the role needs CREATEDB).
    pub(crate) async fn fresh_postgres(base: &str) -> String {
        let name = format!("store_{}", uuid::Uuid::new_v4().simple());
        crate::create_postgres_database(base, &name)
            .await
            .expect("create a test database")
    }

    // The conformance suite on PostgreSQL runs in the integration binary
    // (`storage_conformance_postgres`), with the rest of the tests that need PostgreSQL.
}
