//! Errors, worded for the operator who has to fix the configuration or the directory.
//! No message ever contains the bind password.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ObjectSet;

/// An LDAP result code (RFC 4511 §4.1.9), shown as `name (number)`, e.g. `invalidCredentials (49)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResultCode(pub u32);

impl ResultCode {
    pub const SUCCESS: Self = Self(0);
    pub const OPERATIONS_ERROR: Self = Self(1);
    pub const TIME_LIMIT_EXCEEDED: Self = Self(3);
    pub const SIZE_LIMIT_EXCEEDED: Self = Self(4);
    pub const STRONGER_AUTH_REQUIRED: Self = Self(8);
    pub const REFERRAL: Self = Self(10);
    pub const ADMIN_LIMIT_EXCEEDED: Self = Self(11);
    pub const UNAVAILABLE_CRITICAL_EXTENSION: Self = Self(12);
    pub const CONFIDENTIALITY_REQUIRED: Self = Self(13);
    pub const NO_SUCH_OBJECT: Self = Self(32);
    pub const INVALID_DN_SYNTAX: Self = Self(34);
    pub const INAPPROPRIATE_AUTHENTICATION: Self = Self(48);
    pub const INVALID_CREDENTIALS: Self = Self(49);
    pub const INSUFFICIENT_ACCESS_RIGHTS: Self = Self(50);
    pub const BUSY: Self = Self(51);
    pub const UNAVAILABLE: Self = Self(52);
    pub const UNWILLING_TO_PERFORM: Self = Self(53);

    /// The RFC 4511 name (or a well-known extension's), `unknown` otherwise.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "success",
            1 => "operationsError",
            2 => "protocolError",
            3 => "timeLimitExceeded",
            4 => "sizeLimitExceeded",
            5 => "compareFalse",
            6 => "compareTrue",
            7 => "authMethodNotSupported",
            8 => "strongerAuthRequired",
            10 => "referral",
            11 => "adminLimitExceeded",
            12 => "unavailableCriticalExtension",
            13 => "confidentialityRequired",
            14 => "saslBindInProgress",
            16 => "noSuchAttribute",
            17 => "undefinedAttributeType",
            18 => "inappropriateMatching",
            19 => "constraintViolation",
            20 => "attributeOrValueExists",
            21 => "invalidAttributeSyntax",
            32 => "noSuchObject",
            33 => "aliasProblem",
            34 => "invalidDNSyntax",
            36 => "aliasDereferencingProblem",
            48 => "inappropriateAuthentication",
            49 => "invalidCredentials",
            50 => "insufficientAccessRights",
            51 => "busy",
            52 => "unavailable",
            53 => "unwillingToPerform",
            54 => "loopDetect",
            64 => "namingViolation",
            65 => "objectClassViolation",
            66 => "notAllowedOnNonLeaf",
            67 => "notAllowedOnRDN",
            68 => "entryAlreadyExists",
            69 => "objectClassModsProhibited",
            71 => "affectsMultipleDSAs",
            80 => "other",
            118 => "canceled",
            122 => "assertionFailed",
            _ => "unknown",
        }
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Everything that can go wrong talking to the directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LdapError {
    /// A setting is missing or wrong; `field` is its name in the configuration.
    #[error("invalid LDAP configuration: {field}: {problem}")]
    Config { field: String, problem: String },

    #[error(
        "cannot read the bind password file {} (bind_password_file): {error}",
        path.display()
    )]
    PasswordFile { path: PathBuf, error: io::Error },

    #[error("the environment variable {name} (bind_password_env) is not set or is not valid UTF-8")]
    PasswordEnv { name: String },

    /// An empty password would turn the simple bind into an anonymous one (RFC 4513 §5.1.2).
    #[error(
        "the bind password from {origin} is empty; refusing to bind (an empty password is an anonymous bind)"
    )]
    EmptyPassword { origin: String },

    #[error("cannot use the CA certificate file {} (ca_file): {detail}", path.display())]
    CaFile { path: PathBuf, detail: String },

    #[error("cannot connect to {url}: {error}; is the directory running, and is `url` right?")]
    Connect { url: String, error: io::Error },

    #[error("TLS with {url} failed: {detail}; {hint}")]
    Tls {
        url: String,
        detail: String,
        hint: String,
    },

    #[error("bind as {bind_dn} failed: {code}{}; {hint}", diagnostic(.message))]
    Bind {
        bind_dn: String,
        code: ResultCode,
        /// The server's diagnostic message (may be empty).
        message: String,
        hint: String,
    },

    #[error("search of {which} under {base_dn} failed: {code}{}; {hint}", diagnostic(.message))]
    Search {
        which: ObjectSet,
        base_dn: String,
        code: ResultCode,
        message: String,
        hint: String,
    },

    /// RFC 4533 content synchronisation failed or answered something unusable.
    #[error("content synchronisation (RFC 4533) with {url} failed: {detail}")]
    ContentSync { url: String, detail: String },

    /// The directory no longer knows the cookie (`e-syncRefreshRequired`): a full import is
    /// needed before content synchronisation can resume.
    #[error(
        "the directory at {url} asks for a full refresh (e-syncRefreshRequired, 4096): its change history no longer reaches the last run"
    )]
    SyncRefreshRequired { url: String },

    #[error(
        "the directory at {url} cannot page the search of {which} (RFC 2696 paged results control, 1.2.840.113556.1.4.319): {detail}; Cutover needs paging to read large directories"
    )]
    PagingUnsupported {
        url: String,
        which: ObjectSet,
        detail: String,
    },

    #[error(
        "{operation} did not finish within {secs} s (timeout_secs); is the directory overloaded or unreachable?"
    )]
    Timeout { operation: String, secs: u64 },

    /// The connection broke, or the server sent something this client cannot use.
    #[error("{operation} failed: {detail} (directory {url})")]
    Connection {
        url: String,
        operation: String,
        detail: String,
    },
}

