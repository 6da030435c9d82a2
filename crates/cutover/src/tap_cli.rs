//! `cutover admin users tap …` and `cutover admin tap-policy …`: Temporary Access Passes
//! (SPEC §6.3): issue one to a user (the secret is printed once), show and delete a user's
//! pass, and show and change the policy that allows them.
//!
//! This is a child module of `admin_cli` (declared there with `#[path]`), so it shares that
//! module's signed-in [`Api`], its output helpers and its conventions: tables for people,
//! `--output json|jsonl` for scripts, API errors as `ApiError`s with the server's message.
//! Durations are parsed like everywhere else in `cutover admin` (`agents_admin_cli::secs_arg`).

use anyhow::{Result, anyhow, bail};
use clap::{ArgGroup, Args, Subcommand};
use cutover_core::tap::{ABS_MAX_LIFETIME_SECS, ABS_MIN_LIFETIME_SECS, TapPolicy};
use cutover_proto::ListResponse;
use cutover_proto::tap::{CreateTemporaryAccessPass, TemporaryAccessPassView};
use reqwest::Method;
use serde_json::Value;

use super::agents_admin_cli::{duration_text, secs_arg};
use super::{
    Api, OutputFormat, clean, emit, format_rfc3339, from_response, is_rfc3339, path_segment,
    print_json, print_json_lines, render_fields, without_nulls, yes_no,
};

/// `cutover admin users tap --help`.
pub const TAP_LONG_ABOUT: &str = "\
A Temporary Access Pass is a time-limited code the helpdesk gives a person who cannot sign in \
the usual way: a new employee who has no credential yet, or someone who lost their phone or \
forgot their password. The person signs in with it on Cutover's sign-in page and sets up a new \
method; the sign-in counts as multi-factor.

How a pass behaves:
  - It is shown once, when it is created (`tap create`), and stored only as a hash: read it to \
the person (verify who they are first); nobody can show it again.
  - A user has at most one pass: creating a pass replaces the user's previous one, used or not.
  - While a pass is usable, the user is asked for it instead of their password, and it takes \
precedence over federation: a user of a federated domain signs in here, not at the legacy \
identity provider.
  - It works from its start time until it expires. A one-time pass (--once) is spent by the \
first sign-in; a multi-use pass works until it expires. Sessions and tokens obtained with a pass \
end when the pass does.
  - Wrong passes count towards smart lockout like wrong passwords.
  - Passes are off until the policy enables them: `cutover admin tap-policy set --enable` \
(`cutover admin tap-policy --help` explains the limits).

Examples:
  cutover admin users tap create user1@contoso.example --once
  cutover admin users tap create user1@contoso.example --lifetime 8h --start 2026-12-24T08:00:00Z
  cutover admin users tap show user1@contoso.example
  cutover admin users tap delete user1@contoso.example";

/// `cutover admin tap-policy --help`.
pub const TAP_POLICY_LONG_ABOUT: &str = "\
The Temporary Access Pass policy: whether the helpdesk may issue passes, how long they live, how \
long they are, and whether they are one-time.

Passes are off until an administrator enables them (--enable), because a pass lets its holder \
in without any of the user's other methods. Turning passes off (--disable) also stops every \
pass already issued from working; turning them on again brings back the ones still valid.

Limits: a lifetime is between 10m and 30d; the policy's minimum ≤ default ≤ maximum (by default \
1h ≤ 1h ≤ 8h); a pass is 8 to 48 characters long (default 8). With --require-one-time true, \
multi-use passes are refused.

A user's passes: `cutover admin users tap --help`.";

