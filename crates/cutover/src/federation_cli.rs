//! `cutover admin idp …`, `cutover admin rollout …`, `cutover admin users staged-rollout` and
//! `cutover admin domains convert` (plus the federation options of `domains create`): the
//! upstream identity providers, staged rollout of managed authentication, and the domain
//! cut-over.
//!
//! This is a child module of `admin_cli` (declared there with `#[path]`), so it shares that
//! module's signed-in [`Api`], its output helpers and its conventions: tables for people,
//! `--output json|jsonl` for scripts, API errors as [`ApiError`]s.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use cutover_core::PasswordValidation;
use cutover_core::staged::RolloutFeature;
use cutover_proto::federation::{
    AddAppliesTo, CreateFeatureRolloutPolicy, CreateIdentityProvider, DirectoryObjectRef,
    FeatureRolloutPolicyView, IdentityProviderView, RolloutProgressTotals, RolloutProgressView,
    StagedRolloutView, UpdateFeatureRolloutPolicy, UpdateIdentityProvider,
};
use cutover_proto::{CreateDomain, GroupView, ListResponse};
use reqwest::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    Api, ApiError, OutputFormat, clean, domain_fields, done, emit, endpoint_url, first_line,
    from_response, header_text, opt, path_segment, print_json, render_fields, render_table, show,
    show_list, transport_error, truncate, without_nulls, yes_no,
};

/// The policies' path under `/api/v1`.
const POLICIES: [&str; 2] = ["policies", "featureRolloutPolicies"];

/// Exit status of `domains convert` when the preflight refused the conversion (also for a dry
/// run that would be refused), so that scripts can gate on it.
pub const EXIT_PREFLIGHT_REFUSED: i32 = 2;

/// The error codes (HTTP 400 `error.code`) of the staged-rollout rules that
/// `cutover admin rollout --help` explains.
const RULE_CODES: [&str; 8] = [
    "maxGroupsPerFeature",
    "nestedGroupNotSupported",
    "dynamicGroupNotSupported",
    "groupContainsContact",
    "tooManyMembersOnFirstAdd",
    "passwordHashSyncAndPassthroughExclusive",
    "seamlessSsoNeedsPasswordFeature",
    "onePolicyPerFeature",
];

/// The other codes a policy change can be refused with; their messages say what to do.
const OTHER_POLICY_CODES: [&str; 4] = [
    "appliedToOrganizationNotSupported",
    "featureCannotChange",
    "groupAlreadyAdded",
    "groupNotInPolicy",
];

/// `cutover admin rollout --help`.
pub const ROLLOUT_LONG_ABOUT: &str = "\
Staged rollout: move chosen groups of users off the legacy identity provider before converting \
their whole domain.

A feature rollout policy names one feature and the groups it applies to. Synced users of \
federated domains who are direct members of those groups stop being sent to the legacy IdP: \
with passwordHashSync Cutover checks their synced password hash, with \
passthroughAuthentication the on-premises pass-through agents check the password.

The switch happens only after the user completes one more interactive sign-in, in both \
directions (when a group is added and when it is removed or the policy disabled); until then \
the user signs in as before. Refresh tokens never switch anyone.

Not affected: requests with a domain_hint and legacy clients (exchangeActiveSync, other) keep \
federation; cloud-only users, break-glass accounts and users of managed domains are never \
staged.

Rules (a change that breaks one is refused, and the error names the rule):
  - at most 10 groups per feature;
  - no nested groups, dynamic groups or groups that contain contacts;
  - at most 200 members in a group when it is first added (add more members afterwards);
  - passwordHashSync and passthroughAuthentication are not both enabled;
  - seamlessSso only together with one of those two;
  - one policy per feature.

Roll back: remove the group (`cutover admin rollout remove-group FEATURE GROUP`) or disable the \
policy (`cutover admin rollout update FEATURE --disable`); the users return to the legacy IdP \
after their next completed interactive sign-in — or already at their next attempt when Cutover \
cannot check their password at all (no synced hash, no agent), so nobody is stranded.

Where to look: `cutover admin rollout progress POLICY` (per group: who switched, who is \
pending or held), `cutover admin users staged-rollout UPN` (desired and effective features, a \
pending switch, the next sign-in's route and why), and the sign-in log's route and routeReason \
(the ROUTE and WHY columns of `cutover admin sign-ins --user UPN`; `--output json` adds the \
staged state of each sign-in).

POLICY is a policy's id or its feature (passwordHashSync, …); GROUP is a group's id or its exact \
display name.";

/// `cutover admin domains convert --help`.
pub const CONVERT_LONG_ABOUT: &str = "\
Convert a domain between federated and managed authentication, behind a preflight.

--to managed is the cut-over: afterwards every user of the domain signs in with Cutover. The \
server first runs a preflight and refuses the conversion when a check fails:
  - passwords can be checked for every synced user: with password-hash-sync (the default) every \
synced user has a synced password hash; with passthrough-authentication at least 3 healthy \
pass-through agents are running;
  - break-glass accounts: at least 2 enabled, and at least one signed in successfully within \
the last 90 days (drill them);
  - recent federated sign-ins (last 30 days) are listed for review: a warning, not a refusal.

--to federated is the rollback and is always allowed: the domain returns to the identity \
provider it used before its cut-over (or the one named with --identity-provider).

Run with --dry-run first: it runs the preflight and changes nothing.

Exit status: 0 when converted, or when a dry run would be allowed; 2 when the preflight refused \
the conversion (also for a dry run that would be refused); 1 for any other error.";

/// `cutover admin rollout progress --help`.
const PROGRESS_LONG_ABOUT: &str = "\
Show how far a rollout policy has come, per group and in total (a user in two of its groups \
counts once in the total).

Each direct user member of the policy's groups is in one category:
  █ switched       the feature is effective: done;
  ░ pending        the next completed interactive sign-in switches them;
  ! held           pending, but passwordHashSync waits for their synced password hash (they \
stay federated until then: cutover sync run --once --passwords);
  < returning      the feature is effective but no longer applies (policy disabled, hash gone): \
the next sign-in takes it away;
  - not enabled    the policy is disabled and the feature is not effective;
  ? needs password feature   seamlessSso applies only together with an enabled password policy;
  x not eligible   cloud-only users, break-glass accounts, users of managed or unknown domains.

The bar of each group is 40 characters wide, split in proportion to the categories; a \
category with any member gets at least one character. The held and pending users are listed \
(up to 20 of each per group, by name); --output json prints the server's answer with every \
category's sample.";

const IDP_CREATE_LONG_ABOUT: &str = "\
Register an upstream OpenID Connect identity provider (the legacy IdP that federated domains \
sign in at).

The client secret is read from a file (or standard input with `-`), never from the command \
line, where it would show up in the process list; a trailing newline is dropped. The answer \
includes the redirect URI to register for the client at the upstream identity provider.";

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[derive(Subcommand, Debug)]
pub enum IdpCommand {
    /// List the upstream identity providers, with the domains federated to each.
    List,
    /// Show one identity provider.
    Get {
        /// The identity provider's id or exact display name.
        #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
        idp: String,
    },
    /// Register an upstream OpenID Connect identity provider; prints the redirect URI to
    /// register there.
    #[command(long_about = IDP_CREATE_LONG_ABOUT)]
    Create(CreateIdpArgs),
    /// Change an identity provider; only the settings given change.
    Update(UpdateIdpArgs),
    /// Delete an identity provider (refused while a federated domain uses it).
    Delete {
        /// The identity provider's id or exact display name.
        #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
        idp: String,
    },
}

#[derive(Args, Debug)]
pub struct CreateIdpArgs {
    /// The name shown to administrators.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The upstream's issuer URL; discovery is ISSUER/.well-known/openid-configuration.
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// Cutover's client id at the upstream.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client_id: String,
    /// Read the client secret from FILE (`-` for standard input); a trailing newline is dropped.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: PathBuf,
    /// A scope to request (repeat for several) [default: openid profile email].
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// The ID-token claim carrying the on-premises immutable id [default: sub].
    #[arg(long, value_name = "CLAIM")]
    pub immutable_id_claim: Option<String>,
    /// When no user has the immutable id, match the user by user principal name.
    #[arg(long)]
    pub fallback_to_upn: bool,
    /// The claim carrying the user principal name for --fallback-to-upn [default: upn].
    #[arg(long, value_name = "CLAIM", requires = "fallback_to_upn")]
    pub upn_claim: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args([
            "name", "issuer", "client_id", "client_secret_file", "scopes", "immutable_id_claim",
            "fallback_to_upn", "no_fallback_to_upn", "upn_claim",
        ])
))]
pub struct UpdateIdpArgs {
    /// The identity provider's id or exact display name.
    #[arg(value_name = "ID_OR_NAME", value_parser = path_segment)]
    pub idp: String,
    /// New name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New issuer URL.
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// New client id.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client_id: Option<String>,
    /// Read a new client secret from FILE (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Replace the scopes with these (repeat for several).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// New immutable-id claim.
    #[arg(long, value_name = "CLAIM")]
    pub immutable_id_claim: Option<String>,
    /// Turn on the fallback to matching by user principal name.
    #[arg(long, conflicts_with = "no_fallback_to_upn")]
    pub fallback_to_upn: bool,
    /// Turn off the fallback to matching by user principal name.
    #[arg(long, conflicts_with = "upn_claim")]
    pub no_fallback_to_upn: bool,
    /// New claim for the user principal name fallback.
    #[arg(long, value_name = "CLAIM")]
    pub upn_claim: Option<String>,
}

/// A staged-rollout feature (the Graph `stagedFeatureName` names; kebab-case is accepted too).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Cutover checks the synced password hash.
    #[value(name = "passwordHashSync", alias = "password-hash-sync")]
    PasswordHashSync,
    /// The on-premises pass-through agents check the password.
    #[value(
        name = "passthroughAuthentication",
        alias = "passthrough-authentication"
    )]
    PassthroughAuthentication,
    /// Seamless single sign-on (only with one of the two above).
    #[value(name = "seamlessSso", alias = "seamless-sso")]
    SeamlessSso,
    /// Certificate-based authentication.
    #[value(
        name = "certificateBasedAuthentication",
        alias = "certificate-based-authentication"
    )]
    CertificateBasedAuthentication,
    /// Multi-factor authentication.
    #[value(
        name = "multiFactorAuthentication",
        alias = "multi-factor-authentication"
    )]
    MultiFactorAuthentication,
}

impl Feature {
    fn core(self) -> RolloutFeature {
        match self {
            Self::PasswordHashSync => RolloutFeature::PasswordHashSync,
            Self::PassthroughAuthentication => RolloutFeature::PassthroughAuthentication,
            Self::SeamlessSso => RolloutFeature::SeamlessSso,
            Self::CertificateBasedAuthentication => RolloutFeature::CertificateBasedAuthentication,
            Self::MultiFactorAuthentication => RolloutFeature::MultiFactorAuthentication,
        }
    }

