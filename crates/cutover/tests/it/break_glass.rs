//! Break-glass accounts (SPEC §8): never a password alone (a passkey, or a pass to register
//! one), every sign-in an alert (audit event, metric, error log), drills recorded only after a
//! real sign-in, and the warnings an administrator needs (fewer than two, never drilled, no
//! passkey, a drill older than 90 days — found by stepping the clock).

use reqwest::Method;
use serde_json::json;

use crate::harness::{Admin, InProcess, seed};
use crate::passkey_e2e::{localhost_client, register_soft, secret_attempt, soft_sign_in};
use cutover_webauthn::soft::SoftAuthenticator;

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const GLASS: &str = "glass1@contoso.example";
const PASSWORD: &str = "Glass-Drill-Password-1";

async fn metric(admin: &Admin, name: &str) -> f64 {
    let text = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_signs_in_with_a_passkey_raises_alerts_and_records_drills() {
    let server =
        InProcess::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let base = server.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&server.base, &server.creds).await;
    let f = seed(&admin, REDIRECT).await;
    admin
        .post(
            "/users",
            json!({"userPrincipalName": GLASS, "displayName": "Break glass 1", "accountEnabled": true,
                   "breakGlass": true, "passwordProfile": {"password": PASSWORD}}),
        )
        .await;
    let view = admin.get("/breakGlass").await;
    let warnings = view["warnings"].to_string();
    assert!(
        warnings.contains("only 1 enabled break-glass account"),
        "{view}"
    );
    assert!(warnings.contains("never been drilled"), "{view}");
    assert!(warnings.contains("has no passkey"), "{view}");

    // The right password alone does not sign a break-glass account in.
    let before = metric(&admin, "cutover_break_glass_sign_ins_total").await;
    let r = secret_attempt(
        &localhost_client(&server.base),
        &base,
        &f.client_id,
        GLASS,
        PASSWORD,
    )
    .await;
    let page = r.expect("the password page answers with the next step");
    assert!(
        page.contains("/login/mfa"),
        "a passkey is required next: {page}"
    );
    assert_eq!(
        metric(&admin, "cutover_break_glass_sign_ins_total").await,
        before,
        "no sign-in completed"
    );

    // No drill without a real sign-in.
    let (status, v) = admin
        .call(
            Method::POST,
            "/breakGlass/drills",
            Some(json!({"user": GLASS})),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sign in with it"),
        "{v}"
    );

    // Alerts also go to a webhook (here a listener on this host; plain http elsewhere is refused).
    let (status, v) = admin
        .call(
            Method::PUT,
            "/breakGlass/alerting",
            Some(json!({"webhookUrl": "http://alerts.example/hook"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let (status, v) = admin
        .call(
            Method::PUT,
            "/breakGlass/alerting",
            Some(json!({"webhookUrl": hook_url})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let received = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, _) = hook.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the request until its JSON body is complete (bounded by the timeout below).
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && serde_json::from_str::<serde_json::Value>(body).is_ok()
            {
                break;
            }
        }
        conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    });

    // A pass lets it in to register its passkey; the sign-in is an alert.
    let (status, v) = admin
        .call(
            Method::PUT,
            "/policies/temporaryAccessPass",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let pass = admin
        .post(
            &format!("/users/{GLASS}/authentication/temporaryAccessPassMethods"),
            json!({"isUsableOnce": true}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = localhost_client(&server.base);
    let r = secret_attempt(&http, &base, &f.client_id, GLASS, &pass).await;
    assert!(r.as_ref().is_ok_and(|r| r.contains("code=")), "{r:?}");
    assert_eq!(
        metric(&admin, "cutover_break_glass_sign_ins_total").await,
        before + 1.0
    );
    let posted = tokio::time::timeout(std::time::Duration::from_secs(10), received)
        .await
        .expect("the webhook is called within its timeout")
        .unwrap();
    assert_eq!(posted["event"], "breakGlassSignIn", "{posted}");
    assert!(
        posted["userPrincipalName"]
            .as_str()
            .is_some_and(|u| u.eq_ignore_ascii_case(GLASS)),
        "{posted}"
    );
    let alerts = admin
        .get("/auditLogs/directoryAudits?action=breakGlassSignIn")
        .await;
    assert_eq!(
        alerts["value"].as_array().map_or(0, Vec::len),
        1,
        "{alerts}"
    );
    let device = SoftAuthenticator::new(uuid::Uuid::nil());
    let mut key = register_soft(&http, &base, &device, "Safe key")
        .await
        .unwrap();

    // Now the passkey signs it in (another alert), and the drill is recorded.
    let r = soft_sign_in(&base, &server.base, &f.client_id, &device, &mut key, false).await;
    assert!(r.as_ref().is_ok_and(|r| r.contains("code=")), "{r:?}");
    assert_eq!(
        metric(&admin, "cutover_break_glass_sign_ins_total").await,
        before + 2.0
    );
    let (status, v) = admin
        .call(
            Method::POST,
            "/breakGlass/drills",
            Some(json!({"user": GLASS})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let view = admin.get("/breakGlass").await;
    assert_eq!(view["value"][0]["drillDue"], false, "{view}");
    let warnings = view["warnings"].to_string();
    assert!(
        !warnings.contains("never been drilled") && !warnings.contains("has no passkey"),
        "{view}"
    );
    assert!(warnings.contains("only 1 enabled"), "{view}");

    // 91 days later the drill is due again.
    server.clock.advance_secs(91 * 24 * 3600);
    let admin = Admin::login(&server.base, &server.creds).await;
    let view = admin.get("/breakGlass").await;
    assert_eq!(view["value"][0]["drillDue"], true, "{view}");
    assert!(
        view["warnings"]
            .to_string()
            .contains("more than 90 days ago"),
        "{view}"
    );
    // A user who is not break-glass has no drill.
    let (status, v) = admin
        .call(
            Method::POST,
            "/breakGlass/drills",
            Some(json!({"user": f.upn})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
}
