//! Step-up to a second factor in the browser sign-in (SPEC §3 step 6, §4 staged MFA, §6.2,
//! §6.5): when the first factor (a password, the upstream IdP, a pass, or an SSO session being
//! reused) does not meet the strength the sign-in needs, the first factor is kept in the
//! sign-in transaction and the browser goes to `/login/mfa` for a TOTP code.
//!
//! The strength a sign-in needs is the strongest of the application's `acr_values` and, for a
//! federated sign-in of a user whose effective staged-rollout features include
//! `multiFactorAuthentication`, `mfa`. What meets it is `cutover_core::strength`; the code check
//! is `cutover_core::totp` applied by [`crate::totp_enrol::check_code`] (compare-and-set on the
//! enrolment's version, so one code passes once across all nodes).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Form, Router};
use cutover_core::authorize::{AuthorizeRequest, Prompt};
use cutover_core::conditional_access::Decision;
use cutover_core::limits::SIGN_IN_TXN_TTL_SECS;
use cutover_core::methods_policy::PolicyMethod;
use cutover_core::signin_log::{FailureReason, SignInRecord, SignInResult};
use cutover_core::staged::RolloutFeature;
use cutover_core::strength::{BuiltIn, MethodKind, UsedMethod, meets_built_in, methods_from_amr};
use cutover_core::totp::TotpCheck;
use cutover_core::{Application, Domain, Timestamp, User};
use cutover_store::{SignInTransaction, SsoSession, StoreError, UserRecord};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::PageError;
use crate::pages::{self, esc};
use crate::signin::{
    BROWSER_COOKIE, BROWSER_COOKIE_TTL_SECS, TxnData, complete_sign_in_capped, cookie, read_cookie,
};
use crate::totp_enrol::CodeCheck;
use crate::{AppState, RequestCtx};

/// The second-factor page.
pub const MFA_PATH: &str = "/login/mfa";
/// The sign-in log's name of a TOTP code step.
const TOTP_LOG_METHOD: &str = "totp";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route(MFA_PATH, get(mfa_get).post(mfa_post))
}

/// The first factor of a sign-in that must step up, kept in the transaction until the second
/// factor is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirstFactor {
    pub user_id: Uuid,
    /// The `amr` the first factor earned (`pwd`, `fed`, `tap`…, or a reused session's).
    pub amr: Vec<String>,
    /// When the first factor was checked (a reused session: when it was opened).
    pub at: Timestamp,
    /// The end of a credential with its own end (a Temporary Access Pass): the session and
    /// tokens of the completed sign-in end by then too.
    #[serde(default)]
    pub not_after: Option<Timestamp>,
    /// The strength the sign-in must reach.
    pub required: BuiltIn,
    /// The sign-in log's names of the first factor's methods.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The keyed hash of the SSO session a step-up started from: replaced by the stronger one
    /// when the step-up completes.
    #[serde(default)]
    pub replaces_session: Option<String>,
}

/// The strength this sign-in needs, given what the first factor was: the application's
/// `acr_values`, `mfa` after the upstream IdP for a user in the staged
/// `multiFactorAuthentication` rollout (SPEC §4: Cutover performs MFA after the upstream
/// sign-in), and a passkey for a break-glass account (unless it signed in with a pass).
/// `None`: nothing beyond the first factor.
async fn required_strength(
    state: &AppState,
    txn: &TxnData,
    user_record: &UserRecord,
    domain: Option<&Domain>,
    amr: &[String],
) -> Result<Option<BuiltIn>, StoreError> {
    let mut required = txn.acr;
    let user = &user_record.user;
    let federated = amr.iter().any(|a| a == "fed");
    if federated && !crate::rollout::staged_state_frozen(user, domain) {
        let effective = state.store.get_staged_state(user.id).await?.effective;
        if effective.contains(RolloutFeature::MultiFactorAuthentication) {
            required = required.max(Some(BuiltIn::Mfa));
        }
    }
    // A break-glass account signs in with a passkey (phishing-resistant), or with a Temporary
    // Access Pass to register one: never with a password alone.
    if user.break_glass && !amr.iter().any(|a| a == cutover_core::tap::TAP_AMR) {
        required = required.max(Some(BuiltIn::PhishingResistantMfa));
    }
    Ok(required)
}

