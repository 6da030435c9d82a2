//! Passkey rollout campaigns (SPEC §9): waves of groups with a registration window and an
//! enforcement date, e-mail communications on a cadence relative to each wave's enforcement,
//! progress from the passkeys people registered, a prerequisites checklist, and the
//! enforcement gate and rollback per wave — all as pure functions with time passed in.
//!
//! - [`check`] turns a [`CampaignSpec`] (the API's JSON) into a [`CheckedCampaign`], naming
//!   every refused field; [`preset_steps`] gives the default cadences and templates.
//! - [`wave_phase_now`], [`may_enforce`], [`confirm`], [`enforce`], [`roll_back`]: a wave's
//!   lifecycle; the [`WaveStatus`] they return is what the campaign document stores per wave.
//! - [`schedule`] says which e-mails are due, each under a stable [`decision_key`] that makes
//!   sending idempotent; [`audience`] says who gets one; [`render_message`] renders it.
//! - [`progress`] and [`prerequisites`] feed the campaign page.
//!
//! Times are RFC 3339 strings in JSON ([`when`]). Rolled-back waves send nothing further on
//! their own; enforced waves still send their later steps (the T+7 reminder to stragglers).

mod audience;
mod lifecycle;
mod message;
mod prereq;
mod presets;
mod progress;
mod schedule;
mod spec;
#[cfg(test)]
mod tests;
pub mod when;

pub use audience::{
    AudienceResult, MAX_MAIL_BYTES, MAX_MAIL_LOCAL_BYTES, MemberFacts, Recipient, SkipReason,
    audience, plausible_mail,
};
pub use lifecycle::{
    Action, EnforceFacts, EnforceVerdict, Enforcement, MAX_DETAIL_CHARS, MAX_HISTORY, Refusal,
    Transition, WavePhase, WaveStatus, confirm, enforce, may_enforce, may_roll_back,
    members_needed, roll_back, wave_phase_now,
};
pub use message::{
    MAX_RENDERED_SUBJECT_CHARS, MessageContext, RenderedMessage, days_left, first_name,
    render_message, template_variables,
};
pub use prereq::{CaFacts, Check, PrereqFacts, prerequisites};
pub use presets::preset_steps;
pub use progress::{DayPoint, FamilyCount, MAX_SERIES_DAYS, PasskeyFact, WaveProgress, progress};
pub use schedule::{DueStep, StepState, decision_key, due_steps, schedule};
pub use spec::{
    Audience, CAMPAIGN_UTC_OFFSET_MINUTES, CampaignSpec, CheckedCampaign, CheckedWave,
    DEFAULT_TARGET_PERCENT, FieldError, MAX_CAMPAIGNS, MAX_DESCRIPTION_CHARS, MAX_LATENESS_SECS,
    MAX_NAME_CHARS, MAX_OFFSET_DAYS, MAX_STEP_KEY_CHARS, MAX_STEPS, MAX_SUBJECT_CHARS,
    MAX_TEMPLATE_BYTES, MAX_WAVES, Phase, Preset, StepSpec, Template, WaveSpec, check,
};
