//! `cutover admin …`: the command-line client that drives Cutover's admin REST API over HTTP.
//!
//! It reads the bootstrap admin credentials that `cutover serve` writes into its data directory,
//! obtains an access token with the client-credentials grant, and then calls `/api/v1/…`.
//! Output is either aligned tables for people (`--output table`, the default) or the API's own
//! JSON, pretty-printed, for scripts (`--output json`).
//!
//! Secrets stay out of the output: the admin client secret and user passwords are never printed
//! (the argument structs holding passwords have redacting `Debug` impls). The one exception is the
//! client secret of a newly created application, which the server returns exactly once and which
//! the operator must see to store it.

use std::fmt;
use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use cutover_proto::{
    AddMember, AdminCredentials, ApplicationView, CreateApplication, CreateGroup, CreateUser,
    DomainView, ErrorResponse, GroupView, ListResponse, MemberView, PasswordProfile,
    SigningKeyView, UpdateUser, UserView,
};
use reqwest::{Method, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

// A child module (so it shares the signed-in `Api` and the output helpers), in its own file.
#[path = "agents_admin_cli.rs"]
mod agents_admin_cli;
#[path = "ca_cli.rs"]
mod ca_cli;
#[path = "campaigns_cli.rs"]
mod campaigns_cli;
#[path = "federation_cli.rs"]
mod federation_cli;
#[path = "methods_cli.rs"]
mod methods_cli;
#[path = "tap_cli.rs"]
mod tap_cli;

/// Name of the credentials file inside the data directory.
const CREDENTIALS_FILE: &str = "admin-credentials";
/// Longest table cell before it is cut short with `…`.
const MAX_CELL_CHARS: usize = 60;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("cutover-admin/", env!("CARGO_PKG_VERSION"));

const AFTER_HELP: &str = "\
Credentials: the admin client id and secret are read from <DIR>/admin-credentials, which \
`cutover serve` writes into its data directory on first start. The server URL defaults to the \
issuer recorded in that file.

Examples:
  cutover admin users create user1@contoso.example --display-name \"User One\" --password-stdin
  cutover admin sign-ins --user user1@contoso.example --since 48h --result failure
  cutover admin --output json users list --prefix user | jq -r '.value[].id'";

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// Administer a running Cutover server through its admin REST API.
#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct AdminArgs {
    /// Cutover's data directory; the admin credentials are read from DIR/admin-credentials.
    #[arg(
        long,
        value_name = "DIR",
        env = "CUTOVER_DATA_DIR",
        default_value = "./cutover-data",
        global = true,
        help_heading = "Global options"
    )]
    pub data_dir: PathBuf,

    /// Read the admin credentials from FILE instead of DIR/admin-credentials.
    #[arg(
        long,
        value_name = "FILE",
        env = "CUTOVER_ADMIN_CREDENTIALS",
        global = true,
        help_heading = "Global options"
    )]
    pub credentials: Option<PathBuf>,

    /// Base URL of the Cutover server [default: the issuer in the credentials file].
    #[arg(
        long,
        value_name = "URL",
        env = "CUTOVER_SERVER",
        global = true,
        help_heading = "Global options"
    )]
    pub server: Option<String>,

    /// Also trust this PEM CA certificate for the server's TLS (for a private CA or a
    /// self-signed certificate given to `cutover serve --tls-cert`).
    #[arg(
        long,
        value_name = "FILE",
        env = "CUTOVER_CA_CERT",
        global = true,
        help_heading = "Global options"
    )]
    pub ca_cert: Option<PathBuf>,

    /// Output format: aligned tables for people, the API's JSON (pretty-printed) for scripts,
    /// or JSON lines (one object per line) for exports.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Table, global = true,
        help_heading = "Global options")]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Most records `--all` gathers in one run; a longer export is split with --since/--until.
pub const MAX_EXPORT_ROWS: usize = 200_000;

/// How results are printed.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned, human-readable columns.
    Table,
    /// The API's JSON response, pretty-printed.
    Json,
    /// JSON lines: one compact object per line, each list item on its own line (for exports,
    /// e.g. `cutover admin --output jsonl sign-ins --since 7d > sign-ins.jsonl`).
    Jsonl,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Register, list and remove the domains users sign in with.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// Create, list, show, change and delete users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Create, list and delete groups and manage their members.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Register, list and delete applications (OAuth 2.0 / OpenID Connect clients).
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Search the sign-in log.
    SignIns(SignInsArgs),
    /// Search the directory audit log (who changed what).
    Audit(AuditArgs),
    /// List and rotate the token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Directory sync servers: which one exports, their last runs, alerts and pending exports.
    #[command(subcommand)]
    Sync(SyncAdminCommand),
    /// Register, list, change and delete the upstream (legacy) identity providers.
    #[command(subcommand)]
    Idp(federation_cli::IdpCommand),
    /// Staged rollout: move groups of users off the legacy IdP before their domain's cut-over.
    #[command(subcommand, long_about = federation_cli::ROLLOUT_LONG_ABOUT)]
    Rollout(federation_cli::RolloutCommand),
    /// Pass-through authentication agents: issue registration tokens, see their health, enable,
    /// disable and delete them.
    #[command(subcommand, long_about = agents_admin_cli::AGENTS_LONG_ABOUT)]
    Agents(agents_admin_cli::AgentsCommand),
    /// Smart lockout: show and change the policy that locks accounts after wrong passwords.
    #[command(subcommand, long_about = agents_admin_cli::LOCKOUT_LONG_ABOUT)]
    Lockout(agents_admin_cli::LockoutCommand),
    /// Temporary Access Passes: show and change the policy that allows them (off by default).
    #[command(subcommand, long_about = tap_cli::TAP_POLICY_LONG_ABOUT)]
    TapPolicy(tap_cli::TapPolicyCommand),
    /// The authentication methods policy: which methods (passkeys, authenticator apps, passes,
    /// passwords) for whom, passkey attestation and models; passkey changes are previewed.
    #[command(subcommand, long_about = methods_cli::METHODS_POLICY_LONG_ABOUT)]
    MethodsPolicy(methods_cli::MethodsPolicyCommand),
    /// Reports: who has registered which sign-in methods (`reports registration`).
    #[command(subcommand)]
    Reports(methods_cli::ReportsCommand),
    /// Conditional Access: policies (report-only first, enabled behind the enforcement gate),
    /// their impact, what-if evaluation, named locations.
    #[command(subcommand, long_about = ca_cli::CA_LONG_ABOUT)]
    Ca(ca_cli::CaCommand),
    /// Break-glass (emergency access) accounts: list with warnings, designate, remove, record
    /// drills.
    #[command(subcommand, long_about = ca_cli::BREAK_GLASS_LONG_ABOUT)]
    BreakGlass(ca_cli::BreakGlassCommand),
    /// Passkey rollout campaigns: waves, progress by device family, stragglers, e-mails, and
    /// enforcement (through the Conditional Access gate) and rollback per wave.
    #[command(subcommand, long_about = campaigns_cli::CAMPAIGNS_LONG_ABOUT)]
    Campaigns(campaigns_cli::CampaignsCommand),
}

