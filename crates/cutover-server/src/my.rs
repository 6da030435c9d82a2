//! The user's own pages: "Security info" (`/my/security`) — add, list and remove passkeys,
//! with guidance for the device in hand, and the authenticator app. Signed in by the SSO
//! session cookie; a visitor without one is sent through the ordinary sign-in pages first
//! (as Cutover's own pseudo-application, which gets the session and no code).
//!
//! Registering or removing a method needs a recent strong sign-in
//! (`cutover_core::methods_policy::may_register`): a password alone is not enough, because a
//! stolen password must not be able to add the thief's passkey.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use cutover_core::ClientAppType;
use cutover_core::authorize::Prompt;
use cutover_core::device::{DeviceFamily, family_of};
use cutover_core::limits::SIGN_IN_TXN_TTL_SECS;
use cutover_core::methods_policy::{RegistrationGate, may_register};
use cutover_store::{SignInTransaction, SsoSession, UserRecord};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::error::PageError;
use crate::pages::{self, esc};
use crate::signin::{BROWSER_COOKIE, BROWSER_COOKIE_TTL_SECS, SESSION_COOKIE, TxnData, cookie};
use crate::{AppState, RequestCtx};

/// The client id sign-ins to Cutover's own pages carry (no application row: no code, no token).
pub const MY_CLIENT_ID: &str = "cutover-my-account";
const MY_APP_NAME: &str = "Security info";
const SECURITY: &str = "/my/security";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(SECURITY, get(security_get))
        .route("/my/signin", get(signin_again))
        .route("/my/security/passkeys/options", post(passkey_options))
        .route("/my/security/passkeys", post(passkey_add))
        .route("/my/security/passkeys/{id}/delete", post(passkey_delete))
}

/// A signed-in visitor of the user's own pages.
pub struct MySession {
    pub user: UserRecord,
    pub session: SsoSession,
    /// The CSRF token of this session's forms.
    pub csrf: String,
}

/// The signed-in user, or a redirect through the sign-in pages back to `return_to` (a path on
/// this server).
pub(crate) async fn require_session(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    return_to: &str,
) -> Result<MySession, Response> {
    let now = state.now();
    if let Some(value) = crate::signin::read_cookie(headers, SESSION_COOKIE) {
        let id_hash = state.hasher.hash("session", &value);
        match state.store.get_session(&id_hash, now).await {
            Ok(Some(session)) => match state.store.get_user(session.user_id).await {
                Ok(Some(user)) if user.user.account_enabled => {
                    let csrf = state.hasher.hash("my-csrf", &session.id_hash);
                    return Ok(MySession {
                        user,
                        session,
                        csrf,
                    });
                }
                Ok(_) => {}
                Err(e) => return Err(PageError::from(e).into_response()),
            },
            Ok(None) => {}
            Err(e) => return Err(PageError::from(e).into_response()),
        }
    }
    Err(
        match start_sign_in(state, headers, return_to, Prompt::Default, None, None).await {
            Ok(redirect) => redirect,
            Err(e) => e.into_response(),
        },
    )
}

