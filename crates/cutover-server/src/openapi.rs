//! The OpenAPI 3.1 description of the admin API, served at `/api/v1/openapi.json`.
//! Tests check the document against this list and every listed route against the live router.

use axum::Json;
use serde_json::{Value, json};

/// Every admin route as (method, path), the source both the document and its test read.
pub const ADMIN_ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/domains", "List domains"),
    (
        "post",
        "/domains",
        "Register a domain: {\"id\": \"contoso.example\", \"authenticationType\": \"managed\"}",
    ),
    ("get", "/domains/{id}", "Get a domain"),
    (
        "delete",
        "/domains/{id}",
        "Delete a domain that has no users",
    ),
    (
        "get",
        "/users",
        "List users by user principal name (?prefix=, $top=, $skiptoken= from @odata.nextLink)",
    ),
    ("post", "/users", "Create a user"),
    (
        "get",
        "/users/{id}",
        "Get a user by id or user principal name",
    ),
    (
        "patch",
        "/users/{id}",
        "Update a user (absent fields unchanged, null clears)",
    ),
    (
        "delete",
        "/users/{id}",
        "Delete a user, their memberships and sessions; revoke their tokens",
    ),
    (
        "get",
        "/groups",
        "List groups by name (?$top=, $skiptoken= from @odata.nextLink)",
    ),
    ("post", "/groups", "Create a group"),
    ("get", "/groups/{id}", "Get a group"),
    ("delete", "/groups/{id}", "Delete a group"),
    (
        "get",
        "/groups/{id}/members",
        "List a group's members (?$top=, $skiptoken= from @odata.nextLink)",
    ),
    (
        "post",
        "/groups/{id}/members",
        "Add a member: {\"id\": <user, group or contact id>}",
    ),
    (
        "delete",
        "/groups/{id}/members/{member}",
        "Remove a member (id or user principal name)",
    ),
    ("get", "/applications", "List applications"),
    (
        "post",
        "/applications",
        "Register an OpenID Connect application; a confidential one's clientSecret is returned once",
    ),
    ("get", "/applications/{id}", "Get an application"),
    (
        "delete",
        "/applications/{id}",
        "Delete an application and revoke its tokens",
    ),
    (
        "get",
        "/auditLogs/signIns",
        "Sign-in log, newest first (?userPrincipalName=, userId=, clientId=, result=, route=, since=, until=, $top=, $skiptoken= from @odata.nextLink)",
    ),
    (
        "get",
        "/auditLogs/directoryAudits",
        "Audit log of admin changes, newest first (?actor=, action=, targetId=, since=, until=, $top=, $skiptoken= from @odata.nextLink)",
    ),
    ("get", "/signingKeys", "List token signing keys"),
    (
        "post",
        "/signingKeys/rotate",
        "Create a new signing key; old keys stay in JWKS until their tokens expire",
    ),
    (
        "get",
        "/sync/servers",
        "List directory sync servers: role (active holds the export lease), last run, alert",
    ),
    ("get", "/sync/servers/{name}", "Get one sync server"),
    (
        "get",
        "/sync/servers/{name}/pendingExports",
        "What the server's last run would export (staging) or did not export (delete threshold): per object Add/Update/Delete, per attribute old → new",
    ),
    (
        "get",
        "/identityProviders",
        "List upstream identity providers",
    ),
    (
        "post",
        "/identityProviders",
        "Register an upstream OpenID Connect provider (the client secret is write-only; the response names the redirect URI to register there)",
    ),
    (
        "get",
        "/identityProviders/{id}",
        "Get an upstream identity provider",
    ),
    (
        "patch",
        "/identityProviders/{id}",
        "Update an upstream identity provider (absent fields unchanged)",
    ),
    (
        "delete",
        "/identityProviders/{id}",
        "Delete an upstream identity provider no federated domain uses",
    ),
    (
        "post",
        "/domains/{id}/convert",
        "Domain cut-over (to managed, behind a preflight; 409 with the preflight when refused) or rollback (to federated, always allowed); dryRun runs the preflight only",
    ),
    (
        "get",
        "/policies/featureRolloutPolicies",
        "List feature rollout policies (staged rollout)",
    ),
    (
        "post",
        "/policies/featureRolloutPolicies",
        "Create a feature rollout policy; a broken staged-rollout rule is a 400 whose error code names the rule",
    ),
    (
        "get",
        "/policies/featureRolloutPolicies/{id}",
        "Get a feature rollout policy",
    ),
    (
        "patch",
        "/policies/featureRolloutPolicies/{id}",
        "Update a feature rollout policy (isEnabled false is a one-step rollback: users return at their next sign-in)",
    ),
    (
        "delete",
        "/policies/featureRolloutPolicies/{id}",
        "Delete a feature rollout policy",
    ),
    (
        "get",
        "/policies/featureRolloutPolicies/{id}/appliesTo",
        "List the groups a policy applies to",
    ),
    (
        "post",
        "/policies/featureRolloutPolicies/{id}/appliesTo",
        "Add a group: {\"id\": <group id>} (≤ 10 per feature, ≤ 200 members on first add, no nested or dynamic groups, no contacts)",
    ),
    (
        "post",
        "/policies/featureRolloutPolicies/{id}/appliesTo/$ref",
        "Add a group, Graph form: {\"@odata.id\": \".../directoryObjects/<group id>\"}",
    ),
    (
        "delete",
        "/policies/featureRolloutPolicies/{id}/appliesTo/{group}",
        "Remove a group (its users return at their next interactive sign-in)",
    ),
    (
        "delete",
        "/policies/featureRolloutPolicies/{id}/appliesTo/{group}/$ref",
        "Remove a group, Graph form",
    ),
    (
        "get",
        "/policies/featureRolloutPolicies/{id}/progress",
        "Progress of a policy per group and in total: how many direct user members are switched, pending (switch at their next sign-in), held (no synced password hash yet), returning, notEnabled, needsPasswordFeature or notEligible, with up to 20 names per category; truncated when a group has more than 100000 members",
    ),
    (
        "get",
        "/users/{id}/stagedRollout",
        "A user's staged-rollout state: desired and effective features, and the route of their next sign-in with the reason",
    ),
    (
        "post",
        "/agents/registrationTokens",
        "Issue a one-time pass-through agent registration token (lifetimeSecs 60-86400, default 3600); the token is returned once and stored only hashed",
    ),
    (
        "get",
        "/agents",
        "List pass-through agents with health, last heartbeat, counters and directory status; warns below 3 healthy agents",
    ),
    ("get", "/agents/{id}", "Get a pass-through agent"),
    (
        "patch",
        "/agents/{id}",
        "Enable or disable a pass-through agent: {\"enabled\": false} stops sending it passwords at once",
    ),
    (
        "delete",
        "/agents/{id}",
        "Delete a pass-through agent and the passwords sealed to it",
    ),
    (
        "get",
        "/policies/smartLockout",
        "The smart-lockout policy, the lockout policies the agents read from their directories, and warnings where Cutover's does not lock first and longer",
    ),
    (
        "put",
        "/policies/smartLockout",
        "Replace the smart-lockout policy (threshold 1-100, durationSecs, maxDurationSecs, resetAfterSecs, mode enforced or reportOnly); answers with the warnings",
    ),
    (
        "get",
        "/users/{id}/lockout",
        "A user's smart-lockout state: locked, failures and locks per counter (familiar and unfamiliar networks), familiar networks",
    ),
    (
        "post",
        "/users/{id}/lockout/unlock",
        "Unlock a user: both counters start over; familiar networks stay",
    ),
    (
        "get",
        "/users/{id}/authentication/temporaryAccessPassMethods",
        "The user's Temporary Access Pass (at most one), with whether it is usable now and why not",
    ),
    (
        "post",
        "/users/{id}/authentication/temporaryAccessPassMethods",
        "Issue a Temporary Access Pass (replaces the user's previous one); the pass is in this answer only",
    ),
    (
        "get",
        "/users/{id}/authentication/temporaryAccessPassMethods/{tap}",
        "One Temporary Access Pass of the user, without its secret",
    ),
    (
        "delete",
        "/users/{id}/authentication/temporaryAccessPassMethods/{tap}",
        "Delete the user's Temporary Access Pass",
    ),
    (
        "get",
        "/policies/temporaryAccessPass",
        "The Temporary Access Pass policy (off by default)",
    ),
    (
        "put",
        "/policies/temporaryAccessPass",
        "Replace the Temporary Access Pass policy: enabled, lifetimes (10 min - 30 days), length, one-time default",
    ),
    (
        "get",
        "/policies/authenticationMethodsPolicy",
        "The authentication methods policy (passkey, totp, temporaryAccessPass, password: enabled and for whom; passkey attestation and AAGUID restrictions) with warnings",
    ),
    (
        "put",
        "/policies/authenticationMethodsPolicy",
        "Replace the authentication methods policy (preview a change first with .../preview)",
    ),
    (
        "post",
        "/policies/authenticationMethodsPolicy/preview",
        "Which users' passkeys a proposed policy would stop (or start) and who would be left without one; nothing is saved",
    ),
    (
        "get",
        "/users/{id}/authentication/passkeyMethods",
        "A user's passkeys: name, model, synced or device-bound, device family, created, last used",
    ),
    (
        "delete",
        "/users/{id}/authentication/passkeyMethods/{passkey}",
        "Remove a user's passkey (a lost or compromised device)",
    ),
    (
        "get",
        "/reports/authenticationMethods/userRegistrationDetails",
        "Per user: methods registered, MFA registered, passwordless capable, passkeys and device families (?group=<id>), with a summary",
    ),
    (
        "get",
        "/identity/conditionalAccess/policies",
        "Conditional Access policies",
    ),
    (
        "post",
        "/identity/conditionalAccess/policies",
        "Create a Conditional Access policy (report-only unless state says otherwise; never enabled at creation)",
    ),
    (
        "get",
        "/identity/conditionalAccess/policies/{id}",
        "A Conditional Access policy (by id or name)",
    ),
    (
        "patch",
        "/identity/conditionalAccess/policies/{id}",
        "Change a policy (top-level fields replaced); enabling it passes the enforcement gate unless ?force=true (audited)",
    ),
    (
        "delete",
        "/identity/conditionalAccess/policies/{id}",
        "Delete a Conditional Access policy",
    ),
    (
        "get",
        "/identity/conditionalAccess/policies/{id}/impact",
        "Who the policy would have interrupted or blocked over a window (?since=48h), grouped by reason and platform, and the gate's verdict",
    ),
    (
        "get",
        "/identity/conditionalAccess/namedLocations",
        "Named locations (IP ranges, trusted flag)",
    ),
    (
        "post",
        "/identity/conditionalAccess/namedLocations",
        "Create a named location",
    ),
    (
        "get",
        "/identity/conditionalAccess/namedLocations/{id}",
        "A named location",
    ),
    (
        "patch",
        "/identity/conditionalAccess/namedLocations/{id}",
        "Change a named location",
    ),
    (
        "delete",
        "/identity/conditionalAccess/namedLocations/{id}",
        "Delete a named location no policy uses",
    ),
    (
        "post",
        "/identity/conditionalAccess/evaluate",
        "What-if: each policy's result and the decision for a hypothetical sign-in (user, application, client app type, IP, platform, methods)",
    ),
    (
        "get",
        "/identity/conditionalAccess/gateSettings",
        "The enforcement gate's interruption threshold (percent; default 5)",
    ),
    (
        "put",
        "/identity/conditionalAccess/gateSettings",
        "Set the enforcement gate's threshold: {\"interruptionThresholdPercent\": 5}",
    ),
    (
        "get",
        "/breakGlass",
        "Break-glass accounts with last sign-in, last drill and passkeys, and warnings",
    ),
    (
        "get",
        "/breakGlass/alerting",
        "The optional webhook every break-glass sign-in is posted to",
    ),
    (
        "put",
        "/breakGlass/alerting",
        "Set or clear the break-glass webhook: {\"webhookUrl\": \"https://…\"}",
    ),
    (
        "post",
        "/breakGlass/drills",
        "Record a drill of a break-glass account after a real sign-in in the last hour",
    ),
    (
        "get",
        "/campaigns",
        "List passkey rollout campaigns with their waves' state",
    ),
    (
        "post",
        "/campaigns",
        "Create a campaign: {\"displayName\", \"waves\": [{\"displayName\", \"phase\", \"groupId\", \"registrationOpens\", \"enforcementDate\", \"caPolicyId\"}], \"preset\": \"standard\"|\"extended\" or \"communications\", \"targetPercent\"}",
    ),
    (
        "get",
        "/campaigns/{id}",
        "A campaign (by id or display name)",
    ),
    (
        "patch",
        "/campaigns/{id}",
        "Replace top-level fields of a campaign; an enforced wave cannot be removed",
    ),
    (
        "delete",
        "/campaigns/{id}",
        "Delete a campaign (refused while a wave is enforced); pending e-mails are cancelled",
    ),
    (
        "get",
        "/campaigns/{id}/prerequisites",
        "Each wave's live checklist: methods policy, pass policy, break-glass, CA policy",
    ),
    (
        "get",
        "/campaigns/{id}/progress",
        "Each wave's enrolment: members, enrolled, two or more, by device family, daily series (?wave=)",
    ),
    (
        "get",
        "/campaigns/{id}/waves/{wave}/stragglers",
        "The wave's members without a passkey (?format=json|csv)",
    ),
    (
        "post",
        "/campaigns/{id}/waves/{wave}/confirm",
        "Confirm the wave's exit criteria (needed before enforcement)",
    ),
    (
        "post",
        "/campaigns/{id}/waves/{wave}/enforce",
        "Enforce the wave: at its target, confirmed, its CA policy switched on through the enforcement gate (?force=true passes the gate, audited)",
    ),
    (
        "post",
        "/campaigns/{id}/waves/{wave}/rollback",
        "Roll the wave back: its CA policy returns to report-only; nothing is deleted",
    ),
    (
        "get",
        "/campaigns/{id}/communications",
        "The e-mail plan per wave and step, the decisions and the outbox counts",
    ),
    (
        "post",
        "/campaigns/{id}/communications/run",
        "Decide the e-mail steps that are due now (each once)",
    ),
    (
        "post",
        "/campaigns/{id}/communications/preview",
        "A step rendered for one member and its audience now: {\"waveId\", \"step\", \"userId\"?}",
    ),
    (
        "post",
        "/campaigns/{id}/communications/testSend",
        "Send a step, marked as a test, to one address: {\"waveId\", \"step\", \"to\"}",
    ),
    (
        "get",
        "/campaigns/{id}/outbox",
        "The campaign's e-mails in the outbox (?state=pending|sent|failed|uncertain…)",
    ),
    (
        "post",
        "/campaigns/{id}/outbox/resendFailed",
        "Send every failed e-mail of the campaign again (uncertain ones stay): {\"resent\": n}",
    ),
    (
        "post",
        "/communications/outbox/{id}/resend",
        "Send a failed or uncertain e-mail again",
    ),
];

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn body_schema(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("post", "/domains") => Some("CreateDomain"),
        ("post", "/users") => Some("CreateUser"),
        ("patch", "/users/{id}") => Some("UpdateUser"),
        ("post", "/groups") => Some("CreateGroup"),
        ("post", "/groups/{id}/members") => Some("AddMember"),
        ("post", "/applications") => Some("CreateApplication"),
        ("post", "/identityProviders") => Some("CreateIdentityProvider"),
        ("post", "/domains/{id}/convert") => Some("ConvertDomain"),
        ("post", "/policies/featureRolloutPolicies") => Some("CreateFeatureRolloutPolicy"),
        ("patch", "/policies/featureRolloutPolicies/{id}") => Some("UpdateFeatureRolloutPolicy"),
        ("post", "/policies/featureRolloutPolicies/{id}/appliesTo") => Some("AddAppliesTo"),
        ("post", "/policies/featureRolloutPolicies/{id}/appliesTo/$ref") => Some("AddAppliesTo"),
        ("post", "/agents/registrationTokens") => Some("CreateRegistrationToken"),
        ("patch", "/agents/{id}") => Some("UpdateAgent"),
        ("put", "/policies/smartLockout") => Some("SmartLockoutPolicy"),
        ("post", "/users/{id}/authentication/temporaryAccessPassMethods") => {
            Some("CreateTemporaryAccessPass")
        }
        ("put", "/policies/temporaryAccessPass") => Some("TemporaryAccessPassPolicy"),
        ("put", "/policies/authenticationMethodsPolicy")
        | ("post", "/policies/authenticationMethodsPolicy/preview") => {
            Some("AuthenticationMethodsPolicy")
        }
        _ => None,
    }
}