#[derive(Subcommand, Debug)]
pub enum TapCommand {
    /// Issue a Temporary Access Pass to a user, replacing any pass they had, and print it once.
    #[command(after_help = "\
Without options the policy decides the lifetime (its default) and whether the pass is one-time \
(its defaultOneTime). The pass is printed in groups of four characters; spaces and dashes do \
not matter when it is typed, nor does upper or lower case.

Example:
  cutover admin users tap create user1@contoso.example --lifetime 2h --once")]
    Create(TapCreateArgs),
    /// Show a user's pass: when it is valid, whether it is one-time, and whether it can be used
    /// now (and why not). The pass itself is never shown again.
    Show {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
    /// Delete a user's pass at once (no confirmation); the user signs in the usual way again.
    Delete {
        /// The user's principal name (user1@contoso.example) or id.
        #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
        user: String,
    },
}

#[derive(Args, Debug)]
#[command(
    override_usage = "cutover admin users tap create <UPN_OR_ID> [--lifetime DURATION] [--start RFC3339] [--once|--multi-use]"
)]
pub struct TapCreateArgs {
    /// The user's principal name (user1@contoso.example) or id.
    #[arg(value_name = "UPN_OR_ID", value_parser = path_segment)]
    pub user: String,
    /// How long the pass works from its start, in whole minutes: 10m to 30d, within the
    /// policy's range (e.g. 1h, 90m, 8h) [default: the policy's default lifetime].
    #[arg(long, value_name = "DURATION", value_parser = lifetime_arg)]
    pub lifetime: Option<i64>,
    /// When the pass starts to work, as an RFC 3339 time (2026-12-24T08:00:00Z or
    /// 2026-12-24T09:00:00+01:00), at most 30 days ahead [default: now].
    #[arg(long, value_name = "RFC3339", value_parser = start_arg)]
    pub start: Option<String>,
    /// A one-time pass: the first sign-in spends it.
    #[arg(long, conflicts_with = "multi_use")]
    pub once: bool,
    /// A multi-use pass: it works for every sign-in until it expires (refused when the policy
    /// requires one-time passes).
    #[arg(long)]
    pub multi_use: bool,
}

impl TapCreateArgs {
    /// The POST body: only what was given; the policy supplies the rest.
    fn body(&self) -> CreateTemporaryAccessPass {
        CreateTemporaryAccessPass {
            start_date_time: self.start.clone(),
            lifetime_in_minutes: self.lifetime,
            is_usable_once: match (self.once, self.multi_use) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TapPolicyCommand {
    /// Show the policy: whether passes are enabled, their lifetimes, length and one-time rules.
    Show,
    /// Change the policy: only the settings given change.
    Set(TapPolicySetArgs),
}

#[derive(Args, Debug)]
#[command(
    override_usage = "cutover admin tap-policy set [--enable|--disable] [--default-lifetime DURATION] [--min-lifetime DURATION] [--max-lifetime DURATION] [--length N] [--one-time-default true|false] [--require-one-time true|false]"
)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args([
            "enable", "disable", "default_lifetime", "min_lifetime", "max_lifetime", "length",
            "one_time_default", "require_one_time",
        ])
))]
#[command(after_help = "\
Durations are a number and a unit: s, m, h, d or w (10m, 1h, 1h30m, 7d).
--require-one-time true also makes passes one-time by default unless --one-time-default is given.

Example (passes on, up to a working day, one-time only):
  cutover admin tap-policy set --enable --max-lifetime 10h --require-one-time true")]
pub struct TapPolicySetArgs {
    /// Let the helpdesk issue passes, and let issued passes work.
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    /// Refuse new passes and stop every issued pass from working.
    #[arg(long)]
    pub disable: bool,
    /// The lifetime of a pass created without --lifetime.
    #[arg(long, value_name = "DURATION", value_parser = secs_arg)]
    pub default_lifetime: Option<i64>,
    /// The shortest lifetime the helpdesk may choose (at least 10m).
    #[arg(long, value_name = "DURATION", value_parser = secs_arg)]
    pub min_lifetime: Option<i64>,
    /// The longest lifetime the helpdesk may choose (at most 30d).
    #[arg(long, value_name = "DURATION", value_parser = secs_arg)]
    pub max_lifetime: Option<i64>,
    /// Characters in a pass, 8 to 48.
    #[arg(long, value_name = "N")]
    pub length: Option<usize>,
    /// Whether a pass created without --once or --multi-use is one-time.
    #[arg(long, value_name = "true|false")]
    pub one_time_default: Option<bool>,
    /// Refuse multi-use passes.
    #[arg(long, value_name = "true|false")]
    pub require_one_time: Option<bool>,
}

// ---- value parsers (pure) -------------------------------------------------------------------