/// Open a sign-in transaction for Cutover's own pages and send the browser to it. It returns
/// to `return_to` when that is a path of the user's own pages (`/my/…`) or of the admin web UI
/// (`/admin`, `/admin/…`, `/admin?…`), else to Security info.
pub(crate) async fn start_sign_in(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    return_to: &str,
    prompt: Prompt,
    login_hint: Option<String>,
    acr: Option<cutover_core::strength::BuiltIn>,
) -> Result<Response, PageError> {
    let now = state.now();
    let admin = crate::ui::is_admin_path(return_to);
    let return_to = if return_to.starts_with("/my/") || admin {
        return_to
    } else {
        SECURITY
    };
    let app_name = if admin {
        crate::ui::ADMIN_APP_NAME
    } else {
        MY_APP_NAME
    };
    let (bb, new_bb) = match crate::signin::read_cookie(headers, BROWSER_COOKIE) {
        Some(bb) => (bb, false),
        None => (crate::crypto::random_token(), true),
    };
    let txn_id = crate::crypto::random_token();
    // Built from JSON so that fields the sign-in steps add later keep their defaults.
    let txn: TxnData = serde_json::from_value(json!({
        "clientId": MY_CLIENT_ID,
        "appId": Uuid::nil(),
        "appName": app_name,
        "clientAppType": ClientAppType::Browser,
        "redirectUri": format!("{}{return_to}", state.config.issuer),
        "scopes": [],
        "state": null,
        "nonce": null,
        "codeChallenge": null,
        "prompt": prompt,
        "maxAge": null,
        "loginHint": login_hint,
        "domainHint": null,
        "browserBinding": state.hasher.hash("browser", &bb),
        "correlationId": Uuid::now_v7(),
        "acr": acr,
    }))
    .map_err(PageError::internal)?;
    let data = serde_json::to_value(&txn).map_err(PageError::internal)?;
    state
        .store
        .create_sign_in_transaction(&SignInTransaction {
            id: txn_id.clone(),
            data,
            created_at: now,
            expires_at: now.plus_secs(SIGN_IN_TXN_TTL_SECS),
        })
        .await?;
    let mut res = Redirect::to(&format!("/login?t={txn_id}")).into_response();
    if new_bb {
        res.headers_mut().append(
            header::SET_COOKIE,
            cookie(
                BROWSER_COOKIE,
                &bb,
                BROWSER_COOKIE_TTL_SECS,
                state.config.secure_cookies(),
            ),
        );
    }
    Ok(res)
}

/// Check the CSRF token of a form on the user's own pages.
pub(crate) fn check_csrf(me: &MySession, presented: Option<&str>) -> Result<(), PageError> {
    use subtle::ConstantTimeEq;
    let ok = presented.is_some_and(|p| p.as_bytes().ct_eq(me.csrf.as_bytes()).into());
    if ok {
        Ok(())
    } else {
        tracing::warn!(user = %me.user.user.upn, "a security-info form was refused: CSRF token missing or wrong");
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The form could not be verified",
            "For your security the form was refused. Open Security info again and retry.",
        ))
    }
}

/// Whether this session may register or remove a method now.
pub(crate) fn registration_gate(me: &MySession, now: cutover_core::Timestamp) -> RegistrationGate {
    may_register(&me.session.methods, me.session.auth_time, now)
}

/// "Sign in again" to unlock registration: a fresh sign-in (prompt=login) of the same user.
async fn signin_again(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let me = require_session(&state, &headers, SECURITY).await.ok();
    // A user with an authenticator app is asked for a code after the password: that makes
    // the new session strong. (A passkey on the identifier page is strong on its own.)
    let acr = match &me {
        Some(me) => crate::totp_enrol::status(&state, me.user.user.id)
            .await?
            .is_some_and(|t| t.confirmed)
            .then_some(cutover_core::strength::BuiltIn::Mfa),
        None => None,
    };
    let hint = me.map(|me| me.user.user.upn.to_string());
    start_sign_in(&state, &headers, SECURITY, Prompt::Login, hint, acr).await
}

#[derive(Deserialize)]
struct Notice {
    done: Option<String>,
    error: Option<String>,
    sig: Option<String>,
}