    /// The wire name (`passwordHashSync`, …).
    fn as_str(self) -> &'static str {
        self.core().as_str()
    }
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// List the feature rollout policies.
    List,
    /// Show one policy with its groups.
    Get {
        /// The policy's id or feature (passwordHashSync, …).
        #[arg(value_name = "POLICY", value_parser = path_segment)]
        policy: String,
    },
    /// Create a policy for a feature (at most one per feature); it starts with no groups.
    Create(CreatePolicyArgs),
    /// Rename, describe, enable or disable a policy (its feature cannot change).
    Update(UpdatePolicyArgs),
    /// Delete a policy; its users return to the legacy IdP after their next interactive
    /// sign-in.
    Delete {
        /// The policy's id or feature (passwordHashSync, …).
        #[arg(value_name = "POLICY", value_parser = path_segment)]
        policy: String,
    },
    /// List the groups a policy applies to.
    Groups {
        /// The policy's id or feature (passwordHashSync, …).
        #[arg(value_name = "POLICY", value_parser = path_segment)]
        policy: String,
    },
    /// Apply a policy to a group (assigned, not nested, no contacts, ≤200 members now).
    AddGroup {
        /// The policy's id or feature (passwordHashSync, …).
        #[arg(value_name = "POLICY", value_parser = path_segment)]
        policy: String,
        /// The group's id or exact display name.
        #[arg(value_name = "GROUP", value_parser = path_segment)]
        group: String,
    },
    /// Show how far a policy has come: per group and in total, how many direct members have
    /// switched, will switch at their next sign-in (pending), are held (no synced password
    /// hash yet), return, or are not eligible; a bar chart, a table, and who is held or
    /// pending.
    #[command(long_about = PROGRESS_LONG_ABOUT)]
    Progress {
        /// The policy's id or feature (passwordHashSync, …).
        #[arg(value_name = "POLICY", value_parser = path_segment)]
        policy: String,
    },
    /// Take a group out of a policy (the rollback for its members).
    RemoveGroup {
        /// The policy's id or feature (passwordHashSync, …).
        #[arg(value_name = "POLICY", value_parser = path_segment)]
        policy: String,
        /// The group's id or exact display name.
        #[arg(value_name = "GROUP", value_parser = path_segment)]
        group: String,
    },
}

#[derive(Args, Debug)]
pub struct CreatePolicyArgs {
    /// The policy's display name.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The feature the policy rolls out.
    #[arg(long, value_enum, value_name = "FEATURE")]
    pub feature: Feature,
    /// What the policy is for.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Enable the policy at once (default: created disabled).
    #[arg(long)]
    pub enable: bool,
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["name", "description", "enable", "disable"])
))]
pub struct UpdatePolicyArgs {
    /// The policy's id or feature (passwordHashSync, …).
    #[arg(value_name = "POLICY", value_parser = path_segment)]
    pub policy: String,
    /// New display name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New description.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Enable the policy.
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Disable the policy (its users return to the legacy IdP after their next interactive
    /// sign-in).
    #[arg(long)]
    pub disable: bool,
}

/// How a managed domain checks synced users' passwords.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordValidationArg {
    /// Against the synced password hash.
    #[value(name = "password-hash-sync", alias = "passwordHashSync")]
    PasswordHashSync,
    /// By the on-premises directory, through pass-through agents.
    #[value(
        name = "passthrough-authentication",
        alias = "passthroughAuthentication"
    )]
    PassthroughAuthentication,
}

impl PasswordValidationArg {
    /// The wire name (`passwordHashSync`, …).
    fn as_str(self) -> &'static str {
        match self {
            Self::PasswordHashSync => PasswordValidation::PasswordHashSync,
            Self::PassthroughAuthentication => PasswordValidation::PassthroughAuthentication,
        }
        .as_str()
    }
}

/// `cutover admin domains create`.
#[derive(Args, Debug)]
pub struct CreateDomainArgs {
    /// The domain name, e.g. contoso.example.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Users of this domain sign in at an upstream identity provider (default: managed, i.e.
    /// Cutover checks their passwords itself).
    #[arg(long)]
    pub federated: bool,
    /// The upstream identity provider of a federated domain: its id or exact name
    /// (`cutover admin idp list`). Implies --federated.
    #[arg(long, value_name = "IDP", value_parser = path_segment)]
    pub identity_provider: Option<String>,
    /// How a managed domain checks synced users' passwords [server default:
    /// password-hash-sync].
    #[arg(long, value_enum, value_name = "METHOD", conflicts_with_all = ["federated", "identity_provider"])]
    pub password_validation: Option<PasswordValidationArg>,
}

/// What `domains convert --to` converts a domain to.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainAuthentication {
    /// Cutover checks the users' passwords (the cut-over).
    Managed,
    /// The users sign in at the upstream identity provider (the rollback).
    Federated,
}

/// `cutover admin domains convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The domain name, e.g. contoso.example.
    #[arg(value_name = "NAME", value_parser = path_segment)]
    pub name: String,
    /// Convert to managed (the cut-over, behind the preflight) or federated (the rollback).
    #[arg(long, value_enum, value_name = "AUTH")]
    pub to: DomainAuthentication,
    /// With --to managed: how passwords are checked [server default: password-hash-sync].
    #[arg(long, value_enum, value_name = "METHOD")]
    pub password_validation: Option<PasswordValidationArg>,
    /// With --to federated: the identity provider's id or exact name [default: the one the
    /// domain used before its cut-over].
    #[arg(long, value_name = "IDP", value_parser = path_segment)]
    pub identity_provider: Option<String>,
    /// Run the preflight only; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

// ---------------------------------------------------------------------------------------------
// Running the commands
// ---------------------------------------------------------------------------------------------

pub(super) async fn idp(api: &Api, out: OutputFormat, cmd: IdpCommand) -> Result<()> {
    match cmd {
        IdpCommand::List => {
            let resp = api
                .send(Method::GET, &["identityProviders"], &[], None)
                .await?;
            show_list(
                out,
                resp,
                &["ID", "NAME", "ISSUER", "CLIENT ID", "DOMAINS"],
                |i: &IdentityProviderView| {
                    vec![
                        i.id.to_string(),
                        i.display_name.clone(),
                        i.issuer.clone(),
                        i.client_id.clone(),
                        list_text(&i.domains, ","),
                    ]
                },
            )
        }
        IdpCommand::Get { idp } => {
            let id = resolve_idp(api, &idp).await?.to_string();
            let resp = api
                .send(Method::GET, &["identityProviders", &id], &[], None)
                .await?;
            show(out, resp, "", idp_fields)
        }
        IdpCommand::Create(a) => {
            let secret = read_secret(&a.client_secret_file)?;
            let body = create_idp_body(&a, secret)?;
            let resp = api
                .send(Method::POST, &["identityProviders"], &[], Some(&body))
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let view: IdentityProviderView = from_response(
                resp.ok_or_else(|| anyhow!("the server returned no identity provider"))?,
            )?;
            emit(&created_idp_text(&view))
        }
        IdpCommand::Update(a) => {
            let id = resolve_idp(api, &a.idp).await?.to_string();
            let secret = a
                .client_secret_file
                .as_deref()
                .map(read_secret)
                .transpose()?;
            let body = update_idp_body(&a, secret)?;
            let resp = api
                .send(Method::PATCH, &["identityProviders", &id], &[], Some(&body))
                .await?;
            show(
                out,
                resp,
                &format!("Updated identity provider {}.", a.idp),
                idp_fields,
            )
        }
        IdpCommand::Delete { idp } => {
            let id = resolve_idp(api, &idp).await?.to_string();
            let resp = api
                .send(Method::DELETE, &["identityProviders", &id], &[], None)
                .await?;
            done(out, resp, &format!("Deleted identity provider {idp}."))
        }
    }
}

pub(super) async fn rollout(api: &Api, out: OutputFormat, cmd: RolloutCommand) -> Result<()> {
    match cmd {
        RolloutCommand::List => {
            let resp = api.send(Method::GET, &POLICIES, &[], None).await?;
            show_list(
                out,
                resp,
                &["ID", "FEATURE", "NAME", "ENABLED", "GROUPS"],
                |p: &FeatureRolloutPolicyView| {
                    vec![
                        p.id.to_string(),
                        p.feature.clone(),
                        p.display_name.clone(),
                        yes_no(p.is_enabled),
                        p.applies_to.len().to_string(),
                    ]
                },
            )
        }
        RolloutCommand::Get { policy } => {
            let id = resolve_policy(api, &policy).await?.to_string();
            let resp = api
                .send(Method::GET, &policy_path(&[&id]), &[], None)
                .await?;
            show(out, resp, "", policy_fields)
        }
        RolloutCommand::Create(a) => {
            let body = create_policy_body(&a)?;
            let resp = api
                .send(Method::POST, &POLICIES, &[], Some(&body))
                .await
                .map_err(rule_context)?;
            show_policy(out, resp, |p| {
                let mut text = format!("Created the {} rollout policy.", p.feature);
                text.push_str(&format!(
                    "\nNext: cutover admin rollout add-group {} GROUP",
                    p.feature
                ));
                if !p.is_enabled {
                    text.push_str(&format!(
                        "\nIt is disabled: cutover admin rollout update {} --enable",
                        p.feature
                    ));
                }
                text
            })
        }
        RolloutCommand::Update(a) => {
            let id = resolve_policy(api, &a.policy).await?.to_string();
            let body = update_policy_body(&a)?;
            let resp = api
                .send(Method::PATCH, &policy_path(&[&id]), &[], Some(&body))
                .await
                .map_err(rule_context)?;
            show_policy(out, resp, |p| {
                format!("Updated the {} rollout policy.", p.feature)
            })
        }
        RolloutCommand::Delete { policy } => {
            let id = resolve_policy(api, &policy).await?.to_string();
            let resp = api
                .send(Method::DELETE, &policy_path(&[&id]), &[], None)
                .await?;
            done(out, resp, &format!("Deleted rollout policy {policy}."))
        }
        RolloutCommand::Groups { policy } => {
            let id = resolve_policy(api, &policy).await?.to_string();
            let resp = api
                .send(Method::GET, &policy_path(&[&id, "appliesTo"]), &[], None)
                .await?;
            show_list(out, resp, &["ID", "NAME"], |g: &DirectoryObjectRef| {
                vec![g.id.to_string(), opt(&g.display_name)]
            })
        }
        RolloutCommand::AddGroup { policy, group } => {
            let id = resolve_policy(api, &policy).await?.to_string();
            let group_id = match Uuid::parse_str(&group) {
                Ok(g) => g,
                Err(_) => find_group(&group, &list_groups(api).await?)?,
            };
            let body = add_group_body(group_id)?;
            let resp = api
                .send(
                    Method::POST,
                    &policy_path(&[&id, "appliesTo"]),
                    &[],
                    Some(&body),
                )
                .await
                .map_err(rule_context)?;
            show_policy(out, resp, |p| {
                format!(
                    "Added group {} to the {} rollout policy. Its synced members switch at \
                     their next completed interactive sign-in.",
                    group_label(p, group_id),
                    p.feature
                )
            })
        }
        RolloutCommand::Progress { policy } => progress(api, out, &policy).await,
        RolloutCommand::RemoveGroup { policy, group } => {
            let id = resolve_policy(api, &policy).await?.to_string();
            let group_id = match Uuid::parse_str(&group) {
                Ok(g) => g,
                Err(_) => {
                    // A group in the policy is found by its name there first (it need not
                    // be read from the directory, and may have been renamed since).
                    let current: FeatureRolloutPolicyView = from_response(
                        api.send(Method::GET, &policy_path(&[&id]), &[], None)
                            .await?
                            .ok_or_else(|| anyhow!("the server returned no policy"))?,
                    )?;
                    match find_applied_group(&group, &current.applies_to) {
                        Some(g) => g,
                        None => find_group(&group, &list_groups(api).await?)?,
                    }
                }
            };
            let gid = group_id.to_string();
            let resp = api
                .send(
                    Method::DELETE,
                    &policy_path(&[&id, "appliesTo", &gid]),
                    &[],
                    None,
                )
                .await
                .map_err(rule_context)?;
            show_policy(out, resp, |p| {
                format!(
                    "Removed group {group} from the {} rollout policy. Its members return to \
                     the legacy IdP at their next completed interactive sign-in.",
                    p.feature
                )
            })
        }
    }
}

