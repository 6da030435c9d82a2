//! E-mail addresses and mailboxes (`"Display Name" <local@domain>`).
//!
//! The address check is pragmatic, not a full RFC 5321 grammar: a dot-atom local part, one
//! `@`, a domain of letters/digits/hyphen labels, ASCII only (no SMTPUTF8), no quoted local
//! parts, no address literals. That is what organisations' directories hold in practice, and
//! it keeps every character that could break a header or an SMTP command line out.

use crate::message::MessageError;

/// Longest address accepted, in bytes (RFC 5321 §4.5.3.1.3's path of 256 less the `<>`).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// Longest local part (before `@`), RFC 5321 §4.5.3.1.1.
pub const MAX_LOCAL_PART_BYTES: usize = 64;
/// Longest domain label, RFC 1035 §2.3.4.
pub const MAX_DOMAIN_LABEL_BYTES: usize = 63;
/// Longest display name, in bytes of UTF-8.
pub const MAX_DISPLAY_NAME_BYTES: usize = 256;

/// A mailbox: an address and an optional display name (any Unicode; quoted or RFC 2047
/// encoded when the message is written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// A mailbox without a display name.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            name: None,
            address: address.into(),
        }
    }

    /// A mailbox with a display name.
    pub fn named(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            address: address.into(),
        }
    }

    /// Parse `address@domain`, `<address@domain>`, `Name <address@domain>` or
    /// `"Quoted, Name" <address@domain>` (as written in a configuration file). The address is
    /// checked like every other; the name may be any Unicode without line breaks.
    pub fn parse(input: &str) -> Result<Mailbox, MessageError> {
        let err = |problem: String| MessageError::Mailbox {
            value: printable(input),
            problem,
        };
        if input.contains(['\r', '\n']) {
            return Err(err(
                "contains a line break (refused: header injection)".to_owned()
            ));
        }
        let s = input.trim();
        if s.is_empty() {
            return Err(err("is empty".to_owned()));
        }
        let (name, address) = match s.rfind('<') {
            Some(open) => {
                let inner = s
                    .get(open + 1..)
                    .and_then(|rest| rest.strip_suffix('>'))
                    .ok_or_else(|| err("has a '<' without a '>' at the end".to_owned()))?;
                let name_part = s.get(..open).unwrap_or_default().trim();
                let name = if name_part.is_empty() {
                    None
                } else {
                    Some(unquote(name_part).map_err(|p| err(p.to_owned()))?)
                };
                (name, inner)
            }
            None => (None, s),
        };
        if let Some(p) = address_problem(address) {
            return Err(err(format!(
                "has the address '{}', which {p}",
                printable(address)
            )));
        }
        if let Some(n) = &name
            && n.len() > MAX_DISPLAY_NAME_BYTES
        {
            return Err(err(format!(
                "has a display name of {} bytes; at most {MAX_DISPLAY_NAME_BYTES} are allowed",
                n.len()
            )));
        }
        Ok(Mailbox {
            name,
            address: address.to_owned(),
        })
    }
}

/// A display name as written before `<address>`: quotes removed and `\x` escapes undone.
fn unquote(name: &str) -> Result<String, &'static str> {
    let Some(inner) = name
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .filter(|_| name.len() >= 2)
    else {
        if name.contains('"') {
            return Err("has a display name with unbalanced quotes");
        }
        return Ok(name.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => out.push(escaped),
                None => return Err("has a display name ending in a lone backslash"),
            },
            '"' => return Err("has a display name with an unescaped quote inside quotes"),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `"Name" <address>` (quotes escaped), or the bare address when there is no name. Not
/// RFC 2047 encoded: for logs and configuration, not for headers.
impl std::fmt::Display for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            Some(name) => {
                f.write_str("\"")?;
                for c in name.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                write!(f, "\" <{}>", self.address)
            }
            None => f.write_str(&self.address),
        }
    }
}

