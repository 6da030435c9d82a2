//! Cutover as an OpenID Connect relying party of an upstream (legacy) identity provider.
//!
//! This crate speaks the upstream's vocabulary and nothing else: discovery and JWKS (fetched
//! once and cached, refreshed when the IdP rotates its keys), the authorization URL for a code
//! flow with PKCE S256, the code exchange, and ID-token validation (signature, issuer,
//! audience, expiry, nonce). Randomness (state, nonce, PKCE verifier) and time come from the
//! caller; deciding who the token names is `cutover_core::federation`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cutover_core::Timestamp;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// How long discovery and JWKS stay cached before they are fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(60 * 60);
/// After a failed discovery, wait this long before asking the upstream again (the sign-in
/// fails fast meanwhile instead of piling up requests against a dead IdP).
pub const DISCOVERY_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Every call to the upstream (discovery, JWKS, token) gives up after this long.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the upstream failed, by what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The upstream could not be reached, timed out or answered with a server error.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The upstream refused the request (for example `invalid_grant` or `invalid_client`).
    #[error("the identity provider refused the request: {0}")]
    Refused(String),
    /// The ID token failed validation.
    #[error("the ID token is invalid: {0}")]
    InvalidToken(String),
    /// The registration cannot work as configured (bad issuer, discovery mismatch).
    #[error("the identity provider is misconfigured: {0}")]
    Misconfigured(String),
}

/// Every claim of the ID token, kept as JSON for the claim-mapping rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AllClaims {
    #[serde(flatten)]
    pub claims: Map<String, Value>,
}

impl AdditionalClaims for AllClaims {}

type IdTokenFieldsAll = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResponseAll = StandardTokenResponse<IdTokenFieldsAll, CoreTokenType>;

type Client = openidconnect::Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponseAll,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// One registered upstream, as this crate needs it (the secret in clear, for this call only).
pub struct UpstreamSettings<'a> {
    pub id: Uuid,
    /// Changes when the registration changes, so cached metadata of an old issuer is dropped.
    pub version: i64,
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub scopes: &'a [String],
    /// Cutover's callback (`<issuer>/federation/callback`).
    pub redirect_uri: &'a str,
}

/// The per-redirect secrets the caller generated and keeps server-side.
pub struct PendingAuth<'a> {
    pub state: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
}

/// The verified ID token's subject and claims (every claim, standard ones included, by name).
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub claims: Map<String, Value>,
}