pub fn build() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ADMIN_ROUTES {
        let mut op = json!({
            "summary": summary,
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "OK"},
                "201": {"description": "Created"},
                "204": {"description": "Deleted"},
                "400": {"description": "Invalid request", "content": {"application/json": {"schema": schema_ref("Error")}}},
                "401": {"description": "No or invalid access token"},
                "403": {"description": "The application lacks the Directory.ReadWrite.All role"},
                "404": {"description": "Not found"},
                "409": {"description": "Conflict"},
                "503": {"description": "Database unavailable; nothing was changed"}
            }
        });
        if let Some(schema) = body_schema(method, path) {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}});
        }
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        let entry = paths
            .entry(format!("/api/v1{path}"))
            .or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    let s = |props: Value, required: Value| json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Cutover admin API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "Access token from POST /oauth2/token with grant_type=client_credentials by an application holding Directory.ReadWrite.All"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "CreateDomain": s(json!({"id": {"type": "string"}, "authenticationType": {"enum": ["managed", "federated"]}, "identityProviderId": {"type": "string", "format": "uuid"}, "passwordValidation": {"enum": ["passwordHashSync", "passthroughAuthentication"]}}), json!(["id"])),
                "CreateIdentityProvider": s(json!({
                    "displayName": {"type": "string"}, "issuer": {"type": "string", "format": "uri"}, "clientId": {"type": "string"},
                    "clientSecret": {"type": "string", "writeOnly": true}, "scopes": {"type": "array", "items": {"type": "string"}},
                    "immutableIdClaim": {"type": "string", "default": "sub"}, "fallbackToUpn": {"type": "boolean"}, "upnClaim": {"type": "string", "default": "upn"}
                }), json!(["displayName", "issuer", "clientId", "clientSecret"])),
                "ConvertDomain": s(json!({
                    "to": {"enum": ["managed", "federated"]}, "passwordValidation": {"enum": ["passwordHashSync", "passthroughAuthentication"]},
                    "identityProviderId": {"type": "string", "format": "uuid"}, "dryRun": {"type": "boolean"}
                }), json!(["to"])),
                "CreateFeatureRolloutPolicy": s(json!({
                    "displayName": {"type": "string"}, "description": {"type": "string"},
                    "feature": {"enum": ["passwordHashSync", "passthroughAuthentication", "seamlessSso", "certificateBasedAuthentication", "multiFactorAuthentication"]},
                    "isEnabled": {"type": "boolean"}, "isAppliedToOrganization": {"const": false}
                }), json!(["displayName", "feature"])),
                "UpdateFeatureRolloutPolicy": s(json!({
                    "displayName": {"type": "string"}, "description": {"type": "string"}, "isEnabled": {"type": "boolean"}, "isAppliedToOrganization": {"const": false}
                }), json!([])),
                "CreateRegistrationToken": s(json!({"lifetimeSecs": {"type": "integer", "minimum": 60, "maximum": 86_400, "default": 3_600}}), json!([])),
                "UpdateAgent": s(json!({"enabled": {"type": "boolean"}}), json!([])),
                "SmartLockoutPolicy": s(json!({
                    "threshold": {"type": "integer", "minimum": 1, "maximum": 100}, "durationSecs": {"type": "integer", "minimum": 5},
                    "maxDurationSecs": {"type": "integer"}, "resetAfterSecs": {"type": "integer"}, "mode": {"enum": ["enforced", "reportOnly"]}
                }), json!(["threshold", "durationSecs", "maxDurationSecs", "resetAfterSecs", "mode"])),
                "CreateTemporaryAccessPass": s(json!({
                    "startDateTime": {"type": "string", "format": "date-time"}, "lifetimeInMinutes": {"type": "integer", "minimum": 10, "maximum": 43_200},
                    "isUsableOnce": {"type": "boolean"}
                }), json!([])),
                "TemporaryAccessPassPolicy": s(json!({
                    "enabled": {"type": "boolean"}, "defaultLifetimeSecs": {"type": "integer"}, "minLifetimeSecs": {"type": "integer", "minimum": 600},
                    "maxLifetimeSecs": {"type": "integer", "maximum": 2_592_000}, "length": {"type": "integer", "minimum": 8, "maximum": 48},
                    "defaultOneTime": {"type": "boolean"}, "requireOneTime": {"type": "boolean"}
                }), json!([])),
                "AuthenticationMethodsPolicy": s(json!({
                    "passkey": {"type": "object", "properties": {
                        "target": {"$ref": "#/components/schemas/MethodTarget"},
                        "enforceAttestation": {"type": "boolean"},
                        "keyRestrictions": {"type": "object", "properties": {
                            "enforcement": {"enum": ["allow", "block"]},
                            "aaguids": {"type": "array", "items": {"type": "string", "format": "uuid"}, "maxItems": 500}
                        }, "required": ["enforcement", "aaguids"]}
                    }, "required": ["target"]},
                    "totp": {"$ref": "#/components/schemas/MethodTarget"},
                    "temporaryAccessPass": {"$ref": "#/components/schemas/MethodTarget"},
                    "password": {"$ref": "#/components/schemas/MethodTarget"}
                }), json!(["passkey", "totp", "temporaryAccessPass", "password"])),
                "MethodTarget": s(json!({
                    "enabled": {"type": "boolean"}, "allUsers": {"type": "boolean"},
                    "includeGroups": {"type": "array", "items": {"type": "string", "format": "uuid"}, "maxItems": 100},
                    "excludeGroups": {"type": "array", "items": {"type": "string", "format": "uuid"}, "maxItems": 100}
                }), json!(["enabled"])),
                "AddAppliesTo": s(json!({"id": {"type": "string", "format": "uuid"}, "@odata.id": {"type": "string"}}), json!([])),
                "CreateUser": s(json!({
                    "userPrincipalName": {"type": "string"}, "displayName": {"type": "string"}, "accountEnabled": {"type": "boolean"},
                    "passwordProfile": {"type": "object", "properties": {"password": {"type": "string"}}},
                    "mail": {"type": "string"}, "department": {"type": "string"}, "managerId": {"type": "string", "format": "uuid"},
                    "breakGlass": {"type": "boolean"}, "source": {"enum": ["cloud", "synced"]}, "immutableId": {"type": "string"}
                }), json!(["userPrincipalName", "displayName"])),
                "UpdateUser": s(json!({
                    "displayName": {"type": "string"}, "accountEnabled": {"type": "boolean"},
                    "passwordProfile": {"type": "object", "properties": {"password": {"type": "string"}}},
                    "mail": {"type": ["string", "null"]}, "department": {"type": ["string", "null"]},
                    "managerId": {"type": ["string", "null"]}, "breakGlass": {"type": "boolean"}
                }), json!([])),
                "CreateGroup": s(json!({"displayName": {"type": "string"}, "description": {"type": "string"}, "membershipKind": {"enum": ["assigned", "dynamic"]}, "source": {"enum": ["cloud", "synced"]}, "immutableId": {"type": "string"}}), json!(["displayName"])),
                "AddMember": s(json!({"id": {"type": "string", "format": "uuid"}, "memberType": {"enum": ["user", "group", "contact"]}}), json!(["id"])),
                "CreateApplication": s(json!({
                    "displayName": {"type": "string"}, "redirectUris": {"type": "array", "items": {"type": "string"}},
                    "postLogoutRedirectUris": {"type": "array", "items": {"type": "string"}},
                    "clientType": {"enum": ["confidential", "public"]},
                    "grantTypes": {"type": "array", "items": {"enum": ["authorization_code", "refresh_token", "client_credentials"]}},
                    "clientAppType": {"enum": ["browser", "mobileAppsAndDesktopClients", "exchangeActiveSync", "other"]},
                    "appRoles": {"type": "array", "items": {"type": "string"}}
                }), json!(["displayName"]))
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once() {
        let doc = build();
        for (method, path, _) in ADMIN_ROUTES {
            assert!(
                doc["paths"][format!("/api/v1{path}")][*method].is_object(),
                "{method} {path}"
            );
        }
        let ops: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_object().unwrap().len())
            .sum();
        assert_eq!(ops, ADMIN_ROUTES.len());
    }
}
