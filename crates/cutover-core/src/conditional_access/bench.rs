//! Deterministic inputs for the evaluation benchmark: a seeded mix of policies (groups drawn
//! partly from the user's own, named locations with hundreds of ranges, every kind of grant)
//! and one sign-in by a user in many groups. The core draws no randomness of its own, so a
//! tiny xorshift generator stands in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use uuid::Uuid;

use super::engine::{RegisteredMethods, SignInFactsOwned};
use super::policy::{
    ApplicationConditions, AuthenticationStrengthRef, CheckedPolicy, ConditionalAccessPolicy,
    Conditions, FrequencyUnit, GrantControls, GrantOperator, LocationConditions, NamedLocation,
    NamedLocations, PlatformConditions, PolicyContext, PolicyState, SessionControls,
    SignInFrequency, UserConditions,
};
use crate::strength::{CustomStrength, MethodKind, UsedMethod};
use crate::{ClientAppType, Timestamp};

/// xorshift64* (Vigna): small, fast and good enough to shape benchmark inputs.
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    pub fn new(seed: u64) -> Self {
        // Zero is the generator's one fixed point.
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn uuid(&mut self) -> Uuid {
        Uuid::from_u128((u128::from(self.next_u64()) << 64) | u128::from(self.next_u64()))
    }
}

/// The sign-in time of the benchmark (any fixed instant).
const BENCH_NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

