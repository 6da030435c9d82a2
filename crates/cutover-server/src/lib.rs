//! Cutover's HTTP shell: the OpenID Connect provider, the sign-in pages and the admin REST API.
//!
//! Handlers are thin: parse the request, load what the decision needs from the [`Store`], ask
//! `cutover_core`, then commit the result and its records. This is the only crate that knows
//! HTTP, HTML and the OAuth wire format.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use cutover_core::Timestamp;
use cutover_store::Store;
use tokio::sync::Semaphore;
use uuid::Uuid;

pub mod admin;
pub mod agents_admin;
pub mod auth_methods;
pub mod bootstrap;
pub mod break_glass;
pub mod campaigns;
pub mod clock;
pub mod conditional_access;
pub mod crypto;
pub mod error;
pub mod federation;
pub mod keys;
pub mod lockout;
pub mod metrics;
pub mod mfa;
pub mod my;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod passkeys;
pub mod pta;
pub mod rollout;
pub mod signin;
pub mod sync;
pub mod tap;
pub mod tls;
pub mod totp_enrol;
pub mod ui;

use clock::Clock;
use crypto::{Argon2Params, Hasher};
use keys::KeyRing;

/// The setting that records the fingerprint of the database's key-encryption key.
pub const KEK_FINGERPRINT_SETTING: &str = "keyEncryptionKeyFingerprint";

/// While fewer than three pass-through agents are healthy, the maintenance loop repeats its
/// warning this often.
pub const FLEET_WARNING_REPEAT: std::time::Duration = std::time::Duration::from_secs(300);

/// Password hashes computed at once per node; argon2id holds `memory_kib` each, so this bounds memory.
pub const MAX_CONCURRENT_HASHES: usize = 16;

/// What the HTTP shell needs to know that is not in the database.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The issuer URL, exactly as clients see it (no trailing slash).
    pub issuer: String,
    /// Cost of new password hashes.
    pub argon2: Argon2Params,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Seals the signing keys and the HMAC key in the database.
    pub key_encryption_key: crypto::KeyEncryptionKey,
    /// Cloud expiry of synced passwords in days (SPEC §5.2); `None`: off.
    pub synced_password_expiry_days: Option<u32>,
    /// How long one pass-through attempt waits for an agent's answer (SPEC §5.3), within
    /// `cutover_core::pta::{MIN,MAX}_REQUEST_DEADLINE_MS`; one retry may follow.
    pub pass_through_deadline_ms: i64,
    /// Passkey settings of this node (relying-party id, catalogue, attestation roots).
    pub passkeys: passkeys::PasskeyConfig,
    /// Display name of the group whose direct members may use the admin web UI (`/admin`).
    pub admin_group: String,
    /// Outgoing e-mail of the rollout campaigns (SMTP relay, sender) and enrolment guidance.
    pub campaigns: campaigns::CampaignsConfig,
}

/// The group whose members may use the admin web UI when none is configured.
pub const DEFAULT_ADMIN_GROUP: &str = "Cutover Administrators";

/// Refuse an issuer URL that would be unsafe or invalid (OpenID Connect Discovery §3).
pub fn validate_issuer(issuer: &str) -> Result<(), String> {
    let url =
        url::Url::parse(issuer).map_err(|e| format!("issuer '{}' is not a URL: {e}", issuer))?;
    if issuer.ends_with('/') {
        return Err(format!("issuer '{}' must not end with '/'", issuer));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "issuer must not contain a query or fragment (OpenID Connect Discovery §3)".into(),
        );
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if !loopback {
                return Err(format!(
                    "issuer '{}' uses plain http on a non-loopback host: tokens and passwords would cross the network unencrypted. \
                     Serve Cutover behind a TLS-terminating proxy and set the issuer to its https:// URL",
                    issuer
                ));
            }
        }
        other => {
            return Err(format!(
                "issuer scheme '{other}' is not supported; use https"
            ));
        }
    }
    Ok(())
}

impl ServerConfig {
    /// Refuse configurations that would be unsafe to run.
    pub fn validate(&self) -> Result<(), String> {
        validate_issuer(&self.issuer)?;
        use cutover_core::pta::{MAX_REQUEST_DEADLINE_MS, MIN_REQUEST_DEADLINE_MS};
        if !(MIN_REQUEST_DEADLINE_MS..=MAX_REQUEST_DEADLINE_MS)
            .contains(&self.pass_through_deadline_ms)
        {
            return Err(format!(
                "pass_through_deadline_ms must be between {MIN_REQUEST_DEADLINE_MS} and {MAX_REQUEST_DEADLINE_MS}, got {}",
                self.pass_through_deadline_ms
            ));
        }
        self.argon2.validate()
    }

    /// Cookies carry `Secure` whenever the issuer is https.
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }
}

