//! Who one step of one wave writes to: the wave's members filtered by the step's audience,
//! with their manager in CC when the step asks for it.

use std::collections::BTreeSet;

use serde::Serialize;
use uuid::Uuid;

use super::spec::{Audience, StepSpec};

/// Longest mail address accepted, in bytes (RFC 5321's path limit).
pub const MAX_MAIL_BYTES: usize = 254;
/// Longest local part (before `@`) of a mail address, in bytes.
pub const MAX_MAIL_LOCAL_BYTES: usize = 64;

/// What the audience decision knows about one member of the wave's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFacts {
    pub user_id: Uuid,
    pub display_name: String,
    pub mail: Option<String>,
    /// Whether the member has at least one passkey.
    pub enrolled: bool,
    /// The mail address of the member's manager (from the synced `manager`).
    pub manager_mail: Option<String>,
    pub account_enabled: bool,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub user_id: Uuid,
    pub to: String,
    pub cc: Vec<String>,
}

/// Why a member gets no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SkipReason {
    /// The account is disabled.
    Disabled,
    /// The step is for those not yet enrolled, and the member is.
    Enrolled,
    /// The member has no mail address.
    NoMail,
    /// The member's mail address is not one a message can go to.
    InvalidMail,
}

impl SkipReason {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Enrolled => "enrolled",
            Self::NoMail => "noMail",
            Self::InvalidMail => "invalidMail",
        }
    }
}

/// Who a step writes to, and who it leaves out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AudienceResult {
    pub recipients: Vec<Recipient>,
    /// Members who get no message, and why (serialised as `[userId, reason]`).
    pub skipped: Vec<(Uuid, SkipReason)>,
}

/// Whether `s` (already trimmed) can be put in a `To:` or `Cc:` header as it is: one `@`
/// between a local part of 1 to [`MAX_MAIL_LOCAL_BYTES`] and a domain of dot-separated
/// labels, at most [`MAX_MAIL_BYTES`] in all, without spaces, control characters, quotes,
/// brackets, commas or semicolons (nothing that could add a header or a second recipient).
pub fn plausible_mail(s: &str) -> bool {
    if s.is_empty() || s.len() > MAX_MAIL_BYTES {
        return false;
    }
    if s.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | '(' | ')' | ',' | ';' | ':' | '"' | '[' | ']' | '\\'
            )
    }) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= MAX_MAIL_LOCAL_BYTES
        && !domain.is_empty()
        && !domain.contains('@')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

/// The recipients of `step` among `members`, in the members' order. A member is skipped
/// when disabled, then when enrolled (for a `notEnrolled` step), then without a usable mail
/// address. The manager is copied only when the step says so, the manager's address is
/// usable, and it is not the member's own (ignoring case). A member listed twice counts once.
pub fn audience(step: &StepSpec, members: &[MemberFacts]) -> AudienceResult {
    let mut seen = BTreeSet::new();
    let mut out = AudienceResult::default();
    for m in members {
        if !seen.insert(m.user_id) {
            continue;
        }
        let skip = |reason| (m.user_id, reason);
        if !m.account_enabled {
            out.skipped.push(skip(SkipReason::Disabled));
            continue;
        }
        if step.audience == Audience::NotEnrolled && m.enrolled {
            out.skipped.push(skip(SkipReason::Enrolled));
            continue;
        }
        let to = match m.mail.as_deref().map(str::trim) {
            None | Some("") => {
                out.skipped.push(skip(SkipReason::NoMail));
                continue;
            }
            Some(mail) if !plausible_mail(mail) => {
                out.skipped.push(skip(SkipReason::InvalidMail));
                continue;
            }
            Some(mail) => mail.to_owned(),
        };
        let cc = match m.manager_mail.as_deref().map(str::trim) {
            Some(manager)
                if step.cc_manager
                    && plausible_mail(manager)
                    && !manager.eq_ignore_ascii_case(&to) =>
            {
                vec![manager.to_owned()]
            }
            _ => Vec::new(),
        };
        out.recipients.push(Recipient {
            user_id: m.user_id,
            to,
            cc,
        });
    }
    out
}
