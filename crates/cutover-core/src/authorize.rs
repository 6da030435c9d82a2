//! Checking an authorization request (OpenID Connect Core §3.1.2) into a form the sign-in
//! pages can trust. Which failures may be sent back to the client and which must stop on an
//! error page is decided here, once: nothing is ever redirected to an unregistered URI.

use crate::limits::{MAX_SCOPE_LEN, MAX_STATE_LEN, MAX_UPN_LEN};
use crate::pkce::{CodeChallenge, PkceError};
use crate::{Application, ClientType, GrantType};

/// The raw query parameters, as strings; `duplicated` names parameters that appeared twice.
#[derive(Debug, Clone, Default)]
pub struct AuthorizeParams {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub domain_hint: Option<String>,
    pub acr_values: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
    pub duplicated: Vec<String>,
}

/// What the user must be asked, from `prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Prompt {
    /// Reuse an SSO session when there is one.
    #[default]
    Default,
    /// Always ask for credentials again.
    Login,
    /// Never show a page: succeed from the session or fail with `login_required`.
    None,
}

/// Longest `acr_values` read; a longer one is ignored like an unknown value.
pub const MAX_ACR_VALUES_LEN: usize = 256;

/// Scopes Cutover understands; others are ignored (OpenID Connect Core §3.1.2.1).
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// A checked authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Supported scopes that were asked for, in request order, without duplicates.
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub domain_hint: Option<String>,
    /// The strength the client asks for with `acr_values` (the strongest known value;
    /// unknown values are ignored): the sign-in steps up until the session meets it.
    pub acr: Option<crate::strength::BuiltIn>,
}

/// Why a request stops on Cutover's own error page (the client cannot be trusted with a redirect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPageReason {
    MissingClientId,
    UnknownClient,
    MissingRedirectUri,
    UnregisteredRedirectUri,
    DuplicateClientOrRedirect,
}

impl ErrorPageReason {
    /// Stable code for logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingClientId => "missingClientId",
            Self::UnknownClient => "unknownClient",
            Self::MissingRedirectUri => "missingRedirectUri",
            Self::UnregisteredRedirectUri => "unregisteredRedirectUri",
            Self::DuplicateClientOrRedirect => "duplicateParameter",
        }
    }
    /// What the person in front of the browser is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::MissingClientId | Self::UnknownClient => {
                "The application that sent you here is not registered with this sign-in service."
            }
            Self::MissingRedirectUri | Self::UnregisteredRedirectUri => {
                "The application asked to return you to an address it has not registered, so you were not sent back. Its developer must register the exact address."
            }
            Self::DuplicateClientOrRedirect => {
                "The sign-in request from the application was malformed."
            }
        }
    }
}

/// An error sent back to the client's redirect URI with RFC 6749 / OIDC vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: &'static str,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeCheck {
    Proceed(AuthorizeRequest),
    ErrorPage(ErrorPageReason),
    Redirect(RedirectError),
}

