//! Campaigns as a spec: a three-wave campaign checked field by field and at every limit's
//! edge; the presets; the wave lifecycle and the enforcement decision at its edges; the
//! schedule around due times; audiences; progress against a naive count; the checklist; and
//! the rendering of one message.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::when::{DAY_MS, format_rfc3339, parse_rfc3339};
use super::*;
use crate::Timestamp;
use crate::device::{AndroidMaker, DeviceFamily};

const DAY: i64 = 86_400;
const CAMPAIGN: Uuid = Uuid::from_u128(0xC0);
const PILOT_GROUP: Uuid = Uuid::from_u128(0x10);
const FINANCE_GROUP: Uuid = Uuid::from_u128(0x11);
const ALL_GROUP: Uuid = Uuid::from_u128(0x12);
const PILOT_POLICY: Uuid = Uuid::from_u128(0x20);
const FINANCE_POLICY: Uuid = Uuid::from_u128(0x21);
const PILOT_WAVE: Uuid = Uuid::from_u128(0x30);

fn at(s: &str) -> Timestamp {
    parse_rfc3339(s).unwrap()
}

fn wave(name: &str, phase: Phase, group: Uuid, opens: &str, enforce: &str) -> WaveSpec {
    WaveSpec {
        id: None,
        display_name: name.into(),
        phase,
        group_id: group,
        registration_opens: at(opens),
        enforcement_date: at(enforce),
        ca_policy_id: None,
        target_percent: None,
    }
}

fn spec() -> CampaignSpec {
    let mut pilot = wave(
        "IT pilot",
        Phase::Pilot,
        PILOT_GROUP,
        "2027-01-04T08:00:00Z",
        "2027-02-01T08:00:00Z",
    );
    pilot.id = Some(PILOT_WAVE);
    pilot.ca_policy_id = Some(PILOT_POLICY);
    pilot.target_percent = Some(100.0);
    let mut finance = wave(
        "Finance",
        Phase::Department,
        FINANCE_GROUP,
        "2027-02-01T08:00:00Z",
        "2027-03-01T08:00:00Z",
    );
    finance.ca_policy_id = Some(FINANCE_POLICY);
    CampaignSpec {
        display_name: "  Passkeys 2027 ".into(),
        description: Some("Passwordless for everyone".into()),
        waves: vec![
            pilot,
            finance,
            wave(
                "Everyone",
                Phase::Organisation,
                ALL_GROUP,
                "2027-03-01T08:00:00Z",
                "2027-05-03T08:00:00Z",
            ),
        ],
        communications: None,
        preset: None,
        target_percent: None,
        utc_offset_minutes: None,
    }
}

/// Fresh ids 0x1000, 0x1001, …
fn ids() -> impl FnMut() -> Uuid {
    let mut n = 0x1000u128;
    move || {
        n += 1;
        Uuid::from_u128(n - 1)
    }
}

fn checked(s: &CampaignSpec) -> CheckedCampaign {
    check(s, &mut ids()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn errors(s: &CampaignSpec) -> Vec<FieldError> {
    check(s, &mut ids()).expect_err("the spec should be refused")
}

fn step(key: &str, offset: i32) -> StepSpec {
    StepSpec {
        key: key.into(),
        offset_days: offset,
        audience: Audience::All,
        cc_manager: false,
        template: Template {
            subject: "Hello {{firstName}}".into(),
            body_markdown: "Please [register]({{enrolLink}}) before {{enforcementDate}}.".into(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// check

#[test]
fn the_campaign_clock_is_kept_at_its_edges_and_round_trips() {
    for m in [-12 * 60, -150, 0, 345, 14 * 60] {
        let mut s = spec();
        s.utc_offset_minutes = Some(m);
        let c = checked(&s);
        assert_eq!(c.utc_offset_minutes, m);
        let back = c.to_spec();
        assert_eq!(back.utc_offset_minutes, (m != 0).then_some(m));
        assert_eq!(checked(&back), c);
    }
    // A campaign stored before the clock existed reads as UTC.
    let mut old = serde_json::to_value(checked(&spec())).unwrap();
    old.as_object_mut().unwrap().remove("utcOffsetMinutes");
    let c: CheckedCampaign = serde_json::from_value(old).unwrap();
    assert_eq!(c.utc_offset_minutes, 0);
}

#[test]
fn a_good_campaign_checks() {
    let c = checked(&spec());
    assert_eq!(c.display_name, "Passkeys 2027");
    assert_eq!(c.description.as_deref(), Some("Passwordless for everyone"));
    assert_eq!(c.target_percent, DEFAULT_TARGET_PERCENT);
    let ids: Vec<Uuid> = c.waves.iter().map(|w| w.id).collect();
    assert_eq!(
        ids,
        vec![PILOT_WAVE, Uuid::from_u128(0x1000), Uuid::from_u128(0x1001)]
    );
    let targets: Vec<(f64, bool)> = c
        .waves
        .iter()
        .map(|w| (w.target_percent, w.inherits_target))
        .collect();
    assert_eq!(targets, vec![(100.0, false), (95.0, true), (95.0, true)]);
    assert_eq!(c.steps, preset_steps(Preset::Standard));
    assert_eq!(c.wave(PILOT_WAVE).map(|w| w.group_id), Some(PILOT_GROUP));
    assert_eq!(c.step("reminder").map(|s| s.offset_days), Some(7));
    assert!(c.step("nope").is_none());

    let mut s = spec();
    s.target_percent = Some(90.0);
    s.preset = Some(Preset::Extended);
    let c = checked(&s);
    assert_eq!(c.target_percent, 90.0);
    assert_eq!(c.waves[1].target_percent, 90.0);
    assert_eq!(c.steps, preset_steps(Preset::Extended));

    // An empty list of communications sends nothing.
    let mut s = spec();
    s.communications = Some(vec![]);
    assert!(checked(&s).steps.is_empty());
}

#[test]
fn to_spec_checks_back_into_the_same_campaign() {
    for preset in [None, Some(Preset::Extended)] {
        let mut s = spec();
        s.preset = preset;
        let c = checked(&s);
        let again = check(&c.to_spec(), &mut || panic!("every wave has its id")).unwrap();
        assert_eq!(again, c);
    }
}

type Mutation = fn(&mut CampaignSpec);

#[test]
fn each_refusal_names_its_field() {
    let cases: &[(Mutation, &str, &str)] = &[
        (
            |s| s.display_name = "  ".into(),
            "displayName",
            "1 to 128 characters, got 0",
        ),
        (
            |s| s.display_name = "a\nb".into(),
            "displayName",
            "one line",
        ),
        (
            |s| s.description = Some("x".repeat(MAX_DESCRIPTION_CHARS + 1)),
            "description",
            "at most 2048 characters, got 2049",
        ),
        (
            |s| s.target_percent = Some(0.0),
            "targetPercent",
            "above 0 and at most 100, got 0",
        ),
        (
            |s| s.target_percent = Some(100.5),
            "targetPercent",
            "got 100.5",
        ),
        (
            |s| s.target_percent = Some(f64::NAN),
            "targetPercent",
            "got NaN",
        ),
        (|s| s.target_percent = Some(-5.0), "targetPercent", "got -5"),
        (|s| s.waves.clear(), "waves", "at least one wave"),
        (
            |s| s.waves[1].display_name = "".into(),
            "waves[1].displayName",
            "1 to 128",
        ),
        (
            |s| s.waves[2].display_name = "it PILOT".into(),
            "waves[2].displayName",
            "'it PILOT' is already the name of waves[0]",
        ),
        (
            |s| s.waves[2].group_id = PILOT_GROUP,
            "waves[2].groupId",
            "already the group of waves[0]",
        ),
        (
            |s| s.waves[2].group_id = Uuid::nil(),
            "waves[2].groupId",
            "nil",
        ),
        (
            |s| s.waves[1].id = Some(PILOT_WAVE),
            "waves[1].id",
            "already the id of waves[0]",
        ),
        (|s| s.waves[1].id = Some(Uuid::nil()), "waves[1].id", "nil"),
        (
            |s| s.waves[1].ca_policy_id = Some(PILOT_POLICY),
            "waves[1].caPolicyId",
            "already enforces waves[0]",
        ),
        (
            |s| s.waves[1].ca_policy_id = Some(Uuid::nil()),
            "waves[1].caPolicyId",
            "nil",
        ),
        (
            |s| s.waves[0].target_percent = Some(0.0),
            "waves[0].targetPercent",
            "above 0",
        ),
        (
            |s| s.waves[1].enforcement_date = s.waves[1].registration_opens,
            "waves[1].enforcementDate",
            "must be after registrationOpens (2027-02-01T08:00:00Z), got 2027-02-01T08:00:00Z",
        ),
        (
            |s| s.waves[0].registration_opens = Timestamp(i64::MIN),
            "waves[0].registrationOpens",
            "between the years 0001 and 9999",
        ),
        (
            |s| s.waves[0].enforcement_date = Timestamp(i64::MAX),
            "waves[0].enforcementDate",
            "between the years 0001 and 9999",
        ),
        (
            |s| {
                s.communications = Some(vec![]);
                s.preset = Some(Preset::Standard)
            },
            "preset",
            "either communications or a preset",
        ),
        (
            |s| s.communications = Some(vec![step("a", 0), step("A", 1)]),
            "communications[1].key",
            "'A' is already the key of communications[0]",
        ),
        (
            |s| s.communications = Some(vec![step("", 0)]),
            "communications[0].key",
            "1 to 40 characters, got 0",
        ),
        (
            |s| s.communications = Some(vec![step("day of", 0)]),
            "communications[0].key",
            "found ' '",
        ),
        (
            |s| s.communications = Some(vec![step("é", 0)]),
            "communications[0].key",
            "found 'é'",
        ),
        (
            |s| s.communications = Some(vec![step("a", 366)]),
            "communications[0].offsetDays",
            "within 365 days of the enforcement date either way, got 366",
        ),
        (
            |s| s.communications = Some(vec![step("a", i32::MIN)]),
            "communications[0].offsetDays",
            "got -2147483648",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.template.subject = " ".into();
                s.communications = Some(vec![st])
            },
            "communications[0].template.subject",
            "1 to 200 characters, got 0",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.template.subject = "Hi\r\nBcc: x@evil.example".into();
                s.communications = Some(vec![st])
            },
            "communications[0].template.subject",
            "single line",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.template.subject = "Hi {{name}}".into();
                s.communications = Some(vec![st])
            },
            "communications[0].template.subject",
            "unknown variable {{name}}",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.template.body_markdown = "\n \n".into();
                s.communications = Some(vec![st])
            },
            "communications[0].template.bodyMarkdown",
            "must not be empty",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.template.body_markdown = "Hi {{firstName".into();
                s.communications = Some(vec![st])
            },
            "communications[0].template.bodyMarkdown",
            "never closed",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.template.body_markdown = "[a](javascript:alert(1)) [b](/x) [c](ftp://x)".into();
                s.communications = Some(vec![st])
            },
            "communications[0].template.bodyMarkdown",
            "link target 'javascript:alert(1)' is not http, https or mailto (and would render as plain text); 2 more like it",
        ),
        (
            |s| {
                let mut st = step("a", 0);
                st.cc_manager = true;
                s.communications = Some(vec![st])
            },
            "communications[0].ccManager",
            "set audience to notEnrolled",
        ),
        (
            |s| s.utc_offset_minutes = Some(14 * 60 + 15),
            "utcOffsetMinutes",
            "got 855",
        ),
        (
            |s| s.utc_offset_minutes = Some(-12 * 60 - 15),
            "utcOffsetMinutes",
            "from -720 (UTC-12:00) to 840",
        ),
        (
            |s| s.utc_offset_minutes = Some(50),
            "utcOffsetMinutes",
            "quarters of an hour",
        ),
    ];
    for (mutate, field, message) in cases {
        let mut s = spec();
        mutate(&mut s);
        let errs = errors(&s);
        assert!(
            errs.iter()
                .any(|e| e.field == *field && e.message.contains(message)),
            "{field}: want {message:?}, got {errs:?}"
        );
        assert_eq!(errs.len(), 1, "only the one refusal: {errs:?}");
    }
}

