//! Conditional Access policies and named locations as the API reads and writes them (the
//! familiar Microsoft Graph shape, lists of plain strings), and the checked form the engine
//! evaluates: ids parsed, lists turned into sets, named locations resolved into IP range sets,
//! the authentication strength resolved. A [`CheckedPolicy`] can only be made by
//! [`ConditionalAccessPolicy::check`], so the engine never sees an unchecked policy; a refusal
//! names the field (`conditions.users.includeUsers[2]: …`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cidr::{Cidr, IpRangeSet};
use crate::ClientAppType;
use crate::strength::{BuiltIn, CustomStrength};

/// Most policies a tenant may hold (and [`check_policies`] accepts at once).
pub const MAX_POLICIES: usize = 500;
/// Most entries in any one id list of a policy (users, groups, applications, locations).
pub const MAX_IDS_PER_LIST: usize = 1000;
/// Most named locations a tenant may hold.
pub const MAX_NAMED_LOCATIONS: usize = 500;
/// Most IP ranges one named location may list.
pub const MAX_IP_RANGES_PER_LOCATION: usize = 2000;
/// Longest display name of a policy or a named location, in characters.
pub const MAX_NAME_LEN: usize = crate::limits::MAX_DISPLAY_NAME_LEN;
/// Longest sign-in frequency, in days (the same bound in hours: 365 × 24).
pub const MAX_SIGN_IN_FREQUENCY_DAYS: u32 = 365;

/// A refused policy or named location: the field (a JSON path in the API's names) and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

fn refuse<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError {
        field: field.into(),
        message: message.into(),
    })
}

impl PolicyError {
    /// The same error inside a list (`policies[3].displayName`).
    fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The wire model.

/// Whether a policy is enforced, only evaluated and recorded, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PolicyState {
    Enabled,
    Disabled,
    EnabledForReportingButNotEnforced,
}

impl PolicyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::EnabledForReportingButNotEnforced => "enabledForReportingButNotEnforced",
        }
    }
}

/// A Conditional Access policy as the API reads and writes it. Creation and modification
/// times are the server's business, not the policy's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConditionalAccessPolicy {
    pub id: Uuid,
    pub display_name: String,
    pub state: PolicyState,
    pub conditions: Conditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_controls: Option<GrantControls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_controls: Option<SessionControls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    pub users: UserConditions,
    pub applications: ApplicationConditions,
    /// `all`, or some of `browser`, `mobileAppsAndDesktopClients`, `exchangeActiveSync`,
    /// `other`.
    pub client_app_types: Vec<String>,
    /// Absent: any location, and sign-ins whose address is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<LocationConditions>,
    /// Absent: any platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<PlatformConditions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserConditions {
    /// `All`, `None`, or user ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_users: Vec<String>,
    /// User ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_users: Vec<String>,
    /// Group ids; a user is included as a direct member (the caller decides what "member"
    /// means by the groups it passes in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_groups: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationConditions {
    /// `All`, `None`, or application ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_applications: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_applications: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationConditions {
    /// `All`, or `AllTrusted` and/or named location ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_locations: Vec<String>,
    /// `AllTrusted` and/or named location ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_locations: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformConditions {
    /// `all`, or some of `android`, `iOS`, `windows`, `macOS`, `linux`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_platforms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_platforms: Vec<String>,
}

/// How a policy's grant controls combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrantOperator {
    #[serde(rename = "AND")]
    And,
    #[serde(rename = "OR")]
    Or,
}

impl GrantOperator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::And => "AND",
            Self::Or => "OR",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantControls {
    pub operator: GrantOperator,
    /// `block` or `mfa`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub built_in_controls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_strength: Option<AuthenticationStrengthRef>,
}

/// `mfa`, `passwordlessMfa`, `phishingResistantMfa`, or a custom strength's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationStrengthRef {
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionControls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_frequency: Option<SignInFrequency>,
}

/// Ask for a fresh sign-in once the session's authentication is older than this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInFrequency {
    pub is_enabled: bool,
    /// Required when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u32>,
    /// Required when enabled.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub unit: Option<FrequencyUnit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FrequencyUnit {
    Hours,
    Days,
}

