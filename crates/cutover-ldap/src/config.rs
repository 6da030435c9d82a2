//! Connector configuration (a section of the sync server's TOML) and its validation.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::LdapError;
use crate::filter::check_filter;

/// How to reach and read the directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct LdapConfig {
    /// `ldap://host[:389]` or `ldaps://host[:636]`.
    pub url: String,
    /// The account the connector binds as (simple bind).
    pub bind_dn: String,
    /// File holding the bind password, read at each connect; trailing newlines are ignored.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Name of an environment variable holding the bind password (instead of a file).
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file with the CA certificate(s) to trust; default: the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Limit for each operation (connect, TLS, bind, each page of a search), in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Entries per page of a paged search (RFC 2696), 1..=10000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The attribute that identifies an entry for its whole life: `entryUUID` (OpenLDAP and
    /// most RFC 4530 directories) or `objectGUID` (Active Directory; binary, given as base64).
    #[serde(default = "default_anchor_attribute")]
    pub anchor_attribute: String,
    pub users: SearchScope,
    pub groups: SearchScope,
}

/// Where to look for one kind of object.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SearchScope {
    pub base_dn: String,
    /// An RFC 4515 filter in parentheses, used as written.
    #[serde(default = "default_filter")]
    pub filter: String,
    #[serde(default)]
    pub scope: ScopeKind,
}

/// How deep below `base_dn` to search.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// `base_dn` and everything below it.
    #[default]
    Subtree,
    /// Only the entries directly below `base_dn`.
    OneLevel,
}

impl From<ScopeKind> for ldap3::Scope {
    fn from(s: ScopeKind) -> Self {
        match s {
            ScopeKind::Subtree => ldap3::Scope::Subtree,
            ScopeKind::OneLevel => ldap3::Scope::OneLevel,
        }
    }
}

/// Which configured scope a search reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectSet {
    Users,
    Groups,
}

impl fmt::Display for ObjectSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Users => "users",
            Self::Groups => "groups",
        })
    }
}

pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_PAGE_SIZE: u32 = 500;
pub const MAX_PAGE_SIZE: u32 = 10_000;
pub const MAX_TIMEOUT_SECS: u64 = 3_600;
pub const DEFAULT_ANCHOR_ATTRIBUTE: &str = "entryUUID";
pub const DEFAULT_FILTER: &str = "(objectClass=*)";

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}
fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}
fn default_anchor_attribute() -> String {
    DEFAULT_ANCHOR_ATTRIBUTE.to_owned()
}
fn default_filter() -> String {
    DEFAULT_FILTER.to_owned()
}

/// A loaded password. Its `Debug` never shows the value, and nothing here displays it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl SearchScope {
    /// A scope with the default filter and subtree scope.
    pub fn new(base_dn: impl Into<String>) -> Self {
        Self {
            base_dn: base_dn.into(),
            filter: default_filter(),
            scope: ScopeKind::default(),
        }
    }

    fn validate(&self, name: &str) -> Result<(), LdapError> {
        if self.base_dn.trim().is_empty() {
            return Err(LdapError::config(
                format!("{name}.base_dn"),
                "is empty; give the DN to search under, e.g. ou=people,dc=example,dc=com",
            ));
        }
        if !self.base_dn.contains('=') {
            return Err(LdapError::config(
                format!("{name}.base_dn"),
                format!(
                    "{:?} is not a DN (expected attr=value[,...], e.g. ou=people,dc=example,dc=com)",
                    self.base_dn
                ),
            ));
        }
        check_filter(&self.filter).map_err(|p| LdapError::config(format!("{name}.filter"), p))
    }
}

impl LdapConfig {
    /// A configuration with every default: password from `bind_password_file`.
    pub fn new(
        url: impl Into<String>,
        bind_dn: impl Into<String>,
        bind_password_file: impl Into<PathBuf>,
        users: SearchScope,
        groups: SearchScope,
    ) -> Self {
        Self {
            url: url.into(),
            bind_dn: bind_dn.into(),
            bind_password_file: Some(bind_password_file.into()),
            bind_password_env: None,
            starttls: false,
            ca_file: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            page_size: DEFAULT_PAGE_SIZE,
            anchor_attribute: default_anchor_attribute(),
            users,
            groups,
        }
    }

