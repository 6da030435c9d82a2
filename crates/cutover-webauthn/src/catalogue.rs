//! The AAGUID catalogue: which authenticator model an AAGUID names, for the admin's passkey list
//! and the authentication methods policy's model allow and block lists.
//!
//! A small catalogue ships with the crate (`aaguids.json`: public, well-known AAGUIDs only);
//! an operator can load a file of the same shape and merge it over the bundled one.
//! The file is a JSON object mapping an AAGUID (hyphenated, any case) to
//! `{ "name": "…", "kind": "platform" | "securityKey" | "passwordManager" | "virtual" }`.
//!
//! An AAGUID is self-reported unless the registration's attestation was verified: the catalogue
//! names what an authenticator *claims* to be.

use crate::error::{ConfigError, bounded};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// Most entries one catalogue file may hold.
pub const MAX_CATALOGUE_ENTRIES: usize = 10_000;
/// Most characters of one model name.
pub const MAX_MODEL_NAME_CHARS: usize = 100;

const BUNDLED: &str = include_str!("aaguids.json");

/// What kind of authenticator a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// Built into an operating system or browser (iCloud Keychain, Windows Hello, Google
    /// Password Manager).
    Platform,
    /// A roaming hardware key (USB, NFC, BLE).
    SecurityKey,
    /// A third-party password manager that stores passkeys.
    PasswordManager,
    /// A software authenticator for testing (a browser's virtual authenticator).
    Virtual,
}

impl Kind {
    /// The catalogue's spelling: `platform`, `securityKey`, `passwordManager`, `virtual`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Platform => "platform",
            Kind::SecurityKey => "securityKey",
            Kind::PasswordManager => "passwordManager",
            Kind::Virtual => "virtual",
        }
    }
}

/// One model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The model's name (e.g. "YubiKey 5 Series").
    pub name: String,
    /// What kind of authenticator it is.
    pub kind: Kind,
}

/// AAGUID → model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    models: BTreeMap<Uuid, Model>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    kind: Kind,
}

