//! Registration and sign-in ceremonies end to end, with the software authenticator standing in
//! for browser and device: the happy paths, each refusal, and responses no browser would send.
//! States and stored credentials always pass through JSON, as they do through the database.

use cutover_webauthn::soft::{SoftAttestation, SoftAuthenticator, SoftCredential};
use cutover_webauthn::{
    AttestationTrust, AuthenticationState, CeremonyError, CredentialId,
    MAX_CREDENTIALS_PER_CEREMONY, MAX_TRUST_ROOTS, MAX_USER_HANDLE_BYTES, NewCredential,
    RegistrationState, RelyingParty, StoredCredential, UserEntity,
};
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

const ORIGIN: &str = "https://login.corp.example";
const YUBIKEY: Uuid = Uuid::from_u128(0xee882879_721c_4913_9775_3dfcce97072a);

fn rp() -> RelyingParty {
    RelyingParty::new("corp.example", "Corp sign-in", &Url::parse(ORIGIN).unwrap()).unwrap()
}

fn user() -> UserEntity {
    UserEntity {
        id: Uuid::from_u128(42).as_bytes().to_vec(),
        name: "ada@corp.example".into(),
        display_name: "Ada Lovelace".into(),
    }
}

/// A state as the server keeps it: serialised to JSON text and read back.
fn through_json<T: serde::Serialize + serde::de::DeserializeOwned>(state: &T) -> T {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

fn stored_through_json(stored: &StoredCredential) -> StoredCredential {
    StoredCredential::from_json(stored.as_json()).unwrap()
}

/// Registers a passkey on `device`, answering the options as a browser on `origin` would.
fn register_on(
    rp: &RelyingParty,
    device: &SoftAuthenticator,
    origin: &str,
    trust: Option<&AttestationTrust>,
) -> (Result<NewCredential, CeremonyError>, SoftCredential) {
    let (options, state) = rp
        .start_registration(&user(), &[], trust.is_some())
        .unwrap();
    let (response, credential) = device.create(&options, origin).unwrap();
    let state: RegistrationState = through_json(&state);
    (rp.finish_registration(&state, &response, trust), credential)
}

fn register(rp: &RelyingParty, device: &SoftAuthenticator) -> (NewCredential, SoftCredential) {
    let (new, credential) = register_on(rp, device, ORIGIN, None);
    (new.unwrap(), credential)
}

/// One sign-in: options allowing `allow`, the device's answer for `credential`, the state
/// read back from JSON.
fn assertion(
    rp: &RelyingParty,
    device: &SoftAuthenticator,
    credential: &mut SoftCredential,
    allow: &[StoredCredential],
    origin: &str,
) -> (Value, AuthenticationState) {
    let (options, state) = rp.start_authentication(allow).unwrap();
    let response = device.get(credential, &options, origin).unwrap();
    (response, through_json(&state))
}

fn sign_in(
    rp: &RelyingParty,
    device: &SoftAuthenticator,
    credential: &mut SoftCredential,
    stored: &StoredCredential,
    stored_count: u32,
) -> Result<cutover_webauthn::AssertionOutcome, CeremonyError> {
    let (response, state) = assertion(rp, device, credential, std::slice::from_ref(stored), ORIGIN);
    rp.finish_authentication(
        &state,
        &response,
        &stored_through_json(stored),
        stored_count,
    )
}

#[test]
fn registration_options_ask_for_a_discoverable_verified_passkey() {
    let existing = CredentialId::from_bytes(&[1, 2, 3]).unwrap();
    let (options, _) = rp()
        .start_registration(&user(), &[existing], false)
        .unwrap();
    let pk = &options["publicKey"];
    assert_eq!(
        pk["rp"],
        json!({ "id": "corp.example", "name": "Corp sign-in" })
    );
    assert_eq!(pk["user"]["name"], "ada@corp.example");
    assert_eq!(pk["user"]["displayName"], "Ada Lovelace");
    assert_eq!(pk["user"]["id"], "AAAAAAAAAAAAAAAAAAAAKg");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["requireResidentKey"], true);
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    let algorithms: Vec<i64> = pk["pubKeyCredParams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["alg"].as_i64().unwrap())
        .collect();
    assert_eq!(algorithms, [-7, -257], "ES256 then RS256");
    assert_eq!(pk["attestation"], "none");
    assert_eq!(
        pk["excludeCredentials"],
        json!([{ "type": "public-key", "id": "AQID" }])
    );
    assert_eq!(pk["extensions"], json!({ "credProps": true }));
    assert_eq!(
        pk["challenge"].as_str().unwrap().len(),
        43,
        "32 random bytes"
    );
    assert_eq!(pk["timeout"], 300_000);

    let (direct, _) = rp().start_registration(&user(), &[], true).unwrap();
    assert_eq!(direct["publicKey"]["attestation"], "direct");
}

#[test]
fn register_then_sign_in_repeatedly() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);
    assert_eq!(new.credential_id, credential.credential_id());
    assert_eq!(new.stored.credential_id(), &new.credential_id);
    assert_eq!(new.aaguid, YUBIKEY);
    assert_eq!(new.attestation_format, "none");
    assert!(!new.attested);
    assert!(!new.backup_eligible && !new.backed_up);
    assert_eq!(new.sign_count, 0);
    assert!(new.user_verified);
    assert_eq!(new.transports, ["internal"]);
    assert_eq!(new.discoverable, Some(true));
    let debug = format!("{:?}", new.stored);
    assert!(
        debug.contains(new.credential_id.as_str()) && !debug.contains("SECP256R1"),
        "{debug}"
    );

    // The allow list carries the id and the transports the browser reported.
    let (options, _) = rp
        .start_authentication(std::slice::from_ref(&new.stored))
        .unwrap();
    let allowed = &options["publicKey"]["allowCredentials"];
    assert_eq!(allowed[0]["id"], new.credential_id.as_str());
    assert_eq!(allowed[0]["transports"], json!(["internal"]));
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert_eq!(options["publicKey"]["rpId"], "corp.example");

    let mut stored_count = new.sign_count;
    for expected in 1..=3 {
        let outcome = sign_in(&rp, &device, &mut credential, &new.stored, stored_count).unwrap();
        assert_eq!(outcome.sign_count, expected);
        assert!(outcome.user_verified);
        assert!(!outcome.backed_up && !outcome.backup_eligible);
        stored_count = outcome.sign_count;
    }
}