/// `--lifetime`: a duration in whole minutes (the API counts minutes) within the bounds no
/// policy can widen; the policy's own range is the server's to check. Returns minutes.
fn lifetime_arg(s: &str) -> Result<i64, String> {
    let secs = secs_arg(s)?;
    if secs % 60 != 0 {
        return Err(format!(
            "a pass lives a whole number of minutes; '{s}' is {}",
            duration_text(secs)
        ));
    }
    if !(ABS_MIN_LIFETIME_SECS..=ABS_MAX_LIFETIME_SECS).contains(&secs) {
        return Err(format!(
            "a pass lives from {} to {}; '{s}' is {}",
            duration_text(ABS_MIN_LIFETIME_SECS),
            duration_text(ABS_MAX_LIFETIME_SECS),
            duration_text(secs)
        ));
    }
    Ok(secs / 60)
}

/// `--start`: an RFC 3339 time, passed on as written (the server checks it is not in the past
/// nor too far ahead, by its own clock).
fn start_arg(s: &str) -> Result<String, String> {
    let s = s.trim();
    if is_rfc3339(s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not an RFC 3339 time; write it like 2026-12-24T08:00:00Z (UTC) or \
             2026-12-24T09:00:00+01:00"
        ))
    }
}

/// The policy the PUT sends: `current` with the given settings changed, checked by the same
/// rules as the server's so that a mistake names the option to fix.
fn changed_policy(current: TapPolicy, a: &TapPolicySetArgs) -> Result<TapPolicy> {
    let mut p = current;
    if a.enable {
        p.enabled = true;
    }
    if a.disable {
        p.enabled = false;
    }
    if let Some(s) = a.default_lifetime {
        p.default_lifetime_secs = s;
    }
    if let Some(s) = a.min_lifetime {
        p.min_lifetime_secs = s;
    }
    if let Some(s) = a.max_lifetime {
        p.max_lifetime_secs = s;
    }
    if let Some(n) = a.length {
        p.length = n;
    }
    if let Some(b) = a.one_time_default {
        p.default_one_time = b;
    }
    if let Some(b) = a.require_one_time {
        p.require_one_time = b;
        if b && a.one_time_default.is_none() {
            p.default_one_time = true;
        }
    }
    p.validate().map_err(|e| {
        let option = match e.field {
            "minLifetimeSecs" => "--min-lifetime",
            "maxLifetimeSecs" => "--max-lifetime",
            "defaultLifetimeSecs" => "--default-lifetime",
            "length" => "--length",
            "defaultOneTime" => "--one-time-default",
            _ => "the policy",
        };
        anyhow!(
            "{option}: {} (lifetimes in seconds; settings not given keep their current values, \
             see `cutover admin tap-policy show`)",
            e.message
        )
    })?;
    Ok(p)
}

// ---- text (pure) ----------------------------------------------------------------------------

/// A pass in groups of four, as it is read to someone: `K7PQ 2XWA`.
fn grouped(pass: &str) -> String {
    let chars: Vec<char> = pass.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

/// When a pass stops working, from its start and lifetime (the API gives both, not the end).
fn expiry_text(v: &TemporaryAccessPassView) -> String {
    match cutover_server::clock::parse_rfc3339(&v.start_date_time) {
        Some(start) => format_rfc3339(
            start
                .plus_secs(v.lifetime_in_minutes.saturating_mul(60))
                .secs(),
        ),
        None => format!(
            "{} after {}",
            duration_text(v.lifetime_in_minutes.saturating_mul(60)),
            v.start_date_time
        ),
    }
}

fn validity_text(v: &TemporaryAccessPassView) -> String {
    format!(
        "from {} until {} ({})",
        clean(&v.start_date_time),
        clean(&expiry_text(v)),
        duration_text(v.lifetime_in_minutes.saturating_mul(60))
    )
}

/// Whether the pass can be used now, and if not why, in words.
fn usability_text(v: &TemporaryAccessPassView) -> String {
    match why_not(v) {
        None => "yes".into(),
        Some(why) => format!("no: {why}"),
    }
}

/// Why the pass cannot be used now; `None` when it can.
fn why_not(v: &TemporaryAccessPassView) -> Option<String> {
    if v.is_usable {
        return None;
    }
    Some(match v.method_usability_reason.as_str() {
        "expired" => format!("it expired at {}", clean(&expiry_text(v))),
        "notYetValid" => format!("it starts at {}", clean(&v.start_date_time)),
        "oneTimeUsed" => match &v.used_date_time {
            Some(at) => format!("it was used once, at {}", clean(at)),
            None => "it was used once".to_owned(),
        },
        "disabledByPolicy" => "passes are turned off in the policy (cutover admin tap-policy set \
                               --enable)"
            .to_owned(),
        other => clean(other),
    })
}

fn once_text(once: bool) -> &'static str {
    if once {
        "usable once: the first sign-in spends it"
    } else {
        "multi-use: it works for every sign-in until it expires"
    }
}

