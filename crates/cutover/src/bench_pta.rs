//! `cutover bench-pta`: the cost of pass-through authentication on this machine, as ratios
//! against the directory measured in the same run.
//!
//! 1. **Baseline**: password checks straight against the directory from this process, with
//!    the agent's own checker (`cutover_ldap::PasswordChecker`: the DN from its cache, one
//!    simple bind on a pooled connection) at the same concurrency.
//! 2. **Through one agent**: the server's dispatch (`cutover_server::pta::validate`: seal the
//!    password to each healthy agent, queue, long poll, open, bind, answer, wake) with a
//!    server in this process (SQLite, 127.0.0.1) and the agent as a separate
//!    `cutover agent run` process, so its CPU time and memory are its own.
//! 3. **Through three agents**.
//!
//! Every loop is bounded in count and in time; everything listens on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cutover_core::pta::PtaResult;
use cutover_ldap::PasswordChecker;
use cutover_server::pta::PtaOutcome;
use cutover_server::{AppState, ServerConfig};
use serde_json::json;

use crate::bench::{PHASE_TIME_LIMIT, Phase, bar, summarize};

/// What the reference sizing says one agent handles on a 4-core server (per second).
pub const REFERENCE_PER_AGENT: (f64, f64) = (300.0, 400.0);
/// The cores of the reference server.
pub const REFERENCE_CORES: f64 = 4.0;
/// How long the agents may take to become healthy.
const AGENT_START_LIMIT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    scripts/bench-pta.sh                    # release build, a throwaway OpenLDAP with 200 users, then this\n  \
    cutover bench-pta --directory-config dir.toml --users 200 --upn-domain bench.example\n\n\
    The directory must hold users bench0 … bench<N-1> whose mail is bench<i>@<upn-domain> and\n\
    whose password is pw-bench<i> (scripts/bench-pta.sh makes them). The result is a ratio:\n\
    pass-through validations per second ÷ direct password checks per second against the same\n\
    directory from the same host, measured in the same run.")]
pub struct BenchPtaArgs {
    /// The agents' directory configuration (TOML, as `cutover agent register --directory-config` takes).
    #[arg(long)]
    pub directory_config: PathBuf,
    /// Users bench0 … bench<N-1> in the directory.
    #[arg(long, default_value_t = 200, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub users: usize,
    /// The domain of their user principal names (their mail attribute).
    #[arg(long, default_value = "bench.example")]
    pub upn_domain: String,
    /// Password checks per phase.
    #[arg(long, default_value_t = 3000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub validations: usize,
    /// Concurrent checks.
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub concurrency: usize,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn upn(i: usize, domain: &str) -> String {
    format!("bench{i}@{domain}")
}

fn password(i: usize) -> String {
    format!("pw-bench{i}")
}

/// Run `check(i)` for `count` items with `concurrency` tasks, bounded by the phase limit.
/// Returns the phase and the number of checks whose answer was not a success.
async fn drive<F, Fut>(
    count: usize,
    concurrency: usize,
    what: &str,
    check: F,
) -> anyhow::Result<(Phase, usize)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let check = Arc::new(check);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let pb = bar(count, what);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (check, next, failed, pb) = (check.clone(), next.clone(), failed.clone(), pb.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || started.elapsed() > PHASE_TIME_LIMIT {
                    break;
                }
                let t = Instant::now();
                if !check(i).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                pb.inc(1);
            }
            lat
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(r) = tasks.join_next().await {
        all.extend(r.context("a benchmark task failed")?);
    }
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    Ok((summarize(all, elapsed), failed.load(Ordering::Relaxed)))
}

/// CPU time (user + system, ms) and resident memory (current, peak; bytes) of a process.
fn proc_usage(pid: u32) -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    // The kernel's clock tick is 100 Hz on Linux.
    Some((ticks * 10, kib("VmRSS:")?, kib("VmHWM:")?))
}