#[test]
fn discoverable_sign_in_names_the_user() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);

    let (options, state) = rp.start_authentication(&[]).unwrap();
    assert!(state.is_discoverable());
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
    let response = device.get(&mut credential, &options, ORIGIN).unwrap();
    let (id, handle) = RelyingParty::assertion_ids(&response).unwrap();
    assert_eq!(id, new.credential_id);
    assert_eq!(handle.as_deref(), Some(user().id.as_slice()));
    let state: AuthenticationState = through_json(&state);
    let outcome = rp
        .finish_authentication(&state, &response, &new.stored, 0)
        .unwrap();
    assert_eq!(outcome.sign_count, 1);

    // Without a user handle a discoverable sign-in cannot say whose passkey it is.
    credential.set_user_handle(None);
    let (options, state) = rp.start_authentication(&[]).unwrap();
    let response = device.get(&mut credential, &options, ORIGIN).unwrap();
    assert_eq!(RelyingParty::assertion_ids(&response).unwrap().1, None);
    let error = rp
        .finish_authentication(&state, &response, &new.stored, 1)
        .unwrap_err();
    assert!(
        matches!(error, CeremonyError::Malformed(ref m) if m.contains("userHandle")),
        "{error}"
    );
}

#[test]
fn passkeys_that_never_count_sign_in_again_and_again() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(Uuid::nil());
    device.settings.counter_step = 0;
    device.settings.backup_eligible = true;
    device.settings.backed_up = true;
    let (new, mut credential) = register(&rp, &device);
    assert_eq!(new.aaguid, Uuid::nil());
    assert!(new.backup_eligible && new.backed_up);
    for _ in 0..3 {
        let outcome = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap();
        assert_eq!(outcome.sign_count, 0);
        assert!(outcome.backed_up);
    }
}

#[test]
fn a_clone_that_falls_behind_or_keeps_pace_is_refused() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut original) = register(&rp, &device);
    let mut clone = original.clone();

    let outcome = sign_in(&rp, &device, &mut original, &new.stored, 0).unwrap();
    assert_eq!(outcome.sign_count, 1);
    // The clone still counts from 0: it presents 1 again, equal to the stored 1.
    let equal = sign_in(&rp, &device, &mut clone, &new.stored, outcome.sign_count).unwrap_err();
    assert_eq!(
        equal,
        CeremonyError::PossibleClone {
            stored: 1,
            presented: 1
        }
    );
    assert_eq!(equal.code(), "possibleClone");

    // A counter that goes backwards.
    original.set_sign_count(9);
    let outcome = sign_in(&rp, &device, &mut original, &new.stored, 1).unwrap();
    assert_eq!(outcome.sign_count, 10);
    clone.set_sign_count(3);
    let backwards = sign_in(&rp, &device, &mut clone, &new.stored, 10).unwrap_err();
    assert_eq!(
        backwards,
        CeremonyError::PossibleClone {
            stored: 10,
            presented: 4
        }
    );

    // An authenticator that stops counting after it did.
    let mut stopped = SoftAuthenticator::new(YUBIKEY);
    stopped.settings.counter_step = 0;
    original.set_sign_count(0);
    let zero = sign_in(&rp, &stopped, &mut original, &new.stored, 10).unwrap_err();
    assert_eq!(
        zero,
        CeremonyError::PossibleClone {
            stored: 10,
            presented: 0
        }
    );
}