/// What to tell a user on a device of this family (the full enrolment guides come with the
/// rollout campaigns; these are the pitfalls that matter at the moment of adding a passkey).
pub fn device_guidance(family: DeviceFamily) -> &'static str {
    use cutover_core::device::AndroidMaker;
    match family {
        DeviceFamily::IPhone => {
            "On iPhone the passkey is saved in iCloud Keychain (Passwords) and synced to your other Apple devices. If another password manager is set as the default for passkeys, it may take the passkey instead: check Settings › General › AutoFill & Passwords."
        }
        DeviceFamily::Android(AndroidMaker::Samsung) => {
            "Samsung phones may offer to save the passkey in Samsung Pass. Choose Google Password Manager if you want it available on your other devices; either works here."
        }
        DeviceFamily::Android(AndroidMaker::Xiaomi)
        | DeviceFamily::Android(AndroidMaker::Huawei) => {
            "On this phone the passkey may be stored only on the device and not synced. Register a second passkey (on another device or a security key) so that losing this phone does not lock you out."
        }
        DeviceFamily::Android(_) => {
            "On Android the passkey is saved in Google Password Manager and synced to your Google account. Keep the screen lock on: it protects the passkey."
        }
        DeviceFamily::Windows => {
            "On Windows the passkey is kept by Windows Hello on this computer (PIN, face or fingerprint). It does not follow you to other devices: add one on your phone too."
        }
        DeviceFamily::MacOs => {
            "On a Mac the passkey is saved in iCloud Keychain and synced to your iPhone and iPad. Chrome may offer to save it in its own profile instead; choose iCloud Keychain to have it everywhere."
        }
        DeviceFamily::Linux => {
            "On Linux, use your phone (scan the QR code the browser shows) or a security key: most Linux browsers cannot store passkeys themselves."
        }
        DeviceFamily::SecurityKey => {
            "Insert or tap your security key when the browser asks, and enter its PIN. A security key holds the passkey itself: keep a second key or a phone passkey as a backup."
        }
        DeviceFamily::Unknown => {
            "Your browser will ask where to save the passkey: this device, your phone (by QR code) or a security key. Add a second passkey on another device as a backup."
        }
    }
}

pub(crate) fn gate_block(me: &MySession, now: cutover_core::Timestamp) -> String {
    match registration_gate(me, now) {
        RegistrationGate::Allowed { until } => format!(
            "<p class=\"small\" id=\"gate\" data-allowed=\"true\">You can add or remove methods until {} UTC (changes need a recent strong sign-in).</p>",
            esc(rfc3339(until).get(11..16).unwrap_or_default())
        ),
        RegistrationGate::NeedsStrongSignIn => "<div class=\"error\" id=\"gate\" data-allowed=\"false\" role=\"status\">To add or remove a method you need to have signed in with a passkey, a second factor or a Temporary Access Pass. If you have none yet, ask your helpdesk for a Temporary Access Pass, then <a href=\"/my/signin\" id=\"signin-again\">sign in again</a> with it.</div>".into(),
        RegistrationGate::StrongSignInTooOld => "<div class=\"error\" id=\"gate\" data-allowed=\"false\" role=\"status\">For your security, changing your methods needs a sign-in from the last few minutes. <a href=\"/my/signin\" id=\"signin-again\">Sign in again</a>, then come back.</div>".into(),
    }
}