    /// The scope configured for `which`.
    pub fn scope(&self, which: ObjectSet) -> &SearchScope {
        match which {
            ObjectSet::Users => &self.users,
            ObjectSet::Groups => &self.groups,
        }
    }

    /// Check every setting; the error names the field. (Files are not opened here.)
    pub fn validate(&self) -> Result<(), LdapError> {
        let url = self.parsed_url()?;
        let tls_scheme = url.scheme() == "ldaps";
        if self.starttls && tls_scheme {
            return Err(LdapError::config(
                "starttls",
                "must be false with an ldaps:// url (ldaps is TLS from the start); use ldap:// with starttls = true, or ldaps:// alone",
            ));
        }
        if self.ca_file.is_some() && !tls_scheme && !self.starttls {
            return Err(LdapError::config(
                "ca_file",
                "is set but the connection does not use TLS: use an ldaps:// url or set starttls = true",
            ));
        }
        if self.bind_dn.trim().is_empty() {
            return Err(LdapError::config(
                "bind_dn",
                "is empty; the connector needs an account to bind as (anonymous binds are not used)",
            ));
        }
        // A DN; Active Directory also takes user@domain and DOMAIN\user as simple bind names.
        if !self.bind_dn.contains(['=', '@', '\\']) {
            return Err(LdapError::config(
                "bind_dn",
                format!(
                    "{:?} is not a DN (expected e.g. uid=svc-sync,ou=people,dc=example,dc=com; Active Directory also takes svc-sync@example.com)",
                    self.bind_dn
                ),
            ));
        }
        match (&self.bind_password_file, &self.bind_password_env) {
            (None, None) => {
                return Err(LdapError::config(
                    "bind_password_file",
                    "set bind_password_file (a file holding the password) or bind_password_env (the name of an environment variable holding it)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(LdapError::config(
                    "bind_password_env",
                    "set only one of bind_password_file and bind_password_env",
                ));
            }
            (Some(path), None) if path.as_os_str().is_empty() => {
                return Err(LdapError::config("bind_password_file", "is empty"));
            }
            (None, Some(name)) if name.is_empty() || name.contains('=') || name.contains('\0') => {
                return Err(LdapError::config(
                    "bind_password_env",
                    format!("{name:?} is not an environment variable name"),
                ));
            }
            _ => {}
        }
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(LdapError::config(
                "timeout_secs",
                format!("must be 1..={MAX_TIMEOUT_SECS}, got {}", self.timeout_secs),
            ));
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(LdapError::config(
                "page_size",
                format!("must be 1..={MAX_PAGE_SIZE}, got {}", self.page_size),
            ));
        }
        check_attribute_name(&self.anchor_attribute)
            .map_err(|p| LdapError::config("anchor_attribute", p))?;
        self.users.validate("users")?;
        self.groups.validate("groups")?;
        Ok(())
    }

    pub(crate) fn parsed_url(&self) -> Result<url::Url, LdapError> {
        let bad = |p: String| LdapError::config("url", p);
        let url = url::Url::parse(self.url.trim()).map_err(|e| {
            bad(format!(
                "{:?} is not a URL ({e}); expected ldap://host:389 or ldaps://host:636",
                self.url
            ))
        })?;
        if !matches!(url.scheme(), "ldap" | "ldaps") {
            return Err(bad(format!(
                "scheme {:?} is not supported; use ldap:// (optionally with starttls = true) or ldaps://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad(format!("{:?} has no host", self.url)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "must not contain credentials; use bind_dn and bind_password_file".to_owned(),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(format!(
                "{:?} has a DN, attributes or other parts after the host; give only ldap[s]://host[:port] and set base DNs in users/groups",
                self.url
            )));
        }
        Ok(url)
    }

    /// Where the password comes from, for messages (never the password itself).
    pub fn password_origin(&self) -> String {
        match (&self.bind_password_file, &self.bind_password_env) {
            (Some(path), _) => format!("bind_password_file {}", path.display()),
            (None, Some(name)) => format!("bind_password_env {name}"),
            (None, None) => "the configuration (no password source set)".to_owned(),
        }
    }

    /// Read the bind password from its file (trailing CR/LF removed) or environment variable.
    pub async fn load_password(&self) -> Result<Secret, LdapError> {
        let value = match (&self.bind_password_file, &self.bind_password_env) {
            (Some(path), _) => {
                let text = tokio::fs::read_to_string(path).await.map_err(|error| {
                    LdapError::PasswordFile {
                        path: path.clone(),
                        error,
                    }
                })?;
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
            (None, Some(name)) => {
                std::env::var(name).map_err(|_| LdapError::PasswordEnv { name: name.clone() })?
            }
            (None, None) => {
                return Err(LdapError::config(
                    "bind_password_file",
                    "set bind_password_file or bind_password_env",
                ));
            }
        };
        if value.is_empty() {
            return Err(LdapError::EmptyPassword {
                origin: self.password_origin(),
            });
        }
        Ok(Secret(value))
    }
}

