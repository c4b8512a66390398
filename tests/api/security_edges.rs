//! Security edges found by black-box testing (issue #13): account-wide
//! authority (A20), visibility (A21), principals without a realm refused on
//! their kind before any lookup (SPEC §5), and token hygiene (SPEC §5).

use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use portal_access::proto::v1 as pb;

/// SA: full admin of sub-portal A only. SB: limited admin of sub-portal B
/// and a learner in A. SC: full admin of B and a learner in A.
struct Split {
    world: World,
    sa: Person,
    sb: Person,
    sc: Person,
}

async fn split(app: &TestApp) -> Split {
    let world = world(app).await;
    let sa = person(
        app,
        &world,
        &world.sub_a,
        "sa@acme.io",
        pb::UserType::Admin,
        Some(true),
    )
    .await;
    let sb = person(
        app,
        &world,
        &world.sub_b,
        "sb@acme.io",
        pb::UserType::Admin,
        Some(false),
    )
    .await;
    let sc = person(
        app,
        &world,
        &world.sub_b,
        "sc@acme.io",
        pb::UserType::Admin,
        Some(true),
    )
    .await;
    for learner in [&sb, &sc] {
        set_type(
            app,
            &world.realm.admin_token,
            &learner.id(),
            &world.sub_a,
            pb::UserType::Learner,
            None,
        )
        .await
        .expect("learner in A");
    }
    Split { world, sa, sb, sc }
}

