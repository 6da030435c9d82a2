//! Entries as the connector returns them: DN, anchor, raw attribute values.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;

use crate::time::GeneralizedTime;

/// One directory entry. Attribute names are lower-cased (`entryuuid`, `memberof`); values are
/// the raw bytes the server sent, in the server's order except that, for an attribute with
/// both UTF-8 and binary values, the binary ones come first (value order carries no meaning
/// in LDAP). The anchor and `modifytimestamp` are in `attributes` too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapEntry {
    pub dn: String,
    /// The anchor attribute's value: as text, or base64 of the 16 bytes for `objectGUID`.
    pub anchor: String,
    pub modify_timestamp: Option<GeneralizedTime>,
    pub attributes: BTreeMap<String, Vec<Vec<u8>>>,
}

impl LdapEntry {
    /// The values of `name` (any case).
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attributes
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// The first value of `name` as UTF-8 text, if there is one and it is text.
    pub fn first_str(&self, name: &str) -> Option<&str> {
        self.values(name)
            .first()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// An entry the connector could not return, and why (e.g. it has no anchor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEntry {
    pub dn: String,
    pub reason: String,
}

/// Merge ldap3's split view of an entry (`attrs`: attributes whose values are all UTF-8,
/// `bin_attrs`: the others) into one map of lower-cased names to raw values.
pub(crate) fn merge_attributes(
    attrs: HashMap<String, Vec<String>>,
    bin_attrs: HashMap<String, Vec<Vec<u8>>>,
) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (name, values) in bin_attrs {
        out.entry(name.to_ascii_lowercase())
            .or_default()
            .extend(values);
    }
    for (name, values) in attrs {
        out.entry(name.to_ascii_lowercase())
            .or_default()
            .extend(values.into_iter().map(String::into_bytes));
    }
    out
}

/// Active Directory's binary GUID, given as base64 of its 16 bytes.
fn is_binary_guid(attribute: &str) -> bool {
    attribute.eq_ignore_ascii_case("objectGUID")
}

/// The anchor text for `attribute`'s raw value, or why there is none.
pub(crate) fn anchor_value(attribute: &str, raw: &[u8]) -> Result<String, String> {
    if is_binary_guid(attribute) {
        if raw.len() != 16 {
            return Err(format!(
                "its {attribute} is {} bytes long, expected the 16 bytes of a GUID",
                raw.len()
            ));
        }
        return Ok(base64::engine::general_purpose::STANDARD.encode(raw));
    }
    match std::str::from_utf8(raw) {
        Ok("") => Err(format!("its {attribute} is empty")),
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(format!(
            "its {attribute} is binary, not text (only objectGUID is supported as a binary anchor)"
        )),
    }
}

