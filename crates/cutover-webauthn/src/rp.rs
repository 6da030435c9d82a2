//! The relying party: the two WebAuthn ceremonies, each in two halves with the state the server
//! keeps in between.
//!
//! Cutover's policy is fixed here rather than configurable: passkeys are discoverable (resident
//! key required), user verification is required at registration and at every sign-in, keys are
//! ES256 or RS256, synced passkeys are allowed (the authentication methods policy may refuse
//! them by AAGUID or backup eligibility), and the signature counter must move forward.

use crate::attestation::AttestationTrust;
use crate::credential::{AssertionOutcome, CredentialId, NewCredential, StoredCredential};
use crate::error::{CeremonyError, ConfigError, ErrorContext, bounded, map_library_error};
use crate::wire;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;
use url::Url;
use uuid::Uuid;
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AttestationFormat, AuthenticatorTransport, COSEAlgorithm,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestRegistrationExtensions,
    UserVerificationPolicy,
};

/// How long the browser may take over a ceremony (a hint in the options; the server's own
/// challenge expiry is what counts).
pub const CEREMONY_TIMEOUT: Duration = Duration::from_secs(300);
/// Most bytes a user handle may have (WebAuthn §5.4.3: "a maximum size of 64 bytes").
pub const MAX_USER_HANDLE_BYTES: usize = 64;
/// Most characters of a user's name or display name offered to the authenticator.
pub const MAX_USER_NAME_CHARS: usize = 256;
/// Most characters of the relying party's display name.
pub const MAX_RP_NAME_CHARS: usize = 100;
/// Most credentials one ceremony may exclude (registration) or allow (sign-in).
pub const MAX_CREDENTIALS_PER_CEREMONY: usize = 100;

/// The key algorithms offered, in order of preference. EdDSA is deliberately absent:
/// webauthn-rs-core 0.6 parses Ed25519 keys but cannot verify them, so offering it would let an
/// authenticator create a passkey that can never sign in.
const ALGORITHMS: [COSEAlgorithm; 2] = [COSEAlgorithm::ES256, COSEAlgorithm::RS256];

/// The user a passkey is registered for, as the authenticator stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntity {
    /// The opaque user handle (1 to 64 bytes, no personal data), e.g. the 16 bytes of the
    /// user's UUID. Discoverable sign-ins return it to say whose passkey was used.
    pub id: Vec<u8>,
    /// The account name shown in the authenticator's account picker (e.g. the UPN).
    pub name: String,
    /// The human-friendly name shown beside it.
    pub display_name: String,
}

/// The state of a registration between [`RelyingParty::start_registration`] and
/// [`RelyingParty::finish_registration`]; serialise it (JSON) and keep it server-side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationState {
    ceremony: webauthn_rs_core::proto::RegistrationState,
    excluded: Vec<CredentialId>,
}

/// The state of a sign-in between [`RelyingParty::start_authentication`] and
/// [`RelyingParty::finish_authentication`]; serialise it (JSON) and keep it server-side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthenticationState {
    ceremony: webauthn_rs_core::proto::AuthenticationState,
    allowed: Vec<CredentialId>,
}

impl AuthenticationState {
    /// Whether the ceremony is discoverable (username-less): no allow list, any of the user's
    /// passkeys, the user identified by the response's user handle.
    pub fn is_discoverable(&self) -> bool {
        self.allowed.is_empty()
    }
}

/// A configured relying party: RP ID, display name and the one origin the pages are served on.
#[derive(Clone)]
pub struct RelyingParty {
    core: WebauthnCore,
    rp_id: String,
    origin: Url,
}

impl fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelyingParty")
            .field("rp_id", &self.rp_id)
            .field("origin", &self.origin.as_str())
            .finish_non_exhaustive()
    }
}