/// A named location: IP ranges in CIDR notation, trusted or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedLocation {
    pub id: Uuid,
    pub display_name: String,
    pub ip_ranges: Vec<String>,
    #[serde(default)]
    pub is_trusted: bool,
}

// ---------------------------------------------------------------------------------------------
// The checked model.

/// A checked named location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedNamedLocation {
    id: Uuid,
    display_name: String,
    trusted: bool,
    ranges: IpRangeSet,
}

impl CheckedNamedLocation {
    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn display_name(&self) -> &str {
        &self.display_name
    }
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }
    /// Whether `ip` is in one of the location's ranges.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        self.ranges.contains(ip)
    }
}

impl NamedLocation {
    /// Check a named location on its own.
    pub fn check(&self) -> Result<CheckedNamedLocation, PolicyError> {
        check_name("displayName", &self.display_name)?;
        if self.ip_ranges.is_empty() {
            return refuse(
                "ipRanges",
                "name at least one IP range (CIDR, e.g. 10.0.0.0/8)",
            );
        }
        if self.ip_ranges.len() > MAX_IP_RANGES_PER_LOCATION {
            return refuse(
                "ipRanges",
                format!(
                    "at most {MAX_IP_RANGES_PER_LOCATION} ranges, got {}",
                    self.ip_ranges.len()
                ),
            );
        }
        let mut cidrs = Vec::with_capacity(self.ip_ranges.len());
        for (i, r) in self.ip_ranges.iter().enumerate() {
            match Cidr::parse(r) {
                Ok(c) => cidrs.push(c),
                Err(message) => return refuse(format!("ipRanges[{i}]"), message),
            }
        }
        Ok(CheckedNamedLocation {
            id: self.id,
            display_name: self.display_name.trim().to_owned(),
            trusted: self.is_trusted,
            ranges: IpRangeSet::from_cidrs(&cidrs),
        })
    }
}

/// The tenant's named locations, checked, by id: what policies are checked against.
#[derive(Debug, Clone, Default)]
pub struct NamedLocations {
    by_id: BTreeMap<Uuid, Arc<CheckedNamedLocation>>,
}

impl NamedLocations {
    /// Check every location (`namedLocations[i].…` names a refused one), at most
    /// [`MAX_NAMED_LOCATIONS`], ids unique.
    pub fn check(locations: &[NamedLocation]) -> Result<Self, PolicyError> {
        if locations.len() > MAX_NAMED_LOCATIONS {
            return refuse(
                "namedLocations",
                format!(
                    "at most {MAX_NAMED_LOCATIONS} named locations, got {}",
                    locations.len()
                ),
            );
        }
        let mut by_id = BTreeMap::new();
        for (i, l) in locations.iter().enumerate() {
            let prefix = format!("namedLocations[{i}]");
            let checked = l.check().map_err(|e| e.within(&prefix))?;
            if by_id.insert(l.id, Arc::new(checked)).is_some() {
                return refuse(
                    format!("{prefix}.id"),
                    format!("{} is used by another named location", l.id),
                );
            }
        }
        Ok(Self { by_id })
    }