async fn security_get(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let me = match require_session(&state, &headers, SECURITY).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    let now = state.now();
    let passkeys = state.store.list_passkeys(me.user.user.id).await?;
    let family = family_of(
        ctx.user_agent.as_deref().unwrap_or(""),
        ctx.ua_model.as_deref(),
        false,
    );
    let allowed = matches!(
        registration_gate(&me, now),
        RegistrationGate::Allowed { .. }
    );
    let mut rows = String::new();
    for p in &passkeys {
        let authenticator = state
            .passkeys
            .authenticator_name(p.aaguid)
            .unwrap_or_else(|| "Unknown authenticator".into());
        let kind = if p.backed_up {
            "<span class=\"tag\">Synced</span>"
        } else {
            "<span class=\"tag\">Device-bound</span>"
        };
        let family_label =
            DeviceFamily::parse(&p.device_family).map_or("Unknown device", DeviceFamily::label);
        let remove = if allowed {
            format!(
                "<form method=\"post\" action=\"/my/security/passkeys/{id}/delete\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
                 <button type=\"submit\" class=\"link remove-passkey\" data-credential-id=\"{cid}\" aria-label=\"Remove {n}\">Remove</button></form>",
                id = p.id,
                c = esc(&me.csrf),
                cid = esc(&p.credential_id),
                n = esc(&p.name),
            )
        } else {
            String::new()
        };
        rows.push_str(&format!(
            "<tr data-credential-id=\"{cid}\" data-passkey-id=\"{id}\"><td><strong class=\"passkey-name\">{n}</strong><br><span class=\"small authenticator\">{a}</span></td>\
             <td class=\"sync\">{kind}</td><td class=\"small\">{f}<br>added {created}<br>{used}</td><td>{remove}</td></tr>",
            cid = esc(&p.credential_id),
            id = p.id,
            n = esc(&p.name),
            a = esc(&authenticator),
            f = esc(family_label),
            created = esc(&rfc3339(p.created_at)[..10]),
            used = p
                .last_used_at
                .map_or("never used".to_owned(), |t| format!("last used {}", esc(&rfc3339(t)[..10]))),
        ));
    }
    let table = if passkeys.is_empty() {
        "<p id=\"no-passkeys\">You have no passkeys yet.</p>".to_owned()
    } else {
        format!(
            "<table id=\"passkeys\"><thead><tr><th scope=\"col\">Passkey</th><th scope=\"col\">Kind</th><th scope=\"col\">Device</th><th scope=\"col\"><span class=\"small\">Action</span></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let add = if let Some(why) = &state.passkeys.unavailable {
        tracing::debug!(reason = %why, "passkeys unavailable on the security-info page");
        "<p class=\"small\">Passkeys are not available on this server.</p>".to_owned()
    } else if allowed {
        format!(
            "<form method=\"post\" action=\"/my/security/passkeys\" id=\"add-passkey-form\" data-options=\"/my/security/passkeys/options\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{c}\"><input type=\"hidden\" name=\"challenge\" value=\"\"><input type=\"hidden\" name=\"credential\" value=\"\">\
             <label for=\"passkey-name\">Name of the new passkey</label>\
             <input type=\"text\" id=\"passkey-name\" name=\"name\" maxlength=\"{max}\" value=\"{suggest}\" required>\
             <button type=\"submit\" id=\"add-passkey\">Add a passkey</button></form>",
            c = esc(&me.csrf),
            max = crate::passkeys::MAX_PASSKEY_NAME_CHARS,
            suggest = esc(family.label()),
        )
    } else {
        String::new()
    };
    let error = signed_error(&state, notice.error.as_deref(), notice.sig.as_deref());
    let notice_html = match (notice.done.as_deref(), error) {
        (Some("added"), _) => "<div class=\"ok\" id=\"notice\" role=\"status\">Your passkey was added. Next time, choose it when you sign in.</div>".to_owned(),
        (Some("removed"), _) => "<div class=\"ok\" id=\"notice\" role=\"status\">The passkey was removed.</div>".to_owned(),
        (_, Some(e)) => format!("<div class=\"error\" id=\"error\" role=\"alert\">{}</div>", esc(&e.chars().take(300).collect::<String>())),
        _ => String::new(),
    };
    let totp = crate::totp_enrol::status(&state, me.user.user.id).await?;
    let totp_html = match totp {
        Some(t) if t.confirmed => format!(
            "<p id=\"totp-status\" data-state=\"confirmed\">Authenticator app: set up {}. <a href=\"/my/security/totp\">Manage</a></p>",
            esc(&rfc3339(t.confirmed_at.unwrap_or(t.created_at))[..10])
        ),
        Some(_) => "<p id=\"totp-status\" data-state=\"pending\">Authenticator app: set-up not finished. <a href=\"/my/security/totp\">Finish setting it up</a></p>".to_owned(),
        None => "<p id=\"totp-status\" data-state=\"none\">Authenticator app: not set up. <a href=\"/my/security/totp\">Set up an authenticator app</a> (a code as a second step after your password).</p>".to_owned(),
    };
    let body = format!(
        "<div class=\"wide\"><h1>Security info</h1><p class=\"who\" id=\"who\">{upn}</p>{notice_html}{gate}\
         <h2>Passkeys</h2>{table}\
         <p class=\"small\" id=\"guidance\" data-family=\"{fam}\"><strong>{fam_label}:</strong> {guide}</p>{add}\
         <h2>Authenticator app</h2>{totp_html}\
         </div><script src=\"/static/passkey.js\" defer></script>",
        upn = esc(me.user.user.upn.as_str()),
        gate = gate_block(&me, now),
        fam = esc(family.as_str()),
        fam_label = esc(family.label()),
        guide = esc(device_guidance(family)),
    );
    Ok(pages::page("Security info", &body)
        .with_script()
        .into_response())
}

#[derive(Deserialize)]
struct NameForm {
    csrf: Option<String>,
    name: Option<String>,
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

/// Registration options for the browser (JSON), after the gate and the policy.
async fn passkey_options(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<NameForm>,
) -> Response {
    let me = match require_session(&state, &headers, SECURITY).await {
        Ok(me) => me,
        Err(_) => {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "Your session has ended. Reload the page and sign in again.",
            );
        }
    };
    if let Err(e) = check_csrf(&me, form.csrf.as_deref()) {
        return json_error(e.status, &e.message);
    }
    if !matches!(
        registration_gate(&me, state.now()),
        RegistrationGate::Allowed { .. }
    ) {
        return json_error(
            StatusCode::FORBIDDEN,
            "Adding a passkey needs a recent strong sign-in. Reload the page and sign in again.",
        );
    }
    match crate::passkeys::start_registration(&state, &me.user, form.name.as_deref().unwrap_or(""))
        .await
    {
        Ok((challenge, options)) => {
            Json(json!({"challenge": challenge, "publicKey": options["publicKey"]})).into_response()
        }
        Err(r) => json_error(r.status, &r.message),
    }
}

#[derive(Deserialize)]
struct AddForm {
    csrf: Option<String>,
    challenge: Option<String>,
    credential: Option<String>,
    /// The enrolment page (`/my/enrol…`) to return to instead of Security info.
    back: Option<String>,
}

/// Where the add form returns: the enrolment page it came from, or Security info.
fn return_path(back: Option<&str>) -> String {
    let Some(url) = back.and_then(|b| url::Url::parse("http://x/").ok()?.join(b).ok()) else {
        return SECURITY.into();
    };
    if url.host_str() != Some("x") || url.path() != crate::campaigns::enrol::ENROL_PATH {
        return SECURITY.into();
    }
    // Only the enrolment page's own parameters come back, each short.
    let mut clean = url::Url::parse("http://x/").expect("static URL");
    {
        let mut q = clean.query_pairs_mut();
        for (k, v) in url.query_pairs() {
            if matches!(k.as_ref(), "c" | "w" | "device") && v.len() <= 64 {
                q.append_pair(&k, &v);
            }
        }
    }
    match clean.query() {
        Some(qs) if !qs.is_empty() => format!("{}?{qs}", crate::campaigns::enrol::ENROL_PATH),
        _ => crate::campaigns::enrol::ENROL_PATH.into(),
    }
}

/// `path` with one more query parameter.
fn with_param(path: &str, key: &str, value: &str) -> String {
    let mut url = url::Url::parse("http://x/").expect("static URL");
    url.query_pairs_mut().append_pair(key, value);
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{}", url.query().unwrap_or(""))
}

/// The longest error message a page's URL carries (within what the admin pages read of a
/// parameter, `ui::MAX_PARAM_CHARS`).
const MAX_ERROR_CHARS: usize = 500;
const _: () = assert!(MAX_ERROR_CHARS <= crate::ui::MAX_PARAM_CHARS);

/// The keyed-hash label that signs an error message carried in a page's URL.
const ERROR_SIGNATURE_LABEL: &str = "page-error";

/// `path` with an error message for the page to show, signed: a page shows only messages
/// Cutover put there itself, never the text of a crafted link.
pub(crate) fn with_error(state: &AppState, path: &str, message: &str) -> String {
    // Cut, then trimmed: pages read their parameters trimmed, and the signature covers
    // exactly what they read.
    let cut: String = message.trim().chars().take(MAX_ERROR_CHARS).collect();
    let message = cut.trim_end();
    let sig = state.hasher.hash(ERROR_SIGNATURE_LABEL, message);
    with_param(&with_param(path, "error", message), "sig", &sig)
}

/// The error message of a page's URL when Cutover signed it; `None` otherwise.
pub(crate) fn signed_error<'a>(
    state: &AppState,
    error: Option<&'a str>,
    sig: Option<&str>,
) -> Option<&'a str> {
    use subtle::ConstantTimeEq;
    let (error, sig) = (error?, sig?);
    let expected = state.hasher.hash(ERROR_SIGNATURE_LABEL, error);
    bool::from(expected.as_bytes().ct_eq(sig.as_bytes())).then_some(error)
}

