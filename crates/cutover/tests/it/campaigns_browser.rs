//! A passkey campaign in a real headless Chromium: an administrator creates the campaign on
//! the admin pages; four members of the wave — on an iPhone, a Samsung and a Xiaomi phone
//! (spoofed User-Agents), and a Huawei phone known only by the model client hint behind a
//! reduced User-Agent — follow the e-mail's link to the enrolment page, see their device's
//! guidance and add a passkey with the browser's virtual authenticator; the campaign page's
//! progress follows; the administrator confirms, enforces (through the Conditional Access gate)
//! and rolls the wave back. Then every campaign page and the enrolment page are rendered and
//! checked (no console error, labelled fields, charts with titles). Screenshots stay in
//! `$CUTOVER_TEST_STATE_DIR/campaigns-ui/`.

use reqwest::Method;
use serde_json::json;

use crate::admin_ui::{issue_pass, make_admin, render_pages, shots_dir};
use crate::harness::{Admin, InProcess, auth_url, pkce, seed};
use crate::passkey_e2e::Driver;
use cutover_server::clock::Clock as _;

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const POLICIES: &str = "/identity/conditionalAccess/policies";

const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const SAMSUNG_UA: &str = "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
const XIAOMI_UA: &str = "Mozilla/5.0 (Linux; Android 12; Redmi Note 11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
/// What Chrome on Android sends today: no model in the User-Agent. The model comes from the
/// `Sec-CH-UA-Model` client hint, which Cutover asks for.
const REDUCED_ANDROID_UA: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";

