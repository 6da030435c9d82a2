//! Conditional Access as a spec: a small directory, nine policies and a table of sign-ins with
//! every policy's expected result and the decision; checks that name the field; the limits at
//! their edges; the impact report and the gate at theirs; and the engine's invariants as
//! properties over generated policies and sign-ins.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::domain_cutover::BreakGlassFacts;
use crate::strength::{BuiltIn, CustomStrength, MethodKind, Strength, UsedMethod, satisfies};
use crate::{ClientAppType, Timestamp};

// ---------------------------------------------------------------------------------------------
// The directory.

const ALICE: Uuid = Uuid::from_u128(0x1);
const BOB: Uuid = Uuid::from_u128(0x2);
const CAROL: Uuid = Uuid::from_u128(0x3);
const GLASS: Uuid = Uuid::from_u128(0x9);

const STAFF: Uuid = Uuid::from_u128(0x10);
const ADMINS: Uuid = Uuid::from_u128(0x11);
const CONTRACTORS: Uuid = Uuid::from_u128(0x12);

const PORTAL: Uuid = Uuid::from_u128(0x20);
const MAIL: Uuid = Uuid::from_u128(0x21);
const HR: Uuid = Uuid::from_u128(0x22);

const HQ: Uuid = Uuid::from_u128(0x30);
const BRANCH: Uuid = Uuid::from_u128(0x31);
const EMBARGO: Uuid = Uuid::from_u128(0x32);

const PWD_TOTP: Uuid = Uuid::from_u128(0x40);
const SECURITY_KEY: Uuid = Uuid::from_u128(0x41);
const GOOD_KEY_MODEL: Uuid = Uuid::from_u128(0x42);

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

fn groups_of(user: Uuid) -> BTreeSet<Uuid> {
    match user {
        ALICE => BTreeSet::from([STAFF]),
        BOB => BTreeSet::from([STAFF, ADMINS]),
        CAROL => BTreeSet::from([STAFF, CONTRACTORS]),
        GLASS => BTreeSet::from([STAFF, ADMINS, CONTRACTORS]),
        _ => BTreeSet::new(),
    }
}

fn raw_locations() -> Vec<NamedLocation> {
    vec![
        NamedLocation {
            id: HQ,
            display_name: "HQ".into(),
            ip_ranges: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            is_trusted: true,
        },
        NamedLocation {
            id: BRANCH,
            display_name: "Branch".into(),
            ip_ranges: vec!["192.0.2.0/24".into()],
            is_trusted: false,
        },
        NamedLocation {
            id: EMBARGO,
            display_name: "Embargo".into(),
            ip_ranges: vec!["203.0.113.0/24".into()],
            is_trusted: false,
        },
    ]
}

fn strengths() -> BTreeMap<Uuid, CustomStrength> {
    BTreeMap::from([
        (
            PWD_TOTP,
            CustomStrength {
                name: "Password and TOTP".into(),
                combinations: vec![BTreeSet::from([MethodKind::Password, MethodKind::Totp])],
                allowed_aaguids: None,
            },
        ),
        (
            SECURITY_KEY,
            CustomStrength {
                name: "Security key".into(),
                combinations: vec![BTreeSet::from([MethodKind::Passkey])],
                allowed_aaguids: Some(BTreeSet::from([GOOD_KEY_MODEL])),
            },
        ),
    ])
}

/// Checks raw policies against the directory's locations and strengths.
struct Tenant {
    locations: NamedLocations,
    strengths: BTreeMap<Uuid, CustomStrength>,
}

