//! Redeeming an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6): whether the token
//! request matches what the code was issued for. A mismatch burns the code's grant.

use crate::pkce::CodeChallenge;

/// What the code was issued for.
#[derive(Debug, Clone, Copy)]
pub struct IssuedCode<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub code_challenge: Option<&'a str>,
}

/// What the token request presents.
#[derive(Debug, Clone, Copy)]
pub struct Redemption<'a> {
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRejection {
    OtherClient,
    RedirectMismatch,
    PkceFailed,
    PkceUnexpected,
}

impl CodeRejection {
    /// Why the grant was revoked, for the grant row and the log.
    pub fn revoke_reason(self) -> &'static str {
        match self {
            Self::OtherClient => "codeClientMismatch",
            Self::RedirectMismatch => "codeRedirectMismatch",
            Self::PkceFailed => "pkceFailed",
            Self::PkceUnexpected => "pkceUnexpected",
        }
    }
    /// The `error_description` the client gets with `invalid_grant`.
    pub fn description(self) -> &'static str {
        match self {
            Self::OtherClient => "the authorization code was issued to another client",
            Self::RedirectMismatch => "redirect_uri does not match the authorization request",
            Self::PkceFailed => "code_verifier does not match the code_challenge",
            Self::PkceUnexpected => {
                "code_verifier sent but the authorization request had no code_challenge"
            }
        }
    }
}

/// Judge a redemption. PKCE: a code issued with a challenge needs the matching verifier; a
/// verifier for a code issued without one is refused (RFC 9700 §2.1.1, downgrade protection).
pub fn judge_code_redemption(
    code: IssuedCode<'_>,
    req: Redemption<'_>,
) -> Result<(), CodeRejection> {
    if code.client_id != req.client_id {
        return Err(CodeRejection::OtherClient);
    }
    if req.redirect_uri != Some(code.redirect_uri) {
        return Err(CodeRejection::RedirectMismatch);
    }
    match (code.code_challenge, req.code_verifier) {
        (Some(ch), Some(v)) if CodeChallenge::from_stored(ch.to_owned()).verify(v) => Ok(()),
        (Some(_), _) => Err(CodeRejection::PkceFailed),
        (None, Some(_)) => Err(CodeRejection::PkceUnexpected),
        (None, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkce::s256_challenge;
    use proptest::prelude::*;

    const V: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn redemption_table() {
        let ch = s256_challenge(V);
        let code = IssuedCode {
            client_id: "c1",
            redirect_uri: "https://a.example/cb",
            code_challenge: Some(&ch),
        };
        let plain = IssuedCode {
            code_challenge: None,
            ..code
        };
        let ok = Redemption {
            client_id: "c1",
            redirect_uri: Some("https://a.example/cb"),
            code_verifier: Some(V),
        };
        let table = [
            (code, ok, Ok(())),
            (
                code,
                Redemption {
                    client_id: "c2",
                    ..ok
                },
                Err(CodeRejection::OtherClient),
            ),
            (
                code,
                Redemption {
                    redirect_uri: None,
                    ..ok
                },
                Err(CodeRejection::RedirectMismatch),
            ),
            (
                code,
                Redemption {
                    redirect_uri: Some("https://a.example/cb/"),
                    ..ok
                },
                Err(CodeRejection::RedirectMismatch),
            ),
            (
                code,
                Redemption {
                    code_verifier: None,
                    ..ok
                },
                Err(CodeRejection::PkceFailed),
            ),
            (
                code,
                Redemption {
                    code_verifier: Some("x"),
                    ..ok
                },
                Err(CodeRejection::PkceFailed),
            ),
            (plain, ok, Err(CodeRejection::PkceUnexpected)),
            (
                plain,
                Redemption {
                    code_verifier: None,
                    ..ok
                },
                Ok(()),
            ),
        ];
        for (c, r, want) in table {
            assert_eq!(judge_code_redemption(c, r), want, "{c:?} {r:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_only_when_everything_matches(
            same_client: bool, same_uri: bool, with_challenge: bool, verifier in proptest::option::of("[A-Za-z0-9]{43,50}"),
        ) {
            let ch = s256_challenge(V);
            let code = IssuedCode { client_id: "c1", redirect_uri: "u", code_challenge: with_challenge.then_some(ch.as_str()) };
            let req = Redemption {
                client_id: if same_client { "c1" } else { "c2" },
                redirect_uri: Some(if same_uri { "u" } else { "v" }),
                code_verifier: verifier.as_deref(),
            };
            let pkce_ok = if with_challenge { verifier.as_deref() == Some(V) } else { verifier.is_none() };
            prop_assert_eq!(judge_code_redemption(code, req).is_ok(), same_client && same_uri && pkce_ok);
        }
    }
}
