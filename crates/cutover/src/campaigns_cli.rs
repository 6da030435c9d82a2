//! `cutover admin campaigns …`: passkey rollout campaigns (SPEC §9) — create from a file, see
//! the waves with their prerequisites and progress (by device family, with a text bar per
//! wave), export the stragglers as CSV, look at and run the communication plan (preview,
//! test-send, outbox, resend), and confirm, enforce and roll back a wave.
//!
//! A child module of `admin_cli` (declared there with `#[path]`), sharing its signed-in
//! [`Api`] and output conventions.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::ca_cli::{confirm, tell};
use super::{Api, OutputFormat, clean, emit, print_json, render_table};

/// `cutover admin campaigns --help`.
pub const CAMPAIGNS_LONG_ABOUT: &str = "\
A passkey rollout campaign moves groups of users to passkeys in waves, the way successful \
rollouts do it: a pilot, early adopters, then departments, then everyone, each wave sized to \
what the helpdesk can carry.

Each wave is a group, with a date when registration opens and an enforcement date. Before the \
enforcement date, e-mails go out on a schedule relative to it (by default: an announcement 7 \
days before, a day-of message, and 7 days after a reminder to those still without a passkey, \
with their manager in CC) through the organisation's SMTP relay (`cutover serve --smtp-host …`). \
The e-mails link to the enrolment page (/my/enrol), which recognises the user's device and \
shows the steps and pitfalls for it.

Progress per wave: members, enrolled (at least one passkey), with two or more, by device \
family, over time; the stragglers as a CSV for the helpdesk.

Enforcement: a wave names the Conditional Access policy that will require passkeys for its \
group; create that policy report-only first. `enforce` switches it on only when the wave is \
enrolled to its target (95 % by default), an administrator has confirmed the wave (`confirm`), \
and the Conditional Access enforcement gate agrees (48 h of report-only evidence, the projected \
interruption rate, break-glass accounts ready). `rollback` puts the policy back to report-only \
and deletes nothing: passkeys, messages and history stay.

Campaigns and waves are named by id or exact display name.

Examples:
  cutover admin campaigns create --file passkeys-2027.json
  cutover admin campaigns show \"Passkeys 2027\"
  cutover admin campaigns progress \"Passkeys 2027\"
  cutover admin campaigns stragglers \"Passkeys 2027\" Finance --csv finance-stragglers.csv
  cutover admin campaigns preview \"Passkeys 2027\" Finance reminder
  cutover admin campaigns test-send \"Passkeys 2027\" Finance announcement --to me@contoso.example
  cutover admin campaigns confirm \"Passkeys 2027\" Finance
  cutover admin campaigns enforce \"Passkeys 2027\" Finance
  cutover admin campaigns rollback \"Passkeys 2027\" Finance

