//! Authentication strengths (SPEC §6.5): what the methods of one sign-in session prove, as the
//! `amr` and `acr` of its tokens, and whether they satisfy a strength that Conditional Access
//! or an application (`acr_values`) asks for.
//!
//! Built in, from weakest to strongest:
//!
//! | strength | satisfied by |
//! |---|---|
//! | `mfa` | two different kinds of factor (a password and a TOTP code), a passkey (it verifies the user), or a Temporary Access Pass (issued after the helpdesk verified the person) |
//! | `passwordlessMfa` | a passkey |
//! | `phishingResistantMfa` | a passkey (bound to the origin by WebAuthn) |
//!
//! A custom strength lists the exact combinations it accepts and may restrict passkeys to
//! AAGUIDs (makes and models of authenticator).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What one step of a sign-in used. Password covers every way a password is checked (set in
/// Cutover, a synced hash, pass-through): they prove the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MethodKind {
    Password,
    /// The upstream (federated) identity provider signed the user in.
    Federated,
    Totp,
    Passkey,
    TemporaryAccessPass,
}

impl MethodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Federated => "federated",
            Self::Totp => "totp",
            Self::Passkey => "passkey",
            Self::TemporaryAccessPass => "temporaryAccessPass",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Password,
            Self::Federated,
            Self::Totp,
            Self::Passkey,
            Self::TemporaryAccessPass,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The factor a method proves, for "two different kinds".
    fn factor(self) -> Factor {
        match self {
            Self::Password => Factor::Knowledge,
            Self::Totp => Factor::Possession,
            // A passkey proves possession of the key and, with user verification (always
            // required by Cutover), the user's PIN or biometric.
            Self::Passkey => Factor::Multi,
            Self::TemporaryAccessPass => Factor::Multi,
            // What the upstream checked is the upstream's business: one factor here unless it
            // said more (`UsedMethod::upstream_mfa`).
            Self::Federated => Factor::Knowledge,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Factor {
    Knowledge,
    Possession,
    /// On its own counts as multi-factor.
    Multi,
}

/// One method used in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsedMethod {
    pub kind: MethodKind,
    /// A passkey's authenticator model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aaguid: Option<Uuid>,
    /// A passkey that is synced between devices (backed up) rather than bound to one.
    #[serde(default)]
    pub synced: bool,
    /// A federated sign-in whose upstream asserted multi-factor authentication.
    #[serde(default)]
    pub upstream_mfa: bool,
}

impl UsedMethod {
    pub fn of(kind: MethodKind) -> Self {
        Self {
            kind,
            aaguid: None,
            synced: false,
            upstream_mfa: false,
        }
    }

    pub fn passkey(aaguid: Option<Uuid>, synced: bool) -> Self {
        Self {
            aaguid,
            synced,
            ..Self::of(MethodKind::Passkey)
        }
    }
}

/// A built-in strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuiltIn {
    Mfa,
    PasswordlessMfa,
    PhishingResistantMfa,
}

impl BuiltIn {
    /// Weakest first.
    pub const ALL: [BuiltIn; 3] = [Self::Mfa, Self::PasswordlessMfa, Self::PhishingResistantMfa];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mfa => "mfa",
            Self::PasswordlessMfa => "passwordlessMfa",
            Self::PhishingResistantMfa => "phishingResistantMfa",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// Most combinations a custom strength may list, and most AAGUIDs it may name.
pub const MAX_COMBINATIONS: usize = 32;
pub const MAX_AAGUIDS: usize = 256;
pub const MAX_STRENGTH_NAME_LEN: usize = 128;

/// An administrator's strength: the exact combinations of methods it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomStrength {
    pub name: String,
    /// Each combination is a set of methods that, all used, satisfies the strength.
    pub combinations: Vec<BTreeSet<MethodKind>>,
    /// When set, a passkey counts only if its AAGUID is listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_aaguids: Option<BTreeSet<Uuid>>,
}