    pub fn get(&self, id: Uuid) -> Option<&Arc<CheckedNamedLocation>> {
        self.by_id.get(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn trusted(&self) -> impl Iterator<Item = &Arc<CheckedNamedLocation>> {
        self.by_id.values().filter(|l| l.trusted)
    }
}

/// What a policy is checked against: the tenant's named locations and custom authentication
/// strengths by id.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    pub locations: &'a NamedLocations,
    pub custom_strengths: &'a BTreeMap<Uuid, CustomStrength>,
}

/// A device platform a policy can name; `device_platform`'s `unknown` and `chromeOS` are not
/// among them and only match `includePlatforms: ["all"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Android,
    IOs,
    Windows,
    MacOs,
    Linux,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Self::Android,
        Self::IOs,
        Self::Windows,
        Self::MacOs,
        Self::Linux,
    ];

    /// The name in policies, which is also what `signin_log::device_platform` answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Android => "android",
            Self::IOs => "iOS",
            Self::Windows => "windows",
            Self::MacOs => "macOS",
            Self::Linux => "linux",
        }
    }

    /// The platform of a `signin_log::device_platform` answer (`None` for `unknown`,
    /// `chromeOS` or anything else).
    pub fn from_device_platform(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A required strength: a built-in one or a custom one (with its id, which the combined
/// requirement of several policies deduplicates by).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StrengthControl {
    BuiltIn(BuiltIn),
    Custom(CustomStrengthRef),
}

impl StrengthControl {
    /// `mfa`, or `strength 'Security keys' (<id>)`.
    pub fn label(&self) -> String {
        match self {
            Self::BuiltIn(b) => b.as_str().to_owned(),
            Self::Custom(c) => format!("strength '{}' ({})", c.strength.name, c.id),
        }
    }
}

/// A custom authentication strength and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomStrengthRef {
    pub id: Uuid,
    pub strength: CustomStrength,
}

/// Everyone, no one, or the listed ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    None,
    Ids(BTreeSet<Uuid>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserScope {
    pub(super) include: Scope,
    pub(super) exclude_users: BTreeSet<Uuid>,
    pub(super) include_groups: BTreeSet<Uuid>,
    pub(super) exclude_groups: BTreeSet<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AppScope {
    pub(super) include: Scope,
    pub(super) exclude: BTreeSet<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LocationScope {
    /// `All`: any address, known or not (then `include` is empty).
    pub(super) include_all: bool,
    /// Named locations, `AllTrusted` expanded to the trusted ones when checked.
    pub(super) include: Vec<Arc<CheckedNamedLocation>>,
    pub(super) exclude: Vec<Arc<CheckedNamedLocation>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlatformScope {
    /// `None`: all, including platforms no policy can name.
    pub(super) include: Option<BTreeSet<Platform>>,
    pub(super) exclude: BTreeSet<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Grant {
    Block,
    /// Controls in a canonical order: built-ins weakest first, then custom strengths by id.
    Require {
        operator: GrantOperator,
        controls: Vec<StrengthControl>,
    },
}

/// A sign-in frequency limit, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyLimit {
    pub value: u32,
    pub unit: FrequencyUnit,
}

impl FrequencyLimit {
    pub fn secs(self) -> i64 {
        let unit = match self.unit {
            FrequencyUnit::Hours => 3_600,
            FrequencyUnit::Days => 86_400,
        };
        i64::from(self.value) * unit
    }
}

impl std::fmt::Display for FrequencyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match (self.unit, self.value) {
            (FrequencyUnit::Hours, 1) => "hour",
            (FrequencyUnit::Hours, _) => "hours",
            (FrequencyUnit::Days, 1) => "day",
            (FrequencyUnit::Days, _) => "days",
        };
        write!(f, "{} {unit}", self.value)
    }
}

/// A policy the engine can evaluate: only [`ConditionalAccessPolicy::check`] makes one.
/// Group, user and application ids are sets, so evaluation looks them up without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPolicy {
    pub(super) id: Uuid,
    pub(super) display_name: String,
    pub(super) state: PolicyState,
    pub(super) users: UserScope,
    pub(super) applications: AppScope,
    /// `None`: all client app types.
    pub(super) client_app_types: Option<Vec<ClientAppType>>,
    pub(super) locations: Option<LocationScope>,
    pub(super) platforms: Option<PlatformScope>,
    pub(super) grant: Option<Grant>,
    pub(super) sign_in_frequency: Option<FrequencyLimit>,
}

impl CheckedPolicy {
    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn display_name(&self) -> &str {
        &self.display_name
    }
    pub fn state(&self) -> PolicyState {
        self.state
    }
    pub fn sign_in_frequency(&self) -> Option<FrequencyLimit> {
        self.sign_in_frequency
    }
}

// ---------------------------------------------------------------------------------------------
// Checking.

fn check_name(field: &str, name: &str) -> Result<(), PolicyError> {
    let len = name.trim().chars().count();
    if len == 0 || len > MAX_NAME_LEN {
        return refuse(field, format!("must be 1 to {MAX_NAME_LEN} characters"));
    }
    Ok(())
}

fn check_len(field: &str, values: &[String]) -> Result<(), PolicyError> {
    if values.len() > MAX_IDS_PER_LIST {
        return refuse(
            field,
            format!("at most {MAX_IDS_PER_LIST} entries, got {}", values.len()),
        );
    }
    Ok(())
}

/// A list of ids only (`what`: "a group id").
fn parse_ids(field: &str, values: &[String], what: &str) -> Result<BTreeSet<Uuid>, PolicyError> {
    check_len(field, values)?;
    let mut out = BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        match Uuid::parse_str(v) {
            Ok(id) => {
                out.insert(id);
            }
            Err(_) => return refuse(format!("{field}[{i}]"), format!("'{v}' is not {what}")),
        }
    }
    Ok(out)
}

