//! `cutover agent`: the pass-through authentication agent (SPEC §5.3). The work is in the
//! `cutover-agent` crate; this is its command line.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use cutover_agent::{CheckStatus, RegisterOptions, StatusReport};

/// Largest token file read.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

#[derive(Args, Debug)]
#[command(after_help = "\
The agent runs on a host that can reach the on-premises directory (LDAP). It makes outbound \
HTTPS connections to Cutover only and never listens on a port. Cutover hands it the passwords of \
pass-through sign-ins, sealed to this agent's key; it checks each with an LDAP bind and answers.

Getting started:
  cutover admin agents token         # on an admin workstation: prints a one-time token
  sudo -u cutover-agent cutover agent register \\
      --server https://login.contoso.example --token-file /root/agent-token \\
      --directory-config /etc/cutover/agent-directory.toml
  sudo -u cutover-agent cutover agent run     # in practice: a systemd service (see run --help)
  sudo -u cutover-agent cutover agent status  # is everything working?

Run at least three agents on different hosts: one host down must not stop password sign-ins.

State lives in --state-dir (default /var/lib/cutover-agent, or $CUTOVER_AGENT_STATE_DIR):
  agent.toml      server URL, agent id, concurrency, host label, and the [directory] section
  keys.json       the agent's private keys (mode 0600; back it up like a password)
  server-ca.pem   the only CA trusted for the server, when --ca-file was given")]
pub struct AgentArgs {
    /// The agent's state directory.
    #[arg(
        long,
        global = true,
        env = "CUTOVER_AGENT_STATE_DIR",
        default_value = cutover_agent::DEFAULT_STATE_DIR,
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Register this host as a pass-through agent (once, with a one-time token).
    #[command(after_help = "\
Checks the directory configuration (connects, binds as the service account, reads the lockout \
policy), generates this agent's key pairs (Ed25519 to sign, X25519 to receive passwords), \
registers them with the one-time token and writes the state directory:
  <state-dir>/agent.toml      server, agent id, concurrency, host, and [directory] (editable)
  <state-dir>/keys.json       private keys, mode 0600
  <state-dir>/server-ca.pem   a copy of --ca-file
An existing registration is never overwritten without --force.

The directory configuration (TOML; relative paths are relative to the file):
  url = \"ldaps://dc1.corp.example\"          # or ldap://... with starttls = true
  bind_dn = \"cn=cutover-agent,ou=services,dc=corp,dc=example\"
  bind_password_file = \"/etc/cutover/agent-bind-password\"   # or bind_password_env = \"VAR\"
  ca_file = \"/etc/cutover/corp-ca.pem\"      # optional; default: the system's roots
  base_dn = \"ou=people,dc=corp,dc=example\"
  user_filter = \"(&(objectClass=inetOrgPerson)(mail={upn}))\"
  anchor_attribute = \"entryUUID\"            # optional: check the entry is the synced user
  timeout_secs = 5
  pool_size = 8

Example:
  cutover agent register --server https://login.contoso.example \\
      --token-file /root/agent-token --directory-config /etc/cutover/agent-directory.toml \\
      --ca-file /etc/cutover/cutover-ca.pem

http:// server URLs are accepted only for 127.0.0.1, ::1 and localhost (tests).")]
    Register(RegisterArgs),
    /// Run the agent: wait for passwords to check, until SIGTERM or Ctrl-C.
    #[command(after_help = "\
Reads <state-dir>/agent.toml and keys.json, opens a session with the server (a signed \
challenge) and long-polls it for work, checking up to `concurrency` passwords at once (default \
16, set in agent.toml). A heartbeat every 10 s tells the server it is alive, what it has done and \
whether it can reach the directory (probed every 30 s); only healthy agents get passwords.

Only outbound HTTPS: no port to open. With a CA in the state directory (register --ca-file) \
the server's certificate must chain to that CA only; otherwise to the public web PKI. http:// is \
accepted only for 127.0.0.1, ::1 and localhost.

When the server is unreachable the agent retries with backoff (0.5 s doubling to 30 s); when an \
administrator disables or deletes it, it says so in its log and asks again every 15 s (so enabling it takes effect within 15 s). SIGTERM or \
Ctrl-C: it stops asking for work, finishes and reports the checks in flight (at most 10 s), \
sends a last heartbeat and exits 0. Log level: CUTOVER_LOG (e.g. CUTOVER_LOG=debug).

Example (systemd):
  [Service]
  User=cutover-agent
  ExecStart=/usr/local/bin/cutover agent run --state-dir /var/lib/cutover-agent
  Restart=always")]
    Run,
    /// Check this agent: configuration, server, session, health and directory.
    #[command(after_help = "\
Shows the local configuration from the state directory (server, agent id, public key \
fingerprints; never a private key), then checks live: the server is reachable and accepts the \
agent's signature, the server's view of the agent (enabled, health, key generation, healthy \
agents in the fleet), and the directory (reachable, lockout policy). Exits 0 when every check \
passes, 1 otherwise; each failed check says what to do.

Example:
  cutover agent status
  cutover agent status --state-dir /srv/agent2 --json")]
    Status {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace this agent's key pairs (the server must accept the new ones first).
    #[command(
        name = "rotate-keys",
        after_help = "\
Generates new key pairs and sends the public halves over a session opened with the current keys, \
with a proof signed by the new signing key. <state-dir>/keys.json is replaced only after the \
server accepted; if the answer is lost, the new keys wait in keys.json.new and running this \
command again (or starting the agent) finishes the rotation. A running agent picks the new keys \
up by itself; no restart is needed.

Example:
  sudo -u cutover-agent cutover agent rotate-keys"
    )]
    RotateKeys,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Cutover's base URL, e.g. https://login.contoso.example.
    #[arg(long, env = "CUTOVER_AGENT_SERVER", value_name = "URL")]
    pub server: String,
    /// The one-time registration token (visible to other users in the process list: prefer
    /// --token-file).
    #[arg(
        long,
        value_name = "TOKEN",
        conflicts_with = "token_file",
        required_unless_present = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the registration token (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate that signed the server's TLS certificate; it becomes the ONLY CA the
    /// agent trusts for the server (copied into the state directory).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// The directory the agent checks passwords against (TOML; see below).
    #[arg(long, value_name = "FILE")]
    pub directory_config: PathBuf,
    /// Register even if the directory cannot be reached now (the agent then receives no
    /// passwords until it can).
    #[arg(long)]
    pub skip_directory_check: bool,
    /// Replace an existing registration in the state directory.
    #[arg(long)]
    pub force: bool,
    /// The name the server shows for this host (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Passwords checked at once.
    #[arg(long, default_value_t = cutover_agent::DEFAULT_CONCURRENCY, value_name = "N")]
    pub concurrency: usize,
}

