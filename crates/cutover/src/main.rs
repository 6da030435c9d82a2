//! The `cutover` binary: one executable for every role (serve, admin, bench; later agent, sync).

mod admin_cli;
mod agent_cli;
mod bench;
mod bench_pta;
mod serve;
mod sync_cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cutover: a self-hosted identity provider for moving sign-in off a legacy federated IdP
/// and off passwords, in stages, measurably and reversibly.
#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    after_help = "Start here:\n  cutover serve                      # run the identity provider (SQLite in ./cutover-data)\n  \
                  cutover admin domains create contoso.example\n  \
                  cutover admin users create user1@contoso.example --display-name \"User One\" --password-stdin\n\n\
                  Run `cutover <command> --help` for each command's options."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the identity provider (OpenID Connect, sign-in pages, admin API).
    Serve(Box<serve::ServeArgs>),
    /// Administer a running Cutover server through its admin REST API.
    Admin(admin_cli::AdminArgs),
    /// Measure sign-in and token throughput against raw hashing and signing on this machine.
    Bench(bench::BenchArgs),
    /// Measure pass-through authentication through 1 and 3 agents against direct checks
    /// against the same directory (see scripts/bench-pta.sh).
    BenchPta(bench_pta::BenchPtaArgs),
    /// Run a directory sync server: LDAP → Cutover (users, groups, managers, password hashes).
    Sync(sync_cli::SyncArgs),
    /// Run a pass-through authentication agent: check passwords against the on-prem directory.
    Agent(agent_cli::AgentArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUTOVER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args).await,
        Command::Admin(args) => admin_cli::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchPta(args) => bench_pta::run(args).await,
        Command::Sync(args) => sync_cli::run(args).await,
        Command::Agent(args) => agent_cli::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
