//! Conditional Access end to end (SPEC §8), through the pages and the token endpoint of an
//! in-process server whose clock the test steps: a report-only policy records what it would
//! have done without changing anything, and the what-if tool agrees with the real sign-in; the
//! impact report and the enforcement gate read those records; enforced, the policy steps a
//! user up to a code or blocks one who cannot, on every token path (pages, session reuse,
//! refresh, a Temporary Access Pass); a break-glass account is never stopped.

use cutover_core::totp::{TotpParams, code_at};
use cutover_server::clock::Clock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Admin, InProcess, browser, query_param, seed};
use crate::totp_e2e::{
    authorize, enable_passes, enrol_with_pass, id_token_of, identify_and_type, sign_ins, type_code,
};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const POLICIES: &str = "/identity/conditionalAccess/policies";

async fn pilot_group(admin: &Admin) -> Value {
    admin.get("/groups").await["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == "Pilot")
        .unwrap()["id"]
        .clone()
}

/// A report-only policy requiring MFA of group `group` for every application.
fn mfa_for(group: &Value) -> Value {
    json!({
        "displayName": "Require MFA for Pilot",
        "conditions": {
            "users": {"includeUsers": [], "includeGroups": [group]},
            "applications": {"includeApplications": ["All"]},
            "clientAppTypes": ["all"]
        },
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}
    })
}