/// `cutover admin rollout progress POLICY`: the API's JSON, or the chart, table and samples.
async fn progress(api: &Api, out: OutputFormat, policy: &str) -> Result<()> {
    let id = resolve_policy(api, policy).await?.to_string();
    let resp = api
        .send(Method::GET, &policy_path(&[&id, "progress"]), &[], None)
        .await?;
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let view: RolloutProgressView = from_response(
        resp.ok_or_else(|| anyhow!("the server returned no progress for {policy}"))?,
    )?;
    emit(&progress_text(&view))
}

pub(super) async fn staged_rollout(api: &Api, out: OutputFormat, user: &str) -> Result<()> {
    let resp = api
        .send(Method::GET, &["users", user, "stagedRollout"], &[], None)
        .await?;
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let view: StagedRolloutView = from_response(
        resp.ok_or_else(|| anyhow!("the server returned no staged-rollout state for {user}"))?,
    )?;
    emit(&staged_rollout_text(&view))
}

pub(super) async fn create_domain(api: &Api, out: OutputFormat, a: CreateDomainArgs) -> Result<()> {
    let idp = match &a.identity_provider {
        Some(r) => Some(resolve_idp(api, r).await?),
        None => None,
    };
    let body = create_domain_body(&a, idp)?;
    let resp = api
        .send(Method::POST, &["domains"], &[], Some(&body))
        .await?;
    show(
        out,
        resp,
        &format!("Created domain {}.", a.name),
        domain_fields,
    )
}

pub(super) async fn convert(api: &Api, out: OutputFormat, a: ConvertArgs) -> Result<()> {
    check_convert_args(&a)?;
    let idp = match &a.identity_provider {
        Some(r) => Some(resolve_idp(api, r).await?),
        None => None,
    };
    let body = convert_body(&a, idp)?;
    let (raw, answer) = api.convert_domain(&a.name, &body).await?;
    let outcome = ConvertOutcome::of(&answer);
    match out {
        OutputFormat::Table => emit(&convert_text(&answer))?,
        _ => print_json(out, Some(&raw))?,
    }
    match outcome.exit_code() {
        0 => Ok(()),
        // The output says why; the status is for scripts (as `cutover sync run --once` does).
        code => std::process::exit(code),
    }
}

impl Api {
    /// `POST /api/v1/domains/{name}/convert`. A refused preflight is HTTP 409 with the same
    /// body as a success, so both are read as a conversion answer.
    async fn convert_domain(&self, name: &str, body: &Value) -> Result<(Value, ConvertAnswer)> {
        let url = endpoint_url(&self.base, &["api", "v1", "domains", name, "convert"], &[]);
        let resp = self
            .http
            .post(url)
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::ACCEPT, "application/json")
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(&e, &self.base))?;
        let status = resp.status();
        let request_id = header_text(&resp, "x-request-id");
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&e, &self.base))?;
        read_convert_answer(status, request_id.as_deref(), &bytes)
    }
}

/// The id of the identity provider named by `key` (an id, or an exact display name).
async fn resolve_idp(api: &Api, key: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(id);
    }
    let resp = api
        .send(Method::GET, &["identityProviders"], &[], None)
        .await?;
    let list: ListResponse<IdentityProviderView> = from_response(resp.unwrap_or(Value::Null))?;
    find_idp(key, &list.value)
}

/// The id of the policy named by `key` (an id, a feature or an exact display name).
async fn resolve_policy(api: &Api, key: &str) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(id);
    }
    let resp = api.send(Method::GET, &POLICIES, &[], None).await?;
    let list: ListResponse<FeatureRolloutPolicyView> = from_response(resp.unwrap_or(Value::Null))?;
    find_policy(key, &list.value)
}

/// Every group in the directory, read page by page.
async fn list_groups(api: &Api) -> Result<Vec<GroupView>> {
    let top = cutover_core::limits::MAX_PAGE_SIZE.to_string();
    let first = api
        .send(Method::GET, &["groups"], &[("$top", Some(top))], None)
        .await?;
    let all = api.follow_pages(first).await?;
    let list: ListResponse<GroupView> = from_response(all.unwrap_or(Value::Null))?;
    Ok(list.value)
}

fn policy_path<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    POLICIES
        .iter()
        .copied()
        .chain(rest.iter().copied())
        .collect()
}

/// A policy change refused by a staged-rollout rule: point at the rules, and say the rule's
/// code once (the server's message ends with it, and the error names it anyway).
fn rule_context(e: anyhow::Error) -> anyhow::Error {
    let Some(api) = e.downcast_ref::<ApiError>() else {
        return e;
    };
    let Some(code) = api.code.clone().filter(|c| {
        api.status == StatusCode::BAD_REQUEST
            && (RULE_CODES.contains(&c.as_str()) || OTHER_POLICY_CODES.contains(&c.as_str()))
    }) else {
        return e;
    };
    let mut api = api.clone();
    if let Some(m) = api.message.strip_suffix(&format!(" ({code})")) {
        api.message = m.to_owned();
    }
    let e = anyhow::Error::new(api);
    if RULE_CODES.contains(&code.as_str()) {
        e.context("refused by a staged-rollout rule (the rules: cutover admin rollout --help)")
    } else {
        e
    }
}