#[test]
fn every_refusal_is_reported_at_once() {
    let mut s = spec();
    s.display_name = String::new();
    s.waves[1].group_id = PILOT_GROUP;
    s.waves[2].registration_opens = s.waves[2].enforcement_date;
    s.communications = Some(vec![step("x", 400), step("x", 0)]);
    let fields: Vec<String> = errors(&s).into_iter().map(|e| e.field).collect();
    assert_eq!(
        fields,
        vec![
            "displayName",
            "waves[1].groupId",
            "waves[2].enforcementDate",
            "communications[0].offsetDays",
            "communications[1].key",
        ]
    );
    let e = FieldError {
        field: "waves[1].groupId".into(),
        message: "m".into(),
    };
    assert_eq!(e.to_string(), "waves[1].groupId: m");
}

#[test]
fn a_drawn_id_that_is_not_fresh_is_refused() {
    let mut s = spec();
    let errs = check(&s, &mut || PILOT_WAVE).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().all(|e| e.message.contains("not fresh")));
    s.waves.truncate(1);
    s.waves[0].id = None;
    assert!(check(&s, &mut Uuid::nil).is_err());
}

fn waves(n: usize) -> Vec<WaveSpec> {
    (0..n)
        .map(|i| {
            wave(
                &format!("Wave {i}"),
                Phase::Department,
                Uuid::from_u128(0x5000 + i as u128),
                "2027-01-01T00:00:00Z",
                "2027-02-01T00:00:00Z",
            )
        })
        .collect()
}

#[test]
fn limits_at_their_edges() {
    // N accepted, N + 1 refused.
    let mut s = spec();
    s.waves = waves(MAX_WAVES);
    assert_eq!(checked(&s).waves.len(), MAX_WAVES);
    s.waves = waves(MAX_WAVES + 1);
    assert_eq!(errors(&s)[0].to_string(), "waves: at most 50 waves, got 51");

    let steps = |n: usize| {
        (0..n)
            .map(|i| step(&format!("s{i}"), 0))
            .collect::<Vec<_>>()
    };
    let mut s = spec();
    s.communications = Some(steps(MAX_STEPS));
    assert_eq!(checked(&s).steps.len(), MAX_STEPS);
    s.communications = Some(steps(MAX_STEPS + 1));
    assert_eq!(
        errors(&s)[0].to_string(),
        "communications: at most 20 steps, got 21"
    );

    for (offset, ok) in [
        (MAX_OFFSET_DAYS, true),
        (-MAX_OFFSET_DAYS, true),
        (MAX_OFFSET_DAYS + 1, false),
        (-MAX_OFFSET_DAYS - 1, false),
    ] {
        let mut s = spec();
        s.communications = Some(vec![step("a", offset)]);
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "offset {offset}");
    }

    let name = |n: usize| "é".repeat(n);
    for (n, ok) in [(MAX_NAME_CHARS, true), (MAX_NAME_CHARS + 1, false)] {
        let mut s = spec();
        s.display_name = name(n);
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "campaign name {n}");
        let mut s = spec();
        s.waves[0].display_name = name(n);
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "wave name {n}");
    }

    for (n, ok) in [
        (MAX_DESCRIPTION_CHARS, true),
        (MAX_DESCRIPTION_CHARS + 1, false),
    ] {
        let mut s = spec();
        s.description = Some("d".repeat(n));
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "description {n}");
    }

    for (n, ok) in [(MAX_STEP_KEY_CHARS, true), (MAX_STEP_KEY_CHARS + 1, false)] {
        let mut s = spec();
        s.communications = Some(vec![step(&"k".repeat(n), 0)]);
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "key {n}");
    }

    for (n, ok) in [(MAX_SUBJECT_CHARS, true), (MAX_SUBJECT_CHARS + 1, false)] {
        let mut st = step("a", 0);
        st.template.subject = "s".repeat(n);
        let mut s = spec();
        s.communications = Some(vec![st]);
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "subject {n}");
    }

    for (n, ok) in [(MAX_TEMPLATE_BYTES, true), (MAX_TEMPLATE_BYTES + 1, false)] {
        let mut st = step("a", 0);
        st.template.body_markdown = "b".repeat(n);
        let mut s = spec();
        s.communications = Some(vec![st]);
        let r = check(&s, &mut ids());
        assert_eq!(r.is_ok(), ok, "body {n}");
        if !ok {
            assert_eq!(r.unwrap_err()[0].message, "at most 16384 bytes, got 16385");
        }
    }

    for (t, ok) in [
        (100.0, true),
        (0.01, true),
        (100.000_001, false),
        (0.0, false),
    ] {
        let mut s = spec();
        s.target_percent = Some(t);
        assert_eq!(check(&s, &mut ids()).is_ok(), ok, "target {t}");
    }
    assert_eq!(MAX_CAMPAIGNS, 100);
    assert_eq!(MAX_LATENESS_SECS, 2 * DAY);
}

