//! The ready-made communication cadences and their default templates (English; every
//! template is editable per campaign).

use super::spec::{Audience, Preset, StepSpec, Template};

fn step(
    key: &str,
    offset_days: i32,
    audience: Audience,
    cc_manager: bool,
    subject: &str,
    body: &str,
) -> StepSpec {
    StepSpec {
        key: key.to_owned(),
        offset_days,
        audience,
        cc_manager,
        template: Template {
            subject: subject.to_owned(),
            body_markdown: body.to_owned(),
        },
    }
}

const HOW_TO: &str = "\
Setting one up takes about two minutes:

1. Open [the passkey registration page]({{enrolLink}}) on the phone or computer you use most.
2. Follow the steps shown for your device.
3. Add a second passkey on another device (or a security key), so that losing one device never locks you out.";

const SIGNATURE: &str = "\
Questions or trouble? Contact {{helpdesk}}.

*{{campaignName}} — {{waveName}}*";

fn announcement(lead_in: &str) -> String {
    format!(
        "\
Hello {{{{firstName}}}},

{lead_in}

A passkey signs you in with your fingerprint, your face or your device PIN instead of a password. It is faster, and it cannot be phished or leaked.

{HOW_TO}

{SIGNATURE}"
    )
}

fn nudge(lead_in: &str) -> String {
    format!(
        "\
Hello {{{{firstName}}}},

{lead_in}

[Set up your passkey now]({{{{enrolLink}}}}): it takes about two minutes. Add a second one on another device while you are at it.

{SIGNATURE}"
    )
}

fn day_of() -> String {
    format!(
        "\
Hello {{{{firstName}}}},

From today, **{{{{enforcementDate}}}}**, signing in needs a passkey.

- **Already set one up?** Nothing to do: choose your passkey the next time you sign in.
- **Not yet?** [Set up your passkey now]({{{{enrolLink}}}}); it takes about two minutes.

{SIGNATURE}"
    )
}

const REMINDER: &str = "\
Hello {{firstName}},

Since {{enforcementDate}}, signing in needs a passkey, and you do not have one yet. Please [set up your passkey]({{enrolLink}}) today: it takes about two minutes.

If something is in the way (no suitable phone, a shared computer, an error message), contact {{helpdesk}} and we will sort it out with you. Your manager may receive a copy of this reminder, so that they can help too.

*{{campaignName}} — {{waveName}}*";

/// The steps of a preset, with default templates: `standard` is the T-7 announcement (all),
/// the T-0 day-of message (all) and a T+7 reminder to those not yet enrolled with their
/// manager in CC; `extended` announces at T-60, T-45 and T-30 (all), nudges those not yet
/// enrolled at T-15, T-7 and T-1, then sends the same T-0 and T+7 messages.
pub fn preset_steps(p: Preset) -> Vec<StepSpec> {
    use Audience::{All, NotEnrolled};
    let reminder_subject = "Reminder: please set up your passkey";
    let day_of_subject = "Starting today, sign in with your passkey";
    match p {
        Preset::Standard => vec![
            step(
                "announcement",
                -7,
                All,
                false,
                "Passkeys arrive on {{enforcementDate}}: set yours up now",
                &announcement(
                    "We are moving to **passkeys** for signing in. From **{{enforcementDate}}**, you will need one to sign in.",
                ),
            ),
            step("dayOf", 0, All, false, day_of_subject, &day_of()),
            step("reminder", 7, NotEnrolled, true, reminder_subject, REMINDER),
        ],
        Preset::Extended => vec![
            step(
                "announcement",
                -60,
                All,
                false,
                "Coming on {{enforcementDate}}: passkeys replace passwords for signing in",
                &announcement(
                    "We are moving to **passkeys** for signing in. From **{{enforcementDate}}**, in about two months, you will need one to sign in. You can set yours up today.",
                ),
            ),
            step(
                "notice45",
                -45,
                All,
                false,
                "{{daysLeft}} days to go: set up your passkey",
                &announcement(
                    "A reminder: from **{{enforcementDate}}**, you will need a passkey to sign in. If you already have one, thank you: you are all set.",
                ),
            ),
            step(
                "notice30",
                -30,
                All,
                false,
                "One month to go: passkeys from {{enforcementDate}}",
                &announcement(
                    "From **{{enforcementDate}}**, a month from now, you will need a passkey to sign in. If you already have one, thank you: you are all set.",
                ),
            ),
            step(
                "nudge15",
                -15,
                NotEnrolled,
                false,
                "Two weeks left to set up your passkey",
                &nudge(
                    "From **{{enforcementDate}}** you will need a passkey to sign in, and you do not have one yet.",
                ),
            ),
            step(
                "nudge7",
                -7,
                NotEnrolled,
                false,
                "One week left to set up your passkey",
                &nudge(
                    "Passkeys become required on **{{enforcementDate}}**, a week from now, and you do not have one yet.",
                ),
            ),
            step(
                "lastCall",
                -1,
                NotEnrolled,
                false,
                "Tomorrow you will need a passkey to sign in",
                &nudge(
                    "From tomorrow, **{{enforcementDate}}**, signing in needs a passkey, and you do not have one yet. Please set it up today.",
                ),
            ),
            step("dayOf", 0, All, false, day_of_subject, &day_of()),
            step("reminder", 7, NotEnrolled, true, reminder_subject, REMINDER),
        ],
    }
}
