//! Reconciliation: `(Cutover snapshot, imported entries, rules) → export plan`.
//!
//! The plan is keyed by source anchor. Planning against the state a plan produced yields an
//! empty plan (idempotence), an object Cutover already has is updated rather than added, and
//! objects that fail a rule are reported and left alone — in particular never deleted: only an
//! anchor that is absent from a complete scan of the directory's scope is deleted.

use std::collections::{BTreeMap, BTreeSet};

use cutover_pwhash::{HashFormatError, OnPremHash, WRAP_SALT_LEN};
use serde::{Deserialize, Serialize};

use crate::sync::rules::{CompiledRules, MappedGroup, MappedUser, MemberValue, normalize_dn};
use crate::sync::{GroupImage, SourceEntry, SyncOp, UserImage, WrappedHash};

/// Deletions one run may export before it stops and asks a person (SPEC §5.1).
pub const DEFAULT_DELETE_THRESHOLD: u32 = 500;
/// Members named one by one in a pending change's `members` old → new (the rest are counted):
/// a new group of 50,000 members is one readable row, not a megabyte.
pub const MAX_LISTED_MEMBER_CHANGES: usize = 20;
/// Ops in one export batch (each batch is applied in one transaction).
pub const EXPORT_BATCH_MAX_OPS: usize = 500;

/// A synced user as Cutover holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncedUserState {
    #[serde(flatten)]
    pub image: UserImage,
    pub manager_anchor: Option<String>,
    pub password_hash: Option<WrappedHash>,
}

/// A synced group as Cutover holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncedGroupState {
    #[serde(flatten)]
    pub image: GroupImage,
    pub member_anchors: BTreeSet<String>,
}

/// What Cutover holds, as far as sync is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutoverSnapshot {
    /// Registered domains, lower-case.
    pub domains: BTreeSet<String>,
    /// Normalized UPNs of cloud-only users (a synced user may not take one over).
    pub cloud_upns: BTreeSet<String>,
    pub users: BTreeMap<String, SyncedUserState>,
    pub groups: BTreeMap<String, SyncedGroupState>,
}

/// One object seen by the complete (light) scan of the directory's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedObject {
    pub anchor: String,
    pub dn: String,
    /// `uid`, for users (resolves `memberUid`).
    pub uid: Option<String>,
}

/// What one run read from the directory.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// Every user and group in the search scope (DN, anchor, uid): the complete list that
    /// membership, manager links and deletions are judged against.
    pub user_index: Vec<IndexedObject>,
    pub group_index: Vec<IndexedObject>,
    /// Entries read with their attributes: all of them on a full run, the changed ones on a
    /// delta run.
    pub users: Vec<SourceEntry>,
    pub groups: Vec<SourceEntry>,
}

/// What a run reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlanMode {
    /// Objects (and password hashes, when hash sync is on).
    Objects,
    /// Password hashes of the imported users only (the 2-minute cycle).
    PasswordsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    pub mode: PlanMode,
    pub password_hash_sync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectKind {
    User,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeAction {
    Add,
    Update,
    Delete,
}

/// One attribute's old → new value, as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeChange {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One object's pending change: the row of the pending-exports view, and the ops that make it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub object: ObjectKind,
    pub action: ChangeAction,
    pub anchor: String,
    pub dn: Option<String>,
    /// UPN or group name.
    pub name: String,
    pub attributes: Vec<AttributeChange>,
    #[serde(skip)]
    pub ops: Vec<SyncOp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// The object (or this part of it) is not exported.
    Error,
    /// Exported, with something left out (an unresolvable manager, members out of scope).
    Warning,
}

/// A per-object problem. Never aborts a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectProblem {
    pub severity: Severity,
    pub object: ObjectKind,
    pub dn: String,
    pub anchor: String,
    /// The rule (or feature) that raised it: `users.upn`, `passwordHashSync`, …
    pub rule: String,
    /// Machine-readable: `ruleError`, `duplicateUpn`, `unknownDomain`, `cloudUpnTaken`,
    /// `managerLoop`, `managerNotFound`, `membersOutOfScope`, and the hash-format codes.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub imported: u64,
    pub adds: u64,
    pub updates: u64,
    pub deletes: u64,
    pub password_changes: u64,
    pub unchanged: u64,
    pub errors: u64,
    pub warnings: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportPlan {
    pub changes: Vec<PlannedChange>,
    pub problems: Vec<ObjectProblem>,
    pub summary: PlanSummary,
}

impl ExportPlan {
    /// Every op, in export order (see [`SyncOp::phase`]).
    pub fn ops(&self) -> Vec<SyncOp> {
        let mut ops: Vec<SyncOp> = self
            .changes
            .iter()
            .flat_map(|c| c.ops.iter().cloned())
            .collect();
        ops.sort_by_key(SyncOp::phase);
        ops
    }

