//! `cutover bench`: measure Cutover's throughput on this machine as ratios against the
//! physical limits measured in the same run — full password sign-ins per second against raw
//! argon2id verifications per second, token grants per second against raw ES256 signatures
//! per second — plus latency percentiles, idle memory and startup time of a real
//! `cutover serve` process. Staged rollout adds two measures: routing decisions per second in
//! the pure core ([`routing`]), and managed sign-ins of staged users against the same
//! sign-ins without staged rollout. Passkey sign-ins ([`passkey`]) are divided by raw P-256
//! signature verifications per second. Conditional Access ([`ca`]) adds policy evaluation per
//! sign-in in the pure core with 1, 50 and 200 policies, and password sign-ins with 200
//! policies against the same sign-ins with none. Every loop is bounded in count and in time;
//! servers listen on 127.0.0.1 only (their issuer is `http://localhost:PORT`, which passkeys
//! need).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutover_core::staged::{FeatureSet, RolloutFeature, SignInEnd};
use cutover_server::crypto::{Argon2Params, Es256Key};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[path = "bench_ca.rs"]
mod ca;
#[path = "bench_campaign.rs"]
mod campaign;
#[path = "bench_passkey.rs"]
mod passkey;
#[path = "bench_routing.rs"]
mod routing;

/// No phase runs longer than this, whatever the counts say.
pub const PHASE_TIME_LIMIT: Duration = Duration::from_secs(60);
/// How long a benchmark server may take to start.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    cutover bench                                   # SQLite only\n  \
    cutover bench --postgres postgres://cutover:cutover@127.0.0.1:55432/cutover\n  \
    scripts/bench.sh                                # release build, starts PostgreSQL, runs both\n\n\
    Ratios, not raw numbers, are the result: they compare Cutover with the cost of the\n\
    cryptography it cannot avoid, measured on the same cores in the same run.")]
pub struct BenchArgs {
    /// Also benchmark on PostgreSQL: a base URL whose role may CREATE DATABASE (a fresh database is made).
    #[arg(long)]
    pub postgres: Option<String>,
    /// Full password sign-ins per backend.
    #[arg(long, default_value_t = 300)]
    pub signins: usize,
    /// Client-credentials and refresh-token grants per backend (each).
    #[arg(long, default_value_t = 2000)]
    pub grants: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Raw argon2id verifications for the baseline.
    #[arg(long, default_value_t = 400)]
    pub hashes: usize,
    /// Raw ES256 signatures for the baseline.
    #[arg(long, default_value_t = 20000)]
    pub signatures: usize,
    /// Raw P-256 signature verifications (a passkey assertion's check) for the baseline.
    #[arg(long, default_value_t = 20000)]
    pub passkey_verifications: usize,
    /// Users in the in-memory directory of the core routing phase.
    #[arg(long, default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub routing_users: usize,
    /// Groups in the in-memory directory of the core routing phase (ten policies target ten each).
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(routing::GROUPS_PER_POLICY as u64..))]
    pub routing_groups: usize,
    /// Routing decisions in the core, for each of the two variants (index prebuilt, index built per decision).
    #[arg(long, default_value_t = 2_000_000)]
    pub routing_decisions: usize,
    /// Conditional Access evaluations in the core, for each policy count (1, 50 and 200).
    #[arg(long, default_value_t = 20_000)]
    pub ca_evaluations: usize,
    /// Groups the signing-in user of the core Conditional Access phase is a direct member of.
    #[arg(long, default_value_t = 10_000)]
    pub ca_groups: usize,
    /// Members of the wave whose progress the core campaign phase computes.
    #[arg(long, default_value_t = 100_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub campaign_members: usize,
    /// Progress computations of the core campaign phase (and sorts of its baseline).
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub campaign_rounds: usize,
    /// Campaign e-mails per backend, through the outbox to an SMTP sink in this process (and
    /// as many raw SMTP sends for the baseline).
    #[arg(long, default_value_t = 1000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub emails: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Throughput and latency of one phase.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Phase {
    pub(crate) done: usize,
    pub(crate) per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

pub(crate) fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_ms.len() as f64 - 1.0)).round() as usize;
    sorted_ms[rank.min(sorted_ms.len() - 1)]
}

pub(crate) fn summarize(mut latencies_ms: Vec<f64>, elapsed: Duration) -> Phase {
    latencies_ms.sort_by(f64::total_cmp);
    Phase {
        done: latencies_ms.len(),
        per_sec: latencies_ms.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(&latencies_ms, 50.0),
        p99_ms: percentile(&latencies_ms, 99.0),
    }
}

pub(crate) fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:<34} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Run `work` on every core until `count` items are done or the time limit passes.
fn parallel_cpu(count: usize, what: &str, work: impl Fn() + Send + Sync + 'static) -> Phase {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let pb = bar(count, what);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (next, work, pb) = (next.clone(), work.clone(), pb.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count
                    && start.elapsed() < PHASE_TIME_LIMIT
                {
                    let t = Instant::now();
                    work();
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    pb.inc(1);
                }
                lat
            })
        })
        .collect();
    let lat: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    summarize(lat, elapsed)
}