impl RelyingParty {
    /// A relying party for pages served on `origin`.
    ///
    /// `rp_id` must equal the origin's host or be a registrable suffix of it (`localhost` for
    /// `http://localhost:8080`; `corp.example` for `https://login.corp.example`). A one-label
    /// suffix other than `localhost` (a top-level domain) is refused; multi-label public
    /// suffixes such as `co.uk` cannot be told apart without the public suffix list, and
    /// browsers refuse them at the ceremony. The origin must be `https`, or `http` for the host
    /// `localhost` or a name ending in `.localhost`; it is a bare origin (no path, query or
    /// credentials) on a domain name (browsers refuse IP addresses as RP IDs).
    pub fn new(rp_id: &str, rp_name: &str, origin: &Url) -> Result<Self, ConfigError> {
        let origin = check_origin(origin)?;
        let host = origin.host_str().unwrap_or_default().to_owned();
        check_rp_id(rp_id, &host)?;
        check_rp_name(rp_name)?;
        let core = WebauthnCore::new_unsafe_experts_only(
            rp_name,
            rp_id,
            vec![origin.clone()],
            CEREMONY_TIMEOUT,
            Some(false),
            Some(false),
        );
        Ok(RelyingParty {
            core,
            rp_id: rp_id.to_owned(),
            origin,
        })
    }

    /// The RP ID.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The origin the pages are served on (`scheme://host[:port]/`).
    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// Starts a registration: the options for `navigator.credentials.create` as
    /// `{ "publicKey": { … } }` (binary members base64url) and the state to keep.
    ///
    /// The options require a discoverable credential and user verification, offer ES256 then
    /// RS256, exclude `exclude` (the user's existing passkeys, so an authenticator that already
    /// holds one says so), ask for the `credProps` extension, and ask for `direct` attestation
    /// when `want_attestation` (else `none`, which lets the browser strip it).
    pub fn start_registration(
        &self,
        user: &UserEntity,
        exclude: &[CredentialId],
        want_attestation: bool,
    ) -> Result<(serde_json::Value, RegistrationState), CeremonyError> {
        check_user(user)?;
        check_count(exclude.len())?;
        let extensions = RequestRegistrationExtensions {
            cred_protect: None,
            uvm: None,
            cred_props: Some(true),
            min_pin_length: None,
            hmac_create_secret: None,
        };
        let builder = self
            .core
            .new_challenge_register_builder(&user.id, &user.name, &user.display_name)
            .map_err(|e| map_library_error(e, &ErrorContext::default()))?
            .attestation(if want_attestation {
                AttestationConveyancePreference::Direct
            } else {
                AttestationConveyancePreference::None
            })
            .user_verification_policy(UserVerificationPolicy::Required)
            .exclude_credentials(Some(exclude.iter().map(|id| id.bytes().to_vec()).collect()))
            .extensions(Some(extensions))
            .credential_algorithms(ALGORITHMS.to_vec())
            .require_resident_key(true)
            .authenticator_attachment(None)
            .reject_synchronised_authenticators(false);
        let (options, ceremony) = self
            .core
            .generate_challenge_register(builder)
            .map_err(|e| map_library_error(e, &ErrorContext::default()))?;
        let options = serde_json::to_value(&options)
            .map_err(|e| CeremonyError::Library(bounded(&e.to_string())))?;
        let state = RegistrationState {
            ceremony,
            excluded: exclude.to_vec(),
        };
        Ok((options, state))
    }

