//! Parsed names: a [`UserPrincipalName`] or [`DomainName`] that exists has already been checked.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_DOMAIN_LEN, MAX_UPN_LEN, MAX_UPN_LOCAL_LEN};

/// Why a name was refused; the message is safe to show to whoever typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("a sign-in name has the form name@domain")]
    MissingAt,
    #[error(
        "the part before @ may use letters, digits and . - _ ' + ! # ^ ~, not start or end with a dot, nor hold two dots in a row"
    )]
    BadLocalPart,
    #[error("'{0}' is not a valid domain name")]
    BadDomain(String),
}

/// A DNS domain name in lower case, such as `contoso.example`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let s = input.trim().trim_end_matches('.');
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_DOMAIN_LEN {
            return Err(NameError::TooLong {
                max: MAX_DOMAIN_LEN,
            });
        }
        let lower = s.to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(NameError::BadDomain(input.chars().take(80).collect()));
        }
        Ok(Self(lower))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl TryFrom<String> for DomainName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<DomainName> for String {
    fn from(value: DomainName) -> Self {
        value.0
    }
}

/// A user principal name: the sign-in name `local@domain`. Unique case-insensitively: the
/// local part keeps the case it was created with for display, [`Self::normalized`] is the key.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserPrincipalName {
    display: String,
    domain: DomainName,
}

impl UserPrincipalName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > MAX_UPN_LEN {
            return Err(NameError::TooLong { max: MAX_UPN_LEN });
        }
        let (local, domain) = s.rsplit_once('@').ok_or(NameError::MissingAt)?;
        if local.is_empty()
            || local.len() > MAX_UPN_LOCAL_LEN
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-'+!#^~".contains(c))
        {
            return Err(NameError::BadLocalPart);
        }
        let domain = DomainName::parse(domain)?;
        Ok(Self {
            display: format!("{local}@{}", domain.as_str()),
            domain,
        })
    }
    /// The name as created (domain lower-cased).
    pub fn as_str(&self) -> &str {
        &self.display
    }
    /// The lower-case form every lookup and uniqueness check uses.
    pub fn normalized(&self) -> String {
        self.display.to_ascii_lowercase()
    }
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }
}

impl fmt::Debug for UserPrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.display, f)
    }
}
impl fmt::Display for UserPrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}
impl TryFrom<String> for UserPrincipalName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<UserPrincipalName> for String {
    fn from(value: UserPrincipalName) -> Self {
        value.display
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn upn_table() {
        let cases: &[(&str, Result<&str, NameError>)] = &[
            ("user1@contoso.example", Ok("user1@contoso.example")),
            (
                "  User.One@Contoso.Example ",
                Ok("User.One@contoso.example"),
            ),
            ("o'brien+x@corp.example", Ok("o'brien+x@corp.example")),
            ("", Err(NameError::Empty)),
            ("   ", Err(NameError::Empty)),
            ("user1", Err(NameError::MissingAt)),
            ("@contoso.example", Err(NameError::BadLocalPart)),
            (".a@contoso.example", Err(NameError::BadLocalPart)),
            ("a.@contoso.example", Err(NameError::BadLocalPart)),
            ("a..b@contoso.example", Err(NameError::BadLocalPart)),
            ("a b@contoso.example", Err(NameError::BadLocalPart)),
            ("a<script>@contoso.example", Err(NameError::BadLocalPart)),
            ("a@localhost", Err(NameError::BadDomain("localhost".into()))),
            (
                "a@-x.example",
                Err(NameError::BadDomain("-x.example".into())),
            ),
        ];
        for (input, want) in cases {
            let got = UserPrincipalName::parse(input);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g.as_str(), *w, "input {input:?}"),
                (Err(w), Err(g)) => assert_eq!(g, w, "input {input:?}"),
                _ => panic!("input {input:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn upn_length_edges() {
        let local_max = "a".repeat(MAX_UPN_LOCAL_LEN);
        assert!(UserPrincipalName::parse(&format!("{local_max}@c.example")).is_ok());
        let local_over = "a".repeat(MAX_UPN_LOCAL_LEN + 1);
        assert_eq!(
            UserPrincipalName::parse(&format!("{local_over}@c.example")),
            Err(NameError::BadLocalPart)
        );
        let long_domain = format!("{}.example", ["abcdefghij"; 30].join("."));
        let too_long = format!("a@{long_domain}");
        assert!(too_long.len() > MAX_UPN_LEN);
        assert_eq!(
            UserPrincipalName::parse(&too_long),
            Err(NameError::TooLong { max: MAX_UPN_LEN })
        );
    }

    #[test]
    fn domain_length_edge() {
        let label = "a".repeat(63);
        let mut name = format!("{label}.{label}.{label}.");
        name.push_str(&"b".repeat(MAX_DOMAIN_LEN - name.len() - 8));
        name.push_str(".example");
        assert_eq!(name.len(), MAX_DOMAIN_LEN);
        assert!(DomainName::parse(&name).is_ok());
        let over = format!("c{name}");
        assert_eq!(
            DomainName::parse(&over),
            Err(NameError::TooLong {
                max: MAX_DOMAIN_LEN
            })
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = UserPrincipalName::parse(&s);
            let _ = DomainName::parse(&s);
        }

        #[test]
        fn normalized_is_case_insensitive(local in "[a-zA-Z0-9]{1,20}", dom in "[a-zA-Z]{1,10}") {
            let a = UserPrincipalName::parse(&format!("{local}@{dom}.example")).unwrap();
            let b = UserPrincipalName::parse(&format!("{}@{}.EXAMPLE", local.to_uppercase(), dom.to_uppercase())).unwrap();
            prop_assert_eq!(a.normalized(), b.normalized());
        }

        #[test]
        fn parsed_roundtrips(local in "[a-z0-9][a-z0-9._-]{0,20}[a-z0-9]", dom in "[a-z]{1,10}") {
            let upn = UserPrincipalName::parse(&format!("{local}@{dom}.example"));
            if let Ok(upn) = upn {
                let again = UserPrincipalName::parse(upn.as_str()).unwrap();
                prop_assert_eq!(again, upn);
            }
        }
    }
}
