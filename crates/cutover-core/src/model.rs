//! The directory model (SPEC §2): domains, users, groups, applications.
//!
//! These are plain data. Storage persists them, the HTTP layer maps them to wire types, and
//! the decision functions in this crate read them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{DomainName, RedirectUri, Timestamp, UserPrincipalName};

/// How users of a domain authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "authenticationType")]
pub enum DomainAuthentication {
    /// Cutover checks credentials itself.
    Managed(ManagedConfig),
    /// Sign-in is handed to an upstream identity provider (the legacy IdP).
    Federated(FederationConfig),
}

/// How a managed domain checks the passwords of its synced users (cloud users always use the
/// password set in Cutover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PasswordValidation {
    /// Against the synced password hash (SPEC §5.2).
    #[default]
    PasswordHashSync,
    /// By the on-prem directory, through pass-through agents (SPEC §5.3).
    PassthroughAuthentication,
}

impl PasswordValidation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordHashSync => "passwordHashSync",
            Self::PassthroughAuthentication => "passthroughAuthentication",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passwordHashSync" => Some(Self::PasswordHashSync),
            "passthroughAuthentication" => Some(Self::PassthroughAuthentication),
            _ => None,
        }
    }
}

/// A managed domain's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedConfig {
    #[serde(default)]
    pub password_validation: PasswordValidation,
    /// The upstream IdP the domain was federated with before its cut-over: converting back
    /// (the rollback) uses it unless told otherwise.
    #[serde(default)]
    pub previous_identity_provider_id: Option<Uuid>,
}

/// The federated domain's link to its upstream IdP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationConfig {
    /// Id of the registered upstream identity provider, once one is registered.
    pub identity_provider_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: DomainName,
    pub authentication: DomainAuthentication,
    pub created_at: Timestamp,
}

impl Domain {
    pub fn is_federated(&self) -> bool {
        matches!(self.authentication, DomainAuthentication::Federated(_))
    }
    /// The upstream IdP of a federated domain.
    pub fn identity_provider_id(&self) -> Option<Uuid> {
        match &self.authentication {
            DomainAuthentication::Federated(cfg) => cfg.identity_provider_id,
            DomainAuthentication::Managed(_) => None,
        }
    }
}

/// Where a user object is mastered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// Synchronised from the on-prem directory; `immutableId` is its anchor.
    Synced,
    /// Created in Cutover.
    Cloud,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Synced => "synced",
            Source::Cloud => "cloud",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "synced" => Some(Source::Synced),
            "cloud" => Some(Source::Cloud),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub upn: UserPrincipalName,
    pub source: Source,
    /// On-prem source anchor of a synced user.
    pub immutable_id: Option<String>,
    pub display_name: String,
    pub mail: Option<String>,
    pub department: Option<String>,
    pub manager_id: Option<Uuid>,
    pub account_enabled: bool,
    /// Emergency-access account: never federated, never staged, excluded from every policy.
    pub break_glass: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MembershipKind {
    Assigned,
    Dynamic,
}

impl MembershipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipKind::Assigned => "assigned",
            MembershipKind::Dynamic => "dynamic",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "assigned" => Some(MembershipKind::Assigned),
            "dynamic" => Some(MembershipKind::Dynamic),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    pub display_name: String,
    pub description: Option<String>,
    pub source: Source,
    pub immutable_id: Option<String>,
    pub membership_kind: MembershipKind,
    pub created_at: Timestamp,
}

/// What a group member is. Groups (nesting) and contacts are representable so that the rules
/// which reject them (staged rollout, SPEC §4.2) can be enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MemberKind {
    User,
    Group,
    Contact,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Group => "group",
            MemberKind::Contact => "contact",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(MemberKind::User),
            "group" => Some(MemberKind::Group),
            "contact" => Some(MemberKind::Contact),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberRef {
    pub kind: MemberKind,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientType {
    /// Can keep a secret (a server-side web app): authenticates at the token endpoint.
    Confidential,
    /// Cannot keep a secret (SPA, native app): PKCE S256 is mandatory.
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confidential" => Some(ClientType::Confidential),
            "public" => Some(ClientType::Public),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }
}

/// The kind of client an application is, as Conditional Access and staged rollout see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientAppType {
    Browser,
    MobileAppsAndDesktopClients,
    ExchangeActiveSync,
    Other,
}

impl ClientAppType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAppType::Browser => "browser",
            ClientAppType::MobileAppsAndDesktopClients => "mobileAppsAndDesktopClients",
            ClientAppType::ExchangeActiveSync => "exchangeActiveSync",
            ClientAppType::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "browser" => Some(ClientAppType::Browser),
            "mobileAppsAndDesktopClients" => Some(ClientAppType::MobileAppsAndDesktopClients),
            "exchangeActiveSync" => Some(ClientAppType::ExchangeActiveSync),
            "other" => Some(ClientAppType::Other),
            _ => None,
        }
    }
    /// Legacy clients cannot follow a browser redirect and stay federated (SPEC §4.2).
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            ClientAppType::ExchangeActiveSync | ClientAppType::Other
        )
    }
}

