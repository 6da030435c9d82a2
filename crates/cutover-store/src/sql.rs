//! The SQL implementation of [`Store`], written once and instantiated for SQLite and PostgreSQL.
//!
//! Both dialects run the same statements: `$N` placeholders (sqlx numbers them for SQLite too),
//! `CAST(... AS TEXT|BIGINT)` where PostgreSQL must know a parameter's type, `RETURNING`, and
//! `ON CONFLICT`. Values cross the boundary only as TEXT, BIGINT and BOOLEAN, so one row mapping
//! serves both. Each method is one transaction (or one statement).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_core::domain_cutover::{BreakGlassFacts, FederatedSignIns};
use cutover_core::lockout::LockoutState;
use cutover_core::pta::{PtaResult, RegistrationRefusal};
use cutover_core::signin_log::SignInRecord;
use cutover_core::staged::{
    FeatureRolloutPolicy, FeatureSet, GroupFacts, RolloutFeature, RuleViolation, SignInEnd,
    StagedState,
};
use cutover_core::sync::lease::{FenceError, Lease};
use cutover_core::sync::plan::SyncedGroupState;
use cutover_core::sync::{GroupImage, SyncOp, UserImage};
use cutover_core::tap::Tap;
use cutover_core::{
    Application, ClientAppType, ClientType, Domain, DomainAuthentication, DomainName,
    FederationConfig, GrantType, Group, IdentityProvider, MemberKind, MemberRef, MembershipKind,
    RedirectUri, Source, Timestamp, User, UserPrincipalName,
};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::*;

/// Connections to a database; `DB` is `sqlx::Sqlite` or `sqlx::Postgres`.
pub struct SqlStore<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
}

/// Pass-through requests are purged this long after their deadline.
pub const PTA_REQUEST_KEEP_SECS: i64 = 3_600;
/// Agent registration tokens are purged this long after they were used or expired.
pub const AGENT_TOKEN_KEEP_SECS: i64 = 24 * 3_600;
/// Temporary Access Passes are purged this long after they expired (until then the user's
/// pass can still be shown, as expired, to the helpdesk).
pub const TAP_KEEP_SECS: i64 = 86_400;
/// `put_tap` goes round (lock and read the user's pass, then overwrite or insert) at most this
/// often while other nodes keep inserting or deleting the same user's pass between the two.
const PUT_TAP_ATTEMPTS: usize = 4;
/// How long a request waits for a free connection before the database counts as unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per node to PostgreSQL.
pub const POSTGRES_POOL_SIZE: u32 = 16;
/// Connections to the SQLite file (WAL: many readers, one writer at a time).
pub const SQLITE_POOL_SIZE: u32 = 8;
/// How long SQLite waits for the write lock before giving up.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Open (and migrate) the database a URL names: `sqlite:PATH` or `postgres://…`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = sqlx::pool::PoolOptions::<sqlx::Sqlite>::new()
            .max_connections(SQLITE_POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Database(format!("migrating the SQLite database failed: {e}"))
            })?;
        Ok(Arc::new(SqlStore { pool }))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        let pool = sqlx::pool::PoolOptions::<sqlx::Postgres>::new()
            .max_connections(POSTGRES_POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| {
                StoreError::Database(format!("migrating the PostgreSQL database failed: {e}"))
            })?;
        Ok(Arc::new(SqlStore { pool }))
    } else {
        Err(StoreError::Unavailable(
            "the database URL must start with sqlite: or postgres://".into(),
        ))
    }
}

/// Create a new, empty PostgreSQL database next to the one `base_url` names and return its URL
/// (tests and the benchmark use one database each). The role needs CREATEDB.
pub async fn create_postgres_database(base_url: &str, name: &str) -> Result<String, StoreError> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        || name.is_empty()
        || name.len() > 63
    {
        return Err(StoreError::Database(format!(
            "'{name}' is not a safe database name"
        )));
    }
    let options = sqlx::postgres::PgConnectOptions::from_str(base_url)
        .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .map_err(map_err)?;
    let ddl = format!("CREATE DATABASE {name}");
    sqlx::query(sqlx::AssertSqlSafe(ddl))
        .execute(&mut conn)
        .await
        .map_err(map_err)?;
    let mut url = url_with_database(base_url, name);
    if url.is_empty() {
        url = base_url.to_owned();
    }
    Ok(url)
}