/// `policies` checked policies and a sign-in by a user in `groups` groups, the same for the
/// same `seed`.
pub fn bench_inputs(
    policies: usize,
    groups: usize,
    seed: u64,
) -> (Vec<CheckedPolicy>, SignInFactsOwned) {
    let mut rng = XorShift64::new(seed);
    let user_groups: Vec<Uuid> = (0..groups).map(|_| rng.uuid()).collect();
    let apps: Vec<Uuid> = (0..20).map(|_| rng.uuid()).collect();
    let ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let raw_locations: Vec<NamedLocation> = (0..6)
        .map(|i| {
            let mut ranges: Vec<String> = (0..300)
                .map(|_| {
                    let a = rng.next_u64();
                    format!(
                        "{}.{}.{}.0/24",
                        11 + a % 200,
                        (a >> 8) % 256,
                        (a >> 16) % 256
                    )
                })
                .collect();
            ranges.extend((0..20).map(|j| format!("2001:db8:{i:x}:{j:x}::/64")));
            if i == 0 {
                ranges.push("10.1.2.0/24".into());
            }
            NamedLocation {
                id: rng.uuid(),
                display_name: format!("Location {i}"),
                ip_ranges: ranges,
                is_trusted: i < 2,
            }
        })
        .collect();
    let locations = NamedLocations::check(&raw_locations).expect("generated locations check");
    let password_and_totp = rng.uuid();
    let security_key = rng.uuid();
    let strengths = BTreeMap::from([
        (
            password_and_totp,
            CustomStrength {
                name: "Password and TOTP".into(),
                combinations: vec![BTreeSet::from([MethodKind::Password, MethodKind::Totp])],
                allowed_aaguids: None,
            },
        ),
        (
            security_key,
            CustomStrength {
                name: "Security key".into(),
                combinations: vec![BTreeSet::from([MethodKind::Passkey])],
                allowed_aaguids: Some(BTreeSet::from([rng.uuid()])),
            },
        ),
    ]);
    let ctx = PolicyContext {
        locations: &locations,
        custom_strengths: &strengths,
    };
    let pick_group = |rng: &mut XorShift64, own_one_in: u64| {
        if !user_groups.is_empty() && rng.below(own_one_in) == 0 {
            user_groups[rng.below(user_groups.len() as u64) as usize].to_string()
        } else {
            rng.uuid().to_string()
        }
    };
    let checked = (0..policies)
        .map(|i| {
            let state = match rng.below(20) {
                0 => PolicyState::Disabled,
                1..=5 => PolicyState::EnabledForReportingButNotEnforced,
                _ => PolicyState::Enabled,
            };
            let mut users = UserConditions::default();
            if rng.below(5) == 0 {
                users.include_users = vec!["All".into()];
            } else {
                users.include_groups = (0..1 + rng.below(20))
                    .map(|_| pick_group(&mut rng, 4))
                    .collect();
            }
            users.exclude_groups = (0..rng.below(4))
                .map(|_| pick_group(&mut rng, 50))
                .collect();
            let include_applications = if rng.below(2) == 0 {
                vec!["All".into()]
            } else {
                (0..1 + rng.below(5))
                    .map(|_| apps[rng.below(apps.len() as u64) as usize].to_string())
                    .collect()
            };
            let client_app_types = match rng.below(10) {
                0..=6 => vec!["all".into()],
                7 => vec!["exchangeActiveSync".into(), "other".into()],
                _ => vec!["browser".into(), "mobileAppsAndDesktopClients".into()],
            };
            let locations = match rng.below(10) {
                0..=2 => Some(LocationConditions {
                    include_locations: vec!["All".into()],
                    exclude_locations: vec!["AllTrusted".into()],
                }),
                3 | 4 => Some(LocationConditions {
                    include_locations: vec![
                        raw_locations[rng.below(raw_locations.len() as u64) as usize]
                            .id
                            .to_string(),
                    ],
                    exclude_locations: vec![],
                }),
                _ => None,
            };
            let platforms = match rng.below(10) {
                0 | 1 => Some(PlatformConditions {
                    include_platforms: vec!["all".into()],
                    exclude_platforms: vec!["linux".into()],
                }),
                2 => Some(PlatformConditions {
                    include_platforms: vec!["windows".into(), "macOS".into()],
                    exclude_platforms: vec![],
                }),
                _ => None,
            };
            let grant = |controls: &[&str], strength: Option<String>, operator| GrantControls {
                operator,
                built_in_controls: controls.iter().map(|c| (*c).to_owned()).collect(),
                authentication_strength: strength.map(|id| AuthenticationStrengthRef { id }),
            };
            let (grant_controls, mut frequency) = match rng.below(100) {
                0..=2 => (Some(grant(&["block"], None, GrantOperator::Or)), false),
                3..=49 => (Some(grant(&["mfa"], None, GrantOperator::Or)), false),
                50..=64 => (
                    Some(grant(
                        &[],
                        Some("phishingResistantMfa".into()),
                        GrantOperator::And,
                    )),
                    false,
                ),
                65..=74 => (
                    Some(grant(
                        &[],
                        Some(password_and_totp.to_string()),
                        GrantOperator::And,
                    )),
                    false,
                ),
                75..=84 => (
                    Some(grant(
                        &["mfa"],
                        Some(security_key.to_string()),
                        GrantOperator::Or,
                    )),
                    false,
                ),
                _ => (None, true),
            };
            let blocks = grant_controls
                .as_ref()
                .is_some_and(|g| g.built_in_controls.iter().any(|c| c == "block"));
            frequency |= !blocks && rng.below(5) == 0;
            let raw = ConditionalAccessPolicy {
                id: rng.uuid(),
                display_name: format!("Policy {i}"),
                state,
                conditions: Conditions {
                    users,
                    applications: ApplicationConditions {
                        include_applications,
                        exclude_applications: vec![],
                    },
                    client_app_types,
                    locations,
                    platforms,
                },
                grant_controls,
                session_controls: frequency.then(|| SessionControls {
                    sign_in_frequency: Some(SignInFrequency {
                        is_enabled: true,
                        value: Some(1 + rng.below(12) as u32),
                        unit: Some(FrequencyUnit::Hours),
                    }),
                }),
            };
            raw.check(&ctx).expect("generated policy checks")
        })
        .collect();
    let facts = SignInFactsOwned {
        user_id: rng.uuid(),
        groups: user_groups.into_iter().collect(),
        break_glass: false,
        app_id: apps[0],
        client_app_type: ClientAppType::Browser,
        ip: Some(ip),
        platform: "windows".into(),
        methods: vec![UsedMethod::of(MethodKind::Password)],
        auth_time: BENCH_NOW.minus_secs(2 * 3600),
        now: BENCH_NOW,
        can_satisfy: RegisteredMethods {
            password: true,
            totp: true,
            passkey: false,
        },
    };
    (checked, facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditional_access::evaluate;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_the_same_evaluation() {
        let (p1, f1) = bench_inputs(50, 300, 7);
        let (p2, f2) = bench_inputs(50, 300, 7);
        assert_eq!(p1, p2);
        assert_eq!(f1, f2);
        assert_eq!(evaluate(&p1, &f1.facts()), evaluate(&p2, &f2.facts()));
        let (p3, _) = bench_inputs(50, 300, 8);
        assert_ne!(p1, p3);
        assert_eq!(XorShift64::new(0).next_u64(), XorShift64::new(0).next_u64());
    }

    #[test]
    fn full_size_inputs_check_and_evaluate() {
        let (policies, facts) = bench_inputs(200, 10_000, 42);
        assert_eq!(policies.len(), 200);
        assert_eq!(facts.groups.len(), 10_000);
        let e = evaluate(&policies, &facts.facts());
        let enabled = policies
            .iter()
            .filter(|p| p.state() != PolicyState::Disabled)
            .count();
        assert_eq!(e.results.len(), enabled);
        assert!(
            e.results.iter().any(|r| r.result.applied()),
            "some policies apply to the generated user"
        );
        let (none, empty) = bench_inputs(0, 0, 1);
        assert!(none.is_empty());
        assert!(empty.groups.is_empty());
    }
}