/// Run `count` async operations with `concurrency` clients, bounded by the time limit.
async fn parallel_http<F, Fut>(
    count: usize,
    concurrency: usize,
    what: &str,
    op: F,
) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let (lat, elapsed) =
        parallel_http_samples(count, concurrency, what, PHASE_TIME_LIMIT, op).await?;
    Ok(summarize(lat, elapsed))
}

/// [`parallel_http`] bounded by `limit`, returning the latencies (ms) and the wall time, so
/// that several runs can be summarised together.
async fn parallel_http_samples<F, Fut>(
    count: usize,
    concurrency: usize,
    what: &str,
    limit: Duration,
    op: F,
) -> anyhow::Result<(Vec<f64>, Duration)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let pb = bar(count, what);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, op, pb) = (next.clone(), op.clone(), pb.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || start.elapsed() >= limit {
                    break;
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                pb.inc(1);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    Ok((lat, elapsed))
}

/// A `cutover serve` child on loopback; killed on drop.
struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the server reports it.
    base: String,
    /// `http://localhost:PORT`: the issuer, and the origin of passkey ceremonies (a WebAuthn
    /// relying-party id is a host name, so an issuer on an IP address has no passkeys).
    origin: String,
    startup: Duration,
    creds: Value,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data_dir: &Path, database: &str, extra: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the cutover binary")?;
        // The issuer must name the port, so the port is chosen here: a free one, released
        // just before the server binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free loopback port")?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let origin = format!("http://localhost:{port}");
        let started = Instant::now();
        let mut child = Command::new(exe)
            .args(["serve", "--listen", &listen, "--issuer", &origin])
            .args(["--database", database])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .env("CUTOVER_LOG", "error")
            .env_remove("CUTOVER_WEBAUTHN_RP_ID")
            // The server must hash with the same (default) parameters the baseline uses.
            .env_remove("CUTOVER_ARGON2_MEMORY_KIB")
            .env_remove("CUTOVER_ARGON2_ITERATIONS")
            .env_remove("CUTOVER_ARGON2_PARALLELISM")
            .env_remove("CUTOVER_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting cutover serve")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            let line = rx
                .recv_timeout(STARTUP_LIMIT)
                .context("cutover serve did not start in time")?;
            if let Some(rest) = line.strip_prefix("Cutover is listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        let startup = started.elapsed();
        let creds: Value = serde_json::from_str(&std::fs::read_to_string(
            data_dir.join("admin-credentials"),
        )?)?;
        Ok(Self {
            child,
            base,
            origin,
            startup,
            creds,
        })
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }
}

fn form_field(html: &str, name: &str) -> anyhow::Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .with_context(|| format!("no {name} field in the sign-in page"))?
        + marker.len();
    let end = html[start..].find('"').context("unterminated field")? + start;
    Ok(html[start..end].to_owned())
}

fn location(res: &reqwest::Response) -> anyhow::Result<String> {
    Ok(res
        .headers()
        .get("location")
        .context("expected a redirect")?
        .to_str()?
        .to_owned())
}

struct Target {
    base: String,
    client_id: String,
    client_secret: String,
    redirect: String,
    users: Vec<String>,
    password: String,
    /// Each user's own secret (a Temporary Access Pass), by the index in `users`; empty:
    /// everyone's is `password`.
    secrets: Vec<String>,
}

