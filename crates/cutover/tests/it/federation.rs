//! Federation to a real upstream OpenID provider (`oidc-provider` from npm, which this project
//! did not write), home-realm discovery and staged rollout, end to end: users synced from a
//! real OpenLDAP by `cutover sync`, signing in through the pages of Cutover and of the upstream.

use serde_json::{Value, json};

use crate::harness::*;
use crate::sync::{REDIRECT, SyncEnv, slappasswd, user_ldif};
use crate::upstream::{Upstream, UpstreamClient, upstream_login};

pub(crate) const CALLBACK: &str = "/federation/callback";

/// The URL of a `<meta http-equiv="refresh">` page (the hop to the upstream IdP).
pub(crate) fn meta_refresh(html: &str) -> String {
    let marker = "content=\"0;url=";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no meta refresh in: {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].replace("&amp;", "&")
}

/// How a sign-in attempt went.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// `managed` (Cutover's password page) or `federated` (the upstream's pages).
    pub route: &'static str,
    /// The final response: 303 to the client on success, else an error or form page.
    pub status: u16,
    pub body: String,
    /// The redirect back to the client on success.
    pub back: Option<String>,
    pub verifier: String,
}

/// An application signing users in, and the way to walk its sign-ins.
pub(crate) struct Rp {
    pub base: String,
    pub client_id: String,
    pub secret: String,
}

impl Rp {
    /// One sign-in from a fresh browser: the identifier page, then Cutover's password page
    /// (typing `password`) or the upstream's login (as `upstream_login_name`), whichever the
    /// route is; or straight to the upstream when `/authorize` sends the browser there.
    pub async fn attempt(
        &self,
        upn: &str,
        password: &str,
        upstream_login_name: &str,
        extra: &[(&str, &str)],
    ) -> Attempt {
        let base = &self.base;
        let http = browser();
        let (verifier, challenge) = pkce();
        let url = auth_url(base, &self.client_id, REDIRECT, &challenge, extra);
        let res = http.get(&url).send().await.unwrap();
        assert_eq!(
            res.status(),
            303,
            "authorize: {}",
            res.text().await.unwrap()
        );
        let first = location(&res);
        let callback = if first.starts_with("/login?t=") {
            let page = http.get(format!("{base}{first}")).send().await.unwrap();
            let html = page.text().await.unwrap();
            let res = http
                .post(format!("{base}/login/identifier"))
                .form(&[
                    ("t", hidden(&html, "t").as_str()),
                    ("csrf", &hidden(&html, "csrf")),
                    ("username", upn),
                ])
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            if status == 303 {
                // Managed: the password page.
                let pw = http
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
                        ("t", hidden(&pw, "t").as_str()),
                        ("csrf", &hidden(&pw, "csrf")),
                        ("password", password),
                    ])
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let back = (status == 303).then(|| location(&res));
                return Attempt {
                    route: "managed",
                    status,
                    body: res.text().await.unwrap(),
                    back,
                    verifier,
                };
            }
            let html = res.text().await.unwrap();
            if status != 200 || !html.contains("http-equiv=\"refresh\"") {
                return Attempt {
                    route: "federated",
                    status,
                    body: html,
                    back: None,
                    verifier,
                };
            }
            upstream_login(
                &http,
                &meta_refresh(&html),
                upstream_login_name,
                &format!("{base}{CALLBACK}"),
            )
            .await
        } else {
            upstream_login(
                &http,
                &first,
                upstream_login_name,
                &format!("{base}{CALLBACK}"),
            )
            .await
        };
        let res = http.get(&callback).send().await.unwrap();
        let status = res.status().as_u16();
        let back = (status == 303).then(|| location(&res));
        Attempt {
            route: "federated",
            status,
            body: res.text().await.unwrap(),
            back,
            verifier,
        }
    }

    /// A sign-in that must succeed by `route`; returns the tokens.
    pub async fn sign_in(
        &self,
        upn: &str,
        password: &str,
        login: &str,
        extra: &[(&str, &str)],
        route: &str,
    ) -> Value {
        let a = self.attempt(upn, password, login, extra).await;
        assert_eq!(
            (a.route, a.status),
            (route, 303),
            "sign-in of {upn} should succeed {route}: {}",
            a.body
        );
        let back = a.back.unwrap();
        assert!(back.starts_with(REDIRECT), "{back}");
        self.redeem(&back, &a.verifier).await
    }

    /// Redeem the code in `back` (the redirect to the client); the tokens must come out.
    pub async fn redeem(&self, back: &str, verifier: &str) -> Value {
        let code = query_param(back, "code").expect("code");
        let f = Fixture {
            user_id: String::new(),
            upn: String::new(),
            password: String::new(),
            client_id: self.client_id.clone(),
            client_secret: self.secret.clone(),
            redirect_uri: REDIRECT.into(),
        };
        let (status, tokens) = redeem(&self.base, &f, &code, verifier).await;
        assert_eq!(status, 200, "{tokens}");
        assert!(tokens["id_token"].is_string(), "{tokens}");
        tokens
    }
}

/// The newest sign-in record of `upn`.
pub(crate) async fn last_sign_in(admin: &Admin, upn: &str) -> Value {
    let page = admin
        .get(&format!(
            "/auditLogs/signIns?userPrincipalName={upn}&$top=1"
        ))
        .await;
    page["value"][0].clone()
}

async fn audits(admin: &Admin, action: &str) -> Vec<Value> {
    admin
        .get(&format!("/auditLogs/directoryAudits?action={action}"))
        .await["value"]
        .as_array()
        .unwrap()
        .clone()
}

