//! Mapping rules: directory attributes → Cutover attributes, with scoping.
//!
//! Rules come from the sync server's configuration (`[rules.users]`, `[rules.groups]`) and are
//! compiled once ([`MappingRules::compile`]); a configuration error names the rule. Mapping an
//! entry either yields the Cutover image of the object, says the entry is out of scope, or
//! returns a [`RuleError`] naming the rule and the object — never a panic, whatever the entry
//! holds (huge values, invalid UTF-8, missing attributes).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::UserPrincipalName;
use crate::limits::{MAX_ATTRIBUTE_LEN, MAX_DISPLAY_NAME_LEN};
use crate::sync::SourceEntry;

/// Most member values one group may carry before it is refused as hostile data.
pub const MAX_GROUP_MEMBER_VALUES: usize = 100_000;

fn default_upn() -> String {
    "mail".into()
}
fn default_cn() -> String {
    "cn".into()
}
fn default_mail() -> Option<String> {
    Some("mail".into())
}
fn default_department() -> Option<String> {
    Some("departmentNumber".into())
}
fn default_manager() -> Option<String> {
    Some("manager".into())
}
fn default_description() -> Option<String> {
    Some("description".into())
}
fn default_members() -> Vec<String> {
    vec!["member".into(), "uniqueMember".into(), "memberUid".into()]
}

/// How users map. A value is an attribute name (`"mail"`) or, for `upn` and `display_name`, a
/// template with `{attribute}` placeholders (`"{uid}@corp.example"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct UserRules {
    #[serde(default = "default_upn")]
    pub upn: String,
    #[serde(default = "default_cn")]
    pub display_name: String,
    #[serde(default = "default_mail")]
    pub mail: Option<String>,
    #[serde(default = "default_department")]
    pub department: Option<String>,
    /// A DN-valued attribute naming the user's manager.
    #[serde(default = "default_manager")]
    pub manager: Option<String>,
    /// Attributes whose presence marks the on-prem account disabled (for example
    /// `pwdAccountLockedTime`). AD's `userAccountControl` ACCOUNTDISABLE bit is always honoured.
    #[serde(default)]
    pub disabled_when_present: Vec<String>,
    /// Scoping: only entries under one of these DNs (empty = everything the search returns).
    #[serde(default)]
    pub include_under: Vec<String>,
    /// Scoping: entries under these DNs are left out (wins over `include_under`).
    #[serde(default)]
    pub exclude_under: Vec<String>,
}

impl Default for UserRules {
    fn default() -> Self {
        UserRules {
            upn: default_upn(),
            display_name: default_cn(),
            mail: default_mail(),
            department: default_department(),
            manager: default_manager(),
            disabled_when_present: Vec::new(),
            include_under: Vec::new(),
            exclude_under: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct GroupRules {
    #[serde(default = "default_cn")]
    pub display_name: String,
    #[serde(default = "default_description")]
    pub description: Option<String>,
    /// Membership attributes: DN-valued (`member`, `uniqueMember`) or uid-valued (`memberUid`).
    #[serde(default = "default_members")]
    pub members: Vec<String>,
    #[serde(default)]
    pub include_under: Vec<String>,
    #[serde(default)]
    pub exclude_under: Vec<String>,
}

impl Default for GroupRules {
    fn default() -> Self {
        GroupRules {
            display_name: default_cn(),
            description: default_description(),
            members: default_members(),
            include_under: Vec::new(),
            exclude_under: Vec::new(),
        }
    }
}

/// The `[rules]` section of a sync server's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct MappingRules {
    #[serde(default)]
    pub users: UserRules,
    #[serde(default)]
    pub groups: GroupRules,
}

/// A configuration error in the rules, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {message}")]
pub struct RuleConfigError {
    pub rule: String,
    pub message: String,
}

/// Mapping one object failed: which rule, which object, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule} on {dn}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub dn: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Attribute(String),
}

/// `"mail"` or `"{uid}@corp.example"`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    fn parse(rule: &str, text: &str) -> Result<Template, RuleConfigError> {
        let err = |message: String| RuleConfigError {
            rule: rule.to_owned(),
            message,
        };
        if text.trim().is_empty() {
            return Err(err("is empty".into()));
        }
        if !text.contains('{') && !text.contains('}') {
            check_attribute_name(rule, text)?;
            return Ok(Template {
                parts: vec![Part::Attribute(text.to_ascii_lowercase())],
            });
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(err(format!("unmatched '}}' in {text:?}")));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| err(format!("unclosed '{{' in {text:?}")))?;
            let name = &after[..close];
            check_attribute_name(rule, name)?;
            parts.push(Part::Attribute(name.to_ascii_lowercase()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(err(format!("unmatched '}}' in {text:?}")));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The attributes the template reads (the connector must request them).
    pub fn attributes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Attribute(a) => Some(a.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Fill the template from an entry. `Ok(None)`: a placeholder's attribute is absent.
    fn render(&self, rule: &str, entry: &SourceEntry) -> Result<Option<String>, RuleError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Attribute(a) => match first_text(rule, entry, a)? {
                    Some(v) => out.push_str(&v),
                    None => return Ok(None),
                },
            }
        }
        Ok(Some(out))
    }
}