/// Everything a handler can reach.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    pub keys: KeyRing,
    pub hasher: Hasher,
    /// A hash of a random password with the configured cost, verified when no user matched so
    /// that a wrong name takes as long as a wrong password.
    pub dummy_hash: String,
    pub hash_slots: Semaphore,
    pub metrics: metrics::Metrics,
    /// The relying party of upstream identity providers (metadata cache shared by sign-ins).
    pub federation: cutover_federation::Federation,
    /// Pass-through agents: cache, work signal, waiting sign-ins.
    pub pta: pta::PtaHub,
    /// The WebAuthn relying party, the authenticator catalogue and the attestation roots.
    pub passkeys: passkeys::PasskeyRuntime,
    /// The Conditional Access policies in force, read again after a short while.
    pub ca_policies: conditional_access::PolicyCache,
    /// Wakes this node's e-mail delivery loop when messages enter the outbox here (other
    /// nodes find them at their next poll).
    pub outbox_wake: tokio::sync::Notify,
    /// This node's view of the SMTP relay (from its delivery loop's last connections).
    pub relay: std::sync::Mutex<campaigns::mail::RelayHealth>,
}

impl AppState {
    /// Load or create the shared secrets and keys, and check the configuration.
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
    ) -> anyhow::Result<Arc<Self>> {
        config.validate().map_err(anyhow::Error::msg)?;
        let now = clock.now();
        let kek = config.key_encryption_key.clone();
        // The first node records which key-encryption key the database is sealed with; every
        // later start (of any node) must bring the same one.
        let fingerprint = kek.fingerprint();
        let recorded = store
            .init_setting(KEK_FINGERPRINT_SETTING, &fingerprint)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading the key-encryption key's fingerprint from the database failed: {e}"
                )
            })?;
        if recorded != fingerprint {
            anyhow::bail!(
                "this node's key-encryption key is not the one the database's keys are sealed with; \
                 give every node the same key file (key_encryption_key_file) as the node that set the database up"
            );
        }
        let sealed_hmac = store
            .init_setting("hmacKey", &kek.seal("hmacKey", &crypto::random_bytes(32)))
            .await
            .map_err(|e| anyhow::anyhow!("reading the server key from the database failed: {e}"))?;
        let hmac_key = kek
            .open("hmacKey", &sealed_hmac)
            .map_err(anyhow::Error::msg)?;
        let keys = KeyRing::load(store.clone(), now, kek)
            .await
            .map_err(anyhow::Error::msg)?;
        let passkeys = passkeys::PasskeyRuntime::new(&config.issuer, &config.passkeys)
            .map_err(anyhow::Error::msg)?;
        if let Some(why) = &passkeys.unavailable {
            tracing::warn!("{why}");
        }
        let params = config.argon2;
        let dummy_hash = tokio::task::spawn_blocking(move || {
            params.hash(&cutover_core::Secret::new(crypto::random_token()))
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        Ok(Arc::new(Self {
            store,
            clock,
            config,
            keys,
            hasher: Hasher::new(&hmac_key),
            dummy_hash,
            hash_slots: Semaphore::new(MAX_CONCURRENT_HASHES),
            metrics: metrics::Metrics::default(),
            federation: cutover_federation::Federation::new().map_err(anyhow::Error::msg)?,
            pta: pta::PtaHub::default(),
            passkeys,
            ca_policies: Default::default(),
            outbox_wake: tokio::sync::Notify::new(),
            relay: Default::default(),
        }))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Write a sign-in record (before any token leaves the server) and count it.
    pub async fn record_sign_in(
        &self,
        record: &cutover_core::signin_log::SignInRecord,
    ) -> Result<(), cutover_store::StoreError> {
        self.store.insert_sign_in(record).await?;
        self.metrics.count_sign_in(record);
        Ok(())
    }

    /// Hash a password on the blocking pool, bounded by [`MAX_CONCURRENT_HASHES`].
    pub async fn hash_password(
        &self,
        password: cutover_core::Secret,
    ) -> Result<String, error::ApiError> {
        let _slot = self
            .hash_slots
            .acquire()
            .await
            .map_err(|_| error::ApiError::internal("hash pool closed"))?;
        let params = self.config.argon2;
        tokio::task::spawn_blocking(move || params.hash(&password))
            .await
            .map_err(|e| error::ApiError::internal(format!("hashing task failed: {e}")))?
            .map_err(error::ApiError::internal)
    }

    /// Verify a password (or the dummy hash when `phc` is `None`) on the blocking pool.
    pub async fn verify_password(
        &self,
        password: cutover_core::Secret,
        phc: Option<String>,
    ) -> bool {
        let Ok(_slot) = self.hash_slots.acquire().await else {
            return false;
        };
        let real = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || crypto::verify_password(&password, &phc))
            .await
            .unwrap_or(false);
        ok && real
    }

    /// Check a password against a synced password hash (SPEC §5.2): recompute the on-prem hash
    /// from the typed password and compare wraps. A dummy argon2 verification runs as well, so
    /// a synced account answers in the same time as a cloud account or an unknown name.
    pub async fn verify_synced_password(
        &self,
        password: cutover_core::Secret,
        wrap: cutover_core::sync::WrappedHash,
    ) -> bool {
        let Ok(_slot) = self.hash_slots.acquire().await else {
            return false;
        };
        let dummy = self.dummy_hash.clone();
        tokio::task::spawn_blocking(move || {
            let ok = match cutover_pwhash::verify(password.expose(), &wrap) {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::error!(error = %e, "a synced password hash cannot be evaluated; the next hash sync replaces it");
                    false
                }
            };
            let _ = crypto::verify_password(&password, &dummy);
            ok
        })
        .await
        .unwrap_or(false)
    }
}

