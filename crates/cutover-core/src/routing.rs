//! Home-realm discovery (SPEC §3 step 2, §4): which route a sign-in takes, and why.
//!
//! A route is managed (Cutover checks the credential) or federated (handed to the domain's
//! upstream IdP). Every rule of SPEC §4.2 that can move a user between the two is one branch
//! here with its own [`RouteReason`], so the sign-in log and the admin's per-user view can
//! always say why. Staged rollout enters as the user's *effective* features
//! ([`crate::staged`]); this function never changes them.

use serde::Serialize;
use uuid::Uuid;

use crate::staged::{Eligibility, FeatureSet, RolloutFeature, eligibility};
use crate::{ClientAppType, Domain, DomainAuthentication, PasswordValidation, Source, User};

/// How Cutover checks the credential on a managed route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Credential {
    /// The password set in Cutover (cloud users; unknown users get a dummy check).
    CloudPassword,
    /// The synced password hash.
    PasswordHashSync,
    /// The on-prem directory, through a pass-through agent.
    PassthroughAuthentication,
    /// A Temporary Access Pass (SPEC §6.3).
    TemporaryAccessPass,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudPassword => "password",
            Self::PasswordHashSync => "passwordHashSync",
            Self::PassthroughAuthentication => "passthroughAuthentication",
            Self::TemporaryAccessPass => "temporaryAccessPass",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::CloudPassword,
            Self::PasswordHashSync,
            Self::PassthroughAuthentication,
            Self::TemporaryAccessPass,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Route {
    /// Cutover's own pages check the credential.
    Managed { credential: Credential },
    /// The domain's upstream identity provider (`None`: the domain has none configured).
    Federated { identity_provider_id: Option<Uuid> },
}

impl Route {
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::Managed { .. } => "managed",
            Route::Federated { .. } => "federated",
        }
    }
}

/// Machine-readable reason for a routing decision (shown in the sign-in log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteReason {
    /// The user's domain is managed.
    ManagedDomain,
    /// The user's domain is federated and no rule moves the user off federation.
    FederatedDomain,
    /// Break-glass accounts are never federated (SPEC §4.2).
    BreakGlassNeverFederated,
    /// The name's domain is not registered: the managed page is shown so that the answer does
    /// not reveal which domains exist; the credential step then fails generically.
    UnknownDomain,
    /// The user holds a usable Temporary Access Pass, which takes precedence over federation.
    TemporaryAccessPass,
    /// Staged rollout moved the user to password hash sync.
    StagedRolloutPasswordHashSync,
    /// Staged rollout moved the user to pass-through authentication.
    StagedRolloutPassthroughAuthentication,
    /// A staged user, but the request carried `domain_hint`: federation stays (ref).
    DomainHintKeepsFederation,
    /// A staged user, but the application is a legacy client: federation stays (ref).
    LegacyClientKeepsFederation,
}