#[test]
fn a_different_origin_is_refused_and_named() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (registration, _) = register_on(&rp, &device, "https://evil.example", None);
    assert_eq!(
        registration.unwrap_err(),
        CeremonyError::WrongOrigin {
            presented: "https://evil.example".into()
        }
    );
    // Another port, and a subdomain of the RP ID, are other origins too.
    for origin in [
        "https://login.corp.example:8443",
        "https://other.corp.example",
    ] {
        let (registration, _) = register_on(&rp, &device, origin, None);
        assert_eq!(registration.unwrap_err().code(), "wrongOrigin", "{origin}");
    }

    let (new, mut credential) = register(&rp, &device);
    let (response, state) = assertion(
        &rp,
        &device,
        &mut credential,
        std::slice::from_ref(&new.stored),
        "http://login.corp.example",
    );
    let error = rp
        .finish_authentication(&state, &response, &new.stored, 0)
        .unwrap_err();
    assert_eq!(
        error,
        CeremonyError::WrongOrigin {
            presented: "http://login.corp.example".into()
        }
    );
    assert!(
        error
            .to_string()
            .contains("origin http://login.corp.example"),
        "{error}"
    );
}

#[test]
fn a_cross_origin_frame_is_refused() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);
    device.settings.cross_origin = true;
    let (registration, _) = register_on(&rp, &device, ORIGIN, None);
    assert_eq!(registration.unwrap_err(), CeremonyError::CrossOrigin);
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(error, CeremonyError::CrossOrigin);
}

#[test]
fn another_rp_id_is_refused() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);
    device.settings.rp_id_override = Some("evil.example".into());
    let (registration, _) = register_on(&rp, &device, ORIGIN, None);
    assert_eq!(registration.unwrap_err(), CeremonyError::WrongRpId);
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(error, CeremonyError::WrongRpId);
}

#[test]
fn answers_to_another_challenge_and_replays_are_refused() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);

    let (options, _first) = rp.start_registration(&user(), &[], false).unwrap();
    let (_, second) = rp.start_registration(&user(), &[], false).unwrap();
    let (response, _) = device.create(&options, ORIGIN).unwrap();
    let error = rp
        .finish_registration(&second, &response, None)
        .unwrap_err();
    assert_eq!(error, CeremonyError::ChallengeMismatch);

    let (new, mut credential) = register(&rp, &device);
    let (response, state) = assertion(
        &rp,
        &device,
        &mut credential,
        std::slice::from_ref(&new.stored),
        ORIGIN,
    );
    rp.finish_authentication(&state, &response, &new.stored, 0)
        .unwrap();
    // The same answer replayed against the next ceremony's state.
    let (_, next) = rp
        .start_authentication(std::slice::from_ref(&new.stored))
        .unwrap();
    let replay = rp
        .finish_authentication(&next, &response, &new.stored, 0)
        .unwrap_err();
    assert_eq!(replay, CeremonyError::ChallengeMismatch);
    assert_eq!(replay.code(), "challengeMismatch");
}

#[test]
fn answers_of_the_wrong_type_are_refused() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);

    let (options, state) = rp.start_registration(&user(), &[], false).unwrap();
    let (mut response, _) = device.create(&options, ORIGIN).unwrap();
    response["type"] = json!("password");
    assert_eq!(
        rp.finish_registration(&state, &response, None).unwrap_err(),
        CeremonyError::WrongType
    );

    let (mut response, state) = assertion(
        &rp,
        &device,
        &mut credential,
        std::slice::from_ref(&new.stored),
        ORIGIN,
    );
    response["type"] = json!("otp");
    assert_eq!(
        rp.finish_authentication(&state, &response, &new.stored, 0)
            .unwrap_err(),
        CeremonyError::WrongType
    );

    // Client data of the other ceremony.
    device.settings.client_data_type_override = Some("webauthn.get".into());
    let (registration, _) = register_on(&rp, &device, ORIGIN, None);
    assert_eq!(registration.unwrap_err(), CeremonyError::WrongType);
    device.settings.client_data_type_override = Some("webauthn.create".into());
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(error, CeremonyError::WrongType);

    // A registration answer posted to a sign-in.
    let (options, _) = rp.start_registration(&user(), &[], false).unwrap();
    let (registration_answer, _) = SoftAuthenticator::new(YUBIKEY)
        .create(&options, ORIGIN)
        .unwrap();
    let (_, state) = rp.start_authentication(&[]).unwrap();
    let error = rp
        .finish_authentication(&state, &registration_answer, &new.stored, 0)
        .unwrap_err();
    assert!(
        matches!(
            error,
            CeremonyError::Malformed(_) | CeremonyError::CredentialMismatch
        ),
        "{error}"
    );
}

