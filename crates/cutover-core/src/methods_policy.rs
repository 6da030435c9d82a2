//! The authentication methods policy (SPEC §6.1, issue "passkeys"): per method whether it is
//! enabled and for whom, and for passkeys whether attestation is enforced at registration and
//! which authenticator models (AAGUIDs) are allowed or blocked — at registration **and** at
//! sign-in. Before a key restriction changes, [`preview`] names the users and passkeys that
//! would stop working.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most groups one method may target or exclude.
pub const MAX_TARGET_GROUPS: usize = 100;
/// Most AAGUIDs one key restriction may list.
pub const MAX_RESTRICTED_AAGUIDS: usize = 500;

/// Who a method is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodTarget {
    pub enabled: bool,
    /// Everyone (`true`), or only members of `include_groups`.
    #[serde(default)]
    pub all_users: bool,
    #[serde(default)]
    pub include_groups: BTreeSet<Uuid>,
    /// Members of these groups may not use the method, whatever else applies.
    #[serde(default)]
    pub exclude_groups: BTreeSet<Uuid>,
}

impl MethodTarget {
    pub fn everyone(enabled: bool) -> Self {
        Self {
            enabled,
            all_users: true,
            include_groups: BTreeSet::new(),
            exclude_groups: BTreeSet::new(),
        }
    }

    fn validate(&self, method: &str) -> Result<(), String> {
        if self.all_users && !self.include_groups.is_empty() {
            return Err(format!(
                "{method}: give allUsers or includeGroups, not both"
            ));
        }
        if self.enabled && !self.all_users && self.include_groups.is_empty() {
            return Err(format!(
                "{method}: an enabled method needs allUsers or at least one of includeGroups"
            ));
        }
        for (name, set) in [
            ("includeGroups", &self.include_groups),
            ("excludeGroups", &self.exclude_groups),
        ] {
            if set.len() > MAX_TARGET_GROUPS {
                return Err(format!(
                    "{method}.{name}: at most {MAX_TARGET_GROUPS} groups, got {}",
                    set.len()
                ));
            }
        }
        if let Some(g) = self
            .include_groups
            .intersection(&self.exclude_groups)
            .next()
        {
            return Err(format!("{method}: group {g} is both included and excluded"));
        }
        Ok(())
    }

    /// Whether a member of `groups` (the user's groups, direct and transitive as the caller
    /// decides) may use the method.
    pub fn applies_to(&self, groups: &BTreeSet<Uuid>) -> bool {
        self.enabled
            && groups.is_disjoint(&self.exclude_groups)
            && (self.all_users || !groups.is_disjoint(&self.include_groups))
    }
}

/// Allow or block the listed authenticator models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Enforcement {
    Allow,
    Block,
}

/// A passkey model restriction; `None` in the policy when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRestrictions {
    pub enforcement: Enforcement,
    pub aaguids: BTreeSet<Uuid>,
}

impl KeyRestrictions {
    /// Whether a passkey of this model may be registered or used. An unknown model (no
    /// AAGUID, or the all-zero one that authenticators send without attestation) is never
    /// on an allow list, and never on a block list.
    pub fn allows(&self, aaguid: Option<Uuid>) -> bool {
        let known = aaguid.filter(|a| !a.is_nil());
        match self.enforcement {
            Enforcement::Allow => known.is_some_and(|a| self.aaguids.contains(&a)),
            Enforcement::Block => known.is_none_or(|a| !self.aaguids.contains(&a)),
        }
    }
}

/// Passkey settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasskeySettings {
    pub target: MethodTarget,
    /// Registration requires a verifiable attestation statement (checked at registration
    /// only: sign-in assertions carry none).
    #[serde(default)]
    pub enforce_attestation: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_restrictions: Option<KeyRestrictions>,
}

/// The methods Cutover knows, as the policy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PolicyMethod {
    Passkey,
    Totp,
    TemporaryAccessPass,
    Password,
}

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationMethodsPolicy {
    pub passkey: PasskeySettings,
    pub totp: MethodTarget,
    pub temporary_access_pass: MethodTarget,
    pub password: MethodTarget,
}

impl Default for AuthenticationMethodsPolicy {
    /// Every method for everyone, no restriction. (Temporary Access Passes stay off until the
    /// pass policy turns them on.)
    fn default() -> Self {
        Self {
            passkey: PasskeySettings {
                target: MethodTarget::everyone(true),
                enforce_attestation: false,
                key_restrictions: None,
            },
            totp: MethodTarget::everyone(true),
            // The Temporary Access Pass policy (`cutover_core::tap::TapPolicy`, off by
            // default) switches passes on; this target narrows who may use them.
            temporary_access_pass: MethodTarget::everyone(true),
            password: MethodTarget::everyone(true),
        }
    }
}