/// `All`, `None`, or ids (`what`: "a user id").
fn parse_scope(field: &str, values: &[String], what: &str) -> Result<Scope, PolicyError> {
    check_len(field, values)?;
    let mut ids = BTreeSet::new();
    let mut keyword = None;
    for (i, v) in values.iter().enumerate() {
        match v.as_str() {
            "All" | "None" => keyword = Some((i, v.as_str())),
            _ => match Uuid::parse_str(v) {
                Ok(id) => {
                    ids.insert(id);
                }
                Err(_) => {
                    return refuse(
                        format!("{field}[{i}]"),
                        format!("'{v}' is neither All, None nor {what}"),
                    );
                }
            },
        }
    }
    match keyword {
        None => Ok(Scope::Ids(ids)),
        Some((i, k)) if values.len() > 1 => refuse(
            format!("{field}[{i}]"),
            format!(
                "'{k}' must be the only entry (the list has {})",
                values.len()
            ),
        ),
        Some((_, "All")) => Ok(Scope::All),
        Some(_) => Ok(Scope::None),
    }
}

fn includes_any(scope: &Scope) -> bool {
    match scope {
        Scope::All => true,
        Scope::None => false,
        Scope::Ids(ids) => !ids.is_empty(),
    }
}

fn check_users(u: &UserConditions, active: bool) -> Result<UserScope, PolicyError> {
    const F: &str = "conditions.users";
    let include = parse_scope(&format!("{F}.includeUsers"), &u.include_users, "a user id")?;
    let exclude_users = parse_ids(&format!("{F}.excludeUsers"), &u.exclude_users, "a user id")?;
    let include_groups = parse_ids(
        &format!("{F}.includeGroups"),
        &u.include_groups,
        "a group id",
    )?;
    let exclude_groups = parse_ids(
        &format!("{F}.excludeGroups"),
        &u.exclude_groups,
        "a group id",
    )?;
    if !include_groups.is_empty() {
        match include {
            Scope::All => {
                return refuse(
                    format!("{F}.includeGroups"),
                    "includeUsers is All: leave includeGroups empty",
                );
            }
            Scope::None => {
                return refuse(
                    format!("{F}.includeGroups"),
                    "includeUsers is None (no one), but includeGroups lists groups",
                );
            }
            Scope::Ids(_) => {}
        }
    }
    if active && !includes_any(&include) && include_groups.is_empty() {
        return refuse(
            format!("{F}.includeUsers"),
            "an enabled or report-only policy must include someone (All, user ids or includeGroups)",
        );
    }
    Ok(UserScope {
        include,
        exclude_users,
        include_groups,
        exclude_groups,
    })
}

fn check_applications(a: &ApplicationConditions, active: bool) -> Result<AppScope, PolicyError> {
    const F: &str = "conditions.applications";
    let include = parse_scope(
        &format!("{F}.includeApplications"),
        &a.include_applications,
        "an application id",
    )?;
    let exclude = parse_ids(
        &format!("{F}.excludeApplications"),
        &a.exclude_applications,
        "an application id",
    )?;
    if active && !includes_any(&include) {
        return refuse(
            format!("{F}.includeApplications"),
            "an enabled or report-only policy must include an application (All or application ids)",
        );
    }
    Ok(AppScope { include, exclude })
}