impl CustomStrength {
    /// Check the definition on its own; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > MAX_STRENGTH_NAME_LEN {
            return Err(format!(
                "name must be 1 to {MAX_STRENGTH_NAME_LEN} characters"
            ));
        }
        if BuiltIn::parse(name).is_some() {
            return Err(format!("name '{name}' is a built-in strength's name"));
        }
        if self.combinations.is_empty() || self.combinations.len() > MAX_COMBINATIONS {
            return Err(format!(
                "combinations must list 1 to {MAX_COMBINATIONS} combinations"
            ));
        }
        if let Some((i, _)) = self
            .combinations
            .iter()
            .enumerate()
            .find(|(_, c)| c.is_empty())
        {
            return Err(format!("combinations[{i}] is empty"));
        }
        if let Some(a) = &self.allowed_aaguids {
            if a.is_empty() || a.len() > MAX_AAGUIDS {
                return Err(format!(
                    "allowedAaguids must name 1 to {MAX_AAGUIDS} AAGUIDs (leave it out to allow every passkey)"
                ));
            }
            if !self
                .combinations
                .iter()
                .any(|c| c.contains(&MethodKind::Passkey))
            {
                return Err(
                    "allowedAaguids restricts passkeys, but no combination uses a passkey".into(),
                );
            }
        }
        Ok(())
    }
}

/// A required strength.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strength {
    BuiltIn(BuiltIn),
    Custom(CustomStrength),
}

/// Whether the methods of a session meet a built-in strength.
pub fn meets_built_in(methods: &[UsedMethod], b: BuiltIn) -> bool {
    let passkey = methods.iter().any(|m| m.kind == MethodKind::Passkey);
    match b {
        BuiltIn::PhishingResistantMfa | BuiltIn::PasswordlessMfa => passkey,
        BuiltIn::Mfa => {
            if methods
                .iter()
                .any(|m| m.kind.factor() == Factor::Multi || m.upstream_mfa)
            {
                return true;
            }
            let factors: BTreeSet<_> = methods
                .iter()
                .map(|m| match m.kind.factor() {
                    Factor::Knowledge => 0u8,
                    Factor::Possession => 1,
                    Factor::Multi => 2,
                })
                .collect();
            factors.len() >= 2
        }
    }
}

/// Whether the methods of a session meet `strength`.
pub fn satisfies(methods: &[UsedMethod], strength: &Strength) -> bool {
    match strength {
        Strength::BuiltIn(b) => meets_built_in(methods, *b),
        Strength::Custom(c) => {
            let counts = |m: &UsedMethod| {
                m.kind != MethodKind::Passkey
                    || c.allowed_aaguids
                        .as_ref()
                        .is_none_or(|allowed| m.aaguid.is_some_and(|a| allowed.contains(&a)))
            };
            let used: BTreeSet<MethodKind> = methods
                .iter()
                .filter(|m| counts(m))
                .map(|m| m.kind)
                .collect();
            c.combinations.iter().any(|combo| combo.is_subset(&used))
        }
    }
}

/// The strongest built-in strength the methods meet (`None`: single factor).
pub fn strongest(methods: &[UsedMethod]) -> Option<BuiltIn> {
    BuiltIn::ALL
        .into_iter()
        .rev()
        .find(|b| meets_built_in(methods, *b))
}

/// The `acr` of tokens for these methods: the strongest built-in strength's name, or `"1"`
/// (single factor).
pub fn acr(methods: &[UsedMethod]) -> &'static str {
    strongest(methods).map_or(SINGLE_FACTOR_ACR, BuiltIn::as_str)
}

/// The `acr` of a single-factor session.
pub const SINGLE_FACTOR_ACR: &str = "1";

