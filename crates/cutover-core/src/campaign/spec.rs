//! A campaign as the API reads and writes it ([`CampaignSpec`]), and the checked form the
//! rest of the module works on ([`CheckedCampaign`]): wave ids drawn, targets and
//! communications resolved. A refusal names the field (`waves[1].groupId: …`), and [`check`]
//! reports every refusal at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::presets::preset_steps;
use super::when::{self, in_rfc3339_range};
use crate::Timestamp;
use crate::markdown;

/// Most waves one campaign may have.
pub const MAX_WAVES: usize = 50;
/// Most communication steps one campaign may have.
pub const MAX_STEPS: usize = 20;
/// Largest offset of a step from a wave's enforcement date, in days either way.
pub const MAX_OFFSET_DAYS: i32 = 365;
/// Most campaigns a tenant may hold (the store enforces it).
pub const MAX_CAMPAIGNS: u32 = 100;
/// Enrolment a wave needs before it may be enforced, in percent of its members, when neither
/// the wave nor the campaign sets one.
pub const DEFAULT_TARGET_PERCENT: f64 = 95.0;
/// Longest template body, in bytes of Markdown.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Longest campaign or wave name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest campaign description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2048;
/// Longest template subject, in characters (before substitution).
pub const MAX_SUBJECT_CHARS: usize = 200;
/// The range of a campaign's clock, in minutes ahead of UTC: UTC-12:00 to UTC+14:00 cover
/// every civil time zone; offsets are whole quarters of an hour.
pub const CAMPAIGN_UTC_OFFSET_MINUTES: std::ops::RangeInclusive<i32> = -12 * 60..=14 * 60;
/// Longest step key, in characters (`[A-Za-z0-9_-]`).
pub const MAX_STEP_KEY_CHARS: usize = 40;
/// A step is sent when `now >= due`; when it is found more than this late it is reported
/// missed, not sent (a campaign created late, or a server that was down for days, does not
/// send stale announcements).
pub const MAX_LATENESS_SECS: i64 = 2 * 86_400;

/// Where a wave sits in the rollout (SPEC §9): it only labels the wave and orders reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Pilot,
    EarlyAdopters,
    Department,
    Organisation,
}

impl Phase {
    /// Every phase, in rollout order.
    pub const ALL: [Phase; 4] = [
        Self::Pilot,
        Self::EarlyAdopters,
        Self::Department,
        Self::Organisation,
    ];

    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pilot => "pilot",
            Self::EarlyAdopters => "earlyAdopters",
            Self::Department => "department",
            Self::Organisation => "organisation",
        }
    }

    /// The phase named `s` in the API.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pilot => "Pilot",
            Self::EarlyAdopters => "Early adopters",
            Self::Department => "Department",
            Self::Organisation => "Whole organisation",
        }
    }
}

/// Who of a wave's members a step writes to.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum Audience {
    /// Every enabled member with a mail address.
    #[default]
    All,
    /// Only members without a passkey yet.
    NotEnrolled,
}

impl Audience {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::NotEnrolled => "notEnrolled",
        }
    }
}

/// A ready-made set of communication steps (see [`preset_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Preset {
    /// T-7 announcement, T-0 day-of, T+7 reminder to stragglers with their manager in CC.
    Standard,
    /// T-60, -45, -30, -15, -7, -1, T-0, and the T+7 straggler reminder.
    Extended,
}

impl Preset {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Extended => "extended",
        }
    }
}

/// One wave of a campaign: a group, when it may register, and when passkeys become required.
/// Times are RFC 3339 strings in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveSpec {
    /// Absent when the wave is new: [`check`] draws one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub display_name: String,
    pub phase: Phase,
    /// The group whose members the wave covers.
    pub group_id: Uuid,
    /// When registration opens (the wave is "scheduled" before).
    #[serde(with = "when::rfc3339")]
    pub registration_opens: Timestamp,
    /// When passkeys become required; the communications' offsets count from here.
    #[serde(with = "when::rfc3339")]
    pub enforcement_date: Timestamp,
    /// The Conditional Access policy that enforces passkeys for the group (kept report-only
    /// until the wave is enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_policy_id: Option<Uuid>,
    /// The wave's own target; absent: the campaign's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_percent: Option<f64>,
}

