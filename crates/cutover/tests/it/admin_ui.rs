//! The admin web UI (`/admin…`): who gets in (no session → the sign-in pages; a password-only
//! member → stepped up to MFA; a strong non-member → 403 naming the group; a member signed in
//! with a Temporary Access Pass → in), every page with the data the test created, escaping,
//! the filters of the logs, the Conditional Access what-if, CSRF on every form, and a real
//! headless Chromium rendering every page (screenshots kept as test artefacts).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{
    Admin, Fixture, InProcess, auth_url, browser, hidden, location, pkce, required_env, seed,
    sign_in,
};

const REDIRECT: &str = "http://127.0.0.1:9/cb";
/// The administrator the tests sign in as.
pub const ADMIN_UPN: &str = "admin@contoso.example";
/// The default admin group (`cutover_server::DEFAULT_ADMIN_GROUP`).
const ADMIN_GROUP: &str = cutover_server::DEFAULT_ADMIN_GROUP;
/// A display name that must come out escaped.
const EVIL_NAME: &str = "Mallory <script>alert(1)</script>";
const CA_NAME: &str = "Would block everyone";
/// How long the page script may run (it bounds itself to 150 s; this is the backstop).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Make `user` (id or UPN) an administrator of the web UI: the admin group (created when
/// missing) and a direct membership, through the admin API. Returns the group's id.
pub async fn make_admin(admin: &Admin, user: &str) -> String {
    let groups = admin.get("/groups?$top=500").await;
    let existing = groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == ADMIN_GROUP)
        .map(|g| g["id"].as_str().unwrap().to_owned());
    let group = match existing {
        Some(id) => id,
        None => admin
            .post(
                "/groups",
                json!({"displayName": ADMIN_GROUP, "membershipKind": "assigned"}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    let u = admin.get(&format!("/users/{user}")).await;
    admin
        .post(&format!("/groups/{group}/members"), json!({"id": u["id"]}))
        .await;
    group
}

/// Turn Temporary Access Passes on and issue `user` a multi-use pass for an hour: the secret.
/// A pass counts as MFA, so it opens the admin UI to a member.
pub async fn issue_pass(admin: &Admin, user: &str) -> String {
    let (status, body) = admin
        .call(
            Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    admin
        .post(
            &format!("/users/{user}/authentication/temporaryAccessPassMethods"),
            json!({"isUsableOnce": false, "lifetimeInMinutes": 60}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A user with a password: its id.
async fn add_user(admin: &Admin, upn: &str, name: &str) -> String {
    admin
        .post(
            "/users",
            json!({"userPrincipalName": upn, "displayName": name, "accountEnabled": true,
                   "passwordProfile": {"password": "Correct-Horse-Battery-9"}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// From a browser about to be sent to the sign-in pages (`first` is the 303 from an admin
/// page), walk the identifier and the credential page with `secret` (a password or a pass).
/// Returns the credential post's response and the identifier page's HTML.
async fn walk_sign_in(
    http: &reqwest::Client,
    base: &str,
    first: &reqwest::Response,
    upn: &str,
    secret: &str,
) -> (reqwest::Response, String) {
    assert_eq!(
        first.status(),
        303,
        "an admin page without a session redirects"
    );
    let login = location(first);
    assert!(login.starts_with("/login?t="), "{login}");
    let html = http
        .get(format!("{base}{login}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let t = hidden(&html, "t");
    let res = http
        .post(format!("{base}/login/identifier"))
        .form(&[
            ("t", t.as_str()),
            ("csrf", &hidden(&html, "csrf")),
            ("username", upn),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "identifier of {upn}");
    let page = http
        .get(format!("{base}{}", location(&res)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = http
        .post(format!("{base}/login/password"))
        .form(&[
            ("t", t.as_str()),
            ("csrf", &hidden(&page, "csrf")),
            ("password", secret),
        ])
        .send()
        .await
        .unwrap();
    (res, html)
}

/// A fresh browser signed in to `path` with `secret`; asserts it came back to `path`.
async fn signed_in_to(base: &str, path: &str, upn: &str, secret: &str) -> reqwest::Client {
    let http = browser();
    let first = http.get(format!("{base}{path}")).send().await.unwrap();
    let (res, _) = walk_sign_in(&http, base, &first, upn, secret).await;
    assert_eq!(
        res.status(),
        303,
        "the sign-in should end in a redirect back: {}",
        res.text().await.unwrap_or_default()
    );
    assert_eq!(location(&res), format!("{base}{path}"));
    http
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> (u16, String) {
    let res = http.get(format!("{base}{path}")).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// `get` that must answer 200 with a page that has an `<h1>`.
async fn page(http: &reqwest::Client, base: &str, path: &str) -> String {
    let (status, html) = get(http, base, path).await;
    assert_eq!(status, 200, "GET {path}: {html}");
    assert!(html.contains("<h1>"), "GET {path} has no heading: {html}");
    assert!(
        !html.contains("<script"),
        "GET {path} carries a script: {html}"
    );
    html
}

/// The value of `data-count` (rows on a log page).
fn count_of(html: &str) -> usize {
    let marker = "data-count=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no count: {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].parse().unwrap()
}

/// Everything the admin pages should show: returns the fixture, the ids of the evil-named
/// user, the Pilot group and the report-only CA policy, and the admin's pass.
struct Data {
    f: Fixture,
    evil_id: String,
    pilot_id: String,
    policy_id: String,
    admin_pass: String,
}

async fn seed_everything(base: &str, admin: &Admin) -> Data {
    let f = seed(admin, REDIRECT).await;
    add_user(admin, ADMIN_UPN, "Ada Admin").await;
    make_admin(admin, ADMIN_UPN).await;
    let admin_pass = issue_pass(admin, ADMIN_UPN).await;
    let evil_id = add_user(admin, "mallory@contoso.example", EVIL_NAME).await;
    let pilot_id = admin.get("/groups?$top=500").await["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == "Pilot")
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .expect("the Pilot group");
    let policy = admin
        .post(
            "/identity/conditionalAccess/policies",
            json!({
                "displayName": CA_NAME,
                "conditions": {
                    "users": {"includeGroups": [pilot_id]},
                    "applications": {"includeApplications": ["All"]},
                    "clientAppTypes": ["all"]
                },
                "grantControls": {"operator": "OR", "builtInControls": ["block"]}
            }),
        )
        .await;
    assert_eq!(
        policy["state"], "enabledForReportingButNotEnforced",
        "{policy}"
    );
    // A staged-rollout policy for the Pilot group.
    let rollout = admin
        .post(
            "/policies/featureRolloutPolicies",
            json!({"displayName": "PHS pilot", "feature": "passwordHashSync", "isEnabled": true}),
        )
        .await;
    admin
        .post(
            &format!(
                "/policies/featureRolloutPolicies/{}/appliesTo",
                rollout["id"].as_str().unwrap()
            ),
            json!({"id": pilot_id}),
        )
        .await;
    // Sign-ins: two successes and a wrong password of user1 (judged by the policy).
    for _ in 0..2 {
        let (_, challenge) = pkce();
        let url = auth_url(base, &f.client_id, REDIRECT, &challenge, &[]);
        let back = sign_in(&browser(), base, &url, &f.upn, &f.password, None).await;
        assert!(back.starts_with(REDIRECT), "{back}");
    }
    let (_, challenge) = pkce();
    let url = auth_url(base, &f.client_id, REDIRECT, &challenge, &[]);
    let res =
        crate::harness::attempt_sign_in(&browser(), base, &url, &f.upn, "wrong-password-1", None)
            .await;
    assert_eq!(res.status(), 200, "a wrong password shows the page again");
    Data {
        policy_id: policy["id"].as_str().unwrap().to_owned(),
        f,
        evil_id,
        pilot_id,
        admin_pass,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_gets_in_no_session_weak_session_non_member() {
    let srv = InProcess::start().await;
    let base = srv.base.as_str();
    let admin = Admin::login(base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;

    // No session: the sign-in pages, named for the admin UI, and back to the page asked for.
    let http = browser();
    let res = http
        .get(format!("{base}/admin/signins?result=failure"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    assert!(login.starts_with("/login?t="), "{login}");
    let (_, html) = get(&http, base, &login).await;
    assert!(html.contains("Cutover administration"), "{html}");
    // Every admin page and action is behind the guard.
    for path in [
        "/admin",
        "/admin/users",
        "/admin/users/x",
        "/admin/groups",
        "/admin/policies",
        "/admin/signins",
        "/admin/audit",
        "/admin/campaigns",
        "/admin/campaigns/new",
        "/admin/campaigns/x",
        "/admin/campaigns/x/outbox",
        "/admin/campaigns/x/edit",
        "/admin/campaigns/x/waves/y/stragglers.csv",
    ] {
        let res = browser().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert!(location(&res).starts_with("/login?t="), "{path}");
    }
    let res = browser()
        .post(format!("{base}/admin/users/{}/unlock", f.user_id))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "an action without a session signs in first"
    );

    // A member signed in with a password only (on Security info) is stepped up: a fresh
    // sign-in asking for MFA, the name filled in; the password alone does not pass it.
    make_admin(&admin, &f.upn).await;
    let http = browser();
    let first = http
        .get(format!("{base}/my/security"))
        .send()
        .await
        .unwrap();
    let (res, _) = walk_sign_in(&http, base, &first, &f.upn, &f.password).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("{base}/my/security"));
    let step_up = http.get(format!("{base}/admin")).send().await.unwrap();
    let (res, identifier) = walk_sign_in(&http, base, &step_up, &f.upn, &f.password).await;
    assert!(
        identifier
            .to_lowercase()
            .contains(&format!("value=\"{}\"", f.upn)),
        "the step-up names the signed-in user: {identifier}"
    );
    assert_eq!(res.status(), 403);
    let text = res.text().await.unwrap();
    assert!(text.contains("A second sign-in method is needed"), "{text}");
    let (status, _) = get(&http, base, "/admin").await;
    assert_eq!(status, 303, "still not in");
    let last = admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={}&$top=1",
            f.upn
        ))
        .await["value"][0]
        .clone();
    assert_eq!(last["failureReason"], "secondFactorNotRegistered", "{last}");

    // The same member with a Temporary Access Pass (MFA) gets in.
    let pass = issue_pass(&admin, &f.upn).await;
    let http = signed_in_to(base, "/admin", &f.upn, &pass).await;
    let html = page(&http, base, "/admin").await;
    assert!(
        html.contains("User One"),
        "the header names the admin: {html}"
    );

    // A strong sign-in of someone who is not a member: 403 naming the user, the group and
    // how to be added.
    add_user(&admin, "outsider@contoso.example", "Olive Outsider").await;
    let outsider_pass = issue_pass(&admin, "outsider@contoso.example").await;
    let http = signed_in_to(base, "/admin", "outsider@contoso.example", &outsider_pass).await;
    let (status, html) = get(&http, base, "/admin").await;
    assert_eq!(status, 403, "{html}");
    for needle in [
        "outsider@contoso.example",
        "Olive Outsider",
        ADMIN_GROUP,
        "cutover admin groups add-member",
    ] {
        assert!(html.contains(needle), "{needle} in {html}");
    }
    let (status, _) = get(&http, base, "/admin/users").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_every_page_filters_what_if_and_csrf() {
    let srv = InProcess::start().await;
    let base = srv.base.as_str();
    let admin = Admin::login(base, &srv.creds).await;
    let d = seed_everything(base, &admin).await;
    let f = &d.f;
    let http = signed_in_to(base, "/admin", ADMIN_UPN, &d.admin_pass).await;

    // Dashboard: the sign-ins of the test counted, the report-only policy's impact.
    let html = page(&http, base, "/admin").await;
    for needle in [
        "Ada Admin",
        "Sign-ins per day by route",
        "Sign-ins per day by method",
        "role=\"img\"",
        "<title id=",
        CA_NAME,
        "/admin/campaigns",
        "Pass-through agents",
        "Directory sync",
    ] {
        assert!(html.contains(needle), "dashboard: {needle} in {html}");
    }
    let counted: usize = {
        let marker = "data-counted=\"";
        let s = html.find(marker).unwrap() + marker.len();
        html[s..s + html[s..].find('"').unwrap()].parse().unwrap()
    };
    assert!(counted >= 4, "the test's sign-ins are counted: {counted}");
    assert!(
        html.contains("passwordHashSync (PHS pilot)"),
        "staged rollout per feature: {html}"
    );

    // Users: the list, a search, the escaped display name, a user's page with its sign-ins.
    let html = page(&http, base, "/admin/users").await;
    assert!(
        html.contains("User1@contoso.example") && html.contains(ADMIN_UPN),
        "{html}"
    );
    let html = page(&http, base, "/admin/users?q=mallory").await;
    assert!(
        html.contains("Mallory &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        !html.contains("User1@contoso.example"),
        "the search filters: {html}"
    );
    let html = page(&http, base, &format!("/admin/users/{}", d.evil_id)).await;
    assert!(html.contains("Mallory &lt;script&gt;"), "{html}");
    let html = page(&http, base, &format!("/admin/users/{}", f.user_id)).await;
    for needle in [
        "User One",
        "Pilot",
        "Authentication methods",
        "No passkey registered",
        "set in Cutover",
        "Staged rollout",
        "Smart lockout",
        "invalidPassword",
        "Payroll",
    ] {
        assert!(html.contains(needle), "user page: {needle} in {html}");
    }
    let html = page(&http, base, &format!("/admin/users/{}", ADMIN_UPN)).await;
    assert!(
        html.contains("grants admin UI") && html.contains("usable"),
        "{html}"
    );

    // Groups.
    let html = page(&http, base, "/admin/groups").await;
    assert!(
        html.contains("Pilot") && html.contains(ADMIN_GROUP),
        "{html}"
    );
    let html = page(&http, base, &format!("/admin/groups/{}", d.pilot_id)).await;
    assert!(html.contains("User One"), "members: {html}");
    assert!(
        html.contains(CA_NAME) && html.contains("included"),
        "naming policies: {html}"
    );

    // Policies and the CA policy's page with its impact.
    let html = page(&http, base, "/admin/policies").await;
    assert!(
        html.contains(CA_NAME) && html.contains("report-only"),
        "{html}"
    );
    assert!(html.contains("Temporary Access Pass policy"), "{html}");
    let ca = format!("/admin/policies/ca/{}", d.policy_id);
    let html = page(&http, base, &ca).await;
    assert!(html.contains("block access"), "{html}");
    assert!(html.contains("Stopped users by reason"), "{html}");
    assert!(html.contains("id=\"impact-records\">"), "{html}");
    assert!(
        html.contains("User1@contoso.example"),
        "the would-be-blocked user: {html}"
    );
    let html = page(&http, base, &format!("{ca}?window=7d")).await;
    assert!(html.contains("last 7 days"), "{html}");
    let (status, html) = get(&http, base, &format!("{ca}?window=1y")).await;
    assert_eq!(status, 400, "{html}");
    assert!(
        html.contains("window"),
        "the message names the filter: {html}"
    );

    // What-if: the same engine as the API.
    let what_if = format!(
        "{ca}?user={}&app={}&platform=windows&methods=pwd",
        f.upn, f.client_id
    );
    let html = page(&http, base, &what_if).await;
    assert!(html.contains("id=\"what-if-results\""), "{html}");
    assert!(html.contains("reportOnlyFailure"), "{html}");
    assert!(html.contains("Allow: no enforced policy"), "{html}");
    let (status, api) = admin
        .call(
            Method::POST,
            "/identity/conditionalAccess/evaluate",
            Some(json!({"user": f.upn, "application": f.client_id, "platform": "windows"})),
        )
        .await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api["results"][0]["result"], "reportOnlyFailure", "{api}");
    let (status, html) = get(
        &http,
        base,
        &format!("{ca}?user=nobody@contoso.example&app={}", f.client_id),
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("User: no user"), "{html}");
    let (status, html) = get(
        &http,
        base,
        &format!("{ca}?user={}&app={}&ip=300.1.1.1", f.upn, f.client_id),
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("IP address"), "{html}");

    // Sign-in log filters.
    let html = page(&http, base, "/admin/signins").await;
    assert!(
        html.to_lowercase().contains(&f.upn) && html.contains("Payroll"),
        "{html}"
    );
    assert!(
        html.contains("cutover admin --output jsonl sign-ins"),
        "{html}"
    );
    let html = page(
        &http,
        base,
        &format!("/admin/signins?user={}&result=failure", f.upn),
    )
    .await;
    assert_eq!(count_of(&html), 1, "one wrong password: {html}");
    assert!(html.contains("invalidPassword"), "{html}");
    let html = page(
        &http,
        base,
        &format!(
            "/admin/signins?user={}&result=success&app={}",
            f.upn, f.client_id
        ),
    )
    .await;
    assert_eq!(count_of(&html), 2, "{html}");
    assert!(!html.contains("invalidPassword"), "{html}");
    let html = page(&http, base, "/admin/signins?route=federated").await;
    assert_eq!(count_of(&html), 0, "{html}");
    let html = page(
        &http,
        base,
        &format!("/admin/signins?ca=reportOnlyFailure&policy={}", d.policy_id),
    )
    .await;
    assert!(
        count_of(&html) >= 2,
        "the policy judged the successes: {html}"
    );
    for (bad, name) in [
        ("result=bogus", "result"),
        ("route=sideways", "route"),
        ("ca=maybe", "ca (Conditional Access result)"),
        ("user=nobody", "user"),
        ("policy=42", "policy"),
        ("before=garbage", "before"),
    ] {
        let (status, html) = get(&http, base, &format!("/admin/signins?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {html}");
        assert!(
            html.contains(&format!("{name}:")),
            "{bad}: the message names the filter: {html}"
        );
    }

    // Audit log filters: three users created (by the API client), before/after readable.
    let html = page(&http, base, "/admin/audit?action=createUser").await;
    assert_eq!(count_of(&html), 3, "{html}");
    assert!(!html.contains(">addGroupMember<"), "{html}");
    assert!(
        html.contains("<code>displayName</code>: Mallory &lt;script&gt;"),
        "{html}"
    );
    let html = page(&http, base, "/admin/audit?actor=nobody").await;
    assert_eq!(count_of(&html), 0, "{html}");
    let html = page(&http, base, &format!("/admin/audit?target={}", d.pilot_id)).await;
    assert!(
        count_of(&html) >= 2,
        "the group's creation and its member: {html}"
    );
    let (status, html) = get(&http, base, "/admin/audit?action=create%20user").await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("action:"), "{html}");

    // Unknown ids: 404 pages.
    for path in [
        format!("/admin/users/{}", uuid::Uuid::new_v4()),
        "/admin/users/not-a-user".to_owned(),
        format!("/admin/groups/{}", uuid::Uuid::new_v4()),
        "/admin/groups/not-a-uuid".to_owned(),
        format!("/admin/policies/ca/{}", uuid::Uuid::new_v4()),
    ] {
        let (status, html) = get(&http, base, &path).await;
        assert_eq!(status, 404, "{path}: {html}");
        assert!(html.contains("No such"), "{path}: {html}");
    }

    // CSRF: the unlock form is refused without its token or with another one, and works
    // (audited as the administrator) with it.
    let user_page = page(&http, base, &format!("/admin/users/{}", f.user_id)).await;
    let csrf = hidden(&user_page, "csrf");
    let unlock = format!("{base}/admin/users/{}/unlock", f.user_id);
    for form in [vec![], vec![("csrf", "forged")], vec![("csrf", "")]] {
        let res = http.post(&unlock).form(&form).send().await.unwrap();
        assert_eq!(res.status(), 403, "{form:?}");
    }
    assert!(
        admin
            .get("/auditLogs/directoryAudits?action=unlockUser")
            .await["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let res = http
        .post(&unlock)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(back.ends_with("?done=unlocked"), "{back}");
    let html = page(&http, base, &back).await;
    assert!(html.contains("The account was unlocked"), "{html}");
    let audits = admin
        .get("/auditLogs/directoryAudits?action=unlockUser")
        .await;
    assert_eq!(
        audits["value"][0]["actor"],
        format!("user:{ADMIN_UPN}"),
        "{audits}"
    );
    let html = page(&http, base, &format!("/admin/audit?actor=user:{ADMIN_UPN}")).await;
    assert_eq!(count_of(&html), 1, "{html}");
    // Another session's token does not work in this one.
    let other = signed_in_to(base, "/admin", ADMIN_UPN, &d.admin_pass).await;
    let other_csrf = hidden(&page(&other, base, "/admin").await, "csrf");
    assert_ne!(other_csrf, csrf);
    let res = http
        .post(&unlock)
        .form(&[("csrf", other_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // Every campaign form is refused without this session's token, and changes nothing.
    let group = d.pilot_id.clone();
    let campaign = admin
        .post(
            "/campaigns",
            serde_json::json!({
                "displayName": "CSRF check",
                "waves": [{"displayName": "Pilot", "phase": "pilot", "groupId": group,
                           "registrationOpens": "2026-01-01T00:00:00Z",
                           "enforcementDate": "2036-01-01T00:00:00Z"}]
            }),
        )
        .await;
    let cid = campaign["id"].as_str().expect("a campaign").to_owned();
    let wid = campaign["waves"][0]["id"].as_str().unwrap().to_owned();
    // (What the administrator's session does is audited under their name.)
    let by_admin = format!("/auditLogs/directoryAudits?actor=user:{ADMIN_UPN}");
    let before = admin.get(&by_admin).await["value"]
        .as_array()
        .unwrap()
        .len();
    for path in [
        "/admin/campaigns".to_owned(),
        format!("/admin/campaigns/{cid}/run"),
        format!("/admin/campaigns/{cid}/test-send"),
        format!("/admin/campaigns/{cid}/waves/{wid}/confirm"),
        format!("/admin/campaigns/{cid}/waves/{wid}/enforce"),
        format!("/admin/campaigns/{cid}/waves/{wid}/rollback"),
        format!("/admin/campaigns/{cid}/outbox/resendFailed"),
        format!("/admin/campaigns/{cid}/edit"),
        format!("/admin/outbox/{}/resend", uuid::Uuid::new_v4()),
    ] {
        for form in [
            vec![],
            vec![("csrf", "forged")],
            vec![("csrf", other_csrf.as_str())],
        ] {
            let mut body = form.clone();
            body.extend([
                ("name", "Sneaky"),
                ("wave", wid.as_str()),
                ("step", "announcement"),
                ("to", "attacker@evil.example"),
                ("definition", "{\"displayName\": \"Hijacked\"}"),
            ]);
            let res = http
                .post(format!("{base}{path}"))
                .form(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 403, "{path} with {form:?}");
        }
    }
    let after = admin.get(&by_admin).await["value"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "nothing was done");
    let c = admin.get(&format!("/campaigns/{cid}")).await;
    assert!(c["waves"][0]["status"]["confirmedAt"].is_null(), "{c}");
    assert_eq!(
        admin.get("/campaigns").await["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The definition editor: the version it was opened at, and its size, at the edge.
    let editor = page(&http, base, &format!("/admin/campaigns/{cid}/edit")).await;
    let version = hidden(&editor, "version");
    let post_edit = |definition: String, version: String| {
        let http = &http;
        let csrf = &csrf;
        let url = format!("{base}/admin/campaigns/{cid}/edit");
        async move {
            let res = http
                .post(url)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("version", version.as_str()),
                    ("definition", definition.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap_or_default())
        }
    };
    let max = cutover_server::campaigns::pages::MAX_EDIT_BYTES;
    let (status, html) = post_edit(" ".repeat(max + 1), version.clone()).await;
    assert_eq!(status, 200);
    assert!(html.contains("longer than"), "{html}");
    // At the limit it is read (and refused only for what it is: not a definition).
    let (_, html) = post_edit(format!("{}{}", " ".repeat(max - 2), "[]"), version.clone()).await;
    assert!(html.contains("must be a JSON object"), "{html}");
    let (_, html) = post_edit("{}".into(), "1".into()).await;
    assert!(
        html.contains("changed since this page was opened"),
        "{html}"
    );
    let c = admin.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(c["displayName"], "CSRF check", "nothing saved: {c}");
    // A definition larger than other admin bodies (six 15 KiB templates) is saved.
    let steps: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            serde_json::json!({"key": format!("s{i}"), "offsetDays": -i, "template": {
                "subject": format!("Step {i}"),
                "bodyMarkdown": format!("[Register]({{{{enrolLink}}}}) {}", "a".repeat(15 * 1024)),
            }})
        })
        .collect();
    let big = serde_json::json!({
        "displayName": "CSRF check",
        "waves": [{"id": wid, "displayName": "Pilot", "phase": "pilot", "groupId": group,
                   "registrationOpens": "2026-01-01T00:00:00Z",
                   "enforcementDate": "2036-01-01T00:00:00Z"}],
        "communications": steps,
    })
    .to_string();
    assert!(big.len() > cutover_core::limits::MAX_BODY_BYTES);
    let (status, html) = post_edit(big.clone(), version.clone()).await;
    assert_eq!(status, 303, "saved, back to the campaign: {html}");
    let c = admin.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(c["communications"].as_array().unwrap().len(), 6, "{c}");
    assert_eq!(c["waves"][0]["id"], wid.as_str());
    // The API takes it too, and refuses a body past the campaign limit with a 413.
    let (status, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/campaigns/{cid}"),
            Some(serde_json::from_str(&big).unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let huge = "x".repeat(cutover_core::limits::MAX_CAMPAIGN_BODY_BYTES + 1);
    let res = reqwest::Client::new()
        .patch(format!("{base}/api/v1/campaigns/{cid}"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    // Sign-out: refused without the token, then done.
    let res = http
        .post(format!("{base}/admin/signout"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(get(&http, base, "/admin").await.0, 200, "still signed in");
    let res = http
        .post(format!("{base}/admin/signout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(get(&http, base, "/admin").await.0, 303, "signed out");
}

/// The admin pages Chromium visits: every list and a detail page of each kind.
fn every_page(d: &Data) -> Vec<String> {
    vec![
        "/admin".into(),
        "/admin/users".into(),
        format!("/admin/users/{}", d.f.user_id),
        format!("/admin/users/{}", d.evil_id),
        "/admin/groups".into(),
        format!("/admin/groups/{}", d.pilot_id),
        "/admin/policies".into(),
        format!("/admin/policies/ca/{}", d.policy_id),
        format!(
            "/admin/policies/ca/{}?user={}&app={}&platform=iOS&methods=pwd#what-if",
            d.policy_id, d.f.upn, d.f.client_id
        ),
        "/admin/signins".into(),
        format!("/admin/signins?user={}&result=failure", d.f.upn),
        "/admin/audit".into(),
        "/admin/audit?action=createUser".into(),
    ]
}

/// `$CUTOVER_TEST_STATE_DIR/<tag>/screenshots`, emptied.
pub(crate) fn shots_dir(tag: &str) -> PathBuf {
    let shots = std::env::var("CUTOVER_TEST_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir())
        .join(tag)
        .join("screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    shots
}

/// Render `paths` (and `phone_paths` at phone width) in a real Chromium signed in as `upn`
/// with `secret` (`e2e/admin-pages.mjs`); the script's report, which must say ok, with a
/// clean page (status 200, an `<h1>`, no console error, no failed request) per path.
pub(crate) async fn render_pages(
    base: &str,
    upn: &str,
    secret: &str,
    paths: &[String],
    phone_paths: &[String],
    shots: &std::path::Path,
) -> Value {
    let node_dir = required_env("CUTOVER_TEST_NODE_DIR");
    let chromium = required_env("CUTOVER_TEST_CHROMIUM");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(PathBuf::from(&node_dir).join("admin-pages.mjs"))
        .env("CHROMIUM", &chromium)
        .env("BASE", base)
        .env("USERNAME", upn)
        .env("SECRET", secret)
        .env("PATHS", serde_json::to_string(paths).unwrap())
        .env("PHONE_PATHS", serde_json::to_string(phone_paths).unwrap())
        .env("SCREENSHOT_DIR", shots)
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("admin-pages.mjs did not exit within {SCRIPT_TIMEOUT:?}"))
        .expect("run node (installed by scripts/install-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("admin-pages.mjs output: {stdout}\n{stderr}"));
    assert_eq!(
        report["ok"], true,
        "a page failed in Chromium: {report:#}\n{stderr}"
    );
    assert!(out.status.success(), "{report}");
    let pages = report["pages"].as_array().expect("pages");
    assert_eq!(
        pages.len(),
        paths.len() + phone_paths.len(),
        "every page and the phone views: {report:#}"
    );
    for p in pages {
        assert_eq!(p["status"], 200, "{p}");
        assert!(p["h1"].as_str().is_some_and(|h| !h.is_empty()), "{p}");
        for list in [
            "consoleErrors",
            "pageErrors",
            "failedRequests",
            "badResponses",
        ] {
            assert_eq!(p[list], json!([]), "{list}: {p}");
        }
        let file = p["screenshot"].as_str().expect("screenshot");
        let meta = std::fs::metadata(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(meta.len() > 10_000, "{file} is a real picture");
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_every_admin_page() {
    let srv = InProcess::start().await;
    let base = srv.base.as_str();
    let admin = Admin::login(base, &srv.creds).await;
    let d = seed_everything(base, &admin).await;
    let paths = every_page(&d);
    let shots = shots_dir("admin-ui");
    let phone = [paths[0].clone(), paths[2].clone()];
    let report = render_pages(base, ADMIN_UPN, &d.admin_pass, &paths, &phone, &shots).await;
    let pages = report["pages"].as_array().expect("pages");
    let dashboard = pages.iter().find(|p| p["path"] == "/admin").unwrap();
    assert_eq!(dashboard["h1"], "Dashboard", "{dashboard}");
    assert!(
        dashboard["charts"].as_u64().unwrap_or(0) >= 2,
        "charts rendered: {dashboard}"
    );
    assert!(shots.join("admin.png").exists());
    eprintln!("admin UI screenshots: {}", shots.display());
}