fn check_attribute_name(rule: &str, name: &str) -> Result<(), RuleConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';')
        && name.as_bytes()[0].is_ascii_alphabetic();
    if ok {
        Ok(())
    } else {
        Err(RuleConfigError {
            rule: rule.to_owned(),
            message: format!("{name:?} is not an LDAP attribute name"),
        })
    }
}

/// The first value of an attribute as text. Values longer than [`MAX_ATTRIBUTE_VALUE_BYTES`]
/// or not valid UTF-8 are a rule error (the directory holds something Cutover cannot store).
fn first_text(rule: &str, entry: &SourceEntry, attr: &str) -> Result<Option<String>, RuleError> {
    let Some(raw) = entry.values(attr).first() else {
        return Ok(None);
    };
    text_value(rule, entry, attr, raw).map(Some)
}

/// Longest single attribute value the mapping accepts, in bytes, before any field-specific
/// limit (hostile or broken directory data is refused here, per object).
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 4096;

fn text_value(
    rule: &str,
    entry: &SourceEntry,
    attr: &str,
    raw: &[u8],
) -> Result<String, RuleError> {
    let fail = |message: String| RuleError {
        rule: rule.to_owned(),
        dn: entry.dn.clone(),
        message,
    };
    if raw.len() > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(fail(format!(
            "attribute {attr} is {} bytes long; the limit is {MAX_ATTRIBUTE_VALUE_BYTES}",
            raw.len()
        )));
    }
    let s = std::str::from_utf8(raw)
        .map_err(|e| fail(format!("attribute {attr} is not valid UTF-8 ({e})")))?;
    if s.chars().any(|c| c.is_control()) {
        return Err(fail(format!(
            "attribute {attr} contains control characters"
        )));
    }
    Ok(s.trim().to_owned())
}