pub(crate) async fn group_id(admin: &Admin, name: &str) -> String {
    let groups = admin.get("/groups?$top=500").await;
    groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == name)
        .unwrap_or_else(|| panic!("no group {name}: {groups}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The admin puts group `Pilot` into an enabled passwordHashSync rollout policy (created here).
/// Returns (policy id, group id) and checks the policy now names the group.
pub(crate) async fn stage_pilot_group(admin: &Admin) -> (String, String) {
    let policy = admin
        .post(
            "/policies/featureRolloutPolicies",
            json!({"displayName": "PHS pilot", "feature": "passwordHashSync", "isEnabled": true}),
        )
        .await;
    let pid = policy["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{policy}"))
        .to_owned();
    let pilot_group = group_id(admin, "Pilot").await;
    let after_add = admin
        .post(
            &format!("/policies/featureRolloutPolicies/{pid}/appliesTo"),
            json!({"id": pilot_group}),
        )
        .await;
    assert_eq!(
        after_add["appliesTo"][0]["displayName"], "Pilot",
        "{after_add}"
    );
    (pid, pilot_group)
}

/// The group named `name` in a rollout progress answer.
fn progress_group(progress: &Value, name: &str) -> Value {
    progress["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups: {progress}"))
        .iter()
        .find(|g| g["displayName"] == name)
        .unwrap_or_else(|| panic!("no group {name}: {progress}"))
        .clone()
}

/// Progress totals with every category named (absent ones are 0), checking that the
/// categories add up to the members.
fn progress_totals(totals: &Value, switched: u64, pending: u64, held: u64, not_eligible: u64) {
    let want = json!({
        "members": switched + pending + held + not_eligible,
        "switched": switched, "pending": pending, "held": held, "returning": 0,
        "notEnabled": 0, "needsPasswordFeature": 0, "notEligible": not_eligible,
    });
    assert_eq!(totals, &want, "{totals}");
    let sum: u64 = [
        "switched",
        "pending",
        "held",
        "returning",
        "notEnabled",
        "needsPasswordFeature",
        "notEligible",
    ]
    .iter()
    .map(|k| totals[*k].as_u64().unwrap())
    .sum();
    assert_eq!(Some(sum), totals["members"].as_u64(), "{totals}");
}