/// Per-request facts every handler may log: correlation id, client IP, User-Agent.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub id: Uuid,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The `Sec-CH-UA-Model` client hint (the phone's model, where a browser with a reduced
    /// User-Agent sends it: Cutover asks for it with `Accept-CH`).
    pub ua_model: Option<String>,
}

/// Longest `Sec-CH-UA-Model` value kept (a model name is short; longer ones are cut).
pub const MAX_UA_MODEL_LEN: usize = 64;

/// The client hints Cutover's pages ask browsers for: the phone model picks the enrolment
/// guidance and the device family of a new passkey.
pub const ACCEPT_CH: &str = "Sec-CH-UA-Model";

/// Pages whose first load should already carry the hint (the browser retries once with it):
/// where a person adds a passkey.
const CRITICAL_CH_PATHS: [&str; 2] = ["/my/security", campaigns::enrol::ENROL_PATH];

impl RequestCtx {
    fn from_parts(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        trust_forwarded_for: bool,
    ) -> Self {
        // The proxy we trust appends the address it saw: the rightmost entry. Entries to its
        // left come from the client and can be forged.
        let forwarded = trust_forwarded_for
            .then(|| {
                headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .next_back()
            })
            .flatten()
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_owned())
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok());
        Self {
            id: Uuid::now_v7(),
            ip: forwarded.or_else(|| peer.map(|p| p.ip().to_string())),
            user_agent: headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
            ua_model: headers
                .get("sec-ch-ua-model")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(MAX_UA_MODEL_LEN).collect()),
        }
    }
}

async fn request_context(
    state: axum::extract::State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ctx = RequestCtx::from_parts(req.headers(), peer, state.config.trust_forwarded_for);
    let id = ctx.id;
    let span =
        tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    req.extensions_mut().insert(ctx);
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let mut res = tracing::Instrument::instrument(next.run(req), span).await;
    state.metrics.observe_request(
        &path,
        method.as_str(),
        res.status().as_u16(),
        started.elapsed(),
    );
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert("x-request-id", v);
    }
    let html = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html {
        let h = res.headers_mut();
        h.insert("accept-ch", HeaderValue::from_static(ACCEPT_CH));
        if CRITICAL_CH_PATHS.contains(&path.as_str()) {
            h.insert("critical-ch", HeaderValue::from_static(ACCEPT_CH));
            h.append(
                axum::http::header::VARY,
                HeaderValue::from_static(ACCEPT_CH),
            );
        }
    }
    res
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    use tower_http::set_header::SetResponseHeaderLayer;
    Router::new()
        .merge(oidc::routes())
        .merge(signin::routes())
        .merge(federation::routes())
        .merge(passkeys::routes())
        .merge(my::routes())
        .merge(mfa::routes())
        .merge(totp_enrol::routes())
        .merge(ui::routes())
        .route(
            campaigns::enrol::ENROL_PATH,
            axum::routing::get(campaigns::enrol::enrol_get),
        )
        .nest(
            "/api/v1",
            admin::routes()
                .merge(sync::admin_routes())
                .merge(federation::admin_routes())
                .merge(rollout::admin_routes())
                .merge(agents_admin::admin_routes())
                .merge(tap::admin_routes())
                .merge(passkeys::admin_routes())
                .merge(auth_methods::admin_routes())
                .merge(break_glass::admin_routes())
                .merge(conditional_access::admin_routes()),
        )
        .nest(
            "/agent/v1",
            pta::routes().layer(tower_http::limit::RequestBodyLimitLayer::new(
                pta::MAX_AGENT_BODY_BYTES,
            )),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(admin::metrics))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            cutover_core::limits::MAX_BODY_BYTES,
        ))
        // Campaign definitions (templates included) are larger than other admin bodies.
        .merge(
            campaigns::pages::routes()
                .nest("/api/v1", campaigns::api::admin_routes())
                .layer(tower_http::limit::RequestBodyLimitLayer::new(
                    cutover_core::limits::MAX_CAMPAIGN_BODY_BYTES,
                )),
        )
        // The sync API moves export batches and reports: its own, larger body limit.
        .nest(
            "/sync/v1",
            sync::routes().layer(tower_http::limit::RequestBodyLimitLayer::new(
                sync::MAX_SYNC_BODY_BYTES,
            )),
        )
        .fallback(error::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            axum::http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            axum::http::header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Outermost: every response, even a 413 or a caught panic, carries its request id,
        // and everything below logs inside the request's span.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn readyz(
    state: axum::extract::State<Arc<AppState>>,
) -> Result<&'static str, error::ApiError> {
    state.store.ping().await?;
    Ok("ready")
}