#[test]
fn user_presence_and_verification_are_required() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);

    device.settings.user_verified = false;
    let (registration, _) = register_on(&rp, &device, ORIGIN, None);
    assert_eq!(registration.unwrap_err(), CeremonyError::UserNotVerified);
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(error, CeremonyError::UserNotVerified);
    assert_eq!(error.code(), "userNotVerified");

    device.settings.user_verified = true;
    device.settings.user_present = false;
    let (registration, _) = register_on(&rp, &device, ORIGIN, None);
    assert_eq!(registration.unwrap_err(), CeremonyError::UserNotPresent);
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(error, CeremonyError::UserNotPresent);
}

#[test]
fn altered_signatures_and_signed_data_are_refused() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);

    device.settings.corrupt_signature = true;
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(error, CeremonyError::BadSignature);
    device.settings.corrupt_signature = false;

    // A counter raised after signing, to look newer than a clone.
    let (mut response, state) = assertion(
        &rp,
        &device,
        &mut credential,
        std::slice::from_ref(&new.stored),
        ORIGIN,
    );
    let text = response["response"]["authenticatorData"].as_str().unwrap();
    let mut data = base64_decode(text);
    data[36] = data[36].wrapping_add(50);
    response["response"]["authenticatorData"] = json!(base64_encode(&data));
    assert_eq!(
        rp.finish_authentication(&state, &response, &new.stored, 0)
            .unwrap_err(),
        CeremonyError::BadSignature
    );

    // Another passkey's signature over the same data.
    let (other, mut other_credential) = register(&rp, &device);
    let (response, state) = assertion(
        &rp,
        &device,
        &mut credential,
        std::slice::from_ref(&new.stored),
        ORIGIN,
    );
    let (other_response, _) = assertion(
        &rp,
        &device,
        &mut other_credential,
        std::slice::from_ref(&other.stored),
        ORIGIN,
    );
    let mut forged = response.clone();
    forged["response"]["signature"] = other_response["response"]["signature"].clone();
    assert_eq!(
        rp.finish_authentication(&state, &forged, &new.stored, 0)
            .unwrap_err(),
        CeremonyError::BadSignature
    );
    // A signature that is not DER at all.
    forged["response"]["signature"] = json!("AAAA");
    assert_eq!(
        rp.finish_authentication(&state, &forged, &new.stored, 0)
            .unwrap_err(),
        CeremonyError::BadSignature
    );
}

#[test]
fn the_answer_must_be_the_offered_and_looked_up_passkey() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (first, _) = register(&rp, &device);
    let (second, mut second_credential) = register(&rp, &device);

    // Options that allow only the first passkey, answered (by a modified page) with the second.
    let (mut options, state) = rp
        .start_authentication(std::slice::from_ref(&first.stored))
        .unwrap();
    options["publicKey"]["allowCredentials"] = json!([]);
    let response = device
        .get(&mut second_credential, &options, ORIGIN)
        .unwrap();
    let error = rp
        .finish_authentication(&state, &response, &second.stored, 0)
        .unwrap_err();
    assert_eq!(error, CeremonyError::UnknownCredential);
    // Checked against a stored credential that is not the one presented.
    let error = rp
        .finish_authentication(&state, &response, &first.stored, 0)
        .unwrap_err();
    assert_eq!(error, CeremonyError::CredentialMismatch);
}

#[test]
fn backup_eligibility_must_not_change_but_backup_state_may() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);
    assert!(!new.stored.backup_eligible());
    device.settings.backup_eligible = true;
    let error = sign_in(&rp, &device, &mut credential, &new.stored, 0).unwrap_err();
    assert_eq!(
        error,
        CeremonyError::BackupEligibilityChanged {
            registered: false,
            presented: true
        }
    );

    let mut synced = SoftAuthenticator::new(YUBIKEY);
    synced.settings.backup_eligible = true;
    let (new, mut credential) = register(&rp, &synced);
    assert!(new.backup_eligible && !new.backed_up);
    synced.settings.backed_up = true;
    let outcome = sign_in(&rp, &synced, &mut credential, &new.stored, 0).unwrap();
    assert!(outcome.backed_up && outcome.backup_eligible);
    synced.settings.backup_eligible = false;
    synced.settings.backed_up = false;
    let error = sign_in(&rp, &synced, &mut credential, &new.stored, 1).unwrap_err();
    assert_eq!(
        error,
        CeremonyError::BackupEligibilityChanged {
            registered: true,
            presented: false
        }
    );

    // Backed up without being eligible is a flag combination the specification forbids.
    let mut odd = SoftAuthenticator::new(YUBIKEY);
    odd.settings.backed_up = true;
    let (registration, _) = register_on(&rp, &odd, ORIGIN, None);
    assert_eq!(registration.unwrap_err().code(), "malformed");
}