#[test]
fn campaigns_read_and_write_the_api_json() {
    let json = r#"{
        "displayName": "Passkeys 2027",
        "waves": [{
            "displayName": "IT pilot",
            "phase": "earlyAdopters",
            "groupId": "00000000-0000-0000-0000-000000000010",
            "registrationOpens": "2027-01-04T09:00:00+01:00",
            "enforcementDate": "2027-02-01T08:00:00Z",
            "caPolicyId": "00000000-0000-0000-0000-000000000020",
            "targetPercent": 97.5
        }],
        "communications": [{
            "key": "reminder", "offsetDays": 7, "audience": "notEnrolled", "ccManager": true,
            "template": {"subject": "Reminder", "bodyMarkdown": "Please [enrol]({{enrolLink}})."}
        }],
        "targetPercent": 90
    }"#;
    let s: CampaignSpec = serde_json::from_str(json).unwrap();
    assert_eq!(s.waves[0].registration_opens, at("2027-01-04T08:00:00Z"));
    assert_eq!(s.waves[0].phase, Phase::EarlyAdopters);
    let c = checked(&s);
    assert_eq!(c.waves[0].target_percent, 97.5);
    assert_eq!(c.steps[0].audience, Audience::NotEnrolled);
    assert!(c.steps[0].cc_manager);

    // Written back: RFC 3339 in UTC, camelCase, absent options left out.
    let out = serde_json::to_value(c.to_spec()).unwrap();
    assert_eq!(out["waves"][0]["registrationOpens"], "2027-01-04T08:00:00Z");
    assert_eq!(
        out["waves"][0]["id"],
        "00000000-0000-0000-0000-000000001000"
    );
    assert!(out.get("preset").is_none() && out.get("description").is_none());
    let back: CampaignSpec = serde_json::from_value(out).unwrap();
    assert_eq!(checked(&back), c);
    let checked_json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        checked_json["waves"][0]["enforcementDate"],
        "2027-02-01T08:00:00Z"
    );
    assert_eq!(checked_json["waves"][0]["inheritsTarget"], false);
    let c2: CheckedCampaign = serde_json::from_value(checked_json).unwrap();
    assert_eq!(c2, c);

    // Defaults: audience all, no CC.
    let st: StepSpec = serde_json::from_str(
        r#"{"key":"a","offsetDays":-7,"template":{"subject":"s","bodyMarkdown":"b"}}"#,
    )
    .unwrap();
    assert_eq!((st.audience, st.cc_manager), (Audience::All, false));

    // Refusals the operator can act on.
    let bad_time = json.replace("2027-02-01T08:00:00Z", "1 February 2027");
    let e = serde_json::from_str::<CampaignSpec>(&bad_time)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'1 February 2027' is not an RFC 3339 time (e.g. 2027-03-01T09:00:00Z"),
        "{e}"
    );
    let unknown = json.replace("\"targetPercent\": 90", "\"target\": 90");
    let e = serde_json::from_str::<CampaignSpec>(&unknown)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `target`"), "{e}");
    let bad_phase = json.replace("earlyAdopters", "everyone");
    assert!(serde_json::from_str::<CampaignSpec>(&bad_phase).is_err());
}

#[test]
fn names_of_enums() {
    for p in Phase::ALL {
        assert_eq!(Phase::parse(p.as_str()), Some(p));
        assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        assert!(!p.label().is_empty());
    }
    assert_eq!(Phase::parse("Pilot"), None);
    for a in [Audience::All, Audience::NotEnrolled] {
        assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
    }
    for p in [Preset::Standard, Preset::Extended] {
        assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
    }
    for a in [
        Action::Confirm,
        Action::Enforce,
        Action::ForceEnforce,
        Action::RollBack,
    ] {
        assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
    }
}