/// The second factors a user can use now, as the methods policy allows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SecondFactors {
    /// A confirmed TOTP enrolment.
    totp: bool,
    /// A registered passkey (signing in with it on the identifier page meets every strength).
    passkey: bool,
}

impl SecondFactors {
    /// Whether any of them can meet `required`: a TOTP code only reaches `mfa`.
    fn can_meet(self, required: BuiltIn) -> bool {
        self.passkey || (self.totp && required == BuiltIn::Mfa)
    }
}

async fn second_factors(state: &AppState, user: &User) -> Result<SecondFactors, StoreError> {
    let policy = crate::passkeys::load_methods_policy(state).await?;
    let groups = crate::passkeys::user_groups(state, user.id).await?;
    let totp = policy.allows(PolicyMethod::Totp, &groups)
        && state
            .store
            .get_totp(user.id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
    let passkey = state.passkeys.rp.is_some()
        && policy.allows(PolicyMethod::Passkey, &groups)
        && state
            .store
            .list_passkeys(user.id)
            .await?
            .iter()
            .any(|p| policy.passkey_allowed(&groups, Some(p.aaguid)));
    Ok(SecondFactors { totp, passkey })
}

/// The end of every first factor (password, pass, upstream IdP): complete the sign-in when the
/// first factor meets the strength it needs; otherwise keep the first factor in the
/// transaction and send the browser to the second-factor page. A user with no second factor
/// that could meet it fails here, with [`FailureReason::SecondFactorNotRegistered`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_or_step_up(
    state: &Arc<AppState>,
    _ctx: &RequestCtx,
    txn_id: &str,
    txn: &TxnData,
    user_record: &UserRecord,
    domain: Option<&Domain>,
    mut record: SignInRecord,
    amr: Vec<String>,
    not_after: Option<Timestamp>,
) -> Result<Response, PageError> {
    // Conditional Access (SPEC §8): every enabled and report-only policy, on every
    // interactive path. Cutover's own Security info pages are not an application: the
    // registration gate protects them instead.
    let mut ca_required = None;
    if txn.client_id != crate::my::MY_CLIENT_ID {
        let auth_time = txn.first_factor.as_ref().map_or(state.now(), |f| f.at);
        let evaluation = crate::conditional_access::evaluate_sign_in(
            state,
            &crate::conditional_access::SignInContext {
                user: user_record,
                app_id: txn.app_id,
                client_app_type: txn.client_app_type,
                ip: record.ip_address.as_deref(),
                user_agent: record.user_agent.as_deref(),
                amr: &amr,
                auth_time,
            },
        )
        .await?;
        record.conditional_access = evaluation.policy_results();
        match &evaluation.decision {
            Decision::Block { .. } => {
                return fail_blocked(state, txn_id, txn, user_record, record, &evaluation).await;
            }
            Decision::StepUp { requirement, .. } => {
                // A custom strength is met by a passkey of the right model: ask for a passkey.
                ca_required = requirement
                    .built_in
                    .or((!requirement.custom.is_empty()).then_some(BuiltIn::PhishingResistantMfa));
            }
            // A sign-in that just authenticated is as fresh as it gets.
            Decision::Reauthenticate { .. } | Decision::Allow => {}
        }
    }
    let required = required_strength(state, txn, user_record, domain, &amr)
        .await?
        .max(ca_required)
        .filter(|r| !meets_built_in(&methods_from_amr(&amr), *r));
    let Some(required) = required else {
        return complete_sign_in_capped(
            state,
            txn_id,
            txn,
            user_record,
            domain,
            record,
            amr,
            not_after,
        )
        .await;
    };
    let user = &user_record.user;
    record.user_id = Some(user.id);
    record.user_principal_name = Some(user.upn.to_string());
    // A strength only a passkey meets is explained on the second-factor page (which offers
    // the passkey); a missing second factor for `mfa` ends the sign-in now.
    if required == BuiltIn::Mfa && !second_factors(state, user).await?.can_meet(required) {
        return fail_no_second_factor(state, txn_id, txn, record).await;
    }
    // The first factor was right: the attempt is interrupted, not failed, until the second
    // factor decides.
    record.result = SignInResult::Interrupted;
    record.failure_reason = None;
    // Report-only policies are judged on how the sign-in ends (the final record), not on
    // this intermediate step: a user about to give a second factor anyway is not one they
    // would have interrupted.
    record.conditional_access.retain(|r| {
        !cutover_core::conditional_access::CaResult::parse(&r.result)
            .is_some_and(|c| c.is_report_only())
    });
    state.record_sign_in(&record).await?;
    tracing::info!(user = %user.upn, required = required.as_str(), "the sign-in needs a second factor");
    let mut txn = txn.clone();
    txn.first_factor = Some(FirstFactor {
        user_id: user.id,
        amr,
        at: state.now(),
        not_after,
        required,
        methods: record.authentication_methods.clone(),
        replaces_session: None,
    });
    let data = serde_json::to_value(&txn).map_err(PageError::internal)?;
    state
        .store
        .update_sign_in_transaction(txn_id, &data)
        .await?;
    Ok(Redirect::to(&format!("{MFA_PATH}?t={txn_id}")).into_response())
}