/// Check `params` for `client` (the application `client_id` names, if it exists).
pub fn check_authorize_request(
    params: &AuthorizeParams,
    client: Option<&Application>,
) -> AuthorizeCheck {
    let dup = |name: &str| params.duplicated.iter().any(|d| d == name);
    if dup("client_id") || dup("redirect_uri") {
        return AuthorizeCheck::ErrorPage(ErrorPageReason::DuplicateClientOrRedirect);
    }
    let Some(client_id) = params.client_id.as_deref().filter(|s| !s.is_empty()) else {
        return AuthorizeCheck::ErrorPage(ErrorPageReason::MissingClientId);
    };
    let Some(app) = client.filter(|a| a.client_id == client_id) else {
        return AuthorizeCheck::ErrorPage(ErrorPageReason::UnknownClient);
    };
    let Some(redirect_uri) = params.redirect_uri.as_deref().filter(|s| !s.is_empty()) else {
        return AuthorizeCheck::ErrorPage(ErrorPageReason::MissingRedirectUri);
    };
    if !app.has_redirect_uri(redirect_uri) {
        return AuthorizeCheck::ErrorPage(ErrorPageReason::UnregisteredRedirectUri);
    }

    // From here on the redirect URI is trusted; errors go back to the client.
    let state = params.state.clone().filter(|s| !s.is_empty());
    let fail = |error: &'static str, description: String| {
        AuthorizeCheck::Redirect(RedirectError {
            redirect_uri: redirect_uri.to_owned(),
            // A state too long to carry back is dropped rather than echoed.
            state: state.clone().filter(|s| s.len() <= MAX_STATE_LEN),
            error,
            description,
        })
    };

    if let Some(name) = params.duplicated.first() {
        return fail(
            "invalid_request",
            format!("parameter '{name}' was given more than once"),
        );
    }
    if params.request.is_some() {
        return fail(
            "request_not_supported",
            "request objects are not supported".into(),
        );
    }
    if params.request_uri.is_some() {
        return fail(
            "request_uri_not_supported",
            "request_uri is not supported".into(),
        );
    }
    match params.response_type.as_deref() {
        Some("code") => {}
        None | Some("") => return fail("invalid_request", "response_type is required".into()),
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            );
        }
    }
    if !app.allows_grant(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "this application is not allowed to use the authorization code flow".into(),
        );
    }
    match params.response_mode.as_deref() {
        None | Some("query") => {}
        Some(_) => {
            return fail(
                "invalid_request",
                "only response_mode=query is supported".into(),
            );
        }
    }
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return fail(
            "invalid_request",
            format!("state may be at most {MAX_STATE_LEN} characters"),
        );
    }
    let nonce = params.nonce.clone().filter(|s| !s.is_empty());
    if nonce.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return fail(
            "invalid_request",
            format!("nonce may be at most {MAX_STATE_LEN} characters"),
        );
    }

    let raw_scope = params.scope.as_deref().unwrap_or("");
    if raw_scope.len() > MAX_SCOPE_LEN {
        return fail(
            "invalid_scope",
            format!("scope may be at most {MAX_SCOPE_LEN} characters"),
        );
    }
    let mut scopes: Vec<String> = Vec::new();
    for s in raw_scope.split(' ').filter(|s| !s.is_empty()) {
        if SUPPORTED_SCOPES.contains(&s) && !scopes.iter().any(|k| k == s) {
            scopes.push(s.to_owned());
        }
    }
    if !scopes.iter().any(|s| s == "openid") {
        return fail("invalid_scope", "scope must include openid".into());
    }

    let code_challenge = match (
        params.code_challenge.as_deref(),
        params.code_challenge_method.as_deref(),
    ) {
        (None | Some(""), None) => None,
        (None | Some(""), Some(_)) => {
            return fail(
                "invalid_request",
                "code_challenge_method given without code_challenge".into(),
            );
        }
        (Some(ch), method) => match CodeChallenge::parse(ch, method) {
            Ok(c) => Some(c),
            Err(
                e @ (PkceError::PlainRefused
                | PkceError::UnknownMethod(_)
                | PkceError::MalformedChallenge),
            ) => {
                return fail("invalid_request", e.to_string());
            }
        },
    };
    if code_challenge.is_none() && app.client_type == ClientType::Public {
        return fail(
            "invalid_request",
            "PKCE is required for public clients: send code_challenge with code_challenge_method=S256".into(),
        );
    }

    let prompt = match parse_prompt(params.prompt.as_deref()) {
        Ok(p) => p,
        Err(msg) => return fail("invalid_request", msg),
    };
    let max_age = match params.max_age.as_deref() {
        None | Some("") => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return fail(
                    "invalid_request",
                    "max_age must be a non-negative integer of seconds".into(),
                );
            }
        },
    };
    // Hints are advisory: a malformed one is dropped, never an error.
    let login_hint = params
        .login_hint
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.len() <= MAX_UPN_LEN)
        .map(str::to_owned);
    let domain_hint = params
        .domain_hint
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.len() <= MAX_UPN_LEN)
        .map(str::to_owned);

    let acr = params
        .acr_values
        .as_deref()
        .filter(|v| v.len() <= MAX_ACR_VALUES_LEN)
        .and_then(crate::strength::requested);

    AuthorizeCheck::Proceed(AuthorizeRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint,
        domain_hint,
        acr,
    })
}

