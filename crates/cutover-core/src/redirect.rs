//! Redirect URIs: parsed once at registration, compared exactly ever after.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_REDIRECT_URI_LEN;

/// A redirect URI an application registered. Comparison is exact string equality (RFC 9700
/// §4.1.3): no prefix matching, no wildcards, no normalisation beyond what was stored.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RedirectUri(String);

impl RedirectUri {
    /// Accepts `https://…`, `http://` only on a loopback host (RFC 8252 §7.3), and private-use
    /// schemes of native apps that contain a dot (RFC 8252 §7.1). Never a fragment.
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.is_empty() {
            return Err("a redirect URI must not be empty".into());
        }
        if input.len() > MAX_REDIRECT_URI_LEN {
            return Err(format!(
                "a redirect URI may be at most {MAX_REDIRECT_URI_LEN} characters"
            ));
        }
        if input.trim() != input {
            return Err("a redirect URI must not start or end with whitespace".into());
        }
        let url =
            url::Url::parse(input).map_err(|e| format!("'{input}' is not an absolute URI: {e}"))?;
        if url.fragment().is_some() {
            return Err("a redirect URI must not contain a fragment (#…)".into());
        }
        match url.scheme() {
            "https" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err("an https redirect URI needs a host".into());
                }
            }
            "http" => {
                let loopback = matches!(
                    url.host(),
                    Some(url::Host::Ipv4(ip)) if ip.is_loopback()
                ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || url.host_str() == Some("localhost");
                if !loopback {
                    return Err("plain http redirect URIs are allowed only on a loopback host (127.0.0.1, [::1], localhost); use https".into());
                }
            }
            "javascript" | "data" | "file" | "vbscript" => {
                return Err(format!(
                    "the '{}' scheme is not allowed in a redirect URI",
                    url.scheme()
                ));
            }
            other if other.contains('.') => {}
            other => {
                return Err(format!(
                    "'{other}:' is not allowed: use https, http on loopback, or a reverse-domain private scheme such as com.example.app:"
                ));
            }
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for RedirectUri {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<RedirectUri> for String {
    fn from(value: RedirectUri) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_table() {
        let ok = [
            "https://app.contoso.example/callback",
            "https://app.contoso.example/cb?x=1",
            "http://127.0.0.1:8080/callback",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "com.contoso.app:/oauth2redirect",
        ];
        for u in ok {
            assert!(RedirectUri::parse(u).is_ok(), "{u} should be accepted");
        }
        let bad = [
            "",
            " https://app.contoso.example/cb",
            "/relative",
            "https://app.contoso.example/cb#frag",
            "http://app.contoso.example/cb",
            "http://10.0.0.1/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
        ];
        for u in bad {
            assert!(RedirectUri::parse(u).is_err(), "{u} should be refused");
        }
        let long = format!("https://a.example/{}", "x".repeat(MAX_REDIRECT_URI_LEN));
        assert!(RedirectUri::parse(&long).is_err());
        let edge = format!(
            "https://a.example/{}",
            "x".repeat(MAX_REDIRECT_URI_LEN - 18)
        );
        assert_eq!(edge.len(), MAX_REDIRECT_URI_LEN);
        assert!(RedirectUri::parse(&edge).is_ok());
    }
}
