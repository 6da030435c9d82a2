//! The storage conformance suite: one set of behavioural checks that every [`Store`]
//! implementation must pass. The integration tests run it against SQLite and PostgreSQL.
//!
//! Call [`run`] on a freshly migrated, empty database. A failed check panics with a message
//! naming the behaviour.

use std::sync::Arc;

use cutover_core::domain_cutover::{BreakGlassFacts, FederatedSignIns};
use cutover_core::signin_log::{LockoutDecision, SignInRecord, SignInResult};
use cutover_core::staged::{
    FeatureRolloutPolicy, FeatureSet, RolloutFeature, RolloutRule, RuleViolation, SignInEnd,
    StagedState,
};
use cutover_core::{
    Application, ClientAppType, ClientType, Domain, DomainAuthentication, DomainName,
    FederationConfig, Group, IdentityProvider, ManagedConfig, MemberKind, MemberRef,
    MembershipKind, PasswordValidation, RedirectUri, Source, Timestamp, User, UserPrincipalName,
    default_grants,
};
use uuid::Uuid;

use crate::*;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn audit(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        id: Uuid::new_v4(),
        created_at: T0,
        correlation_id: Uuid::new_v4(),
        actor: "app:conformance".into(),
        action: action.into(),
        target_type: "test".into(),
        target_id: target.into(),
        target_name: None,
        before: None,
        after: Some(serde_json::json!({"target": target})),
    }
}

fn user(upn: &str) -> UserRecord {
    UserRecord {
        user: User {
            id: Uuid::new_v4(),
            upn: UserPrincipalName::parse(upn).expect("test upn"),
            source: Source::Cloud,
            immutable_id: None,
            display_name: upn.into(),
            mail: Some(upn.into()),
            department: Some("Finance".into()),
            manager_id: None,
            account_enabled: true,
            break_glass: false,
            created_at: T0,
            updated_at: T0,
        },
        password_hash: Some("$argon2id$fake".into()),
        synced_password: None,
        password_changed_at: Some(T0),
    }
}

fn app(client_id: &str) -> Application {
    Application {
        id: Uuid::new_v4(),
        client_id: client_id.into(),
        display_name: format!("App {client_id}"),
        client_type: ClientType::Confidential,
        redirect_uris: vec![RedirectUri::parse("https://app.example/cb").unwrap()],
        post_logout_redirect_uris: vec![RedirectUri::parse("https://app.example/bye").unwrap()],
        grant_types: default_grants(ClientType::Confidential),
        client_app_type: ClientAppType::Browser,
        secret_hash: Some("00ff".into()),
        app_roles: vec!["Directory.ReadWrite.All".into()],
        created_at: T0,
    }
}

fn grant(client_id: &str, user_id: Option<Uuid>) -> Grant {
    Grant {
        id: Uuid::new_v4(),
        client_id: client_id.into(),
        user_id,
        scopes: vec!["openid".into(), "offline_access".into()],
        auth_time: Some(T0),
        methods: vec!["password".into()],
        created_at: T0,
        revoked_at: None,
        not_after: None,
    }
}

fn code(hash: &str, grant_id: Uuid) -> AuthCode {
    AuthCode {
        code_hash: hash.into(),
        grant_id,
        client_id: "c1".into(),
        redirect_uri: "https://app.example/cb".into(),
        nonce: Some("n".into()),
        code_challenge: None,
        created_at: T0,
        expires_at: T0.plus_secs(60),
    }
}

/// Run every check against `store`, which must be empty and migrated.
pub async fn run(store: Arc<dyn Store>) {
    settings(&*store).await;
    settings_upsert(&*store).await;
    domains_and_users(&*store).await;
    groups(&*store).await;
    applications(&*store).await;
    transactions_and_sessions(&*store).await;
    codes_are_single_use(&*store).await;
    codes_race(store.clone()).await;
    refresh_rotation(&*store).await;
    refresh_race(store.clone()).await;
    logs(&*store).await;
    paging(&*store).await;
    directory_paging(&*store).await;
    signing_keys(&*store).await;
    purge(&*store).await;
    directory_sync(&*store).await;
    identity_providers(&*store).await;
    rollout_policies(store.clone()).await;
    staged_state(store.clone()).await;
    cutover_facts(&*store).await;
    rollout_members(&*store).await;
    agents(store.clone()).await;
    pta_queue(store.clone()).await;
    lockout(store.clone()).await;
    pta_purge(&*store).await;
    scrape_figures(&*store).await;
    grant_lifetime_cap(&*store).await;
    temporary_access_passes(store.clone()).await;
    passkeys(&*store).await;
    passkey_races(store.clone()).await;
    passkey_use(store.clone()).await;
    webauthn_challenges(store.clone()).await;
    totp_enrolments(store.clone()).await;
    passkeys_totp_cascade(&*store).await;
    standalone_audit(&*store).await;
    ca_policies(&*store).await;
    ca_policy_races(store.clone()).await;
    named_locations(store.clone()).await;
    sign_in_ca_results(&*store).await;
    break_glass_drills(&*store).await;
    campaigns(store.clone()).await;
    send_decisions(store.clone()).await;
    outbox_claims(store.clone()).await;
    outbox_leases(&*store).await;
    outbox_resend(&*store).await;
    outbox_deferral_and_bulk_resend(&*store).await;
    campaign_outbox_deletion(&*store).await;
    campaign_bulk_reads(&*store).await;
}

fn batch(
    server: &str,
    epoch: u64,
    id: &str,
    ops: Vec<cutover_core::sync::SyncOp>,
) -> SyncBatchWrite {
    let sealed_passwords = ops
        .iter()
        .map(|o| {
            matches!(o, cutover_core::sync::SyncOp::SetPasswordHash { .. })
                .then(|| "sealed".to_owned())
        })
        .collect();
    SyncBatchWrite {
        server: server.into(),
        epoch,
        batch_id: id.into(),
        ops,
        sealed_passwords,
        watermark: Some(format!("wm-{id}")),
        now: T0,
        audit: audit("syncExport", server),
    }
}