A campaign file (JSON):
  {\"displayName\": \"Passkeys 2027\",
   \"waves\": [{\"displayName\": \"IT pilot\", \"phase\": \"pilot\", \"groupId\": \"…\",
                \"registrationOpens\": \"2027-01-04T08:00:00Z\", \"enforcementDate\": \"2027-01-25T08:00:00Z\",
                \"caPolicyId\": \"…\"}],
   \"preset\": \"standard\"}        (or \"extended\": 60/45/30/15/7/1 days before, or your own \"communications\")";

#[derive(Subcommand, Debug)]
pub enum CampaignsCommand {
    /// List the campaigns with their waves' states.
    List,
    /// Show a campaign: waves, dates, states, prerequisites and progress.
    Show(CampaignArg),
    /// Create a campaign from a JSON file (see `cutover admin campaigns --help`).
    Create {
        /// The campaign definition; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a campaign (refused while one of its waves is enforced). Sent messages stay in
    /// the outbox's log; pending ones are cancelled.
    Delete {
        #[command(flatten)]
        campaign: CampaignArg,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// The live checklist of each wave: methods policy, pass policy, break-glass, CA policy.
    Prerequisites(CampaignArg),
    /// Progress of each wave: enrolled, with two or more passkeys, by device family.
    Progress(CampaignArg),
    /// The members of a wave without a passkey (a table, or CSV for the helpdesk).
    Stragglers {
        #[command(flatten)]
        wave: WaveArgs,
        /// Write CSV to this file (`-`: standard output).
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
    /// Confirm that a wave's exit criteria are met (needed before `enforce`).
    Confirm(WaveArgs),
    /// Enforce a wave: switch its Conditional Access policy on, through the enforcement gate.
    Enforce {
        #[command(flatten)]
        wave: WaveArgs,
        /// Pass the Conditional Access gate's refusal (audited). The campaign's own criteria
        /// (target, confirmation) are never forced.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Roll a wave back: its policy returns to report-only; nothing is deleted.
    Rollback(WaveArgs),
    /// The communication plan: each step per wave (not yet, due, done, missed) and the outbox.
    Comms(CampaignArg),
    /// Decide the steps that are due now (the server also does it every minute).
    SendDue(CampaignArg),
    /// Show a step's e-mail as a member would get it, and its audience now.
    Preview {
        #[command(flatten)]
        wave: WaveArgs,
        /// The step's key (e.g. announcement, dayOf, reminder).
        #[arg(value_name = "STEP")]
        step: String,
    },
    /// Send a step's e-mail, marked as a test, to one address.
    TestSend {
        #[command(flatten)]
        wave: WaveArgs,
        #[arg(value_name = "STEP")]
        step: String,
        #[arg(long, value_name = "ADDRESS")]
        to: String,
    },
    /// The campaign's messages in the outbox (optionally one state: pending, sent, failed,
    /// uncertain…).
    Outbox {
        #[command(flatten)]
        campaign: CampaignArg,
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// At most N messages (default 100, at most 500).
        #[arg(long, value_name = "N")]
        top: Option<u32>,
        /// The messages after this id (the last id of the previous page).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
    },
    /// Send a failed or uncertain message again (check the relay's log for an uncertain one
    /// first: it may have been delivered).
    Resend {
        /// The outbox message's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Send every failed message of a campaign again, after fixing what failed them (the
    /// relay, its settings, an address). Uncertain messages are left alone.
    ResendFailed(CampaignArg),
}

#[derive(Args, Debug)]
pub struct CampaignArg {
    /// The campaign's id or exact display name.
    #[arg(value_name = "CAMPAIGN")]
    pub campaign: String,
}

#[derive(Args, Debug)]
pub struct WaveArgs {
    /// The campaign's id or exact display name.
    #[arg(value_name = "CAMPAIGN")]
    pub campaign: String,
    /// The wave's id or exact display name.
    #[arg(value_name = "WAVE")]
    pub wave: String,
}

const CAMPAIGNS: &str = "campaigns";

async fn get(api: &Api, segments: &[&str], query: &[(&str, Option<String>)]) -> Result<Value> {
    api.send(Method::GET, segments, query, None)
        .await?
        .ok_or_else(|| anyhow!("the server returned no data"))
}

/// The campaign's JSON (by id or name: the server resolves both).
async fn campaign(api: &Api, key: &str) -> Result<Value> {
    get(api, &[CAMPAIGNS, key], &[]).await
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The wave's id, by id or exact display name.
fn wave_id(c: &Value, key: &str) -> Result<String> {
    let waves = c["waves"].as_array().cloned().unwrap_or_default();
    if let Some(w) = waves
        .iter()
        .find(|w| str_of(w, "id") == key || str_of(w, "displayName") == key)
    {
        return Ok(str_of(w, "id").to_owned());
    }
    let names: Vec<&str> = waves.iter().map(|w| str_of(w, "displayName")).collect();
    bail!(
        "campaign '{}' has no wave '{}'; its waves are: {}",
        clean(str_of(c, "displayName")),
        clean(key),
        clean(&names.join(", "))
    )
}

/// A text bar of `percent` (0–100) in `width` cells, with the target marked.
pub(crate) fn bar(percent: f64, target: f64, width: usize) -> String {
    let p = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let t = if target.is_finite() {
        target.clamp(0.0, 100.0)
    } else {
        100.0
    };
    let filled = ((p / 100.0) * width as f64).round() as usize;
    let mark = (((t / 100.0) * width as f64).round() as usize).min(width.saturating_sub(1));
    (0..width)
        .map(|i| {
            if i == mark && i >= filled {
                '|'
            } else if i < filled {
                '#'
            } else {
                '.'
            }
        })
        .collect()
}

fn day(s: &str) -> &str {
    s.get(..10).unwrap_or(s)
}

pub async fn campaigns(api: &Api, out: OutputFormat, cmd: CampaignsCommand) -> Result<()> {
    match cmd {
        CampaignsCommand::List => {
            let v = get(api, &[CAMPAIGNS], &[]).await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            let mut rows = Vec::new();
            for c in v["value"].as_array().cloned().unwrap_or_default() {
                for w in c["waves"].as_array().cloned().unwrap_or_default() {
                    rows.push(vec![
                        clean(str_of(&c, "displayName")),
                        clean(str_of(&w, "displayName")),
                        str_of(&w, "phaseNow").to_owned(),
                        day(str_of(&w, "enforcementDate")).to_owned(),
                        w["status"]["enforcement"].as_str().unwrap_or("").to_owned(),
                    ]);
                }
            }
            if rows.is_empty() {
                return emit(
                    "No campaigns yet. Create one: cutover admin campaigns create --file FILE (see --help).\n",
                );
            }
            emit(&render_table(
                &["CAMPAIGN", "WAVE", "NOW", "ENFORCEMENT DATE", "ENFORCEMENT"],
                &rows,
            ))
        }
        CampaignsCommand::Show(a) => {
            let c = campaign(api, &a.campaign).await?;
            let id = str_of(&c, "id").to_owned();
            let pre = get(api, &[CAMPAIGNS, &id, "prerequisites"], &[]).await?;
            let prog = get(api, &[CAMPAIGNS, &id, "progress"], &[]).await?;
            if out != OutputFormat::Table {
                return print_json(
                    out,
                    Some(&json!({"campaign": c, "prerequisites": pre, "progress": prog})),
                );
            }
            emit(&show_text(&c, &pre, &prog))
        }
        CampaignsCommand::Create { file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("reading the campaign from standard input")?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading the campaign file {}", file.display()))?
            };
            let body: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow!("{} is not JSON: {e}", file.display()))?;
            let c = api
                .send(Method::POST, &[CAMPAIGNS], &[], Some(&body))
                .await?
                .ok_or_else(|| anyhow!("the server returned no campaign"))?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&c));
            }
            emit(&format!(
                "Created the campaign '{}' ({}) with {} wave(s). Next: check the prerequisites \
                 (cutover admin campaigns prerequisites {}).\n",
                clean(str_of(&c, "displayName")),
                str_of(&c, "id"),
                c["waves"].as_array().map_or(0, Vec::len),
                str_of(&c, "id"),
            ))
        }
        CampaignsCommand::Delete { campaign: a, yes } => {
            let c = campaign(api, &a.campaign).await?;
            confirm(
                &format!(
                    "Delete the campaign '{}'?",
                    clean(str_of(&c, "displayName"))
                ),
                "deleting a campaign",
                yes,
                std::io::stdin().is_terminal(),
            )?;
            api.send(Method::DELETE, &[CAMPAIGNS, str_of(&c, "id")], &[], None)
                .await?;
            tell(
                out,
                "Deleted. Pending e-mails were cancelled; sent ones stay in the log.\n",
            )
        }
        CampaignsCommand::Prerequisites(a) => {
            let c = campaign(api, &a.campaign).await?;
            let pre = get(api, &[CAMPAIGNS, str_of(&c, "id"), "prerequisites"], &[]).await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&pre));
            }
            emit(&prerequisites_text(&pre))
        }
        CampaignsCommand::Progress(a) => {
            let c = campaign(api, &a.campaign).await?;
            let prog = get(api, &[CAMPAIGNS, str_of(&c, "id"), "progress"], &[]).await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&prog));
            }
            emit(&progress_text(&prog))
        }
        CampaignsCommand::Stragglers { wave, csv } => {
            let c = campaign(api, &wave.campaign).await?;
            let w = wave_id(&c, &wave.wave)?;
            let path = [CAMPAIGNS, str_of(&c, "id"), "waves", &w, "stragglers"];
            if let Some(file) = csv {
                let text = api
                    .fetch_text(&path, &[("format", Some("csv".into()))])
                    .await?;
                if file.as_os_str() == "-" {
                    return emit(&text);
                }
                std::fs::write(&file, &text)
                    .with_context(|| format!("writing {}", file.display()))?;
                let n = text.lines().count().saturating_sub(1);
                return tell(
                    out,
                    &format!("Wrote {n} straggler(s) to {}.\n", file.display()),
                );
            }
            let v = get(api, &path, &[("format", Some("json".into()))]).await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            let rows: Vec<Vec<String>> = v["value"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|u| {
                    vec![
                        clean(str_of(u, "userPrincipalName")),
                        clean(str_of(u, "displayName")),
                        clean(str_of(u, "mail")),
                        clean(str_of(u, "department")),
                    ]
                })
                .collect();
            if rows.is_empty() {
                return emit("Everyone in this wave has a passkey.\n");
            }
            emit(&format!(
                "{}{} member(s) without a passkey.\n",
                render_table(&["USER", "NAME", "MAIL", "DEPARTMENT"], &rows),
                rows.len()
            ))
        }
        CampaignsCommand::Confirm(a) => {
            let c = campaign(api, &a.campaign).await?;
            let w = wave_id(&c, &a.wave)?;
            let v = api
                .send(
                    Method::POST,
                    &[CAMPAIGNS, str_of(&c, "id"), "waves", &w, "confirm"],
                    &[],
                    None,
                )
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, v.as_ref());
            }
            emit(&format!(
                "Confirmed wave '{}'. It can be enforced once it is at its target and the Conditional Access gate agrees.\n",
                clean(&a.wave)
            ))
        }
        CampaignsCommand::Enforce { wave, force, yes } => {
            let c = campaign(api, &wave.campaign).await?;
            let w = wave_id(&c, &wave.wave)?;
            let id = str_of(&c, "id").to_owned();
            let prog = get(
                api,
                &[CAMPAIGNS, &id, "progress"],
                &[("wave", Some(w.clone()))],
            )
            .await?;
            tell(out, &progress_text(&prog))?;
            confirm(
                &format!(
                    "Enforce wave '{}' (its members will need a passkey to sign in)?",
                    clean(&wave.wave)
                ),
                "enforcing a wave",
                yes,
                std::io::stdin().is_terminal(),
            )?;
            let url = super::endpoint_url(
                &api.base,
                &["api", "v1", CAMPAIGNS, &id, "waves", &w, "enforce"],
                &[("force", force.then(|| "true".to_owned()))],
            );
            match api.fetch_keeping_body(Method::POST, url, None).await? {
                Ok(v) => {
                    if out != OutputFormat::Table {
                        return print_json(out, v.as_ref());
                    }
                    emit(&format!(
                        "Wave '{}' is enforced: its Conditional Access policy is on. To undo: cutover admin campaigns rollback {} {}\n",
                        clean(&wave.wave),
                        id,
                        w
                    ))
                }
                Err((e, body)) => {
                    if let Some(b) = &body {
                        let mut why = String::new();
                        for r in b["reasons"].as_array().cloned().unwrap_or_default() {
                            why.push_str(&format!("  - {}\n", clean(str_of(&r, "message"))));
                        }
                        for r in b["gate"]["reasons"].as_array().cloned().unwrap_or_default() {
                            let text = r
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| str_of(&r, "message").to_owned());
                            why.push_str(&format!("  - {}\n", clean(&text)));
                        }
                        if !why.is_empty() {
                            eprint!("Not enforced:\n{why}");
                        }
                    }
                    Err(e.into())
                }
            }
        }
        CampaignsCommand::Rollback(a) => {
            let c = campaign(api, &a.campaign).await?;
            let w = wave_id(&c, &a.wave)?;
            let v = api
                .send(
                    Method::POST,
                    &[CAMPAIGNS, str_of(&c, "id"), "waves", &w, "rollback"],
                    &[],
                    None,
                )
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, v.as_ref());
            }
            emit(&format!(
                "Rolled back wave '{}': its policy is report-only again. No passkey was deleted.\n",
                clean(&a.wave)
            ))
        }
        CampaignsCommand::Comms(a) => {
            let c = campaign(api, &a.campaign).await?;
            let v = get(api, &[CAMPAIGNS, str_of(&c, "id"), "communications"], &[]).await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            emit(&comms_text(&c, &v))
        }
        CampaignsCommand::SendDue(a) => {
            let c = campaign(api, &a.campaign).await?;
            let v = api
                .send(
                    Method::POST,
                    &[CAMPAIGNS, str_of(&c, "id"), "communications", "run"],
                    &[],
                    None,
                )
                .await?
                .unwrap_or(Value::Null);
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            emit(&format!(
                "{} step(s) decided, {} e-mail(s) put in the outbox, {} step(s) missed.\n",
                v["decided"].as_array().map_or(0, Vec::len),
                v["messages"].as_u64().unwrap_or(0),
                v["missed"].as_array().map_or(0, Vec::len),
            ))
        }
        CampaignsCommand::Preview { wave, step } => {
            let c = campaign(api, &wave.campaign).await?;
            let w = wave_id(&c, &wave.wave)?;
            let body = json!({"waveId": w, "step": step});
            let v = api
                .send(
                    Method::POST,
                    &[CAMPAIGNS, str_of(&c, "id"), "communications", "preview"],
                    &[],
                    Some(&body),
                )
                .await?
                .unwrap_or(Value::Null);
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            emit(&format!(
                "Subject: {}\nAudience now: {} recipient(s), {} with their manager in CC, {} skipped\n\n{}\n",
                clean(str_of(&v, "subject")),
                v["audience"]["recipients"].as_u64().unwrap_or(0),
                v["audience"]["withManagerCc"].as_u64().unwrap_or(0),
                v["audience"]["skipped"].as_u64().unwrap_or(0),
                str_of(&v, "text"),
            ))
        }
        CampaignsCommand::TestSend { wave, step, to } => {
            let c = campaign(api, &wave.campaign).await?;
            let w = wave_id(&c, &wave.wave)?;
            let body = json!({"waveId": w, "step": step, "to": to});
            let v = api
                .send(
                    Method::POST,
                    &[CAMPAIGNS, str_of(&c, "id"), "communications", "testSend"],
                    &[],
                    Some(&body),
                )
                .await?
                .unwrap_or(Value::Null);
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            emit(&format!(
                "Queued a test e-mail to {} (Message-ID {}); see it with: cutover admin campaigns outbox {}\n",
                clean(&to),
                clean(str_of(&v, "messageId")),
                str_of(&c, "id"),
            ))
        }
        CampaignsCommand::Outbox {
            campaign: a,
            state,
            top,
            after,
        } => {
            let c = campaign(api, &a.campaign).await?;
            let v = get(
                api,
                &[CAMPAIGNS, str_of(&c, "id"), "outbox"],
                &[
                    ("state", state),
                    ("top", top.map(|t| t.to_string())),
                    ("after", after),
                ],
            )
            .await?;
            if out != OutputFormat::Table {
                return print_json(out, Some(&v));
            }
            let rows: Vec<Vec<String>> = v["value"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    vec![
                        str_of(m, "id").to_owned(),
                        str_of(m, "state").to_owned(),
                        clean(
                            &m["to"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(Value::as_str)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                })
                                .unwrap_or_default(),
                        ),
                        str_of(m, "step").to_owned(),
                        clean(str_of(m, "messageId")),
                        m["attempts"].as_u64().unwrap_or(0).to_string(),
                        clean(str_of(m, "lastError")),
                    ]
                })
                .collect();
            if rows.is_empty() {
                return emit("The outbox has no messages of this campaign (with that state).\n");
            }
            let next = match rows.last() {
                Some(last) if rows.len() == top.unwrap_or(100) as usize => format!(
                    "More may follow: add --after {} for the next page.\n",
                    last[0]
                ),
                _ => String::new(),
            };
            emit(&format!(
                "{}{next}",
                render_table(
                    &[
                        "ID",
                        "STATE",
                        "TO",
                        "STEP",
                        "MESSAGE-ID",
                        "ATTEMPTS",
                        "LAST ERROR"
                    ],
                    &rows,
                )
            ))
        }
        CampaignsCommand::Resend { id } => {
            let v = api
                .send(
                    Method::POST,
                    &["communications", "outbox", &id, "resend"],
                    &[],
                    None,
                )
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, v.as_ref());
            }
            emit("The message is pending again and will be sent at the next delivery pass.\n")
        }
        CampaignsCommand::ResendFailed(a) => {
            let c = campaign(api, &a.campaign).await?;
            let v = api
                .send(
                    Method::POST,
                    &[CAMPAIGNS, str_of(&c, "id"), "outbox", "resendFailed"],
                    &[],
                    None,
                )
                .await?;
            if out != OutputFormat::Table {
                return print_json(out, v.as_ref());
            }
            let n = v.as_ref().and_then(|v| v["resent"].as_u64()).unwrap_or(0);
            emit(&if n == 0 {
                format!(
                    "No failed message in '{}': nothing to send again.\n",
                    clean(str_of(&c, "displayName"))
                )
            } else {
                format!(
                    "{n} failed message(s) of '{}' are pending again and go out at the next delivery pass.\n",
                    clean(str_of(&c, "displayName"))
                )
            })
        }
    }
}