    /// Verifies the browser's answer to a registration (the JSON of the `PublicKeyCredential`
    /// as posted: `id`, `rawId`, `type`, `response { attestationObject, clientDataJSON,
    /// transports }`, `clientExtensionResults`).
    ///
    /// With `trust`, the attestation must verify and chain to one of its certificates
    /// (attestation enforcement); without, any attestation (including `none`) is accepted,
    /// but a statement that is present is still verified.
    pub fn finish_registration(
        &self,
        state: &RegistrationState,
        response: &serde_json::Value,
        trust: Option<&AttestationTrust>,
    ) -> Result<NewCredential, CeremonyError> {
        let credential = RegisterPublicKeyCredential::deserialize(response)
            .map_err(|e| CeremonyError::malformed(format!("registration response: {e}")))?;
        if credential.type_ != "public-key" {
            return Err(CeremonyError::WrongType);
        }
        let presented_id = checked_id(&credential.id, &credential.raw_id)?;
        let attestation_object = &credential.response.attestation_object;
        let context = ErrorContext {
            presented_origin: wire::client_data_origin(&credential.response.client_data_json),
            excluded: state.excluded.contains(&presented_id),
            has_certificate: wire::attestation_has_certificate(attestation_object),
            ..ErrorContext::default()
        };
        let mut registered = self
            .core
            .register_credential(
                &credential,
                &state.ceremony,
                trust.map(AttestationTrust::library),
            )
            .map_err(|e| map_library_error(e, &context))?;
        // The library takes the id from the authenticator data and never compares it with
        // `rawId`; the two must be the same credential.
        if registered.cred_id != credential.raw_id {
            return Err(CeremonyError::malformed(
                "rawId differs from the credential id in the authenticator data",
            ));
        }

        // The library keeps transports only for packed and TPM attestation; they are hints
        // the browser reports for any credential, and the allow list of later sign-ins
        // should carry them, so keep what the browser said.
        let reported: Vec<AuthenticatorTransport> = credential
            .response
            .transports
            .iter()
            .flatten()
            .filter(|t| !matches!(t, AuthenticatorTransport::Unknown))
            .cloned()
            .collect();
        let transports = reported.iter().map(|t| t.as_ref().to_owned()).collect();
        if registered.transports.is_none() && !reported.is_empty() {
            registered.transports = Some(reported);
        }

        let aaguid = wire::attestation_auth_data(attestation_object)
            .map(|auth_data| wire::auth_data_aaguid(&auth_data))
            .unwrap_or_else(Uuid::nil);
        let attestation_format = format_name(&registered.attestation_format).to_owned();
        let new = NewCredential {
            credential_id: presented_id,
            aaguid,
            backup_eligible: registered.backup_eligible,
            backed_up: registered.backup_state,
            sign_count: registered.counter,
            attestation_format,
            attested: trust.is_some(),
            transports,
            user_verified: registered.user_verified,
            discoverable: credential.extensions.cred_props.as_ref().and_then(|p| p.rk),
            stored: StoredCredential::from_credential(registered)
                .map_err(|e| CeremonyError::Library(bounded(&e.to_string())))?,
        };
        Ok(new)
    }

    /// Starts a sign-in: the options for `navigator.credentials.get` as `{ "publicKey": { … } }`
    /// and the state to keep. User verification is required.
    ///
    /// With `allow` empty the ceremony is discoverable (username-less): the browser offers any
    /// passkey for this RP ID, which is also what conditional mediation (passkey autofill in the
    /// username field) needs; the page adds `mediation: "conditional"` itself.
    pub fn start_authentication(
        &self,
        allow: &[StoredCredential],
    ) -> Result<(serde_json::Value, AuthenticationState), CeremonyError> {
        check_count(allow.len())?;
        let credentials = allow.iter().map(|c| c.library().clone()).collect();
        let builder = self
            .core
            .new_challenge_authenticate_builder(credentials, Some(UserVerificationPolicy::Required))
            .map_err(|e| map_library_error(e, &ErrorContext::default()))?;
        let (options, ceremony) = self
            .core
            .generate_challenge_authenticate(builder)
            .map_err(|e| map_library_error(e, &ErrorContext::default()))?;
        let options = serde_json::to_value(&options)
            .map_err(|e| CeremonyError::Library(bounded(&e.to_string())))?;
        let state = AuthenticationState {
            ceremony,
            allowed: allow.iter().map(|c| c.credential_id().clone()).collect(),
        };
        Ok((options, state))
    }