/// The entries of the file in order, stopping at the limit before reading further.
struct Entries(Vec<(String, RawModel)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping AAGUIDs to { name, kind }")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.len() == MAX_CATALOGUE_ENTRIES {
                        return Err(A::Error::custom(format!(
                            "more than {MAX_CATALOGUE_ENTRIES} entries"
                        )));
                    }
                    let model: RawModel = map.next_value()?;
                    entries.push((key, model));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl Catalogue {
    /// The catalogue that ships with Cutover (parsed on each call: keep the result).
    pub fn bundled() -> Self {
        // The bundled file is checked by a test; an empty catalogue only loses names.
        Catalogue::from_json(BUNDLED).unwrap_or_default()
    }

    /// Reads a catalogue file, refusing malformed or nil AAGUIDs, an AAGUID listed twice,
    /// empty, over-long or control-character names, unknown kinds or fields, and more than
    /// [`MAX_CATALOGUE_ENTRIES`] entries.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let Entries(entries) = serde_json::from_str(json)
            .map_err(|e| ConfigError::new("catalogue", bounded(&e.to_string())))?;
        let mut models = BTreeMap::new();
        for (key, raw) in entries {
            let field = || format!("catalogue[{}]", bounded(&key));
            let aaguid = (key.len() == 36)
                .then(|| Uuid::try_parse(&key).ok())
                .flatten()
                .ok_or_else(|| ConfigError::new(field(), "not a hyphenated AAGUID"))?;
            if aaguid.is_nil() {
                return Err(ConfigError::new(
                    field(),
                    "the all-zero AAGUID names no model (authenticators send it when they withhold their model)",
                ));
            }
            let name = raw.name.trim();
            if name.is_empty() {
                return Err(ConfigError::new(field(), "name is empty"));
            }
            if name.chars().count() > MAX_MODEL_NAME_CHARS {
                return Err(ConfigError::new(
                    field(),
                    format!("name longer than {MAX_MODEL_NAME_CHARS} characters"),
                ));
            }
            if name.chars().any(char::is_control) {
                return Err(ConfigError::new(
                    field(),
                    "name contains control characters",
                ));
            }
            let model = Model {
                name: name.to_owned(),
                kind: raw.kind,
            };
            if models.insert(aaguid, model).is_some() {
                return Err(ConfigError::new(field(), "listed twice"));
            }
        }
        Ok(Catalogue { models })
    }

    /// This catalogue with `other`'s entries added; where both name an AAGUID, `other` wins
    /// (an operator's file merged over the bundled catalogue).
    #[must_use]
    pub fn merged(mut self, other: Catalogue) -> Self {
        self.models.extend(other.models);
        self
    }

    /// The model of `aaguid`, if known.
    pub fn model_of(&self, aaguid: Uuid) -> Option<&Model> {
        self.models.get(&aaguid)
    }

    /// The name of `aaguid`'s model, if known (never for the all-zero AAGUID).
    pub fn name_of(&self, aaguid: Uuid) -> Option<&str> {
        self.model_of(aaguid).map(|m| m.name.as_str())
    }

    /// The kind of `aaguid`'s model, if known.
    pub fn kind_of(&self, aaguid: Uuid) -> Option<Kind> {
        self.model_of(aaguid).map(|m| m.kind)
    }

    /// All entries, ordered by AAGUID.
    pub fn iter(&self) -> impl Iterator<Item = (Uuid, &Model)> {
        self.models.iter().map(|(aaguid, model)| (*aaguid, model))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aaguid(text: &str) -> Uuid {
        Uuid::parse_str(text).unwrap()
    }

    fn catalogue_of(n: usize) -> String {
        let entries: Vec<String> = (1..=n)
            .map(|i| {
                format!(
                    "\"{}\": {{\"name\": \"Model {i}\", \"kind\": \"securityKey\"}}",
                    Uuid::from_u128(i as u128).hyphenated()
                )
            })
            .collect();
        format!("{{{}}}", entries.join(","))
    }

    fn problem(json: &str) -> String {
        Catalogue::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn bundled_catalogue_parses_and_names_well_known_models() {
        let bundled = Catalogue::from_json(BUNDLED).expect("bundled aaguids.json is valid");
        assert_eq!(bundled, Catalogue::bundled());
        assert_eq!(bundled.len(), 13);
        assert_eq!(
            bundled.name_of(aaguid("fbfc3007-154e-4ecc-8c0b-6e020557d7bd")),
            Some("iCloud Keychain")
        );
        assert_eq!(
            bundled.kind_of(aaguid("ee882879-721c-4913-9775-3dfcce97072a")),
            Some(Kind::SecurityKey)
        );
        assert_eq!(
            bundled.kind_of(aaguid("d548826e-79b4-db40-a3d8-11116f7e8349")),
            Some(Kind::PasswordManager)
        );
        let chromium = Uuid::from_bytes([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bundled.kind_of(chromium), Some(Kind::Virtual));
        assert_eq!(bundled.name_of(Uuid::nil()), None);
        assert_eq!(
            bundled.name_of(aaguid("00000000-0000-0000-0000-000000000001")),
            None
        );
    }

    #[test]
    fn entry_limit_edge() {
        let at_limit = Catalogue::from_json(&catalogue_of(MAX_CATALOGUE_ENTRIES)).unwrap();
        assert_eq!(at_limit.len(), MAX_CATALOGUE_ENTRIES);
        let over = problem(&catalogue_of(MAX_CATALOGUE_ENTRIES + 1));
        assert!(over.contains("more than 10000 entries"), "{over}");
    }

    #[test]
    fn refuses_bad_entries_naming_them() {
        let yubi = "ee882879-721c-4913-9775-3dfcce97072a";
        assert!(problem("[]").starts_with("catalogue: "));
        assert!(problem("{").starts_with("catalogue: "));
        assert!(
            problem(r#"{"nope": {"name": "X", "kind": "platform"}}"#)
                .contains("catalogue[nope]: not a hyphenated AAGUID")
        );
        assert!(
            problem(r#"{"ee882879721c491397753dfcce97072a": {"name": "X", "kind": "platform"}}"#)
                .contains("not a hyphenated AAGUID")
        );
        assert!(
            problem(
                r#"{"00000000-0000-0000-0000-000000000000": {"name": "X", "kind": "platform"}}"#
            )
            .contains("all-zero AAGUID")
        );
        assert!(
            problem(&format!(
                r#"{{"{yubi}": {{"name": " ", "kind": "platform"}}}}"#
            ))
            .contains("name is empty")
        );
        assert!(
            problem(&format!(
                r#"{{"{yubi}": {{"name": "A\u0007", "kind": "platform"}}}}"#
            ))
            .contains("control characters")
        );
        let long = "n".repeat(MAX_MODEL_NAME_CHARS + 1);
        assert!(
            problem(&format!(
                r#"{{"{yubi}": {{"name": "{long}", "kind": "platform"}}}}"#
            ))
            .contains("longer than 100")
        );
        let longest = "n".repeat(MAX_MODEL_NAME_CHARS);
        assert!(
            Catalogue::from_json(&format!(
                r#"{{"{yubi}": {{"name": "{longest}", "kind": "platform"}}}}"#
            ))
            .is_ok()
        );
        assert!(
            problem(&format!(
                r#"{{"{yubi}": {{"name": "X", "kind": "phone"}}}}"#
            ))
            .contains("unknown variant")
        );
        assert!(
            problem(&format!(
                r#"{{"{yubi}": {{"name": "X", "kind": "platform", "icon": ""}}}}"#
            ))
            .contains("unknown field")
        );
        let twice = format!(
            r#"{{"{yubi}": {{"name": "X", "kind": "platform"}}, "{}": {{"name": "Y", "kind": "platform"}}}}"#,
            yubi.to_uppercase()
        );
        assert!(problem(&twice).contains("listed twice"));
    }

    #[test]
    fn operator_entries_override_bundled_ones() {
        let yubi = aaguid("ee882879-721c-4913-9775-3dfcce97072a");
        let extra = aaguid("12345678-1234-4234-8234-123456789abc");
        let operator = Catalogue::from_json(&format!(
            r#"{{"{yubi}": {{"name": "Corporate key", "kind": "securityKey"}},
                "{extra}": {{"name": "Lab tablet", "kind": "platform"}}}}"#
        ))
        .unwrap();
        let merged = Catalogue::bundled().merged(operator);
        assert_eq!(merged.name_of(yubi), Some("Corporate key"));
        assert_eq!(merged.kind_of(extra), Some(Kind::Platform));
        assert_eq!(merged.len(), Catalogue::bundled().len() + 1);
        assert_eq!(Kind::PasswordManager.as_str(), "passwordManager");
    }
}