fn url_with_database(base_url: &str, name: &str) -> String {
    // postgres://user:pw@host:port/db?params → replace the path segment.
    let (head, query) = match base_url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base_url, None),
    };
    let Some(scheme_end) = head.find("://") else {
        return String::new();
    };
    let rest = &head[scheme_end + 3..];
    let host_part = rest.split('/').next().unwrap_or(rest);
    let mut out = format!("{}://{}/{}", &head[..scheme_end], host_part, name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                StoreError::Conflict(format!("already exists ({})", db.message()))
            } else if db.is_foreign_key_violation() {
                StoreError::Conflict(format!(
                    "still referenced or refers to a missing object ({})",
                    db.message()
                ))
            } else {
                StoreError::Database(db.message().to_owned())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn uuid_of(s: &str, what: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| corrupt(what, e))
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn list_of(s: &str, what: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn clamp_top(top: u32) -> i64 {
    let top = if top == 0 {
        cutover_core::limits::DEFAULT_PAGE_SIZE
    } else {
        top
    };
    i64::from(top.min(cutover_core::limits::MAX_PAGE_SIZE))
}

fn domain_auth_columns(d: &Domain) -> (&'static str, Option<String>) {
    auth_columns(&d.authentication)
}

/// The `authentication_type` and `federation` (JSON settings) columns of a domain.
fn auth_columns(a: &DomainAuthentication) -> (&'static str, Option<String>) {
    match a {
        DomainAuthentication::Managed(cfg) => (
            "managed",
            Some(serde_json::to_string(cfg).unwrap_or_default()),
        ),
        DomainAuthentication::Federated(cfg) => (
            "federated",
            Some(serde_json::to_string(cfg).unwrap_or_default()),
        ),
    }
}

fn audit_json(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

macro_rules! sql_store {
    ($db:ty, $backend:literal, $skip_locked:literal) => {
        impl SqlStore<$db> {
            async fn write_audit<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                a: &AuditEvent,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_log (id, created_at, correlation_id, actor, action, target_type, target_id, target_name, before_state, after_state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(a.id.to_string())
                .bind(a.created_at.millis())
                .bind(a.correlation_id.to_string())
                .bind(&a.actor)
                .bind(&a.action)
                .bind(&a.target_type)
                .bind(&a.target_id)
                .bind(&a.target_name)
                .bind(audit_json(&a.before))
                .bind(audit_json(&a.after))
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            fn domain_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<Domain> {
                let name: String = row.try_get("name").map_err(map_err)?;
                let kind: String = row.try_get("authentication_type").map_err(map_err)?;
                let fed: Option<String> = row.try_get("federation").map_err(map_err)?;
                let authentication = match kind.as_str() {
                    "managed" => DomainAuthentication::Managed(match fed {
                        Some(f) => serde_json::from_str(&f).map_err(|e| corrupt("domain managed settings", e))?,
                        None => Default::default(),
                    }),
                    "federated" => DomainAuthentication::Federated(match fed {
                        Some(f) => serde_json::from_str(&f).map_err(|e| corrupt("domain federation", e))?,
                        None => Default::default(),
                    }),
                    other => return Err(corrupt("domain authentication_type", other)),
                };
                Ok(Domain {
                    name: DomainName::parse(&name).map_err(|e| corrupt("domain name", e))?,
                    authentication,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                })
            }

            fn user_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<UserRecord> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let upn: String = row.try_get("upn").map_err(map_err)?;
                let source: String = row.try_get("source").map_err(map_err)?;
                let manager: Option<String> = row.try_get("manager_id").map_err(map_err)?;
                Ok(UserRecord {
                    user: User {
                        id: uuid_of(&id, "user id")?,
                        upn: UserPrincipalName::parse(&upn).map_err(|e| corrupt("user upn", e))?,
                        source: Source::parse(&source).ok_or_else(|| corrupt("user source", &source))?,
                        immutable_id: row.try_get("immutable_id").map_err(map_err)?,
                        display_name: row.try_get("display_name").map_err(map_err)?,
                        mail: row.try_get("mail").map_err(map_err)?,
                        department: row.try_get("department").map_err(map_err)?,
                        manager_id: manager.as_deref().map(|m| uuid_of(m, "manager id")).transpose()?,
                        account_enabled: row.try_get("account_enabled").map_err(map_err)?,
                        break_glass: row.try_get("break_glass").map_err(map_err)?,
                        created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                        updated_at: Timestamp(row.try_get("updated_at").map_err(map_err)?),
                    },
                    password_hash: row.try_get("password_hash").map_err(map_err)?,
                    synced_password: row.try_get("synced_password").map_err(map_err)?,
                    password_changed_at: row
                        .try_get::<Option<i64>, _>("password_changed_at")
                        .map_err(map_err)?
                        .map(Timestamp),
                })
            }

            fn group_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<Group> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let source: String = row.try_get("source").map_err(map_err)?;
                let kind: String = row.try_get("membership_kind").map_err(map_err)?;
                Ok(Group {
                    id: uuid_of(&id, "group id")?,
                    display_name: row.try_get("display_name").map_err(map_err)?,
                    description: row.try_get("description").map_err(map_err)?,
                    source: Source::parse(&source).ok_or_else(|| corrupt("group source", &source))?,
                    immutable_id: row.try_get("immutable_id").map_err(map_err)?,
                    membership_kind: MembershipKind::parse(&kind).ok_or_else(|| corrupt("group membership_kind", &kind))?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                })
            }

            fn app_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<Application> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let client_type: String = row.try_get("client_type").map_err(map_err)?;
                let cat: String = row.try_get("client_app_type").map_err(map_err)?;
                let uris = |col: &str| -> StoreResult<Vec<RedirectUri>> {
                    let raw: String = row.try_get(col).map_err(map_err)?;
                    list_of(&raw, col)?
                        .iter()
                        .map(|u| RedirectUri::parse(u).map_err(|e| corrupt(col, e)))
                        .collect()
                };
                let grants_raw: String = row.try_get("grant_types").map_err(map_err)?;
                let grant_types = list_of(&grants_raw, "grant_types")?
                    .iter()
                    .map(|g| GrantType::parse(g).ok_or_else(|| corrupt("grant type", g)))
                    .collect::<StoreResult<Vec<_>>>()?;
                let secret_hash: Option<String> = row.try_get("secret_hash").map_err(map_err)?;
                let roles: String = row.try_get("app_roles").map_err(map_err)?;
                Ok(Application {
                    id: uuid_of(&id, "application id")?,
                    client_id: row.try_get("client_id").map_err(map_err)?,
                    display_name: row.try_get("display_name").map_err(map_err)?,
                    client_type: ClientType::parse(&client_type).ok_or_else(|| corrupt("client_type", &client_type))?,
                    redirect_uris: uris("redirect_uris")?,
                    post_logout_redirect_uris: uris("post_logout_redirect_uris")?,
                    grant_types,
                    client_app_type: ClientAppType::parse(&cat).ok_or_else(|| corrupt("client_app_type", &cat))?,
                    secret_hash,
                    app_roles: list_of(&roles, "app_roles")?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                })
            }

            fn grant_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<Grant> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let user: Option<String> = row.try_get("user_id").map_err(map_err)?;
                let scopes: String = row.try_get("scopes").map_err(map_err)?;
                let methods: String = row.try_get("methods").map_err(map_err)?;
                let auth_time: Option<i64> = row.try_get("auth_time").map_err(map_err)?;
                let revoked: Option<i64> = row.try_get("revoked_at").map_err(map_err)?;
                let not_after: Option<i64> = row.try_get("not_after").map_err(map_err)?;
                Ok(Grant {
                    id: uuid_of(&id, "grant id")?,
                    client_id: row.try_get("client_id").map_err(map_err)?,
                    user_id: user.as_deref().map(|u| uuid_of(u, "grant user")).transpose()?,
                    scopes: list_of(&scopes, "grant scopes")?,
                    auth_time: auth_time.map(Timestamp),
                    methods: list_of(&methods, "grant methods")?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    revoked_at: revoked.map(Timestamp),
                    not_after: not_after.map(Timestamp),
                })
            }

            fn tap_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<StoredTap> {
                let user: String = row.try_get("user_id").map_err(map_err)?;
                let id: String = row.try_get("id").map_err(map_err)?;
                Ok(StoredTap {
                    user_id: uuid_of(&user, "temporary access pass user")?,
                    tap: Tap {
                        id: uuid_of(&id, "temporary access pass id")?,
                        created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                        starts_at: Timestamp(row.try_get("starts_at").map_err(map_err)?),
                        expires_at: Timestamp(row.try_get("expires_at").map_err(map_err)?),
                        one_time: row.try_get("one_time").map_err(map_err)?,
                        used_at: row.try_get::<Option<i64>, _>("used_at").map_err(map_err)?.map(Timestamp),
                    },
                    secret_hash: row.try_get("secret_hash").map_err(map_err)?,
                    created_by: row.try_get("created_by").map_err(map_err)?,
                })
            }

            fn passkey_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<PasskeyRecord> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let user: String = row.try_get("user_id").map_err(map_err)?;
                let aaguid: String = row.try_get("aaguid").map_err(map_err)?;
                let sign_count: i64 = row.try_get("sign_count").map_err(map_err)?;
                let transports: String = row.try_get("transports").map_err(map_err)?;
                Ok(PasskeyRecord {
                    id: uuid_of(&id, "passkey id")?,
                    user_id: uuid_of(&user, "passkey user")?,
                    credential_id: row.try_get("credential_id").map_err(map_err)?,
                    name: row.try_get("name").map_err(map_err)?,
                    aaguid: uuid_of(&aaguid, "passkey aaguid")?,
                    credential: row.try_get("credential").map_err(map_err)?,
                    backup_eligible: row.try_get("backup_eligible").map_err(map_err)?,
                    backed_up: row.try_get("backed_up").map_err(map_err)?,
                    sign_count: u32::try_from(sign_count).map_err(|_| corrupt("passkey sign_count", sign_count))?,
                    device_family: row.try_get("device_family").map_err(map_err)?,
                    attestation_format: row.try_get("attestation_format").map_err(map_err)?,
                    attested: row.try_get("attested").map_err(map_err)?,
                    transports: list_of(&transports, "passkey transports")?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    last_used_at: row.try_get::<Option<i64>, _>("last_used_at").map_err(map_err)?.map(Timestamp),
                })
            }

            fn challenge_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<WebauthnChallenge> {
                let user: Option<String> = row.try_get("user_id").map_err(map_err)?;
                Ok(WebauthnChallenge {
                    id: row.try_get("id").map_err(map_err)?,
                    kind: row.try_get("kind").map_err(map_err)?,
                    user_id: user.as_deref().map(|u| uuid_of(u, "webauthn challenge user")).transpose()?,
                    state: row.try_get("state").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    expires_at: Timestamp(row.try_get("expires_at").map_err(map_err)?),
                })
            }

            fn totp_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<TotpRecord> {
                let user: String = row.try_get("user_id").map_err(map_err)?;
                let id: String = row.try_get("id").map_err(map_err)?;
                Ok(TotpRecord {
                    user_id: uuid_of(&user, "totp user")?,
                    id: uuid_of(&id, "totp id")?,
                    secret_sealed: row.try_get("secret_sealed").map_err(map_err)?,
                    params: row.try_get("params").map_err(map_err)?,
                    state: row.try_get("state").map_err(map_err)?,
                    version: row.try_get("version").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    confirmed_at: row.try_get::<Option<i64>, _>("confirmed_at").map_err(map_err)?.map(Timestamp),
                    name: row.try_get("name").map_err(map_err)?,
                })
            }

            fn key_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<SigningKey> {
                let retired: Option<i64> = row.try_get("retired_at").map_err(map_err)?;
                Ok(SigningKey {
                    kid: row.try_get("kid").map_err(map_err)?,
                    algorithm: row.try_get("algorithm").map_err(map_err)?,
                    private_key: row.try_get("private_key").map_err(map_err)?,
                    public_jwk: row.try_get("public_jwk").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    retired_at: retired.map(Timestamp),
                })
            }

            fn audit_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<AuditEvent> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let corr: String = row.try_get("correlation_id").map_err(map_err)?;
                let parse = |col: &str| -> StoreResult<Option<Value>> {
                    let raw: Option<String> = row.try_get(col).map_err(map_err)?;
                    raw.map(|r| serde_json::from_str(&r).map_err(|e| corrupt(col, e))).transpose()
                };
                Ok(AuditEvent {
                    id: uuid_of(&id, "audit id")?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    correlation_id: uuid_of(&corr, "audit correlation id")?,
                    actor: row.try_get("actor").map_err(map_err)?,
                    action: row.try_get("action").map_err(map_err)?,
                    target_type: row.try_get("target_type").map_err(map_err)?,
                    target_id: row.try_get("target_id").map_err(map_err)?,
                    target_name: row.try_get("target_name").map_err(map_err)?,
                    before: parse("before_state")?,
                    after: parse("after_state")?,
                })
            }

            async fn revoke_grant_in<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                id: &str,
                reason: &str,
                now: Timestamp,
            ) -> StoreResult<()> {
                sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
                    .bind(now.millis())
                    .bind(reason)
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }
        }

        #[async_trait]
        impl Store for SqlStore<$db> {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(map_err)?;
                Ok(())
            }

            async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.map(|r| r.try_get("value").map_err(map_err)).transpose()
            }

            async fn init_setting(&self, key: &str, value: &str) -> StoreResult<String> {
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                self.get_setting(key).await?.ok_or(StoreError::NotFound)
            }

            async fn insert_signing_key(&self, k: &SigningKey) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&k.kid)
                .bind(&k.algorithm)
                .bind(&k.private_key)
                .bind(&k.public_jwk)
                .bind(k.created_at.millis())
                .bind(k.retired_at.map(Timestamp::millis))
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn rotate_signing_key(&self, k: &SigningKey, audit: &AuditEvent) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, NULL)",
                )
                .bind(&k.kid)
                .bind(&k.algorithm)
                .bind(&k.private_key)
                .bind(&k.public_jwk)
                .bind(k.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                let done = sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid <> $2 AND retired_at IS NULL")
                    .bind(k.created_at.millis())
                    .bind(&k.kid)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(done.rows_affected())
            }

            async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
                let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, kid")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::key_from).collect()
            }

            async fn create_domain(&self, d: &Domain, audit: &AuditEvent) -> StoreResult<()> {
                let (kind, fed) = domain_auth_columns(d);
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query("INSERT INTO domains (name, authentication_type, federation, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(d.name.as_str())
                    .bind(kind)
                    .bind(fed)
                    .bind(d.created_at.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_domain(&self, name: &str) -> StoreResult<Option<Domain>> {
                let row = sqlx::query("SELECT * FROM domains WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::domain_from).transpose()
            }

            async fn list_domains(&self) -> StoreResult<Vec<Domain>> {
                let rows = sqlx::query("SELECT * FROM domains ORDER BY name LIMIT $1")
                    .bind(i64::from(cutover_core::limits::MAX_PAGE_SIZE))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::domain_from).collect()
            }

            async fn delete_domain(&self, name: &str, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM domains WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match map_err(e) {
                        StoreError::Conflict(_) => StoreError::Conflict("users still belong to this domain".into()),
                        other => other,
                    })?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_user(&self, r: &UserRecord, audit: &AuditEvent) -> StoreResult<()> {
                let u = &r.user;
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO users (id, upn, upn_normalized, domain, source, immutable_id, display_name, mail, department, manager_id,
                        account_enabled, break_glass, password_hash, password_changed_at, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .bind(u.id.to_string())
                .bind(u.upn.as_str())
                .bind(u.upn.normalized())
                .bind(u.upn.domain().as_str())
                .bind(u.source.as_str())
                .bind(&u.immutable_id)
                .bind(&u.display_name)
                .bind(&u.mail)
                .bind(&u.department)
                .bind(u.manager_id.map(|m| m.to_string()))
                .bind(u.account_enabled)
                .bind(u.break_glass)
                .bind(&r.password_hash)
                .bind(r.password_hash.as_ref().map(|_| u.created_at.millis()))
                .bind(u.created_at.millis())
                .bind(u.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
                let row = sqlx::query("SELECT * FROM users WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::user_from).transpose()
            }

            async fn get_user_by_upn(&self, upn_normalized: &str) -> StoreResult<Option<UserRecord>> {
                let row = sqlx::query("SELECT * FROM users WHERE upn_normalized = $1")
                    .bind(upn_normalized)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::user_from).transpose()
            }

            async fn get_user_by_immutable_id(&self, immutable_id: &str) -> StoreResult<Option<UserRecord>> {
                let row = sqlx::query("SELECT * FROM users WHERE immutable_id = $1")
                    .bind(immutable_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::user_from).transpose()
            }

            async fn list_users(&self, f: &UserFilter) -> StoreResult<Vec<User>> {
                let prefix = f.upn_prefix.as_ref().map(|p| p.to_lowercase());
                let rows = sqlx::query(
                    "SELECT * FROM users
                     WHERE (CAST($1 AS TEXT) IS NULL OR substr(upn_normalized, 1, length(CAST($1 AS TEXT))) = CAST($1 AS TEXT))
                       AND (CAST($3 AS TEXT) IS NULL OR upn_normalized > CAST($3 AS TEXT))
                     ORDER BY upn_normalized LIMIT $2",
                )
                .bind(prefix)
                .bind(clamp_top(f.top))
                .bind(&f.after_upn)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(|r| Self::user_from(r).map(|u| u.user)).collect()
            }

            async fn update_user(&self, u: &User, password_hash: Option<&str>, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query(
                    "UPDATE users SET upn = $1, upn_normalized = $2, domain = $3, source = $4, immutable_id = $5, display_name = $6,
                        mail = $7, department = $8, manager_id = $9, account_enabled = $10, break_glass = $11, updated_at = $12,
                        password_hash = COALESCE(CAST($13 AS TEXT), password_hash),
                        password_changed_at = CASE WHEN CAST($13 AS TEXT) IS NULL THEN password_changed_at ELSE $12 END
                     WHERE id = $14",
                )
                .bind(u.upn.as_str())
                .bind(u.upn.normalized())
                .bind(u.upn.domain().as_str())
                .bind(u.source.as_str())
                .bind(&u.immutable_id)
                .bind(&u.display_name)
                .bind(&u.mail)
                .bind(&u.department)
                .bind(u.manager_id.map(|m| m.to_string()))
                .bind(u.account_enabled)
                .bind(u.break_glass)
                .bind(u.updated_at.millis())
                .bind(password_hash)
                .bind(u.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                if !u.account_enabled || password_hash.is_some() {
                    // A disabled account or a reset password keeps no browser sessions.
                    sqlx::query("DELETE FROM sso_sessions WHERE user_id = $1")
                        .bind(u.id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                if password_hash.is_some() {
                    // Tokens obtained with the old password stop working.
                    sqlx::query(
                        "UPDATE grants SET revoked_at = $1, revoked_reason = 'passwordReset' WHERE user_id = $2 AND revoked_at IS NULL",
                    )
                    .bind(u.updated_at.millis())
                    .bind(u.id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_user(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let id_s = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                for stmt in [
                    "DELETE FROM group_members WHERE member_kind = 'user' AND member_id = $1",
                    "DELETE FROM sso_sessions WHERE user_id = $1",
                    "DELETE FROM user_staged_state WHERE user_id = $1",
                    "UPDATE users SET manager_id = NULL WHERE manager_id = $1",
                ] {
                    sqlx::query(stmt).bind(&id_s).execute(&mut *tx).await.map_err(map_err)?;
                }
                sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = 'userDeleted' WHERE user_id = $2 AND revoked_at IS NULL")
                    .bind(audit.created_at.millis())
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_group(&self, g: &Group, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO directory_groups (id, display_name, description, source, immutable_id, membership_kind, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(g.id.to_string())
                .bind(&g.display_name)
                .bind(&g.description)
                .bind(g.source.as_str())
                .bind(&g.immutable_id)
                .bind(g.membership_kind.as_str())
                .bind(g.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_group(&self, id: Uuid) -> StoreResult<Option<Group>> {
                let row = sqlx::query("SELECT * FROM directory_groups WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::group_from).transpose()
            }

            async fn list_groups(&self, top: u32, after: Option<(String, Uuid)>) -> StoreResult<Vec<Group>> {
                let (after_name, after_id) = match after {
                    Some((name, id)) => (Some(name), Some(id.to_string())),
                    None => (None, None),
                };
                let rows = sqlx::query(
                    "SELECT * FROM directory_groups
                     WHERE CAST($2 AS TEXT) IS NULL OR display_name > CAST($2 AS TEXT)
                        OR (display_name = CAST($2 AS TEXT) AND id > CAST($3 AS TEXT))
                     ORDER BY display_name, id LIMIT $1",
                )
                    .bind(clamp_top(top))
                    .bind(after_name)
                    .bind(after_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::group_from).collect()
            }

            async fn delete_group(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let id_s = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // The group leaves every rollout policy: a policy change, so under its lock.
                Self::lock_rollout(&mut tx).await?;
                for stmt in [
                    "DELETE FROM feature_rollout_groups WHERE group_id = $1",
                    "DELETE FROM group_members WHERE group_id = $1 OR (member_kind = 'group' AND member_id = $1)",
                ] {
                    sqlx::query(stmt).bind(&id_s).execute(&mut *tx).await.map_err(map_err)?;
                }
                let done = sqlx::query("DELETE FROM directory_groups WHERE id = $1")
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn add_group_member(&self, group_id: Uuid, m: MemberRef, now: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query("INSERT INTO group_members (group_id, member_kind, member_id, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(group_id.to_string())
                    .bind(m.kind.as_str())
                    .bind(m.id.to_string())
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match map_err(e) {
                        StoreError::Conflict(msg) if msg.starts_with("already") => {
                            StoreError::Conflict("the object is already a member of this group".into())
                        }
                        StoreError::Conflict(_) => StoreError::NotFound,
                        other => other,
                    })?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn remove_group_member(&self, group_id: Uuid, m: MemberRef, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_kind = $2 AND member_id = $3")
                    .bind(group_id.to_string())
                    .bind(m.kind.as_str())
                    .bind(m.id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn list_group_members(&self, group_id: Uuid, top: u32, after: Option<MemberRef>) -> StoreResult<Vec<MemberRef>> {
                let rows = sqlx::query(
                    "SELECT member_kind, member_id FROM group_members WHERE group_id = $1
                       AND (CAST($3 AS TEXT) IS NULL OR member_kind > CAST($3 AS TEXT)
                            OR (member_kind = CAST($3 AS TEXT) AND member_id > CAST($4 AS TEXT)))
                     ORDER BY member_kind, member_id LIMIT $2",
                )
                .bind(group_id.to_string())
                .bind(clamp_top(top))
                .bind(after.map(|m| m.kind.as_str()))
                .bind(after.map(|m| m.id.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        let kind: String = r.try_get("member_kind").map_err(map_err)?;
                        let id: String = r.try_get("member_id").map_err(map_err)?;
                        Ok(MemberRef {
                            kind: MemberKind::parse(&kind).ok_or_else(|| corrupt("member_kind", &kind))?,
                            id: uuid_of(&id, "member id")?,
                        })
                    })
                    .collect()
            }

            async fn groups_of_member(&self, member_id: Uuid) -> StoreResult<Vec<Uuid>> {
                let rows = sqlx::query("SELECT group_id FROM group_members WHERE member_id = $1 ORDER BY group_id")
                    .bind(member_id.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        let id: String = r.try_get("group_id").map_err(map_err)?;
                        uuid_of(&id, "group id")
                    })
                    .collect()
            }

            async fn create_application(&self, a: &Application, audit: &AuditEvent) -> StoreResult<()> {
                let uris = |v: &[RedirectUri]| json_list(&v.iter().map(|u| u.as_str().to_owned()).collect::<Vec<_>>());
                let grants: Vec<String> = a.grant_types.iter().map(|g| g.as_str().to_owned()).collect();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO applications (id, client_id, display_name, client_type, redirect_uris, post_logout_redirect_uris,
                        grant_types, client_app_type, secret_hash, app_roles, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(a.id.to_string())
                .bind(&a.client_id)
                .bind(&a.display_name)
                .bind(a.client_type.as_str())
                .bind(uris(&a.redirect_uris))
                .bind(uris(&a.post_logout_redirect_uris))
                .bind(json_list(&grants))
                .bind(a.client_app_type.as_str())
                .bind(&a.secret_hash)
                .bind(json_list(&a.app_roles))
                .bind(a.created_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_application(&self, id: Uuid) -> StoreResult<Option<Application>> {
                let row = sqlx::query("SELECT * FROM applications WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::app_from).transpose()
            }

            async fn get_application_by_client_id(&self, client_id: &str) -> StoreResult<Option<Application>> {
                let row = sqlx::query("SELECT * FROM applications WHERE client_id = $1")
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::app_from).transpose()
            }

            async fn list_applications(&self, top: u32) -> StoreResult<Vec<Application>> {
                let rows = sqlx::query("SELECT * FROM applications ORDER BY display_name, id LIMIT $1")
                    .bind(clamp_top(top))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::app_from).collect()
            }

            async fn delete_application(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let row = sqlx::query("DELETE FROM applications WHERE id = $1 RETURNING client_id")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let Some(row) = row else { return Err(StoreError::NotFound) };
                let client_id: String = row.try_get("client_id").map_err(map_err)?;
                sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = 'applicationDeleted' WHERE client_id = $2 AND revoked_at IS NULL")
                    .bind(audit.created_at.millis())
                    .bind(&client_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn set_application_secret(&self, id: Uuid, secret_hash: &str, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("UPDATE applications SET secret_hash = $1 WHERE id = $2 AND client_type = 'confidential'")
                    .bind(secret_hash)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_sign_in_transaction(&self, t: &SignInTransaction) -> StoreResult<()> {
                sqlx::query("INSERT INTO sign_in_transactions (id, data, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(&t.id)
                    .bind(t.data.to_string())
                    .bind(t.created_at.millis())
                    .bind(t.expires_at.millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn get_sign_in_transaction(&self, id: &str, now: Timestamp) -> StoreResult<Option<SignInTransaction>> {
                let row = sqlx::query("SELECT * FROM sign_in_transactions WHERE id = $1 AND expires_at > $2")
                    .bind(id)
                    .bind(now.millis())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.map(|r| {
                    let data: String = r.try_get("data").map_err(map_err)?;
                    Ok(SignInTransaction {
                        id: r.try_get("id").map_err(map_err)?,
                        data: serde_json::from_str(&data).map_err(|e| corrupt("sign-in transaction", e))?,
                        created_at: Timestamp(r.try_get("created_at").map_err(map_err)?),
                        expires_at: Timestamp(r.try_get("expires_at").map_err(map_err)?),
                    })
                })
                .transpose()
            }

            async fn update_sign_in_transaction(&self, id: &str, data: &Value) -> StoreResult<()> {
                let done = sqlx::query("UPDATE sign_in_transactions SET data = $1 WHERE id = $2")
                    .bind(data.to_string())
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn delete_sign_in_transaction(&self, id: &str) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM sign_in_transactions WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_session(&self, s: &SsoSession) -> StoreResult<()> {
                sqlx::query("INSERT INTO sso_sessions (id_hash, user_id, auth_time, methods, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(&s.id_hash)
                    .bind(s.user_id.to_string())
                    .bind(s.auth_time.millis())
                    .bind(json_list(&s.methods))
                    .bind(s.created_at.millis())
                    .bind(s.expires_at.millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn get_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<SsoSession>> {
                let row = sqlx::query("SELECT * FROM sso_sessions WHERE id_hash = $1 AND expires_at > $2")
                    .bind(id_hash)
                    .bind(now.millis())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.map(|r| {
                    let user: String = r.try_get("user_id").map_err(map_err)?;
                    let methods: String = r.try_get("methods").map_err(map_err)?;
                    Ok(SsoSession {
                        id_hash: r.try_get("id_hash").map_err(map_err)?,
                        user_id: uuid_of(&user, "session user")?,
                        auth_time: Timestamp(r.try_get("auth_time").map_err(map_err)?),
                        methods: list_of(&methods, "session methods")?,
                        created_at: Timestamp(r.try_get("created_at").map_err(map_err)?),
                        expires_at: Timestamp(r.try_get("expires_at").map_err(map_err)?),
                    })
                })
                .transpose()
            }

            async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM sso_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn create_grant_with_code(&self, g: &Grant, c: &AuthCode) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::insert_grant(&mut tx, g).await?;
                sqlx::query(
                    "INSERT INTO auth_codes (code_hash, grant_id, client_id, redirect_uri, nonce, code_challenge, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&c.code_hash)
                .bind(c.grant_id.to_string())
                .bind(&c.client_id)
                .bind(&c.redirect_uri)
                .bind(&c.nonce)
                .bind(&c.code_challenge)
                .bind(c.created_at.millis())
                .bind(c.expires_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_grant(&self, g: &Grant) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::insert_grant(&mut tx, g).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_grant(&self, id: Uuid) -> StoreResult<Option<Grant>> {
                let row = sqlx::query("SELECT * FROM grants WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::grant_from).transpose()
            }

            async fn revoke_grant(&self, id: Uuid, reason: &str, now: Timestamp) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::revoke_grant_in(&mut tx, &id.to_string(), reason, now).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn redeem_code(&self, code_hash: &str, now: Timestamp) -> StoreResult<CodeRedemption> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let row = sqlx::query(
                    "UPDATE auth_codes SET consumed_at = $1 WHERE code_hash = $2 AND consumed_at IS NULL AND expires_at > $1
                     RETURNING code_hash, grant_id, client_id, redirect_uri, nonce, code_challenge, created_at, expires_at",
                )
                .bind(now.millis())
                .bind(code_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                if let Some(r) = row {
                    let grant: String = r.try_get("grant_id").map_err(map_err)?;
                    let code = AuthCode {
                        code_hash: r.try_get("code_hash").map_err(map_err)?,
                        grant_id: uuid_of(&grant, "code grant")?,
                        client_id: r.try_get("client_id").map_err(map_err)?,
                        redirect_uri: r.try_get("redirect_uri").map_err(map_err)?,
                        nonce: r.try_get("nonce").map_err(map_err)?,
                        code_challenge: r.try_get("code_challenge").map_err(map_err)?,
                        created_at: Timestamp(r.try_get("created_at").map_err(map_err)?),
                        expires_at: Timestamp(r.try_get("expires_at").map_err(map_err)?),
                    };
                    tx.commit().await.map_err(map_err)?;
                    return Ok(CodeRedemption::Redeemed(code));
                }
                let spent = sqlx::query("SELECT grant_id FROM auth_codes WHERE code_hash = $1 AND consumed_at IS NOT NULL")
                    .bind(code_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let Some(spent) = spent else {
                    tx.commit().await.map_err(map_err)?;
                    return Ok(CodeRedemption::NotFound);
                };
                let grant: String = spent.try_get("grant_id").map_err(map_err)?;
                Self::revoke_grant_in(&mut tx, &grant, "authorizationCodeReplayed", now).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(CodeRedemption::Replayed { grant_id: uuid_of(&grant, "code grant")? })
            }

            async fn insert_refresh_token(&self, token_hash: &str, grant_id: Uuid, now: Timestamp, expires_at: Timestamp) -> StoreResult<()> {
                sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(token_hash)
                    .bind(grant_id.to_string())
                    .bind(now.millis())
                    .bind(expires_at.millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn rotate_refresh_token(&self, old_hash: &str, new_hash: &str, now: Timestamp, new_expires_at: Timestamp) -> StoreResult<RefreshRotation> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let row = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL RETURNING grant_id, expires_at",
                )
                .bind(now.millis())
                .bind(old_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(row) = row else {
                    let spent = sqlx::query("SELECT grant_id FROM refresh_tokens WHERE token_hash = $1")
                        .bind(old_hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    let Some(spent) = spent else {
                        tx.commit().await.map_err(map_err)?;
                        return Ok(RefreshRotation::NotFound);
                    };
                    let grant: String = spent.try_get("grant_id").map_err(map_err)?;
                    Self::revoke_grant_in(&mut tx, &grant, "refreshTokenReplayed", now).await?;
                    tx.commit().await.map_err(map_err)?;
                    return Ok(RefreshRotation::Replayed { grant_id: uuid_of(&grant, "refresh grant")? });
                };
                let grant_id: String = row.try_get("grant_id").map_err(map_err)?;
                let expires_at: i64 = row.try_get("expires_at").map_err(map_err)?;
                if expires_at <= now.millis() {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(RefreshRotation::Expired);
                }
                let grant_row = sqlx::query("SELECT * FROM grants WHERE id = $1")
                    .bind(&grant_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let grant = match grant_row.as_ref().map(Self::grant_from).transpose()? {
                    Some(g) if g.revoked_at.is_none() => g,
                    _ => {
                        tx.rollback().await.map_err(map_err)?;
                        return Ok(RefreshRotation::Revoked);
                    }
                };
                sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(new_hash)
                    .bind(&grant_id)
                    .bind(now.millis())
                    .bind(new_expires_at.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(RefreshRotation::Rotated(grant))
            }

            async fn insert_sign_in(&self, r: &SignInRecord) -> StoreResult<()> {
                let record = serde_json::to_string(r).map_err(|e| StoreError::Database(e.to_string()))?;
                let id = r.id.to_string();
                let user_id = r.user_id.map(|u| u.to_string());
                // One row per policy: a policy listed twice keeps its first result.
                let mut seen = std::collections::HashSet::new();
                let results: Vec<(String, &str)> = r
                    .conditional_access
                    .iter()
                    .filter(|c| seen.insert(c.policy_id))
                    .map(|c| (c.policy_id.to_string(), c.result.as_str()))
                    .collect();
                let insert = sqlx::query(
                    "INSERT INTO sign_in_log (id, created_at, user_id, user_principal_name, client_id, result, route, record)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind(r.created_at.millis())
                .bind(&user_id)
                .bind(r.user_principal_name.as_ref().map(|u| u.to_lowercase()))
                .bind(&r.client_id)
                .bind(r.result.as_str())
                .bind(&r.route)
                .bind(record);
                if results.is_empty() {
                    // One statement: no transaction needed (the sign-in path's common case
                    // before any policy exists).
                    insert.execute(&self.pool).await.map_err(map_err)?;
                    return Ok(());
                }
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                insert.execute(&mut *tx).await.map_err(map_err)?;
                for chunk in results.chunks(CA_RESULTS_PER_STATEMENT) {
                    let rows = (0..chunk.len())
                        .map(|i| format!("($1, $2, $3, ${}, ${})", 4 + 2 * i, 5 + 2 * i))
                        .collect::<Vec<_>>()
                        .join(", ");
                    // Only numbered placeholders are spliced in; every value is bound.
                    let sql = format!(
                        "INSERT INTO sign_in_ca_results (sign_in_id, created_at, user_id, policy_id, result) VALUES {rows}"
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&id)
                        .bind(r.created_at.millis())
                        .bind(&user_id);
                    for (policy, result) in chunk {
                        q = q.bind(policy).bind(*result);
                    }
                    q.execute(&mut *tx).await.map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            }

            async fn list_sign_ins(&self, f: &SignInFilter) -> StoreResult<Vec<SignInRecord>> {
                // The policy filters are one EXISTS on the per-policy results (a sign-in has at
                // most one row per policy, and EXISTS never repeats a sign-in), so the keyset on
                // (created_at, id) pages exactly as without them.
                let rows = sqlx::query(
                    "SELECT record FROM sign_in_log
                     WHERE (CAST($1 AS TEXT) IS NULL OR user_id = CAST($1 AS TEXT))
                       AND (CAST($2 AS TEXT) IS NULL OR user_principal_name = CAST($2 AS TEXT))
                       AND (CAST($3 AS TEXT) IS NULL OR client_id = CAST($3 AS TEXT))
                       AND (CAST($4 AS TEXT) IS NULL OR result = CAST($4 AS TEXT))
                       AND (CAST($5 AS TEXT) IS NULL OR route = CAST($5 AS TEXT))
                       AND (CAST($6 AS BIGINT) IS NULL OR created_at >= CAST($6 AS BIGINT))
                       AND (CAST($7 AS BIGINT) IS NULL OR created_at < CAST($7 AS BIGINT))
                       AND (CAST($9 AS BIGINT) IS NULL OR created_at < CAST($9 AS BIGINT)
                            OR (created_at = CAST($9 AS BIGINT) AND id < CAST($10 AS TEXT)))
                       AND ((CAST($11 AS TEXT) IS NULL AND CAST($12 AS TEXT) IS NULL)
                            OR EXISTS (SELECT 1 FROM sign_in_ca_results c
                                       WHERE c.sign_in_id = sign_in_log.id
                                         AND (CAST($11 AS TEXT) IS NULL OR c.policy_id = CAST($11 AS TEXT))
                                         AND (CAST($12 AS TEXT) IS NULL OR c.result = CAST($12 AS TEXT))))
                     ORDER BY created_at DESC, id DESC LIMIT $8",
                )
                .bind(f.user_id.map(|u| u.to_string()))
                .bind(f.user_principal_name.as_ref().map(|u| u.to_lowercase()))
                .bind(&f.client_id)
                .bind(&f.result)
                .bind(&f.route)
                .bind(f.since.map(Timestamp::millis))
                .bind(f.until.map(Timestamp::millis))
                .bind(clamp_top(f.top))
                .bind(f.older_than.map(|c| c.created_at.millis()))
                .bind(f.older_than.map(|c| c.id.to_string()))
                .bind(f.ca_policy.map(|p| p.to_string()))
                .bind(&f.ca_result)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(Self::sign_in_from).collect()
            }

            async fn list_audit_events(&self, f: &AuditFilter) -> StoreResult<Vec<AuditEvent>> {
                let rows = sqlx::query(
                    "SELECT * FROM audit_log
                     WHERE (CAST($1 AS TEXT) IS NULL OR actor = CAST($1 AS TEXT))
                       AND (CAST($2 AS TEXT) IS NULL OR action = CAST($2 AS TEXT))
                       AND (CAST($3 AS TEXT) IS NULL OR target_id = CAST($3 AS TEXT))
                       AND (CAST($4 AS BIGINT) IS NULL OR created_at >= CAST($4 AS BIGINT))
                       AND (CAST($5 AS BIGINT) IS NULL OR created_at < CAST($5 AS BIGINT))
                       AND (CAST($7 AS BIGINT) IS NULL OR created_at < CAST($7 AS BIGINT)
                            OR (created_at = CAST($7 AS BIGINT) AND id < CAST($8 AS TEXT)))
                     ORDER BY created_at DESC, id DESC LIMIT $6",
                )
                .bind(&f.actor)
                .bind(&f.action)
                .bind(&f.target_id)
                .bind(f.since.map(Timestamp::millis))
                .bind(f.until.map(Timestamp::millis))
                .bind(clamp_top(f.top))
                .bind(f.older_than.map(|c| c.created_at.millis()))
                .bind(f.older_than.map(|c| c.id.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(Self::audit_from).collect()
            }

            async fn purge_expired(&self, now: Timestamp) -> StoreResult<u64> {
                let mut removed = 0;
                for stmt in [
                    "DELETE FROM sign_in_transactions WHERE expires_at <= $1",
                    "DELETE FROM sso_sessions WHERE expires_at <= $1",
                    "DELETE FROM refresh_tokens WHERE expires_at <= $1",
                ] {
                    removed += sqlx::query(stmt)
                        .bind(now.millis())
                        .execute(&self.pool)
                        .await
                        .map_err(map_err)?
                        .rows_affected();
                }
                // Grants no code or refresh token points to any more, once their access tokens
                // (which carry the grant id) have expired.
                removed += sqlx::query(
                    "DELETE FROM grants WHERE created_at <= $1
                       AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.grant_id = grants.id)
                       AND NOT EXISTS (SELECT 1 FROM auth_codes c WHERE c.grant_id = grants.id)",
                )
                .bind(now.minus_secs(cutover_core::limits::ACCESS_TOKEN_TTL_SECS).millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
                // Pass-through requests an hour after their deadline (their envelopes cascade),
                // and registration tokens a day after they were used or expired.
                removed += sqlx::query("DELETE FROM pta_requests WHERE deadline < $1")
                    .bind(now.minus_secs(PTA_REQUEST_KEEP_SECS).millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                removed += sqlx::query("DELETE FROM pta_registration_tokens WHERE expires_at < $1 OR used_at < $1")
                    .bind(now.minus_secs(AGENT_TOKEN_KEEP_SECS).millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                // Temporary Access Passes a day after they expired.
                removed += sqlx::query("DELETE FROM temporary_access_passes WHERE expires_at < $1")
                    .bind(now.minus_secs(TAP_KEEP_SECS).millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                // WebAuthn ceremonies nobody finished.
                removed += sqlx::query("DELETE FROM webauthn_challenges WHERE expires_at <= $1")
                    .bind(now.millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                // Spent codes are kept until they expire so a replay is still recognised.
                removed += sqlx::query("DELETE FROM auth_codes WHERE expires_at <= $1")
                    .bind(now.minus_secs(cutover_core::limits::AUTH_CODE_TTL_SECS).millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                Ok(removed)
            }

            async fn sync_lease(&self) -> StoreResult<Lease> {
                let row = sqlx::query("SELECT epoch, holder FROM sync_lease WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                lease_from(row.try_get("epoch").map_err(map_err)?, row.try_get("holder").map_err(map_err)?)
            }

            async fn register_sync_server(&self, reg: &SyncServerRegistration) -> StoreResult<SyncServerRecord> {
                let done = sqlx::query(
                    "INSERT INTO sync_servers (name, client_id, host, version, staging, registered_at, last_seen_at)
                     VALUES ($1, $6, $2, $3, $4, $5, $5)
                     ON CONFLICT (name) DO UPDATE SET host = excluded.host, version = excluded.version,
                        staging = excluded.staging, last_seen_at = excluded.last_seen_at
                     WHERE sync_servers.client_id = excluded.client_id",
                )
                .bind(&reg.name)
                .bind(&reg.host)
                .bind(&reg.version)
                .bind(reg.staging)
                .bind(reg.now.millis())
                .bind(&reg.client_id)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!(
                        "sync server name {} is registered by another application",
                        reg.name
                    )));
                }
                self.get_sync_server(&reg.name).await?.ok_or(StoreError::NotFound)
            }

            async fn list_sync_servers(&self) -> StoreResult<Vec<SyncServerRecord>> {
                let rows = sqlx::query("SELECT * FROM sync_servers ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::sync_server_from).collect()
            }

            async fn get_sync_server(&self, name: &str) -> StoreResult<Option<SyncServerRecord>> {
                let row = sqlx::query("SELECT * FROM sync_servers WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::sync_server_from).transpose()
            }

            async fn take_sync_lease(&self, server: &str, force: bool, audit: &AuditEvent) -> StoreResult<Result<Lease, FenceError>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let lease = Self::lock_lease(&mut tx).await?;
                if !force {
                    match &lease.holder {
                        Some(holder) if holder != server => {
                            return Ok(Err(FenceError::NotHolder { holder: holder.clone() }));
                        }
                        // Given up on purpose (`cutover sync demote`): only an explicit promote
                        // takes it again.
                        None if lease.epoch > 0 => return Ok(Err(FenceError::NoHolder)),
                        _ => {}
                    }
                }
                let next = cutover_core::sync::lease::promote(&lease, server);
                Self::write_lease(&mut tx, &next, audit.created_at).await?;
                sqlx::query("UPDATE sync_servers SET staging = (name <> $1)")
                    .bind(server)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let mut audit = audit.clone();
                audit.before = Some(serde_json::to_value(&lease).unwrap_or_default());
                audit.after = Some(serde_json::to_value(&next).unwrap_or_default());
                Self::write_audit(&mut tx, &audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(next))
            }

            async fn release_sync_lease(&self, server: &str, audit: &AuditEvent) -> StoreResult<Result<Lease, FenceError>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let lease = Self::lock_lease(&mut tx).await?;
                let next = match cutover_core::sync::lease::demote(&lease, server) {
                    Ok(n) => n,
                    Err(e) => return Ok(Err(e)),
                };
                Self::write_lease(&mut tx, &next, audit.created_at).await?;
                sqlx::query("UPDATE sync_servers SET staging = TRUE WHERE name = $1")
                    .bind(server)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let mut audit = audit.clone();
                audit.before = Some(serde_json::to_value(&lease).unwrap_or_default());
                audit.after = Some(serde_json::to_value(&next).unwrap_or_default());
                Self::write_audit(&mut tx, &audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(next))
            }

            async fn apply_sync_batch(&self, batch: &SyncBatchWrite) -> StoreResult<SyncBatchOutcome> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Lock the lease row first: a concurrent promote waits for this batch (or this
                // batch sees the new epoch and writes nothing).
                let lease = Self::lock_lease(&mut tx).await?;
                if let Err(e) = cutover_core::sync::lease::check_fence(&lease, &batch.server, batch.epoch) {
                    return Ok(SyncBatchOutcome::Fenced(e));
                }
                let seen = sqlx::query("SELECT result FROM sync_batches WHERE server = $1 AND batch_id = $2")
                    .bind(&batch.server)
                    .bind(&batch.batch_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if let Some(row) = seen {
                    let raw: String = row.try_get("result").map_err(map_err)?;
                    let result = serde_json::from_str(&raw).map_err(|e| corrupt("sync batch result", e))?;
                    return Ok(SyncBatchOutcome::Duplicate(result));
                }
                let now = batch.now.millis();
                let mut result = SyncBatchResult::default();
                let mut known_domains = std::collections::HashSet::new();
                for (i, op) in batch.ops.iter().enumerate() {
                    let sealed = batch.sealed_passwords.get(i).cloned().flatten();
                    if let Some(reason) = Self::apply_sync_op(&mut tx, op, sealed, now, &mut result, &mut known_domains).await? {
                        result.rejected.push(RejectedSyncOp {
                            anchor: op.anchor().to_owned(),
                            op: op_name(op).to_owned(),
                            reason,
                        });
                    }
                }
                if let Some(w) = &batch.watermark {
                    sqlx::query("UPDATE sync_servers SET watermark = $1 WHERE name = $2")
                        .bind(w)
                        .bind(&batch.server)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                let result_json = serde_json::to_string(&result).map_err(|e| corrupt("sync batch result", e))?;
                sqlx::query("INSERT INTO sync_batches (server, batch_id, epoch, applied_at, result) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&batch.server)
                    .bind(&batch.batch_id)
                    .bind(batch.epoch as i64)
                    .bind(now)
                    .bind(&result_json)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let mut audit = batch.audit.clone();
                audit.after = Some(serde_json::json!({
                    "epoch": batch.epoch,
                    "batchId": batch.batch_id,
                    "ops": batch.ops.len(),
                    "added": result.added,
                    "updated": result.updated,
                    "links": result.links,
                    "deleted": result.deleted,
                    "passwords": result.passwords,
                    "rejected": result.rejected.len(),
                }));
                Self::write_audit(&mut tx, &audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(SyncBatchOutcome::Applied(result))
            }

            async fn put_sync_report(&self, server: &str, report: &Value, pending: &Value, alert: Option<&str>, now: Timestamp) -> StoreResult<()> {
                let done = sqlx::query("UPDATE sync_servers SET last_report = $1, pending = $2, alert = $3, last_seen_at = $4 WHERE name = $5")
                    .bind(report.to_string())
                    .bind(pending.to_string())
                    .bind(alert)
                    .bind(now.millis())
                    .bind(server)
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn synced_users(&self, after: &str, limit: u32) -> StoreResult<Vec<SyncedUserRow>> {
                let rows = sqlx::query(
                    "SELECT u.immutable_id, u.upn, u.display_name, u.mail, u.department, u.account_enabled,
                            u.synced_password, m.immutable_id AS manager_anchor
                     FROM users u LEFT JOIN users m ON m.id = u.manager_id
                     WHERE u.source = 'synced' AND u.immutable_id > $1
                     ORDER BY u.immutable_id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|row| {
                        Ok(SyncedUserRow {
                            image: UserImage {
                                anchor: row.try_get("immutable_id").map_err(map_err)?,
                                user_principal_name: row.try_get("upn").map_err(map_err)?,
                                display_name: row.try_get("display_name").map_err(map_err)?,
                                mail: row.try_get("mail").map_err(map_err)?,
                                department: row.try_get("department").map_err(map_err)?,
                                account_enabled: row.try_get("account_enabled").map_err(map_err)?,
                            },
                            manager_anchor: row.try_get("manager_anchor").map_err(map_err)?,
                            sealed_password: row.try_get("synced_password").map_err(map_err)?,
                        })
                    })
                    .collect()
            }

            async fn synced_groups(&self, after: &str, limit: u32) -> StoreResult<Vec<SyncedGroupState>> {
                let rows = sqlx::query(
                    "SELECT immutable_id, display_name, description FROM directory_groups
                     WHERE source = 'synced' AND immutable_id > $1 ORDER BY immutable_id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                let mut groups: Vec<SyncedGroupState> = rows
                    .iter()
                    .map(|row| {
                        Ok(SyncedGroupState {
                            image: GroupImage {
                                anchor: row.try_get("immutable_id").map_err(map_err)?,
                                display_name: row.try_get("display_name").map_err(map_err)?,
                                description: row.try_get("description").map_err(map_err)?,
                            },
                            member_anchors: Default::default(),
                        })
                    })
                    .collect::<StoreResult<_>>()?;
                let Some(last) = groups.last().map(|g| g.image.anchor.clone()) else {
                    return Ok(groups);
                };
                let members = sqlx::query(
                    "SELECT g.immutable_id AS group_anchor, u.immutable_id AS user_anchor, mg.immutable_id AS group_member_anchor
                     FROM directory_groups g
                     JOIN group_members gm ON gm.group_id = g.id
                     LEFT JOIN users u ON gm.member_kind = 'user' AND u.id = gm.member_id
                     LEFT JOIN directory_groups mg ON gm.member_kind = 'group' AND mg.id = gm.member_id
                     WHERE g.source = 'synced' AND g.immutable_id > $1 AND g.immutable_id <= $2",
                )
                .bind(after)
                .bind(&last)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                let index: std::collections::HashMap<String, usize> = groups
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (g.image.anchor.clone(), i))
                    .collect();
                for row in &members {
                    let group: String = row.try_get("group_anchor").map_err(map_err)?;
                    let user: Option<String> = row.try_get("user_anchor").map_err(map_err)?;
                    let sub: Option<String> = row.try_get("group_member_anchor").map_err(map_err)?;
                    if let (Some(i), Some(m)) = (index.get(&group), user.or(sub)) {
                        groups[*i].member_anchors.insert(m);
                    }
                }
                Ok(groups)
            }

            async fn cloud_upns(&self) -> StoreResult<Vec<String>> {
                let rows = sqlx::query("SELECT upn_normalized FROM users WHERE source = 'cloud'")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(|r| r.try_get("upn_normalized").map_err(map_err)).collect()
            }

            async fn create_identity_provider(&self, idp: &IdentityProvider, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO identity_providers (id, display_name, issuer, client_id, client_secret_sealed, scopes,
                        immutable_id_claim, upn_fallback_claim, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(idp.id.to_string())
                .bind(&idp.display_name)
                .bind(&idp.issuer)
                .bind(&idp.client_id)
                .bind(&idp.client_secret_sealed)
                .bind(json_list(&idp.scopes))
                .bind(&idp.immutable_id_claim)
                .bind(&idp.upn_fallback_claim)
                .bind(idp.created_at.millis())
                .bind(idp.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_identity_provider(&self, id: Uuid) -> StoreResult<Option<IdentityProvider>> {
                let row = sqlx::query("SELECT * FROM identity_providers WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::idp_from).transpose()
            }

            async fn list_identity_providers(&self) -> StoreResult<Vec<IdentityProvider>> {
                let rows = sqlx::query("SELECT * FROM identity_providers ORDER BY display_name, id LIMIT $1")
                    .bind(i64::from(cutover_core::limits::MAX_PAGE_SIZE))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::idp_from).collect()
            }

            async fn update_identity_provider(&self, idp: &IdentityProvider, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query(
                    "UPDATE identity_providers SET display_name = $1, issuer = $2, client_id = $3, client_secret_sealed = $4,
                        scopes = $5, immutable_id_claim = $6, upn_fallback_claim = $7, updated_at = $8
                     WHERE id = $9",
                )
                .bind(&idp.display_name)
                .bind(&idp.issuer)
                .bind(&idp.client_id)
                .bind(&idp.client_secret_sealed)
                .bind(json_list(&idp.scopes))
                .bind(&idp.immutable_id_claim)
                .bind(&idp.upn_fallback_claim)
                .bind(idp.updated_at.millis())
                .bind(idp.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_identity_provider(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Delete first (the row lock): a concurrent `set_domain_authentication` that
                // federates a domain to this IdP either committed before (and the domain is
                // seen below) or waits and then finds the IdP gone.
                let done = sqlx::query("DELETE FROM identity_providers WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                let rows = sqlx::query("SELECT name, federation FROM domains WHERE authentication_type = 'federated' ORDER BY name")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let mut in_use = Vec::new();
                for row in &rows {
                    let name: String = row.try_get("name").map_err(map_err)?;
                    let fed: Option<String> = row.try_get("federation").map_err(map_err)?;
                    let cfg: FederationConfig = match fed {
                        Some(f) => serde_json::from_str(&f).map_err(|e| corrupt("domain federation", e))?,
                        None => FederationConfig::default(),
                    };
                    if cfg.identity_provider_id == Some(id) {
                        in_use.push(name);
                    }
                }
                if !in_use.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "identity provider is in use by federated domain(s): {}",
                        in_use.join(", ")
                    )));
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn set_domain_authentication(&self, name: &str, a: &DomainAuthentication, audit: &AuditEvent) -> StoreResult<()> {
                let (kind, settings) = auth_columns(a);
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("UPDATE domains SET authentication_type = $1, federation = $2 WHERE name = $3")
                    .bind(kind)
                    .bind(settings)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                if let DomainAuthentication::Federated(FederationConfig { identity_provider_id: Some(idp) }) = a {
                    // Lock the IdP row (no-op UPDATE) so that a concurrent delete cannot miss
                    // this domain; refuse a reference to an IdP that does not exist.
                    let idp_row = sqlx::query("UPDATE identity_providers SET updated_at = updated_at WHERE id = $1")
                        .bind(idp.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    if idp_row.rows_affected() == 0 {
                        return Err(StoreError::Conflict(format!("identity provider {idp} does not exist")));
                    }
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn list_rollout_policies(&self) -> StoreResult<Vec<FeatureRolloutPolicy>> {
                let mut conn = self.pool.acquire().await.map_err(map_err)?;
                Self::policies_in(&mut conn, None).await
            }

            async fn get_rollout_policy(&self, id: Uuid) -> StoreResult<Option<FeatureRolloutPolicy>> {
                let mut conn = self.pool.acquire().await.map_err(map_err)?;
                Ok(Self::policies_in(&mut conn, Some(id)).await?.pop())
            }

            async fn create_rollout_policy(&self, p: &FeatureRolloutPolicy, audit: &AuditEvent) -> StoreResult<Result<(), RuleViolation>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_rollout(&mut tx).await?;
                let others = Self::policies_in(&mut tx, None).await?;
                let mut stored = FeatureRolloutPolicy { applies_to: Vec::new(), ..p.clone() };
                if let Err(v) = cutover_core::staged::check_policy(&stored, None, &others) {
                    return Ok(Err(v));
                }
                sqlx::query(
                    "INSERT INTO feature_rollout_policies (id, display_name, description, feature, is_enabled,
                        is_applied_to_organization, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(p.id.to_string())
                .bind(&p.display_name)
                .bind(&p.description)
                .bind(p.feature.as_str())
                .bind(p.is_enabled)
                .bind(p.is_applied_to_organization)
                .bind(p.created_at.millis())
                .bind(p.updated_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                // Groups given at creation go through the same rules as groups added later.
                for group_id in &p.applies_to {
                    if let Err(v) = Self::add_group_in(&mut tx, &stored, *group_id, p.created_at).await? {
                        return Ok(Err(v));
                    }
                    stored.applies_to.push(*group_id);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(()))
            }

            async fn update_rollout_policy(&self, p: &FeatureRolloutPolicy, audit: &AuditEvent) -> StoreResult<Result<FeatureRolloutPolicy, RuleViolation>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_rollout(&mut tx).await?;
                let all = Self::policies_in(&mut tx, None).await?;
                let Some(stored) = all.iter().find(|s| s.id == p.id) else {
                    return Err(StoreError::NotFound);
                };
                let after = FeatureRolloutPolicy {
                    applies_to: stored.applies_to.clone(),
                    created_at: stored.created_at,
                    ..p.clone()
                };
                if let Err(v) = cutover_core::staged::check_policy(&after, Some(stored), &all) {
                    return Ok(Err(v));
                }
                sqlx::query(
                    "UPDATE feature_rollout_policies SET display_name = $1, description = $2, is_enabled = $3,
                        is_applied_to_organization = $4, updated_at = $5
                     WHERE id = $6",
                )
                .bind(&p.display_name)
                .bind(&p.description)
                .bind(p.is_enabled)
                .bind(p.is_applied_to_organization)
                .bind(p.updated_at.millis())
                .bind(p.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                let updated = Self::policies_in(&mut tx, Some(p.id)).await?.pop().ok_or(StoreError::NotFound)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(updated))
            }

            async fn delete_rollout_policy(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let id_s = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_rollout(&mut tx).await?;
                sqlx::query("DELETE FROM feature_rollout_groups WHERE policy_id = $1")
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let done = sqlx::query("DELETE FROM feature_rollout_policies WHERE id = $1")
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn add_rollout_group(&self, policy_id: Uuid, group_id: Uuid, now: Timestamp, audit: &AuditEvent) -> StoreResult<Result<FeatureRolloutPolicy, RuleViolation>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_rollout(&mut tx).await?;
                let policy = Self::policies_in(&mut tx, Some(policy_id)).await?.pop().ok_or(StoreError::NotFound)?;
                if let Err(v) = Self::add_group_in(&mut tx, &policy, group_id, now).await? {
                    return Ok(Err(v));
                }
                let updated = Self::policies_in(&mut tx, Some(policy_id)).await?.pop().ok_or(StoreError::NotFound)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(updated))
            }

            async fn remove_rollout_group(&self, policy_id: Uuid, group_id: Uuid, _now: Timestamp, audit: &AuditEvent) -> StoreResult<Result<FeatureRolloutPolicy, RuleViolation>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_rollout(&mut tx).await?;
                let policy = Self::policies_in(&mut tx, Some(policy_id)).await?.pop().ok_or(StoreError::NotFound)?;
                if let Err(v) = cutover_core::staged::check_remove_group(&policy, group_id) {
                    return Ok(Err(v));
                }
                sqlx::query("DELETE FROM feature_rollout_groups WHERE policy_id = $1 AND group_id = $2")
                    .bind(policy_id.to_string())
                    .bind(group_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let updated = Self::policies_in(&mut tx, Some(policy_id)).await?.pop().ok_or(StoreError::NotFound)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(updated))
            }

            async fn get_staged_state(&self, user_id: Uuid) -> StoreResult<StagedState> {
                let row = sqlx::query("SELECT effective, changed_at FROM user_staged_state WHERE user_id = $1")
                    .bind(user_id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                match row {
                    Some(r) => staged_from(r.try_get("effective").map_err(map_err)?, r.try_get("changed_at").map_err(map_err)?),
                    None => Ok(StagedState::default()),
                }
            }

            async fn finish_staged_sign_in(&self, user: &User, desired: FeatureSet, end: SignInEnd, now: Timestamp, correlation_id: Uuid) -> StoreResult<(StagedState, StagedState)> {
                // The common case (nothing to switch: not interactive, or already as desired)
                // is answered from one read and writes nothing; a switch is decided again
                // below on the locked row.
                let seen = self.get_staged_state(user.id).await?;
                if cutover_core::staged::transition(seen, desired, end, now).1.is_none() {
                    return Ok((seen, seen));
                }
                let id_s = user.id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO user_staged_state (user_id, effective, changed_at) VALUES ($1, '[]', NULL)
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(&id_s)
                .execute(&mut *tx)
                .await
                .map_err(|e| match map_err(e) {
                    // The user is gone (the state row references it).
                    StoreError::Conflict(_) => StoreError::NotFound,
                    other => other,
                })?;
                let row = sqlx::query(
                    "UPDATE user_staged_state SET effective = effective WHERE user_id = $1 RETURNING effective, changed_at",
                )
                .bind(&id_s)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
                let before = staged_from(row.try_get("effective").map_err(map_err)?, row.try_get("changed_at").map_err(map_err)?)?;
                let (after, t) = cutover_core::staged::transition(before, desired, end, now);
                let Some(t) = t else {
                    // Another sign-in of this user switched it meanwhile.
                    tx.commit().await.map_err(map_err)?;
                    return Ok((before, after));
                };
                let effective = serde_json::to_string(&after.effective).map_err(|e| corrupt("staged state", e))?;
                sqlx::query("UPDATE user_staged_state SET effective = $1, changed_at = $2 WHERE user_id = $3")
                    .bind(effective)
                    .bind(after.changed_at.map(Timestamp::millis))
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let changes = t
                    .enabled
                    .iter()
                    .map(|f| ("userEnabledForFeature", f))
                    .chain(t.removed.iter().map(|f| ("userRemovedFromFeature", f)));
                for (action, feature) in changes {
                    let event = AuditEvent {
                        id: Uuid::now_v7(),
                        created_at: now,
                        correlation_id,
                        actor: "system".into(),
                        action: action.into(),
                        target_type: "user".into(),
                        target_id: id_s.clone(),
                        target_name: Some(user.upn.as_str().to_owned()),
                        before: Some(serde_json::json!({"effective": t.before.names(), "feature": feature.as_str()})),
                        after: Some(serde_json::json!({"effective": t.after.names(), "feature": feature.as_str()})),
                    };
                    Self::write_audit(&mut tx, &event).await?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok((before, after))
            }

            async fn rollout_group_members(&self, group_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<StagedMemberRow>> {
                let group_s = group_id.to_string();
                let rows = sqlx::query(
                    "SELECT u.*, s.effective AS staged_effective, s.changed_at AS staged_changed_at
                     FROM group_members gm
                     JOIN users u ON u.id = gm.member_id
                     LEFT JOIN user_staged_state s ON s.user_id = u.id
                     WHERE gm.group_id = $1 AND gm.member_kind = 'user'
                       AND (CAST($2 AS TEXT) IS NULL OR gm.member_id > CAST($2 AS TEXT))
                     ORDER BY gm.member_id LIMIT $3",
                )
                .bind(&group_s)
                .bind(after.map(|a| a.to_string()))
                .bind(clamp_top(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                let mut members = Vec::with_capacity(rows.len());
                for r in &rows {
                    let record = Self::user_from(r)?;
                    let effective: Option<String> = r.try_get("staged_effective").map_err(map_err)?;
                    let staged = match effective {
                        Some(e) => staged_from(e, r.try_get("staged_changed_at").map_err(map_err)?)?,
                        None => StagedState::default(),
                    };
                    members.push(StagedMemberRow {
                        has_password: record.synced_password.is_some() || record.password_hash.is_some(),
                        user: record.user,
                        staged,
                        rollout_groups: vec![],
                    });
                }
                let (Some(first), Some(last)) = (members.first(), members.last()) else {
                    return Ok(members);
                };
                // The page's members' groups that a policy applies to: one query over the
                // page's id range, restricted to this group's members.
                let (first_s, last_s) = (first.user.id.to_string(), last.user.id.to_string());
                let rows = sqlx::query(
                    "SELECT gm.member_id, gm.group_id FROM group_members gm
                     WHERE gm.member_kind = 'user' AND gm.member_id >= $1 AND gm.member_id <= $2
                       AND gm.group_id IN (SELECT fg.group_id FROM feature_rollout_groups fg)
                       AND gm.member_id IN (
                           SELECT m.member_id FROM group_members m
                           WHERE m.group_id = $3 AND m.member_kind = 'user'
                             AND m.member_id >= $1 AND m.member_id <= $2)
                     ORDER BY gm.member_id, gm.group_id",
                )
                .bind(&first_s)
                .bind(&last_s)
                .bind(&group_s)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                let mut groups: std::collections::HashMap<Uuid, Vec<Uuid>> = std::collections::HashMap::new();
                for r in &rows {
                    let member: String = r.try_get("member_id").map_err(map_err)?;
                    let group: String = r.try_get("group_id").map_err(map_err)?;
                    groups
                        .entry(uuid_of(&member, "member id")?)
                        .or_default()
                        .push(uuid_of(&group, "group id")?);
                }
                for m in &mut members {
                    m.rollout_groups = groups.remove(&m.user.id).unwrap_or_default();
                }
                Ok(members)
            }

            async fn domain_password_coverage(&self, domain: &str, sample: u32) -> StoreResult<PasswordCoverage> {
                let domain = domain.to_ascii_lowercase();
                let counts = sqlx::query(
                    "SELECT COUNT(*) AS synced_users, COUNT(CASE WHEN synced_password IS NULL THEN 1 END) AS without_hash
                     FROM users WHERE domain = $1 AND source = 'synced'",
                )
                .bind(&domain)
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
                let count = |col: &str| -> StoreResult<u64> {
                    let n: i64 = counts.try_get(col).map_err(map_err)?;
                    u64::try_from(n).map_err(|_| corrupt(col, n))
                };
                let rows = sqlx::query(
                    "SELECT upn FROM users WHERE domain = $1 AND source = 'synced' AND synced_password IS NULL
                     ORDER BY upn_normalized LIMIT $2",
                )
                .bind(&domain)
                .bind(i64::from(sample))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(PasswordCoverage {
                    synced_users: count("synced_users")?,
                    without_hash_total: count("without_hash")?,
                    without_hash_sample: rows.iter().map(|r| r.try_get("upn").map_err(map_err)).collect::<StoreResult<_>>()?,
                })
            }

            async fn break_glass_accounts(&self) -> StoreResult<Vec<BreakGlassFacts>> {
                let rows = sqlx::query(
                    "SELECT u.upn, u.account_enabled,
                        (SELECT MAX(l.created_at) FROM sign_in_log l WHERE l.user_id = u.id AND l.result = 'success') AS last_success
                     FROM users u WHERE u.break_glass ORDER BY u.upn_normalized",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(BreakGlassFacts {
                            user_principal_name: r.try_get("upn").map_err(map_err)?,
                            account_enabled: r.try_get("account_enabled").map_err(map_err)?,
                            last_successful_sign_in: r.try_get::<Option<i64>, _>("last_success").map_err(map_err)?.map(Timestamp),
                        })
                    })
                    .collect()
            }

            async fn federated_sign_ins(&self, domain: &str, since: Timestamp, limit: u32) -> StoreResult<Vec<FederatedSignIns>> {
                // UPNs are stored lower-case; a suffix comparison needs no pattern escaping.
                let suffix = format!("@{}", domain.to_lowercase());
                let rows = sqlx::query(
                    "SELECT user_principal_name, COUNT(*) AS sign_ins, MAX(created_at) AS last_at FROM sign_in_log
                     WHERE route = 'federated' AND result = 'success' AND created_at >= $2
                       AND user_principal_name IS NOT NULL
                       AND length(user_principal_name) > length(CAST($1 AS TEXT))
                       AND substr(user_principal_name, length(user_principal_name) - length(CAST($1 AS TEXT)) + 1) = CAST($1 AS TEXT)
                     GROUP BY user_principal_name
                     ORDER BY last_at DESC, user_principal_name
                     LIMIT $3",
                )
                .bind(&suffix)
                .bind(since.millis())
                .bind(clamp_top(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        let n: i64 = r.try_get("sign_ins").map_err(map_err)?;
                        Ok(FederatedSignIns {
                            user_principal_name: r.try_get("user_principal_name").map_err(map_err)?,
                            count: u64::try_from(n).map_err(|_| corrupt("federated sign-in count", n))?,
                            last: Timestamp(r.try_get("last_at").map_err(map_err)?),
                        })
                    })
                    .collect()
            }

            async fn put_setting(&self, key: &str, value: &str, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO settings (key, value) VALUES ($1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_agent_token(&self, token_hash: &str, expires_at: Timestamp, now: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO pta_registration_tokens (token_hash, created_at, expires_at, used_at, agent_id)
                     VALUES ($1, $2, $3, NULL, NULL)",
                )
                .bind(token_hash)
                .bind(now.millis())
                .bind(expires_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn register_agent(&self, token_hash: &str, a: &AgentRecord, now: Timestamp, audit: &AuditEvent) -> StoreResult<Result<(), RegistrationRefusal>> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // The registration lock first (PostgreSQL locks the row, SQLite takes the write
                // lock): the token and the count below are read with no registration between.
                sqlx::query("UPDATE pta_registration_lock SET changed_at = changed_at WHERE id = 1 RETURNING changed_at")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let token = sqlx::query("SELECT expires_at, used_at FROM pta_registration_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let token = match token {
                    Some(r) => Some((
                        Timestamp(r.try_get("expires_at").map_err(map_err)?),
                        r.try_get::<Option<i64>, _>("used_at").map_err(map_err)?.map(Timestamp),
                    )),
                    None => None,
                };
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM pta_agents")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .try_get("n")
                    .map_err(map_err)?;
                let registered = usize::try_from(n).map_err(|_| corrupt("agent count", n))?;
                if let Err(refusal) = cutover_core::pta::check_registration(token, registered, now) {
                    // Dropping the transaction rolls it back: nothing is written.
                    return Ok(Err(refusal));
                }
                sqlx::query("UPDATE pta_registration_tokens SET used_at = $1, agent_id = $2 WHERE token_hash = $3")
                    .bind(now.millis())
                    .bind(a.id.to_string())
                    .bind(token_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query("UPDATE pta_registration_lock SET changed_at = $1 WHERE id = 1")
                    .bind(now.millis())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO pta_agents (id, host, version, signing_key, encryption_key, key_generation, enabled,
                        created_at, keys_rotated_at, last_heartbeat, heartbeat)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(a.id.to_string())
                .bind(&a.host)
                .bind(&a.version)
                .bind(&a.signing_key)
                .bind(&a.encryption_key)
                .bind(i64::from(a.key_generation))
                .bind(a.enabled)
                .bind(a.created_at.millis())
                .bind(a.keys_rotated_at.map(Timestamp::millis))
                .bind(a.last_heartbeat.map(Timestamp::millis))
                .bind(a.heartbeat.as_ref().map(Value::to_string))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(Ok(()))
            }

            async fn get_agent(&self, id: Uuid) -> StoreResult<Option<AgentRecord>> {
                let row = sqlx::query("SELECT * FROM pta_agents WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::agent_from).transpose()
            }

            async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>> {
                let rows = sqlx::query("SELECT * FROM pta_agents ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::agent_from).collect()
            }

            async fn set_agent_enabled(&self, id: Uuid, enabled: bool, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("UPDATE pta_agents SET enabled = $1 WHERE id = $2")
                    .bind(enabled)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_agent(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Its envelopes go with it (ON DELETE CASCADE).
                let done = sqlx::query("DELETE FROM pta_agents WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn rotate_agent_keys(
                &self,
                id: Uuid,
                signing_key: &str,
                encryption_key: &str,
                expected_generation: u32,
                now: Timestamp,
                audit: &AuditEvent,
            ) -> StoreResult<u32> {
                let id_s = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Compare-and-set in one statement: PostgreSQL re-checks the generation on the
                // latest row version after waiting for a concurrent rotation.
                let row = sqlx::query(
                    "UPDATE pta_agents SET signing_key = $1, encryption_key = $2, key_generation = key_generation + 1,
                        keys_rotated_at = $3
                     WHERE id = $4 AND key_generation = $5
                     RETURNING key_generation",
                )
                .bind(signing_key)
                .bind(encryption_key)
                .bind(now.millis())
                .bind(&id_s)
                .bind(i64::from(expected_generation))
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
                let Some(row) = row else {
                    let current = sqlx::query("SELECT key_generation FROM pta_agents WHERE id = $1")
                        .bind(&id_s)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    return Err(match current {
                        None => StoreError::NotFound,
                        Some(r) => {
                            let g: i64 = r.try_get("key_generation").map_err(map_err)?;
                            StoreError::Conflict(format!(
                                "the agent's key generation is {g}, not {expected_generation} (rotated meanwhile)"
                            ))
                        }
                    });
                };
                let g: i64 = row.try_get("key_generation").map_err(map_err)?;
                let g = u32::try_from(g).map_err(|_| corrupt("agent key generation", g))?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(g)
            }

            async fn record_agent_heartbeat(&self, id: Uuid, now: Timestamp, heartbeat: &Value) -> StoreResult<()> {
                let done = sqlx::query("UPDATE pta_agents SET last_heartbeat = $1, heartbeat = $2 WHERE id = $3")
                    .bind(now.millis())
                    .bind(heartbeat.to_string())
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            async fn enqueue_pta_request(&self, r: &PtaRequestRow) -> StoreResult<()> {
                let id_s = r.id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO pta_requests (id, correlation_id, user_principal_name, immutable_id, created_at, deadline,
                        attempt, state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending')",
                )
                .bind(&id_s)
                .bind(r.correlation_id.to_string())
                .bind(&r.user_principal_name)
                .bind(&r.immutable_id)
                .bind(r.created_at.millis())
                .bind(r.deadline.millis())
                .bind(i64::from(r.attempt))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                for (agent, envelope) in &r.envelopes {
                    sqlx::query("INSERT INTO pta_envelopes (request_id, agent_id, envelope) VALUES ($1, $2, $3)")
                        .bind(&id_s)
                        .bind(agent.to_string())
                        .bind(envelope)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| match map_err(e) {
                            StoreError::Conflict(msg) if !msg.starts_with("already") => {
                                StoreError::Conflict(format!("agent {agent} does not exist"))
                            }
                            other => other,
                        })?;
                }
                tx.commit().await.map_err(map_err)
            }

            async fn claim_pta_requests(&self, agent_id: Uuid, now: Timestamp, limit: u32) -> StoreResult<Vec<ClaimedPtaRequest>> {
                let limit = limit.min(cutover_core::pta::MAX_POLL_BATCH);
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let agent_s = agent_id.to_string();
                // Agents poll this constantly: the usual "nothing for me" is one indexed read
                // (an agent's envelopes are those of pending requests), no write transaction.
                let any = sqlx::query(
                    "SELECT 1 AS x FROM pta_envelopes e
                     JOIN pta_requests r ON r.id = e.request_id
                     WHERE e.agent_id = $1 AND r.state = 'pending' AND r.deadline > $2
                       AND EXISTS (SELECT 1 FROM pta_agents a WHERE a.id = $1 AND a.enabled)
                     LIMIT 1",
                )
                .bind(&agent_s)
                .bind(now.millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                if any.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // One statement picks and marks them (SQLite: under the write lock; PostgreSQL:
                // rows another claimer holds are skipped, not waited for). The pick is a
                // materialised CTE so that it runs once: as a plain `IN (subquery)` PostgreSQL
                // may rescan it, and a rescan's FOR UPDATE skips the rows this statement just
                // updated and takes the next ones, claiming more than `limit`.
                let claimed = sqlx::query(concat!(
                    "WITH picked AS MATERIALIZED (
                        SELECT r.id FROM pta_requests r
                        JOIN pta_envelopes e ON e.request_id = r.id AND e.agent_id = $1
                        WHERE r.state = 'pending' AND r.deadline > $2
                          AND EXISTS (SELECT 1 FROM pta_agents a WHERE a.id = $1 AND a.enabled)
                        ORDER BY r.created_at, r.id
                        LIMIT $3 ",
                    $skip_locked,
                    "
                     )
                     UPDATE pta_requests SET state = 'claimed', claimed_by = $1, claimed_at = $2
                     WHERE state = 'pending' AND id IN (SELECT id FROM picked)"
                ))
                .bind(&agent_s)
                .bind(now.millis())
                .bind(i64::from(limit))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if claimed.rows_affected() == 0 {
                    // Another agent took them between the read and the claim.
                    return Ok(Vec::new());
                }
                // This agent's claimed requests that still have envelopes are exactly those
                // claimed just now: a claim deletes the envelopes in the same transaction.
                let rows = sqlx::query(
                    "SELECT r.id, r.correlation_id, r.user_principal_name, r.immutable_id, r.deadline, e.envelope
                     FROM pta_requests r
                     JOIN pta_envelopes e ON e.request_id = r.id AND e.agent_id = $1
                     WHERE r.state = 'claimed' AND r.claimed_by = $1
                     ORDER BY r.created_at, r.id",
                )
                .bind(&agent_s)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                sqlx::query(
                    "DELETE FROM pta_envelopes
                     WHERE request_id IN (SELECT id FROM pta_requests WHERE state = 'claimed' AND claimed_by = $1)",
                )
                .bind(&agent_s)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                let out = rows
                    .iter()
                    .map(|row| {
                        let id: String = row.try_get("id").map_err(map_err)?;
                        let corr: String = row.try_get("correlation_id").map_err(map_err)?;
                        Ok(ClaimedPtaRequest {
                            id: uuid_of(&id, "pta request id")?,
                            correlation_id: uuid_of(&corr, "pta request correlation id")?,
                            user_principal_name: row.try_get("user_principal_name").map_err(map_err)?,
                            immutable_id: row.try_get("immutable_id").map_err(map_err)?,
                            deadline: Timestamp(row.try_get("deadline").map_err(map_err)?),
                            envelope: row.try_get("envelope").map_err(map_err)?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                tx.commit().await.map_err(map_err)?;
                Ok(out)
            }

            async fn complete_pta_request(
                &self,
                id: Uuid,
                agent_id: Uuid,
                result: PtaResult,
                detail: Option<&str>,
                now: Timestamp,
            ) -> StoreResult<CompleteOutcome> {
                let id_s = id.to_string();
                let agent_s = agent_id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let Some(row) = Self::lock_pta_request(&mut tx, &id_s).await? else {
                    return Ok(CompleteOutcome::Unknown);
                };
                let state: String = row.try_get("state").map_err(map_err)?;
                let claimed_by: Option<String> = row.try_get("claimed_by").map_err(map_err)?;
                if claimed_by.as_deref() != Some(agent_s.as_str()) {
                    return Ok(CompleteOutcome::NotYours);
                }
                match state.as_str() {
                    "claimed" => {}
                    "abandoned" | "done" => return Ok(CompleteOutcome::Late),
                    other => return Err(corrupt("pta request state", format!("{other} with claimed_by set"))),
                }
                sqlx::query("UPDATE pta_requests SET state = 'done', result = $1, detail = $2, completed_at = $3 WHERE id = $4")
                    .bind(result.as_str())
                    .bind(detail.map(cutover_core::pta::clean_detail))
                    .bind(now.millis())
                    .bind(&id_s)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(CompleteOutcome::Accepted)
            }

            async fn pta_request_states(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, PtaRequestState)>> {
                let mut found = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(PTA_STATES_PER_STATEMENT) {
                    let placeholders = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                    // Only numbered placeholders are spliced in; every value is bound.
                    let sql = format!(
                        "SELECT id, state, claimed_by, claimed_at, result, detail, completed_at
                         FROM pta_requests WHERE id IN ({placeholders})"
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(id.to_string());
                    }
                    for row in q.fetch_all(&self.pool).await.map_err(map_err)? {
                        let id: String = row.try_get("id").map_err(map_err)?;
                        found.insert(uuid_of(&id, "pta request id")?, Self::pta_state_from(&row)?);
                    }
                }
                Ok(ids.iter().filter_map(|id| found.remove(id).map(|s| (*id, s))).collect())
            }

            async fn abandon_pta_request(&self, id: Uuid) -> StoreResult<Option<PtaRequestState>> {
                let id_s = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let Some(row) = Self::lock_pta_request(&mut tx, &id_s).await? else {
                    return Ok(None);
                };
                let was = Self::pta_state_from(&row)?;
                if matches!(was, PtaRequestState::Pending | PtaRequestState::Claimed { .. }) {
                    sqlx::query("UPDATE pta_requests SET state = 'abandoned' WHERE id = $1")
                        .bind(&id_s)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    sqlx::query("DELETE FROM pta_envelopes WHERE request_id = $1")
                        .bind(&id_s)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    tx.commit().await.map_err(map_err)?;
                }
                Ok(Some(was))
            }

            async fn delete_pta_request(&self, id: Uuid) -> StoreResult<()> {
                // Its envelopes go with it (ON DELETE CASCADE).
                sqlx::query("DELETE FROM pta_requests WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn pta_queue_depth(&self, now: Timestamp) -> StoreResult<PtaQueueDepth> {
                let rows = sqlx::query(
                    "SELECT state, COUNT(*) AS n FROM pta_requests
                     WHERE state IN ('pending', 'claimed') AND deadline > $1
                     GROUP BY state",
                )
                .bind(now.millis())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                let mut depth = PtaQueueDepth::default();
                for row in &rows {
                    let state: String = row.try_get("state").map_err(map_err)?;
                    let n: i64 = row.try_get("n").map_err(map_err)?;
                    let n = u64::try_from(n).map_err(|_| corrupt("pta request count", n))?;
                    match state.as_str() {
                        "pending" => depth.pending = n,
                        "claimed" => depth.claimed = n,
                        other => return Err(corrupt("pta request state", other)),
                    }
                }
                Ok(depth)
            }

            async fn sync_run_reports(&self) -> StoreResult<Vec<SyncRunReportRow>> {
                let rows = sqlx::query("SELECT name, last_seen_at, last_report, alert FROM sync_servers ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter()
                    .map(|row| {
                        let report: Option<String> = row.try_get("last_report").map_err(map_err)?;
                        Ok(SyncRunReportRow {
                            name: row.try_get("name").map_err(map_err)?,
                            last_seen_at: Timestamp(row.try_get("last_seen_at").map_err(map_err)?),
                            last_report: report
                                .map(|r| serde_json::from_str(&r).map_err(|e| corrupt("last_report", e)))
                                .transpose()?,
                            alert: row.try_get("alert").map_err(map_err)?,
                        })
                    })
                    .collect()
            }

            async fn get_lockout_state(&self, user_id: Uuid) -> StoreResult<LockoutState> {
                let row = sqlx::query("SELECT state FROM user_lockout_state WHERE user_id = $1")
                    .bind(user_id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                match row {
                    Some(r) => lockout_from(&r.try_get::<String, _>("state").map_err(map_err)?),
                    None => Ok(LockoutState::default()),
                }
            }

            async fn update_lockout_state(
                &self,
                user_id: Uuid,
                step: &(dyn Fn(LockoutState) -> LockoutState + Send + Sync),
            ) -> StoreResult<(LockoutState, LockoutState)> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let out = Self::lockout_in(&mut tx, &user_id.to_string(), step).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(out)
            }

            async fn unlock_user(&self, user_id: Uuid, audit: &AuditEvent) -> StoreResult<(LockoutState, LockoutState)> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let out = Self::lockout_in(&mut tx, &user_id.to_string(), &cutover_core::lockout::unlock).await?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(out)
            }

            async fn put_tap(&self, t: &StoredTap, audit: &AuditEvent) -> StoreResult<Option<Tap>> {
                let user_id = t.user_id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Lock and read the user's pass (a no-op UPDATE), then overwrite it; with no
                // pass, insert. A racing put waits for the lock and then replaces ours, so each
                // returns the pass it replaced. Another node inserting (or deleting) the pass
                // between our two statements sends us round again.
                let mut replaced = None;
                let mut stored = false;
                for _ in 0..PUT_TAP_ATTEMPTS {
                    let old = sqlx::query(
                        "UPDATE temporary_access_passes SET created_by = created_by WHERE user_id = $1 RETURNING *",
                    )
                    .bind(&user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    replaced = old.as_ref().map(Self::tap_from).transpose()?.map(|o| o.tap);
                    let sql = if replaced.is_some() {
                        "INSERT INTO temporary_access_passes
                            (user_id, id, secret_hash, created_at, starts_at, expires_at, one_time, used_at, created_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, secret_hash = excluded.secret_hash,
                            created_at = excluded.created_at, starts_at = excluded.starts_at,
                            expires_at = excluded.expires_at, one_time = excluded.one_time,
                            used_at = excluded.used_at, created_by = excluded.created_by
                         RETURNING user_id"
                    } else {
                        "INSERT INTO temporary_access_passes
                            (user_id, id, secret_hash, created_at, starts_at, expires_at, one_time, used_at, created_by)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                         ON CONFLICT (user_id) DO NOTHING RETURNING user_id"
                    };
                    let written = sqlx::query(sql)
                        .bind(&user_id)
                        .bind(t.tap.id.to_string())
                        .bind(&t.secret_hash)
                        .bind(t.tap.created_at.millis())
                        .bind(t.tap.starts_at.millis())
                        .bind(t.tap.expires_at.millis())
                        .bind(t.tap.one_time)
                        .bind(t.tap.used_at.map(Timestamp::millis))
                        .bind(&t.created_by)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| match e {
                            // The user does not exist (the pass references it).
                            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
                            other => map_err(other),
                        })?;
                    if written.is_some() {
                        stored = true;
                        break;
                    }
                }
                if !stored {
                    return Err(StoreError::Conflict(
                        "the user's Temporary Access Pass kept changing while it was replaced; try again".into(),
                    ));
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(replaced)
            }

            async fn get_tap(&self, user_id: Uuid) -> StoreResult<Option<StoredTap>> {
                let row = sqlx::query("SELECT * FROM temporary_access_passes WHERE user_id = $1")
                    .bind(user_id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::tap_from).transpose()
            }

            async fn delete_tap(&self, user_id: Uuid, tap_id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM temporary_access_passes WHERE user_id = $1 AND id = $2")
                    .bind(user_id.to_string())
                    .bind(tap_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn consume_tap(&self, user_id: Uuid, tap_id: Uuid, now: Timestamp) -> StoreResult<bool> {
                let user_id = user_id.to_string();
                let tap_id = tap_id.to_string();
                let row = sqlx::query("SELECT * FROM temporary_access_passes WHERE user_id = $1 AND id = $2")
                    .bind(&user_id)
                    .bind(&tap_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                let Some(row) = row else {
                    return Ok(false);
                };
                let stored = Self::tap_from(&row)?;
                // The read answers for a multi-use pass and turns away a pass that cannot be
                // used now; only a one-time pass that looked usable is written, by the update
                // that checks everything again: of racing callers, the one it changes the row
                // for wins.
                if cutover_core::tap::consume(&stored.tap, now).is_err() {
                    return Ok(false);
                }
                if !stored.tap.one_time {
                    return Ok(true);
                }
                let done = sqlx::query(
                    "UPDATE temporary_access_passes SET used_at = $3
                     WHERE user_id = $1 AND id = $2 AND one_time AND used_at IS NULL
                       AND starts_at <= $3 AND expires_at > $3",
                )
                .bind(&user_id)
                .bind(&tap_id)
                .bind(now.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_passkey(&self, p: &PasskeyRecord, max_per_user: u32, audit: &AuditEvent) -> StoreResult<()> {
                let user_id = p.user_id.to_string();
                let id = p.id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Lock the user's row first (a no-op UPDATE: PostgreSQL locks the row, SQLite
                // takes the write lock), so no other add for this user counts or inserts until
                // we commit: two adds at the limit cannot both see room.
                let user = sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1 RETURNING id")
                    .bind(&user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if user.is_none() {
                    return Err(StoreError::NotFound);
                }
                let taken = sqlx::query("SELECT id FROM passkeys WHERE credential_id = $1 OR id = $2")
                    .bind(&p.credential_id)
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(PASSKEY_CREDENTIAL_REGISTERED.into()));
                }
                let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = $1")
                    .bind(&user_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .try_get("n")
                    .map_err(map_err)?;
                if n >= i64::from(max_per_user) {
                    return Err(StoreError::Conflict(PASSKEY_LIMIT_REACHED.into()));
                }
                sqlx::query(
                    "INSERT INTO passkeys (id, user_id, credential_id, name, aaguid, credential, backup_eligible, backed_up,
                        sign_count, device_family, attestation_format, attested, transports, created_at, last_used_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(&id)
                .bind(&user_id)
                .bind(&p.credential_id)
                .bind(&p.name)
                .bind(p.aaguid.to_string())
                .bind(&p.credential)
                .bind(p.backup_eligible)
                .bind(p.backed_up)
                .bind(i64::from(p.sign_count))
                .bind(&p.device_family)
                .bind(&p.attestation_format)
                .bind(p.attested)
                .bind(json_list(&p.transports))
                .bind(p.created_at.millis())
                .bind(p.last_used_at.map(Timestamp::millis))
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    // Another user's add with the same credential id committed after our check
                    // (PostgreSQL: adds for different users do not wait for each other).
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StoreError::Conflict(PASSKEY_CREDENTIAL_REGISTERED.into())
                    }
                    other => map_err(other),
                })?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn list_passkeys(&self, user_id: Uuid) -> StoreResult<Vec<PasskeyRecord>> {
                let rows = sqlx::query("SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id")
                    .bind(user_id.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(Self::passkey_from).collect()
            }

            async fn get_passkey_by_credential_id(&self, credential_id: &str) -> StoreResult<Option<PasskeyRecord>> {
                let row = sqlx::query("SELECT * FROM passkeys WHERE credential_id = $1")
                    .bind(credential_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::passkey_from).transpose()
            }

            async fn list_all_passkeys(&self, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<PasskeyRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM passkeys
                     WHERE CAST($1 AS TEXT) IS NULL OR id > CAST($1 AS TEXT)
                     ORDER BY id LIMIT $2",
                )
                .bind(after.map(|a| a.to_string()))
                .bind(clamp_top(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(Self::passkey_from).collect()
            }

            async fn rename_passkey(&self, user_id: Uuid, id: Uuid, name: &str, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("UPDATE passkeys SET name = $3 WHERE user_id = $1 AND id = $2")
                    .bind(user_id.to_string())
                    .bind(id.to_string())
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_passkey(&self, user_id: Uuid, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND id = $2")
                    .bind(user_id.to_string())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn record_passkey_use(&self, id: Uuid, presented_sign_count: u32, backed_up: bool, now: Timestamp) -> StoreResult<bool> {
                // One conditional UPDATE: the condition is checked again on the row it writes
                // (PostgreSQL re-reads a row another transaction changed meanwhile; SQLite has
                // one writer), so of racing uses with the same count only the first moves it.
                let done = sqlx::query(
                    "UPDATE passkeys SET sign_count = $2, backed_up = $3, last_used_at = $4
                     WHERE id = $1 AND (sign_count < $2 OR (sign_count = 0 AND $2 = 0))",
                )
                .bind(id.to_string())
                .bind(i64::from(presented_sign_count))
                .bind(backed_up)
                .bind(now.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_webauthn_challenge(&self, c: &WebauthnChallenge) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO webauthn_challenges (id, kind, user_id, state, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&c.id)
                .bind(&c.kind)
                .bind(c.user_id.map(|u| u.to_string()))
                .bind(&c.state)
                .bind(c.created_at.millis())
                .bind(c.expires_at.millis())
                .execute(&self.pool)
                .await
                .map_err(|e| match e {
                    // The user does not exist (the challenge references it).
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
                    other => map_err(other),
                })?;
                Ok(())
            }

            async fn take_webauthn_challenge(&self, id: &str, now: Timestamp) -> StoreResult<Option<WebauthnChallenge>> {
                // Delete first, then look: of racing takes only the one whose DELETE removed the
                // row gets it, and an expired challenge goes too.
                let row = sqlx::query("DELETE FROM webauthn_challenges WHERE id = $1 RETURNING *")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let challenge = Self::challenge_from(&row)?;
                Ok((challenge.expires_at > now).then_some(challenge))
            }

            async fn put_totp(&self, t: &TotpRecord, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO totp_enrolments (user_id, id, secret_sealed, params, state, version, created_at, confirmed_at, name)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, secret_sealed = excluded.secret_sealed,
                        params = excluded.params, state = excluded.state, version = excluded.version,
                        created_at = excluded.created_at, confirmed_at = excluded.confirmed_at, name = excluded.name",
                )
                .bind(t.user_id.to_string())
                .bind(t.id.to_string())
                .bind(&t.secret_sealed)
                .bind(&t.params)
                .bind(&t.state)
                .bind(t.version)
                .bind(t.created_at.millis())
                .bind(t.confirmed_at.map(Timestamp::millis))
                .bind(&t.name)
                .execute(&mut *tx)
                .await
                .map_err(|e| match e {
                    // The user does not exist (the enrolment references it).
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
                    // Another user's enrolment has this id.
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StoreError::Conflict("another user's TOTP enrolment has this id".into())
                    }
                    other => map_err(other),
                })?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_totp(&self, user_id: Uuid) -> StoreResult<Option<TotpRecord>> {
                let row = sqlx::query("SELECT * FROM totp_enrolments WHERE user_id = $1")
                    .bind(user_id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::totp_from).transpose()
            }

            async fn update_totp_state(
                &self,
                user_id: Uuid,
                id: Uuid,
                expected_version: i64,
                state: &str,
                confirm_at: Option<Timestamp>,
            ) -> StoreResult<bool> {
                // One conditional UPDATE (compare-and-set on the version): of racing updates
                // from the same version the first changes the row, and the others no longer
                // match it (PostgreSQL re-checks the condition on the row it waited for).
                let done = sqlx::query(
                    "UPDATE totp_enrolments SET state = $4, version = version + 1,
                        confirmed_at = COALESCE(confirmed_at, $5)
                     WHERE user_id = $1 AND id = $2 AND version = $3",
                )
                .bind(user_id.to_string())
                .bind(id.to_string())
                .bind(expected_version)
                .bind(state)
                .bind(confirm_at.map(Timestamp::millis))
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_totp(&self, user_id: Uuid, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query("DELETE FROM totp_enrolments WHERE user_id = $1 AND id = $2")
                    .bind(user_id.to_string())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn insert_audit_event(&self, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_ca_policy(&self, p: &CaPolicyRow, max_policies: u32, audit: &AuditEvent) -> StoreResult<()> {
                let id = p.id.to_string();
                let name = p.display_name.to_lowercase();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::check_named_create(&mut tx, &CA_POLICIES, &id, &name, max_policies).await?;
                sqlx::query(
                    "INSERT INTO ca_policies (id, display_name, display_name_normalized, state, policy, created_at,
                        modified_at, state_changed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind(&p.display_name)
                .bind(&name)
                .bind(&p.state)
                .bind(&p.policy)
                .bind(p.created_at.millis())
                .bind(p.modified_at.millis())
                .bind(p.state_changed_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_ca_policy(&self, id: Uuid) -> StoreResult<Option<CaPolicyRow>> {
                let row = sqlx::query("SELECT * FROM ca_policies WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::ca_policy_from).transpose()
            }

            async fn list_ca_policies(&self) -> StoreResult<Vec<CaPolicyRow>> {
                let rows = sqlx::query("SELECT * FROM ca_policies")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                let mut policies = rows.iter().map(Self::ca_policy_from).collect::<StoreResult<Vec<_>>>()?;
                // Sorted here, not by the databases' collations (which differ between them).
                policies.sort_by_cached_key(|p| (p.display_name.to_lowercase(), p.id));
                Ok(policies)
            }

            async fn update_ca_policy(&self, p: &CaPolicyRow, expected_modified_at: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let id = p.id.to_string();
                let name = p.display_name.to_lowercase();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::check_named_update(&mut tx, &CA_POLICIES, &id, &name, expected_modified_at).await?;
                sqlx::query(
                    "UPDATE ca_policies SET display_name = $2, display_name_normalized = $3, state = $4, policy = $5,
                        modified_at = $6, state_changed_at = $7
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(&p.display_name)
                .bind(&name)
                .bind(&p.state)
                .bind(&p.policy)
                .bind(next_modified_at(p.modified_at, expected_modified_at).millis())
                .bind(p.state_changed_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_ca_policy(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_conditional_access(&mut tx).await?;
                let done = sqlx::query("DELETE FROM ca_policies WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn create_named_location(&self, l: &NamedLocationRow, max_locations: u32, audit: &AuditEvent) -> StoreResult<()> {
                let id = l.id.to_string();
                let name = l.display_name.to_lowercase();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::check_named_create(&mut tx, &NAMED_LOCATIONS, &id, &name, max_locations).await?;
                sqlx::query(
                    "INSERT INTO named_locations (id, display_name, display_name_normalized, location, is_trusted,
                        created_at, modified_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&id)
                .bind(&l.display_name)
                .bind(&name)
                .bind(&l.location)
                .bind(l.is_trusted)
                .bind(l.created_at.millis())
                .bind(l.modified_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_named_location(&self, id: Uuid) -> StoreResult<Option<NamedLocationRow>> {
                let row = sqlx::query("SELECT * FROM named_locations WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::named_location_from).transpose()
            }

            async fn list_named_locations(&self) -> StoreResult<Vec<NamedLocationRow>> {
                let rows = sqlx::query("SELECT * FROM named_locations")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                let mut locations = rows.iter().map(Self::named_location_from).collect::<StoreResult<Vec<_>>>()?;
                // Sorted here, not by the databases' collations (which differ between them).
                locations.sort_by_cached_key(|l| (l.display_name.to_lowercase(), l.id));
                Ok(locations)
            }

            async fn update_named_location(&self, l: &NamedLocationRow, expected_modified_at: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let id = l.id.to_string();
                let name = l.display_name.to_lowercase();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::check_named_update(&mut tx, &NAMED_LOCATIONS, &id, &name, expected_modified_at).await?;
                sqlx::query(
                    "UPDATE named_locations SET display_name = $2, display_name_normalized = $3, location = $4,
                        is_trusted = $5, modified_at = $6
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(&l.display_name)
                .bind(&name)
                .bind(&l.location)
                .bind(l.is_trusted)
                .bind(next_modified_at(l.modified_at, expected_modified_at).millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_named_location(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_conditional_access(&mut tx).await?;
                let done = sqlx::query("DELETE FROM named_locations WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn ca_results_since(&self, policy_id: Uuid, since: Timestamp, older_than: Option<Cursor>, limit: u32) -> StoreResult<Vec<SignInRecord>> {
                let limit = if limit == 0 {
                    cutover_core::limits::DEFAULT_PAGE_SIZE
                } else {
                    limit.min(MAX_CA_RESULTS_PAGE)
                };
                // Driven by the results' (policy_id, created_at, sign_in_id) index; a sign-in
                // has one row per policy, so each comes once.
                let rows = sqlx::query(
                    "SELECT l.record FROM sign_in_ca_results c JOIN sign_in_log l ON l.id = c.sign_in_id
                     WHERE c.policy_id = $1 AND c.created_at >= $2
                       AND (CAST($3 AS BIGINT) IS NULL OR c.created_at < CAST($3 AS BIGINT)
                            OR (c.created_at = CAST($3 AS BIGINT) AND c.sign_in_id < CAST($4 AS TEXT)))
                     ORDER BY c.created_at DESC, c.sign_in_id DESC LIMIT $5",
                )
                .bind(policy_id.to_string())
                .bind(since.millis())
                .bind(older_than.map(|c| c.created_at.millis()))
                .bind(older_than.map(|c| c.id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(Self::sign_in_from).collect()
            }

            async fn record_break_glass_drill(&self, user_id: Uuid, at: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let user_id = user_id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Lock the user's row (a no-op UPDATE), so it is neither deleted nor changed
                // before the drill is written.
                let user = sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1 RETURNING break_glass")
                    .bind(&user_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let Some(user) = user else {
                    return Err(StoreError::NotFound);
                };
                if !user.try_get::<bool, _>("break_glass").map_err(map_err)? {
                    return Err(StoreError::Conflict(NOT_BREAK_GLASS.into()));
                }
                sqlx::query(
                    "INSERT INTO break_glass_drills (user_id, drilled_at) VALUES ($1, $2)
                     ON CONFLICT (user_id) DO UPDATE SET drilled_at = excluded.drilled_at
                     WHERE excluded.drilled_at > break_glass_drills.drilled_at",
                )
                .bind(&user_id)
                .bind(at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn break_glass_drills(&self) -> StoreResult<Vec<(Uuid, Timestamp)>> {
                let rows = sqlx::query(
                    "SELECT d.user_id, d.drilled_at FROM break_glass_drills d JOIN users u ON u.id = d.user_id
                     WHERE u.break_glass ORDER BY d.user_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        let user: String = r.try_get("user_id").map_err(map_err)?;
                        Ok((uuid_of(&user, "break-glass drill user")?, Timestamp(r.try_get("drilled_at").map_err(map_err)?)))
                    })
                    .collect()
            }

            // ---- Passkey rollout campaigns and the e-mail outbox (issue 8) --------------

            async fn create_campaign(&self, c: &CampaignRow, max_campaigns: u32, audit: &AuditEvent) -> StoreResult<()> {
                let id = c.id.to_string();
                let name = c.display_name.to_lowercase();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::check_named_create(&mut tx, &CAMPAIGNS, &id, &name, max_campaigns).await?;
                sqlx::query(
                    "INSERT INTO campaigns (id, display_name, display_name_normalized, document, created_at, modified_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&id)
                .bind(&c.display_name)
                .bind(&name)
                .bind(c.document.to_string())
                .bind(c.created_at.millis())
                .bind(c.modified_at.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn get_campaign(&self, id: Uuid) -> StoreResult<Option<CampaignRow>> {
                let row = sqlx::query("SELECT * FROM campaigns WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::campaign_from).transpose()
            }

            async fn list_campaigns(&self) -> StoreResult<Vec<CampaignRow>> {
                let rows = sqlx::query("SELECT * FROM campaigns")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                let mut campaigns = rows.iter().map(Self::campaign_from).collect::<StoreResult<Vec<_>>>()?;
                // Sorted here, not by the databases' collations (which differ between them).
                campaigns.sort_by_cached_key(|c| (c.display_name.to_lowercase(), c.id));
                Ok(campaigns)
            }

            async fn update_campaign(&self, c: &CampaignRow, expected_modified_at: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let id = c.id.to_string();
                let name = c.display_name.to_lowercase();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::check_named_update(&mut tx, &CAMPAIGNS, &id, &name, expected_modified_at).await?;
                sqlx::query(
                    "UPDATE campaigns SET display_name = $2, display_name_normalized = $3, document = $4, modified_at = $5
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(&c.display_name)
                .bind(&name)
                .bind(c.document.to_string())
                .bind(next_modified_at(c.modified_at, expected_modified_at).millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn delete_campaign(&self, id: Uuid, audit: &AuditEvent) -> StoreResult<()> {
                let id = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::lock_campaigns(&mut tx).await?;
                let done = sqlx::query("DELETE FROM campaigns WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                // (The foreign key cascades too; said here so it does not rest on that alone.)
                sqlx::query("DELETE FROM campaign_send_decisions WHERE campaign_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                // Not sent yet and not being transmitted: cancelled. A node holding a claimed
                // one finds it gone when it marks it transmitting, and does not send it.
                sqlx::query(
                    "UPDATE outbox_messages SET state = 'cancelled', lease_until = NULL,
                        last_error = 'its campaign was deleted before it was sent'
                     WHERE campaign_id = $1 AND state IN ('pending', 'claimed')",
                )
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn record_send_decision(&self, d: &SendDecision, messages: &[OutboxMessage], audit: Option<&AuditEvent>) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // The decision first: of racing writers of one key the first inserts it, and
                // the others (PostgreSQL: once the first commits) find it and write nothing.
                let inserted = sqlx::query(
                    "INSERT INTO campaign_send_decisions (decision_key, campaign_id, wave_id, step_key, decided_at, recipients, skipped)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (decision_key) DO NOTHING
                     RETURNING decision_key",
                )
                .bind(&d.key)
                .bind(d.campaign_id.to_string())
                .bind(d.wave_id.to_string())
                .bind(&d.step_key)
                .bind(d.decided_at.millis())
                .bind(i64::from(d.recipients))
                .bind(d.skipped.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| match e {
                    // The campaign does not exist (deleted meanwhile).
                    sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
                    other => map_err(other),
                })?;
                if inserted.is_none() {
                    return Ok(false);
                }
                Self::insert_outbox_in(&mut tx, messages).await?;
                if let Some(audit) = audit {
                    Self::write_audit(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            }

            async fn list_send_decisions(&self, campaign_id: Uuid) -> StoreResult<Vec<SendDecision>> {
                let rows = sqlx::query(
                    "SELECT * FROM campaign_send_decisions WHERE campaign_id = $1 ORDER BY decided_at, decision_key",
                )
                .bind(campaign_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(Self::decision_from).collect()
            }

            async fn enqueue_outbox_message(&self, m: &OutboxMessage, audit: Option<&AuditEvent>) -> StoreResult<()> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                Self::insert_outbox_in(&mut tx, std::slice::from_ref(m)).await?;
                if let Some(audit) = audit {
                    Self::write_audit(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(map_err)
            }

            async fn claim_outbox(&self, node: &str, now: Timestamp, lease_until: Timestamp, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
                let limit = limit.min(MAX_OUTBOX_CLAIM);
                // Senders poll this constantly: the usual "nothing to do" is one read, with no
                // write transaction (nothing due, no lease run out).
                let any = sqlx::query(
                    "SELECT 1 AS x FROM outbox_messages
                     WHERE (state = 'pending' AND next_attempt_at <= $1)
                        OR (state IN ('claimed', 'transmitting') AND lease_until <= $1)
                     LIMIT 1",
                )
                .bind(now.millis())
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                if any.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                // Leases run out. Rows another claimer is recovering right now are skipped
                // (PostgreSQL), not waited for: it recovers them. Each pick is a materialised
                // CTE so that it runs once (see `claim_pta_requests`).
                sqlx::query(concat!(
                    "WITH lost AS MATERIALIZED (
                        SELECT r.id FROM outbox_messages r
                        WHERE r.state = 'transmitting' AND r.lease_until <= $1 ",
                    $skip_locked,
                    "
                     )
                     UPDATE outbox_messages SET state = 'uncertain', lease_until = NULL,
                        last_error = 'the lease of ' || COALESCE(claimed_by, 'its sender')
                            || ' ran out while it was transmitting: whether the SMTP server accepted the message is unknown, so it is not sent again automatically'
                     WHERE state = 'transmitting' AND lease_until <= $1 AND id IN (SELECT id FROM lost)"
                ))
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                sqlx::query(concat!(
                    "WITH idle AS MATERIALIZED (
                        SELECT r.id FROM outbox_messages r
                        WHERE r.state = 'claimed' AND r.lease_until <= $1 ",
                    $skip_locked,
                    "
                     )
                     UPDATE outbox_messages SET state = 'pending', lease_until = NULL, claimed_by = NULL
                     WHERE state = 'claimed' AND lease_until <= $1 AND id IN (SELECT id FROM idle)"
                ))
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if limit == 0 {
                    tx.commit().await.map_err(map_err)?;
                    return Ok(Vec::new());
                }
                // Then the claim (SQLite: under the write lock; PostgreSQL: rows another
                // claimer holds are skipped, not waited for).
                let rows = sqlx::query(concat!(
                    "WITH picked AS MATERIALIZED (
                        SELECT r.id FROM outbox_messages r
                        WHERE r.state = 'pending' AND r.next_attempt_at <= $1
                        ORDER BY r.created_at, r.id
                        LIMIT $2 ",
                    $skip_locked,
                    "
                     )
                     UPDATE outbox_messages SET state = 'claimed', claimed_by = $3, lease_until = $4, attempts = attempts + 1
                     WHERE state = 'pending' AND id IN (SELECT id FROM picked)
                     RETURNING *"
                ))
                .bind(now.millis())
                .bind(i64::from(limit))
                .bind(node)
                .bind(lease_until.millis())
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                let mut claimed = rows.iter().map(Self::outbox_from).collect::<StoreResult<Vec<_>>>()?;
                tx.commit().await.map_err(map_err)?;
                claimed.sort_by_key(|m| (m.created_at, m.id));
                Ok(claimed)
            }

            async fn mark_outbox_transmitting(&self, id: Uuid, node: &str, lease_until: Timestamp) -> StoreResult<bool> {
                // One conditional UPDATE: it writes only while the row is claimed by this node
                // (PostgreSQL re-checks the condition on a row another transaction changed).
                let done = sqlx::query(
                    "UPDATE outbox_messages SET state = 'transmitting', lease_until = $3
                     WHERE id = $1 AND state = 'claimed' AND claimed_by = $2",
                )
                .bind(id.to_string())
                .bind(node)
                .bind(lease_until.millis())
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_outbox(&self, id: Uuid, node: &str, outcome: &OutboxOutcome) -> StoreResult<bool> {
                let (state, sent_at, next_attempt_at, error) = match outcome {
                    OutboxOutcome::Sent { at } => (OutboxState::Sent, Some(*at), None, None),
                    OutboxOutcome::Retry { error, next_attempt_at } | OutboxOutcome::Deferred { error, next_attempt_at } => {
                        (OutboxState::Pending, None, Some(*next_attempt_at), Some(bounded_error(error)))
                    }
                    OutboxOutcome::Failed { error } => (OutboxState::Failed, None, None, Some(bounded_error(error))),
                    OutboxOutcome::Uncertain { error } => (OutboxState::Uncertain, None, None, Some(bounded_error(error))),
                };
                // A deferral gives back the attempt the claim counted.
                let uncount = i64::from(matches!(outcome, OutboxOutcome::Deferred { .. }));
                // A retry is unclaimed again; an end keeps the node that reached it.
                let done = sqlx::query(
                    "UPDATE outbox_messages SET state = CAST($3 AS TEXT), sent_at = CAST($4 AS BIGINT),
                        next_attempt_at = COALESCE(CAST($5 AS BIGINT), next_attempt_at), last_error = CAST($6 AS TEXT),
                        attempts = CASE WHEN CAST($7 AS BIGINT) = 1 AND attempts > 0 THEN attempts - 1 ELSE attempts END,
                        lease_until = NULL,
                        claimed_by = CASE WHEN CAST($3 AS TEXT) = 'pending' THEN NULL ELSE claimed_by END
                     WHERE id = $1 AND claimed_by = $2
                       AND (state IN ('claimed', 'transmitting')
                            OR (state = 'uncertain' AND CAST($3 AS TEXT) = 'sent'))",
                )
                .bind(id.to_string())
                .bind(node)
                .bind(state.as_str())
                .bind(sent_at.map(Timestamp::millis))
                .bind(next_attempt_at.map(Timestamp::millis))
                .bind(error)
                .bind(uncount)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_outbox_message(&self, id: Uuid) -> StoreResult<Option<OutboxMessage>> {
                let row = sqlx::query("SELECT * FROM outbox_messages WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(Self::outbox_from).transpose()
            }

            async fn list_outbox(&self, f: &OutboxFilter) -> StoreResult<Vec<OutboxMessage>> {
                let rows = sqlx::query(
                    "SELECT * FROM outbox_messages
                     WHERE (CAST($1 AS TEXT) IS NULL OR campaign_id = CAST($1 AS TEXT))
                       AND (CAST($2 AS TEXT) IS NULL OR wave_id = CAST($2 AS TEXT))
                       AND (CAST($3 AS TEXT) IS NULL OR state = CAST($3 AS TEXT))
                       AND (CAST($4 AS TEXT) IS NULL OR user_id = CAST($4 AS TEXT))
                       AND (CAST($5 AS TEXT) IS NULL OR id > CAST($5 AS TEXT))
                     ORDER BY id LIMIT $6",
                )
                .bind(f.campaign_id.map(|c| c.to_string()))
                .bind(f.wave_id.map(|w| w.to_string()))
                .bind(f.state.map(OutboxState::as_str))
                .bind(f.user_id.map(|u| u.to_string()))
                .bind(f.after.map(|a| a.to_string()))
                .bind(clamp_top(f.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(Self::outbox_from).collect()
            }

            async fn outbox_counts(&self, campaign_id: Option<Uuid>) -> StoreResult<OutboxCounts> {
                let rows = sqlx::query(
                    "SELECT state, COUNT(*) AS n FROM outbox_messages
                     WHERE CAST($1 AS TEXT) IS NULL OR campaign_id = CAST($1 AS TEXT)
                     GROUP BY state",
                )
                .bind(campaign_id.map(|c| c.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                let mut counts = OutboxCounts::default();
                for r in &rows {
                    let state: String = r.try_get("state").map_err(map_err)?;
                    let n: i64 = r.try_get("n").map_err(map_err)?;
                    let n = u64::try_from(n).map_err(|_| corrupt("outbox count", n))?;
                    let slot = match OutboxState::parse(&state).ok_or_else(|| corrupt("outbox state", &state))? {
                        OutboxState::Pending => &mut counts.pending,
                        OutboxState::Claimed => &mut counts.claimed,
                        OutboxState::Transmitting => &mut counts.transmitting,
                        OutboxState::Sent => &mut counts.sent,
                        OutboxState::Failed => &mut counts.failed,
                        OutboxState::Uncertain => &mut counts.uncertain,
                        OutboxState::Cancelled => &mut counts.cancelled,
                    };
                    *slot = n;
                }
                Ok(counts)
            }

            async fn resend_outbox_message(&self, id: Uuid, now: Timestamp, audit: &AuditEvent) -> StoreResult<()> {
                let id = id.to_string();
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query(
                    "UPDATE outbox_messages SET state = 'pending', next_attempt_at = $2, attempts = 0,
                        lease_until = NULL, claimed_by = NULL
                     WHERE id = $1 AND state IN ('failed', 'uncertain')",
                )
                .bind(&id)
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() == 0 {
                    let exists = sqlx::query("SELECT state FROM outbox_messages WHERE id = $1")
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(map_err)?;
                    return Err(match exists {
                        Some(_) => StoreError::Conflict(OUTBOX_NOT_RESENDABLE.into()),
                        None => StoreError::NotFound,
                    });
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)
            }

            async fn resend_failed_outbox(&self, campaign_id: Option<Uuid>, now: Timestamp, audit: &AuditEvent) -> StoreResult<u64> {
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                let done = sqlx::query(
                    "UPDATE outbox_messages SET state = 'pending', next_attempt_at = $2, attempts = 0,
                        lease_until = NULL, claimed_by = NULL
                     WHERE state = 'failed' AND (CAST($1 AS TEXT) IS NULL OR campaign_id = CAST($1 AS TEXT))",
                )
                .bind(campaign_id.map(|c| c.to_string()))
                .bind(now.millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                let n = done.rows_affected();
                if n == 0 {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(0);
                }
                Self::write_audit(&mut tx, audit).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(n)
            }

            async fn passkeys_of_group_members(&self, group_id: Uuid) -> StoreResult<Vec<PasskeyFact>> {
                let rows = sqlx::query(
                    "SELECT p.id, p.user_id, p.created_at, p.device_family, p.aaguid, p.backup_eligible, p.backed_up,
                        p.last_used_at
                     FROM group_members gm JOIN passkeys p ON p.user_id = gm.member_id
                     WHERE gm.group_id = $1 AND gm.member_kind = 'user'
                     ORDER BY p.user_id, p.created_at, p.id",
                )
                .bind(group_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        let id: String = r.try_get("id").map_err(map_err)?;
                        let user: String = r.try_get("user_id").map_err(map_err)?;
                        let aaguid: String = r.try_get("aaguid").map_err(map_err)?;
                        Ok(PasskeyFact {
                            id: uuid_of(&id, "passkey id")?,
                            user_id: uuid_of(&user, "passkey user")?,
                            created_at: Timestamp(r.try_get("created_at").map_err(map_err)?),
                            device_family: r.try_get("device_family").map_err(map_err)?,
                            aaguid: uuid_of(&aaguid, "passkey aaguid")?,
                            backup_eligible: r.try_get("backup_eligible").map_err(map_err)?,
                            backed_up: r.try_get("backed_up").map_err(map_err)?,
                            last_used_at: r.try_get::<Option<i64>, _>("last_used_at").map_err(map_err)?.map(Timestamp),
                        })
                    })
                    .collect()
            }

            async fn users_by_ids(&self, ids: &[Uuid]) -> StoreResult<Vec<User>> {
                let mut found = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(USERS_BY_IDS_PER_STATEMENT) {
                    let placeholders = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                    // Only numbered placeholders are spliced in; every value is bound.
                    let sql = format!("SELECT * FROM users WHERE id IN ({placeholders})");
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in chunk {
                        q = q.bind(id.to_string());
                    }
                    for row in q.fetch_all(&self.pool).await.map_err(map_err)? {
                        let user = Self::user_from(&row)?.user;
                        found.insert(user.id, user);
                    }
                }
                Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
            }
        }

        impl SqlStore<$db> {
            fn campaign_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<CampaignRow> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let document: String = row.try_get("document").map_err(map_err)?;
                Ok(CampaignRow {
                    id: uuid_of(&id, "campaign id")?,
                    display_name: row.try_get("display_name").map_err(map_err)?,
                    document: serde_json::from_str(&document).map_err(|e| corrupt("campaign document", e))?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    modified_at: Timestamp(row.try_get("modified_at").map_err(map_err)?),
                })
            }

            fn decision_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<SendDecision> {
                let campaign: String = row.try_get("campaign_id").map_err(map_err)?;
                let wave: String = row.try_get("wave_id").map_err(map_err)?;
                let recipients: i64 = row.try_get("recipients").map_err(map_err)?;
                let skipped: String = row.try_get("skipped").map_err(map_err)?;
                Ok(SendDecision {
                    key: row.try_get("decision_key").map_err(map_err)?,
                    campaign_id: uuid_of(&campaign, "send decision campaign")?,
                    wave_id: uuid_of(&wave, "send decision wave")?,
                    step_key: row.try_get("step_key").map_err(map_err)?,
                    decided_at: Timestamp(row.try_get("decided_at").map_err(map_err)?),
                    recipients: u32::try_from(recipients).map_err(|_| corrupt("send decision recipients", recipients))?,
                    skipped: serde_json::from_str(&skipped).map_err(|e| corrupt("send decision skipped", e))?,
                })
            }

            fn outbox_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<OutboxMessage> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let uuid_col = |col: &str| -> StoreResult<Option<Uuid>> {
                    let raw: Option<String> = row.try_get(col).map_err(map_err)?;
                    raw.as_deref().map(|v| uuid_of(v, col)).transpose()
                };
                let to: String = row.try_get("to_addresses").map_err(map_err)?;
                let cc: String = row.try_get("cc_addresses").map_err(map_err)?;
                let state: String = row.try_get("state").map_err(map_err)?;
                let attempts: i64 = row.try_get("attempts").map_err(map_err)?;
                Ok(OutboxMessage {
                    id: uuid_of(&id, "outbox message id")?,
                    idempotency_key: row.try_get("idempotency_key").map_err(map_err)?,
                    campaign_id: uuid_col("campaign_id")?,
                    wave_id: uuid_col("wave_id")?,
                    step_key: row.try_get("step_key").map_err(map_err)?,
                    user_id: uuid_col("user_id")?,
                    mail_from: row.try_get("mail_from").map_err(map_err)?,
                    to: list_of(&to, "outbox to_addresses")?,
                    cc: list_of(&cc, "outbox cc_addresses")?,
                    subject: row.try_get("subject").map_err(map_err)?,
                    text_body: row.try_get("text_body").map_err(map_err)?,
                    html_body: row.try_get("html_body").map_err(map_err)?,
                    message_id: row.try_get("message_id").map_err(map_err)?,
                    state: OutboxState::parse(&state).ok_or_else(|| corrupt("outbox state", &state))?,
                    attempts: u32::try_from(attempts).map_err(|_| corrupt("outbox attempts", attempts))?,
                    next_attempt_at: Timestamp(row.try_get("next_attempt_at").map_err(map_err)?),
                    lease_until: row.try_get::<Option<i64>, _>("lease_until").map_err(map_err)?.map(Timestamp),
                    claimed_by: row.try_get("claimed_by").map_err(map_err)?,
                    last_error: row.try_get("last_error").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    sent_at: row.try_get::<Option<i64>, _>("sent_at").map_err(map_err)?.map(Timestamp),
                })
            }

            /// Insert outbox messages in the caller's transaction, several per statement. A key
            /// stored already or given twice is refused by name before anything is inserted
            /// (the unique index still refuses one that a concurrent writer commits meanwhile,
            /// without naming it).
            async fn insert_outbox_in<'c>(tx: &mut sqlx::Transaction<'c, $db>, messages: &[OutboxMessage]) -> StoreResult<()> {
                let mut seen = std::collections::HashSet::with_capacity(messages.len());
                for m in messages {
                    if !seen.insert(m.idempotency_key.as_str()) {
                        return Err(outbox_key_taken(&m.idempotency_key));
                    }
                }
                for chunk in messages.chunks(OUTBOX_KEYS_PER_STATEMENT) {
                    let placeholders = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
                    // Only numbered placeholders are spliced in; every value is bound.
                    let sql = format!(
                        "SELECT idempotency_key FROM outbox_messages WHERE idempotency_key IN ({placeholders})
                         ORDER BY idempotency_key LIMIT 1"
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for m in chunk {
                        q = q.bind(&m.idempotency_key);
                    }
                    if let Some(row) = q.fetch_optional(&mut **tx).await.map_err(map_err)? {
                        let key: String = row.try_get("idempotency_key").map_err(map_err)?;
                        return Err(outbox_key_taken(&key));
                    }
                }
                for chunk in messages.chunks(OUTBOX_ROWS_PER_STATEMENT) {
                    let rows = (0..chunk.len())
                        .map(|i| {
                            let cols = (1..=OUTBOX_COLUMNS)
                                .map(|c| format!("${}", i * OUTBOX_COLUMNS + c))
                                .collect::<Vec<_>>()
                                .join(", ");
                            format!("({cols})")
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    // Only numbered placeholders are spliced in; every value is bound.
                    let sql = format!(
                        "INSERT INTO outbox_messages (id, idempotency_key, campaign_id, wave_id, step_key, user_id, mail_from,
                            to_addresses, cc_addresses, subject, text_body, html_body, message_id, state, attempts,
                            next_attempt_at, lease_until, claimed_by, last_error, created_at, sent_at)
                         VALUES {rows}"
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for m in chunk {
                        q = q
                            .bind(m.id.to_string())
                            .bind(&m.idempotency_key)
                            .bind(m.campaign_id.map(|c| c.to_string()))
                            .bind(m.wave_id.map(|w| w.to_string()))
                            .bind(&m.step_key)
                            .bind(m.user_id.map(|u| u.to_string()))
                            .bind(&m.mail_from)
                            .bind(json_list(&m.to))
                            .bind(json_list(&m.cc))
                            .bind(&m.subject)
                            .bind(&m.text_body)
                            .bind(&m.html_body)
                            .bind(&m.message_id)
                            .bind(m.state.as_str())
                            .bind(i64::from(m.attempts))
                            .bind(m.next_attempt_at.millis())
                            .bind(m.lease_until.map(Timestamp::millis))
                            .bind(&m.claimed_by)
                            .bind(m.last_error.as_deref().map(bounded_error))
                            .bind(m.created_at.millis())
                            .bind(m.sent_at.map(Timestamp::millis));
                    }
                    q.execute(&mut **tx).await.map_err(|e| match e {
                        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(
                            "an outbox message with one of these ids or idempotency keys exists (written concurrently)".into(),
                        ),
                        other => map_err(other),
                    })?;
                }
                Ok(())
            }
        }

        impl SqlStore<$db> {
            fn agent_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<AgentRecord> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let generation: i64 = row.try_get("key_generation").map_err(map_err)?;
                let heartbeat: Option<String> = row.try_get("heartbeat").map_err(map_err)?;
                Ok(AgentRecord {
                    id: uuid_of(&id, "agent id")?,
                    host: row.try_get("host").map_err(map_err)?,
                    version: row.try_get("version").map_err(map_err)?,
                    signing_key: row.try_get("signing_key").map_err(map_err)?,
                    encryption_key: row.try_get("encryption_key").map_err(map_err)?,
                    key_generation: u32::try_from(generation).map_err(|_| corrupt("agent key generation", generation))?,
                    enabled: row.try_get("enabled").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    keys_rotated_at: row.try_get::<Option<i64>, _>("keys_rotated_at").map_err(map_err)?.map(Timestamp),
                    last_heartbeat: row.try_get::<Option<i64>, _>("last_heartbeat").map_err(map_err)?.map(Timestamp),
                    heartbeat: heartbeat
                        .map(|h| serde_json::from_str(&h).map_err(|e| corrupt("agent heartbeat", e)))
                        .transpose()?,
                })
            }

            /// A request's state columns with its row locked for the rest of the transaction (a
            /// no-op UPDATE: PostgreSQL locks the row, SQLite takes the write lock); `None` when
            /// missing.
            async fn lock_pta_request<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                id: &str,
            ) -> StoreResult<Option<<$db as sqlx::Database>::Row>> {
                sqlx::query(
                    "UPDATE pta_requests SET state = state WHERE id = $1
                     RETURNING state, claimed_by, claimed_at, result, detail, completed_at",
                )
                .bind(id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(map_err)
            }

            fn pta_state_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<PtaRequestState> {
                let state: String = row.try_get("state").map_err(map_err)?;
                let claimed_by: Option<String> = row.try_get("claimed_by").map_err(map_err)?;
                let claimed_by = claimed_by.as_deref().map(|c| uuid_of(c, "pta request claimed_by")).transpose()?;
                let missing = |col: &str| corrupt("pta request", format!("{state} without {col}"));
                let time = |col: &str| -> StoreResult<Timestamp> {
                    row.try_get::<Option<i64>, _>(col).map_err(map_err)?.map(Timestamp).ok_or_else(|| missing(col))
                };
                Ok(match state.as_str() {
                    "pending" => PtaRequestState::Pending,
                    "claimed" => PtaRequestState::Claimed {
                        agent_id: claimed_by.ok_or_else(|| missing("claimed_by"))?,
                        at: time("claimed_at")?,
                    },
                    "done" => {
                        let result: Option<String> = row.try_get("result").map_err(map_err)?;
                        let result = result.ok_or_else(|| missing("result"))?;
                        PtaRequestState::Done {
                            agent_id: claimed_by.ok_or_else(|| missing("claimed_by"))?,
                            result: PtaResult::parse(&result).ok_or_else(|| corrupt("pta request result", &result))?,
                            detail: row.try_get("detail").map_err(map_err)?,
                            at: time("completed_at")?,
                        }
                    }
                    "abandoned" => PtaRequestState::Abandoned { claimed_by },
                    other => return Err(corrupt("pta request state", other)),
                })
            }

            /// Apply `step` to the user's lockout state with its row locked (created if missing,
            /// then a no-op UPDATE, as `finish_staged_sign_in` does); store it when it changed.
            async fn lockout_in<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                user_id: &str,
                step: &(dyn Fn(LockoutState) -> LockoutState + Send + Sync),
            ) -> StoreResult<(LockoutState, LockoutState)> {
                sqlx::query("INSERT INTO user_lockout_state (user_id, state) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
                    .bind(user_id)
                    .bind(lockout_json(&LockoutState::default())?)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| match map_err(e) {
                        // The user does not exist (the state row references it).
                        StoreError::Conflict(_) => StoreError::NotFound,
                        other => other,
                    })?;
                let row = sqlx::query("UPDATE user_lockout_state SET state = state WHERE user_id = $1 RETURNING state")
                    .bind(user_id)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?;
                let before = lockout_from(&row.try_get::<String, _>("state").map_err(map_err)?)?;
                let after = step(before.clone());
                if after != before {
                    sqlx::query("UPDATE user_lockout_state SET state = $1 WHERE user_id = $2")
                        .bind(lockout_json(&after)?)
                        .bind(user_id)
                        .execute(&mut **tx)
                        .await
                        .map_err(map_err)?;
                }
                Ok((before, after))
            }

            fn idp_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<IdentityProvider> {
                let id: String = row.try_get("id").map_err(map_err)?;
                let scopes: String = row.try_get("scopes").map_err(map_err)?;
                Ok(IdentityProvider {
                    id: uuid_of(&id, "identity provider id")?,
                    display_name: row.try_get("display_name").map_err(map_err)?,
                    issuer: row.try_get("issuer").map_err(map_err)?,
                    client_id: row.try_get("client_id").map_err(map_err)?,
                    client_secret_sealed: row.try_get("client_secret_sealed").map_err(map_err)?,
                    scopes: list_of(&scopes, "identity provider scopes")?,
                    immutable_id_claim: row.try_get("immutable_id_claim").map_err(map_err)?,
                    upn_fallback_claim: row.try_get("upn_fallback_claim").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    updated_at: Timestamp(row.try_get("updated_at").map_err(map_err)?),
                })
            }

            /// Take the rollout lock for the rest of the transaction (a no-op UPDATE of its one
            /// row: PostgreSQL locks the row, SQLite takes the write lock). Every change to a
            /// rollout policy or its groups does this first, so the rules are checked against a
            /// state that no other node changes before this transaction ends.
            async fn lock_rollout<'c>(tx: &mut sqlx::Transaction<'c, $db>) -> StoreResult<()> {
                sqlx::query("UPDATE feature_rollout_lock SET changed_at = changed_at WHERE id = 1 RETURNING changed_at")
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            /// Take the Conditional Access lock for the rest of the transaction (a no-op UPDATE
            /// of its one row: PostgreSQL locks the row, SQLite takes the write lock). Every
            /// change to a policy or a named location does this first, so counts and names are
            /// checked against a state that no other node changes before this transaction ends.
            async fn lock_conditional_access<'c>(tx: &mut sqlx::Transaction<'c, $db>) -> StoreResult<()> {
                sqlx::query("UPDATE conditional_access_lock SET changed_at = changed_at WHERE id = 1 RETURNING changed_at")
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            /// Take the campaigns lock for the rest of the transaction (a no-op UPDATE of its
            /// one row: PostgreSQL locks the row, SQLite takes the write lock). Every change to
            /// a campaign does this first, as Conditional Access changes take theirs.
            async fn lock_campaigns<'c>(tx: &mut sqlx::Transaction<'c, $db>) -> StoreResult<()> {
                sqlx::query("UPDATE campaign_lock SET changed_at = changed_at WHERE id = 1 RETURNING changed_at")
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            /// Take the lock of `kind`'s objects for the rest of the transaction.
            async fn lock_named<'c>(tx: &mut sqlx::Transaction<'c, $db>, kind: &NamedObject) -> StoreResult<()> {
                match kind.lock {
                    NamedLock::ConditionalAccess => Self::lock_conditional_access(tx).await,
                    NamedLock::Campaigns => Self::lock_campaigns(tx).await,
                }
            }

            /// Under the lock: refuse a new `kind` object whose id is stored, whose normalised
            /// name another has, or that would be one more than `max`.
            async fn check_named_create<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                kind: &NamedObject,
                id: &str,
                name_normalized: &str,
                max: u32,
            ) -> StoreResult<()> {
                Self::lock_named(tx, kind).await?;
                let taken = sqlx::query(kind.taken)
                    .bind(id)
                    .bind(name_normalized)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(map_err)?;
                for row in &taken {
                    if row.try_get::<String, _>("id").map_err(map_err)? == id {
                        return Err(StoreError::Conflict(format!("a {} with id {id} exists", kind.what)));
                    }
                }
                if !taken.is_empty() {
                    return Err(StoreError::Conflict(kind.name_taken.into()));
                }
                let n: i64 = sqlx::query(kind.count)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?
                    .try_get("n")
                    .map_err(map_err)?;
                if n >= i64::from(max) {
                    return Err(StoreError::Conflict(kind.limit_reached.into()));
                }
                Ok(())
            }

            /// Under the lock: refuse an update of `kind` object `id` that is missing, whose
            /// `modified_at` is not `expected_modified_at`, or whose new normalised name another
            /// has.
            async fn check_named_update<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                kind: &NamedObject,
                id: &str,
                name_normalized: &str,
                expected_modified_at: Timestamp,
            ) -> StoreResult<()> {
                Self::lock_named(tx, kind).await?;
                let Some(row) = sqlx::query(kind.modified)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(map_err)?
                else {
                    return Err(StoreError::NotFound);
                };
                if row.try_get::<i64, _>("modified_at").map_err(map_err)? != expected_modified_at.millis() {
                    return Err(StoreError::Conflict(CHANGED_SINCE_READ.into()));
                }
                let taken = sqlx::query(kind.taken)
                    .bind(id)
                    .bind(name_normalized)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(map_err)?;
                for row in &taken {
                    if row.try_get::<String, _>("id").map_err(map_err)? != id {
                        return Err(StoreError::Conflict(kind.name_taken.into()));
                    }
                }
                Ok(())
            }

            fn ca_policy_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<CaPolicyRow> {
                let id: String = row.try_get("id").map_err(map_err)?;
                Ok(CaPolicyRow {
                    id: uuid_of(&id, "conditional access policy id")?,
                    display_name: row.try_get("display_name").map_err(map_err)?,
                    state: row.try_get("state").map_err(map_err)?,
                    policy: row.try_get("policy").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    modified_at: Timestamp(row.try_get("modified_at").map_err(map_err)?),
                    state_changed_at: Timestamp(row.try_get("state_changed_at").map_err(map_err)?),
                })
            }

            fn named_location_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<NamedLocationRow> {
                let id: String = row.try_get("id").map_err(map_err)?;
                Ok(NamedLocationRow {
                    id: uuid_of(&id, "named location id")?,
                    display_name: row.try_get("display_name").map_err(map_err)?,
                    location: row.try_get("location").map_err(map_err)?,
                    is_trusted: row.try_get("is_trusted").map_err(map_err)?,
                    created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                    modified_at: Timestamp(row.try_get("modified_at").map_err(map_err)?),
                })
            }

            fn sign_in_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<SignInRecord> {
                let raw: String = row.try_get("record").map_err(map_err)?;
                serde_json::from_str(&raw).map_err(|e| corrupt("sign-in record", e))
            }

            /// Every policy (or the one with `id`) with its groups, in one statement: policies
            /// by creation, groups in the order they were added (then by id).
            async fn policies_in(conn: &mut <$db as sqlx::Database>::Connection, id: Option<Uuid>) -> StoreResult<Vec<FeatureRolloutPolicy>> {
                let rows = sqlx::query(
                    "SELECT p.id, p.display_name, p.description, p.feature, p.is_enabled, p.is_applied_to_organization,
                            p.created_at, p.updated_at, g.group_id
                     FROM feature_rollout_policies p
                     LEFT JOIN feature_rollout_groups g ON g.policy_id = p.id
                     WHERE CAST($1 AS TEXT) IS NULL OR p.id = CAST($1 AS TEXT)
                     ORDER BY p.created_at, p.id, g.added_at, g.group_id",
                )
                .bind(id.map(|i| i.to_string()))
                .fetch_all(&mut *conn)
                .await
                .map_err(map_err)?;
                let mut out: Vec<FeatureRolloutPolicy> = Vec::new();
                for row in &rows {
                    let pid: String = row.try_get("id").map_err(map_err)?;
                    let pid = uuid_of(&pid, "rollout policy id")?;
                    if out.last().is_none_or(|p| p.id != pid) {
                        let feature: String = row.try_get("feature").map_err(map_err)?;
                        out.push(FeatureRolloutPolicy {
                            id: pid,
                            display_name: row.try_get("display_name").map_err(map_err)?,
                            description: row.try_get("description").map_err(map_err)?,
                            feature: RolloutFeature::parse(&feature).ok_or_else(|| corrupt("rollout policy feature", &feature))?,
                            is_enabled: row.try_get("is_enabled").map_err(map_err)?,
                            is_applied_to_organization: row.try_get("is_applied_to_organization").map_err(map_err)?,
                            applies_to: Vec::new(),
                            created_at: Timestamp(row.try_get("created_at").map_err(map_err)?),
                            updated_at: Timestamp(row.try_get("updated_at").map_err(map_err)?),
                        });
                    }
                    let group: Option<String> = row.try_get("group_id").map_err(map_err)?;
                    if let (Some(g), Some(p)) = (group, out.last_mut()) {
                        p.applies_to.push(uuid_of(&g, "rollout group id")?);
                    }
                }
                Ok(out)
            }

            /// Add `group_id` to `policy` (as stored, lock held) if the rules allow it;
            /// `NotFound` when the group does not exist.
            async fn add_group_in<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                policy: &FeatureRolloutPolicy,
                group_id: Uuid,
                now: Timestamp,
            ) -> StoreResult<Result<(), RuleViolation>> {
                let gid = group_id.to_string();
                let group = sqlx::query("SELECT display_name, membership_kind FROM directory_groups WHERE id = $1")
                    .bind(&gid)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(map_err)?
                    .ok_or(StoreError::NotFound)?;
                let kind: String = group.try_get("membership_kind").map_err(map_err)?;
                let mut facts = GroupFacts {
                    id: group_id,
                    display_name: group.try_get("display_name").map_err(map_err)?,
                    membership_kind: MembershipKind::parse(&kind).ok_or_else(|| corrupt("group membership_kind", &kind))?,
                    user_members: 0,
                    group_members: 0,
                    contact_members: 0,
                };
                let counts = sqlx::query("SELECT member_kind, COUNT(*) AS n FROM group_members WHERE group_id = $1 GROUP BY member_kind")
                    .bind(&gid)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(map_err)?;
                for row in &counts {
                    let kind: String = row.try_get("member_kind").map_err(map_err)?;
                    let n: i64 = row.try_get("n").map_err(map_err)?;
                    let n = u64::try_from(n).map_err(|_| corrupt("group member count", n))?;
                    match MemberKind::parse(&kind).ok_or_else(|| corrupt("member_kind", &kind))? {
                        MemberKind::User => facts.user_members = n,
                        MemberKind::Group => facts.group_members = n,
                        MemberKind::Contact => facts.contact_members = n,
                    }
                }
                if let Err(v) = cutover_core::staged::check_add_group(policy, &facts) {
                    return Ok(Err(v));
                }
                sqlx::query("INSERT INTO feature_rollout_groups (policy_id, group_id, added_at) VALUES ($1, $2, $3)")
                    .bind(policy.id.to_string())
                    .bind(&gid)
                    .bind(now.millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| match map_err(e) {
                        // The group was deleted meanwhile (PostgreSQL: after the read above).
                        StoreError::Conflict(msg) if !msg.starts_with("already") => StoreError::NotFound,
                        other => other,
                    })?;
                Ok(Ok(()))
            }

            fn sync_server_from(row: &<$db as sqlx::Database>::Row) -> StoreResult<SyncServerRecord> {
                let json = |col: &str| -> StoreResult<Option<Value>> {
                    let raw: Option<String> = row.try_get(col).map_err(map_err)?;
                    raw.map(|r| serde_json::from_str(&r).map_err(|e| corrupt(col, e))).transpose()
                };
                Ok(SyncServerRecord {
                    name: row.try_get("name").map_err(map_err)?,
                    client_id: row.try_get("client_id").map_err(map_err)?,
                    host: row.try_get("host").map_err(map_err)?,
                    version: row.try_get("version").map_err(map_err)?,
                    staging: row.try_get("staging").map_err(map_err)?,
                    registered_at: Timestamp(row.try_get("registered_at").map_err(map_err)?),
                    last_seen_at: Timestamp(row.try_get("last_seen_at").map_err(map_err)?),
                    watermark: row.try_get("watermark").map_err(map_err)?,
                    last_report: json("last_report")?,
                    pending: json("pending")?,
                    alert: row.try_get("alert").map_err(map_err)?,
                })
            }

            /// Read the lease with its row locked for the rest of the transaction (a no-op
            /// UPDATE: PostgreSQL locks the row, SQLite takes the write lock).
            async fn lock_lease<'c>(tx: &mut sqlx::Transaction<'c, $db>) -> StoreResult<Lease> {
                let row = sqlx::query("UPDATE sync_lease SET epoch = epoch WHERE id = 1 RETURNING epoch, holder")
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(map_err)?;
                lease_from(row.try_get("epoch").map_err(map_err)?, row.try_get("holder").map_err(map_err)?)
            }

            async fn write_lease<'c>(tx: &mut sqlx::Transaction<'c, $db>, lease: &Lease, now: Timestamp) -> StoreResult<()> {
                sqlx::query("UPDATE sync_lease SET epoch = $1, holder = $2, changed_at = $3 WHERE id = 1")
                    .bind(lease.epoch as i64)
                    .bind(&lease.holder)
                    .bind(now.millis())
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn id_by_anchor<'c>(tx: &mut sqlx::Transaction<'c, $db>, table: &str, anchor: &str) -> StoreResult<Option<String>> {
                let sql = if table == "users" {
                    "SELECT id FROM users WHERE immutable_id = $1 AND source = 'synced'"
                } else {
                    "SELECT id FROM directory_groups WHERE immutable_id = $1 AND source = 'synced'"
                };
                let row = sqlx::query(sql).bind(anchor).fetch_optional(&mut **tx).await.map_err(map_err)?;
                row.map(|r| r.try_get("id").map_err(map_err)).transpose()
            }

            /// Apply one op inside the batch transaction. `Ok(Some(reason))`: the op was refused
            /// (nothing of it written); the rest of the batch still applies.
            async fn apply_sync_op<'c>(
                tx: &mut sqlx::Transaction<'c, $db>,
                op: &SyncOp,
                sealed: Option<String>,
                now: i64,
                result: &mut SyncBatchResult,
                known_domains: &mut std::collections::HashSet<String>,
            ) -> StoreResult<Option<String>> {
                match op {
                    SyncOp::UpsertUser(img) => {
                        let upn = match UserPrincipalName::parse(&img.user_principal_name) {
                            Ok(u) => u,
                            Err(e) => return Ok(Some(format!("invalid user principal name: {e}"))),
                        };
                        let domain = upn.domain().as_str().to_ascii_lowercase();
                        if !known_domains.contains(&domain) {
                            let known = sqlx::query("SELECT name FROM domains WHERE name = $1")
                                .bind(&domain)
                                .fetch_optional(&mut **tx)
                                .await
                                .map_err(map_err)?;
                            if known.is_none() {
                                return Ok(Some(format!("domain {domain} is not registered in Cutover")));
                            }
                            known_domains.insert(domain.clone());
                        }
                        // One lookup for both: the user with this anchor, and any other user
                        // holding the UPN.
                        let rows = sqlx::query(
                            "SELECT id, upn, source, account_enabled, immutable_id FROM users
                             WHERE immutable_id = $1 OR upn_normalized = $2",
                        )
                        .bind(&img.anchor)
                        .bind(upn.normalized())
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(map_err)?;
                        let mut existing = None;
                        for row in rows {
                            let anchor: Option<String> = row.try_get("immutable_id").map_err(map_err)?;
                            if anchor.as_deref() == Some(img.anchor.as_str()) {
                                existing = Some(row);
                            } else {
                                let other: String = row.try_get("upn").map_err(map_err)?;
                                return Ok(Some(format!("{other} is already another user's UPN")));
                            }
                        }
                        match existing {
                            None => {
                                sqlx::query(
                                    "INSERT INTO users (id, upn, upn_normalized, domain, source, immutable_id, display_name, mail, department,
                                        manager_id, account_enabled, break_glass, password_hash, password_changed_at, created_at, updated_at)
                                     VALUES ($1, $2, $3, $4, 'synced', $5, $6, $7, $8, NULL, $9, FALSE, NULL, NULL, $10, $10)",
                                )
                                .bind(Uuid::now_v7().to_string())
                                .bind(upn.as_str())
                                .bind(upn.normalized())
                                .bind(&domain)
                                .bind(&img.anchor)
                                .bind(&img.display_name)
                                .bind(&img.mail)
                                .bind(&img.department)
                                .bind(img.account_enabled)
                                .bind(now)
                                .execute(&mut **tx)
                                .await
                                .map_err(map_err)?;
                                result.added += 1;
                            }
                            Some(row) => {
                                let source: String = row.try_get("source").map_err(map_err)?;
                                if source != "synced" {
                                    return Ok(Some("the anchor belongs to a cloud user".into()));
                                }
                                let id: String = row.try_get("id").map_err(map_err)?;
                                let was_enabled: bool = row.try_get("account_enabled").map_err(map_err)?;
                                sqlx::query(
                                    "UPDATE users SET upn = $1, upn_normalized = $2, domain = $3, display_name = $4, mail = $5,
                                        department = $6, account_enabled = $7, updated_at = $8 WHERE id = $9",
                                )
                                .bind(upn.as_str())
                                .bind(upn.normalized())
                                .bind(&domain)
                                .bind(&img.display_name)
                                .bind(&img.mail)
                                .bind(&img.department)
                                .bind(img.account_enabled)
                                .bind(now)
                                .bind(&id)
                                .execute(&mut **tx)
                                .await
                                .map_err(map_err)?;
                                if was_enabled && !img.account_enabled {
                                    Self::end_user_sessions(tx, &id, now, "accountDisabled").await?;
                                }
                                result.updated += 1;
                            }
                        }
                    }
                    SyncOp::UpsertGroup(img) => {
                        let existing = sqlx::query("SELECT id, source FROM directory_groups WHERE immutable_id = $1")
                            .bind(&img.anchor)
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(map_err)?;
                        match existing {
                            None => {
                                sqlx::query(
                                    "INSERT INTO directory_groups (id, display_name, description, source, immutable_id, membership_kind, created_at)
                                     VALUES ($1, $2, $3, 'synced', $4, 'assigned', $5)",
                                )
                                .bind(Uuid::now_v7().to_string())
                                .bind(&img.display_name)
                                .bind(&img.description)
                                .bind(&img.anchor)
                                .bind(now)
                                .execute(&mut **tx)
                                .await
                                .map_err(map_err)?;
                                result.added += 1;
                            }
                            Some(row) => {
                                let source: String = row.try_get("source").map_err(map_err)?;
                                if source != "synced" {
                                    return Ok(Some("the anchor belongs to a cloud group".into()));
                                }
                                let id: String = row.try_get("id").map_err(map_err)?;
                                sqlx::query("UPDATE directory_groups SET display_name = $1, description = $2 WHERE id = $3")
                                    .bind(&img.display_name)
                                    .bind(&img.description)
                                    .bind(&id)
                                    .execute(&mut **tx)
                                    .await
                                    .map_err(map_err)?;
                                result.updated += 1;
                            }
                        }
                    }
                    SyncOp::SetManager { anchor, manager_anchor } => {
                        let Some(id) = Self::id_by_anchor(tx, "users", anchor).await? else {
                            return Ok(Some("no synced user has this anchor".into()));
                        };
                        let manager = match manager_anchor {
                            None => None,
                            Some(m) => match Self::id_by_anchor(tx, "users", m).await? {
                                Some(mid) => Some(mid),
                                None => return Ok(Some(format!("manager {m} is not a synced user"))),
                            },
                        };
                        sqlx::query("UPDATE users SET manager_id = $1, updated_at = $2 WHERE id = $3")
                            .bind(&manager)
                            .bind(now)
                            .bind(&id)
                            .execute(&mut **tx)
                            .await
                            .map_err(map_err)?;
                        result.links += 1;
                    }
                    SyncOp::SetMembers { anchor, member_anchors } => {
                        let Some(gid) = Self::id_by_anchor(tx, "groups", anchor).await? else {
                            return Ok(Some("no synced group has this anchor".into()));
                        };
                        let mut want: std::collections::BTreeSet<(String, String)> = Default::default();
                        let mut missing = Vec::new();
                        for m in member_anchors {
                            if let Some(uid) = Self::id_by_anchor(tx, "users", m).await? {
                                want.insert(("user".into(), uid));
                            } else if let Some(sub) = Self::id_by_anchor(tx, "groups", m).await? {
                                want.insert(("group".into(), sub));
                            } else {
                                missing.push(m.clone());
                            }
                        }
                        let rows = sqlx::query("SELECT member_kind, member_id FROM group_members WHERE group_id = $1")
                            .bind(&gid)
                            .fetch_all(&mut **tx)
                            .await
                            .map_err(map_err)?;
                        let mut have: std::collections::BTreeSet<(String, String)> = Default::default();
                        for r in &rows {
                            have.insert((r.try_get("member_kind").map_err(map_err)?, r.try_get("member_id").map_err(map_err)?));
                        }
                        for (kind, id) in have.difference(&want) {
                            sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_kind = $2 AND member_id = $3")
                                .bind(&gid)
                                .bind(kind)
                                .bind(id)
                                .execute(&mut **tx)
                                .await
                                .map_err(map_err)?;
                        }
                        for (kind, id) in want.difference(&have) {
                            sqlx::query("INSERT INTO group_members (group_id, member_kind, member_id, created_at) VALUES ($1, $2, $3, $4)")
                                .bind(&gid)
                                .bind(kind)
                                .bind(id)
                                .bind(now)
                                .execute(&mut **tx)
                                .await
                                .map_err(map_err)?;
                        }
                        result.links += 1;
                        if !missing.is_empty() {
                            return Ok(Some(format!(
                                "{} member(s) are not synced objects and were left out: {}",
                                missing.len(),
                                missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                            )));
                        }
                    }
                    SyncOp::SetPasswordHash { anchor, .. } | SyncOp::ClearPasswordHash { anchor } => {
                        if matches!(op, SyncOp::SetPasswordHash { .. }) && sealed.is_none() {
                            return Ok(Some("the password hash was not sealed".into()));
                        }
                        let done = sqlx::query(
                            "UPDATE users SET synced_password = $1, password_changed_at = $2, updated_at = $2
                             WHERE immutable_id = $3 AND source = 'synced'",
                        )
                        .bind(&sealed)
                        .bind(now)
                        .bind(anchor)
                        .execute(&mut **tx)
                        .await
                        .map_err(map_err)?;
                        if done.rows_affected() == 0 {
                            return Ok(Some("no synced user has this anchor".into()));
                        }
                        result.passwords += 1;
                    }
                    SyncOp::DeleteGroup { anchor } => {
                        let Some(gid) = Self::id_by_anchor(tx, "groups", anchor).await? else {
                            result.unchanged += 1;
                            return Ok(None);
                        };
                        for stmt in [
                            "DELETE FROM group_members WHERE group_id = $1",
                            "DELETE FROM group_members WHERE member_kind = 'group' AND member_id = $1",
                            "DELETE FROM directory_groups WHERE id = $1",
                        ] {
                            sqlx::query(stmt).bind(&gid).execute(&mut **tx).await.map_err(map_err)?;
                        }
                        result.deleted += 1;
                    }
                    SyncOp::DeleteUser { anchor } => {
                        let Some(id) = Self::id_by_anchor(tx, "users", anchor).await? else {
                            result.unchanged += 1;
                            return Ok(None);
                        };
                        Self::end_user_sessions(tx, &id, now, "userDeleted").await?;
                        for stmt in [
                            "DELETE FROM group_members WHERE member_kind = 'user' AND member_id = $1",
                            "UPDATE users SET manager_id = NULL WHERE manager_id = $1",
                            "DELETE FROM users WHERE id = $1",
                        ] {
                            sqlx::query(stmt).bind(&id).execute(&mut **tx).await.map_err(map_err)?;
                        }
                        result.deleted += 1;
                    }
                }
                Ok(None)
            }

            async fn end_user_sessions<'c>(tx: &mut sqlx::Transaction<'c, $db>, user_id: &str, now: i64, reason: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM sso_sessions WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
                sqlx::query("UPDATE grants SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL")
                    .bind(now)
                    .bind(reason)
                    .bind(user_id)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
                Ok(())
            }

            async fn insert_grant<'c>(tx: &mut sqlx::Transaction<'c, $db>, g: &Grant) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO grants (id, client_id, user_id, scopes, auth_time, methods, created_at, revoked_at, not_after)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(g.id.to_string())
                .bind(&g.client_id)
                .bind(g.user_id.map(|u| u.to_string()))
                .bind(json_list(&g.scopes))
                .bind(g.auth_time.map(Timestamp::millis))
                .bind(json_list(&g.methods))
                .bind(g.created_at.millis())
                .bind(g.revoked_at.map(Timestamp::millis))
                .bind(g.not_after.map(Timestamp::millis))
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
                Ok(())
            }
        }
    };
}

// The claim's row-locking clause: PostgreSQL skips requests another claimer holds; SQLite has
// one writer at a time and no such clause.
sql_store!(sqlx::Sqlite, "sqlite", "");
sql_store!(sqlx::Postgres, "postgres", "FOR UPDATE OF r SKIP LOCKED");

/// A stored staged state: the effective features (JSON list of names) and when they changed.
fn staged_from(effective: String, changed_at: Option<i64>) -> StoreResult<StagedState> {
    Ok(StagedState {
        effective: serde_json::from_str(&effective)
            .map_err(|e| corrupt("staged state effective", e))?,
        changed_at: changed_at.map(Timestamp),
    })
}

/// Ids per statement in `pta_request_states` (well under both backends' bind limits).
const PTA_STATES_PER_STATEMENT: usize = 1000;

/// Rows per statement when `insert_sign_in` writes a sign-in's per-policy results (3 + 2 per
/// row bound values, well under both backends' bind limits).
const CA_RESULTS_PER_STATEMENT: usize = 100;

/// The lock a kind of named object is changed under.
enum NamedLock {
    ConditionalAccess,
    Campaigns,
}

/// What differs between the kinds of named objects kept by the same rules (unique names, a
/// limit, optimistic updates: Conditional Access policies, named locations, campaigns): their
/// words, their lock and their statements.
struct NamedObject {
    /// What a conflict calls it.
    what: &'static str,
    lock: NamedLock,
    name_taken: &'static str,
    limit_reached: &'static str,
    /// The ids of the rows with id `$1` or normalised name `$2`.
    taken: &'static str,
    /// How many are stored (`n`).
    count: &'static str,
    /// The `modified_at` of the row with id `$1`.
    modified: &'static str,
}

const CA_POLICIES: NamedObject = NamedObject {
    what: "Conditional Access policy",
    lock: NamedLock::ConditionalAccess,
    name_taken: CA_POLICY_NAME_TAKEN,
    limit_reached: CA_POLICY_LIMIT_REACHED,
    taken: "SELECT id FROM ca_policies WHERE id = $1 OR display_name_normalized = $2",
    count: "SELECT COUNT(*) AS n FROM ca_policies",
    modified: "SELECT modified_at FROM ca_policies WHERE id = $1",
};

const NAMED_LOCATIONS: NamedObject = NamedObject {
    what: "named location",
    lock: NamedLock::ConditionalAccess,
    name_taken: NAMED_LOCATION_NAME_TAKEN,
    limit_reached: NAMED_LOCATION_LIMIT_REACHED,
    taken: "SELECT id FROM named_locations WHERE id = $1 OR display_name_normalized = $2",
    count: "SELECT COUNT(*) AS n FROM named_locations",
    modified: "SELECT modified_at FROM named_locations WHERE id = $1",
};

const CAMPAIGNS: NamedObject = NamedObject {
    what: "campaign",
    lock: NamedLock::Campaigns,
    name_taken: CAMPAIGN_NAME_TAKEN,
    limit_reached: CAMPAIGN_LIMIT_REACHED,
    taken: "SELECT id FROM campaigns WHERE id = $1 OR display_name_normalized = $2",
    count: "SELECT COUNT(*) AS n FROM campaigns",
    modified: "SELECT modified_at FROM campaigns WHERE id = $1",
};

/// Columns of an `outbox_messages` row as `insert_outbox_in` binds them.
const OUTBOX_COLUMNS: usize = 21;
/// Messages per multi-row insert (21 bound values each: well under both backends' bind limits).
const OUTBOX_ROWS_PER_STATEMENT: usize = 40;
/// Idempotency keys per statement when checking which are stored already.
const OUTBOX_KEYS_PER_STATEMENT: usize = 500;

/// The `Conflict` of a message whose idempotency key is taken.
fn outbox_key_taken(key: &str) -> StoreError {
    StoreError::Conflict(format!(
        "an outbox message with idempotency key '{key}' exists (or is given twice)"
    ))
}

/// An outbox error cut to [`MAX_OUTBOX_ERROR_LEN`] bytes, on a character boundary.
fn bounded_error(error: &str) -> &str {
    let mut end = error.len().min(MAX_OUTBOX_ERROR_LEN);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error.get(..end).unwrap_or_default()
}

/// The `modified_at` an optimistic update stores: the caller's, or one millisecond past the
/// one it read when that is not later (every update moves the token, whatever the clocks).
fn next_modified_at(given: Timestamp, expected: Timestamp) -> Timestamp {
    if given > expected {
        given
    } else {
        expected.plus_millis(1)
    }
}

fn lockout_from(state: &str) -> StoreResult<LockoutState> {
    serde_json::from_str(state).map_err(|e| corrupt("lockout state", e))
}

fn lockout_json(state: &LockoutState) -> StoreResult<String> {
    serde_json::to_string(state).map_err(|e| corrupt("lockout state", e))
}

fn lease_from(epoch: i64, holder: Option<String>) -> StoreResult<Lease> {
    let epoch = u64::try_from(epoch).map_err(|_| corrupt("sync lease epoch", epoch))?;
    Ok(Lease { epoch, holder })
}

fn op_name(op: &SyncOp) -> &'static str {
    match op {
        SyncOp::UpsertUser(_) => "upsertUser",
        SyncOp::UpsertGroup(_) => "upsertGroup",
        SyncOp::SetManager { .. } => "setManager",
        SyncOp::SetMembers { .. } => "setMembers",
        SyncOp::SetPasswordHash { .. } => "setPasswordHash",
        SyncOp::ClearPasswordHash { .. } => "clearPasswordHash",
        SyncOp::DeleteGroup { .. } => "deleteGroup",
        SyncOp::DeleteUser { .. } => "deleteUser",
    }
}

#[cfg(test)]
mod tests {
    use cutover_core::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

    #[test]
    fn page_sizes_are_clamped() {
        assert_eq!(super::clamp_top(0), i64::from(DEFAULT_PAGE_SIZE));
        assert_eq!(super::clamp_top(MAX_PAGE_SIZE), i64::from(MAX_PAGE_SIZE));
        assert_eq!(
            super::clamp_top(MAX_PAGE_SIZE + 1),
            i64::from(MAX_PAGE_SIZE)
        );
        assert_eq!(super::clamp_top(1), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envelopes_do_not_linger_sqlite() {
        let dir = std::env::temp_dir().join(format!("cutover-store-env-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite:{}", dir.join("e.db").display());
        let store = crate::connect(&url).await.expect("open sqlite");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("second pool");
        crate::conformance::envelopes_do_not_linger(&*store, async || count_envelopes(&pool).await)
            .await;
        pool.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn envelopes_do_not_linger_postgres() {
        let base = crate::tests::postgres_url();
        let url = crate::tests::fresh_postgres(&base).await;
        let store = crate::connect(&url).await.expect("open postgres");
        let pool = sqlx::PgPool::connect(&url).await.expect("second pool");
        crate::conformance::envelopes_do_not_linger(&*store, async || count_envelopes(&pool).await)
            .await;
        pool.close().await;
    }

    async fn count_envelopes<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> i64
    where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
        for<'q> DB::Arguments: sqlx::IntoArguments<DB>,
        i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
        usize: sqlx::ColumnIndex<DB::Row>,
    {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) FROM pta_envelopes")
            .fetch_one(pool)
            .await
            .expect("count envelopes")
            .get::<i64, _>(0)
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            super::url_with_database("postgres://u:p@h:5/db", "x"),
            "postgres://u:p@h:5/x"
        );
        assert_eq!(
            super::url_with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(
            super::url_with_database("postgres://h", "x"),
            "postgres://h/x"
        );
    }
}