fn read_token(args: &RegisterArgs) -> Result<String> {
    if let Some(t) = &args.token {
        return Ok(t.clone());
    }
    let Some(path) = &args.token_file else {
        bail!("give the registration token with --token-file FILE (or --token)");
    };
    use std::io::Read as _;
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_TOKEN_FILE_BYTES)
            .read_to_string(&mut text)
            .context("cannot read the token from standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES).read_to_string(&mut text))
            .with_context(|| format!("cannot read --token-file {}", path.display()))?;
    }
    Ok(text.trim().to_owned())
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let state_dir = args.state_dir;
    match args.command {
        AgentCommand::Register(r) => {
            let token = read_token(&r)?;
            let mut opts = RegisterOptions::new(&r.server, token, &state_dir, &r.directory_config);
            opts.ca_file = r.ca_file.clone();
            opts.skip_directory_check = r.skip_directory_check;
            opts.force = r.force;
            opts.host = r.host.clone();
            opts.concurrency = r.concurrency;
            let reg = cutover_agent::register(opts).await?;
            println!("Registered pass-through agent {}", reg.agent_id);
            println!("  state      {}", reg.state_dir.display());
            println!("  signing    {}", reg.keys.signing_fingerprint);
            println!("  encryption {}", reg.keys.encryption_fingerprint);
            match &reg.directory_lockout {
                Some(l) => println!(
                    "  directory  reachable; {}",
                    lockout_text(l.threshold, l.duration_secs)
                ),
                None => println!("  directory  not checked (--skip-directory-check)"),
            }
            println!("  healthy agents now: {}", reg.healthy_agents);
            if let Some(w) = &reg.warning {
                println!("warning: {w}");
            }
            println!(
                "Next: start it with `cutover agent run --state-dir {}` (as a service), then `cutover agent status`.",
                reg.state_dir.display()
            );
            Ok(())
        }
        AgentCommand::Run => cutover_agent::run(&state_dir, shutdown_signal()).await,
        AgentCommand::Status { json } => {
            let report = cutover_agent::status(&state_dir).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| anyhow!("cannot print the report: {e}"))?
                );
            } else {
                print!("{}", status_text(&report));
            }
            let failed = report
                .checks
                .iter()
                .filter(|c| c.status == CheckStatus::Fail)
                .count();
            if failed > 0 {
                bail!(
                    "{failed} of {} checks failed (see above)",
                    report.checks.len()
                );
            }
            Ok(())
        }
        AgentCommand::RotateKeys => {
            let r = cutover_agent::rotate_keys(&state_dir).await?;
            println!(
                "Rotated the keys of agent {} (key generation {}).",
                r.agent_id, r.key_generation
            );
            println!("  signing    {}", r.keys.signing_fingerprint);
            println!("  encryption {}", r.keys.encryption_fingerprint);
            println!("A running agent picks the new keys up by itself.");
            Ok(())
        }
    }
}

