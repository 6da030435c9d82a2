//! `cutover admin idp | rollout | users staged-rollout | domains convert` against a running
//! server: names resolve to ids, rule violations and refused preflights fail with their reason,
//! and the exit status lets scripts gate on a refused preflight.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::*;

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) out: String,
    pub(crate) err: String,
}

/// `cutover admin --data-dir DIR ARGS…` with `stdin`, run to its end.
pub(crate) fn cli(dir: &std::path::Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("admin")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cutover admin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("cutover admin output");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_and_rollout_commands_drive_the_api() {
    let dir = scratch_dir("federation-cli");
    let _server = ServerProcess::start(&dir, &[]);
    let run = |args: &[&str], code: i32| {
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

    // An identity provider, its secret from standard input; the redirect URI is pointed out.
    let r = cli(
        &dir,
        &[
            "idp",
            "create",
            "--name",
            "Legacy ADFS",
            "--issuer",
            "https://adfs.contoso.example/adfs",
            "--client-id",
            "cutover",
            "--client-secret-file",
            "-",
        ],
        "upstream-s3cret\n",
    );
    assert_eq!(r.code, 0, "{}\n{}", r.out, r.err);
    assert!(
        r.out.contains("Register this redirect URI") && r.out.contains("/federation/callback"),
        "{}",
        r.out
    );
    assert!(!r.out.contains("upstream-s3cret"), "{}", r.out);

    // Domains: federated to the IdP named by its name; managed with pass-through.
    run(
        &[
            "domains",
            "create",
            "contoso.example",
            "--identity-provider",
            "Legacy ADFS",
        ],
        0,
    );
    let idps = json(&["idp", "list"]);
    let idp_id = idps["value"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(idps["value"][0]["domains"][0], "contoso.example");
    let d = json(&[
        "domains",
        "create",
        "fabrikam.example",
        "--password-validation",
        "passthrough-authentication",
    ]);
    assert_eq!(d["passwordValidation"], "passthroughAuthentication");

    // A policy named by its feature; groups named by their display names; a rule refuses.
    run(&["groups", "create", "Pilot"], 0);
    run(&["groups", "create", "Dyn", "--dynamic"], 0);
    run(
        &[
            "rollout",
            "create",
            "--name",
            "PHS pilot",
            "--feature",
            "password-hash-sync",
            "--enable",
        ],
        0,
    );
    let r = run(&["rollout", "add-group", "passwordHashSync", "Pilot"], 0);
    assert!(r.out.contains("Added group Pilot"), "{}", r.out);
    let r = run(&["rollout", "add-group", "passwordHashSync", "Dyn"], 1);
    assert!(
        r.err.contains("staged-rollout rule") && r.err.contains("dynamicGroupNotSupported"),
        "{}",
        r.err
    );
    let r = run(&["rollout", "add-group", "passwordHashSync", "Nobody"], 1);
    assert!(r.err.contains("no group is named 'Nobody'"), "{}", r.err);
    let groups = json(&["rollout", "groups", "passwordHashSync"]);
    assert_eq!(groups["value"][0]["displayName"], "Pilot");

    // A user's staged-rollout state.
    run(
        &[
            "users",
            "create",
            "u1@contoso.example",
            "--display-name",
            "U1",
        ],
        0,
    );
    let r = run(&["users", "staged-rollout", "u1@contoso.example"], 0);
    assert!(
        r.out.contains("eligibility:") && r.out.contains("routeReason:"),
        "{}",
        r.out
    );
    let s = json(&["users", "staged-rollout", "u1@contoso.example"]);
    assert_eq!(s["eligibility"], "cloudOnlyUser");

    // The cut-over: no break-glass accounts, so the preflight refuses: exit status 2.
    let r = run(
        &[
            "domains",
            "convert",
            "contoso.example",
            "--to",
            "managed",
            "--dry-run",
        ],
        2,
    );
    assert!(
        r.out.contains("breakGlassAccounts") && r.out.contains("would be refused"),
        "{}",
        r.out
    );
    let r = run(
        &["domains", "convert", "contoso.example", "--to", "managed"],
        2,
    );
    assert!(
        r.out.contains("Refused: contoso.example stays federated"),
        "{}",
        r.out
    );
    let r = run(
        &[
            "--output",
            "json",
            "domains",
            "convert",
            "contoso.example",
            "--to",
            "managed",
        ],
        2,
    );
    let v: Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(
        (
            v["converted"].as_bool(),
            v["preflight"]["allowed"].as_bool()
        ),
        (Some(false), Some(false))
    );

    // Converting to federated is always allowed.
    let r = run(
        &[
            "domains",
            "convert",
            "fabrikam.example",
            "--to",
            "federated",
            "--identity-provider",
            &idp_id,
        ],
        0,
    );
    assert!(
        r.out
            .contains("Converted fabrikam.example from managed to federated"),
        "{}",
        r.out
    );

    // An IdP in use is not deleted; the policy is unwound by name.
    let r = run(&["idp", "delete", "Legacy ADFS"], 1);
    assert!(r.err.contains("HTTP 409"), "{}", r.err);
    run(&["rollout", "remove-group", "passwordHashSync", "Pilot"], 0);
    run(&["rollout", "delete", "passwordHashSync"], 0);
    let r = run(&["rollout", "list"], 0);
    assert_eq!(r.out, "(none)\n");
}