#[test]
fn an_excluded_passkey_is_already_registered() {
    let rp = rp();
    let mut device = SoftAuthenticator::new(YUBIKEY);
    device.settings.fixed_credential_id = Some(vec![7; 16]);
    let (new, _) = register(&rp, &device);
    let (options, state) = rp
        .start_registration(&user(), std::slice::from_ref(&new.credential_id), false)
        .unwrap();
    let (response, _) = device.create(&options, ORIGIN).unwrap();
    let error = rp.finish_registration(&state, &response, None).unwrap_err();
    assert_eq!(error, CeremonyError::AlreadyRegistered);
}

/// A change to a browser's answer.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn malformed_answers_are_refused_without_panicking() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (new, mut credential) = register(&rp, &device);
    let (options, registration_state) = rp.start_registration(&user(), &[], false).unwrap();
    let (good_registration, _) = device.create(&options, ORIGIN).unwrap();
    let (good_assertion, state) = assertion(
        &rp,
        &device,
        &mut credential,
        std::slice::from_ref(&new.stored),
        ORIGIN,
    );

    let edits: Vec<(&str, Edit)> = vec![
        ("null", Box::new(|v| *v = Value::Null)),
        ("array", Box::new(|v| *v = json!([1, 2]))),
        ("string", Box::new(|v| *v = json!("credential"))),
        ("empty object", Box::new(|v| *v = json!({}))),
        (
            "no response",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("response");
            }),
        ),
        (
            "rawId not base64url",
            Box::new(|v| v["rawId"] = json!("!!")),
        ),
        ("rawId a number", Box::new(|v| v["rawId"] = json!(5))),
        (
            "id differs from rawId",
            Box::new(|v| v["id"] = json!("AAAA")),
        ),
        (
            "empty rawId",
            Box::new(|v| {
                v["rawId"] = json!("");
                v["id"] = json!("");
            }),
        ),
        (
            "clientDataJSON not JSON",
            Box::new(|v| v["response"]["clientDataJSON"] = json!("bm90IGpzb24")),
        ),
        (
            "clientDataJSON empty",
            Box::new(|v| v["response"]["clientDataJSON"] = json!("")),
        ),
        (
            "clientDataJSON origin not a URL",
            Box::new(|v| {
                v["response"]["clientDataJSON"] = json!(base64_encode(
                    br#"{"type":"webauthn.get","challenge":"AA","origin":"::"}"#
                ));
            }),
        ),
    ];
    for (what, edit) in &edits {
        let mut registration = good_registration.clone();
        edit(&mut registration);
        let error = rp
            .finish_registration(&registration_state, &registration, None)
            .unwrap_err();
        assert_eq!(error.code(), "malformed", "registration, {what}: {error}");
        let mut answer = good_assertion.clone();
        edit(&mut answer);
        let error = rp
            .finish_authentication(&state, &answer, &new.stored, 0)
            .unwrap_err();
        assert_eq!(error.code(), "malformed", "sign-in, {what}: {error}");
    }
    // Ids only: a missing `response` is just a missing user handle.
    for (what, edit) in edits
        .iter()
        .take(9)
        .filter(|(what, _)| *what != "no response")
    {
        let mut answer = good_assertion.clone();
        edit(&mut answer);
        assert!(RelyingParty::assertion_ids(&answer).is_err(), "{what}");
    }

    let short_data: Vec<(&str, Edit)> = vec![
        (
            "authenticatorData short",
            Box::new(|v| v["response"]["authenticatorData"] = json!("AAAA")),
        ),
        (
            "authenticatorData empty",
            Box::new(|v| v["response"]["authenticatorData"] = json!("")),
        ),
        (
            "attestationObject not CBOR",
            Box::new(|v| v["response"]["attestationObject"] = json!("_____")),
        ),
        (
            "attestationObject empty map",
            Box::new(|v| v["response"]["attestationObject"] = json!("oA")),
        ),
    ];
    for (what, edit) in &short_data {
        let mut registration = good_registration.clone();
        edit(&mut registration);
        let mut answer = good_assertion.clone();
        edit(&mut answer);
        if what.starts_with("attestationObject") {
            let error = rp
                .finish_registration(&registration_state, &registration, None)
                .unwrap_err();
            assert_eq!(error.code(), "malformed", "{what}: {error}");
        } else {
            let error = rp
                .finish_authentication(&state, &answer, &new.stored, 0)
                .unwrap_err();
            assert_eq!(error.code(), "malformed", "{what}: {error}");
        }
    }

    // Attacker text in an error is bounded.
    let mut long_origin = good_assertion.clone();
    let origin = format!("https://{}.example", "a".repeat(500));
    long_origin["response"]["clientDataJSON"] = json!(base64_encode(
        json!({ "type": "webauthn.get", "challenge": "AA", "origin": origin })
            .to_string()
            .as_bytes()
    ));
    let error = rp
        .finish_authentication(&state, &long_origin, &new.stored, 0)
        .unwrap_err();
    assert!(error.to_string().len() < 600, "{error}");
}