fn prerequisites_text(pre: &Value) -> String {
    let mut s = String::new();
    for w in pre["waves"].as_array().cloned().unwrap_or_default() {
        s.push_str(&format!(
            "Wave '{}': {}\n",
            clean(str_of(&w, "displayName")),
            if w["ready"].as_bool() == Some(true) {
                "ready"
            } else {
                "NOT ready"
            }
        ));
        for c in w["checks"].as_array().cloned().unwrap_or_default() {
            let ok = c["ok"].as_bool() == Some(true);
            s.push_str(&format!(
                "  [{}] {}{}\n",
                if ok { "x" } else { " " },
                clean(str_of(&c, "title")),
                if ok {
                    String::new()
                } else {
                    format!(" — {}", clean(str_of(&c, "detail")))
                }
            ));
        }
    }
    s
}

fn progress_text(prog: &Value) -> String {
    let mut s = String::new();
    for w in prog["waves"].as_array().cloned().unwrap_or_default() {
        let pct = w["enrolledPercent"].as_f64().unwrap_or(0.0);
        let target = w["targetPercent"].as_f64().unwrap_or(95.0);
        s.push_str(&format!(
            "Wave '{}': [{}] {:.1} % enrolled ({} of {}; target {:.0} %), {} with two or more, {} straggler(s)\n",
            clean(str_of(&w, "displayName")),
            bar(pct, target, 30),
            pct,
            w["enrolled"].as_u64().unwrap_or(0),
            w["members"].as_u64().unwrap_or(0),
            target,
            w["twoOrMore"].as_u64().unwrap_or(0),
            w["stragglers"].as_u64().unwrap_or(0),
        ));
        if let Some(fams) = w["byDeviceFamily"].as_object() {
            let mut rows: Vec<(String, u64, u64)> = fams
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v["users"].as_u64().unwrap_or(0),
                        v["passkeys"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            for (fam, users, keys) in rows {
                s.push_str(&format!(
                    "    {fam:<16} {users:>6} user(s) {keys:>6} passkey(s)\n"
                ));
            }
        }
    }
    s
}

fn show_text(c: &Value, pre: &Value, prog: &Value) -> String {
    let mut s = format!(
        "{} ({})\n{}target {} %\n\n",
        clean(str_of(c, "displayName")),
        str_of(c, "id"),
        c["description"]
            .as_str()
            .map(|d| format!("{}\n", clean(d)))
            .unwrap_or_default(),
        c["targetPercent"].as_f64().unwrap_or(95.0),
    );
    let rows: Vec<Vec<String>> = c["waves"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|w| {
            vec![
                clean(str_of(w, "displayName")),
                str_of(w, "phase").to_owned(),
                day(str_of(w, "registrationOpens")).to_owned(),
                day(str_of(w, "enforcementDate")).to_owned(),
                str_of(w, "phaseNow").to_owned(),
                w["status"]["enforcement"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    s.push_str(&render_table(
        &[
            "WAVE",
            "PHASE",
            "REGISTRATION",
            "ENFORCEMENT",
            "NOW",
            "STATE",
        ],
        &rows,
    ));
    s.push('\n');
    s.push_str(&prerequisites_text(pre));
    s.push('\n');
    s.push_str(&progress_text(prog));
    s
}

fn comms_text(c: &Value, v: &Value) -> String {
    let names: std::collections::HashMap<String, String> = c["waves"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|w| {
            (
                str_of(w, "id").to_owned(),
                str_of(w, "displayName").to_owned(),
            )
        })
        .collect();
    let mut s = String::new();
    if v["smtpConfigured"].as_bool() != Some(true) {
        s.push_str("warning: no SMTP relay is configured on this server: e-mails wait in the outbox (cutover serve --smtp-host …)\n\n");
    }
    let rows: Vec<Vec<String>> = v["plan"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let st = &p["state"];
            let state = str_of(st, "state").to_owned();
            let when = day(str_of(st, "dueAt")).to_owned();
            vec![
                clean(
                    names
                        .get(str_of(p, "waveId"))
                        .map(String::as_str)
                        .unwrap_or("?"),
                ),
                str_of(p, "step").to_owned(),
                state,
                when,
            ]
        })
        .collect();
    s.push_str(&render_table(&["WAVE", "STEP", "STATE", "DUE"], &rows));
    let o = &v["outbox"];
    s.push_str(&format!(
        "\nOutbox: {} pending, {} sent, {} failed, {} uncertain\n",
        o["pending"].as_u64().unwrap_or(0)
            + o["claimed"].as_u64().unwrap_or(0)
            + o["transmitting"].as_u64().unwrap_or(0),
        o["sent"].as_u64().unwrap_or(0),
        o["failed"].as_u64().unwrap_or(0),
        o["uncertain"].as_u64().unwrap_or(0),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_to_the_percentage_and_mark_the_target() {
        assert_eq!(bar(0.0, 95.0, 10), ".........|");
        assert_eq!(bar(50.0, 95.0, 10), "#####....|");
        assert_eq!(bar(100.0, 95.0, 10), "##########");
        assert_eq!(bar(f64::NAN, 95.0, 10), ".........|");
        assert_eq!(bar(250.0, 50.0, 4), "####");
        assert_eq!(bar(-5.0, 50.0, 4), "..|.");
        assert_eq!(bar(10.0, 95.0, 0), "");
    }

    #[test]
    fn waves_are_found_by_id_or_name_and_a_miss_lists_them() {
        let c = json!({"displayName": "P", "waves": [
            {"id": "a1", "displayName": "Pilot"}, {"id": "b2", "displayName": "Finance"}]});
        assert_eq!(wave_id(&c, "Finance").unwrap(), "b2");
        assert_eq!(wave_id(&c, "a1").unwrap(), "a1");
        let e = wave_id(&c, "finance").unwrap_err().to_string();
        assert!(e.contains("Pilot, Finance"), "{e}");
    }
}