fn check_client_app_types(values: &[String]) -> Result<Option<Vec<ClientAppType>>, PolicyError> {
    const F: &str = "conditions.clientAppTypes";
    if values.is_empty() {
        return refuse(F, "name at least one client app type, or all");
    }
    let mut out: Vec<ClientAppType> = Vec::new();
    let mut all = None;
    for (i, v) in values.iter().enumerate() {
        if v == "all" {
            all = Some(i);
        } else if let Some(t) = ClientAppType::parse(v) {
            if !out.contains(&t) {
                out.push(t);
            }
        } else {
            return refuse(
                format!("{F}[{i}]"),
                format!(
                    "'{v}' is not a client app type (all, browser, mobileAppsAndDesktopClients, exchangeActiveSync, other)"
                ),
            );
        }
    }
    match all {
        Some(i) if values.len() > 1 => refuse(
            format!("{F}[{i}]"),
            format!(
                "'all' must be the only entry (the list has {})",
                values.len()
            ),
        ),
        Some(_) => Ok(None),
        None => Ok(Some(out)),
    }
}

fn check_locations(
    l: &LocationConditions,
    locations: &NamedLocations,
) -> Result<LocationScope, PolicyError> {
    const F: &str = "conditions.locations";
    let resolve = |field: &str,
                   values: &[String],
                   allow_all: bool|
     -> Result<(bool, Vec<Arc<CheckedNamedLocation>>), PolicyError> {
        check_len(field, values)?;
        let mut all = None;
        let mut out: BTreeMap<Uuid, Arc<CheckedNamedLocation>> = BTreeMap::new();
        for (i, v) in values.iter().enumerate() {
            match v.as_str() {
                "All" if allow_all => all = Some(i),
                "All" => {
                    return refuse(
                        format!("{field}[{i}]"),
                        "'All' cannot be excluded (it would exclude every sign-in); exclude AllTrusted or named locations",
                    );
                }
                "AllTrusted" => {
                    for t in locations.trusted() {
                        out.insert(t.id, Arc::clone(t));
                    }
                }
                _ => {
                    let Ok(id) = Uuid::parse_str(v) else {
                        let keywords = if allow_all {
                            "All, AllTrusted"
                        } else {
                            "AllTrusted"
                        };
                        return refuse(
                            format!("{field}[{i}]"),
                            format!("'{v}' is neither {keywords} nor a named location id"),
                        );
                    };
                    let Some(found) = locations.get(id) else {
                        return refuse(
                            format!("{field}[{i}]"),
                            format!("no named location has the id {id}"),
                        );
                    };
                    out.insert(id, Arc::clone(found));
                }
            }
        }
        if let Some(i) = all
            && values.len() > 1
        {
            return refuse(
                format!("{field}[{i}]"),
                format!(
                    "'All' must be the only entry (the list has {})",
                    values.len()
                ),
            );
        }
        Ok((all.is_some(), out.into_values().collect()))
    };
    let include_field = format!("{F}.includeLocations");
    if l.include_locations.is_empty() {
        return refuse(
            include_field,
            "name All, AllTrusted or at least one named location (or leave locations out)",
        );
    }
    let (include_all, include) = resolve(&include_field, &l.include_locations, true)?;
    let (_, exclude) = resolve(
        &format!("{F}.excludeLocations"),
        &l.exclude_locations,
        false,
    )?;
    Ok(LocationScope {
        include_all,
        include,
        exclude,
    })
}