/// An e-mail template: a one-line subject and a Markdown body (see [`crate::markdown`]), both
/// with `{{variables}}` from [`markdown::KNOWN_VARIABLES`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    pub subject: String,
    pub body_markdown: String,
}

/// One e-mail of the cadence, sent per wave at `enforcementDate + offsetDays`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepSpec {
    /// `[A-Za-z0-9_-]`, 1 to [`MAX_STEP_KEY_CHARS`], unique in the campaign (ignoring case):
    /// part of the idempotency key of every send.
    pub key: String,
    /// Days from the wave's enforcement date: negative before, positive after.
    pub offset_days: i32,
    #[serde(default)]
    pub audience: Audience,
    /// Copy each recipient's manager (when the directory knows a manager with a mail address).
    /// Only with [`Audience::NotEnrolled`]: a manager hears about stragglers, not about people
    /// who did what was asked.
    #[serde(default)]
    pub cc_manager: bool,
    pub template: Template,
}

/// A campaign as the API reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignSpec {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub waves: Vec<WaveSpec>,
    /// The steps; absent: those of `preset` (or of the standard preset). An empty list sends
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communications: Option<Vec<StepSpec>>,
    /// Only when `communications` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Absent: [`DEFAULT_TARGET_PERCENT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_percent: Option<f64>,
    /// The organisation's clock, in minutes ahead of UTC (`60` for Central Europe in winter,
    /// `-300` for New York): the dates in e-mails are written on it, and the admin form reads
    /// the dates it is given as midnight on it. Absent: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i32>,
}

/// A checked wave: id drawn, target resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedWave {
    pub id: Uuid,
    pub display_name: String,
    pub phase: Phase,
    pub group_id: Uuid,
    #[serde(with = "when::rfc3339")]
    pub registration_opens: Timestamp,
    #[serde(with = "when::rfc3339")]
    pub enforcement_date: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_policy_id: Option<Uuid>,
    /// The target that applies: the wave's own, or the campaign's.
    pub target_percent: f64,
    /// Whether `target_percent` is the campaign's (the wave sets none).
    pub inherits_target: bool,
}

impl CheckedWave {
    /// When `step` is due for this wave: the enforcement date plus its offset in days.
    pub fn due_at(&self, step: &StepSpec) -> Timestamp {
        self.enforcement_date
            .plus_secs(i64::from(step.offset_days) * 86_400)
    }
}

/// A campaign that passed [`check`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedCampaign {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub waves: Vec<CheckedWave>,
    /// The communication steps, explicit or from the preset, in the order given.
    pub steps: Vec<StepSpec>,
    /// The campaign's target (waves without their own use it).
    pub target_percent: f64,
    /// The organisation's clock (see [`CampaignSpec::utc_offset_minutes`]); 0: UTC.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl CheckedCampaign {
    /// The wave with this id.
    pub fn wave(&self, id: Uuid) -> Option<&CheckedWave> {
        self.waves.iter().find(|w| w.id == id)
    }

    /// The step with this key.
    pub fn step(&self, key: &str) -> Option<&StepSpec> {
        self.steps.iter().find(|s| s.key == key)
    }

    /// The spec that checks back into this campaign (ids and steps explicit): what the API
    /// returns for editing and what a stored campaign is re-checked from.
    pub fn to_spec(&self) -> CampaignSpec {
        CampaignSpec {
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            waves: self
                .waves
                .iter()
                .map(|w| WaveSpec {
                    id: Some(w.id),
                    display_name: w.display_name.clone(),
                    phase: w.phase,
                    group_id: w.group_id,
                    registration_opens: w.registration_opens,
                    enforcement_date: w.enforcement_date,
                    ca_policy_id: w.ca_policy_id,
                    target_percent: (!w.inherits_target).then_some(w.target_percent),
                })
                .collect(),
            communications: Some(self.steps.clone()),
            preset: None,
            target_percent: Some(self.target_percent),
            utc_offset_minutes: (self.utc_offset_minutes != 0).then_some(self.utc_offset_minutes),
        }
    }
}