struct Cached {
    version: i64,
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// The upstream relying party: an HTTP client and the metadata cache, shared by all sign-ins.
pub struct Federation {
    http: reqwest::Client,
    cache: Mutex<HashMap<Uuid, Cached>>,
    failures: Mutex<HashMap<Uuid, (Instant, String)>>,
}

impl Federation {
    /// An HTTP client that follows no redirects (discovery and tokens are never redirected:
    /// following one could be steered to an internal address) and gives up after
    /// [`UPSTREAM_TIMEOUT`].
    pub fn new() -> Result<Self, FederationError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .connect_timeout(UPSTREAM_TIMEOUT)
            .build()
            .map_err(|e| FederationError::Misconfigured(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Drop the cached metadata of one upstream (after its registration changed or was deleted).
    pub fn forget(&self, id: Uuid) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    async fn metadata(
        &self,
        s: &UpstreamSettings<'_>,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, FederationError> {
        if !refresh {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.get(&s.id)
                && c.version == s.version
                && c.fetched.elapsed() < METADATA_TTL
            {
                return Ok(c.metadata.clone());
            }
        }
        if let Some((at, why)) = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&s.id)
            && at.elapsed() < DISCOVERY_RETRY_AFTER
        {
            return Err(FederationError::Unavailable(why.clone()));
        }
        let issuer = IssuerUrl::new(s.issuer.to_owned())
            .map_err(|e| FederationError::Misconfigured(format!("issuer: {e}")))?;
        let fetched = CoreProviderMetadata::discover_async(issuer, &self.http).await;
        let metadata = match fetched {
            Ok(m) => m,
            Err(e) => {
                let why = discovery_error(s.issuer, &e);
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(s.id, (Instant::now(), why.clone()));
                return Err(match e {
                    openidconnect::DiscoveryError::Validation(_) => {
                        FederationError::Misconfigured(why)
                    }
                    _ => FederationError::Unavailable(why),
                });
            }
        };
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&s.id);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            s.id,
            Cached {
                version: s.version,
                metadata: metadata.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(metadata)
    }

    fn client(
        &self,
        s: &UpstreamSettings<'_>,
        metadata: CoreProviderMetadata,
    ) -> Result<Client, FederationError> {
        let auth_type = match metadata.token_endpoint_auth_methods_supported() {
            Some(methods)
                if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                    && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
            {
                AuthType::RequestBody
            }
            _ => AuthType::BasicAuth,
        };
        let redirect = RedirectUrl::new(s.redirect_uri.to_owned())
            .map_err(|e| FederationError::Misconfigured(format!("redirect URI: {e}")))?;
        let client: Client = openidconnect::Client::from_provider_metadata(
            metadata,
            ClientId::new(s.client_id.to_owned()),
            Some(ClientSecret::new(s.client_secret.to_owned())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type);
        Ok(client)
    }

    /// The URL to send the browser to: code flow, PKCE S256, `state`, `nonce`, the user's
    /// name as `login_hint` when known, and `prompt=login` when the application asked Cutover
    /// for a fresh sign-in (the upstream must not answer from its own session then).
    pub async fn authorization_url(
        &self,
        s: &UpstreamSettings<'_>,
        pending: &PendingAuth<'_>,
        login_hint: Option<&str>,
        prompt_login: bool,
    ) -> Result<String, FederationError> {
        let metadata = self.metadata(s, false).await?;
        let client = self.client(s, metadata)?;
        let state = pending.state.to_owned();
        let nonce = pending.nonce.to_owned();
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pending.pkce_verifier.to_owned(),
        ));
        let mut req = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in s.scopes.iter().filter(|sc| sc.as_str() != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = login_hint {
            req = req.add_extra_param("login_hint", hint.to_owned());
        }
        if prompt_login {
            req = req.add_prompt(openidconnect::core::CoreAuthPrompt::Login);
        }
        let (url, _, _) = req.url();
        Ok(url.to_string())
    }

    /// Redeem the code at the upstream's token endpoint and validate the ID token (signature
    /// against the cached JWKS — fetched again once if no key matches, for key rotation —,
    /// issuer, audience, expiry at `now`, nonce). Only asymmetric signatures are accepted: a
    /// leaked client secret must not be enough to mint ID tokens.
    pub async fn redeem(
        &self,
        s: &UpstreamSettings<'_>,
        pending: &PendingAuth<'_>,
        code: &str,
        now: Timestamp,
    ) -> Result<VerifiedIdentity, FederationError> {
        let metadata = self.metadata(s, false).await?;
        let client = self.client(s, metadata)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| FederationError::Misconfigured(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token = response.id_token().ok_or_else(|| {
            FederationError::InvalidToken("the token response carries no id_token".into())
        })?;
        let nonce = Nonce::new(pending.nonce.to_owned());
        let verify = |client: &Client| {
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(ASYMMETRIC_ALGS.to_vec())
                .set_time_fn(move || {
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now.millis())
                        .unwrap_or_default()
                });
            id_token.claims(&verifier, &nonce).map(|c| {
                // The standard claims a registration may name (`upnClaim`) are parsed
                // into their own fields: put them back beside the others.
                let mut claims = c.additional_claims().claims.clone();
                claims.insert("sub".into(), Value::String(c.subject().to_string()));
                if let Some(v) = c.preferred_username() {
                    claims.insert("preferred_username".into(), Value::String(v.to_string()));
                }
                if let Some(v) = c.email() {
                    claims.insert("email".into(), Value::String(v.to_string()));
                }
                VerifiedIdentity {
                    subject: c.subject().as_str().to_owned(),
                    claims,
                }
            })
        };
        match verify(&client) {
            Ok(v) => Ok(v),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The IdP may have rotated its keys since discovery: fetch once more.
                tracing::info!(idp = %s.id, "no upstream key matched the ID token; fetching the JWKS again");
                let metadata = self.metadata(s, true).await?;
                let client = self.client(s, metadata)?;
                verify(&client).map_err(|e| FederationError::InvalidToken(e.to_string()))
            }
            Err(e) => Err(FederationError::InvalidToken(e.to_string())),
        }
    }
}

const ASYMMETRIC_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

fn discovery_error<E: std::error::Error>(
    issuer: &str,
    e: &openidconnect::DiscoveryError<E>,
) -> String {
    use std::error::Error as _;
    let mut msg = format!("discovery at {issuer}/.well-known/openid-configuration failed: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> FederationError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let code = r.error().as_ref().to_owned();
            let detail = r
                .error_description()
                .map(|d| format!("{code}: {d}"))
                .unwrap_or(code.clone());
            if matches!(code.as_str(), "server_error" | "temporarily_unavailable") {
                FederationError::Unavailable(format!("token endpoint: {detail}"))
            } else {
                FederationError::Refused(format!("token endpoint: {detail}"))
            }
        }
        RequestTokenError::Request(e) => {
            FederationError::Unavailable(format!("token endpoint unreachable: {e}"))
        }
        RequestTokenError::Parse(e, body) => {
            let body = String::from_utf8_lossy(&body);
            let short: String = body.chars().take(200).collect();
            FederationError::Unavailable(format!(
                "token endpoint answered something that is not a token response ({e}): {short}"
            ))
        }
        RequestTokenError::Other(s) => FederationError::Unavailable(format!("token endpoint: {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_upstream_is_unavailable_and_not_asked_again_at_once() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = Federation::new().unwrap();
        let issuer = format!("http://127.0.0.1:{port}");
        let scopes = vec!["openid".to_owned()];
        let s = UpstreamSettings {
            id: Uuid::new_v4(),
            version: 1,
            issuer: &issuer,
            client_id: "c",
            client_secret: "s",
            scopes: &scopes,
            redirect_uri: "http://127.0.0.1:1/federation/callback",
        };
        let p = PendingAuth {
            state: "st",
            nonce: "n",
            pkce_verifier: "v-0123456789012345678901234567890123456789012",
        };
        let first = f.authorization_url(&s, &p, None, false).await.unwrap_err();
        assert!(
            matches!(first, FederationError::Unavailable(ref m) if m.contains(&issuer)),
            "{first}"
        );
        // The failure is remembered: the second call answers without a connection attempt and
        // gives the same explanation.
        let second = f.authorization_url(&s, &p, None, false).await.unwrap_err();
        assert_eq!(second.to_string(), first.to_string());
        f.forget(s.id);
        assert!(f.failures.lock().unwrap().is_empty());
    }

    #[test]
    fn token_errors_map_by_what_the_operator_can_do() {
        let resp = |code: &str| {
            RequestTokenError::<std::io::Error, _>::ServerResponse(StandardErrorResponse::new(
                CoreErrorResponseType::Extension(code.into()),
                None,
                None,
            ))
        };
        assert!(matches!(
            token_error(resp("server_error")),
            FederationError::Unavailable(_)
        ));
        assert!(matches!(
            token_error(resp("invalid_grant")),
            FederationError::Refused(_)
        ));
    }
}
