//! First start: create the admin application whose client-credentials secret the operator
//! receives once, and the helpers that mint application credentials.

use cutover_core::{ADMIN_APP_ROLE, Application, ClientAppType, ClientType, GrantType, Secret};
use cutover_proto::AdminCredentials;
use cutover_store::{AuditEvent, StoreError};
use uuid::Uuid;

use crate::AppState;

/// The client id of the bootstrap admin application.
pub const ADMIN_CLIENT_ID: &str = "cutover-admin";

/// A fresh client secret: 256 random bits.
pub fn new_client_secret() -> Secret {
    Secret::new(crate::crypto::random_token())
}

/// Create the admin application unless it exists. Returns its credentials when it was created
/// now (the only time the secret is known), `None` when another start already made it.
pub async fn ensure_admin_application(
    state: &AppState,
) -> Result<Option<AdminCredentials>, StoreError> {
    if state
        .store
        .get_application_by_client_id(ADMIN_CLIENT_ID)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let secret = new_client_secret();
    let now = state.now();
    let app = Application {
        id: Uuid::now_v7(),
        client_id: ADMIN_CLIENT_ID.into(),
        display_name: "Cutover administration".into(),
        client_type: ClientType::Confidential,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        client_app_type: ClientAppType::Other,
        secret_hash: Some(crate::oidc::client_secret_hash(state, &secret)),
        app_roles: vec![ADMIN_APP_ROLE.into()],
        created_at: now,
    };
    let audit = AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: Uuid::now_v7(),
        actor: "system".into(),
        action: "createApplication".into(),
        target_type: "application".into(),
        target_id: app.id.to_string(),
        target_name: Some(app.display_name.clone()),
        before: None,
        after: Some(
            serde_json::json!({"clientId": ADMIN_CLIENT_ID, "appRoles": [ADMIN_APP_ROLE], "reason": "bootstrap"}),
        ),
    };
    match state.store.create_application(&app, &audit).await {
        Ok(()) => Ok(Some(AdminCredentials {
            issuer: state.config.issuer.clone(),
            client_id: ADMIN_CLIENT_ID.into(),
            client_secret: secret.expose().to_owned(),
        })),
        // Another node created it at the same moment.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Give the admin application a new secret (creating the application if it is missing) and
/// return the new credentials. For an operator who lost the credential file: it needs
/// access to the database, which only the operator has.
pub async fn reset_admin_secret(state: &AppState) -> Result<AdminCredentials, StoreError> {
    let Some(app) = state
        .store
        .get_application_by_client_id(ADMIN_CLIENT_ID)
        .await?
    else {
        return ensure_admin_application(state)
            .await?
            .ok_or(StoreError::Conflict(
                "the admin application appeared while it was being created; try again".into(),
            ));
    };
    let secret = new_client_secret();
    let now = state.now();
    let audit = AuditEvent {
        id: Uuid::now_v7(),
        created_at: now,
        correlation_id: Uuid::now_v7(),
        actor: "system".into(),
        action: "resetAdminSecret".into(),
        target_type: "application".into(),
        target_id: app.id.to_string(),
        target_name: Some(app.display_name.clone()),
        before: None,
        after: Some(
            serde_json::json!({"clientId": ADMIN_CLIENT_ID, "reason": "operator reset at startup"}),
        ),
    };
    state
        .store
        .set_application_secret(
            app.id,
            &crate::oidc::client_secret_hash(state, &secret),
            &audit,
        )
        .await?;
    Ok(AdminCredentials {
        issuer: state.config.issuer.clone(),
        client_id: ADMIN_CLIENT_ID.into(),
        client_secret: secret.expose().to_owned(),
    })
}