async fn admin_token(base: &str, creds: &Value) -> anyhow::Result<String> {
    let res: Value = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(
            creds["clientId"].as_str().unwrap_or_default(),
            creds["clientSecret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    res["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no admin token")
}

/// The benchmark server's admin API, with a token of its admin application.
struct AdminApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminApi {
    async fn login(server: &Server) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::new(),
            base: server.base.clone(),
            token: admin_token(&server.base, &server.creds).await?,
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let res = req.bearer_auth(&self.token).send().await?;
        if !res.status().is_success() {
            bail!(
                "seeding ({what}) {}: {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
        Ok(res.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .json(&body);
        self.send(req, &format!("POST {path}")).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let req = self.http.get(format!("{}/api/v1{path}", self.base));
        self.send(req, &format!("GET {path}")).await
    }
}

fn id_of(v: &Value) -> anyhow::Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no id in {v}"))
}

async fn seed(server: &Server, users: usize) -> anyhow::Result<Target> {
    let api = AdminApi::login(server).await?;
    api.post("/domains", json!({"id": "bench.example"})).await?;
    let password = "Bench-Password-123".to_string();
    let mut names = Vec::new();
    for i in 0..users {
        let upn = format!("user{i}@bench.example");
        api.post("/users", json!({"userPrincipalName": upn, "displayName": format!("User {i}"), "passwordProfile": {"password": password}})).await?;
        names.push(upn);
    }
    let redirect = "http://127.0.0.1:9/cb".to_string();
    let app = api
        .post(
            "/applications",
            json!({"displayName": "Bench", "redirectUris": [redirect]}),
        )
        .await?;
    Ok(Target {
        base: server.base.clone(),
        client_id: app["clientId"].as_str().context("clientId")?.to_owned(),
        client_secret: app["clientSecret"]
            .as_str()
            .context("clientSecret")?
            .to_owned(),
        redirect,
        users: names,
        password,
        secrets: Vec::new(),
    })
}

/// The federated domain of the staged-rollout phase.
const STAGED_DOMAIN: &str = "staged.example";
const POLICIES: &str = "/policies/featureRolloutPolicies";

/// The features a staged user's groups call for: every enabled policy of the staged phase
/// targets the same groups.
fn staged_features() -> FeatureSet {
    FeatureSet::of(&[
        RolloutFeature::PasswordHashSync,
        RolloutFeature::SeamlessSso,
        RolloutFeature::MultiFactorAuthentication,
        RolloutFeature::CertificateBasedAuthentication,
    ])
}

/// Seed the staged-rollout phase through the admin API: an upstream IdP (never contacted), a
/// federated domain, ten groups, policies for every feature (passwordHashSync, seamlessSso,
/// multiFactorAuthentication and certificateBasedAuthentication enabled with the ten groups;
/// passthroughAuthentication created disabled, since it cannot be enabled with
/// passwordHashSync), and `users` synced users with the plain phase's password, each in one
/// group. The benchmark has no upstream to complete the one federated sign-in that would switch
/// them, so their effective state is set in the database directly, as that sign-in would.
/// Returns a target for the same application as `plain`.
async fn seed_staged(
    server: &Server,
    database: &str,
    plain: &Target,
    users: usize,
) -> anyhow::Result<Target> {
    let api = AdminApi::login(server).await?;
    let idp = api
        .post(
            "/identityProviders",
            json!({"displayName": "Legacy IdP (bench, never contacted)", "issuer": "https://idp.bench.example", "clientId": "cutover-bench", "clientSecret": "bench-upstream-secret"}),
        )
        .await?;
    api.post(
        "/domains",
        json!({"id": STAGED_DOMAIN, "authenticationType": "federated", "identityProviderId": id_of(&idp)?}),
    )
    .await?;
    let mut groups = Vec::new();
    for n in 0..routing::GROUPS_PER_POLICY {
        let g = api
            .post(
                "/groups",
                json!({"displayName": format!("Staged pilot {n}")}),
            )
            .await?;
        groups.push(id_of(&g)?);
    }
    // passwordHashSync first: seamlessSso may only be enabled next to a password feature.
    for (feature, enabled) in [
        (RolloutFeature::PasswordHashSync, true),
        (RolloutFeature::SeamlessSso, true),
        (RolloutFeature::MultiFactorAuthentication, true),
        (RolloutFeature::CertificateBasedAuthentication, true),
        (RolloutFeature::PassthroughAuthentication, false),
    ] {
        let p = api
            .post(
                POLICIES,
                json!({"displayName": format!("Bench {feature}"), "feature": feature.as_str(), "isEnabled": enabled}),
            )
            .await?;
        if enabled {
            // The groups go in while they are empty (a group may have at most 200 members
            // when first added).
            let path = format!("{POLICIES}/{}/appliesTo", id_of(&p)?);
            for g in &groups {
                api.post(&path, json!({"id": g})).await?;
            }
        }
    }
    let mut names = Vec::new();
    let mut ids = Vec::new();
    for i in 0..users {
        let upn = format!("staged{i}@{STAGED_DOMAIN}");
        let u = api
            .post(
                "/users",
                json!({"userPrincipalName": upn, "displayName": format!("Staged {i}"), "source": "synced", "immutableId": format!("bench-anchor-{i}"), "passwordProfile": {"password": plain.password}}),
            )
            .await?;
        let id = id_of(&u)?;
        api.post(
            &format!("/groups/{}/members", groups[i % groups.len()]),
            json!({"id": id, "memberType": "user"}),
        )
        .await?;
        names.push(upn);
        ids.push(id);
    }

    // What the users' first (federated) sign-in would have stored: effective = desired.
    let store = cutover_store::connect(database)
        .await
        .map_err(|e| anyhow::anyhow!("opening the benchmark database: {e}"))?;
    let now = cutover_core::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    );
    for upn in &names {
        let user = store
            .get_user_by_upn(&upn.to_ascii_lowercase())
            .await
            .map_err(|e| anyhow::anyhow!("reading {upn}: {e}"))?
            .with_context(|| format!("{upn} was created but cannot be read back"))?
            .user;
        let (_, after) = store
            .finish_staged_sign_in(
                &user,
                staged_features(),
                SignInEnd::InteractiveCompleted,
                now,
                uuid::Uuid::new_v4(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("setting the effective state of {upn}: {e}"))?;
        if after.effective != staged_features() {
            bail!(
                "the effective state of {upn} is {:?} after the switch, not {:?}",
                after.effective,
                staged_features()
            );
        }
    }
    drop(store);

    // The server must agree: staged, routed to password hash sync, nothing pending (so that
    // the measured sign-ins switch nothing and write no audit rows).
    for (upn, id) in names.iter().zip(&ids) {
        let view = api.get(&format!("/users/{id}/stagedRollout")).await?;
        if view["route"]["reason"] != "stagedRolloutPasswordHashSync"
            || view["pendingChange"] != false
        {
            bail!(
                "staged rollout is not in effect for {upn}: the server routes it as {} (pending change: {}); expected stagedRolloutPasswordHashSync with nothing pending\n{view:#}",
                view["route"]["reason"],
                view["pendingChange"]
            );
        }
    }
    Ok(Target {
        base: plain.base.clone(),
        client_id: plain.client_id.clone(),
        client_secret: plain.client_secret.clone(),
        redirect: plain.redirect.clone(),
        users: names,
        password: plain.password.clone(),
        secrets: Vec::new(),
    })
}

/// The Temporary Access Pass phase: passes enabled (multi-use, 8 hours), and `users` cloud
/// users (`{prefix}{i}@bench.example`) of the plain phase's domain each holding one, so their
/// sign-ins go to the pass page.
async fn seed_tap(
    server: &Server,
    plain: &Target,
    users: usize,
    prefix: &str,
) -> anyhow::Result<Target> {
    let api = AdminApi::login(server).await?;
    let req = api
        .http
        .put(format!("{}/api/v1/policies/temporaryAccessPass", api.base))
        .json(&json!({"enabled": true, "defaultLifetimeSecs": 8 * 3600, "minLifetimeSecs": 3600,
                      "maxLifetimeSecs": 8 * 3600, "length": 8, "defaultOneTime": false, "requireOneTime": false}));
    api.send(req, "PUT /policies/temporaryAccessPass").await?;
    let mut names = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..users {
        let upn = format!("{prefix}{i}@bench.example");
        api.post(
            "/users",
            json!({"userPrincipalName": upn, "displayName": format!("Pass holder {prefix} {i}")}),
        )
        .await?;
        let pass = api
            .post(
                &format!("/users/{upn}/authentication/temporaryAccessPassMethods"),
                json!({"isUsableOnce": false}),
            )
            .await?;
        secrets.push(
            pass["temporaryAccessPass"]
                .as_str()
                .context("no pass in the answer")?
                .to_owned(),
        );
        names.push(upn);
    }
    Ok(Target {
        base: plain.base.clone(),
        client_id: plain.client_id.clone(),
        client_secret: plain.client_secret.clone(),
        redirect: plain.redirect.clone(),
        users: names,
        password: String::new(),
        secrets,
    })
}

/// A new browser: its own cookie jar, redirects not followed. `localhost` (the origin passkeys
/// need) is pinned to the loopback address the server listens on, whatever the resolver says.
fn browser(base: &str) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none());
    let url = url::Url::parse(base)?;
    if url.host_str() == Some("localhost") {
        let port = url
            .port_or_known_default()
            .context("no port in the base URL")?;
        builder = builder.resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Ok(builder.build()?)
}

/// The application's authorization request (PKCE) in `http`: returns the code verifier and
/// the sign-in page it is sent to.
async fn authorize(http: &reqwest::Client, t: &Target) -> anyhow::Result<(String, String)> {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = cutover_core::pkce::s256_challenge(&verifier);
    let mut url = url::Url::parse(&format!("{}/oauth2/authorize", t.base))?;
    url.query_pairs_mut()
        .append_pair("client_id", &t.client_id)
        .append_pair("redirect_uri", &t.redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile offline_access")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let res = http.get(url).send().await?;
    let login = location(&res)?;
    let html = http
        .get(format!("{}{login}", t.base))
        .send()
        .await?
        .text()
        .await?;
    Ok((verifier, html))
}

/// The application's side of the end of a sign-in: the code from `back` (the redirect to the
/// application) exchanged for tokens. Returns the token response.
async fn redeem(
    http: &reqwest::Client,
    t: &Target,
    back: &str,
    verifier: &str,
) -> anyhow::Result<Value> {
    let code = url::Url::parse(back)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("no code: sign-in failed")?;
    let tokens: Value = http
        .post(format!("{}/oauth2/token", t.base))
        .basic_auth(&t.client_id, Some(&t.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &t.redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await?
        .json()
        .await?;
    if tokens.get("access_token").is_none() {
        bail!("token exchange failed: {tokens}");
    }
    Ok(tokens)
}

/// One full browser sign-in over HTTP: authorize → identifier → password → code → token.
/// Returns the token response.
async fn full_sign_in(t: &Target, upn: &str) -> anyhow::Result<Value> {
    password_sign_in(&browser(&t.base)?, t, upn).await
}

/// [`full_sign_in`] in the browser `http`, which keeps the session cookie it sets.
async fn password_sign_in(http: &reqwest::Client, t: &Target, upn: &str) -> anyhow::Result<Value> {
    let (verifier, html) = authorize(http, t).await?;
    let txn = form_field(&html, "t")?;
    let res = http
        .post(format!("{}/login/identifier", t.base))
        .form(&[
            ("t", txn.as_str()),
            ("csrf", &form_field(&html, "csrf")?),
            ("username", upn),
        ])
        .send()
        .await?;
    let next = location(&res)?;
    if !next.starts_with("/login/password") {
        bail!("the identifier step for {upn} went to {next}, not to Cutover's password page");
    }
    let html = http
        .get(format!("{}{next}", t.base))
        .send()
        .await?
        .text()
        .await?;
    let secret = t
        .users
        .iter()
        .position(|u| u == upn)
        .and_then(|i| t.secrets.get(i))
        .unwrap_or(&t.password);
    let res = http
        .post(format!("{}/login/password", t.base))
        .form(&[
            ("t", txn.as_str()),
            ("csrf", &form_field(&html, "csrf")?),
            ("password", secret),
        ])
        .send()
        .await?;
    let back = location(&res)?;
    redeem(http, t, &back, &verifier).await
}

/// One round of full sign-ins of `t`'s users.
async fn sign_in_round(
    t: &Arc<Target>,
    count: usize,
    concurrency: usize,
    what: &str,
    limit: Duration,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let t = t.clone();
    parallel_http_samples(count, concurrency, what, limit, move |i| {
        let t = t.clone();
        async move {
            full_sign_in(&t, &t.users[i % t.users.len()]).await?;
            Ok(())
        }
    })
    .await
}

/// Full password sign-ins without staged rollout (cloud users of a managed domain) and with it
/// (staged synced users of a federated domain), `args.signins` of each. After one untimed
/// sign-in per client of each kind, the two alternate plain, staged, staged, plain, so that
/// warm-up and drifts of the machine's load fall on both alike. Each kind is bounded by
/// [`PHASE_TIME_LIMIT`] in all.
async fn plain_and_staged_sign_ins(
    args: &BenchArgs,
    backend: &str,
    plain: &Arc<Target>,
    staged: &Arc<Target>,
) -> anyhow::Result<(Phase, Phase)> {
    let conc = args.concurrency.max(1);
    for (t, what) in [(plain, "plain"), (staged, "staged")] {
        sign_in_round(
            t,
            conc,
            conc,
            &format!("[{backend}] warm-up, {what}"),
            PHASE_TIME_LIMIT,
        )
        .await?;
    }
    let halves = [args.signins / 2, args.signins - args.signins / 2];
    let rounds = [(0, 0), (1, 0), (1, 1), (0, 1)];
    let mut samples = [(Vec::new(), Duration::ZERO), (Vec::new(), Duration::ZERO)];
    for (kind, half) in rounds {
        let (t, name) = if kind == 0 {
            (plain, "full password sign-ins")
        } else {
            (staged, "staged-rollout sign-ins")
        };
        let (lat, elapsed) = sign_in_round(
            t,
            halves[half],
            args.concurrency,
            &format!("[{backend}] {name} ({}/2)", half + 1),
            PHASE_TIME_LIMIT / 2,
        )
        .await?;
        samples[kind].0.extend(lat);
        samples[kind].1 += elapsed;
    }
    let [(plain_lat, plain_time), (staged_lat, staged_time)] = samples;
    Ok((
        summarize(plain_lat, plain_time),
        summarize(staged_lat, staged_time),
    ))
}

#[derive(Debug, serde::Serialize)]
struct BackendResult {
    backend: String,
    startup_ms: f64,
    idle_rss_mib: f64,
    signins: Phase,
    /// The same sign-ins by synced users whom staged rollout routes to the password page.
    staged_signins: Phase,
    /// Staged sign-ins per second ÷ plain sign-ins per second.
    staged_over_plain: f64,
    /// The same full sign-ins with a Temporary Access Pass instead of the password.
    tap_signins: Phase,
    /// Pass sign-ins per second ÷ plain password sign-ins per second.
    tap_over_plain: f64,
    /// Full sign-ins with a passkey (assertion verified, counter advanced, code, tokens).
    passkey_signins: Phase,
    /// Passkey sign-ins per second ÷ raw P-256 signature verifications per second.
    passkey_over_p256: f64,
    client_credentials: Phase,
    refresh: Phase,
    /// Full password sign-ins with 200 Conditional Access policies and without.
    conditional_access: ca::ServerResult,
    /// Campaign e-mails through the outbox against raw SMTP sends.
    campaign_emails: campaign::EmailResult,
}

async fn bench_backend(
    args: &BenchArgs,
    backend: &str,
    database: &str,
    dir: &Path,
    p256_per_sec: f64,
    sink: &campaign::Sink,
    raw_smtp_per_sec: f64,
) -> anyhow::Result<BackendResult> {
    std::fs::create_dir_all(dir)?;
    let smtp = [
        "--smtp-host".to_owned(),
        "127.0.0.1".to_owned(),
        "--smtp-port".to_owned(),
        sink.port.to_string(),
        "--smtp-tls".to_owned(),
        "none".to_owned(),
        "--mail-from".to_owned(),
        "IT Security <it@bench.example>".to_owned(),
    ];
    let server = Server::start(dir, database, &smtp)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = server.rss_kib().unwrap_or(0) as f64 / 1024.0;
    eprintln!(
        "[{backend}] started in {} ms, idle RSS {rss:.1} MiB; seeding",
        server.startup.as_millis()
    );
    let target = Arc::new(seed(&server, args.concurrency.max(1)).await?);

    // Staged rollout: synced users of a federated domain whom their effective
    // passwordHashSync routes to the password page. One sign-in first checks that it does.
    let staged_target =
        Arc::new(seed_staged(&server, database, &target, args.concurrency.max(1)).await?);
    full_sign_in(&staged_target, &staged_target.users[0])
        .await
        .with_context(|| {
            format!(
                "[{backend}] staged rollout check: {} is in the passwordHashSync rollout and effectively enabled, so its sign-in must land on Cutover's password page and succeed",
                staged_target.users[0]
            )
        })?;
    let (signins, staged_signins) =
        plain_and_staged_sign_ins(args, backend, &target, &staged_target).await?;

    // Temporary Access Pass sign-ins: the same pages and token exchange, a keyed-hash check
    // and an atomic use instead of argon2id. One untimed round first.
    let tap_target = Arc::new(seed_tap(&server, &target, args.concurrency.max(1), "tap").await?);
    let conc = args.concurrency.max(1);
    sign_in_round(
        &tap_target,
        conc,
        conc,
        &format!("[{backend}] warm-up, pass"),
        PHASE_TIME_LIMIT,
    )
    .await
    .with_context(|| {
        format!(
            "[{backend}] pass check: a pass holder's sign-in must land on the pass page and succeed"
        )
    })?;
    let (tap_lat, tap_time) = sign_in_round(
        &tap_target,
        args.signins,
        args.concurrency,
        &format!("[{backend}] pass sign-ins"),
        PHASE_TIME_LIMIT,
    )
    .await?;
    let tap_signins = summarize(tap_lat, tap_time);

    // Passkey sign-ins: users who registered a passkey through Security info after a pass
    // sign-in (untimed), then sign in with it from the identifier page. One untimed round
    // first, which also checks that they succeed.
    eprintln!("[{backend}] registering passkeys");
    let passkey_users = Arc::new(
        passkey::seed(&server, &target, conc)
            .await
            .with_context(|| format!("[{backend}] passkey registration"))?,
    );
    passkey::round(
        &passkey_users,
        conc,
        conc,
        &format!("[{backend}] warm-up, passkey"),
    )
    .await
    .with_context(|| {
        format!("[{backend}] passkey check: a registered passkey's sign-in must succeed")
    })?;
    let (passkey_lat, passkey_time) = passkey::round(
        &passkey_users,
        args.signins,
        args.concurrency,
        &format!("[{backend}] passkey sign-ins"),
    )
    .await?;
    let passkey_signins = summarize(passkey_lat, passkey_time);

    let t = target.clone();
    let http = reqwest::Client::new();
    let client_credentials = parallel_http(
        args.grants,
        args.concurrency,
        &format!("[{backend}] client_credentials grants"),
        move |_| {
            let (t, http) = (t.clone(), http.clone());
            async move {
                let res = http
                    .post(format!("{}/oauth2/token", t.base))
                    .basic_auth(&t.client_id, Some(&t.client_secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await?;
                if !res.status().is_success() {
                    bail!("client_credentials: {}", res.status());
                }
                Ok(())
            }
        },
    )
    .await?;

    // One refresh-token chain per client: each grant spends the token and keeps the new one.
    let mut chains = Vec::new();
    for i in 0..args.concurrency.max(1) {
        let tokens = full_sign_in(&target, &target.users[i % target.users.len()]).await?;
        chains.push(tokio::sync::Mutex::new(
            tokens["refresh_token"]
                .as_str()
                .context("no refresh token")?
                .to_owned(),
        ));
    }
    let chains = Arc::new(chains);
    let t = target.clone();
    let http = reqwest::Client::new();
    let conc = args.concurrency.max(1);
    let refresh = parallel_http(
        args.grants,
        conc,
        &format!("[{backend}] refresh_token grants"),
        move |i| {
            let (t, http, chains) = (t.clone(), http.clone(), chains.clone());
            async move {
                let mut rt = chains[i % conc].lock().await;
                let res: Value = http
                    .post(format!("{}/oauth2/token", t.base))
                    .basic_auth(&t.client_id, Some(&t.client_secret))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", rt.as_str()),
                    ])
                    .send()
                    .await?
                    .json()
                    .await?;
                *rt = res["refresh_token"]
                    .as_str()
                    .with_context(|| format!("refresh failed: {res}"))?
                    .to_owned();
                Ok(())
            }
        },
    )
    .await?;

    eprintln!("[{backend}] campaign e-mails");
    let campaign_emails =
        campaign::email_phase(&server, sink, args.emails, raw_smtp_per_sec, backend).await?;

    // Conditional Access last: once policies exist, every token path evaluates them (the
    // refresh grants above included), so nothing else runs while they do.
    let conditional_access =
        ca::server_phase(&server, &target, backend, args.signins, args.concurrency).await?;

    Ok(BackendResult {
        backend: backend.into(),
        startup_ms: server.startup.as_secs_f64() * 1000.0,
        idle_rss_mib: rss,
        staged_over_plain: staged_signins.per_sec / signins.per_sec.max(1e-9),
        tap_over_plain: tap_signins.per_sec / signins.per_sec.max(1e-9),
        tap_signins,
        passkey_over_p256: passkey_signins.per_sec / p256_per_sec.max(1e-9),
        passkey_signins,
        signins,
        staged_signins,
        client_credentials,
        refresh,
        conditional_access,
        campaign_emails,
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!(
        "cutover bench: {cores} cores; baselines first, then each backend (release build recommended)"
    );

    let params = Argon2Params::default();
    let hash = params
        .hash(&cutover_core::Secret::new("Bench-Password-123"))
        .map_err(anyhow::Error::msg)?;
    let argon = parallel_cpu(
        args.hashes,
        "baseline: raw argon2id verifications",
        move || {
            let ok = cutover_server::crypto::verify_password(
                &cutover_core::Secret::new("Bench-Password-123"),
                &hash,
            );
            assert!(ok, "argon2 baseline verification must succeed");
        },
    );
    let (key, _) = Es256Key::generate().map_err(anyhow::Error::msg)?;
    let key = Arc::new(key);
    let claims = json!({"iss": "https://bench.example", "sub": "0190d7c6-0000-7000-8000-000000000000", "aud": "https://bench.example", "exp": 2_000_000_000, "scope": "openid"});
    let k = key.clone();
    let es256 = parallel_cpu(
        args.signatures,
        "baseline: raw ES256 signatures",
        move || {
            let _ = k.sign_jwt("at+jwt", &claims);
        },
    );
    let verifier = cutover_webauthn::raw_verifier().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        verifier.verify_once(),
        "the P-256 baseline's signature does not verify"
    );
    let p256 = parallel_cpu(
        args.passkey_verifications,
        "baseline: raw P-256 verifications",
        move || {
            assert!(
                verifier.verify_once(),
                "P-256 baseline verification must succeed"
            );
        },
    );
    let routing = routing::run(
        args.routing_users,
        args.routing_groups,
        args.routing_decisions,
        argon.per_sec,
    );
    let ca_core = ca::run_core(args.ca_evaluations, args.ca_groups, argon.per_sec);
    let now = cutover_core::Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    );
    let campaign_core = campaign::run_core(args.campaign_members, args.campaign_rounds, now);
    let sink = campaign::Sink::start().await?;
    let raw_smtp = campaign::raw_smtp(&sink, args.emails).await?;

    let scratch = std::env::temp_dir().join(format!("cutover-bench-{}", uuid::Uuid::new_v4()));
    let mut results = Vec::new();
    let sqlite_dir = scratch.join("sqlite");
    results.push(
        bench_backend(
            &args,
            "sqlite",
            &format!("sqlite:{}", sqlite_dir.join("cutover.db").display()),
            &sqlite_dir,
            p256.per_sec,
            &sink,
            raw_smtp,
        )
        .await?,
    );
    if let Some(base) = &args.postgres {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let url = cutover_store::create_postgres_database(base, &name)
            .await
            .map_err(|e| anyhow::anyhow!("creating the benchmark database: {e}"))?;
        results.push(
            bench_backend(
                &args,
                "postgres",
                &url,
                &scratch.join("postgres"),
                p256.per_sec,
                &sink,
                raw_smtp,
            )
            .await?,
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);

    println!();
    println!(
        "Cutover benchmark — {cores} cores, argon2id m={} KiB t={} p={}, concurrency {}",
        params.memory_kib, params.iterations, params.parallelism, args.concurrency
    );
    println!(
        "baseline  raw argon2id verifications/s: {:>9.1}   (p50 {:.1} ms)",
        argon.per_sec, argon.p50_ms
    );
    println!(
        "baseline  raw ES256 signatures/s:       {:>9.1}   (p50 {:.3} ms)",
        es256.per_sec, es256.p50_ms
    );
    println!(
        "baseline  raw P-256 verifications/s:    {:>9.1}   (p50 {:.3} ms)",
        p256.per_sec, p256.p50_ms
    );
    println!(
        "baseline  raw SMTP sends/s (one connection to a sink in this process): {raw_smtp:>9.1}"
    );
    println!();
    routing::print(&routing);
    println!();
    ca::print_core(&ca_core);
    println!(
        "core      campaign progress of a wave of {} members ({} passkeys): {:.1}/s (p50 {:.1} ms) = {:.3} × sorting its passkeys ({:.1}/s)",
        campaign_core.members,
        campaign_core.passkeys,
        campaign_core.per_sec,
        campaign_core.p50_ms,
        campaign_core.ratio,
        campaign_core.sort_baseline_per_sec
    );
    println!();
    println!(
        "{:<9} {:<28} {:>8} {:>10} {:>9} {:>9} {:>11}",
        "backend", "measure", "done", "per sec", "p50 ms", "p99 ms", "ratio"
    );
    for r in &results {
        let ca_row = format!("password, {} CA policies", r.conditional_access.policies);
        let rows = [
            (
                "full password sign-ins",
                &r.signins,
                r.signins.per_sec / argon.per_sec,
                "÷ argon2id/s",
            ),
            (
                "staged-rollout sign-ins",
                &r.staged_signins,
                r.staged_over_plain,
                "÷ plain sign-ins/s",
            ),
            (
                "pass (TAP) sign-ins",
                &r.tap_signins,
                r.tap_over_plain,
                "÷ plain sign-ins/s",
            ),
            (
                "passkey sign-ins",
                &r.passkey_signins,
                r.passkey_over_p256,
                "÷ P-256 verify/s",
            ),
            (
                "client_credentials grants",
                &r.client_credentials,
                r.client_credentials.per_sec / es256.per_sec,
                "÷ ES256/s",
            ),
            (
                "refresh_token grants",
                &r.refresh,
                r.refresh.per_sec / es256.per_sec,
                "÷ ES256/s",
            ),
            (
                "password, no CA policies",
                &r.conditional_access.without,
                r.conditional_access.without.per_sec / argon.per_sec,
                "÷ argon2id/s",
            ),
            (
                ca_row.as_str(),
                &r.conditional_access.with_policies,
                r.conditional_access.with_over_without,
                "÷ without CA/s",
            ),
        ];
        for (name, p, ratio, of) in rows {
            println!(
                "{:<9} {:<28} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>6.3} {of}",
                r.backend, name, p.done, p.per_sec, p.p50_ms, p.p99_ms, ratio
            );
        }
        let c = &r.conditional_access;
        println!(
            "{:<9} CA policies: {} report-only, {} enabled (forced; block, never apply to these users); users in {} of",
            r.backend, c.report_only, c.enforced, c.groups_per_user
        );
        println!(
            "{:<9} {} groups, in scope of {} report-only policies; {} results on a sign-in's record, {} applied",
            r.backend,
            c.groups,
            c.in_scope_of_first_user,
            c.results_recorded,
            c.report_only_applied
        );
        let ms = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
        println!(
            "{:<9} server CPU per sign-in: {} ms without CA policies, {} ms with {}",
            r.backend,
            ms(c.server_cpu_ms_without),
            ms(c.server_cpu_ms_with),
            c.policies
        );
        let e = &r.campaign_emails;
        println!(
            "{:<9} {:<28} {:>8} {:>10.1} {:>9} {:>9} {:>6.3} ÷ raw SMTP sends/s (the step decided in {:.0} ms)",
            r.backend,
            "campaign e-mails via outbox",
            e.messages,
            e.outbox_per_sec,
            "-",
            "-",
            e.ratio,
            e.decide_ms
        );
        println!(
            "{:<9} {:<28} {:>8.0} ms; idle RSS {:.1} MiB",
            r.backend, "startup to listening", r.startup_ms, r.idle_rss_mib
        );
    }
    if let Some(path) = &args.json {
        let doc = json!({"cores": cores, "argon2": params, "baseline": {"argon2idVerifications": argon, "es256Signatures": es256, "p256Verifications": p256}, "routing": routing, "conditionalAccess": ca_core, "campaignProgress": campaign_core, "rawSmtpSendsPerSec": raw_smtp, "backends": results});
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_at_the_edges() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn summaries_count_and_rate() {
        let p = summarize(vec![3.0, 1.0, 2.0], Duration::from_secs(2));
        assert_eq!(p.done, 3);
        assert!((p.per_sec - 1.5).abs() < 1e-9);
        assert_eq!(p.p50_ms, 2.0);
    }
}
