//! Cutover's decision core: the directory model and every sign-in decision as pure functions.
//!
//! Nothing in this crate performs IO, reads a clock, draws randomness or awaits: time
//! ([`Timestamp`]), ids and random values are arguments. The HTTP shell loads a snapshot from
//! storage, asks a function here, and commits the result; the same functions answer tests
//! (and, later, the what-if tool).
#![forbid(unsafe_code)]

pub mod authorize;
pub mod campaign;
pub mod conditional_access;
pub mod device;
pub mod domain_cutover;
pub mod federation;
pub mod limits;
pub mod lockout;
pub mod markdown;
pub mod methods_policy;
pub mod model;
pub mod names;
pub mod pkce;
pub mod pta;
pub mod redirect;
pub mod routing;
pub mod secret;
pub mod session;
pub mod signin_log;
pub mod staged;
pub mod strength;
pub mod sync;
pub mod tap;
pub mod time;
pub mod token;
pub mod totp;

pub use model::*;
pub use names::{DomainName, NameError, UserPrincipalName};
pub use redirect::RedirectUri;
pub use secret::Secret;
pub use time::Timestamp;