/// Turn a search result into an entry, or say why it has to be skipped.
pub(crate) fn build_entry(
    dn: String,
    attributes: BTreeMap<String, Vec<Vec<u8>>>,
    anchor_attribute: &str,
) -> Result<LdapEntry, SkippedEntry> {
    let skip = |reason: String| SkippedEntry {
        dn: dn.clone(),
        reason,
    };
    let values = attributes
        .get(&anchor_attribute.to_ascii_lowercase())
        .map_or(&[][..], Vec::as_slice);
    let anchor = match values {
        [] => {
            return Err(skip(format!(
                "it has no {anchor_attribute} (anchor_attribute); check the attribute name and that bind_dn may read it"
            )));
        }
        [one] => anchor_value(anchor_attribute, one).map_err(skip)?,
        many => {
            return Err(skip(format!(
                "its {anchor_attribute} has {} values; an anchor must have exactly one",
                many.len()
            )));
        }
    };
    let modify_timestamp = attributes
        .get("modifytimestamp")
        .and_then(|v| v.first())
        .and_then(|raw| {
            let text = String::from_utf8_lossy(raw);
            GeneralizedTime::parse(&text)
                .inspect_err(
                    |e| tracing::warn!(%dn, error = %e, "ignoring an unreadable modifyTimestamp"),
                )
                .ok()
        });
    Ok(LdapEntry {
        dn,
        anchor,
        modify_timestamp,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[&[u8]])]) -> BTreeMap<String, Vec<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_vec()).collect()))
            .collect()
    }

    #[test]
    fn merges_text_and_binary_attributes_lower_cased() {
        let attrs = HashMap::from([
            ("entryUUID".to_owned(), vec!["0c9a-…".to_owned()]),
            ("cn".to_owned(), vec!["Alice".to_owned(), "Ali".to_owned()]),
        ]);
        let bin = HashMap::from([
            (
                "description".to_owned(),
                vec![vec![0xff, 0xfe], b"text too".to_vec()],
            ),
            ("objectGUID".to_owned(), vec![vec![0u8; 16]]),
        ]);
        let m = merge_attributes(attrs, bin);
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["cn", "description", "entryuuid", "objectguid"]
        );
        assert_eq!(m["cn"], vec![b"Alice".to_vec(), b"Ali".to_vec()]);
        assert_eq!(
            m["description"],
            vec![vec![0xff, 0xfe], b"text too".to_vec()]
        );
        assert_eq!(m["objectguid"], vec![vec![0u8; 16]]);
        assert_eq!(m["entryuuid"], vec!["0c9a-…".as_bytes().to_vec()]);
    }

    #[test]
    fn same_attribute_in_both_halves_is_combined() {
        // ldap3 never does this today, but a name differing only in case must not be lost.
        let attrs = HashMap::from([("Member".to_owned(), vec!["cn=a".to_owned()])]);
        let bin = HashMap::from([("member".to_owned(), vec![vec![0x80]])]);
        assert_eq!(
            merge_attributes(attrs, bin)["member"],
            vec![vec![0x80], b"cn=a".to_vec()]
        );
    }

    #[test]
    fn object_guid_anchor_is_base64_of_16_bytes() {
        let guid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            anchor_value("objectGUID", &guid).unwrap(),
            "AAECAwQFBgcICQoLDA0ODw=="
        );
        assert_eq!(
            anchor_value("objectguid", &[0xff; 16]).unwrap(),
            "/////////////////////w=="
        );
        let e = anchor_value("objectGUID", &[1, 2, 3]).unwrap_err();
        assert!(e.contains("3 bytes long"), "{e}");
        // A GUID that happens to be valid UTF-8 is still base64.
        assert_eq!(
            anchor_value("objectGUID", b"ABCDEFGHIJKLMNOP").unwrap(),
            "QUJDREVGR0hJSktMTU5PUA=="
        );
    }

    #[test]
    fn text_anchors_are_taken_as_they_are() {
        assert_eq!(
            anchor_value("entryUUID", b"5b1a7d3e-7a6a-1041-8177-c18c27df5421").unwrap(),
            "5b1a7d3e-7a6a-1041-8177-c18c27df5421"
        );
        assert!(
            anchor_value("entryUUID", b"")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            anchor_value("entryUUID", &[0xff])
                .unwrap_err()
                .contains("binary")
        );
    }

    #[test]
    fn entry_without_anchor_is_skipped_with_reason() {
        let s = build_entry(
            "uid=x,dc=t".into(),
            map(&[("uid", &[b"x"]), ("modifytimestamp", &[b"20240101000000Z"])]),
            "entryUUID",
        )
        .unwrap_err();
        assert_eq!(s.dn, "uid=x,dc=t");
        assert!(
            s.reason.contains("no entryUUID (anchor_attribute)"),
            "{}",
            s.reason
        );

        let s = build_entry(
            "uid=y,dc=t".into(),
            map(&[("entryuuid", &[b"a", b"b"])]),
            "entryUUID",
        )
        .unwrap_err();
        assert!(s.reason.contains("2 values"), "{}", s.reason);

        let s = build_entry(
            "cn=z,dc=t".into(),
            map(&[("objectguid", &[b"short"])]),
            "objectGUID",
        )
        .unwrap_err();
        assert!(s.reason.contains("5 bytes"), "{}", s.reason);
    }

    #[test]
    fn entry_with_anchor_keeps_everything() {
        let e = build_entry(
            "uid=a,dc=t".into(),
            map(&[
                ("entryuuid", &[b"u-1"]),
                ("modifytimestamp", &[b"20240102030405Z"]),
                ("description", &[&[0xff, 0xfe]]),
            ]),
            "entryUUID",
        )
        .unwrap();
        assert_eq!(e.anchor, "u-1");
        assert_eq!(
            e.modify_timestamp,
            Some(GeneralizedTime::parse("20240102030405Z").unwrap())
        );
        assert_eq!(e.values("Description"), [vec![0xff, 0xfe]]);
        assert_eq!(e.first_str("entryUUID"), Some("u-1"));
        assert_eq!(e.first_str("description"), None);
        assert!(e.values("mail").is_empty());

        // An unreadable timestamp does not lose the entry.
        let e = build_entry(
            "uid=b,dc=t".into(),
            map(&[("entryuuid", &[b"u-2"]), ("modifytimestamp", &[b"garbage"])]),
            "entryUUID",
        )
        .unwrap();
        assert_eq!(e.modify_timestamp, None);
    }
}