/// The `amr` of tokens for these methods (RFC 8176 values where one fits), without
/// duplicates, in a stable order; `mfa` when the methods meet the built-in `mfa`.
pub fn amr(methods: &[UsedMethod]) -> Vec<&'static str> {
    let mut out: BTreeSet<&'static str> = BTreeSet::new();
    for m in methods {
        match m.kind {
            MethodKind::Password => {
                out.insert("pwd");
            }
            MethodKind::Federated => {
                out.insert("fed");
            }
            MethodKind::Totp => {
                out.insert("otp");
            }
            MethodKind::Passkey => {
                // A device-bound key is hardware-secured; a synced one is a software key.
                // User verification (PIN or biometric) is always required.
                out.insert(if m.synced { "swk" } else { "hwk" });
                out.insert("user");
            }
            MethodKind::TemporaryAccessPass => {
                out.insert("tap");
            }
        }
    }
    if meets_built_in(methods, BuiltIn::Mfa) {
        out.insert("mfa");
    }
    out.into_iter().collect()
}

/// The methods behind a list of `amr` values as the sign-in paths write them (the inverse
/// of [`amr`], as far as `amr` keeps what it needs): `pwd` a password, `fed` the upstream,
/// `otp` a TOTP code, `hwk`/`swk` a passkey (device-bound or synced), `tap` a Temporary
/// Access Pass. Other values (`mfa`, `user`) add nothing on their own.
pub fn methods_from_amr<S: AsRef<str>>(amr: &[S]) -> Vec<UsedMethod> {
    amr.iter()
        .filter_map(|v| match v.as_ref() {
            "pwd" => Some(UsedMethod::of(MethodKind::Password)),
            "fed" => Some(UsedMethod::of(MethodKind::Federated)),
            "otp" => Some(UsedMethod::of(MethodKind::Totp)),
            "hwk" => Some(UsedMethod::passkey(None, false)),
            "swk" => Some(UsedMethod::passkey(None, true)),
            "tap" => Some(UsedMethod::of(MethodKind::TemporaryAccessPass)),
            _ => None,
        })
        .collect()
}

/// The `acr` values Cutover can assert, weakest first (discovery's `acr_values_supported`).
pub const ACR_VALUES_SUPPORTED: [&str; 4] = [
    SINGLE_FACTOR_ACR,
    "mfa",
    "passwordlessMfa",
    "phishingResistantMfa",
];

