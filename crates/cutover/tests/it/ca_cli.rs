//! `cutover admin ca … | break-glass …` against a running server: named locations created,
//! listed, refused deletion while a policy names them, deleted; a policy created from a file
//! without a state (report-only, said so), listed and shown in words with the names of its
//! group and location; what-if naming the policy's result per IP address; the impact of a
//! policy without evidence and the gate saying so; enabling refused by the gate (reasons
//! printed, exit non-zero, nothing changed), `--force` refused without `--yes` when nobody can
//! be asked, then forced with `--yes` (audited); break-glass designation with the warning about
//! fewer than two accounts, a drill refused without a sign-in (the server's 409 message), and
//! removal behind a confirmation.

use serde_json::{Value, json};

use crate::federation_cli::{Run, cli};
use crate::harness::*;

const REDIRECT: &str = "http://127.0.0.1:9/cb";
const POLICY: &str = "Require MFA for Pilot";
const GLASS: &str = "glass1@contoso.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_and_break_glass_commands_drive_the_api() {
    let dir = scratch_dir("ca-cli");
    let server = ServerProcess::start(&dir, &[]);
    let admin = Admin::login(&server.base, &server.credentials()).await;
    let f = seed(&admin, REDIRECT).await;
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
    let pilot = admin.get("/groups").await["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == "Pilot")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // --- named locations ---------------------------------------------------------------
    let r = run(&["ca", "locations", "list"], 0);
    assert!(r.out.starts_with("No named location yet"), "{}", r.out);
    let r = run(
        &[
            "ca",
            "locations",
            "create",
            "--name",
            "Office",
            "--ranges",
            "203.0.113.0/24,2001:db8:10::/48",
            "--trusted",
        ],
        0,
    );
    assert!(
        r.out.starts_with("Created the named location 'Office'") && r.out.contains("trusted"),
        "{}",
        r.out
    );
    let r = run(
        &[
            "ca",
            "locations",
            "create",
            "--name",
            "Lab",
            "--ranges",
            "10.1.2.3/16",
        ],
        2,
    );
    assert!(
        r.err.contains("10.1.2.3/16"),
        "a typo names itself: {}",
        r.err
    );
    run(
        &[
            "ca",
            "locations",
            "create",
            "--name",
            "Lab",
            "--ranges",
            "10.1.0.0/16",
        ],
        0,
    );
    let r = run(&["ca", "locations", "list"], 0);
    let office = r
        .out
        .lines()
        .find(|l| l.starts_with("Office"))
        .unwrap_or_else(|| panic!("no Office line: {}", r.out));
    assert!(
        office.contains("yes") && office.contains("203.0.113.0/24,2001:db8:10::/48"),
        "{}",
        r.out
    );
    let locations = json(&["ca", "locations", "list"]);
    let office_id = locations["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["displayName"] == "Office")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = run(&["ca", "locations", "delete", "Lab"], 0);
    assert!(
        r.out.starts_with("Deleted the named location 'Lab'"),
        "{}",
        r.out
    );
    let r = run(&["ca", "locations", "list"], 0);
    assert!(!r.out.contains("Lab"), "{}", r.out);

    // --- a policy from a file: report-only by default ------------------------------------
    let r = run(&["ca", "list"], 0);
    assert!(
        r.out.starts_with("No Conditional Access policy yet"),
        "{}",
        r.out
    );
    let file = dir.join("require-mfa.json");
    std::fs::write(
        &file,
        json!({
            "displayName": POLICY,
            "conditions": {
                "users": {"includeGroups": [pilot]},
                "applications": {"includeApplications": ["All"]},
                "clientAppTypes": ["all"],
                "locations": {"includeLocations": ["All"], "excludeLocations": [office_id]},
            },
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        })
        .to_string(),
    )
    .unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"displayName": "x", "conditions": {}, "grantControl": {}}"#,
    )
    .unwrap();
    let r = run(&["ca", "create", "--file", bad.to_str().unwrap()], 1);
    assert!(
        r.err.contains("not a Conditional Access policy"),
        "{}",
        r.err
    );
    let r = run(&["ca", "create", "--file", file.to_str().unwrap()], 0);
    assert!(
        r.out
            .contains("the file gives no state, so the policy is created report-only"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains(&format!("Created the policy '{POLICY}'")) && r.out.contains("report-only"),
        "{}",
        r.out
    );
    let r = run(&["ca", "list"], 0);
    let line = r
        .out
        .lines()
        .find(|l| l.starts_with(POLICY))
        .unwrap_or_else(|| panic!("no policy line: {}", r.out));
    for want in ["report-only", "1 group", "all apps", "mfa"] {
        assert!(line.contains(want), "{want}: {}", r.out);
    }
    let shown = json(&["ca", "show", POLICY]);
    assert_eq!(
        shown["state"], "enabledForReportingButNotEnforced",
        "{shown}"
    );
    assert!(shown["createdDateTime"].is_string(), "{shown}");
    let pid = shown["id"].as_str().unwrap().to_owned();
    let r = run(&["ca", "show", &pid], 0);
    for want in [
        "report-only: evaluated at every sign-in and recorded, never enforced",
        "members of Pilot",
        "any location except Office (203.0.113.0/24, 2001:db8:10::/48, trusted)",
        "require multi-factor authentication (mfa)",
        "excluded from this policy by the engine itself",
    ] {
        assert!(r.out.contains(want), "{want}: {}", r.out);
    }
    let r = run(&["ca", "show", "require mfa for pilot"], 1);
    assert!(
        r.err.contains(&format!("did you mean '{POLICY}'")),
        "{}",
        r.err
    );
    let r = run(&["ca", "locations", "delete", "Office"], 1);
    assert!(
        r.err.contains(POLICY) && r.err.contains("HTTP 409"),
        "a location in use stays: {}",
        r.err
    );

    // --- what-if ---------------------------------------------------------------------------
    // The gate's threshold: shown, set (audited by the server), refused out of range.
    let r = run(&["ca", "gate"], 0);
    assert!(r.out.contains("more than 5 %"), "{}", r.out);
    run(&["ca", "gate", "--threshold", "2.5"], 0);
    let r = run(&["ca", "gate"], 0);
    assert!(r.out.contains("more than 2.5 %"), "{}", r.out);
    let r = run(&["ca", "gate", "--threshold", "120"], 1);
    assert!(r.err.contains("between 0 and 100"), "{}", r.err);
    run(&["ca", "gate", "--threshold", "5"], 0);

    let r = run(
        &[
            "ca",
            "what-if",
            "--user",
            &f.upn,
            "--app",
            &f.client_id,
            "--ip",
            "198.51.100.7",
            "--platform",
            "windows",
        ],
        0,
    );
    let line = r
        .out
        .lines()
        .find(|l| l.starts_with(POLICY))
        .unwrap_or_else(|| panic!("no result for the policy: {}", r.out));
    assert!(
        line.contains("reportOnlyFailure"),
        "no second factor: {}",
        r.out
    );
    assert!(r.out.contains("Decision: ALLOW."), "{}", r.out);
    assert!(
        r.out
            .contains(&format!("if enabled, '{POLICY}' would block it")),
        "{}",
        r.out
    );
    let r = run(
        &[
            "ca",
            "what-if",
            "--user",
            &f.upn,
            "--app",
            &f.client_id,
            "--ip",
            "203.0.113.9",
        ],
        0,
    );
    let line = r.out.lines().find(|l| l.starts_with(POLICY)).unwrap();
    assert!(
        line.contains("reportOnlyNotApplied"),
        "from the office: {}",
        r.out
    );
    let what = json(&[
        "ca",
        "what-if",
        "--user",
        &f.upn,
        "--app",
        &f.client_id,
        "--methods",
        "pwd,otp",
    ]);
    assert_eq!(what["decision"]["decision"], "allow", "{what}");
    assert_eq!(what["results"][0]["policyId"], pid.as_str(), "{what}");
    let r = run(
        &[
            "ca",
            "what-if",
            "--user",
            "nobody@contoso.example",
            "--app",
            &f.client_id,
        ],
        1,
    );
    assert!(
        r.err.contains("HTTP 404"),
        "the server's message: {}",
        r.err
    );

    // --- impact and the gate ---------------------------------------------------------------
    let r = run(&["ca", "impact", POLICY, "--since", "48h"], 0);
    assert!(
        r.out
            .starts_with(&format!("Impact of '{POLICY}' if it were enforced")),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("No report-only result in this window"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("enabling it now would be REFUSED")
            && r.out.contains("noReportOnlyEvidence"),
        "{}",
        r.out
    );
    let impact = json(&["ca", "impact", &pid]);
    assert_eq!(impact["gate"]["allowed"], false, "{impact}");

    let r = run(&["ca", "set-state", POLICY, "enabled"], 1);
    assert!(r.out.contains("REFUSED"), "{}", r.out);
    for code in ["noReportOnlyEvidence", "tooFewBreakGlassAccounts"] {
        assert!(r.out.contains(code), "{code}: {}", r.out);
        assert!(r.err.contains(code), "{code}: {}", r.err);
    }
    assert!(
        r.err.contains(&format!(
            "the enforcement gate refused to enable '{POLICY}'"
        )) && r.err.contains("--force"),
        "{}",
        r.err
    );
    let state_now = || async {
        admin
            .get(&format!("/identity/conditionalAccess/policies/{pid}"))
            .await["state"]
            .clone()
    };
    assert_eq!(state_now().await, "enabledForReportingButNotEnforced");
    let r = run(&["ca", "set-state", POLICY, "enabled", "--force"], 1);
    assert!(
        r.err.contains("not interactive") && r.err.contains("--yes"),
        "{}",
        r.err
    );
    assert_eq!(state_now().await, "enabledForReportingButNotEnforced");
    let r = run(
        &["ca", "set-state", POLICY, "enabled", "--force", "--yes"],
        0,
    );
    assert!(
        r.out.contains(&format!("'{POLICY}' is now enabled")) && r.out.contains("audit log"),
        "{}",
        r.out
    );
    assert_eq!(state_now().await, "enabled");
    let forced = admin
        .get("/auditLogs/directoryAudits?action=forceEnableConditionalAccessPolicy")
        .await;
    assert_eq!(
        forced["value"].as_array().map_or(0, Vec::len),
        1,
        "{forced}"
    );
    let r = run(&["ca", "set-state", POLICY, "enabled"], 0);
    assert!(r.out.contains("already enabled"), "{}", r.out);
    let r = run(&["ca", "list"], 0);
    assert!(
        r.out
            .lines()
            .any(|l| l.starts_with(POLICY) && l.contains("enabled")),
        "{}",
        r.out
    );
    let r = run(&["ca", "set-state", &pid, "report-only"], 0);
    assert!(r.out.contains("is now report-only"), "{}", r.out);
    assert_eq!(state_now().await, "enabledForReportingButNotEnforced");

    // --- break-glass -----------------------------------------------------------------------
    let r = run(&["break-glass", "list"], 0);
    assert!(
        r.out.starts_with("No break-glass account is designated"),
        "{}",
        r.out
    );
    admin
        .post(
            "/users",
            json!({"userPrincipalName": GLASS, "displayName": "Break glass 1",
                   "accountEnabled": true}),
        )
        .await;
    let r = run(&["break-glass", "designate", GLASS], 0);
    assert!(
        r.out
            .starts_with(&format!("{GLASS} is now a break-glass account")),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("WARNING: only 1 enabled break-glass account"),
        "fewer than two: {}",
        r.out
    );
    let r = run(&["break-glass", "list"], 0);
    let line = r
        .out
        .lines()
        .find(|l| l.starts_with(GLASS))
        .unwrap_or_else(|| panic!("no account line: {}", r.out));
    assert!(line.contains("never"), "{}", r.out);
    assert!(
        r.out
            .contains("WARNING: only 1 enabled break-glass account"),
        "{}",
        r.out
    );
    let listed = json(&["break-glass", "list"]);
    assert_eq!(listed["value"][0]["userPrincipalName"], GLASS, "{listed}");
    let r = run(&["break-glass", "drill", "record", GLASS], 1);
    assert!(
        r.err.contains("has no successful sign-in in the last hour") && r.err.contains("HTTP 409"),
        "{}",
        r.err
    );
    // The engine excludes it from every policy.
    let r = run(
        &["ca", "what-if", "--user", GLASS, "--app", &f.client_id],
        0,
    );
    assert!(r.out.contains("break-glass account"), "{}", r.out);
    let r = run(&["break-glass", "remove", GLASS], 1);
    assert!(r.err.contains("not interactive"), "{}", r.err);
    let r = run(&["break-glass", "remove", GLASS, "--yes"], 0);
    assert!(
        r.out.contains("is no longer a break-glass account"),
        "{}",
        r.out
    );
    let r = run(&["break-glass", "list"], 0);
    assert!(
        r.out.starts_with("No break-glass account is designated"),
        "{}",
        r.out
    );

    // --- delete behind a confirmation ----------------------------------------------------
    let r = run(&["ca", "delete", POLICY], 1);
    assert!(r.err.contains("not interactive"), "{}", r.err);
    let r = run(&["ca", "delete", POLICY, "--yes"], 0);
    assert!(
        r.out.starts_with(&format!("Deleted the policy '{POLICY}'")),
        "{}",
        r.out
    );
    let r = run(&["ca", "list"], 0);
    assert!(
        r.out.starts_with("No Conditional Access policy yet"),
        "{}",
        r.out
    );
    let r = run(&["ca", "locations", "delete", &office_id], 0);
    assert!(r.out.contains("'Office'"), "{}", r.out);
}