fn check_platforms(p: &PlatformConditions) -> Result<PlatformScope, PolicyError> {
    const F: &str = "conditions.platforms";
    let parse = |field: &str, values: &[String], allow_all: bool| {
        let mut all = None;
        let mut out = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            if v == "all" && allow_all {
                all = Some(i);
            } else if let Some(p) = Platform::from_device_platform(v) {
                out.insert(p);
            } else if v == "all" {
                return refuse(
                    format!("{field}[{i}]"),
                    "'all' cannot be excluded (it would exclude every sign-in)",
                );
            } else {
                let keywords = if allow_all {
                    "all, android, iOS, windows, macOS, linux"
                } else {
                    "android, iOS, windows, macOS, linux"
                };
                return refuse(
                    format!("{field}[{i}]"),
                    format!("'{v}' is not a platform ({keywords})"),
                );
            }
        }
        if let Some(i) = all
            && values.len() > 1
        {
            return refuse(
                format!("{field}[{i}]"),
                format!(
                    "'all' must be the only entry (the list has {})",
                    values.len()
                ),
            );
        }
        Ok((all.is_some(), out))
    };
    let include_field = format!("{F}.includePlatforms");
    if p.include_platforms.is_empty() {
        return refuse(
            include_field,
            "name all or at least one platform (or leave platforms out)",
        );
    }
    let (all, include) = parse(&include_field, &p.include_platforms, true)?;
    let (_, exclude) = parse(
        &format!("{F}.excludePlatforms"),
        &p.exclude_platforms,
        false,
    )?;
    Ok(PlatformScope {
        include: if all { None } else { Some(include) },
        exclude,
    })
}

fn check_grant(
    g: &GrantControls,
    strengths: &BTreeMap<Uuid, CustomStrength>,
) -> Result<Grant, PolicyError> {
    const F: &str = "grantControls";
    let mut block = false;
    let mut built_in: BTreeSet<BuiltIn> = BTreeSet::new();
    for (i, v) in g.built_in_controls.iter().enumerate() {
        match v.as_str() {
            "block" => block = true,
            "mfa" => {
                built_in.insert(BuiltIn::Mfa);
            }
            _ => {
                return refuse(
                    format!("{F}.builtInControls[{i}]"),
                    format!("'{v}' is not supported (block, mfa)"),
                );
            }
        }
    }
    let mut custom = None;
    if let Some(s) = &g.authentication_strength {
        const S: &str = "grantControls.authenticationStrength.id";
        if let Some(b) = BuiltIn::parse(&s.id) {
            built_in.insert(b);
        } else {
            let Ok(id) = Uuid::parse_str(&s.id) else {
                return refuse(
                    S,
                    format!(
                        "'{}' is neither a built-in strength (mfa, passwordlessMfa, phishingResistantMfa) nor a custom strength id",
                        s.id
                    ),
                );
            };
            let Some(strength) = strengths.get(&id) else {
                return refuse(
                    S,
                    format!("no custom authentication strength has the id {id}"),
                );
            };
            if let Err(why) = strength.validate() {
                return refuse(S, format!("the custom strength {id} is invalid: {why}"));
            }
            custom = Some(CustomStrengthRef {
                id,
                strength: strength.clone(),
            });
        }
    }
    if block {
        if !built_in.is_empty() || custom.is_some() || g.built_in_controls.len() > 1 {
            return refuse(
                format!("{F}.builtInControls"),
                "block cannot be combined with other controls",
            );
        }
        return Ok(Grant::Block);
    }
    let mut controls: Vec<StrengthControl> =
        built_in.into_iter().map(StrengthControl::BuiltIn).collect();
    controls.extend(custom.map(StrengthControl::Custom));
    if controls.is_empty() {
        return refuse(
            F,
            "name at least one control (block, mfa) or an authenticationStrength, or leave grantControls out",
        );
    }
    Ok(Grant::Require {
        operator: g.operator,
        controls,
    })
}

fn check_frequency(f: &SignInFrequency) -> Result<Option<FrequencyLimit>, PolicyError> {
    const F: &str = "sessionControls.signInFrequency";
    if !f.is_enabled {
        return Ok(None);
    }
    let Some(unit) = f.unit else {
        return refuse(
            format!("{F}.type"),
            "hours or days is required when enabled",
        );
    };
    let Some(value) = f.value else {
        return refuse(format!("{F}.value"), "required when enabled");
    };
    let max = match unit {
        FrequencyUnit::Hours => MAX_SIGN_IN_FREQUENCY_DAYS * 24,
        FrequencyUnit::Days => MAX_SIGN_IN_FREQUENCY_DAYS,
    };
    if value == 0 || value > max {
        let unit = match unit {
            FrequencyUnit::Hours => "hours",
            FrequencyUnit::Days => "days",
        };
        return refuse(format!("{F}.value"), format!("must be 1 to {max} {unit}"));
    }
    Ok(Some(FrequencyLimit { value, unit }))
}

