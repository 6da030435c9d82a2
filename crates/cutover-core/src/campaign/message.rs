//! One e-mail from a step's template: the variables for one recipient, and the subject, HTML
//! and plain text they render to.

use std::collections::BTreeMap;

use serde::Serialize;

use super::spec::{MAX_SUBJECT_CHARS, Template};
use super::when::{DAY_MS, long_date};
use crate::Timestamp;
use crate::markdown;

/// Longest rendered subject, in characters (the template's subject plus substituted values;
/// longer is cut with `…`).
pub const MAX_RENDERED_SUBJECT_CHARS: usize = MAX_SUBJECT_CHARS + 100;

/// What the variables of one message are made from.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// The recipient's display name from the directory.
    pub display_name: &'a str,
    pub campaign_name: &'a str,
    pub wave_name: &'a str,
    pub enforcement_date: Timestamp,
    /// When the message is rendered (for `daysLeft`).
    pub now: Timestamp,
    /// The organisation's offset from UTC, in minutes, for `enforcementDate`.
    pub utc_offset_minutes: i32,
    /// The registration page's absolute URL.
    pub enrol_link: &'a str,
    /// How to reach the helpdesk (an address, a phone number, a URL).
    pub helpdesk: &'a str,
}

/// The first name in a display name: the first word, or the first word after the comma of
/// `Lastname, Firstname`; empty when the display name is.
pub fn first_name(display_name: &str) -> String {
    let s = match display_name.split_once(',') {
        Some((_, after)) if !after.trim().is_empty() => after,
        _ => display_name,
    };
    s.split_whitespace().next().unwrap_or("").to_owned()
}

/// Whole days from `now` to `enforcement_date`, rounded up, and 0 once it has passed.
pub fn days_left(enforcement_date: Timestamp, now: Timestamp) -> i64 {
    let ms = enforcement_date.millis().saturating_sub(now.millis());
    if ms <= 0 {
        0
    } else {
        ms.div_euclid(DAY_MS) + i64::from(ms.rem_euclid(DAY_MS) != 0)
    }
}

/// Every [`markdown::KNOWN_VARIABLES`] for one recipient.
pub fn template_variables(ctx: &MessageContext<'_>) -> BTreeMap<String, String> {
    let pairs = [
        ("displayName", ctx.display_name.trim().to_owned()),
        ("firstName", first_name(ctx.display_name)),
        ("campaignName", ctx.campaign_name.to_owned()),
        ("waveName", ctx.wave_name.to_owned()),
        (
            "enforcementDate",
            long_date(ctx.enforcement_date, ctx.utc_offset_minutes),
        ),
        (
            "daysLeft",
            days_left(ctx.enforcement_date, ctx.now).to_string(),
        ),
        ("enrolLink", ctx.enrol_link.to_owned()),
        ("helpdesk", ctx.helpdesk.to_owned()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedMessage {
    /// One line, no control characters, at most [`MAX_RENDERED_SUBJECT_CHARS`].
    pub subject: String,
    /// An HTML fragment (see [`markdown::render`]).
    pub html: String,
    pub text: String,
}

/// Render a template with `vars`: the subject substituted verbatim then made one line (a
/// value cannot add a header), the body substituted with escaping then rendered (a value
/// cannot add markup).
pub fn render_message(template: &Template, vars: &BTreeMap<String, String>) -> RenderedMessage {
    let subject = markdown::substitute(&template.subject, vars);
    let subject: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let subject = if subject.chars().count() > MAX_RENDERED_SUBJECT_CHARS {
        let mut cut: String = subject
            .chars()
            .take(MAX_RENDERED_SUBJECT_CHARS - 1)
            .collect();
        cut.push('…');
        cut
    } else {
        subject
    };
    let rendered = markdown::render(&markdown::substitute_escaped(&template.body_markdown, vars));
    RenderedMessage {
        subject,
        html: rendered.html,
        text: rendered.text,
    }
}
