//! Passkey rollout campaigns (SPEC §9): the HTTP and background shell around
//! `cutover_core::campaign` — campaign API, progress, communications outbox, enrolment page.

/// Outgoing e-mail and enrolment guidance settings of this node.
#[derive(Debug, Clone, Default)]
pub struct CampaignsConfig {}