fn result_of(record: &Value, policy: &str) -> String {
    record["conditionalAccess"]
        .as_array()
        .and_then(|r| r.iter().find(|p| p["policyId"] == policy))
        .and_then(|p| p["result"].as_str())
        .unwrap_or("-")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_only_then_enforced_through_the_gate_on_every_token_path() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.clone();
    let pilot = pilot_group(&admin).await;

    // --- validation names the field ----------------------------------------------------
    let mut bad = mfa_for(&pilot);
    bad["conditions"]["users"]["includeGroups"] = json!(["not-a-group"]);
    let (status, v) = admin.call(Method::POST, POLICIES, Some(bad)).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("includeGroups"), "{v}");
    let mut enabled = mfa_for(&pilot);
    enabled["state"] = json!("enabled");
    let (status, v) = admin.call(Method::POST, POLICIES, Some(enabled)).await;
    assert_eq!(status, 409, "a policy cannot start enabled: {v}");

    // --- report-only: recorded, nothing changes ------------------------------------------
    let policy = admin.post(POLICIES, mfa_for(&pilot)).await;
    assert_eq!(
        policy["state"], "enabledForReportingButNotEnforced",
        "{policy}"
    );
    let pid = policy["id"].as_str().unwrap().to_owned();
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    assert!(
        back.1.starts_with(REDIRECT),
        "report-only changes nothing: {back:?}"
    );
    let rec = sign_ins(&admin, &f.upn, 1).await[0].clone();
    assert_eq!(
        result_of(&rec, &pid),
        "reportOnlyFailure",
        "no second factor registered: {rec}"
    );
    let filtered = admin
        .get(&format!(
            "/auditLogs/signIns?caPolicy={pid}&caResult=reportOnlyFailure"
        ))
        .await;
    assert_eq!(
        filtered["value"].as_array().map_or(0, Vec::len),
        1,
        "{filtered}"
    );

    // What-if agrees with the real sign-in.
    let what = admin
        .post(
            "/identity/conditionalAccess/evaluate",
            json!({"user": f.upn, "application": f.client_id, "methods": ["pwd"]}),
        )
        .await;
    let mine = what["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policyId"] == pid.as_str())
        .unwrap();
    assert_eq!(mine["result"], "reportOnlyFailure", "{what}");
    assert_eq!(what["decision"]["decision"], "allow", "{what}");

    // --- the gate: too little evidence, no break-glass accounts → refused ---------------
    let impact = admin.get(&format!("{POLICIES}/{pid}/impact")).await;
    assert_eq!(impact["appliedUsers"], 1, "{impact}");
    assert_eq!(impact["interruptedUsers"], 1, "{impact}");
    assert_eq!(impact["gate"]["allowed"], false, "{impact}");
    let (status, refused) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}"),
            Some(json!({"state": "enabled"})),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    // The threshold is the administrator's (audited), within 0-100 %.
    let (status, v) = admin
        .call(
            Method::PUT,
            "/identity/conditionalAccess/gateSettings",
            Some(json!({"interruptionThresholdPercent": 101})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = admin
        .call(
            Method::PUT,
            "/identity/conditionalAccess/gateSettings",
            Some(json!({"interruptionThresholdPercent": 2.5})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let impact = admin.get(&format!("{POLICIES}/{pid}/impact")).await;
    assert_eq!(impact["interruptionThresholdPercent"], 2.5, "{impact}");
    let codes: Vec<&str> = refused["gate"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["code"].as_str())
        .collect();
    assert!(codes.contains(&"reportOnlyEvidenceTooShort"), "{refused}");
    assert!(
        codes.contains(&"interruptionRateAboveThreshold"),
        "{refused}"
    );
    assert!(codes.contains(&"tooFewBreakGlassAccounts"), "{refused}");
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabledForReportingButNotEnforced",
        "a refused switch changes nothing"
    );

    // The user enrols an authenticator app (after a pass): now the policy would interrupt
    // (a step-up they can make), not fail.
    enable_passes(&admin).await;
    let clock = srv.clock.clone();
    let (secret, _) = enrol_with_pass(&base, &admin, &f.client_id, &f.upn, move || {
        clock.now().secs()
    })
    .await;

    // --- forced past the gate (audited) ---------------------------------------------------
    let (status, v) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}?force=true"),
            Some(json!({"state": "enabled"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let forced = admin
        .get("/auditLogs/directoryAudits?action=forceEnableConditionalAccessPolicy")
        .await;
    assert_eq!(
        forced["value"].as_array().map_or(0, Vec::len),
        1,
        "{forced}"
    );

    // Enforced: the password is not enough; the code finishes the sign-in.
    srv.clock.advance_secs(60);
    let http = browser();
    let (verifier, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let mfa = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    assert!(
        mfa.1.starts_with("/login/mfa?t="),
        "step-up to a code: {mfa:?}"
    );
    let now = srv.clock.now().secs();
    let back = type_code(
        &http,
        &base,
        &mfa.1,
        &code_at(&secret, TotpParams::default(), now),
    )
    .await;
    let id = id_token_of(&base, &f, &back, &verifier).await;
    assert_eq!(id["acr"], "mfa", "{id}");
    let rec = sign_ins(&admin, &f.upn, 1).await[0].clone();
    assert_eq!(rec["result"], "success", "{rec}");
    assert_eq!(result_of(&rec, &pid), "success", "{rec}");

    // --- a block policy for the app, enforced: every token path refuses --------------------
    let (status, v) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}?force=true"),
            Some(json!({"grantControls": {"operator": "OR", "builtInControls": ["block"]}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // The browser still has its SSO session: reusing it is refused at the client.
    let (_, reuse) = authorize(&http, &base, &f.client_id, &[]).await;
    assert!(reuse.1.starts_with(REDIRECT), "{reuse:?}");
    assert_eq!(
        query_param(&reuse.1, "error").as_deref(),
        Some("access_denied"),
        "{reuse:?}"
    );
    assert_eq!(
        sign_ins(&admin, &f.upn, 1).await[0]["failureReason"],
        "blockedByConditionalAccess",
        "the refused reuse is recorded"
    );
    // A fresh password sign-in is blocked with the page that says why.
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let blocked = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    assert_eq!(blocked.0, 403, "{blocked:?}");
    assert!(
        blocked
            .1
            .contains("access policy does not allow this sign-in"),
        "{}",
        blocked.1
    );
    assert_eq!(
        sign_ins(&admin, &f.upn, 1).await[0]["failureReason"],
        "blockedByConditionalAccess"
    );
    // A Temporary Access Pass does not get round it.
    let pass = admin
        .post(
            &format!(
                "/users/{}/authentication/temporaryAccessPassMethods",
                f.user_id
            ),
            json!({"isUsableOnce": true}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let blocked = identify_and_type(&http, &base, &first.1, &f.upn, &pass).await;
    assert_eq!(blocked.0, 403, "{blocked:?}");

    // A break-glass account in the same group is never stopped by it.
    admin
        .post(
            "/users",
            json!({"userPrincipalName": "glass@contoso.example", "displayName": "Glass",
                   "accountEnabled": true, "breakGlass": true}),
        )
        .await;
    let glass = admin.get("/users/glass@contoso.example").await;
    admin
        .post(
            &format!("/groups/{}/members", pilot.as_str().unwrap()),
            json!({"id": glass["id"]}),
        )
        .await;
    let glass_pass = admin
        .post(
            "/users/glass@contoso.example/authentication/temporaryAccessPassMethods",
            json!({"isUsableOnce": true}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let back =
        identify_and_type(&http, &base, &first.1, "glass@contoso.example", &glass_pass).await;
    assert!(
        back.1.starts_with(REDIRECT) && back.1.contains("code="),
        "{back:?}"
    );
    let rec = sign_ins(&admin, "glass@contoso.example", 1).await[0].clone();
    assert_eq!(result_of(&rec, &pid), "notApplied", "{rec}");

    // Back to report-only is one action, and the password signs the user in again (the
    // one-time pass was spent by the blocked attempt).
    let (status, v) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}"),
            Some(json!({"state": "enabledForReportingButNotEnforced"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    assert!(back.1.starts_with(REDIRECT), "{back:?}");
}

/// The refresh grant is a token path too: a policy enforced after the sign-in refuses the
/// next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_block_refuses_the_next_refresh() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let pilot = pilot_group(&admin).await;
    let http = browser();
    let (verifier, first) = authorize(&http, &srv.base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, &srv.base, &first.1, &f.upn, &f.password).await;
    let code = query_param(&back.1, "code").unwrap();
    let (status, tokens) = crate::harness::redeem(&srv.base, &f, &code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let mut block = mfa_for(&pilot);
    block["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]});
    let policy = admin.post(POLICIES, block).await;
    let pid = policy["id"].as_str().unwrap();
    let (status, v) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}?force=true"),
            Some(json!({"state": "enabled"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    srv.clock.advance_secs(2);
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/token", srv.base))
        .basic_auth(&f.client_id, Some(&f.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("Conditional Access"),
        "{body}"
    );
}

/// The gate allows what it should: 48 h of report-only evidence in which nobody would have
/// been interrupted, and two break-glass accounts drilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_allows_after_48_hours_of_clean_evidence_and_drilled_break_glass() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.clone();
    let pilot = pilot_group(&admin).await;
    enable_passes(&admin).await;
    let clock = srv.clock.clone();
    let (secret, _) = enrol_with_pass(&base, &admin, &f.client_id, &f.upn, move || {
        clock.now().secs()
    })
    .await;
    // Two break-glass accounts, each signed in (with a pass) and drilled.
    for n in [1, 2] {
        let upn = format!("glass{n}@contoso.example");
        admin
            .post(
                "/users",
                json!({"userPrincipalName": upn, "displayName": format!("Glass {n}"),
                       "accountEnabled": true, "breakGlass": true}),
            )
            .await;
        let pass = admin
            .post(
                &format!("/users/{upn}/authentication/temporaryAccessPassMethods"),
                json!({"isUsableOnce": true}),
            )
            .await["temporaryAccessPass"]
            .as_str()
            .unwrap()
            .to_owned();
        let http = browser();
        let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
        let back = identify_and_type(&http, &base, &first.1, &upn, &pass).await;
        assert!(back.1.starts_with(REDIRECT), "{back:?}");
        let (status, v) = admin
            .call(
                Method::POST,
                "/breakGlass/drills",
                Some(json!({"user": upn})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let policy = admin.post(POLICIES, mfa_for(&pilot)).await;
    let pid = policy["id"].as_str().unwrap().to_owned();
    // The user signs in with a code (the application asks for MFA): the policy would have
    // been satisfied.
    srv.clock.advance_secs(60);
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[("acr_values", "mfa")]).await;
    let mfa = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    let now = srv.clock.now().secs();
    let back = type_code(
        &http,
        &base,
        &mfa.1,
        &code_at(&secret, TotpParams::default(), now),
    )
    .await;
    assert!(back.1.starts_with(REDIRECT), "{back:?}");
    let rec = sign_ins(&admin, &f.upn, 1).await[0].clone();
    assert_eq!(result_of(&rec, &pid), "reportOnlySuccess", "{rec}");
    // Too early: the evidence is younger than 48 hours.
    let impact = admin.get(&format!("{POLICIES}/{pid}/impact")).await;
    assert_eq!(impact["interruptedUsers"], 0, "{impact}");
    assert_eq!(impact["gate"]["allowed"], false, "{impact}");
    // Two days of use later (another clean sign-in on the second day) the gate allows it,
    // without force: 49 h of report-only evidence, nobody interrupted in the last 48 h.
    srv.clock.advance_secs(47 * 3600);
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[("acr_values", "mfa")]).await;
    let mfa = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    let now = srv.clock.now().secs();
    let back = type_code(
        &http,
        &base,
        &mfa.1,
        &code_at(&secret, TotpParams::default(), now),
    )
    .await;
    assert!(back.1.starts_with(REDIRECT), "{back:?}");
    srv.clock.advance_secs(2 * 3600);
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let impact = admin
        .get(&format!("{POLICIES}/{pid}/impact?since=72h"))
        .await;
    assert_eq!(impact["gate"]["allowed"], true, "{impact}");
    let (status, v) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}"),
            Some(json!({"state": "enabled"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "enabled", "{v}");
    assert_eq!(v["enforcementGate"]["gate"]["allowed"], true, "{v}");
    let forced = admin
        .get("/auditLogs/directoryAudits?action=forceEnableConditionalAccessPolicy")
        .await;
    assert_eq!(
        forced["value"].as_array().map_or(0, Vec::len),
        0,
        "not forced: {forced}"
    );
}

/// Sign-in frequency: a session older than the policy allows is not reused — the pages come
/// back — while a younger one is; `prompt=login` shows the pages whatever the policy says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_frequency_stops_the_reuse_of_an_old_session() {
    let srv = InProcess::start().await;
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    let base = srv.base.clone();
    let policy = admin
        .post(
            POLICIES,
            json!({
                "displayName": "Sign in every hour",
                "conditions": {
                    "users": {"includeUsers": ["All"]},
                    "applications": {"includeApplications": ["All"]},
                    "clientAppTypes": ["all"]
                },
                "sessionControls": {"signInFrequency": {"isEnabled": true, "value": 1, "type": "hours"}}
            }),
        )
        .await;
    let pid = policy["id"].as_str().unwrap();
    let (status, v) = admin
        .call(
            Method::PATCH,
            &format!("{POLICIES}/{pid}?force=true"),
            Some(json!({"state": "enabled"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let http = browser();
    let (_, first) = authorize(&http, &base, &f.client_id, &[]).await;
    let back = identify_and_type(&http, &base, &first.1, &f.upn, &f.password).await;
    assert!(back.1.starts_with(REDIRECT), "{back:?}");
    // 59 minutes later the session is reused (no page).
    srv.clock.advance_secs(59 * 60);
    let (_, again) = authorize(&http, &base, &f.client_id, &[]).await;
    assert!(
        again.1.starts_with(REDIRECT),
        "still fresh enough: {again:?}"
    );
    // Past the hour: the pages again (prompt=none: login_required), and a new sign-in
    // resets the clock.
    srv.clock.advance_secs(2 * 60);
    let (_, silent) = authorize(&http, &base, &f.client_id, &[("prompt", "none")]).await;
    assert!(silent.1.starts_with(REDIRECT), "{silent:?}");
    assert_eq!(
        query_param(&silent.1, "error").as_deref(),
        Some("login_required"),
        "{silent:?}"
    );
    let (_, late) = authorize(&http, &base, &f.client_id, &[]).await;
    assert!(late.1.starts_with("/login?t="), "sign in again: {late:?}");
    let back = identify_and_type(&http, &base, &late.1, &f.upn, &f.password).await;
    assert!(back.1.starts_with(REDIRECT), "{back:?}");
    let (_, reused) = authorize(&http, &base, &f.client_id, &[]).await;
    assert!(reused.1.starts_with(REDIRECT), "{reused:?}");
    // prompt=login always shows the pages.
    let (_, login) = authorize(&http, &base, &f.client_id, &[("prompt", "login")]).await;
    assert!(login.1.starts_with("/login?t="), "{login:?}");
}
