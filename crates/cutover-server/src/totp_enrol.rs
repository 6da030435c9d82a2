//! The authenticator app (TOTP, RFC 6238; SPEC §6.2) on the user's own pages: enrolment at
//! `/my/security/totp` (a QR code of the `otpauth://` URI, the key for typing, and the first
//! code to confirm), removal, and the checked use of a code that the sign-in's second-factor
//! step shares ([`check_code`]).
//!
//! One enrolment per user. The secret is sealed with the key-encryption key (bound to the
//! user) before it reaches the store, and is never logged. Registering or removing needs a
//! recent strong sign-in (`cutover_core::methods_policy::may_register`) and the methods policy's
//! `totp` target. A code passes once across all nodes: the verifier's new state is written by
//! compare-and-set on the enrolment's version, and a lost race is read and checked again.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use base64::Engine as _;
use cutover_core::Timestamp;
use cutover_core::methods_policy::{PolicyMethod, RegistrationGate};
use cutover_core::totp::{
    self, SECRET_BYTES, TotpCheck, TotpParams, TotpState, base32_encode, enrolment_expired,
    otpauth_uri,
};
use cutover_store::{StoreError, TotpRecord, UserRecord};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::error::PageError;
use crate::my::{MySession, check_csrf, registration_gate, require_session};
use crate::pages::{self, esc};
use crate::{AppState, RequestCtx};

/// The enrolment page.
pub const TOTP_PATH: &str = "/my/security/totp";
const REMOVE_PATH: &str = "/my/security/totp/remove";
/// Audit actions (actor `user:<upn>`).
pub const REGISTER_ACTION: &str = "registerTotp";
/// The audit action of a confirmed enrolment (the first right code).
pub const CONFIRM_ACTION: &str = "confirmTotp";
pub const DELETE_ACTION: &str = "deleteTotp";
/// The name an enrolment gets (one per user).
const ENROLMENT_NAME: &str = "Authenticator app";
/// Reads and compare-and-set writes for one code before giving up: each lost race means
/// another attempt on the same enrolment was written in between.
pub const MAX_CAS_ATTEMPTS: usize = 4;
/// Side of the QR code image, in CSS pixels.
const QR_PIXELS: u32 = 220;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(TOTP_PATH, get(enrol_get).post(enrol_confirm))
        .route(REMOVE_PATH, post(remove_post))
}

/// What the security-info page shows of a user's enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpSummary {
    /// `false` while enrolment waits for the first code.
    pub confirmed: bool,
    pub created_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
}

/// The user's enrolment, if any (a pending one too, until it expires).
pub async fn status(state: &AppState, user_id: Uuid) -> Result<Option<TotpSummary>, StoreError> {
    let now = state.now();
    Ok(state
        .store
        .get_totp(user_id)
        .await?
        .filter(|t| t.confirmed_at.is_some() || !enrolment_expired(t.created_at, now))
        .map(|t| TotpSummary {
            confirmed: t.confirmed_at.is_some(),
            created_at: t.created_at,
            confirmed_at: t.confirmed_at,
        }))
}

/// The sealing label of a user's TOTP secret: a sealed secret cannot be moved to another user.
fn seal_label(user_id: Uuid) -> String {
    format!("totp:{user_id}")
}

/// An enrolment with its secret open. Deliberately not `Debug`.
struct Opened {
    record: TotpRecord,
    secret: Vec<u8>,
    params: TotpParams,
    verifier: TotpState,
}

/// Open a stored enrolment; `None` (logged, without any secret) when it cannot be read.
fn open(state: &AppState, record: TotpRecord) -> Option<Opened> {
    let secret = match state
        .config
        .key_encryption_key
        .open(&seal_label(record.user_id), &record.secret_sealed)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(user = %record.user_id, enrolment = %record.id, error = %e, "a TOTP secret cannot be opened with this node's key-encryption key");
            return None;
        }
    };
    let params = serde_json::from_str::<TotpParams>(&record.params);
    let verifier = serde_json::from_str::<TotpState>(&record.state);
    match (params, verifier) {
        (Ok(params), Ok(verifier)) => Some(Opened {
            record,
            secret,
            params,
            verifier,
        }),
        _ => {
            tracing::error!(user = %record.user_id, enrolment = %record.id, "a stored TOTP enrolment has unreadable parameters or state");
            None
        }
    }
}

/// Which enrolment a code is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A sign-in's second factor: the confirmed enrolment.
    SignIn,
    /// The first code of enrolment `id`, which it confirms.
    Confirm { id: Uuid },
}