/// Serve `router` on `listener` until `shutdown` resolves, finishing in-flight requests.
pub async fn serve(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = Background::start(&state);
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Long polls answer at once, so the drain does not wait for them.
            state.pta.close();
        })
        .await;
    drop(background);
    result
}

/// The node's background tasks (maintenance, the pass-through result watcher), stopped when
/// dropped.
pub(crate) struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Background {
    pub(crate) fn start(state: &Arc<AppState>) -> Self {
        Self(vec![
            tokio::spawn(maintenance(state.clone())),
            tokio::spawn(pta::result_watcher(state.clone())),
            tokio::spawn(campaigns::service::schedule_loop(state.clone())),
            tokio::spawn(campaigns::mail::delivery_loop(state.clone())),
        ])
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Background upkeep: pick up keys rotated by other nodes, purge expired rows.
pub(crate) async fn maintenance(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(
        keys::KEY_REFRESH_SECS as u64,
    ));
    let mut last_fleet_warning: Option<(std::time::Instant, String)> = None;
    loop {
        tick.tick().await;
        let now = state.now();
        // Fewer than three healthy pass-through agents: say so in the log when it starts or
        // changes, and again every FLEET_WARNING_REPEAT while it lasts.
        if let Ok(agents) = state.store.list_agents().await
            && !agents.is_empty()
        {
            let (_, warning) = pta::fleet_of(&agents, now);
            match warning {
                Some(w) => {
                    let due = last_fleet_warning.as_ref().is_none_or(|(at, said)| {
                        *said != w || at.elapsed() >= FLEET_WARNING_REPEAT
                    });
                    if due {
                        tracing::warn!("{w}");
                        last_fleet_warning = Some((std::time::Instant::now(), w));
                    }
                }
                None => {
                    if last_fleet_warning.take().is_some() {
                        tracing::info!(
                            "pass-through agents: at least {} are healthy again",
                            cutover_core::pta::MIN_HEALTHY_AGENTS
                        );
                    }
                }
            }
        }
        if let Err(e) = state.keys.refresh(now).await {
            tracing::warn!(error = %e, "could not refresh signing keys; keeping the ones loaded");
        }
        match state.store.purge_expired(now).await {
            Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired sign-in state"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "purging expired sign-in state failed; will retry")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(issuer: &str) -> ServerConfig {
        ServerConfig {
            issuer: issuer.into(),
            argon2: Argon2Params::default(),
            trust_forwarded_for: false,
            key_encryption_key: crypto::KeyEncryptionKey::generate(),
            synced_password_expiry_days: None,
            pass_through_deadline_ms: cutover_core::pta::DEFAULT_REQUEST_DEADLINE_MS,
            passkeys: Default::default(),
            admin_group: DEFAULT_ADMIN_GROUP.into(),
            campaigns: Default::default(),
        }
    }

    #[test]
    fn unsafe_issuers_are_refused() {
        assert!(cfg("http://127.0.0.1:8080").validate().is_ok());
        assert!(cfg("http://localhost:8080").validate().is_ok());
        assert!(cfg("https://login.contoso.example").validate().is_ok());
        let err = cfg("http://login.contoso.example").validate().unwrap_err();
        assert!(err.contains("TLS"), "{err}");
        assert!(cfg("https://login.contoso.example/").validate().is_err());
        assert!(cfg("https://login.contoso.example?x=1").validate().is_err());
        assert!(cfg("ftp://x.example").validate().is_err());
        assert!(cfg("not a url").validate().is_err());
        assert!(cfg("https://login.contoso.example").secure_cookies());
        assert!(!cfg("http://127.0.0.1:1").secure_cookies());
    }

    #[test]
    fn forwarded_for_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        );
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            RequestCtx::from_parts(&h, Some(peer), false).ip.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            RequestCtx::from_parts(&h, Some(peer), true).ip.as_deref(),
            Some("10.0.0.1"),
            "the rightmost entry is the one the trusted proxy added"
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("<script>"));
        assert_eq!(
            RequestCtx::from_parts(&h, Some(peer), true).ip.as_deref(),
            Some("127.0.0.1")
        );
    }
}