/// What the helpdesk sees after creating a pass: the pass, set apart, then what it is good
/// for and the instruction.
fn created_text(user: &str, v: &TemporaryAccessPassView) -> String {
    let pass = v
        .temporary_access_pass
        .as_deref()
        .unwrap_or("(not returned)");
    let mut text = format!(
        "Temporary Access Pass for {}:\n\n    {}\n\n",
        clean(user),
        clean(&grouped(pass))
    );
    text.push_str(&format!("Valid {}.\n", validity_text(v)));
    text.push_str(&format!("{}.\n", capitalised(once_text(v.is_usable_once))));
    if let Some(why) = why_not(v) {
        text.push_str(&format!("Not usable yet: {why}.\n"));
    }
    text.push_str(
        "Read it to the person (verify who they are first); it is shown only now. It replaced \
         any pass the user had before.\n",
    );
    text
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn pass_fields(user: &str, v: &TemporaryAccessPassView) -> String {
    render_fields(&[
        ("user", user.to_owned()),
        ("id", v.id.to_string()),
        ("created", v.created_date_time.clone()),
        ("validFrom", v.start_date_time.clone()),
        ("validUntil", expiry_text(v)),
        (
            "lifetime",
            duration_text(v.lifetime_in_minutes.saturating_mul(60)),
        ),
        ("usableOnce", yes_no(v.is_usable_once)),
        ("usableNow", usability_text(v)),
        (
            "usedAt",
            v.used_date_time.clone().unwrap_or_else(|| "-".into()),
        ),
    ])
}

fn policy_text(p: &TapPolicy) -> String {
    let mut text = render_fields(&[
        ("enabled", yes_no(p.enabled)),
        ("defaultLifetime", duration_text(p.default_lifetime_secs)),
        ("minLifetime", duration_text(p.min_lifetime_secs)),
        ("maxLifetime", duration_text(p.max_lifetime_secs)),
        ("length", format!("{} characters", p.length)),
        ("oneTimeByDefault", yes_no(p.default_one_time)),
        ("requireOneTime", yes_no(p.require_one_time)),
    ]);
    if !p.enabled {
        text.push_str(
            "Passes are off: none can be issued and issued ones do not work. Turn them on with \
             `cutover admin tap-policy set --enable`.\n",
        );
    }
    text
}

// ---- commands -------------------------------------------------------------------------------

const METHODS: [&str; 2] = ["authentication", "temporaryAccessPassMethods"];

fn methods_path(user: &str) -> [&str; 4] {
    ["users", user, METHODS[0], METHODS[1]]
}

fn required(resp: Option<Value>, what: &str) -> Result<Value> {
    resp.ok_or_else(|| anyhow!("the server returned no {what}"))
}

/// The user's passes (0 or 1).
async fn list(api: &Api, user: &str) -> Result<(Option<Value>, Vec<TemporaryAccessPassView>)> {
    let resp = api
        .send(Method::GET, &methods_path(user), &[], None)
        .await?;
    let list: ListResponse<TemporaryAccessPassView> = match &resp {
        Some(v) => from_response(v.clone())?,
        None => ListResponse::new(Vec::new()),
    };
    Ok((resp, list.value))
}

pub(super) async fn tap(api: &Api, out: OutputFormat, cmd: TapCommand) -> Result<()> {
    match cmd {
        TapCommand::Create(a) => {
            let body = without_nulls(serde_json::to_value(a.body())?);
            let resp = api
                .send(Method::POST, &methods_path(&a.user), &[], Some(&body))
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let v: TemporaryAccessPassView = from_response(required(resp, "pass")?)?;
            emit(&created_text(&a.user, &v))
        }
        TapCommand::Show { user } => {
            let (resp, passes) = list(api, &user).await?;
            match out {
                OutputFormat::Json => return print_json(out, resp.as_ref()),
                OutputFormat::Jsonl => return print_json_lines(resp.as_ref()),
                OutputFormat::Table => {}
            }
            match passes.first() {
                None => emit(&format!("{} has no Temporary Access Pass.\n", clean(&user))),
                Some(v) => emit(&pass_fields(&user, v)),
            }
        }
        TapCommand::Delete { user } => {
            let (_, passes) = list(api, &user).await?;
            if passes.is_empty() {
                if out == OutputFormat::Table {
                    emit(&format!(
                        "{} has no Temporary Access Pass; nothing was deleted.\n",
                        clean(&user)
                    ))?;
                }
                return Ok(());
            }
            for v in &passes {
                let id = v.id.to_string();
                let mut path = methods_path(&user).to_vec();
                path.push(&id);
                let resp = api.send(Method::DELETE, &path, &[], None).await?;
                if out != OutputFormat::Table {
                    print_json(out, resp.as_ref())?;
                    continue;
                }
                emit(&format!(
                    "Deleted the Temporary Access Pass {} of {} (it was {}); the user signs in \
                     the usual way again.\n",
                    v.id,
                    clean(&user),
                    match why_not(v) {
                        None => "usable".to_owned(),
                        Some(why) => format!("not usable: {why}"),
                    }
                ))?;
            }
            Ok(())
        }
    }
}

pub(super) async fn tap_policy(api: &Api, out: OutputFormat, cmd: TapPolicyCommand) -> Result<()> {
    const PATH: [&str; 2] = ["policies", "temporaryAccessPass"];
    match cmd {
        TapPolicyCommand::Show => {
            let resp = api.send(Method::GET, &PATH, &[], None).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let p: TapPolicy = from_response(required(resp, "policy")?)?;
            emit(&policy_text(&p))
        }
        TapPolicyCommand::Set(a) => {
            let current: TapPolicy = from_response(required(
                api.send(Method::GET, &PATH, &[], None).await?,
                "policy",
            )?)?;
            let wanted = changed_policy(current, &a)?;
            if wanted == current {
                bail!(
                    "the Temporary Access Pass policy already has these settings; nothing was \
                     changed"
                );
            }
            let body = serde_json::to_value(wanted)?;
            let resp = api.send(Method::PUT, &PATH, &[], Some(&body)).await?;
            if out != OutputFormat::Table {
                return print_json(out, resp.as_ref());
            }
            let p: TapPolicy = from_response(required(resp, "policy")?)?;
            emit(&format!(
                "Updated the Temporary Access Pass policy.\n{}",
                policy_text(&p)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn view(reason: &str) -> TemporaryAccessPassView {
        TemporaryAccessPassView {
            id: Uuid::from_u128(9),
            created_date_time: "2026-12-24T07:55:00Z".into(),
            start_date_time: "2026-12-24T08:00:00Z".into(),
            lifetime_in_minutes: 90,
            is_usable_once: true,
            is_usable: reason == "enabledByPolicy",
            method_usability_reason: reason.into(),
            used_date_time: (reason == "oneTimeUsed").then(|| "2026-12-24T08:10:00Z".into()),
            temporary_access_pass: Some("K7PQ2XWAB3".into()),
        }
    }

    fn set_args() -> TapPolicySetArgs {
        TapPolicySetArgs {
            enable: false,
            disable: false,
            default_lifetime: None,
            min_lifetime: None,
            max_lifetime: None,
            length: None,
            one_time_default: None,
            require_one_time: None,
        }
    }

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        #[command(subcommand)]
        Tap(TapCommand),
        #[command(subcommand)]
        TapPolicy(TapPolicyCommand),
    }

    fn parse(args: &[&str]) -> Result<Top, clap::Error> {
        use clap::Parser as _;
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn the_command_line_parses_as_documented() {
        let Ok(Top::Tap(TapCommand::Create(a))) = parse(&[
            "tap",
            "create",
            "user1@contoso.example",
            "--lifetime",
            "8h",
            "--start",
            "2026-12-24T08:00:00Z",
            "--once",
        ]) else {
            panic!("create parses");
        };
        assert_eq!(
            (a.lifetime, a.start.as_deref(), a.once),
            (Some(480), Some("2026-12-24T08:00:00Z"), true)
        );
        assert!(parse(&["tap", "create", "u@x.example", "--once", "--multi-use"]).is_err());
        assert!(parse(&["tap", "create", "u@x.example", "--lifetime", "5m"]).is_err());
        assert!(parse(&["tap", "delete", ".."]).is_err());
        assert!(parse(&["tap-policy", "set"]).is_err(), "set needs a change");
        assert!(parse(&["tap-policy", "set", "--enable", "--disable"]).is_err());
        let Ok(Top::TapPolicy(TapPolicyCommand::Set(a))) = parse(&[
            "tap-policy",
            "set",
            "--default-lifetime",
            "2h",
            "--require-one-time",
            "true",
        ]) else {
            panic!("set parses");
        };
        assert_eq!(
            (a.default_lifetime, a.require_one_time, a.enable),
            (Some(7_200), Some(true), false)
        );
    }

    #[test]
    fn lifetimes_are_whole_minutes_within_the_absolute_bounds() {
        assert_eq!(lifetime_arg("1h"), Ok(60));
        assert_eq!(lifetime_arg("10m"), Ok(10));
        assert_eq!(lifetime_arg("1h30m"), Ok(90));
        assert_eq!(lifetime_arg("30d"), Ok(30 * 24 * 60));
        let e = lifetime_arg("90s").unwrap_err();
        assert!(
            e.contains("whole number of minutes") && e.contains("1m30s"),
            "{e}"
        );
        let e = lifetime_arg("9m").unwrap_err();
        assert!(e.contains("from 10m to 30d") && e.contains("9m"), "{e}");
        assert!(lifetime_arg("30d1m").is_err());
        assert!(
            lifetime_arg("soon")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(lifetime_arg("99999999999999999w").is_err());
    }

    #[test]
    fn starts_are_rfc3339_times() {
        assert_eq!(
            start_arg(" 2026-12-24T08:00:00Z "),
            Ok("2026-12-24T08:00:00Z".to_owned())
        );
        assert!(start_arg("2026-12-24T09:00:00+01:00").is_ok());
        let e = start_arg("2026-12-24 08:00").unwrap_err();
        assert!(e.contains("2026-12-24T08:00:00Z"), "{e}");
        assert!(start_arg("tomorrow").is_err());
        assert!(start_arg("2026-02-30T08:00:00Z").is_err());
    }

    #[test]
    fn the_create_body_holds_only_what_was_given() {
        let mut a = TapCreateArgs {
            user: "user1@contoso.example".into(),
            lifetime: None,
            start: None,
            once: false,
            multi_use: false,
        };
        let json = |a: &TapCreateArgs| without_nulls(serde_json::to_value(a.body()).unwrap());
        assert_eq!(json(&a), serde_json::json!({}));
        a.once = true;
        a.lifetime = Some(120);
        a.start = Some("2026-12-24T08:00:00Z".into());
        assert_eq!(
            json(&a),
            serde_json::json!({"lifetimeInMinutes": 120, "isUsableOnce": true,
                               "startDateTime": "2026-12-24T08:00:00Z"})
        );
        a.once = false;
        a.multi_use = true;
        assert_eq!(json(&a)["isUsableOnce"], false);
    }

    #[test]
    fn passes_are_read_in_groups_of_four() {
        assert_eq!(grouped("K7PQ2XWA"), "K7PQ 2XWA");
        assert_eq!(grouped("K7PQ2XWAB3"), "K7PQ 2XWA B3");
        assert_eq!(grouped(""), "");
        // What is printed is what the sign-in page accepts.
        assert_eq!(
            cutover_core::tap::normalize_entered(&grouped("K7PQ2XWAB3"))
                .map(|s| s.expose().to_owned()),
            Some("K7PQ2XWAB3".to_owned())
        );
    }

    #[test]
    fn the_created_pass_is_printed_once_with_its_window_and_the_instruction() {
        let v = view("enabledByPolicy");
        let text = created_text("user1@contoso.example", &v);
        assert!(
            text.starts_with(
                "Temporary Access Pass for user1@contoso.example:\n\n    K7PQ 2XWA B3\n\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("K7PQ").count(), 1, "{text}");
        assert!(
            text.contains("Valid from 2026-12-24T08:00:00Z until 2026-12-24T09:30:00Z (1h30m)."),
            "{text}"
        );
        assert!(text.contains("Usable once"), "{text}");
        assert!(
            text.contains("Read it to the person") && text.contains("shown only now"),
            "{text}"
        );
        assert!(!text.contains("Not usable yet"), "{text}");
        let mut later = view("notYetValid");
        later.is_usable_once = false;
        let text = created_text("user1@contoso.example", &later);
        assert!(text.contains("Multi-use"), "{text}");
        assert!(
            text.contains("Not usable yet: it starts at 2026-12-24T08:00:00Z."),
            "{text}"
        );
    }

    #[test]
    fn usability_reads_as_words() {
        assert_eq!(usability_text(&view("enabledByPolicy")), "yes");
        assert_eq!(
            usability_text(&view("expired")),
            "no: it expired at 2026-12-24T09:30:00Z"
        );
        assert_eq!(
            usability_text(&view("oneTimeUsed")),
            "no: it was used once, at 2026-12-24T08:10:00Z"
        );
        assert!(usability_text(&view("disabledByPolicy")).contains("tap-policy set --enable"));
        assert_eq!(usability_text(&view("somethingNew")), "no: somethingNew");
        let fields = pass_fields("user1@contoso.example", &view("oneTimeUsed"));
        assert!(fields.contains("validUntil:"), "{fields}");
        assert!(fields.contains("2026-12-24T09:30:00Z"), "{fields}");
        assert!(
            !fields.contains("K7PQ"),
            "the secret is never shown again: {fields}"
        );
        let mut odd = view("expired");
        odd.start_date_time = "christmas".into();
        assert_eq!(expiry_text(&odd), "1h30m after christmas");
    }

    #[test]
    fn the_policy_changes_only_what_was_given() {
        let p = changed_policy(
            TapPolicy::default(),
            &TapPolicySetArgs {
                enable: true,
                max_lifetime: Some(10 * 3_600),
                ..set_args()
            },
        )
        .unwrap();
        assert!(p.enabled);
        assert_eq!(p.max_lifetime_secs, 36_000);
        assert_eq!(p.default_lifetime_secs, 3_600);
        assert_eq!(p.length, 8);
        assert!(!p.default_one_time && !p.require_one_time);
        let off = changed_policy(
            p,
            &TapPolicySetArgs {
                disable: true,
                ..set_args()
            },
        )
        .unwrap();
        assert!(!off.enabled);
        assert_eq!(off.max_lifetime_secs, 36_000);
    }

    #[test]
    fn requiring_one_time_passes_makes_them_one_time_by_default() {
        let p = changed_policy(
            TapPolicy::default(),
            &TapPolicySetArgs {
                require_one_time: Some(true),
                ..set_args()
            },
        )
        .unwrap();
        assert!(p.require_one_time && p.default_one_time);
        // Said explicitly, the contradiction is refused and named.
        let e = changed_policy(
            TapPolicy::default(),
            &TapPolicySetArgs {
                require_one_time: Some(true),
                one_time_default: Some(false),
                ..set_args()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("--one-time-default:"), "{e}");
    }

    #[test]
    fn policy_mistakes_name_the_option() {
        for (args, option) in [
            (
                TapPolicySetArgs {
                    min_lifetime: Some(60),
                    ..set_args()
                },
                "--min-lifetime",
            ),
            (
                TapPolicySetArgs {
                    max_lifetime: Some(1_800),
                    ..set_args()
                },
                "--max-lifetime",
            ),
            (
                TapPolicySetArgs {
                    default_lifetime: Some(9 * 3_600),
                    ..set_args()
                },
                "--default-lifetime",
            ),
            (
                TapPolicySetArgs {
                    length: Some(4),
                    ..set_args()
                },
                "--length",
            ),
        ] {
            let e = changed_policy(TapPolicy::default(), &args)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{option}:")), "{e}");
        }
    }

    #[test]
    fn the_policy_reads_as_fields() {
        let text = policy_text(&TapPolicy::default());
        assert!(text.contains("enabled:"), "{text}");
        assert!(text.contains("maxLifetime:"), "{text}");
        assert!(text.contains("8h"), "{text}");
        assert!(text.contains("tap-policy set --enable"), "{text}");
        let on = TapPolicy {
            enabled: true,
            ..TapPolicy::default()
        };
        assert!(!policy_text(&on).contains("Passes are off"));
    }
}
