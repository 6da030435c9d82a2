//! Directory sync (SPEC §5.1–5.2), the pure half.
//!
//! A sync server imports entries from the on-prem directory, and Cutover holds what earlier
//! exports wrote. Everything in between is decided here, without IO:
//!
//! - [`rules`]: the declarative mapping from directory attributes to Cutover attributes, with
//!   scoping; a rule error names the rule and the object.
//! - [`plan`]: reconciliation, `(Cutover snapshot, imported entries, rules) → export plan`. It is
//!   keyed by source anchor and idempotent: planning against the state a plan produced yields
//!   an empty plan.
//! - [`lease`]: the fencing rules that keep exactly one sync server exporting.
//!
//! The server applies a plan's [`SyncOp`]s batch by batch; the sync server's shell (LDAP,
//! HTTP) only moves data in and out.

pub mod lease;
pub mod plan;
pub mod rules;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use cutover_pwhash::WrappedHash;

/// One object as the directory connector delivered it: the DN, the stable source anchor
/// (`entryUUID`, or base64 of `objectGUID`), and raw attribute values under lower-cased names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub dn: String,
    pub anchor: String,
    pub attributes: BTreeMap<String, Vec<Vec<u8>>>,
}

impl SourceEntry {
    /// The values of one attribute (`name` in any case).
    pub fn values(&self, name: &str) -> &[Vec<u8>] {
        self.attributes
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The user attributes sync owns, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserImage {
    pub anchor: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub department: Option<String>,
    pub account_enabled: bool,
}

/// The group attributes sync owns (membership travels separately, in [`SyncOp::SetMembers`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupImage {
    pub anchor: String,
    pub display_name: String,
    pub description: Option<String>,
}

/// One write of an export. Every op is idempotent and keyed by anchor: an upsert of an object
/// Cutover already has is an update (or nothing, when it is equal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum SyncOp {
    UpsertUser(UserImage),
    UpsertGroup(GroupImage),
    #[serde(rename_all = "camelCase")]
    SetManager {
        anchor: String,
        manager_anchor: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    SetMembers {
        anchor: String,
        member_anchors: Vec<String>,
    },
    SetPasswordHash {
        anchor: String,
        hash: WrappedHash,
    },
    ClearPasswordHash {
        anchor: String,
    },
    DeleteGroup {
        anchor: String,
    },
    DeleteUser {
        anchor: String,
    },
}

impl SyncOp {
    /// The anchor of the object the op writes.
    pub fn anchor(&self) -> &str {
        match self {
            SyncOp::UpsertUser(u) => &u.anchor,
            SyncOp::UpsertGroup(g) => &g.anchor,
            SyncOp::SetManager { anchor, .. }
            | SyncOp::SetMembers { anchor, .. }
            | SyncOp::SetPasswordHash { anchor, .. }
            | SyncOp::ClearPasswordHash { anchor }
            | SyncOp::DeleteGroup { anchor }
            | SyncOp::DeleteUser { anchor } => anchor,
        }
    }

    /// Export order. Deletions come first, so that an entry deleted and re-created on-prem
    /// (a new anchor with the old UPN) frees its UPN before the new one claims it; Cutover drops
    /// a deleted object's memberships and the manager links to it by itself. Then objects are
    /// created before anything links to them (manager links and members come after every
    /// upsert), so a batch never references an object a later batch creates.
    pub fn phase(&self) -> u8 {
        match self {
            SyncOp::DeleteGroup { .. } => 0,
            SyncOp::DeleteUser { .. } => 1,
            SyncOp::UpsertUser(_) => 2,
            SyncOp::UpsertGroup(_) => 3,
            SyncOp::SetManager { .. } => 4,
            SyncOp::SetMembers { .. } => 5,
            SyncOp::SetPasswordHash { .. } | SyncOp::ClearPasswordHash { .. } => 6,
        }
    }

    pub fn is_delete(&self) -> bool {
        matches!(self, SyncOp::DeleteGroup { .. } | SyncOp::DeleteUser { .. })
    }
}

/// Where a sync server's delta import starts next time. Cutover stores it per sync server and
/// advances it in the same transaction as the export batch that completes a run, so a crash
/// anywhere before that re-imports the same changes (and the idempotent plan exports only what
/// is still missing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    /// Highest `modifyTimestamp` (LDAP GeneralizedTime) seen among users / groups.
    pub users: Option<String>,
    pub groups: Option<String>,
    /// Same, for the password-hash cycle.
    pub hashes: Option<String>,
    /// RFC 4533 content-sync cookies (base64), where the directory offers content sync: the
    /// next delta asks for the changes since them instead of filtering on `modifyTimestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_cookie: Option<String>,
    /// Fingerprint of the mapping rules the watermark was computed under: a change of rules
    /// invalidates it (the next run is full).
    pub rules: String,
}

/// What Cutover did with one export batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    /// Objects created.
    pub added: u64,
    /// Objects whose attributes changed.
    pub updated: u64,
    /// Manager links and group memberships set.
    pub links: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub passwords: u64,
    /// Ops Cutover refused (the rest of the batch applied).
    pub rejected: Vec<RejectedOp>,
}

impl ExportResult {
    pub fn absorb(&mut self, other: &ExportResult) {
        self.added += other.added;
        self.updated += other.updated;
        self.links += other.links;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
        self.passwords += other.passwords;
        self.rejected.extend(other.rejected.iter().cloned());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedOp {
    pub anchor: String,
    pub op: String,
    pub reason: String,
}