impl ConditionalAccessPolicy {
    /// Check the policy against the tenant's named locations and custom strengths. Rules:
    /// every id parses; `All`/`None` stand alone; named locations and custom strengths exist;
    /// `block` stands alone and with no session control; there is a grant or a session
    /// control; an enabled or report-only policy includes someone and some application;
    /// every list within [`MAX_IDS_PER_LIST`].
    pub fn check(&self, ctx: &PolicyContext<'_>) -> Result<CheckedPolicy, PolicyError> {
        check_name("displayName", &self.display_name)?;
        let active = self.state != PolicyState::Disabled;
        let c = &self.conditions;
        let users = check_users(&c.users, active)?;
        let applications = check_applications(&c.applications, active)?;
        let client_app_types = check_client_app_types(&c.client_app_types)?;
        let locations = c
            .locations
            .as_ref()
            .map(|l| check_locations(l, ctx.locations))
            .transpose()?;
        let platforms = c.platforms.as_ref().map(check_platforms).transpose()?;
        let grant = self
            .grant_controls
            .as_ref()
            .map(|g| check_grant(g, ctx.custom_strengths))
            .transpose()?;
        let sign_in_frequency = match self
            .session_controls
            .as_ref()
            .and_then(|s| s.sign_in_frequency.as_ref())
        {
            Some(f) => check_frequency(f)?,
            None => None,
        };
        if grant == Some(Grant::Block) && sign_in_frequency.is_some() {
            return refuse(
                "sessionControls.signInFrequency",
                "a policy that blocks has no session to control",
            );
        }
        if grant.is_none() && sign_in_frequency.is_none() {
            return refuse(
                "grantControls",
                "a policy needs a grant control (block, mfa or an authenticationStrength) or a session control (signInFrequency)",
            );
        }
        Ok(CheckedPolicy {
            id: self.id,
            display_name: self.display_name.trim().to_owned(),
            state: self.state,
            users,
            applications,
            client_app_types,
            locations,
            platforms,
            grant,
            sign_in_frequency,
        })
    }

    /// The named locations the policy names by id (so a location in use is not deleted).
    pub fn referenced_locations(&self) -> BTreeSet<Uuid> {
        self.conditions
            .locations
            .iter()
            .flat_map(|l| l.include_locations.iter().chain(&l.exclude_locations))
            .filter_map(|v| Uuid::parse_str(v).ok())
            .collect()
    }

    /// The custom authentication strength the policy names, if any.
    pub fn referenced_strength(&self) -> Option<Uuid> {
        self.grant_controls
            .as_ref()?
            .authentication_strength
            .as_ref()
            .and_then(|s| Uuid::parse_str(&s.id).ok())
    }
}

/// Check a tenant's policies together: each one (`policies[i].…` names a refused one), at
/// most [`MAX_POLICIES`], ids unique.
pub fn check_policies(
    policies: &[ConditionalAccessPolicy],
    ctx: &PolicyContext<'_>,
) -> Result<Vec<CheckedPolicy>, PolicyError> {
    if policies.len() > MAX_POLICIES {
        return refuse(
            "policies",
            format!("at most {MAX_POLICIES} policies, got {}", policies.len()),
        );
    }
    let mut ids = BTreeSet::new();
    let mut out = Vec::with_capacity(policies.len());
    for (i, p) in policies.iter().enumerate() {
        let prefix = format!("policies[{i}]");
        if !ids.insert(p.id) {
            return refuse(
                format!("{prefix}.id"),
                format!("{} is used by another policy", p.id),
            );
        }
        out.push(p.check(ctx).map_err(|e| e.within(&prefix))?);
    }
    Ok(out)
}