proptest! {
    #[test]
    fn check_never_panics_and_keeps_its_invariants(
        name in "\\PC{0,140}",
        wave_names in prop::collection::vec("\\PC{0,20}", 1..6),
        groups in prop::collection::vec(0u128..4, 1..6),
        dates in prop::collection::vec((any::<i64>(), -400i64..400), 1..6),
        target in prop::option::of(-10.0f64..120.0),
        key in "[a-zA-Z0-9_ -]{0,45}",
        offset in any::<i32>(),
        subject in "\\PC{0,30}",
        body in "\\PC{0,200}",
    ) {
        let n = wave_names.len().min(groups.len()).min(dates.len());
        let mut s = spec();
        s.display_name = name;
        s.target_percent = target;
        s.waves = (0..n).map(|i| WaveSpec {
            id: None,
            display_name: wave_names[i].clone(),
            phase: Phase::Pilot,
            group_id: Uuid::from_u128(groups[i]),
            registration_opens: Timestamp(dates[i].0),
            enforcement_date: Timestamp(dates[i].0.saturating_add(dates[i].1 * DAY_MS)),
            ca_policy_id: None,
            target_percent: None,
        }).collect();
        s.communications = Some(vec![StepSpec {
            key,
            offset_days: offset,
            audience: Audience::NotEnrolled,
            cc_manager: true,
            template: Template { subject, body_markdown: body },
        }]);
        match check(&s, &mut ids()) {
            Ok(c) => {
                let wave_ids: BTreeSet<Uuid> = c.waves.iter().map(|w| w.id).collect();
                prop_assert_eq!(wave_ids.len(), c.waves.len());
                for w in &c.waves {
                    prop_assert!(w.target_percent > 0.0 && w.target_percent <= 100.0);
                    prop_assert!(w.registration_opens < w.enforcement_date);
                    prop_assert!(!w.display_name.is_empty());
                }
                prop_assert_eq!(check(&c.to_spec(), &mut ids()).unwrap(), c);
            }
            Err(errs) => {
                prop_assert!(!errs.is_empty());
                prop_assert!(errs.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Presets and messages

#[test]
fn presets_have_the_documented_cadence() {
    let shape = |p| {
        preset_steps(p)
            .into_iter()
            .map(|s| (s.key, s.offset_days, s.audience, s.cc_manager))
            .collect::<Vec<_>>()
    };
    use Audience::{All, NotEnrolled};
    assert_eq!(
        shape(Preset::Standard),
        vec![
            ("announcement".to_owned(), -7, All, false),
            ("dayOf".to_owned(), 0, All, false),
            ("reminder".to_owned(), 7, NotEnrolled, true),
        ]
    );
    let extended = shape(Preset::Extended);
    let offsets: Vec<i32> = extended.iter().map(|s| s.1).collect();
    assert_eq!(offsets, vec![-60, -45, -30, -15, -7, -1, 0, 7]);
    assert!(extended[..3].iter().all(|s| s.2 == All));
    assert!(extended[3..6].iter().all(|s| s.2 == NotEnrolled));
    assert_eq!(extended[7], ("reminder".to_owned(), 7, NotEnrolled, true));
    assert!(extended.iter().filter(|s| s.3).count() == 1);
}

fn context<'a>(display_name: &'a str, now: Timestamp) -> MessageContext<'a> {
    MessageContext {
        display_name,
        campaign_name: "Passkeys 2027",
        wave_name: "Finance",
        enforcement_date: at("2027-03-01T08:00:00Z"),
        now,
        utc_offset_minutes: 60,
        enrol_link: "https://id.example.com/enrol?c=1&w=2",
        helpdesk: "helpdesk@example.com or +1 555 0100",
    }
}

#[test]
fn every_preset_template_renders_every_variable() {
    let vars = template_variables(&context("Ada Lovelace", at("2027-02-22T08:00:00Z")));
    for p in [Preset::Standard, Preset::Extended] {
        for s in preset_steps(p) {
            let m = render_message(&s.template, &vars);
            for part in [&m.subject, &m.html, &m.text] {
                assert!(!part.contains("{{"), "{}: {part}", s.key);
            }
            assert!(
                m.html
                    .contains("<a href=\"https://id.example.com/enrol?c=1&amp;w=2\">"),
                "{}: {}",
                s.key,
                m.html
            );
            assert!(
                m.text.contains("(https://id.example.com/enrol?c=1&w=2)"),
                "{}: {}",
                s.key,
                m.text
            );
            assert!(m.text.starts_with("Hello Ada,"), "{}", m.text);
            assert!(
                m.html.contains("Monday 1 March 2027"),
                "{}: {}",
                s.key,
                m.html
            );
        }
    }
    let m = render_message(&preset_steps(Preset::Standard)[0].template, &vars);
    assert_eq!(
        m.subject,
        "Passkeys arrive on Monday 1 March 2027: set yours up now"
    );
}

#[test]
fn template_variables_for_one_recipient() {
    let v = template_variables(&context(
        " Lovelace, Ada  King ",
        at("2027-02-22T08:00:00.001Z"),
    ));
    let get = |k: &str| v.get(k).map(String::as_str);
    assert_eq!(get("displayName"), Some("Lovelace, Ada  King"));
    assert_eq!(get("firstName"), Some("Ada"));
    assert_eq!(get("enforcementDate"), Some("Monday 1 March 2027"));
    assert_eq!(get("daysLeft"), Some("7"));
    assert_eq!(get("campaignName"), Some("Passkeys 2027"));
    assert_eq!(get("waveName"), Some("Finance"));
    assert_eq!(get("helpdesk"), Some("helpdesk@example.com or +1 555 0100"));
    assert_eq!(v.len(), crate::markdown::KNOWN_VARIABLES.len());
    assert!(
        crate::markdown::KNOWN_VARIABLES
            .iter()
            .all(|k| v.contains_key(*k))
    );

    assert_eq!(first_name("Ada Lovelace"), "Ada");
    assert_eq!(first_name("Lovelace,"), "Lovelace,");
    assert_eq!(first_name(""), "");
    let enforce = at("2027-03-01T08:00:00Z");
    for (now, want) in [
        (enforce.minus_secs(7 * DAY), 7),
        (enforce.minus_secs(7 * DAY).plus_millis(1), 7),
        (enforce.minus_secs(6 * DAY), 6),
        (enforce.minus_secs(1), 1),
        (enforce, 0),
        (enforce.plus_secs(DAY), 0),
        (enforce.minus_secs(7 * DAY + 1), 8),
        (Timestamp(i64::MIN), (i64::MAX / DAY_MS) + 1),
    ] {
        assert_eq!(days_left(enforce, now), want, "{now:?}");
    }
}

#[test]
fn a_message_cannot_be_hijacked_by_its_values() {
    let t = Template {
        subject: "Hello {{displayName}}".into(),
        body_markdown: "Hello **{{displayName}}**, see [the page]({{enrolLink}}).".into(),
    };
    let evil = "<script>alert(1)</script>\r\nBcc: all@example.com [x](https://evil.example) https://evil.example";
    let vars = template_variables(&context(evil, at("2027-02-22T08:00:00Z")));
    let m = render_message(&t, &vars);
    assert_eq!(
        m.subject,
        "Hello <script>alert(1)</script> Bcc: all@example.com [x](https://evil.example) https://evil.example"
    );
    assert!(!m.subject.contains(['\r', '\n']));
    assert!(!m.html.contains("<script"));
    assert_eq!(m.html.matches("<a ").count(), 1, "{}", m.html);
    assert!(m.html.contains("<strong>&lt;script&gt;alert(1)&lt;/script&gt;  Bcc: all@example.com [x](https://evil.example) https://evil.example</strong>"), "{}", m.html);

    let long = "x".repeat(1000);
    let vars = template_variables(&context(&long, at("2027-02-22T08:00:00Z")));
    let m = render_message(&t, &vars);
    assert_eq!(m.subject.chars().count(), MAX_RENDERED_SUBJECT_CHARS);
    assert!(m.subject.ends_with('…'));
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

fn finance() -> CheckedWave {
    checked(&spec()).waves[1].clone()
}

#[test]
fn wave_phases_at_their_edges() {
    let w = finance();
    let not_enforced = WaveStatus::default();
    let cases = [
        (w.registration_opens.minus_secs(1), WavePhase::Scheduled),
        (w.registration_opens, WavePhase::Registering),
        (w.enforcement_date.plus_millis(-1), WavePhase::Registering),
        (w.enforcement_date, WavePhase::EnforcementDue),
        (
            w.enforcement_date.plus_secs(30 * DAY),
            WavePhase::EnforcementDue,
        ),
    ];
    for (now, want) in cases {
        assert_eq!(
            wave_phase_now(&w, &not_enforced, now),
            want,
            "{}",
            format_rfc3339(now)
        );
    }
    for (e, want) in [
        (Enforcement::Enforced, WavePhase::Enforced),
        (Enforcement::RolledBack, WavePhase::RolledBack),
    ] {
        let s = WaveStatus {
            enforcement: e,
            ..WaveStatus::default()
        };
        // Enforcement wins over dates, even before registration opened (a forced pilot).
        assert_eq!(
            wave_phase_now(&w, &s, w.registration_opens.minus_secs(1)),
            want
        );
        assert_eq!(serde_json::to_value(want).unwrap(), want.as_str());
    }
}

fn ready(members: u64, enrolled: u64) -> EnforceFacts {
    EnforceFacts {
        members,
        enrolled,
        confirmed: true,
        ca_policy_present: true,
        ca_policy_report_only: true,
        ca_policy_includes_group: true,
        ca_policy_requires_phishing_resistant: true,
        already_enforced: false,
        ca_gate_refusals: vec![],
    }
}

fn codes(v: &EnforceVerdict) -> Vec<&'static str> {
    v.refusals().iter().map(|r| r.code).collect()
}

#[test]
fn enforcement_needs_the_target_exactly() {
    assert_eq!(
        may_enforce(95.0, &ready(1000, 950)),
        EnforceVerdict::Allowed
    );
    let v = may_enforce(95.0, &ready(1000, 949));
    assert_eq!(codes(&v), vec!["enrolmentBelowTarget"]);
    assert_eq!(
        v.refusals()[0].message,
        "949 of 1000 members have a passkey (94.9 %); the target 95 % needs 950, 1 more"
    );
    // Targets are taken to 0.01 %, without float error at the edge.
    for (target, members, needed) in [
        (33.3, 1000, 333),
        (33.33, 3, 1),
        (66.67, 3, 3),
        (100.0, 7, 7),
        (0.01, 1, 1),
        (0.001, 1_000_000, 100),
        (95.0, u64::MAX, u64::MAX - u64::MAX / 20),
        (95.0, 1, 1),
        (50.0, 1, 1),
        (50.0, 2, 1),
    ] {
        assert_eq!(
            members_needed(target, members),
            Some(needed),
            "{target} of {members}"
        );
        assert!(may_enforce(target, &ready(members, needed)).is_allowed());
        assert_eq!(
            codes(&may_enforce(target, &ready(members, needed - 1))),
            vec!["enrolmentBelowTarget"],
            "{target} of {members}"
        );
    }
    assert_eq!(members_needed(f64::NAN, 10), None);
    assert_eq!(
        codes(&may_enforce(101.0, &ready(10, 10))),
        vec!["invalidTarget"]
    );
    assert_eq!(
        codes(&may_enforce(0.0, &ready(10, 10))),
        vec!["invalidTarget"]
    );
}

#[test]
fn every_unmet_condition_refuses() {
    let v = may_enforce(95.0, &ready(0, 0));
    assert_eq!(codes(&v), vec!["noMembers"]);
    assert!(v.refusals()[0].message.contains("no members"));

    let mut f = ready(10, 10);
    f.confirmed = false;
    f.ca_policy_report_only = false;
    f.ca_gate_refusals = vec!["report-only evidence covers 3.0 h; at least 48 h are needed".into()];
    let v = may_enforce(95.0, &f);
    assert_eq!(
        codes(&v),
        vec!["notConfirmed", "caPolicyNotReportOnly", "caGate"]
    );
    assert_eq!(v.refusals()[2].message, f.ca_gate_refusals[0]);

    // A policy for another group, or one that does not ask for passkeys, protects nobody
    // the wave enrolled.
    f.ca_gate_refusals.clear();
    f.ca_policy_report_only = true;
    f.ca_policy_includes_group = false;
    f.ca_policy_requires_phishing_resistant = false;
    assert_eq!(
        codes(&may_enforce(95.0, &f)),
        vec!["notConfirmed", "caPolicyOtherGroup", "caPolicyNotPasskeys"]
    );

    // Without a policy, only its absence is said (not what it would lack).
    f.ca_policy_present = false;
    assert_eq!(
        codes(&may_enforce(95.0, &f)),
        vec!["notConfirmed", "noCaPolicy"]
    );

    // A second click on an enforced wave is refused before anything else is looked at.
    let mut twice = ready(10, 10);
    twice.already_enforced = true;
    twice.ca_policy_report_only = false;
    assert_eq!(
        codes(&may_enforce(95.0, &twice)),
        vec!["alreadyEnforced", "caPolicyNotReportOnly"]
    );

    let json = serde_json::to_value(may_enforce(95.0, &f)).unwrap();
    assert_eq!(json["verdict"], "refused");
    assert_eq!(json["refusals"][1]["code"], "noCaPolicy");
    assert_eq!(
        serde_json::to_value(EnforceVerdict::Allowed).unwrap()["verdict"],
        "allowed"
    );
}

#[test]
fn transitions() {
    let t0 = at("2027-02-28T09:00:00Z");
    let s0 = WaveStatus::default();
    assert!(may_roll_back(&s0).unwrap_err().contains("not enforced"));
    assert!(roll_back(&s0, "admin@example.com", t0, None).is_err());

    let s1 = confirm(&s0, "admin@example.com", t0).unwrap();
    assert_eq!(s1.confirmed_by.as_deref(), Some("admin@example.com"));
    assert_eq!(s1.confirmed_at, Some(t0));
    assert_eq!(
        confirm(&s1, "other@example.com", t0).unwrap_err(),
        "the wave was already confirmed by admin@example.com at 2027-02-28T09:00:00Z"
    );

    // Refused without a reason, forced with one (which records what it overrode).
    let refused = may_enforce(95.0, &ready(10, 5));
    let err = enforce(&s1, &refused, "admin@example.com", t0, None).unwrap_err();
    assert!(err.contains("enrolmentBelowTarget: 5 of 10"), "{err}");
    assert!(enforce(&s1, &refused, "admin@example.com", t0, Some("  ")).is_err());
    let forced = enforce(&s1, &refused, "admin@example.com", t0, Some("CEO asked")).unwrap();
    let last = forced.history.last().unwrap();
    assert_eq!(last.action, "forceEnforce");
    assert_eq!(
        last.detail.as_deref(),
        Some("CEO asked (overrode: enrolmentBelowTarget)")
    );

    let t1 = t0.plus_secs(3600);
    let s2 = enforce(&s1, &EnforceVerdict::Allowed, "admin@example.com", t1, None).unwrap();
    assert_eq!(s2.enforcement, Enforcement::Enforced);
    assert!(
        enforce(&s2, &EnforceVerdict::Allowed, "a", t1, None)
            .unwrap_err()
            .contains("already enforced")
    );
    assert!(
        confirm(&s2, "a", t1)
            .unwrap_err()
            .contains("already enforced")
    );
    assert_eq!(may_roll_back(&s2), Ok(()));

    let s3 = roll_back(
        &s2,
        "admin@example.com",
        t1.plus_secs(60),
        Some("helpdesk overwhelmed"),
    )
    .unwrap();
    assert_eq!(s3.enforcement, Enforcement::RolledBack);
    assert_eq!((s3.confirmed_by.clone(), s3.confirmed_at), (None, None));
    assert!(
        may_roll_back(&s3)
            .unwrap_err()
            .contains("already rolled back")
    );
    let actions: Vec<&str> = s3.history.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(actions, vec!["confirm", "enforce", "rollBack"]);

    // Again after a rollback: confirm, then enforce.
    let s4 = confirm(&s3, "admin@example.com", t1.plus_secs(120)).unwrap();
    let s5 = enforce(
        &s4,
        &EnforceVerdict::Allowed,
        "admin@example.com",
        t1.plus_secs(180),
        None,
    )
    .unwrap();
    assert_eq!(s5.enforcement, Enforcement::Enforced);

    // Stored as JSON with RFC 3339 times, read back the same.
    let json = serde_json::to_value(&s5).unwrap();
    assert_eq!(json["history"][0]["at"], "2027-02-28T09:00:00Z");
    assert_eq!(json["confirmedAt"], "2027-02-28T10:02:00Z");
    assert_eq!(serde_json::from_value::<WaveStatus>(json).unwrap(), s5);
    let minimal: WaveStatus = serde_json::from_str(r#"{"enforcement":"notEnforced"}"#).unwrap();
    assert_eq!(minimal, WaveStatus::default());
}

#[test]
fn history_and_details_are_bounded() {
    let mut s = WaveStatus::default();
    for i in 0..(MAX_HISTORY as i64 + 5) {
        s = confirm(&s, "a", Timestamp::from_secs(i)).unwrap();
        s = enforce(
            &s,
            &EnforceVerdict::Allowed,
            "a",
            Timestamp::from_secs(i),
            None,
        )
        .unwrap();
        s = roll_back(&s, "a", Timestamp::from_secs(i), Some(&"r".repeat(5000))).unwrap();
    }
    assert_eq!(s.history.len(), MAX_HISTORY);
    assert_eq!(
        s.history.last().unwrap().at,
        Timestamp::from_secs(MAX_HISTORY as i64 + 4)
    );
    assert_eq!(
        s.history
            .last()
            .unwrap()
            .detail
            .as_ref()
            .unwrap()
            .chars()
            .count(),
        MAX_DETAIL_CHARS
    );
}

// ---------------------------------------------------------------------------------------------
// Schedule

fn states(entries: &[(Uuid, String, StepState)], wave: Uuid) -> Vec<(String, &'static str)> {
    entries
        .iter()
        .filter(|(w, _, _)| *w == wave)
        .map(|(_, k, s)| {
            let name = match s {
                StepState::NotYet { .. } => "notYet",
                StepState::Due(_) => "due",
                StepState::Missed { .. } => "missed",
                StepState::Stopped { .. } => "stopped",
                StepState::Done { .. } => "done",
            };
            (k.clone(), name)
        })
        .collect()
}

#[test]
fn steps_fall_due_at_their_offsets() {
    let c = checked(&spec());
    let none = BTreeMap::new();
    let decided = BTreeSet::new();
    let pilot_enforce = c.waves[0].enforcement_date;
    let announce = pilot_enforce.minus_secs(7 * DAY);
    let late = MAX_LATENESS_SECS;
    let cases = [
        (
            announce.plus_millis(-1),
            [
                ("announcement", "notYet"),
                ("dayOf", "notYet"),
                ("reminder", "notYet"),
            ],
        ),
        (
            announce,
            [
                ("announcement", "due"),
                ("dayOf", "notYet"),
                ("reminder", "notYet"),
            ],
        ),
        (
            announce.plus_secs(late),
            [
                ("announcement", "due"),
                ("dayOf", "notYet"),
                ("reminder", "notYet"),
            ],
        ),
        (
            announce.plus_secs(late).plus_millis(1),
            [
                ("announcement", "missed"),
                ("dayOf", "notYet"),
                ("reminder", "notYet"),
            ],
        ),
        (
            pilot_enforce,
            [
                ("announcement", "missed"),
                ("dayOf", "due"),
                ("reminder", "notYet"),
            ],
        ),
        (
            pilot_enforce.plus_secs(7 * DAY),
            [
                ("announcement", "missed"),
                ("dayOf", "missed"),
                ("reminder", "due"),
            ],
        ),
    ];
    for (now, want) in cases {
        let got = states(&schedule(CAMPAIGN, &c, &none, &decided, now), PILOT_WAVE);
        let want: Vec<(String, &str)> = want.iter().map(|(k, s)| ((*k).to_owned(), *s)).collect();
        assert_eq!(got, want, "at {}", format_rfc3339(now));
    }

    let due = due_steps(CAMPAIGN, &c, &none, &decided, announce);
    assert_eq!(
        due,
        vec![DueStep {
            wave_id: PILOT_WAVE,
            step_key: "announcement".into(),
            due_at: announce,
            decision_key: format!("campaign:{CAMPAIGN}:wave:{PILOT_WAVE}:step:announcement"),
        }]
    );
    assert_eq!(
        decision_key(CAMPAIGN, PILOT_WAVE, "dayOf"),
        "campaign:00000000-0000-0000-0000-0000000000c0:wave:00000000-0000-0000-0000-000000000030:step:dayOf"
    );
}

#[test]
fn decided_steps_are_done_and_rolled_back_waves_stop() {
    let c = checked(&spec());
    let now = c.waves[0].enforcement_date;
    let decided: BTreeSet<String> = [decision_key(CAMPAIGN, PILOT_WAVE, "dayOf")]
        .into_iter()
        .collect();
    let mut statuses = BTreeMap::new();
    let got = schedule(CAMPAIGN, &c, &statuses, &decided, now);
    assert_eq!(states(&got, PILOT_WAVE)[1], ("dayOf".to_owned(), "done"));

    statuses.insert(
        PILOT_WAVE,
        WaveStatus {
            enforcement: Enforcement::RolledBack,
            ..WaveStatus::default()
        },
    );
    let got = states(
        &schedule(CAMPAIGN, &c, &statuses, &decided, now.plus_secs(7 * DAY)),
        PILOT_WAVE,
    );
    assert_eq!(
        got,
        vec![
            ("announcement".to_owned(), "stopped"),
            ("dayOf".to_owned(), "done"),
            ("reminder".to_owned(), "stopped"),
        ]
    );
    // An enforced wave still reminds its stragglers.
    statuses.insert(
        PILOT_WAVE,
        WaveStatus {
            enforcement: Enforcement::Enforced,
            ..WaveStatus::default()
        },
    );
    let got = states(
        &schedule(CAMPAIGN, &c, &statuses, &decided, now.plus_secs(7 * DAY)),
        PILOT_WAVE,
    );
    assert_eq!(got[2], ("reminder".to_owned(), "due"));
}

#[test]
fn the_schedule_is_ordered_by_due_time() {
    let c = checked(&spec());
    let all = schedule(
        CAMPAIGN,
        &c,
        &BTreeMap::new(),
        &BTreeSet::new(),
        Timestamp(0),
    );
    assert_eq!(all.len(), c.waves.len() * c.steps.len());
    let due: Vec<Timestamp> = all
        .iter()
        .map(|(w, k, _)| c.wave(*w).unwrap().due_at(c.step(k).unwrap()))
        .collect();
    assert!(due.windows(2).all(|p| p[0] <= p[1]));
    let json = serde_json::to_value(&all[0].2).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"state": "notYet", "dueAt": "2027-01-25T08:00:00Z"})
    );
    let due_json = serde_json::to_value(StepState::Due(DueStep {
        wave_id: PILOT_WAVE,
        step_key: "dayOf".into(),
        due_at: Timestamp(0),
        decision_key: "k".into(),
    }))
    .unwrap();
    assert_eq!(due_json["state"], "due");
    assert_eq!(due_json["decisionKey"], "k");
    assert_eq!(serde_json::from_value::<StepState>(json).unwrap(), all[0].2);
}

// ---------------------------------------------------------------------------------------------
// Audience

fn member(
    n: u128,
    mail: Option<&str>,
    enrolled: bool,
    manager: Option<&str>,
    enabled: bool,
) -> MemberFacts {
    MemberFacts {
        user_id: Uuid::from_u128(n),
        display_name: format!("User {n}"),
        mail: mail.map(str::to_owned),
        enrolled,
        manager_mail: manager.map(str::to_owned),
        account_enabled: enabled,
    }
}

#[test]
fn audiences_and_manager_cc() {
    let members = vec![
        member(
            1,
            Some("ada@example.com"),
            false,
            Some("boss@example.com"),
            true,
        ),
        member(
            2,
            Some("bob@example.com"),
            true,
            Some("boss@example.com"),
            true,
        ),
        member(3, None, false, Some("boss@example.com"), true),
        member(4, Some("dis@example.com"), false, None, false),
        member(
            5,
            Some(" eve@example.com "),
            false,
            Some("EVE@example.com"),
            true,
        ),
        member(
            6,
            Some("bad@example.com\r\nBcc: x@evil.example"),
            false,
            None,
            true,
        ),
        member(
            7,
            Some("fay@example.com"),
            false,
            Some("not an address"),
            true,
        ),
        member(8, Some("  "), false, None, true),
        member(1, Some("ada-again@example.com"), false, None, true),
    ];
    let mut reminder = preset_steps(Preset::Standard)[2].clone();
    let r = audience(&reminder, &members);
    let to: Vec<(u128, &str, Vec<String>)> = r
        .recipients
        .iter()
        .map(|x| (x.user_id.as_u128(), x.to.as_str(), x.cc.clone()))
        .collect();
    assert_eq!(
        to,
        vec![
            (1, "ada@example.com", vec!["boss@example.com".to_owned()]),
            (5, "eve@example.com", vec![]),
            (7, "fay@example.com", vec![]),
        ]
    );
    let skipped: Vec<(u128, &str)> = r
        .skipped
        .iter()
        .map(|(u, why)| (u.as_u128(), why.as_str()))
        .collect();
    assert_eq!(
        skipped,
        vec![
            (2, "enrolled"),
            (3, "noMail"),
            (4, "disabled"),
            (6, "invalidMail"),
            (8, "noMail")
        ]
    );
    assert_eq!(
        serde_json::to_value(r.skipped[0]).unwrap(),
        serde_json::json!(["00000000-0000-0000-0000-000000000002", "enrolled"])
    );

    // Audience all: the enrolled get it too; no CC unless the step asks.
    let r = audience(&preset_steps(Preset::Standard)[0], &members);
    assert_eq!(r.recipients.len(), 4);
    assert!(r.recipients.iter().all(|x| x.cc.is_empty()));
    reminder.audience = Audience::All;
    let r = audience(&reminder, &members);
    let bob = r
        .recipients
        .iter()
        .find(|x| x.user_id.as_u128() == 2)
        .unwrap();
    assert_eq!(bob.cc, vec!["boss@example.com".to_owned()]);
    assert_eq!(audience(&reminder, &[]), AudienceResult::default());
}

#[test]
fn plausible_mail_addresses() {
    for ok in [
        "a@b",
        "ada.lovelace+tag@mail.example.com",
        "x@xn--bcher-kva.example",
        "o'neil@example.com",
    ] {
        assert!(plausible_mail(ok), "{ok}");
    }
    let long_local = format!("{}@example.com", "l".repeat(MAX_MAIL_LOCAL_BYTES));
    assert!(plausible_mail(&long_local));
    assert!(!plausible_mail(&format!("l{long_local}")));
    let long = format!("a@{}.com", "d".repeat(MAX_MAIL_BYTES - 6));
    assert_eq!(long.len(), MAX_MAIL_BYTES);
    assert!(plausible_mail(&long));
    assert!(!plausible_mail(&format!("a{long}")));
    for bad in [
        "",
        "@",
        "a@",
        "@b",
        "a@@b",
        "a@b@c",
        "a b@c",
        "a@b\r\nBcc: c@d",
        "<a@b>",
        "a@b,c@d",
        "a@b;c@d",
        "\"a\"@b",
        "a@.b",
        "a@b.",
        "a@-b.c",
        "a@b..c",
        "a@[1.2.3.4]",
        "a\\@b",
    ] {
        assert!(!plausible_mail(bad), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Progress

const IPHONE: DeviceFamily = DeviceFamily::IPhone;
const SAMSUNG: DeviceFamily = DeviceFamily::Android(AndroidMaker::Samsung);
const KEY: DeviceFamily = DeviceFamily::SecurityKey;

fn pk(user: u128, created: Timestamp, family: DeviceFamily) -> PasskeyFact {
    PasskeyFact {
        user_id: Uuid::from_u128(user),
        created_at: created,
        device_family: family,
    }
}

#[test]
fn progress_of_a_small_wave() {
    let d0 = at("2027-02-01T00:00:00Z");
    let members: Vec<Uuid> = [1u128, 2, 3, 4, 2]
        .into_iter()
        .map(Uuid::from_u128)
        .collect();
    let passkeys = vec![
        pk(1, d0.plus_secs(10), IPHONE),
        pk(1, d0.plus_secs(DAY + 5), KEY),
        pk(2, d0.plus_secs(DAY - 1).plus_millis(999), SAMSUNG),
        pk(2, d0.plus_secs(3 * DAY), SAMSUNG),
        pk(2, d0.plus_secs(3 * DAY), IPHONE),
        pk(9, d0, IPHONE), // not a member
    ];
    let now = d0.plus_secs(3 * DAY + 3600);
    let p = progress(&members, &passkeys, d0.plus_secs(3600), now);
    assert_eq!((p.members, p.enrolled, p.two_or_more), (4, 2, 2));
    assert_eq!(p.enrolled_percent, 50.0);
    assert_eq!(p.stragglers, vec![Uuid::from_u128(3), Uuid::from_u128(4)]);
    assert_eq!(p.by_family.len(), DeviceFamily::ALL.len());
    assert_eq!(
        p.by_family["iPhone"],
        FamilyCount {
            users: 2,
            passkeys: 2
        }
    );
    assert_eq!(
        p.by_family["androidSamsung"],
        FamilyCount {
            users: 1,
            passkeys: 2
        }
    );
    assert_eq!(
        p.by_family["securityKey"],
        FamilyCount {
            users: 1,
            passkeys: 1
        }
    );
    assert_eq!(p.by_family["windows"], FamilyCount::default());
    let series: Vec<(String, u64, u64)> = p
        .series
        .iter()
        .map(|d| (format_rfc3339(d.day_start), d.enrolled, d.two_or_more))
        .collect();
    assert_eq!(
        series,
        vec![
            ("2027-02-01T00:00:00Z".to_owned(), 2, 0),
            ("2027-02-02T00:00:00Z".to_owned(), 2, 1),
            ("2027-02-03T00:00:00Z".to_owned(), 2, 1),
            ("2027-02-04T00:00:00Z".to_owned(), 2, 2),
        ]
    );
    // By family over time: member 1's iPhone on day 1, key on day 2; member 2's Samsung on
    // day 1 and iPhone on day 4. Families nobody has are left out.
    let by_day: Vec<Vec<(&str, u64)>> = p
        .series
        .iter()
        .map(|d| d.by_family.iter().map(|(f, n)| (*f, *n)).collect())
        .collect();
    assert_eq!(
        by_day,
        vec![
            vec![("androidSamsung", 1), ("iPhone", 1), ("securityKey", 0)],
            vec![("androidSamsung", 1), ("iPhone", 1), ("securityKey", 1)],
            vec![("androidSamsung", 1), ("iPhone", 1), ("securityKey", 1)],
            vec![("androidSamsung", 1), ("iPhone", 2), ("securityKey", 1)],
        ]
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["series"][0]["dayStart"], "2027-02-01T00:00:00Z");
    assert_eq!(json["series"][3]["byFamily"]["iPhone"], 2);
    assert_eq!(json["byFamily"]["iPhone"]["users"], 2);
}

#[test]
fn progress_edges() {
    let d0 = at("2027-02-01T00:00:00Z");
    let p = progress(&[], &[pk(1, d0, IPHONE)], d0, d0);
    assert_eq!((p.members, p.enrolled, p.enrolled_percent), (0, 0, 0.0));
    assert_eq!(p.series.len(), 1);

    // `series_from` after `now`: just today.
    let p = progress(&[Uuid::from_u128(1)], &[], d0.plus_secs(10 * DAY), d0);
    assert_eq!(p.series.len(), 1);
    assert_eq!(p.series[0].day_start, d0);

    // A long range keeps its last MAX_SERIES_DAYS days.
    let now = d0.plus_secs(1000 * DAY);
    let p = progress(&[Uuid::from_u128(1)], &[], d0, now);
    assert_eq!(p.series.len(), MAX_SERIES_DAYS);
    assert_eq!(p.series.last().unwrap().day_start, now);
    assert_eq!(
        p.series[0].day_start,
        now.minus_secs((MAX_SERIES_DAYS as i64 - 1) * DAY)
    );
    let p = progress(
        &[],
        &[],
        d0.plus_secs(-(MAX_SERIES_DAYS as i64 - 1) * DAY),
        d0,
    );
    assert_eq!(p.series.len(), MAX_SERIES_DAYS);
    let p = progress(
        &[],
        &[],
        d0.plus_secs(-(MAX_SERIES_DAYS as i64 - 2) * DAY),
        d0,
    );
    assert_eq!(p.series.len(), MAX_SERIES_DAYS - 1);

    // Extreme times do not panic.
    let p = progress(
        &[Uuid::from_u128(1)],
        &[pk(1, Timestamp(i64::MAX), KEY)],
        Timestamp(i64::MIN),
        Timestamp(i64::MAX),
    );
    assert_eq!(p.series.len(), MAX_SERIES_DAYS);
    assert_eq!(p.enrolled, 1);
}

fn family(i: u8) -> DeviceFamily {
    DeviceFamily::ALL[usize::from(i) % DeviceFamily::ALL.len()]
}

proptest! {
    #[test]
    fn progress_agrees_with_a_naive_count(
        members in prop::collection::vec(0u128..40, 0..40),
        passkeys in prop::collection::vec((0u128..50, 0i64..(20 * DAY_MS), any::<u8>()), 0..120),
        from_day in -3i64..25,
        now_ms in 0i64..(25 * DAY_MS),
    ) {
        let d0 = at("2027-01-01T00:00:00Z");
        let members: Vec<Uuid> = members.into_iter().map(Uuid::from_u128).collect();
        let facts: Vec<PasskeyFact> = passkeys
            .iter()
            .map(|&(u, t, f)| pk(u, d0.plus_millis(t), family(f)))
            .collect();
        let now = d0.plus_millis(now_ms);
        let p = progress(&members, &facts, d0.plus_secs(from_day * DAY), now);

        let set: BTreeSet<Uuid> = members.iter().copied().collect();
        let mine: Vec<&PasskeyFact> = facts.iter().filter(|f| set.contains(&f.user_id)).collect();
        let count_of = |u: &Uuid| mine.iter().filter(|f| f.user_id == *u).count();
        prop_assert_eq!(p.members, set.len() as u64);
        prop_assert_eq!(p.enrolled, set.iter().filter(|u| count_of(u) >= 1).count() as u64);
        prop_assert_eq!(p.two_or_more, set.iter().filter(|u| count_of(u) >= 2).count() as u64);
        let stragglers: Vec<Uuid> = set.iter().filter(|u| count_of(u) == 0).copied().collect();
        prop_assert_eq!(&p.stragglers, &stragglers);
        for f in DeviceFamily::ALL {
            let of: Vec<&&PasskeyFact> = mine.iter().filter(|x| x.device_family == f).collect();
            let users: BTreeSet<Uuid> = of.iter().map(|x| x.user_id).collect();
            prop_assert_eq!(
                p.by_family[f.as_str()],
                FamilyCount { users: users.len() as u64, passkeys: of.len() as u64 }
            );
        }
        prop_assert_eq!(p.series.last().map(|d| d.day_start), Some(super::when::utc_day_start(now)));
        for d in &p.series {
            let end = d.day_start.plus_millis(DAY_MS);
            let by_end = |u: &Uuid| mine.iter().filter(|f| f.user_id == *u && f.created_at < end).count();
            prop_assert_eq!(d.enrolled, set.iter().filter(|u| by_end(u) >= 1).count() as u64);
            prop_assert_eq!(d.two_or_more, set.iter().filter(|u| by_end(u) >= 2).count() as u64);
            for f in DeviceFamily::ALL {
                let users: BTreeSet<Uuid> = mine
                    .iter()
                    .filter(|x| x.device_family == f && x.created_at < end)
                    .map(|x| x.user_id)
                    .collect();
                let ever = mine.iter().any(|x| x.device_family == f);
                prop_assert_eq!(d.by_family.get(f.as_str()).copied(), ever.then_some(users.len() as u64));
            }
        }
        prop_assert!(p.series.windows(2).all(|w| w[1].day_start.millis() - w[0].day_start.millis() == DAY_MS));
    }
}

#[test]
fn progress_of_a_thousand_users_matches_a_direct_count() {
    // A generated population: user i has i % 3 passkeys, on families cycling through ALL.
    let d0 = at("2027-02-01T00:00:00Z");
    let members: Vec<Uuid> = (0..1000u128).map(Uuid::from_u128).collect();
    let mut facts = Vec::new();
    for i in 0..1000u128 {
        for k in 0..(i % 3) {
            facts.push(pk(
                i,
                d0.plus_secs((i as i64 % 10) * DAY + k as i64),
                family((i + k) as u8),
            ));
        }
    }
    let p = progress(&members, &facts, d0, d0.plus_secs(9 * DAY));
    assert_eq!(p.enrolled, 666);
    assert_eq!(p.two_or_more, 333);
    assert_eq!(p.stragglers.len(), 334);
    assert_eq!(
        p.by_family.values().map(|f| f.passkeys).sum::<u64>(),
        facts.len() as u64
    );
    assert_eq!(p.series.len(), 10);
    assert_eq!(p.series.last().map(|d| d.enrolled), Some(666));
}

// ---------------------------------------------------------------------------------------------
// Prerequisites

fn good_facts() -> PrereqFacts {
    PrereqFacts {
        passkeys_enabled_for_group: true,
        tap_enabled_for_group: true,
        break_glass_enabled: 2,
        break_glass_drilled_90d: 2,
        ca_policy: Some(CaFacts {
            exists: true,
            state: "enabledForReportingButNotEnforced".into(),
            includes_group: true,
            requires_phishing_resistant: true,
        }),
    }
}

fn verdicts(f: &PrereqFacts) -> Vec<(&'static str, bool)> {
    prerequisites(f)
        .into_iter()
        .map(|c| (c.key, c.ok))
        .collect()
}

#[test]
fn the_checklist() {
    let all_ok = vec![
        ("methodsPolicy", true),
        ("tapPolicy", true),
        ("breakGlass", true),
        ("caPolicy", true),
    ];
    assert_eq!(verdicts(&good_facts()), all_ok);
    let mut enabled = good_facts();
    if let Some(ca) = &mut enabled.ca_policy {
        ca.state = "enabled".into();
    }
    assert_eq!(verdicts(&enabled), all_ok);

    type Change = fn(&mut PrereqFacts);
    let cases: &[(Change, &str, &str)] = &[
        (
            |f| f.passkeys_enabled_for_group = false,
            "methodsPolicy",
            "Enable the passkey (FIDO2) method",
        ),
        (
            |f| f.tap_enabled_for_group = false,
            "tapPolicy",
            "Enable the Temporary Access Pass method",
        ),
        (
            |f| f.break_glass_enabled = 1,
            "breakGlass",
            "1 enabled break-glass account(s): create and enable at least 2",
        ),
        (
            |f| f.break_glass_drilled_90d = 1,
            "breakGlass",
            "1 of 2 enabled break-glass accounts signed in within the last 90 days",
        ),
        (
            |f| f.ca_policy = None,
            "caPolicy",
            "names no Conditional Access policy",
        ),
        (
            |f| {
                if let Some(c) = &mut f.ca_policy {
                    c.exists = false
                }
            },
            "caPolicy",
            "no longer exists",
        ),
        (
            |f| {
                if let Some(c) = &mut f.ca_policy {
                    c.includes_group = false
                }
            },
            "caPolicy",
            "include the wave's group",
        ),
        (
            |f| {
                if let Some(c) = &mut f.ca_policy {
                    c.requires_phishing_resistant = false
                }
            },
            "caPolicy",
            "phishing-resistant MFA authentication strength",
        ),
        (
            |f| {
                if let Some(c) = &mut f.ca_policy {
                    c.state = "disabled".into()
                }
            },
            "caPolicy",
            "set it to report-only",
        ),
        (
            |f| {
                if let Some(c) = &mut f.ca_policy {
                    c.state = "".into()
                }
            },
            "caPolicy",
            "its state '' is unknown",
        ),
    ];
    for (change, key, detail) in cases {
        let mut f = good_facts();
        change(&mut f);
        let checks = prerequisites(&f);
        let failing: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
        assert_eq!(failing.len(), 1, "{key}: {checks:?}");
        assert_eq!(failing[0].key, *key);
        assert!(
            failing[0].detail.contains(detail),
            "{key}: {}",
            failing[0].detail
        );
    }
    let mut f = good_facts();
    f.break_glass_enabled = 5;
    f.break_glass_drilled_90d = 2;
    assert!(prerequisites(&f)[2].ok);
    let json = serde_json::to_value(&prerequisites(&good_facts())[0]).unwrap();
    assert_eq!(json["key"], "methodsPolicy");
    assert_eq!(json["ok"], true);
}