/// The answer to one typed code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeCheck {
    /// Right and fresh; now spent (and for [`Purpose::Confirm`], the enrolment confirmed).
    Accepted,
    /// Refused by the verifier (wrong, replayed, malformed, too many attempts); counted.
    Refused(TotpCheck),
    /// No enrolment to check against (none, another one, or for a sign-in not confirmed).
    NotEnrolled,
    /// The pending enrolment is older than `ENROLMENT_TTL_SECS`.
    Expired,
    /// The enrolment to confirm is confirmed already.
    AlreadyConfirmed,
    /// Lost the compare-and-set [`MAX_CAS_ATTEMPTS`] times in a row.
    Busy,
}

/// Check `typed` for the user's enrolment and store what the verifier learnt, by
/// compare-and-set: when another attempt wrote first, read again and check again, so of
/// racing submissions of one code exactly one is accepted.
pub(crate) async fn check_code(
    state: &AppState,
    user_id: Uuid,
    typed: &str,
    purpose: Purpose,
) -> Result<CodeCheck, StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let now = state.now();
        let Some(record) = state.store.get_totp(user_id).await? else {
            return Ok(CodeCheck::NotEnrolled);
        };
        match purpose {
            Purpose::SignIn if record.confirmed_at.is_none() => {
                return Ok(CodeCheck::NotEnrolled);
            }
            Purpose::SignIn => {}
            Purpose::Confirm { id } => {
                if record.id != id {
                    return Ok(CodeCheck::NotEnrolled);
                }
                if record.confirmed_at.is_some() {
                    return Ok(CodeCheck::AlreadyConfirmed);
                }
                if enrolment_expired(record.created_at, now) {
                    return Ok(CodeCheck::Expired);
                }
            }
        }
        let Some(opened) = open(state, record) else {
            return Ok(CodeCheck::Refused(TotpCheck::Malformed));
        };
        let (next, check) =
            totp::verify(&opened.secret, opened.params, typed, &opened.verifier, now);
        if next != opened.verifier {
            let text = serde_json::to_string(&next)
                .map_err(|e| StoreError::Corrupt(format!("TOTP state: {e}")))?;
            let confirm_at = (matches!(purpose, Purpose::Confirm { .. })
                && matches!(check, TotpCheck::Accepted { .. }))
            .then_some(now);
            let written = state
                .store
                .update_totp_state(
                    user_id,
                    opened.record.id,
                    opened.record.version,
                    &text,
                    confirm_at,
                )
                .await?;
            if !written {
                tracing::debug!(user = %user_id, "a TOTP check lost the compare-and-set; checking again");
                continue;
            }
        }
        return Ok(match check {
            TotpCheck::Accepted { .. } => CodeCheck::Accepted,
            other => CodeCheck::Refused(other),
        });
    }
    tracing::warn!(user = %user_id, attempts = MAX_CAS_ATTEMPTS, "a TOTP check kept losing the compare-and-set; the attempt was given up");
    Ok(CodeCheck::Busy)
}

/// Whether the methods policy lets this user use an authenticator app.
async fn policy_allows(state: &AppState, user_id: Uuid) -> Result<bool, StoreError> {
    let policy = crate::passkeys::load_methods_policy(state).await?;
    let groups = crate::passkeys::user_groups(state, user_id).await?;
    Ok(policy.allows(PolicyMethod::Totp, &groups))
}

/// The issuer name an authenticator app shows next to the account: the server's host.
fn issuer_name(state: &AppState) -> String {
    url::Url::parse(&state.config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "Cutover".into())
}