/// A refused campaign field: where (a JSON path in the API's names) and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

fn check_name(errs: &mut Errors, field: &str, name: &str) -> String {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > MAX_NAME_CHARS {
        errs.add(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} characters, got {len}"),
        );
    } else if trimmed.chars().any(char::is_control) {
        errs.add(field, "must be one line without control characters");
    }
    trimmed.to_owned()
}

/// A target percentage in (0, 100]; on error, the default (the error already refuses).
fn check_target(errs: &mut Errors, field: &str, t: f64) -> f64 {
    if t.is_finite() && t > 0.0 && t <= 100.0 {
        t
    } else {
        errs.add(
            field,
            format!("must be a percentage above 0 and at most 100, got {t}"),
        );
        DEFAULT_TARGET_PERCENT
    }
}

fn check_uuid_not_nil(errs: &mut Errors, field: &str, id: Uuid) {
    if id.is_nil() {
        errs.add(field, "must not be the nil id");
    }
}

fn check_time(errs: &mut Errors, field: &str, t: Timestamp) {
    if !in_rfc3339_range(t) {
        errs.add(field, "must be between the years 0001 and 9999");
    }
}

/// Values that stand in for the variables when a template's links are checked.
fn sample_variables() -> BTreeMap<String, String> {
    markdown::KNOWN_VARIABLES
        .iter()
        .map(|v| {
            let value = if *v == "enrolLink" {
                "https://id.example.invalid/enrol".to_owned()
            } else {
                format!("sample {v}")
            };
            ((*v).to_owned(), value)
        })
        .collect()
}