fn day(t: cutover_core::Timestamp) -> String {
    cutover_core::campaign::when::format_rfc3339(t)[..10].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_walks_a_wave_from_creation_to_enforcement_and_rollback() {
    let srv =
        InProcess::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let base = srv.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&srv.base, &srv.creds).await;
    let f = seed(&admin, REDIRECT).await;
    admin
        .post(
            "/users",
            json!({"userPrincipalName": "admin@contoso.example", "displayName": "Ada Admin",
                   "accountEnabled": true}),
        )
        .await;
    make_admin(&admin, "admin@contoso.example").await;
    let admin_pass = issue_pass(&admin, "admin@contoso.example").await;
    let phones = [
        ("iphone", IPHONE_UA, None, "iPhone", "iCloud Keychain"),
        (
            "samsung",
            SAMSUNG_UA,
            None,
            "androidSamsung",
            "Samsung Pass",
        ),
        ("xiaomi", XIAOMI_UA, None, "androidXiaomi", "second passkey"),
        // A Huawei P40 Pro known only by its model code, from the client hint.
        (
            "huawei",
            REDUCED_ANDROID_UA,
            Some("ELS-NX9"),
            "androidHuawei",
            "without Google services",
        ),
    ];
    let mut members = Vec::new();
    for (name, ..) in &phones {
        let u = admin
            .post(
                "/users",
                json!({"userPrincipalName": format!("{name}@contoso.example"),
                       "displayName": format!("{} User", name), "accountEnabled": true,
                       "mail": format!("{name}@contoso.example")}),
            )
            .await;
        members.push(u["id"].as_str().unwrap().to_owned());
    }
    let group = admin
        .post(
            "/groups",
            json!({"displayName": "Finance", "membershipKind": "assigned"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for m in &members {
        admin
            .post(&format!("/groups/{group}/members"), json!({"id": m}))
            .await;
    }
    let policy = admin
        .post(
            POLICIES,
            json!({
                "displayName": "Finance needs passkeys",
                "conditions": {
                    "users": {"includeUsers": [], "includeGroups": [group]},
                    "applications": {"includeApplications": ["All"]},
                    "clientAppTypes": ["all"]
                },
                "grantControls": {"operator": "OR", "authenticationStrength": {"id": "phishingResistantMfa"}}
            }),
        )
        .await;
    let pid = policy["id"].as_str().unwrap().to_owned();
    let now = srv.clock.now();
    let shots = shots_dir("campaigns-ui");
    let mut d = Driver::start(&base, &shots.join("journey"));
    let (_, challenge) = pkce();
    let auth = auth_url(&base, &f.client_id, REDIRECT, &challenge, &[]);

    // --- the administrator creates the campaign on the admin pages --------------------------
    d.send(json!({"cmd": "newContext"})).await;
    let r = d
        .send(json!({"cmd": "signInPass", "authUrl": auth, "username": "admin@contoso.example", "pass": admin_pass}))
        .await;
    assert!(r["redirect"].as_str().is_some(), "{r}");
    let page = d
        .send(json!({"cmd": "goto", "url": format!("{base}/admin/campaigns/new"), "shot": "new-campaign"}))
        .await;
    assert_eq!(page["status"], 200, "{page}");
    for (sel, value) in [
        ("#name", "Passkeys 2027".to_owned()),
        ("#description", "Passwordless for Finance".to_owned()),
        ("#wave0_name", "Finance".to_owned()),
        ("#wave0_opens", day(now.minus_secs(86_400))),
        ("#wave0_enforce", day(now.plus_secs(14 * 86_400))),
    ] {
        d.send(json!({"cmd": "fill", "selector": sel, "value": value}))
            .await;
    }
    for (sel, value) in [
        ("#wave0_phase", "department"),
        ("#wave0_group", group.as_str()),
        ("#wave0_policy", pid.as_str()),
    ] {
        d.send(json!({"cmd": "select", "selector": sel, "value": value}))
            .await;
    }
    let created = d
        .send(json!({"cmd": "submit", "selector": "#create-campaign", "shot": "campaign-created"}))
        .await;
    assert_eq!(created["status"], 200, "{created}");
    assert!(
        created["notice"]
            .as_str()
            .is_some_and(|n| n.contains("created")),
        "{created}"
    );
    let url = created["url"].as_str().unwrap().to_owned();
    let cid = url
        .split("/admin/campaigns/")
        .nth(1)
        .and_then(|r| r.split('?').next())
        .unwrap()
        .to_owned();
    let campaign = admin.get(&format!("/campaigns/{cid}")).await;
    let wid = campaign["waves"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(campaign["waves"][0]["groupId"], group.as_str());
    assert_eq!(campaign["waves"][0]["caPolicyId"], pid.as_str());
    let enrolled = d
        .send(json!({"cmd": "attr", "selector": format!("#wave-{wid}"), "name": "data-enrolled"}))
        .await;
    assert_eq!(enrolled["value"], "0", "{enrolled}");

    // --- the administrator edits the definition: a template and the organisation's clock ----
    let edit = d
        .send(json!({"cmd": "goto", "url": format!("{base}/admin/campaigns/{cid}/edit"), "shot": "edit-campaign"}))
        .await;
    assert_eq!(edit["status"], 200, "{edit}");
    let text = d
        .send(json!({"cmd": "texts", "selector": "#definition"}))
        .await;
    let mut def: serde_json::Value =
        serde_json::from_str(text["texts"][0].as_str().unwrap()).expect("the editor shows JSON");
    assert_eq!(
        def["waves"][0]["id"],
        wid.as_str(),
        "ids are explicit: {def}"
    );
    // A broken edit is refused, says where, and changes nothing.
    d.send(json!({"cmd": "fill", "selector": "#definition", "value": "{\"waves\": ["}))
        .await;
    let refused = d
        .send(json!({"cmd": "submit", "selector": "#save-campaign", "shot": "edit-refused"}))
        .await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("not valid JSON") && e.contains("line 1")),
        "{refused}"
    );
    let steps = def["communications"].as_array_mut().unwrap();
    let announcement = steps
        .iter_mut()
        .find(|st| st["key"] == "announcement")
        .unwrap();
    announcement["template"]["subject"] = json!("Passkeys are coming to Finance");
    def["utcOffsetMinutes"] = json!(60);
    d.send(json!({"cmd": "fill", "selector": "#definition", "value": def.to_string()}))
        .await;
    let saved = d
        .send(json!({"cmd": "submit", "selector": "#save-campaign", "shot": "edit-saved"}))
        .await;
    assert!(
        saved["notice"]
            .as_str()
            .is_some_and(|n| n.contains("saved")),
        "{saved}"
    );
    let campaign = admin.get(&format!("/campaigns/{cid}")).await;
    assert_eq!(
        campaign["waves"][0]["id"],
        wid.as_str(),
        "the wave kept its id"
    );
    assert_eq!(campaign["utcOffsetMinutes"], 60, "{campaign}");
    assert!(
        campaign["communications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|st| st["template"]["subject"] == "Passkeys are coming to Finance"),
        "{campaign}"
    );
    assert_eq!(
        admin
            .get("/auditLogs/directoryAudits?action=updateCampaign")
            .await["value"][0]["actor"],
        "user:admin@contoso.example"
    );

    // --- four members enrol from the e-mail's link on their phones -------------------------
    let link = format!("{base}/my/enrol?c={cid}&w={wid}");
    for (name, ua, model, family, pitfall) in phones {
        let pass = admin
            .post(
                &format!("/users/{name}@contoso.example/authentication/temporaryAccessPassMethods"),
                json!({"isUsableOnce": true, "lifetimeInMinutes": 60}),
            )
            .await["temporaryAccessPass"]
            .as_str()
            .unwrap()
            .to_owned();
        d.send(json!({"cmd": "newContext", "userAgent": ua, "model": model}))
            .await;
        let r = d
            .send(json!({"cmd": "signInPass", "authUrl": auth, "username": format!("{name}@contoso.example"), "pass": pass}))
            .await;
        assert!(r["redirect"].as_str().is_some(), "{name}: {r}");
        let e = d
            .send(json!({"cmd": "enrolPasskey", "url": link, "name": format!("{name} phone")}))
            .await;
        assert_eq!(e["family"], family, "{name}: {e}");
        assert_eq!(e["detected"], family, "{name}: {e}");
        assert!(
            e["guidance"].as_str().unwrap().contains(pitfall),
            "{name}: the guidance names the pitfall '{pitfall}': {e}"
        );
        assert_eq!(e["how"], "navigated", "{name}: {e}");
        assert!(
            e["notice"].as_str().is_some_and(|n| n.contains("added")),
            "{name}: {e}"
        );
        assert_eq!(e["passkeys"], 1, "{name}: {e}");
    }
    let progress = admin.get(&format!("/campaigns/{cid}/progress")).await;
    let w = &progress["waves"][0];
    assert_eq!(w["enrolled"], 4, "{progress}");
    for (_, _, _, family, _) in phones {
        assert_eq!(w["byDeviceFamily"][family]["users"], 1, "{family}: {w}");
    }

    // --- the administrator sees the progress, confirms, enforces and rolls back ------------
    d.send(json!({"cmd": "newContext"})).await;
    let r = d
        .send(json!({"cmd": "signInPass", "authUrl": auth, "username": "admin@contoso.example", "pass": admin_pass}))
        .await;
    assert!(r["redirect"].as_str().is_some(), "{r}");
    let detail = format!("{base}/admin/campaigns/{cid}");
    d.send(json!({"cmd": "goto", "url": detail, "shot": "campaign-enrolled"}))
        .await;
    let enrolled = d
        .send(json!({"cmd": "attr", "selector": format!("#wave-{wid}"), "name": "data-enrolled"}))
        .await;
    assert_eq!(enrolled["value"], "4", "{enrolled}");
    let families = d
        .send(json!({"cmd": "texts", "selector": format!("#wave-{wid} svg title")}))
        .await;
    assert!(
        families["texts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("device family")),
        "{families}"
    );
    assert!(
        families["texts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("by device family over time")),
        "{families}"
    );
    // The wave's policy, with what its report-only sweep saw and what the gate would say.
    let policy = d
        .send(json!({"cmd": "texts", "selector": format!("#policy-{wid}")}))
        .await;
    let policy = policy["texts"][0].as_str().unwrap_or_default().to_owned();
    for needle in [
        "Finance needs passkeys",
        "report-only",
        "would have been interrupted",
        "the gate would refuse",
    ] {
        assert!(policy.contains(needle), "{needle} in {policy}");
    }
    let confirmed = d
        .send(json!({"cmd": "submit", "selector": format!("#confirm-{wid}"), "shot": "wave-confirmed"}))
        .await;
    assert!(
        confirmed["notice"]
            .as_str()
            .is_some_and(|n| n.contains("confirmed")),
        "{confirmed}"
    );
    // Without force the gate refuses: there are no 48 h of report-only evidence yet and no
    // break-glass accounts. The page says why; the policy stays report-only.
    let refused = d
        .send(json!({"cmd": "submit", "selector": format!("#enforce-{wid}"), "shot": "enforce-refused"}))
        .await;
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("gate")),
        "{refused}"
    );
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabledForReportingButNotEnforced"
    );
    d.send(json!({"cmd": "check", "selector": format!("#wave-{wid} input[name=force]")}))
        .await;
    let enforced = d
        .send(json!({"cmd": "submit", "selector": format!("#enforce-{wid}"), "shot": "wave-enforced"}))
        .await;
    assert!(
        enforced["notice"]
            .as_str()
            .is_some_and(|n| n.contains("enforced")),
        "{enforced}"
    );
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabled"
    );
    let rolled = d
        .send(json!({"cmd": "submit", "selector": format!("#rollback-{wid}"), "shot": "wave-rolled-back"}))
        .await;
    assert!(
        rolled["notice"]
            .as_str()
            .is_some_and(|n| n.contains("rolled back")),
        "{rolled}"
    );
    assert_eq!(
        admin.get(&format!("{POLICIES}/{pid}")).await["state"],
        "enabledForReportingButNotEnforced"
    );
    assert_eq!(
        admin.get(&format!("/campaigns/{cid}/progress")).await["waves"][0]["enrolled"],
        4,
        "no passkey deleted"
    );
    let audits = admin
        .get("/auditLogs/directoryAudits?actor=user:admin@contoso.example")
        .await;
    let actions: Vec<&str> = audits["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "createCampaign",
        "confirmCampaignWave",
        "forceEnforceCampaignWave",
        "forceEnableConditionalAccessPolicy",
        "rollBackCampaignWave",
    ] {
        assert!(
            actions.contains(&a),
            "{a} audited as the administrator: {actions:?}"
        );
    }
    // The e-mails of the plan wait in the outbox (no SMTP relay on this server), and the page
    // says so.
    let run = d
        .send(json!({"cmd": "submit", "selector": "#run-due", "shot": "run-due"}))
        .await;
    assert!(run["notice"].as_str().is_some(), "{run}");
    d.close().await;

    // --- every campaign page and the enrolment page render cleanly ---------------------------
    let (status, v) = admin
        .call(
            Method::POST,
            &format!("/campaigns/{cid}/communications/testSend"),
            Some(json!({"waveId": wid, "step": "announcement", "to": "ada@contoso.example"})),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let paths: Vec<String> = vec![
        "/admin".into(),
        "/admin/campaigns".into(),
        "/admin/campaigns/new".into(),
        format!("/admin/campaigns/{cid}"),
        format!("/admin/campaigns/{cid}/edit"),
        format!("/admin/campaigns/{cid}/preview?wave={wid}&step=reminder"),
        format!("/admin/campaigns/{cid}/outbox"),
        format!("/my/enrol?c={cid}&w={wid}"),
        format!("/my/enrol?c={cid}&w={wid}&device=androidHuawei"),
    ];
    let phone = [
        format!("/admin/campaigns/{cid}"),
        format!("/my/enrol?c={cid}&w={wid}"),
    ];
    let report = render_pages(
        &base,
        "admin@contoso.example",
        &admin_pass,
        &paths,
        &phone,
        &shots,
    )
    .await;
    let pages = report["pages"].as_array().unwrap();
    let detail = pages
        .iter()
        .find(|p| p["path"] == format!("/admin/campaigns/{cid}").as_str())
        .unwrap();
    assert!(
        detail["charts"].as_u64().unwrap_or(0) >= 3,
        "ring, series and families: {detail}"
    );
    let dashboard = pages.iter().find(|p| p["path"] == "/admin").unwrap();
    assert_eq!(dashboard["status"], 200);
    eprintln!("campaign screenshots: {}", shots.display());
}