fn bounded(
    rule: &str,
    entry: &SourceEntry,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, RuleError> {
    match value {
        Some(v) if v.chars().count() > max => Err(RuleError {
            rule: rule.to_owned(),
            dn: entry.dn.clone(),
            message: format!(
                "the value is {} characters long; the limit is {max}",
                v.chars().count()
            ),
        }),
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// A DN in a form fit for comparison: lower-cased, without spaces around `,` and `=`.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for rdn in dn.split(',') {
        if !out.is_empty() {
            out.push(',');
        }
        match rdn.split_once('=') {
            Some((k, v)) => {
                out.push_str(&k.trim().to_lowercase());
                out.push('=');
                out.push_str(&v.trim().to_lowercase());
            }
            None => out.push_str(&rdn.trim().to_lowercase()),
        }
    }
    out
}

fn under(dn_norm: &str, base_norm: &str) -> bool {
    dn_norm == base_norm || dn_norm.ends_with(&format!(",{base_norm}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Scope {
    fn new(include: &[String], exclude: &[String]) -> Scope {
        Scope {
            include: include.iter().map(|d| normalize_dn(d)).collect(),
            exclude: exclude.iter().map(|d| normalize_dn(d)).collect(),
        }
    }
    fn contains(&self, dn: &str) -> bool {
        let dn = normalize_dn(dn);
        (self.include.is_empty() || self.include.iter().any(|b| under(&dn, b)))
            && !self.exclude.iter().any(|b| under(&dn, b))
    }
}

/// A user entry, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedUser {
    pub anchor: String,
    pub dn: String,
    pub upn: UserPrincipalName,
    pub display_name: String,
    pub mail: Option<String>,
    pub department: Option<String>,
    /// The manager's DN as the directory gave it (resolved to an anchor by the planner).
    pub manager_dn: Option<String>,
    pub account_enabled: bool,
}

/// A membership value: a DN (`member`, `uniqueMember`) or a uid (`memberUid`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberValue {
    Dn(String),
    Uid(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedGroup {
    pub anchor: String,
    pub dn: String,
    pub display_name: String,
    pub description: Option<String>,
    pub members: Vec<MemberValue>,
}

/// Rules ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledRules {
    upn: Template,
    user_display_name: Template,
    mail: Option<Template>,
    department: Option<Template>,
    manager: Option<String>,
    disabled_when_present: Vec<String>,
    user_scope: Scope,
    group_display_name: Template,
    description: Option<Template>,
    members: Vec<String>,
    group_scope: Scope,
    fingerprint: String,
}

const UID_VALUED_MEMBER_ATTRIBUTES: [&str; 1] = ["memberuid"];

impl MappingRules {
    /// Check and compile the rules; the error names the offending rule.
    pub fn compile(&self) -> Result<CompiledRules, RuleConfigError> {
        let u = &self.users;
        let g = &self.groups;
        let opt = |rule: &str, v: &Option<String>| -> Result<Option<Template>, RuleConfigError> {
            // "" switches an optional mapping off (TOML has no null).
            v.as_deref()
                .filter(|t| !t.trim().is_empty())
                .map(|t| Template::parse(rule, t))
                .transpose()
        };
        let single = |rule: &str, v: &Option<String>| -> Result<Option<String>, RuleConfigError> {
            match v.as_deref().filter(|a| !a.trim().is_empty()) {
                Some(a) => {
                    check_attribute_name(rule, a)?;
                    Ok(Some(a.to_ascii_lowercase()))
                }
                None => Ok(None),
            }
        };
        for a in &u.disabled_when_present {
            check_attribute_name("users.disabled_when_present", a)?;
        }
        if g.members.is_empty() {
            return Err(RuleConfigError {
                rule: "groups.members".into(),
                message: "names no membership attribute (use member, uniqueMember or memberUid)"
                    .into(),
            });
        }
        for a in &g.members {
            check_attribute_name("groups.members", a)?;
        }
        for (rule, dns) in [
            ("users.include_under", &u.include_under),
            ("users.exclude_under", &u.exclude_under),
            ("groups.include_under", &g.include_under),
            ("groups.exclude_under", &g.exclude_under),
        ] {
            if let Some(bad) = dns.iter().find(|d| !d.contains('=')) {
                return Err(RuleConfigError {
                    rule: rule.into(),
                    message: format!("{bad:?} is not a DN"),
                });
            }
        }
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let fingerprint = hex(&Sha256::digest(&canonical)[..8]);
        Ok(CompiledRules {
            upn: Template::parse("users.upn", &u.upn)?,
            user_display_name: Template::parse("users.display_name", &u.display_name)?,
            mail: opt("users.mail", &u.mail)?,
            department: opt("users.department", &u.department)?,
            manager: single("users.manager", &u.manager)?,
            disabled_when_present: u
                .disabled_when_present
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            user_scope: Scope::new(&u.include_under, &u.exclude_under),
            group_display_name: Template::parse("groups.display_name", &g.display_name)?,
            description: opt("groups.description", &g.description)?,
            members: g.members.iter().map(|a| a.to_ascii_lowercase()).collect(),
            group_scope: Scope::new(&g.include_under, &g.exclude_under),
            fingerprint,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompiledRules {
    /// A short fingerprint of the rules: a delta watermark is only valid under the rules that
    /// produced it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Every attribute the rules read from user entries (the connector requests these).
    pub fn user_attributes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.upn.attributes().map(str::to_owned).collect();
        v.extend(self.user_display_name.attributes().map(str::to_owned));
        for t in [&self.mail, &self.department].into_iter().flatten() {
            v.extend(t.attributes().map(str::to_owned));
        }
        v.extend(self.manager.iter().cloned());
        v.extend(self.disabled_when_present.iter().cloned());
        v.push("uid".into());
        v.push("useraccountcontrol".into());
        v.sort();
        v.dedup();
        v
    }

    pub fn group_attributes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .group_display_name
            .attributes()
            .map(str::to_owned)
            .collect();
        if let Some(t) = &self.description {
            v.extend(t.attributes().map(str::to_owned));
        }
        v.extend(self.members.iter().cloned());
        v.sort();
        v.dedup();
        v
    }

    pub fn user_in_scope(&self, dn: &str) -> bool {
        self.user_scope.contains(dn)
    }

    pub fn group_in_scope(&self, dn: &str) -> bool {
        self.group_scope.contains(dn)
    }

    /// Map a user entry. `Ok(None)`: out of scope.
    pub fn map_user(&self, e: &SourceEntry) -> Result<Option<MappedUser>, RuleError> {
        if !self.user_in_scope(&e.dn) {
            return Ok(None);
        }
        let upn_text = self.upn.render("users.upn", e)?.ok_or_else(|| RuleError {
            rule: "users.upn".into(),
            dn: e.dn.clone(),
            message: "the attribute it reads is missing, so the user has no sign-in name".into(),
        })?;
        let upn = UserPrincipalName::parse(&upn_text).map_err(|err| RuleError {
            rule: "users.upn".into(),
            dn: e.dn.clone(),
            message: format!("{upn_text:?} is not a valid user principal name: {err}"),
        })?;
        let display_name = bounded(
            "users.display_name",
            e,
            self.user_display_name.render("users.display_name", e)?,
            MAX_DISPLAY_NAME_LEN,
        )?
        .unwrap_or_else(|| upn.as_str().to_owned());
        let mail = match &self.mail {
            Some(t) => bounded(
                "users.mail",
                e,
                t.render("users.mail", e)?,
                MAX_ATTRIBUTE_LEN,
            )?,
            None => None,
        };
        let department = match &self.department {
            Some(t) => bounded(
                "users.department",
                e,
                t.render("users.department", e)?,
                MAX_ATTRIBUTE_LEN,
            )?,
            None => None,
        };
        let manager_dn = match &self.manager {
            Some(a) => first_text("users.manager", e, a)?.filter(|s| !s.is_empty()),
            None => None,
        };
        let mut account_enabled = !self
            .disabled_when_present
            .iter()
            .any(|a| !e.values(a).is_empty());
        if let Some(uac) = first_text("users.account_enabled", e, "useraccountcontrol")? {
            const ACCOUNTDISABLE: u32 = 0x2;
            let flags: u32 = uac.parse().map_err(|_| RuleError {
                rule: "users.account_enabled".into(),
                dn: e.dn.clone(),
                message: format!("userAccountControl {uac:?} is not a number"),
            })?;
            if flags & ACCOUNTDISABLE != 0 {
                account_enabled = false;
            }
        }
        Ok(Some(MappedUser {
            anchor: e.anchor.clone(),
            dn: e.dn.clone(),
            upn,
            display_name,
            mail,
            department,
            manager_dn,
            account_enabled,
        }))
    }

    /// Map a group entry. `Ok(None)`: out of scope.
    pub fn map_group(&self, e: &SourceEntry) -> Result<Option<MappedGroup>, RuleError> {
        if !self.group_in_scope(&e.dn) {
            return Ok(None);
        }
        let display_name = bounded(
            "groups.display_name",
            e,
            self.group_display_name.render("groups.display_name", e)?,
            MAX_DISPLAY_NAME_LEN,
        )?
        .ok_or_else(|| RuleError {
            rule: "groups.display_name".into(),
            dn: e.dn.clone(),
            message: "the group has no name (the attribute it reads is missing or empty)".into(),
        })?;
        let description = match &self.description {
            Some(t) => bounded(
                "groups.description",
                e,
                t.render("groups.description", e)?,
                MAX_ATTRIBUTE_LEN,
            )?,
            None => None,
        };
        let total: usize = self.members.iter().map(|a| e.values(a).len()).sum();
        if total > MAX_GROUP_MEMBER_VALUES {
            return Err(RuleError {
                rule: "groups.members".into(),
                dn: e.dn.clone(),
                message: format!(
                    "the group lists {total} members; the limit is {MAX_GROUP_MEMBER_VALUES}"
                ),
            });
        }
        let mut members = Vec::with_capacity(total);
        for attr in &self.members {
            let uid_valued = UID_VALUED_MEMBER_ATTRIBUTES.contains(&attr.as_str());
            for raw in e.values(attr) {
                let v = text_value("groups.members", e, attr, raw)?;
                if v.is_empty() {
                    continue;
                }
                members.push(if uid_valued {
                    MemberValue::Uid(v)
                } else {
                    // uniqueMember may carry an optional "#'0101'B" UID suffix.
                    let dn = match v.rsplit_once('#') {
                        Some((dn, uid)) if uid.starts_with('\'') => dn.to_owned(),
                        _ => v,
                    };
                    MemberValue::Dn(dn)
                });
            }
        }
        members.sort();
        members.dedup();
        Ok(Some(MappedGroup {
            anchor: e.anchor.clone(),
            dn: e.dn.clone(),
            display_name,
            description,
            members,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(crate) fn entry(dn: &str, anchor: &str, attrs: &[(&str, &[u8])]) -> SourceEntry {
        let mut attributes: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, v) in attrs {
            attributes
                .entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.to_vec());
        }
        SourceEntry {
            dn: dn.into(),
            anchor: anchor.into(),
            attributes,
        }
    }

    #[test]
    fn defaults_map_an_inet_org_person() {
        let rules = MappingRules::default().compile().unwrap();
        let e = entry(
            "uid=alice,ou=people,dc=corp,dc=example",
            "a-1",
            &[
                ("mail", b"Alice@Corp.Example"),
                ("cn", b"Alice Liddell"),
                ("departmentNumber", b"Finance"),
                ("manager", b"uid=bob,ou=people,dc=corp,dc=example"),
            ],
        );
        let u = rules.map_user(&e).unwrap().unwrap();
        assert_eq!(u.upn.as_str(), "Alice@corp.example");
        assert_eq!(u.display_name, "Alice Liddell");
        assert_eq!(u.department.as_deref(), Some("Finance"));
        assert_eq!(
            u.manager_dn.as_deref(),
            Some("uid=bob,ou=people,dc=corp,dc=example")
        );
        assert!(u.account_enabled);
    }

    #[test]
    fn templates_fill_placeholders_and_name_missing_attributes() {
        let rules = MappingRules {
            users: UserRules {
                upn: "{uid}@corp.example".into(),
                ..UserRules::default()
            },
            ..MappingRules::default()
        }
        .compile()
        .unwrap();
        let ok = entry("uid=bob,dc=x", "b", &[("uid", b"bob"), ("cn", b"Bob")]);
        assert_eq!(
            rules.map_user(&ok).unwrap().unwrap().upn.as_str(),
            "bob@corp.example"
        );
        let missing = entry("cn=nobody,dc=x", "n", &[("cn", b"Nobody")]);
        let err = rules.map_user(&missing).unwrap_err();
        assert_eq!(err.rule, "users.upn");
        assert_eq!(err.dn, "cn=nobody,dc=x");
        assert!(
            err.to_string().contains("users.upn on cn=nobody,dc=x"),
            "{err}"
        );
    }

    #[test]
    fn bad_rule_configuration_names_the_rule() {
        for (rules, rule) in [
            (
                MappingRules {
                    users: UserRules {
                        upn: "{uid@corp.example".into(),
                        ..UserRules::default()
                    },
                    ..MappingRules::default()
                },
                "users.upn",
            ),
            (
                MappingRules {
                    groups: GroupRules {
                        members: vec![],
                        ..GroupRules::default()
                    },
                    ..MappingRules::default()
                },
                "groups.members",
            ),
            (
                MappingRules {
                    users: UserRules {
                        mail: Some("mail address".into()),
                        ..UserRules::default()
                    },
                    ..MappingRules::default()
                },
                "users.mail",
            ),
        ] {
            assert_eq!(rules.compile().unwrap_err().rule, rule);
        }
    }

    #[test]
    fn hostile_values_are_per_object_errors() {
        let rules = MappingRules::default().compile().unwrap();
        let huge = vec![b'a'; MAX_ATTRIBUTE_VALUE_BYTES + 1];
        let e = entry(
            "uid=h,dc=x",
            "h",
            &[("mail", b"h@corp.example"), ("cn", &huge)],
        );
        let err = rules.map_user(&e).unwrap_err();
        assert_eq!(err.rule, "users.display_name");
        assert!(err.message.contains("limit"), "{err}");
        let at_limit = vec![b'a'; MAX_DISPLAY_NAME_LEN];
        let e = entry(
            "uid=h,dc=x",
            "h",
            &[("mail", b"h@corp.example"), ("cn", &at_limit)],
        );
        assert!(rules.map_user(&e).is_ok());
        let over = vec![b'a'; MAX_DISPLAY_NAME_LEN + 1];
        let e = entry(
            "uid=h,dc=x",
            "h",
            &[("mail", b"h@corp.example"), ("cn", &over)],
        );
        assert!(rules.map_user(&e).is_err());
        let e = entry(
            "uid=h,dc=x",
            "h",
            &[("mail", b"h@corp.example"), ("cn", &[0xff, 0xfe])],
        );
        let err = rules.map_user(&e).unwrap_err();
        assert!(err.message.contains("UTF-8"), "{err}");
        let e = entry(
            "uid=h,dc=x",
            "h",
            &[("mail", b"not an address"), ("cn", b"H")],
        );
        assert_eq!(rules.map_user(&e).unwrap_err().rule, "users.upn");
    }

    #[test]
    fn scoping_by_dn() {
        let rules = MappingRules {
            users: UserRules {
                include_under: vec!["ou=People, dc=corp,dc=example".into()],
                exclude_under: vec!["ou=service,ou=people,dc=corp,dc=example".into()],
                ..UserRules::default()
            },
            ..MappingRules::default()
        }
        .compile()
        .unwrap();
        assert!(rules.user_in_scope("uid=a,ou=people,dc=corp,dc=example"));
        assert!(rules.user_in_scope("UID=a, OU=People,DC=corp,DC=example"));
        assert!(!rules.user_in_scope("uid=s,ou=service,ou=people,dc=corp,dc=example"));
        assert!(!rules.user_in_scope("uid=a,ou=other,dc=corp,dc=example"));
        assert!(!rules.user_in_scope("uid=a,ou=xpeople,dc=corp,dc=example"));
    }

    #[test]
    fn disabled_accounts() {
        let rules = MappingRules {
            users: UserRules {
                disabled_when_present: vec!["pwdAccountLockedTime".into()],
                ..UserRules::default()
            },
            ..MappingRules::default()
        }
        .compile()
        .unwrap();
        let locked = entry(
            "uid=l,dc=x",
            "l",
            &[
                ("mail", b"l@corp.example"),
                ("pwdAccountLockedTime", b"000001010000Z"),
            ],
        );
        assert!(!rules.map_user(&locked).unwrap().unwrap().account_enabled);
        let ad = entry(
            "cn=d,dc=x",
            "d",
            &[("mail", b"d@corp.example"), ("userAccountControl", b"514")],
        );
        assert!(!rules.map_user(&ad).unwrap().unwrap().account_enabled);
        let ad = entry(
            "cn=d,dc=x",
            "d",
            &[("mail", b"d@corp.example"), ("userAccountControl", b"512")],
        );
        assert!(rules.map_user(&ad).unwrap().unwrap().account_enabled);
    }

    #[test]
    fn group_members_from_every_membership_attribute() {
        let rules = MappingRules::default().compile().unwrap();
        let g = entry(
            "cn=staff,ou=groups,dc=x",
            "g",
            &[
                ("cn", b"staff"),
                ("member", b"uid=a,dc=x"),
                ("uniqueMember", b"uid=b,dc=x#'0101'B"),
                ("memberUid", b"carol"),
                ("member", b"uid=a,dc=x"),
            ],
        );
        let m = rules.map_group(&g).unwrap().unwrap();
        assert_eq!(
            m.members,
            vec![
                MemberValue::Dn("uid=a,dc=x".into()),
                MemberValue::Dn("uid=b,dc=x".into()),
                MemberValue::Uid("carol".into()),
            ]
        );
    }
}
