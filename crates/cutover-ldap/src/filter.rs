//! Search filters (RFC 4515): checking the configured ones, escaping values, building the delta.

use crate::time::GeneralizedTime;

/// The operational attribute every delta import filters on.
pub const MODIFY_TIMESTAMP: &str = "modifyTimestamp";

/// Escape a value for use inside a filter assertion (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL
/// become `\2a`, `\28`, `\29`, `\5c`, `\00`. Other characters (UTF-8 included) stay as they are.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Check an administrator's filter: one parenthesised filter, balanced, and parseable. Nothing
/// in it is escaped or rewritten. Returns the problem in words.
pub(crate) fn check_filter(filter: &str) -> Result<(), String> {
    let f = filter.trim();
    if f.is_empty() {
        return Err("is empty; use (objectClass=*) to match every entry".to_owned());
    }
    if !f.starts_with('(') || !f.ends_with(')') {
        return Err(format!(
            "must be enclosed in parentheses, e.g. (objectClass=person); got {filter:?}"
        ));
    }
    // Literal parentheses in values must be escaped (\28, \29), so every raw one is structure.
    let mut depth = 0usize;
    for (i, c) in f.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("has an unmatched ')' at position {i}: {filter:?}"))?;
                if depth == 0 && i + 1 != f.len() {
                    return Err(format!(
                        "must be a single filter; combine several with (&...) or (|...): {filter:?}"
                    ));
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("has an unmatched '(': {filter:?}"));
    }
    if ldap3::parse_filter(f).is_err() {
        return Err(format!("is not a valid LDAP filter (RFC 4515): {filter:?}"));
    }
    Ok(())
}

/// The filter for one search: the configured scope filter, narrowed to entries changed at or
/// after `since` for a delta import.
pub(crate) fn search_filter(scope_filter: &str, since: Option<&GeneralizedTime>) -> String {
    let scope_filter = scope_filter.trim();
    match since {
        None => scope_filter.to_owned(),
        Some(t) => format!(
            "(&{scope_filter}({MODIFY_TIMESTAMP}>={}))",
            escape_filter_value(t.as_str())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_rfc4515_specials() {
        assert_eq!(escape_filter_value("plain"), "plain");
        assert_eq!(
            escape_filter_value("a*b(c)d\\e\0f"),
            "a\\2ab\\28c\\29d\\5ce\\00f"
        );
        assert_eq!(escape_filter_value("Müller"), "Müller");
    }

    #[test]
    fn full_and_delta_filters() {
        assert_eq!(
            search_filter("(objectClass=inetOrgPerson)", None),
            "(objectClass=inetOrgPerson)"
        );
        let t = GeneralizedTime::parse("20240131235959Z").unwrap();
        let f = search_filter(" (&(objectClass=person)(!(uid=svc-*))) ", Some(&t));
        assert_eq!(
            f,
            "(&(&(objectClass=person)(!(uid=svc-*)))(modifyTimestamp>=20240131235959Z))"
        );
        assert!(check_filter(&f).is_ok());
        let t = GeneralizedTime::parse("20240131235959.0Z").unwrap();
        assert_eq!(
            search_filter("(objectClass=group)", Some(&t)),
            "(&(objectClass=group)(modifyTimestamp>=20240131235959.0Z))"
        );
    }

    #[test]
    fn configured_filters_are_checked_not_rewritten() {
        for ok in [
            "(objectClass=*)",
            "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
            "(cn=a\\28b\\29)",
            "  (uid=x)  ",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("objectClass=person", "enclosed in parentheses"),
            ("(objectClass=person", "enclosed in parentheses"),
            ("(a=1)(b=2)", "single filter"),
            ("(&(a=1)))", "single filter"),
            ("((a=1)", "unmatched '('"),
            ("(a=1))(", "enclosed in parentheses"),
            ("(=x)", "not a valid LDAP filter"),
        ] {
            let e = check_filter(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