impl Tenant {
    fn new() -> Self {
        Self {
            locations: NamedLocations::check(&raw_locations()).unwrap(),
            strengths: strengths(),
        }
    }
    fn ctx(&self) -> PolicyContext<'_> {
        PolicyContext {
            locations: &self.locations,
            custom_strengths: &self.strengths,
        }
    }
    fn check(&self, p: &ConditionalAccessPolicy) -> Result<CheckedPolicy, String> {
        p.check(&self.ctx()).map_err(|e| e.to_string())
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn ids(v: &[Uuid]) -> Vec<String> {
    v.iter().map(Uuid::to_string).collect()
}

/// Everyone, every application, every client, `mfa`; `f` shapes the rest.
fn policy(
    n: u128,
    name: &str,
    state: PolicyState,
    f: impl FnOnce(&mut ConditionalAccessPolicy),
) -> ConditionalAccessPolicy {
    let mut p = ConditionalAccessPolicy {
        id: Uuid::from_u128(0x100 + n),
        display_name: name.into(),
        state,
        conditions: Conditions {
            users: UserConditions {
                include_users: strs(&["All"]),
                ..Default::default()
            },
            applications: ApplicationConditions {
                include_applications: strs(&["All"]),
                exclude_applications: vec![],
            },
            client_app_types: strs(&["all"]),
            locations: None,
            platforms: None,
        },
        grant_controls: Some(grant(&["mfa"], None)),
        session_controls: None,
    };
    f(&mut p);
    p
}

fn grant(controls: &[&str], strength: Option<&str>) -> GrantControls {
    GrantControls {
        operator: GrantOperator::Or,
        built_in_controls: strs(controls),
        authentication_strength: strength.map(|id| AuthenticationStrengthRef { id: id.into() }),
    }
}

fn frequency(value: u32, unit: FrequencyUnit) -> Option<SessionControls> {
    Some(SessionControls {
        sign_in_frequency: Some(SignInFrequency {
            is_enabled: true,
            value: Some(value),
            unit: Some(unit),
        }),
    })
}

use PolicyState::{Disabled, Enabled, EnabledForReportingButNotEnforced as ReportOnly};

fn tenant_policies() -> Vec<ConditionalAccessPolicy> {
    vec![
        // MFA for staff outside trusted networks (contractors have their own policy).
        policy(1, "mfa-staff", Enabled, |p| {
            p.conditions.users = UserConditions {
                include_groups: ids(&[STAFF]),
                exclude_groups: ids(&[CONTRACTORS]),
                ..Default::default()
            };
            p.conditions.locations = Some(LocationConditions {
                include_locations: strs(&["All"]),
                exclude_locations: strs(&["AllTrusted"]),
            });
        }),
        policy(2, "block-legacy", Enabled, |p| {
            p.conditions.client_app_types = strs(&["exchangeActiveSync", "other"]);
            p.grant_controls = Some(grant(&["block"], None));
        }),
        policy(3, "admins-phish", Enabled, |p| {
            p.conditions.users = UserConditions {
                include_groups: ids(&[ADMINS]),
                ..Default::default()
            };
            p.conditions.applications.include_applications = ids(&[PORTAL, HR]);
            p.conditions.client_app_types = strs(&["browser", "mobileAppsAndDesktopClients"]);
            p.grant_controls = Some(GrantControls {
                operator: GrantOperator::And,
                ..grant(&[], Some("phishingResistantMfa"))
            });
        }),
        policy(4, "block-embargo", Enabled, |p| {
            p.conditions.users.exclude_users = ids(&[BOB]);
            p.conditions.locations = Some(LocationConditions {
                include_locations: ids(&[EMBARGO]),
                exclude_locations: vec![],
            });
            p.grant_controls = Some(grant(&["block"], None));
        }),
        policy(5, "hr-custom", ReportOnly, |p| {
            p.conditions.applications.include_applications = ids(&[HR]);
            p.grant_controls = Some(grant(&[], Some(&PWD_TOTP.to_string())));
        }),
        policy(6, "mobile-freq", Enabled, |p| {
            p.conditions.applications.include_applications = ids(&[MAIL]);
            p.conditions.platforms = Some(PlatformConditions {
                include_platforms: strs(&["iOS", "android"]),
                exclude_platforms: vec![],
            });
            p.grant_controls = None;
            p.session_controls = frequency(8, FrequencyUnit::Hours);
        }),
        policy(7, "other-platforms", ReportOnly, |p| {
            p.conditions.users.include_users = ids(&[ALICE]);
            p.conditions.platforms = Some(PlatformConditions {
                include_platforms: strs(&["all"]),
                exclude_platforms: strs(&["windows", "macOS", "iOS", "android"]),
            });
            p.grant_controls = Some(grant(&["mfa"], Some(&SECURITY_KEY.to_string())));
        }),
        policy(8, "off", Disabled, |p| {
            p.grant_controls = Some(grant(&["block"], None));
        }),
        policy(9, "contractors", Enabled, |p| {
            p.conditions.users = UserConditions {
                include_groups: ids(&[CONTRACTORS]),
                ..Default::default()
            };
            p.conditions.applications.exclude_applications = ids(&[PORTAL]);
            p.grant_controls = Some(GrantControls {
                operator: GrantOperator::And,
                ..grant(&["mfa"], Some(&PWD_TOTP.to_string()))
            });
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Sign-ins.

fn pwd() -> UsedMethod {
    UsedMethod::of(MethodKind::Password)
}
fn otp() -> UsedMethod {
    UsedMethod::of(MethodKind::Totp)
}
fn key() -> UsedMethod {
    UsedMethod::passkey(Some(GOOD_KEY_MODEL), false)
}

/// A sign-in: by default at the portal, in a browser, from HQ, on Windows, with a password an
/// hour ago, TOTP registered.
#[derive(Clone)]
struct S(SignInFactsOwned);

fn signin(user: Uuid) -> S {
    S(SignInFactsOwned {
        user_id: user,
        groups: groups_of(user),
        break_glass: user == GLASS,
        app_id: PORTAL,
        client_app_type: ClientAppType::Browser,
        ip: Some("10.1.2.3".parse().unwrap()),
        platform: "windows".into(),
        methods: vec![pwd()],
        auth_time: NOW.minus_secs(HOUR),
        now: NOW,
        can_satisfy: RegisteredMethods {
            password: true,
            totp: true,
            passkey: false,
        },
    })
}

impl S {
    fn app(mut self, app: Uuid) -> Self {
        self.0.app_id = app;
        self
    }
    fn client(mut self, c: ClientAppType) -> Self {
        self.0.client_app_type = c;
        self
    }
    fn via(mut self, ip: &str) -> Self {
        self.0.ip = Some(ip.parse().unwrap());
        self
    }
    fn with_unknown_address(mut self) -> Self {
        self.0.ip = None;
        self
    }
    fn on(mut self, platform: &str) -> Self {
        self.0.platform = platform.into();
        self
    }
    fn did(mut self, methods: &[UsedMethod]) -> Self {
        self.0.methods = methods.to_vec();
        self
    }
    fn can(mut self, password: bool, totp: bool, passkey: bool) -> Self {
        self.0.can_satisfy = RegisteredMethods {
            password,
            totp,
            passkey,
        };
        self
    }
    fn authenticated_secs_ago(mut self, secs: i64) -> Self {
        self.0.auth_time = NOW.minus_secs(secs);
        self
    }
}

/// `allow`, `block(a, b)`, `stepUp[mfa + Name](a)`, `reauthenticate(a)`; policies by name in
/// the decision's (id) order.
fn decision_text(d: &Decision, names: &BTreeMap<Uuid, String>) -> String {
    let list = |p: &[Uuid]| {
        p.iter()
            .map(|id| names[id].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match d {
        Decision::Allow => "allow".into(),
        Decision::Block { policies } => format!("block({})", list(policies)),
        Decision::StepUp {
            requirement,
            policies,
        } => {
            let mut parts: Vec<String> = requirement
                .built_in
                .iter()
                .map(|b| b.as_str().to_owned())
                .collect();
            parts.extend(requirement.custom.iter().map(|c| c.strength.name.clone()));
            format!("stepUp[{}]({})", parts.join(" + "), list(policies))
        }
        Decision::Reauthenticate { policies } => format!("reauthenticate({})", list(policies)),
    }
}

use CaResult::*;

struct Case {
    name: &'static str,
    signin: S,
    /// Policies that apply, with their result; every other enabled or report-only policy must
    /// be (report-only) not applied.
    applied: &'static [(&'static str, CaResult)],
    /// (policy, words its reason contains).
    reasons: &'static [(&'static str, &'static str)],
    decision: &'static str,
}

#[test]
fn sign_ins_against_the_tenant_policies() {
    let tenant = Tenant::new();
    let raw = tenant_policies();
    let policies = check_policies(&raw, &tenant.ctx()).unwrap();
    let names: BTreeMap<Uuid, String> =
        raw.iter().map(|p| (p.id, p.display_name.clone())).collect();
    #[rustfmt::skip]
    let cases = vec![
        Case { name: "alice at HQ in a browser on Windows with a password",
            signin: signin(ALICE), applied: &[],
            reasons: &[("mfa-staff", "not applied: IP 10.1.2.3 is in excluded location 'HQ'"),
                       ("block-legacy", "not applied: client app type 'browser' not included"),
                       ("admins-phish", "not applied: user not included"),
                       ("block-embargo", "not applied: IP 10.1.2.3 is in no included location ('Embargo')"),
                       ("hr-custom", "not applied: application 00000000-0000-0000-0000-000000000020 not included"),
                       ("other-platforms", "not applied: platform 'windows' excluded")],
            decision: "allow" },
        Case { name: "alice from the branch office",
            signin: signin(ALICE).via("192.0.2.10"), applied: &[("mfa-staff", Interrupted)],
            reasons: &[("mfa-staff", "requires mfa; not satisfied by methods [pwd]; step-up to mfa possible")],
            decision: "stepUp[mfa](mfa-staff)" },
        Case { name: "alice from the branch office after a TOTP code",
            signin: signin(ALICE).via("192.0.2.10").did(&[pwd(), otp()]), applied: &[("mfa-staff", Success)],
            reasons: &[("mfa-staff", "requires mfa; satisfied by methods [pwd, otp]")],
            decision: "allow" },
        Case { name: "alice from the branch office with nothing to step up with",
            signin: signin(ALICE).via("192.0.2.10").can(true, false, false), applied: &[("mfa-staff", Failure)],
            reasons: &[("mfa-staff", "mfa cannot be reached: no TOTP or passkey registered")],
            decision: "block(mfa-staff)" },
        Case { name: "alice from the branch office with a passkey registered",
            signin: signin(ALICE).via("192.0.2.10").can(false, false, true), applied: &[("mfa-staff", Interrupted)],
            reasons: &[], decision: "stepUp[mfa](mfa-staff)" },
        Case { name: "alice from an unknown address: in All, in no named location",
            signin: signin(ALICE).with_unknown_address(), applied: &[("mfa-staff", Interrupted)],
            reasons: &[("block-embargo", "IP address unknown, and the policy includes only named locations ('Embargo')")],
            decision: "stepUp[mfa](mfa-staff)" },
        Case { name: "alice over IPv6 at HQ",
            signin: signin(ALICE).via("2001:db8::5"), applied: &[], reasons: &[], decision: "allow" },
        Case { name: "alice at HQ through a dual-stack socket (IPv4-mapped)",
            signin: signin(ALICE).via("::ffff:10.1.2.3"), applied: &[], reasons: &[], decision: "allow" },
        Case { name: "alice with Exchange ActiveSync at HQ",
            signin: signin(ALICE).client(ClientAppType::ExchangeActiveSync), applied: &[("block-legacy", Failure)],
            reasons: &[("block-legacy", "blocked by grant control 'block'")],
            decision: "block(block-legacy)" },
        Case { name: "bob (staff and admin) from the branch office at the portal",
            signin: signin(BOB).via("192.0.2.10").can(true, true, true),
            applied: &[("mfa-staff", Interrupted), ("admins-phish", Interrupted)],
            reasons: &[("admins-phish", "requires phishingResistantMfa; not satisfied by methods [pwd]; step-up to phishingResistantMfa possible")],
            decision: "stepUp[phishingResistantMfa](mfa-staff, admins-phish)" },
        Case { name: "bob with a passkey at HQ",
            signin: signin(BOB).did(&[key()]).can(false, false, true), applied: &[("admins-phish", Success)],
            reasons: &[("admins-phish", "satisfied by methods [hwk]")], decision: "allow" },
        Case { name: "bob without a passkey at HQ",
            signin: signin(BOB).did(&[pwd(), otp()]), applied: &[("admins-phish", Failure)],
            reasons: &[("admins-phish", "phishingResistantMfa cannot be reached: no passkey registered")],
            decision: "block(admins-phish)" },
        Case { name: "bob at the portal from a legacy desktop mail client: admins-phish covers browsers and apps only",
            signin: signin(BOB).client(ClientAppType::Other), applied: &[("block-legacy", Failure)],
            reasons: &[], decision: "block(block-legacy)" },
        Case { name: "bob from the embargoed network is excluded by name",
            signin: signin(BOB).via("203.0.113.9").can(true, true, true),
            applied: &[("mfa-staff", Interrupted), ("admins-phish", Interrupted)],
            reasons: &[("block-embargo", "not applied: user excluded (excludeUsers)")],
            decision: "stepUp[phishingResistantMfa](mfa-staff, admins-phish)" },
        Case { name: "carol (a contractor) from the embargoed network",
            signin: signin(CAROL).via("203.0.113.9"), applied: &[("block-embargo", Failure)],
            reasons: &[("mfa-staff", "not applied: user excluded: member of excluded group 00000000-0000-0000-0000-000000000012"),
                       ("contractors", "not applied: application 00000000-0000-0000-0000-000000000020 excluded")],
            decision: "block(block-embargo)" },
        Case { name: "carol at mail with a password: mfa AND a custom strength",
            signin: signin(CAROL).app(MAIL), applied: &[("contractors", Interrupted)],
            reasons: &[("contractors", "requires mfa AND strength 'Password and TOTP' (00000000-0000-0000-0000-000000000040)")],
            decision: "stepUp[mfa + Password and TOTP](contractors)" },
        Case { name: "carol at mail after a TOTP code",
            signin: signin(CAROL).app(MAIL).did(&[pwd(), otp()]), applied: &[("contractors", Success)],
            reasons: &[], decision: "allow" },
        Case { name: "carol at mail with only a passkey: mfa met, the password-and-TOTP strength unreachable",
            signin: signin(CAROL).app(MAIL).did(&[key()]).can(false, false, true), applied: &[("contractors", Failure)],
            reasons: &[("contractors", "strength 'Password and TOTP' (00000000-0000-0000-0000-000000000040) cannot be reached")],
            decision: "block(contractors)" },
        Case { name: "alice at HR: the report-only custom strength would interrupt, the decision does not change",
            signin: signin(ALICE).app(HR), applied: &[("hr-custom", ReportOnlyInterrupted)],
            reasons: &[], decision: "allow" },
        Case { name: "alice at HR without TOTP: the report-only policy would block",
            signin: signin(ALICE).app(HR).can(true, false, false), applied: &[("hr-custom", ReportOnlyFailure)],
            reasons: &[], decision: "allow" },
        Case { name: "alice at HR after a TOTP code",
            signin: signin(ALICE).app(HR).did(&[pwd(), otp()]), applied: &[("hr-custom", ReportOnlySuccess)],
            reasons: &[], decision: "allow" },
        Case { name: "alice at mail on an iPhone nine hours after signing in",
            signin: signin(ALICE).app(MAIL).on("iOS").authenticated_secs_ago(9 * HOUR),
            applied: &[("mobile-freq", Interrupted)],
            reasons: &[("mobile-freq", "sign-in frequency 8 hours exceeded (authenticated 9h 0m ago)")],
            decision: "reauthenticate(mobile-freq)" },
        Case { name: "alice at mail on an iPhone exactly eight hours after signing in",
            signin: signin(ALICE).app(MAIL).on("iOS").authenticated_secs_ago(8 * HOUR),
            applied: &[("mobile-freq", Success)],
            reasons: &[("mobile-freq", "sign-in frequency 8 hours: authenticated 8h 0m ago")],
            decision: "allow" },
        Case { name: "alice at mail on Android from the branch, nine hours on: step-up comes first",
            signin: signin(ALICE).app(MAIL).on("android").via("192.0.2.10").authenticated_secs_ago(9 * HOUR),
            applied: &[("mfa-staff", Interrupted), ("mobile-freq", Interrupted)],
            reasons: &[], decision: "stepUp[mfa](mfa-staff)" },
        Case { name: "alice at mail on a Chromebook: only includePlatforms all covers it",
            signin: signin(ALICE).app(MAIL).on("chromeOS").authenticated_secs_ago(9 * HOUR),
            applied: &[("other-platforms", ReportOnlyInterrupted)],
            reasons: &[("mobile-freq", "not applied: platform 'chromeOS' not included (only includePlatforms all covers it)"),
                       ("other-platforms", "requires mfa OR strength 'Security key'")],
            decision: "allow" },
        Case { name: "alice on Linux after a TOTP code",
            signin: signin(ALICE).on("linux").did(&[pwd(), otp()]), applied: &[("other-platforms", ReportOnlySuccess)],
            reasons: &[("other-platforms", "mfa satisfied by methods [pwd, otp]")], decision: "allow" },
        Case { name: "alice on an unknown device with a security key of the right model",
            signin: signin(ALICE).on("unknown").did(&[key()]).can(false, false, true),
            applied: &[("other-platforms", ReportOnlySuccess)], reasons: &[], decision: "allow" },
        Case { name: "bob on an unknown device is not in other-platforms (alice only)",
            signin: signin(BOB).on("unknown").did(&[key()]), applied: &[("admins-phish", Success)],
            reasons: &[], decision: "allow" },
        Case { name: "the break-glass account, legacy client, embargoed network, Linux",
            signin: signin(GLASS).client(ClientAppType::ExchangeActiveSync).via("203.0.113.9").on("linux").can(false, false, false),
            applied: &[],
            reasons: &[("block-legacy", BREAK_GLASS_REASON), ("block-embargo", BREAK_GLASS_REASON), ("contractors", BREAK_GLASS_REASON)],
            decision: "allow" },
    ];
    for case in cases {
        let facts = case.signin.0.facts();
        let e = evaluate(&policies, &facts);
        let by_name: BTreeMap<&str, &PolicyEvaluation> = e
            .results
            .iter()
            .map(|r| (r.display_name.as_str(), r))
            .collect();
        assert_eq!(
            e.results.len(),
            8,
            "{}: the disabled policy is left out",
            case.name
        );
        assert!(!by_name.contains_key("off"), "{}", case.name);
        for r in &e.results {
            let expected = case
                .applied
                .iter()
                .find(|(n, _)| *n == r.display_name)
                .map(|(_, res)| *res);
            let want = expected.unwrap_or(if r.result.is_report_only() {
                ReportOnlyNotApplied
            } else {
                NotApplied
            });
            assert_eq!(
                r.result, want,
                "{}: '{}': {}",
                case.name, r.display_name, r.reason
            );
            assert_eq!(r.required.is_some(), r.result.applied(), "{}", case.name);
        }
        for (n, _) in case.applied {
            assert!(by_name.contains_key(n), "{}: no policy {n}", case.name);
        }
        for (n, words) in case.reasons {
            let reason = &by_name[n].reason;
            assert!(
                reason.contains(words),
                "{}: '{n}': {reason:?} lacks {words:?}",
                case.name
            );
        }
        assert_eq!(
            decision_text(&e.decision, &names),
            case.decision,
            "{}:\n{}",
            case.name,
            e.explain()
        );
    }
}

#[test]
fn the_what_if_explanation_and_the_log_records() {
    let tenant = Tenant::new();
    let policies = check_policies(&tenant_policies(), &tenant.ctx()).unwrap();
    let s = signin(ALICE).via("192.0.2.10");
    let e = evaluate(&policies, &s.0.facts());
    let text = e.explain();
    assert!(
        text.starts_with("step up to mfa: required by 00000000-0000-0000-0000-000000000101"),
        "{text}"
    );
    assert!(
        text.contains("\n- 'mfa-staff' (00000000-0000-0000-0000-000000000101): interrupted: requires mfa; not satisfied by methods [pwd]; step-up to mfa possible"),
        "{text}"
    );
    assert!(
        text.contains(
            "'hr-custom' (00000000-0000-0000-0000-000000000105): reportOnlyNotApplied: not applied"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 9);
    let logged = e.policy_results();
    assert_eq!(logged.len(), 8);
    assert_eq!(logged[0].policy_id, Uuid::from_u128(0x101));
    assert_eq!(logged[0].result, "interrupted");
    let json = serde_json::to_value(&e.decision).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"decision": "stepUp", "requirement": {"builtIn": "mfa"}, "policies": ["00000000-0000-0000-0000-000000000101"]})
    );
    assert_eq!(
        serde_json::to_value(Decision::Allow).unwrap(),
        serde_json::json!({"decision": "allow"})
    );
    let r = &e.results[0];
    assert_eq!(r.step_up.as_ref().unwrap().built_in, Some(BuiltIn::Mfa));
    assert!(r.step_up.as_ref().unwrap().is_met_by(&[pwd(), otp()]));
    assert!(!r.step_up.as_ref().unwrap().is_met_by(&[pwd()]));
    let required = serde_json::to_value(r.required.as_ref().unwrap()).unwrap();
    assert_eq!(
        required,
        serde_json::json!({"operator": "OR", "controls": [{"builtIn": "mfa"}]})
    );
}

// ---------------------------------------------------------------------------------------------
// The wire shape.

#[test]
fn policies_read_the_familiar_json_and_refuse_unknown_fields() {
    let json = serde_json::json!({
        "id": "00000000-0000-0000-0000-000000000777",
        "displayName": "Require MFA outside trusted networks",
        "state": "enabledForReportingButNotEnforced",
        "conditions": {
            "users": {"includeUsers": ["All"], "excludeGroups": [CONTRACTORS.to_string()]},
            "applications": {"includeApplications": ["All"]},
            "clientAppTypes": ["browser", "mobileAppsAndDesktopClients"],
            "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]},
            "platforms": {"includePlatforms": ["all"], "excludePlatforms": ["linux"]}
        },
        "grantControls": {"operator": "AND", "builtInControls": ["mfa"], "authenticationStrength": {"id": PWD_TOTP.to_string()}},
        "sessionControls": {"signInFrequency": {"isEnabled": true, "value": 12, "type": "hours"}}
    });
    let p: ConditionalAccessPolicy = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(p.state, ReportOnly);
    assert_eq!(
        p.grant_controls.as_ref().unwrap().operator,
        GrantOperator::And
    );
    let checked = Tenant::new().check(&p).unwrap();
    assert_eq!(checked.state(), ReportOnly);
    assert_eq!(
        checked.display_name(),
        "Require MFA outside trusted networks"
    );
    assert_eq!(checked.sign_in_frequency().unwrap().secs(), 12 * HOUR);
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json,
        "written back as read"
    );

    let mut unknown = json.clone();
    unknown["conditions"]["users"]["includeGuestsOrExternalUsers"] = serde_json::json!({});
    let err = serde_json::from_value::<ConditionalAccessPolicy>(unknown).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown field `includeGuestsOrExternalUsers`"),
        "{err}"
    );
    let mut dated = json.clone();
    dated["createdDateTime"] = serde_json::json!("2026-01-01T00:00:00Z");
    assert!(
        serde_json::from_value::<ConditionalAccessPolicy>(dated).is_err(),
        "timestamps are the server's"
    );
    let mut bad_state = json;
    bad_state["state"] = serde_json::json!("on");
    assert!(serde_json::from_value::<ConditionalAccessPolicy>(bad_state).is_err());

    let loc: NamedLocation = serde_json::from_value(serde_json::json!({
        "id": HQ.to_string(), "displayName": "HQ", "ipRanges": ["10.0.0.0/8", "2001:db8::/32"], "isTrusted": true
    }))
    .unwrap();
    let checked = loc.check().unwrap();
    assert!(checked.is_trusted());
    assert!(checked.contains("2001:db8::1".parse().unwrap()));
}

// ---------------------------------------------------------------------------------------------
// Checks that name the field.

#[test]
fn checks_name_the_field_and_the_rule() {
    let tenant = Tenant::new();
    let base = || policy(50, "base", Enabled, |_| {});
    assert!(tenant.check(&base()).is_ok());
    let missing = Uuid::from_u128(0xff).to_string();
    type Edit = Box<dyn Fn(&mut ConditionalAccessPolicy)>;
    fn edit(f: impl Fn(&mut ConditionalAccessPolicy) + 'static) -> Edit {
        Box::new(f)
    }
    #[rustfmt::skip]
    let cases: Vec<(Edit, String)> = vec![
        (edit(|p| p.conditions.users.include_users = vec![ALICE.to_string(), BOB.to_string(), "abc".into()]),
            "conditions.users.includeUsers[2]: 'abc' is neither All, None nor a user id".into()),
        (edit(|p| p.conditions.users.include_users = vec!["All".into(), ALICE.to_string()]),
            "conditions.users.includeUsers[0]: 'All' must be the only entry (the list has 2)".into()),
        (edit(|p| p.conditions.users.include_users = strs(&["None", "All"])),
            "conditions.users.includeUsers[1]: 'All' must be the only entry (the list has 2)".into()),
        (edit(|p| p.conditions.users.exclude_users = strs(&["All"])),
            "conditions.users.excludeUsers[0]: 'All' is not a user id".into()),
        (edit(|p| { p.conditions.users.include_users = vec![]; p.conditions.users.include_groups = strs(&["staff"]) }),
            "conditions.users.includeGroups[0]: 'staff' is not a group id".into()),
        (edit(|p| p.conditions.users.exclude_groups = strs(&["x"])),
            "conditions.users.excludeGroups[0]: 'x' is not a group id".into()),
        (edit(|p| p.conditions.users.include_groups = ids(&[STAFF])),
            "conditions.users.includeGroups: includeUsers is All: leave includeGroups empty".into()),
        (edit(|p| { p.conditions.users.include_users = strs(&["None"]); p.conditions.users.include_groups = ids(&[STAFF]) }),
            "conditions.users.includeGroups: includeUsers is None (no one), but includeGroups lists groups".into()),
        (edit(|p| p.conditions.users.include_users = vec![]),
            "conditions.users.includeUsers: an enabled or report-only policy must include someone (All, user ids or includeGroups)".into()),
        (edit(|p| { p.state = ReportOnly; p.conditions.users.include_users = strs(&["None"]) }),
            "conditions.users.includeUsers: an enabled or report-only policy must include someone (All, user ids or includeGroups)".into()),
        (edit(|p| p.conditions.applications.include_applications = strs(&["Office365"])),
            "conditions.applications.includeApplications[0]: 'Office365' is neither All, None nor an application id".into()),
        (edit(|p| p.conditions.applications.include_applications = strs(&["None"])),
            "conditions.applications.includeApplications: an enabled or report-only policy must include an application (All or application ids)".into()),
        (edit(|p| p.conditions.applications.exclude_applications = strs(&["x"])),
            "conditions.applications.excludeApplications[0]: 'x' is not an application id".into()),
        (edit(|p| p.conditions.client_app_types = vec![]),
            "conditions.clientAppTypes: name at least one client app type, or all".into()),
        (edit(|p| p.conditions.client_app_types = strs(&["browser", "easSupported"])),
            "conditions.clientAppTypes[1]: 'easSupported' is not a client app type (all, browser, mobileAppsAndDesktopClients, exchangeActiveSync, other)".into()),
        (edit(|p| p.conditions.client_app_types = strs(&["all", "browser"])),
            "conditions.clientAppTypes[0]: 'all' must be the only entry (the list has 2)".into()),
        (edit(|p| p.conditions.locations = Some(LocationConditions::default())),
            "conditions.locations.includeLocations: name All, AllTrusted or at least one named location (or leave locations out)".into()),
        (edit(move |p| p.conditions.locations = Some(LocationConditions { include_locations: vec![missing.clone()], exclude_locations: vec![] })),
            "conditions.locations.includeLocations[0]: no named location has the id 00000000-0000-0000-0000-0000000000ff".into()),
        (edit(|p| p.conditions.locations = Some(LocationConditions { include_locations: strs(&["Paris"]), exclude_locations: vec![] })),
            "conditions.locations.includeLocations[0]: 'Paris' is neither All, AllTrusted nor a named location id".into()),
        (edit(|p| p.conditions.locations = Some(LocationConditions { include_locations: strs(&["AllTrusted"]), exclude_locations: strs(&["All"]) })),
            "conditions.locations.excludeLocations[0]: 'All' cannot be excluded (it would exclude every sign-in); exclude AllTrusted or named locations".into()),
        (edit(|p| p.conditions.locations = Some(LocationConditions { include_locations: vec!["All".into(), HQ.to_string()], exclude_locations: vec![] })),
            "conditions.locations.includeLocations[0]: 'All' must be the only entry (the list has 2)".into()),
        (edit(|p| p.conditions.locations = Some(LocationConditions { include_locations: strs(&["AllTrusted"]), exclude_locations: strs(&["nowhere"]) })),
            "conditions.locations.excludeLocations[0]: 'nowhere' is neither AllTrusted nor a named location id".into()),
        (edit(|p| p.conditions.platforms = Some(PlatformConditions::default())),
            "conditions.platforms.includePlatforms: name all or at least one platform (or leave platforms out)".into()),
        (edit(|p| p.conditions.platforms = Some(PlatformConditions { include_platforms: strs(&["windowsPhone"]), exclude_platforms: vec![] })),
            "conditions.platforms.includePlatforms[0]: 'windowsPhone' is not a platform (all, android, iOS, windows, macOS, linux)".into()),
        (edit(|p| p.conditions.platforms = Some(PlatformConditions { include_platforms: strs(&["all", "iOS"]), exclude_platforms: vec![] })),
            "conditions.platforms.includePlatforms[0]: 'all' must be the only entry (the list has 2)".into()),
        (edit(|p| p.conditions.platforms = Some(PlatformConditions { include_platforms: strs(&["iOS"]), exclude_platforms: strs(&["all"]) })),
            "conditions.platforms.excludePlatforms[0]: 'all' cannot be excluded (it would exclude every sign-in)".into()),
        (edit(|p| p.conditions.platforms = Some(PlatformConditions { include_platforms: strs(&["all"]), exclude_platforms: strs(&["chromeOS"]) })),
            "conditions.platforms.excludePlatforms[0]: 'chromeOS' is not a platform (android, iOS, windows, macOS, linux)".into()),
        (edit(|p| p.grant_controls = Some(grant(&["block", "mfa"], None))),
            "grantControls.builtInControls: block cannot be combined with other controls".into()),
        (edit(|p| p.grant_controls = Some(grant(&["block"], Some("mfa")))),
            "grantControls.builtInControls: block cannot be combined with other controls".into()),
        (edit(|p| p.grant_controls = Some(grant(&["mfa", "compliantDevice"], None))),
            "grantControls.builtInControls[1]: 'compliantDevice' is not supported (block, mfa)".into()),
        (edit(|p| p.grant_controls = Some(grant(&[], None))),
            "grantControls: name at least one control (block, mfa) or an authenticationStrength, or leave grantControls out".into()),
        (edit(|p| p.grant_controls = Some(grant(&[], Some("gold")))),
            "grantControls.authenticationStrength.id: 'gold' is neither a built-in strength (mfa, passwordlessMfa, phishingResistantMfa) nor a custom strength id".into()),
        (edit(|p| p.grant_controls = Some(grant(&[], Some("00000000-0000-0000-0000-0000000000ff")))),
            "grantControls.authenticationStrength.id: no custom authentication strength has the id 00000000-0000-0000-0000-0000000000ff".into()),
        (edit(|p| p.grant_controls = None),
            "grantControls: a policy needs a grant control (block, mfa or an authenticationStrength) or a session control (signInFrequency)".into()),
        (edit(|p| { p.grant_controls = None; p.session_controls = Some(SessionControls { sign_in_frequency: Some(SignInFrequency { is_enabled: false, value: None, unit: None }) }) }),
            "grantControls: a policy needs a grant control (block, mfa or an authenticationStrength) or a session control (signInFrequency)".into()),
        (edit(|p| { p.grant_controls = Some(grant(&["block"], None)); p.session_controls = frequency(1, FrequencyUnit::Days) }),
            "sessionControls.signInFrequency: a policy that blocks has no session to control".into()),
        (edit(|p| p.session_controls = Some(SessionControls { sign_in_frequency: Some(SignInFrequency { is_enabled: true, value: Some(4), unit: None }) })),
            "sessionControls.signInFrequency.type: hours or days is required when enabled".into()),
        (edit(|p| p.session_controls = Some(SessionControls { sign_in_frequency: Some(SignInFrequency { is_enabled: true, value: None, unit: Some(FrequencyUnit::Days) }) })),
            "sessionControls.signInFrequency.value: required when enabled".into()),
        (edit(|p| p.session_controls = frequency(0, FrequencyUnit::Hours)),
            "sessionControls.signInFrequency.value: must be 1 to 8760 hours".into()),
        (edit(|p| p.display_name = "   ".into()),
            "displayName: must be 1 to 256 characters".into()),
    ];
    for (edit, want) in cases {
        let mut p = base();
        edit(&mut p);
        assert_eq!(tenant.check(&p).unwrap_err(), want);
    }

    // A disabled draft may include no one and no application yet.
    let draft = policy(51, "draft", Disabled, |p| {
        p.conditions.users.include_users = strs(&["None"]);
        p.conditions.applications.include_applications = vec![];
    });
    assert!(tenant.check(&draft).is_ok());
    // Frequency alone is a control; a disabled frequency needs no value.
    let freq_only = policy(52, "f", Enabled, |p| {
        p.grant_controls = None;
        p.session_controls = frequency(1, FrequencyUnit::Hours);
    });
    assert!(tenant.check(&freq_only).is_ok());
    let off_freq = policy(53, "f", Enabled, |p| {
        p.session_controls = Some(SessionControls {
            sign_in_frequency: Some(SignInFrequency {
                is_enabled: false,
                value: None,
                unit: None,
            }),
        });
    });
    assert_eq!(tenant.check(&off_freq).unwrap().sign_in_frequency(), None);
    // AllTrusted may be combined with named locations; duplicates collapse.
    let mixed = policy(54, "m", Enabled, |p| {
        p.conditions.locations = Some(LocationConditions {
            include_locations: vec!["AllTrusted".into(), BRANCH.to_string(), HQ.to_string()],
            exclude_locations: vec![],
        });
    });
    assert_eq!(
        tenant
            .check(&mixed)
            .unwrap()
            .locations
            .unwrap()
            .include
            .len(),
        2
    );

    // An invalid custom strength in the tenant is refused where a policy names it.
    let mut broken = strengths();
    broken.get_mut(&PWD_TOTP).unwrap().combinations = vec![];
    let ctx = PolicyContext {
        locations: &tenant.locations,
        custom_strengths: &broken,
    };
    let p = policy(55, "c", Enabled, |p| {
        p.grant_controls = Some(grant(&[], Some(&PWD_TOTP.to_string())));
    });
    assert!(p.check(&ctx).unwrap_err().to_string().starts_with(
        "grantControls.authenticationStrength.id: the custom strength 00000000-0000-0000-0000-000000000040 is invalid: combinations"
    ));
    assert_eq!(p.referenced_strength(), Some(PWD_TOTP));
    assert_eq!(mixed.referenced_locations(), BTreeSet::from([BRANCH, HQ]));
}

#[test]
fn named_locations_are_checked_by_field() {
    let loc = |ranges: &[&str]| NamedLocation {
        id: HQ,
        display_name: "HQ".into(),
        ip_ranges: strs(ranges),
        is_trusted: true,
    };
    let err = |l: NamedLocation| l.check().unwrap_err().to_string();
    assert_eq!(
        err(loc(&[])),
        "ipRanges: name at least one IP range (CIDR, e.g. 10.0.0.0/8)"
    );
    assert_eq!(
        err(loc(&["10.0.0.0/8", "10.1.2.3/8"])),
        "ipRanges[1]: '10.1.2.3/8' has host bits set; did you mean 10.0.0.0/8?"
    );
    assert_eq!(
        err(NamedLocation {
            display_name: String::new(),
            ..loc(&["10.0.0.0/8"])
        }),
        "displayName: must be 1 to 256 characters"
    );
    let twice = [loc(&["10.0.0.0/8"]), loc(&["192.0.2.0/24"])];
    assert_eq!(
        NamedLocations::check(&twice).unwrap_err().to_string(),
        "namedLocations[1].id: 00000000-0000-0000-0000-000000000030 is used by another named location"
    );
    assert_eq!(
        NamedLocations::check(&[loc(&["nope"])])
            .unwrap_err()
            .to_string(),
        "namedLocations[0].ipRanges[0]: 'nope' is not a CIDR range (expected address/prefix, e.g. 10.0.0.0/8 or 2001:db8::/32)"
    );
    let tenant = Tenant::new();
    let policies = vec![
        policy(1, "a", Enabled, |_| {}),
        policy(1, "b", Enabled, |_| {}),
    ];
    assert_eq!(
        check_policies(&policies, &tenant.ctx())
            .unwrap_err()
            .to_string(),
        "policies[1].id: 00000000-0000-0000-0000-000000000101 is used by another policy"
    );
    let policies = vec![policy(1, "", Enabled, |_| {})];
    assert_eq!(
        check_policies(&policies, &tenant.ctx())
            .unwrap_err()
            .to_string(),
        "policies[0].displayName: must be 1 to 256 characters"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits at their edges.

#[test]
fn limits_at_their_edges() {
    let tenant = Tenant::new();
    let many_ids = |n: usize| {
        (0..n as u128)
            .map(|i| Uuid::from_u128(0x10_0000 + i).to_string())
            .collect::<Vec<_>>()
    };

    let p = policy(1, "p", Enabled, |p| {
        p.conditions.users.include_users = many_ids(MAX_IDS_PER_LIST)
    });
    assert!(tenant.check(&p).is_ok());
    let p = policy(1, "p", Enabled, |p| {
        p.conditions.users.include_users = many_ids(MAX_IDS_PER_LIST + 1)
    });
    assert_eq!(
        tenant.check(&p).unwrap_err(),
        "conditions.users.includeUsers: at most 1000 entries, got 1001"
    );
    let p = policy(1, "p", Enabled, |p| {
        p.conditions.users.include_users = vec![];
        p.conditions.users.include_groups = many_ids(MAX_IDS_PER_LIST + 1);
    });
    assert_eq!(
        tenant.check(&p).unwrap_err(),
        "conditions.users.includeGroups: at most 1000 entries, got 1001"
    );
    let p = policy(1, "p", Enabled, |p| {
        p.conditions.applications.exclude_applications = many_ids(MAX_IDS_PER_LIST + 1)
    });
    assert_eq!(
        tenant.check(&p).unwrap_err(),
        "conditions.applications.excludeApplications: at most 1000 entries, got 1001"
    );

    let name = |n: usize| "é".repeat(n);
    assert!(
        tenant
            .check(&policy(1, &name(MAX_NAME_LEN), Enabled, |_| {}))
            .is_ok()
    );
    assert_eq!(
        tenant
            .check(&policy(1, &name(MAX_NAME_LEN + 1), Enabled, |_| {}))
            .unwrap_err(),
        "displayName: must be 1 to 256 characters"
    );

    let ranges = |n: u32| {
        (0..n)
            .map(|i| format!("{}/32", std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .collect::<Vec<_>>()
    };
    let loc = |n: u32| NamedLocation {
        id: HQ,
        display_name: "HQ".into(),
        ip_ranges: ranges(n),
        is_trusted: false,
    };
    let checked = loc(MAX_IP_RANGES_PER_LOCATION as u32).check().unwrap();
    assert!(
        checked.contains("10.0.7.207".parse().unwrap()),
        "the last of 2000 /32s"
    );
    assert!(!checked.contains("10.0.7.208".parse().unwrap()));
    assert_eq!(
        loc(MAX_IP_RANGES_PER_LOCATION as u32 + 1)
            .check()
            .unwrap_err()
            .to_string(),
        "ipRanges: at most 2000 ranges, got 2001"
    );

    let locations = |n: usize| {
        (0..n as u128)
            .map(|i| NamedLocation {
                id: Uuid::from_u128(0x20_0000 + i),
                ..loc(1)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        NamedLocations::check(&locations(MAX_NAMED_LOCATIONS))
            .unwrap()
            .len(),
        MAX_NAMED_LOCATIONS
    );
    assert_eq!(
        NamedLocations::check(&locations(MAX_NAMED_LOCATIONS + 1))
            .unwrap_err()
            .to_string(),
        "namedLocations: at most 500 named locations, got 501"
    );

    let policies = |n: usize| {
        (0..n as u128)
            .map(|i| policy(i, "p", Enabled, |_| {}))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        check_policies(&policies(MAX_POLICIES), &tenant.ctx())
            .unwrap()
            .len(),
        MAX_POLICIES
    );
    assert_eq!(
        check_policies(&policies(MAX_POLICIES + 1), &tenant.ctx())
            .unwrap_err()
            .to_string(),
        "policies: at most 500 policies, got 501"
    );

    let freq = |v, u| policy(1, "f", Enabled, |p| p.session_controls = frequency(v, u));
    assert!(
        tenant
            .check(&freq(MAX_SIGN_IN_FREQUENCY_DAYS, FrequencyUnit::Days))
            .is_ok()
    );
    assert!(
        tenant
            .check(&freq(MAX_SIGN_IN_FREQUENCY_DAYS * 24, FrequencyUnit::Hours))
            .is_ok()
    );
    assert_eq!(
        tenant
            .check(&freq(MAX_SIGN_IN_FREQUENCY_DAYS + 1, FrequencyUnit::Days))
            .unwrap_err(),
        "sessionControls.signInFrequency.value: must be 1 to 365 days"
    );
    assert_eq!(
        tenant
            .check(&freq(
                MAX_SIGN_IN_FREQUENCY_DAYS * 24 + 1,
                FrequencyUnit::Hours
            ))
            .unwrap_err(),
        "sessionControls.signInFrequency.value: must be 1 to 8760 hours"
    );
}

#[test]
fn sign_in_frequency_is_exceeded_only_past_the_limit() {
    let tenant = Tenant::new();
    let p = tenant
        .check(&policy(1, "daily", Enabled, |p| {
            p.grant_controls = None;
            p.session_controls = frequency(1, FrequencyUnit::Days);
        }))
        .unwrap();
    let at = |age_ms: i64| {
        let mut s = signin(ALICE);
        s.0.auth_time = NOW.plus_millis(-age_ms);
        evaluate(std::slice::from_ref(&p), &s.0.facts())
    };
    assert_eq!(at(DAY * 1000).decision, Decision::Allow);
    assert_eq!(at(DAY * 1000).results[0].result, Success);
    assert_eq!(
        at(DAY * 1000 + 1).decision,
        Decision::Reauthenticate {
            policies: vec![p.id()]
        }
    );
    assert!(at(DAY * 1000 + 1).results[0].reauthenticate);
    assert_eq!(
        at(-5_000).decision,
        Decision::Allow,
        "an auth_time ahead of the clock is fresh"
    );
}

// ---------------------------------------------------------------------------------------------
// Impact and the gate.

fn rec(user: u128, result: CaResult, reason: &str, platform: &str, at: Timestamp) -> ImpactRecord {
    ImpactRecord {
        user_id: Uuid::from_u128(user),
        user_principal_name: format!("user{user:04}@contoso.example"),
        platform: platform.into(),
        result,
        reason: reason.into(),
        at,
    }
}

fn glass(enabled: bool, drilled_secs_ago: Option<i64>) -> BreakGlassFacts {
    BreakGlassFacts {
        user_principal_name: "glass@contoso.example".into(),
        account_enabled: enabled,
        last_successful_sign_in: drilled_secs_ago.map(|s| NOW.minus_secs(s)),
    }
}

/// `interrupted` of `applied` users, the first record `evidence_secs` ago.
fn impact_of(applied: u128, interrupted: u128, evidence_secs: i64) -> Impact {
    let records: Vec<ImpactRecord> = (0..applied)
        .map(|u| {
            let result = if u < interrupted {
                ReportOnlyInterrupted
            } else {
                ReportOnlySuccess
            };
            rec(
                u,
                result,
                "requires mfa",
                "windows",
                NOW.minus_secs(evidence_secs),
            )
        })
        .collect();
    impact(Uuid::from_u128(7), &records, NOW.minus_secs(30 * DAY), NOW)
}

fn codes(g: &GateDecision) -> Vec<GateCode> {
    g.reasons.iter().map(|r| r.code).collect()
}

#[test]
fn impact_counts_distinct_users_and_groups_them() {
    let t = |h: i64| NOW.minus_secs(h * HOUR);
    let records = vec![
        // user 1: interrupted twice (durations differ, the reason groups once), then blocked
        rec(
            1,
            ReportOnlyInterrupted,
            "sign-in frequency 8 hours exceeded (authenticated 9h 0m ago)",
            "iOS",
            t(70),
        ),
        rec(
            1,
            ReportOnlyInterrupted,
            "sign-in frequency 8 hours exceeded (authenticated 10h 5m ago)",
            "iOS",
            t(60),
        ),
        rec(
            1,
            ReportOnlyFailure,
            "requires mfa; cannot",
            "android",
            t(50),
        ),
        // user 2: succeeded, then not applied
        rec(
            2,
            ReportOnlySuccess,
            "requires mfa; satisfied",
            "windows",
            t(40),
        ),
        rec(2, ReportOnlyNotApplied, "not applied", "windows", t(30)),
        // user 3: only ever not applied: evidence, but not applied
        rec(3, ReportOnlyNotApplied, "not applied", "linux", t(100)),
        // user 4: interrupted
        rec(
            4,
            ReportOnlyInterrupted,
            "requires mfa; step-up",
            "iOS",
            t(20),
        ),
        // enforced results and records outside the window are not projections
        rec(5, Failure, "blocked", "iOS", t(10)),
        rec(6, ReportOnlyFailure, "too early", "iOS", t(24 * 31)),
        rec(
            7,
            ReportOnlyFailure,
            "in the future",
            "iOS",
            NOW.plus_secs(1),
        ),
    ];
    let i = impact(Uuid::from_u128(7), &records, NOW.minus_secs(30 * DAY), NOW);
    assert_eq!(i.records, 7);
    assert_eq!(i.applied_users, 3, "users 1, 2, 4");
    assert_eq!(i.interrupted_users, 2, "users 1 and 4");
    assert_eq!(i.blocked_users, 1, "user 1");
    assert!((i.interruption_rate - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        i.evidence_since,
        Some(t(100)),
        "the first report-only record, applied or not"
    );
    assert_eq!(
        i.by_reason,
        BTreeMap::from([
            ("requires mfa; cannot".to_owned(), 1),
            ("requires mfa; step-up".to_owned(), 1),
            ("sign-in frequency 8 hours exceeded".to_owned(), 1),
        ])
    );
    assert_eq!(
        i.by_platform,
        BTreeMap::from([("android".to_owned(), 1), ("iOS".to_owned(), 2)])
    );
    assert_eq!(i.users.len(), 2);
    assert_eq!(i.users[0].user_id, Uuid::from_u128(1));
    assert_eq!(i.users[0].result, ReportOnlyFailure);
    assert_eq!(i.users[0].sign_ins, 3);
    assert_eq!(
        i.users[0].platform, "android",
        "of the latest stopped sign-in"
    );
    assert_eq!(i.users[0].last_at, t(50));

    let none = impact(Uuid::from_u128(7), &[], NOW.minus_secs(DAY), NOW);
    assert_eq!(
        (
            none.applied_users,
            none.interruption_rate,
            none.evidence_since
        ),
        (0, 0.0, None)
    );
}

#[test]
fn impact_samples_at_most_the_cap_by_name() {
    let records: Vec<ImpactRecord> = (0..MAX_IMPACT_SAMPLE as u128 + 10)
        .rev()
        .map(|u| rec(u, ReportOnlyInterrupted, "r", "iOS", NOW.minus_secs(HOUR)))
        .collect();
    let i = impact(Uuid::from_u128(7), &records, NOW.minus_secs(DAY), NOW);
    assert_eq!(
        i.interrupted_users,
        MAX_IMPACT_SAMPLE as u64 + 10,
        "counts are complete"
    );
    assert_eq!(i.users.len(), MAX_IMPACT_SAMPLE);
    assert_eq!(i.users[0].user_principal_name, "user0000@contoso.example");
    assert_eq!(
        i.users[MAX_IMPACT_SAMPLE - 1].user_id,
        Uuid::from_u128(MAX_IMPACT_SAMPLE as u128 - 1)
    );
}

#[test]
fn the_gate_at_its_edges() {
    let ready = [glass(true, Some(DAY)), glass(true, None)];
    let min = MIN_REPORT_ONLY_EVIDENCE_SECS;
    let thr = DEFAULT_INTERRUPTION_THRESHOLD_PERCENT;
    let gate_of = |i: &Impact, bg: &[BreakGlassFacts]| gate(i, thr, min, NOW, bg);

    // Exactly 48 h of evidence and exactly 5 % pass.
    let edge = impact_of(100, 5, min);
    assert_eq!(edge.interruption_rate, 5.0);
    let g = gate_of(&edge, &ready);
    assert!(g.allowed, "{}", g.explain());
    assert!(g.reasons.is_empty());
    assert_eq!(impact_of(20, 1, min).interruption_rate, 5.0);
    assert!(gate_of(&impact_of(20, 1, min), &ready).allowed);

    // A millisecond short of 48 h, or no evidence at all.
    let mut young = impact_of(100, 0, min);
    young.evidence_since = young.evidence_since.map(|t| t.plus_millis(1));
    assert_eq!(
        codes(&gate_of(&young, &ready)),
        vec![GateCode::ReportOnlyEvidenceTooShort]
    );
    let empty = impact(Uuid::from_u128(7), &[], NOW.minus_secs(30 * DAY), NOW);
    assert_eq!(
        codes(&gate_of(&empty, &ready)),
        vec![GateCode::NoReportOnlyEvidence]
    );

    // Above the threshold.
    let g = gate_of(&impact_of(100, 6, min), &ready);
    assert_eq!(codes(&g), vec![GateCode::InterruptionRateAboveThreshold]);
    assert!(
        g.reasons[0].message.starts_with("6 of 100 users (6.00 %)"),
        "{}",
        g.reasons[0].message
    );
    assert!(
        gate(&impact_of(100, 6, min), 6.0, min, NOW, &ready).allowed,
        "the threshold is configurable"
    );
    assert_eq!(
        codes(&gate(&edge, f64::NAN, min, NOW, &ready)),
        vec![GateCode::InvalidThreshold]
    );
    assert_eq!(
        codes(&gate(&edge, 101.0, min, NOW, &ready)),
        vec![GateCode::InvalidThreshold]
    );

    // One break-glass account is not two; a disabled one does not count.
    let edge = impact_of(100, 0, min);
    assert_eq!(
        codes(&gate_of(&edge, &[glass(true, Some(DAY))])),
        vec![GateCode::TooFewBreakGlassAccounts]
    );
    assert_eq!(
        codes(&gate_of(
            &edge,
            &[glass(true, Some(DAY)), glass(false, Some(DAY))]
        )),
        vec![GateCode::TooFewBreakGlassAccounts]
    );
    assert_eq!(
        codes(&gate_of(&edge, &[])),
        vec![
            GateCode::TooFewBreakGlassAccounts,
            GateCode::BreakGlassNotDrilled
        ]
    );

    // A drill exactly 90 days ago counts; a millisecond older does not; a disabled account's
    // drill does not.
    let ninety = crate::domain_cutover::BREAK_GLASS_DRILL_MAX_AGE_DAYS * DAY;
    assert!(gate_of(&edge, &[glass(true, Some(ninety)), glass(true, None)]).allowed);
    let stale = BreakGlassFacts {
        last_successful_sign_in: Some(NOW.minus_secs(ninety).plus_millis(-1)),
        ..glass(true, None)
    };
    assert_eq!(
        codes(&gate_of(&edge, &[stale, glass(true, None)])),
        vec![GateCode::BreakGlassNotDrilled]
    );
    assert_eq!(
        codes(&gate_of(
            &edge,
            &[
                glass(false, Some(DAY)),
                glass(true, None),
                glass(true, None)
            ]
        )),
        vec![GateCode::BreakGlassNotDrilled]
    );

    // Every reason at once, explained.
    let g = gate(&impact_of(10, 5, 3600), thr, min, NOW, &[glass(true, None)]);
    assert_eq!(
        codes(&g),
        vec![
            GateCode::ReportOnlyEvidenceTooShort,
            GateCode::InterruptionRateAboveThreshold,
            GateCode::TooFewBreakGlassAccounts,
            GateCode::BreakGlassNotDrilled
        ]
    );
    let text = g.explain();
    assert!(text.contains("- reportOnlyEvidenceTooShort: report-only evidence covers 1.0 h; at least 48 h are needed"), "{text}");
    assert_eq!(
        serde_json::to_value(g.reasons[0].code).unwrap(),
        serde_json::json!("reportOnlyEvidenceTooShort")
    );
}

// ---------------------------------------------------------------------------------------------
// Properties.

const USERS: [Uuid; 3] = [ALICE, BOB, CAROL];
const GROUPS: [Uuid; 3] = [STAFF, ADMINS, CONTRACTORS];
const APPS: [Uuid; 3] = [PORTAL, MAIL, HR];

fn subset(all: &'static [Uuid], max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(all, 0..=max).prop_map(|v| ids(&v))
}

fn names_subset(
    all: &'static [&'static str],
    range: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(all, range).prop_map(|v| strs(&v))
}

fn any_grant() -> impl Strategy<Value = Option<GrantControls>> {
    let pwd_totp: &'static str = Box::leak(PWD_TOTP.to_string().into_boxed_str());
    let key: &'static str = Box::leak(SECURITY_KEY.to_string().into_boxed_str());
    (
        prop_oneof![Just(GrantOperator::And), Just(GrantOperator::Or)],
        prop_oneof![
            Just((vec![], None)),
            Just((vec!["block"], None)),
            Just((vec!["mfa"], None)),
            Just((vec![], Some("passwordlessMfa"))),
            Just((vec![], Some("phishingResistantMfa"))),
            Just((vec![], Some(pwd_totp))),
            Just((vec!["mfa"], Some(key))),
            Just((vec!["mfa"], Some(pwd_totp))),
        ],
    )
        .prop_map(|(operator, (controls, strength))| {
            if controls.is_empty() && strength.is_none() {
                None
            } else {
                Some(GrantControls {
                    operator,
                    ..grant(&controls, strength)
                })
            }
        })
}

/// A valid raw policy over the small directory (fixed by construction where a rule would
/// refuse it); its id is set by the caller.
fn any_policy() -> impl Strategy<Value = ConditionalAccessPolicy> {
    let users = (
        prop_oneof![2 => Just(strs(&["All"])), 1 => subset(&USERS, 2)],
        subset(&GROUPS, 2),
        subset(&USERS, 1),
        subset(&GROUPS, 1),
    );
    let apps = (
        prop_oneof![2 => Just(strs(&["All"])), 1 => subset(&APPS, 2)],
        subset(&APPS, 1),
    );
    let clients = prop_oneof![
        3 => Just(strs(&["all"])),
        1 =>
        names_subset(&["browser", "mobileAppsAndDesktopClients", "exchangeActiveSync", "other"], 1..=2),
    ];
    let hq: &'static str = Box::leak(HQ.to_string().into_boxed_str());
    let branch: &'static str = Box::leak(BRANCH.to_string().into_boxed_str());
    let locations = proptest::option::weighted(
        0.4,
        (
            prop_oneof![
                Just(strs(&["All"])),
                Just(strs(&["AllTrusted"])),
                Just(strs(&[branch])),
                Just(strs(&[hq, branch])),
            ],
            prop_oneof![
                Just(vec![]),
                Just(strs(&["AllTrusted"])),
                Just(strs(&[branch]))
            ],
        ),
    );
    let platforms = proptest::option::weighted(
        0.4,
        (
            prop_oneof![
                Just(strs(&["all"])),
                names_subset(&["android", "iOS", "windows", "macOS", "linux"], 1..=2),
            ],
            names_subset(&["android", "iOS", "windows", "macOS", "linux"], 0..=1),
        ),
    );
    let state = prop_oneof![Just(Enabled), Just(ReportOnly), Just(Disabled)];
    (
        state,
        users,
        apps,
        clients,
        locations,
        platforms,
        any_grant(),
        proptest::option::of(1u32..=24),
    )
        .prop_map(
            |(
                state,
                (mut inc_u, mut inc_g, exc_u, exc_g),
                (inc_a, exc_a),
                clients,
                locations,
                platforms,
                grant_controls,
                freq,
            )| {
                if inc_u == ["All"] {
                    inc_g.clear();
                }
                if inc_u.is_empty() && inc_g.is_empty() {
                    inc_u = strs(&["All"]);
                }
                let inc_a = if inc_a.is_empty() {
                    strs(&["All"])
                } else {
                    inc_a
                };
                let blocks = grant_controls
                    .as_ref()
                    .is_some_and(|g| g.built_in_controls.iter().any(|c| c == "block"));
                let freq = if blocks { None } else { freq };
                let grant_controls = if grant_controls.is_none() && freq.is_none() {
                    Some(grant(&["mfa"], None))
                } else {
                    grant_controls
                };
                ConditionalAccessPolicy {
                    id: Uuid::nil(),
                    display_name: "generated".into(),
                    state,
                    conditions: Conditions {
                        users: UserConditions {
                            include_users: inc_u,
                            exclude_users: exc_u,
                            include_groups: inc_g,
                            exclude_groups: exc_g,
                        },
                        applications: ApplicationConditions {
                            include_applications: inc_a,
                            exclude_applications: exc_a,
                        },
                        client_app_types: clients,
                        locations: locations.map(|(include_locations, exclude_locations)| {
                            LocationConditions {
                                include_locations,
                                exclude_locations,
                            }
                        }),
                        platforms: platforms.map(|(include_platforms, exclude_platforms)| {
                            PlatformConditions {
                                include_platforms,
                                exclude_platforms,
                            }
                        }),
                    },
                    grant_controls,
                    session_controls: freq.and_then(|h| frequency(h, FrequencyUnit::Hours)),
                }
            },
        )
}

fn any_policies(max: usize) -> impl Strategy<Value = Vec<ConditionalAccessPolicy>> {
    proptest::collection::vec(any_policy(), 0..=max).prop_map(|mut v| {
        for (i, p) in v.iter_mut().enumerate() {
            p.id = Uuid::from_u128(0x1000 + i as u128);
        }
        v
    })
}

fn any_method() -> impl Strategy<Value = UsedMethod> {
    prop_oneof![
        Just(pwd()),
        Just(otp()),
        Just(UsedMethod::of(MethodKind::Federated)),
        Just(UsedMethod::of(MethodKind::TemporaryAccessPass)),
        Just(key()),
        Just(UsedMethod::passkey(Some(Uuid::from_u128(0xbad)), true)),
        Just(UsedMethod {
            upstream_mfa: true,
            ..UsedMethod::of(MethodKind::Federated)
        }),
    ]
}

fn any_signin() -> impl Strategy<Value = SignInFactsOwned> {
    (
        prop_oneof![
            Just(ALICE),
            Just(BOB),
            Just(CAROL),
            Just(Uuid::from_u128(0x99))
        ],
        subset(&GROUPS, 3),
        proptest::bool::weighted(0.2),
        prop_oneof![
            Just(PORTAL),
            Just(MAIL),
            Just(HR),
            Just(Uuid::from_u128(0x29))
        ],
        prop_oneof![
            Just(ClientAppType::Browser),
            Just(ClientAppType::MobileAppsAndDesktopClients),
            Just(ClientAppType::ExchangeActiveSync),
            Just(ClientAppType::Other),
        ],
        prop_oneof![
            Just(None),
            Just(Some("10.1.2.3")),
            Just(Some("192.0.2.5")),
            Just(Some("198.51.100.1")),
            Just(Some("::ffff:10.0.0.1")),
            Just(Some("2001:db8::1")),
        ],
        prop_oneof![
            Just("iOS"),
            Just("android"),
            Just("windows"),
            Just("macOS"),
            Just("chromeOS"),
            Just("linux"),
            Just("unknown"),
        ],
        proptest::collection::vec(any_method(), 0..3),
        0i64..48 * HOUR,
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                user,
                groups,
                break_glass,
                app,
                client,
                ip,
                platform,
                methods,
                age,
                (password, totp, passkey),
            )| {
                SignInFactsOwned {
                    user_id: user,
                    groups: groups.iter().map(|g| g.parse().unwrap()).collect(),
                    break_glass,
                    app_id: app,
                    client_app_type: client,
                    ip: ip.map(|s| s.parse().unwrap()),
                    platform: platform.into(),
                    methods,
                    auth_time: NOW.minus_secs(age),
                    now: NOW,
                    can_satisfy: RegisteredMethods {
                        password,
                        totp,
                        passkey,
                    },
                }
            },
        )
}

fn check_all(raw: &[ConditionalAccessPolicy]) -> Vec<CheckedPolicy> {
    check_policies(raw, &Tenant::new().ctx()).expect("generated policies are valid")
}

fn enforced_results(e: &Evaluation) -> Vec<&PolicyEvaluation> {
    e.results
        .iter()
        .filter(|r| !r.result.is_report_only())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) Report-only policies never change the decision, nor any enforced result.
    #[test]
    fn report_only_policies_never_change_the_decision(raw in any_policies(8), s in any_signin()) {
        let policies = check_all(&raw);
        let enforced_only: Vec<CheckedPolicy> = policies.iter().filter(|p| p.state() != ReportOnly).cloned().collect();
        let with = evaluate(&policies, &s.facts());
        let without = evaluate(&enforced_only, &s.facts());
        prop_assert_eq!(&with.decision, &without.decision);
        prop_assert_eq!(enforced_results(&with), enforced_results(&without));
    }

    /// (b) A break-glass account is never blocked, interrupted or sent back to sign in.
    #[test]
    fn break_glass_is_never_stopped(raw in any_policies(8), s in any_signin()) {
        let policies = check_all(&raw);
        let mut s = s;
        s.break_glass = true;
        let e = evaluate(&policies, &s.facts());
        prop_assert_eq!(&e.decision, &Decision::Allow);
        for r in &e.results {
            prop_assert!(!r.result.applied());
            prop_assert_eq!(r.reason.as_str(), BREAK_GLASS_REASON);
        }
    }

    /// (c) Adding an enforced policy never makes a sign-in more permissive: the decision's
    /// severity never drops, a step-up's requirement only grows, and the policies behind a
    /// decision of the same kind stay behind it.
    #[test]
    fn an_enforced_policy_never_loosens(raw in any_policies(6), extra in any_policy(), s in any_signin()) {
        let before = evaluate(&check_all(&raw), &s.facts());
        let mut more = raw.clone();
        more.push(ConditionalAccessPolicy { id: Uuid::from_u128(0x2000), state: Enabled, ..extra });
        let after = evaluate(&check_all(&more), &s.facts());
        prop_assert!(after.decision.severity() >= before.decision.severity(), "{:?} -> {:?}", before.decision, after.decision);
        if let (Decision::StepUp { requirement: r0, .. }, Decision::StepUp { requirement: r1, .. }) = (&before.decision, &after.decision) {
            prop_assert!(r1.includes(r0), "{:?} -> {:?}", r0, r1);
        }
        if std::mem::discriminant(&before.decision) == std::mem::discriminant(&after.decision) {
            for id in before.decision.policies() {
                prop_assert!(after.decision.policies().contains(id));
            }
        }
    }

    /// (d) Evaluation is deterministic, and the order of policies does not change the
    /// decision or any policy's result.
    #[test]
    fn evaluation_is_deterministic_in_any_order(
        (raw, shuffled) in any_policies(8).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
        s in any_signin(),
    ) {
        let policies = check_all(&raw);
        let first = evaluate(&policies, &s.facts());
        prop_assert_eq!(&first, &evaluate(&policies, &s.facts()));
        let other = evaluate(&check_all(&shuffled), &s.facts());
        prop_assert_eq!(&first.decision, &other.decision);
        let sorted = |e: &Evaluation| {
            let mut r = e.results.clone();
            r.sort_by_key(|r| r.policy_id);
            r
        };
        prop_assert_eq!(sorted(&first), sorted(&other));
    }

    /// Policies survive a JSON round trip unchanged, and check to the same result.
    #[test]
    fn policies_round_trip_through_json(raw in any_policies(3)) {
        for p in &raw {
            let back: ConditionalAccessPolicy = serde_json::from_str(&serde_json::to_string(p).unwrap()).unwrap();
            prop_assert_eq!(&back, p);
        }
    }

    /// The engine's view of a strength agrees with `strength::satisfies`: with nothing left to
    /// step up with, a policy demanding it succeeds exactly when the methods satisfy it.
    #[test]
    fn the_engine_agrees_with_the_strength_module(methods in proptest::collection::vec(any_method(), 0..4), which in 0usize..5) {
        let tenant = Tenant::new();
        let (id, strength) = match which {
            0 => ("mfa".to_owned(), Strength::BuiltIn(BuiltIn::Mfa)),
            1 => ("passwordlessMfa".to_owned(), Strength::BuiltIn(BuiltIn::PasswordlessMfa)),
            2 => ("phishingResistantMfa".to_owned(), Strength::BuiltIn(BuiltIn::PhishingResistantMfa)),
            3 => (PWD_TOTP.to_string(), Strength::Custom(tenant.strengths[&PWD_TOTP].clone())),
            _ => (SECURITY_KEY.to_string(), Strength::Custom(tenant.strengths[&SECURITY_KEY].clone())),
        };
        let p = tenant.check(&policy(1, "s", Enabled, |p| p.grant_controls = Some(grant(&[], Some(&id))))).unwrap();
        let s = signin(ALICE).did(&methods).can(false, false, false);
        let e = evaluate(&[p], &s.0.facts());
        let want = if satisfies(&methods, &strength) { Success } else { Failure };
        prop_assert_eq!(e.results[0].result, want, "{}", e.results[0].reason);
    }
}

/// The generators reach every decision, so the properties above are not vacuous.
#[test]
fn generated_sign_ins_reach_every_decision() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen: BTreeMap<u8, usize> = BTreeMap::new();
    let mut results: BTreeSet<CaResult> = BTreeSet::new();
    for _ in 0..500 {
        let raw = any_policies(8).new_tree(&mut runner).unwrap().current();
        let s = any_signin().new_tree(&mut runner).unwrap().current();
        let e = evaluate(&check_all(&raw), &s.facts());
        let kind = match e.decision {
            Decision::Allow => 0,
            Decision::StepUp { .. } => 1,
            Decision::Reauthenticate { .. } => 2,
            Decision::Block { .. } => 3,
        };
        *seen.entry(kind).or_default() += 1;
        results.extend(e.results.iter().map(|r| r.result));
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.values().all(|n| *n >= 10), "{seen:?}");
    assert_eq!(results.len(), CaResult::ALL.len(), "{results:?}");
}