#[test]
fn assertion_ids_reads_padding_and_bounds_the_handle() {
    let id = CredentialId::from_bytes(&[1, 2, 3, 4]).unwrap();
    let response = json!({ "id": "AQIDBA", "rawId": "AQIDBA==", "response": { "userHandle": "" } });
    assert_eq!(
        RelyingParty::assertion_ids(&response).unwrap(),
        (id.clone(), None)
    );
    let longest = base64_encode(&[9; MAX_USER_HANDLE_BYTES]);
    let response =
        json!({ "id": "AQIDBA", "rawId": "AQIDBA", "response": { "userHandle": longest } });
    assert_eq!(
        RelyingParty::assertion_ids(&response)
            .unwrap()
            .1
            .unwrap()
            .len(),
        64
    );
    let too_long = base64_encode(&[9; MAX_USER_HANDLE_BYTES + 1]);
    let response =
        json!({ "id": "AQIDBA", "rawId": "AQIDBA", "response": { "userHandle": too_long } });
    assert!(RelyingParty::assertion_ids(&response).is_err());
}

#[test]
fn ceremony_limits() {
    let rp = rp();
    let device = SoftAuthenticator::new(YUBIKEY);
    let (new, _) = register(&rp, &device);
    let at_limit = vec![new.stored.clone(); MAX_CREDENTIALS_PER_CEREMONY];
    assert!(rp.start_authentication(&at_limit).is_ok());
    let over = vec![new.stored.clone(); MAX_CREDENTIALS_PER_CEREMONY + 1];
    assert_eq!(
        rp.start_authentication(&over).unwrap_err().code(),
        "invalidRequest"
    );

    let ids = vec![new.credential_id.clone(); MAX_CREDENTIALS_PER_CEREMONY];
    assert!(rp.start_registration(&user(), &ids, false).is_ok());
    let ids = vec![new.credential_id.clone(); MAX_CREDENTIALS_PER_CEREMONY + 1];
    assert_eq!(
        rp.start_registration(&user(), &ids, false)
            .unwrap_err()
            .code(),
        "invalidRequest"
    );

    let mut longest = user();
    longest.id = vec![1; MAX_USER_HANDLE_BYTES];
    assert!(rp.start_registration(&longest, &[], false).is_ok());
    for broken in [
        UserEntity {
            id: vec![1; MAX_USER_HANDLE_BYTES + 1],
            ..user()
        },
        UserEntity {
            id: Vec::new(),
            ..user()
        },
        UserEntity {
            name: " ".into(),
            ..user()
        },
        UserEntity {
            display_name: String::new(),
            ..user()
        },
        UserEntity {
            name: "a\nb".into(),
            ..user()
        },
    ] {
        assert_eq!(
            rp.start_registration(&broken, &[], false)
                .unwrap_err()
                .code(),
            "invalidRequest"
        );
    }
}