impl AuthenticationMethodsPolicy {
    /// Check the policy; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.passkey.target.validate("passkey")?;
        self.totp.validate("totp")?;
        self.temporary_access_pass.validate("temporaryAccessPass")?;
        self.password.validate("password")?;
        if let Some(r) = &self.passkey.key_restrictions {
            if r.aaguids.is_empty() {
                return Err("passkey.keyRestrictions.aaguids: list at least one AAGUID (or remove keyRestrictions)".into());
            }
            if r.aaguids.len() > MAX_RESTRICTED_AAGUIDS {
                return Err(format!(
                    "passkey.keyRestrictions.aaguids: at most {MAX_RESTRICTED_AAGUIDS}, got {}",
                    r.aaguids.len()
                ));
            }
            if r.aaguids.iter().any(Uuid::is_nil) {
                return Err("passkey.keyRestrictions.aaguids: the all-zero AAGUID names no model (authenticators send it without attestation); list real models".into());
            }
        }
        Ok(())
    }

    pub fn target(&self, m: PolicyMethod) -> &MethodTarget {
        match m {
            PolicyMethod::Passkey => &self.passkey.target,
            PolicyMethod::Totp => &self.totp,
            PolicyMethod::TemporaryAccessPass => &self.temporary_access_pass,
            PolicyMethod::Password => &self.password,
        }
    }

    /// Whether a user in `groups` may use (register or sign in with) method `m`.
    pub fn allows(&self, m: PolicyMethod, groups: &BTreeSet<Uuid>) -> bool {
        self.target(m).applies_to(groups)
    }

    /// Whether a passkey of model `aaguid` may be used (registration and sign-in) by a user in
    /// `groups`.
    pub fn passkey_allowed(&self, groups: &BTreeSet<Uuid>, aaguid: Option<Uuid>) -> bool {
        self.allows(PolicyMethod::Passkey, groups)
            && self
                .passkey
                .key_restrictions
                .as_ref()
                .is_none_or(|r| r.allows(aaguid))
    }
}

/// A registered passkey, as far as a policy preview needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyFact {
    pub user_id: Uuid,
    pub user_principal_name: String,
    pub credential_id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aaguid: Option<Uuid>,
    /// The user's groups.
    #[serde(default)]
    pub groups: BTreeSet<Uuid>,
}

/// What a policy change would do to the passkeys already registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPreview {
    /// Passkeys usable now that would stop working.
    pub stop_working: Vec<PasskeyFact>,
    /// Passkeys unusable now that would work again.
    pub start_working: Vec<PasskeyFact>,
    /// Users left with no usable passkey who had at least one.
    pub users_left_without_passkey: Vec<String>,
}

/// Compare `before` and `after` over the registered passkeys.
pub fn preview(
    before: &AuthenticationMethodsPolicy,
    after: &AuthenticationMethodsPolicy,
    passkeys: &[PasskeyFact],
) -> PolicyPreview {
    let mut out = PolicyPreview {
        stop_working: Vec::new(),
        start_working: Vec::new(),
        users_left_without_passkey: Vec::new(),
    };
    let mut had: BTreeSet<(&str, Uuid)> = BTreeSet::new();
    let mut keeps: BTreeSet<Uuid> = BTreeSet::new();
    for p in passkeys {
        let was = before.passkey_allowed(&p.groups, p.aaguid);
        let will = after.passkey_allowed(&p.groups, p.aaguid);
        if was {
            had.insert((p.user_principal_name.as_str(), p.user_id));
        }
        if will {
            keeps.insert(p.user_id);
        }
        match (was, will) {
            (true, false) => out.stop_working.push(p.clone()),
            (false, true) => out.start_working.push(p.clone()),
            _ => {}
        }
    }
    out.users_left_without_passkey = had
        .into_iter()
        .filter(|(_, id)| !keeps.contains(id))
        .map(|(upn, _)| upn.to_owned())
        .collect();
    out
}

/// How recent a strong sign-in must be to register a method (SPEC §6.1).
pub const STRONG_SIGN_IN_WINDOW_SECS: i64 = 5 * 60;

/// Whether a session may register (or remove) an authentication method now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum RegistrationGate {
    /// Allowed until `until`.
    Allowed { until: crate::Timestamp },
    /// The session was not opened with a strong method (a password alone, or federation
    /// without MFA).
    NeedsStrongSignIn,
    /// The strong sign-in is older than the window allows: sign in again.
    StrongSignInTooOld,
}