fn diagnostic(message: &str) -> String {
    if message.trim().is_empty() {
        String::new()
    } else {
        format!(" (server says: {})", message.trim())
    }
}

impl LdapError {
    /// The LDAP result code, for errors that carry one.
    pub fn result_code(&self) -> Option<ResultCode> {
        match self {
            Self::Bind { code, .. } | Self::Search { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// What an operator should check after a failed bind.
pub(crate) fn bind_hint(code: ResultCode, password_origin: &str) -> String {
    match code {
        ResultCode::INVALID_CREDENTIALS => format!(
            "check bind_dn and the password in {password_origin} (wrong password, unknown DN, or a locked/expired account)"
        ),
        ResultCode::INVALID_DN_SYNTAX => "bind_dn is not a valid DN".to_owned(),
        ResultCode::CONFIDENTIALITY_REQUIRED | ResultCode::STRONGER_AUTH_REQUIRED => {
            "the directory requires TLS for binds: use an ldaps:// url or set starttls = true"
                .to_owned()
        }
        ResultCode::INAPPROPRIATE_AUTHENTICATION => {
            "this account cannot bind with a password (simple bind)".to_owned()
        }
        ResultCode::UNWILLING_TO_PERFORM => {
            "the directory refuses this bind (it may require TLS, or the account may be disabled)"
                .to_owned()
        }
        ResultCode::BUSY | ResultCode::UNAVAILABLE => {
            "the directory is busy or unavailable; try again later".to_owned()
        }
        _ => "see the directory server's log for details".to_owned(),
    }
}

/// What an operator should check after a failed search.
pub(crate) fn search_hint(
    which: ObjectSet,
    code: ResultCode,
    matched: &str,
    refs: &[String],
) -> String {
    match code {
        ResultCode::NO_SUCH_OBJECT => {
            let mut hint = format!("{which}.base_dn does not exist in the directory");
            if !matched.is_empty() {
                hint.push_str(&format!(" (the closest existing entry is {matched})"));
            }
            hint
        }
        ResultCode::INVALID_DN_SYNTAX => format!("{which}.base_dn is not a valid DN"),
        ResultCode::INSUFFICIENT_ACCESS_RIGHTS => {
            format!("bind_dn may not search there: grant it read access to {which}.base_dn")
        }
        ResultCode::SIZE_LIMIT_EXCEEDED | ResultCode::ADMIN_LIMIT_EXCEEDED => "the directory's size limit for bind_dn is lower than the number of entries even with paging: raise it for bind_dn (OpenLDAP: limits ... size.prtotal=unlimited; Active Directory: MaxPageSize/MaxResultSetSize) or lower page_size".to_owned(),
        ResultCode::TIME_LIMIT_EXCEEDED => "the directory's time limit for bind_dn was reached: raise it, or lower page_size".to_owned(),
        ResultCode::REFERRAL => format!(
            "{which}.base_dn is held by another server{}; point url at that server",
            if refs.is_empty() { String::new() } else { format!(" ({})", refs.join(", ")) }
        ),
        ResultCode::OPERATIONS_ERROR => "the directory rejected the search; if it says a bind is required, check bind_dn".to_owned(),
        ResultCode::BUSY | ResultCode::UNAVAILABLE => "the directory is busy or unavailable; try again later".to_owned(),
        _ => format!("check {which}.filter and {which}.base_dn, and the directory server's log"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_read_as_name_and_number() {
        assert_eq!(
            ResultCode::INVALID_CREDENTIALS.to_string(),
            "invalidCredentials (49)"
        );
        assert_eq!(ResultCode(32).to_string(), "noSuchObject (32)");
        assert_eq!(ResultCode(4711).to_string(), "unknown (4711)");
    }

    #[test]
    fn messages_name_what_to_check() {
        let e = LdapError::Bind {
            bind_dn: "uid=svc,ou=people,dc=x".into(),
            code: ResultCode::INVALID_CREDENTIALS,
            message: String::new(),
            hint: bind_hint(
                ResultCode::INVALID_CREDENTIALS,
                "bind_password_file /etc/cutover/ldap.pw",
            ),
        };
        let s = e.to_string();
        assert!(s.contains("invalidCredentials (49)"), "{s}");
        assert!(
            s.contains("check bind_dn and the password in bind_password_file /etc/cutover/ldap.pw"),
            "{s}"
        );
        assert!(!s.contains("server says"), "{s}");
        assert_eq!(e.result_code(), Some(ResultCode(49)));

        let e = LdapError::Search {
            which: ObjectSet::Users,
            base_dn: "ou=nope,dc=x".into(),
            code: ResultCode::NO_SUCH_OBJECT,
            message: "no such entry".into(),
            hint: search_hint(ObjectSet::Users, ResultCode::NO_SUCH_OBJECT, "dc=x", &[]),
        };
        let s = e.to_string();
        assert!(s.contains("search of users under ou=nope,dc=x failed: noSuchObject (32) (server says: no such entry); users.base_dn does not exist"), "{s}");
        assert!(s.contains("closest existing entry is dc=x"), "{s}");

        let s = search_hint(
            ObjectSet::Groups,
            ResultCode::REFERRAL,
            "",
            &["ldap://other/".to_owned()],
        );
        assert!(
            s.contains("groups.base_dn is held by another server (ldap://other/)"),
            "{s}"
        );
    }
}
