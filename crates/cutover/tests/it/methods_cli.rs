//! `cutover admin methods-policy | users passkeys | reports registration` against a running
//! server: the policy as a table with the server's warnings, a passkey change previewed and
//! refused without --yes when nobody can be asked (nothing changes), --dry-run and --yes, a
//! whole policy from a file, the registration report, and a user's passkeys. Then the same
//! with a real passkey (registered with the software authenticator through Security info):
//! the preview names it and its user, the report counts it, the helpdesk deletes it.

use cutover_webauthn::soft::SoftAuthenticator;
use serde_json::{Value, json};

use crate::federation_cli::{Run, cli};
use crate::harness::*;
use crate::passkey_e2e::{localhost_client, register_soft, secret_attempt};

const YUBIKEY: &str = "cb69481e-8ff7-4039-93ec-0a2729a154a8";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_commands_drive_the_api() {
    let dir = scratch_dir("methods-cli");
    let server = ServerProcess::start(&dir, &[]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let run = |args: &[&str], code: i32| -> Run {
        let r = cli(&dir, args, "");
        assert_eq!(
            r.code, code,
            "cutover admin {args:?}: exit {}\n{}\n{}",
            r.code, r.out, r.err
        );
        r
    };
    let json = |args: &[&str]| -> Value {
        let r = run(&[&["--output", "json"][..], args].concat(), 0);
        serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.out))
    };
    let policy_now = || async { admin.get("/policies/authenticationMethodsPolicy").await };

    // A fresh server: every method for everyone, no restriction. The only warning is the
    // expected one: this test server's issuer is an IP address, which cannot carry passkeys.
    let r = run(&["methods-policy", "show"], 0);
    for method in ["passkey", "totp", "temporaryAccessPass", "password"] {
        let line = r
            .out
            .lines()
            .find(|l| l.starts_with(method))
            .unwrap_or_else(|| panic!("no {method} line: {}", r.out));
        assert!(
            line.contains("yes") && line.contains("everyone"),
            "{line}\n{}",
            r.out
        );
    }
    assert!(r.out.contains("not enforced"), "{}", r.out);
    assert!(r.out.contains("none: passkeys of every model"), "{}", r.out);
    for w in r.out.lines().filter(|l| l.starts_with("WARNING:")) {
        assert!(
            w.contains("IP address"),
            "unexpected warning: {w}\n{}",
            r.out
        );
    }
    let fresh = json(&["methods-policy", "show"]);
    assert_eq!(fresh["passkey"]["target"]["allUsers"], true, "{fresh}");
    assert_eq!(fresh["passkey"]["enforceAttestation"], false, "{fresh}");
    assert!(fresh["passkey"].get("keyRestrictions").is_none(), "{fresh}");

    // Attestation without roots: applied (no passkey stops working), with the warning.
    let r = run(
        &["methods-policy", "set", "--enforce-attestation", "true"],
        0,
    );
    assert!(
        r.out
            .starts_with("Updated the authentication methods policy."),
        "{}",
        r.out
    );
    let warning = r
        .out
        .lines()
        .find(|l| l.starts_with("WARNING:") && l.contains("attestation roots"))
        .unwrap_or_else(|| panic!("no attestation warning: {}", r.out));
    assert!(
        warning.contains("every passkey registration will be refused"),
        "{warning}"
    );
    assert_eq!(policy_now().await["passkey"]["enforceAttestation"], true);
    let r = run(
        &["methods-policy", "set", "--enforce-attestation", "true"],
        1,
    );
    assert!(r.err.contains("already has these settings"), "{}", r.err);
    run(
        &["methods-policy", "set", "--enforce-attestation", "false"],
        0,
    );

    // A directory: two users, one in a group.
    admin
        .post(
            "/domains",
            json!({"id": "contoso.example", "authenticationType": "managed"}),
        )
        .await;
    let user1 = admin
        .post(
            "/users",
            json!({"userPrincipalName": "user1@contoso.example", "displayName": "User One",
                   "accountEnabled": true, "passwordProfile": {"password": "Correct-Horse-9"}}),
        )
        .await;
    admin
        .post(
            "/users",
            json!({"userPrincipalName": "user2@contoso.example", "displayName": "User Two",
                   "accountEnabled": true}),
        )
        .await;
    let pilot = admin
        .post(
            "/groups",
            json!({"displayName": "Pilot", "membershipKind": "assigned"}),
        )
        .await;
    let pilot_id = pilot["id"].as_str().unwrap().to_owned();
    admin
        .post(
            &format!("/groups/{pilot_id}/members"),
            json!({"id": user1["id"]}),
        )
        .await;
    let before = policy_now().await;

    // Blocking a model without --yes, not interactively: previewed, refused, nothing changes.
    let r = run(&["methods-policy", "set", "--block-aaguids", YUBIKEY], 1);
    assert!(r.out.contains("The change:"), "{}", r.out);
    assert!(
        r.out
            .contains("passkey models: none → block YubiKey 5 Series"),
        "{}",
        r.out
    );
    assert!(r.out.contains("No passkey is registered yet"), "{}", r.out);
    assert!(
        r.err.contains("not interactive") && r.err.contains("--yes"),
        "{}",
        r.err
    );
    assert!(r.err.contains("nothing was changed"), "{}", r.err);
    assert_eq!(policy_now().await, before);

    // --dry-run: the preview, nothing changes; groups by name; JSON for scripts.
    let r = run(
        &[
            "methods-policy",
            "set",
            "--passkey-groups",
            "Pilot",
            "--dry-run",
        ],
        0,
    );
    assert!(
        r.out
            .contains("passkey: on for everyone → on for members of Pilot"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("A dry run: nothing was changed."),
        "{}",
        r.out
    );
    let preview = json(&[
        "methods-policy",
        "set",
        "--block-aaguids",
        YUBIKEY,
        "--dry-run",
    ]);
    assert_eq!(preview["passkeysConsidered"], 0, "{preview}");
    assert_eq!(preview["stopWorking"], json!([]), "{preview}");
    assert_eq!(policy_now().await, before);
    let r = run(
        &[
            "methods-policy",
            "set",
            "--passkey-groups",
            "Nobody",
            "--yes",
        ],
        1,
    );
    assert!(r.err.contains("no group is named 'Nobody'"), "{}", r.err);
    let r = run(
        &[
            "methods-policy",
            "set",
            "--passkey-groups",
            "pilot",
            "--yes",
        ],
        1,
    );
    assert!(r.err.contains("did you mean 'Pilot'"), "{}", r.err);

    // --yes: applied, and shown with the model's name.
    let r = run(
        &["methods-policy", "set", "--block-aaguids", YUBIKEY, "--yes"],
        0,
    );
    assert!(
        r.out.contains("Updated the authentication methods policy."),
        "{}",
        r.out
    );
    assert!(r.out.contains("block 1 model"), "{}", r.out);
    assert!(
        r.out.contains(YUBIKEY) && r.out.contains("YubiKey 5 Series"),
        "{}",
        r.out
    );
    let now = policy_now().await;
    assert_eq!(
        now["passkey"]["keyRestrictions"],
        json!({"enforcement": "block", "aaguids": [YUBIKEY]}),
        "{now}"
    );
    let r = run(
        &[
            "methods-policy",
            "set",
            "--passkey-groups",
            &pilot_id,
            "--passkey-exclude-groups",
            "none",
            "--yes",
        ],
        0,
    );
    let line = r.out.lines().find(|l| l.starts_with("passkey ")).unwrap();
    assert!(line.contains("Pilot"), "{}", r.out);
    assert_eq!(
        policy_now().await["passkey"]["target"]["includeGroups"],
        json!([pilot_id])
    );

    // A whole policy from a file (as `show --output json` writes it): preview, then set.
    let file = dir.join("policy.json");
    let mut defaults = fresh.clone();
    defaults["warnings"] = json!(["ignored"]);
    std::fs::write(&file, defaults.to_string()).unwrap();
    let file_arg = file.to_str().unwrap();
    let r = run(&["methods-policy", "preview", "--file", file_arg], 0);
    assert!(
        r.out.contains("passkey models: block YubiKey 5 Series") && r.out.contains("→ none"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("A preview only: nothing was changed."),
        "{}",
        r.out
    );
    let r = run(&["methods-policy", "set", "--file", file_arg], 1);
    assert!(r.err.contains("not interactive"), "{}", r.err);
    run(&["methods-policy", "set", "--file", file_arg, "--yes"], 0);
    let mut restored = policy_now().await;
    restored["warnings"] = fresh["warnings"].clone();
    assert_eq!(restored, fresh);
    std::fs::write(&file, r#"{"passkey": {"enforceAttestaton": true}}"#).unwrap();
    let r = run(&["methods-policy", "preview", "--file", file_arg], 1);
    assert!(
        r.err.contains("not an authentication methods policy"),
        "{}",
        r.err
    );

    // The registration report: the summary first, then the users.
    let r = run(&["reports", "registration"], 0);
    assert!(r.out.starts_with("users:"), "{}", r.out);
    for want in [
        "mfaRegistered:",
        "passwordlessCapable:",
        "twoOrMorePasskeys:",
        "nobody has a passkey yet",
        "user1@contoso.example",
        "user2@contoso.example",
    ] {
        assert!(r.out.contains(want), "{want}: {}", r.out);
    }
    let summary_at = r.out.find("passwordlessCapable:").unwrap();
    assert!(summary_at < r.out.find("user1@contoso.example").unwrap());
    let user1_line = r
        .out
        .lines()
        .find(|l| l.starts_with("user1@contoso.example"))
        .unwrap();
    assert!(user1_line.contains("password"), "{user1_line}");
    let report = json(&["reports", "registration"]);
    assert_eq!(report["summary"]["users"], 2, "{report}");
    assert_eq!(report["summary"]["passwordlessCapable"], 0, "{report}");
    let r = run(&["reports", "registration", "--group", "Pilot"], 0);
    assert!(r.out.starts_with("Members of Pilot:\nusers:"), "{}", r.out);
    assert!(!r.out.contains("user2@contoso.example"), "{}", r.out);
    let r = run(&["--output", "jsonl", "reports", "registration"], 0);
    assert_eq!(r.out.lines().count(), 2, "{}", r.out);

    // A user's passkeys: none yet; deleting an unknown one is the server's 404.
    let r = run(&["users", "passkeys", "list", "user1@contoso.example"], 0);
    assert!(
        r.out.starts_with("user1@contoso.example has no passkeys."),
        "{}",
        r.out
    );
    assert!(r.out.contains("tap create"), "{}", r.out);
    let list = json(&["users", "passkeys", "list", "user1@contoso.example"]);
    assert_eq!(list["value"], json!([]), "{list}");
    let missing = uuid::Uuid::new_v4().to_string();
    let r = run(
        &[
            "users",
            "passkeys",
            "delete",
            "user1@contoso.example",
            &missing,
        ],
        1,
    );
    assert!(
        r.err.contains(&format!("has no passkey {missing}")) && r.err.contains("HTTP 404"),
        "{}",
        r.err
    );
    let r = run(&["users", "passkeys", "list", "nobody@contoso.example"], 1);
    assert!(
        r.err.contains("no user nobody@contoso.example") && r.err.contains("HTTP 404"),
        "{}",
        r.err
    );
}

const REDIRECT: &str = "http://127.0.0.1:9/cb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_passkey_is_previewed_reported_and_deleted() {
    let server =
        InProcess::start_with(|c| c.issuer = c.issuer.replace("127.0.0.1", "localhost")).await;
    let base = server.base.replace("127.0.0.1", "localhost");
    let admin = Admin::login(&server.base, &server.creds).await;
    let f = seed(&admin, REDIRECT).await;
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
            &format!(
                "/users/{}/authentication/temporaryAccessPassMethods",
                f.user_id
            ),
            json!({"isUsableOnce": true, "lifetimeInMinutes": 60}),
        )
        .await["temporaryAccessPass"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut device = SoftAuthenticator::new(uuid::Uuid::parse_str(YUBIKEY).unwrap());
    device.settings.transports = vec!["usb".into()];
    let http = localhost_client(&server.base);
    let signed_in = secret_attempt(&http, &base, &f.client_id, &f.upn, &pass).await;
    assert!(
        signed_in.as_ref().is_ok_and(|r| r.contains("code=")),
        "{signed_in:?}"
    );
    register_soft(&http, &base, &device, "Blue key")
        .await
        .unwrap();

    // The CLI reads the in-process server's credentials from a file.
    let dir = scratch_dir("methods-cli-passkey");
    let creds = dir.join("admin-credentials");
    std::fs::write(&creds, server.creds.to_string()).unwrap();
    let global = [
        "--credentials",
        creds.to_str().unwrap(),
        "--server",
        server.base.as_str(),
    ];
    let run = |args: &[&str], code: i32| -> Run {
        let r = cli(&dir, &[&global[..], args].concat(), "");
        assert_eq!(
            r.code, code,
            "cutover admin {args:?}: exit {}\n{}\n{}",
            r.code, r.out, r.err
        );
        r
    };

    // The helpdesk's view of the user's passkeys.
    let r = run(&["users", "passkeys", "list", &f.upn], 0);
    let line = r
        .out
        .lines()
        .find(|l| l.starts_with("Blue key"))
        .unwrap_or_else(|| panic!("{}", r.out));
    for want in ["YubiKey 5 Series", "device-bound", "Security key", "never"] {
        assert!(line.contains(want), "{want}: {}", r.out);
    }
    let listed = admin
        .get(&format!(
            "/users/{}/authentication/passkeyMethods",
            f.user_id
        ))
        .await;
    let id = listed["value"][0]["id"].as_str().unwrap().to_owned();
    assert!(line.ends_with(&id), "{}", r.out);

    // Blocking its model: the preview names the passkey and its user; refused without --yes.
    let before = admin.get("/policies/authenticationMethodsPolicy").await;
    let r = run(&["methods-policy", "set", "--block-aaguids", YUBIKEY], 1);
    assert!(
        r.out
            .contains("1 passkey of 1 registered would STOP WORKING"),
        "{}",
        r.out
    );
    let stopped = r
        .out
        .lines()
        .find(|l| l.starts_with("User1@contoso.example"))
        .unwrap_or_else(|| panic!("{}", r.out));
    assert!(
        stopped.contains("Blue key")
            && stopped.contains("YubiKey 5 Series")
            && stopped.contains(&id),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("1 user would be LEFT WITHOUT A WORKING PASSKEY")
            && r.out.contains("  User1@contoso.example\n"),
        "{}",
        r.out
    );
    assert!(r.err.contains("not interactive"), "{}", r.err);
    assert_eq!(
        admin.get("/policies/authenticationMethodsPolicy").await,
        before
    );
    // Passkeys only for a group the user is not in: the same passkey, previewed.
    admin
        .post(
            "/groups",
            json!({"displayName": "Others", "membershipKind": "assigned"}),
        )
        .await;
    let r = run(
        &[
            "methods-policy",
            "set",
            "--passkey-groups",
            "Others",
            "--dry-run",
        ],
        0,
    );
    assert!(
        r.out
            .contains("1 passkey of 1 registered would STOP WORKING"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("A dry run: nothing was changed."),
        "{}",
        r.out
    );
    assert_eq!(
        admin.get("/policies/authenticationMethodsPolicy").await,
        before
    );

    // The report counts it.
    let r = run(&["reports", "registration"], 0);
    assert!(
        r.out.contains("passwordlessCapable:  1 (100.0%)"),
        "{}",
        r.out
    );
    assert!(r.out.contains("Security key"), "{}", r.out);

    // Lost device: the helpdesk deletes it, and is told about the pass.
    let r = run(&["users", "passkeys", "delete", &f.upn, &id], 0);
    assert!(
        r.out.starts_with(&format!(
            "Deleted the passkey \"Blue key\" ({id}) of {}",
            f.upn
        )),
        "{}",
        r.out
    );
    assert!(r.out.contains("They have no passkey left."), "{}", r.out);
    assert!(r.out.contains("Temporary Access Pass"), "{}", r.out);
    let r = run(&["users", "passkeys", "list", &f.upn], 0);
    assert!(r.out.contains("has no passkeys"), "{}", r.out);
    let r = run(&["users", "passkeys", "delete", &f.upn, &id], 1);
    assert!(r.err.contains("HTTP 404"), "{}", r.err);
}