#[derive(Subcommand, Debug)]
pub enum SyncAdminCommand {
    /// List the sync servers: the active one (holding the export lease), each last run and any
    /// alert (a run stopped by the delete threshold).
    Servers,
    /// Show what a sync server's last run would export (a staging server) or did not export
    /// (a run stopped by the delete threshold): per object Add / Update / Delete, per attribute
    /// old → new, and per-object problems.
    PendingExports {
        /// The sync server's name (its `name` in sync.toml).
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainsCommand {
    /// Register a domain so that users can be created under it.
    Create(federation_cli::CreateDomainArgs),
    /// List the registered domains.
    List,
    /// Remove a domain registration.
    Delete {
        /// The domain name, e.g. contoso.example.
        #[arg(value_name = "NAME", value_parser = path_segment)]
        name: String,
    },
    /// Convert a domain to managed (the cut-over, behind a preflight) or back to federated.
    #[command(long_about = federation_cli::CONVERT_LONG_ABOUT)]
    Convert(federation_cli::ConvertArgs),
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user (its domain must be registered first).
    Create(CreateUserArgs),
    /// List users, optionally only those whose user principal name starts with a prefix.
    List {
        /// Only users whose user principal name starts with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Return at most N users (per page with --all).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        top: Option<u32>,
        /// Follow the list page by page to its end (at most MAX_EXPORT_ROWS).
        #[arg(long)]
        all: bool,
    },
    /// Show one user.
    Show {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Change a user; only the attributes given are changed.
    Update(UpdateUserArgs),
    /// Delete a user.
    Delete {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Show a user's staged-rollout state: eligibility, desired and effective features, and
    /// how their next sign-in is routed and why.
    StagedRollout {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Show a user's smart-lockout state: whether they are locked and until when, wrong
    /// passwords counted from known and other networks, and their known networks.
    Lockout {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Unlock a user locked by smart lockout (both counters start over; known networks stay).
    /// Use it once you know the wrong passwords were the user's own, not a spray.
    Unlock {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Temporary Access Passes: issue a user a time-limited pass to sign in with (shown once),
    /// show it, delete it.
    #[command(subcommand, long_about = tap_cli::TAP_LONG_ABOUT)]
    Tap(tap_cli::TapCommand),
    /// A user's passkeys: list them, delete one (a lost device).
    #[command(subcommand, long_about = methods_cli::PASSKEYS_LONG_ABOUT)]
    Passkeys(methods_cli::PasskeysCommand),
}

#[derive(Args, Debug)]
pub struct CreateUserArgs {
    /// User principal name, the sign-in name: user1@contoso.example.
    #[arg(value_name = "UPN")]
    pub upn: String,
    /// Name shown to people, e.g. "User One".
    #[arg(long, value_name = "NAME")]
    pub display_name: String,
    #[command(flatten)]
    pub password: PasswordArgs,
    /// Create the account disabled (it cannot sign in until enabled).
    #[arg(long)]
    pub disabled: bool,
    /// E-mail address.
    #[arg(long, value_name = "ADDRESS")]
    pub mail: Option<String>,
    /// Department.
    #[arg(long, value_name = "NAME")]
    pub department: Option<String>,
    /// Mark as a break-glass (emergency access) account.
    #[arg(long)]
    pub break_glass: bool,
}

#[derive(Args, Debug)]
#[command(override_usage = "cutover admin users update [OPTIONS] <UPN_OR_ID>")]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args([
            "display_name", "enable", "disable", "password", "password_stdin", "mail",
            "department", "break_glass",
        ])
))]
pub struct UpdateUserArgs {
    /// The user's principal name (user1@contoso.example) or id.
    #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
    pub user: String,
    /// New display name.
    #[arg(long, value_name = "NAME")]
    pub display_name: Option<String>,
    /// Enable the account.
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable the account (it can no longer sign in).
    #[arg(long)]
    pub disable: bool,
    #[command(flatten)]
    pub password: PasswordArgs,
    /// New e-mail address; an empty string ("") clears it.
    #[arg(long, value_name = "ADDRESS")]
    pub mail: Option<String>,
    /// New department; an empty string ("") clears it.
    #[arg(long, value_name = "NAME")]
    pub department: Option<String>,
    /// Mark (true) or unmark (false) the account as break-glass.
    #[arg(long, value_name = "true|false")]
    pub break_glass: Option<bool>,
}

/// A password given on the command line or read from standard input.
#[derive(Args, Clone, Default)]
pub struct PasswordArgs {
    /// Set this password. It ends up in shell history and the process list; prefer
    /// --password-stdin.
    #[arg(long, value_name = "PASSWORD", conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input (the first line; a trailing newline is dropped).
    #[arg(long)]
    pub password_stdin: bool,
}

impl fmt::Debug for PasswordArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordArgs")
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_stdin", &self.password_stdin)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// Create a group.
    Create {
        /// The group's display name.
        #[arg(value_name = "NAME")]
        name: String,
        /// What the group is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Membership is computed by a rule rather than assigned (default: assigned).
        #[arg(long)]
        dynamic: bool,
    },
    /// List groups.
    List {
        /// Follow the list page by page to its end (at most MAX_EXPORT_ROWS).
        #[arg(long)]
        all: bool,
    },
    /// Show one group.
    Show {
        /// The group's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
    /// Delete a group.
    Delete {
        /// The group's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
    /// Add a user, group or contact to a group.
    AddMember {
        /// The group's id.
        #[arg(value_name = "GROUP_ID", value_parser = path_segment)]
        group: String,
        /// The member's id, or a user principal name (name@domain), which is looked up first.
        #[arg(value_name = "MEMBER", value_parser = member_ref)]
        member: MemberRef,
        /// What kind of object MEMBER is [default: looked up by the server; `user` for a UPN].
        #[arg(long, value_name = "TYPE", value_parser = ["user", "group", "contact"])]
        member_type: Option<String>,
    },
    /// List a group's direct members.
    Members {
        /// The group's id.
        #[arg(value_name = "GROUP_ID", value_parser = path_segment)]
        group: String,
        /// Follow the list page by page to its end (at most MAX_EXPORT_ROWS).
        #[arg(long)]
        all: bool,
    },
    /// Remove a member from a group.
    RemoveMember {
        /// The group's id.
        #[arg(value_name = "GROUP_ID", value_parser = path_segment)]
        group: String,
        /// The member's id, or a user principal name (name@domain), which is looked up first.
        #[arg(value_name = "MEMBER_ID_OR_UPN", value_parser = member_ref)]
        member: MemberRef,
    },
}

/// A group member named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    Id(Uuid),
    Upn(String),
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Register an application; prints its client id and, once, its client secret.
    Create(CreateAppArgs),
    /// List applications.
    List,
    /// Show one application.
    Show {
        /// The application's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
    /// Delete an application.
    Delete {
        /// The application's id.
        #[arg(value_name = "ID", value_parser = path_segment)]
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateAppArgs {
    /// The application's display name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to send the user back after sign-in (repeat for several).
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where to send the user back after sign-out (repeat for several).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (browser or native app that cannot keep a secret); no secret is issued.
    #[arg(long)]
    pub public: bool,
    /// An OAuth 2.0 grant type the app may use, e.g. authorization_code, refresh_token,
    /// client_credentials (repeat for several) [default: chosen by client type].
    #[arg(long = "grant", value_name = "GRANT")]
    pub grants: Vec<String>,
    /// The kind of client, as recorded in sign-in logs [default: browser].
    #[arg(long, value_name = "TYPE", value_parser = [
        "browser", "mobileAppsAndDesktopClients", "exchangeActiveSync", "other",
    ])]
    pub client_app_type: Option<String>,
    /// An application role granted to the app itself (repeat for several):
    /// Directory.ReadWrite.All (the admin API), Metrics.Read (only /metrics, for Prometheus) or
    /// Directory.Sync (a directory sync server: `cutover sync`).
    #[arg(long = "app-role", value_name = "ROLE")]
    pub app_roles: Vec<String>,
}

/// The time window and paging options both logs share.
#[derive(Args, Debug)]
pub struct LogWindow {
    /// Only records from this time on: a duration back from now (48h, 30m, 7d, 90s, 1h30m) or
    /// an RFC 3339 timestamp (2024-05-01T00:00:00Z).
    #[arg(long, value_name = "DURATION|RFC3339", value_parser = time_arg)]
    pub since: Option<String>,
    /// Only records before this time: an RFC 3339 timestamp or a duration back from now.
    #[arg(long, value_name = "RFC3339", value_parser = time_arg)]
    pub until: Option<String>,
    /// Return at most N records (per page with --all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
    /// Follow the log page by page to its end (at most MAX_EXPORT_ROWS records); with
    /// `--output jsonl` this exports the whole time window.
    #[arg(long)]
    pub all: bool,
}

impl LogWindow {
    fn query(&self) -> [(&'static str, Option<String>); 3] {
        [
            ("since", self.since.clone()),
            ("until", self.until.clone()),
            ("$top", self.top.map(|n| n.to_string())),
        ]
    }
}

#[derive(Args, Debug)]
pub struct SignInsArgs {
    /// Only sign-ins with this user principal name (as typed).
    #[arg(long, value_name = "UPN")]
    pub user: Option<String>,
    /// Only sign-ins to this application (its client id).
    #[arg(long, value_name = "CLIENT_ID")]
    pub app: Option<String>,
    /// Only sign-ins with this result.
    #[arg(long, value_name = "RESULT", value_parser = ["success", "failure", "interrupted"])]
    pub result: Option<String>,
    /// Only sign-ins routed this way.
    #[arg(long, value_name = "ROUTE", value_parser = ["managed", "federated"])]
    pub route: Option<String>,
    #[command(flatten)]
    pub window: LogWindow,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only changes made by this actor: `app:<clientId>` for an API client, `system` for
    /// Cutover itself.
    #[arg(long, value_name = "ACTOR")]
    pub actor: Option<String>,
    /// Only this action, e.g. createUser, addGroupMember, rotateSigningKey.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only changes to the object with this id.
    #[arg(long, value_name = "ID")]
    pub target: Option<String>,
    #[command(flatten)]
    pub window: LogWindow,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// List the signing keys, with which one is active and which are still published in JWKS.
    List,
    /// Create a new signing key and make it the active one.
    Rotate,
}

// ---------------------------------------------------------------------------------------------
// Running a command
// ---------------------------------------------------------------------------------------------

/// Run one `cutover admin …` command. Errors carry the complete message for the operator
/// (print them with `{:#}`); API errors are [`ApiError`]s.
pub async fn run(args: AdminArgs) -> Result<()> {
    let creds_path = args
        .credentials
        .clone()
        .unwrap_or_else(|| args.data_dir.join(CREDENTIALS_FILE));
    let creds = load_credentials(&creds_path)?;
    let base = match &args.server {
        Some(server) => parse_base_url(server, "--server")?,
        None => parse_base_url(
            &creds.issuer,
            &format!("the issuer in {}", creds_path.display()),
        )?,
    };
    let ca = match &args.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow!("cannot read the CA certificate {}: {e}", path.display()))?;
            Some(
                reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| anyhow!("{} is not a PEM certificate: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let api = Api::sign_in(base, &creds, &creds_path, ca).await?;
    let out = args.output;
    match args.command {
        AdminCommand::Domains(cmd) => domains(&api, out, cmd).await,
        AdminCommand::Users(cmd) => users(&api, out, cmd).await,
        AdminCommand::Groups(cmd) => groups(&api, out, cmd).await,
        AdminCommand::Apps(cmd) => apps(&api, out, cmd).await,
        AdminCommand::SignIns(a) => sign_ins(&api, out, a).await,
        AdminCommand::Audit(a) => audit(&api, out, a).await,
        AdminCommand::Keys(cmd) => keys(&api, out, cmd).await,
        AdminCommand::Sync(cmd) => sync_servers(&api, out, cmd).await,
        AdminCommand::Idp(cmd) => federation_cli::idp(&api, out, cmd).await,
        AdminCommand::Rollout(cmd) => federation_cli::rollout(&api, out, cmd).await,
        AdminCommand::Agents(cmd) => agents_admin_cli::agents(&api, out, cmd).await,
        AdminCommand::Lockout(cmd) => agents_admin_cli::lockout(&api, out, cmd).await,
        AdminCommand::TapPolicy(cmd) => tap_cli::tap_policy(&api, out, cmd).await,
        AdminCommand::MethodsPolicy(cmd) => methods_cli::methods_policy(&api, out, cmd).await,
        AdminCommand::Reports(cmd) => methods_cli::reports(&api, out, cmd).await,
        AdminCommand::Ca(cmd) => ca_cli::ca(&api, out, cmd).await,
        AdminCommand::BreakGlass(cmd) => ca_cli::break_glass(&api, out, cmd).await,
        AdminCommand::Campaigns(cmd) => campaigns_cli::campaigns(&api, out, cmd).await,
    }
}

async fn domains(api: &Api, out: OutputFormat, cmd: DomainsCommand) -> Result<()> {
    match cmd {
        DomainsCommand::Create(a) => federation_cli::create_domain(api, out, a).await,
        DomainsCommand::Convert(a) => federation_cli::convert(api, out, a).await,
        DomainsCommand::List => {
            let resp = api.send(Method::GET, &["domains"], &[], None).await?;
            show_list(
                out,
                resp,
                &["DOMAIN", "AUTHENTICATION", "CREATED"],
                |d: &DomainView| {
                    vec![
                        d.id.clone(),
                        match &d.password_validation {
                            Some(p) => format!("{} ({p})", d.authentication_type),
                            None => d.authentication_type.clone(),
                        },
                        d.created_date_time.clone(),
                    ]
                },
            )
        }
        DomainsCommand::Delete { name } => {
            let resp = api
                .send(Method::DELETE, &["domains", &name], &[], None)
                .await?;
            done(out, resp, &format!("Deleted domain {name}."))
        }
    }
}

async fn users(api: &Api, out: OutputFormat, cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::Create(a) => {
            let password = read_password(&a.password)?;
            let body = create_user_body(&a, password)?;
            let resp = api.send(Method::POST, &["users"], &[], Some(&body)).await?;
            show(out, resp, &format!("Created user {}.", a.upn), user_fields)
        }
        UsersCommand::List { prefix, top, all } => {
            let query = [("prefix", prefix), ("$top", top.map(|n| n.to_string()))];
            let resp = api.send(Method::GET, &["users"], &query, None).await?;
            let resp = if all {
                api.follow_pages(resp).await?
            } else {
                resp
            };
            show_list(
                out,
                resp,
                &[
                    "UPN",
                    "DISPLAY NAME",
                    "ENABLED",
                    "SOURCE",
                    "BREAK-GLASS",
                    "ID",
                ],
                |u: &UserView| {
                    vec![
                        u.user_principal_name.clone(),
                        u.display_name.clone(),
                        yes_no(u.account_enabled),
                        u.source.clone(),
                        yes_no(u.break_glass),
                        u.id.to_string(),
                    ]
                },
            )
        }
        UsersCommand::Show { user } => {
            let resp = api.send(Method::GET, &["users", &user], &[], None).await?;
            show(out, resp, "", user_fields)
        }
        UsersCommand::Update(a) => {
            let password = read_password(&a.password)?;
            let body = update_user_body(&a, password)?;
            let resp = api
                .send(Method::PATCH, &["users", &a.user], &[], Some(&body))
                .await?;
            show(out, resp, &format!("Updated user {}.", a.user), user_fields)
        }
        UsersCommand::Delete { user } => {
            let resp = api
                .send(Method::DELETE, &["users", &user], &[], None)
                .await?;
            done(out, resp, &format!("Deleted user {user}."))
        }
        UsersCommand::StagedRollout { user } => {
            federation_cli::staged_rollout(api, out, &user).await
        }
        UsersCommand::Lockout { user } => agents_admin_cli::user_lockout(api, out, &user).await,
        UsersCommand::Unlock { user } => agents_admin_cli::unlock_user(api, out, &user).await,
        UsersCommand::Tap(cmd) => tap_cli::tap(api, out, cmd).await,
        UsersCommand::Passkeys(cmd) => methods_cli::passkeys(api, out, cmd).await,
    }
}

async fn groups(api: &Api, out: OutputFormat, cmd: GroupsCommand) -> Result<()> {
    match cmd {
        GroupsCommand::Create {
            name,
            description,
            dynamic,
        } => {
            let body = without_nulls(serde_json::to_value(CreateGroup {
                display_name: name.clone(),
                description,
                membership_kind: Some(if dynamic { "dynamic" } else { "assigned" }.into()),
                source: None,
                immutable_id: None,
            })?);
            let resp = api
                .send(Method::POST, &["groups"], &[], Some(&body))
                .await?;
            show(out, resp, &format!("Created group {name}."), group_fields)
        }
        GroupsCommand::List { all } => {
            let resp = api.send(Method::GET, &["groups"], &[], None).await?;
            let resp = if all {
                api.follow_pages(resp).await?
            } else {
                resp
            };
            show_list(
                out,
                resp,
                &["ID", "NAME", "KIND", "SOURCE", "DESCRIPTION"],
                |g: &GroupView| {
                    vec![
                        g.id.to_string(),
                        g.display_name.clone(),
                        g.membership_kind.clone(),
                        g.source.clone(),
                        opt(&g.description),
                    ]
                },
            )
        }
        GroupsCommand::Show { id } => {
            let resp = api.send(Method::GET, &["groups", &id], &[], None).await?;
            show(out, resp, "", group_fields)
        }
        GroupsCommand::Delete { id } => {
            let resp = api
                .send(Method::DELETE, &["groups", &id], &[], None)
                .await?;
            done(out, resp, &format!("Deleted group {id}."))
        }
        GroupsCommand::AddMember {
            group,
            member,
            member_type,
        } => {
            let (id, member_type) = match &member {
                MemberRef::Id(id) => (*id, member_type),
                // A UPN names a user, so say so unless the operator said otherwise.
                MemberRef::Upn(upn) => (
                    api.resolve_user(upn).await?,
                    member_type.or_else(|| Some("user".into())),
                ),
            };
            let body = serde_json::to_value(AddMember { id, member_type })?;
            let resp = api
                .send(
                    Method::POST,
                    &["groups", &group, "members"],
                    &[],
                    Some(&body),
                )
                .await?;
            done(
                out,
                resp,
                &format!("Added {} to group {group}.", member_label(&member, id)),
            )
        }
        GroupsCommand::Members { group, all } => {
            let resp = api
                .send(Method::GET, &["groups", &group, "members"], &[], None)
                .await?;
            let resp = if all {
                api.follow_pages(resp).await?
            } else {
                resp
            };
            show_list(out, resp, &["ID", "TYPE", "NAME"], |m: &MemberView| {
                vec![
                    m.id.to_string(),
                    m.member_type.clone(),
                    opt(&m.display_name),
                ]
            })
        }
        GroupsCommand::RemoveMember { group, member } => {
            let id = match &member {
                MemberRef::Id(id) => *id,
                MemberRef::Upn(upn) => api.resolve_user(upn).await?,
            };
            let id_text = id.to_string();
            let resp = api
                .send(
                    Method::DELETE,
                    &["groups", &group, "members", &id_text],
                    &[],
                    None,
                )
                .await?;
            done(
                out,
                resp,
                &format!("Removed {} from group {group}.", member_label(&member, id)),
            )
        }
    }
}

async fn apps(api: &Api, out: OutputFormat, cmd: AppsCommand) -> Result<()> {
    match cmd {
        AppsCommand::Create(a) => {
            let body = create_app_body(&a)?;
            let resp = api
                .send(Method::POST, &["applications"], &[], Some(&body))
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let mut text = format!("Created application {}.\n", clean(&a.name));
            if let Some(v) = resp {
                let app: ApplicationView = from_response(v)?;
                text.push_str(&render_fields(&app_fields(&app)));
                text.push('\n');
                match &app.client_secret {
                    Some(secret) => {
                        text.push_str(&format!("Client secret: {}\n", clean(secret)));
                        text.push_str(
                            "Store this secret now (for example in your secret manager): \
                             it will not be shown again.\n",
                        );
                    }
                    None if app.client_type == "public" => {
                        text.push_str("This is a public client: it has no secret.\n");
                    }
                    None => text.push_str("The server returned no client secret.\n"),
                }
            }
            emit(&text)
        }
        AppsCommand::List => {
            let resp = api.send(Method::GET, &["applications"], &[], None).await?;
            show_list(
                out,
                resp,
                &["CLIENT ID", "NAME", "TYPE", "GRANTS", "ID"],
                |a: &ApplicationView| {
                    vec![
                        a.client_id.clone(),
                        a.display_name.clone(),
                        a.client_type.clone(),
                        a.grant_types.join(","),
                        a.id.to_string(),
                    ]
                },
            )
        }
        AppsCommand::Show { id } => {
            let resp = api
                .send(Method::GET, &["applications", &id], &[], None)
                .await?;
            show(out, resp, "", app_fields)
        }
        AppsCommand::Delete { id } => {
            let resp = api
                .send(Method::DELETE, &["applications", &id], &[], None)
                .await?;
            done(out, resp, &format!("Deleted application {id}."))
        }
    }
}

/// Read a log with `filters` within `window`, following every page when `--all` is given.
async fn read_log(
    api: &Api,
    segments: &[&str],
    filters: Vec<(&'static str, Option<String>)>,
    window: &LogWindow,
) -> Result<Option<Value>> {
    let mut query = filters;
    query.extend(window.query());
    let resp = api.send(Method::GET, segments, &query, None).await?;
    if window.all {
        api.follow_pages(resp).await
    } else {
        Ok(resp)
    }
}

async fn sign_ins(api: &Api, out: OutputFormat, a: SignInsArgs) -> Result<()> {
    let filters = vec![
        ("userPrincipalName", a.user),
        ("clientId", a.app),
        ("result", a.result),
        ("route", a.route),
    ];
    let resp = read_log(api, &["auditLogs", "signIns"], filters, &a.window).await?;
    show_list(
        out,
        resp,
        &[
            "TIME", "USER", "APP", "ROUTE", "WHY", "METHODS", "RESULT", "REASON",
        ],
        sign_in_row,
    )
}

async fn audit(api: &Api, out: OutputFormat, a: AuditArgs) -> Result<()> {
    let filters = vec![
        ("actor", a.actor),
        ("action", a.action),
        ("targetId", a.target),
    ];
    let resp = read_log(api, &["auditLogs", "directoryAudits"], filters, &a.window).await?;
    show_list(out, resp, &["TIME", "ACTOR", "ACTION", "TARGET"], audit_row)
}

async fn keys(api: &Api, out: OutputFormat, cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::List => {
            let resp = api.send(Method::GET, &["signingKeys"], &[], None).await?;
            show_list(
                out,
                resp,
                &[
                    "KID",
                    "ALGORITHM",
                    "ACTIVE",
                    "PUBLISHED",
                    "CREATED",
                    "RETIRED",
                ],
                |k: &SigningKeyView| {
                    vec![
                        k.kid.clone(),
                        k.algorithm.clone(),
                        yes_no(k.active),
                        yes_no(k.published),
                        k.created_date_time.clone(),
                        opt(&k.retired_date_time),
                    ]
                },
            )
        }
        KeysCommand::Rotate => {
            let resp = api
                .send(Method::POST, &["signingKeys", "rotate"], &[], None)
                .await?;
            show(out, resp, "Created a new signing key.", key_fields)
        }
    }
}

async fn sync_servers(api: &Api, out: OutputFormat, cmd: SyncAdminCommand) -> Result<()> {
    use cutover_proto::sync::{PendingExports, SyncServerView};
    match cmd {
        SyncAdminCommand::Servers => {
            let resp = api
                .send(Method::GET, &["sync", "servers"], &[], None)
                .await?;
            show_list(
                out,
                resp,
                &[
                    "NAME",
                    "ROLE",
                    "HOST",
                    "LAST RUN",
                    "OUTCOME",
                    "ADD/UPD/DEL/PWD",
                    "PENDING",
                    "ALERT",
                ],
                |s: &SyncServerView| {
                    let run = s.last_run.as_ref();
                    vec![
                        s.name.clone(),
                        format!("{:?}", s.role).to_lowercase(),
                        s.host.clone(),
                        run.map(|r| format!("{:?} {}", r.kind, r.finished_at).to_lowercase())
                            .unwrap_or_else(|| "never".into()),
                        run.map(|r| format!("{:?}", r.outcome)).unwrap_or_default(),
                        run.map(|r| {
                            format!(
                                "{}/{}/{}/{}",
                                r.summary.adds,
                                r.summary.updates,
                                r.summary.deletes,
                                r.summary.password_changes
                            )
                        })
                        .unwrap_or_default(),
                        opt(&s.pending_changes),
                        opt(&s.alert),
                    ]
                },
            )
        }
        SyncAdminCommand::PendingExports { name } => {
            let segment = path_segment(&name).map_err(|e| anyhow!(e))?;
            let resp = api
                .send(
                    Method::GET,
                    &["sync", "servers", &segment, "pendingExports"],
                    &[],
                    None,
                )
                .await?;
            match out {
                OutputFormat::Table => {
                    let pending: PendingExports = from_response(resp.unwrap_or(Value::Null))?;
                    emit(&crate::sync_cli::pending_table(&pending))
                }
                _ => print_json(out, resp.as_ref()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies (pure, so they can be tested)
// ---------------------------------------------------------------------------------------------

fn create_user_body(a: &CreateUserArgs, password: Option<String>) -> Result<Value> {
    Ok(without_nulls(serde_json::to_value(CreateUser {
        user_principal_name: a.upn.clone(),
        display_name: a.display_name.clone(),
        account_enabled: !a.disabled,
        password_profile: password.map(|password| PasswordProfile { password }),
        mail: a.mail.clone(),
        department: a.department.clone(),
        manager_id: None,
        break_glass: a.break_glass,
        source: None,
        immutable_id: None,
    })?))
}

/// A PATCH body with only the attributes given; `--mail ""` / `--department ""` send `null`.
fn update_user_body(a: &UpdateUserArgs, password: Option<String>) -> Result<Value> {
    let clearable = |v: &Option<String>| {
        v.as_ref()
            .map(|s| if s.is_empty() { None } else { Some(s.clone()) })
    };
    let account_enabled = match (a.enable, a.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(serde_json::to_value(UpdateUser {
        display_name: a.display_name.clone(),
        account_enabled,
        password_profile: password.map(|password| PasswordProfile { password }),
        mail: clearable(&a.mail),
        department: clearable(&a.department),
        manager_id: None,
        break_glass: a.break_glass,
    })?)
}

fn create_app_body(a: &CreateAppArgs) -> Result<Value> {
    Ok(without_nulls(serde_json::to_value(CreateApplication {
        display_name: a.name.clone(),
        redirect_uris: a.redirect_uris.clone(),
        post_logout_redirect_uris: a.post_logout_redirect_uris.clone(),
        client_type: Some(if a.public { "public" } else { "confidential" }.into()),
        grant_types: (!a.grants.is_empty()).then(|| a.grants.clone()),
        client_app_type: a.client_app_type.clone(),
        app_roles: a.app_roles.clone(),
    })?))
}

/// Drop the top-level `null` members of an object: a create request sends only what was given.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(mut map) => {
            map.retain(|_, v| !v.is_null());
            Value::Object(map)
        }
        other => other,
    }
}

/// The password from `--password` or standard input, if either was given.
fn read_password(p: &PasswordArgs) -> Result<Option<String>> {
    if let Some(pw) = &p.password {
        if pw.is_empty() {
            bail!("--password is empty; give a password or leave the option out");
        }
        return Ok(Some(pw.clone()));
    }
    if !p.password_stdin {
        return Ok(None);
    }
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprint!("Password (shown as you type; end with Enter): ");
        stdin
            .read_line(&mut text)
            .map_err(|e| anyhow!("cannot read the password from standard input: {e}"))?;
    } else {
        stdin
            .lock()
            .read_to_string(&mut text)
            .map_err(|e| anyhow!("cannot read the password from standard input: {e}"))?;
    }
    let pw = first_line(&text);
    if pw.is_empty() {
        bail!("--password-stdin: standard input held no password");
    }
    Ok(Some(pw.to_owned()))
}

/// The first line of `s` without its line ending.
fn first_line(s: &str) -> &str {
    let line = s.split('\n').next().unwrap_or("");
    line.strip_suffix('\r').unwrap_or(line)
}

// ---------------------------------------------------------------------------------------------
// Command-line value parsers
// ---------------------------------------------------------------------------------------------

/// A value used as one URL path segment: not empty and not `.`/`..` (which URLs would drop).
fn path_segment(s: &str) -> Result<String, String> {
    match s.trim() {
        "" => Err("must not be empty".into()),
        "." | ".." => Err(format!("'{s}' is not a valid name or id")),
        t => Ok(t.to_owned()),
    }
}

/// A member given as an id or a user principal name.
fn member_ref(s: &str) -> Result<MemberRef, String> {
    let s = path_segment(s)?;
    if s.contains('@') {
        return Ok(MemberRef::Upn(s));
    }
    Uuid::parse_str(&s).map(MemberRef::Id).map_err(|_| {
        format!("'{s}' is neither an id (UUID) nor a user principal name (name@domain)")
    })
}

fn member_label(member: &MemberRef, id: Uuid) -> String {
    match member {
        MemberRef::Id(_) => id.to_string(),
        MemberRef::Upn(upn) => format!("{upn} ({id})"),
    }
}

/// `--since`/`--until`: a duration back from now, or an RFC 3339 timestamp (passed on as is).
fn time_arg(s: &str) -> Result<String, String> {
    time_arg_at(s, unix_now())
}

fn time_arg_at(s: &str, now: i64) -> Result<String, String> {
    let s = s.trim();
    if is_rfc3339(s) {
        return Ok(s.to_owned());
    }
    // Something that starts like a date is a timestamp with a mistake in it.
    let b = s.as_bytes();
    if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return Err(format!(
            "'{s}' is not an RFC 3339 timestamp; write it like 2024-05-01T00:00:00Z or \
             2024-05-01T02:00:00+02:00"
        ));
    }
    let secs = parse_duration(s)
        .map_err(|e| format!("{e} (or give an RFC 3339 timestamp like 2024-05-01T00:00:00Z)"))?;
    let then = i64::try_from(secs)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .filter(|t| *t >= 0)
        .ok_or_else(|| format!("'{s}' reaches back before 1970"))?;
    Ok(format_rfc3339(then))
}

/// Parse a duration such as `48h`, `30m`, `7d`, `90s`, `2w` or `1h30m` into seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    const UNITS: &str = "s (seconds), m (minutes), h (hours), d (days) or w (weeks)";
    let t = s.trim();
    if t.is_empty() {
        return Err(format!(
            "empty duration: give a number and a unit, {UNITS}, e.g. 48h"
        ));
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration '{t}': expected a number followed by {UNITS}, e.g. 48h, 30m, \
                 7d or 90s"
            ));
        }
        let too_large = || format!("duration '{t}' is too large");
        let n: u64 = rest[..digits].parse().map_err(|_| too_large())?;
        rest = &rest[digits..];
        let Some(unit) = rest.chars().next() else {
            return Err(format!(
                "invalid duration '{t}': the number {n} needs a unit, {UNITS}, e.g. {n}h"
            ));
        };
        let factor: u64 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 60 * 60,
            'd' => 24 * 60 * 60,
            'w' => 7 * 24 * 60 * 60,
            other => {
                return Err(format!(
                    "invalid duration '{t}': unknown unit '{other}'; use {UNITS}"
                ));
            }
        };
        rest = &rest[unit.len_utf8()..];
        total = n
            .checked_mul(factor)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(too_large)?;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// Dates (no dependencies: proleptic Gregorian calendar, UTC)
// ---------------------------------------------------------------------------------------------

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
pub(crate) fn format_rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Year, month (1–12) and day (1–31) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

fn is_leap_year(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    let (Some(year), Some(month), Some(day), Some(hour), Some(min), Some(sec)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
    ) else {
        return false;
    };
    let separators = at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":");
    let in_range = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && min <= 59
        && sec <= 60;
    if !separators || !in_range {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        i += 1;
        let start = i;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len()
                && at(i + 3, b":")
                && num(i + 1, 2).is_some_and(|h| h <= 23)
                && num(i + 4, 2).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials, URLs and the HTTP client
// ---------------------------------------------------------------------------------------------

fn load_credentials(path: &Path) -> Result<AdminCredentials> {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => bail!(
            "no admin credentials at {shown}. `cutover serve` writes this file into its data \
             directory when it first starts; start the server first, then pass its data \
             directory with --data-dir DIR (or CUTOVER_DATA_DIR), or the file itself with \
             --credentials FILE (or CUTOVER_ADMIN_CREDENTIALS)"
        ),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => bail!(
            "cannot read the admin credentials file {shown}: permission denied. The file is \
             readable only by its owner; run `cutover admin` as the user that runs `cutover serve`"
        ),
        Err(e) => bail!("cannot read the admin credentials file {shown}: {e}"),
    };
    let creds: AdminCredentials = serde_json::from_str(&text).map_err(|e| {
        // Describe the problem without echoing the file's content (it holds a secret).
        let what = if e.is_data() && e.to_string().starts_with("missing field") {
            e.to_string()
        } else if e.is_data() {
            format!(
                "a field has the wrong type at line {} column {}",
                e.line(),
                e.column()
            )
        } else {
            format!("malformed JSON at line {} column {}", e.line(), e.column())
        };
        anyhow!(
            "{shown} is not a valid admin credentials file ({what}); expected JSON with \
             \"issuer\", \"clientId\" and \"clientSecret\""
        )
    })?;
    if creds.client_id.is_empty() || creds.client_secret.is_empty() {
        bail!("{shown} is not a valid admin credentials file: clientId or clientSecret is empty");
    }
    Ok(creds)
}

/// The server's base URL; `origin` says where it came from, for the error message.
pub(crate) fn parse_base_url(s: &str, origin: &str) -> Result<Url> {
    let mut url = Url::parse(s.trim()).map_err(|e| {
        anyhow!(
            "invalid server URL '{s}' (from {origin}): {e}; expected e.g. \
             https://login.contoso.example"
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        bail!("invalid server URL '{s}' (from {origin}): it must start with https:// or http://");
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// `base` + path `segments` (each percent-encoded as one segment) + `query` (only the pairs
/// with a value; keys are written as given, values form-urlencoded).
pub(crate) fn endpoint_url(base: &Url, segments: &[&str], query: &[(&str, Option<String>)]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    let pairs: Vec<String> = query
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", form_encode(v))))
        .collect();
    url.set_query((!pairs.is_empty()).then(|| pairs.join("&")).as_deref());
    url
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `Authorization: Basic …` for a client id and secret, each form-urlencoded first
/// (RFC 6749 §2.3.1).
fn basic_auth_header(client_id: &str, client_secret: &str) -> String {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", base64_encode(pair.as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
    out
}

/// The token endpoint's answer. No `Debug`: it holds a bearer token.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

/// An OAuth 2.0 error response (RFC 6749 §5.2), as the token endpoint returns.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// An error response from the server.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The API's error code (`notFound`, `conflict`, …) or the OAuth error (`invalid_client`).
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(code) = &self.code {
            parts.push(format!("code {code}"));
        }
        parts.push(format!("HTTP {}", self.status.as_u16()));
        if let Some(id) = &self.request_id {
            parts.push(format!("request {id}"));
        }
        write!(f, "{} ({})", self.message, parts.join(", "))
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Read an error out of a response body, whatever shape it has. `header_request_id` (the
    /// `x-request-id` response header) stands in when the body names no request id.
    fn from_body(status: StatusCode, header_request_id: Option<&str>, body: &[u8]) -> Self {
        let header_request_id = header_request_id.map(clean);
        if let Ok(e) = serde_json::from_slice::<ErrorResponse>(body) {
            return Self {
                status,
                code: Some(clean(&e.error.code)),
                message: clean(&e.error.message),
                request_id: e
                    .error
                    .request_id
                    .as_deref()
                    .map(clean)
                    .or(header_request_id),
            };
        }
        if let Ok(e) = serde_json::from_slice::<OAuthError>(body) {
            return Self {
                status,
                message: clean(e.error_description.as_deref().unwrap_or(&e.error)),
                code: Some(clean(&e.error)),
                request_id: header_request_id,
            };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let reason = status.canonical_reason().unwrap_or("error");
        let message = if text.is_empty() {
            reason.to_owned()
        } else {
            format!("{reason}: {}", truncate(&clean(text), 200))
        };
        Self {
            status,
            code: None,
            message,
            request_id: header_request_id,
        }
    }
}

/// A signed-in connection to the admin API.
pub(crate) struct Api {
    http: reqwest::Client,
    pub(crate) base: Url,
    /// `Bearer …`; never printed.
    authorization: String,
}

impl Api {
    /// Get an access token with the client-credentials grant.
    pub(crate) async fn sign_in(
        base: Url,
        creds: &AdminCredentials,
        creds_path: &Path,
        ca: Option<reqwest::Certificate>,
    ) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(ca) = ca {
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| anyhow!("cannot set up the HTTP client: {e}"))?;
        let url = endpoint_url(&base, &["oauth2", "token"], &[]);
        let resp = http
            .post(url.clone())
            .header(
                header::AUTHORIZATION,
                basic_auth_header(&creds.client_id, &creds.client_secret),
            )
            .header(header::ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| transport_error(&e, &base))?;
        let status = resp.status();
        let request_id = header_text(&resp, "x-request-id");
        let body = resp.bytes().await.map_err(|e| transport_error(&e, &base))?;
        if !status.is_success() {
            let mut err = ApiError::from_body(status, request_id.as_deref(), &body);
            if matches!(status.as_u16(), 400 | 401)
                && err
                    .code
                    .as_deref()
                    .is_some_and(|c| c.starts_with("invalid_"))
            {
                err.message = format!(
                    "the server at {base} refused the admin credentials from {}: {}",
                    creds_path.display(),
                    err.message
                );
            }
            return Err(err.into());
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            anyhow!(
                "the server at {base} answered the token request (POST {url}) without an \
                 access_token; is {base} really a Cutover server?"
            )
        })?;
        Ok(Self {
            http,
            base,
            authorization: format!("Bearer {}", token.access_token),
        })
    }

    /// Call `/api/v1/<segments>`; returns the response's JSON, or `None` for an empty body.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, Option<String>)],
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let mut path = vec!["api", "v1"];
        path.extend_from_slice(segments);
        let url = endpoint_url(&self.base, &path, query);
        self.fetch(method, url, body).await
    }

    /// Follow `@odata.nextLink` from `first` to the end of the log, gathering every page's
    /// rows into one `{"value": [...]}` (bounded by [`MAX_EXPORT_ROWS`]).
    async fn follow_pages(&self, first: Option<Value>) -> Result<Option<Value>> {
        let Some(mut page) = first else {
            return Ok(None);
        };
        let mut rows: Vec<Value> = Vec::new();
        let progress = indicatif::ProgressBar::new_spinner();
        progress.set_message("reading");
        loop {
            let next = page
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(Value::Array(items)) = page.get_mut("value").map(Value::take) {
                rows.extend(items);
            }
            progress.set_message(format!("read {} records", rows.len()));
            progress.tick();
            let Some(link) = next else { break };
            if rows.len() >= MAX_EXPORT_ROWS {
                progress.finish_and_clear();
                eprintln!(
                    "note: stopped after {} records (MAX_EXPORT_ROWS); narrow the window with --since/--until",
                    rows.len()
                );
                break;
            }
            let url = self
                .base
                .join(&link)
                .map_err(|e| anyhow!("the server sent an invalid next link {link:?}: {e}"))?;
            page = match self.fetch(Method::GET, url, None).await? {
                Some(v) => v,
                None => break,
            };
        }
        progress.finish_and_clear();
        rows.truncate(MAX_EXPORT_ROWS);
        Ok(Some(serde_json::json!({ "value": rows })))
    }

    pub(crate) async fn fetch(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        match self.fetch_keeping_body(method, url, body).await? {
            Ok(v) => Ok(v),
            Err((e, _)) => Err(e.into()),
        }
    }

    /// [`Api::fetch`] where a refusal keeps the answer's body as well (e.g. the gate's
    /// reasons of a 409).
    pub(crate) async fn fetch_keeping_body(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<std::result::Result<Option<Value>, (ApiError, Option<Value>)>> {
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&e, &self.base))?;
        let status = resp.status();
        let request_id = header_text(&resp, "x-request-id");
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, &self.base))?;
        if !status.is_success() {
            return Ok(Err((
                ApiError::from_body(status, request_id.as_deref(), &bytes),
                serde_json::from_slice(&bytes).ok(),
            )));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Ok(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| Ok(Some(v)))
            .map_err(|e| {
                anyhow!(
                    "the server's answer to {method} {} is not JSON: {e}",
                    url.path()
                )
            })
    }

    /// A non-JSON answer (a CSV export) as text.
    pub(crate) async fn fetch_text(
        &self,
        segments: &[&str],
        query: &[(&str, Option<String>)],
    ) -> Result<String> {
        let mut path = vec!["api", "v1"];
        path.extend_from_slice(segments);
        let url = endpoint_url(&self.base, &path, query);
        let resp = self
            .http
            .get(url)
            .header(header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(|e| transport_error(&e, &self.base))?;
        let status = resp.status();
        let request_id = header_text(&resp, "x-request-id");
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, &self.base))?;
        if !status.is_success() {
            return Err(ApiError::from_body(status, request_id.as_deref(), &bytes).into());
        }
        String::from_utf8(bytes.to_vec())
            .map_err(|_| anyhow!("the server's answer is not UTF-8 text"))
    }

    /// The id of the user with this principal name.
    async fn resolve_user(&self, upn: &str) -> Result<Uuid> {
        let resp = self.send(Method::GET, &["users", upn], &[], None).await?;
        let user: UserView = from_response(
            resp.ok_or_else(|| anyhow!("the server returned no data for user {upn}"))?,
        )?;
        Ok(user.id)
    }
}

fn header_text(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Explain a failed request: above all, say so when the server is not reachable.
fn transport_error(e: &reqwest::Error, base: &Url) -> anyhow::Error {
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let cause = if cause.is_empty() {
        e.to_string()
    } else {
        cause
    };
    if e.is_connect() {
        anyhow!(
            "the Cutover server at {base} is not reachable ({cause}). Is `cutover serve` \
             running? If it listens elsewhere, pass --server URL"
        )
    } else if e.is_timeout() {
        anyhow!(
            "the Cutover server at {base} did not answer within {} seconds",
            REQUEST_TIMEOUT.as_secs()
        )
    } else {
        anyhow!("the request to the Cutover server at {base} failed: {cause}")
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// Write to standard output; a closed pipe (`| head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(anyhow!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

fn print_json(out: OutputFormat, v: Option<&Value>) -> Result<()> {
    match (v, out) {
        (None, _) => Ok(()),
        (Some(v), OutputFormat::Jsonl) => emit(&format!("{}\n", serde_json::to_string(v)?)),
        (Some(v), _) => emit(&format!("{}\n", serde_json::to_string_pretty(v)?)),
    }
}

/// A list as JSON lines: one compact item per line.
fn print_json_lines(v: Option<&Value>) -> Result<()> {
    let items = v.and_then(|v| v.get("value")).and_then(Value::as_array);
    let mut text = String::new();
    for item in items.into_iter().flatten() {
        text.push_str(&serde_json::to_string(item)?);
        text.push('\n');
    }
    emit(&text)
}

fn from_response<T: DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        anyhow!(
            "unexpected response from the server ({e}); are `cutover admin` and the server the \
             same version?"
        )
    })
}

/// One object: JSON as is, or a headline and aligned `name: value` lines.
fn show<T: DeserializeOwned>(
    out: OutputFormat,
    resp: Option<Value>,
    headline: &str,
    fields: impl Fn(&T) -> Vec<(&'static str, String)>,
) -> Result<()> {
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let mut text = String::new();
    if !headline.is_empty() {
        text.push_str(&clean(headline));
        text.push('\n');
    }
    if let Some(v) = resp {
        text.push_str(&render_fields(&fields(&from_response(v)?)));
    }
    emit(&text)
}

/// A `{"value": [...]}` list: JSON as is, or a table.
fn show_list<T: DeserializeOwned>(
    out: OutputFormat,
    resp: Option<Value>,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    match out {
        OutputFormat::Json => return print_json(out, resp.as_ref()),
        OutputFormat::Jsonl => return print_json_lines(resp.as_ref()),
        OutputFormat::Table => {}
    }
    let list: ListResponse<T> = match resp {
        Some(v) => from_response(v)?,
        None => ListResponse::new(Vec::new()),
    };
    let rows: Vec<Vec<String>> = list.value.iter().map(row).collect();
    emit(&render_table(headers, &rows))
}

/// A command without a result object (delete, add member): the body if any in JSON mode, a
/// sentence in table mode.
fn done(out: OutputFormat, resp: Option<Value>, sentence: &str) -> Result<()> {
    match out {
        OutputFormat::Json | OutputFormat::Jsonl => print_json(out, resp.as_ref()),
        OutputFormat::Table => emit(&format!("{}\n", clean(sentence))),
    }
}

/// Header and rows in aligned columns; cells are cleaned of control characters and cut to
/// [`MAX_CELL_CHARS`]. An empty list is `(none)`.
pub(crate) fn render_table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| truncate(&clean(c.as_ref()), MAX_CELL_CHARS))
                .collect()
        })
        .collect();
    let mut widths = vec![0usize; header.len()];
    for line in std::iter::once(&header).chain(&body) {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&body) {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// `name: value` lines with the values aligned.
fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| format!("{:<width$}  {}\n", format!("{k}:"), clean(v)))
        .collect()
}