fn back_with_error(state: &AppState, message: &str) -> Response {
    Redirect::to(&with_error(state, SECURITY, message)).into_response()
}

async fn passkey_add(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    let me = match require_session(&state, &headers, SECURITY).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    check_csrf(&me, form.csrf.as_deref())?;
    if !matches!(
        registration_gate(&me, state.now()),
        RegistrationGate::Allowed { .. }
    ) {
        return Ok(back_with_error(
            &state,
            "Adding a passkey needs a recent strong sign-in. Sign in again, then retry.",
        ));
    }
    match crate::passkeys::finish_registration(
        &state,
        &ctx,
        &me.user,
        form.challenge.as_deref().unwrap_or(""),
        form.credential.as_deref().unwrap_or(""),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&with_param(
            &return_path(form.back.as_deref()),
            "done",
            "added",
        ))
        .into_response()),
        Err(r) if form.back.is_some() => Ok(Redirect::to(&with_error(
            &state,
            &return_path(form.back.as_deref()),
            &r.message,
        ))
        .into_response()),
        Err(r) => Ok(back_with_error(&state, &r.message)),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn passkey_delete(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    let me = match require_session(&state, &headers, SECURITY).await {
        Ok(me) => me,
        Err(res) => return Ok(res),
    };
    check_csrf(&me, form.csrf.as_deref())?;
    if !matches!(
        registration_gate(&me, state.now()),
        RegistrationGate::Allowed { .. }
    ) {
        return Ok(back_with_error(
            &state,
            "Removing a passkey needs a recent strong sign-in. Sign in again, then retry.",
        ));
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return Ok(back_with_error(&state, "That passkey does not exist."));
    };
    match crate::passkeys::remove(&state, &ctx, &me.user, id, None).await {
        Ok(()) => Ok(Redirect::to("/my/security?done=removed").into_response()),
        Err(cutover_store::StoreError::NotFound) => Ok(back_with_error(
            &state,
            "That passkey does not exist (already removed?).",
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::return_path;

    #[test]
    fn the_add_form_returns_only_to_the_enrolment_page_with_its_own_parameters() {
        assert_eq!(return_path(None), "/my/security");
        assert_eq!(return_path(Some("/my/enrol")), "/my/enrol");
        assert_eq!(
            return_path(Some("/my/enrol?c=1&w=2&device=iPhone&x=evil")),
            "/my/enrol?c=1&w=2&device=iPhone"
        );
        for bad in [
            "/my/enrolX",
            "/my/enrol/../../admin",
            "//evil.example/my/enrol",
            "https://evil.example/my/enrol",
            "/my/enrol\u{0}",
            "/my/security",
        ] {
            let got = return_path(Some(bad));
            assert!(
                got == "/my/security" || got == "/my/enrol",
                "{bad:?} -> {got}"
            );
            assert!(
                !got.contains("evil") && !got.contains("admin"),
                "{bad:?} -> {got}"
            );
        }
    }
}