    /// Reads the credential id (`rawId`) and the user handle (`response.userHandle`, `None`
    /// when absent or empty) from a sign-in response, before any verification, so the caller
    /// can look up the stored credential and its owner.
    pub fn assertion_ids(
        response: &serde_json::Value,
    ) -> Result<(CredentialId, Option<Vec<u8>>), CeremonyError> {
        let field = |value: Option<&serde_json::Value>,
                     name: &str|
         -> Result<Option<Vec<u8>>, CeremonyError> {
            match value {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(text)) => wire::decode_base64url(text)
                    .map(Some)
                    .ok_or_else(|| CeremonyError::malformed(format!("{name} is not base64url"))),
                Some(_) => Err(CeremonyError::malformed(format!("{name} is not a string"))),
            }
        };
        let raw_id = field(response.get("rawId"), "rawId")?
            .ok_or_else(|| CeremonyError::malformed("rawId missing"))?;
        let id = match response.get("id") {
            Some(serde_json::Value::String(id)) => id.as_str(),
            _ => return Err(CeremonyError::malformed("id missing")),
        };
        let credential_id = checked_id(id, &raw_id)?;
        let user_handle = field(
            response.get("response").and_then(|r| r.get("userHandle")),
            "userHandle",
        )?
        .filter(|handle| !handle.is_empty());
        if let Some(handle) = &user_handle
            && handle.len() > MAX_USER_HANDLE_BYTES
        {
            return Err(CeremonyError::malformed("userHandle longer than 64 bytes"));
        }
        Ok((credential_id, user_handle))
    }

    /// Verifies a sign-in response against the stored credential the caller looked up by
    /// [`RelyingParty::assertion_ids`], whose counter the caller keeps in its own column
    /// (`stored_sign_count`, authoritative over the counter inside `stored`).
    ///
    /// Refuses a counter that does not increase while either counter is non-zero
    /// ([`CeremonyError::PossibleClone`]), a change of backup eligibility since registration
    /// (backup *state* may change), a credential outside the ceremony's allow list, and in a
    /// discoverable ceremony a response without a user handle.
    ///
    /// The user handle is not covered by the signature: the caller must check that a handle,
    /// when present, is the one of the user who owns `stored`.
    pub fn finish_authentication(
        &self,
        state: &AuthenticationState,
        response: &serde_json::Value,
        stored: &StoredCredential,
        stored_sign_count: u32,
    ) -> Result<AssertionOutcome, CeremonyError> {
        let credential = PublicKeyCredential::deserialize(response)
            .map_err(|e| CeremonyError::malformed(format!("sign-in response: {e}")))?;
        if credential.type_ != "public-key" {
            return Err(CeremonyError::WrongType);
        }
        let presented_id = checked_id(&credential.id, &credential.raw_id)?;
        if &presented_id != stored.credential_id() {
            return Err(CeremonyError::CredentialMismatch);
        }
        if !state.allowed.is_empty() && !state.allowed.contains(&presented_id) {
            return Err(CeremonyError::UnknownCredential);
        }
        let user_handle = credential
            .response
            .user_handle
            .as_deref()
            .unwrap_or_default();
        if state.allowed.is_empty() && user_handle.is_empty() {
            return Err(CeremonyError::malformed(
                "userHandle missing in a discoverable sign-in",
            ));
        }
        if user_handle.len() > MAX_USER_HANDLE_BYTES {
            return Err(CeremonyError::malformed("userHandle longer than 64 bytes"));
        }

        let mut library_credential = stored.library().clone();
        library_credential.counter = stored_sign_count;
        let auth_data = &credential.response.authenticator_data;
        let context = ErrorContext {
            presented_origin: wire::client_data_origin(&credential.response.client_data_json),
            presented_counter: wire::auth_data_counter(auth_data),
            stored_counter: stored_sign_count,
            registered_backup_eligible: library_credential.backup_eligible,
            presented_backup_eligible: wire::auth_data_flags(auth_data)
                .map(|f| f & wire::flags::BACKUP_ELIGIBLE != 0),
            ..ErrorContext::default()
        };
        let result = self
            .core
            .authenticate_single_credential(&credential, &state.ceremony, &library_credential)
            .map_err(|e| map_library_error(e, &context))?;
        // The library checks crossOrigin at registration only.
        if wire::client_data_cross_origin(&credential.response.client_data_json) {
            return Err(CeremonyError::CrossOrigin);
        }
        Ok(AssertionOutcome {
            sign_count: result.counter(),
            backed_up: result.backup_state(),
            backup_eligible: result.backup_eligible(),
            user_verified: result.user_verified(),
        })
    }
}

/// The credential id of a response, checking that `id` is the base64url of `rawId` as every
/// browser sends it (the library reads only `rawId`).
fn checked_id(id: &str, raw_id: &[u8]) -> Result<CredentialId, CeremonyError> {
    let credential_id = CredentialId::from_bytes(raw_id)
        .map_err(|e| CeremonyError::malformed(format!("rawId: {e}")))?;
    if wire::decode_base64url(id).as_deref() != Some(raw_id) {
        return Err(CeremonyError::malformed("id does not match rawId"));
    }
    Ok(credential_id)
}