/// One policy: JSON as is, or a headline made from it and its fields.
fn show_policy(
    out: OutputFormat,
    resp: Option<Value>,
    headline: impl Fn(&FeatureRolloutPolicyView) -> String,
) -> Result<()> {
    if out != OutputFormat::Table {
        return print_json(out, resp.as_ref());
    }
    let Some(v) = resp else {
        return Ok(());
    };
    let policy: FeatureRolloutPolicyView = from_response(v)?;
    let mut text = clean_lines(&headline(&policy));
    text.push('\n');
    text.push_str(&render_fields(&policy_fields(&policy)));
    emit(&text)
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/// The client secret from FILE, or from standard input for `-`.
fn read_secret(path: &Path) -> Result<String> {
    let text = if path == Path::new("-") {
        let stdin = std::io::stdin();
        let mut text = String::new();
        if stdin.is_terminal() {
            eprint!("Client secret (shown as you type; end with Enter): ");
            stdin
                .read_line(&mut text)
                .map_err(|e| anyhow!("cannot read the client secret from standard input: {e}"))?;
            text = first_line(&text).to_owned();
        } else {
            stdin
                .lock()
                .read_to_string(&mut text)
                .map_err(|e| anyhow!("cannot read the client secret from standard input: {e}"))?;
        }
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read the client secret file {}: {e}", path.display()))?
    };
    let origin = if path == Path::new("-") {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    };
    secret_from_text(&text, &origin)
}

/// The secret in `text` without its trailing newline. Never echoes the text.
fn secret_from_text(text: &str, origin: &str) -> Result<String> {
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        bail!("the client secret from {origin} is empty");
    }
    if secret.contains(['\n', '\r']) {
        bail!(
            "the client secret from {origin} spans more than one line; put only the secret in it"
        );
    }
    Ok(secret.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Request bodies (pure, so they can be tested)
// ---------------------------------------------------------------------------------------------

fn create_idp_body(a: &CreateIdpArgs, client_secret: String) -> Result<Value> {
    Ok(without_nulls(serde_json::to_value(
        CreateIdentityProvider {
            display_name: a.name.clone(),
            issuer: a.issuer.clone(),
            client_id: a.client_id.clone(),
            client_secret,
            scopes: (!a.scopes.is_empty()).then(|| a.scopes.clone()),
            immutable_id_claim: a.immutable_id_claim.clone(),
            fallback_to_upn: a.fallback_to_upn,
            upn_claim: a.upn_claim.clone(),
        },
    )?))
}

fn update_idp_body(a: &UpdateIdpArgs, client_secret: Option<String>) -> Result<Value> {
    let fallback_to_upn = match (a.fallback_to_upn, a.no_fallback_to_upn) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(serde_json::to_value(UpdateIdentityProvider {
        display_name: a.name.clone(),
        issuer: a.issuer.clone(),
        client_id: a.client_id.clone(),
        client_secret,
        scopes: (!a.scopes.is_empty()).then(|| a.scopes.clone()),
        immutable_id_claim: a.immutable_id_claim.clone(),
        fallback_to_upn,
        upn_claim: a.upn_claim.clone(),
    })?)
}

fn create_policy_body(a: &CreatePolicyArgs) -> Result<Value> {
    Ok(without_nulls(serde_json::to_value(
        CreateFeatureRolloutPolicy {
            display_name: a.name.clone(),
            description: a.description.clone(),
            feature: a.feature.as_str().to_owned(),
            is_enabled: a.enable,
            is_applied_to_organization: false,
        },
    )?))
}

fn update_policy_body(a: &UpdatePolicyArgs) -> Result<Value> {
    let is_enabled = match (a.enable, a.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    Ok(serde_json::to_value(UpdateFeatureRolloutPolicy {
        display_name: a.name.clone(),
        description: a.description.clone(),
        feature: None,
        is_enabled,
        is_applied_to_organization: None,
    })?)
}

fn add_group_body(group: Uuid) -> Result<Value> {
    Ok(serde_json::to_value(AddAppliesTo {
        id: Some(group.to_string()),
        odata_id: None,
    })?)
}

fn create_domain_body(a: &CreateDomainArgs, identity_provider: Option<Uuid>) -> Result<Value> {
    let federated = a.federated || a.identity_provider.is_some() || identity_provider.is_some();
    Ok(without_nulls(serde_json::to_value(CreateDomain {
        id: a.name.clone(),
        authentication_type: Some(if federated { "federated" } else { "managed" }.into()),
        identity_provider_id: identity_provider,
        password_validation: a.password_validation.map(|p| p.as_str().to_owned()),
    })?))
}

/// The options that fit only one direction of the conversion.
fn check_convert_args(a: &ConvertArgs) -> Result<()> {
    match a.to {
        DomainAuthentication::Managed if a.identity_provider.is_some() => bail!(
            "--identity-provider applies only to --to federated (the rollback); a managed \
             domain has no identity provider"
        ),
        DomainAuthentication::Federated if a.password_validation.is_some() => bail!(
            "--password-validation applies only to --to managed; a federated domain's users \
             sign in at the identity provider"
        ),
        _ => Ok(()),
    }
}

fn convert_body(a: &ConvertArgs, identity_provider: Option<Uuid>) -> Result<Value> {
    check_convert_args(a)?;
    let to = match a.to {
        DomainAuthentication::Managed => "managed",
        DomainAuthentication::Federated => "federated",
    };
    let mut body = serde_json::json!({ "to": to, "dryRun": a.dry_run });
    if let Some(p) = a.password_validation {
        body["passwordValidation"] = p.as_str().into();
    }
    if let Some(id) = identity_provider {
        body["identityProviderId"] = id.to_string().into();
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Resolving names (pure)
// ---------------------------------------------------------------------------------------------

/// The one id among `ids` (the objects named `key`), or an error that says why not.
/// `kind` is what the objects are, singular and plural.
fn exactly_one(kind: (&str, &str), key: &str, ids: &[Uuid], hint: &str) -> Result<Uuid> {
    let (one, many_kind) = kind;
    match ids {
        [id] => Ok(*id),
        [] => bail!("no {one} is named '{}'; {hint}", clean(key)),
        many => bail!(
            "{} {many_kind} are named '{}' ({}); give the id instead",
            many.len(),
            clean(key),
            many.iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn find_idp(key: &str, idps: &[IdentityProviderView]) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(id);
    }
    let ids: Vec<Uuid> = idps
        .iter()
        .filter(|i| i.display_name == key)
        .map(|i| i.id)
        .collect();
    exactly_one(
        ("identity provider", "identity providers"),
        key,
        &ids,
        "give its id or exact name (cutover admin idp list)",
    )
}

/// A policy by id, by feature (there is at most one policy per feature) or by exact name.
fn find_policy(key: &str, policies: &[FeatureRolloutPolicyView]) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(id);
    }
    if let Ok(feature) = Feature::from_str(key, true) {
        let f = feature.as_str();
        return policies
            .iter()
            .find(|p| p.feature == f)
            .map(|p| p.id)
            .ok_or_else(|| {
                anyhow!(
                    "there is no rollout policy for {f}; create one with \
                     `cutover admin rollout create --name NAME --feature {f}`"
                )
            });
    }
    let ids: Vec<Uuid> = policies
        .iter()
        .filter(|p| p.display_name == key)
        .map(|p| p.id)
        .collect();
    let features: Vec<&str> = Feature::value_variants()
        .iter()
        .map(|f| f.as_str())
        .collect();
    exactly_one(
        ("rollout policy", "rollout policies"),
        key,
        &ids,
        &format!(
            "give a policy's id or its feature ({}); `cutover admin rollout list` lists them",
            features.join(", ")
        ),
    )
}

/// A group by its exact display name.
fn find_group(name: &str, groups: &[GroupView]) -> Result<Uuid> {
    let ids: Vec<Uuid> = groups
        .iter()
        .filter(|g| g.display_name == name)
        .map(|g| g.id)
        .collect();
    if ids.is_empty() {
        let lower = name.to_lowercase();
        let similar: Vec<String> = groups
            .iter()
            .filter(|g| g.display_name.to_lowercase() == lower)
            .map(|g| format!("'{}'", clean(&g.display_name)))
            .collect();
        if !similar.is_empty() {
            bail!(
                "no group is named exactly '{}' (names are matched exactly; did you mean {}?)",
                clean(name),
                similar.join(" or ")
            );
        }
    }
    exactly_one(
        ("group", "groups"),
        name,
        &ids,
        "give the group's id or exact display name (cutover admin groups list --all)",
    )
}

/// A group of a policy by its display name there, when exactly one has it.
fn find_applied_group(name: &str, applied: &[DirectoryObjectRef]) -> Option<Uuid> {
    let mut hits = applied
        .iter()
        .filter(|g| g.display_name.as_deref() == Some(name));
    match (hits.next(), hits.next()) {
        (Some(g), None) => Some(g.id),
        _ => None,
    }
}

fn group_label(p: &FeatureRolloutPolicyView, id: Uuid) -> String {
    match p
        .applies_to
        .iter()
        .find(|g| g.id == id)
        .and_then(|g| g.display_name.as_deref())
    {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Domain conversion answers (pure)
// ---------------------------------------------------------------------------------------------

/// The body of `POST /domains/{name}/convert` (HTTP 200, or 409 when the preflight refused).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConvertAnswer {
    domain: String,
    from: String,
    to: String,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    converted: bool,
    preflight: PreflightAnswer,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct PreflightAnswer {
    allowed: bool,
    #[serde(default)]
    checks: Vec<CheckAnswer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct CheckAnswer {
    name: String,
    /// `passed | failed | warning`.
    status: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    users: Vec<String>,
}

/// Read a conversion answer: a success, or a 409 whose body carries a `preflight` (any other
/// error is an [`ApiError`]).
fn read_convert_answer(
    status: StatusCode,
    request_id: Option<&str>,
    bytes: &[u8],
) -> Result<(Value, ConvertAnswer)> {
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    let has_preflight = json.as_ref().is_some_and(|v| v.get("preflight").is_some());
    if status.is_success() || (status == StatusCode::CONFLICT && has_preflight) {
        let v = json.ok_or_else(|| {
            anyhow!(
                "the server's answer to the conversion (HTTP {}) is not JSON",
                status.as_u16()
            )
        })?;
        let answer = from_response(v.clone())?;
        return Ok((v, answer));
    }
    Err(ApiError::from_body(status, request_id, bytes).into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvertOutcome {
    Converted,
    WouldBeAllowed,
    WouldBeRefused,
    Refused,
    /// Neither converted nor refused (not expected from the server).
    Unchanged,
}

impl ConvertOutcome {
    fn of(a: &ConvertAnswer) -> Self {
        match (a.converted, a.dry_run, a.preflight.allowed) {
            (true, _, _) => Self::Converted,
            (false, true, true) => Self::WouldBeAllowed,
            (false, true, false) => Self::WouldBeRefused,
            (false, false, false) => Self::Refused,
            (false, false, true) => Self::Unchanged,
        }
    }

    fn exit_code(self) -> i32 {
        match self {
            Self::Converted | Self::WouldBeAllowed => 0,
            Self::WouldBeRefused | Self::Refused => EXIT_PREFLIGHT_REFUSED,
            Self::Unchanged => 1,
        }
    }
}

/// The preflight's checks as a table: status, check, detail (never cut short), and the users
/// a check lists, indented under its detail.
fn preflight_table(checks: &[CheckAnswer]) -> String {
    if checks.is_empty() {
        return "(no checks)\n".to_owned();
    }
    let status_w = checks
        .iter()
        .map(|c| c.status.chars().count())
        .chain(["STATUS".len()])
        .max()
        .unwrap_or(0);
    let name_w = checks
        .iter()
        .map(|c| clean(&c.name).chars().count())
        .chain(["CHECK".len()])
        .max()
        .unwrap_or(0);
    let indent = " ".repeat(status_w + 2 + name_w + 2);
    let mut out = format!("{:<status_w$}  {:<name_w$}  DETAIL\n", "STATUS", "CHECK");
    for c in checks {
        let line = format!(
            "{:<status_w$}  {:<name_w$}  {}",
            clean(&c.status),
            clean(&c.name),
            clean(&c.detail)
        );
        out.push_str(line.trim_end());
        out.push('\n');
        for u in &c.users {
            out.push_str(&format!("{indent}- {}\n", clean(u)));
        }
    }
    out
}

fn failed_checks(a: &ConvertAnswer) -> String {
    let failed: Vec<String> = a
        .preflight
        .checks
        .iter()
        .filter(|c| c.status == "failed")
        .map(|c| clean(&c.name))
        .collect();
    if failed.is_empty() {
        "see the checks above".to_owned()
    } else {
        format!("failed: {}", failed.join(", "))
    }
}

/// The whole table output of `domains convert`: the checks, then what happened.
fn convert_text(a: &ConvertAnswer) -> String {
    let (domain, from, to) = (clean(&a.domain), clean(&a.from), clean(&a.to));
    let mut text = format!("Preflight for converting {domain} from {from} to {to}:\n");
    if a.preflight.checks.is_empty() && a.to == "federated" {
        text.push_str("(no checks: converting back to federated is always allowed)\n");
    } else {
        text.push_str(&preflight_table(&a.preflight.checks));
    }
    text.push('\n');
    let last = match ConvertOutcome::of(a) {
        ConvertOutcome::Converted if a.to == "managed" => format!(
            "Converted {domain} from {from} to {to}. To roll back: \
             cutover admin domains convert {domain} --to federated"
        ),
        ConvertOutcome::Converted => format!("Converted {domain} from {from} to {to}."),
        ConvertOutcome::WouldBeAllowed => {
            format!("Dry run: converting {domain} to {to} would be allowed. Nothing was changed.")
        }
        ConvertOutcome::WouldBeRefused => format!(
            "Dry run: converting {domain} to {to} would be refused ({}). Nothing was changed.",
            failed_checks(a)
        ),
        ConvertOutcome::Refused => format!(
            "Refused: {domain} stays {from}; the preflight did not allow converting it to {to} \
             ({}).",
            failed_checks(a)
        ),
        ConvertOutcome::Unchanged => format!(
            "Not converted: the server neither converted {domain} nor refused the conversion."
        ),
    };
    text.push_str(&last);
    text.push('\n');
    text
}

// ---------------------------------------------------------------------------------------------
// Showing results (pure)
// ---------------------------------------------------------------------------------------------

fn list_text(items: &[String], sep: &str) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(sep)
    }
}

/// Each line of `s` cleaned of control characters.
fn clean_lines(s: &str) -> String {
    s.lines().map(clean).collect::<Vec<_>>().join("\n")
}

fn idp_fields(i: &IdentityProviderView) -> Vec<(&'static str, String)> {
    vec![
        ("id", i.id.to_string()),
        ("displayName", i.display_name.clone()),
        ("issuer", i.issuer.clone()),
        ("clientId", i.client_id.clone()),
        ("scopes", list_text(&i.scopes, " ")),
        ("immutableIdClaim", i.immutable_id_claim.clone()),
        ("fallbackToUpn", yes_no(i.fallback_to_upn)),
        ("upnClaim", opt(&i.upn_claim)),
        ("redirectUri", i.redirect_uri.clone()),
        ("domains", list_text(&i.domains, ", ")),
        ("createdDateTime", i.created_date_time.clone()),
        ("updatedDateTime", i.updated_date_time.clone()),
    ]
}

fn created_idp_text(i: &IdentityProviderView) -> String {
    let mut text = format!("Created identity provider {}.\n", clean(&i.display_name));
    text.push_str(&render_fields(&idp_fields(i)));
    text.push_str(&format!(
        "\nRegister this redirect URI for client {} at the upstream identity provider \
         (federated sign-ins fail until it is registered there):\n  {}\n",
        clean(&i.client_id),
        clean(&i.redirect_uri)
    ));
    text.push_str(&format!(
        "Then federate a domain with it: cutover admin domains create NAME \
         --identity-provider {}\n",
        i.id
    ));
    text
}

fn policy_fields(p: &FeatureRolloutPolicyView) -> Vec<(&'static str, String)> {
    let groups: Vec<String> = p
        .applies_to
        .iter()
        .map(|g| match &g.display_name {
            Some(name) => format!("{name} ({})", g.id),
            None => g.id.to_string(),
        })
        .collect();
    vec![
        ("id", p.id.to_string()),
        ("displayName", p.display_name.clone()),
        ("description", opt(&p.description)),
        ("feature", p.feature.clone()),
        ("isEnabled", yes_no(p.is_enabled)),
        ("appliesTo", list_text(&groups, ", ")),
        ("createdDateTime", p.created_date_time.clone()),
        ("updatedDateTime", p.updated_date_time.clone()),
    ]
}

/// What an eligibility value means, after the value.
fn eligibility_text(e: &str) -> String {
    let why = match e {
        "eligible" => "a synced user of a federated domain",
        "cloudOnlyUser" => "not synced: staged rollout does not apply",
        "managedDomain" => "the domain is managed: staged rollout does not apply",
        "breakGlassAccount" => "never federated: staged rollout does not apply",
        "unknownDomain" => "the user's domain is not registered",
        _ => return e.to_owned(),
    };
    format!("{e} ({why})")
}

fn features_text(features: &[String]) -> String {
    if features.is_empty() {
        "(none)".to_owned()
    } else {
        features.join(", ")
    }
}

/// Characters between the brackets of a progress bar.
const PROGRESS_BAR_WIDTH: usize = 40;
/// Group names are cut to this many characters in the chart.
const PROGRESS_LABEL_MAX: usize = 32;

/// The progress categories in chart order: the words after the bar, and the bar character
/// (the legend of `rollout progress`).
const PROGRESS_CATEGORIES: [(&str, char); 7] = [
    ("switched", '█'),
    ("pending", '░'),
    ("held", '!'),
    ("returning", '<'),
    ("not enabled", '-'),
    ("needs password feature", '?'),
    ("not eligible", 'x'),
];

/// The counts of `t` in [`PROGRESS_CATEGORIES`] order.
fn progress_counts(t: &RolloutProgressTotals) -> [u64; 7] {
    [
        t.switched,
        t.pending,
        t.held,
        t.returning,
        t.not_enabled,
        t.needs_password_feature,
        t.not_eligible,
    ]
}

/// How many of `width` characters each category gets: in proportion (largest remainder), every
/// non-empty category at least one, together exactly `width` (none when there is no one).
fn bar_cells(counts: &[u64; 7], width: usize) -> [usize; 7] {
    let total: u128 = counts.iter().map(|&c| u128::from(c)).sum();
    let mut cells = [0usize; 7];
    if total == 0 || width == 0 {
        return cells;
    }
    let w = width as u128;
    let mut remainders = [0u128; 7];
    for (i, &c) in counts.iter().enumerate() {
        let share = u128::from(c) * w;
        cells[i] = (share / total) as usize;
        remainders[i] = share % total;
    }
    // Every category with members is visible.
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && cells[i] == 0 {
            cells[i] = 1;
            remainders[i] = 0;
        }
    }
    let mut sum: usize = cells.iter().sum();
    // Hand out what is left by largest remainder (ties: chart order) ...
    let mut order: Vec<usize> = (0..7).filter(|&i| counts[i] > 0).collect();
    order.sort_by(|&a, &b| remainders[b].cmp(&remainders[a]).then(a.cmp(&b)));
    for &i in order.iter().cycle().take(width.saturating_sub(sum)) {
        cells[i] += 1;
    }
    sum = cells.iter().sum();
    // ... or take back what the minimum of one added, from the widest.
    while sum > width {
        let widest = (0..7)
            .max_by_key(|&i| (cells[i], usize::MAX - i))
            .unwrap_or(0);
        if cells[widest] <= 1 {
            break;
        }
        cells[widest] -= 1;
        sum -= 1;
    }
    cells
}

/// `[██████░░!]`: the categories' characters in proportion, always `PROGRESS_BAR_WIDTH` wide.
fn progress_bar(t: &RolloutProgressTotals) -> String {
    let cells = bar_cells(&progress_counts(t), PROGRESS_BAR_WIDTH);
    let mut bar: String = PROGRESS_CATEGORIES
        .iter()
        .zip(cells)
        .flat_map(|((_, ch), n)| std::iter::repeat_n(*ch, n))
        .collect();
    let drawn = cells.iter().sum::<usize>();
    bar.extend(std::iter::repeat_n(
        ' ',
        PROGRESS_BAR_WIDTH.saturating_sub(drawn),
    ));
    format!("[{bar}]")
}

/// `switched 150 · pending 25 · held 5`: the non-empty categories.
fn progress_summary(t: &RolloutProgressTotals) -> String {
    let parts: Vec<String> = PROGRESS_CATEGORIES
        .iter()
        .zip(progress_counts(t))
        .filter(|(_, n)| *n > 0)
        .map(|((name, _), n)| format!("{name} {n}"))
        .collect();
    if parts.is_empty() {
        "no members".to_owned()
    } else {
        parts.join(" · ")
    }
}

fn members_label(name: &str, members: u64) -> String {
    let name = truncate(&clean(name), PROGRESS_LABEL_MAX);
    let plural = if members == 1 { "member" } else { "members" };
    format!("{name} ({members} {plural})")
}

/// The whole table output of `rollout progress`: headline, a bar per group and the total,
/// the legend, the table, and the held and pending users with what to do.
fn progress_text(v: &RolloutProgressView) -> String {
    let feature = clean(&v.feature);
    let state = if v.is_enabled { "enabled" } else { "disabled" };
    let mut text = format!("Progress of the {feature} rollout policy ({state})\n\n");
    if v.groups.is_empty() {
        text.push_str(&format!(
            "The policy applies to no group yet: cutover admin rollout add-group {feature} GROUP\n"
        ));
        return text;
    }
    let mut lines: Vec<(String, &RolloutProgressTotals)> = v
        .groups
        .iter()
        .map(|g| (members_label(&g.display_name, g.totals.members), &g.totals))
        .collect();
    lines.push((members_label("Total", v.totals.members), &v.totals));
    let label_w = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    for (label, totals) in &lines {
        let pad = label_w - label.chars().count();
        text.push_str(&format!(
            "{label}{}  {}  {}\n",
            " ".repeat(pad),
            progress_bar(totals),
            progress_summary(totals)
        ));
    }
    let legend: Vec<String> = PROGRESS_CATEGORIES
        .iter()
        .map(|(name, ch)| format!("{ch} {name}"))
        .collect();
    text.push_str(&format!("\nLegend: {}\n", legend.join("  ")));
    for g in v.groups.iter().filter(|g| g.truncated) {
        text.push_str(&format!(
            "Note: {} has more members than the server counts per group; the figures cover its \
             first {}.\n",
            clean(&g.display_name),
            g.totals.members
        ));
    }

    let show_needs = v.totals.needs_password_feature > 0 || v.feature == "seamlessSso";
    let mut headers = vec![
        "GROUP",
        "MEMBERS",
        "SWITCHED",
        "PENDING",
        "HELD",
        "RETURNING",
        "NOT ENABLED",
    ];
    if show_needs {
        headers.push("NEEDS PASSWORD FEATURE");
    }
    headers.push("NOT ELIGIBLE");
    let row = |name: &str, t: &RolloutProgressTotals| {
        let mut r = vec![
            name.to_owned(),
            t.members.to_string(),
            t.switched.to_string(),
            t.pending.to_string(),
            t.held.to_string(),
            t.returning.to_string(),
            t.not_enabled.to_string(),
        ];
        if show_needs {
            r.push(t.needs_password_feature.to_string());
        }
        r.push(t.not_eligible.to_string());
        r
    };
    let mut rows: Vec<Vec<String>> = v
        .groups
        .iter()
        .map(|g| row(&g.display_name, &g.totals))
        .collect();
    rows.push(row("Total", &v.totals));
    text.push('\n');
    text.push_str(&render_table(&headers, &rows));

    let lists = [
        (
            "Held",
            "sync their password hash: cutover sync run --once --passwords",
        ),
        ("Pending", "they switch at their next sign-in"),
    ];
    for (what, hint) in lists {
        for g in &v.groups {
            let (count, sample) = match what {
                "Held" => (g.totals.held, &g.samples.held),
                _ => (g.totals.pending, &g.samples.pending),
            };
            if count == 0 {
                continue;
            }
            text.push_str(&format!(
                "\n{what} in {} ({count}): {hint}\n",
                clean(&g.display_name)
            ));
            for upn in sample {
                text.push_str(&format!("  {}\n", clean(upn)));
            }
            let more = count.saturating_sub(sample.len() as u64);
            if more > 0 {
                text.push_str(&format!("  … and {more} more\n"));
            }
        }
    }
    text
}

fn staged_rollout_text(v: &StagedRolloutView) -> String {
    let route = match &v.route.credential {
        Some(c) => format!("{} ({c})", v.route.route),
        None => v.route.route.clone(),
    };
    let pending = if v.pending_change {
        "yes: the next completed interactive sign-in switches effective to desired".to_owned()
    } else {
        "no".to_owned()
    };
    let held = v.held.as_deref().map(|h| match h {
        "noSyncedPasswordHash" => format!(
            "{h}: passwordHashSync waits until the user's password hash is synced (moving them now would lock them out)"
        ),
        other => other.to_owned(),
    });
    let mut fields = vec![
        ("user", format!("{} ({})", v.user_principal_name, v.user_id)),
        ("eligibility", eligibility_text(&v.eligibility)),
        ("desired", features_text(&v.desired)),
        ("effective", features_text(&v.effective)),
        ("effectiveSince", opt(&v.effective_since)),
        ("pendingChange", pending),
    ];
    if let Some(h) = held {
        fields.push(("held", h));
    }
    fields.extend([
        ("route", route),
        ("routeReason", v.route.reason.clone()),
        ("why", v.route.why.clone()),
    ]);
    if let Some(f) = &v.route.staged_feature {
        fields.push(("stagedFeature", f.clone()));
    }
    let mut text = render_fields(&fields);
    text.push_str("\nGroups in rollout policies:\n");
    let rows: Vec<Vec<String>> = v
        .groups
        .iter()
        .map(|g| {
            vec![
                g.id.to_string(),
                g.display_name.clone(),
                g.features.join(","),
            ]
        })
        .collect();
    text.push_str(&render_table(&["ID", "NAME", "FEATURES"], &rows));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_cli::{AdminArgs, AdminCommand, DomainsCommand, UsersCommand};
    use clap::{CommandFactory, Parser};
    use cutover_proto::federation::{RouteView, StagedGroup};
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

    fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
        let argv = ["cutover", "admin"].iter().chain(args);
        TestCli::try_parse_from(argv).map(|c| match c.command {
            TestCommand::Admin(a) => a.command,
        })
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn command_line_is_well_formed() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn features_match_the_servers_vocabulary_in_both_spellings() {
        for f in Feature::value_variants() {
            assert_eq!(RolloutFeature::parse(f.as_str()), Some(f.core()));
            let name = f.to_possible_value().unwrap();
            assert_eq!(name.get_name(), f.as_str());
        }
        assert_eq!(Feature::value_variants().len(), RolloutFeature::ALL.len());
        for spelling in ["passwordHashSync", "password-hash-sync"] {
            let AdminCommand::Rollout(RolloutCommand::Create(c)) =
                parse(&["rollout", "create", "--name", "P", "--feature", spelling]).unwrap()
            else {
                panic!()
            };
            assert_eq!(c.feature, Feature::PasswordHashSync);
        }
        let e = parse(&["rollout", "create", "--name", "P", "--feature", "sso"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn idp_bodies_send_only_what_was_given() {
        let AdminCommand::Idp(IdpCommand::Create(c)) = parse(&[
            "idp",
            "create",
            "--name",
            "Legacy",
            "--issuer",
            "https://adfs.contoso.example/adfs",
            "--client-id",
            "cutover",
            "--client-secret-file",
            "/run/secret",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            create_idp_body(&c, "s3cret".into()).unwrap(),
            json!({"displayName": "Legacy", "issuer": "https://adfs.contoso.example/adfs",
                   "clientId": "cutover", "clientSecret": "s3cret", "fallbackToUpn": false})
        );
        let AdminCommand::Idp(IdpCommand::Create(c)) = parse(&[
            "idp",
            "create",
            "--name",
            "Legacy",
            "--issuer",
            "https://i.example",
            "--client-id",
            "c",
            "--client-secret-file",
            "-",
            "--scope",
            "openid",
            "--scope",
            "email",
            "--immutable-id-claim",
            "oid",
            "--fallback-to-upn",
            "--upn-claim",
            "preferred_username",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.client_secret_file, Path::new("-"));
        assert_eq!(
            create_idp_body(&c, "x".into()).unwrap(),
            json!({"displayName": "Legacy", "issuer": "https://i.example", "clientId": "c",
                   "clientSecret": "x", "scopes": ["openid", "email"],
                   "immutableIdClaim": "oid", "fallbackToUpn": true,
                   "upnClaim": "preferred_username"})
        );
        // --upn-claim needs --fallback-to-upn; the secret is never a flag value.
        let base = [
            "idp",
            "create",
            "--name",
            "L",
            "--issuer",
            "https://i.example",
            "--client-id",
            "c",
            "--client-secret-file",
            "f",
        ];
        let e = parse(&[&base[..], &["--upn-claim", "upn"]].concat()).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&[&base[..], &["--client-secret", "x"]].concat()).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);

        let AdminCommand::Idp(IdpCommand::Update(u)) = parse(&[
            "idp",
            "update",
            "Legacy",
            "--no-fallback-to-upn",
            "--scope",
            "openid",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            update_idp_body(&u, None).unwrap(),
            json!({"fallbackToUpn": false, "scopes": ["openid"]})
        );
        let AdminCommand::Idp(IdpCommand::Update(u)) =
            parse(&["idp", "update", "Legacy", "--client-secret-file", "f"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            update_idp_body(&u, Some("new".into())).unwrap(),
            json!({"clientSecret": "new"})
        );
        let e = parse(&["idp", "update", "Legacy"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&[
            "idp",
            "update",
            "L",
            "--fallback-to-upn",
            "--no-fallback-to-upn",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn secrets_lose_their_newline_and_are_never_echoed() {
        assert_eq!(secret_from_text("s3cret\n", "f").unwrap(), "s3cret");
        assert_eq!(secret_from_text("s3cret\r\n", "f").unwrap(), "s3cret");
        assert_eq!(secret_from_text(" s p ", "f").unwrap(), " s p ");
        let e = secret_from_text("\n", "/run/secret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty") && e.contains("/run/secret"), "{e}");
        let e = secret_from_text("line1\nline2\n", "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("more than one line") && !e.contains("line1"),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("cutover-fed-cli-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), "from-file");
        let e = read_secret(&dir.join("missing")).unwrap_err().to_string();
        assert!(e.contains("cannot read the client secret file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn policy_bodies() {
        let AdminCommand::Rollout(RolloutCommand::Create(c)) = parse(&[
            "rollout",
            "create",
            "--name",
            "PHS pilot",
            "--feature",
            "passwordHashSync",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            create_policy_body(&c).unwrap(),
            json!({"displayName": "PHS pilot", "feature": "passwordHashSync",
                   "isEnabled": false, "isAppliedToOrganization": false})
        );
        let AdminCommand::Rollout(RolloutCommand::Create(c)) = parse(&[
            "rollout",
            "create",
            "--name",
            "SSO",
            "--feature",
            "seamless-sso",
            "--description",
            "wave 1",
            "--enable",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            create_policy_body(&c).unwrap(),
            json!({"displayName": "SSO", "description": "wave 1", "feature": "seamlessSso",
                   "isEnabled": true, "isAppliedToOrganization": false})
        );
        let AdminCommand::Rollout(RolloutCommand::Update(u)) =
            parse(&["rollout", "update", "passwordHashSync", "--disable"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(u.policy, "passwordHashSync");
        assert_eq!(update_policy_body(&u).unwrap(), json!({"isEnabled": false}));
        let AdminCommand::Rollout(RolloutCommand::Update(u)) =
            parse(&["rollout", "update", "p", "--name", "N", "--enable"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            update_policy_body(&u).unwrap(),
            json!({"displayName": "N", "isEnabled": true})
        );
        let e = parse(&["rollout", "update", "p"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["rollout", "update", "p", "--enable", "--disable"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(
            add_group_body(id(7)).unwrap(),
            json!({"id": "00000000-0000-0000-0000-000000000007"})
        );
        assert_eq!(
            policy_path(&["x", "appliesTo"]),
            ["policies", "featureRolloutPolicies", "x", "appliesTo"]
        );
    }

    #[test]
    fn domain_bodies() {
        let body = |args: &[&str], idp: Option<Uuid>| {
            let AdminCommand::Domains(DomainsCommand::Create(a)) =
                parse(&[&["domains", "create"][..], args].concat()).unwrap()
            else {
                panic!()
            };
            create_domain_body(&a, idp).unwrap()
        };
        assert_eq!(
            body(&["contoso.example"], None),
            json!({"id": "contoso.example", "authenticationType": "managed"})
        );
        assert_eq!(
            body(&["contoso.example", "--federated"], None),
            json!({"id": "contoso.example", "authenticationType": "federated"})
        );
        assert_eq!(
            body(&["c.example", "--identity-provider", "Legacy"], Some(id(3))),
            json!({"id": "c.example", "authenticationType": "federated",
                   "identityProviderId": "00000000-0000-0000-0000-000000000003"})
        );
        assert_eq!(
            body(
                &[
                    "c.example",
                    "--password-validation",
                    "passthrough-authentication"
                ],
                None
            ),
            json!({"id": "c.example", "authenticationType": "managed",
                   "passwordValidation": "passthroughAuthentication"})
        );
        assert_eq!(
            body(
                &["c.example", "--password-validation", "passwordHashSync"],
                None
            ),
            json!({"id": "c.example", "authenticationType": "managed",
                   "passwordValidation": "passwordHashSync"})
        );
        for bad in [
            &[
                "domains",
                "create",
                "c.example",
                "--federated",
                "--password-validation",
                "password-hash-sync",
            ][..],
            &[
                "domains",
                "create",
                "c.example",
                "--identity-provider",
                "x",
                "--password-validation",
                "password-hash-sync",
            ][..],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }

    #[test]
    fn convert_bodies() {
        let args = |extra: &[&str]| {
            let AdminCommand::Domains(DomainsCommand::Convert(a)) =
                parse(&[&["domains", "convert", "contoso.example"][..], extra].concat()).unwrap()
            else {
                panic!()
            };
            a
        };
        let a = args(&["--to", "managed", "--dry-run"]);
        assert_eq!(
            convert_body(&a, None).unwrap(),
            json!({"to": "managed", "dryRun": true})
        );
        let a = args(&[
            "--to",
            "managed",
            "--password-validation",
            "passthrough-authentication",
        ]);
        assert_eq!(
            convert_body(&a, None).unwrap(),
            json!({"to": "managed", "dryRun": false,
                   "passwordValidation": "passthroughAuthentication"})
        );
        let a = args(&["--to", "federated", "--identity-provider", "Legacy"]);
        assert_eq!(
            convert_body(&a, Some(id(9))).unwrap(),
            json!({"to": "federated", "dryRun": false,
                   "identityProviderId": "00000000-0000-0000-0000-000000000009"})
        );
        let a = args(&["--to", "managed", "--identity-provider", "Legacy"]);
        let e = check_convert_args(&a).unwrap_err().to_string();
        assert!(e.contains("--identity-provider applies only"), "{e}");
        let a = args(&[
            "--to",
            "federated",
            "--password-validation",
            "password-hash-sync",
        ]);
        let e = convert_body(&a, None).unwrap_err().to_string();
        assert!(e.contains("--password-validation applies only"), "{e}");
        let e = parse(&["domains", "convert", "c.example"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = parse(&["domains", "convert", "c.example", "--to", "cloud"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn users_staged_rollout_parses() {
        let AdminCommand::Users(UsersCommand::StagedRollout { user }) =
            parse(&["users", "staged-rollout", "u@contoso.example"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(user, "u@contoso.example");
    }

    fn policy(
        n: u128,
        feature: &str,
        name: &str,
        groups: &[(u128, &str)],
    ) -> FeatureRolloutPolicyView {
        FeatureRolloutPolicyView {
            id: id(n),
            display_name: name.into(),
            description: None,
            feature: feature.into(),
            is_enabled: true,
            is_applied_to_organization: false,
            applies_to: groups
                .iter()
                .map(|(g, name)| DirectoryObjectRef {
                    id: id(*g),
                    display_name: Some((*name).into()),
                })
                .collect(),
            created_date_time: "2026-01-01T00:00:00Z".into(),
            updated_date_time: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn group(n: u128, name: &str) -> GroupView {
        GroupView {
            id: id(n),
            display_name: name.into(),
            description: None,
            membership_kind: "assigned".into(),
            source: "synced".into(),
            immutable_id: None,
            created_date_time: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn policies_resolve_by_id_feature_or_name() {
        let policies = [
            policy(1, "passwordHashSync", "PHS pilot", &[]),
            policy(2, "seamlessSso", "SSO", &[]),
            policy(3, "multiFactorAuthentication", "Twin", &[]),
            policy(4, "certificateBasedAuthentication", "Twin", &[]),
        ];
        assert_eq!(find_policy("passwordHashSync", &policies).unwrap(), id(1));
        assert_eq!(find_policy("password-hash-sync", &policies).unwrap(), id(1));
        assert_eq!(find_policy("SeamlessSSO", &policies).unwrap(), id(2));
        assert_eq!(find_policy(&id(42).to_string(), &policies).unwrap(), id(42));
        assert_eq!(find_policy("PHS pilot", &policies).unwrap(), id(1));
        let e = find_policy("passthroughAuthentication", &policies)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no rollout policy for passthroughAuthentication")
                && e.contains("rollout create"),
            "{e}"
        );
        let e = find_policy("Twin", &policies).unwrap_err().to_string();
        assert!(e.starts_with("2 rollout policies are named 'Twin'"), "{e}");
        assert!(
            e.contains(&id(3).to_string()) && e.contains(&id(4).to_string()),
            "{e}"
        );
        let e = find_policy("nope", &policies).unwrap_err().to_string();
        assert!(
            e.contains("no rollout policy is named 'nope'") && e.contains("passwordHashSync"),
            "{e}"
        );
    }

    #[test]
    fn groups_resolve_by_exact_name_only() {
        let groups = [
            group(1, "Sales"),
            group(2, "Pilot users"),
            group(3, "Pilot users"),
            group(4, "Finance"),
        ];
        assert_eq!(find_group("Sales", &groups).unwrap(), id(1));
        let e = find_group("Pilot users", &groups).unwrap_err().to_string();
        assert!(e.starts_with("2 groups are named 'Pilot users'"), "{e}");
        assert!(
            e.contains(&id(2).to_string()) && e.contains("give the id"),
            "{e}"
        );
        let e = find_group("sales", &groups).unwrap_err().to_string();
        assert!(
            e.contains("no group is named exactly 'sales'") && e.contains("'Sales'"),
            "{e}"
        );
        let e = find_group("Marketing", &groups).unwrap_err().to_string();
        assert!(e.starts_with("no group is named 'Marketing'"), "{e}");
        // Control characters in names cannot reach the terminal.
        let e = find_group("x\u{1b}[2J", &groups).unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e:?}");

        let p = policy(
            1,
            "passwordHashSync",
            "P",
            &[(5, "Wave 1"), (6, "Dup"), (7, "Dup")],
        );
        assert_eq!(find_applied_group("Wave 1", &p.applies_to), Some(id(5)));
        assert_eq!(find_applied_group("Dup", &p.applies_to), None);
        assert_eq!(find_applied_group("Sales", &p.applies_to), None);
        assert_eq!(group_label(&p, id(5)), format!("Wave 1 ({})", id(5)));
        assert_eq!(group_label(&p, id(8)), id(8).to_string());
    }

    #[test]
    fn identity_providers_resolve_by_id_or_name() {
        let idp = |n: u128, name: &str| IdentityProviderView {
            id: id(n),
            display_name: name.into(),
            issuer: "https://i.example".into(),
            client_id: "c".into(),
            scopes: vec!["openid".into()],
            immutable_id_claim: "sub".into(),
            fallback_to_upn: false,
            upn_claim: None,
            redirect_uri: "https://login.example/federation/callback".into(),
            domains: vec![],
            created_date_time: "t".into(),
            updated_date_time: "t".into(),
        };
        let idps = [idp(1, "ADFS"), idp(2, "Okta")];
        assert_eq!(find_idp("Okta", &idps).unwrap(), id(2));
        assert_eq!(find_idp(&id(9).to_string(), &idps).unwrap(), id(9));
        let e = find_idp("Ping", &idps).unwrap_err().to_string();
        assert!(e.contains("no identity provider is named 'Ping'"), "{e}");

        let text = created_idp_text(&idp(1, "ADFS"));
        assert!(
            text.starts_with("Created identity provider ADFS.\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Register this redirect URI for client c at the upstream identity provider"
            ) && text.contains("\n  https://login.example/federation/callback\n"),
            "{text}"
        );
    }

    #[test]
    fn rule_violations_point_at_the_rules() {
        let rule = ApiError {
            status: StatusCode::BAD_REQUEST,
            code: Some("tooManyMembersOnFirstAdd".into()),
            message: "group Sales has 250 members; at most 200 when first added \
                      (tooManyMembersOnFirstAdd)"
                .into(),
            request_id: Some("r-1".into()),
        };
        let e = rule_context(rule.into());
        assert_eq!(
            format!("{e:#}"),
            "refused by a staged-rollout rule (the rules: cutover admin rollout --help): \
             group Sales has 250 members; at most 200 when first added \
             (code tooManyMembersOnFirstAdd, HTTP 400, request r-1)"
        );
        // The API error is still there for callers.
        assert!(e.downcast_ref::<ApiError>().is_some());
        let other = ApiError {
            status: StatusCode::NOT_FOUND,
            code: Some("notFound".into()),
            message: "no group".into(),
            request_id: None,
        };
        assert_eq!(
            format!("{:#}", rule_context(other.into())),
            "no group (code notFound, HTTP 404)"
        );
        // Not a rule to read up on: the message says what to do; the code is said once.
        let added = ApiError {
            status: StatusCode::BAD_REQUEST,
            code: Some("groupAlreadyAdded".into()),
            message: "group 'Sales' is already in this policy (groupAlreadyAdded)".into(),
            request_id: None,
        };
        assert_eq!(
            format!("{:#}", rule_context(added.into())),
            "group 'Sales' is already in this policy (code groupAlreadyAdded, HTTP 400)"
        );
    }

    fn answer(v: Value) -> ConvertAnswer {
        serde_json::from_value(v).unwrap()
    }

    fn refused_body(dry_run: bool) -> Value {
        json!({
            "domain": "contoso.example", "from": "federated", "to": "managed",
            "dryRun": dry_run, "converted": false,
            "preflight": {"allowed": false, "checks": [
                {"name": "passwordHashes", "status": "passed",
                 "detail": "all 10 synced users have a synced password hash"},
                {"name": "breakGlassAccounts", "status": "failed",
                 "detail": "1 enabled break-glass account(s) (at least 2 needed)",
                 "users": ["bg1@contoso.example"]},
                {"name": "recentFederatedSignIns", "status": "warning",
                 "detail": "3 federated sign-in(s) by 1 user(s) in the last 30 days",
                 "users": ["late@contoso.example (3×)"]}
            ]}
        })
    }

    #[test]
    fn preflight_renders_as_a_table_with_users_indented() {
        let a = answer(refused_body(false));
        assert_eq!(
            preflight_table(&a.preflight.checks),
            "STATUS   CHECK                   DETAIL\n\
             passed   passwordHashes          all 10 synced users have a synced password hash\n\
             failed   breakGlassAccounts      1 enabled break-glass account(s) (at least 2 needed)\n\
             \x20                                - bg1@contoso.example\n\
             warning  recentFederatedSignIns  3 federated sign-in(s) by 1 user(s) in the last 30 days\n\
             \x20                                - late@contoso.example (3×)\n"
        );
        let text = convert_text(&a);
        assert!(
            text.starts_with(
                "Preflight for converting contoso.example from federated to managed:\nSTATUS"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\nRefused: contoso.example stays federated; the preflight did not allow \
                 converting it to managed (failed: breakGlassAccounts).\n"
            ),
            "{text}"
        );
        let text = convert_text(&answer(refused_body(true)));
        assert!(
            text.ends_with(
                "\nDry run: converting contoso.example to managed would be refused \
                 (failed: breakGlassAccounts). Nothing was changed.\n"
            ),
            "{text}"
        );
        // Details are never cut short; control characters are escaped.
        let long = "d".repeat(200);
        let t = preflight_table(&[CheckAnswer {
            name: "x\u{1b}".into(),
            status: "passed".into(),
            detail: long.clone(),
            users: vec![],
        }]);
        assert!(t.contains(&long) && !t.contains('\u{1b}'), "{t}");
    }

    #[test]
    fn outcomes_and_exit_codes() {
        let mut ok = refused_body(false);
        ok["preflight"]["allowed"] = json!(true);
        ok["converted"] = json!(true);
        let a = answer(ok.clone());
        assert_eq!(ConvertOutcome::of(&a), ConvertOutcome::Converted);
        assert_eq!(ConvertOutcome::of(&a).exit_code(), 0);
        assert!(convert_text(&a).ends_with(
            "Converted contoso.example from federated to managed. To roll back: cutover admin \
             domains convert contoso.example --to federated\n"
        ));
        ok["converted"] = json!(false);
        ok["dryRun"] = json!(true);
        let a = answer(ok.clone());
        assert_eq!(ConvertOutcome::of(&a), ConvertOutcome::WouldBeAllowed);
        assert_eq!(ConvertOutcome::of(&a).exit_code(), 0);
        assert!(convert_text(&a).ends_with("would be allowed. Nothing was changed.\n"));
        let a = answer(refused_body(true));
        assert_eq!(ConvertOutcome::of(&a), ConvertOutcome::WouldBeRefused);
        assert_eq!(ConvertOutcome::of(&a).exit_code(), 2);
        let a = answer(refused_body(false));
        assert_eq!(ConvertOutcome::of(&a), ConvertOutcome::Refused);
        assert_eq!(ConvertOutcome::of(&a).exit_code(), 2);
        ok["dryRun"] = json!(false);
        assert_eq!(ConvertOutcome::of(&answer(ok)).exit_code(), 1);

        // The rollback: no checks.
        let back = answer(
            json!({"domain": "c.example", "from": "managed", "to": "federated",
            "dryRun": false, "converted": true, "preflight": {"allowed": true, "checks": []}}),
        );
        let text = convert_text(&back);
        assert!(
            text.contains("(no checks: converting back to federated is always allowed)")
                && text.ends_with("Converted c.example from managed to federated.\n"),
            "{text}"
        );
    }

    #[test]
    fn a_refused_preflight_is_an_answer_not_an_error() {
        let body = serde_json::to_vec(&refused_body(false)).unwrap();
        let (raw, a) = read_convert_answer(StatusCode::CONFLICT, None, &body).unwrap();
        assert_eq!(raw, refused_body(false));
        assert!(!a.converted && !a.preflight.allowed);
        assert_eq!(a.preflight.checks[1].users, ["bg1@contoso.example"]);
        let (_, a) = read_convert_answer(StatusCode::OK, None, &body).unwrap();
        assert_eq!(a.domain, "contoso.example");
        // A 409 without a preflight is an ordinary error.
        let err = br#"{"error":{"code":"conflict","message":"domain is busy","requestId":"r-9"}}"#;
        let e = read_convert_answer(StatusCode::CONFLICT, None, err).unwrap_err();
        let api = e.downcast_ref::<ApiError>().unwrap();
        assert_eq!(api.code.as_deref(), Some("conflict"));
        assert_eq!(
            e.to_string(),
            "domain is busy (code conflict, HTTP 409, request r-9)"
        );
        let e = read_convert_answer(
            StatusCode::BAD_REQUEST,
            Some("h"),
            br#"{"error":{"code":"badRequest","message":"name the identity provider"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("name the identity provider"), "{e}");
        let e = read_convert_answer(StatusCode::OK, None, b"").unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
    }

    #[test]
    fn staged_rollout_state_reads_as_fields_and_groups() {
        let v = StagedRolloutView {
            user_id: id(1),
            user_principal_name: "u@contoso.example".into(),
            eligibility: "eligible".into(),
            desired: vec!["passwordHashSync".into()],
            effective: vec![],
            effective_since: None,
            pending_change: true,
            held: Some("noSyncedPasswordHash".into()),
            route: RouteView {
                route: "federated".into(),
                credential: None,
                reason: "federatedDomain".into(),
                why: "the user's domain is federated".into(),
                staged_feature: None,
            },
            groups: vec![StagedGroup {
                id: id(5),
                display_name: "Wave 1".into(),
                features: vec!["passwordHashSync".into(), "seamlessSso".into()],
            }],
        };
        let text = staged_rollout_text(&v);
        for want in [
            "user:            u@contoso.example (00000000-0000-0000-0000-000000000001)\n",
            "eligibility:     eligible (a synced user of a federated domain)\n",
            "desired:         passwordHashSync\n",
            "effective:       (none)\n",
            "effectiveSince:  -\n",
            "pendingChange:   yes: the next completed interactive sign-in",
            "held:            noSyncedPasswordHash: passwordHashSync waits",
            "route:           federated\n",
            "routeReason:     federatedDomain\n",
            "why:             the user's domain is federated\n",
            "\nGroups in rollout policies:\nID",
            "Wave 1  passwordHashSync,seamlessSso\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert_eq!(
            eligibility_text("cloudOnlyUser"),
            "cloudOnlyUser (not synced: staged rollout does not apply)"
        );
        assert_eq!(eligibility_text("somethingNew"), "somethingNew");
    }

    #[test]
    fn rollout_progress_parses() {
        let AdminCommand::Rollout(RolloutCommand::Progress { policy }) =
            parse(&["rollout", "progress", "passwordHashSync"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(policy, "passwordHashSync");
        let e = parse(&["rollout", "progress"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn progress_bars_are_proportional_bounded_and_show_every_category() {
        // (counts in chart order) → cells
        let table: [([u64; 7], [usize; 7]); 7] = [
            ([150, 25, 5, 0, 0, 0, 0], [33, 6, 1, 0, 0, 0, 0]),
            ([1, 0, 0, 0, 0, 0, 0], [40, 0, 0, 0, 0, 0, 0]),
            ([1, 1, 0, 0, 0, 0, 0], [20, 20, 0, 0, 0, 0, 0]),
            ([0; 7], [0; 7]),
            // One held user among a hundred thousand still shows.
            ([99_999, 0, 1, 0, 0, 0, 0], [39, 0, 1, 0, 0, 0, 0]),
            ([1; 7], [6, 6, 6, 6, 6, 5, 5]),
            ([1000, 1, 1, 1, 1, 1, 1], [34, 1, 1, 1, 1, 1, 1]),
        ];
        for (counts, want) in table {
            assert_eq!(bar_cells(&counts, PROGRESS_BAR_WIDTH), want, "{counts:?}");
        }
        // Any counts: exactly the width, every non-empty category visible, empty ones absent,
        // and within one cell of the exact share when no category needed its minimum.
        let samples = [0u64, 1, 2, 3, 7, 40, 99, 1000, 123_457];
        for a in samples {
            for b in samples {
                for c in samples {
                    for d in [0u64, 5] {
                        let counts = [a, b, c, d, 0, d, 1];
                        let cells = bar_cells(&counts, PROGRESS_BAR_WIDTH);
                        let total: u64 = counts.iter().sum();
                        assert_eq!(
                            cells.iter().sum::<usize>(),
                            PROGRESS_BAR_WIDTH,
                            "{counts:?}"
                        );
                        let no_minimum = counts
                            .iter()
                            .all(|&n| n == 0 || n * PROGRESS_BAR_WIDTH as u64 >= total);
                        for (n, cell) in counts.iter().zip(cells) {
                            assert_eq!(*n > 0, cell > 0, "{counts:?} → {cells:?}");
                            let exact = *n as f64 * PROGRESS_BAR_WIDTH as f64 / total as f64;
                            if no_minimum {
                                assert!(
                                    (cell as f64 - exact).abs() < 1.0,
                                    "{counts:?} → {cells:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn progress_view(v: Value) -> RolloutProgressView {
        serde_json::from_value(v).expect("the server's progress shape")
    }

    #[test]
    fn progress_reads_as_bars_a_table_and_who_to_act_on() {
        let totals = |members: u64, switched: u64, pending: u64, held: u64, not_eligible: u64| {
            json!({"members": members, "switched": switched, "pending": pending, "held": held,
                   "returning": 0, "notEnabled": 0, "notEligible": not_eligible})
        };
        let v = progress_view(json!({
            "policyId": id(1).to_string(),
            "feature": "passwordHashSync",
            "isEnabled": true,
            "totals": totals(205, 150, 47, 5, 3),
            "groups": [
                {"id": id(2).to_string(), "displayName": "Pilot", "totals": totals(180, 150, 25, 5, 0),
                 "samples": {"pending": ["p1@corp.example", "p2@corp.example"],
                             "held": ["h1@corp.example"]}},
                {"id": id(3).to_string(), "displayName": "Wave\u{1b}[2J 2", "totals": totals(25, 0, 22, 0, 3),
                 "samples": {"pending": ["w1@corp.example"], "notEligible": ["cloud@corp.example"]},
                 "truncated": true}
            ],
            "truncated": true
        }));
        let text = progress_text(&v);
        let bar = |parts: &[(char, usize)]| -> String {
            parts
                .iter()
                .flat_map(|(c, n)| std::iter::repeat_n(*c, *n))
                .collect()
        };
        for want in [
            "Progress of the passwordHashSync rollout policy (enabled)\n".to_owned(),
            format!(
                "Pilot (180 members)           [{}]  switched 150 · pending 25 · held 5\n",
                bar(&[('█', 33), ('░', 6), ('!', 1)])
            ),
            // Control characters are shown, not obeyed.
            format!(
                "Wave\\u{{1b}}[2J 2 (25 members)  [{}]  pending 22 · not eligible 3\n",
                bar(&[('░', 35), ('x', 5)])
            ),
            format!(
                "Total (205 members)           [{}]  switched 150 · pending 47 · held 5 · not eligible 3\n",
                bar(&[('█', 29), ('░', 9), ('!', 1), ('x', 1)])
            ),
            "Legend: █ switched  ░ pending  ! held  < returning  - not enabled  ? needs password feature  x not eligible\n".to_owned(),
            "Note: Wave\\u{1b}[2J 2 has more members than the server counts per group; the figures cover its first 25.\n".to_owned(),
            "GROUP            MEMBERS  SWITCHED  PENDING  HELD  RETURNING  NOT ENABLED  NOT ELIGIBLE\n".to_owned(),
            "Pilot            180      150       25       5     0          0            0\n".to_owned(),
            "Total            205      150       47       5     0          0            3\n".to_owned(),
            "\nHeld in Pilot (5): sync their password hash: cutover sync run --once --passwords\n  h1@corp.example\n  … and 4 more\n".to_owned(),
            "\nPending in Pilot (25): they switch at their next sign-in\n  p1@corp.example\n  p2@corp.example\n  … and 23 more\n".to_owned(),
            "\nPending in Wave\\u{1b}[2J 2 (22): they switch at their next sign-in\n  w1@corp.example\n  … and 21 more\n".to_owned(),
        ] {
            assert!(text.contains(&want), "{want:?} in\n{text}");
        }
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            !text.contains("NEEDS PASSWORD FEATURE"),
            "only for seamlessSso"
        );
        assert!(!text.contains("Held in Wave"), "no empty lists:\n{text}");
        // Held comes first: who to act on.
        assert!(text.find("Held in Pilot").unwrap() < text.find("Pending in Pilot").unwrap());
        for line in text
            .lines()
            .filter(|l| l.contains(" members)") || l.contains(" member)"))
        {
            let open = line.find("  [").unwrap() + 2;
            let close = line.rfind(']').unwrap();
            assert_eq!(
                line[open + 1..close].chars().count(),
                PROGRESS_BAR_WIDTH,
                "{line}"
            );
        }

        // A disabled seamlessSso policy: returning users, the extra column, an empty group.
        let v = progress_view(json!({
            "policyId": id(1).to_string(), "feature": "seamlessSso", "isEnabled": false,
            "totals": {"members": 3, "switched": 0, "pending": 0, "held": 0, "returning": 2,
                       "notEnabled": 1, "notEligible": 0},
            "groups": [
                {"id": id(2).to_string(), "displayName": "SSO", "totals": {"members": 3, "switched": 0,
                 "pending": 0, "held": 0, "returning": 2, "notEnabled": 1, "notEligible": 0}},
                {"id": id(3).to_string(), "displayName": "Empty", "totals": {"members": 0, "switched": 0,
                 "pending": 0, "held": 0, "returning": 0, "notEnabled": 0, "notEligible": 0}}
            ]
        }));
        let text = progress_text(&v);
        for want in [
            "Progress of the seamlessSso rollout policy (disabled)\n".to_owned(),
            format!(
                "SSO (3 members)    [{}]  returning 2 · not enabled 1\n",
                bar(&[('<', 27), ('-', 13)])
            ),
            format!("Empty (0 members)  [{}]  no members\n", " ".repeat(40)),
            "NEEDS PASSWORD FEATURE".to_owned(),
        ] {
            assert!(text.contains(&want), "{want:?} in\n{text}");
        }
        assert!(
            !text.contains("Held in") && !text.contains("Pending in"),
            "{text}"
        );

        let none = progress_view(json!({
            "policyId": id(1).to_string(), "feature": "passwordHashSync", "isEnabled": true,
            "totals": {"members": 0, "switched": 0, "pending": 0, "held": 0, "returning": 0,
                       "notEnabled": 0, "notEligible": 0},
            "groups": []
        }));
        assert!(
            progress_text(&none).contains(
                "applies to no group yet: cutover admin rollout add-group passwordHashSync GROUP"
            ),
            "{}",
            progress_text(&none)
        );
    }

    /// `s` with every run of whitespace as one space (help text is wrapped to the terminal).
    fn words(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn help_texts_cover_what_operators_need() {
        let mut cmd = TestCli::command();
        let rollout = cmd
            .find_subcommand_mut("admin")
            .unwrap()
            .find_subcommand_mut("rollout")
            .unwrap()
            .render_long_help()
            .to_string();
        let rollout = words(&rollout);
        for want in [
            "one more interactive sign-in",
            "Refresh tokens never switch",
            "domain_hint",
            "legacy clients",
            "cloud-only users",
            "break-glass accounts",
            "managed domains",
            "at most 10 groups",
            "200 members",
            "seamlessSso only",
            "one policy per feature",
            "remove-group",
            "--disable",
            "users staged-rollout",
            "routeReason",
        ] {
            assert!(
                rollout.contains(want),
                "{want:?} missing from rollout --help"
            );
        }
        assert!(ROLLOUT_LONG_ABOUT.lines().count() <= 40);
        let convert = TestCli::command()
            .find_subcommand_mut("admin")
            .unwrap()
            .find_subcommand_mut("domains")
            .unwrap()
            .find_subcommand_mut("convert")
            .unwrap()
            .render_long_help()
            .to_string();
        let convert = words(&convert);
        for want in [
            "3 healthy",
            "at least 2",
            "90 days",
            "always allowed",
            "--dry-run",
            "2 when",
        ] {
            assert!(
                convert.contains(want),
                "{want:?} missing from convert --help"
            );
        }
    }
}