/// An attribute description without options: a name (`entryUUID`) or an OID (`1.3.6.1.1.16.4`).
fn check_attribute_name(name: &str) -> Result<(), String> {
    let ok_name = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let ok_oid = name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if ok_name || ok_oid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an attribute name (e.g. entryUUID, or objectGUID for Active Directory)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        url = "ldap://dir.example.com"
        bind_dn = "uid=svc-sync,ou=people,dc=example,dc=com"
        bind_password_file = "/etc/cutover/ldap.pw"
        [users]
        base_dn = "ou=people,dc=example,dc=com"
        [groups]
        base_dn = "ou=groups,dc=example,dc=com"
        filter = "(objectClass=groupOfNames)"
        scope = "one_level"
    "#;

    fn minimal() -> LdapConfig {
        toml::from_str(MINIMAL).unwrap()
    }

    fn field_of(e: LdapError) -> (String, String) {
        match e {
            LdapError::Config { field, problem } => (field, problem),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn defaults_apply() {
        let c = minimal();
        c.validate().unwrap();
        assert_eq!(c.timeout_secs, 30);
        assert_eq!(c.page_size, 500);
        assert_eq!(c.anchor_attribute, "entryUUID");
        assert!(!c.starttls);
        assert_eq!(c.users.filter, "(objectClass=*)");
        assert_eq!(c.users.scope, ScopeKind::Subtree);
        assert_eq!(c.groups.scope, ScopeKind::OneLevel);
        assert_eq!(
            c.scope(ObjectSet::Groups).filter,
            "(objectClass=groupOfNames)"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = toml::from_str::<LdapConfig>(&format!("{MINIMAL}\n[extra]\nx = 1"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<LdapConfig>(&MINIMAL.replace("scope = ", "scop = "))
            .err()
            .unwrap();
        assert!(e.to_string().contains("unknown field `scop`"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        type Edit = fn(&mut LdapConfig);
        let cases: &[(Edit, &str, &str)] = &[
            (|c| c.url = "http://x".into(), "url", "not supported"),
            (|c| c.url = "dir.example.com".into(), "url", "not a URL"),
            (|c| c.url = "ldap://u:p@h".into(), "url", "credentials"),
            (
                |c| c.url = "ldap://h/dc=x??sub".into(),
                "url",
                "after the host",
            ),
            (|c| c.url = "ldaps://h".into(), "", ""),
            (
                |c| {
                    c.url = "ldaps://h".into();
                    c.starttls = true;
                },
                "starttls",
                "must be false",
            ),
            (
                |c| c.ca_file = Some("/ca.pem".into()),
                "ca_file",
                "does not use TLS",
            ),
            (
                |c| {
                    c.ca_file = Some("/ca.pem".into());
                    c.starttls = true;
                },
                "",
                "",
            ),
            (|c| c.bind_dn = " ".into(), "bind_dn", "empty"),
            (|c| c.bind_dn = "svc-sync".into(), "bind_dn", "not a DN"),
            (|c| c.bind_dn = "svc-sync@corp.example.com".into(), "", ""),
            (|c| c.bind_dn = "CORP\\svc-sync".into(), "", ""),
            (
                |c| c.bind_password_file = None,
                "bind_password_file",
                "bind_password_env",
            ),
            (
                |c| c.bind_password_env = Some("LDAP_PW".into()),
                "bind_password_env",
                "only one",
            ),
            (
                |c| {
                    c.bind_password_file = None;
                    c.bind_password_env = Some("A=B".into());
                },
                "bind_password_env",
                "not an environment variable name",
            ),
            (|c| c.timeout_secs = 0, "timeout_secs", "1..=3600"),
            (|c| c.page_size = 0, "page_size", "1..=10000"),
            (|c| c.page_size = 10_001, "page_size", "got 10001"),
            (|c| c.page_size = 10_000, "", ""),
            (
                |c| c.anchor_attribute = "entry UUID".into(),
                "anchor_attribute",
                "not an attribute name",
            ),
            (|c| c.anchor_attribute = "objectGUID".into(), "", ""),
            (|c| c.anchor_attribute = "1.3.6.1.1.16.4".into(), "", ""),
            (|c| c.users.base_dn = "".into(), "users.base_dn", "empty"),
            (
                |c| c.groups.base_dn = "groups".into(),
                "groups.base_dn",
                "not a DN",
            ),
            (
                |c| c.users.filter = "objectClass=person".into(),
                "users.filter",
                "parentheses",
            ),
            (
                |c| c.groups.filter = "(a=1)(b=2)".into(),
                "groups.filter",
                "single filter",
            ),
        ];
        for (edit, field, words) in cases {
            let mut c = minimal();
            edit(&mut c);
            match c.validate() {
                Ok(()) => assert!(field.is_empty(), "expected an error on {field}"),
                Err(e) => {
                    let shown = e.to_string();
                    let (f, problem) = field_of(e);
                    assert_eq!(&f, field, "{shown}");
                    assert!(problem.contains(words), "{shown}");
                    assert!(shown.starts_with("invalid LDAP configuration: "), "{shown}");
                }
            }
        }
    }

    #[tokio::test]
    async fn password_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("cutover-ldap-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = minimal();

        let path = dir.join("pw");
        std::fs::write(&path, "s3cret pass \r\n").unwrap();
        c.bind_password_file = Some(path.clone());
        let pw = c.load_password().await.unwrap();
        assert_eq!(pw.expose(), "s3cret pass ");
        assert_eq!(format!("{pw:?}"), "Secret([redacted])");
        assert!(!format!("{c:?}").contains("s3cret"));

        std::fs::write(&path, "\n").unwrap();
        let e = c.load_password().await.unwrap_err();
        assert!(matches!(e, LdapError::EmptyPassword { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");

        let missing = dir.join("missing");
        c.bind_password_file = Some(missing.clone());
        let e = c.load_password().await.unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, LdapError::PasswordFile { .. }), "{s}");
        assert!(s.contains(&missing.display().to_string()), "{s}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn password_env_is_read() {
        let mut c = minimal();
        c.bind_password_file = None;
        // Set by cargo for every test process; env::set_var would need unsafe.
        c.bind_password_env = Some("CARGO_PKG_NAME".into());
        assert_eq!(c.load_password().await.unwrap().expose(), "cutover-ldap");
        c.bind_password_env = Some("CUTOVER_LDAP_TEST_SURELY_UNSET_VARIABLE".into());
        let e = c.load_password().await.unwrap_err();
        assert!(
            e.to_string()
                .contains("CUTOVER_LDAP_TEST_SURELY_UNSET_VARIABLE (bind_password_env)"),
            "{e}"
        );
    }
}