/// Conditional Access blocked the sign-in: the record says which policies, the transaction
/// ends, the page says who to ask.
async fn fail_blocked(
    state: &AppState,
    txn_id: &str,
    txn: &TxnData,
    user: &UserRecord,
    mut record: SignInRecord,
    evaluation: &cutover_core::conditional_access::Evaluation,
) -> Result<Response, PageError> {
    let reason = FailureReason::BlockedByConditionalAccess;
    record.user_id = Some(user.user.id);
    record.user_principal_name = Some(user.user.upn.to_string());
    record.result = SignInResult::Failure;
    record.failure_reason = Some(reason.code().into());
    state.record_sign_in(&record).await?;
    state.store.delete_sign_in_transaction(txn_id).await?;
    tracing::info!(user = %user.user.upn, app = %txn.client_id, decision = %evaluation.decision.explain(), "Conditional Access blocked a sign-in");
    Ok((
        StatusCode::FORBIDDEN,
        pages::error_page(
            "You cannot sign in to this application here",
            reason.user_message(),
        ),
    )
        .into_response())
}

/// A user who must step up and has nothing to step up with: the record says so, the
/// transaction ends, the page explains what to do.
async fn fail_no_second_factor(
    state: &AppState,
    txn_id: &str,
    txn: &TxnData,
    mut record: SignInRecord,
) -> Result<Response, PageError> {
    let reason = FailureReason::SecondFactorNotRegistered;
    record.result = SignInResult::Failure;
    record.failure_reason = Some(reason.code().into());
    state.record_sign_in(&record).await?;
    state.store.delete_sign_in_transaction(txn_id).await?;
    tracing::info!(
        user = record.user_principal_name.as_deref().unwrap_or(""),
        app = %txn.client_id,
        "the sign-in needs a second factor and the user has none registered"
    );
    Ok((
        StatusCode::FORBIDDEN,
        pages::error_page("A second sign-in method is needed", reason.user_message()),
    )
        .into_response())
}