async fn effective_in(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    user_id: &str,
) -> Result<pb::GetEffectivePermissionsResponse, tonic::Status> {
    app.admins()
        .get_effective_permissions(with_token(
            pb::GetEffectivePermissionsRequest {
                portal_id: portal_id.into(),
                user_id: user_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

both_databases! {
    /// Fails before the fix: SA turned SB's settings on through subA.
    async fn a20_settings_access_needs_every_portal_where_the_target_is_admin(app) {
        let Split { world, sa, sb, sc } = split(app).await;
        let before = app.count("audit_events").await;

        let refused = set_settings(app, &sa.token, &sb.id(), true).await;
        assert_error(refused, Code::PermissionDenied, "PRIVILEGE_ESCALATION");
        let refused = set_settings(app, &sa.token, &sc.id(), false).await;
        assert_error(refused, Code::PermissionDenied, "PRIVILEGE_ESCALATION");
        let refused = set_type(app, &sa.token, &sb.id(), &world.sub_a, pb::UserType::Admin, Some(true)).await;
        assert_error(refused, Code::PermissionDenied, "PRIVILEGE_ESCALATION");
        let refused = set_type(app, &sa.token, &sc.id(), &world.sub_a, pb::UserType::Admin, Some(false)).await;
        assert_error(refused, Code::PermissionDenied, "PRIVILEGE_ESCALATION");

        // Nothing changed: SB still lacks settings in B, SC keeps them, and
        // no event was recorded.
        let sb_in_b = effective(app, &world.realm.admin_token, &world.sub_b, &sb.id()).await;
        assert!(!has(&sb_in_b, pb::Permission::AccessSettings));
        assert!(!has(&sb_in_b, pb::Permission::ManageApiKeys));
        let sc_in_b = effective(app, &world.realm.admin_token, &world.sub_b, &sc.id()).await;
        assert!(has(&sc_in_b, pb::Permission::AccessSettings));
        assert_eq!(app.count("audit_events").await, before);

        // Promoting SB in A without naming the option is A13's ground, not
        // A20's: SB stays limited.
        set_type(app, &sa.token, &sb.id(), &world.sub_a, pb::UserType::Admin, None)
            .await
            .expect("promotion that leaves settings alone");
        // The top-level admin administers every portal.
        set_settings(app, &world.realm.admin_token, &sb.id(), true)
            .await
            .expect("a top-level admin changes it");
    }
}

both_databases! {
    /// Fails before the fix: a full admin of subA read X's type and
    /// permissions in subB; a learner got NOT_FOUND for an admin.
    async fn a21_admins_learn_only_about_portals_they_administer(app) {
        let Split { world, sa, sb, .. } = split(app).await;
        let learner = person(app, &world, &world.sub_a, "l@acme.io", pb::UserType::Learner, None).await;

        // SA may ask about SB in subA (a portal SA administers) ...
        let in_a = effective_in(app, &sa.token, &world.sub_a, &sb.id()).await.expect("own portal");
        assert_eq!(in_a.user_type, pb::UserType::Learner as i32);
        // ... not in subB, and not through CheckPermission either.
        assert_error(
            effective_in(app, &sa.token, &world.sub_b, &sb.id()).await,
            Code::PermissionDenied,
            "ADMIN_REQUIRED",
        );
        let check = app
            .admins()
            .check_permission(with_token(
                pb::CheckPermissionRequest {
                    portal_id: world.sub_b.clone(),
                    permission: pb::Permission::ManageUsers as i32,
                    user_id: sb.id(),
                },
                &sa.token,
            ))
            .await;
        assert_error(check, Code::PermissionDenied, "ADMIN_REQUIRED");
        // subA's API key cannot either.
        let (_, key_token) = api_key(app, &world.realm.admin_token, &world.sub_a).await;
        assert_error(
            effective_in(app, &key_token, &world.sub_b, &sb.id()).await,
            Code::PermissionDenied,
            "ADMIN_REQUIRED",
        );

        // GetUser and GetEffectivePermissions agree: SA sees SB only in A.
        let seen = get_user(app, &sa.token, &sb.id()).await;
        assert_eq!(type_in(&seen, &world.sub_b), None);
        assert_eq!(type_in(&seen, &world.sub_a), Some(pb::UserType::Learner));

        // A learner asking about an admin, or about nobody, gets the same
        // PERMISSION_DENIED: existence is not revealed.
        let random = Uuid::new_v4().to_string();
        for user_id in [&sa.id(), &random] {
            assert_error(
                effective_in(app, &learner.token, &world.sub_a, user_id).await,
                Code::PermissionDenied,
                "ADMIN_REQUIRED",
            );
            let got = app
                .admins()
                .get_user(with_token(pb::GetUserRequest { user_id: user_id.clone() }, &learner.token))
                .await;
            assert_error(got, Code::PermissionDenied, "ADMIN_REQUIRED");
        }
        // A sub-portal admin cannot tell "outside my portals" from "absent".
        let only_in_b = person(app, &world, &world.sub_b, "b@acme.io", pb::UserType::Learner, None).await;
        for user_id in [&only_in_b.id(), &random] {
            let got = app
                .admins()
                .get_user(with_token(pb::GetUserRequest { user_id: user_id.clone() }, &sa.token))
                .await;
            assert_error(got, Code::PermissionDenied, "ADMIN_REQUIRED");
            assert_error(
                delete(app, &sa.token, user_id).await,
                Code::PermissionDenied,
                "ADMIN_REQUIRED",
            );
        }
        // A top-level admin sees the whole realm: absent is NOT_FOUND.
        let got = app
            .admins()
            .get_user(with_token(pb::GetUserRequest { user_id: random.clone() }, &world.realm.admin_token))
            .await;
        assert_error(got, Code::NotFound, "USER_NOT_FOUND");

        // CheckEligibility is for admins and services, even about oneself.
        let eligibility = |token: String, user_id: String| {
            let mut admins = app.admins();
            let portal_id = world.sub_a.clone();
            async move {
                admins
                    .check_eligibility(with_token(
                        pb::CheckEligibilityRequest {
                            portal_id,
                            user_id,
                            purpose: pb::EligibilityPurpose::GroupMember as i32,
                        },
                        &token,
                    ))
                    .await
            }
        };
        assert_error(
            eligibility(learner.token.clone(), learner.id()).await,
            Code::PermissionDenied,
            "ADMIN_REQUIRED",
        );
        eligibility(sa.token.clone(), learner.id()).await.expect("an admin of the portal asks");
        // The learner still asks about themselves.
        let own = effective_in(app, &learner.token, &world.sub_a, &learner.id()).await.expect("self");
        assert!(has(&own, pb::Permission::ViewPortal));
    }
}

/// One answer, comparable across ids: code and reason.
fn answer<T>(result: Result<T, tonic::Status>) -> (Code, String) {
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => {
            let reason = status
                .get_details_error_info()
                .map(|i| i.reason)
                .unwrap_or_default();
            (status.code(), reason)
        }
    }
}

/// Every RPC that takes an id, called as `token` about `id` (a portal,
/// realm, user or request id, whichever the RPC names).
async fn every_rpc(app: &TestApp, token: &str, id: &str) -> Vec<(&'static str, (Code, String))> {
    let (p, a, s) = (app.portals(), app.admins(), app.support());
    macro_rules! t {
        ($m:expr) => {
            with_token($m, token)
        };
    }
    let id = id.to_owned();
    vec![
        (
            "GetPortal",
            answer(
                p.clone()
                    .get_portal(t!(pb::GetPortalRequest {
                        portal_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "ListPortals",
            answer(
                p.clone()
                    .list_portals(t!(pb::ListPortalsRequest {
                        realm_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "CreateSubPortal",
            answer(
                p.clone()
                    .create_sub_portal(t!(pb::CreateSubPortalRequest {
                        realm_id: id.clone(),
                        name: "X".into(),
                        subdomain: "x-oracle".into(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "UpdateRealmSettings",
            answer(
                p.clone()
                    .update_realm_settings(t!(pb::UpdateRealmSettingsRequest {
                        realm_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "GenerateApiKeys",
            answer(
                p.clone()
                    .generate_api_keys(t!(pb::GenerateApiKeysRequest {
                        portal_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "GetApiKeys",
            answer(
                p.clone()
                    .get_api_keys(t!(pb::GetApiKeysRequest {
                        portal_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "CreateUser",
            answer(
                a.clone()
                    .create_user(t!(learner_request(&id, "o@x.io", "O")))
                    .await,
            ),
        ),
        (
            "ImportUsers",
            answer(
                a.clone()
                    .import_users(t!(pb::ImportUsersRequest {
                        portal_id: id.clone(),
                        users: vec![pb::UserToImport {
                            email: "o@x.io".into(),
                            display_name: "O".into(),
                            user_type: pb::UserType::Learner as i32,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "GetUser",
            answer(
                a.clone()
                    .get_user(t!(pb::GetUserRequest {
                        user_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "ListUsers",
            answer(
                a.clone()
                    .list_users(t!(pb::ListUsersRequest {
                        portal_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "SetUserType",
            answer(
                a.clone()
                    .set_user_type(t!(pb::SetUserTypeRequest {
                        user_id: id.clone(),
                        portal_id: id.clone(),
                        user_type: pb::UserType::Learner as i32,
                        can_access_portal_settings: None
                    }))
                    .await,
            ),
        ),
        (
            "RemoveUserFromPortal",
            answer(
                a.clone()
                    .remove_user_from_portal(t!(pb::RemoveUserFromPortalRequest {
                        user_id: id.clone(),
                        portal_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "DeleteUser",
            answer(
                a.clone()
                    .delete_user(t!(pb::DeleteUserRequest {
                        user_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "UpdateAdminPermissions",
            answer(
                a.clone()
                    .update_admin_permissions(t!(pb::UpdateAdminPermissionsRequest {
                        user_id: id.clone(),
                        can_access_portal_settings: false
                    }))
                    .await,
            ),
        ),
        (
            "GetEffectivePermissions",
            answer(
                a.clone()
                    .get_effective_permissions(t!(pb::GetEffectivePermissionsRequest {
                        portal_id: id.clone(),
                        user_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "CheckPermission",
            answer(
                a.clone()
                    .check_permission(t!(pb::CheckPermissionRequest {
                        portal_id: id.clone(),
                        user_id: id.clone(),
                        permission: pb::Permission::ViewPortal as i32
                    }))
                    .await,
            ),
        ),
        (
            "CheckEligibility",
            answer(
                a.clone()
                    .check_eligibility(t!(pb::CheckEligibilityRequest {
                        portal_id: id.clone(),
                        user_id: id.clone(),
                        purpose: pb::EligibilityPurpose::GroupMember as i32
                    }))
                    .await,
            ),
        ),
        (
            "ListAccessRequests",
            answer(
                s.clone()
                    .list_access_requests(t!(pb::ListAccessRequestsRequest {
                        realm_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "DeclineAccessRequest",
            answer(
                s.clone()
                    .decline_access_request(t!(pb::DeclineAccessRequestRequest {
                        access_request_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "ListPortalAccess",
            answer(
                s.clone()
                    .list_portal_access(t!(pb::ListPortalAccessRequest {
                        realm_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "AllowAccess",
            answer(
                s.clone()
                    .allow_access(t!(pb::AllowAccessRequest {
                        access_request_id: id.clone(),
                        portal_ids: vec![id.clone()],
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "RevokeAccess",
            answer(
                s.clone()
                    .revoke_access(t!(pb::RevokeAccessRequest {
                        realm_id: id.clone(),
                        portal_ids: vec![id.clone()]
                    }))
                    .await,
            ),
        ),
        (
            "ListSupportAccessLogs",
            answer(
                s.clone()
                    .list_support_access_logs(t!(pb::ListSupportAccessLogsRequest {
                        portal_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
        (
            "VerifyAuditLog",
            answer(
                s.clone()
                    .verify_audit_log(t!(pb::VerifyAuditLogRequest {
                        realm_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "GetLogCheckpoint",
            answer(
                s.clone()
                    .get_log_checkpoint(t!(pb::GetLogCheckpointRequest {
                        realm_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "GetInclusionProof",
            answer(
                s.clone()
                    .get_inclusion_proof(t!(pb::GetInclusionProofRequest {
                        realm_id: id.clone(),
                        leaf_index: 0,
                        tree_size: 1
                    }))
                    .await,
            ),
        ),
        (
            "GetConsistencyProof",
            answer(
                s.clone()
                    .get_consistency_proof(t!(pb::GetConsistencyProofRequest {
                        realm_id: id.clone(),
                        old_size: 1,
                        new_size: 2
                    }))
                    .await,
            ),
        ),
        (
            "ExportAccessEvidence",
            answer(
                s.clone()
                    .export_access_evidence(t!(pb::ExportAccessEvidenceRequest {
                        access_request_id: id.clone()
                    }))
                    .await,
            ),
        ),
        (
            "StreamAuditEvents",
            answer(
                s.clone()
                    .stream_audit_events(t!(pb::StreamAuditEventsRequest {
                        realm_id: id.clone(),
                        ..Default::default()
                    }))
                    .await,
            ),
        ),
    ]
}

both_databases! {
    /// Fails before the fix: GetPortal and ListSupportAccessLogs loaded
    /// the portal before looking at the caller's kind, so a support agent
    /// told a real portal id (WRONG_PRINCIPAL_KIND) from a random one
    /// (NOT_FOUND).
    async fn principals_without_a_realm_learn_nothing_about_ids(app) {
        let world = world(app).await;
        let learner = person(app, &world, &world.sub_a, "l@acme.io", pb::UserType::Learner, None).await;
        let request = app
            .support()
            .request_access(with_token(
                pb::RequestAccessRequest {
                    realm_id: world.realm.realm_id.clone(),
                    reason: "ticket".into(),
                    ..Default::default()
                },
                &app.support_agent(Uuid::new_v4(), "Sam Support"),
            ))
            .await
            .unwrap()
            .into_inner()
            .access_request
            .unwrap();
        let callers = [
            ("support agent", app.support_agent(Uuid::new_v4(), "Sam Support")),
            ("service without scopes", app.service(&[])),
            ("service with another scope", app.service(&["api_keys.verify"])),
        ];
        let real_ids = [
            world.realm.realm_id.clone(),
            world.realm.top_portal_id.clone(),
            world.sub_a.clone(),
            learner.id(),
            request.access_request_id.clone(),
        ];
        let random = Uuid::new_v4().to_string();
        for (who, token) in &callers {
            let unknown = every_rpc(app, token, &random).await;
            for real in &real_ids {
                let known = every_rpc(app, token, real).await;
                for ((rpc, for_real), (_, for_random)) in known.iter().zip(&unknown) {
                    assert_eq!(
                        for_real, for_random,
                        "{rpc} as a {who}: a real id is answered differently from a random one"
                    );
                }
            }
        }
    }
}

both_databases! {
    async fn tokens_not_valid_yet_or_from_the_future_are_refused(app) {
        let world = world(app).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = app.claims("account", Uuid::parse_str(&world.realm.admin_id).unwrap());
        claims.realm = Some(world.realm.realm_id.clone());
        claims.channel = Some("interactive".into());
        let list = |token: String| {
            let mut portals = app.portals();
            let realm_id = world.realm.realm_id.clone();
            async move {
                portals
                    .list_portals(with_token(
                        pb::ListPortalsRequest { realm_id, ..Default::default() },
                        &token,
                    ))
                    .await
            }
        };
        let mut not_yet = claims.clone();
        not_yet.nbf = Some(now + 3600);
        assert_error(list(app.sign(&not_yet)).await, Code::Unauthenticated, "INVALID_TOKEN");
        let mut future = claims.clone();
        future.iat = Some(now + 3600);
        assert_error(list(app.sign(&future)).await, Code::Unauthenticated, "INVALID_TOKEN");
        list(app.sign(&claims)).await.expect("the same token, valid now");
    }
}

both_databases! {
    /// Fails before the fix: a 422-character name with ESC/BEL/newline was
    /// stored in an access request and in audit events.
    async fn token_names_that_would_be_stored_obey_the_name_rules(app) {
        let world = world(app).await;
        let before = app.count("audit_events").await;
        let bad_names = [
            format!("Sam\u{1b}[2J\u{7}\n{}", "x".repeat(400)),
            "Sam\nSupport".to_owned(),
            "x".repeat(201),
        ];
        for name in bad_names {
            let token = app.support_agent(Uuid::new_v4(), &name);
            let refused = app
                .support()
                .request_access(with_token(
                    pb::RequestAccessRequest {
                        realm_id: world.realm.realm_id.clone(),
                        reason: "ticket".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await;
            assert_error(refused, Code::Unauthenticated, "INVALID_TOKEN");
        }
        assert_eq!(app.count("audit_events").await, before);
        assert_eq!(app.count("access_requests").await, 0);
    }
}

/// A ListUsers page of `portal_id` read through `app`.
async fn list_users_page(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    page_token: &str,
) -> Result<pb::ListUsersResponse, tonic::Status> {
    app.admins()
        .list_users(with_token(
            pb::ListUsersRequest {
                portal_id: portal_id.into(),
                page_size: 1,
                page_token: page_token.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

both_databases! {
    /// Fails before the fix: a token recomputed with the public checksum
    /// was accepted.
    async fn forged_page_tokens_and_cursors_are_refused(app) {
        use base64::Engine;
        use sha2::Digest;
        let world = world(app).await;
        for n in 0..3 {
            person(app, &world, &world.sub_a, &format!("p{n}@acme.io"), pb::UserType::Learner, None).await;
        }
        let admin = &world.realm.admin_token;
        let genuine = list_users_page(app, admin, &world.sub_a, "").await.unwrap().next_page_token;
        list_users_page(app, admin, &world.sub_a, &genuine).await.expect("a genuine token pages");

        // What anyone could compute before: the old unkeyed checksum.
        let payload = format!("users|{}|{}", world.sub_a, Uuid::nil());
        let sum = hex::encode(&sha2::Sha256::digest(format!("portal-access/page/{payload}"))[..6]);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let forged = b64.encode(format!("{payload}|{sum}"));
        // And a genuine token with its position changed.
        let text = String::from_utf8(b64.decode(&genuine).unwrap()).unwrap();
        let (body, seal) = text.rsplit_once('|').unwrap();
        let (head, _) = body.rsplit_once('|').unwrap();
        let altered = b64.encode(format!("{head}|{}|{seal}", Uuid::nil()));
        for bad in [forged, altered] {
            let status = assert_error(
                list_users_page(app, admin, &world.sub_a, &bad).await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert_eq!(bad_fields(&status), ["page_token"]);
        }

        let payload = "v1:1";
        let sum = hex::encode(&sha2::Sha256::digest(format!("portal-access/cursor/{payload}"))[..6]);
        let forged_cursor = b64.encode(format!("{payload}:{sum}"));
        let opened = app
            .support()
            .stream_audit_events(with_token(
                pb::StreamAuditEventsRequest {
                    realm_id: world.realm.realm_id.clone(),
                    start: Some(pb::stream_audit_events_request::Start::AfterCursor(forged_cursor)),
                    ..Default::default()
                },
                admin,
            ))
            .await;
        let status = assert_error(opened, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(bad_fields(&status), ["after_cursor"]);
    }
}

both_databases! {
    /// Replicas sharing the secret read each other's tokens; another
    /// deployment's are refused; after a rotation the previous secret
    /// still opens tokens handed out before it.
    async fn page_tokens_follow_the_shared_secret_and_survive_a_rotation(app) {
        let world = world(app).await;
        for n in 0..3 {
            person(app, &world, &world.sub_a, &format!("p{n}@acme.io"), pb::UserType::Learner, None).await;
        }
        let admin = &world.realm.admin_token;
        let token = list_users_page(app, admin, &world.sub_a, "").await.unwrap().next_page_token;
        let replica = |secret: Option<&str>, previous: Option<&str>| {
            let mut config = test_config(&app.database_url);
            config.page_token_secret = secret.map(str::to_owned);
            config.page_token_secret_previous = previous.map(str::to_owned);
            start_server(config, app.backend)
        };
        let same = replica(None, None).await;
        list_users_page(&same, admin, &world.sub_a, &token).await.expect("same secret");
        let new_secret = "a-new-page-token-secret-0123456789abcdef";
        let other = replica(Some(new_secret), None).await;
        assert_error(
            list_users_page(&other, admin, &world.sub_a, &token).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        let rotated = replica(Some(new_secret), Some(TEST_SECRET)).await;
        list_users_page(&rotated, admin, &world.sub_a, &token).await.expect("previous secret");
        let fresh = list_users_page(&rotated, admin, &world.sub_a, "").await.unwrap().next_page_token;
        list_users_page(&other, admin, &world.sub_a, &fresh).await.expect("sealed with the new secret");
        for replica in [same, other, rotated] {
            replica.stop().await;
        }
    }
}
