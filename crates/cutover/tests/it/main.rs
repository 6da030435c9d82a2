//! Cutover's one integration-test binary: real processes, a real PostgreSQL, a real OpenID
//! Connect relying-party library and a real headless Chromium. Components come from
//! `scripts/test.sh`; a test whose component is missing fails and says how to get it.

mod admin_api;
mod admin_ui;
mod agents_admin;
mod break_glass;
mod browser;
mod ca_cli;
mod ca_e2e;
mod campaigns_browser;
mod campaigns_e2e;
mod conformance;
mod federation;
mod federation_cli;
mod harness;
mod ldap_connector;
mod lockout_e2e;
mod methods_cli;
mod metrics_e2e;
mod multinode;
mod oidc_rp;
mod passkey_e2e;
mod pta_cli;
mod pta_e2e;
mod pta_ldap;
mod pta_resilience;
mod resilience;
mod sync;
mod tap_e2e;
mod time_steps;
mod tls;
mod totp_e2e;
mod upstream;