fn format_name(format: &AttestationFormat) -> &'static str {
    match format {
        AttestationFormat::Packed => "packed",
        AttestationFormat::Tpm => "tpm",
        AttestationFormat::AndroidKey => "android-key",
        AttestationFormat::AndroidSafetyNet => "android-safetynet",
        AttestationFormat::FIDOU2F => "fido-u2f",
        AttestationFormat::AppleAnonymous => "apple",
        AttestationFormat::None => "none",
    }
}

fn check_count(count: usize) -> Result<(), CeremonyError> {
    if count > MAX_CREDENTIALS_PER_CEREMONY {
        return Err(CeremonyError::InvalidRequest(format!(
            "{count} credentials given, at most {MAX_CREDENTIALS_PER_CEREMONY} per ceremony"
        )));
    }
    Ok(())
}

fn check_user(user: &UserEntity) -> Result<(), CeremonyError> {
    if user.id.is_empty() || user.id.len() > MAX_USER_HANDLE_BYTES {
        return Err(CeremonyError::InvalidRequest(format!(
            "the user handle must be 1 to {MAX_USER_HANDLE_BYTES} bytes"
        )));
    }
    for (what, text) in [("name", &user.name), ("display name", &user.display_name)] {
        if text.trim().is_empty() {
            return Err(CeremonyError::InvalidRequest(format!(
                "the user's {what} is empty"
            )));
        }
        if text.chars().count() > MAX_USER_NAME_CHARS {
            return Err(CeremonyError::InvalidRequest(format!(
                "the user's {what} is longer than {MAX_USER_NAME_CHARS} characters"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(CeremonyError::InvalidRequest(format!(
                "the user's {what} contains control characters"
            )));
        }
    }
    Ok(())
}

fn check_origin(origin: &Url) -> Result<Url, ConfigError> {
    // Shown without any user:password part, which must never reach a log.
    let mut shown = origin.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let problem = |p: &str| ConfigError::new("origin", format!("{p} (got {shown})"));
    if !origin.username().is_empty() || origin.password().is_some() {
        return Err(problem("must not contain credentials"));
    }
    if !matches!(origin.path(), "" | "/") || origin.query().is_some() || origin.fragment().is_some()
    {
        return Err(problem("must be a bare origin: scheme, host and port only"));
    }
    let host = match origin.host() {
        Some(url::Host::Domain(host)) => host,
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err(problem(
                "must be a domain name: browsers refuse IP addresses for WebAuthn",
            ));
        }
        None => return Err(problem("has no host")),
    };
    match origin.scheme() {
        "https" => {}
        "http" if host == "localhost" || host.ends_with(".localhost") => {}
        "http" => {
            return Err(problem(
                "must use https; http is allowed only for localhost",
            ));
        }
        _ => return Err(problem("must use https")),
    }
    Url::parse(&origin.origin().ascii_serialization()).map_err(|_| problem("is not a valid origin"))
}

fn check_rp_id(rp_id: &str, host: &str) -> Result<(), ConfigError> {
    let problem = |p: String| ConfigError::new("rpId", p);
    if rp_id.is_empty() || rp_id.len() > 253 {
        return Err(problem("must be 1 to 253 characters".into()));
    }
    if rp_id.parse::<IpAddr>().is_ok() {
        return Err(problem(format!(
            "{rp_id} is an IP address; browsers need a domain name"
        )));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !rp_id.split('.').all(valid_label) {
        return Err(problem(format!(
            "{} is not a lower-case domain name (write internationalised names in their xn-- form)",
            bounded(rp_id)
        )));
    }
    if rp_id == host {
        return Ok(());
    }
    let is_suffix = host
        .strip_suffix(rp_id)
        .is_some_and(|prefix| prefix.ends_with('.'));
    if !is_suffix {
        return Err(problem(format!(
            "{rp_id} is neither the origin's host {host} nor a suffix of it"
        )));
    }
    if !rp_id.contains('.') && rp_id != "localhost" {
        return Err(problem(format!(
            "{rp_id} is a top-level domain, not a registrable domain"
        )));
    }
    Ok(())
}

fn check_rp_name(rp_name: &str) -> Result<(), ConfigError> {
    if rp_name.trim().is_empty() {
        return Err(ConfigError::new("rpName", "must not be empty"));
    }
    if rp_name.chars().count() > MAX_RP_NAME_CHARS {
        return Err(ConfigError::new(
            "rpName",
            format!("at most {MAX_RP_NAME_CHARS} characters"),
        ));
    }
    if rp_name.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "rpName",
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn field_of(rp_id: &str, origin: &str) -> String {
        RelyingParty::new(rp_id, "Cutover", &url(origin))
            .unwrap_err()
            .field()
            .to_owned()
    }

    #[test]
    fn accepts_host_and_registrable_suffixes() {
        for (rp_id, origin) in [
            ("localhost", "http://localhost:8080"),
            ("app.localhost", "http://app.localhost:3000"),
            ("localhost", "http://app.localhost"),
            ("login.corp.example", "https://login.corp.example"),
            ("corp.example", "https://login.corp.example"),
            ("corp.example", "https://login.corp.example:8443/"),
        ] {
            let rp = RelyingParty::new(rp_id, "Cutover", &url(origin))
                .unwrap_or_else(|e| panic!("{rp_id} {origin}: {e}"));
            assert_eq!(rp.rp_id(), rp_id);
            assert!(rp.origin().path() == "/");
            let debug = format!("{rp:?}");
            assert!(debug.contains(rp_id) && debug.contains("origin"), "{debug}");
        }
    }

    #[test]
    fn refuses_rp_ids_that_do_not_fit_the_origin() {
        assert_eq!(
            field_of("other.example", "https://login.corp.example"),
            "rpId"
        );
        assert_eq!(
            field_of("ogin.corp.example", "https://login.corp.example"),
            "rpId"
        );
        assert_eq!(
            field_of("example", "https://login.corp.example"),
            "rpId",
            "TLD"
        );
        assert_eq!(
            field_of("Corp.example", "https://login.corp.example"),
            "rpId"
        );
        assert_eq!(field_of("", "https://login.corp.example"), "rpId");
        assert_eq!(
            field_of("login.corp.example.", "https://login.corp.example"),
            "rpId"
        );
        assert_eq!(
            field_of("sub.login.corp.example", "https://login.corp.example"),
            "rpId"
        );
        let message = RelyingParty::new(
            "other.example",
            "Cutover",
            &url("https://login.corp.example"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with("rpId: other.example is neither"),
            "{message}"
        );
    }

    #[test]
    fn refuses_origins_browsers_would_refuse() {
        assert_eq!(
            field_of("login.corp.example", "http://login.corp.example"),
            "origin"
        );
        assert_eq!(field_of("127.0.0.1", "http://127.0.0.1:8080"), "origin");
        assert_eq!(field_of("127.0.0.1", "https://127.0.0.1"), "origin");
        assert_eq!(
            field_of("corp.example", "https://corp.example/login"),
            "origin"
        );
        assert_eq!(
            field_of("corp.example", "https://corp.example/?a=1"),
            "origin"
        );
        assert_eq!(
            field_of("corp.example", "https://u:p@corp.example"),
            "origin"
        );
        assert_eq!(field_of("corp.example", "ftp://corp.example"), "origin");
        let message = RelyingParty::new("corp.example", "Cutover", &url("http://corp.example"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("http is allowed only for localhost"),
            "{message}"
        );
    }

    #[test]
    fn rp_name_limits() {
        let origin = url("https://corp.example");
        let longest = "n".repeat(MAX_RP_NAME_CHARS);
        assert!(RelyingParty::new("corp.example", &longest, &origin).is_ok());
        let too_long = "n".repeat(MAX_RP_NAME_CHARS + 1);
        let error = RelyingParty::new("corp.example", &too_long, &origin).unwrap_err();
        assert_eq!(error.field(), "rpName");
        assert_eq!(
            RelyingParty::new("corp.example", " ", &origin)
                .unwrap_err()
                .field(),
            "rpName"
        );
    }
}