/// Why an address was refused (the `field` of [`MessageError::Address`] says where it was).
pub(crate) fn address_problem(address: &str) -> Option<String> {
    if address.is_empty() {
        return Some("is empty".to_owned());
    }
    if address.len() > MAX_ADDRESS_BYTES {
        return Some(format!(
            "is {} bytes long; at most {MAX_ADDRESS_BYTES} are allowed",
            address.len()
        ));
    }
    if let Some(c) = address.chars().find(|c| c.is_control()) {
        return Some(format!(
            "contains the control character U+{:04X} (line breaks and other control characters are never allowed)",
            u32::from(c)
        ));
    }
    if address.chars().any(|c| c == ' ' || c.is_whitespace()) {
        return Some("contains a space".to_owned());
    }
    if !address.is_ascii() {
        return Some(
            "contains non-ASCII characters (internationalised addresses need SMTPUTF8, which is not supported)"
                .to_owned(),
        );
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Some("has no '@' (expected local@domain)".to_owned());
    };
    if domain.contains('@') {
        return Some("has more than one '@'".to_owned());
    }
    if let Some(c) = address.chars().find(|c| {
        matches!(
            c,
            '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '"' | '\\'
        )
    }) {
        return Some(format!(
            "contains '{c}', which is not allowed in an address"
        ));
    }
    local_part_problem(local)
        .map(|p| format!("local part (before '@') {p}"))
        .or_else(|| domain_problem(domain).map(|p| format!("domain (after '@') {p}")))
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn local_part_problem(local: &str) -> Option<String> {
    if local.is_empty() {
        return Some("is empty".to_owned());
    }
    if local.len() > MAX_LOCAL_PART_BYTES {
        return Some(format!(
            "is {} bytes long; at most {MAX_LOCAL_PART_BYTES} are allowed",
            local.len()
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Some("has a leading, trailing or double '.'".to_owned());
    }
    if let Some(b) = local.bytes().find(|&b| b != b'.' && !is_atext(b)) {
        return Some(format!(
            "contains '{}', which is not allowed",
            char::from(b)
        ));
    }
    None
}

fn domain_problem(domain: &str) -> Option<String> {
    if domain.is_empty() {
        return Some("is empty".to_owned());
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Some("has an empty label (a leading, trailing or double '.')".to_owned());
        }
        if label.len() > MAX_DOMAIN_LABEL_BYTES {
            return Some(format!(
                "has a label of {} bytes; at most {MAX_DOMAIN_LABEL_BYTES} are allowed",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "has the label '{label}', which starts or ends with '-'"
            ));
        }
        if let Some(b) = label
            .bytes()
            .find(|&b| !(b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Some(format!(
                "contains '{}' (only letters, digits, '-' and '.' are allowed)",
                char::from(b)
            ));
        }
    }
    None
}

/// Check an address; the error names `field` (e.g. `to[2]`).
pub fn validate_address(field: &str, address: &str) -> Result<(), MessageError> {
    match address_problem(address) {
        None => Ok(()),
        Some(problem) => Err(MessageError::Address {
            field: field.to_owned(),
            address: printable(address),
            problem,
        }),
    }
}

/// A value safe to put into an error message: control characters escaped, length capped.
pub(crate) fn printable(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(a: &str) {
        assert_eq!(address_problem(a), None, "{a} should be accepted");
    }
    fn bad(a: &str, needle: &str) {
        let p = address_problem(a).unwrap_or_else(|| panic!("{a:?} should be refused"));
        assert!(p.contains(needle), "{a:?}: {p}");
    }

    #[test]
    fn pragmatic_address_check() {
        ok("alice@example.com");
        ok("first.last+tag@mail.example.co.uk");
        ok("o'brien@example.ie");
        ok("x@localhost");
        bad("", "empty");
        bad("alice", "no '@'");
        bad("a@b@c", "more than one '@'");
        bad("alice@", "domain (after '@') is empty");
        bad("@example.com", "local part (before '@') is empty");
        bad("al ice@example.com", "space");
        bad("alice@example.com\r\nBcc: x@y", "control character U+000D");
        bad("alice\n@example.com", "U+000A");
        bad("<alice@example.com>", "'<'");
        bad("alice@[127.0.0.1]", "'['");
        bad("\"al\"@example.com", "'\"'");
        bad("alice@exa_mple.com", "'_'");
        bad("alice@-example.com", "starts or ends with '-'");
        bad("alice@example..com", "empty label");
        bad(".alice@example.com", "leading, trailing or double '.'");
        bad("alïce@example.com", "non-ASCII");
        bad("a,b@example.com", "','");
    }

    #[test]
    fn address_length_limits_at_the_edge() {
        let local = "a".repeat(MAX_LOCAL_PART_BYTES);
        ok(&format!("{local}@example.com"));
        bad(&format!("{local}a@example.com"), "at most 64");

        let label = "b".repeat(MAX_DOMAIN_LABEL_BYTES);
        ok(&format!("x@{label}.com"));
        bad(&format!("x@{label}b.com"), "at most 63");

        // 254 bytes in all: "a@" + labels of 63 chars joined by dots.
        let domain_len = MAX_ADDRESS_BYTES - 2;
        let mut domain = String::new();
        while domain.len() < domain_len {
            if !domain.is_empty() {
                domain.push('.');
            }
            let room = (domain_len - domain.len()).min(MAX_DOMAIN_LABEL_BYTES);
            domain.push_str(&"c".repeat(room));
        }
        let exact = format!("a@{domain}");
        assert_eq!(exact.len(), MAX_ADDRESS_BYTES);
        ok(&exact);
        let over = format!("ab@{domain}");
        assert_eq!(over.len(), MAX_ADDRESS_BYTES + 1);
        bad(&over, "at most 254");
    }

    #[test]
    fn mailbox_parse_forms() {
        assert_eq!(
            Mailbox::parse("a@example.com").unwrap(),
            Mailbox::new("a@example.com")
        );
        assert_eq!(
            Mailbox::parse(" <a@example.com> ").unwrap(),
            Mailbox::new("a@example.com")
        );
        assert_eq!(
            Mailbox::parse("Cutover <cutover@id.example>").unwrap(),
            Mailbox::named("Cutover", "cutover@id.example")
        );
        assert_eq!(
            Mailbox::parse(r#""Dubois, Marc \"IT\"" <marc@example.com>"#).unwrap(),
            Mailbox::named(r#"Dubois, Marc "IT""#, "marc@example.com")
        );
        assert_eq!(
            Mailbox::parse("Zoë Lefèvre <zoe@example.com>").unwrap(),
            Mailbox::named("Zoë Lefèvre", "zoe@example.com")
        );
        for (bad, needle) in [
            ("", "is empty"),
            ("Name <a@example.com", "without a '>'"),
            ("Name <not-an-address>", "has no '@'"),
            ("a@example.com\r\nBcc: x@y.z", "line break"),
            ("\"Name <a@example.com>", "unbalanced quotes"),
            ("\"a\"b\" <a@example.com>", "unescaped quote"),
            ("\"a\\\" <a@example.com>", "lone backslash"),
        ] {
            let e = Mailbox::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
        let long = format!("{} <a@example.com>", "n".repeat(MAX_DISPLAY_NAME_BYTES));
        assert!(Mailbox::parse(&long).is_ok());
        let long = format!("{} <a@example.com>", "n".repeat(MAX_DISPLAY_NAME_BYTES + 1));
        assert!(Mailbox::parse(&long).is_err());
    }

    #[test]
    fn mailbox_display_round_trips() {
        for m in [
            Mailbox::new("a@example.com"),
            Mailbox::named("Cutover", "c@example.com"),
            Mailbox::named(r#"Dubois, Marc "IT" \ x"#, "marc@example.com"),
        ] {
            assert_eq!(Mailbox::parse(&m.to_string()).unwrap(), m);
        }
        assert_eq!(
            Mailbox::named("Cutover", "c@example.com").to_string(),
            "\"Cutover\" <c@example.com>"
        );
    }

    #[test]
    fn printable_escapes_and_caps() {
        assert_eq!(printable("a\r\nb"), "a\\r\\nb");
        assert_eq!(printable(&"x".repeat(100)).chars().count(), 81);
    }
}