/// From `/authorize`: the browser's SSO session would be reused, but its methods do not meet
/// the strength the application asks for (`acr_values`). Step up from the session — the
/// second factor only, no password typed again — or, with `prompt=none`, answer
/// `interaction_required`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn step_up_session(
    state: &Arc<AppState>,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    req: &AuthorizeRequest,
    app: &Application,
    session: &SsoSession,
    user: &User,
    required: BuiltIn,
) -> Result<Response, PageError> {
    if req.prompt == Prompt::None {
        let iss = state.config.issuer.clone();
        let mut params = vec![
            ("error", "interaction_required"),
            (
                "error_description",
                "the application asked for a stronger sign-in (acr_values) than the session has, and prompt=none forbids the step-up",
            ),
            ("iss", iss.as_str()),
        ];
        if let Some(s) = req.state.as_deref() {
            params.push(("state", s));
        }
        return Ok(crate::signin::client_redirect(&req.redirect_uri, &params));
    }
    let now = state.now();
    let (bb, new_bb) = match read_cookie(headers, BROWSER_COOKIE) {
        Some(bb) => (bb, false),
        None => (crate::crypto::random_token(), true),
    };
    let txn_id = crate::crypto::random_token();
    let mut txn = TxnData::from_request(req, app, state.hasher.hash("browser", &bb), ctx.id);
    txn.username = Some(user.upn.to_string());
    // A session opened with a Temporary Access Pass keeps the pass's end.
    let not_after = session
        .methods
        .iter()
        .any(|m| m == cutover_core::tap::TAP_AMR)
        .then_some(session.expires_at);
    txn.first_factor = Some(FirstFactor {
        user_id: user.id,
        amr: session.methods.clone(),
        at: session.auth_time,
        not_after,
        required,
        methods: vec!["previousSession".into()],
        replaces_session: Some(session.id_hash.clone()),
    });
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
    tracing::info!(user = %user.upn, required = required.as_str(), "stepping up from an SSO session");
    let mut res = Redirect::to(&format!("{MFA_PATH}?t={txn_id}")).into_response();
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

#[derive(Debug, Deserialize)]
struct TxnQuery {
    t: Option<String>,
}

/// The transaction's first factor and its user, still the one the transaction names.
/// `Err` with the response to give: back to the identifier page when there is no first
/// factor (or someone else was named since), a refusal when the account is gone or disabled.
async fn stepping_user(
    state: &AppState,
    txn_id: &str,
    txn: &TxnData,
) -> Result<Result<(FirstFactor, UserRecord), Response>, PageError> {
    let back = || Redirect::to(&format!("/login?t={txn_id}")).into_response();
    let Some(ff) = txn.first_factor.clone() else {
        return Ok(Err(back()));
    };
    let Some(user) = state.store.get_user(ff.user_id).await? else {
        return Err(PageError::expired());
    };
    let named = txn
        .username
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case(user.user.upn.as_str()));
    if !named {
        return Ok(Err(back()));
    }
    Ok(Ok((ff, user)))
}

/// What the second-factor page shows.
struct MfaView<'a> {
    txn_id: &'a str,
    csrf: &'a str,
    username: &'a str,
    required: BuiltIn,
    factors: SecondFactors,
    error: Option<&'a str>,
}