fn check_template(errs: &mut Errors, prefix: &str, t: &Template) {
    let field = format!("{prefix}.subject");
    let subject = t.subject.trim();
    let len = subject.chars().count();
    if len == 0 || len > MAX_SUBJECT_CHARS {
        errs.add(
            &field,
            format!("must be 1 to {MAX_SUBJECT_CHARS} characters, got {len}"),
        );
    } else if subject.chars().any(char::is_control) {
        errs.add(&field, "must be a single line");
    } else if let Err(e) = markdown::variables_in(subject) {
        errs.add(&field, e);
    }
    let field = format!("{prefix}.bodyMarkdown");
    let body = &t.body_markdown;
    if body.trim().is_empty() {
        errs.add(&field, "must not be empty");
    } else if body.len() > MAX_TEMPLATE_BYTES {
        errs.add(
            &field,
            format!("at most {MAX_TEMPLATE_BYTES} bytes, got {}", body.len()),
        );
    } else if let Err(e) = markdown::variables_in(body) {
        errs.add(&field, e);
    } else {
        let refused =
            markdown::refused_links(&markdown::substitute_escaped(body, &sample_variables()));
        if let Some(first) = refused.first() {
            errs.add(
                &field,
                format!(
                    "link target '{}' is not http, https or mailto (and would render as plain text){}",
                    first.chars().take(80).collect::<String>(),
                    if refused.len() > 1 {
                        format!("; {} more like it", refused.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            );
        }
    }
}

fn check_step_key(errs: &mut Errors, field: &str, key: &str) {
    let len = key.chars().count();
    if len == 0 || len > MAX_STEP_KEY_CHARS {
        errs.add(
            field,
            format!("must be 1 to {MAX_STEP_KEY_CHARS} characters, got {len}"),
        );
    } else if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        errs.add(
            field,
            format!("may hold only letters A-Z, digits, '_' and '-'; found {c:?}"),
        );
    }
}

fn check_steps(errs: &mut Errors, steps: &[StepSpec]) {
    if steps.len() > MAX_STEPS {
        errs.add(
            "communications",
            format!("at most {MAX_STEPS} steps, got {}", steps.len()),
        );
        return;
    }
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        let prefix = format!("communications[{i}]");
        let key_field = format!("{prefix}.key");
        check_step_key(errs, &key_field, &s.key);
        if let Some(first) = keys.insert(s.key.to_ascii_lowercase(), i) {
            errs.add(
                &key_field,
                format!(
                    "'{}' is already the key of communications[{first}] (keys are unique, ignoring case)",
                    s.key
                ),
            );
        }
        if s.offset_days.unsigned_abs() > MAX_OFFSET_DAYS.unsigned_abs() {
            errs.add(
                format!("{prefix}.offsetDays"),
                format!(
                    "must be within {MAX_OFFSET_DAYS} days of the enforcement date either way, got {}",
                    s.offset_days
                ),
            );
        }
        if s.cc_manager && s.audience != Audience::NotEnrolled {
            errs.add(
                format!("{prefix}.ccManager"),
                "copies managers only about their people who have not enrolled yet: set audience to notEnrolled, or ccManager to false",
            );
        }
        check_template(errs, &format!("{prefix}.template"), &s.template);
    }
}

/// Check a campaign: every refusal, each naming its field. Waves without an id get one from
/// `new_id`. Rules: names 1..=[`MAX_NAME_CHARS`] characters on one line; 1..=[`MAX_WAVES`]
/// waves with names unique ignoring case, ids, groups and CA policies unique (a policy shared
/// by two waves would be enforced and rolled back for both), and `registrationOpens` before
/// `enforcementDate`; targets in (0, 100]; `communications` or `preset`, not both; at most
/// [`MAX_STEPS`] steps with valid unique keys, offsets within ±[`MAX_OFFSET_DAYS`], and
/// templates whose subject is one line of at most [`MAX_SUBJECT_CHARS`], whose body is at most
/// [`MAX_TEMPLATE_BYTES`], that use known variables only and link only to http, https or
/// mailto targets.
pub fn check(
    spec: &CampaignSpec,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Result<CheckedCampaign, Vec<FieldError>> {
    let mut errs = Errors::default();
    let display_name = check_name(&mut errs, "displayName", &spec.display_name);
    let description = spec.description.as_deref().map(str::trim).and_then(|d| {
        let len = d.chars().count();
        if len > MAX_DESCRIPTION_CHARS {
            errs.add(
                "description",
                format!("at most {MAX_DESCRIPTION_CHARS} characters, got {len}"),
            );
        }
        (!d.is_empty()).then(|| d.to_owned())
    });
    let target_percent = match spec.target_percent {
        Some(t) => check_target(&mut errs, "targetPercent", t),
        None => DEFAULT_TARGET_PERCENT,
    };

    let utc_offset_minutes = match spec.utc_offset_minutes {
        None => 0,
        Some(m) if !CAMPAIGN_UTC_OFFSET_MINUTES.contains(&m) || m % 15 != 0 => {
            errs.add(
                "utcOffsetMinutes",
                format!(
                    "must be whole quarters of an hour from {} (UTC-12:00) to {} (UTC+14:00), got {m}",
                    CAMPAIGN_UTC_OFFSET_MINUTES.start(),
                    CAMPAIGN_UTC_OFFSET_MINUTES.end()
                ),
            );
            0
        }
        Some(m) => m,
    };

    let mut waves = Vec::new();
    if spec.waves.is_empty() {
        errs.add("waves", "a campaign needs at least one wave");
    } else if spec.waves.len() > MAX_WAVES {
        errs.add(
            "waves",
            format!("at most {MAX_WAVES} waves, got {}", spec.waves.len()),
        );
    } else {
        waves = check_waves(&mut errs, &spec.waves, target_percent, new_id);
    }

    let steps = match (&spec.communications, spec.preset) {
        (Some(_), Some(_)) => {
            errs.add(
                "preset",
                "give either communications or a preset, not both (drop communications to use the preset's)",
            );
            Vec::new()
        }
        (Some(list), None) => {
            check_steps(&mut errs, list);
            list.iter()
                .map(|s| StepSpec {
                    template: Template {
                        subject: s.template.subject.trim().to_owned(),
                        body_markdown: s.template.body_markdown.clone(),
                    },
                    ..s.clone()
                })
                .collect()
        }
        (None, preset) => preset_steps(preset.unwrap_or(Preset::Standard)),
    };

    if errs.0.is_empty() {
        Ok(CheckedCampaign {
            display_name,
            description,
            waves,
            steps,
            target_percent,
            utc_offset_minutes,
        })
    } else {
        Err(errs.0)
    }
}

fn check_waves(
    errs: &mut Errors,
    specs: &[WaveSpec],
    campaign_target: f64,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Vec<CheckedWave> {
    // Explicit ids first, so that a drawn id can be told apart from them.
    let mut ids: BTreeMap<Uuid, usize> = BTreeMap::new();
    for (i, w) in specs.iter().enumerate() {
        if let Some(id) = w.id {
            let field = format!("waves[{i}].id");
            check_uuid_not_nil(errs, &field, id);
            if let Some(first) = ids.insert(id, i) {
                errs.add(field, format!("{id} is already the id of waves[{first}]"));
            }
        }
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut policies: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (i, w) in specs.iter().enumerate() {
        let p = |f: &str| format!("waves[{i}].{f}");
        let id = match w.id {
            Some(id) => id,
            None => {
                let id = new_id();
                if id.is_nil() || ids.insert(id, i).is_some() {
                    errs.add(
                        p("id"),
                        format!("the drawn id {id} is not fresh; submit again"),
                    );
                }
                id
            }
        };
        let display_name = check_name(errs, &p("displayName"), &w.display_name);
        if !display_name.is_empty()
            && let Some(first) = names.insert(display_name.to_lowercase(), i)
        {
            errs.add(
                p("displayName"),
                format!(
                    "'{display_name}' is already the name of waves[{first}] (names are unique, ignoring case)"
                ),
            );
        }
        check_uuid_not_nil(errs, &p("groupId"), w.group_id);
        if let Some(first) = groups.insert(w.group_id, i) {
            errs.add(
                p("groupId"),
                format!(
                    "group {} is already the group of waves[{first}]; a group belongs to one wave",
                    w.group_id
                ),
            );
        }
        check_time(errs, &p("registrationOpens"), w.registration_opens);
        check_time(errs, &p("enforcementDate"), w.enforcement_date);
        if w.registration_opens >= w.enforcement_date {
            errs.add(
                p("enforcementDate"),
                format!(
                    "must be after registrationOpens ({}), got {}",
                    when::format_rfc3339(w.registration_opens),
                    when::format_rfc3339(w.enforcement_date)
                ),
            );
        }
        if let Some(policy) = w.ca_policy_id {
            check_uuid_not_nil(errs, &p("caPolicyId"), policy);
            if let Some(first) = policies.insert(policy, i) {
                errs.add(
                    p("caPolicyId"),
                    format!("policy {policy} already enforces waves[{first}]; each wave needs its own policy (enforcing or rolling back one would switch the other)"),
                );
            }
        }
        let target_percent = match w.target_percent {
            Some(t) => check_target(errs, &p("targetPercent"), t),
            None => campaign_target,
        };
        out.push(CheckedWave {
            id,
            display_name,
            phase: w.phase,
            group_id: w.group_id,
            registration_opens: w.registration_opens,
            enforcement_date: w.enforcement_date,
            ca_policy_id: w.ca_policy_id,
            target_percent,
            inherits_target: w.target_percent.is_none(),
        });
    }
    out
}