    pub fn deletes(&self) -> u64 {
        self.summary.deletes
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The accidental-delete gate (SPEC §5.1): more deletions than the threshold export nothing,
/// unless an operator allowed at least that many for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "gate")]
pub enum DeleteGate {
    Open,
    /// Over the threshold, but an operator allowed it (audited by the server).
    Overridden {
        deletes: u64,
        allowed: u64,
    },
    Blocked {
        deletes: u64,
        threshold: u64,
    },
}

pub fn delete_gate(deletes: u64, threshold: u32, allowed: Option<u32>) -> DeleteGate {
    if deletes <= u64::from(threshold) {
        return DeleteGate::Open;
    }
    match allowed {
        Some(a) if deletes <= u64::from(a) => DeleteGate::Overridden {
            deletes,
            allowed: u64::from(a),
        },
        _ => DeleteGate::Blocked {
            deletes,
            threshold: u64::from(threshold),
        },
    }
}

/// Attributes that carry password hashes.
pub const USER_PASSWORD_ATTRIBUTE: &str = "userpassword";
pub const NT_HASH_ATTRIBUTE: &str = "sambantpassword";

/// What the directory says about one user's password.
enum HashReading {
    None,
    Hash(OnPremHash),
    Problem(HashFormatError),
}

fn read_hash(entry: &SourceEntry) -> HashReading {
    let mut first_problem = None;
    for value in entry.values(USER_PASSWORD_ATTRIBUTE) {
        match cutover_pwhash::parse_user_password(value) {
            Ok(h) => return HashReading::Hash(h),
            Err(e) => {
                first_problem.get_or_insert(e);
            }
        }
    }
    for value in entry.values(NT_HASH_ATTRIBUTE) {
        match cutover_pwhash::parse_nt_hash(value) {
            Ok(h) => return HashReading::Hash(h),
            Err(e) => {
                first_problem.get_or_insert(e);
            }
        }
    }
    match first_problem {
        Some(e) => HashReading::Problem(e),
        None => HashReading::None,
    }
}

fn describe_hash(h: Option<&WrappedHash>) -> Option<String> {
    h.map(|h| format!("{} hash (wrapped)", h.scheme.as_str()))
}

struct Ctx<'a> {
    rules: &'a CompiledRules,
    snapshot: &'a CutoverSnapshot,
    problems: Vec<ObjectProblem>,
}

impl Ctx<'_> {
    // Every field of an ObjectProblem, named at the call site; a builder would only hide them.
    #[allow(clippy::too_many_arguments)]
    fn problem(
        &mut self,
        severity: Severity,
        object: ObjectKind,
        dn: &str,
        anchor: &str,
        rule: &str,
        code: &str,
        message: String,
    ) {
        self.problems.push(ObjectProblem {
            severity,
            object,
            dn: dn.to_owned(),
            anchor: anchor.to_owned(),
            rule: rule.to_owned(),
            code: code.to_owned(),
            message,
        });
    }
}

fn opt_change(
    name: &str,
    old: &Option<String>,
    new: &Option<String>,
    out: &mut Vec<AttributeChange>,
) {
    if old != new {
        out.push(AttributeChange {
            name: name.into(),
            old: old.clone(),
            new: new.clone(),
        });
    }
}

fn user_diff(old: Option<&UserImage>, new: &UserImage) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    let o = |f: fn(&UserImage) -> Option<String>| old.and_then(f);
    opt_change(
        "userPrincipalName",
        &o(|u| Some(u.user_principal_name.clone())),
        &Some(new.user_principal_name.clone()),
        &mut out,
    );
    opt_change(
        "displayName",
        &o(|u| Some(u.display_name.clone())),
        &Some(new.display_name.clone()),
        &mut out,
    );
    opt_change("mail", &o(|u| u.mail.clone()), &new.mail, &mut out);
    opt_change(
        "department",
        &o(|u| u.department.clone()),
        &new.department,
        &mut out,
    );
    opt_change(
        "accountEnabled",
        &o(|u| Some(u.account_enabled.to_string())),
        &Some(new.account_enabled.to_string()),
        &mut out,
    );
    out
}

fn group_diff(old: Option<&GroupImage>, new: &GroupImage) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    opt_change(
        "displayName",
        &old.map(|g| g.display_name.clone()),
        &Some(new.display_name.clone()),
        &mut out,
    );
    opt_change(
        "description",
        &old.and_then(|g| g.description.clone()),
        &new.description,
        &mut out,
    );
    out
}

