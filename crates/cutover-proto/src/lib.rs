//! Wire types of Cutover's admin REST API: JSON, camelCase, Graph-like shapes.
//!
//! The server deserialises requests and serialises responses with these; the CLI does the
//! reverse. Request types refuse unknown fields so that a typo is an error, not a silent no-op.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod agents;
pub mod federation;
pub mod tap;

/// A list response: `{"value": [...]}`, with `@odata.nextLink` (a path and query on the same
/// server) when the log has more rows than one page returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResponse<T> {
    pub value: Vec<T>,
    #[serde(
        rename = "@odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_link: Option<String>,
}

impl<T> ListResponse<T> {
    pub fn new(value: Vec<T>) -> Self {
        Self {
            value,
            next_link: None,
        }
    }
}

/// An error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `conflict`, `invalidRequest`, `notFound`.
    pub code: String,
    /// What went wrong and what to do about it, for a person.
    pub message: String,
    /// Correlation id of the request, to find it in the server log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDomain {
    /// The domain name, e.g. `contoso.example`.
    pub id: String,
    /// `managed` (default) or `federated`.
    #[serde(default)]
    pub authentication_type: Option<String>,
    /// For a federated domain: the upstream identity provider's id, once registered.
    #[serde(default)]
    pub identity_provider_id: Option<Uuid>,
    /// For a managed domain: how synced users' passwords are checked
    /// (`passwordHashSync`, the default, or `passthroughAuthentication`).
    #[serde(default)]
    pub password_validation: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    pub id: String,
    pub authentication_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider_id: Option<Uuid>,
    /// Managed domains: `passwordHashSync` or `passthroughAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_validation: Option<String>,
    /// Managed domains converted from federation: the IdP a rollback returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_identity_provider_id: Option<Uuid>,
    pub created_date_time: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordProfile {
    pub password: String,
}

impl std::fmt::Debug for PasswordProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordProfile { password: *** }")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    pub user_principal_name: String,
    pub display_name: String,
    #[serde(default = "yes")]
    pub account_enabled: bool,
    #[serde(default)]
    pub password_profile: Option<PasswordProfile>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    /// Manager's user id.
    #[serde(default)]
    pub manager_id: Option<Uuid>,
    #[serde(default)]
    pub break_glass: bool,
    /// `cloud` (default) or `synced`.
    #[serde(default)]
    pub source: Option<String>,
    /// On-prem source anchor; required for synced users.
    #[serde(default)]
    pub immutable_id: Option<String>,
}

fn yes() -> bool {
    true
}

/// A partial update: absent fields are left as they are; `null` clears an optional attribute.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_profile: Option<PasswordProfile>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub mail: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub department: Option<Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    pub manager_id: Option<Option<Uuid>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<bool>,
}