/// Replace control characters (which could move the cursor or recolour the terminal: log
/// records hold names typed by anyone) with visible escapes.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// At most `max` characters, the last one `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// A log record's field as text: strings as they are, arrays joined with commas, `-` when
/// absent, null or empty.
fn field_text(record: &Value, key: &str) -> String {
    let text = match record.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    };
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

fn sign_in_row(r: &Value) -> Vec<String> {
    [
        "createdDateTime",
        "userPrincipalName",
        "clientId",
        "route",
        "routeReason",
        "authenticationMethods",
        "result",
        "failureReason",
    ]
    .iter()
    .map(|k| field_text(r, k))
    .collect()
}

fn audit_row(r: &Value) -> Vec<String> {
    let name = match field_text(r, "targetName") {
        n if n == "-" => field_text(r, "targetId"),
        n => n,
    };
    let target = match field_text(r, "targetType") {
        t if t == "-" => name,
        t => format!("{t} {name}"),
    };
    vec![
        field_text(r, "createdDateTime"),
        field_text(r, "actor"),
        field_text(r, "action"),
        target,
    ]
}

fn domain_fields(d: &DomainView) -> Vec<(&'static str, String)> {
    vec![
        ("id", d.id.clone()),
        ("authenticationType", d.authentication_type.clone()),
        ("identityProviderId", opt(&d.identity_provider_id)),
        ("passwordValidation", opt(&d.password_validation)),
        (
            "previousIdentityProviderId",
            opt(&d.previous_identity_provider_id),
        ),
        ("createdDateTime", d.created_date_time.clone()),
    ]
}