/// The built-in strength an authorization request's `acr_values` asks for: the strongest of
/// the values Cutover knows (unknown values are ignored, as OpenID Connect Core §3.1.2.1
/// makes `acr_values` a voluntary request). `None` when none is known.
pub fn requested(acr_values: &str) -> Option<BuiltIn> {
    acr_values
        .split_ascii_whitespace()
        .filter_map(BuiltIn::parse)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(kinds: &[MethodKind]) -> Vec<UsedMethod> {
        kinds.iter().map(|k| UsedMethod::of(*k)).collect()
    }

    use MethodKind::*;

    #[test]
    fn built_in_strengths_table() {
        // (methods, mfa, passwordless, phishing-resistant, acr)
        let cases: Vec<(Vec<UsedMethod>, bool, bool, bool, &str)> = vec![
            (m(&[]), false, false, false, "1"),
            (m(&[Password]), false, false, false, "1"),
            (m(&[Federated]), false, false, false, "1"),
            (m(&[Totp]), false, false, false, "1"),
            (m(&[Password, Password]), false, false, false, "1"),
            (m(&[Password, Federated]), false, false, false, "1"),
            (m(&[Password, Totp]), true, false, false, "mfa"),
            (m(&[Federated, Totp]), true, false, false, "mfa"),
            (m(&[TemporaryAccessPass]), true, false, false, "mfa"),
            (
                vec![UsedMethod::passkey(None, false)],
                true,
                true,
                true,
                "phishingResistantMfa",
            ),
            (
                vec![UsedMethod::passkey(None, true)],
                true,
                true,
                true,
                "phishingResistantMfa",
            ),
            (
                vec![UsedMethod {
                    upstream_mfa: true,
                    ..UsedMethod::of(Federated)
                }],
                true,
                false,
                false,
                "mfa",
            ),
        ];
        for (methods, mfa, pwless, phr, acr_want) in cases {
            assert_eq!(meets_built_in(&methods, BuiltIn::Mfa), mfa, "{methods:?}");
            assert_eq!(
                meets_built_in(&methods, BuiltIn::PasswordlessMfa),
                pwless,
                "{methods:?}"
            );
            assert_eq!(
                meets_built_in(&methods, BuiltIn::PhishingResistantMfa),
                phr,
                "{methods:?}"
            );
            assert_eq!(acr(&methods), acr_want, "{methods:?}");
        }
    }

    #[test]
    fn amr_names_what_was_done() {
        assert_eq!(amr(&m(&[Password])), vec!["pwd"]);
        assert_eq!(amr(&m(&[Password, Totp])), vec!["mfa", "otp", "pwd"]);
        assert_eq!(
            amr(&[UsedMethod::passkey(None, false)]),
            vec!["hwk", "mfa", "user"]
        );
        assert_eq!(
            amr(&[UsedMethod::passkey(None, true)]),
            vec!["mfa", "swk", "user"]
        );
        assert_eq!(amr(&m(&[TemporaryAccessPass])), vec!["mfa", "tap"]);
        assert_eq!(amr(&m(&[Federated])), vec!["fed"]);
        assert!(amr(&[]).is_empty());
    }

    #[test]
    fn custom_strengths_accept_exact_combinations_and_restrict_aaguids() {
        let yubikey = Uuid::from_u128(0xcb69481e_8ff7_4039_93ec_0a2729a154a8);
        let other = Uuid::from_u128(7);
        let c = CustomStrength {
            name: "Security keys or password + TOTP".into(),
            combinations: vec![BTreeSet::from([Passkey]), BTreeSet::from([Password, Totp])],
            allowed_aaguids: Some(BTreeSet::from([yubikey])),
        };
        c.validate().unwrap();
        let s = Strength::Custom(c);
        assert!(satisfies(&[UsedMethod::passkey(Some(yubikey), false)], &s));
        assert!(
            !satisfies(&[UsedMethod::passkey(Some(other), true)], &s),
            "a passkey of an unlisted model does not count"
        );
        assert!(
            !satisfies(&[UsedMethod::passkey(None, false)], &s),
            "nor one whose model is unknown"
        );
        assert!(satisfies(&m(&[Password, Totp]), &s));
        assert!(!satisfies(&m(&[Password]), &s));
        assert!(
            !satisfies(&m(&[TemporaryAccessPass]), &s),
            "only the listed combinations count, even if they are MFA"
        );
        assert!(satisfies(&m(&[Totp, Password, Federated]), &s));
    }

    #[test]
    fn custom_strength_definitions_are_checked_by_field() {
        let ok = CustomStrength {
            name: "x".into(),
            combinations: vec![BTreeSet::from([Passkey])],
            allowed_aaguids: None,
        };
        assert!(ok.validate().is_ok());
        let err = |c: CustomStrength| c.validate().unwrap_err();
        assert!(
            err(CustomStrength {
                name: " ".into(),
                ..ok.clone()
            })
            .contains("name")
        );
        assert!(
            err(CustomStrength {
                name: "mfa".into(),
                ..ok.clone()
            })
            .contains("built-in")
        );
        assert!(
            err(CustomStrength {
                combinations: vec![],
                ..ok.clone()
            })
            .contains("combinations")
        );
        assert!(
            err(CustomStrength {
                combinations: vec![BTreeSet::new()],
                ..ok.clone()
            })
            .contains("combinations[0]")
        );
        assert!(
            err(CustomStrength {
                combinations: vec![BTreeSet::from([Password, Totp])],
                allowed_aaguids: Some(BTreeSet::from([Uuid::from_u128(1)])),
                ..ok.clone()
            })
            .contains("no combination uses a passkey")
        );
        assert!(
            err(CustomStrength {
                allowed_aaguids: Some(BTreeSet::new()),
                ..ok.clone()
            })
            .contains("allowedAaguids")
        );
        assert!(
            err(CustomStrength {
                combinations: vec![BTreeSet::from([Passkey]); MAX_COMBINATIONS + 1],
                ..ok.clone()
            })
            .contains("combinations")
        );
        assert!(
            CustomStrength {
                combinations: vec![BTreeSet::from([Passkey]); MAX_COMBINATIONS],
                ..ok
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn acr_values_ask_for_the_strongest_known_value() {
        assert_eq!(requested(""), None);
        assert_eq!(requested("urn:other:acr gold"), None);
        assert_eq!(requested("mfa"), Some(BuiltIn::Mfa));
        assert_eq!(
            requested("mfa phishingResistantMfa passwordlessMfa"),
            Some(BuiltIn::PhishingResistantMfa)
        );
        assert_eq!(
            requested("  passwordlessMfa\tunknown "),
            Some(BuiltIn::PasswordlessMfa)
        );
        for b in BuiltIn::ALL {
            assert_eq!(BuiltIn::parse(b.as_str()), Some(b));
        }
        for k in [Password, Federated, Totp, Passkey, TemporaryAccessPass] {
            assert_eq!(MethodKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn amr_values_map_back_to_the_methods_and_the_same_acr() {
        let cases: Vec<Vec<UsedMethod>> = vec![
            m(&[Password]),
            m(&[Federated]),
            m(&[Password, Totp]),
            m(&[TemporaryAccessPass]),
            vec![UsedMethod::passkey(None, false)],
            vec![UsedMethod::passkey(None, true)],
            vec![],
        ];
        for methods in cases {
            let back = methods_from_amr(&amr(&methods));
            assert_eq!(acr(&back), acr(&methods), "{methods:?}");
            assert_eq!(amr(&back), amr(&methods), "{methods:?}");
        }
        assert_eq!(acr(&methods_from_amr(&["tap", "mfa"])), "mfa");
        assert_eq!(acr(&methods_from_amr(&["pwd"])), "1");
        assert!(methods_from_amr(&["mfa", "user", "unknown"]).is_empty());
        assert_eq!(ACR_VALUES_SUPPORTED[0], SINGLE_FACTOR_ACR);
        for b in BuiltIn::ALL {
            assert!(ACR_VALUES_SUPPORTED.contains(&b.as_str()));
        }
    }

    fn any_method() -> impl Strategy<Value = UsedMethod> {
        (
            prop_oneof![
                Just(Password),
                Just(Federated),
                Just(Totp),
                Just(Passkey),
                Just(TemporaryAccessPass)
            ],
            proptest::option::of(0u128..4),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(kind, aaguid, synced, upstream_mfa)| UsedMethod {
                kind,
                aaguid: aaguid.map(Uuid::from_u128),
                synced,
                upstream_mfa: upstream_mfa && kind == Federated,
            })
    }

    proptest! {
        /// Doing more never makes a session weaker: every strength met stays met, and the
        /// built-ins are ordered (phishing-resistant ⇒ passwordless ⇒ mfa).
        #[test]
        fn more_methods_never_weaken(
            base in proptest::collection::vec(any_method(), 0..4),
            extra in proptest::collection::vec(any_method(), 0..3),
        ) {
            let mut more = base.clone();
            more.extend(extra);
            for b in BuiltIn::ALL {
                if meets_built_in(&base, b) {
                    prop_assert!(meets_built_in(&more, b));
                }
            }
            prop_assert!(strongest(&more) >= strongest(&base));
            if meets_built_in(&base, BuiltIn::PhishingResistantMfa) {
                prop_assert!(meets_built_in(&base, BuiltIn::PasswordlessMfa));
            }
            if meets_built_in(&base, BuiltIn::PasswordlessMfa) {
                prop_assert!(meets_built_in(&base, BuiltIn::Mfa));
            }
            prop_assert_eq!(amr(&base).contains(&"mfa"), meets_built_in(&base, BuiltIn::Mfa));
        }
    }
}