pub(crate) fn features(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// A synced directory (pilot1 and other1 with passwords, nohash1 without; group Pilot holds
/// pilot1), an upstream IdP that knows them by their immutable ids, and `example.test`
/// federated to it.
pub(crate) struct FedEnv {
    pub env: SyncEnv,
    pub upstream: Upstream,
    pub idp_id: String,
    pub rp: Rp,
}

impl FedEnv {
    pub async fn start(with_unhashed_user: bool) -> Self {
        let env = SyncEnv::start().await;
        let base_dn = env.slapd.base.clone();
        let pilot_pw = slappasswd(&["-h", "{SSHA}", "-s", "pilot-pw"]);
        let other_pw = slappasswd(&["-h", "{SSHA}", "-s", "other-pw"]);
        let mut ldif = vec![
            user_ldif(&base_dn, "pilot1", &format!("userPassword: {pilot_pw}\n")),
            user_ldif(&base_dn, "other1", &format!("userPassword: {other_pw}\n")),
            format!(
                "dn: cn=Pilot,ou=groups,{base_dn}\nobjectClass: groupOfNames\ncn: Pilot\nmember: uid=pilot1,ou=people,{base_dn}\n"
            ),
        ];
        if with_unhashed_user {
            ldif.push(user_ldif(&base_dn, "nohash1", ""));
        }
        env.slapd.add(&ldif.join("\n"));
        let cfg = env.config("sync-a", false, "", "");
        env.run_ok(&cfg, &["run", "--once"]).await;
        let mut accounts = serde_json::Map::new();
        for uid in ["pilot1", "other1", "nohash1"] {
            if let Some(u) = env.user(&format!("{uid}@example.test")).await {
                accounts.insert(uid.into(), json!({"immutable_id": u["immutableId"]}));
            }
        }
        let srv = env.server.base.clone();
        let upstream = Upstream::start(
            &[UpstreamClient {
                client_id: "cutover".into(),
                client_secret: "cutover-upstream-secret".into(),
                redirect_uris: vec![format!("{srv}{CALLBACK}")],
                mode: "normal",
            }],
            Value::Object(accounts),
        )
        .await;
        let idp = env
            .admin
            .post(
                "/identityProviders",
                json!({"displayName": "Corp IdP", "issuer": upstream.issuer, "clientId": "cutover",
                       "clientSecret": "cutover-upstream-secret", "immutableIdClaim": "immutable_id"}),
            )
            .await;
        assert_eq!(idp["redirectUri"], format!("{srv}{CALLBACK}"), "{idp}");
        assert!(
            idp.get("clientSecret").is_none(),
            "the secret is write-only: {idp}"
        );
        let idp_id = idp["id"].as_str().unwrap().to_owned();
        // Managed → federated is the always-allowed direction of a conversion.
        let r = env
            .admin
            .post(
                "/domains/example.test/convert",
                json!({"to": "federated", "identityProviderId": idp_id}),
            )
            .await;
        assert_eq!(r["converted"], true, "{r}");
        let rp = Rp {
            base: srv,
            client_id: env.rp_client_id.clone(),
            secret: env.rp_secret.clone(),
        };
        FedEnv {
            env,
            upstream,
            idp_id,
            rp,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_rollout_moves_a_group_after_one_more_sign_in_and_back() {
    let fx = FedEnv::start(false).await;
    let admin = &fx.env.admin;
    let rp = &fx.rp;
    const PILOT: &str = "pilot1@example.test";

    // A federated domain: the upstream signs the user in, Cutover issues the tokens.
    rp.sign_in(PILOT, "", "pilot1", &[], "federated").await;
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(
        (&rec["route"], &rec["routeReason"], &rec["result"]),
        (
            &json!("federated"),
            &json!("federatedDomain"),
            &json!("success")
        ),
        "{rec}"
    );
    assert!(
        rec["authenticationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("immutableId")),
        "{rec}"
    );

    // The admin stages group Pilot for password hash sync.
    let (pid, pilot_group) = stage_pilot_group(admin).await;
    let view = admin.get(&format!("/users/{PILOT}/stagedRollout")).await;
    assert_eq!(
        features(&view["desired"]),
        vec!["passwordHashSync"],
        "{view}"
    );
    assert!(features(&view["effective"]).is_empty(), "{view}");
    assert_eq!(view["pendingChange"], true);
    assert_eq!(
        view["route"]["route"], "federated",
        "nothing moves before a sign-in: {view}"
    );
    // Someone outside the group is not affected.
    let other = admin.get("/users/other1@example.test/stagedRollout").await;
    assert!(
        features(&other["desired"]).is_empty() && other["pendingChange"] == false,
        "{other}"
    );

    // Exactly one more federated sign-in; it switches the user at its end.
    rp.sign_in(PILOT, "", "pilot1", &[], "federated").await;
    let rec = last_sign_in(admin, PILOT).await;
    assert!(
        features(&rec["stagedRollout"]["effective"]).is_empty(),
        "{rec}"
    );
    assert_eq!(
        features(&rec["stagedRollout"]["effectiveAfter"]),
        vec!["passwordHashSync"],
        "{rec}"
    );
    let enabled = audits(admin, "userEnabledForFeature").await;
    assert_eq!(enabled.len(), 1, "{enabled:?}");
    assert_eq!(enabled[0]["targetName"], PILOT);
    let view = admin.get(&format!("/users/{PILOT}/stagedRollout")).await;
    assert_eq!(
        (
            &view["route"]["route"],
            &view["route"]["reason"],
            &view["pendingChange"]
        ),
        (
            &json!("managed"),
            &json!("stagedRolloutPasswordHashSync"),
            &json!(false)
        ),
        "{view}"
    );

    // From now on: Cutover's own password page, checked against the synced hash.
    let wrong = rp.attempt(PILOT, "not-the-password", "pilot1", &[]).await;
    assert_eq!(
        (wrong.route, wrong.status),
        ("managed", 200),
        "{}",
        wrong.body
    );
    assert_eq!(
        last_sign_in(admin, PILOT).await["failureReason"],
        "invalidPassword"
    );
    let tokens = rp
        .sign_in(PILOT, "pilot-pw", "pilot1", &[], "managed")
        .await;
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(
        (
            &rec["route"],
            &rec["routeReason"],
            &rec["stagedRolloutFeature"]
        ),
        (
            &json!("managed"),
            &json!("stagedRolloutPasswordHashSync"),
            &json!("passwordHashSync")
        ),
        "{rec}"
    );
    assert_eq!(
        rec["authenticationMethods"],
        json!(["passwordHashSync"]),
        "{rec}"
    );

    // Apps that send domain_hint keep federation (and skip Cutover's identifier page).
    rp.sign_in(
        PILOT,
        "",
        "pilot1",
        &[("domain_hint", "example.test")],
        "federated",
    )
    .await;
    assert_eq!(
        last_sign_in(admin, PILOT).await["routeReason"],
        "domainHintKeepsFederation"
    );
    // So do legacy clients.
    let legacy = admin
        .post(
            "/applications",
            json!({"displayName": "Old Mail", "redirectUris": [REDIRECT], "clientType": "confidential",
                   "clientAppType": "exchangeActiveSync"}),
        )
        .await;
    let legacy_rp = Rp {
        base: rp.base.clone(),
        client_id: legacy["clientId"].as_str().unwrap().into(),
        secret: legacy["clientSecret"].as_str().unwrap().into(),
    };
    legacy_rp
        .sign_in(PILOT, "", "pilot1", &[], "federated")
        .await;
    assert_eq!(
        last_sign_in(admin, PILOT).await["routeReason"],
        "legacyClientKeepsFederation"
    );
    // Neither moved the user back.
    let view = admin.get(&format!("/users/{PILOT}/stagedRollout")).await;
    assert_eq!(
        features(&view["effective"]),
        vec!["passwordHashSync"],
        "{view}"
    );

    // Rollback: the group leaves the policy. A refresh (non-interactive) changes nothing ...
    let (status, after_remove) = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/policies/featureRolloutPolicies/{pid}/appliesTo/{pilot_group}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{after_remove}");
    assert!(after_remove["appliesTo"].as_array().unwrap().is_empty());
    let refreshed = reqwest::Client::new()
        .post(format!("{}/oauth2/token", rp.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", rp.client_id.as_str()),
            ("client_secret", rp.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    let view = admin.get(&format!("/users/{PILOT}/stagedRollout")).await;
    assert_eq!(
        features(&view["effective"]),
        vec!["passwordHashSync"],
        "{view}"
    );
    assert_eq!(view["pendingChange"], true);
    // ... one more (managed) sign-in moves the user back, and the next one is federated.
    rp.sign_in(PILOT, "pilot-pw", "pilot1", &[], "managed")
        .await;
    let removed = audits(admin, "userRemovedFromFeature").await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    rp.sign_in(PILOT, "", "pilot1", &[], "federated").await;
    assert_eq!(
        last_sign_in(admin, PILOT).await["routeReason"],
        "federatedDomain"
    );

    // Disabling the policy is the other one-step rollback.
    admin
        .post(
            &format!("/policies/featureRolloutPolicies/{pid}/appliesTo"),
            json!({"id": pilot_group}),
        )
        .await;
    rp.sign_in(PILOT, "", "pilot1", &[], "federated").await;
    let (status, disabled) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/policies/featureRolloutPolicies/{pid}"),
            Some(json!({"isEnabled": false})),
        )
        .await;
    assert_eq!(
        (status, &disabled["isEnabled"]),
        (200, &json!(false)),
        "{disabled}"
    );
    rp.sign_in(PILOT, "pilot-pw", "pilot1", &[], "managed")
        .await;
    rp.sign_in(PILOT, "", "pilot1", &[], "federated").await;
    for action in [
        "createFeatureRolloutPolicy",
        "addFeatureRolloutGroup",
        "removeFeatureRolloutGroup",
        "disableFeatureRolloutPolicy",
    ] {
        assert!(!audits(admin, action).await.is_empty(), "no {action} audit");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn domain_cutover_is_preflighted_and_converting_back_is_the_rollback() {
    let fx = FedEnv::start(true).await;
    let admin = &fx.env.admin;
    let rp = &fx.rp;
    // pilot1 is staged (one federated sign-in switches them) before the cut-over.
    let (pid, _) = stage_pilot_group(admin).await;
    // A staged user without a synced hash is held back: switching them would lock them out.
    let wave = admin
        .post(
            "/groups",
            json!({"displayName": "No-hash wave", "membershipKind": "assigned"}),
        )
        .await;
    let nohash = admin.get("/users/nohash1@example.test").await;
    admin
        .post(
            &format!("/groups/{}/members", wave["id"].as_str().unwrap()),
            json!({"id": nohash["id"]}),
        )
        .await;
    admin
        .post(
            &format!("/policies/featureRolloutPolicies/{pid}/appliesTo"),
            json!({"id": wave["id"]}),
        )
        .await;
    rp.sign_in("nohash1@example.test", "", "nohash1", &[], "federated")
        .await;
    let rec = last_sign_in(admin, "nohash1@example.test").await;
    assert_eq!(
        rec["stagedRollout"]["held"], "noSyncedPasswordHash",
        "{rec}"
    );
    assert!(
        features(&rec["stagedRollout"]["effectiveAfter"]).is_empty(),
        "{rec}"
    );
    let view = admin.get("/users/nohash1@example.test/stagedRollout").await;
    assert_eq!(
        (
            &view["held"],
            &view["pendingChange"],
            &view["route"]["route"]
        ),
        (
            &json!("noSyncedPasswordHash"),
            &json!(false),
            &json!("federated")
        ),
        "{view}"
    );
    // The policy's progress: pilot1 switches at their next sign-in, nohash1 is held.
    let progress_path = format!("/policies/featureRolloutPolicies/{pid}/progress");
    let progress = admin.get(&progress_path).await;
    assert_eq!(
        (
            &progress["policyId"],
            &progress["feature"],
            &progress["isEnabled"],
            &progress["truncated"]
        ),
        (
            &json!(pid),
            &json!("passwordHashSync"),
            &json!(true),
            &json!(false)
        ),
        "{progress}"
    );
    let pilot = progress_group(&progress, "Pilot");
    progress_totals(&pilot["totals"], 0, 1, 0, 0);
    assert_eq!(
        pilot["samples"],
        json!({"pending": ["pilot1@example.test"]}),
        "{pilot}"
    );
    let held = progress_group(&progress, "No-hash wave");
    assert_eq!(held["id"], wave["id"]);
    progress_totals(&held["totals"], 0, 0, 1, 0);
    assert_eq!(
        held["samples"],
        json!({"held": ["nohash1@example.test"]}),
        "{held}"
    );
    progress_totals(&progress["totals"], 0, 1, 1, 0);
    rp.sign_in("pilot1@example.test", "", "pilot1", &[], "federated")
        .await;
    let progress = admin.get(&progress_path).await;
    let pilot = progress_group(&progress, "Pilot");
    progress_totals(&pilot["totals"], 1, 0, 0, 0);
    assert_eq!(pilot["samples"], json!({}), "switched users are not listed");
    progress_totals(
        &progress_group(&progress, "No-hash wave")["totals"],
        0,
        0,
        1,
        0,
    );
    progress_totals(&progress["totals"], 1, 0, 1, 0);
    // The CLI draws it: a 40-character bar per group (█ switched, ! held) and who to act on.
    let data_dir = &fx.env.server.data_dir;
    let r = crate::federation_cli::cli(data_dir, &["rollout", "progress", "passwordHashSync"], "");
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    let line = |label: &str| -> String {
        r.out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no line {label:?} in\n{}", r.out))
            .to_owned()
    };
    let bar = |parts: &[(&str, usize)]| -> String {
        let inner: String = parts.iter().map(|(c, n)| c.repeat(*n)).collect();
        format!("[{inner}]")
    };
    for (label, tail) in [
        (
            "Pilot (1 member) ",
            format!("{}  switched 1", bar(&[("█", 40)])),
        ),
        (
            "No-hash wave (1 member) ",
            format!("{}  held 1", bar(&[("!", 40)])),
        ),
        (
            "Total (2 members) ",
            format!("{}  switched 1 · held 1", bar(&[("█", 20), ("!", 20)])),
        ),
    ] {
        let l = line(label);
        assert!(l.ends_with(&tail), "{l:?} should end with {tail:?}");
    }
    assert!(
        r.out.contains(
            "Held in No-hash wave (1): sync their password hash: cutover sync run --once --passwords\n  nohash1@example.test\n"
        ),
        "{}",
        r.out
    );
    assert!(!r.out.contains("Pending in"), "{}", r.out);
    let r = crate::federation_cli::cli(
        data_dir,
        &["--output", "json", "rollout", "progress", &pid],
        "",
    );
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    let raw: Value = serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}", r.out));
    assert_eq!(raw, progress, "--output json prints the server's answer");

    // Not ready: a synced user without a hash, no break-glass accounts.
    let (status, dry) = admin
        .call(
            reqwest::Method::POST,
            "/domains/example.test/convert",
            Some(json!({"to": "managed", "dryRun": true})),
        )
        .await;
    assert_eq!(
        (status, &dry["preflight"]["allowed"]),
        (200, &json!(false)),
        "{dry}"
    );
    let failed: Vec<&str> = dry["preflight"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "failed")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        failed,
        vec!["passwordHashes", "breakGlassAccounts"],
        "{dry}"
    );
    let hashes = &dry["preflight"]["checks"][0];
    assert_eq!(hashes["users"], json!(["nohash1@example.test"]), "{hashes}");
    // Pass-through needs three healthy agents; there are none.
    let (_, pta) = admin
        .call(
            reqwest::Method::POST,
            "/domains/example.test/convert",
            Some(json!({"to": "managed", "passwordValidation": "passthroughAuthentication", "dryRun": true})),
        )
        .await;
    assert_eq!(
        pta["preflight"]["checks"][0]["name"], "passthroughAgents",
        "{pta}"
    );
    assert_eq!(pta["preflight"]["checks"][0]["status"], "failed", "{pta}");
    // The real conversion is refused and changes nothing.
    let (status, refused) = admin
        .call(
            reqwest::Method::POST,
            "/domains/example.test/convert",
            Some(json!({"to": "managed"})),
        )
        .await;
    assert_eq!(
        (status, &refused["converted"]),
        (409, &json!(false)),
        "{refused}"
    );
    assert_eq!(
        admin.get("/domains/example.test").await["authenticationType"],
        "federated"
    );

    // Get ready: nohash1 gets a password on-prem (the hash cycle brings it), two break-glass
    // accounts exist and one is drilled.
    let base_dn = fx.env.slapd.base.clone();
    let pw = slappasswd(&["-h", "{SSHA}", "-s", "late-pw"]);
    fx.env.slapd.modify(&format!(
        "dn: uid=nohash1,ou=people,{base_dn}\nchangetype: modify\nreplace: userPassword\nuserPassword: {pw}\n"
    ));
    let cfg = fx.env.config("sync-a", false, "", "");
    fx.env.run_ok(&cfg, &["run", "--once", "--passwords"]).await;
    // With the hash synced, nohash1 is no longer held: their next sign-in switches them.
    let progress = admin.get(&progress_path).await;
    let wave_progress = progress_group(&progress, "No-hash wave");
    progress_totals(&wave_progress["totals"], 0, 1, 0, 0);
    assert_eq!(
        wave_progress["samples"],
        json!({"pending": ["nohash1@example.test"]}),
        "{wave_progress}"
    );
    admin
        .post(
            "/domains",
            json!({"id": "cloud.example", "authenticationType": "managed"}),
        )
        .await;
    for n in [1, 2] {
        admin
            .post(
                "/users",
                json!({"userPrincipalName": format!("glass{n}@cloud.example"), "displayName": format!("Break glass {n}"),
                       "accountEnabled": true, "breakGlass": true, "passwordProfile": {"password": "Glass-Drill-Password-1"}}),
            )
            .await;
    }
    // A break-glass account never signs in with a password alone: its drill uses a
    // Temporary Access Pass (the way it registers its passkey).
    let (status, v) = admin
        .call(
            reqwest::Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let pass = admin
        .post(
            "/users/glass1@cloud.example/authentication/temporaryAccessPassMethods",
            json!({"isUsableOnce": true}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    rp.sign_in("glass1@cloud.example", &pass, "-", &[], "managed")
        .await;
    let (_, dry) = admin
        .call(
            reqwest::Method::POST,
            "/domains/example.test/convert",
            Some(json!({"to": "managed", "dryRun": true})),
        )
        .await;
    assert_eq!(dry["preflight"]["allowed"], true, "{dry}");
    let review = dry["preflight"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "recentFederatedSignIns")
        .unwrap()
        .clone();
    assert_eq!(review["status"], "warning", "{review}");
    assert_eq!(
        review["users"],
        json!(["pilot1@example.test (1×)", "nohash1@example.test (1×)"]),
        "{review}"
    );
    assert_eq!(
        admin.get("/domains/example.test").await["authenticationType"],
        "federated",
        "a dry run changes nothing"
    );

    // The cut-over: everyone of the domain signs in with Cutover, by synced hash.
    let done = admin
        .post("/domains/example.test/convert", json!({"to": "managed"}))
        .await;
    assert_eq!(done["converted"], true, "{done}");
    // A managed domain is out of staged rollout's reach (its state frozen).
    progress_totals(&admin.get(&progress_path).await["totals"], 0, 0, 0, 2);
    let d = admin.get("/domains/example.test").await;
    assert_eq!(
        (
            &d["authenticationType"],
            &d["passwordValidation"],
            &d["previousIdentityProviderId"]
        ),
        (
            &json!("managed"),
            &json!("passwordHashSync"),
            &json!(fx.idp_id)
        ),
        "{d}"
    );
    rp.sign_in("nohash1@example.test", "late-pw", "-", &[], "managed")
        .await;
    let rec = last_sign_in(admin, "nohash1@example.test").await;
    assert_eq!(rec["routeReason"], "managedDomain", "{rec}");
    rp.sign_in("pilot1@example.test", "pilot-pw", "-", &[], "managed")
        .await;
    let view = admin.get("/users/pilot1@example.test/stagedRollout").await;
    assert_eq!(
        (&view["eligibility"], features(&view["effective"])),
        (&json!("managedDomain"), vec!["passwordHashSync".to_owned()]),
        "a managed domain freezes the staged state: {view}"
    );
    // The IdP cannot be deleted while a rollback may need it? It can: only federated domains
    // hold it. But converting back is always allowed and returns to it by default.
    let back = admin
        .post("/domains/example.test/convert", json!({"to": "federated"}))
        .await;
    assert_eq!(back["converted"], true, "{back}");
    assert_eq!(
        admin.get("/domains/example.test").await["identityProviderId"],
        json!(fx.idp_id)
    );
    // The rollback restores the state before the cut-over: pilot1 staged, nohash1 federated.
    rp.sign_in("pilot1@example.test", "pilot-pw", "-", &[], "managed")
        .await;
    assert_eq!(
        last_sign_in(admin, "pilot1@example.test").await["routeReason"],
        "stagedRolloutPasswordHashSync"
    );
    rp.sign_in("nohash1@example.test", "", "nohash1", &[], "federated")
        .await;
    assert_eq!(audits(admin, "convertDomainToManaged").await.len(), 1);
    assert_eq!(audits(admin, "convertDomainToFederated").await.len(), 2);
    // A federated domain's IdP cannot be deleted from under it.
    let (status, err) = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/identityProviders/{}", fx.idp_id),
            None,
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("example.test"),
        "{err}"
    );
    drop(fx.upstream);
}

/// An in-process server with synced users created through the admin API (no directory
/// needed), and an upstream whose clients misbehave on request.
struct Failures {
    server: InProcess,
    admin: Admin,
    upstream: Upstream,
    rp: Rp,
}

impl Failures {
    async fn start() -> Self {
        let server = InProcess::start().await;
        let admin = Admin::login(&server.base, &server.creds).await;
        let callback = format!("{}{CALLBACK}", server.base);
        let modes = ["normal", "wrong-audience", "bad-signature", "token-error"];
        let clients: Vec<UpstreamClient> = modes
            .iter()
            .map(|m| UpstreamClient {
                client_id: format!("cutover-{m}"),
                client_secret: format!("secret-{m}"),
                redirect_uris: vec![callback.clone()],
                mode: m,
            })
            .collect();
        let upstream = Upstream::start(
            &clients,
            json!({
                "good": {"immutable_id": "anchor-good"},
                "ghost": {"immutable_id": "anchor-nobody-has"},
                "stranger": {"immutable_id": "anchor-other"},
                "byname": {"immutable_id": "anchor-unknown", "upn": "good@good.example"},
            }),
        )
        .await;
        // One domain per upstream client, each federated to its own registration.
        for m in modes {
            let idp = admin
                .post(
                    "/identityProviders",
                    json!({"displayName": format!("IdP {m}"), "issuer": upstream.issuer,
                           "clientId": format!("cutover-{m}"), "clientSecret": format!("secret-{m}"),
                           "immutableIdClaim": "immutable_id", "fallbackToUpn": m == "normal"}),
                )
                .await;
            let domain = if m == "normal" {
                "good.example".to_owned()
            } else {
                format!("{m}.example")
            };
            admin
                .post(
                    "/domains",
                    json!({"id": domain, "authenticationType": "federated", "identityProviderId": idp["id"]}),
                )
                .await;
        }
        // An IdP nobody listens for.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = admin
            .post(
                "/identityProviders",
                json!({"displayName": "Down", "issuer": format!("http://127.0.0.1:{port}"),
                       "clientId": "x", "clientSecret": "y"}),
            )
            .await;
        admin
            .post(
                "/domains",
                json!({"id": "down.example", "authenticationType": "federated", "identityProviderId": dead["id"]}),
            )
            .await;
        for (upn, anchor) in [
            ("good@good.example", "anchor-good"),
            ("other@wrong-audience.example", "anchor-other"),
        ] {
            admin
                .post(
                    "/users",
                    json!({"userPrincipalName": upn, "displayName": upn, "accountEnabled": true,
                           "source": "synced", "immutableId": anchor}),
                )
                .await;
        }
        let app = admin
            .post(
                "/applications",
                json!({"displayName": "Payroll", "redirectUris": [REDIRECT], "clientType": "confidential"}),
            )
            .await;
        let rp = Rp {
            base: server.base.clone(),
            client_id: app["clientId"].as_str().unwrap().into(),
            secret: app["clientSecret"].as_str().unwrap().into(),
        };
        Failures {
            server,
            admin,
            upstream,
            rp,
        }
    }

    async fn user_count(&self) -> usize {
        self.admin.get("/users?$top=500").await["value"]
            .as_array()
            .unwrap()
            .len()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_are_refused_clearly_and_change_nothing() {
    let fx = Failures::start().await;
    let admin = &fx.admin;
    let users_before = fx.user_count().await;

    // The happy path first, so the failures below are failures of their own.
    fx.rp
        .sign_in("good@good.example", "", "good", &[], "federated")
        .await;

    // (upn typed, upstream login, expected HTTP status, failure reason, words on the page)
    let cases = [
        (
            "x@wrong-audience.example",
            "good",
            403,
            "upstreamTokenInvalid",
            "could not be verified",
        ),
        (
            "x@bad-signature.example",
            "good",
            403,
            "upstreamTokenInvalid",
            "could not be verified",
        ),
        (
            "x@token-error.example",
            "good",
            502,
            "upstreamUnavailable",
            "cannot be reached",
        ),
        (
            "ghost@good.example",
            "ghost",
            403,
            "upstreamSubjectNotFound",
            "no matching account",
        ),
        // good.example's IdP vouching for a user of another domain.
        (
            "stranger@good.example",
            "stranger",
            403,
            "upstreamUserNotAllowed",
            "cannot sign in this way",
        ),
    ];
    for (upn, login, status, reason, words) in cases {
        let a = fx.rp.attempt(upn, "", login, &[]).await;
        assert_eq!(
            (a.route, a.status),
            ("federated", status),
            "{upn}: {}",
            a.body
        );
        assert!(a.body.contains(words), "{upn}: {}", a.body);
        assert!(a.body.contains("Try again"), "{upn}: {}", a.body);
        let rec = last_sign_in(admin, upn).await;
        let rec = if rec.is_null() {
            // The record names the user the upstream vouched for when it found one.
            last_sign_in(admin, "other@wrong-audience.example").await
        } else {
            rec
        };
        assert_eq!(
            (&rec["result"], &rec["failureReason"], &rec["route"]),
            (&json!("failure"), &json!(reason), &json!("federated")),
            "{upn}: {rec}"
        );
    }

    // An ID token that expired by Cutover's clock is refused (the upstream mints it for 10
    // minutes; the sign-in transaction lives 15, so only the token is stale).
    let http = browser();
    let (_, challenge) = pkce();
    let url = auth_url(
        &fx.rp.base,
        &fx.rp.client_id,
        REDIRECT,
        &challenge,
        &[("domain_hint", "good.example")],
    );
    let to_upstream = location(&http.get(&url).send().await.unwrap());
    let callback = upstream_login(
        &http,
        &to_upstream,
        "good",
        &format!("{}{CALLBACK}", fx.rp.base),
    )
    .await;
    fx.server.clock.advance_secs(11 * 60);
    let late = http.get(&callback).send().await.unwrap();
    fx.server.clock.advance_secs(-11 * 60);
    assert_eq!(late.status(), 403);
    // Nobody was identified yet (domain_hint skipped the identifier page): the newest record.
    let rec = admin.get("/auditLogs/signIns?$top=1").await["value"][0].clone();
    assert_eq!(
        (&rec["failureReason"], &rec["route"]),
        (&json!("upstreamTokenInvalid"), &json!("federated")),
        "{rec}"
    );

    // Matching by UPN when the immutable id is unknown (the fallback is on for good.example).
    fx.rp
        .sign_in("good@good.example", "", "byname", &[], "federated")
        .await;
    let rec = last_sign_in(admin, "good@good.example").await;
    assert!(
        rec["authenticationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("userPrincipalName")),
        "{rec}"
    );
    // A standard claim works as the UPN claim too: the upstream sends the login as
    // `preferred_username`, and a login nobody has an immutable id for falls back to it.
    let idps = admin.get("/identityProviders").await;
    let good_idp = idps["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["clientId"] == "cutover-normal")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/identityProviders/{good_idp}"),
            Some(json!({"upnClaim": "preferred_username"})),
        )
        .await;
    assert_eq!(
        (status, &v["upnClaim"]),
        (200, &json!("preferred_username")),
        "{v}"
    );
    fx.rp
        .sign_in(
            "good@good.example",
            "",
            "good@good.example",
            &[],
            "federated",
        )
        .await;

    // The upstream is down: a clear page, the sign-in can be retried, nothing is written.
    let http = browser();
    let (_, challenge) = pkce();
    let url = auth_url(&fx.rp.base, &fx.rp.client_id, REDIRECT, &challenge, &[]);
    let login = location(&http.get(&url).send().await.unwrap());
    let page = http
        .get(format!("{}{login}", fx.rp.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = http
        .post(format!("{}/login/identifier", fx.rp.base))
        .form(&[
            ("t", hidden(&page, "t").as_str()),
            ("csrf", &hidden(&page, "csrf")),
            ("username", "someone@down.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("cannot be reached") && body.contains("Try again"),
        "{body}"
    );
    let again = http
        .get(format!("{}{login}", fx.rp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "the sign-in survives: Try again works");
    let rec = last_sign_in(admin, "someone@down.example").await;
    assert_eq!(rec["failureReason"], "upstreamUnavailable", "{rec}");
    // No session came out of any failure: prompt=none still needs a sign-in.
    let none = auth_url(
        &fx.rp.base,
        &fx.rp.client_id,
        REDIRECT,
        &challenge,
        &[("prompt", "none")],
    );
    let back = location(&http.get(&none).send().await.unwrap());
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required"),
        "{back}"
    );
    // And no user was ever created for an unknown subject.
    assert_eq!(fx.user_count().await, users_before);

    // A callback cannot be replayed, nor forged without the browser's sign-in.
    let http = browser();
    let (_, challenge) = pkce();
    let url = auth_url(
        &fx.rp.base,
        &fx.rp.client_id,
        REDIRECT,
        &challenge,
        &[("domain_hint", "good.example")],
    );
    let to_upstream = location(&http.get(&url).send().await.unwrap());
    assert!(
        to_upstream.starts_with(&fx.upstream.issuer),
        "{to_upstream}"
    );
    assert_eq!(
        query_param(&to_upstream, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&to_upstream, "nonce").is_some());
    assert_eq!(query_param(&to_upstream, "prompt"), None);
    // An application asking for a fresh sign-in gets one at the upstream too.
    let fresh = auth_url(
        &fx.rp.base,
        &fx.rp.client_id,
        REDIRECT,
        &challenge,
        &[("domain_hint", "good.example"), ("prompt", "login")],
    );
    let fresh_upstream = location(&browser().get(&fresh).send().await.unwrap());
    assert_eq!(
        query_param(&fresh_upstream, "prompt").as_deref(),
        Some("login"),
        "{fresh_upstream}"
    );
    let callback = upstream_login(
        &http,
        &to_upstream,
        "good",
        &format!("{}{CALLBACK}", fx.rp.base),
    )
    .await;
    assert_eq!(http.get(&callback).send().await.unwrap().status(), 303);
    let replay = http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400, "a spent callback is refused");
    let forged = browser().get(&callback).send().await.unwrap();
    assert_eq!(
        forged.status(),
        400,
        "another browser cannot finish this sign-in"
    );
    drop(fx.server);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_rules_are_refused_by_name_and_pta_fails_clearly_without_agents() {
    let fx = Failures::start().await;
    let admin = &fx.admin;
    let policies = "/policies/featureRolloutPolicies";
    let refused = |status: u16, v: &Value, code: &str| {
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some(code)),
            "{v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(code),
            "{v}"
        );
    };
    let pta = admin
        .post(policies, json!({"displayName": "PTA", "feature": "passthroughAuthentication", "isEnabled": true}))
        .await;
    let pta_id = pta["id"].as_str().unwrap().to_owned();
    let (s, v) = admin
        .call(
            reqwest::Method::POST,
            policies,
            Some(json!({"displayName": "PHS", "feature": "passwordHashSync", "isEnabled": true})),
        )
        .await;
    refused(s, &v, "passwordHashSyncAndPassthroughExclusive");
    let (s, v) = admin
        .call(
            reqwest::Method::POST,
            policies,
            Some(json!({"displayName": "PTA 2", "feature": "passthroughAuthentication"})),
        )
        .await;
    refused(s, &v, "onePolicyPerFeature");
    let (s, v) = admin
        .call(reqwest::Method::POST, policies, Some(json!({"displayName": "MFA", "feature": "multiFactorAuthentication", "isAppliedToOrganization": true})))
        .await;
    refused(s, &v, "appliedToOrganizationNotSupported");
    let (s, v) = admin
        .call(
            reqwest::Method::POST,
            policies,
            Some(json!({"displayName": "X", "feature": "everything"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    // SSO needs an enabled PHS or PTA policy: fine now, refused once PTA is off.
    admin
        .call(
            reqwest::Method::PATCH,
            &format!("{policies}/{pta_id}"),
            Some(json!({"isEnabled": false})),
        )
        .await;
    let (s, v) = admin
        .call(
            reqwest::Method::POST,
            policies,
            Some(json!({"displayName": "SSO", "feature": "seamlessSso", "isEnabled": true})),
        )
        .await;
    refused(s, &v, "seamlessSsoNeedsPasswordFeature");
    admin
        .call(
            reqwest::Method::PATCH,
            &format!("{policies}/{pta_id}"),
            Some(json!({"isEnabled": true})),
        )
        .await;

    let group = |name: &str, kind: &str| {
        let admin = &fx.admin;
        let name = name.to_owned();
        let kind = kind.to_owned();
        async move {
            admin
                .post(
                    "/groups",
                    json!({"displayName": name, "membershipKind": kind}),
                )
                .await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let add = |gid: String| {
        let admin = &fx.admin;
        let pta_id = pta_id.clone();
        async move {
            admin
                .call(
                    reqwest::Method::POST,
                    &format!("{policies}/{pta_id}/appliesTo"),
                    Some(json!({"id": gid})),
                )
                .await
        }
    };
    let dynamic = group("Dyn", "dynamic").await;
    let (s, v) = add(dynamic).await;
    refused(s, &v, "dynamicGroupNotSupported");
    let outer = group("Outer", "assigned").await;
    let inner = group("Inner", "assigned").await;
    admin
        .post(&format!("/groups/{outer}/members"), json!({"id": inner}))
        .await;
    let (s, v) = add(outer).await;
    refused(s, &v, "nestedGroupNotSupported");
    let with_contact = group("With contact", "assigned").await;
    admin
        .post(
            &format!("/groups/{with_contact}/members"),
            json!({"id": uuid::Uuid::new_v4(), "memberType": "contact"}),
        )
        .await;
    let (s, v) = add(with_contact).await;
    refused(s, &v, "groupContainsContact");
    // 201 members on first add are refused; 200 are fine (and members can follow later).
    let big = group("Big", "assigned").await;
    let mut ids = vec![];
    for i in 0..201 {
        let u = admin
            .post("/users", json!({"userPrincipalName": format!("m{i}@good.example"), "displayName": format!("M {i}"),
                                    "accountEnabled": true, "source": "synced", "immutableId": format!("anchor-m{i}")}))
            .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
        admin
            .post(&format!("/groups/{big}/members"), json!({"id": u["id"]}))
            .await;
    }
    let (s, v) = add(big.clone()).await;
    refused(s, &v, "tooManyMembersOnFirstAdd");
    let (s, _) = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/groups/{big}/members/{}", ids[200]),
            None,
        )
        .await;
    assert!(s == 204 || s == 200, "remove member: {s}");
    let (s, v) = add(big.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = add(big.clone()).await;
    refused(s, &v, "groupAlreadyAdded");
    // Up to ten groups per feature.
    for n in 2..=10 {
        let g = group(&format!("G{n}"), "assigned").await;
        let (s, v) = add(g).await;
        assert_eq!(s, 200, "group {n}: {v}");
    }
    let eleventh = group("G11", "assigned").await;
    let (s, v) = add(eleventh).await;
    refused(s, &v, "maxGroupsPerFeature");
    // The Graph $ref forms work too.
    let (s, v) = admin
        .call(
            reqwest::Method::DELETE,
            &format!("{policies}/{pta_id}/appliesTo/{big}/$ref"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let g = group("Via ref", "assigned").await;
    let (s, v) = admin
        .call(
            reqwest::Method::POST,
            &format!("{policies}/{pta_id}/appliesTo/$ref"),
            Some(json!({"@odata.id": format!("https://graph.example/v1.0/directoryObjects/{g}")})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // A cloud-only user in a staged group is never staged.
    let cloud = admin
        .post("/users", json!({"userPrincipalName": "cloudy@good.example", "displayName": "Cloudy", "accountEnabled": true}))
        .await;
    admin
        .post(&format!("/groups/{g}/members"), json!({"id": cloud["id"]}))
        .await;
    let view = admin.get("/users/cloudy@good.example/stagedRollout").await;
    assert_eq!(
        (&view["eligibility"], &view["desired"]),
        (&json!("cloudOnlyUser"), &json!([])),
        "{view}"
    );

    // A synced user in the PTA group: one federated sign-in moves them, then the password page
    // says clearly that no agent can check the password (none is registered in this test).
    let good = admin.get("/users/good@good.example").await;
    admin
        .post(&format!("/groups/{g}/members"), json!({"id": good["id"]}))
        .await;
    fx.rp
        .sign_in("good@good.example", "", "good", &[], "federated")
        .await;
    let view = admin.get("/users/good@good.example/stagedRollout").await;
    assert_eq!(
        view["route"]["credential"], "passthroughAuthentication",
        "{view}"
    );
    let a = fx
        .rp
        .attempt("good@good.example", "whatever-password", "good", &[])
        .await;
    assert_eq!((a.route, a.status), ("managed", 503), "{}", a.body);
    let rec = last_sign_in(admin, "good@good.example").await;
    assert_eq!(
        (&rec["failureReason"], &rec["routeReason"]),
        (
            &json!("noAgentAvailable"),
            &json!("stagedRolloutPassthroughAuthentication")
        ),
        "{rec}"
    );
    // Deleting the policy returns everyone at their next sign-in; the delete is audited.
    let (s, _) = admin
        .call(
            reqwest::Method::DELETE,
            &format!("{policies}/{pta_id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = admin
        .call(reqwest::Method::GET, &format!("{policies}/{pta_id}"), None)
        .await;
    assert_eq!(s, 404);
    // The user was moved back, but cannot complete a managed sign-in (no agent): the attempt
    // itself returns them to federation instead of locking them out.
    let a = fx
        .rp
        .attempt("good@good.example", "whatever-password", "good", &[])
        .await;
    assert_eq!((a.route, a.status), ("managed", 200), "{}", a.body);
    assert!(a.body.contains("moved your sign-in back"), "{}", a.body);
    let rec = last_sign_in(admin, "good@good.example").await;
    assert_eq!(
        features(&rec["stagedRollout"]["effectiveAfter"]),
        Vec::<String>::new(),
        "{rec}"
    );
    assert_eq!(audits(admin, "userRemovedFromFeature").await.len(), 1);
    fx.rp
        .sign_in("good@good.example", "", "good", &[], "federated")
        .await;
    drop(fx.upstream);
}

/// Conditional Access sees the federation callback too: the upstream's yes does not get round
/// an enforced policy.
#[tokio::test(flavor = "multi_thread")]
async fn conditional_access_applies_after_the_upstream_sign_in() {
    let fx = FedEnv::start(false).await;
    let admin = &fx.env.admin;
    const PILOT: &str = "pilot1@example.test";
    let policy = admin
        .post(
            "/identity/conditionalAccess/policies",
            json!({
                "displayName": "Block everyone (test)",
                "conditions": {
                    "users": {"includeUsers": ["All"]},
                    "applications": {"includeApplications": ["All"]},
                    "clientAppTypes": ["all"]
                },
                "grantControls": {"operator": "OR", "builtInControls": ["block"]}
            }),
        )
        .await;
    let pid = policy["id"].as_str().unwrap();
    // Report-only first: the upstream sign-in goes through, and the record says what the
    // policy would have done.
    fx.rp.sign_in(PILOT, "", "pilot1", &[], "federated").await;
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(
        rec["conditionalAccess"][0]["result"], "reportOnlyFailure",
        "{rec}"
    );
    let (status, v) = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/identity/conditionalAccess/policies/{pid}?force=true"),
            Some(json!({"state": "enabled"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let a = fx.rp.attempt(PILOT, "", "pilot1", &[]).await;
    assert_eq!((a.route, a.status), ("federated", 403), "{}", a.body);
    assert!(
        a.body.contains("access policy does not allow this sign-in"),
        "{}",
        a.body
    );
    let rec = last_sign_in(admin, PILOT).await;
    assert_eq!(rec["failureReason"], "blockedByConditionalAccess", "{rec}");
    assert_eq!(rec["conditionalAccess"][0]["result"], "failure", "{rec}");
}
