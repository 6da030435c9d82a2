//! The WebAuthn vocabulary: passkey registration and sign-in ceremonies, attestation trust, the
//! AAGUID catalogue, and a software authenticator for tests and benchmarks.
//!
//! This is the only crate that knows WebAuthn's JSON, CBOR and COSE; it wraps
//! webauthn-rs-core (pure Rust, RustCrypto for the signature checks). The rest of Cutover sees
//! opaque JSON values for the browser, opaque states to keep between the halves of a ceremony,
//! a [`StoredCredential`] to keep per passkey, and [`CeremonyError`] with stable codes.
//!
//! A ceremony, as the server runs it:
//!
//! 1. [`RelyingParty::start_registration`] / [`RelyingParty::start_authentication`] return the
//!    options for the page and a [`RegistrationState`] / [`AuthenticationState`] the server
//!    serialises and keeps server-side (taken exactly once by the answer).
//! 2. The page calls `navigator.credentials.create` / `get` and posts the credential's JSON.
//! 3. [`RelyingParty::finish_registration`] returns a [`NewCredential`] to store;
//!    for a sign-in, [`RelyingParty::assertion_ids`] names the credential and user handle, the
//!    server loads that credential and its counter, and [`RelyingParty::finish_authentication`]
//!    returns an [`AssertionOutcome`] (the new counter and backup state to store).
//!
//! No IO, no async. The library reads the clock only to check attestation certificates'
//! validity, and draws challenges from a CSPRNG seeded by the operating system.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attestation;
pub mod catalogue;
mod credential;
mod error;
mod rp;
pub mod soft;
mod wire;

pub use attestation::{AttestationTrust, MAX_TRUST_ROOTS};
pub use credential::{
    AssertionOutcome, CredentialId, InvalidCredentialId, InvalidStoredCredential,
    MAX_CREDENTIAL_ID_BYTES, NewCredential, StoredCredential,
};
pub use error::{CeremonyError, ConfigError, MAX_ERROR_DETAIL_CHARS};
pub use rp::{
    AuthenticationState, CEREMONY_TIMEOUT, MAX_CREDENTIALS_PER_CEREMONY, MAX_RP_NAME_CHARS,
    MAX_USER_HANDLE_BYTES, MAX_USER_NAME_CHARS, RegistrationState, RelyingParty, UserEntity,
};
pub use soft::{RawVerifier, raw_verifier};
