//! Home-realm discovery (SPEC §3 step 2, §4): which route a sign-in takes, and why.
//!
//! Today a route is managed (Cutover checks the password) or federated (handed to the
//! domain's upstream IdP). Staged rollout, TAP precedence and `domain_hint` refine this in
//! later releases; each rule adds a [`RouteReason`], so the sign-in log and the admin's
//! per-user view can always say why.

use serde::Serialize;
use uuid::Uuid;

use crate::{ClientAppType, Domain, DomainAuthentication, User};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Route {
    /// Cutover's own password page.
    Managed,
    /// The domain's upstream identity provider.
    Federated { identity_provider_id: Option<Uuid> },
}

impl Route {
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::Managed => "managed",
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
}

impl RouteReason {
    pub fn code(self) -> &'static str {
        match self {
            RouteReason::ManagedDomain => "managedDomain",
            RouteReason::FederatedDomain => "federatedDomain",
            RouteReason::BreakGlassNeverFederated => "breakGlassNeverFederated",
            RouteReason::UnknownDomain => "unknownDomain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteDecision {
    pub route: Route,
    pub reason: RouteReason,
}

/// What routing looks at for one sign-in.
#[derive(Debug, Clone, Copy)]
pub struct RoutingInput<'a> {
    pub domain: Option<&'a Domain>,
    pub user: Option<&'a User>,
    pub client_app_type: ClientAppType,
}

/// Decide the route for a sign-in. Pure: same input, same answer.
pub fn route_sign_in(input: RoutingInput<'_>) -> RouteDecision {
    let Some(domain) = input.domain else {
        return RouteDecision {
            route: Route::Managed,
            reason: RouteReason::UnknownDomain,
        };
    };
    match &domain.authentication {
        DomainAuthentication::Managed => RouteDecision {
            route: Route::Managed,
            reason: RouteReason::ManagedDomain,
        },
        DomainAuthentication::Federated(cfg) => {
            if input.user.is_some_and(|u| u.break_glass) {
                return RouteDecision {
                    route: Route::Managed,
                    reason: RouteReason::BreakGlassNeverFederated,
                };
            }
            RouteDecision {
                route: Route::Federated {
                    identity_provider_id: cfg.identity_provider_id,
                },
                reason: RouteReason::FederatedDomain,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DomainName, FederationConfig, Source, Timestamp, UserPrincipalName};

    fn domain(federated: bool) -> Domain {
        Domain {
            name: DomainName::parse("corp.example").unwrap(),
            authentication: if federated {
                DomainAuthentication::Federated(FederationConfig::default())
            } else {
                DomainAuthentication::Managed
            },
            created_at: Timestamp(0),
        }
    }

    fn user(break_glass: bool) -> User {
        User {
            id: Uuid::nil(),
            upn: UserPrincipalName::parse("u@corp.example").unwrap(),
            source: Source::Cloud,
            immutable_id: None,
            display_name: "U".into(),
            mail: None,
            department: None,
            manager_id: None,
            account_enabled: true,
            break_glass,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn routing_table() {
        let managed = domain(false);
        let federated = domain(true);
        let normal = user(false);
        let glass = user(true);
        let table: Vec<(Option<&Domain>, Option<&User>, &str, RouteReason)> = vec![
            (None, None, "managed", RouteReason::UnknownDomain),
            (Some(&managed), None, "managed", RouteReason::ManagedDomain),
            (
                Some(&managed),
                Some(&normal),
                "managed",
                RouteReason::ManagedDomain,
            ),
            (
                Some(&managed),
                Some(&glass),
                "managed",
                RouteReason::ManagedDomain,
            ),
            (
                Some(&federated),
                None,
                "federated",
                RouteReason::FederatedDomain,
            ),
            (
                Some(&federated),
                Some(&normal),
                "federated",
                RouteReason::FederatedDomain,
            ),
            (
                Some(&federated),
                Some(&glass),
                "managed",
                RouteReason::BreakGlassNeverFederated,
            ),
        ];
        for (d, u, route, reason) in table {
            let got = route_sign_in(RoutingInput {
                domain: d,
                user: u,
                client_app_type: ClientAppType::Browser,
            });
            assert_eq!(
                (got.route.as_str(), got.reason),
                (route, reason),
                "domain {d:?} user {u:?}"
            );
        }
    }
}