/// A `cutover agent run` child, killed on drop.
struct AgentProcess {
    child: Child,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn register_agent(
    state: &AppState,
    base: &str,
    dir: &Path,
    directory_config: &Path,
    n: usize,
) -> anyhow::Result<AgentProcess> {
    let now = state.now();
    let token = cutover_server::crypto::random_token();
    let audit = cutover_store::AuditEvent {
        id: uuid::Uuid::now_v7(),
        created_at: now,
        correlation_id: uuid::Uuid::now_v7(),
        actor: "system".into(),
        action: "createAgentRegistrationToken".into(),
        target_type: "agentRegistrationToken".into(),
        target_id: "benchmark".into(),
        target_name: None,
        before: None,
        after: None,
    };
    state
        .store
        .create_agent_token(
            &cutover_server::pta::registration_token_hash(state, &token),
            now.plus_secs(600),
            now,
            &audit,
        )
        .await?;
    let state_dir = dir.join(format!("agent-{n}"));
    let mut opts = cutover_agent::RegisterOptions::new(base, token, &state_dir, directory_config);
    opts.host = Some(format!("bench-agent-{n}"));
    opts.concurrency = 64;
    cutover_agent::register(opts).await?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let child = Command::new(exe)
        .args(["agent", "--state-dir"])
        .arg(&state_dir)
        .arg("run")
        .env("CUTOVER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start `cutover agent run`")?;
    Ok(AgentProcess { child })
}

async fn wait_healthy(state: &AppState, n: usize) -> anyhow::Result<()> {
    let until = Instant::now() + AGENT_START_LIMIT;
    loop {
        let agents = state.store.list_agents().await?;
        let (healthy, _) = cutover_server::pta::fleet_of(&agents, state.now());
        if healthy >= n {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "{healthy} of {n} agents became healthy within {} s; see the agents' messages above",
                AGENT_START_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, serde::Serialize)]
struct AgentUsage {
    cpu_ms_per_validation: f64,
    cpu_share_of_one_core: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
}

/// One pass-through phase: warm every user once (DN caches), then measure.
async fn pta_phase(
    state: &Arc<AppState>,
    args: &BenchPtaArgs,
    agents: &[AgentProcess],
    what: &str,
) -> anyhow::Result<(Phase, usize, Vec<AgentUsage>)> {
    let make = || {
        let state = state.clone();
        let users = args.users;
        let domain = args.upn_domain.clone();
        move |i: usize| {
            let state = state.clone();
            let u = i % users;
            let upn = upn(u, &domain);
            async move {
                matches!(
                    cutover_server::pta::validate(
                        &state,
                        &upn,
                        None,
                        password(u).as_bytes(),
                        uuid::Uuid::now_v7(),
                    )
                    .await,
                    Ok(PtaOutcome::Answered {
                        result: PtaResult::Success,
                        ..
                    })
                )
            }
        }
    };
    drive(
        args.users.min(args.validations),
        args.concurrency,
        &format!("{what} (warm-up)"),
        make(),
    )
    .await?;
    let before: Vec<_> = agents.iter().map(|a| proc_usage(a.child.id())).collect();
    let (phase, failed) = drive(args.validations, args.concurrency, what, make()).await?;
    let elapsed_ms = phase.done as f64 / phase.per_sec.max(1e-9) * 1000.0;
    let usage = agents
        .iter()
        .zip(before)
        .filter_map(|(a, b)| {
            let (cpu0, _, _) = b?;
            let (cpu1, rss, peak) = proc_usage(a.child.id())?;
            let cpu = cpu1.saturating_sub(cpu0) as f64;
            Some(AgentUsage {
                cpu_ms_per_validation: cpu / phase.done.max(1) as f64,
                cpu_share_of_one_core: cpu / elapsed_ms.max(1.0),
                rss_mib: rss as f64 / 1_048_576.0,
                peak_rss_mib: peak as f64 / 1_048_576.0,
            })
        })
        .collect();
    Ok((phase, failed, usage))
}

pub async fn run(args: BenchPtaArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let text = std::fs::read_to_string(&args.directory_config).with_context(|| {
        format!(
            "cannot read the directory configuration {}",
            args.directory_config.display()
        )
    })?;
    let cfg: cutover_ldap::PasswordCheckConfig = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not a directory configuration",
            args.directory_config.display()
        )
    })?;
    println!(
        "cutover bench-pta: {} checks per phase, {} concurrent, {} users, {cores} cores (server, agents, directory and load share them)",
        args.validations, args.concurrency, args.users
    );

    // ---- baseline: the directory itself ------------------------------------------------
    let checker = Arc::new(
        PasswordChecker::new(cfg.clone()).map_err(|e| anyhow::anyhow!("the directory: {e}"))?,
    );
    let users = args.users;
    let domain = args.upn_domain.clone();
    let direct = {
        let checker = checker.clone();
        move |i: usize| {
            let checker = checker.clone();
            let u = i % users;
            let upn = upn(u, &domain);
            async move {
                checker
                    .check(&upn, None, password(u).as_bytes())
                    .await
                    .outcome
                    == cutover_ldap::BindOutcome::Success
            }
        }
    };
    drive(
        users.min(args.validations),
        args.concurrency,
        "direct checks (warm-up)",
        direct.clone(),
    )
    .await?;
    let (baseline, base_failed) = drive(
        args.validations,
        args.concurrency,
        "direct checks against the directory",
        direct,
    )
    .await?;
    if base_failed > 0 {
        bail!(
            "{base_failed} direct checks did not succeed: the directory does not hold the benchmark users (bench<i>@{} / pw-bench<i>); scripts/bench-pta.sh makes them",
            args.upn_domain
        );
    }
    drop(checker);

    // ---- a server in this process --------------------------------------------------------
    let dir = std::env::temp_dir().join(format!("cutover-bench-pta-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let store =
        cutover_store::connect(&format!("sqlite:{}", dir.join("cutover.db").display())).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(
        store,
        Arc::new(cutover_server::clock::SystemClock),
        ServerConfig {
            issuer: base.clone(),
            argon2: cutover_server::crypto::Argon2Params::default(),
            trust_forwarded_for: false,
            key_encryption_key: cutover_server::crypto::KeyEncryptionKey::generate(),
            synced_password_expiry_days: None,
            pass_through_deadline_ms: cutover_core::pta::DEFAULT_REQUEST_DEADLINE_MS,
            passkeys: Default::default(),
            admin_group: cutover_server::DEFAULT_ADMIN_GROUP.into(),
            campaigns: Default::default(),
        },
    )
    .await?;
    let server = tokio::spawn(cutover_server::serve(
        state.clone(),
        listener,
        std::future::pending(),
    ));

    let mut agents = vec![register_agent(&state, &base, &dir, &args.directory_config, 1).await?];
    wait_healthy(&state, 1).await?;
    let (one, one_failed, one_usage) = pta_phase(&state, &args, &agents, "through 1 agent").await?;
    for n in 2..=3 {
        agents.push(register_agent(&state, &base, &dir, &args.directory_config, n).await?);
    }
    wait_healthy(&state, 3).await?;
    let (three, three_failed, three_usage) =
        pta_phase(&state, &args, &agents, "through 3 agents").await?;
    drop(agents);
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);

    // ---- report --------------------------------------------------------------------------
    let line = |name: &str, p: &Phase, failed: usize| {
        println!(
            "  {name:<36} {:>9.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} done{})",
            p.per_sec,
            p.p50_ms,
            p.p99_ms,
            p.done,
            if failed > 0 {
                format!(", {failed} not a success")
            } else {
                String::new()
            }
        );
    };
    println!();
    line("direct checks (baseline)", &baseline, 0);
    line("pass-through, 1 agent", &one, one_failed);
    line("pass-through, 3 agents", &three, three_failed);
    let r1 = one.per_sec / baseline.per_sec.max(1e-9);
    let r3 = three.per_sec / baseline.per_sec.max(1e-9);
    println!();
    println!("  ratio, 1 agent ÷ direct checks      {r1:.3}");
    println!("  ratio, 3 agents ÷ direct checks     {r3:.3}");
    let per_core = |p: &Phase| p.per_sec / cores as f64;
    println!(
        "  per core: 1 agent {:.1}/s, 3 agents {:.1}/s; the reference sizes one agent at {:.0}–{:.0}/s on {:.0} cores = {:.0}–{:.0}/s per core",
        per_core(&one),
        per_core(&three),
        REFERENCE_PER_AGENT.0,
        REFERENCE_PER_AGENT.1,
        REFERENCE_CORES,
        REFERENCE_PER_AGENT.0 / REFERENCE_CORES,
        REFERENCE_PER_AGENT.1 / REFERENCE_CORES
    );
    for (what, usage) in [("1 agent", &one_usage), ("3 agents", &three_usage)] {
        for (i, u) in usage.iter().enumerate() {
            println!(
                "  agent {} during '{what}': {:.3} ms CPU per validation, {:.0} % of one core, RSS {:.1} MiB (peak {:.1} MiB)",
                i + 1,
                u.cpu_ms_per_validation,
                u.cpu_share_of_one_core * 100.0,
                u.rss_mib,
                u.peak_rss_mib
            );
        }
    }
    if let Some(path) = &args.json {
        let v = json!({
            "cores": cores,
            "baseline": baseline,
            "oneAgent": one,
            "threeAgents": three,
            "ratioOneAgent": r1,
            "ratioThreeAgents": r3,
            "failed": {"baseline": base_failed, "oneAgent": one_failed, "threeAgents": three_failed},
            "agentUsage": {"oneAgent": one_usage, "threeAgents": three_usage},
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if one_failed + three_failed > 0 {
        bail!(
            "{} pass-through checks did not succeed (see the log above)",
            one_failed + three_failed
        );
    }
    Ok(())
}