/// The key in groups of four, as people type it.
fn grouped(secret: &[u8]) -> String {
    let text = base32_encode(secret);
    text.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The QR code of `uri` as an SVG `data:` URI (the pages' CSP allows `img-src data:`).
fn qr_data_uri(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(QR_PIXELS, QR_PIXELS)
        .quiet_zone(true)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

fn error_block(error: Option<&str>) -> String {
    error
        .map(|e| {
            format!(
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default()
}

fn back_link() -> &'static str {
    "<p class=\"small\"><a id=\"back\" href=\"/my/security\">Back to Security info</a></p>"
}

/// Registering or removing is not allowed now: why, and the way forward.
fn gate_page(me: &MySession, gate: RegistrationGate) -> Response {
    let why = match gate {
        RegistrationGate::StrongSignInTooOld => {
            "For your security, setting up or removing an authenticator app needs a strong sign-in from the last few minutes."
        }
        _ => {
            "For your security, setting up or removing an authenticator app needs a strong sign-in: with a passkey, a code from an authenticator app you already have, or a Temporary Access Pass."
        }
    };
    let body = format!(
        "<h1>Sign in again first</h1><p class=\"who\" id=\"who\">{u}</p>\
         <div class=\"error\" id=\"gate\" role=\"status\">{why} Sign in again with a strong method, or ask your helpdesk for a Temporary Access Pass.</div>\
         <p><a id=\"signin-again\" href=\"/my/signin\">Sign in again</a></p>{back}",
        u = esc(me.user.user.upn.as_str()),
        back = back_link(),
    );
    (
        StatusCode::FORBIDDEN,
        pages::page("Sign in again first", &body),
    )
        .into_response()
}

fn not_allowed_page(me: &MySession) -> Response {
    let body = format!(
        "<h1>Authenticator apps are not available</h1><p class=\"who\" id=\"who\">{u}</p>\
         <p id=\"message\">Your organisation does not allow authenticator apps for your account. Use a passkey instead, or contact your helpdesk.</p>{back}",
        u = esc(me.user.user.upn.as_str()),
        back = back_link(),
    );
    (
        StatusCode::FORBIDDEN,
        pages::page("Authenticator apps are not available", &body),
    )
        .into_response()
}

/// The user's confirmed enrolment, with a remove button when the gate allows.
fn registered_page(me: &MySession, record: &TotpRecord, allowed: bool) -> Response {
    let since = record.confirmed_at.unwrap_or(record.created_at);
    let remove = if allowed {
        format!(
            "<form method=\"post\" action=\"{REMOVE_PATH}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <button type=\"submit\" id=\"remove-totp\" class=\"secondary\">Remove the authenticator app</button></form>",
            c = esc(&me.csrf),
            id = record.id,
        )
    } else {
        "<p class=\"small\" id=\"gate\">To remove it, <a id=\"signin-again\" href=\"/my/signin\">sign in again</a> with a strong method first.</p>".to_owned()
    };
    let body = format!(
        "<h1>Authenticator app</h1><p class=\"who\" id=\"who\">{u}</p>\
         <p id=\"status\" data-confirmed=\"true\">An authenticator app is set up for your account (since {d}). To move it to another phone, remove it here and set it up again.</p>{remove}{back}",
        u = esc(me.user.user.upn.as_str()),
        d = esc(&rfc3339(since).chars().take(10).collect::<String>()),
        back = back_link(),
    );
    pages::page("Authenticator app", &body).into_response()
}

/// The enrolment page: the QR code, the key for typing and the first code.
fn enrol_page(state: &AppState, me: &MySession, opened: &Opened, error: Option<&str>) -> Response {
    let upn = me.user.user.upn.to_string();
    let uri = otpauth_uri(&issuer_name(state), &upn, &opened.secret, opened.params);
    let qr = match qr_data_uri(&uri) {
        Some(src) => format!(
            "<p><img id=\"qr\" src=\"{src}\" width=\"{QR_PIXELS}\" height=\"{QR_PIXELS}\" alt=\"QR code to add your account to an authenticator app\"></p>"
        ),
        None => String::new(),
    };
    let expires = opened.record.created_at.plus_secs(totp::ENROLMENT_TTL_SECS);
    let aria = if error.is_some() {
        " aria-describedby=\"error\" aria-invalid=\"true\""
    } else {
        ""
    };
    let body = format!(
        "<h1>Set up an authenticator app</h1><p class=\"who\" id=\"who\">{u}</p>{err}\
         <p>1. In your authenticator app (for example Microsoft Authenticator, Google Authenticator or your password manager), add an account and scan this QR code.</p>{qr}\
         <p class=\"small\">Cannot scan it? Add the account by hand with this key (time-based, {digits} digits, every {period} seconds):</p>\
         <p><code id=\"secret\" style=\"font-size:1.1rem;letter-spacing:.05em\">{key}</code></p>\
         <p>2. Enter the code the app now shows, to finish.</p>\
         <form method=\"post\" action=\"{TOTP_PATH}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{c}\"><input type=\"hidden\" name=\"id\" value=\"{id}\">\
         <label for=\"otp\">Code from the app</label>\
         <input type=\"text\" id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"16\" spellcheck=\"false\" required autofocus{aria}>\
         <button type=\"submit\" id=\"verify\">Verify and finish</button></form>\
         <p class=\"small\" id=\"expires\">This setup is valid until {until}.</p>{back}",
        u = esc(&upn),
        err = error_block(error),
        digits = opened.params.digits,
        period = opened.params.period_secs,
        key = esc(&grouped(&opened.secret)),
        c = esc(&me.csrf),
        id = opened.record.id,
        until = esc(&rfc3339(expires)),
        back = back_link(),
    );
    pages::page("Set up an authenticator app", &body).into_response()
}

/// Start an enrolment: a fresh secret, sealed, stored pending (replacing an expired pending
/// one), audited.
async fn start_enrolment(
    state: &AppState,
    ctx: &RequestCtx,
    user: &UserRecord,
) -> Result<Opened, PageError> {
    let now = state.now();
    let secret = crate::crypto::random_bytes(SECRET_BYTES);
    let params = TotpParams::default();
    let id = Uuid::now_v7();
    let record = TotpRecord {
        user_id: user.user.id,
        id,
        secret_sealed: state
            .config
            .key_encryption_key
            .seal(&seal_label(user.user.id), &secret),
        params: serde_json::to_string(&params).map_err(PageError::internal)?,
        state: serde_json::to_string(&TotpState::default()).map_err(PageError::internal)?,
        version: 0,
        created_at: now,
        confirmed_at: None,
        name: ENROLMENT_NAME.into(),
    };
    let audit = crate::passkeys::user_audit(
        ctx,
        user,
        now,
        REGISTER_ACTION,
        Some(json!({"totpId": id, "name": ENROLMENT_NAME, "status": "pending"})),
    );
    state.store.put_totp(&record, &audit).await?;
    tracing::info!(user = %user.user.upn, enrolment = %id, "a TOTP enrolment was started");
    Ok(Opened {
        record,
        secret,
        params,
        verifier: TotpState::default(),
    })
}

async fn enrol_get(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let me = match require_session(&state, &headers, TOTP_PATH).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    let now = state.now();
    let gate = registration_gate(&me, now);
    let allowed = matches!(gate, RegistrationGate::Allowed { .. });
    let existing = state.store.get_totp(me.user.user.id).await?;
    if let Some(record) = existing.as_ref().filter(|r| r.confirmed_at.is_some()) {
        return Ok(registered_page(&me, record, allowed));
    }
    if !policy_allows(&state, me.user.user.id).await? {
        return Ok(not_allowed_page(&me));
    }
    if !allowed {
        return Ok(gate_page(&me, gate));
    }
    // A pending enrolment still valid is shown again (the app may have scanned it already).
    let pending = existing
        .filter(|r| !enrolment_expired(r.created_at, now))
        .and_then(|r| open(&state, r));
    let opened = match pending {
        Some(o) => o,
        None => start_enrolment(&state, &ctx, &me.user).await?,
    };
    Ok(enrol_page(&state, &me, &opened, None))
}

#[derive(Deserialize)]
struct ConfirmForm {
    csrf: Option<String>,
    id: Option<String>,
    otp: Option<String>,
}

fn start_again_page(title: &'static str, message: &str) -> Response {
    (
        StatusCode::CONFLICT,
        pages::error_page_with_action(title, message, TOTP_PATH, "Start again"),
    )
        .into_response()
}

async fn enrol_confirm(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, PageError> {
    let me = match require_session(&state, &headers, TOTP_PATH).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    check_csrf(&me, form.csrf.as_deref())?;
    let gate = registration_gate(&me, state.now());
    if !matches!(gate, RegistrationGate::Allowed { .. }) {
        return Ok(gate_page(&me, gate));
    }
    if !policy_allows(&state, me.user.user.id).await? {
        return Ok(not_allowed_page(&me));
    }
    let Some(id) = form.id.as_deref().and_then(|i| Uuid::parse_str(i).ok()) else {
        return Ok(start_again_page(
            "This setup is not valid",
            "The form did not name a setup. Start again.",
        ));
    };
    let user_id = me.user.user.id;
    let typed = form.otp.unwrap_or_default();
    match check_code(&state, user_id, &typed, Purpose::Confirm { id }).await? {
        CodeCheck::Accepted => {
            tracing::info!(user = %me.user.user.upn, enrolment = %id, "a TOTP enrolment was confirmed");
            // The confirmation is what makes the method usable: audited on its own (the
            // started enrolment was audited when it was written).
            let audit = crate::passkeys::user_audit(
                &ctx,
                &me.user,
                state.now(),
                CONFIRM_ACTION,
                Some(json!({"totpId": id, "name": ENROLMENT_NAME, "status": "confirmed"})),
            );
            state.store.insert_audit_event(&audit).await?;
            let body = format!(
                "<h1>Your authenticator app is set up</h1><p class=\"who\" id=\"who\">{u}</p>\
                 <div class=\"ok\" id=\"notice\" role=\"status\">From now on, when a sign-in asks for a second step, enter the code your app shows.</div>{back}",
                u = esc(me.user.user.upn.as_str()),
                back = back_link(),
            );
            Ok(pages::page("Your authenticator app is set up", &body).into_response())
        }
        CodeCheck::Refused(check) => {
            let message = match check {
                TotpCheck::TooManyAttempts { retry_after_secs } => format!(
                    "Too many wrong codes. Wait {} minute(s), then enter the newest code from the app.",
                    (retry_after_secs + 59) / 60
                ),
                TotpCheck::Malformed => {
                    "Enter the code as the app shows it: digits only (spaces are fine).".into()
                }
                _ => "That code is not right. Check that the app's account is the one you just added, wait for the next code and try again.".into(),
            };
            // Shown again with the same key: the app has it already.
            match state
                .store
                .get_totp(user_id)
                .await?
                .and_then(|r| open(&state, r))
            {
                Some(opened) if opened.record.id == id => Ok((
                    StatusCode::OK,
                    enrol_page(&state, &me, &opened, Some(&message)),
                )
                    .into_response()),
                _ => Ok(start_again_page(
                    "This setup was replaced",
                    "This setup was replaced or removed meanwhile. Start again.",
                )),
            }
        }
        CodeCheck::Expired => Ok(start_again_page(
            "This setup has expired",
            "The setup was not finished in time. Start again: you will get a new QR code (remove the old account from your app).",
        )),
        CodeCheck::NotEnrolled => Ok(start_again_page(
            "This setup was replaced",
            "This setup was replaced or removed meanwhile (perhaps in another window). Start again.",
        )),
        CodeCheck::AlreadyConfirmed => Ok(Redirect::to(TOTP_PATH).into_response()),
        CodeCheck::Busy => Err(PageError::unavailable()),
    }
}

#[derive(Deserialize)]
struct RemoveForm {
    csrf: Option<String>,
    id: Option<String>,
}

async fn remove_post(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<RemoveForm>,
) -> Result<Response, PageError> {
    let me = match require_session(&state, &headers, TOTP_PATH).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    check_csrf(&me, form.csrf.as_deref())?;
    let now = state.now();
    let gate = registration_gate(&me, now);
    if !matches!(gate, RegistrationGate::Allowed { .. }) {
        return Ok(gate_page(&me, gate));
    }
    let Some(id) = form.id.as_deref().and_then(|i| Uuid::parse_str(i).ok()) else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Nothing to remove",
            "The form did not name an authenticator app. Open Security info and try again.",
        ));
    };
    let audit = crate::passkeys::user_audit(
        &ctx,
        &me.user,
        now,
        DELETE_ACTION,
        Some(json!({"totpId": id})),
    );
    match state.store.delete_totp(me.user.user.id, id, &audit).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => {
            return Err(PageError::new(
                StatusCode::NOT_FOUND,
                "Nothing to remove",
                "This authenticator app is not registered (already removed?). Open Security info to see what is.",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %me.user.user.upn, enrolment = %id, "a TOTP enrolment was removed");
    let body = format!(
        "<h1>Authenticator app removed</h1><p class=\"who\" id=\"who\">{u}</p>\
         <div class=\"ok\" id=\"notice\" role=\"status\">The authenticator app was removed from your account. You can delete the account from the app too.</div>\
         <p><a id=\"setup\" href=\"{TOTP_PATH}\">Set up an authenticator app</a></p>{back}",
        u = esc(me.user.user.upn.as_str()),
        back = back_link(),
    );
    Ok(pages::page("Authenticator app removed", &body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_grouped_in_fours_and_decodes_back() {
        let secret: Vec<u8> = (0u8..20).collect();
        let g = grouped(&secret);
        assert_eq!(g.split(' ').count(), 8, "{g}");
        assert!(g.split(' ').all(|p| p.len() == 4), "{g}");
        assert_eq!(totp::base32_decode(&g).unwrap(), secret);
    }

    #[test]
    fn the_qr_code_is_an_svg_data_uri() {
        let uri = otpauth_uri(
            "login.example",
            "a@b.example",
            &[7u8; 20],
            TotpParams::default(),
        );
        let src = qr_data_uri(&uri).unwrap();
        let b64 = src.strip_prefix("data:image/svg+xml;base64,").unwrap();
        let svg = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(!src.contains('"') && !src.contains('<'));
    }

    #[test]
    fn sealing_is_bound_to_the_user() {
        let kek = crate::crypto::KeyEncryptionKey::generate();
        let a = Uuid::from_u128(1);
        let sealed = kek.seal(&seal_label(a), b"secret bytes 1234567");
        assert!(kek.open(&seal_label(a), &sealed).is_ok());
        assert!(kek.open(&seal_label(Uuid::from_u128(2)), &sealed).is_err());
    }
}