impl RouteReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::ManagedDomain => "managedDomain",
            Self::FederatedDomain => "federatedDomain",
            Self::BreakGlassNeverFederated => "breakGlassNeverFederated",
            Self::UnknownDomain => "unknownDomain",
            Self::TemporaryAccessPass => "temporaryAccessPass",
            Self::StagedRolloutPasswordHashSync => "stagedRolloutPasswordHashSync",
            Self::StagedRolloutPassthroughAuthentication => {
                "stagedRolloutPassthroughAuthentication"
            }
            Self::DomainHintKeepsFederation => "domainHintKeepsFederation",
            Self::LegacyClientKeepsFederation => "legacyClientKeepsFederation",
        }
    }

    /// One sentence for an administrator.
    pub fn explain(self) -> &'static str {
        match self {
            Self::ManagedDomain => "the user's domain is managed: Cutover checks the credential",
            Self::FederatedDomain => {
                "the user's domain is federated and the user is not (effectively) in a staged-rollout password feature"
            }
            Self::BreakGlassNeverFederated => "break-glass accounts are never federated",
            Self::UnknownDomain => "the domain is not registered",
            Self::TemporaryAccessPass => {
                "the user has a usable Temporary Access Pass, which takes precedence over federation"
            }
            Self::StagedRolloutPasswordHashSync => {
                "staged rollout: the user is effectively enabled for password hash sync"
            }
            Self::StagedRolloutPassthroughAuthentication => {
                "staged rollout: the user is effectively enabled for pass-through authentication"
            }
            Self::DomainHintKeepsFederation => {
                "the user is staged, but the application sent domain_hint, which keeps federation"
            }
            Self::LegacyClientKeepsFederation => {
                "the user is staged, but the application is a legacy client, which keeps federation"
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDecision {
    pub route: Route,
    pub reason: RouteReason,
    /// The staged-rollout feature that routed this sign-in, if one did.
    pub staged_feature: Option<RolloutFeature>,
}

/// What routing looks at for one sign-in.
#[derive(Debug, Clone, Copy)]
pub struct RoutingInput<'a> {
    pub domain: Option<&'a Domain>,
    pub user: Option<&'a User>,
    /// The user's effective staged-rollout features (empty for no user).
    pub effective: FeatureSet,
    pub client_app_type: ClientAppType,
    /// The authorization request carried `domain_hint`.
    pub domain_hint: bool,
    /// The user holds a Temporary Access Pass that is usable now.
    pub usable_tap: bool,
}

fn managed(credential: Credential, reason: RouteReason) -> RouteDecision {
    RouteDecision {
        route: Route::Managed { credential },
        reason,
        staged_feature: None,
    }
}

/// Decide the route for a sign-in. Pure: same input, same answer.
pub fn route_sign_in(input: RoutingInput<'_>) -> RouteDecision {
    let Some(domain) = input.domain else {
        return managed(Credential::CloudPassword, RouteReason::UnknownDomain);
    };
    let cfg = match &domain.authentication {
        DomainAuthentication::Managed(m) => {
            // A usable pass is asked for instead of the password (SPEC §6.3).
            if input.user.is_some() && input.usable_tap {
                return managed(
                    Credential::TemporaryAccessPass,
                    RouteReason::TemporaryAccessPass,
                );
            }
            let credential = match input.user {
                Some(u) if u.source == Source::Synced => match m.password_validation {
                    PasswordValidation::PasswordHashSync => Credential::PasswordHashSync,
                    PasswordValidation::PassthroughAuthentication => {
                        Credential::PassthroughAuthentication
                    }
                },
                _ => Credential::CloudPassword,
            };
            return managed(credential, RouteReason::ManagedDomain);
        }
        DomainAuthentication::Federated(cfg) => cfg,
    };
    let federated = |reason| RouteDecision {
        route: Route::Federated {
            identity_provider_id: cfg.identity_provider_id,
        },
        reason,
        staged_feature: None,
    };
    let Some(user) = input.user else {
        return federated(RouteReason::FederatedDomain);
    };
    if user.break_glass {
        return managed(
            Credential::CloudPassword,
            RouteReason::BreakGlassNeverFederated,
        );
    }
    if input.usable_tap {
        return managed(
            Credential::TemporaryAccessPass,
            RouteReason::TemporaryAccessPass,
        );
    }
    let staged = if eligibility(user, Some(domain)) == Eligibility::Eligible {
        input.effective.password_route()
    } else {
        None
    };
    let Some(feature) = staged else {
        return federated(RouteReason::FederatedDomain);
    };
    if input.domain_hint {
        return federated(RouteReason::DomainHintKeepsFederation);
    }
    if input.client_app_type.is_legacy() {
        return federated(RouteReason::LegacyClientKeepsFederation);
    }
    let (credential, reason) = match feature {
        RolloutFeature::PassthroughAuthentication => (
            Credential::PassthroughAuthentication,
            RouteReason::StagedRolloutPassthroughAuthentication,
        ),
        _ => (
            Credential::PasswordHashSync,
            RouteReason::StagedRolloutPasswordHashSync,
        ),
    };
    RouteDecision {
        route: Route::Managed { credential },
        reason,
        staged_feature: Some(feature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staged::{RolloutIndex, SignInEnd, StagedState, transition};
    use crate::{DomainName, FederationConfig, ManagedConfig, Timestamp, UserPrincipalName};
    use RolloutFeature::*;
    use proptest::prelude::*;

    const IDP: Uuid = Uuid::from_u128(7);

    fn domain(auth: &str) -> Domain {
        Domain {
            name: DomainName::parse("corp.example").unwrap(),
            authentication: match auth {
                "federated" => DomainAuthentication::Federated(FederationConfig {
                    identity_provider_id: Some(IDP),
                }),
                "managed-pta" => DomainAuthentication::Managed(ManagedConfig {
                    password_validation: PasswordValidation::PassthroughAuthentication,
                    previous_identity_provider_id: None,
                }),
                _ => DomainAuthentication::Managed(ManagedConfig::default()),
            },
            created_at: Timestamp(0),
        }
    }

    fn user(kind: &str) -> User {
        User {
            id: Uuid::nil(),
            upn: UserPrincipalName::parse("u@corp.example").unwrap(),
            source: if kind == "synced" {
                Source::Synced
            } else {
                Source::Cloud
            },
            immutable_id: (kind == "synced").then(|| "anchor".into()),
            display_name: "U".into(),
            mail: None,
            department: None,
            manager_id: None,
            account_enabled: true,
            break_glass: kind == "glass",
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    struct Case {
        domain: Option<&'static str>,
        user: Option<&'static str>,
        effective: &'static [RolloutFeature],
        client: ClientAppType,
        hint: bool,
        tap: bool,
        route: &'static str,
        credential: Option<Credential>,
        reason: RouteReason,
    }

    #[test]
    fn routing_table_covers_every_rule() {
        use ClientAppType::*;
        use Credential as C;
        use RouteReason as R;
        #[rustfmt::skip]
        let cases = [
            // domain, user, effective features, client, domain_hint, TAP → route, credential, reason
            (None, None, &[][..], Browser, false, false, "managed", Some(C::CloudPassword), R::UnknownDomain),
            (None, Some("synced"), &[PasswordHashSync][..], Browser, false, false, "managed", Some(C::CloudPassword), R::UnknownDomain),
            (Some("managed"), None, &[], Browser, false, false, "managed", Some(C::CloudPassword), R::ManagedDomain),
            (Some("managed"), Some("cloud"), &[], Browser, false, false, "managed", Some(C::CloudPassword), R::ManagedDomain),
            (Some("managed"), Some("synced"), &[], Browser, false, false, "managed", Some(C::PasswordHashSync), R::ManagedDomain),
            (Some("managed-pta"), Some("synced"), &[], Browser, false, false, "managed", Some(C::PassthroughAuthentication), R::ManagedDomain),
            (Some("managed-pta"), Some("cloud"), &[], Browser, false, false, "managed", Some(C::CloudPassword), R::ManagedDomain),
            // Managed domains are unaffected by staged state, hints and client types.
            (Some("managed"), Some("synced"), &[PassthroughAuthentication][..], Other, true, false, "managed", Some(C::PasswordHashSync), R::ManagedDomain),
            (Some("managed"), Some("glass"), &[], Browser, false, false, "managed", Some(C::CloudPassword), R::ManagedDomain),
            // A usable TAP is asked for instead of the password in managed domains too.
            (Some("managed"), Some("cloud"), &[], Browser, false, true, "managed", Some(C::TemporaryAccessPass), R::TemporaryAccessPass),
            (Some("managed-pta"), Some("synced"), &[], Other, true, true, "managed", Some(C::TemporaryAccessPass), R::TemporaryAccessPass),
            (Some("managed"), None, &[], Browser, false, true, "managed", Some(C::CloudPassword), R::ManagedDomain),
            (Some("federated"), None, &[], Browser, false, false, "federated", None, R::FederatedDomain),
            (Some("federated"), Some("synced"), &[], Browser, false, false, "federated", None, R::FederatedDomain),
            (Some("federated"), Some("cloud"), &[], Browser, false, false, "federated", None, R::FederatedDomain),
            // Cloud-only users are never staged, whatever the stored state says.
            (Some("federated"), Some("cloud"), &[PasswordHashSync][..], Browser, false, false, "federated", None, R::FederatedDomain),
            // Break-glass: never federated, not even for legacy clients or with a hint.
            (Some("federated"), Some("glass"), &[], Browser, false, false, "managed", Some(C::CloudPassword), R::BreakGlassNeverFederated),
            (Some("federated"), Some("glass"), &[], Other, true, true, "managed", Some(C::CloudPassword), R::BreakGlassNeverFederated),
            // Staged rollout.
            (Some("federated"), Some("synced"), &[PasswordHashSync][..], Browser, false, false, "managed", Some(C::PasswordHashSync), R::StagedRolloutPasswordHashSync),
            (Some("federated"), Some("synced"), &[PasswordHashSync, SeamlessSso][..], MobileAppsAndDesktopClients, false, false, "managed", Some(C::PasswordHashSync), R::StagedRolloutPasswordHashSync),
            (Some("federated"), Some("synced"), &[PassthroughAuthentication][..], Browser, false, false, "managed", Some(C::PassthroughAuthentication), R::StagedRolloutPassthroughAuthentication),
            // Features without a password route change nothing yet.
            (Some("federated"), Some("synced"), &[SeamlessSso, CertificateBasedAuthentication, MultiFactorAuthentication][..], Browser, false, false, "federated", None, R::FederatedDomain),
            // domain_hint and legacy clients keep federation for staged users.
            (Some("federated"), Some("synced"), &[PasswordHashSync][..], Browser, true, false, "federated", None, R::DomainHintKeepsFederation),
            (Some("federated"), Some("synced"), &[PassthroughAuthentication][..], ExchangeActiveSync, false, false, "federated", None, R::LegacyClientKeepsFederation),
            (Some("federated"), Some("synced"), &[PasswordHashSync][..], Other, false, false, "federated", None, R::LegacyClientKeepsFederation),
            (Some("federated"), Some("synced"), &[PasswordHashSync][..], Other, true, false, "federated", None, R::DomainHintKeepsFederation),
            // A TAP takes precedence over federation, and over hints and client types.
            (Some("federated"), Some("synced"), &[], Browser, false, true, "managed", Some(C::TemporaryAccessPass), R::TemporaryAccessPass),
            (Some("federated"), Some("cloud"), &[], Other, true, true, "managed", Some(C::TemporaryAccessPass), R::TemporaryAccessPass),
            (Some("federated"), Some("synced"), &[PasswordHashSync][..], Browser, false, true, "managed", Some(C::TemporaryAccessPass), R::TemporaryAccessPass),
        ]
        .map(|(domain, user, effective, client, hint, tap, route, credential, reason)| Case {
            domain, user, effective, client, hint, tap, route, credential, reason,
        });
        for c in cases {
            let d = c.domain.map(domain);
            let u = c.user.map(user);
            let got = route_sign_in(RoutingInput {
                domain: d.as_ref(),
                user: u.as_ref(),
                effective: FeatureSet::of(c.effective),
                client_app_type: c.client,
                domain_hint: c.hint,
                usable_tap: c.tap,
            });
            let credential = match got.route {
                Route::Managed { credential } => Some(credential),
                Route::Federated {
                    identity_provider_id,
                } => {
                    assert_eq!(identity_provider_id, Some(IDP));
                    None
                }
            };
            let what = format!(
                "{:?} {:?} {:?} {:?} hint={} tap={}",
                c.domain, c.user, c.effective, c.client, c.hint, c.tap
            );
            assert_eq!(
                (got.route.as_str(), credential, got.reason),
                (c.route, c.credential, c.reason),
                "{what}"
            );
            let staged = matches!(
                got.reason,
                R::StagedRolloutPasswordHashSync | R::StagedRolloutPassthroughAuthentication
            );
            assert_eq!(got.staged_feature.is_some(), staged, "{what}");
            assert!(!got.reason.explain().is_empty());
        }
    }

    #[test]
    fn a_federated_domain_without_an_idp_still_routes_to_federation() {
        let mut d = domain("federated");
        d.authentication = DomainAuthentication::Federated(FederationConfig::default());
        let got = route_sign_in(RoutingInput {
            domain: Some(&d),
            user: None,
            effective: FeatureSet::EMPTY,
            client_app_type: ClientAppType::Browser,
            domain_hint: false,
            usable_tap: false,
        });
        assert_eq!(
            got.route,
            Route::Federated {
                identity_provider_id: None
            }
        );
    }

    /// One step of the life of a user in a federated domain.
    #[derive(Debug, Clone)]
    enum Step {
        /// The admin puts the user's group into (or takes it out of) an enabled policy.
        SetGroup(Option<RolloutFeature>),
        /// The user signs in interactively, completing (or failing).
        Interactive { completes: bool },
        /// A managed attempt whose credential could not be checked (no hash, no agent).
        Unavailable,
        /// A refresh or SSO-session reuse.
        NonInteractive,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            prop_oneof![
                Just(None),
                Just(Some(PasswordHashSync)),
                Just(Some(PassthroughAuthentication)),
                Just(Some(SeamlessSso)),
                Just(Some(MultiFactorAuthentication)),
            ]
            .prop_map(Step::SetGroup),
            any::<bool>().prop_map(|completes| Step::Interactive { completes }),
            Just(Step::NonInteractive),
            Just(Step::Unavailable),
        ]
    }

    fn route_of(d: &Domain, u: &User, s: StagedState) -> RouteDecision {
        route_sign_in(RoutingInput {
            domain: Some(d),
            user: Some(u),
            effective: s.effective,
            client_app_type: ClientAppType::Browser,
            domain_hint: false,
            usable_tap: false,
        })
    }

    proptest! {
        /// The route changes only right after a completed interactive sign-in (or, for a
        /// rollback only, a managed attempt that could not check the credential); removing the
        /// group returns the user to federation after exactly one such sign-in; cloud-only
        /// users and managed domains never move.
        #[test]
        fn routes_change_only_after_interactive_sign_ins(
            steps in proptest::collection::vec(step(), 1..60),
            kind in prop_oneof![Just("synced"), Just("cloud")],
            auth in prop_oneof![Just("federated"), Just("managed")],
        ) {
            let d = domain(auth);
            let u = user(kind);
            let group = Uuid::from_u128(42);
            let mut policies: Vec<crate::staged::FeatureRolloutPolicy> = vec![];
            let mut state = StagedState::default();
            let initial = route_of(&d, &u, state).route;
            let mut removed_pending = false;
            for (i, s) in steps.into_iter().enumerate() {
                let before = route_of(&d, &u, state).route;
                let now = Timestamp(i as i64);
                let end = match s {
                    Step::SetGroup(f) => {
                        policies = f.into_iter().map(|f| crate::staged::FeatureRolloutPolicy {
                            id: Uuid::from_u128(1),
                            display_name: "p".into(),
                            description: None,
                            feature: f,
                            is_enabled: true,
                            is_applied_to_organization: false,
                            applies_to: vec![group],
                            created_at: now,
                            updated_at: now,
                        }).collect();
                        removed_pending = policies.iter().all(|p| !p.feature.is_password_route());
                        None
                    }
                    Step::Interactive { completes: true } => Some(SignInEnd::InteractiveCompleted),
                    Step::Interactive { completes: false } => Some(SignInEnd::Failed),
                    Step::NonInteractive => Some(SignInEnd::NonInteractive),
                    // Only reachable on a managed route.
                    Step::Unavailable => matches!(before, Route::Managed { .. })
                        .then_some(SignInEnd::ManagedCredentialUnavailable),
                };
                let desired = RolloutIndex::new(&policies).desired(&u, Some(&d), &[group]);
                if let Some(end) = end {
                    state = transition(state, desired, end, now).0;
                }
                let after = route_of(&d, &u, state).route;
                if after != before {
                    // A completed interactive sign-in, or the escape from a managed route the
                    // admin already rolled back — which only ever leads back to federation.
                    let escaped = end == Some(SignInEnd::ManagedCredentialUnavailable)
                        && matches!(after, Route::Federated { .. });
                    prop_assert!(end == Some(SignInEnd::InteractiveCompleted) || escaped, "moved at {:?}", end);
                }
                if end == Some(SignInEnd::InteractiveCompleted) && removed_pending && d.is_federated() {
                    prop_assert!(matches!(after, Route::Federated { .. }), "still managed after removal");
                }
                if u.source == Source::Cloud || !d.is_federated() {
                    prop_assert_eq!(after, initial);
                }
            }
        }
    }
}