fn mfa_page(v: &MfaView<'_>) -> pages::Page {
    let err = v
        .error
        .map(|e| {
            format!(
                "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let t = esc(v.txn_id);
    // The same passkey form as the identifier page: `/static/passkey.js` reveals it and runs
    // the ceremony; `passkeys::signin_post` sees the first factor and requires its user.
    let passkey_link = if v.factors.passkey {
        format!(
            "<div id=\"mfa-passkey\"><form method=\"post\" action=\"/login/passkey\" id=\"passkey-form\" data-options=\"/login/passkey/options\" hidden>\
             <input type=\"hidden\" name=\"t\" value=\"{t}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
             <input type=\"hidden\" name=\"challenge\" value=\"\"><input type=\"hidden\" name=\"credential\" value=\"\">\
             <button type=\"button\" id=\"passkey-signin\" class=\"secondary\">Use a passkey instead</button></form>\
             <noscript><p><a href=\"/login?t={t}\">Use a passkey instead</a></p></noscript></div>\
             <script src=\"/static/passkey.js\" defer></script>",
            c = esc(v.csrf),
        )
    } else {
        String::new()
    };
    let other = format!(
        "<p class=\"small\"><a id=\"other-account\" href=\"/login?t={t}\">Sign in with a different account</a></p>"
    );
    let (title, body) = if v.required == BuiltIn::Mfa && !v.factors.totp {
        (
            "Use your passkey",
            format!(
                "<h1>Use your passkey</h1><p class=\"who\" id=\"who\">{u}</p>{err}\
                 <p id=\"message\">This sign-in needs a second step. Sign in with your passkey to finish.</p>{passkey_link}{other}",
                u = esc(v.username),
            ),
        )
    } else if v.required != BuiltIn::Mfa {
        let how = if v.factors.passkey {
            "Choose <strong>Use a passkey instead</strong> and sign in with your passkey."
        } else {
            "You have no passkey registered. Ask your helpdesk for a Temporary Access Pass, sign in with it and register a passkey on your Security info page, then try again."
        };
        (
            "A passkey is needed",
            format!(
                "<h1>A passkey is needed</h1><p class=\"who\" id=\"who\">{u}</p>{err}\
                 <p id=\"message\">This application asks for a sign-in that only a passkey can give (a code from an authenticator app is not enough).</p>\
                 <p>{how}</p>{passkey_link}{other}",
                u = esc(v.username),
            ),
        )
    } else {
        let aria = if v.error.is_some() {
            " aria-describedby=\"error\" aria-invalid=\"true\""
        } else {
            ""
        };
        (
            "Enter your code",
            format!(
                "<h1>Enter your code</h1><p class=\"who\" id=\"who\">{u}</p>{err}\
                 <p>This sign-in needs a second step. Open your authenticator app and enter the code it shows for this account.</p>\
                 <form method=\"post\" action=\"{MFA_PATH}\">\
                 <input type=\"hidden\" name=\"t\" value=\"{t}\"><input type=\"hidden\" name=\"csrf\" value=\"{c}\">\
                 <label for=\"otp\">Code</label>\
                 <input type=\"text\" id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"16\" spellcheck=\"false\" required autofocus{aria}>\
                 <button type=\"submit\" id=\"verify\">Verify</button></form>{passkey_link}{other}",
                u = esc(v.username),
                c = esc(v.csrf),
            ),
        )
    };
    let page = pages::page(title, &body);
    if v.factors.passkey {
        page.with_script()
    } else {
        page
    }
}

async fn mfa_get(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Query(q): Query<TxnQuery>,
) -> Result<Response, PageError> {
    let (txn_id, txn, bb) = crate::signin::load_txn(&state, &headers, q.t.as_deref()).await?;
    let (ff, user) = match stepping_user(&state, &txn_id, &txn).await? {
        Ok(v) => v,
        Err(res) => return Ok(res),
    };
    let factors = second_factors(&state, &user.user).await?;
    if ff.required == BuiltIn::Mfa && !factors.can_meet(ff.required) {
        // Removed (or no longer allowed) since the first factor was checked.
        let mut record = crate::signin::record_for_txn(&state, &ctx, &txn);
        record.user_id = Some(user.user.id);
        record.user_principal_name = Some(user.user.upn.to_string());
        record.authentication_methods = ff.methods.clone();
        return fail_no_second_factor(&state, &txn_id, &txn, record).await;
    }
    let csrf = crate::signin::csrf_for(&state, &txn_id, &bb);
    Ok(mfa_page(&MfaView {
        txn_id: &txn_id,
        csrf: &csrf,
        username: user.user.upn.as_str(),
        required: ff.required,
        factors,
        error: None,
    })
    .with_form_target(&txn.redirect_uri)
    .into_response())
}

#[derive(Deserialize)]
struct CodeForm {
    t: Option<String>,
    csrf: Option<String>,
    otp: Option<String>,
}

/// What the person is told after a refused code.
fn refusal_message(check: TotpCheck) -> String {
    match check {
        TotpCheck::TooManyAttempts { retry_after_secs } => {
            let minutes = (retry_after_secs + 59) / 60;
            format!(
                "Too many wrong codes. For your security, codes are not checked for the next {minutes} minute{s}. Wait, then enter the newest code from your authenticator app.",
                s = if minutes == 1 { "" } else { "s" }
            )
        }
        TotpCheck::Malformed => {
            "Enter the code as your authenticator app shows it: digits only (spaces are fine)."
                .into()
        }
        _ => FailureReason::InvalidSecondFactor.user_message().into(),
    }
}

async fn mfa_post(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, PageError> {
    let (txn_id, txn, bb) = crate::signin::load_txn(&state, &headers, form.t.as_deref()).await?;
    crate::signin::check_csrf(&state, &txn_id, &bb, form.csrf.as_deref())?;
    let (ff, user) = match stepping_user(&state, &txn_id, &txn).await? {
        Ok(v) => v,
        Err(res) => return Ok(res),
    };
    let csrf = crate::signin::csrf_for(&state, &txn_id, &bb);
    let mut record = crate::signin::record_for_txn(&state, &ctx, &txn);
    record.user_id = Some(user.user.id);
    record.user_principal_name = Some(user.user.upn.to_string());
    record.authentication_methods = ff.methods.clone();
    record
        .authentication_methods
        .push(TOTP_LOG_METHOD.to_owned());
    if !user.user.account_enabled {
        record.failure_reason = Some(FailureReason::AccountDisabled.code().into());
        state.record_sign_in(&record).await?;
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Your account is disabled",
            FailureReason::AccountDisabled.user_message(),
        ));
    }
    let factors = second_factors(&state, &user.user).await?;
    let page = |error: Option<&str>| {
        mfa_page(&MfaView {
            txn_id: &txn_id,
            csrf: &csrf,
            username: user.user.upn.as_str(),
            required: ff.required,
            factors,
            error,
        })
        .with_form_target(&txn.redirect_uri)
        .into_response()
    };
    if ff.required != BuiltIn::Mfa {
        // Only a passkey meets it: a code is not taken.
        return Ok(page(None));
    }
    if !factors.totp {
        if factors.passkey {
            return Ok(page(None));
        }
        record.authentication_methods = ff.methods.clone();
        return fail_no_second_factor(&state, &txn_id, &txn, record).await;
    }
    let typed = form.otp.unwrap_or_default();
    let checked = crate::totp_enrol::check_code(
        &state,
        user.user.id,
        &typed,
        crate::totp_enrol::Purpose::SignIn,
    )
    .await?;
    match checked {
        CodeCheck::Accepted => {}
        CodeCheck::Refused(check) => {
            record.result = SignInResult::Failure;
            record.failure_reason = Some(FailureReason::InvalidSecondFactor.code().into());
            state.record_sign_in(&record).await?;
            tracing::info!(user = %user.user.upn, check = ?check, "a second-factor code was refused");
            return Ok(page(Some(&refusal_message(check))));
        }
        CodeCheck::Busy => return Err(PageError::unavailable()),
        CodeCheck::NotEnrolled | CodeCheck::Expired | CodeCheck::AlreadyConfirmed => {
            // Removed between the page and the post.
            record.authentication_methods = ff.methods.clone();
            return fail_no_second_factor(&state, &txn_id, &txn, record).await;
        }
    }
    let mut methods: Vec<UsedMethod> = methods_from_amr(&ff.amr);
    methods.push(UsedMethod::of(MethodKind::Totp));
    if !meets_built_in(&methods, ff.required) {
        return Ok(page(None));
    }
    let amr: Vec<String> = cutover_core::strength::amr(&methods)
        .into_iter()
        .map(str::to_owned)
        .collect();
    tracing::info!(user = %user.user.upn, "second factor accepted (TOTP)");
    let domain = state
        .store
        .get_domain(user.user.upn.domain().as_str())
        .await?;
    // Conditional Access looks again with both factors (it may still ask for more).
    let res = finish_or_step_up(
        &state,
        &ctx,
        &txn_id,
        &txn,
        &user,
        domain.as_ref(),
        record,
        amr,
        ff.not_after,
    )
    .await?;
    // The weaker session a step-up started from is replaced by the one just opened.
    if let Some(old) = ff.replaces_session.as_deref()
        && let Err(e) = state.store.delete_session(old).await
    {
        tracing::warn!(error = %e, "could not delete the session a step-up replaced; it ends at its expiry");
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_meets_mfa_only_and_a_passkey_meets_everything() {
        let totp = SecondFactors {
            totp: true,
            passkey: false,
        };
        assert!(totp.can_meet(BuiltIn::Mfa));
        assert!(!totp.can_meet(BuiltIn::PasswordlessMfa));
        assert!(!totp.can_meet(BuiltIn::PhishingResistantMfa));
        let passkey = SecondFactors {
            totp: false,
            passkey: true,
        };
        for b in BuiltIn::ALL {
            assert!(passkey.can_meet(b));
            assert!(!SecondFactors::default().can_meet(b));
        }
    }

    #[test]
    fn first_factors_round_trip_and_old_transactions_read() {
        let ff = FirstFactor {
            user_id: Uuid::from_u128(1),
            amr: vec!["pwd".into()],
            at: Timestamp::from_secs(1_700_000_000),
            not_after: None,
            required: BuiltIn::Mfa,
            methods: vec!["password".into()],
            replaces_session: None,
        };
        let v = serde_json::to_value(&ff).unwrap();
        assert_eq!(v["required"], "mfa");
        assert_eq!(serde_json::from_value::<FirstFactor>(v).unwrap(), ff);
        let minimal = serde_json::json!({
            "userId": Uuid::from_u128(1), "amr": ["fed"], "at": 5, "required": "mfa"
        });
        let read: FirstFactor = serde_json::from_value(minimal).unwrap();
        assert!(read.methods.is_empty() && read.not_after.is_none());
    }

    #[test]
    fn the_page_offers_a_code_for_mfa_and_explains_a_passkey_otherwise() {
        let html = |required, factors, error| {
            let res = mfa_page(&MfaView {
                txn_id: "t\"<",
                csrf: "c",
                username: "u@x.example",
                required,
                factors,
                error,
            })
            .into_response();
            let body = res.into_body();
            let bytes = body_bytes(body);
            String::from_utf8(bytes).unwrap()
        };
        let totp = SecondFactors {
            totp: true,
            passkey: false,
        };
        let page = html(BuiltIn::Mfa, totp, Some("<b>"));
        assert!(page.contains("<label for=\"otp\">"), "{page}");
        assert!(page.contains("id=\"verify\""), "{page}");
        assert!(page.contains("autocomplete=\"one-time-code\""), "{page}");
        assert!(!page.contains("<b>") && !page.contains("t\"<"), "{page}");
        assert!(!page.contains("mfa-passkey"), "{page}");
        let page = html(BuiltIn::PhishingResistantMfa, totp, None);
        assert!(page.contains("A passkey is needed"), "{page}");
        assert!(!page.contains("id=\"otp\""), "{page}");
        let page = html(
            BuiltIn::PasswordlessMfa,
            SecondFactors {
                totp: true,
                passkey: true,
            },
            None,
        );
        assert!(page.contains("id=\"mfa-passkey\""), "{page}");
    }

    /// The whole body of a page (pages are one in-memory chunk).
    fn body_bytes(body: axum::body::Body) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap()
                .to_vec()
        })
    }

    #[test]
    fn refusals_explain_the_wait_in_minutes() {
        let m = refusal_message(TotpCheck::TooManyAttempts {
            retry_after_secs: 61,
        });
        assert!(m.contains("2 minutes"), "{m}");
        let m = refusal_message(TotpCheck::TooManyAttempts {
            retry_after_secs: 30,
        });
        assert!(m.contains("next 1 minute."), "{m}");
        assert_eq!(
            refusal_message(TotpCheck::Replayed),
            FailureReason::InvalidSecondFactor.user_message()
        );
    }
}