fn parse_prompt(raw: Option<&str>) -> Result<Prompt, String> {
    let Some(raw) = raw else {
        return Ok(Prompt::Default);
    };
    let values: Vec<&str> = raw.split(' ').filter(|s| !s.is_empty()).collect();
    let mut prompt = Prompt::Default;
    for v in &values {
        match *v {
            "none" => {
                if values.len() > 1 {
                    return Err("prompt=none cannot be combined with other values".into());
                }
                prompt = Prompt::None;
            }
            "login" => prompt = Prompt::Login,
            // No consent screen for first-party apps and one account per browser session:
            // accepted and satisfied by the normal flow.
            "consent" | "select_account" => {}
            other => {
                return Err(format!(
                    "prompt value '{}' is not supported",
                    other.chars().take(32).collect::<String>()
                ));
            }
        }
    }
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientAppType, RedirectUri, Timestamp};

    const CH: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn app(client_type: ClientType) -> Application {
        Application {
            id: uuid::Uuid::nil(),
            client_id: "app1".into(),
            display_name: "App".into(),
            client_type,
            redirect_uris: vec![RedirectUri::parse("https://app.example/cb").unwrap()],
            post_logout_redirect_uris: vec![],
            grant_types: crate::default_grants(client_type),
            client_app_type: ClientAppType::Browser,
            secret_hash: None,
            app_roles: vec![],
            created_at: Timestamp(0),
        }
    }

    fn good() -> AuthorizeParams {
        AuthorizeParams {
            client_id: Some("app1".into()),
            redirect_uri: Some("https://app.example/cb".into()),
            response_type: Some("code".into()),
            scope: Some("openid profile unknown openid".into()),
            state: Some("st".into()),
            nonce: Some("n".into()),
            code_challenge: Some(CH.into()),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        }
    }

    fn error_of(check: AuthorizeCheck) -> (&'static str, String) {
        match check {
            AuthorizeCheck::Redirect(r) => {
                assert_eq!(r.redirect_uri, "https://app.example/cb");
                (r.error, r.description)
            }
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_proceeds_with_known_scopes_only() {
        let a = app(ClientType::Public);
        match check_authorize_request(&good(), Some(&a)) {
            AuthorizeCheck::Proceed(r) => {
                assert_eq!(r.scopes, vec!["openid", "profile"]);
                assert_eq!(r.prompt, Prompt::Default);
                assert_eq!(r.state.as_deref(), Some("st"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_page_cases_never_redirect() {
        let a = app(ClientType::Public);
        let table: Vec<(AuthorizeParams, Option<&Application>, ErrorPageReason)> = vec![
            (
                AuthorizeParams {
                    client_id: None,
                    ..good()
                },
                Some(&a),
                ErrorPageReason::MissingClientId,
            ),
            (good(), None, ErrorPageReason::UnknownClient),
            (
                AuthorizeParams {
                    client_id: Some("other".into()),
                    ..good()
                },
                Some(&a),
                ErrorPageReason::UnknownClient,
            ),
            (
                AuthorizeParams {
                    redirect_uri: None,
                    ..good()
                },
                Some(&a),
                ErrorPageReason::MissingRedirectUri,
            ),
            (
                AuthorizeParams {
                    redirect_uri: Some("https://app.example/cb/".into()),
                    ..good()
                },
                Some(&a),
                ErrorPageReason::UnregisteredRedirectUri,
            ),
            (
                AuthorizeParams {
                    redirect_uri: Some("https://APP.example/cb".into()),
                    ..good()
                },
                Some(&a),
                ErrorPageReason::UnregisteredRedirectUri,
            ),
            (
                AuthorizeParams {
                    redirect_uri: Some("https://evil.example/cb".into()),
                    response_type: None,
                    ..good()
                },
                Some(&a),
                ErrorPageReason::UnregisteredRedirectUri,
            ),
            (
                AuthorizeParams {
                    duplicated: vec!["redirect_uri".into()],
                    ..good()
                },
                Some(&a),
                ErrorPageReason::DuplicateClientOrRedirect,
            ),
        ];
        for (params, client, want) in table {
            assert_eq!(
                check_authorize_request(&params, client),
                AuthorizeCheck::ErrorPage(want),
                "{params:?}"
            );
        }
    }

    #[test]
    fn redirect_error_cases() {
        let public = app(ClientType::Public);
        let conf = app(ClientType::Confidential);
        let table: Vec<(AuthorizeParams, &Application, &str)> = vec![
            (
                AuthorizeParams {
                    response_type: None,
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    response_type: Some("token".into()),
                    ..good()
                },
                &public,
                "unsupported_response_type",
            ),
            (
                AuthorizeParams {
                    scope: Some("profile".into()),
                    ..good()
                },
                &public,
                "invalid_scope",
            ),
            (
                AuthorizeParams {
                    scope: None,
                    ..good()
                },
                &public,
                "invalid_scope",
            ),
            (
                AuthorizeParams {
                    code_challenge: None,
                    code_challenge_method: None,
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge_method: Some("plain".into()),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    code_challenge_method: None,
                    ..good()
                },
                &conf,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    prompt: Some("none login".into()),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    prompt: Some("bogus".into()),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    max_age: Some("-1".into()),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    max_age: Some("abc".into()),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    response_mode: Some("fragment".into()),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    request: Some("x".into()),
                    ..good()
                },
                &public,
                "request_not_supported",
            ),
            (
                AuthorizeParams {
                    request_uri: Some("x".into()),
                    ..good()
                },
                &public,
                "request_uri_not_supported",
            ),
            (
                AuthorizeParams {
                    duplicated: vec!["scope".into()],
                    ..good()
                },
                &public,
                "invalid_request",
            ),
            (
                AuthorizeParams {
                    state: Some("s".repeat(MAX_STATE_LEN + 1)),
                    ..good()
                },
                &public,
                "invalid_request",
            ),
        ];
        for (params, client, want) in table {
            let (error, _) = error_of(check_authorize_request(&params, Some(client)));
            assert_eq!(error, want, "{params:?}");
        }
    }

    #[test]
    fn state_at_the_limit_is_carried_over_it_is_dropped() {
        let a = app(ClientType::Public);
        let at = AuthorizeParams {
            state: Some("s".repeat(MAX_STATE_LEN)),
            ..good()
        };
        assert!(matches!(
            check_authorize_request(&at, Some(&a)),
            AuthorizeCheck::Proceed(_)
        ));
        let over = AuthorizeParams {
            state: Some("s".repeat(MAX_STATE_LEN + 1)),
            ..good()
        };
        match check_authorize_request(&over, Some(&a)) {
            AuthorizeCheck::Redirect(r) => assert_eq!(r.state, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn confidential_clients_may_omit_pkce_and_prompts_parse() {
        let conf = app(ClientType::Confidential);
        let p = AuthorizeParams {
            code_challenge: None,
            code_challenge_method: None,
            prompt: Some("login consent".into()),
            max_age: Some("0".into()),
            ..good()
        };
        match check_authorize_request(&p, Some(&conf)) {
            AuthorizeCheck::Proceed(r) => {
                assert!(r.code_challenge.is_none());
                assert_eq!(r.prompt, Prompt::Login);
                assert_eq!(r.max_age, Some(0));
            }
            other => panic!("{other:?}"),
        }
        let none = AuthorizeParams {
            prompt: Some("none".into()),
            ..good()
        };
        assert!(matches!(
            check_authorize_request(&none, Some(&conf)),
            AuthorizeCheck::Proceed(AuthorizeRequest {
                prompt: Prompt::None,
                ..
            })
        ));
    }

    #[test]
    fn acr_values_ask_for_the_strongest_known_strength() {
        let conf = app(ClientType::Confidential);
        let with = |v: &str| AuthorizeParams {
            acr_values: Some(v.into()),
            ..good()
        };
        let acr = |p: &AuthorizeParams| match check_authorize_request(p, Some(&conf)) {
            AuthorizeCheck::Proceed(r) => r.acr,
            other => panic!("{other:?}"),
        };
        use crate::strength::BuiltIn;
        assert_eq!(acr(&good()), None);
        assert_eq!(acr(&with("mfa")), Some(BuiltIn::Mfa));
        assert_eq!(
            acr(&with("urn:x mfa phishingResistantMfa")),
            Some(BuiltIn::PhishingResistantMfa)
        );
        assert_eq!(
            acr(&with("urn:unknown")),
            None,
            "unknown values are ignored"
        );
        // The edge of the length limit: read at the limit, ignored past it.
        let at = format!("{}mfa", " ".repeat(MAX_ACR_VALUES_LEN - 3));
        assert_eq!(acr(&with(&at)), Some(BuiltIn::Mfa));
        let over = format!("{}mfa", " ".repeat(MAX_ACR_VALUES_LEN - 2));
        assert_eq!(acr(&with(&over)), None);
    }

    #[test]
    fn scope_length_edge() {
        let a = app(ClientType::Public);
        let pad = " ".repeat(MAX_SCOPE_LEN - "openid".len());
        let at = AuthorizeParams {
            scope: Some(format!("openid{pad}")),
            ..good()
        };
        assert!(matches!(
            check_authorize_request(&at, Some(&a)),
            AuthorizeCheck::Proceed(_)
        ));
        let over = AuthorizeParams {
            scope: Some(format!("openid{pad} ")),
            ..good()
        };
        assert_eq!(
            error_of(check_authorize_request(&over, Some(&a))).0,
            "invalid_scope"
        );
    }

    #[test]
    fn client_without_code_grant_is_unauthorized() {
        let mut a = app(ClientType::Confidential);
        a.grant_types = vec![GrantType::ClientCredentials];
        let (error, _) = error_of(check_authorize_request(&good(), Some(&a)));
        assert_eq!(error, "unauthorized_client");
    }
}