fn user_fields(u: &UserView) -> Vec<(&'static str, String)> {
    vec![
        ("id", u.id.to_string()),
        ("userPrincipalName", u.user_principal_name.clone()),
        ("displayName", u.display_name.clone()),
        ("accountEnabled", yes_no(u.account_enabled)),
        ("mail", opt(&u.mail)),
        ("department", opt(&u.department)),
        ("managerId", opt(&u.manager_id)),
        ("source", u.source.clone()),
        ("immutableId", opt(&u.immutable_id)),
        ("breakGlass", yes_no(u.break_glass)),
        (
            "hasPassword",
            u.has_password.map(yes_no).unwrap_or_else(|| "-".into()),
        ),
        ("createdDateTime", u.created_date_time.clone()),
        ("updatedDateTime", u.updated_date_time.clone()),
    ]
}

fn group_fields(g: &GroupView) -> Vec<(&'static str, String)> {
    vec![
        ("id", g.id.to_string()),
        ("displayName", g.display_name.clone()),
        ("description", opt(&g.description)),
        ("membershipKind", g.membership_kind.clone()),
        ("source", g.source.clone()),
        ("immutableId", opt(&g.immutable_id)),
        ("createdDateTime", g.created_date_time.clone()),
    ]
}

/// An application's fields; never its secret (that is printed separately, once).
fn app_fields(a: &ApplicationView) -> Vec<(&'static str, String)> {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    vec![
        ("id", a.id.to_string()),
        ("clientId", a.client_id.clone()),
        ("displayName", a.display_name.clone()),
        ("clientType", a.client_type.clone()),
        ("clientAppType", a.client_app_type.clone()),
        ("redirectUris", list(&a.redirect_uris)),
        ("postLogoutRedirectUris", list(&a.post_logout_redirect_uris)),
        ("grantTypes", list(&a.grant_types)),
        ("appRoles", list(&a.app_roles)),
        ("createdDateTime", a.created_date_time.clone()),
    ]
}