fn lockout_text(threshold: Option<u32>, duration: Option<i64>) -> String {
    match (threshold, duration) {
        (Some(0), _) => "the directory does not lock accounts".into(),
        (Some(t), Some(0)) => format!("locks after {t} failures until an administrator unlocks"),
        (Some(t), Some(d)) => format!("locks after {t} failures for {d} s"),
        (Some(t), None) => format!("locks after {t} failures"),
        (None, _) => "no lockout policy readable".into(),
    }
}

/// The human form of `cutover agent status`.
pub fn status_text(r: &StatusReport) -> String {
    let mut out = String::new();
    out.push_str(&format!("Agent {}\n", r.agent_id));
    out.push_str(&format!("  state dir    {}\n", r.state_dir.display()));
    out.push_str(&format!("  server       {}\n", r.server));
    if let Some(ca) = &r.ca_file {
        out.push_str(&format!(
            "  server CA    {} (the only CA trusted)\n",
            ca.display()
        ));
    }
    out.push_str(&format!("  host         {}\n", r.host));
    out.push_str(&format!("  concurrency  {}\n", r.concurrency));
    if let Some(k) = &r.keys {
        out.push_str(&format!("  signing      {}\n", k.signing_fingerprint));
        out.push_str(&format!("  encryption   {}\n", k.encryption_fingerprint));
    }
    out.push_str("Checks\n");
    for c in &r.checks {
        let tag = match c.status {
            CheckStatus::Ok => " ok ",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
        };
        out.push_str(&format!("  [{tag}] {:<10} {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("         {:<10} → {fix}\n", ""));
        }
    }
    out
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stop the agent with SIGINT");
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        c: Top,
    }
    #[derive(clap::Subcommand)]
    enum Top {
        Agent(AgentArgs),
    }

    #[test]
    fn command_line_parses() {
        let T { c: Top::Agent(a) } = T::try_parse_from([
            "cutover",
            "agent",
            "register",
            "--server",
            "https://login.contoso.example",
            "--token-file",
            "/tmp/t",
            "--directory-config",
            "d.toml",
            "--state-dir",
            "/srv/a",
        ])
        .unwrap();
        assert_eq!(a.state_dir, PathBuf::from("/srv/a"));
        let AgentCommand::Register(r) = a.command else {
            panic!("register")
        };
        assert_eq!(r.concurrency, cutover_agent::DEFAULT_CONCURRENCY);
        assert!(
            T::try_parse_from([
                "cutover",
                "agent",
                "register",
                "--server",
                "https://x",
                "--directory-config",
                "d.toml"
            ])
            .is_err(),
            "a token is required"
        );
        let T { c: Top::Agent(a) } =
            T::try_parse_from(["cutover", "agent", "status", "--json"]).unwrap();
        assert!(matches!(a.command, AgentCommand::Status { json: true }));
        let T { c: Top::Agent(a) } =
            T::try_parse_from(["cutover", "agent", "rotate-keys"]).unwrap();
        assert!(matches!(a.command, AgentCommand::RotateKeys));
    }

    #[test]
    fn lockout_wording() {
        assert!(lockout_text(Some(0), None).contains("does not lock"));
        assert!(lockout_text(Some(5), Some(600)).contains("5 failures for 600 s"));
        assert!(lockout_text(Some(5), Some(0)).contains("administrator"));
    }
}