/// Decide whether a session whose sign-in used `amr` at `auth_time` may register a method at
/// `now`. Strong means multi-factor ([`crate::strength::BuiltIn::Mfa`]): a passkey, a
/// Temporary Access Pass, or a password with a second factor. A session opened with a pass
/// has the pass's registration window ([`crate::tap::REGISTRATION_WINDOW_SECS`], 10 minutes)
/// — that is what the pass is for; every other strong sign-in has
/// [`STRONG_SIGN_IN_WINDOW_SECS`].
pub fn may_register<S: AsRef<str>>(
    amr: &[S],
    auth_time: crate::Timestamp,
    now: crate::Timestamp,
) -> RegistrationGate {
    use crate::strength::{BuiltIn, MethodKind, meets_built_in, methods_from_amr};
    let methods = methods_from_amr(amr);
    if !meets_built_in(&methods, BuiltIn::Mfa) {
        return RegistrationGate::NeedsStrongSignIn;
    }
    let window = if methods
        .iter()
        .any(|m| m.kind == MethodKind::TemporaryAccessPass)
    {
        crate::tap::REGISTRATION_WINDOW_SECS
    } else {
        STRONG_SIGN_IN_WINDOW_SECS
    };
    let until = auth_time.plus_secs(window);
    if auth_time <= now && now < until {
        RegistrationGate::Allowed { until }
    } else {
        RegistrationGate::StrongSignInTooOld
    }
}

/// One user's registered methods, as the registration report shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationDetails {
    /// `password`, `passkey`, `totp`, `temporaryAccessPass`, in that order, those registered.
    pub methods_registered: Vec<String>,
    /// Has a method that makes a sign-in multi-factor (a passkey, or TOTP next to a password).
    pub is_mfa_registered: bool,
    /// Can sign in without a password (a passkey).
    pub is_passwordless_capable: bool,
    pub passkey_count: usize,
    /// Passkeys kept in sync across devices (the rest are bound to one device).
    pub synced_passkey_count: usize,
    /// The device families the passkeys were registered on, without repeats, sorted.
    pub device_families: Vec<String>,
}