/// Plan one run. `new_salt` supplies the random salt of each new password-hash wrap
/// (randomness is passed in; tests pass a counter).
pub fn plan_export(
    rules: &CompiledRules,
    snapshot: &CutoverSnapshot,
    import: &Import,
    options: PlanOptions,
    new_salt: &mut dyn FnMut() -> [u8; WRAP_SALT_LEN],
) -> ExportPlan {
    let mut ctx = Ctx {
        rules,
        snapshot,
        problems: Vec::new(),
    };
    let mut changes: Vec<PlannedChange> = Vec::new();
    let mut summary = PlanSummary {
        imported: (import.users.len() + import.groups.len()) as u64,
        ..PlanSummary::default()
    };
    // Index of the complete scan, in scope only.
    let user_index: BTreeMap<&str, &IndexedObject> = import
        .user_index
        .iter()
        .filter(|o| rules.user_in_scope(&o.dn))
        .map(|o| (o.anchor.as_str(), o))
        .collect();
    let group_index: BTreeMap<&str, &IndexedObject> = import
        .group_index
        .iter()
        .filter(|o| rules.group_in_scope(&o.dn))
        .map(|o| (o.anchor.as_str(), o))
        .collect();

    if options.mode == PlanMode::PasswordsOnly {
        for entry in &import.users {
            if let Some(state) = snapshot.users.get(&entry.anchor) {
                let mut change = PlannedChange {
                    object: ObjectKind::User,
                    action: ChangeAction::Update,
                    anchor: entry.anchor.clone(),
                    dn: Some(entry.dn.clone()),
                    name: state.image.user_principal_name.clone(),
                    attributes: Vec::new(),
                    ops: Vec::new(),
                };
                plan_password(
                    &mut ctx,
                    entry,
                    state.password_hash.as_ref(),
                    &mut change,
                    new_salt,
                );
                if change.ops.is_empty() {
                    summary.unchanged += 1;
                } else {
                    summary.password_changes += 1;
                    changes.push(change);
                }
            }
        }
        return finish(ctx, changes, summary);
    }

    let dn_to_user: BTreeMap<String, &str> = user_index
        .values()
        .map(|o| (normalize_dn(&o.dn), o.anchor.as_str()))
        .collect();
    let dn_to_group: BTreeMap<String, &str> = group_index
        .values()
        .map(|o| (normalize_dn(&o.dn), o.anchor.as_str()))
        .collect();
    let uid_to_user: BTreeMap<&str, &str> = user_index
        .values()
        .filter_map(|o| o.uid.as_deref().map(|u| (u, o.anchor.as_str())))
        .collect();

    // ---- users: map ------------------------------------------------------------------------
    let mut mapped: BTreeMap<String, (MappedUser, &SourceEntry)> = BTreeMap::new();
    for entry in &import.users {
        if !user_index.contains_key(entry.anchor.as_str()) {
            // Out of scope (or not in the scan): not ours to touch.
            continue;
        }
        match rules.map_user(entry) {
            Ok(Some(u)) => {
                if mapped.contains_key(&u.anchor) {
                    continue;
                }
                mapped.insert(u.anchor.clone(), (u, entry));
            }
            Ok(None) => {}
            Err(e) => {
                ctx.problem(
                    Severity::Error,
                    ObjectKind::User,
                    &e.dn,
                    &entry.anchor,
                    &e.rule,
                    "ruleError",
                    e.message,
                );
            }
        }
    }

    // Domain and cloud-UPN checks.
    let mut rejected: BTreeSet<String> = BTreeSet::new();
    for (anchor, (u, _)) in &mapped {
        let domain = u.upn.domain().as_str().to_ascii_lowercase();
        if !snapshot.domains.contains(&domain) {
            rejected.insert(anchor.clone());
            ctx.problem(
                Severity::Error,
                ObjectKind::User,
                &u.dn,
                anchor,
                "users.upn",
                "unknownDomain",
                format!("{} is in domain {domain}, which is not registered in Cutover (add the domain first)", u.upn.as_str()),
            );
        } else if snapshot.cloud_upns.contains(&u.upn.normalized()) {
            rejected.insert(anchor.clone());
            ctx.problem(
                Severity::Error,
                ObjectKind::User,
                &u.dn,
                anchor,
                "users.upn",
                "cloudUpnTaken",
                format!(
                    "{} belongs to a cloud-only user in Cutover; sync does not take over cloud accounts (rename or delete the cloud user first)",
                    u.upn.as_str()
                ),
            );
        }
    }

    // Duplicate UPNs: the final UPN of every synced object that will exist after the run.
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (anchor, state) in &snapshot.users {
        if !user_index.contains_key(anchor.as_str()) || mapped.contains_key(anchor) {
            continue; // deleted, or re-mapped below
        }
        claims
            .entry(state.image.user_principal_name.to_lowercase())
            .or_default()
            .push(anchor.clone());
    }
    for (anchor, (u, _)) in &mapped {
        if !rejected.contains(anchor) {
            claims
                .entry(u.upn.normalized())
                .or_default()
                .push(anchor.clone());
        }
    }
    for (upn, claimants) in &claims {
        if claimants.len() < 2 {
            continue;
        }
        // The object that already holds the UPN in Cutover keeps it; otherwise the smallest
        // anchor (deterministic, so the staging and active servers agree).
        let holder = claimants
            .iter()
            .find(|a| {
                snapshot
                    .users
                    .get(a.as_str())
                    .is_some_and(|s| s.image.user_principal_name.to_lowercase() == *upn)
            })
            .or_else(|| claimants.iter().min())
            .cloned()
            .unwrap_or_default();
        let holder_dn = mapped
            .get(&holder)
            .map(|(u, _)| u.dn.clone())
            .or_else(|| user_index.get(holder.as_str()).map(|o| o.dn.clone()))
            .unwrap_or_else(|| holder.clone());
        for other in claimants.iter().filter(|a| **a != holder) {
            if let Some((u, _)) = mapped.get(other) {
                rejected.insert(other.clone());
                ctx.problem(
                    Severity::Error,
                    ObjectKind::User,
                    &u.dn,
                    other,
                    "users.upn",
                    "duplicateUpn",
                    format!(
                        "{} is also the UPN of {holder_dn}; UPNs must be unique",
                        u.upn.as_str()
                    ),
                );
            }
        }
    }
    for a in &rejected {
        mapped.remove(a);
    }

    // Users that will exist after the run: kept from the snapshot, or mapped now.
    let exists_after = |anchor: &str| -> bool {
        mapped.contains_key(anchor)
            || (snapshot.users.contains_key(anchor) && user_index.contains_key(anchor))
    };

    // Manager links: resolve DNs, then break loops.
    let mut desired_manager: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (anchor, (u, _)) in &mapped {
        let m = match &u.manager_dn {
            None => None,
            Some(dn) => match dn_to_user.get(&normalize_dn(dn)) {
                Some(m) if exists_after(m) => Some((*m).to_owned()),
                _ => {
                    ctx.problem(
                        Severity::Warning,
                        ObjectKind::User,
                        &u.dn,
                        anchor,
                        "users.manager",
                        "managerNotFound",
                        format!("manager {dn} is not a user in sync scope (or failed to sync); the manager link is left empty"),
                    );
                    None
                }
            },
        };
        desired_manager.insert(anchor.clone(), m);
    }
    let manager_of = |anchor: &str, desired: &BTreeMap<String, Option<String>>| -> Option<String> {
        match desired.get(anchor) {
            Some(m) => m.clone(),
            None => snapshot
                .users
                .get(anchor)
                .and_then(|s| s.manager_anchor.clone()),
        }
    };
    let mut in_loop: BTreeSet<String> = BTreeSet::new();
    for start in desired_manager.keys() {
        let mut path: Vec<String> = vec![start.clone()];
        let mut cur = start.clone();
        while let Some(next) = manager_of(&cur, &desired_manager) {
            if let Some(pos) = path.iter().position(|p| *p == next) {
                in_loop.extend(path[pos..].iter().cloned());
                break;
            }
            if path.len() > desired_manager.len() + snapshot.users.len() {
                break;
            }
            path.push(next.clone());
            cur = next;
        }
    }
    for anchor in &in_loop {
        if let Some((u, _)) = mapped.get(anchor) {
            let chain = u.manager_dn.clone().unwrap_or_default();
            ctx.problem(
                Severity::Error,
                ObjectKind::User,
                &u.dn,
                anchor,
                "users.manager",
                "managerLoop",
                format!("the manager chain through {chain} leads back to this user; the manager link is left empty"),
            );
            desired_manager.insert(anchor.clone(), None);
        }
    }

    // Objects this run deletes. Cutover removes a deleted object's memberships and the manager
    // links to it by itself, so links to them are not compared (a full run and a delta run
    // then plan the same changes).
    let deleted_users: BTreeSet<&str> = snapshot
        .users
        .keys()
        .map(String::as_str)
        .filter(|a| !user_index.contains_key(a))
        .collect();
    let deleted_groups: BTreeSet<&str> = snapshot
        .groups
        .keys()
        .map(String::as_str)
        .filter(|a| !group_index.contains_key(a))
        .collect();

    // ---- users: compare ----------------------------------------------------------------------
    for (anchor, (u, entry)) in &mapped {
        let image = UserImage {
            anchor: anchor.clone(),
            user_principal_name: u.upn.as_str().to_owned(),
            display_name: u.display_name.clone(),
            mail: u.mail.clone(),
            department: u.department.clone(),
            account_enabled: u.account_enabled,
        };
        let old = snapshot.users.get(anchor);
        let mut change = PlannedChange {
            object: ObjectKind::User,
            action: if old.is_some() {
                ChangeAction::Update
            } else {
                ChangeAction::Add
            },
            anchor: anchor.clone(),
            dn: Some(u.dn.clone()),
            name: image.user_principal_name.clone(),
            attributes: user_diff(old.map(|s| &s.image), &image),
            ops: Vec::new(),
        };
        if !change.attributes.is_empty() {
            change.ops.push(SyncOp::UpsertUser(image));
        }
        let want_manager = desired_manager.get(anchor).cloned().flatten();
        let have_manager = old
            .and_then(|s| s.manager_anchor.clone())
            .filter(|m| !deleted_users.contains(m.as_str()));
        if want_manager != have_manager {
            let label = |a: &Option<String>| {
                a.as_ref().map(|a| {
                    user_index
                        .get(a.as_str())
                        .map(|o| o.dn.clone())
                        .unwrap_or_else(|| a.clone())
                })
            };
            change.attributes.push(AttributeChange {
                name: "manager".into(),
                old: label(&have_manager),
                new: label(&want_manager),
            });
            change.ops.push(SyncOp::SetManager {
                anchor: anchor.clone(),
                manager_anchor: want_manager,
            });
        }
        let had_password_change = if options.password_hash_sync {
            let before = change.ops.len();
            plan_password(
                &mut ctx,
                entry,
                old.and_then(|s| s.password_hash.as_ref()),
                &mut change,
                new_salt,
            );
            change.ops.len() > before
        } else {
            false
        };
        if change.ops.is_empty() {
            summary.unchanged += 1;
            continue;
        }
        if had_password_change {
            summary.password_changes += 1;
        }
        match change.action {
            ChangeAction::Add => summary.adds += 1,
            _ => summary.updates += 1,
        }
        changes.push(change);
    }

    // ---- groups ------------------------------------------------------------------------------
    let mut mapped_groups: BTreeMap<String, MappedGroup> = BTreeMap::new();
    for entry in &import.groups {
        if !group_index.contains_key(entry.anchor.as_str()) {
            continue;
        }
        match rules.map_group(entry) {
            Ok(Some(g)) => {
                mapped_groups.entry(g.anchor.clone()).or_insert(g);
            }
            Ok(None) => {}
            Err(e) => {
                ctx.problem(
                    Severity::Error,
                    ObjectKind::Group,
                    &e.dn,
                    &entry.anchor,
                    &e.rule,
                    "ruleError",
                    e.message,
                );
            }
        }
    }
    let group_exists_after = |anchor: &str| -> bool {
        mapped_groups.contains_key(anchor)
            || (snapshot.groups.contains_key(anchor) && group_index.contains_key(anchor))
    };
    for g in mapped_groups.values() {
        let mut members: BTreeSet<String> = BTreeSet::new();
        let mut left_out = Vec::new();
        for m in &g.members {
            let resolved = match m {
                MemberValue::Dn(dn) => {
                    let n = normalize_dn(dn);
                    dn_to_user
                        .get(&n)
                        .filter(|a| exists_after(a))
                        .or_else(|| dn_to_group.get(&n).filter(|a| group_exists_after(a)))
                        .map(|a| (*a).to_owned())
                }
                MemberValue::Uid(uid) => uid_to_user
                    .get(uid.as_str())
                    .filter(|a| exists_after(a))
                    .map(|a| (*a).to_owned()),
            };
            match resolved {
                Some(a) if a != g.anchor => {
                    members.insert(a);
                }
                Some(_) => left_out.push("the group itself".to_owned()),
                None => left_out.push(match m {
                    MemberValue::Dn(d) => d.clone(),
                    MemberValue::Uid(u) => format!("memberUid {u}"),
                }),
            }
        }
        if !left_out.is_empty() {
            let sample: Vec<&str> = left_out.iter().take(3).map(String::as_str).collect();
            ctx.problem(
                Severity::Warning,
                ObjectKind::Group,
                &g.dn,
                &g.anchor,
                "groups.members",
                "membersOutOfScope",
                format!(
                    "{} member(s) are not synced objects and were left out (for example: {})",
                    left_out.len(),
                    sample.join("; ")
                ),
            );
        }
        let image = GroupImage {
            anchor: g.anchor.clone(),
            display_name: g.display_name.clone(),
            description: g.description.clone(),
        };
        let old = snapshot.groups.get(&g.anchor);
        let mut change = PlannedChange {
            object: ObjectKind::Group,
            action: if old.is_some() {
                ChangeAction::Update
            } else {
                ChangeAction::Add
            },
            anchor: g.anchor.clone(),
            dn: Some(g.dn.clone()),
            name: g.display_name.clone(),
            attributes: group_diff(old.map(|s| &s.image), &image),
            ops: Vec::new(),
        };
        if !change.attributes.is_empty() {
            change.ops.push(SyncOp::UpsertGroup(image));
        }
        let have: BTreeSet<String> = old
            .map(|s| {
                s.member_anchors
                    .iter()
                    .filter(|m| {
                        !deleted_users.contains(m.as_str()) && !deleted_groups.contains(m.as_str())
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if have != members {
            let name_of = |a: &String| {
                user_index
                    .get(a.as_str())
                    .or_else(|| group_index.get(a.as_str()))
                    .map(|o| o.dn.clone())
                    .unwrap_or_else(|| a.clone())
            };
            let added: Vec<&String> = members.difference(&have).collect();
            let removed: Vec<&String> = have.difference(&members).collect();
            let listing = |sign: char, anchors: &[&String]| -> Option<String> {
                if anchors.is_empty() {
                    return None;
                }
                let shown: Vec<String> = anchors
                    .iter()
                    .take(MAX_LISTED_MEMBER_CHANGES)
                    .map(|a| name_of(a))
                    .collect();
                let more = anchors.len().saturating_sub(MAX_LISTED_MEMBER_CHANGES);
                Some(if more > 0 {
                    format!("{sign} {} … and {more} more", shown.join("; "))
                } else {
                    format!("{sign} {}", shown.join("; "))
                })
            };
            change.attributes.push(AttributeChange {
                name: "members".into(),
                old: listing('-', &removed),
                new: listing('+', &added),
            });
            change.ops.push(SyncOp::SetMembers {
                anchor: g.anchor.clone(),
                member_anchors: members.into_iter().collect(),
            });
        }
        if change.ops.is_empty() {
            summary.unchanged += 1;
            continue;
        }
        match change.action {
            ChangeAction::Add => summary.adds += 1,
            _ => summary.updates += 1,
        }
        changes.push(change);
    }

    // ---- deletions: anchors Cutover holds that the complete scan no longer shows -------------
    for (anchor, state) in &snapshot.groups {
        if !group_index.contains_key(anchor.as_str()) {
            summary.deletes += 1;
            changes.push(PlannedChange {
                object: ObjectKind::Group,
                action: ChangeAction::Delete,
                anchor: anchor.clone(),
                dn: None,
                name: state.image.display_name.clone(),
                attributes: Vec::new(),
                ops: vec![SyncOp::DeleteGroup {
                    anchor: anchor.clone(),
                }],
            });
        }
    }
    for (anchor, state) in &snapshot.users {
        if !user_index.contains_key(anchor.as_str()) {
            summary.deletes += 1;
            changes.push(PlannedChange {
                object: ObjectKind::User,
                action: ChangeAction::Delete,
                anchor: anchor.clone(),
                dn: None,
                name: state.image.user_principal_name.clone(),
                attributes: Vec::new(),
                ops: vec![SyncOp::DeleteUser {
                    anchor: anchor.clone(),
                }],
            });
        }
    }
    finish(ctx, changes, summary)
}

fn finish(ctx: Ctx<'_>, changes: Vec<PlannedChange>, mut summary: PlanSummary) -> ExportPlan {
    summary.errors = ctx
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count() as u64;
    summary.warnings = ctx.problems.len() as u64 - summary.errors;
    let _ = ctx.rules;
    let _ = ctx.snapshot;
    ExportPlan {
        changes,
        problems: ctx.problems,
        summary,
    }
}

fn plan_password(
    ctx: &mut Ctx<'_>,
    entry: &SourceEntry,
    stored: Option<&WrappedHash>,
    change: &mut PlannedChange,
    new_salt: &mut dyn FnMut() -> [u8; WRAP_SALT_LEN],
) {
    match read_hash(entry) {
        HashReading::Hash(h) => {
            if stored.is_some_and(|s| cutover_pwhash::same_hash(&h, s)) {
                return;
            }
            let wrapped = cutover_pwhash::wrap(&h, new_salt());
            change.attributes.push(AttributeChange {
                name: "passwordHash".into(),
                old: describe_hash(stored),
                new: describe_hash(Some(&wrapped)),
            });
            change.ops.push(SyncOp::SetPasswordHash {
                anchor: entry.anchor.clone(),
                hash: wrapped,
            });
        }
        HashReading::Problem(e) => {
            ctx.problem(
                Severity::Error,
                ObjectKind::User,
                &entry.dn,
                &entry.anchor,
                "passwordHashSync",
                e.code(),
                e.to_string(),
            );
            clear_password(entry, stored, change);
        }
        HashReading::None => clear_password(entry, stored, change),
    }
}

/// The directory no longer offers a usable hash: the old one must stop working in Cutover.
fn clear_password(entry: &SourceEntry, stored: Option<&WrappedHash>, change: &mut PlannedChange) {
    if stored.is_some() {
        change.attributes.push(AttributeChange {
            name: "passwordHash".into(),
            old: describe_hash(stored),
            new: None,
        });
        change.ops.push(SyncOp::ClearPasswordHash {
            anchor: entry.anchor.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::rules::MappingRules;
    use std::collections::BTreeMap;

    const BASE: &str = "ou=people,dc=corp,dc=example";

    fn user(uid: &str, attrs: &[(&str, &str)]) -> SourceEntry {
        let mut attributes: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        attributes.insert("uid".into(), vec![uid.as_bytes().to_vec()]);
        attributes.insert(
            "mail".into(),
            vec![format!("{uid}@corp.example").into_bytes()],
        );
        attributes.insert("cn".into(), vec![uid.to_uppercase().into_bytes()]);
        for (k, v) in attrs {
            attributes.insert(k.to_ascii_lowercase(), vec![v.as_bytes().to_vec()]);
        }
        SourceEntry {
            dn: format!("uid={uid},{BASE}"),
            anchor: format!("anchor-{uid}"),
            attributes,
        }
    }

    fn group(cn: &str, members: &[&str]) -> SourceEntry {
        let mut attributes: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        attributes.insert("cn".into(), vec![cn.as_bytes().to_vec()]);
        attributes.insert(
            "member".into(),
            members
                .iter()
                .map(|m| format!("uid={m},{BASE}").into_bytes())
                .collect(),
        );
        SourceEntry {
            dn: format!("cn={cn},ou=groups,dc=corp,dc=example"),
            anchor: format!("anchor-g-{cn}"),
            attributes,
        }
    }

    fn import(users: Vec<SourceEntry>, groups: Vec<SourceEntry>) -> Import {
        let index = |es: &[SourceEntry]| {
            es.iter()
                .map(|e| IndexedObject {
                    anchor: e.anchor.clone(),
                    dn: e.dn.clone(),
                    uid: e
                        .values("uid")
                        .first()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                })
                .collect()
        };
        Import {
            user_index: index(&users),
            group_index: index(&groups),
            users,
            groups,
        }
    }

    fn snapshot() -> CutoverSnapshot {
        CutoverSnapshot {
            domains: ["corp.example".to_owned()].into(),
            ..CutoverSnapshot::default()
        }
    }

    const OPTS: PlanOptions = PlanOptions {
        mode: PlanMode::Objects,
        password_hash_sync: true,
    };

    fn salts() -> impl FnMut() -> [u8; WRAP_SALT_LEN] {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(1);
            [n; WRAP_SALT_LEN]
        }
    }

    /// Apply a plan to a snapshot the way the server does (the test's model of Cutover).
    fn apply(snap: &mut CutoverSnapshot, plan: &ExportPlan) {
        for op in plan.ops() {
            match op {
                SyncOp::UpsertUser(img) => {
                    let e = snap
                        .users
                        .entry(img.anchor.clone())
                        .or_insert(SyncedUserState {
                            image: img.clone(),
                            manager_anchor: None,
                            password_hash: None,
                        });
                    e.image = img;
                }
                SyncOp::UpsertGroup(img) => {
                    let e = snap
                        .groups
                        .entry(img.anchor.clone())
                        .or_insert(SyncedGroupState {
                            image: img.clone(),
                            member_anchors: BTreeSet::new(),
                        });
                    e.image = img;
                }
                SyncOp::SetManager {
                    anchor,
                    manager_anchor,
                } => {
                    snap.users.get_mut(&anchor).unwrap().manager_anchor = manager_anchor;
                }
                SyncOp::SetMembers {
                    anchor,
                    member_anchors,
                } => {
                    snap.groups.get_mut(&anchor).unwrap().member_anchors =
                        member_anchors.into_iter().collect();
                }
                SyncOp::SetPasswordHash { anchor, hash } => {
                    snap.users.get_mut(&anchor).unwrap().password_hash = Some(hash);
                }
                SyncOp::ClearPasswordHash { anchor } => {
                    snap.users.get_mut(&anchor).unwrap().password_hash = None;
                }
                // As the server does: a deleted object leaves every group, and a deleted
                // manager leaves no dangling link.
                SyncOp::DeleteGroup { anchor } => {
                    snap.groups.remove(&anchor);
                    for g in snap.groups.values_mut() {
                        g.member_anchors.remove(&anchor);
                    }
                }
                SyncOp::DeleteUser { anchor } => {
                    snap.users.remove(&anchor);
                    for g in snap.groups.values_mut() {
                        g.member_anchors.remove(&anchor);
                    }
                    for u in snap.users.values_mut() {
                        if u.manager_anchor.as_deref() == Some(anchor.as_str()) {
                            u.manager_anchor = None;
                        }
                    }
                }
            }
        }
    }

    /// Plan with the default rules and options, and apply the plan to `snap`, as a run would.
    fn sync_into(snap: &mut CutoverSnapshot, import: &Import) -> ExportPlan {
        let plan = plan_export(&rules(), snap, import, OPTS, &mut salts());
        apply(snap, &plan);
        plan
    }

    fn rules() -> CompiledRules {
        MappingRules::default().compile().unwrap()
    }

    // {SSHA} of "secret" with salt "saltsalt"… computed by the pwhash crate's own vectors is
    // not needed here: any parseable value works, the planner only compares wraps.
    /// An `{SSHA256}` value (salted SHA-256, as OpenLDAP's pw-sha2 writes it).
    fn ssha(password: &str, salt: &[u8]) -> String {
        use base64::Engine;
        use sha2::Digest;
        let mut d = sha2::Sha256::new();
        d.update(password.as_bytes());
        d.update(salt);
        let mut h = d.finalize().to_vec();
        h.extend_from_slice(salt);
        format!(
            "{{SSHA256}}{}",
            base64::engine::general_purpose::STANDARD.encode(h)
        )
    }

    #[test]
    fn first_run_adds_everything_and_second_run_is_empty() {
        let rules = rules();
        let mut snap = snapshot();
        let imp = import(
            vec![
                user(
                    "alice",
                    &[
                        ("manager", &format!("uid=bob,{BASE}")),
                        ("userPassword", &ssha("pw-a", b"12345678")),
                    ],
                ),
                user("bob", &[]),
            ],
            vec![group("staff", &["alice", "bob", "ghost"])],
        );
        let plan = plan_export(&rules, &snap, &imp, OPTS, &mut salts());
        assert_eq!(plan.summary.adds, 3);
        assert_eq!(plan.summary.password_changes, 1);
        let ops = plan.ops();
        // Upserts come before links; links before hashes.
        let phases: Vec<u8> = ops.iter().map(SyncOp::phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
        assert!(plan.problems.iter().any(|p| p.code == "membersOutOfScope"));
        apply(&mut snap, &plan);
        assert_eq!(
            snap.users["anchor-alice"].manager_anchor.as_deref(),
            Some("anchor-bob")
        );
        assert_eq!(snap.groups["anchor-g-staff"].member_anchors.len(), 2);
        let again = plan_export(&rules, &snap, &imp, OPTS, &mut salts());
        assert!(again.is_empty(), "{:?}", again.changes);
        assert_eq!(again.summary.unchanged, 3);
    }

    #[test]
    fn updates_renames_and_deletes_are_keyed_by_anchor() {
        let rules = rules();
        let mut snap = snapshot();
        let first = import(vec![user("alice", &[]), user("bob", &[])], vec![]);
        sync_into(&mut snap, &first);
        // alice renamed (same anchor, new DN and mail), bob deleted.
        let mut renamed = user("alice2", &[]);
        renamed.anchor = "anchor-alice".into();
        let second = import(vec![renamed], vec![]);
        let plan = plan_export(&rules, &snap, &second, OPTS, &mut salts());
        assert_eq!(
            (
                plan.summary.adds,
                plan.summary.updates,
                plan.summary.deletes
            ),
            (0, 1, 1)
        );
        let upd = plan
            .changes
            .iter()
            .find(|c| c.action == ChangeAction::Update)
            .unwrap();
        let upn = upd
            .attributes
            .iter()
            .find(|a| a.name == "userPrincipalName")
            .unwrap();
        assert_eq!(upn.old.as_deref(), Some("alice@corp.example"));
        assert_eq!(upn.new.as_deref(), Some("alice2@corp.example"));
        apply(&mut snap, &plan);
        assert!(plan_export(&rules, &snap, &second, OPTS, &mut salts()).is_empty());
    }

    #[test]
    fn a_failing_object_is_reported_and_never_deleted() {
        let rules = rules();
        let mut snap = snapshot();
        let imp = import(vec![user("alice", &[])], vec![]);
        sync_into(&mut snap, &imp);
        let broken = import(vec![user("alice", &[("mail", "not-an-upn")])], vec![]);
        let plan = plan_export(&rules, &snap, &broken, OPTS, &mut salts());
        assert!(plan.is_empty());
        assert_eq!(plan.summary.errors, 1);
        assert_eq!(plan.problems[0].rule, "users.upn");
    }

    #[test]
    fn duplicate_upns_keep_the_current_holder() {
        let rules = rules();
        let mut snap = snapshot();
        sync_into(&mut snap, &import(vec![user("zed", &[])], vec![]));
        let mut dup = user("aaa", &[("mail", "zed@corp.example")]);
        dup.anchor = "anchor-0-first".into();
        let plan = plan_export(
            &rules,
            &snap,
            &import(vec![user("zed", &[]), dup], vec![]),
            OPTS,
            &mut salts(),
        );
        assert!(plan.is_empty(), "{:?}", plan.changes);
        let p = plan
            .problems
            .iter()
            .find(|p| p.code == "duplicateUpn")
            .unwrap();
        assert_eq!(p.anchor, "anchor-0-first");
        assert!(p.message.contains("uid=zed"), "{}", p.message);
    }

    #[test]
    fn unknown_domains_and_cloud_upns_are_refused_per_object() {
        let rules = rules();
        let mut snap = snapshot();
        snap.cloud_upns.insert("cloudy@corp.example".into());
        let imp = import(
            vec![
                user("x", &[("mail", "x@elsewhere.example")]),
                user("cloudy", &[]),
                user("ok", &[]),
            ],
            vec![],
        );
        let plan = plan_export(&rules, &snap, &imp, OPTS, &mut salts());
        assert_eq!(plan.summary.adds, 1);
        let codes: BTreeSet<&str> = plan.problems.iter().map(|p| p.code.as_str()).collect();
        assert_eq!(codes, ["cloudUpnTaken", "unknownDomain"].into());
    }

    #[test]
    fn manager_loops_are_broken_and_reported() {
        let rules = rules();
        let snap = snapshot();
        let imp = import(
            vec![
                user("a", &[("manager", &format!("uid=b,{BASE}"))]),
                user("b", &[("manager", &format!("uid=c,{BASE}"))]),
                user("c", &[("manager", &format!("uid=a,{BASE}"))]),
                user("d", &[("manager", &format!("uid=a,{BASE}"))]),
                user("self", &[("manager", &format!("uid=self,{BASE}"))]),
            ],
            vec![],
        );
        let plan = plan_export(&rules, &snap, &imp, OPTS, &mut salts());
        let looped: BTreeSet<&str> = plan
            .problems
            .iter()
            .filter(|p| p.code == "managerLoop")
            .map(|p| p.anchor.as_str())
            .collect();
        assert_eq!(
            looped,
            ["anchor-a", "anchor-b", "anchor-c", "anchor-self"].into()
        );
        let mut s = snapshot();
        apply(&mut s, &plan);
        assert_eq!(
            s.users["anchor-d"].manager_anchor.as_deref(),
            Some("anchor-a")
        );
        assert_eq!(s.users["anchor-a"].manager_anchor, None);
        assert_eq!(plan.summary.adds, 5);
    }

    #[test]
    fn delta_runs_touch_only_imported_entries_but_see_every_deletion() {
        let rules = rules();
        let mut snap = snapshot();
        let full = import(
            vec![user("a", &[]), user("b", &[]), user("c", &[])],
            vec![group("g", &["a", "b"])],
        );
        sync_into(&mut snap, &full);
        // Delta: only b changed; c is gone from the scan.
        let mut delta = import(
            vec![user("a", &[]), user("b", &[])],
            vec![group("g", &["a", "b"])],
        );
        delta.users = vec![user("b", &[("cn", "Bee")])];
        delta.groups = vec![];
        let plan = plan_export(&rules, &snap, &delta, OPTS, &mut salts());
        assert_eq!((plan.summary.updates, plan.summary.deletes), (1, 1));
        apply(&mut snap, &plan);
        assert_eq!(snap.users["anchor-b"].image.display_name, "Bee");
        assert!(snap.users.contains_key("anchor-a"));
    }

    #[test]
    fn password_hashes_change_only_when_the_directory_hash_changes() {
        let rules = rules();
        let mut snap = snapshot();
        let v1 = import(
            vec![user("a", &[("userPassword", &ssha("one", b"saltsalt"))])],
            vec![],
        );
        sync_into(&mut snap, &v1);
        let wrapped = snap.users["anchor-a"].password_hash.clone().unwrap();
        assert!(cutover_pwhash::verify("one", &wrapped).unwrap());
        assert!(!cutover_pwhash::verify("two", &wrapped).unwrap());
        // Same hash, a fresh salt source: nothing to do.
        let pw_only = PlanOptions {
            mode: PlanMode::PasswordsOnly,
            ..OPTS
        };
        assert!(plan_export(&rules, &snap, &v1, pw_only, &mut salts()).is_empty());
        // Changed on-prem.
        let v2 = import(
            vec![user("a", &[("userPassword", &ssha("two", b"newsalt1"))])],
            vec![],
        );
        let plan = plan_export(&rules, &snap, &v2, pw_only, &mut salts());
        assert_eq!(plan.summary.password_changes, 1);
        apply(&mut snap, &plan);
        assert!(
            cutover_pwhash::verify(
                "two",
                snap.users["anchor-a"].password_hash.as_ref().unwrap()
            )
            .unwrap()
        );
        // An unsupported format is a per-user problem, and the old hash stops working.
        let v3 = import(
            vec![user(
                "a",
                &[("userPassword", "{MD5}X03MO1qnZdYdgyfeuILPmQ==")],
            )],
            vec![],
        );
        let plan = plan_export(&rules, &snap, &v3, pw_only, &mut salts());
        assert_eq!(plan.problems.len(), 1);
        assert_eq!(plan.problems[0].rule, "passwordHashSync");
        assert!(matches!(plan.ops()[0], SyncOp::ClearPasswordHash { .. }));
    }

    #[test]
    fn full_and_delta_runs_plan_the_same_changes_when_a_member_and_manager_is_deleted() {
        let rules = rules();
        let mut snap = snapshot();
        let first = import(
            vec![
                user("boss", &[]),
                user("emp", &[("manager", &format!("uid=boss,{BASE}"))]),
            ],
            vec![group("team", &["boss", "emp"])],
        );
        sync_into(&mut snap, &first);
        // boss leaves the directory; the group and emp's entry still name boss.
        let mut full = import(
            vec![user("emp", &[("manager", &format!("uid=boss,{BASE}"))])],
            vec![group("team", &["boss", "emp"])],
        );
        let full_plan = plan_export(&rules, &snap, &full, OPTS, &mut salts());
        full.users.clear();
        full.groups.clear();
        let delta_plan = plan_export(&rules, &snap, &full, OPTS, &mut salts());
        let shape = |p: &ExportPlan| (p.summary.adds, p.summary.updates, p.summary.deletes);
        assert_eq!(shape(&full_plan), (0, 0, 1), "{:?}", full_plan.changes);
        assert_eq!(shape(&full_plan), shape(&delta_plan));
        let mut a = snap.clone();
        apply(&mut a, &full_plan);
        let mut b = snap.clone();
        apply(&mut b, &delta_plan);
        assert_eq!(a, b);
        assert_eq!(a.users["anchor-emp"].manager_anchor, None);
        assert_eq!(a.groups["anchor-g-team"].member_anchors.len(), 1);
    }

    #[test]
    fn a_recreated_entry_is_deleted_before_its_successor_takes_the_upn() {
        let rules = rules();
        let mut snap = snapshot();
        sync_into(&mut snap, &import(vec![user("ann", &[])], vec![]));
        let mut again = user("ann", &[]);
        again.anchor = "anchor-ann-new".into();
        let plan = plan_export(
            &rules,
            &snap,
            &import(vec![again], vec![]),
            OPTS,
            &mut salts(),
        );
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        let ops = plan.ops();
        assert!(
            matches!(&ops[0], SyncOp::DeleteUser { anchor } if anchor == "anchor-ann"),
            "{ops:?}"
        );
        assert!(
            matches!(&ops[1], SyncOp::UpsertUser(u) if u.anchor == "anchor-ann-new"),
            "{ops:?}"
        );
    }

    #[test]
    fn a_large_membership_change_is_listed_briefly() {
        let rules = rules();
        let uids: Vec<String> = (0..MAX_LISTED_MEMBER_CHANGES + 5)
            .map(|i| format!("m{i:03}"))
            .collect();
        let refs: Vec<&str> = uids.iter().map(String::as_str).collect();
        let users: Vec<SourceEntry> = uids.iter().map(|u| user(u, &[])).collect();
        let plan = plan_export(
            &rules,
            &snapshot(),
            &import(users, vec![group("big", &refs)]),
            OPTS,
            &mut salts(),
        );
        let g = plan
            .changes
            .iter()
            .find(|c| c.object == ObjectKind::Group)
            .unwrap();
        let members = g.attributes.iter().find(|a| a.name == "members").unwrap();
        let text = members.new.as_deref().unwrap();
        assert!(text.ends_with("… and 5 more"), "{text}");
        assert_eq!(text.matches("uid=").count(), MAX_LISTED_MEMBER_CHANGES);
        // The op itself still carries every member.
        let ops = plan.ops();
        let set = ops.iter().find_map(|o| match o {
            SyncOp::SetMembers { member_anchors, .. } => Some(member_anchors.len()),
            _ => None,
        });
        assert_eq!(set, Some(MAX_LISTED_MEMBER_CHANGES + 5));
    }

    #[test]
    fn delete_gate_at_the_edges() {
        assert_eq!(delete_gate(499, 500, None), DeleteGate::Open);
        assert_eq!(delete_gate(500, 500, None), DeleteGate::Open);
        assert_eq!(
            delete_gate(501, 500, None),
            DeleteGate::Blocked {
                deletes: 501,
                threshold: 500
            }
        );
        assert_eq!(
            delete_gate(501, 500, Some(500)),
            DeleteGate::Blocked {
                deletes: 501,
                threshold: 500
            }
        );
        assert_eq!(
            delete_gate(501, 500, Some(501)),
            DeleteGate::Overridden {
                deletes: 501,
                allowed: 501
            }
        );
    }
}