fn key_fields(k: &SigningKeyView) -> Vec<(&'static str, String)> {
    vec![
        ("kid", k.kid.clone()),
        ("algorithm", k.algorithm.clone()),
        ("active", yes_no(k.active)),
        ("published", yes_no(k.published)),
        ("createdDateTime", k.created_date_time.clone()),
        ("retiredDateTime", opt(&k.retired_date_time)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};
    use serde_json::json;

    #[derive(Parser, Debug)]
    #[command(name = "cutover")]
    struct TestCli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Subcommand, Debug)]
    enum TestCommand {
        Admin(AdminArgs),
    }

    fn parse(args: &[&str]) -> Result<AdminArgs, clap::Error> {
        let argv = ["cutover", "admin"].iter().chain(args);
        TestCli::try_parse_from(argv).map(|c| match c.command {
            TestCommand::Admin(a) => a,
        })
    }

    #[test]
    fn command_line_is_well_formed() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn durations_parse_to_seconds() {
        assert_eq!(parse_duration("48h"), Ok(48 * 3600));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("0s"), Ok(0));
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let e = parse_duration("48").unwrap_err();
        assert!(e.contains("needs a unit") && e.contains("48h"), "{e}");
        let e = parse_duration("5y").unwrap_err();
        assert!(e.contains("unknown unit 'y'"), "{e}");
        let e = parse_duration("h").unwrap_err();
        assert!(e.contains("expected a number"), "{e}");
        let e = parse_duration("").unwrap_err();
        assert!(e.contains("empty duration"), "{e}");
        let e = parse_duration("-5h").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        let e = parse_duration("99999999999999999999h").unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let e = parse_duration("9999999999999999999w").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn rfc3339_of_known_times() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        // Leap days, including the century rule's exception for 2000.
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(format_rfc3339(1_709_251_200), "2024-03-01T00:00:00Z");
        assert_eq!(format_rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn formatting_round_trips_through_validation_every_day_for_years() {
        let mut t = 0;
        while t < 4_200_000_000 {
            let s = format_rfc3339(t);
            assert!(is_rfc3339(&s), "{s}");
            t += 86_400 + 3_601;
        }
    }

    #[test]
    fn rfc3339_validation() {
        for ok in [
            "2024-05-01T00:00:00Z",
            "2024-02-29T23:59:59z",
            "2024-05-01t12:30:00.123Z",
            "2024-05-01T12:30:00+02:00",
            "2024-05-01T12:30:00-05:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "2024-05-01",
            "2024-05-01 12:30:00Z",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:30:00",
            "2024-05-01T12:30:00.Z",
            "2024-05-01T12:30:00+0200",
            "2024-05-01T12:30:00Zjunk",
            "yesterday",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn time_arguments() {
        let now = 1_700_000_000;
        assert_eq!(
            time_arg_at("48h", now).unwrap(),
            format_rfc3339(now - 48 * 3600)
        );
        assert_eq!(time_arg_at("48h", now).unwrap(), "2023-11-12T22:13:20Z");
        assert_eq!(
            time_arg_at("2024-05-01T00:00:00+02:00", now).unwrap(),
            "2024-05-01T00:00:00+02:00"
        );
        let e = time_arg_at("2024-05-01", now).unwrap_err();
        assert!(e.contains("not an RFC 3339 timestamp"), "{e}");
        let e = time_arg_at("two days", now).unwrap_err();
        assert!(
            e.contains("invalid duration") && e.contains("RFC 3339"),
            "{e}"
        );
        let e = time_arg_at("100000w", now).unwrap_err();
        assert!(e.contains("before 1970"), "{e}");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), expected, "{input}");
        }
        assert_eq!(base64_encode(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret() {
        // RFC 7617's example, except that the space is form-encoded as `+` (RFC 6749 §2.3.1).
        assert_eq!(
            basic_auth_header("Aladdin", "open sesame"),
            format!("Basic {}", base64_encode(b"Aladdin:open+sesame"))
        );
        // base64url ids and secrets pass unchanged.
        assert_eq!(
            basic_auth_header("abc-DEF_123", "s3cr3t-_"),
            "Basic YWJjLURFRl8xMjM6czNjcjN0LV8="
        );
        // A colon in the id must not split it.
        assert_eq!(
            basic_auth_header("a:b", "c%d"),
            format!("Basic {}", base64_encode(b"a%3Ab:c%25d"))
        );
    }

    #[test]
    fn tables_align_truncate_and_clean() {
        let rows = vec![
            vec!["user1@contoso.example", "User One", "yes"],
            vec!["u2@c.example", "Two", "no"],
        ];
        assert_eq!(
            render_table(&["UPN", "DISPLAY NAME", "ENABLED"], &rows),
            "UPN                    DISPLAY NAME  ENABLED\n\
             user1@contoso.example  User One      yes\n\
             u2@c.example           Two           no\n"
        );
        let long = "x".repeat(80);
        let table = render_table(&["A", "B"], &[vec![long.as_str(), "b"]]);
        let expected_cell = format!("{}…", "x".repeat(59));
        assert_eq!(
            table,
            format!("A{}  B\n{expected_cell}  b\n", " ".repeat(59))
        );
        let table = render_table(&["NAME"], &[vec!["evil\u{1b}[31mred\nline"]]);
        assert!(!table.contains('\u{1b}'), "{table:?}");
        assert_eq!(table.lines().count(), 2, "{table:?}");
        let empty: Vec<Vec<String>> = Vec::new();
        assert_eq!(render_table(&["A"], &empty), "(none)\n");
    }

    #[test]
    fn fields_align() {
        let text = render_fields(&[("id", "1".into()), ("displayName", "X".into())]);
        assert_eq!(text, "id:           1\ndisplayName:  X\n");
    }

    #[test]
    fn log_rows_from_json() {
        let r = json!({
            "createdDateTime": "2024-05-01T00:00:00Z",
            "userPrincipalName": "user1@contoso.example",
            "clientId": "app1",
            "route": "managed",
            "routeReason": "stagedRolloutPasswordHashSync",
            "authenticationMethods": ["password", "session"],
            "result": "failure",
            "failureReason": "invalidPassword",
        });
        assert_eq!(
            sign_in_row(&r),
            vec![
                "2024-05-01T00:00:00Z",
                "user1@contoso.example",
                "app1",
                "managed",
                "stagedRolloutPasswordHashSync",
                "password,session",
                "failure",
                "invalidPassword"
            ]
        );
        let r =
            json!({"createdDateTime": "t", "userPrincipalName": null, "authenticationMethods": []});
        assert_eq!(sign_in_row(&r)[1..], ["-", "-", "-", "-", "-", "-", "-"]);
        let a = json!({"createdDateTime": "t", "actor": "admin", "action": "createUser",
                       "targetType": "user", "targetId": "42", "targetName": null});
        assert_eq!(audit_row(&a), vec!["t", "admin", "createUser", "user 42"]);
    }

    #[test]
    fn urls_encode_segments_and_only_given_query_pairs() {
        let base = parse_base_url("https://login.contoso.example/tenant/", "test").unwrap();
        let url = endpoint_url(
            &base,
            &["api", "v1", "users", "a b/c@contoso.example"],
            &[
                ("prefix", Some("a&b c".into())),
                ("$top", Some("5".into())),
                ("x", None),
            ],
        );
        assert_eq!(
            url.as_str(),
            "https://login.contoso.example/tenant/api/v1/users/a%20b%2Fc@contoso.example?prefix=a%26b+c&$top=5"
        );
        let base = parse_base_url("http://127.0.0.1:8080", "test").unwrap();
        assert_eq!(
            endpoint_url(&base, &["oauth2", "token"], &[("x", None)]).as_str(),
            "http://127.0.0.1:8080/oauth2/token"
        );
        assert!(parse_base_url("ftp://x", "test").is_err());
        assert!(parse_base_url("login.contoso.example", "test").is_err());
    }

    #[test]
    fn api_errors_read_every_shape() {
        let body = br#"{"error":{"code":"conflict","message":"user1@contoso.example exists","requestId":"r-1"}}"#;
        let e = ApiError::from_body(StatusCode::CONFLICT, Some("hdr"), body);
        assert_eq!(
            e.to_string(),
            "user1@contoso.example exists (code conflict, HTTP 409, request r-1)"
        );
        let body = br#"{"error":"invalid_client","error_description":"bad secret"}"#;
        let e = ApiError::from_body(StatusCode::UNAUTHORIZED, None, body);
        assert_eq!(e.to_string(), "bad secret (code invalid_client, HTTP 401)");
        let e = ApiError::from_body(StatusCode::BAD_GATEWAY, None, b"<html>oops</html>");
        assert_eq!(e.to_string(), "Bad Gateway: <html>oops</html> (HTTP 502)");
        let e = ApiError::from_body(StatusCode::NOT_FOUND, None, b"");
        assert_eq!(e.to_string(), "Not Found (HTTP 404)");
        // Without a requestId in the body, the x-request-id header is named.
        let body = br#"{"error":{"code":"notFound","message":"no user x"}}"#;
        let e = ApiError::from_body(StatusCode::NOT_FOUND, Some("r-2"), body);
        assert_eq!(
            e.to_string(),
            "no user x (code notFound, HTTP 404, request r-2)"
        );
    }

    #[test]
    fn missing_credentials_explain_where_they_come_from() {
        let e = load_credentials(Path::new("/nonexistent/cutover/admin-credentials")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("cutover serve")
                && msg.contains("--data-dir")
                && msg.contains("--credentials"),
            "{msg}"
        );
    }

    #[test]
    fn bad_credentials_do_not_echo_the_secret() {
        let dir = std::env::temp_dir().join(format!("cutover-admin-cli-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin-credentials");
        std::fs::write(
            &path,
            r#"{"issuer":"https://x","clientId":"id","clientSecret":12345678}"#,
        )
        .unwrap();
        let msg = load_credentials(&path).unwrap_err().to_string();
        assert!(!msg.contains("12345678"), "{msg}");
        std::fs::write(&path, r#"{"issuer":"https://x","clientId":"id"}"#).unwrap();
        let msg = load_credentials(&path).unwrap_err().to_string();
        assert!(msg.contains("clientSecret"), "{msg}");
        std::fs::write(
            &path,
            r#"{"issuer":"https://x","clientId":"id","clientSecret":"s"}"#,
        )
        .unwrap();
        assert_eq!(load_credentials(&path).unwrap().client_id, "id");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn create_user_sends_only_what_was_given() {
        let a = parse(&[
            "users",
            "create",
            "user1@contoso.example",
            "--display-name",
            "User One",
        ])
        .unwrap();
        let AdminCommand::Users(UsersCommand::Create(c)) = a.command else {
            panic!("{a:?}")
        };
        assert_eq!(
            create_user_body(&c, None).unwrap(),
            json!({"userPrincipalName": "user1@contoso.example", "displayName": "User One",
                   "accountEnabled": true, "breakGlass": false})
        );
        let a = parse(&[
            "users",
            "create",
            "u@c.example",
            "--display-name",
            "U",
            "--password",
            "pw",
            "--disabled",
            "--mail",
            "u@mail.example",
            "--break-glass",
        ])
        .unwrap();
        let AdminCommand::Users(UsersCommand::Create(c)) = a.command else {
            panic!("{a:?}")
        };
        let pw = read_password(&c.password).unwrap();
        assert_eq!(
            create_user_body(&c, pw).unwrap(),
            json!({"userPrincipalName": "u@c.example", "displayName": "U", "accountEnabled": false,
                   "passwordProfile": {"password": "pw"}, "mail": "u@mail.example", "breakGlass": true})
        );
        // The password stays out of Debug output.
        assert!(!format!("{c:?}").contains("\"pw\""), "{c:?}");
    }

    #[test]
    fn update_user_patches_only_given_attributes() {
        let a = parse(&[
            "users",
            "update",
            "u@c.example",
            "--disable",
            "--mail",
            "",
            "--break-glass",
            "false",
        ])
        .unwrap();
        let AdminCommand::Users(UsersCommand::Update(u)) = a.command else {
            panic!("{a:?}")
        };
        assert_eq!(
            update_user_body(&u, None).unwrap(),
            json!({"accountEnabled": false, "mail": null, "breakGlass": false})
        );
        let e = parse(&["users", "update", "u@c.example"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["users", "update", "u@c.example", "--enable", "--disable"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&[
            "users",
            "update",
            "u@c.example",
            "--password",
            "x",
            "--password-stdin",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn other_bodies() {
        let a = parse(&[
            "apps",
            "create",
            "Payroll",
            "--redirect-uri",
            "https://p.example/cb",
            "--redirect-uri",
            "https://p.example/cb2",
            "--grant",
            "authorization_code",
            "--app-role",
            "Directory.Read.All",
        ])
        .unwrap();
        let AdminCommand::Apps(AppsCommand::Create(c)) = a.command else {
            panic!("{a:?}")
        };
        assert_eq!(
            create_app_body(&c).unwrap(),
            json!({"displayName": "Payroll",
                   "redirectUris": ["https://p.example/cb", "https://p.example/cb2"],
                   "postLogoutRedirectUris": [], "clientType": "confidential",
                   "grantTypes": ["authorization_code"], "appRoles": ["Directory.Read.All"]})
        );
    }

    #[test]
    fn members_are_ids_or_upns() {
        let id = Uuid::new_v4();
        assert_eq!(member_ref(&id.to_string()), Ok(MemberRef::Id(id)));
        assert_eq!(
            member_ref("u@c.example"),
            Ok(MemberRef::Upn("u@c.example".into()))
        );
        assert!(member_ref("bob").unwrap_err().contains("neither an id"));
        assert!(path_segment("..").is_err());
        assert!(path_segment("").is_err());
    }

    #[test]
    fn global_options_work_after_the_subcommand() {
        let a = parse(&[
            "sign-ins", "--since", "2h", "--output", "json", "--server", "http://x",
        ])
        .unwrap();
        assert_eq!(a.output, OutputFormat::Json);
        assert_eq!(a.server.as_deref(), Some("http://x"));
        let AdminCommand::SignIns(s) = a.command else {
            panic!()
        };
        assert!(s.window.since.is_some_and(|t| is_rfc3339(&t)));
        let e = parse(&["audit", "--since", "2 days"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn first_line_drops_line_endings() {
        assert_eq!(first_line("pw\n"), "pw");
        assert_eq!(first_line("pw\r\n"), "pw");
        assert_eq!(first_line("pw"), "pw");
        assert_eq!(first_line("p w \nsecond"), "p w ");
        assert_eq!(first_line(""), "");
    }
}