/// What a user has registered: a password (cloud or synced), passkeys (each backed-up flag and
/// device family), a confirmed TOTP enrolment, an active Temporary Access Pass.
pub fn registration_details(
    has_password: bool,
    passkeys: &[(bool, &str)],
    totp_confirmed: bool,
    active_pass: bool,
) -> RegistrationDetails {
    let mut methods = Vec::new();
    if has_password {
        methods.push("password".to_owned());
    }
    if !passkeys.is_empty() {
        methods.push("passkey".to_owned());
    }
    if totp_confirmed {
        methods.push("totp".to_owned());
    }
    if active_pass {
        methods.push("temporaryAccessPass".to_owned());
    }
    let families: BTreeSet<String> = passkeys.iter().map(|(_, f)| (*f).to_owned()).collect();
    RegistrationDetails {
        methods_registered: methods,
        is_mfa_registered: !passkeys.is_empty() || (totp_confirmed && has_password),
        is_passwordless_capable: !passkeys.is_empty(),
        passkey_count: passkeys.len(),
        synced_passkey_count: passkeys.iter().filter(|(synced, _)| *synced).count(),
        device_families: families.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_details_table() {
        let none = registration_details(false, &[], false, false);
        assert!(none.methods_registered.is_empty());
        assert!(!none.is_mfa_registered && !none.is_passwordless_capable);
        let pwd = registration_details(true, &[], false, true);
        assert_eq!(pwd.methods_registered, ["password", "temporaryAccessPass"]);
        assert!(
            !pwd.is_mfa_registered,
            "a pass is for registering, not a registered factor"
        );
        let pwd_totp = registration_details(true, &[], true, false);
        assert!(pwd_totp.is_mfa_registered && !pwd_totp.is_passwordless_capable);
        // TOTP alone (no password) is one factor.
        assert!(!registration_details(false, &[], true, false).is_mfa_registered);
        let keys = registration_details(
            false,
            &[(true, "iPhone"), (false, "securityKey"), (true, "iPhone")],
            false,
            false,
        );
        assert_eq!(keys.methods_registered, ["passkey"]);
        assert!(keys.is_mfa_registered && keys.is_passwordless_capable);
        assert_eq!((keys.passkey_count, keys.synced_passkey_count), (3, 2));
        assert_eq!(keys.device_families, ["iPhone", "securityKey"]);
    }

    #[test]
    fn registration_needs_a_recent_strong_sign_in() {
        let t0 = crate::Timestamp::from_millis(1_000_000_000);
        // A password alone is never strong enough, however recent.
        assert_eq!(
            may_register(&["pwd"], t0, t0),
            RegistrationGate::NeedsStrongSignIn
        );
        assert_eq!(
            may_register(&["fed"], t0, t0),
            RegistrationGate::NeedsStrongSignIn
        );
        // Password + TOTP, or a passkey: 5 minutes, the last millisecond included.
        for amr in [&["pwd", "otp", "mfa"][..], &["hwk", "user", "mfa"][..]] {
            let edge = t0.plus_secs(STRONG_SIGN_IN_WINDOW_SECS);
            assert!(
                matches!(may_register(amr, t0, t0), RegistrationGate::Allowed { until } if until == edge)
            );
            assert!(matches!(
                may_register(amr, t0, crate::Timestamp::from_millis(edge.millis() - 1)),
                RegistrationGate::Allowed { .. }
            ));
            assert_eq!(
                may_register(amr, t0, edge),
                RegistrationGate::StrongSignInTooOld
            );
        }
        // A pass: its 10-minute registration window.
        let edge = t0.plus_secs(crate::tap::REGISTRATION_WINDOW_SECS);
        assert!(matches!(
            may_register(&["tap", "mfa"], t0, t0.plus_secs(STRONG_SIGN_IN_WINDOW_SECS + 60)),
            RegistrationGate::Allowed { until } if until == edge
        ));
        assert_eq!(
            may_register(&["tap", "mfa"], t0, edge),
            RegistrationGate::StrongSignInTooOld
        );
        // A sign-in "from the future" (clock skew between nodes) is not trusted.
        assert_eq!(
            may_register(&["hwk", "user", "mfa"], t0.plus_secs(1), t0),
            RegistrationGate::StrongSignInTooOld
        );
    }

    fn g(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }
    fn set(ids: &[u128]) -> BTreeSet<Uuid> {
        ids.iter().map(|n| g(*n)).collect()
    }

    #[test]
    fn targets_include_exclude_and_all() {
        let t = MethodTarget {
            enabled: true,
            all_users: false,
            include_groups: set(&[1, 2]),
            exclude_groups: set(&[9]),
        };
        assert!(t.applies_to(&set(&[1])));
        assert!(t.applies_to(&set(&[2, 5])));
        assert!(!t.applies_to(&set(&[5])));
        assert!(!t.applies_to(&set(&[1, 9])), "exclusion wins");
        assert!(!t.applies_to(&set(&[])));
        let all = MethodTarget::everyone(true);
        assert!(all.applies_to(&set(&[])));
        let off = MethodTarget::everyone(false);
        assert!(!off.applies_to(&set(&[1])));
    }

    #[test]
    fn key_restrictions_allow_and_block_known_models_only() {
        let yubi = g(0xcb69481e);
        let other = g(7);
        let allow = KeyRestrictions {
            enforcement: Enforcement::Allow,
            aaguids: BTreeSet::from([yubi]),
        };
        assert!(allow.allows(Some(yubi)));
        assert!(!allow.allows(Some(other)));
        assert!(
            !allow.allows(None),
            "an unknown model is not on an allow list"
        );
        assert!(!allow.allows(Some(Uuid::nil())));
        let block = KeyRestrictions {
            enforcement: Enforcement::Block,
            aaguids: BTreeSet::from([yubi]),
        };
        assert!(!block.allows(Some(yubi)));
        assert!(block.allows(Some(other)));
        assert!(block.allows(None));
        assert!(block.allows(Some(Uuid::nil())));
    }

    #[test]
    fn validation_names_the_field() {
        let ok = AuthenticationMethodsPolicy::default();
        ok.validate().unwrap();
        let err = |p: AuthenticationMethodsPolicy| p.validate().unwrap_err();
        let mut p = ok.clone();
        p.totp = MethodTarget {
            enabled: true,
            all_users: false,
            include_groups: BTreeSet::new(),
            exclude_groups: BTreeSet::new(),
        };
        assert!(err(p).starts_with("totp:"));
        let mut p = ok.clone();
        p.password.include_groups = set(&[1]);
        assert!(err(p).contains("not both"));
        let mut p = ok.clone();
        p.temporary_access_pass = MethodTarget {
            enabled: true,
            all_users: false,
            include_groups: set(&[1]),
            exclude_groups: set(&[1]),
        };
        assert!(err(p).contains("both included and excluded"));
        let mut p = ok.clone();
        p.passkey.target.exclude_groups = (0..=MAX_TARGET_GROUPS as u128).map(g).collect();
        assert!(err(p).contains("passkey.excludeGroups"));
        let mut p = ok.clone();
        p.passkey.target.exclude_groups = (0..MAX_TARGET_GROUPS as u128).map(g).collect();
        assert!(p.validate().is_ok(), "exactly the limit is fine");
        let mut p = ok.clone();
        p.passkey.key_restrictions = Some(KeyRestrictions {
            enforcement: Enforcement::Allow,
            aaguids: BTreeSet::new(),
        });
        assert!(err(p).contains("keyRestrictions.aaguids"));
        let mut p = ok.clone();
        p.passkey.key_restrictions = Some(KeyRestrictions {
            enforcement: Enforcement::Block,
            aaguids: BTreeSet::from([Uuid::nil()]),
        });
        assert!(err(p).contains("all-zero"));
        // A disabled method needs no target.
        let mut p = ok;
        p.totp = MethodTarget {
            enabled: false,
            all_users: false,
            include_groups: BTreeSet::new(),
            exclude_groups: BTreeSet::new(),
        };
        assert!(p.validate().is_ok());
    }

    #[test]
    fn policy_json_refuses_unknown_fields() {
        let v = serde_json::to_value(AuthenticationMethodsPolicy::default()).unwrap();
        let back: AuthenticationMethodsPolicy = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, AuthenticationMethodsPolicy::default());
        let mut bad = v;
        bad["passkey"]["enforceAttestaton"] = serde_json::json!(true);
        assert!(serde_json::from_value::<AuthenticationMethodsPolicy>(bad).is_err());
    }

    #[test]
    fn preview_names_who_loses_their_passkeys_before_the_change() {
        let yubi = g(0xcb69481e);
        let samsung = g(0x53414d53);
        let pk = |user: u128, upn: &str, cred: u128, aaguid: Option<Uuid>, groups: &[u128]| {
            PasskeyFact {
                user_id: g(user),
                user_principal_name: upn.into(),
                credential_id: g(cred),
                name: format!("key {cred}"),
                aaguid,
                groups: set(groups),
            }
        };
        let passkeys = vec![
            pk(1, "ann@corp.example", 11, Some(yubi), &[100]),
            pk(1, "ann@corp.example", 12, Some(samsung), &[100]),
            pk(2, "bob@corp.example", 21, Some(samsung), &[100]),
            pk(3, "cat@corp.example", 31, None, &[200]),
        ];
        let before = AuthenticationMethodsPolicy::default();
        let mut after = before.clone();
        after.passkey.key_restrictions = Some(KeyRestrictions {
            enforcement: Enforcement::Block,
            aaguids: BTreeSet::from([samsung]),
        });
        let p = preview(&before, &after, &passkeys);
        let creds: Vec<u128> = p
            .stop_working
            .iter()
            .map(|f| f.credential_id.as_u128())
            .collect();
        assert_eq!(creds, vec![12, 21]);
        assert_eq!(p.users_left_without_passkey, vec!["bob@corp.example"]);
        assert!(p.start_working.is_empty());
        // Undoing it is the mirror image.
        let back = preview(&after, &before, &passkeys);
        assert_eq!(back.start_working.len(), 2);
        assert!(back.stop_working.is_empty());
        // Restricting passkeys to a group stops everyone else's.
        let mut scoped = before.clone();
        scoped.passkey.target = MethodTarget {
            enabled: true,
            all_users: false,
            include_groups: set(&[100]),
            exclude_groups: BTreeSet::new(),
        };
        let p = preview(&before, &scoped, &passkeys);
        assert_eq!(p.users_left_without_passkey, vec!["cat@corp.example"]);
        // No change, no effect.
        let p = preview(&before, &before, &passkeys);
        assert!(p.stop_working.is_empty() && p.users_left_without_passkey.is_empty());
    }

    #[test]
    fn sign_in_and_registration_share_the_passkey_rule() {
        let mut p = AuthenticationMethodsPolicy::default();
        let yubi = g(0xcb69481e);
        p.passkey.key_restrictions = Some(KeyRestrictions {
            enforcement: Enforcement::Allow,
            aaguids: BTreeSet::from([yubi]),
        });
        assert!(p.passkey_allowed(&set(&[]), Some(yubi)));
        assert!(!p.passkey_allowed(&set(&[]), Some(g(5))));
        p.passkey.target.enabled = false;
        assert!(!p.passkey_allowed(&set(&[]), Some(yubi)));
        assert!(p.allows(PolicyMethod::Password, &set(&[])));
        // Passes are on in the default target (the pass policy is their switch).
        assert!(p.allows(PolicyMethod::TemporaryAccessPass, &set(&[])));
        p.temporary_access_pass.enabled = false;
        assert!(!p.allows(PolicyMethod::TemporaryAccessPass, &set(&[])));
    }
}