/// An OpenID Connect client registered with Cutover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: Uuid,
    pub client_id: String,
    pub display_name: String,
    pub client_type: ClientType,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub client_app_type: ClientAppType,
    /// Keyed hash (hex) of the client secret (confidential clients only); never the secret itself.
    pub secret_hash: Option<String>,
    /// Application roles granted to the app itself (client credentials), e.g. `Directory.ReadWrite.All`.
    pub app_roles: Vec<String>,
    pub created_at: Timestamp,
}

/// An upstream OpenID Connect provider (the legacy IdP) that federated domains hand sign-ins to.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityProvider {
    pub id: Uuid,
    pub display_name: String,
    /// The issuer URL; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret, sealed by the server (never in clear outside the sign-in path).
    pub client_secret_sealed: String,
    /// Scopes requested besides `openid`.
    pub scopes: Vec<String>,
    /// The ID-token claim that carries the user's immutable id (the on-prem anchor).
    pub immutable_id_claim: String,
    /// When set, a subject without a matching immutable id is matched by the UPN in this claim.
    pub upn_fallback_claim: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret_sealed", &"***")
            .field("scopes", &self.scopes)
            .field("immutable_id_claim", &self.immutable_id_claim)
            .field("upn_fallback_claim", &self.upn_fallback_claim)
            .finish()
    }
}

/// The role that lets an application call the admin API.
pub const ADMIN_APP_ROLE: &str = "Directory.ReadWrite.All";
/// The role that lets an application (a Prometheus scraper) read `/metrics` and nothing else.
pub const METRICS_APP_ROLE: &str = "Metrics.Read";
/// The role that lets an application act as a sync server (`/sync/v1`: read synced state,
/// export, report). Give each sync server its own application.
pub const SYNC_APP_ROLE: &str = "Directory.Sync";
/// Every application role Cutover knows.
pub const APP_ROLES: &[&str] = &[ADMIN_APP_ROLE, METRICS_APP_ROLE, SYNC_APP_ROLE];

impl Application {
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
    /// Exact, case-sensitive comparison against the registered list (no prefix, no wildcard).
    pub fn has_redirect_uri(&self, candidate: &str) -> bool {
        self.redirect_uris.iter().any(|r| r.as_str() == candidate)
    }
    pub fn has_post_logout_redirect_uri(&self, candidate: &str) -> bool {
        self.post_logout_redirect_uris
            .iter()
            .any(|r| r.as_str() == candidate)
    }
    pub fn is_admin(&self) -> bool {
        self.app_roles.iter().any(|r| r == ADMIN_APP_ROLE)
    }
}

/// Default grants for a new application of the given type.
pub fn default_grants(client_type: ClientType) -> Vec<GrantType> {
    match client_type {
        ClientType::Confidential => vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ],
        ClientType::Public => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
    }
}

/// Check grant choices against the client type: a public client cannot use client credentials.
pub fn check_grants(client_type: ClientType, grants: &[GrantType]) -> Result<(), String> {
    if grants.is_empty() {
        return Err("grantTypes must name at least one grant".into());
    }
    if client_type == ClientType::Public && grants.contains(&GrantType::ClientCredentials) {
        return Err(
            "a public client cannot use the client_credentials grant: it has no secret".into(),
        );
    }
    if grants.contains(&GrantType::RefreshToken) && !grants.contains(&GrantType::AuthorizationCode)
    {
        return Err(
            "refresh_token needs authorization_code: refresh tokens are only issued from a code"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_rules() {
        use GrantType::*;
        assert!(check_grants(ClientType::Public, &[AuthorizationCode, RefreshToken]).is_ok());
        assert!(check_grants(ClientType::Public, &[ClientCredentials]).is_err());
        assert!(check_grants(ClientType::Confidential, &[ClientCredentials]).is_ok());
        assert!(check_grants(ClientType::Confidential, &[RefreshToken]).is_err());
        assert!(check_grants(ClientType::Confidential, &[]).is_err());
        for t in [ClientType::Public, ClientType::Confidential] {
            assert!(check_grants(t, &default_grants(t)).is_ok());
        }
    }

    #[test]
    fn enum_strings_roundtrip() {
        for s in [Source::Synced, Source::Cloud] {
            assert_eq!(Source::parse(s.as_str()), Some(s));
        }
        for k in [MembershipKind::Assigned, MembershipKind::Dynamic] {
            assert_eq!(MembershipKind::parse(k.as_str()), Some(k));
        }
        for k in [MemberKind::User, MemberKind::Group, MemberKind::Contact] {
            assert_eq!(MemberKind::parse(k.as_str()), Some(k));
        }
        for g in [
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ] {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        for c in [
            ClientAppType::Browser,
            ClientAppType::MobileAppsAndDesktopClients,
            ClientAppType::ExchangeActiveSync,
            ClientAppType::Other,
        ] {
            assert_eq!(ClientAppType::parse(c.as_str()), Some(c));
        }
        assert!(ClientAppType::Other.is_legacy() && !ClientAppType::Browser.is_legacy());
    }
}