/// `Option<Option<T>>` where an absent field is `None` and an explicit `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub user_principal_name: String,
    pub display_name: String,
    pub account_enabled: bool,
    pub mail: Option<String>,
    pub department: Option<String>,
    pub manager_id: Option<Uuid>,
    pub source: String,
    pub immutable_id: Option<String>,
    pub break_glass: bool,
    /// Whether a cloud password is set; present on single-user reads, absent in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_password: Option<bool>,
    pub created_date_time: String,
    pub updated_date_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateGroup {
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `assigned` (default) or `dynamic`.
    #[serde(default)]
    pub membership_kind: Option<String>,
    /// `cloud` (default) or `synced`.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub immutable_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub id: Uuid,
    pub display_name: String,
    pub description: Option<String>,
    pub membership_kind: String,
    pub source: String,
    pub immutable_id: Option<String>,
    pub created_date_time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    /// Id of the user, group or contact to add.
    pub id: Uuid,
    /// `user`, `group` or `contact`; when absent Cutover looks the id up among users and groups.
    #[serde(default)]
    pub member_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: Uuid,
    pub member_type: String,
    /// Display name or UPN when the member is a user or group that still exists.
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApplication {
    pub display_name: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `confidential` (default) or `public`.
    #[serde(default)]
    pub client_type: Option<String>,
    /// Defaults by client type.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// `browser` (default), `mobileAppsAndDesktopClients`, `exchangeActiveSync` or `other`.
    #[serde(default)]
    pub client_app_type: Option<String>,
    /// Application roles granted to the app itself, e.g. `Directory.ReadWrite.All` for admin tools.
    #[serde(default)]
    pub app_roles: Vec<String>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationView {
    pub id: Uuid,
    pub client_id: String,
    pub display_name: String,
    pub client_type: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub client_app_type: String,
    pub app_roles: Vec<String>,
    pub created_date_time: String,
    /// Present only in the response that created a confidential application: it is never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for ApplicationView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplicationView")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("display_name", &self.display_name)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyView {
    pub kid: String,
    pub algorithm: String,
    pub created_date_time: String,
    pub retired_date_time: Option<String>,
    /// Whether JWKS still publishes it.
    pub published: bool,
    /// Whether new tokens are signed with it.
    pub active: bool,
}

/// The bootstrap admin credential file `<data-dir>/admin-credentials` (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminCredentials {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = serde_json::from_str::<CreateUser>(
            r#"{"userPrincipalName":"a@b.example","displayname":"x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("displayname"), "{err}");
    }

    #[test]
    fn patch_distinguishes_absent_from_null() {
        let p: UpdateUser = serde_json::from_str(r#"{"mail":null}"#).unwrap();
        assert_eq!(p.mail, Some(None));
        assert_eq!(p.department, None);
        let p: UpdateUser = serde_json::from_str(r#"{"department":"Ops"}"#).unwrap();
        assert_eq!(p.department, Some(Some("Ops".into())));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = AdminCredentials {
            issuer: "i".into(),
            client_id: "c".into(),
            client_secret: "s3cr3t".into(),
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let p = PasswordProfile {
            password: "hunter2".into(),
        };
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}

/// The sync API (`/sync/v1`), spoken between `cutover sync` and the server, and the admin
/// API's view of sync servers (`/api/v1/sync/servers`).
pub mod sync {
    use cutover_core::sync::lease::Lease;
    use cutover_core::sync::plan::{
        DeleteGate, ObjectProblem, PlanSummary, PlannedChange, SyncedGroupState, SyncedUserState,
    };
    use cutover_core::sync::{ExportResult, SyncOp, Watermark};
    use serde::{Deserialize, Serialize};

    /// The version segment of the sync API's path. A sync server of another major version is
    /// refused with a message saying which.
    pub const SYNC_API_VERSION: &str = "v1";
    /// Largest request body the sync API takes (an export batch, or a report with its
    /// pending exports).
    pub const MAX_SYNC_BODY_BYTES: usize = 16 * 1024 * 1024;
    /// Pending-export rows (changes, and problems) a report carries and the server keeps; a
    /// plan with more is cut there and marked `truncated` (the sync server's own
    /// `pending-exports` command always shows everything).
    pub const MAX_PENDING_ROWS: usize = 20_000;

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct RegisterSyncServer {
        pub host: String,
        pub version: String,
        /// Configured `staging = true`: never exports until promoted.
        pub staging: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum SyncRole {
        /// Holds the export lease.
        Active,
        /// Imports and computes; exports nothing.
        Staging,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SyncServerView {
        pub name: String,
        pub role: SyncRole,
        pub host: String,
        pub version: String,
        pub registered_at: String,
        pub last_seen_at: String,
        pub last_run: Option<RunReport>,
        /// Set when the last run stopped for a person to look (the delete threshold).
        pub alert: Option<String>,
        pub pending_changes: Option<u64>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RegisterResponse {
        pub server: SyncServerView,
        pub lease: Lease,
        /// Where this server's delta import starts (absent: run a full import).
        pub watermark: Option<Watermark>,
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct PromoteRequest {
        /// Take the lease even though another server holds it (what `cutover sync promote`
        /// does). Without it, only a free lease (or one this server holds) is taken.
        #[serde(default)]
        pub force: bool,
    }

    /// `GET /sync/v1/snapshot`: what the planner needs besides the objects.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SnapshotMeta {
        pub domains: Vec<String>,
        pub cloud_upns: Vec<String>,
        pub lease: Lease,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SyncedUsersPage {
        pub value: Vec<SyncedUserState>,
        /// Pass as `after` for the next page; absent on the last page.
        pub next: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct SyncedGroupsPage {
        pub value: Vec<SyncedGroupState>,
        pub next: Option<String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ExportBatchRequest {
        pub epoch: u64,
        /// Unique per batch; a retried batch id is answered from the first application.
        pub batch_id: String,
        pub ops: Vec<SyncOp>,
        /// Sent with the run's last batch: stored in the same transaction.
        #[serde(default)]
        pub watermark: Option<Watermark>,
        /// The run exports more deletions than the threshold because an operator allowed it
        /// (`--allow-deletes N`); audited.
        #[serde(default)]
        pub allow_deletes: Option<u32>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ExportBatchResponse {
        pub result: ExportResult,
        /// The batch id had been applied before; nothing was written now.
        pub duplicate: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum RunKind {
        Full,
        Delta,
        Passwords,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub enum RunOutcome {
        /// Exported everything planned (or, on a staging server, computed it).
        Success,
        /// Exported, with per-object errors.
        CompletedWithErrors,
        /// Exported nothing: more deletions than the threshold.
        DeleteThresholdExceeded,
        /// Another server was promoted; this one stopped exporting.
        Demoted,
        /// The run failed (directory or Cutover unreachable, …); nothing more was exported.
        Failed,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct RunReport {
        pub run_id: String,
        pub kind: RunKind,
        pub staging: bool,
        pub started_at: String,
        pub finished_at: String,
        pub outcome: RunOutcome,
        pub message: Option<String>,
        pub summary: PlanSummary,
        pub exported: ExportResult,
        pub gate: DeleteGate,
        /// How a delta run found the changed entries: `contentSync` (RFC 4533) or
        /// `modifyTimestamp`; absent on full and password runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub delta_method: Option<String>,
        /// Directory entries the connector could not use at all (no anchor, …); each is named
        /// in the sync server's log.
        #[serde(default)]
        pub skipped: u64,
    }

    /// What a server would export (staging), or did not export (a run stopped by the delete
    /// threshold): per object Add / Update / Delete and per attribute old → new.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PendingExports {
        pub server: String,
        pub computed_at: String,
        pub kind: RunKind,
        pub summary: PlanSummary,
        pub gate: DeleteGate,
        pub changes: Vec<PlannedChange>,
        pub problems: Vec<ObjectProblem>,
        /// Changes and problems beyond the stored limit were left out of this copy.
        pub truncated: bool,
    }

    impl PendingExports {
        /// Keep at most `max` changes and `max` problems; says so in `truncated`.
        pub fn truncate_to(&mut self, max: usize) {
            if self.changes.len() > max || self.problems.len() > max {
                self.changes.truncate(max);
                self.problems.truncate(max);
                self.truncated = true;
            }
        }
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct ReportRequest {
        pub report: RunReport,
        pub pending: PendingExports,
    }

    impl ReportRequest {
        /// The request as a JSON body that fits [`MAX_SYNC_BODY_BYTES`]: pending rows beyond
        /// [`MAX_PENDING_ROWS`] are left out, and then halved until the body fits.
        pub fn to_body(mut self) -> serde_json::Result<serde_json::Value> {
            self.pending.truncate_to(MAX_PENDING_ROWS);
            loop {
                let body = serde_json::to_vec(&self)?;
                let rows = self.pending.changes.len().max(self.pending.problems.len());
                if body.len() <= MAX_SYNC_BODY_BYTES || rows == 0 {
                    return serde_json::from_slice(&body);
                }
                self.pending.truncate_to(rows / 2);
            }
        }
    }
}

#[cfg(test)]
mod sync_tests {
    use super::sync::*;
    use cutover_core::sync::ExportResult;
    use cutover_core::sync::plan::{
        AttributeChange, ChangeAction, DeleteGate, ObjectKind, PlanSummary, PlannedChange,
    };

    fn report(rows: usize, value_len: usize) -> ReportRequest {
        let change = PlannedChange {
            object: ObjectKind::User,
            action: ChangeAction::Add,
            anchor: "a".into(),
            dn: None,
            name: "n".into(),
            attributes: vec![AttributeChange {
                name: "displayName".into(),
                old: None,
                new: Some("x".repeat(value_len)),
            }],
            ops: Vec::new(),
        };
        ReportRequest {
            report: RunReport {
                run_id: "r".into(),
                kind: RunKind::Full,
                staging: true,
                started_at: String::new(),
                finished_at: String::new(),
                outcome: RunOutcome::Success,
                message: None,
                summary: PlanSummary::default(),
                exported: ExportResult::default(),
                gate: DeleteGate::Open,
                delta_method: None,
                skipped: 0,
            },
            pending: PendingExports {
                server: "s".into(),
                computed_at: String::new(),
                kind: RunKind::Full,
                summary: PlanSummary::default(),
                gate: DeleteGate::Open,
                changes: vec![change; rows],
                problems: Vec::new(),
                truncated: false,
            },
        }
    }

    #[test]
    fn a_report_always_fits_the_sync_body_limit() {
        let small = report(MAX_PENDING_ROWS, 10).to_body().unwrap();
        assert_eq!(
            small["pending"]["changes"].as_array().unwrap().len(),
            MAX_PENDING_ROWS
        );
        assert_eq!(small["pending"]["truncated"], false);
        let over = report(MAX_PENDING_ROWS + 1, 10).to_body().unwrap();
        assert_eq!(
            over["pending"]["changes"].as_array().unwrap().len(),
            MAX_PENDING_ROWS
        );
        assert_eq!(over["pending"]["truncated"], true);
        // Rows so large that the row limit alone would not fit the body.
        let big = report(MAX_PENDING_ROWS, 4000).to_body().unwrap();
        assert!(serde_json::to_vec(&big).unwrap().len() <= MAX_SYNC_BODY_BYTES);
        assert_eq!(big["pending"]["truncated"], true);
    }
}
