//! Federation decisions (SPEC §3 step 2): checking an upstream IdP's settings, reading the
//! keys an upstream ID token offers to find the user, and whether the user it names may sign
//! in through that IdP. The network side lives in `cutover-federation`.

use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::limits::MAX_ATTRIBUTE_LEN;
use crate::signin_log::FailureReason;
use crate::{Domain, User};

/// Longest claim name accepted in an IdP's settings.
pub const MAX_CLAIM_NAME_LEN: usize = 64;
/// Most scopes an IdP registration may request.
pub const MAX_UPSTREAM_SCOPES: usize = 16;

/// Check an upstream issuer URL: `https`, or `http` on a loopback address (tests and local
/// trials); no query, fragment or credentials. Returns it without a trailing slash.
pub fn check_issuer(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("issuer is not a URL: {e}"))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(a)) if a.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "issuer must use https (plain http is accepted only on a loopback address)".into(),
            );
        }
        other => return Err(format!("issuer must be an https URL, not {other}:")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("issuer must not have a query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("issuer must not carry credentials".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Check a claim name from an IdP's settings.
pub fn check_claim_name(field: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CLAIM_NAME_LEN {
        return Err(format!("{field} must be 1–{MAX_CLAIM_NAME_LEN} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(format!(
            "{field} may contain letters, digits and _ - . : / only"
        ));
    }
    Ok(())
}

/// What an upstream ID token offers to find the user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectKeys {
    pub immutable_id: Option<String>,
    pub upn: Option<String>,
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_ATTRIBUTE_LEN => Some(s.clone()),
        _ => None,
    }
}

/// Read the immutable id (and, when the fallback is on, the UPN) from verified ID-token
/// claims. Values that are not non-empty strings of a sane length are ignored.
pub fn subject_keys(
    claims: &Map<String, Value>,
    immutable_id_claim: &str,
    upn_fallback_claim: Option<&str>,
) -> SubjectKeys {
    SubjectKeys {
        immutable_id: string_claim(claims, immutable_id_claim),
        upn: upn_fallback_claim.and_then(|c| string_claim(claims, c)),
    }
}

/// How the upstream subject was matched to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MatchedBy {
    ImmutableId,
    UserPrincipalName,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImmutableId => "immutableId",
            Self::UserPrincipalName => "userPrincipalName",
        }
    }
}

/// May the user the upstream IdP `idp` vouched for sign in through it? The user's domain must
/// be federated to that IdP (an IdP never speaks for another domain's users), break-glass
/// accounts are never federated, and a disabled account stays out.
pub fn check_upstream_user(
    idp: Uuid,
    user: &User,
    domain: Option<&Domain>,
) -> Result<(), FailureReason> {
    if user.break_glass {
        return Err(FailureReason::UpstreamUserNotAllowed);
    }
    if domain.and_then(Domain::identity_provider_id) != Some(idp) {
        return Err(FailureReason::UpstreamUserNotAllowed);
    }
    if !user.account_enabled {
        return Err(FailureReason::AccountDisabled);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        DomainAuthentication, DomainName, FederationConfig, ManagedConfig, Source, Timestamp,
        UserPrincipalName,
    };
    use serde_json::json;

    #[test]
    fn issuers_must_be_https_or_loopback() {
        assert_eq!(
            check_issuer("https://idp.corp.example/").unwrap(),
            "https://idp.corp.example"
        );
        assert!(check_issuer("http://127.0.0.1:9090").is_ok());
        assert!(check_issuer("http://[::1]:9090").is_ok());
        assert!(check_issuer("http://localhost:9090/realms/x").is_ok());
        for bad in [
            "http://idp.corp.example",
            "ftp://idp.corp.example",
            "https://idp.corp.example/?a=b",
            "https://idp.corp.example/#x",
            "https://u:p@idp.corp.example",
            "not a url",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claim_names_are_checked() {
        assert!(check_claim_name("immutableIdClaim", "immutable_id").is_ok());
        assert!(check_claim_name("immutableIdClaim", "http://schemas.example/anchor").is_ok());
        assert!(check_claim_name("immutableIdClaim", "").is_err());
        assert!(check_claim_name("immutableIdClaim", "a b").is_err());
        assert!(check_claim_name("x", &"a".repeat(MAX_CLAIM_NAME_LEN)).is_ok());
        assert!(check_claim_name("x", &"a".repeat(MAX_CLAIM_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn subject_keys_take_only_sane_strings() {
        let claims = json!({
            "sub": "s-1", "anchor": "A1", "upn": "p@corp.example",
            "num": 5, "empty": "", "long": "x".repeat(MAX_ATTRIBUTE_LEN + 1)
        });
        let m = claims.as_object().unwrap();
        assert_eq!(
            subject_keys(m, "anchor", Some("upn")),
            SubjectKeys {
                immutable_id: Some("A1".into()),
                upn: Some("p@corp.example".into())
            }
        );
        assert_eq!(
            subject_keys(m, "sub", None).immutable_id.as_deref(),
            Some("s-1")
        );
        assert_eq!(subject_keys(m, "anchor", None).upn, None);
        for bad in ["num", "empty", "long", "missing"] {
            assert_eq!(
                subject_keys(m, bad, Some(bad)),
                SubjectKeys::default(),
                "{bad}"
            );
        }
    }

    #[test]
    fn upstream_users_must_belong_to_the_idps_domain() {
        let idp = Uuid::from_u128(1);
        let other = Uuid::from_u128(2);
        let d = |auth| Domain {
            name: DomainName::parse("corp.example").unwrap(),
            authentication: auth,
            created_at: Timestamp(0),
        };
        let fed = |id| {
            d(DomainAuthentication::Federated(FederationConfig {
                identity_provider_id: Some(id),
            }))
        };
        let mut u = User {
            id: Uuid::nil(),
            upn: UserPrincipalName::parse("u@corp.example").unwrap(),
            source: Source::Synced,
            immutable_id: Some("A".into()),
            display_name: "U".into(),
            mail: None,
            department: None,
            manager_id: None,
            account_enabled: true,
            break_glass: false,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        assert_eq!(check_upstream_user(idp, &u, Some(&fed(idp))), Ok(()));
        let not_allowed = Err(FailureReason::UpstreamUserNotAllowed);
        assert_eq!(check_upstream_user(idp, &u, Some(&fed(other))), not_allowed);
        let managed = d(DomainAuthentication::Managed(ManagedConfig::default()));
        assert_eq!(check_upstream_user(idp, &u, Some(&managed)), not_allowed);
        assert_eq!(check_upstream_user(idp, &u, None), not_allowed);
        u.account_enabled = false;
        assert_eq!(
            check_upstream_user(idp, &u, Some(&fed(idp))),
            Err(FailureReason::AccountDisabled)
        );
        u.break_glass = true;
        assert_eq!(check_upstream_user(idp, &u, Some(&fed(idp))), not_allowed);
    }
}