/// The export lease fences stale writers; batches apply atomically and idempotently.
async fn directory_sync(s: &dyn Store) {
    use cutover_core::sync::lease::FenceError;
    use cutover_core::sync::{GroupImage, SyncOp, UserImage};
    let d = Domain {
        name: DomainName::parse("sync.example").unwrap(),
        authentication: DomainAuthentication::Managed(Default::default()),
        created_at: T0,
    };
    s.create_domain(&d, &audit("createDomain", "sync.example"))
        .await
        .unwrap();
    for name in ["a", "b"] {
        s.register_sync_server(&SyncServerRegistration {
            name: name.into(),
            client_id: format!("app-{name}"),
            host: "h".into(),
            version: "1".into(),
            staging: name == "b",
            now: T0,
        })
        .await
        .unwrap();
    }
    assert_eq!(s.sync_lease().await.unwrap().holder, None);
    let hijack = s
        .register_sync_server(&SyncServerRegistration {
            name: "a".into(),
            client_id: "app-b".into(),
            host: "h".into(),
            version: "1".into(),
            staging: false,
            now: T0,
        })
        .await;
    assert!(matches!(hijack, Err(StoreError::Conflict(_))), "{hijack:?}");
    let lease = s
        .take_sync_lease("a", false, &audit("lease", "a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lease.epoch, lease.holder.as_deref()), (1, Some("a")));
    assert_eq!(
        s.take_sync_lease("b", false, &audit("lease", "b"))
            .await
            .unwrap(),
        Err(FenceError::NotHolder { holder: "a".into() })
    );
    let user = |anchor: &str, upn: &str| {
        SyncOp::UpsertUser(UserImage {
            anchor: anchor.into(),
            user_principal_name: upn.into(),
            display_name: upn.into(),
            mail: None,
            department: None,
            account_enabled: true,
        })
    };
    let ops = vec![
        user("u1", "one@sync.example"),
        user("u2", "two@sync.example"),
        user("u3", "three@unknown.example"),
        SyncOp::UpsertGroup(GroupImage {
            anchor: "g1".into(),
            display_name: "G".into(),
            description: None,
        }),
        SyncOp::SetManager {
            anchor: "u2".into(),
            manager_anchor: Some("u1".into()),
        },
        SyncOp::SetMembers {
            anchor: "g1".into(),
            member_anchors: vec!["u1".into(), "u2".into(), "ghost".into()],
        },
    ];
    let SyncBatchOutcome::Applied(r) = s
        .apply_sync_batch(&batch("a", 1, "b1", ops.clone()))
        .await
        .unwrap()
    else {
        panic!("the holder's batch applies");
    };
    assert_eq!(r.added, 3);
    assert_eq!(
        r.rejected.len(),
        2,
        "unknown domain and the ghost member: {r:?}"
    );
    assert_eq!(
        s.apply_sync_batch(&batch("a", 1, "b1", ops.clone()))
            .await
            .unwrap(),
        SyncBatchOutcome::Duplicate(r.clone()),
        "a retried batch id is answered from the first application"
    );
    let users = s.synced_users("", 10).await.unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[1].manager_anchor.as_deref(), Some("u1"));
    let groups = s.synced_groups("", 10).await.unwrap();
    assert_eq!(groups[0].member_anchors.len(), 2);
    assert_eq!(
        s.get_sync_server("a")
            .await
            .unwrap()
            .unwrap()
            .watermark
            .as_deref(),
        Some("wm-b1")
    );
    // Promote b: a's next batch is refused and writes nothing.
    let lease = s
        .take_sync_lease("b", true, &audit("promote", "b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.epoch, 2);
    let refused = s
        .apply_sync_batch(&batch(
            "a",
            1,
            "b2",
            vec![SyncOp::DeleteUser {
                anchor: "u1".into(),
            }],
        ))
        .await
        .unwrap();
    assert_eq!(
        refused,
        SyncBatchOutcome::Fenced(FenceError::NotHolder { holder: "b".into() })
    );
    assert_eq!(s.synced_users("", 10).await.unwrap().len(), 2);
    assert_eq!(
        s.get_sync_server("a")
            .await
            .unwrap()
            .unwrap()
            .watermark
            .as_deref(),
        Some("wm-b1")
    );
    let stale = s
        .apply_sync_batch(&batch("b", 1, "b3", vec![]))
        .await
        .unwrap();
    assert_eq!(
        stale,
        SyncBatchOutcome::Fenced(FenceError::StaleEpoch {
            presented: 1,
            current: 2
        })
    );
    // b deletes; passwords are stored sealed.
    let SyncBatchOutcome::Applied(r) = s
        .apply_sync_batch(&batch(
            "b",
            2,
            "b4",
            vec![
                SyncOp::ClearPasswordHash {
                    anchor: "u2".into(),
                },
                SyncOp::DeleteGroup {
                    anchor: "g1".into(),
                },
                SyncOp::DeleteUser {
                    anchor: "u1".into(),
                },
            ],
        ))
        .await
        .unwrap()
    else {
        panic!("b holds the lease");
    };
    assert_eq!((r.deleted, r.passwords), (2, 1));
    let left = s.synced_users("", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].manager_anchor, None,
        "the deleted manager's link is cleared"
    );
    // Re-created on-prem: the old anchor is deleted and a new one takes its UPN in one batch.
    let SyncBatchOutcome::Applied(r) = s
        .apply_sync_batch(&batch(
            "b",
            2,
            "b5",
            vec![
                SyncOp::DeleteUser {
                    anchor: "u2".into(),
                },
                user("u2-new", "two@sync.example"),
            ],
        ))
        .await
        .unwrap()
    else {
        panic!("b holds the lease");
    };
    assert_eq!((r.deleted, r.added, r.rejected.len()), (1, 1, 0), "{r:?}");
    let left = s.synced_users("", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].image.anchor, "u2-new");
    // A demoted lease is not taken back by a plain registration, only by a promote.
    s.release_sync_lease("b", &audit("demote", "b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.take_sync_lease("a", false, &audit("lease", "a"))
            .await
            .unwrap(),
        Err(FenceError::NoHolder)
    );
    assert!(
        s.take_sync_lease("a", true, &audit("promote", "a"))
            .await
            .unwrap()
            .is_ok()
    );
    s.put_sync_report(
        "a",
        &serde_json::json!({"r": 1}),
        &serde_json::json!({"changes": []}),
        Some("alert"),
        T0,
    )
    .await
    .unwrap();
    let a = s.get_sync_server("a").await.unwrap().unwrap();
    assert_eq!(a.alert.as_deref(), Some("alert"));
    assert_eq!(s.list_sync_servers().await.unwrap().len(), 2);
}

async fn settings(s: &dyn Store) {
    assert_eq!(
        s.get_setting("k").await.unwrap(),
        None,
        "missing setting reads as None"
    );
    assert_eq!(s.init_setting("k", "first").await.unwrap(), "first");
    assert_eq!(
        s.init_setting("k", "second").await.unwrap(),
        "first",
        "init_setting never overwrites"
    );
    s.ping().await.unwrap();
}

async fn domains_and_users(s: &dyn Store) {
    let d = Domain {
        name: DomainName::parse("contoso.example").unwrap(),
        authentication: DomainAuthentication::Managed(Default::default()),
        created_at: T0,
    };
    s.create_domain(&d, &audit("createDomain", "contoso.example"))
        .await
        .unwrap();
    assert!(
        matches!(
            s.create_domain(&d, &audit("createDomain", "dup")).await,
            Err(StoreError::Conflict(_))
        ),
        "duplicate domain is a conflict"
    );
    let fed = Domain {
        name: DomainName::parse("corp.example").unwrap(),
        authentication: DomainAuthentication::Federated(FederationConfig {
            identity_provider_id: Some(Uuid::nil()),
        }),
        created_at: T0,
    };
    s.create_domain(&fed, &audit("createDomain", "corp.example"))
        .await
        .unwrap();
    assert_eq!(
        s.get_domain("corp.example").await.unwrap(),
        Some(fed.clone()),
        "federation config round-trips"
    );
    assert_eq!(s.list_domains().await.unwrap().len(), 2);

    let u1 = user("Alice@contoso.example");
    s.create_user(&u1, &audit("createUser", "alice"))
        .await
        .unwrap();
    let dup = user("alice@CONTOSO.example");
    assert!(
        matches!(
            s.create_user(&dup, &audit("createUser", "dup")).await,
            Err(StoreError::Conflict(_))
        ),
        "UPNs are unique case-insensitively"
    );
    let stray = user("bob@nowhere.example");
    assert!(
        matches!(
            s.create_user(&stray, &audit("createUser", "stray")).await,
            Err(StoreError::Conflict(_))
        ),
        "a user's domain must exist"
    );
    let got = s
        .get_user_by_upn("alice@contoso.example")
        .await
        .unwrap()
        .expect("lookup by normalised upn");
    assert_eq!(got, u1);
    assert_eq!(s.get_user(u1.user.id).await.unwrap(), Some(u1.clone()));
    assert_eq!(s.get_user(Uuid::new_v4()).await.unwrap(), None);

    let u2 = user("bob@contoso.example");
    s.create_user(&u2, &audit("createUser", "bob"))
        .await
        .unwrap();
    let all = s
        .list_users(&UserFilter {
            after_upn: None,
            upn_prefix: None,
            top: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|u| u.upn.as_str()).collect::<Vec<_>>(),
        vec!["Alice@contoso.example", "bob@contoso.example"]
    );
    let b = s
        .list_users(&UserFilter {
            after_upn: None,
            upn_prefix: Some("BO".into()),
            top: 10,
        })
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "prefix filter is case-insensitive");
    let one = s
        .list_users(&UserFilter {
            after_upn: None,
            upn_prefix: None,
            top: 1,
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1, "top bounds the list");
    let pct = s
        .list_users(&UserFilter {
            after_upn: None,
            upn_prefix: Some("%".into()),
            top: 10,
        })
        .await
        .unwrap();
    assert!(
        pct.is_empty(),
        "a prefix is matched literally, not as a pattern"
    );

    let mut changed = u2.user.clone();
    changed.display_name = "Bob B".into();
    changed.account_enabled = false;
    changed.manager_id = Some(u1.user.id);
    changed.updated_at = T0.plus_secs(5);
    s.update_user(&changed, None, &audit("updateUser", "bob"))
        .await
        .unwrap();
    let after = s.get_user(u2.user.id).await.unwrap().unwrap();
    assert_eq!(after.user, changed);
    assert_eq!(
        after.password_hash, u2.password_hash,
        "update without a hash keeps the hash"
    );
    s.update_user(
        &changed,
        Some("$argon2id$new"),
        &audit("resetPassword", "bob"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_user(u2.user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("$argon2id$new")
    );
    let mut ghost = changed.clone();
    ghost.id = Uuid::new_v4();
    assert!(matches!(
        s.update_user(&ghost, None, &audit("updateUser", "ghost"))
            .await,
        Err(StoreError::NotFound)
    ));

    assert!(
        matches!(
            s.delete_domain("contoso.example", &audit("deleteDomain", "contoso"))
                .await,
            Err(StoreError::Conflict(_))
        ),
        "a domain with users cannot be deleted"
    );
    assert!(matches!(
        s.delete_domain("none.example", &audit("deleteDomain", "none"))
            .await,
        Err(StoreError::NotFound)
    ));

    // Audit rows exist for each successful change and none for refused ones.
    let audits = s
        .list_audit_events(&AuditFilter {
            top: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    for refused in ["dup", "stray", "ghost", "contoso", "none"] {
        assert!(
            !audits.iter().any(|a| a.target_id == refused),
            "no audit row for refused change {refused}"
        );
    }
    for done in ["contoso.example", "corp.example", "alice", "bob"] {
        assert!(
            audits.iter().any(|a| a.target_id == done),
            "audit row for {done}"
        );
    }
    let bob_audits = s
        .list_audit_events(&AuditFilter {
            target_id: Some("bob".into()),
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob_audits.len(), 3);
    assert_eq!(
        bob_audits[0].after,
        Some(serde_json::json!({"target": "bob"}))
    );
}

async fn groups(s: &dyn Store) {
    let alice = s
        .get_user_by_upn("alice@contoso.example")
        .await
        .unwrap()
        .unwrap()
        .user;
    let g = Group {
        id: Uuid::new_v4(),
        display_name: "Pilot".into(),
        description: Some("first wave".into()),
        source: Source::Cloud,
        immutable_id: None,
        membership_kind: MembershipKind::Assigned,
        created_at: T0,
    };
    s.create_group(&g, &audit("createGroup", "pilot"))
        .await
        .unwrap();
    assert_eq!(s.get_group(g.id).await.unwrap(), Some(g.clone()));
    let inner = Group {
        id: Uuid::new_v4(),
        display_name: "Inner".into(),
        ..g.clone()
    };
    s.create_group(&inner, &audit("createGroup", "inner"))
        .await
        .unwrap();

    let m_user = MemberRef {
        kind: MemberKind::User,
        id: alice.id,
    };
    let m_group = MemberRef {
        kind: MemberKind::Group,
        id: inner.id,
    };
    let m_contact = MemberRef {
        kind: MemberKind::Contact,
        id: Uuid::new_v4(),
    };
    for m in [m_user, m_group, m_contact] {
        s.add_group_member(g.id, m, T0, &audit("addGroupMember", "pilot"))
            .await
            .unwrap();
    }
    assert!(
        matches!(
            s.add_group_member(g.id, m_user, T0, &audit("addGroupMember", "again"))
                .await,
            Err(StoreError::Conflict(_))
        ),
        "adding a member twice is a conflict"
    );
    assert!(
        matches!(
            s.add_group_member(
                Uuid::new_v4(),
                m_user,
                T0,
                &audit("addGroupMember", "nogroup")
            )
            .await,
            Err(StoreError::NotFound)
        ),
        "adding to a missing group is not found"
    );
    let mut members = s.list_group_members(g.id, 100, None).await.unwrap();
    members.sort();
    let mut want = vec![m_user, m_group, m_contact];
    want.sort();
    assert_eq!(members, want, "users, groups and contacts are all members");
    assert_eq!(s.groups_of_member(alice.id).await.unwrap(), vec![g.id]);

    s.remove_group_member(g.id, m_contact, &audit("removeGroupMember", "pilot"))
        .await
        .unwrap();
    assert!(matches!(
        s.remove_group_member(g.id, m_contact, &audit("removeGroupMember", "x"))
            .await,
        Err(StoreError::NotFound)
    ));
    s.delete_group(inner.id, &audit("deleteGroup", "inner"))
        .await
        .unwrap();
    assert_eq!(
        s.list_group_members(g.id, 100, None).await.unwrap(),
        vec![m_user],
        "deleting a group removes its memberships elsewhere"
    );
    assert!(matches!(
        s.delete_group(inner.id, &audit("deleteGroup", "inner2"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_groups(10, None).await.unwrap().len(), 1);

    // Deleting a user removes their memberships and sessions and revokes their grants.
    let carol = user("carol@contoso.example");
    s.create_user(&carol, &audit("createUser", "carol"))
        .await
        .unwrap();
    s.add_group_member(
        g.id,
        MemberRef {
            kind: MemberKind::User,
            id: carol.user.id,
        },
        T0,
        &audit("addGroupMember", "pilot"),
    )
    .await
    .unwrap();
    let gr = grant("c1", Some(carol.user.id));
    s.create_grant(&gr).await.unwrap();
    s.create_session(&SsoSession {
        id_hash: "carol-s".into(),
        user_id: carol.user.id,
        auth_time: T0,
        methods: vec!["password".into()],
        created_at: T0,
        expires_at: T0.plus_secs(100),
    })
    .await
    .unwrap();
    s.delete_user(carol.user.id, &audit("deleteUser", "carol"))
        .await
        .unwrap();
    assert_eq!(
        s.groups_of_member(carol.user.id).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(s.get_session("carol-s", T0).await.unwrap(), None);
    assert!(
        s.get_grant(gr.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert!(matches!(
        s.delete_user(carol.user.id, &audit("deleteUser", "carol2"))
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn applications(s: &dyn Store) {
    let a = app("c1");
    s.create_application(&a, &audit("createApplication", "c1"))
        .await
        .unwrap();
    assert!(matches!(
        s.create_application(&app("c1"), &audit("createApplication", "c1dup"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.get_application(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.get_application_by_client_id("c1").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.get_application_by_client_id("C1").await.unwrap(),
        None,
        "client ids are exact"
    );
    let b = app("c2");
    s.create_application(&b, &audit("createApplication", "c2"))
        .await
        .unwrap();
    let g = grant("c2", None);
    s.create_grant(&g).await.unwrap();
    s.delete_application(b.id, &audit("deleteApplication", "c2"))
        .await
        .unwrap();
    assert!(
        s.get_grant(g.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "deleting an app revokes its grants"
    );
    assert_eq!(s.list_applications(10).await.unwrap(), vec![a]);
    assert!(matches!(
        s.delete_application(b.id, &audit("deleteApplication", "c2b"))
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn transactions_and_sessions(s: &dyn Store) {
    let t = SignInTransaction {
        id: "txn1".into(),
        data: serde_json::json!({"step": 1}),
        created_at: T0,
        expires_at: T0.plus_secs(10),
    };
    s.create_sign_in_transaction(&t).await.unwrap();
    assert_eq!(
        s.get_sign_in_transaction("txn1", T0).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        s.get_sign_in_transaction("txn1", T0.plus_secs(10))
            .await
            .unwrap(),
        None,
        "expired exactly at expires_at"
    );
    s.update_sign_in_transaction("txn1", &serde_json::json!({"step": 2}))
        .await
        .unwrap();
    assert_eq!(
        s.get_sign_in_transaction("txn1", T0)
            .await
            .unwrap()
            .unwrap()
            .data["step"],
        2
    );
    assert!(matches!(
        s.update_sign_in_transaction("nope", &serde_json::json!({}))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        s.delete_sign_in_transaction("txn1").await.unwrap(),
        "the first delete consumes it"
    );
    assert!(
        !s.delete_sign_in_transaction("txn1").await.unwrap(),
        "a second delete finds nothing"
    );
    assert_eq!(s.get_sign_in_transaction("txn1", T0).await.unwrap(), None);

    let alice = s
        .get_user_by_upn("alice@contoso.example")
        .await
        .unwrap()
        .unwrap()
        .user;
    let sess = SsoSession {
        id_hash: "h1".into(),
        user_id: alice.id,
        auth_time: T0,
        methods: vec!["password".into()],
        created_at: T0,
        expires_at: T0.plus_secs(60),
    };
    s.create_session(&sess).await.unwrap();
    assert_eq!(
        s.get_session("h1", T0.plus_secs(59)).await.unwrap(),
        Some(sess)
    );
    assert_eq!(s.get_session("h1", T0.plus_secs(60)).await.unwrap(), None);
    s.delete_session("h1").await.unwrap();
    assert_eq!(s.get_session("h1", T0).await.unwrap(), None);
}

async fn codes_are_single_use(s: &dyn Store) {
    let g = grant("c1", None);
    s.create_grant_with_code(&g, &code("code-a", g.id))
        .await
        .unwrap();
    match s.redeem_code("code-a", T0.plus_secs(1)).await.unwrap() {
        CodeRedemption::Redeemed(c) => {
            assert_eq!((c.grant_id, c.nonce.as_deref()), (g.id, Some("n")))
        }
        other => panic!("first redemption must succeed, got {other:?}"),
    }
    assert_eq!(
        s.redeem_code("code-a", T0.plus_secs(2)).await.unwrap(),
        CodeRedemption::Replayed { grant_id: g.id }
    );
    assert!(
        s.get_grant(g.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "a replayed code revokes its grant"
    );
    assert_eq!(
        s.redeem_code("never-issued", T0).await.unwrap(),
        CodeRedemption::NotFound
    );

    let g2 = grant("c1", None);
    s.create_grant_with_code(&g2, &code("code-b", g2.id))
        .await
        .unwrap();
    assert_eq!(
        s.redeem_code("code-b", T0.plus_secs(60)).await.unwrap(),
        CodeRedemption::NotFound,
        "expired code is refused"
    );
    assert!(
        s.get_grant(g2.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none(),
        "an expired code does not revoke"
    );
}

async fn codes_race(s: Arc<dyn Store>) {
    let g = grant("c1", None);
    s.create_grant_with_code(&g, &code("code-race", g.id))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.redeem_code("code-race", T0.plus_secs(1)).await
        }));
    }
    let mut redeemed = 0;
    for t in tasks {
        if let Ok(CodeRedemption::Redeemed(_)) = t.await.expect("task") {
            redeemed += 1;
        }
    }
    assert_eq!(
        redeemed, 1,
        "exactly one of eight concurrent redemptions wins"
    );
}

async fn refresh_rotation(s: &dyn Store) {
    let g = grant("c1", None);
    s.create_grant(&g).await.unwrap();
    s.insert_refresh_token("r1", g.id, T0, T0.plus_secs(100))
        .await
        .unwrap();
    match s
        .rotate_refresh_token("r1", "r2", T0.plus_secs(1), T0.plus_secs(200))
        .await
        .unwrap()
    {
        RefreshRotation::Rotated(got) => assert_eq!(got.id, g.id),
        other => panic!("rotation must succeed, got {other:?}"),
    }
    match s
        .rotate_refresh_token("r2", "r3", T0.plus_secs(2), T0.plus_secs(200))
        .await
        .unwrap()
    {
        RefreshRotation::Rotated(_) => {}
        other => panic!("the new token rotates, got {other:?}"),
    }
    assert_eq!(
        s.rotate_refresh_token("r1", "r4", T0.plus_secs(3), T0.plus_secs(200))
            .await
            .unwrap(),
        RefreshRotation::Replayed { grant_id: g.id },
        "replaying a rotated token is detected"
    );
    assert_eq!(
        s.rotate_refresh_token("r3", "r5", T0.plus_secs(4), T0.plus_secs(200))
            .await
            .unwrap(),
        RefreshRotation::Revoked,
        "after a replay the whole grant is revoked"
    );
    assert_eq!(
        s.rotate_refresh_token("zz", "r6", T0, T0).await.unwrap(),
        RefreshRotation::NotFound
    );

    let g2 = grant("c1", None);
    s.create_grant(&g2).await.unwrap();
    s.insert_refresh_token("x1", g2.id, T0, T0.plus_secs(10))
        .await
        .unwrap();
    assert_eq!(
        s.rotate_refresh_token("x1", "x2", T0.plus_secs(10), T0.plus_secs(20))
            .await
            .unwrap(),
        RefreshRotation::Expired
    );
    assert!(
        matches!(
            s.rotate_refresh_token("x1", "x2", T0.plus_secs(9), T0.plus_secs(20))
                .await
                .unwrap(),
            RefreshRotation::Rotated(_)
        ),
        "an expired rotation attempt leaves the token usable before its expiry (rolled back)"
    );
}

async fn refresh_race(s: Arc<dyn Store>) {
    let g = grant("c1", None);
    s.create_grant(&g).await.unwrap();
    s.insert_refresh_token("race", g.id, T0, T0.plus_secs(100))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.rotate_refresh_token(
                "race",
                &format!("race-{i}"),
                T0.plus_secs(1),
                T0.plus_secs(100),
            )
            .await
        }));
    }
    let mut rotated = 0;
    for t in tasks {
        if let Ok(RefreshRotation::Rotated(_)) = t.await.expect("task") {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent rotation wins");
}

fn record(upn: &str, user_id: Option<Uuid>, result: SignInResult, at: i64) -> SignInRecord {
    SignInRecord {
        id: Uuid::new_v4(),
        created_at: T0.plus_secs(at),
        correlation_id: Uuid::new_v4(),
        user_id,
        user_principal_name: Some(upn.into()),
        app_id: None,
        client_id: Some("c1".into()),
        ip_address: Some("127.0.0.1".into()),
        user_agent: None,
        client_app_type: Some(ClientAppType::Browser),
        device_platform: None,
        device_family: None,
        is_interactive: true,
        route: Some("managed".into()),
        route_reason: Some("managedDomain".into()),
        authentication_methods: vec!["password".into()],
        staged_rollout_feature: None,
        staged_rollout: None,
        agent_id: None,
        conditional_access: vec![],
        lockout_decision: LockoutDecision::NotEvaluated,
        result,
        failure_reason: (result == SignInResult::Failure).then(|| "invalidPassword".into()),
    }
}

async fn logs(s: &dyn Store) {
    let uid = Uuid::new_v4();
    let a = record("Dave@contoso.example", Some(uid), SignInResult::Success, 10);
    let b = record("dave@contoso.example", Some(uid), SignInResult::Failure, 20);
    let c = record("erin@contoso.example", None, SignInResult::Failure, 30);
    for r in [&a, &b, &c] {
        s.insert_sign_in(r).await.unwrap();
    }
    let all = s
        .list_sign_ins(&SignInFilter {
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![c.clone(), b.clone(), a.clone()],
        "newest first, records round-trip"
    );
    let by_upn = s
        .list_sign_ins(&SignInFilter {
            user_principal_name: Some("DAVE@contoso.example".into()),
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_upn.len(), 2, "upn filter is case-insensitive");
    let failures = s
        .list_sign_ins(&SignInFilter {
            result: Some("failure".into()),
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failures, vec![c.clone(), b.clone()]);
    let window = s
        .list_sign_ins(&SignInFilter {
            since: Some(T0.plus_secs(15)),
            until: Some(T0.plus_secs(30)),
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        window,
        vec![b.clone()],
        "since is inclusive, until exclusive"
    );
    let by_user = s
        .list_sign_ins(&SignInFilter {
            user_id: Some(uid),
            top: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_user, vec![b]);
    let other_app = s
        .list_sign_ins(&SignInFilter {
            client_id: Some("zz".into()),
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(other_app.is_empty());
}

async fn paging(s: &dyn Store) {
    // Seven records, three of them at the same millisecond: keyset paging must return each
    // exactly once, newest first, whatever the page size.
    let uid = Uuid::new_v4();
    for at in [100, 101, 101, 101, 102, 103, 104] {
        s.insert_sign_in(&record(
            "pager@contoso.example",
            Some(uid),
            SignInResult::Success,
            at,
        ))
        .await
        .unwrap();
    }
    let all = s
        .list_sign_ins(&SignInFilter {
            user_id: Some(uid),
            top: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    for page_size in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let page = s
                .list_sign_ins(&SignInFilter {
                    user_id: Some(uid),
                    older_than: cursor,
                    top: page_size,
                    ..Default::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(Cursor {
                created_at: last.created_at,
                id: last.id,
            });
            seen.extend(page);
        }
        assert_eq!(
            seen, all,
            "page size {page_size} walks the whole log once, in order"
        );
    }
    let audits = s
        .list_audit_events(&AuditFilter {
            top: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list_audit_events(&AuditFilter {
                older_than: cursor,
                top: 4,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some(Cursor {
            created_at: last.created_at,
            id: last.id,
        });
        seen.extend(page);
    }
    assert_eq!(
        seen, audits,
        "audit paging walks the whole log once, in order"
    );
    let c = Cursor {
        created_at: Timestamp(5),
        id: Uuid::nil(),
    };
    assert_eq!(Cursor::decode(&c.encode()), Some(c));
    assert_eq!(Cursor::decode("x.y"), None);
}

async fn directory_paging(s: &dyn Store) {
    for i in 0..5 {
        s.create_user(
            &user(&format!("page{i}@contoso.example")),
            &audit("createUser", "pager"),
        )
        .await
        .unwrap();
    }
    let all = s
        .list_users(&UserFilter {
            upn_prefix: Some("page".into()),
            after_upn: None,
            top: 100,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_users(&UserFilter {
                upn_prefix: Some("page".into()),
                after_upn: after.clone(),
                top: 2,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.upn.normalized());
        seen.extend(page);
    }
    assert_eq!(seen, all, "user paging walks every user once, in order");

    // Groups with equal names are told apart by id.
    for _ in 0..3 {
        let g = Group {
            id: Uuid::new_v4(),
            display_name: "Same name".into(),
            description: None,
            source: Source::Cloud,
            immutable_id: None,
            membership_kind: MembershipKind::Assigned,
            created_at: T0,
        };
        s.create_group(&g, &audit("createGroup", "same"))
            .await
            .unwrap();
    }
    let groups = s.list_groups(100, None).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_groups(1, after.clone()).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.display_name.clone(), last.id));
        seen.extend(page);
    }
    assert_eq!(
        seen, groups,
        "group paging walks every group once, in order"
    );

    let holder = &groups[0];
    for _ in 0..4 {
        let m = MemberRef {
            kind: MemberKind::Contact,
            id: Uuid::new_v4(),
        };
        s.add_group_member(holder.id, m, T0, &audit("addGroupMember", "pager"))
            .await
            .unwrap();
    }
    let members = s.list_group_members(holder.id, 100, None).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_group_members(holder.id, 3, after).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(*last);
        seen.extend(page);
    }
    assert_eq!(
        seen, members,
        "member paging walks every member once, in order"
    );
}

async fn signing_keys(s: &dyn Store) {
    let k = |kid: &str, at: i64| SigningKey {
        kid: kid.into(),
        algorithm: "ES256".into(),
        private_key: "cHJpdmF0ZQ".into(),
        public_jwk: "{}".into(),
        created_at: T0.plus_secs(at),
        retired_at: None,
    };
    s.insert_signing_key(&k("k1", 0)).await.unwrap();
    assert_eq!(
        s.rotate_signing_key(&k("k2", 20), &audit("rotateSigningKey", "k2"))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        s.rotate_signing_key(&k("k2", 30), &audit("rotateSigningKey", "k2dup"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let keys = s.list_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| (k.kid.as_str(), k.retired_at))
            .collect::<Vec<_>>(),
        vec![("k2", None), ("k1", Some(T0.plus_secs(20)))]
    );
    let audits = s
        .list_audit_events(&AuditFilter {
            action: Some("rotateSigningKey".into()),
            top: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audits.len(), 1, "a refused rotation leaves no audit row");
    assert!(
        !format!("{:?}", keys[0]).contains("cHJpdmF0ZQ"),
        "Debug hides the private key"
    );
}

async fn purge(s: &dyn Store) {
    let alice = s
        .get_user_by_upn("alice@contoso.example")
        .await
        .unwrap()
        .unwrap()
        .user;
    s.create_session(&SsoSession {
        id_hash: "old".into(),
        user_id: alice.id,
        auth_time: T0,
        methods: vec![],
        created_at: T0,
        expires_at: T0.plus_secs(1),
    })
    .await
    .unwrap();
    s.create_session(&SsoSession {
        id_hash: "live".into(),
        user_id: alice.id,
        auth_time: T0,
        methods: vec![],
        created_at: T0,
        expires_at: T0.plus_secs(10_000),
    })
    .await
    .unwrap();
    let removed = s.purge_expired(T0.plus_secs(5_000)).await.unwrap();
    assert!(removed >= 1, "expired rows are purged");
    assert!(
        s.get_session("live", T0).await.unwrap().is_some(),
        "live sessions survive a purge"
    );
}

// Federation, staged rollout and the domain cut-over facts (SPEC §2–4).

fn identity_provider(name: &str) -> IdentityProvider {
    IdentityProvider {
        id: Uuid::new_v4(),
        display_name: format!("IdP {name}"),
        issuer: format!("https://{name}.idp.example"),
        client_id: format!("cutover-{name}"),
        client_secret_sealed: format!("sealed-{name}"),
        scopes: vec!["profile".into(), "email".into()],
        immutable_id_claim: "objectGUID".into(),
        upn_fallback_claim: Some("upn".into()),
        created_at: T0,
        updated_at: T0,
    }
}

fn domain_with(name: &str, authentication: DomainAuthentication) -> Domain {
    Domain {
        name: DomainName::parse(name).unwrap(),
        authentication,
        created_at: T0,
    }
}

fn federated_to(idp: Uuid) -> DomainAuthentication {
    DomainAuthentication::Federated(FederationConfig {
        identity_provider_id: Some(idp),
    })
}

async fn audits_for(s: &dyn Store, target: &str) -> Vec<AuditEvent> {
    s.list_audit_events(&AuditFilter {
        target_id: Some(target.into()),
        top: 100,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Upstream identity providers, and domains federated to them or converted back.
async fn identity_providers(s: &dyn Store) {
    let a = identity_provider("a");
    s.create_identity_provider(&a, &audit("createIdentityProvider", "idp-a"))
        .await
        .unwrap();
    assert_eq!(
        s.get_identity_provider(a.id).await.unwrap(),
        Some(a.clone()),
        "an identity provider round-trips"
    );
    assert!(
        matches!(
            s.create_identity_provider(&a, &audit("createIdentityProvider", "idp-a-dup"))
                .await,
            Err(StoreError::Conflict(_))
        ),
        "an id is registered once"
    );
    assert!(audits_for(s, "idp-a-dup").await.is_empty());
    let b = IdentityProvider {
        scopes: vec![],
        upn_fallback_claim: None,
        ..identity_provider("b")
    };
    s.create_identity_provider(&b, &audit("createIdentityProvider", "idp-b"))
        .await
        .unwrap();
    assert_eq!(s.get_identity_provider(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        s.list_identity_providers().await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    let changed = IdentityProvider {
        display_name: "IdP a (renamed)".into(),
        issuer: "https://new.idp.example".into(),
        client_id: "cutover-a2".into(),
        client_secret_sealed: "sealed-a2".into(),
        scopes: vec!["offline_access".into()],
        immutable_id_claim: "sub".into(),
        upn_fallback_claim: None,
        created_at: T0.plus_secs(999),
        updated_at: T0.plus_secs(10),
        ..a.clone()
    };
    s.update_identity_provider(&changed, &audit("updateIdentityProvider", "idp-a"))
        .await
        .unwrap();
    let a = IdentityProvider {
        created_at: T0,
        ..changed
    };
    assert_eq!(
        s.get_identity_provider(a.id).await.unwrap(),
        Some(a.clone()),
        "an update replaces every field but id and created_at"
    );
    let ghost = identity_provider("ghost");
    assert!(matches!(
        s.update_identity_provider(&ghost, &audit("updateIdentityProvider", "idp-ghost"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_identity_provider(ghost.id, &audit("deleteIdentityProvider", "idp-ghost"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "idp-ghost").await.is_empty());

    // Federated domains keep their IdP; a managed domain's previous IdP does not.
    for (name, auth) in [
        ("fb.example", federated_to(a.id)),
        ("fa.example", federated_to(a.id)),
        (
            "fm.example",
            DomainAuthentication::Managed(ManagedConfig {
                password_validation: PasswordValidation::PasswordHashSync,
                previous_identity_provider_id: Some(a.id),
            }),
        ),
    ] {
        s.create_domain(&domain_with(name, auth), &audit("createDomain", name))
            .await
            .unwrap();
    }
    let in_use = s
        .delete_identity_provider(a.id, &audit("deleteIdentityProvider", "idp-a-del1"))
        .await;
    match in_use {
        Err(StoreError::Conflict(msg)) => assert_eq!(
            msg,
            "identity provider is in use by federated domain(s): fa.example, fb.example"
        ),
        other => panic!("an IdP in use cannot be deleted, got {other:?}"),
    }
    assert!(s.get_identity_provider(a.id).await.unwrap().is_some());
    assert!(audits_for(s, "idp-a-del1").await.is_empty());

    // The cut-over of fa.example: managed, pass-through, remembering its IdP.
    let cut = DomainAuthentication::Managed(ManagedConfig {
        password_validation: PasswordValidation::PassthroughAuthentication,
        previous_identity_provider_id: Some(a.id),
    });
    s.set_domain_authentication("fa.example", &cut, &audit("convertDomain", "fa-cutover"))
        .await
        .unwrap();
    assert_eq!(
        s.get_domain("fa.example")
            .await
            .unwrap()
            .unwrap()
            .authentication,
        cut,
        "managed settings round-trip"
    );
    assert_eq!(audits_for(s, "fa-cutover").await.len(), 1);
    match s
        .delete_identity_provider(a.id, &audit("deleteIdentityProvider", "idp-a-del2"))
        .await
    {
        Err(StoreError::Conflict(msg)) => assert!(msg.ends_with(": fb.example"), "{msg}"),
        other => panic!("fb.example still uses the IdP, got {other:?}"),
    }
    s.set_domain_authentication(
        "fb.example",
        &federated_to(b.id),
        &audit("setDomainFederation", "fb-to-b"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_domain("fb.example")
            .await
            .unwrap()
            .unwrap()
            .authentication,
        federated_to(b.id),
        "federation settings round-trip"
    );
    s.delete_identity_provider(a.id, &audit("deleteIdentityProvider", "idp-a-del3"))
        .await
        .unwrap();
    assert_eq!(s.get_identity_provider(a.id).await.unwrap(), None);
    assert_eq!(s.list_identity_providers().await.unwrap(), vec![b.clone()]);
    assert_eq!(audits_for(s, "idp-a-del3").await.len(), 1);

    // A domain cannot be federated to an IdP that does not exist (any more).
    assert!(matches!(
        s.set_domain_authentication(
            "fa.example",
            &federated_to(a.id),
            &audit("convertDomain", "fa-to-deleted")
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_domain("fa.example")
            .await
            .unwrap()
            .unwrap()
            .authentication,
        cut
    );
    assert!(audits_for(s, "fa-to-deleted").await.is_empty());
    assert!(matches!(
        s.set_domain_authentication(
            "nowhere.example",
            &federated_to(b.id),
            &audit("convertDomain", "nowhere")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "nowhere").await.is_empty());
    // The rollback: fa.example federated again.
    s.set_domain_authentication(
        "fa.example",
        &federated_to(b.id),
        &audit("convertDomain", "fa-rollback"),
    )
    .await
    .unwrap();
    assert!(
        s.get_domain("fa.example")
            .await
            .unwrap()
            .unwrap()
            .is_federated()
    );
    match s
        .delete_identity_provider(b.id, &audit("deleteIdentityProvider", "idp-b-del"))
        .await
    {
        Err(StoreError::Conflict(msg)) => {
            assert!(msg.ends_with(": fa.example, fb.example"), "{msg}")
        }
        other => panic!("b is in use, got {other:?}"),
    }
}

fn rollout(feature: RolloutFeature, enabled: bool) -> FeatureRolloutPolicy {
    FeatureRolloutPolicy {
        id: Uuid::new_v4(),
        display_name: format!("{feature} rollout"),
        description: Some("first wave".into()),
        feature,
        is_enabled: enabled,
        is_applied_to_organization: false,
        applies_to: vec![],
        created_at: T0,
        updated_at: T0,
    }
}

/// A new group with `n` fresh members of each given kind.
async fn group_with(s: &dyn Store, kind: MembershipKind, members: &[(MemberKind, usize)]) -> Uuid {
    let g = Group {
        id: Uuid::new_v4(),
        display_name: "Rollout wave".into(),
        description: None,
        source: Source::Cloud,
        immutable_id: None,
        membership_kind: kind,
        created_at: T0,
    };
    s.create_group(&g, &audit("createGroup", "rollout-group"))
        .await
        .unwrap();
    for (kind, n) in members {
        for _ in 0..*n {
            let m = MemberRef {
                kind: *kind,
                id: Uuid::new_v4(),
            };
            s.add_group_member(g.id, m, T0, &audit("addGroupMember", "rollout-group"))
                .await
                .unwrap();
        }
    }
    g.id
}

/// A rollout change the rules refused: it names `rule`, and wrote nothing (the policy as it
/// was, no audit row for `target`).
async fn assert_refused<T: std::fmt::Debug>(
    s: &dyn Store,
    got: StoreResult<Result<T, RuleViolation>>,
    rule: RolloutRule,
    unchanged: Option<&FeatureRolloutPolicy>,
    target: &str,
) {
    match got {
        Ok(Err(v)) => assert_eq!(v.rule, rule, "{target}: {v}"),
        other => panic!("{target}: expected {rule:?}, got {other:?}"),
    }
    if let Some(p) = unchanged {
        assert_eq!(
            s.get_rollout_policy(p.id).await.unwrap().as_ref(),
            Some(p),
            "{target}: a refused change writes nothing"
        );
    }
    assert!(
        audits_for(s, target).await.is_empty(),
        "{target}: no audit row for a refused change"
    );
}

/// Feature rollout policies: every rule is checked in the writing transaction.
async fn rollout_policies(store: Arc<dyn Store>) {
    use RolloutFeature::*;
    let s = &*store;
    let phs = rollout(PasswordHashSync, true);
    s.create_rollout_policy(&phs, &audit("createRolloutPolicy", "rp-phs"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.get_rollout_policy(phs.id).await.unwrap(),
        Some(phs.clone())
    );
    assert_eq!(audits_for(s, "rp-phs").await.len(), 1);
    let dup = rollout(PasswordHashSync, false);
    assert_refused(
        s,
        s.create_rollout_policy(&dup, &audit("createRolloutPolicy", "rp-dup"))
            .await,
        RolloutRule::OnePolicyPerFeature,
        None,
        "rp-dup",
    )
    .await;
    assert_eq!(s.get_rollout_policy(dup.id).await.unwrap(), None);
    let pta_on = rollout(PassthroughAuthentication, true);
    assert_refused(
        s,
        s.create_rollout_policy(&pta_on, &audit("createRolloutPolicy", "rp-pta-on"))
            .await,
        RolloutRule::PasswordHashSyncAndPassthroughExclusive,
        None,
        "rp-pta-on",
    )
    .await;
    assert_eq!(s.get_rollout_policy(pta_on.id).await.unwrap(), None);
    let pta = rollout(PassthroughAuthentication, false);
    s.create_rollout_policy(&pta, &audit("createRolloutPolicy", "rp-pta"))
        .await
        .unwrap()
        .unwrap();
    let enable_pta = FeatureRolloutPolicy {
        is_enabled: true,
        updated_at: T0.plus_secs(1),
        ..pta.clone()
    };
    assert_refused(
        s,
        s.update_rollout_policy(&enable_pta, &audit("updateRolloutPolicy", "rp-pta-enable"))
            .await,
        RolloutRule::PasswordHashSyncAndPassthroughExclusive,
        Some(&pta),
        "rp-pta-enable",
    )
    .await;
    let other_feature = FeatureRolloutPolicy {
        feature: MultiFactorAuthentication,
        ..pta.clone()
    };
    assert_refused(
        s,
        s.update_rollout_policy(&other_feature, &audit("updateRolloutPolicy", "rp-pta-mfa"))
            .await,
        RolloutRule::FeatureCannotChange,
        Some(&pta),
        "rp-pta-mfa",
    )
    .await;
    let whole_org = FeatureRolloutPolicy {
        is_applied_to_organization: true,
        ..pta.clone()
    };
    assert_refused(
        s,
        s.update_rollout_policy(&whole_org, &audit("updateRolloutPolicy", "rp-pta-org"))
            .await,
        RolloutRule::AppliedToOrganizationNotSupported,
        Some(&pta),
        "rp-pta-org",
    )
    .await;
    // An update replaces the names, flags and time, never the groups or the creation time.
    let renamed = FeatureRolloutPolicy {
        display_name: "PHS wave 2".into(),
        description: None,
        applies_to: vec![Uuid::new_v4()],
        created_at: T0.plus_secs(99),
        updated_at: T0.plus_secs(2),
        ..phs.clone()
    };
    let got = s
        .update_rollout_policy(&renamed, &audit("updateRolloutPolicy", "rp-phs-rename"))
        .await
        .unwrap()
        .unwrap();
    let phs = FeatureRolloutPolicy {
        applies_to: vec![],
        created_at: T0,
        ..renamed
    };
    assert_eq!(got, phs, "the update returns the stored policy");
    assert_eq!(
        s.get_rollout_policy(phs.id).await.unwrap(),
        Some(phs.clone())
    );
    assert_eq!(audits_for(s, "rp-phs-rename").await.len(), 1);
    let ghost = rollout(SeamlessSso, false);
    assert!(matches!(
        s.update_rollout_policy(&ghost, &audit("updateRolloutPolicy", "rp-ghost"))
            .await,
        Err(StoreError::NotFound)
    ));
    let mut listed = s.list_rollout_policies().await.unwrap();
    listed.sort_by_key(|p| p.id);
    let mut want = vec![phs.clone(), pta.clone()];
    want.sort_by_key(|p| p.id);
    assert_eq!(listed, want);

    // Group rules, on the PHS policy.
    use MemberKind::{Contact, Group as GroupMember, User as UserMember};
    let assigned = MembershipKind::Assigned;
    for (target, kind, members, rule) in [
        (
            "rg-nested",
            assigned,
            vec![(UserMember, 1), (GroupMember, 1)],
            RolloutRule::NestedGroupNotSupported,
        ),
        (
            "rg-contact",
            assigned,
            vec![(UserMember, 1), (Contact, 1)],
            RolloutRule::GroupContainsContact,
        ),
        (
            "rg-dynamic",
            MembershipKind::Dynamic,
            vec![(UserMember, 1)],
            RolloutRule::DynamicGroupNotSupported,
        ),
        (
            "rg-201",
            assigned,
            vec![(UserMember, 201)],
            RolloutRule::TooManyMembersOnFirstAdd,
        ),
    ] {
        let g = group_with(s, kind, &members).await;
        assert_refused(
            s,
            s.add_rollout_group(phs.id, g, T0, &audit("addRolloutGroup", target))
                .await,
            rule,
            Some(&phs),
            target,
        )
        .await;
    }
    let g200 = group_with(s, assigned, &[(UserMember, 200)]).await;
    let got = s
        .add_rollout_group(
            phs.id,
            g200,
            T0.plus_secs(3),
            &audit("addRolloutGroup", "rg-200"),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.applies_to,
        vec![g200],
        "200 members on the first add are fine"
    );
    assert_eq!(
        s.get_rollout_policy(phs.id).await.unwrap(),
        Some(got.clone())
    );
    assert_eq!(audits_for(s, "rg-200").await.len(), 1);
    assert_refused(
        s,
        s.add_rollout_group(phs.id, g200, T0, &audit("addRolloutGroup", "rg-200-again"))
            .await,
        RolloutRule::GroupAlreadyAdded,
        Some(&got),
        "rg-200-again",
    )
    .await;
    assert!(matches!(
        s.add_rollout_group(
            phs.id,
            Uuid::new_v4(),
            T0,
            &audit("addRolloutGroup", "rg-none")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.add_rollout_group(
            Uuid::new_v4(),
            g200,
            T0,
            &audit("addRolloutGroup", "rg-none")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "rg-none").await.is_empty());

    // At most ten groups per feature; groups come back in the order of their added time (here
    // each added a second *earlier* than the one before, so the newest add comes first).
    let mfa = rollout(MultiFactorAuthentication, false);
    s.create_rollout_policy(&mfa, &audit("createRolloutPolicy", "rp-mfa"))
        .await
        .unwrap()
        .unwrap();
    let mut order: Vec<Uuid> = Vec::new();
    for i in 0..10 {
        let g = group_with(s, assigned, &[(UserMember, 1)]).await;
        let p = s
            .add_rollout_group(
                mfa.id,
                g,
                T0.plus_secs(100 - i),
                &audit("addRolloutGroup", "rg-mfa"),
            )
            .await
            .unwrap()
            .unwrap();
        order.insert(0, g);
        assert_eq!(p.applies_to, order, "groups by the time they were added");
    }
    let mfa_full = s.get_rollout_policy(mfa.id).await.unwrap().unwrap();
    assert_eq!(mfa_full.applies_to.len(), 10, "the tenth group is accepted");
    let eleventh = group_with(s, assigned, &[(UserMember, 1)]).await;
    assert_refused(
        s,
        s.add_rollout_group(mfa.id, eleventh, T0, &audit("addRolloutGroup", "rg-mfa-11"))
            .await,
        RolloutRule::MaxGroupsPerFeature,
        Some(&mfa_full),
        "rg-mfa-11",
    )
    .await;
    let gone = order.remove(3);
    let p = s
        .remove_rollout_group(mfa.id, gone, T0, &audit("removeRolloutGroup", "rg-mfa-rm"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.applies_to, order);
    assert_eq!(audits_for(s, "rg-mfa-rm").await.len(), 1);
    assert_refused(
        s,
        s.remove_rollout_group(mfa.id, gone, T0, &audit("removeRolloutGroup", "rg-mfa-rm2"))
            .await,
        RolloutRule::GroupNotInPolicy,
        Some(&p),
        "rg-mfa-rm2",
    )
    .await;
    assert!(matches!(
        s.remove_rollout_group(
            Uuid::new_v4(),
            gone,
            T0,
            &audit("removeRolloutGroup", "rg-x")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    let p = s
        .add_rollout_group(mfa.id, eleventh, T0, &audit("addRolloutGroup", "rg-mfa-10"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.applies_to.len(), 10, "a freed place can be taken");
    // Deleting a group takes it out of every policy.
    s.delete_group(eleventh, &audit("deleteGroup", "rg-eleventh"))
        .await
        .unwrap();
    let p = s.get_rollout_policy(mfa.id).await.unwrap().unwrap();
    assert_eq!(
        p.applies_to, order,
        "a deleted group leaves the policy it was in"
    );

    // Two admins race for the tenth place: exactly one gets it, the other is refused.
    let cba = rollout(CertificateBasedAuthentication, false);
    s.create_rollout_policy(&cba, &audit("createRolloutPolicy", "rp-cba"))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..9 {
        let g = group_with(s, assigned, &[(UserMember, 1)]).await;
        s.add_rollout_group(cba.id, g, T0, &audit("addRolloutGroup", "rg-cba"))
            .await
            .unwrap()
            .unwrap();
    }
    for round in 0..3 {
        let g1 = group_with(s, assigned, &[(UserMember, 1)]).await;
        let g2 = group_with(s, assigned, &[(UserMember, 1)]).await;
        let tasks: Vec<_> = [(g1, "1"), (g2, "2")]
            .into_iter()
            .map(|(g, n)| {
                let store = store.clone();
                let target = format!("rg-race-{round}-{n}");
                tokio::spawn(async move {
                    store
                        .add_rollout_group(
                            cba.id,
                            g,
                            T0.plus_secs(500),
                            &audit("addRolloutGroup", &target),
                        )
                        .await
                })
            })
            .collect();
        let mut won = Vec::new();
        let mut refused = 0;
        for (t, g) in tasks.into_iter().zip([g1, g2]) {
            match t.await.expect("task") {
                Ok(Ok(p)) => {
                    assert_eq!(p.applies_to.len(), 10);
                    won.push(g);
                }
                Ok(Err(v)) => {
                    assert_eq!(v.rule, RolloutRule::MaxGroupsPerFeature, "{v}");
                    refused += 1;
                }
                Err(e) => panic!("a racing add failed: {e}"),
            }
        }
        assert_eq!((won.len(), refused), (1, 1), "exactly one racing add wins");
        let p = s.get_rollout_policy(cba.id).await.unwrap().unwrap();
        assert_eq!(p.applies_to.len(), 10);
        assert!(p.applies_to.contains(&won[0]));
        let audited = audits_for(s, &format!("rg-race-{round}-1")).await.len()
            + audits_for(s, &format!("rg-race-{round}-2")).await.len();
        assert_eq!(audited, 1, "only the winner is audited");
        s.remove_rollout_group(cba.id, won[0], T0, &audit("removeRolloutGroup", "rg-cba"))
            .await
            .unwrap()
            .unwrap();
    }

    // Deleting a policy frees its feature.
    s.delete_rollout_policy(cba.id, &audit("deleteRolloutPolicy", "rp-cba-del"))
        .await
        .unwrap();
    assert_eq!(s.get_rollout_policy(cba.id).await.unwrap(), None);
    assert_eq!(audits_for(s, "rp-cba-del").await.len(), 1);
    assert!(matches!(
        s.delete_rollout_policy(cba.id, &audit("deleteRolloutPolicy", "rp-cba-del2"))
            .await,
        Err(StoreError::NotFound)
    ));
    let cba2 = rollout(CertificateBasedAuthentication, true);
    s.create_rollout_policy(&cba2, &audit("createRolloutPolicy", "rp-cba2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.get_rollout_policy(cba2.id).await.unwrap(), Some(cba2));

    // Seamless SSO needs an enabled password policy.
    let phs_off = FeatureRolloutPolicy {
        is_enabled: false,
        ..phs.clone()
    };
    let phs_off = s
        .update_rollout_policy(&phs_off, &audit("updateRolloutPolicy", "rp-phs-off"))
        .await
        .unwrap()
        .unwrap();
    assert!(!phs_off.is_enabled);
    assert_eq!(phs_off.applies_to, vec![g200], "an update keeps the groups");
    let sso = rollout(SeamlessSso, true);
    assert_refused(
        s,
        s.create_rollout_policy(&sso, &audit("createRolloutPolicy", "rp-sso"))
            .await,
        RolloutRule::SeamlessSsoNeedsPasswordFeature,
        None,
        "rp-sso",
    )
    .await;
    assert_eq!(s.list_rollout_policies().await.unwrap().len(), 4);
}

/// A user's effective features switch only at a completed interactive sign-in, once.
async fn staged_state(store: Arc<dyn Store>) {
    use RolloutFeature::*;
    let s = &*store;
    let u = user("Stage@contoso.example");
    s.create_user(&u, &audit("createUser", "stage"))
        .await
        .unwrap();
    let stage = u.user.clone();
    let target = stage.id.to_string();
    let none = StagedState::default();
    let phs = FeatureSet::of(&[PasswordHashSync]);
    assert_eq!(s.get_staged_state(stage.id).await.unwrap(), none);
    for end in [SignInEnd::NonInteractive, SignInEnd::Failed] {
        assert_eq!(
            s.finish_staged_sign_in(&stage, phs, end, T0.plus_secs(1), Uuid::new_v4())
                .await
                .unwrap(),
            (none, none),
            "{end:?} never switches"
        );
    }
    assert_eq!(s.get_staged_state(stage.id).await.unwrap(), none);
    assert!(audits_for(s, &target).await.is_empty());

    let cid = Uuid::new_v4();
    let on = StagedState {
        effective: phs,
        changed_at: Some(T0.plus_secs(5)),
    };
    assert_eq!(
        s.finish_staged_sign_in(
            &stage,
            phs,
            SignInEnd::InteractiveCompleted,
            T0.plus_secs(5),
            cid
        )
        .await
        .unwrap(),
        (none, on)
    );
    assert_eq!(s.get_staged_state(stage.id).await.unwrap(), on);
    let rows = audits_for(s, &target).await;
    assert_eq!(rows.len(), 1, "one audit row per feature enabled: {rows:?}");
    let r = &rows[0];
    assert_eq!(
        (
            r.action.as_str(),
            r.actor.as_str(),
            r.target_type.as_str(),
            r.target_name.as_deref(),
            r.correlation_id,
            r.created_at,
        ),
        (
            "userEnabledForFeature",
            "system",
            "user",
            Some("Stage@contoso.example"),
            cid,
            T0.plus_secs(5)
        )
    );
    assert_eq!(
        r.before.as_ref().unwrap()["effective"],
        serde_json::json!([])
    );
    assert_eq!(
        r.after.as_ref().unwrap()["effective"],
        serde_json::json!(["passwordHashSync"])
    );
    assert_eq!(
        s.finish_staged_sign_in(
            &stage,
            phs,
            SignInEnd::InteractiveCompleted,
            T0.plus_secs(6),
            cid
        )
        .await
        .unwrap(),
        (on, on),
        "nothing to switch: the change time stays"
    );
    let other = FeatureSet::of(&[PassthroughAuthentication, SeamlessSso]);
    assert_eq!(
        s.finish_staged_sign_in(
            &stage,
            other,
            SignInEnd::NonInteractive,
            T0.plus_secs(6),
            cid
        )
        .await
        .unwrap(),
        (on, on)
    );
    assert_eq!(
        audits_for(s, &target).await.len(),
        1,
        "nothing new was audited"
    );

    let moved = StagedState {
        effective: other,
        changed_at: Some(T0.plus_secs(7)),
    };
    assert_eq!(
        s.finish_staged_sign_in(
            &stage,
            other,
            SignInEnd::InteractiveCompleted,
            T0.plus_secs(7),
            cid
        )
        .await
        .unwrap(),
        (on, moved)
    );
    let rows = audits_for(s, &target).await;
    assert_eq!(rows.len(), 4, "two features enabled, one removed: {rows:?}");
    let mut actions: Vec<&str> = rows[..3].iter().map(|r| r.action.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(
        actions,
        vec![
            "userEnabledForFeature",
            "userEnabledForFeature",
            "userRemovedFromFeature"
        ]
    );
    for r in &rows[..3] {
        assert_eq!(
            r.before.as_ref().unwrap()["effective"],
            serde_json::json!(["passwordHashSync"])
        );
        assert_eq!(
            r.after.as_ref().unwrap()["effective"],
            serde_json::json!(["passthroughAuthentication", "seamlessSso"])
        );
    }

    // Concurrent completions of the same sign-in switch once and audit once.
    let racer = user("racer@contoso.example");
    s.create_user(&racer, &audit("createUser", "racer"))
        .await
        .unwrap();
    let mfa = FeatureSet::of(&[MultiFactorAuthentication]);
    let want = StagedState {
        effective: mfa,
        changed_at: Some(T0.plus_secs(9)),
    };
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let u = racer.user.clone();
            tokio::spawn(async move {
                store
                    .finish_staged_sign_in(
                        &u,
                        mfa,
                        SignInEnd::InteractiveCompleted,
                        T0.plus_secs(9),
                        Uuid::new_v4(),
                    )
                    .await
            })
        })
        .collect();
    let mut switched = 0;
    for t in tasks {
        let (before, after) = t.await.expect("task").unwrap();
        assert_eq!(after, want);
        if before != after {
            switched += 1;
        }
    }
    assert_eq!(switched, 1, "exactly one concurrent completion switches");
    assert_eq!(
        audits_for(s, &racer.user.id.to_string()).await.len(),
        1,
        "one set of audit rows"
    );
    assert_eq!(s.get_staged_state(racer.user.id).await.unwrap(), want);

    // Deleting the user deletes their state (a user re-created with the id starts afresh).
    s.delete_user(racer.user.id, &audit("deleteUser", "racer"))
        .await
        .unwrap();
    s.create_user(&racer, &audit("createUser", "racer-again"))
        .await
        .unwrap();
    assert_eq!(s.get_staged_state(racer.user.id).await.unwrap(), none);
    let stranger = user("stranger@contoso.example").user;
    assert!(matches!(
        s.finish_staged_sign_in(
            &stranger,
            mfa,
            SignInEnd::InteractiveCompleted,
            T0,
            Uuid::new_v4()
        )
        .await,
        Err(StoreError::NotFound)
    ));
}

/// What the domain cut-over preflight reads: synced password coverage, break-glass accounts
/// and recent federated sign-ins.
async fn cutover_facts(s: &dyn Store) {
    use cutover_core::sync::{SyncOp, WrappedHash};
    for name in ["facts.example", "other-facts.example"] {
        s.create_domain(
            &domain_with(name, DomainAuthentication::Managed(Default::default())),
            &audit("createDomain", name),
        )
        .await
        .unwrap();
    }
    let synced = |upn: &str, anchor: &str| {
        let mut r = user(upn);
        r.user.source = Source::Synced;
        r.user.immutable_id = Some(anchor.into());
        r.password_hash = None;
        r.password_changed_at = None;
        r
    };
    for (upn, anchor) in [
        ("Zed@facts.example", "f-zed"),
        ("amy@facts.example", "f-amy"),
        ("Bob@facts.example", "f-bob"),
        ("hashed1@facts.example", "f-h1"),
        ("hashed2@facts.example", "f-h2"),
        ("nohash@other-facts.example", "f-other"),
    ] {
        s.create_user(&synced(upn, anchor), &audit("createUser", "facts"))
            .await
            .unwrap();
    }
    s.create_user(&user("cloud@facts.example"), &audit("createUser", "facts"))
        .await
        .unwrap();
    // Synced passwords are written by the sync path only; the store keeps the sealed wrap.
    let hash: WrappedHash = serde_json::from_value(serde_json::json!({
        "scheme": "ssha",
        "params": {"outputLen": 20},
        "salt": "AAAAAAAAAAAAAA==",
        "iterations": 1,
        "wrap": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }))
    .expect("a wrapped hash");
    let ops = ["f-h1", "f-h2"]
        .map(|a| SyncOp::SetPasswordHash {
            anchor: a.into(),
            hash: hash.clone(),
        })
        .to_vec();
    let lease = s.sync_lease().await.unwrap();
    let holder = lease
        .holder
        .clone()
        .expect("directory_sync leaves a holder");
    let SyncBatchOutcome::Applied(r) = s
        .apply_sync_batch(&batch(&holder, lease.epoch, "facts-hashes", ops))
        .await
        .unwrap()
    else {
        panic!("the holder's batch applies");
    };
    assert_eq!((r.passwords, r.rejected.len()), (2, 0), "{r:?}");

    assert_eq!(
        s.domain_password_coverage("facts.example", 2)
            .await
            .unwrap(),
        PasswordCoverage {
            synced_users: 5,
            without_hash_total: 3,
            without_hash_sample: vec!["amy@facts.example".into(), "Bob@facts.example".into()],
        },
        "synced users of the domain only; the sample by UPN, bounded"
    );
    assert_eq!(
        s.domain_password_coverage("facts.example", 10)
            .await
            .unwrap()
            .without_hash_sample,
        vec![
            "amy@facts.example",
            "Bob@facts.example",
            "Zed@facts.example"
        ]
    );
    assert_eq!(
        s.domain_password_coverage("nowhere.example", 10)
            .await
            .unwrap(),
        PasswordCoverage::default()
    );

    // Break-glass accounts with their last successful sign-in.
    assert!(s.break_glass_accounts().await.unwrap().is_empty());
    let mut bg1 = user("bg1@facts.example");
    bg1.user.break_glass = true;
    let mut bg2 = user("BG2@facts.example");
    bg2.user.break_glass = true;
    bg2.user.account_enabled = false;
    for u in [&bg1, &bg2] {
        s.create_user(u, &audit("createUser", "break-glass"))
            .await
            .unwrap();
    }
    let bg1_id = Some(bg1.user.id);
    for r in [
        record("bg1@facts.example", bg1_id, SignInResult::Success, 100),
        record("bg1@facts.example", bg1_id, SignInResult::Success, 200),
        record("bg1@facts.example", bg1_id, SignInResult::Failure, 300),
        // Matched by user id, not by the name typed.
        record("bg2@facts.example", None, SignInResult::Success, 400),
    ] {
        s.insert_sign_in(&r).await.unwrap();
    }
    let mut got = s.break_glass_accounts().await.unwrap();
    got.sort_by_key(|b| b.user_principal_name.to_lowercase());
    assert_eq!(
        got,
        vec![
            BreakGlassFacts {
                user_principal_name: "bg1@facts.example".into(),
                account_enabled: true,
                last_successful_sign_in: Some(T0.plus_secs(200)),
            },
            BreakGlassFacts {
                user_principal_name: "BG2@facts.example".into(),
                account_enabled: false,
                last_successful_sign_in: None,
            },
        ]
    );

    // Recent successful federated sign-ins of the domain, per user, most recent first.
    let signed_in = |upn: Option<&str>, route: &str, result: SignInResult, at: i64| {
        let mut r = record("x", None, result, at);
        r.user_principal_name = upn.map(Into::into);
        r.route = Some(route.into());
        r
    };
    use SignInResult::{Failure, Success};
    for r in [
        signed_in(Some("ann@fs.example"), "federated", Success, 10),
        signed_in(Some("ann@fs.example"), "federated", Success, 20),
        signed_in(Some("Ann@fs.example"), "federated", Success, 30),
        signed_in(Some("ben@fs.example"), "federated", Success, 50),
        signed_in(Some("Cat@FS.example"), "federated", Success, 40),
        // At the start of the window: counted.
        signed_in(Some("hal@fs.example"), "federated", Success, 5),
        // Not counted: failed, managed, too old, other domains, no name.
        signed_in(Some("ann@fs.example"), "federated", Failure, 60),
        signed_in(Some("dan@fs.example"), "managed", Success, 70),
        signed_in(Some("eve@fs.example"), "federated", Success, 4),
        signed_in(Some("fay@sub.fs.example"), "federated", Success, 45),
        signed_in(Some("gus@xfs.example"), "federated", Success, 46),
        signed_in(Some("fs.example"), "federated", Success, 47),
        signed_in(Some("ivy@fs.example.org"), "federated", Success, 48),
        signed_in(None, "federated", Success, 49),
    ] {
        s.insert_sign_in(&r).await.unwrap();
    }
    let seen = |upn: &str, count: u64, at: i64| FederatedSignIns {
        user_principal_name: upn.into(),
        count,
        last: T0.plus_secs(at),
    };
    assert_eq!(
        s.federated_sign_ins("fs.example", T0.plus_secs(5), 10)
            .await
            .unwrap(),
        vec![
            seen("ben@fs.example", 1, 50),
            seen("cat@fs.example", 1, 40),
            seen("ann@fs.example", 3, 30),
            seen("hal@fs.example", 1, 5),
        ]
    );
    assert_eq!(
        s.federated_sign_ins("fs.example", T0.plus_secs(5), 2)
            .await
            .unwrap(),
        vec![seen("ben@fs.example", 1, 50), seen("cat@fs.example", 1, 40)],
        "at most limit users"
    );
    assert!(
        s.federated_sign_ins("sub.fs.example", T0.plus_secs(46), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// What the rollout progress report reads: a group's direct user members (existing users only),
/// paged by id, with their staged state, synced-hash flag and rollout groups.
async fn rollout_members(s: &dyn Store) {
    use cutover_core::sync::{SyncOp, WrappedHash};
    s.create_domain(
        &domain_with(
            "progress.example",
            DomainAuthentication::Managed(Default::default()),
        ),
        &audit("createDomain", "progress"),
    )
    .await
    .unwrap();
    let new_group = |name: &str| Group {
        id: Uuid::new_v4(),
        display_name: name.into(),
        description: None,
        source: Source::Cloud,
        immutable_id: None,
        membership_kind: MembershipKind::Assigned,
        created_at: T0,
    };
    let (wave, second, plain) = (
        new_group("Progress wave"),
        new_group("Progress second wave"),
        new_group("Progress bystanders"),
    );
    for g in [&wave, &second, &plain] {
        s.create_group(g, &audit("createGroup", "progress"))
            .await
            .unwrap();
    }
    // The policies left by `rollout_policies`: the enabled CBA one has room for groups.
    let cba = s
        .list_rollout_policies()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.feature == RolloutFeature::CertificateBasedAuthentication)
        .expect("rollout_policies leaves a CBA policy");
    for g in [wave.id, second.id] {
        s.add_rollout_group(cba.id, g, T0, &audit("addRolloutGroup", "progress"))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        s.rollout_group_members(wave.id, None, 100)
            .await
            .unwrap()
            .is_empty(),
        "an empty group has no members"
    );

    let mut members = vec![];
    for n in 0..7 {
        let mut r = user(&format!("Member{n}@progress.example"));
        r.user.source = Source::Synced;
        r.user.immutable_id = Some(format!("progress-{n}"));
        r.password_hash = None;
        r.password_changed_at = None;
        s.create_user(&r, &audit("createUser", "progress"))
            .await
            .unwrap();
        members.push(r.user);
    }
    let outsider = user("outsider@progress.example");
    s.create_user(&outsider, &audit("createUser", "progress"))
        .await
        .unwrap();
    let add = |g: Uuid, kind: MemberKind, id: Uuid| async move {
        s.add_group_member(
            g,
            MemberRef { kind, id },
            T0,
            &audit("addGroupMember", "progress"),
        )
        .await
        .unwrap();
    };
    for m in &members {
        add(wave.id, MemberKind::User, m.id).await;
    }
    // Not listed: a member id without a user, a contact (even one whose id is a user's), a
    // group, and users of other groups.
    add(wave.id, MemberKind::User, Uuid::new_v4()).await;
    add(wave.id, MemberKind::Contact, outsider.user.id).await;
    add(wave.id, MemberKind::Group, plain.id).await;
    add(second.id, MemberKind::User, outsider.user.id).await;
    // Member0 is in a second rollout group and in a group no policy applies to.
    add(second.id, MemberKind::User, members[0].id).await;
    add(plain.id, MemberKind::User, members[0].id).await;
    add(plain.id, MemberKind::User, members[1].id).await;

    // Member1 has a synced hash (sync writes it), Member2 a stored staged state.
    let hash: WrappedHash = serde_json::from_value(serde_json::json!({
        "scheme": "ssha",
        "params": {"outputLen": 20},
        "salt": "AAAAAAAAAAAAAA==",
        "iterations": 1,
        "wrap": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }))
    .expect("a wrapped hash");
    let lease = s.sync_lease().await.unwrap();
    let holder = lease
        .holder
        .clone()
        .expect("directory_sync leaves a holder");
    let ops = vec![SyncOp::SetPasswordHash {
        anchor: "progress-1".into(),
        hash,
    }];
    let SyncBatchOutcome::Applied(r) = s
        .apply_sync_batch(&batch(&holder, lease.epoch, "progress-hash", ops))
        .await
        .unwrap()
    else {
        panic!("the holder's batch applies");
    };
    assert_eq!((r.passwords, r.rejected.len()), (1, 0), "{r:?}");
    let cba_set = FeatureSet::of(&[RolloutFeature::CertificateBasedAuthentication]);
    s.finish_staged_sign_in(
        &members[2],
        cba_set,
        SignInEnd::InteractiveCompleted,
        T0.plus_secs(3),
        Uuid::new_v4(),
    )
    .await
    .unwrap();

    // Every page together: each member once, by id, with its facts.
    let mut by_id = members.clone();
    by_id.sort_by_key(|u| u.id.to_string());
    let mut got: Vec<StagedMemberRow> = vec![];
    let mut after = None;
    loop {
        let page = s.rollout_group_members(wave.id, after, 3).await.unwrap();
        assert!(page.len() <= 3, "at most limit rows: {}", page.len());
        let Some(last) = page.last() else { break };
        after = Some(last.user.id);
        got.extend(page);
    }
    assert_eq!(
        got.iter().map(|r| r.user.id).collect::<Vec<_>>(),
        by_id.iter().map(|u| u.id).collect::<Vec<_>>(),
        "existing user members only, by id, none skipped or repeated"
    );
    let mut wanted_groups = vec![wave.id, second.id];
    wanted_groups.sort_by_key(Uuid::to_string);
    for r in &got {
        let n = members.iter().position(|m| m.id == r.user.id).unwrap();
        assert_eq!(r.user, members[n], "the user as stored");
        assert_eq!(r.has_password, n == 1, "Member{n}'s hash");
        let staged = if n == 2 {
            StagedState {
                effective: cba_set,
                changed_at: Some(T0.plus_secs(3)),
            }
        } else {
            StagedState::default()
        };
        assert_eq!(r.staged, staged, "Member{n}'s staged state");
        let mut groups = r.rollout_groups.clone();
        groups.sort_by_key(Uuid::to_string);
        let want = if n == 0 {
            wanted_groups.clone()
        } else {
            vec![wave.id]
        };
        assert_eq!(groups, want, "Member{n}'s rollout groups");
    }
    // One page with everyone; after the last member nothing; other groups on their own.
    assert_eq!(
        s.rollout_group_members(wave.id, None, 100).await.unwrap(),
        got
    );
    assert!(
        s.rollout_group_members(wave.id, Some(by_id[6].id), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let second_members: Vec<Uuid> = s
        .rollout_group_members(second.id, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.user.id)
        .collect();
    let mut want = vec![members[0].id, outsider.user.id];
    want.sort_by_key(Uuid::to_string);
    assert_eq!(second_members, want);
    // A group no policy applies to still lists its members (their rollout groups are those
    // of the policies).
    let bystanders = s.rollout_group_members(plain.id, None, 100).await.unwrap();
    assert_eq!(bystanders.len(), 2);
    let m1 = bystanders
        .iter()
        .find(|r| r.user.id == members[1].id)
        .unwrap();
    assert_eq!(m1.rollout_groups, vec![wave.id]);
    assert!(
        s.rollout_group_members(Uuid::new_v4(), None, 100)
            .await
            .unwrap()
            .is_empty(),
        "an unknown group has no members"
    );
}

// Pass-through agents, the pass-through queue, smart lockout and settings (SPEC §5.3, §7).

/// `put_setting` replaces a value and audits it.
async fn settings_upsert(s: &dyn Store) {
    s.put_setting("put-k", "one", &audit("putSetting", "setting-put-k"))
        .await
        .unwrap();
    assert_eq!(
        s.get_setting("put-k").await.unwrap().as_deref(),
        Some("one")
    );
    s.put_setting("put-k", "two", &audit("putSetting", "setting-put-k"))
        .await
        .unwrap();
    assert_eq!(
        s.get_setting("put-k").await.unwrap().as_deref(),
        Some("two"),
        "put_setting overwrites"
    );
    assert_eq!(
        s.init_setting("put-k", "three").await.unwrap(),
        "two",
        "init_setting still never overwrites"
    );
    s.put_setting("k", "replaced", &audit("putSetting", "setting-k"))
        .await
        .unwrap();
    assert_eq!(
        s.get_setting("k").await.unwrap().as_deref(),
        Some("replaced")
    );
    assert_eq!(audits_for(s, "setting-put-k").await.len(), 2);
}

fn agent(n: usize) -> AgentRecord {
    AgentRecord {
        id: Uuid::new_v4(),
        host: format!("agent-{n}.corp.example"),
        version: "1.0.0".into(),
        signing_key: format!("sig-{n}"),
        encryption_key: format!("enc-{n}"),
        key_generation: 1,
        enabled: true,
        created_at: T0.plus_secs(n as i64),
        keys_rotated_at: None,
        last_heartbeat: None,
        heartbeat: None,
    }
}

const TOKEN_EXPIRY: Timestamp = Timestamp(T0.0 + 3_600_000);

async fn agent_token(s: &dyn Store, hash: &str) {
    s.create_agent_token(hash, TOKEN_EXPIRY, T0, &audit("createAgentToken", hash))
        .await
        .unwrap();
}

/// Register agent number `n` with a fresh token.
async fn registered(s: &dyn Store, n: usize) -> AgentRecord {
    let a = agent(n);
    let tok = format!("tok-{}", a.id);
    agent_token(s, &tok).await;
    s.register_agent(&tok, &a, T0, &audit("registerAgent", &a.id.to_string()))
        .await
        .unwrap()
        .unwrap();
    a
}

/// Registration tokens, the 40-agent limit under races, and the agent records.
async fn agents(store: Arc<dyn Store>) {
    use cutover_core::pta::{MAX_AGENTS, RegistrationRefusal as R};
    let s = &*store;
    let now = T0.plus_secs(10);
    assert!(s.list_agents().await.unwrap().is_empty());
    assert_eq!(
        s.register_agent(
            "no-such-token",
            &agent(0),
            now,
            &audit("registerAgent", "unknown")
        )
        .await
        .unwrap(),
        Err(R::TokenUnknown)
    );
    agent_token(s, "tok-dup").await;
    assert!(matches!(
        s.create_agent_token(
            "tok-dup",
            TOKEN_EXPIRY,
            T0,
            &audit("createAgentToken", "dup2")
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(audits_for(s, "dup2").await.is_empty());
    s.create_agent_token("tok-expired", now, T0, &audit("createAgentToken", "exp"))
        .await
        .unwrap();
    assert_eq!(
        s.register_agent(
            "tok-expired",
            &agent(0),
            now,
            &audit("registerAgent", "expired")
        )
        .await
        .unwrap(),
        Err(R::TokenExpired),
        "a token is expired at its expiry time"
    );

    let mut fleet = Vec::new();
    for i in 1..MAX_AGENTS {
        let tok = format!("tok-{i}");
        agent_token(s, &tok).await;
        let a = agent(i);
        assert_eq!(
            s.register_agent(&tok, &a, now, &audit("registerAgent", &a.id.to_string()))
                .await
                .unwrap(),
            Ok(())
        );
        fleet.push(a);
    }
    assert_eq!(
        s.register_agent("tok-1", &agent(0), now, &audit("registerAgent", "reused"))
            .await
            .unwrap(),
        Err(R::TokenAlreadyUsed),
        "a token registers one agent"
    );
    assert_eq!(s.list_agents().await.unwrap().len(), MAX_AGENTS - 1);

    // Eight registrations race for the last slot: exactly one wins.
    for i in 0..8 {
        agent_token(s, &format!("tok-race-{i}")).await;
    }
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let a = agent(100 + i);
                let r = store
                    .register_agent(
                        &format!("tok-race-{i}"),
                        &a,
                        now,
                        &audit("registerAgent", &format!("race-{i}")),
                    )
                    .await
                    .unwrap();
                (i, a, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        let (i, a, r) = t.await.expect("task");
        match r {
            Ok(()) => winners.push((i, a)),
            Err(R::TooManyAgents { registered }) => {
                assert_eq!(registered, MAX_AGENTS);
                losers.push(i);
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racer gets the 40th slot");
    for i in &losers {
        assert!(
            audits_for(s, &format!("race-{i}")).await.is_empty(),
            "a refusal writes no audit row"
        );
    }
    fleet.push(winners[0].1.clone());
    assert_eq!(s.list_agents().await.unwrap().len(), MAX_AGENTS);

    agent_token(s, "tok-41").await;
    let forty_first = agent(41);
    let refused = s
        .register_agent(
            "tok-41",
            &forty_first,
            now,
            &audit("registerAgent", "forty-first"),
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        Err(R::TooManyAgents {
            registered: MAX_AGENTS
        })
    );
    assert!(audits_for(s, "forty-first").await.is_empty());
    assert_eq!(s.get_agent(forty_first.id).await.unwrap(), None);

    // Listed by creation time, then id; read back whole.
    let listed = s.list_agents().await.unwrap();
    let mut sorted = listed.clone();
    sorted.sort_by_key(|a| (a.created_at, a.id));
    assert_eq!(listed, sorted);
    assert_eq!(
        s.get_agent(fleet[0].id).await.unwrap().as_ref(),
        Some(&fleet[0])
    );
    assert_eq!(s.get_agent(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        audits_for(s, &fleet[0].id.to_string()).await.len(),
        1,
        "a registration is audited"
    );

    // Deleting one frees a slot: the refused tokens were left unused.
    let gone = fleet.remove(0);
    s.delete_agent(gone.id, &audit("deleteAgent", "gone"))
        .await
        .unwrap();
    assert_eq!(s.get_agent(gone.id).await.unwrap(), None);
    assert!(matches!(
        s.delete_agent(gone.id, &audit("deleteAgent", "gone-again"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "gone-again").await.is_empty());
    assert_eq!(
        s.register_agent(
            "tok-41",
            &forty_first,
            now,
            &audit("registerAgent", "forty-first")
        )
        .await
        .unwrap(),
        Ok(()),
        "the token refused for the limit stayed unused"
    );
    fleet.push(forty_first.clone());
    let second = fleet.remove(0);
    s.delete_agent(second.id, &audit("deleteAgent", "second"))
        .await
        .unwrap();
    let loser = agent(200);
    assert_eq!(
        s.register_agent(
            &format!("tok-race-{}", losers[0]),
            &loser,
            now,
            &audit("registerAgent", "loser")
        )
        .await
        .unwrap(),
        Ok(()),
        "a racer's refused token stayed unused"
    );
    fleet.push(loser);

    // The same token raced by four registrations: one agent.
    let third = fleet.remove(0);
    s.delete_agent(third.id, &audit("deleteAgent", "third"))
        .await
        .unwrap();
    agent_token(s, "tok-same").await;
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let a = agent(300 + i);
                let r = store
                    .register_agent("tok-same", &a, now, &audit("registerAgent", "same"))
                    .await
                    .unwrap();
                (a, r)
            })
        })
        .collect();
    let mut same_winner = None;
    for t in tasks {
        let (a, r) = t.await.expect("task");
        match r {
            Ok(()) => {
                assert!(same_winner.is_none(), "one token registered two agents");
                same_winner = Some(a);
            }
            Err(refusal) => assert_eq!(refusal, R::TokenAlreadyUsed),
        }
    }
    fleet.push(same_winner.expect("one registration with the token wins"));
    assert_eq!(s.list_agents().await.unwrap().len(), MAX_AGENTS);

    // Enable / disable.
    let a = fleet[0].clone();
    s.set_agent_enabled(a.id, false, &audit("disableAgent", "disable"))
        .await
        .unwrap();
    assert!(!s.get_agent(a.id).await.unwrap().unwrap().enabled);
    s.set_agent_enabled(a.id, true, &audit("enableAgent", "enable"))
        .await
        .unwrap();
    assert!(s.get_agent(a.id).await.unwrap().unwrap().enabled);
    assert_eq!(audits_for(s, "disable").await.len(), 1);
    assert!(matches!(
        s.set_agent_enabled(Uuid::new_v4(), false, &audit("disableAgent", "nobody"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "nobody").await.is_empty());

    // Key rotation is a compare-and-set on the generation.
    let at = T0.plus_secs(20);
    assert_eq!(
        s.rotate_agent_keys(
            a.id,
            "sig-new",
            "enc-new",
            1,
            at,
            &audit("rotateAgentKeys", "rot")
        )
        .await
        .unwrap(),
        2
    );
    let rotated = s.get_agent(a.id).await.unwrap().unwrap();
    assert_eq!(
        (
            rotated.signing_key.as_str(),
            rotated.encryption_key.as_str(),
            rotated.key_generation,
            rotated.keys_rotated_at
        ),
        ("sig-new", "enc-new", 2, Some(at))
    );
    assert!(matches!(
        s.rotate_agent_keys(
            a.id,
            "sig-stale",
            "enc-stale",
            1,
            at,
            &audit("rotateAgentKeys", "stale")
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_agent(a.id).await.unwrap().unwrap(),
        rotated,
        "a stale rotation writes nothing"
    );
    assert!(audits_for(s, "stale").await.is_empty());
    assert!(matches!(
        s.rotate_agent_keys(
            Uuid::new_v4(),
            "x",
            "y",
            1,
            at,
            &audit("rotateAgentKeys", "ghost")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    // Concurrent rotations from the same generation: one wins.
    let aid = a.id;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_agent_keys(
                        aid,
                        &format!("sig-{i}"),
                        &format!("enc-{i}"),
                        2,
                        at,
                        &audit("rotateAgentKeys", "rot-race"),
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(g) => {
                assert_eq!(g, 3);
                won += 1;
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one concurrent rotation wins");
    assert_eq!(s.get_agent(a.id).await.unwrap().unwrap().key_generation, 3);

    // Heartbeats.
    let hb = serde_json::json!({"stats": {"validations": 3}, "directory": {"reachable": true}});
    s.record_agent_heartbeat(a.id, T0.plus_secs(30), &hb)
        .await
        .unwrap();
    let seen = s.get_agent(a.id).await.unwrap().unwrap();
    assert_eq!(
        (seen.last_heartbeat, seen.heartbeat),
        (Some(T0.plus_secs(30)), Some(hb.clone()))
    );
    s.delete_agent(a.id, &audit("deleteAgent", "hb"))
        .await
        .unwrap();
    assert!(
        matches!(
            s.record_agent_heartbeat(a.id, T0.plus_secs(40), &hb).await,
            Err(StoreError::NotFound)
        ),
        "a deleted agent's heartbeat is refused"
    );

    // Leave no agent behind for the queue checks.
    for a in s.list_agents().await.unwrap() {
        s.delete_agent(a.id, &audit("deleteAgent", "cleanup"))
            .await
            .unwrap();
    }
    assert!(s.list_agents().await.unwrap().is_empty());
}

fn pta_request(
    n: u32,
    agents: &[Uuid],
    created_at: Timestamp,
    deadline: Timestamp,
) -> PtaRequestRow {
    let id = Uuid::new_v4();
    PtaRequestRow {
        id,
        correlation_id: Uuid::new_v4(),
        user_principal_name: format!("user{n}@pta.example"),
        immutable_id: n.is_multiple_of(2).then(|| format!("anchor-{n}")),
        created_at,
        deadline,
        attempt: 1,
        envelopes: agents
            .iter()
            .map(|a| (*a, format!("sealed-{id}-{a}")))
            .collect(),
    }
}

async fn state_of(s: &dyn Store, id: Uuid) -> Option<PtaRequestState> {
    s.pta_request_states(&[id])
        .await
        .unwrap()
        .pop()
        .map(|(_, st)| st)
}

/// The request queue: claims (atomic, filtered, batched), answers, abandonment, states.
async fn pta_queue(store: Arc<dyn Store>) {
    use cutover_core::pta::{MAX_POLL_BATCH, PtaResult};
    let s = &*store;
    let a = registered(s, 1).await;
    let b = registered(s, 2).await;
    let c = registered(s, 3).await;
    let d = registered(s, 4).await;
    s.set_agent_enabled(d.id, false, &audit("disableAgent", "d"))
        .await
        .unwrap();
    let now = T0.plus_secs(100);
    assert!(
        s.claim_pta_requests(a.id, now, 10)
            .await
            .unwrap()
            .is_empty(),
        "an empty queue"
    );

    let r1 = pta_request(1, &[a.id, b.id], now.minus_secs(3), now.plus_secs(5));
    let r2 = pta_request(2, &[a.id], now.minus_secs(4), now.minus_secs(1));
    let r3 = pta_request(3, &[b.id], now.minus_secs(2), now.plus_secs(5));
    let r4 = pta_request(
        4,
        &[a.id, b.id, c.id, d.id],
        now.minus_secs(1),
        now.plus_secs(5),
    );
    let r5 = pta_request(5, &[a.id], now, now);
    for r in [&r1, &r2, &r3, &r4, &r5] {
        s.enqueue_pta_request(r).await.unwrap();
    }
    assert!(matches!(
        s.enqueue_pta_request(&r1).await,
        Err(StoreError::Conflict(_))
    ));
    let orphan = pta_request(6, &[a.id, Uuid::new_v4()], now, now.plus_secs(5));
    assert!(
        matches!(
            s.enqueue_pta_request(&orphan).await,
            Err(StoreError::Conflict(_))
        ),
        "an envelope for an unknown agent is refused"
    );
    assert_eq!(
        state_of(s, orphan.id).await,
        None,
        "nothing of a refused request is stored"
    );
    assert_eq!(state_of(s, r1.id).await, Some(PtaRequestState::Pending));

    assert!(
        s.claim_pta_requests(d.id, now, 10)
            .await
            .unwrap()
            .is_empty(),
        "a disabled agent gets nothing"
    );
    assert!(s.claim_pta_requests(a.id, now, 0).await.unwrap().is_empty());
    let got = s.claim_pta_requests(a.id, now, 10).await.unwrap();
    let want: Vec<ClaimedPtaRequest> = [&r1, &r4]
        .iter()
        .map(|r| ClaimedPtaRequest {
            id: r.id,
            correlation_id: r.correlation_id,
            user_principal_name: r.user_principal_name.clone(),
            immutable_id: r.immutable_id.clone(),
            deadline: r.deadline,
            envelope: format!("sealed-{}-{}", r.id, a.id),
        })
        .collect();
    assert_eq!(
        got, want,
        "oldest first; past the deadline (r2, r5) and without an envelope for the agent (r3) are left"
    );
    assert!(
        !format!("{got:?}").contains("sealed-"),
        "Debug hides envelopes"
    );
    assert_eq!(
        s.pta_request_states(&[r1.id, r2.id, r3.id, r4.id, r5.id])
            .await
            .unwrap(),
        vec![
            (
                r1.id,
                PtaRequestState::Claimed {
                    agent_id: a.id,
                    at: now
                }
            ),
            (r2.id, PtaRequestState::Pending),
            (r3.id, PtaRequestState::Pending),
            (
                r4.id,
                PtaRequestState::Claimed {
                    agent_id: a.id,
                    at: now
                }
            ),
            (r5.id, PtaRequestState::Pending),
        ]
    );
    assert!(
        s.claim_pta_requests(a.id, now, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed once"
    );
    let for_b = s.claim_pta_requests(b.id, now, 10).await.unwrap();
    assert_eq!(for_b.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r3.id]);
    assert_eq!(for_b[0].envelope, format!("sealed-{}-{}", r3.id, b.id));
    assert!(
        s.claim_pta_requests(c.id, now, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Answers.
    let later = now.plus_secs(1);
    assert_eq!(
        s.complete_pta_request(r1.id, b.id, PtaResult::Success, None, later)
            .await
            .unwrap(),
        CompleteOutcome::NotYours,
        "only the claiming agent answers"
    );
    assert_eq!(
        state_of(s, r1.id).await,
        Some(PtaRequestState::Claimed {
            agent_id: a.id,
            at: now
        })
    );
    assert_eq!(
        s.complete_pta_request(
            r1.id,
            a.id,
            PtaResult::InvalidCredentials,
            Some("49\nbad"),
            later
        )
        .await
        .unwrap(),
        CompleteOutcome::Accepted
    );
    let done = PtaRequestState::Done {
        agent_id: a.id,
        result: PtaResult::InvalidCredentials,
        detail: Some("49 bad".into()),
        at: later,
    };
    assert_eq!(state_of(s, r1.id).await, Some(done.clone()));
    assert_eq!(
        s.complete_pta_request(r1.id, a.id, PtaResult::Success, None, later)
            .await
            .unwrap(),
        CompleteOutcome::Late,
        "the first answer stands"
    );
    assert_eq!(state_of(s, r1.id).await, Some(done.clone()));
    assert_eq!(
        s.complete_pta_request(Uuid::new_v4(), a.id, PtaResult::Success, None, later)
            .await
            .unwrap(),
        CompleteOutcome::Unknown
    );
    assert_eq!(
        s.complete_pta_request(r5.id, a.id, PtaResult::Success, None, later)
            .await
            .unwrap(),
        CompleteOutcome::NotYours,
        "an unclaimed request is nobody's"
    );
    assert_eq!(state_of(s, r5.id).await, Some(PtaRequestState::Pending));

    // Abandonment.
    assert_eq!(
        s.abandon_pta_request(r1.id).await.unwrap(),
        Some(done.clone()),
        "abandon after done returns done"
    );
    assert_eq!(
        state_of(s, r1.id).await,
        Some(done.clone()),
        "and leaves it done"
    );
    assert_eq!(
        s.abandon_pta_request(r4.id).await.unwrap(),
        Some(PtaRequestState::Claimed {
            agent_id: a.id,
            at: now
        })
    );
    assert_eq!(
        state_of(s, r4.id).await,
        Some(PtaRequestState::Abandoned {
            claimed_by: Some(a.id)
        })
    );
    assert_eq!(
        s.complete_pta_request(r4.id, a.id, PtaResult::Success, None, later)
            .await
            .unwrap(),
        CompleteOutcome::Late,
        "an answer after abandonment is late"
    );
    assert_eq!(
        s.complete_pta_request(r4.id, c.id, PtaResult::Success, None, later)
            .await
            .unwrap(),
        CompleteOutcome::NotYours
    );
    assert_eq!(
        state_of(s, r4.id).await,
        Some(PtaRequestState::Abandoned {
            claimed_by: Some(a.id)
        })
    );
    assert_eq!(
        s.abandon_pta_request(r2.id).await.unwrap(),
        Some(PtaRequestState::Pending)
    );
    assert_eq!(
        s.abandon_pta_request(r2.id).await.unwrap(),
        Some(PtaRequestState::Abandoned { claimed_by: None }),
        "abandoning twice reports the abandoned state"
    );
    assert_eq!(s.abandon_pta_request(Uuid::new_v4()).await.unwrap(), None);
    let r7 = pta_request(7, &[a.id], now, now.plus_secs(5));
    s.enqueue_pta_request(&r7).await.unwrap();
    s.abandon_pta_request(r7.id).await.unwrap();
    assert!(
        s.claim_pta_requests(a.id, now, 10)
            .await
            .unwrap()
            .is_empty(),
        "an abandoned request is not claimed"
    );

    // States in the order asked, missing ids left out, duplicates once.
    let missing = Uuid::new_v4();
    assert_eq!(
        s.pta_request_states(&[r5.id, missing, r1.id, r5.id])
            .await
            .unwrap(),
        vec![(r5.id, PtaRequestState::Pending), (r1.id, done.clone())]
    );
    assert!(s.pta_request_states(&[]).await.unwrap().is_empty());
    s.delete_pta_request(r5.id).await.unwrap();
    assert_eq!(state_of(s, r5.id).await, None);
    s.delete_pta_request(r5.id).await.unwrap();

    // A poll takes at most MAX_POLL_BATCH.
    let batch_at = now.plus_secs(10);
    let mut many = Vec::new();
    for i in 0..(MAX_POLL_BATCH + 6) {
        let r = pta_request(
            100 + i,
            &[c.id],
            batch_at.plus_secs(i64::from(i)),
            batch_at.plus_secs(1_000),
        );
        s.enqueue_pta_request(&r).await.unwrap();
        many.push(r.id);
    }
    let first = s.claim_pta_requests(c.id, batch_at, 1_000).await.unwrap();
    assert_eq!(first.len(), MAX_POLL_BATCH as usize, "the limit is clamped");
    assert_eq!(
        first.iter().map(|r| r.id).collect::<Vec<_>>(),
        many[..MAX_POLL_BATCH as usize]
    );
    let rest = s.claim_pta_requests(c.id, batch_at, 1_000).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.id).collect::<Vec<_>>(),
        many[MAX_POLL_BATCH as usize..]
    );
    // 1000 ids in one call.
    let mut ids: Vec<Uuid> = many.clone();
    ids.extend((0..(1_000 - many.len())).map(|_| Uuid::new_v4()));
    assert_eq!(s.pta_request_states(&ids).await.unwrap().len(), many.len());

    // Three agents claim 100 requests concurrently: each is claimed exactly once.
    let race_at = now.plus_secs(20);
    let mut queued = std::collections::BTreeSet::new();
    for i in 0..100 {
        let r = pta_request(
            1_000 + i,
            &[a.id, b.id, c.id],
            race_at.plus_secs(i64::from(i)),
            race_at.plus_secs(1_000),
        );
        s.enqueue_pta_request(&r).await.unwrap();
        queued.insert(r.id);
    }
    let tasks: Vec<_> = [a.id, b.id, c.id]
        .into_iter()
        .map(|agent| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_pta_requests(agent, race_at, 7).await.unwrap();
                    if got.is_empty() {
                        return (agent, mine);
                    }
                    for r in got {
                        assert_eq!(r.envelope, format!("sealed-{}-{}", r.id, agent));
                        mine.push(r.id);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut claimed = std::collections::BTreeMap::new();
    for t in tasks {
        let (agent, mine) = t.await.expect("task");
        for id in mine {
            assert!(
                claimed.insert(id, agent).is_none(),
                "request {id} claimed twice"
            );
        }
    }
    assert_eq!(
        claimed
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        queued,
        "every request claimed"
    );
    let ids: Vec<Uuid> = queued.iter().copied().collect();
    for (id, st) in s.pta_request_states(&ids).await.unwrap() {
        assert_eq!(
            st,
            PtaRequestState::Claimed {
                agent_id: claimed[&id],
                at: race_at
            }
        );
    }

    for agent in [a, b, c, d] {
        s.delete_agent(agent.id, &audit("deleteAgent", "queue-cleanup"))
            .await
            .unwrap();
    }
}

/// Smart lockout state: read, locked read-modify-write, no lost update, unlock.
async fn lockout(store: Arc<dyn Store>) {
    use cutover_core::lockout::{FamiliarNetwork, LockoutState};
    let s = &*store;
    s.create_domain(
        &domain_with(
            "lockout.example",
            DomainAuthentication::Managed(Default::default()),
        ),
        &audit("createDomain", "lockout.example"),
    )
    .await
    .unwrap();
    let u = user("locked@lockout.example");
    s.create_user(&u, &audit("createUser", "locked"))
        .await
        .unwrap();
    let id = u.user.id;
    let none = LockoutState::default();
    assert_eq!(s.get_lockout_state(id).await.unwrap(), none);

    let bump = |mut st: LockoutState| {
        st.familiar.failures += 1;
        st
    };
    let (before, after) = s.update_lockout_state(id, &bump).await.unwrap();
    assert_eq!((before, after.familiar.failures), (none.clone(), 1));
    assert_eq!(s.get_lockout_state(id).await.unwrap(), after);
    assert_eq!(
        s.update_lockout_state(id, &|st| st).await.unwrap(),
        (after.clone(), after.clone()),
        "an unchanged state"
    );
    let stranger = Uuid::new_v4();
    assert!(matches!(
        s.update_lockout_state(stranger, &bump).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.get_lockout_state(stranger).await.unwrap(), none);

    // 50 concurrent increments: none lost, each saw the one before it.
    let racer = user("racer@lockout.example");
    s.create_user(&racer, &audit("createUser", "lockout-racer"))
        .await
        .unwrap();
    let rid = racer.user.id;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let bump = |mut st: LockoutState| {
                    st.unfamiliar.failures += 1;
                    st
                };
                store.update_lockout_state(rid, &bump).await.unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        let (before, after) = t.await.expect("task");
        assert_eq!(after.unfamiliar.failures, before.unfamiliar.failures + 1);
        seen.push(before.unfamiliar.failures);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>(), "no update was lost");
    assert_eq!(
        s.get_lockout_state(rid).await.unwrap().unfamiliar.failures,
        50
    );

    // Unlock: counters start over, familiar networks stay; audited with the change.
    let net = FamiliarNetwork {
        network: "192.0.2.0/24".into(),
        last_success: T0,
    };
    let with_net = {
        let net = net.clone();
        move |mut st: LockoutState| {
            st.networks = vec![net.clone()];
            st.unfamiliar.locked_until = Some(T0.plus_secs(60));
            st.recent_bad = vec!["h1".into()];
            st
        }
    };
    let (_, locked) = s.update_lockout_state(id, &with_net).await.unwrap();
    let (before, after) = s
        .unlock_user(id, &audit("unlockUser", "unlock-locked"))
        .await
        .unwrap();
    assert_eq!(before, locked);
    assert_eq!(after, cutover_core::lockout::unlock(locked.clone()));
    assert_eq!(after.networks, vec![net]);
    assert_eq!(
        (after.familiar.failures, after.unfamiliar.locked_until),
        (0, None)
    );
    assert_eq!(s.get_lockout_state(id).await.unwrap(), after);
    assert_eq!(audits_for(s, "unlock-locked").await.len(), 1);
    assert!(matches!(
        s.unlock_user(stranger, &audit("unlockUser", "unlock-stranger"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "unlock-stranger").await.is_empty());

    // Deleting the user deletes the state.
    s.delete_user(rid, &audit("deleteUser", "lockout-racer"))
        .await
        .unwrap();
    s.create_user(&racer, &audit("createUser", "lockout-racer-again"))
        .await
        .unwrap();
    assert_eq!(s.get_lockout_state(rid).await.unwrap(), none);
}

/// The figures `/metrics` reads: the pass-through queue by state, inside the deadline only
/// (a deadline at `now` is past), and the sync servers' reports without their pending exports.
async fn scrape_figures(s: &dyn Store) {
    use cutover_core::pta::PtaResult;
    // Later than every deadline the other checks stored: nothing of theirs is waiting.
    let now = T0.plus_secs(100_000_000);
    let depth = |pending, claimed| PtaQueueDepth { pending, claimed };
    assert_eq!(s.pta_queue_depth(now).await.unwrap(), depth(0, 0));
    let a = registered(s, 700).await;
    let first = pta_request(7_001, &[a.id], now.minus_secs(2), now.plus_secs(5));
    let second = pta_request(7_002, &[a.id], now.minus_secs(1), now.plus_secs(5));
    let expired = pta_request(7_003, &[a.id], now.minus_secs(9), now.minus_secs(1));
    let at_deadline = pta_request(7_004, &[a.id], now.minus_secs(9), now);
    for r in [&first, &second, &expired, &at_deadline] {
        s.enqueue_pta_request(r).await.unwrap();
    }
    assert_eq!(
        s.pta_queue_depth(now).await.unwrap(),
        depth(2, 0),
        "past or at their deadline, requests are not waiting"
    );
    assert_eq!(
        s.pta_queue_depth(now.minus_secs(1)).await.unwrap(),
        depth(3, 0),
        "one second earlier the request whose deadline is now still waits"
    );
    let claimed = s.claim_pta_requests(a.id, now, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(s.pta_queue_depth(now).await.unwrap(), depth(1, 1));
    assert_eq!(
        s.complete_pta_request(claimed[0].id, a.id, PtaResult::Success, None, now)
            .await
            .unwrap(),
        CompleteOutcome::Accepted
    );
    assert_eq!(
        s.pta_queue_depth(now).await.unwrap(),
        depth(1, 0),
        "an answered request is neither"
    );
    s.abandon_pta_request(second.id).await.unwrap();
    assert_eq!(
        s.pta_queue_depth(now).await.unwrap(),
        depth(0, 0),
        "an abandoned request is neither"
    );
    for r in [&first, &second, &expired, &at_deadline] {
        s.delete_pta_request(r.id).await.unwrap();
    }
    s.delete_agent(a.id, &audit("deleteAgent", "scrape"))
        .await
        .unwrap();

    let full = s.list_sync_servers().await.unwrap();
    assert!(
        full.iter().any(|r| r.last_report.is_some()),
        "the directory sync checks left a reported run"
    );
    let want: Vec<SyncRunReportRow> = full
        .into_iter()
        .map(|r| SyncRunReportRow {
            name: r.name,
            last_seen_at: r.last_seen_at,
            last_report: r.last_report,
            alert: r.alert,
        })
        .collect();
    assert_eq!(s.sync_run_reports().await.unwrap(), want);
}

/// `purge_expired` drops old pass-through requests and spent or expired registration tokens.
async fn pta_purge(s: &dyn Store) {
    use cutover_core::pta::RegistrationRefusal as R;
    let a = registered(s, 500).await;
    let now = T0.plus_secs(864_000);
    let old = pta_request(9_000, &[a.id], now, now);
    let recent = pta_request(9_001, &[a.id], now, now.plus_secs(1));
    s.enqueue_pta_request(&old).await.unwrap();
    s.enqueue_pta_request(&recent).await.unwrap();
    s.create_agent_token("purge-expired", now, T0, &audit("createAgentToken", "pe"))
        .await
        .unwrap();
    s.create_agent_token(
        "purge-fresh",
        now.plus_secs(200_000),
        T0,
        &audit("createAgentToken", "pf"),
    )
    .await
    .unwrap();
    let used = format!("tok-{}", a.id);
    assert_eq!(
        s.register_agent(&used, &agent(501), now, &audit("registerAgent", "pu"))
            .await
            .unwrap(),
        Err(R::TokenAlreadyUsed)
    );
    // Just over an hour past `old`'s deadline, not for `recent`.
    s.purge_expired(Timestamp(now.plus_secs(3_600).0 + 1))
        .await
        .unwrap();
    assert_eq!(
        state_of(s, old.id).await,
        None,
        "an hour past its deadline: purged"
    );
    assert_eq!(state_of(s, recent.id).await, Some(PtaRequestState::Pending));
    assert_eq!(
        s.register_agent(
            "purge-expired",
            &agent(502),
            now,
            &audit("registerAgent", "pe2")
        )
        .await
        .unwrap(),
        Err(R::TokenExpired),
        "a token expired less than a day ago is kept"
    );
    s.purge_expired(Timestamp(now.plus_secs(86_400).0 + 1))
        .await
        .unwrap();
    for tok in ["purge-expired", used.as_str()] {
        assert_eq!(
            s.register_agent(tok, &agent(503), now, &audit("registerAgent", "purged"))
                .await
                .unwrap(),
            Err(R::TokenUnknown),
            "a token used or expired over a day ago is purged"
        );
    }
    assert_eq!(state_of(s, recent.id).await, None);
    assert_eq!(
        s.register_agent(
            "purge-fresh",
            &agent(504),
            now,
            &audit("registerAgent", "pf2")
        )
        .await
        .unwrap(),
        Ok(()),
        "an unused, unexpired token survives"
    );
}

/// No ciphertext lingers: a request's envelopes go when it is claimed (all of them, not just
/// the claiming agent's), abandoned or deleted, and an agent's go with it. `count` reads the
/// number of stored envelopes from the table itself, which the `Store` trait does not show.
/// Run on an empty, migrated database.
#[cfg(test)]
pub(crate) async fn envelopes_do_not_linger(s: &dyn Store, count: impl AsyncFn() -> i64) {
    use cutover_core::pta::PtaResult;
    let a = registered(s, 1).await;
    let b = registered(s, 2).await;
    let now = T0.plus_secs(100);
    let r1 = pta_request(1, &[a.id, b.id], now, now.plus_secs(5));
    let r2 = pta_request(2, &[a.id, b.id], now.plus_secs(1), now.plus_secs(5));
    let r3 = pta_request(3, &[b.id], now.plus_secs(2), now.plus_secs(5));
    for r in [&r1, &r2, &r3] {
        s.enqueue_pta_request(r).await.unwrap();
    }
    assert_eq!(count().await, 5);
    assert_eq!(s.claim_pta_requests(a.id, now, 10).await.unwrap().len(), 2);
    assert_eq!(
        count().await,
        1,
        "a claim deletes every envelope of the claimed requests"
    );
    assert_eq!(
        s.complete_pta_request(r1.id, a.id, PtaResult::Success, None, now)
            .await
            .unwrap(),
        CompleteOutcome::Accepted
    );
    s.abandon_pta_request(r3.id).await.unwrap();
    assert_eq!(count().await, 0, "abandoning deletes the envelopes");
    let r4 = pta_request(4, &[a.id, b.id], now, now.plus_secs(5));
    s.enqueue_pta_request(&r4).await.unwrap();
    s.delete_agent(b.id, &audit("deleteAgent", "b"))
        .await
        .unwrap();
    assert_eq!(count().await, 1, "a deleted agent's envelopes go with it");
    s.delete_pta_request(r4.id).await.unwrap();
    assert_eq!(count().await, 0);
    let r5 = pta_request(5, &[a.id], now, now);
    s.enqueue_pta_request(&r5).await.unwrap();
    assert_eq!(count().await, 1);
    s.purge_expired(Timestamp(now.plus_secs(3_600).0 + 1))
        .await
        .unwrap();
    assert_eq!(count().await, 0, "a purged request's envelopes go with it");
}

/// A grant's lifetime cap (`not_after`) is stored and read back wherever a grant is.
async fn grant_lifetime_cap(s: &dyn Store) {
    let cap = T0.plus_secs(3_600);
    let capped = Grant {
        not_after: Some(cap),
        ..grant("c1", Some(Uuid::new_v4()))
    };
    let uncapped = grant("c1", Some(Uuid::new_v4()));
    for (g, hash) in [(&capped, "code-cap"), (&uncapped, "code-uncapped")] {
        s.create_grant_with_code(g, &code(hash, g.id))
            .await
            .unwrap();
        assert_eq!(s.get_grant(g.id).await.unwrap().as_ref(), Some(g));
    }
    let plain = Grant {
        not_after: Some(cap.plus_secs(1)),
        ..grant("c1", None)
    };
    s.create_grant(&plain).await.unwrap();
    assert_eq!(s.get_grant(plain.id).await.unwrap(), Some(plain.clone()));
    s.insert_refresh_token("cap-r1", plain.id, T0, T0.plus_secs(100))
        .await
        .unwrap();
    assert_eq!(
        s.rotate_refresh_token("cap-r1", "cap-r2", T0.plus_secs(1), T0.plus_secs(100))
            .await
            .unwrap(),
        RefreshRotation::Rotated(plain),
        "a rotation returns the grant with its cap"
    );
}

fn stored_tap(
    user_id: Uuid,
    starts_at: Timestamp,
    expires_at: Timestamp,
    one_time: bool,
) -> StoredTap {
    let id = Uuid::new_v4();
    StoredTap {
        user_id,
        tap: cutover_core::tap::Tap {
            id,
            created_at: T0,
            starts_at,
            expires_at,
            one_time,
            used_at: None,
        },
        secret_hash: format!("tap-hash-{id}"),
        created_by: "app:helpdesk".into(),
    }
}

/// 20 concurrent `put_tap` for one user whose pass is `initial`: each returns the pass it
/// replaced, so the passes form one chain from `initial` to the pass stored last, and each
/// put wrote its audit row.
async fn put_race(store: &Arc<dyn Store>, uid: Uuid, initial: Option<Uuid>) {
    let target = format!("tap-put-race-{uid}");
    let puts: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let target = target.clone();
            let t = stored_tap(uid, T0, T0.plus_secs(3_600), i % 2 == 0);
            tokio::spawn(async move {
                let replaced = store
                    .put_tap(&t, &audit("createTap", &target))
                    .await
                    .unwrap();
                (t.tap.id, replaced.map(|r| r.id))
            })
        })
        .collect();
    let mut next = std::collections::HashMap::new();
    for t in puts {
        let (put, replaced) = t.await.expect("task");
        assert!(
            next.insert(replaced, put).is_none(),
            "no two puts replaced the same pass ({replaced:?})"
        );
    }
    let mut at = initial;
    for _ in 0..20 {
        at = Some(next[&at]);
    }
    assert_eq!(
        store.get_tap(uid).await.unwrap().map(|t| t.tap.id),
        at,
        "the last put in the chain is stored"
    );
    assert_eq!(audits_for(&**store, &target).await.len(), 20);
}

/// Temporary Access Passes: one per user (a new one replaces it), delete, the atomic use of a
/// one-time pass, validity bounds, the user's deletion and the purge.
async fn temporary_access_passes(store: Arc<dyn Store>) {
    let s = &*store;
    s.create_domain(
        &domain_with(
            "tap.example",
            DomainAuthentication::Managed(Default::default()),
        ),
        &audit("createDomain", "tap.example"),
    )
    .await
    .unwrap();
    let u = user("tap@tap.example");
    s.create_user(&u, &audit("createUser", "tap-user"))
        .await
        .unwrap();
    let uid = u.user.id;
    let start = T0.plus_secs(100);
    let end = start.plus_secs(3_600);
    assert_eq!(s.get_tap(uid).await.unwrap(), None);

    // Put, replace, get.
    let first = stored_tap(uid, start, end, true);
    assert_eq!(
        s.put_tap(&first, &audit("createTap", "tap-put-1"))
            .await
            .unwrap(),
        None,
        "nothing replaced"
    );
    assert_eq!(s.get_tap(uid).await.unwrap(), Some(first.clone()));
    let second = stored_tap(uid, start, end.plus_secs(60), false);
    assert_eq!(
        s.put_tap(&second, &audit("createTap", "tap-put-2"))
            .await
            .unwrap(),
        Some(first.tap.clone()),
        "a new pass replaces the user's pass and returns it"
    );
    let got = s.get_tap(uid).await.unwrap().expect("the second pass");
    assert_eq!(got, second);
    assert_eq!(got.secret_hash, second.secret_hash);
    let shown = format!("{got:?}");
    assert!(
        !shown.contains(&second.secret_hash) && shown.contains("***"),
        "Debug hides the secret hash: {shown}"
    );
    assert_eq!(audits_for(s, "tap-put-1").await.len(), 1);
    assert_eq!(audits_for(s, "tap-put-2").await.len(), 1);
    assert!(
        !s.consume_tap(uid, first.tap.id, start).await.unwrap(),
        "a replaced pass is gone"
    );

    // A missing user: NotFound, nothing written.
    let stranger = Uuid::new_v4();
    assert!(matches!(
        s.put_tap(
            &stored_tap(stranger, start, end, true),
            &audit("createTap", "tap-stranger")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "tap-stranger").await.is_empty());
    assert_eq!(s.get_tap(stranger).await.unwrap(), None);

    // Delete: only the user's pass with that id.
    assert!(matches!(
        s.delete_tap(uid, first.tap.id, &audit("deleteTap", "tap-del-wrong"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_tap(
            stranger,
            second.tap.id,
            &audit("deleteTap", "tap-del-wrong")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "tap-del-wrong").await.is_empty());
    assert_eq!(s.get_tap(uid).await.unwrap(), Some(second.clone()));
    s.delete_tap(uid, second.tap.id, &audit("deleteTap", "tap-del"))
        .await
        .unwrap();
    assert_eq!(s.get_tap(uid).await.unwrap(), None);
    assert_eq!(audits_for(s, "tap-del").await.len(), 1);
    assert!(matches!(
        s.delete_tap(uid, second.tap.id, &audit("deleteTap", "tap-del-again"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(!s.consume_tap(uid, second.tap.id, start).await.unwrap());

    // A one-time pass: not before its start, not at its expiry, once in between.
    let once = stored_tap(uid, start, end, true);
    s.put_tap(&once, &audit("createTap", "tap-once"))
        .await
        .unwrap();
    assert!(
        !s.consume_tap(uid, once.tap.id, start.plus_millis(-1))
            .await
            .unwrap(),
        "not yet valid"
    );
    assert!(
        !s.consume_tap(uid, once.tap.id, end).await.unwrap(),
        "expired at its expiry millisecond"
    );
    assert!(!s.consume_tap(stranger, once.tap.id, start).await.unwrap());
    assert!(!s.consume_tap(uid, Uuid::new_v4(), start).await.unwrap());
    assert_eq!(
        s.get_tap(uid).await.unwrap().unwrap().tap.used_at,
        None,
        "refused uses change nothing"
    );
    let used_at = end.plus_millis(-1);
    assert!(s.consume_tap(uid, once.tap.id, used_at).await.unwrap());
    assert!(
        !s.consume_tap(uid, once.tap.id, used_at).await.unwrap(),
        "a one-time pass is used once"
    );
    assert!(!s.consume_tap(uid, once.tap.id, start).await.unwrap());
    assert_eq!(
        s.get_tap(uid).await.unwrap().unwrap().tap.used_at,
        Some(used_at)
    );

    // 50 concurrent uses of a fresh one-time pass: exactly one wins.
    let racer = stored_tap(uid, start, end, true);
    assert_eq!(
        s.put_tap(&racer, &audit("createTap", "tap-race"))
            .await
            .unwrap()
            .map(|t| t.used_at),
        Some(Some(used_at)),
        "the replaced pass is returned as it was, used"
    );
    let race_at = start.plus_secs(10);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let id = racer.tap.id;
            tokio::spawn(async move { store.consume_tap(uid, id, race_at).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one of 50 concurrent uses wins");
    assert_eq!(
        s.get_tap(uid).await.unwrap().unwrap().tap.used_at,
        Some(race_at)
    );

    // A multi-use pass: usable again and again within its validity, never marked.
    let multi = stored_tap(uid, start, end, false);
    s.put_tap(&multi, &audit("createTap", "tap-multi"))
        .await
        .unwrap();
    for at in [start, start.plus_secs(1), end.plus_millis(-1), start] {
        assert!(
            s.consume_tap(uid, multi.tap.id, at).await.unwrap(),
            "{at:?}"
        );
    }
    assert!(!s.consume_tap(uid, multi.tap.id, end).await.unwrap());
    assert!(
        !s.consume_tap(uid, multi.tap.id, start.plus_millis(-1))
            .await
            .unwrap()
    );
    assert_eq!(s.get_tap(uid).await.unwrap(), Some(multi.clone()));

    // 20 concurrent replacements, of a pass and of none: each returns the pass it replaced.
    put_race(&store, uid, Some(multi.tap.id)).await;
    let fresh_user = user("tap-race@tap.example");
    s.create_user(&fresh_user, &audit("createUser", "tap-race-user"))
        .await
        .unwrap();
    put_race(&store, fresh_user.user.id, None).await;

    // Deleting the user deletes the pass.
    let gone = user("tap-gone@tap.example");
    s.create_user(&gone, &audit("createUser", "tap-gone"))
        .await
        .unwrap();
    let gid = gone.user.id;
    s.put_tap(
        &stored_tap(gid, start, end, true),
        &audit("createTap", "tap-gone"),
    )
    .await
    .unwrap();
    s.delete_user(gid, &audit("deleteUser", "tap-gone"))
        .await
        .unwrap();
    assert_eq!(s.get_tap(gid).await.unwrap(), None);
    s.create_user(&gone, &audit("createUser", "tap-gone-again"))
        .await
        .unwrap();
    assert_eq!(
        s.get_tap(gid).await.unwrap(),
        None,
        "a user created again has no pass"
    );

    // The purge: a pass expired more than a day ago goes, one expired exactly a day ago stays.
    let keep = crate::sql::TAP_KEEP_SECS;
    let purge_at = T0.plus_secs(30 * 86_400);
    let old = stored_tap(gid, T0, purge_at.minus_secs(keep).plus_millis(-1), true);
    let fresh = stored_tap(uid, T0, purge_at.minus_secs(keep), false);
    s.put_tap(&old, &audit("createTap", "tap-purge-old"))
        .await
        .unwrap();
    s.put_tap(&fresh, &audit("createTap", "tap-purge-fresh"))
        .await
        .unwrap();
    let removed = s.purge_expired(purge_at).await.unwrap();
    assert!(removed >= 1);
    assert_eq!(
        s.get_tap(gid).await.unwrap(),
        None,
        "expired over a day ago: purged"
    );
    assert_eq!(
        s.get_tap(uid).await.unwrap(),
        Some(fresh),
        "expired a day ago, not more: kept"
    );
}

// Passkeys, WebAuthn ceremonies and TOTP enrolments.

/// A user in `domain` (created when missing); returns their id.
async fn mfa_user(s: &dyn Store, domain: &str, local: &str) -> Uuid {
    if s.get_domain(domain).await.unwrap().is_none() {
        s.create_domain(
            &domain_with(domain, DomainAuthentication::Managed(Default::default())),
            &audit("createDomain", domain),
        )
        .await
        .unwrap();
    }
    let u = user(&format!("{local}@{domain}"));
    s.create_user(&u, &audit("createUser", &format!("{local}@{domain}")))
        .await
        .unwrap();
    u.user.id
}

fn passkey(user_id: Uuid, credential_id: &str, created_at: Timestamp) -> PasskeyRecord {
    PasskeyRecord {
        id: Uuid::new_v4(),
        user_id,
        credential_id: credential_id.into(),
        name: format!("key {credential_id}"),
        aaguid: Uuid::nil(),
        credential: format!(r#"{{"cred":"{credential_id}","publicKey":"pQECAyYgAS"}}"#),
        backup_eligible: true,
        backed_up: false,
        sign_count: 0,
        device_family: "securityKey".into(),
        attestation_format: "none".into(),
        attested: false,
        transports: vec!["usb".into(), "nfc".into()],
        created_at,
        last_used_at: None,
    }
}

fn is_conflict(r: &StoreResult<()>, message: &str) -> bool {
    matches!(r, Err(StoreError::Conflict(m)) if m == message)
}

/// Passkeys: add, list (oldest first), look up by credential id, page over everyone's, rename,
/// delete; a credential id is registered once across all users; the per-user limit at its
/// edge; audit rows only for what was written.
async fn passkeys(s: &dyn Store) {
    const MAX: u32 = 3;
    let a = mfa_user(s, "pk.example", "a").await;
    let b = mfa_user(s, "pk.example", "b").await;
    assert!(s.list_passkeys(a).await.unwrap().is_empty());
    assert_eq!(s.get_passkey_by_credential_id("pk-1").await.unwrap(), None);

    // Add, get by credential id, list oldest first (not in the order added).
    let mut first = passkey(a, "pk-1", T0.plus_secs(2));
    first.aaguid = Uuid::new_v4();
    first.sign_count = 7;
    first.attested = true;
    first.attestation_format = "packed".into();
    first.device_family = "iPhone".into();
    first.backed_up = true;
    first.last_used_at = Some(T0.plus_secs(3));
    s.add_passkey(&first, MAX, &audit("addPasskey", "pk-add-1"))
        .await
        .unwrap();
    let older = passkey(a, "pk-2", T0.plus_secs(1));
    s.add_passkey(&older, MAX, &audit("addPasskey", "pk-add-2"))
        .await
        .unwrap();
    assert_eq!(
        s.get_passkey_by_credential_id("pk-1").await.unwrap(),
        Some(first.clone()),
        "every field round-trips"
    );
    assert_eq!(
        s.get_passkey_by_credential_id("PK-1").await.unwrap(),
        None,
        "credential ids match exactly"
    );
    assert_eq!(
        s.list_passkeys(a).await.unwrap(),
        vec![older.clone(), first.clone()],
        "oldest first"
    );
    assert_eq!(audits_for(s, "pk-add-1").await.len(), 1);
    assert_eq!(audits_for(s, "pk-add-2").await.len(), 1);

    // A missing user: NotFound, nothing written.
    let stranger = Uuid::new_v4();
    assert!(matches!(
        s.add_passkey(
            &passkey(stranger, "pk-stranger", T0),
            MAX,
            &audit("addPasskey", "pk-stranger")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "pk-stranger").await.is_empty());
    assert_eq!(
        s.get_passkey_by_credential_id("pk-stranger").await.unwrap(),
        None
    );

    // A credential id is registered once, across all users (and Cutover's id once too).
    for (owner, dup) in [
        (b, passkey(b, "pk-1", T0)),
        (a, passkey(a, "pk-1", T0)),
        (
            b,
            PasskeyRecord {
                id: first.id,
                ..passkey(b, "pk-fresh", T0)
            },
        ),
    ] {
        let r = s
            .add_passkey(&dup, MAX, &audit("addPasskey", "pk-dup"))
            .await;
        assert!(is_conflict(&r, PASSKEY_CREDENTIAL_REGISTERED), "{r:?}");
        if owner == b {
            assert!(s.list_passkeys(b).await.unwrap().is_empty());
        }
    }
    assert!(audits_for(s, "pk-dup").await.is_empty(), "nothing written");
    assert_eq!(
        s.list_passkeys(a).await.unwrap(),
        vec![older.clone(), first.clone()]
    );
    assert_eq!(
        s.get_passkey_by_credential_id("pk-fresh").await.unwrap(),
        None
    );

    // The limit at its edge: the add at MAX - 1 passkeys succeeds, the one at MAX is refused
    // (whichever conflict applies, the credential id is checked first); a limit one higher
    // lets one more in.
    let third = passkey(a, "pk-3", T0.plus_secs(3));
    s.add_passkey(&third, MAX, &audit("addPasskey", "pk-add-3"))
        .await
        .unwrap();
    assert_eq!(s.list_passkeys(a).await.unwrap().len(), MAX as usize);
    let fourth = passkey(a, "pk-4", T0.plus_secs(4));
    let r = s
        .add_passkey(&fourth, MAX, &audit("addPasskey", "pk-add-4-refused"))
        .await;
    assert!(is_conflict(&r, PASSKEY_LIMIT_REACHED), "{r:?}");
    let r = s
        .add_passkey(
            &passkey(a, "pk-1", T0),
            MAX,
            &audit("addPasskey", "pk-add-4-refused"),
        )
        .await;
    assert!(is_conflict(&r, PASSKEY_CREDENTIAL_REGISTERED), "{r:?}");
    assert!(audits_for(s, "pk-add-4-refused").await.is_empty());
    assert_eq!(s.get_passkey_by_credential_id("pk-4").await.unwrap(), None);
    s.add_passkey(&fourth, MAX + 1, &audit("addPasskey", "pk-add-4"))
        .await
        .unwrap();
    let r = s
        .add_passkey(
            &passkey(a, "pk-5", T0),
            MAX + 1,
            &audit("addPasskey", "pk-add-5"),
        )
        .await;
    assert!(is_conflict(&r, PASSKEY_LIMIT_REACHED), "{r:?}");
    let r = s
        .add_passkey(
            &passkey(b, "pk-b0", T0),
            0,
            &audit("addPasskey", "pk-add-5"),
        )
        .await;
    assert!(
        is_conflict(&r, PASSKEY_LIMIT_REACHED),
        "a limit of 0 refuses all: {r:?}"
    );
    assert!(audits_for(s, "pk-add-5").await.is_empty());
    assert_eq!(
        s.list_passkeys(a).await.unwrap(),
        vec![older.clone(), first.clone(), third.clone(), fourth.clone()]
    );

    // Everyone's passkeys, paged by id.
    let b1 = passkey(b, "pk-b1", T0);
    s.add_passkey(&b1, MAX, &audit("addPasskey", "pk-add-b1"))
        .await
        .unwrap();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_all_passkeys(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page);
    }
    let ids: Vec<Uuid> = paged.iter().map(|p| p.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "by id, each once");
    assert_eq!(paged, s.list_all_passkeys(None, 500).await.unwrap());
    for p in [&first, &older, &third, &fourth, &b1] {
        assert!(paged.contains(p), "{p:?} is listed");
    }

    // Rename: only the user's own passkey.
    assert!(matches!(
        s.rename_passkey(b, first.id, "mine", &audit("renamePasskey", "pk-ren-wrong"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.rename_passkey(
            a,
            Uuid::new_v4(),
            "mine",
            &audit("renamePasskey", "pk-ren-wrong")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "pk-ren-wrong").await.is_empty());
    s.rename_passkey(
        a,
        first.id,
        "Work laptop",
        &audit("renamePasskey", "pk-ren"),
    )
    .await
    .unwrap();
    assert_eq!(audits_for(s, "pk-ren").await.len(), 1);
    let renamed = s
        .get_passkey_by_credential_id("pk-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        renamed,
        PasskeyRecord {
            name: "Work laptop".into(),
            ..first.clone()
        },
        "only the name changed"
    );

    // Delete: only the user's own passkey, once.
    assert!(matches!(
        s.delete_passkey(b, older.id, &audit("deletePasskey", "pk-del-wrong"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "pk-del-wrong").await.is_empty());
    s.delete_passkey(a, older.id, &audit("deletePasskey", "pk-del"))
        .await
        .unwrap();
    assert_eq!(audits_for(s, "pk-del").await.len(), 1);
    assert!(matches!(
        s.delete_passkey(a, older.id, &audit("deletePasskey", "pk-del-again"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "pk-del-again").await.is_empty());
    assert_eq!(s.get_passkey_by_credential_id("pk-2").await.unwrap(), None);
    assert_eq!(
        s.list_passkeys(a).await.unwrap(),
        vec![renamed, third, fourth]
    );
    // The deleted credential id can be registered again (here, by someone else).
    s.add_passkey(
        &passkey(b, "pk-2", T0),
        MAX,
        &audit("addPasskey", "pk-readd"),
    )
    .await
    .unwrap();
}

/// Racing adds: at the limit only as many succeed as there is room for; one credential id
/// added for many users at once is registered for exactly one.
async fn passkey_races(store: Arc<dyn Store>) {
    const MAX: u32 = 5;
    let s = &*store;
    let u = mfa_user(s, "pkrace.example", "limit").await;
    for i in 0..MAX - 1 {
        s.add_passkey(
            &passkey(u, &format!("race-pre-{i}"), T0),
            MAX,
            &audit("addPasskey", "pk-race-pre"),
        )
        .await
        .unwrap();
    }
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .add_passkey(
                        &passkey(u, &format!("race-{i}"), T0.plus_secs(10)),
                        MAX,
                        &audit("addPasskey", "pk-race"),
                    )
                    .await
            })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => added += 1,
            r => assert!(is_conflict(&r, PASSKEY_LIMIT_REACHED), "{r:?}"),
        }
    }
    assert_eq!(
        added, 1,
        "of 10 concurrent adds with room for one, one succeeds"
    );
    assert_eq!(s.list_passkeys(u).await.unwrap().len(), MAX as usize);
    assert_eq!(audits_for(s, "pk-race").await.len(), 1);

    // One credential id, ten users at once (PostgreSQL: different users' adds do not wait
    // for each other, so the unique index decides).
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(mfa_user(s, "pkrace.example", &format!("dup{i}")).await);
    }
    let tasks: Vec<_> = users
        .iter()
        .map(|&owner| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .add_passkey(
                        &passkey(owner, "race-shared", T0),
                        MAX,
                        &audit("addPasskey", "pk-race-shared"),
                    )
                    .await
            })
        })
        .collect();
    let mut added = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => added += 1,
            r => assert!(is_conflict(&r, PASSKEY_CREDENTIAL_REGISTERED), "{r:?}"),
        }
    }
    assert_eq!(added, 1, "a credential id is registered for one user");
    assert_eq!(audits_for(s, "pk-race-shared").await.len(), 1);
    let owner = s
        .get_passkey_by_credential_id("race-shared")
        .await
        .unwrap()
        .expect("registered")
        .user_id;
    for other in users.into_iter().filter(|&o| o != owner) {
        assert!(s.list_passkeys(other).await.unwrap().is_empty());
    }
}

/// A passkey's use moves its signature counter forward and never back; authenticators that
/// never count (0 and 0) are let through; of racing uses with the same count one wins.
async fn passkey_use(store: Arc<dyn Store>) {
    let s = &*store;
    let u = mfa_user(s, "pkuse.example", "user").await;
    let counting = PasskeyRecord {
        sign_count: 5,
        ..passkey(u, "use-counting", T0)
    };
    let zero = passkey(u, "use-zero", T0.plus_secs(1));
    for p in [&counting, &zero] {
        s.add_passkey(p, 10, &audit("addPasskey", "pk-use"))
            .await
            .unwrap();
    }
    let get = async |cred: &str| {
        s.get_passkey_by_credential_id(cred)
            .await
            .unwrap()
            .expect("passkey")
    };
    let t1 = T0.plus_secs(60);

    // Higher: stored with the backup state and the time.
    assert!(
        s.record_passkey_use(counting.id, 6, true, t1)
            .await
            .unwrap()
    );
    let after_use = get("use-counting").await;
    assert_eq!(
        after_use,
        PasskeyRecord {
            sign_count: 6,
            backed_up: true,
            last_used_at: Some(t1),
            ..counting.clone()
        }
    );
    // Equal and lower: refused, nothing written.
    for presented in [6, 5, 0] {
        assert!(
            !s.record_passkey_use(counting.id, presented, false, t1.plus_secs(1))
                .await
                .unwrap(),
            "count {presented} after 6 is refused"
        );
    }
    assert_eq!(
        get("use-counting").await,
        after_use,
        "refusals write nothing"
    );
    assert!(
        !s.record_passkey_use(Uuid::new_v4(), 100, false, t1)
            .await
            .unwrap(),
        "no such passkey"
    );

    // An authenticator that never counts: 0 after 0, again and again.
    for (i, at) in [t1, t1.plus_secs(5)].into_iter().enumerate() {
        assert!(
            s.record_passkey_use(zero.id, 0, i == 0, at).await.unwrap(),
            "0/0 use {i}"
        );
        let z = get("use-zero").await;
        assert_eq!(
            (z.sign_count, z.backed_up, z.last_used_at),
            (0, i == 0, Some(at))
        );
    }
    // ... until it starts counting: then 0 is refused.
    assert!(s.record_passkey_use(zero.id, 1, false, t1).await.unwrap());
    assert!(!s.record_passkey_use(zero.id, 0, false, t1).await.unwrap());
    assert_eq!(get("use-zero").await.sign_count, 1);

    // 50 concurrent uses presenting the same higher count: exactly one is recorded.
    let race_at = t1.plus_secs(100);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let id = counting.id;
            tokio::spawn(async move {
                store
                    .record_passkey_use(id, 100, false, race_at)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.expect("task") {
            won += 1;
        }
    }
    assert_eq!(
        won, 1,
        "exactly one of 50 concurrent uses with one count wins"
    );
    let raced = get("use-counting").await;
    assert_eq!((raced.sign_count, raced.last_used_at), (100, Some(race_at)));
    // The maximum count round-trips.
    assert!(
        s.record_passkey_use(counting.id, u32::MAX, false, race_at)
            .await
            .unwrap()
    );
    assert_eq!(get("use-counting").await.sign_count, u32::MAX);
    assert!(
        !s.record_passkey_use(counting.id, u32::MAX, false, race_at)
            .await
            .unwrap()
    );
}

fn challenge(id: &str, user_id: Option<Uuid>, expires_at: Timestamp) -> WebauthnChallenge {
    WebauthnChallenge {
        id: id.into(),
        kind: if user_id.is_some() {
            WebauthnChallenge::REGISTRATION
        } else {
            WebauthnChallenge::AUTHENTICATION
        }
        .into(),
        user_id,
        state: format!(r#"{{"challenge":"secret-{id}"}}"#),
        created_at: T0,
        expires_at,
    }
}

/// WebAuthn ceremony state: stored once per id, taken once (and never after it expired), 50
/// racing takes get it once; the purge removes expired ones.
async fn webauthn_challenges(store: Arc<dyn Store>) {
    let s = &*store;
    let u = mfa_user(s, "wa.example", "user").await;
    let end = T0.plus_secs(300);

    let reg = challenge("wa-reg", Some(u), end);
    s.put_webauthn_challenge(&reg).await.unwrap();
    let shown = format!("{reg:?}");
    assert!(
        !shown.contains("wa-reg") && !shown.contains("secret-") && shown.contains("***"),
        "Debug hides the handle and the state: {shown}"
    );
    assert!(matches!(
        s.put_webauthn_challenge(&challenge("wa-reg", None, end))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.put_webauthn_challenge(&challenge("wa-stranger", Some(Uuid::new_v4()), end))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        s.put_webauthn_challenge(&WebauthnChallenge {
            kind: "enrolment".into(),
            ..challenge("wa-bad-kind", None, end)
        })
        .await
        .is_err(),
        "only the two kinds are stored"
    );
    for missing in ["wa-stranger", "wa-bad-kind", "wa-never"] {
        assert_eq!(s.take_webauthn_challenge(missing, T0).await.unwrap(), None);
    }

    // Taken once, before its expiry.
    assert_eq!(
        s.take_webauthn_challenge("wa-reg", end.plus_millis(-1))
            .await
            .unwrap(),
        Some(reg.clone())
    );
    assert_eq!(s.take_webauthn_challenge("wa-reg", T0).await.unwrap(), None);

    // Expired at its expiry millisecond, and deleted by the take all the same.
    let auth = challenge("wa-auth", None, end);
    s.put_webauthn_challenge(&auth).await.unwrap();
    assert_eq!(
        s.take_webauthn_challenge("wa-auth", end).await.unwrap(),
        None
    );
    assert_eq!(
        s.take_webauthn_challenge("wa-auth", T0).await.unwrap(),
        None,
        "an expired take deletes it"
    );
    // Its id is free again.
    s.put_webauthn_challenge(&auth).await.unwrap();
    assert_eq!(
        s.take_webauthn_challenge("wa-auth", T0).await.unwrap(),
        Some(auth)
    );

    // 50 concurrent takes: exactly one gets it.
    s.put_webauthn_challenge(&challenge("wa-race", Some(u), end))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take_webauthn_challenge("wa-race", T0).await.unwrap() })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        if let Some(c) = t.await.expect("task") {
            assert_eq!(c.id, "wa-race");
            taken += 1;
        }
    }
    assert_eq!(taken, 1, "exactly one of 50 concurrent takes gets it");

    // The purge: expired ones go (counted), live ones stay.
    let purge_at = T0.plus_secs(40 * 86_400);
    for (id, expires) in [
        ("wa-purge-old", purge_at.plus_millis(-1)),
        ("wa-purge-now", purge_at),
        ("wa-purge-live", purge_at.plus_millis(1)),
    ] {
        s.put_webauthn_challenge(&challenge(id, Some(u), expires))
            .await
            .unwrap();
    }
    let removed = s.purge_expired(purge_at).await.unwrap();
    assert!(
        removed >= 2,
        "both expired challenges are counted: {removed}"
    );
    for gone in ["wa-purge-old", "wa-purge-now"] {
        assert_eq!(s.take_webauthn_challenge(gone, T0).await.unwrap(), None);
    }
    assert!(
        s.take_webauthn_challenge("wa-purge-live", T0)
            .await
            .unwrap()
            .is_some(),
        "a live challenge survives the purge"
    );
}

fn totp(user_id: Uuid, name: &str) -> TotpRecord {
    let id = Uuid::new_v4();
    TotpRecord {
        user_id,
        id,
        secret_sealed: format!("sealed-totp-{id}"),
        params: r#"{"digits":6,"period":30,"algorithm":"SHA1"}"#.into(),
        state: r#"{"lastStep":null,"failures":[]}"#.into(),
        version: 0,
        created_at: T0,
        confirmed_at: None,
        name: name.into(),
    }
}

/// TOTP enrolments: one per user (a new one replaces it), the compare-and-set of the
/// verifier's state (a stale version writes nothing; of racing updates one wins),
/// confirmation, delete.
async fn totp_enrolments(store: Arc<dyn Store>) {
    let s = &*store;
    let u = mfa_user(s, "totp.example", "user").await;
    let other = mfa_user(s, "totp.example", "other").await;
    assert_eq!(s.get_totp(u).await.unwrap(), None);

    // A missing user: NotFound, nothing written.
    let stranger = Uuid::new_v4();
    assert!(matches!(
        s.put_totp(
            &totp(stranger, "phone"),
            &audit("createTotp", "totp-stranger")
        )
        .await,
        Err(StoreError::NotFound)
    ));
    assert!(audits_for(s, "totp-stranger").await.is_empty());
    assert_eq!(s.get_totp(stranger).await.unwrap(), None);

    // Put (pending), get.
    let pending = totp(u, "phone");
    s.put_totp(&pending, &audit("createTotp", "totp-put"))
        .await
        .unwrap();
    assert_eq!(s.get_totp(u).await.unwrap(), Some(pending.clone()));
    assert_eq!(audits_for(s, "totp-put").await.len(), 1);
    let shown = format!("{pending:?}");
    assert!(
        !shown.contains(&pending.secret_sealed) && shown.contains("***"),
        "Debug hides the sealed secret: {shown}"
    );

    // Another user's enrolment with this id: Conflict, nothing written.
    assert!(matches!(
        s.put_totp(
            &TotpRecord {
                id: pending.id,
                ..totp(other, "clash")
            },
            &audit("createTotp", "totp-clash")
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(audits_for(s, "totp-clash").await.is_empty());
    assert_eq!(s.get_totp(other).await.unwrap(), None);
    assert_eq!(s.get_totp(u).await.unwrap(), Some(pending.clone()));

    // Compare-and-set on the version.
    let (id, v0) = (pending.id, pending.version);
    assert!(
        s.update_totp_state(u, id, v0, r#"{"step":1}"#, None)
            .await
            .unwrap()
    );
    let v1 = s.get_totp(u).await.unwrap().unwrap();
    assert_eq!(
        v1,
        TotpRecord {
            state: r#"{"step":1}"#.into(),
            version: v0 + 1,
            ..pending.clone()
        },
        "state and version change, still pending"
    );
    for (user_id, tid, version) in [
        (u, id, v0),
        (u, id, v0 + 2),
        (u, Uuid::new_v4(), v0 + 1),
        (other, id, v0 + 1),
    ] {
        assert!(
            !s.update_totp_state(user_id, tid, version, r#"{"step":9}"#, Some(T0))
                .await
                .unwrap(),
            "({user_id}, {tid}, {version}) does not match"
        );
    }
    assert_eq!(
        s.get_totp(u).await.unwrap(),
        Some(v1.clone()),
        "a stale update changes nothing"
    );

    // Confirmation: set once, kept by later updates.
    let confirmed_at = T0.plus_secs(30);
    assert!(
        s.update_totp_state(u, id, v1.version, r#"{"step":2}"#, Some(confirmed_at))
            .await
            .unwrap()
    );
    assert!(
        s.update_totp_state(
            u,
            id,
            v1.version + 1,
            r#"{"step":3}"#,
            Some(T0.plus_secs(90))
        )
        .await
        .unwrap()
    );
    assert!(
        s.update_totp_state(u, id, v1.version + 2, r#"{"step":4}"#, None)
            .await
            .unwrap()
    );
    let confirmed = s.get_totp(u).await.unwrap().unwrap();
    assert_eq!(
        (
            confirmed.confirmed_at,
            confirmed.version,
            confirmed.state.as_str()
        ),
        (Some(confirmed_at), v1.version + 3, r#"{"step":4}"#)
    );

    // 50 concurrent updates from one version: exactly one wins, and its state is stored.
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let version = confirmed.version;
            tokio::spawn(async move {
                let state = format!(r#"{{"racer":{i}}}"#);
                let won = store
                    .update_totp_state(u, id, version, &state, None)
                    .await
                    .unwrap();
                won.then_some(state)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.expect("task"));
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 50 concurrent updates wins"
    );
    let raced = s.get_totp(u).await.unwrap().unwrap();
    assert_eq!(
        (raced.version, &raced.state),
        (confirmed.version + 1, &winners[0])
    );

    // Replace (a confirmed enrolment by a new, pending one): the old id no longer matches.
    let replacement = totp(u, "new phone");
    s.put_totp(&replacement, &audit("createTotp", "totp-replace"))
        .await
        .unwrap();
    assert_eq!(s.get_totp(u).await.unwrap(), Some(replacement.clone()));
    assert_eq!(audits_for(s, "totp-replace").await.len(), 1);
    assert!(
        !s.update_totp_state(u, id, raced.version, "{}", None)
            .await
            .unwrap()
    );

    // Delete: only the user's enrolment with that id, once.
    for (user_id, tid) in [(u, id), (other, replacement.id)] {
        assert!(matches!(
            s.delete_totp(user_id, tid, &audit("deleteTotp", "totp-del-wrong"))
                .await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(audits_for(s, "totp-del-wrong").await.is_empty());
    s.delete_totp(u, replacement.id, &audit("deleteTotp", "totp-del"))
        .await
        .unwrap();
    assert_eq!(audits_for(s, "totp-del").await.len(), 1);
    assert_eq!(s.get_totp(u).await.unwrap(), None);
    assert!(matches!(
        s.delete_totp(u, replacement.id, &audit("deleteTotp", "totp-del-again"))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(
        !s.update_totp_state(u, replacement.id, 0, "{}", None)
            .await
            .unwrap()
    );
}

/// Deleting a user deletes their passkeys, their TOTP enrolment and their ceremonies in
/// progress; a user created again with the same id starts with none.
async fn passkeys_totp_cascade(s: &dyn Store) {
    let gone = user("gone@mfagone.example");
    s.create_domain(
        &domain_with(
            "mfagone.example",
            DomainAuthentication::Managed(Default::default()),
        ),
        &audit("createDomain", "mfagone.example"),
    )
    .await
    .unwrap();
    s.create_user(&gone, &audit("createUser", "mfa-gone"))
        .await
        .unwrap();
    let g = gone.user.id;
    for cred in ["gone-1", "gone-2"] {
        s.add_passkey(&passkey(g, cred, T0), 5, &audit("addPasskey", "mfa-gone"))
            .await
            .unwrap();
    }
    s.put_totp(&totp(g, "phone"), &audit("createTotp", "mfa-gone"))
        .await
        .unwrap();
    let end = T0.plus_secs(300);
    s.put_webauthn_challenge(&challenge("gone-reg", Some(g), end))
        .await
        .unwrap();
    s.put_webauthn_challenge(&challenge("gone-anon", None, end))
        .await
        .unwrap();

    s.delete_user(g, &audit("deleteUser", "mfa-gone"))
        .await
        .unwrap();
    assert!(s.list_passkeys(g).await.unwrap().is_empty());
    for cred in ["gone-1", "gone-2"] {
        assert_eq!(s.get_passkey_by_credential_id(cred).await.unwrap(), None);
    }
    assert!(
        s.list_all_passkeys(None, 500)
            .await
            .unwrap()
            .iter()
            .all(|p| p.user_id != g)
    );
    assert_eq!(s.get_totp(g).await.unwrap(), None);
    assert_eq!(
        s.take_webauthn_challenge("gone-reg", T0).await.unwrap(),
        None
    );
    assert!(
        s.take_webauthn_challenge("gone-anon", T0)
            .await
            .unwrap()
            .is_some(),
        "a challenge naming no user stays"
    );

    s.create_user(&gone, &audit("createUser", "mfa-gone-again"))
        .await
        .unwrap();
    assert!(s.list_passkeys(g).await.unwrap().is_empty());
    assert_eq!(s.get_totp(g).await.unwrap(), None);
    // The credential ids are free again.
    s.add_passkey(
        &passkey(g, "gone-1", T0),
        5,
        &audit("addPasskey", "mfa-gone-again"),
    )
    .await
    .unwrap();
}

/// An audit event written on its own is listed like any other.
async fn standalone_audit(s: &dyn Store) {
    let a = audit("passkeyPossibleClone", "standalone-target");
    s.insert_audit_event(&a).await.unwrap();
    let found = s
        .list_audit_events(&AuditFilter {
            actor: None,
            action: Some("passkeyPossibleClone".into()),
            target_id: Some("standalone-target".into()),
            since: None,
            until: None,
            older_than: None,
            top: 10,
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, a.id);
    // The same event twice is refused (its id is unique), and nothing else is written.
    assert!(s.insert_audit_event(&a).await.is_err());
}

// Conditional Access (SPEC §8, §10).

fn ca_policy(name: &str, state: &str) -> CaPolicyRow {
    let id = Uuid::new_v4();
    CaPolicyRow {
        id,
        display_name: name.into(),
        state: state.into(),
        policy: format!(
            r#"{{"id":"{id}","displayName":"{name}","grantControls":{{"builtInControls":["mfa"]}}}}"#
        ),
        created_at: T0,
        modified_at: T0,
        state_changed_at: T0,
    }
}

fn named_location(name: &str, trusted: bool) -> NamedLocationRow {
    NamedLocationRow {
        id: Uuid::new_v4(),
        display_name: name.into(),
        location: r#"{"ipRanges":["192.0.2.0/24"]}"#.into(),
        is_trusted: trusted,
        created_at: T0,
        modified_at: T0,
    }
}

/// One policy's result in a sign-in record, built from its JSON form so that fields the
/// record type gains later (with their defaults) do not break the suite.
fn ca_result(policy_id: Uuid, result: &str) -> cutover_core::signin_log::PolicyResult {
    serde_json::from_value(serde_json::json!({"policyId": policy_id, "result": result}))
        .expect("a policy result")
}

fn is_conflict_msg<T>(r: &StoreResult<T>, message: &str) -> bool {
    matches!(r, Err(StoreError::Conflict(m)) if m == message)
}

/// Conditional Access policies: create, get, list (by name, case-insensitively), optimistic
/// update, delete; names unique but for case; the limit at its edge; audit rows only for what
/// was written.
async fn ca_policies(s: &dyn Store) {
    const MAX: u32 = 3;
    assert!(s.list_ca_policies().await.unwrap().is_empty());
    assert_eq!(s.get_ca_policy(Uuid::new_v4()).await.unwrap(), None);

    // Create, get (every field round-trips), list by name whatever the case.
    let mut mfa = ca_policy("Require MFA for admins", CaPolicyRow::REPORT_ONLY);
    mfa.modified_at = T0.plus_secs(1);
    mfa.state_changed_at = T0.plus_secs(2);
    s.create_ca_policy(&mfa, MAX, &audit("createCaPolicy", "ca-create-mfa"))
        .await
        .unwrap();
    let legacy = ca_policy("block legacy auth", CaPolicyRow::DISABLED);
    s.create_ca_policy(&legacy, MAX, &audit("createCaPolicy", "ca-create-legacy"))
        .await
        .unwrap();
    assert_eq!(s.get_ca_policy(mfa.id).await.unwrap(), Some(mfa.clone()));
    assert_eq!(
        s.list_ca_policies().await.unwrap(),
        vec![legacy.clone(), mfa.clone()],
        "by display name, case-insensitively"
    );
    assert_eq!(audits_for(s, "ca-create-mfa").await.len(), 1);
    assert_eq!(audits_for(s, "ca-create-legacy").await.len(), 1);

    // The same id, or the same name but for case: Conflict, nothing written.
    let r = s
        .create_ca_policy(
            &CaPolicyRow {
                id: mfa.id,
                ..ca_policy("Fresh name", CaPolicyRow::ENABLED)
            },
            MAX,
            &audit("createCaPolicy", "ca-create-dup"),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m != CA_POLICY_NAME_TAKEN),
        "{r:?}"
    );
    let r = s
        .create_ca_policy(
            &ca_policy("REQUIRE mfa FOR ADMINS", CaPolicyRow::ENABLED),
            MAX,
            &audit("createCaPolicy", "ca-create-dup"),
        )
        .await;
    assert!(is_conflict_msg(&r, CA_POLICY_NAME_TAKEN), "{r:?}");
    // A state the database does not know is refused.
    assert!(
        s.create_ca_policy(
            &ca_policy("Odd state", "on"),
            MAX,
            &audit("createCaPolicy", "ca-create-dup")
        )
        .await
        .is_err()
    );
    assert!(audits_for(s, "ca-create-dup").await.is_empty());
    assert_eq!(s.list_ca_policies().await.unwrap().len(), 2);

    // The limit at its edge: the creation at MAX - 1 policies succeeds, the one at MAX is
    // refused (a taken name is reported first); a limit one higher lets one more in; 0 refuses
    // all.
    let third = ca_policy("Third", CaPolicyRow::ENABLED);
    s.create_ca_policy(&third, MAX, &audit("createCaPolicy", "ca-create-third"))
        .await
        .unwrap();
    let fourth = ca_policy("Fourth", CaPolicyRow::ENABLED);
    let r = s
        .create_ca_policy(&fourth, MAX, &audit("createCaPolicy", "ca-create-refused"))
        .await;
    assert!(is_conflict_msg(&r, CA_POLICY_LIMIT_REACHED), "{r:?}");
    let r = s
        .create_ca_policy(
            &ca_policy("third", CaPolicyRow::ENABLED),
            MAX,
            &audit("createCaPolicy", "ca-create-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CA_POLICY_NAME_TAKEN), "{r:?}");
    let r = s
        .create_ca_policy(
            &ca_policy("Zero", CaPolicyRow::ENABLED),
            0,
            &audit("createCaPolicy", "ca-create-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CA_POLICY_LIMIT_REACHED), "{r:?}");
    assert!(audits_for(s, "ca-create-refused").await.is_empty());
    assert_eq!(s.get_ca_policy(fourth.id).await.unwrap(), None);
    s.create_ca_policy(
        &fourth,
        MAX + 1,
        &audit("createCaPolicy", "ca-create-fourth"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.list_ca_policies().await.unwrap(),
        vec![legacy.clone(), fourth.clone(), mfa.clone(), third.clone()]
    );

    // Update: the state, JSON and name change, `created_at` never does.
    let enabled = CaPolicyRow {
        display_name: "Require MFA for all admins".into(),
        state: CaPolicyRow::ENABLED.into(),
        policy: r#"{"changed":true}"#.into(),
        created_at: T0.plus_secs(999),
        modified_at: T0.plus_secs(10),
        state_changed_at: T0.plus_secs(10),
        ..mfa.clone()
    };
    s.update_ca_policy(
        &enabled,
        mfa.modified_at,
        &audit("updateCaPolicy", "ca-update"),
    )
    .await
    .unwrap();
    let stored = CaPolicyRow {
        created_at: mfa.created_at,
        ..enabled.clone()
    };
    assert_eq!(s.get_ca_policy(mfa.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(audits_for(s, "ca-update").await.len(), 1);

    // A stale update (another admin's got there first), a missing policy, a taken name:
    // refused, nothing written.
    let stale = CaPolicyRow {
        state: CaPolicyRow::DISABLED.into(),
        modified_at: T0.plus_secs(20),
        ..mfa.clone()
    };
    let r = s
        .update_ca_policy(
            &stale,
            mfa.modified_at,
            &audit("updateCaPolicy", "ca-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}");
    let r = s
        .update_ca_policy(
            &ca_policy("Nowhere", CaPolicyRow::ENABLED),
            T0,
            &audit("updateCaPolicy", "ca-update-refused"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = s
        .update_ca_policy(
            &CaPolicyRow {
                display_name: "BLOCK LEGACY AUTH".into(),
                modified_at: T0.plus_secs(20),
                ..stored.clone()
            },
            stored.modified_at,
            &audit("updateCaPolicy", "ca-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CA_POLICY_NAME_TAKEN), "{r:?}");
    assert!(audits_for(s, "ca-update-refused").await.is_empty());
    assert_eq!(s.get_ca_policy(mfa.id).await.unwrap(), Some(stored.clone()));

    // A policy may keep its own name in another case. An update whose `modified_at` is not
    // later than the one read still moves the token (by 1 ms), so the read it replaced is
    // stale afterwards.
    let recased = CaPolicyRow {
        display_name: "require mfa for ALL admins".into(),
        ..stored.clone()
    };
    s.update_ca_policy(
        &recased,
        stored.modified_at,
        &audit("updateCaPolicy", "ca-update-recase"),
    )
    .await
    .unwrap();
    let recased_stored = CaPolicyRow {
        modified_at: stored.modified_at.plus_millis(1),
        ..recased.clone()
    };
    assert_eq!(
        s.get_ca_policy(mfa.id).await.unwrap(),
        Some(recased_stored.clone())
    );
    let r = s
        .update_ca_policy(
            &recased,
            stored.modified_at,
            &audit("updateCaPolicy", "ca-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}");
    assert!(audits_for(s, "ca-update-refused").await.is_empty());

    // Delete: once, with its audit row.
    let r = s
        .delete_ca_policy(
            Uuid::new_v4(),
            &audit("deleteCaPolicy", "ca-delete-missing"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(audits_for(s, "ca-delete-missing").await.is_empty());
    s.delete_ca_policy(third.id, &audit("deleteCaPolicy", "ca-delete"))
        .await
        .unwrap();
    assert_eq!(audits_for(s, "ca-delete").await.len(), 1);
    assert_eq!(s.get_ca_policy(third.id).await.unwrap(), None);
    let r = s
        .delete_ca_policy(third.id, &audit("deleteCaPolicy", "ca-delete-missing"))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert_eq!(
        s.list_ca_policies().await.unwrap(),
        vec![legacy, fourth, recased_stored]
    );
    // Its name is free again.
    s.create_ca_policy(
        &ca_policy("THIRD", CaPolicyRow::DISABLED),
        MAX + 1,
        &audit("createCaPolicy", "ca-create-again"),
    )
    .await
    .unwrap();
}

/// Racing Conditional Access writes: of 10 creations with room for one, one succeeds; of 10
/// creations of one name (but for case), one; of 10 updates from the same read, one.
async fn ca_policy_races(store: Arc<dyn Store>) {
    let s = &*store;
    let room_for_one = u32::try_from(s.list_ca_policies().await.unwrap().len()).unwrap() + 1;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_ca_policy(
                        &ca_policy(&format!("Race {i}"), CaPolicyRow::REPORT_ONLY),
                        room_for_one,
                        &audit("createCaPolicy", "ca-race-limit"),
                    )
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            r => assert!(is_conflict_msg(&r, CA_POLICY_LIMIT_REACHED), "{r:?}"),
        }
    }
    assert_eq!(
        created, 1,
        "of 10 concurrent creations with room for one, one succeeds"
    );
    assert_eq!(
        s.list_ca_policies().await.unwrap().len(),
        room_for_one as usize
    );
    assert_eq!(audits_for(s, "ca-race-limit").await.len(), 1);

    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let name = if i % 2 == 0 { "Same name" } else { "SAME NAME" };
            tokio::spawn(async move {
                store
                    .create_ca_policy(
                        &ca_policy(name, CaPolicyRow::DISABLED),
                        1_000,
                        &audit("createCaPolicy", "ca-race-name"),
                    )
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            r => assert!(is_conflict_msg(&r, CA_POLICY_NAME_TAKEN), "{r:?}"),
        }
    }
    assert_eq!(created, 1, "a name is taken by one policy");
    assert_eq!(audits_for(s, "ca-race-name").await.len(), 1);

    let read = s
        .list_ca_policies()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.display_name.eq_ignore_ascii_case("same name"))
        .expect("created");
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let update = CaPolicyRow {
                policy: format!(r#"{{"writer":{i}}}"#),
                modified_at: read.modified_at.plus_secs(1),
                ..read.clone()
            };
            let expected = read.modified_at;
            tokio::spawn(async move {
                let r = store
                    .update_ca_policy(
                        &update,
                        expected,
                        &audit("updateCaPolicy", "ca-race-update"),
                    )
                    .await;
                (update.policy, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            (policy, Ok(())) => winners.push(policy),
            (_, r) => assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "of 10 updates from one read, one succeeds"
    );
    assert_eq!(
        s.get_ca_policy(read.id).await.unwrap().unwrap().policy,
        winners[0],
        "the winner's write is stored"
    );
    assert_eq!(audits_for(s, "ca-race-update").await.len(), 1);
}

/// Named locations: the same rules as policies (names unique but for case, a limit,
/// optimistic updates, audit rows only for what was written).
async fn named_locations(store: Arc<dyn Store>) {
    let s = &*store;
    const MAX: u32 = 2;
    assert!(s.list_named_locations().await.unwrap().is_empty());
    let office = named_location("Office", true);
    let vpn = named_location("corporate VPN", false);
    for l in [&office, &vpn] {
        s.create_named_location(l, MAX, &audit("createNamedLocation", "nl-create"))
            .await
            .unwrap();
    }
    assert_eq!(audits_for(s, "nl-create").await.len(), 2);
    assert_eq!(
        s.get_named_location(office.id).await.unwrap(),
        Some(office.clone())
    );
    assert_eq!(s.get_named_location(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        s.list_named_locations().await.unwrap(),
        vec![vpn.clone(), office.clone()],
        "by display name, case-insensitively"
    );

    let r = s
        .create_named_location(
            &named_location("OFFICE", false),
            MAX + 1,
            &audit("createNamedLocation", "nl-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, NAMED_LOCATION_NAME_TAKEN), "{r:?}");
    let r = s
        .create_named_location(
            &NamedLocationRow {
                id: office.id,
                ..named_location("Fresh", false)
            },
            MAX + 1,
            &audit("createNamedLocation", "nl-refused"),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m != NAMED_LOCATION_NAME_TAKEN),
        "{r:?}"
    );
    let home = named_location("Home", false);
    let r = s
        .create_named_location(&home, MAX, &audit("createNamedLocation", "nl-refused"))
        .await;
    assert!(is_conflict_msg(&r, NAMED_LOCATION_LIMIT_REACHED), "{r:?}");
    assert!(audits_for(s, "nl-refused").await.is_empty());
    assert_eq!(s.list_named_locations().await.unwrap().len(), 2);

    // Race: room for one more.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_named_location(
                        &named_location(&format!("Branch {i}"), false),
                        MAX + 1,
                        &audit("createNamedLocation", "nl-race"),
                    )
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            r => assert!(is_conflict_msg(&r, NAMED_LOCATION_LIMIT_REACHED), "{r:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(audits_for(s, "nl-race").await.len(), 1);

    // Update (trusted flag, JSON, name), then a stale one, a missing one and a taken name.
    let untrusted = NamedLocationRow {
        display_name: "Head office".into(),
        location: r#"{"ipRanges":["198.51.100.0/24"]}"#.into(),
        is_trusted: false,
        created_at: T0.plus_secs(5),
        modified_at: T0.plus_secs(30),
        ..office.clone()
    };
    s.update_named_location(
        &untrusted,
        office.modified_at,
        &audit("updateNamedLocation", "nl-update"),
    )
    .await
    .unwrap();
    let stored = NamedLocationRow {
        created_at: office.created_at,
        ..untrusted.clone()
    };
    assert_eq!(
        s.get_named_location(office.id).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(audits_for(s, "nl-update").await.len(), 1);
    let r = s
        .update_named_location(
            &office,
            office.modified_at,
            &audit("updateNamedLocation", "nl-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}");
    let r = s
        .update_named_location(
            &home,
            T0,
            &audit("updateNamedLocation", "nl-update-refused"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = s
        .update_named_location(
            &NamedLocationRow {
                display_name: "Corporate vpn".into(),
                ..stored.clone()
            },
            stored.modified_at,
            &audit("updateNamedLocation", "nl-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, NAMED_LOCATION_NAME_TAKEN), "{r:?}");
    assert!(audits_for(s, "nl-update-refused").await.is_empty());
    assert_eq!(
        s.get_named_location(office.id).await.unwrap(),
        Some(stored.clone())
    );

    // Delete once.
    s.delete_named_location(vpn.id, &audit("deleteNamedLocation", "nl-delete"))
        .await
        .unwrap();
    assert_eq!(audits_for(s, "nl-delete").await.len(), 1);
    let r = s
        .delete_named_location(vpn.id, &audit("deleteNamedLocation", "nl-delete-missing"))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(audits_for(s, "nl-delete-missing").await.is_empty());
    assert_eq!(s.get_named_location(vpn.id).await.unwrap(), None);
    assert!(!s.list_named_locations().await.unwrap().contains(&vpn));
}

/// Each sign-in's per-policy results are written with it (or not at all) and filter the log:
/// by policy, by result, by both on the same policy; each sign-in once, newest first, paged.
async fn sign_in_ca_results(s: &dyn Store) {
    let (p1, p2, p3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let uid = Uuid::new_v4();
    let filter = |ca_policy: Option<Uuid>, ca_result: Option<&str>| SignInFilter {
        ca_policy,
        ca_result: ca_result.map(str::to_owned),
        top: 100,
        ..Default::default()
    };

    // One sign-in with three results, others with one or none; a policy listed twice keeps
    // its first result (the record itself round-trips as written).
    let mut three = record(
        "ca@contoso.example",
        Some(uid),
        SignInResult::Success,
        5_000,
    );
    three.conditional_access = vec![
        ca_result(p1, "success"),
        ca_result(p2, "reportOnlyFailure"),
        ca_result(p3, "notApplied"),
    ];
    let mut failed = record(
        "ca@contoso.example",
        Some(uid),
        SignInResult::Failure,
        5_001,
    );
    failed.conditional_access = vec![ca_result(p1, "failure"), ca_result(p1, "success")];
    let mut other_user = record("other@contoso.example", None, SignInResult::Success, 5_002);
    other_user.conditional_access = vec![ca_result(p2, "reportOnlySuccess")];
    let none = record(
        "ca@contoso.example",
        Some(uid),
        SignInResult::Success,
        5_003,
    );
    for r in [&three, &failed, &other_user, &none] {
        s.insert_sign_in(r).await.unwrap();
    }
    let list = |f: SignInFilter| async move { s.list_sign_ins(&f).await.unwrap() };
    assert_eq!(
        list(filter(Some(p1), None)).await,
        vec![failed.clone(), three.clone()],
        "by policy: each sign-in once, newest first, as written"
    );
    assert_eq!(
        list(filter(Some(p2), None)).await,
        vec![other_user.clone(), three.clone()]
    );
    assert_eq!(list(filter(Some(p3), None)).await, vec![three.clone()]);
    assert_eq!(
        list(filter(Some(p1), Some("success"))).await,
        vec![three.clone()]
    );
    assert_eq!(
        list(filter(Some(p1), Some("failure"))).await,
        vec![failed.clone()],
        "a policy listed twice keeps its first result"
    );
    assert!(
        list(filter(Some(p1), Some("reportOnlyFailure")))
            .await
            .is_empty(),
        "policy and result match on the same policy"
    );
    assert_eq!(
        list(filter(Some(p2), Some("reportOnlyFailure"))).await,
        vec![three.clone()]
    );
    assert_eq!(
        list(filter(None, Some("reportOnlyFailure")))
            .await
            .into_iter()
            .filter(|r| r.user_principal_name.as_deref() == Some("ca@contoso.example"))
            .collect::<Vec<_>>(),
        vec![three.clone()],
        "by result alone: any policy"
    );
    assert_eq!(
        list(SignInFilter {
            user_id: Some(uid),
            result: Some("success".into()),
            ..filter(Some(p1), None)
        })
        .await,
        vec![three.clone()],
        "with the other filters"
    );
    assert!(list(filter(Some(Uuid::new_v4()), None)).await.is_empty());
    assert_eq!(
        s.ca_results_since(p2, T0, None, 0).await.unwrap(),
        vec![other_user.clone(), three.clone()]
    );

    // Written with the sign-in or not at all: a sign-in refused (its id is stored) leaves no
    // result behind.
    let p4 = Uuid::new_v4();
    let mut dup = none.clone();
    dup.conditional_access = vec![ca_result(p4, "success")];
    assert!(matches!(
        s.insert_sign_in(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(list(filter(Some(p4), None)).await.is_empty());
    assert!(
        s.ca_results_since(p4, T0, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(list(filter(Some(p3), None)).await, vec![three.clone()]);

    // Many policies in one sign-in (more than one statement's worth).
    let many: Vec<Uuid> = (0..250).map(|_| Uuid::new_v4()).collect();
    let mut wide = record("wide@contoso.example", None, SignInResult::Success, 5_004);
    wide.conditional_access = many.iter().map(|&p| ca_result(p, "notApplied")).collect();
    s.insert_sign_in(&wide).await.unwrap();
    for p in [many[0], many[99], many[100], many[249]] {
        assert_eq!(list(filter(Some(p), None)).await, vec![wide.clone()]);
    }

    // Paging: eight sign-ins with the policy, four at the same millisecond, and others
    // without it in between; every page size walks them once, in order.
    let paged = Uuid::new_v4();
    let mut expected = Vec::new();
    for at in [6_000, 6_001, 6_001, 6_001, 6_001, 6_002, 6_003, 6_004] {
        let mut r = record(
            "pager-ca@contoso.example",
            Some(uid),
            SignInResult::Success,
            at,
        );
        r.conditional_access = vec![
            ca_result(Uuid::new_v4(), "notApplied"),
            ca_result(paged, "reportOnlyInterrupted"),
        ];
        s.insert_sign_in(&r).await.unwrap();
        s.insert_sign_in(&record(
            "pager-ca@contoso.example",
            Some(uid),
            SignInResult::Success,
            at,
        ))
        .await
        .unwrap();
        expected.push(r);
    }
    expected.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    assert_eq!(list(filter(Some(paged), None)).await, expected);
    for page_size in [1, 2, 3] {
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let page = list(SignInFilter {
                older_than: cursor,
                top: page_size,
                ..filter(Some(paged), Some("reportOnlyInterrupted"))
            })
            .await;
            let Some(last) = page.last() else { break };
            cursor = Some(Cursor {
                created_at: last.created_at,
                id: last.id,
            });
            seen.extend(page);
        }
        assert_eq!(seen, expected, "page size {page_size}: each once, in order");
        // The impact report's read pages the same way.
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let page = s
                .ca_results_since(paged, T0, cursor, page_size)
                .await
                .unwrap();
            assert!(page.len() <= page_size as usize);
            let Some(last) = page.last() else { break };
            cursor = Some(Cursor {
                created_at: last.created_at,
                id: last.id,
            });
            seen.extend(page);
        }
        assert_eq!(seen, expected, "ca_results_since, page size {page_size}");
    }
    // `since` is inclusive.
    assert_eq!(
        s.ca_results_since(paged, T0.plus_secs(6_001), None, 100)
            .await
            .unwrap(),
        expected[..expected.len() - 1].to_vec()
    );
    assert_eq!(
        s.ca_results_since(paged, T0.plus_secs(6_002), None, 100)
            .await
            .unwrap(),
        expected[..3].to_vec()
    );

    // A deleted policy's results stay in the log, and the purge leaves them alone.
    let gone = ca_policy("Results outlive me", CaPolicyRow::REPORT_ONLY);
    s.create_ca_policy(&gone, 1_000, &audit("createCaPolicy", "ca-results-gone"))
        .await
        .unwrap();
    let mut used = record("gone@contoso.example", None, SignInResult::Success, 7_000);
    used.conditional_access = vec![ca_result(gone.id, "reportOnlySuccess")];
    s.insert_sign_in(&used).await.unwrap();
    s.delete_ca_policy(gone.id, &audit("deleteCaPolicy", "ca-results-gone"))
        .await
        .unwrap();
    s.purge_expired(T0.plus_secs(10_000_000)).await.unwrap();
    assert_eq!(list(filter(Some(gone.id), None)).await, vec![used.clone()]);
    assert_eq!(
        s.ca_results_since(gone.id, T0, None, 10).await.unwrap(),
        vec![used]
    );
    assert_eq!(list(filter(Some(p1), None)).await.len(), 2);
}

/// Break-glass drills: only for a break-glass account; the latest stays; a user no longer
/// break-glass (or deleted) is left out.
async fn break_glass_drills(s: &dyn Store) {
    let domain = "drill.example";
    s.create_domain(
        &domain_with(domain, DomainAuthentication::Managed(Default::default())),
        &audit("createDomain", domain),
    )
    .await
    .unwrap();
    let mut bg = user("bg@drill.example");
    bg.user.break_glass = true;
    let mut bg_other = user("bg-other@drill.example");
    bg_other.user.break_glass = true;
    let plain = user("plain@drill.example");
    for u in [&bg, &bg_other, &plain] {
        s.create_user(u, &audit("createUser", "drill-users"))
            .await
            .unwrap();
    }
    let ours = |drills: Vec<(Uuid, Timestamp)>| -> Vec<(Uuid, Timestamp)> {
        drills
            .into_iter()
            .filter(|(u, _)| [bg.user.id, bg_other.user.id, plain.user.id].contains(u))
            .collect()
    };
    assert!(ours(s.break_glass_drills().await.unwrap()).is_empty());

    // Refused: a user who is not break-glass, a missing user. Nothing written.
    let r = s
        .record_break_glass_drill(
            plain.user.id,
            T0,
            &audit("breakGlassDrill", "drill-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, NOT_BREAK_GLASS), "{r:?}");
    let r = s
        .record_break_glass_drill(
            Uuid::new_v4(),
            T0,
            &audit("breakGlassDrill", "drill-refused"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(audits_for(s, "drill-refused").await.is_empty());
    assert!(ours(s.break_glass_drills().await.unwrap()).is_empty());

    // The latest drill stays: one recorded out of order never moves it back (but is audited).
    let bg_id = bg.user.id;
    for (at, target) in [(100, "drill-1"), (50, "drill-2"), (200, "drill-3")] {
        s.record_break_glass_drill(bg_id, T0.plus_secs(at), &audit("breakGlassDrill", target))
            .await
            .unwrap();
        assert_eq!(audits_for(s, target).await.len(), 1);
        if target == "drill-2" {
            assert_eq!(
                ours(s.break_glass_drills().await.unwrap()),
                vec![(bg_id, T0.plus_secs(100))]
            );
        }
    }
    s.record_break_glass_drill(
        bg_other.user.id,
        T0.plus_secs(10),
        &audit("breakGlassDrill", "drill-other"),
    )
    .await
    .unwrap();
    let mut both = vec![
        (bg_id, T0.plus_secs(200)),
        (bg_other.user.id, T0.plus_secs(10)),
    ];
    both.sort();
    assert_eq!(
        ours(s.break_glass_drills().await.unwrap()),
        both,
        "by user id"
    );

    // No longer break-glass: left out; marked again: back with its last drill.
    let mut unmarked = bg.user.clone();
    unmarked.break_glass = false;
    s.update_user(&unmarked, None, &audit("updateUser", "drill-unmark"))
        .await
        .unwrap();
    assert_eq!(
        ours(s.break_glass_drills().await.unwrap()),
        vec![(bg_other.user.id, T0.plus_secs(10))]
    );
    s.update_user(&bg.user, None, &audit("updateUser", "drill-unmark"))
        .await
        .unwrap();
    assert_eq!(ours(s.break_glass_drills().await.unwrap()), both);

    // Deleted: gone with the user.
    s.delete_user(bg_other.user.id, &audit("deleteUser", "drill-delete"))
        .await
        .unwrap();
    assert_eq!(
        ours(s.break_glass_drills().await.unwrap()),
        vec![(bg_id, T0.plus_secs(200))]
    );
}

// ---- Passkey rollout campaigns and the e-mail outbox (issue 8) ----------------------------

fn campaign(name: &str) -> CampaignRow {
    let id = Uuid::new_v4();
    CampaignRow {
        id,
        display_name: name.into(),
        document: serde_json::json!({
            "id": id,
            "displayName": name,
            "targetPercent": 95.5,
            "waves": [{"id": Uuid::new_v4(), "name": "IT pilot", "state": "scheduled"}],
        }),
        created_at: T0,
        modified_at: T0,
    }
}

fn send_decision(key: &str, campaign_id: Uuid, wave_id: Uuid, at: Timestamp) -> SendDecision {
    SendDecision {
        key: key.into(),
        campaign_id,
        wave_id,
        step_key: "t-7".into(),
        decided_at: at,
        recipients: 3,
        skipped: serde_json::json!([{"userId": Uuid::new_v4(), "reason": "noMail"}]),
    }
}

/// A pending message due at `at`; `wave` = (campaign, wave) for a campaign's message, `None`
/// for a test-send.
fn outbox_message(key: &str, wave: Option<(Uuid, Uuid)>, at: Timestamp) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::now_v7(),
        idempotency_key: key.into(),
        campaign_id: wave.map(|w| w.0),
        wave_id: wave.map(|w| w.1),
        step_key: wave.map(|_| "t-7".into()),
        user_id: Some(Uuid::new_v4()),
        mail_from: "Cutover <rollout@corp.example>".into(),
        to: vec![format!("{}@corp.example", key.replace(':', "."))],
        cc: vec!["manager@corp.example".into()],
        subject: "Passkeys are coming — ✓".into(),
        text_body: "Hello,\nregister a passkey.".into(),
        html_body: "<p>Hello,</p><p>register a passkey.</p>".into(),
        message_id: format!("<{}@cutover.example>", Uuid::new_v4()),
        state: OutboxState::Pending,
        attempts: 0,
        next_attempt_at: at,
        lease_until: None,
        claimed_by: None,
        last_error: None,
        created_at: at,
        sent_at: None,
    }
}

/// `n` messages of one decision (`{key}:user:{i}`).
fn decision_messages(key: &str, wave: (Uuid, Uuid), at: Timestamp, n: usize) -> Vec<OutboxMessage> {
    (0..n)
        .map(|i| outbox_message(&format!("{key}:user:{i}"), Some(wave), at))
        .collect()
}

/// Later than any time the outbox checks use.
const OUTBOX_FAR: Timestamp = Timestamp(T0.0 + 1_000 * 86_400_000);

/// Claim and fail every message still deliverable, so that a check starts with none due.
async fn drain_outbox(s: &dyn Store) {
    loop {
        let batch = s
            .claim_outbox(
                "drain",
                OUTBOX_FAR,
                OUTBOX_FAR.plus_secs(60),
                MAX_OUTBOX_CLAIM,
            )
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            let failed = OutboxOutcome::Failed {
                error: "drained by the conformance suite".into(),
            };
            assert!(s.finish_outbox(m.id, "drain", &failed).await.unwrap());
        }
    }
}

async fn outbox_of(s: &dyn Store, campaign_id: Uuid) -> Vec<OutboxMessage> {
    s.list_outbox(&OutboxFilter {
        campaign_id: Some(campaign_id),
        limit: MAX_PAGE,
        ..Default::default()
    })
    .await
    .unwrap()
}

const MAX_PAGE: u32 = cutover_core::limits::MAX_PAGE_SIZE;

fn by_id(mut v: Vec<OutboxMessage>) -> Vec<OutboxMessage> {
    v.sort_by_key(|m| m.id);
    v
}

/// Campaigns: create, get, list (by name, case-insensitively), optimistic update, delete;
/// names unique but for case; the limit at its edge; audit rows only for what was written;
/// racing creations with room for one.
async fn campaigns(store: Arc<dyn Store>) {
    let s = &*store;
    const MAX: u32 = 2;
    assert!(s.list_campaigns().await.unwrap().is_empty());
    assert_eq!(s.get_campaign(Uuid::new_v4()).await.unwrap(), None);

    let mut main = campaign("Passkeys 2027");
    main.modified_at = T0.plus_secs(1);
    s.create_campaign(&main, MAX, &audit("createCampaign", "camp-create"))
        .await
        .unwrap();
    assert_eq!(s.get_campaign(main.id).await.unwrap(), Some(main.clone()));
    assert_eq!(audits_for(s, "camp-create").await.len(), 1);

    // The same id, or the same name but for case: Conflict, nothing written.
    let r = s
        .create_campaign(
            &CampaignRow {
                id: main.id,
                ..campaign("Fresh")
            },
            MAX,
            &audit("createCampaign", "camp-refused"),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m != CAMPAIGN_NAME_TAKEN),
        "{r:?}"
    );
    let r = s
        .create_campaign(
            &campaign("PASSKEYS 2027"),
            MAX,
            &audit("createCampaign", "camp-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CAMPAIGN_NAME_TAKEN), "{r:?}");

    // The limit at its edge: the MAX-th is accepted, the one after refused (a taken name is
    // reported first); 0 refuses all; a limit one higher lets one more in.
    let pilot = campaign("alpha pilot");
    s.create_campaign(&pilot, MAX, &audit("createCampaign", "camp-create-pilot"))
        .await
        .unwrap();
    let third = campaign("Third");
    let r = s
        .create_campaign(&third, MAX, &audit("createCampaign", "camp-refused"))
        .await;
    assert!(is_conflict_msg(&r, CAMPAIGN_LIMIT_REACHED), "{r:?}");
    let r = s
        .create_campaign(
            &campaign("Alpha Pilot"),
            MAX,
            &audit("createCampaign", "camp-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CAMPAIGN_NAME_TAKEN), "{r:?}");
    let r = s
        .create_campaign(
            &campaign("Zero"),
            0,
            &audit("createCampaign", "camp-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CAMPAIGN_LIMIT_REACHED), "{r:?}");
    assert!(audits_for(s, "camp-refused").await.is_empty());
    assert_eq!(s.get_campaign(third.id).await.unwrap(), None);
    s.create_campaign(
        &third,
        MAX + 1,
        &audit("createCampaign", "camp-create-third"),
    )
    .await
    .unwrap();
    assert_eq!(
        s.list_campaigns().await.unwrap(),
        vec![pilot.clone(), main.clone(), third.clone()],
        "by display name, case-insensitively"
    );

    // Update: the name and document change, `created_at` never does.
    let renamed = CampaignRow {
        display_name: "Passkeys 2027 (all staff)".into(),
        document: serde_json::json!({"waves": [], "changed": true}),
        created_at: T0.plus_secs(999),
        modified_at: T0.plus_secs(10),
        ..main.clone()
    };
    s.update_campaign(
        &renamed,
        main.modified_at,
        &audit("updateCampaign", "camp-update"),
    )
    .await
    .unwrap();
    let stored = CampaignRow {
        created_at: main.created_at,
        ..renamed.clone()
    };
    assert_eq!(s.get_campaign(main.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(audits_for(s, "camp-update").await.len(), 1);

    // Stale, missing, taken name: refused, nothing written.
    let r = s
        .update_campaign(
            &CampaignRow {
                modified_at: T0.plus_secs(20),
                ..main.clone()
            },
            main.modified_at,
            &audit("updateCampaign", "camp-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}");
    let r = s
        .update_campaign(
            &campaign("Nowhere"),
            T0,
            &audit("updateCampaign", "camp-update-refused"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = s
        .update_campaign(
            &CampaignRow {
                display_name: "THIRD".into(),
                modified_at: T0.plus_secs(20),
                ..stored.clone()
            },
            stored.modified_at,
            &audit("updateCampaign", "camp-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CAMPAIGN_NAME_TAKEN), "{r:?}");
    assert!(audits_for(s, "camp-update-refused").await.is_empty());
    assert_eq!(s.get_campaign(main.id).await.unwrap(), Some(stored.clone()));

    // Its own name in another case is fine; a `modified_at` not later than the one read
    // still moves the token by 1 ms, so that read is stale afterwards.
    let recased = CampaignRow {
        display_name: "PASSKEYS 2027 (all staff)".into(),
        ..stored.clone()
    };
    s.update_campaign(
        &recased,
        stored.modified_at,
        &audit("updateCampaign", "camp-update"),
    )
    .await
    .unwrap();
    let recased_stored = CampaignRow {
        modified_at: stored.modified_at.plus_millis(1),
        ..recased.clone()
    };
    assert_eq!(
        s.get_campaign(main.id).await.unwrap(),
        Some(recased_stored.clone())
    );
    let r = s
        .update_campaign(
            &recased,
            stored.modified_at,
            &audit("updateCampaign", "camp-update-refused"),
        )
        .await;
    assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}");

    // Racing updates from one read: one wins.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let update = CampaignRow {
                document: serde_json::json!({ "writer": i }),
                modified_at: recased_stored.modified_at.plus_secs(1),
                ..recased_stored.clone()
            };
            let expected = recased_stored.modified_at;
            tokio::spawn(async move {
                let r = store
                    .update_campaign(
                        &update,
                        expected,
                        &audit("updateCampaign", "camp-race-update"),
                    )
                    .await;
                (update.document, r)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            (document, Ok(())) => winners.push(document),
            (_, r) => assert!(is_conflict_msg(&r, CHANGED_SINCE_READ), "{r:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "of 10 updates from one read, one succeeds"
    );
    assert_eq!(
        s.get_campaign(main.id).await.unwrap().unwrap().document,
        winners[0]
    );

    // Delete: once, with its audit row; the name is free again.
    let r = s
        .delete_campaign(
            Uuid::new_v4(),
            &audit("deleteCampaign", "camp-delete-missing"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(audits_for(s, "camp-delete-missing").await.is_empty());
    s.delete_campaign(third.id, &audit("deleteCampaign", "camp-delete"))
        .await
        .unwrap();
    assert_eq!(audits_for(s, "camp-delete").await.len(), 1);
    assert_eq!(s.get_campaign(third.id).await.unwrap(), None);
    s.create_campaign(
        &campaign("third"),
        MAX + 1,
        &audit("createCampaign", "camp-create-again"),
    )
    .await
    .unwrap();

    // Racing creations with room for one: one succeeds.
    let room_for_one = u32::try_from(s.list_campaigns().await.unwrap().len()).unwrap() + 1;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_campaign(
                        &campaign(&format!("Race {i}")),
                        room_for_one,
                        &audit("createCampaign", "camp-race-limit"),
                    )
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            r => assert!(is_conflict_msg(&r, CAMPAIGN_LIMIT_REACHED), "{r:?}"),
        }
    }
    assert_eq!(
        created, 1,
        "of 10 concurrent creations with room for one, one succeeds"
    );
    assert_eq!(audits_for(s, "camp-race-limit").await.len(), 1);
    for c in s.list_campaigns().await.unwrap() {
        s.delete_campaign(c.id, &audit("deleteCampaign", "camp-cleanup"))
            .await
            .unwrap();
    }
}

/// The decision to send and its messages are written together or not at all, once per key,
/// even when 20 writers race; a test-send is queued once per key.
async fn send_decisions(store: Arc<dyn Store>) {
    let s = &*store;
    drain_outbox(s).await;
    let c = campaign("Decisions");
    s.create_campaign(&c, 1_000, &audit("createCampaign", "dec-campaign"))
        .await
        .unwrap();
    let wave = (c.id, Uuid::new_v4());
    let t = T0.plus_secs(86_400);

    let first = send_decision("dec:w1:t-7", c.id, wave.1, t);
    let first_messages = decision_messages(&first.key, wave, t, 3);
    assert!(
        s.record_send_decision(
            &first,
            &first_messages,
            Some(&audit("sendDecision", "dec-first"))
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.list_send_decisions(c.id).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(
        outbox_of(s, c.id).await,
        by_id(first_messages.clone()),
        "every field round-trips"
    );
    assert_eq!(
        s.get_outbox_message(first_messages[1].id).await.unwrap(),
        Some(first_messages[1].clone())
    );
    assert_eq!(s.get_outbox_message(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(audits_for(s, "dec-first").await.len(), 1);

    // The same key again (another node, or a run after a restart): nothing is written.
    let again = decision_messages("dec:w1:t-7:again", wave, t, 2);
    assert!(
        !s.record_send_decision(
            &SendDecision {
                recipients: 2,
                ..first.clone()
            },
            &again,
            Some(&audit("sendDecision", "dec-again"))
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.list_send_decisions(c.id).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(outbox_of(s, c.id).await.len(), 3);
    assert_eq!(s.get_outbox_message(again[0].id).await.unwrap(), None);
    assert!(audits_for(s, "dec-again").await.is_empty());

    // A message whose key is stored: the whole decision rolls back, and the conflict names the
    // key. A key given twice in one decision: the same.
    let second = send_decision("dec:w1:t0", c.id, wave.1, t.plus_secs(1));
    let mut colliding = decision_messages(&second.key, wave, t, 2);
    let taken = first_messages[1].idempotency_key.clone();
    colliding.push(outbox_message(&taken, Some(wave), t));
    let r = s
        .record_send_decision(
            &second,
            &colliding,
            Some(&audit("sendDecision", "dec-refused")),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains(&taken)),
        "{r:?}"
    );
    let mut twice = decision_messages(&second.key, wave, t, 2);
    let repeated = twice[0].idempotency_key.clone();
    twice.push(outbox_message(&repeated, Some(wave), t));
    let r = s
        .record_send_decision(&second, &twice, Some(&audit("sendDecision", "dec-refused")))
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains(&repeated)),
        "{r:?}"
    );
    assert_eq!(
        s.list_send_decisions(c.id).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(
        outbox_of(s, c.id).await.len(),
        3,
        "no row of a refused decision"
    );
    assert!(audits_for(s, "dec-refused").await.is_empty());
    // Nothing was left behind: the key can be decided now.
    assert!(
        s.record_send_decision(&second, &colliding[..2], None)
            .await
            .unwrap()
    );
    // A decision that sends nothing (everyone skipped) is recorded all the same.
    let earlier = send_decision("dec:w0:t-7", c.id, Uuid::new_v4(), t.minus_secs(1));
    assert!(s.record_send_decision(&earlier, &[], None).await.unwrap());
    assert_eq!(
        s.list_send_decisions(c.id).await.unwrap(),
        vec![earlier.clone(), first.clone(), second.clone()],
        "by decision time, then key"
    );
    assert_eq!(outbox_of(s, c.id).await.len(), 5);

    // A campaign that does not exist (deleted meanwhile): NotFound, nothing written.
    let orphan = send_decision("dec:orphan", Uuid::new_v4(), Uuid::new_v4(), t);
    let orphan_messages =
        decision_messages(&orphan.key, (orphan.campaign_id, orphan.wave_id), t, 1);
    let r = s
        .record_send_decision(&orphan, &orphan_messages, None)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert_eq!(
        s.get_outbox_message(orphan_messages[0].id).await.unwrap(),
        None
    );

    // 20 writers of one decision at once (one per node): exactly one writes it.
    let raced = send_decision("dec:w2:t-7", c.id, Uuid::new_v4(), t.plus_secs(2));
    let raced_messages = decision_messages(&raced.key, (c.id, raced.wave_id), t, 4);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let (d, m) = (raced.clone(), raced_messages.clone());
            tokio::spawn(async move {
                store
                    .record_send_decision(&d, &m, Some(&audit("sendDecision", "dec-race")))
                    .await
            })
        })
        .collect();
    let mut written = 0;
    for task in tasks {
        if task.await.expect("task").expect("no error") {
            written += 1;
        }
    }
    assert_eq!(
        written, 1,
        "of 20 racing writers of one decision, one writes it"
    );
    assert_eq!(audits_for(s, "dec-race").await.len(), 1);
    assert_eq!(
        s.list_outbox(&OutboxFilter {
            wave_id: Some(raced.wave_id),
            limit: MAX_PAGE,
            ..Default::default()
        })
        .await
        .unwrap(),
        by_id(raced_messages)
    );

    // A test-send: queued once per key, with its audit row.
    let test = outbox_message(&format!("test:{}", Uuid::new_v4()), None, t);
    s.enqueue_outbox_message(&test, Some(&audit("testSend", "dec-test")))
        .await
        .unwrap();
    assert_eq!(
        s.get_outbox_message(test.id).await.unwrap(),
        Some(test.clone())
    );
    let r = s
        .enqueue_outbox_message(
            &OutboxMessage {
                id: Uuid::now_v7(),
                ..test.clone()
            },
            Some(&audit("testSend", "dec-test")),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains(&test.idempotency_key)),
        "{r:?}"
    );
    let r = s
        .enqueue_outbox_message(
            &OutboxMessage {
                idempotency_key: format!("test:{}", Uuid::new_v4()),
                ..test.clone()
            },
            Some(&audit("testSend", "dec-test")),
        )
        .await;
    assert!(
        matches!(&r, Err(StoreError::Conflict(_))),
        "the same id: {r:?}"
    );
    assert_eq!(audits_for(s, "dec-test").await.len(), 1);
    drain_outbox(s).await;
    s.delete_campaign(c.id, &audit("deleteCampaign", "dec-cleanup"))
        .await
        .unwrap();
}

/// Claiming: oldest first, at most `MAX_OUTBOX_CLAIM` at a time, only what is due; ten nodes
/// racing over 50 messages claim each exactly once.
async fn outbox_claims(store: Arc<dyn Store>) {
    let s = &*store;
    drain_outbox(s).await;
    let t = T0.plus_secs(2 * 86_400);
    let c = campaign("Claims");
    s.create_campaign(&c, 1_000, &audit("createCampaign", "claims"))
        .await
        .unwrap();
    let wave = (c.id, Uuid::new_v4());
    assert!(
        s.claim_outbox("a", t, t.plus_secs(60), MAX_OUTBOX_CLAIM)
            .await
            .unwrap()
            .is_empty()
    );

    // Oldest first; only what is due.
    let mut newest = outbox_message("claims:order:newest", Some(wave), t.plus_millis(2));
    newest.next_attempt_at = t;
    let oldest = outbox_message("claims:order:oldest", Some(wave), t.minus_secs(5));
    let middle = outbox_message("claims:order:middle", Some(wave), t.minus_secs(1));
    let mut later = outbox_message("claims:order:later", Some(wave), t);
    later.next_attempt_at = t.plus_secs(30);
    for m in [&newest, &oldest, &middle, &later] {
        s.enqueue_outbox_message(m, None).await.unwrap();
    }
    let got = s.claim_outbox("a", t, t.plus_secs(60), 2).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![oldest.id, middle.id],
        "oldest first"
    );
    assert_eq!(
        got[0],
        OutboxMessage {
            state: OutboxState::Claimed,
            attempts: 1,
            lease_until: Some(t.plus_secs(60)),
            claimed_by: Some("a".into()),
            ..oldest.clone()
        }
    );
    assert!(
        s.claim_outbox("a", t, t.plus_secs(60), 0)
            .await
            .unwrap()
            .is_empty(),
        "limit 0"
    );
    let got = s.claim_outbox("b", t, t.plus_secs(60), 10).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![newest.id],
        "only what is due"
    );
    let got = s
        .claim_outbox("b", t.plus_secs(30), t.plus_secs(90), 10)
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![later.id]);
    drain_outbox(s).await;

    // The batch limit at its edge: MAX_OUTBOX_CLAIM + 1 due, a claim asking for that many gets
    // MAX_OUTBOX_CLAIM, the next one the last.
    let n = usize::try_from(MAX_OUTBOX_CLAIM).unwrap() + 1;
    let d = send_decision("claims:edge", c.id, wave.1, t);
    assert!(
        s.record_send_decision(&d, &decision_messages(&d.key, wave, t, n), None)
            .await
            .unwrap()
    );
    let first = s
        .claim_outbox("a", t, t.plus_secs(60), MAX_OUTBOX_CLAIM + 1)
        .await
        .unwrap();
    assert_eq!(first.len(), n - 1);
    let rest = s
        .claim_outbox("a", t, t.plus_secs(60), MAX_OUTBOX_CLAIM + 1)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert!(
        s.claim_outbox("a", t, t.plus_secs(60), MAX_OUTBOX_CLAIM)
            .await
            .unwrap()
            .is_empty()
    );
    drain_outbox(s).await;

    // Ten nodes race over 50 messages: each is claimed exactly once.
    let d = send_decision("claims:race", c.id, wave.1, t);
    let messages = decision_messages(&d.key, wave, t, 50);
    assert!(s.record_send_decision(&d, &messages, None).await.unwrap());
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let node = format!("node-{i}");
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_outbox(&node, t, t.plus_secs(60), 3)
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        break mine;
                    }
                    for m in batch {
                        assert_eq!(m.claimed_by.as_deref(), Some(node.as_str()));
                        assert!(
                            store
                                .mark_outbox_transmitting(m.id, &node, t.plus_secs(120))
                                .await
                                .expect("mark")
                        );
                        let sent = OutboxOutcome::Sent { at: t.plus_secs(1) };
                        assert!(
                            store
                                .finish_outbox(m.id, &node, &sent)
                                .await
                                .expect("finish")
                        );
                        mine.push(m.id);
                    }
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.expect("task"));
    }
    claimed.sort();
    let mut want: Vec<Uuid> = messages.iter().map(|m| m.id).collect();
    want.sort();
    assert_eq!(claimed, want, "every message claimed exactly once");
    let counts = s.outbox_counts(Some(c.id)).await.unwrap();
    assert_eq!(counts.sent, 50);
    assert_eq!(counts.total(), counts.sent + counts.failed);
    s.delete_campaign(c.id, &audit("deleteCampaign", "claims-cleanup"))
        .await
        .unwrap();
}

/// Leases: a claimed message whose sender died goes back to pending; a transmitting one
/// becomes uncertain and is never claimed again; a node no longer holding a message cannot
/// mark or finish it; a retry waits for its time; errors are cut at their limit.
async fn outbox_leases(s: &dyn Store) {
    drain_outbox(s).await;
    let t = T0.plus_secs(3 * 86_400);
    let idle = outbox_message("lease:idle", None, t);
    let mut busy = outbox_message("lease:busy", None, t.plus_millis(1));
    busy.next_attempt_at = t;
    for m in [&idle, &busy] {
        s.enqueue_outbox_message(m, None).await.unwrap();
    }
    assert_eq!(
        s.claim_outbox("a", t, t.plus_secs(60), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        !s.mark_outbox_transmitting(busy.id, "b", t.plus_secs(120))
            .await
            .unwrap(),
        "not b's"
    );
    assert!(
        s.mark_outbox_transmitting(busy.id, "a", t.plus_secs(120))
            .await
            .unwrap()
    );
    assert!(
        !s.mark_outbox_transmitting(busy.id, "a", t.plus_secs(120))
            .await
            .unwrap(),
        "transmitting already"
    );
    let sent = OutboxOutcome::Sent { at: t.plus_secs(1) };
    assert!(
        !s.finish_outbox(idle.id, "b", &sent).await.unwrap(),
        "finished by another node"
    );
    assert_eq!(
        s.get_outbox_message(idle.id).await.unwrap().unwrap().state,
        OutboxState::Claimed
    );
    assert!(
        !s.finish_outbox(Uuid::now_v7(), "a", &sent).await.unwrap(),
        "missing"
    );

    // Before the lease runs out nothing moves.
    assert!(
        s.claim_outbox("b", t.plus_secs(59), t.plus_secs(120), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Once it has, the claimed one is claimed again (by b); the transmitting one still has time.
    let got = s
        .claim_outbox("b", t.plus_secs(60), t.plus_secs(180), 10)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].id, got[0].attempts), (idle.id, 2));
    assert!(
        !s.mark_outbox_transmitting(idle.id, "a", t.plus_secs(180))
            .await
            .unwrap(),
        "a lost it"
    );
    assert!(
        !s.finish_outbox(idle.id, "a", &sent).await.unwrap(),
        "a lost it"
    );
    // The transmitting one's lease runs out: uncertain, never claimed again.
    assert!(
        s.claim_outbox("c", t.plus_secs(120), t.plus_secs(180), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let lost = s.get_outbox_message(busy.id).await.unwrap().unwrap();
    assert_eq!(lost.state, OutboxState::Uncertain);
    assert_eq!(lost.lease_until, None);
    assert!(
        lost.last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("the lease of a ran out"),
        "{lost:?}"
    );
    // Its sender's late answer: a failure changes nothing (the message stays uncertain for a
    // person), but the relay's acceptance settles the question.
    assert!(
        !s.finish_outbox(
            busy.id,
            "a",
            &OutboxOutcome::Failed {
                error: "late".into()
            }
        )
        .await
        .unwrap(),
        "only a late success is recorded"
    );
    assert!(
        !s.finish_outbox(busy.id, "c", &sent).await.unwrap(),
        "not another node's"
    );
    assert!(
        s.finish_outbox(busy.id, "a", &sent).await.unwrap(),
        "the relay's late acceptance is recorded"
    );
    assert_eq!(
        s.get_outbox_message(busy.id).await.unwrap().unwrap().state,
        OutboxState::Sent
    );
    // b sends the other one.
    assert!(s.finish_outbox(idle.id, "b", &sent).await.unwrap());
    let done = s.get_outbox_message(idle.id).await.unwrap().unwrap();
    assert_eq!(
        (
            done.state,
            done.sent_at,
            done.lease_until,
            done.claimed_by.as_deref()
        ),
        (OutboxState::Sent, Some(t.plus_secs(1)), None, Some("b"))
    );
    assert!(
        !s.finish_outbox(idle.id, "b", &sent).await.unwrap(),
        "finished already"
    );
    assert!(
        s.claim_outbox("c", OUTBOX_FAR, OUTBOX_FAR.plus_secs(60), MAX_OUTBOX_CLAIM)
            .await
            .unwrap()
            .is_empty(),
        "an uncertain message is never claimed again"
    );

    // A retry waits for its time, unclaimed; from transmitting too.
    let retried = outbox_message("lease:retry", None, t.plus_secs(200));
    s.enqueue_outbox_message(&retried, None).await.unwrap();
    assert_eq!(
        s.claim_outbox("d", t.plus_secs(200), t.plus_secs(260), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let retry = OutboxOutcome::Retry {
        error: "451 4.3.0 try again later".into(),
        next_attempt_at: t.plus_secs(500),
    };
    assert!(s.finish_outbox(retried.id, "d", &retry).await.unwrap());
    let pending = s.get_outbox_message(retried.id).await.unwrap().unwrap();
    assert_eq!(
        (
            pending.state,
            pending.next_attempt_at,
            pending.claimed_by,
            pending.lease_until
        ),
        (OutboxState::Pending, t.plus_secs(500), None, None)
    );
    assert_eq!(
        pending.last_error.as_deref(),
        Some("451 4.3.0 try again later")
    );
    assert!(
        s.claim_outbox("d", t.plus_secs(499), t.plus_secs(560), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let got = s
        .claim_outbox("e", t.plus_secs(500), t.plus_secs(560), 10)
        .await
        .unwrap();
    assert_eq!((got.len(), got[0].attempts), (1, 2));
    assert!(
        s.mark_outbox_transmitting(retried.id, "e", t.plus_secs(600))
            .await
            .unwrap()
    );
    let retry = OutboxOutcome::Retry {
        error: "421 4.7.0 too busy".into(),
        next_attempt_at: t.plus_secs(650),
    };
    assert!(
        s.finish_outbox(retried.id, "e", &retry).await.unwrap(),
        "a retry from transmitting"
    );
    let got = s
        .claim_outbox("e", t.plus_secs(650), t.plus_secs(700), 10)
        .await
        .unwrap();
    assert_eq!(
        (got.len(), got[0].attempts, got[0].last_error.as_deref()),
        (1, 3, Some("421 4.7.0 too busy"))
    );
    let failed = OutboxOutcome::Failed {
        error: "out of retries".into(),
    };
    assert!(s.finish_outbox(retried.id, "e", &failed).await.unwrap());

    // Errors are kept up to MAX_OUTBOX_ERROR_LEN bytes; longer ones are cut, on a character
    // boundary.
    let cases = [
        (
            "x".repeat(MAX_OUTBOX_ERROR_LEN),
            "x".repeat(MAX_OUTBOX_ERROR_LEN),
        ),
        (
            "y".repeat(MAX_OUTBOX_ERROR_LEN + 1),
            "y".repeat(MAX_OUTBOX_ERROR_LEN),
        ),
        (
            format!("{}é", "z".repeat(MAX_OUTBOX_ERROR_LEN - 1)),
            "z".repeat(MAX_OUTBOX_ERROR_LEN - 1),
        ),
    ];
    for (i, (error, stored)) in cases.into_iter().enumerate() {
        let m = outbox_message(&format!("lease:error:{i}"), None, t.plus_secs(700));
        s.enqueue_outbox_message(&m, None).await.unwrap();
        let got = s
            .claim_outbox("f", t.plus_secs(700), t.plus_secs(760), 10)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let outcome = if i == 0 {
            OutboxOutcome::Failed { error }
        } else {
            OutboxOutcome::Uncertain { error }
        };
        assert!(s.finish_outbox(m.id, "f", &outcome).await.unwrap());
        let m = s.get_outbox_message(m.id).await.unwrap().unwrap();
        assert_eq!(m.last_error, Some(stored), "case {i}");
    }
    drain_outbox(s).await;
}

/// An admin's resend: only of a failed or uncertain message, with its audit row; it is due at
/// once and its attempts start again.
async fn outbox_resend(s: &dyn Store) {
    drain_outbox(s).await;
    let t = T0.plus_secs(4 * 86_400);
    let failed = outbox_message("resend:failed", None, t);
    let mut uncertain = outbox_message("resend:uncertain", None, t.plus_millis(1));
    let mut sent = outbox_message("resend:sent", None, t.plus_millis(2));
    uncertain.next_attempt_at = t;
    sent.next_attempt_at = t;
    for m in [&failed, &uncertain, &sent] {
        s.enqueue_outbox_message(m, None).await.unwrap();
    }
    assert_eq!(
        s.claim_outbox("a", t, t.plus_secs(60), 10)
            .await
            .unwrap()
            .len(),
        3
    );
    let outcomes = [
        (
            &failed,
            OutboxOutcome::Failed {
                error: "550 5.1.1 no such user".into(),
            },
        ),
        (
            &uncertain,
            OutboxOutcome::Uncertain {
                error: "connection reset after DATA".into(),
            },
        ),
        (&sent, OutboxOutcome::Sent { at: t }),
    ];
    for (m, outcome) in &outcomes {
        assert!(s.finish_outbox(m.id, "a", outcome).await.unwrap());
    }
    let pending = outbox_message("resend:pending", None, t.plus_secs(3_600));
    s.enqueue_outbox_message(&pending, None).await.unwrap();

    for id in [sent.id, pending.id] {
        let r = s
            .resend_outbox_message(
                id,
                t.plus_secs(10),
                &audit("resendMessage", "resend-refused"),
            )
            .await;
        assert!(is_conflict_msg(&r, OUTBOX_NOT_RESENDABLE), "{r:?}");
    }
    let r = s
        .resend_outbox_message(
            Uuid::now_v7(),
            t.plus_secs(10),
            &audit("resendMessage", "resend-refused"),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(audits_for(s, "resend-refused").await.is_empty());
    assert_eq!(
        s.get_outbox_message(sent.id).await.unwrap().unwrap().state,
        OutboxState::Sent
    );

    for m in [&failed, &uncertain] {
        s.resend_outbox_message(m.id, t.plus_secs(10), &audit("resendMessage", "resend"))
            .await
            .unwrap();
        let again = s.get_outbox_message(m.id).await.unwrap().unwrap();
        assert_eq!(
            (
                again.state,
                again.next_attempt_at,
                again.attempts,
                again.claimed_by,
                again.lease_until
            ),
            (OutboxState::Pending, t.plus_secs(10), 0, None, None)
        );
    }
    assert_eq!(audits_for(s, "resend").await.len(), 2);
    let r = s
        .resend_outbox_message(
            failed.id,
            t.plus_secs(10),
            &audit("resendMessage", "resend-refused"),
        )
        .await;
    assert!(
        is_conflict_msg(&r, OUTBOX_NOT_RESENDABLE),
        "pending again: {r:?}"
    );
    let got = s
        .claim_outbox("b", t.plus_secs(10), t.plus_secs(70), 10)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
        vec![(failed.id, 1), (uncertain.id, 1)]
    );
    drain_outbox(s).await;
}

/// A relay outage defers a message without using up its attempts; a bulk resend takes every
/// failed message of one campaign (not its uncertain ones, not another campaign's), with one
/// audit row, and writes nothing when there is none.
async fn outbox_deferral_and_bulk_resend(s: &dyn Store) {
    drain_outbox(s).await;
    let t = T0.plus_secs(6 * 86_400);
    let m = outbox_message("defer:one", None, t);
    s.enqueue_outbox_message(&m, None).await.unwrap();
    let down = "connecting to the SMTP relay: connection refused";
    for round in 0..4 {
        let at = t.plus_secs(round * 120);
        let got = s.claim_outbox("a", at, at.plus_secs(60), 10).await.unwrap();
        assert_eq!(
            got.iter().map(|g| (g.id, g.attempts)).collect::<Vec<_>>(),
            vec![(m.id, 1)],
            "round {round}: a deferral never counts"
        );
        let deferred = OutboxOutcome::Deferred {
            error: down.into(),
            next_attempt_at: at.plus_secs(120),
        };
        assert!(s.finish_outbox(m.id, "a", &deferred).await.unwrap());
        let after = s.get_outbox_message(m.id).await.unwrap().unwrap();
        assert_eq!(
            (
                after.state,
                after.attempts,
                after.next_attempt_at,
                after.claimed_by,
                after.lease_until,
                after.last_error.as_deref()
            ),
            (
                OutboxState::Pending,
                0,
                at.plus_secs(120),
                None,
                None,
                Some(down)
            )
        );
    }
    // A retry (the message's own failure) still counts.
    let at = t.plus_secs(480);
    s.claim_outbox("a", at, at.plus_secs(60), 10).await.unwrap();
    let retry = OutboxOutcome::Retry {
        error: "451 4.3.0 try again later".into(),
        next_attempt_at: at.plus_secs(60),
    };
    assert!(s.finish_outbox(m.id, "a", &retry).await.unwrap());
    let got = s
        .claim_outbox("a", at.plus_secs(60), at.plus_secs(120), 10)
        .await
        .unwrap();
    assert_eq!((got.len(), got[0].attempts), (1, 2));
    drain_outbox(s).await;

    let c = campaign("Bulk resend");
    let other = campaign("Bulk resend, other");
    for x in [&c, &other] {
        s.create_campaign(x, 1_000, &audit("createCampaign", "bulk-campaign"))
            .await
            .unwrap();
    }
    let wave = (c.id, Uuid::new_v4());
    let d = send_decision("bulk:w:t-7", c.id, wave.1, t);
    let mine = decision_messages(&d.key, wave, t, 3);
    assert!(s.record_send_decision(&d, &mine, None).await.unwrap());
    let other_wave = (other.id, Uuid::new_v4());
    let od = send_decision("bulk:other:t-7", other.id, other_wave.1, t);
    let theirs = decision_messages(&od.key, other_wave, t, 1);
    assert!(s.record_send_decision(&od, &theirs, None).await.unwrap());
    assert_eq!(
        s.claim_outbox("b", t, t.plus_secs(60), 10)
            .await
            .unwrap()
            .len(),
        4
    );
    let failed = OutboxOutcome::Failed {
        error: "connecting to the SMTP relay: 535 5.7.8 authentication failed".into(),
    };
    let uncertain = OutboxOutcome::Uncertain {
        error: "connection reset after DATA".into(),
    };
    for (m, outcome) in [
        (&mine[0], &failed),
        (&mine[1], &failed),
        (&mine[2], &uncertain),
        (&theirs[0], &failed),
    ] {
        assert!(s.finish_outbox(m.id, "b", outcome).await.unwrap());
    }
    let resent = s
        .resend_failed_outbox(
            Some(c.id),
            t.plus_secs(10),
            &audit("resendFailedMessages", "bulk"),
        )
        .await
        .unwrap();
    assert_eq!(resent, 2);
    let state_of = |id: Uuid| async move {
        let m = s.get_outbox_message(id).await.unwrap().unwrap();
        (m.state, m.attempts, m.next_attempt_at, m.claimed_by)
    };
    for m in &mine[..2] {
        assert_eq!(
            state_of(m.id).await,
            (OutboxState::Pending, 0, t.plus_secs(10), None)
        );
    }
    assert_eq!(state_of(mine[2].id).await.0, OutboxState::Uncertain);
    assert_eq!(state_of(theirs[0].id).await.0, OutboxState::Failed);
    assert_eq!(audits_for(s, "bulk").await.len(), 1);
    // Nothing failed left in the campaign: nothing written, not even the audit row.
    let none = s
        .resend_failed_outbox(
            Some(c.id),
            t.plus_secs(20),
            &audit("resendFailedMessages", "bulk-none"),
        )
        .await
        .unwrap();
    assert_eq!(none, 0);
    assert!(audits_for(s, "bulk-none").await.is_empty());
    // Every campaign's (and the drained ones of earlier checks).
    let all = s
        .resend_failed_outbox(
            None,
            t.plus_secs(30),
            &audit("resendFailedMessages", "bulk-all"),
        )
        .await
        .unwrap();
    assert!(all >= 1, "{all}");
    assert_eq!(state_of(theirs[0].id).await.0, OutboxState::Pending);
    assert_eq!(
        s.outbox_counts(Some(other.id)).await.unwrap().failed,
        0,
        "none failed left"
    );
    drain_outbox(s).await;
}

/// Deleting a campaign cancels what it has not sent, keeps what it sent (or is sending) and
/// its decisions go; counts and the outbox list with its filters and paging.
async fn campaign_outbox_deletion(s: &dyn Store) {
    drain_outbox(s).await;
    let t = T0.plus_secs(5 * 86_400);
    let c = campaign("Deleted soon");
    let other = campaign("Stays");
    for x in [&c, &other] {
        s.create_campaign(x, 1_000, &audit("createCampaign", "del-campaign"))
            .await
            .unwrap();
    }
    let wave = (c.id, Uuid::new_v4());
    let d = send_decision("del:w:t-7", c.id, wave.1, t);
    let messages = decision_messages(&d.key, wave, t, 5);
    assert!(s.record_send_decision(&d, &messages, None).await.unwrap());
    let od = send_decision("del:other:t-7", other.id, Uuid::new_v4(), t);
    let other_messages = decision_messages(&od.key, (other.id, od.wave_id), t, 1);
    assert!(
        s.record_send_decision(&od, &other_messages, None)
            .await
            .unwrap()
    );
    let test = outbox_message("test:del", None, t);
    s.enqueue_outbox_message(&test, None).await.unwrap();
    assert_eq!(
        s.claim_outbox("a", t, t.plus_secs(60), 100)
            .await
            .unwrap()
            .len(),
        7
    );
    // pending (retry later), claimed, transmitting, sent, failed.
    let [pending, claimed, transmitting, sent, failed] = [0, 1, 2, 3, 4].map(|i| messages[i].id);
    let later = OutboxOutcome::Retry {
        error: "421 busy".into(),
        next_attempt_at: t.plus_secs(600),
    };
    assert!(s.finish_outbox(pending, "a", &later).await.unwrap());
    assert!(
        s.mark_outbox_transmitting(transmitting, "a", t.plus_secs(120))
            .await
            .unwrap()
    );
    assert!(
        s.finish_outbox(sent, "a", &OutboxOutcome::Sent { at: t })
            .await
            .unwrap()
    );
    assert!(
        s.finish_outbox(
            failed,
            "a",
            &OutboxOutcome::Failed {
                error: "550".into()
            }
        )
        .await
        .unwrap()
    );
    let one = OutboxCounts {
        pending: 1,
        claimed: 1,
        transmitting: 1,
        sent: 1,
        failed: 1,
        ..Default::default()
    };
    assert_eq!(s.outbox_counts(Some(c.id)).await.unwrap(), one);
    assert_eq!(
        s.outbox_counts(Some(other.id)).await.unwrap(),
        OutboxCounts {
            claimed: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        s.outbox_counts(Some(Uuid::new_v4())).await.unwrap(),
        OutboxCounts::default()
    );

    // Filters and keyset paging (by id).
    let all_of_c = outbox_of(s, c.id).await;
    assert_eq!(
        all_of_c.iter().map(|m| m.id).collect::<Vec<_>>(),
        by_id(messages.clone())
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_outbox(&OutboxFilter {
                campaign_id: Some(c.id),
                after,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all_of_c, "pages of 2 add up to the list");
    let only = |f: OutboxFilter| async move {
        s.list_outbox(&OutboxFilter {
            limit: MAX_PAGE,
            ..f
        })
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect::<Vec<_>>()
    };
    assert_eq!(
        only(OutboxFilter {
            campaign_id: Some(c.id),
            state: Some(OutboxState::Sent),
            ..Default::default()
        })
        .await,
        vec![sent]
    );
    assert_eq!(
        only(OutboxFilter {
            user_id: messages[4].user_id,
            ..Default::default()
        })
        .await,
        vec![failed]
    );
    assert_eq!(
        only(OutboxFilter {
            wave_id: Some(od.wave_id),
            ..Default::default()
        })
        .await,
        vec![other_messages[0].id]
    );
    assert_eq!(
        only(OutboxFilter {
            campaign_id: Some(c.id),
            wave_id: Some(od.wave_id),
            ..Default::default()
        })
        .await,
        Vec::<Uuid>::new(),
        "every filter given must pass"
    );

    // Delete: what was not sent is cancelled, the rest stays; its decisions go.
    s.delete_campaign(c.id, &audit("deleteCampaign", "del-delete"))
        .await
        .unwrap();
    assert_eq!(audits_for(s, "del-delete").await.len(), 1);
    assert!(s.list_send_decisions(c.id).await.unwrap().is_empty());
    assert_eq!(
        s.outbox_counts(Some(c.id)).await.unwrap(),
        OutboxCounts {
            transmitting: 1,
            sent: 1,
            failed: 1,
            cancelled: 2,
            ..Default::default()
        }
    );
    assert!(
        !s.mark_outbox_transmitting(claimed, "a", t.plus_secs(120))
            .await
            .unwrap(),
        "a cancelled message is not transmitted"
    );
    assert!(
        s.finish_outbox(
            transmitting,
            "a",
            &OutboxOutcome::Sent { at: t.plus_secs(1) }
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.get_outbox_message(claimed).await.unwrap().unwrap().state,
        OutboxState::Cancelled
    );
    assert!(
        s.claim_outbox("b", t.plus_secs(600), t.plus_secs(660), 100)
            .await
            .unwrap()
            .iter()
            .all(|m| m.campaign_id != Some(c.id)),
        "a cancelled message is never claimed"
    );
    // The other campaign and the test-send are untouched.
    assert_eq!(s.list_send_decisions(other.id).await.unwrap(), vec![od]);
    assert_eq!(
        s.get_outbox_message(test.id).await.unwrap().unwrap().state,
        OutboxState::Claimed
    );
    // Deleted: a decision for it is refused; deleting again is NotFound (no audit row).
    let late = send_decision("del:w:t0", c.id, wave.1, t);
    let r = s
        .record_send_decision(&late, &decision_messages(&late.key, wave, t, 1), None)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    let r = s
        .delete_campaign(c.id, &audit("deleteCampaign", "del-again"))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
    assert!(audits_for(s, "del-again").await.is_empty());

    // The counts of all messages add up to the whole outbox.
    let mut total = 0;
    let mut after = None;
    loop {
        let page = s
            .list_outbox(&OutboxFilter {
                after,
                limit: MAX_PAGE,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        total += page.len() as u64;
    }
    let counts = s.outbox_counts(None).await.unwrap();
    assert_eq!(counts.total(), total);
    assert!(counts.cancelled >= 2 && counts.sent >= 2);
    drain_outbox(s).await;
    s.delete_campaign(other.id, &audit("deleteCampaign", "del-cleanup"))
        .await
        .unwrap();
}

/// Campaign progress reads every direct member's passkeys in one call (not nested groups'
/// members, not non-members), and users in bulk by id.
async fn campaign_bulk_reads(s: &dyn Store) {
    let [a, b, nested_user, outsider] = [
        mfa_user(s, "wave.example", "a").await,
        mfa_user(s, "wave.example", "b").await,
        mfa_user(s, "wave.example", "nested").await,
        mfa_user(s, "wave.example", "outsider").await,
    ];
    let wave = group_with(s, MembershipKind::Assigned, &[]).await;
    let nested = group_with(s, MembershipKind::Assigned, &[]).await;
    let empty = group_with(s, MembershipKind::Assigned, &[]).await;
    let add = |g: Uuid, kind: MemberKind, id: Uuid| async move {
        s.add_group_member(
            g,
            MemberRef { kind, id },
            T0,
            &audit("addGroupMember", "bulk"),
        )
        .await
        .unwrap();
    };
    add(wave, MemberKind::User, a).await;
    add(wave, MemberKind::User, b).await;
    add(wave, MemberKind::Group, nested).await;
    add(nested, MemberKind::User, nested_user).await;
    let mut keys = Vec::new();
    for (i, (user, family)) in [
        (a, "iPhone"),
        (a, "windows"),
        (b, "androidSamsung"),
        (nested_user, "macOS"),
        (outsider, "securityKey"),
    ]
    .into_iter()
    .enumerate()
    {
        // a's second passkey is older than its first: by creation time within a user.
        let created = if i == 1 {
            T0.minus_secs(10)
        } else {
            T0.plus_secs(i as i64)
        };
        let mut p = passkey(user, &format!("bulk-cred-{i}"), created);
        p.device_family = family.into();
        p.aaguid = Uuid::new_v4();
        p.backed_up = i % 2 == 0;
        s.add_passkey(&p, 10, &audit("addPasskey", "bulk"))
            .await
            .unwrap();
        keys.push(p);
    }
    let fact = |p: &PasskeyRecord| PasskeyFact {
        id: p.id,
        user_id: p.user_id,
        created_at: p.created_at,
        device_family: p.device_family.clone(),
        aaguid: p.aaguid,
        backup_eligible: p.backup_eligible,
        backed_up: p.backed_up,
        last_used_at: p.last_used_at,
    };
    let mut want = vec![fact(&keys[1]), fact(&keys[0]), fact(&keys[2])];
    want.sort_by_key(|f| (f.user_id, f.created_at, f.id));
    assert_eq!(
        s.passkeys_of_group_members(wave).await.unwrap(),
        want,
        "direct members only"
    );
    assert!(s.passkeys_of_group_members(empty).await.unwrap().is_empty());
    assert!(
        s.passkeys_of_group_members(Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );

    // Users by id: in the order asked, duplicates once, missing left out, across statements.
    let names = |users: Vec<User>| users.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert!(s.users_by_ids(&[]).await.unwrap().is_empty());
    assert_eq!(
        names(s.users_by_ids(&[b, Uuid::new_v4(), a, b]).await.unwrap()),
        vec![b, a]
    );
    let got = s.users_by_ids(&[a]).await.unwrap();
    assert_eq!(
        got,
        vec![s.get_user(a).await.unwrap().unwrap().user],
        "every field"
    );
    let mut many: Vec<Uuid> = (0..USERS_BY_IDS_PER_STATEMENT)
        .map(|_| Uuid::new_v4())
        .collect();
    many[0] = outsider;
    many.push(nested_user);
    assert_eq!(
        names(s.users_by_ids(&many).await.unwrap()),
        vec![outsider, nested_user]
    );
}