mod attestation {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };

    /// A vendor: a root CA and an attestation certificate it issued.
    struct Vendor {
        root_pem: String,
        attestation: SoftAttestation,
    }

    fn vendor(name: &str) -> Vendor {
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name
            .push(DnType::CommonName, format!("{name} Root CA"));
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let root = CertifiedIssuer::self_signed(root, root_key).unwrap();

        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CountryName, "SE");
        leaf.distinguished_name.push(DnType::OrganizationName, name);
        leaf.distinguished_name
            .push(DnType::OrganizationalUnitName, "Authenticator Attestation");
        leaf.distinguished_name
            .push(DnType::CommonName, format!("{name} attestation"));
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &root).unwrap();
        let attestation =
            SoftAttestation::packed(&leaf_key.serialize_der(), vec![leaf_cert.der().to_vec()])
                .unwrap();
        Vendor {
            root_pem: root.pem(),
            attestation,
        }
    }

    fn device_of(vendor: &Vendor) -> SoftAuthenticator {
        let mut device = SoftAuthenticator::new(YUBIKEY);
        device.settings.attestation = vendor.attestation.clone();
        device
    }

    #[test]
    fn attestation_chaining_to_a_trusted_root_is_attested() {
        let vendor = vendor("Acme");
        let trust = AttestationTrust::from_pem(&vendor.root_pem).unwrap();
        assert_eq!(trust.len(), 1);
        let (new, mut credential) = register_on(&rp(), &device_of(&vendor), ORIGIN, Some(&trust));
        let new = new.unwrap();
        assert!(new.attested);
        assert_eq!(new.attestation_format, "packed");
        assert_eq!(new.aaguid, YUBIKEY);
        // The stored credential keeps the attestation chain and still signs in.
        let stored = stored_through_json(&new.stored);
        sign_in(&rp(), &device_of(&vendor), &mut credential, &stored, 0).unwrap();
    }

    #[test]
    fn attestation_is_verified_but_not_required_without_trust_roots() {
        let vendor = vendor("Acme");
        let (new, _) = register_on(&rp(), &device_of(&vendor), ORIGIN, None);
        let new = new.unwrap();
        assert!(!new.attested);
        assert_eq!(new.attestation_format, "packed");

        let mut self_attesting = SoftAuthenticator::new(YUBIKEY);
        self_attesting.settings.attestation = SoftAttestation::SelfAttestation;
        let (new, _) = register_on(&rp(), &self_attesting, ORIGIN, None);
        assert_eq!(new.unwrap().attestation_format, "packed");
    }

    #[test]
    fn enforced_attestation_refuses_none_self_and_foreign_roots() {
        let acme = vendor("Acme");
        let other = vendor("Other");
        let trust = AttestationTrust::from_pem(&acme.root_pem).unwrap();

        let (none, _) = register_on(
            &rp(),
            &SoftAuthenticator::new(YUBIKEY),
            ORIGIN,
            Some(&trust),
        );
        assert_eq!(none.unwrap_err(), CeremonyError::AttestationMissing);

        let mut self_attesting = SoftAuthenticator::new(YUBIKEY);
        self_attesting.settings.attestation = SoftAttestation::SelfAttestation;
        let (self_attested, _) = register_on(&rp(), &self_attesting, ORIGIN, Some(&trust));
        assert_eq!(
            self_attested.unwrap_err(),
            CeremonyError::AttestationMissing
        );

        let (foreign, _) = register_on(&rp(), &device_of(&other), ORIGIN, Some(&trust));
        assert_eq!(foreign.unwrap_err(), CeremonyError::AttestationUntrusted);

        // Trusting both roots accepts either vendor.
        let both = AttestationTrust::from_pem(&format!(
            "# Acme\n{}\n# Other\n{}",
            acme.root_pem, other.root_pem
        ))
        .unwrap();
        assert_eq!(both.len(), 2);
        let (accepted, _) = register_on(&rp(), &device_of(&other), ORIGIN, Some(&both));
        assert!(accepted.unwrap().attested);
    }

    #[test]
    fn an_attestation_signed_by_another_key_is_invalid() {
        let acme = vendor("Acme");
        let other = vendor("Other");
        let (SoftAttestation::Packed { x5c, .. }, SoftAttestation::Packed { key, .. }) =
            (&acme.attestation, &other.attestation)
        else {
            panic!("packed attestations");
        };
        let mut device = SoftAuthenticator::new(YUBIKEY);
        device.settings.attestation = SoftAttestation::Packed {
            key: key.clone(),
            x5c: x5c.clone(),
        };
        let (registration, _) = register_on(&rp(), &device, ORIGIN, None);
        assert_eq!(registration.unwrap_err().code(), "attestationInvalid");
    }

    #[test]
    fn trust_roots_parse_pem_certificates_only() {
        let acme = vendor("Acme");
        let problem = |pem: &str| AttestationTrust::from_pem(pem).unwrap_err().to_string();
        assert!(problem("").contains("no PEM CERTIFICATE block"));
        assert!(
            problem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .contains("PRIVATE KEY; give CERTIFICATE blocks only")
        );
        assert!(
            problem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .contains("certificate 1 is not a valid X.509 certificate")
        );
        assert!(problem("-----BEGIN CERTIFICATE-----\nAAAA\n").contains("no END line"));
        assert!(problem("-----BEGIN CERTIFICATE").contains("unterminated"));
        let at_limit = acme.root_pem.repeat(MAX_TRUST_ROOTS);
        let trust = AttestationTrust::from_pem(&at_limit).unwrap();
        assert_eq!(trust.len(), 1, "the same certificate counted once");
        assert!(format!("{trust:?}").contains("certificates: 64"));
        let over = acme.root_pem.repeat(MAX_TRUST_ROOTS + 1);
        assert!(problem(&over).contains("at most 64 certificates"));
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;
    use std::sync::OnceLock;

    struct Fixture {
        rp: RelyingParty,
        registration: RegistrationState,
        registration_answer: Value,
        authentication: AuthenticationState,
        assertion: Value,
        stored: StoredCredential,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let rp = rp();
            let device = SoftAuthenticator::new(YUBIKEY);
            let (new, mut credential) = register(&rp, &device);
            let (options, registration) = rp.start_registration(&user(), &[], false).unwrap();
            let (registration_answer, _) = device.create(&options, ORIGIN).unwrap();
            let (assertion, authentication) = assertion(
                &rp,
                &device,
                &mut credential,
                std::slice::from_ref(&new.stored),
                ORIGIN,
            );
            Fixture {
                rp,
                registration,
                registration_answer,
                authentication,
                assertion,
                stored: new.stored,
            }
        })
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[A-Za-z0-9_=+/-]{0,64}".prop_map(Value::String),
            ".{0,16}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("rawId".to_owned()),
                        Just("type".to_owned()),
                        Just("response".to_owned()),
                        Just("authenticatorData".to_owned()),
                        Just("clientDataJSON".to_owned()),
                        Just("attestationObject".to_owned()),
                        Just("signature".to_owned()),
                        Just("userHandle".to_owned()),
                        "[a-z]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The fields whose bytes the property tests replace.
    const BINARY_FIELDS: [&str; 4] = [
        "authenticatorData",
        "clientDataJSON",
        "signature",
        "userHandle",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_json_is_refused(value in any_json()) {
            let f = fixture();
            prop_assert!(f.rp.finish_registration(&f.registration, &value, None).is_err());
            prop_assert!(f.rp.finish_authentication(&f.authentication, &value, &f.stored, 0).is_err());
            let _ = RelyingParty::assertion_ids(&value);
        }

        #[test]
        fn arbitrary_bytes_in_an_assertion_are_refused(
            field in 0..BINARY_FIELDS.len(),
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let f = fixture();
            let mut answer = f.assertion.clone();
            answer["response"][BINARY_FIELDS[field]] = json!(base64_encode(&bytes));
            let result = f.rp.finish_authentication(&f.authentication, &answer, &f.stored, 0);
            // Only a user handle may change without breaking the signature.
            // (With an allow list the user handle is the caller's to check.)
            prop_assert_eq!(result.is_ok(), BINARY_FIELDS[field] == "userHandle" && bytes.len() <= 64);
            let _ = RelyingParty::assertion_ids(&answer);
        }

        #[test]
        fn arbitrary_bytes_in_a_registration_are_refused(
            in_attestation in any::<bool>(),
            bytes in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            let f = fixture();
            let mut answer = f.registration_answer.clone();
            let field = if in_attestation { "attestationObject" } else { "clientDataJSON" };
            answer["response"][field] = json!(base64_encode(&bytes));
            prop_assert!(f.rp.finish_registration(&f.registration, &answer, None).is_err());
        }

        #[test]
        fn any_flipped_byte_breaks_an_assertion(
            field in 0..3usize,
            position in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let f = fixture();
            let mut answer = f.assertion.clone();
            let name = BINARY_FIELDS[field];
            let mut bytes = base64_decode(answer["response"][name].as_str().unwrap_or_default());
            let at = position.index(bytes.len());
            bytes[at] ^= mask;
            answer["response"][name] = json!(base64_encode(&bytes));
            prop_assert!(f.rp.finish_authentication(&f.authentication, &answer, &f.stored, 0).is_err());
        }

        #[test]
        fn any_flipped_byte_of_a_registration_is_refused_or_harmless(
            position in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let f = fixture();
            let mut answer = f.registration_answer.clone();
            let mut bytes = base64_decode(answer["response"]["attestationObject"].as_str().unwrap_or_default());
            let at = position.index(bytes.len());
            bytes[at] ^= mask;
            answer["response"]["attestationObject"] = json!(base64_encode(&bytes));
            // Attestation "none" signs nothing, so some flips (the AAGUID, the counter) still
            // register; none may panic, and none may change the credential id unnoticed.
            if let Ok(new) = f.rp.finish_registration(&f.registration, &answer, None) {
                prop_assert_eq!(new.credential_id.as_str(), answer["rawId"].as_str().unwrap_or_default());
                prop_assert_eq!(new.stored.credential_id(), &new.credential_id);
            }
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}
