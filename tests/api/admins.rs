//! AdminService: one test per rule A1-A19, through gRPC, on both databases.

use tonic::Code;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use pb::Permission as P;
use pb::UserType as T;
use portal_access::proto::v1 as pb;

const LAST_ADMIN_MESSAGE: &str = "Permission cannot be disabled on the last admin account.";

both_databases! {
    async fn a1_top_level_admin_has_full_rights_in_every_sub_portal(app) {
        let w = world(app).await;
        let admin = &w.realm.admin_token;
        for portal in [&w.realm.top_portal_id, &w.sub_a, &w.sub_b] {
            let e = effective(app, admin, portal, "").await;
            assert_eq!(e.user_type, T::Admin as i32);
            assert!(e.top_level_admin);
            for p in [P::ViewPortal, P::ManageUsers, P::ManageGroups, P::ManageCourses, P::ManageContent, P::ManageAdmins, P::AccessSettings, P::ManageApiKeys] {
                assert!(has(&e, p), "{p:?} in {portal}");
            }
        }
        // Full admin rights in a sub-portal: creating users there works.
        create_user(app, admin, &w.sub_a, "l@acme.example", T::Learner, None).await.unwrap();
    }
}

both_databases! {
    async fn a2_top_level_admin_cannot_be_added_to_another_portal(app) {
        let w = world(app).await;
        let second = person(app, &w, &w.realm.top_portal_id.clone(), "top2@acme.example", T::Admin, None).await;
        let refused = set_type(app, &w.realm.admin_token, &second.id(), &w.sub_a, T::Admin, None).await;
        assert_error(refused, Code::FailedPrecondition, "TOP_LEVEL_ADMIN_ALREADY_HAS_ACCESS");
        let user = get_user(app, &w.realm.admin_token, &second.id()).await;
        assert_eq!(user.memberships.len(), 1, "nothing was added");
    }
}

both_databases! {
    async fn a3_top_level_admin_type_cannot_change_in_a_sub_portal(app) {
        let w = world(app).await;
        let second = person(app, &w, &w.realm.top_portal_id.clone(), "top2@acme.example", T::Admin, None).await;
        for user_type in [T::Learner, T::Instructor, T::Manager] {
            let refused = set_type(app, &w.realm.admin_token, &second.id(), &w.sub_a, user_type, None).await;
            assert_error(refused, Code::FailedPrecondition, "TOP_LEVEL_ADMIN_TYPE_FIXED");
        }
        let e = effective(app, &second.token, &w.sub_a, "").await;
        assert_eq!(e.user_type, T::Admin as i32, "still admin in the sub-portal");
    }
}

both_databases! {
    async fn a4_top_level_admin_type_is_the_same_in_every_portal(app) {
        let w = world(app).await;
        let limited = person(app, &w, &w.realm.top_portal_id.clone(), "lim@acme.example", T::Admin, Some(false)).await;
        let top = effective(app, &limited.token, &w.realm.top_portal_id, "").await;
        for portal in [&w.sub_a, &w.sub_b] {
            let e = effective(app, &limited.token, portal, "").await;
            assert_eq!(e.user_type, top.user_type);
            assert_eq!(e.can_access_portal_settings, top.can_access_portal_settings);
            assert!(e.top_level_admin);
        }
    }
}

both_databases! {
    async fn a5_an_account_holds_different_types_in_different_portals(app) {
        let w = world(app).await;
        let admin = &w.realm.admin_token;
        let ana = person(app, &w, &w.realm.top_portal_id.clone(), "ana@acme.example", T::Learner, None).await;
        set_type(app, admin, &ana.id(), &w.sub_a, T::Instructor, None).await.unwrap();
        let made = set_type(app, admin, &ana.id(), &w.sub_b, T::Admin, None).await.unwrap();
        let user = made.user.unwrap();
        assert_eq!(type_in(&user, &w.realm.top_portal_id), Some(T::Learner));
        assert_eq!(type_in(&user, &w.sub_a), Some(T::Instructor));
        assert_eq!(type_in(&user, &w.sub_b), Some(T::Admin));
        assert!(!user.top_level_admin, "an admin of a sub-portal only");
        assert!(made.removed_portal_ids.is_empty());
        assert_eq!(effective(app, &ana.token, &w.sub_b, "").await.user_type, T::Admin as i32);
        assert_eq!(effective(app, &ana.token, &w.sub_a, "").await.user_type, T::Instructor as i32);
        assert!(!allowed(app, &ana.token, &w.sub_a, "", P::ManageUsers).await);
        assert!(allowed(app, &ana.token, &w.sub_b, "", P::ManageUsers).await);
    }
}

async fn list_user_ids(app: &TestApp, token: &str, portal_id: &str) -> Vec<String> {
    app.admins()
        .list_users(with_token(
            pb::ListUsersRequest {
                portal_id: portal_id.into(),
                page_size: 500,
                page_token: String::new(),
            },
            token,
        ))
        .await
        .expect("list users")
        .into_inner()
        .users
        .into_iter()
        .map(|u| u.user_id)
        .collect()
}

async fn eligible(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    user_id: &str,
    purpose: pb::EligibilityPurpose,
) -> (bool, String) {
    let r = app
        .admins()
        .check_eligibility(with_token(
            pb::CheckEligibilityRequest {
                portal_id: portal_id.into(),
                user_id: user_id.into(),
                purpose: purpose as i32,
            },
            token,
        ))
        .await
        .expect("check eligibility")
        .into_inner();
    (r.eligible, r.reason)
}

both_databases! {
    async fn a6_top_level_admins_are_unlisted_in_sub_portals_and_never_in_their_groups(app) {
        let w = world(app).await;
        let admin = &w.realm.admin_token;
        let learner = person(app, &w, &w.sub_a.clone(), "l@acme.example", T::Learner, None).await;
        let listed = list_user_ids(app, admin, &w.sub_a).await;
        assert_eq!(listed, vec![learner.id()], "only the sub-portal's own users");
        assert!(list_user_ids(app, admin, &w.realm.top_portal_id).await.contains(&w.realm.admin_id));

        let service = app.service(&["permissions.check"]);
        let (ok, reason) = eligible(app, &service, &w.sub_a, &w.realm.admin_id, pb::EligibilityPurpose::GroupMember).await;
        assert!(!ok);
        assert_eq!(reason, "TOP_LEVEL_ADMIN_NOT_GROUPABLE");
        assert!(eligible(app, &service, &w.sub_a, &learner.id(), pb::EligibilityPurpose::GroupMember).await.0);
    }
}

both_databases! {
    async fn a7_enrollable_setting_opens_sub_portal_courses_not_groups_nor_lists(app) {
        let w = world(app).await;
        let service = app.service(&["permissions.check"]);
        let courses = [pb::EligibilityPurpose::CourseLearner, pb::EligibilityPurpose::CourseInstructor, pb::EligibilityPurpose::CourseOwner];
        for purpose in courses {
            let (ok, reason) = eligible(app, &service, &w.sub_a, &w.realm.admin_id, purpose).await;
            assert!(!ok, "off by default");
            assert_eq!(reason, "TOP_LEVEL_ADMIN_NOT_ENROLLABLE");
        }
        // Only an operator changes it (through Customer Success or support).
        let change = |token: &str| with_token(
            pb::UpdateRealmSettingsRequest { realm_id: w.realm.realm_id.clone(), plan: None, top_level_admins_enrollable: Some(true) },
            token,
        );
        assert_error(app.portals().update_realm_settings(change(&w.realm.admin_token)).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND");
        app.portals().update_realm_settings(change(&app.operator())).await.unwrap();
        for purpose in courses {
            assert!(eligible(app, &service, &w.sub_a, &w.realm.admin_id, purpose).await.0, "{purpose:?}");
        }
        assert!(!eligible(app, &service, &w.sub_a, &w.realm.admin_id, pb::EligibilityPurpose::GroupMember).await.0);
        assert!(!list_user_ids(app, &w.realm.admin_token, &w.sub_a).await.contains(&w.realm.admin_id));
    }
}

both_databases! {
    async fn a8_sub_portal_admins_are_created_inside_their_sub_portal(app) {
        let w = world(app).await;
        let sub_admin = create_user(app, &w.realm.admin_token, &w.sub_a, "sa@acme.example", T::Admin, None).await.unwrap();
        assert_eq!(sub_admin.memberships.len(), 1);
        assert_eq!(type_in(&sub_admin, &w.sub_a), Some(T::Admin));
        assert!(!sub_admin.top_level_admin);
        let token = app.account(&w.realm.realm_id, &sub_admin.user_id);
        assert_eq!(effective(app, &token, &w.sub_b, "").await.user_type, T::Unspecified as i32, "no rights elsewhere");
        assert_eq!(effective(app, &token, &w.realm.top_portal_id, "").await.permissions.len(), 0);
    }
}

both_databases! {
    async fn a9_settings_access_is_an_account_wide_option_of_admins(app) {
        let w = world(app).await;
        let admin = &w.realm.admin_token;
        let sam = person(app, &w, &w.sub_a.clone(), "sam@acme.example", T::Admin, Some(false)).await;
        set_type(app, admin, &sam.id(), &w.sub_b, T::Admin, None).await.unwrap();
        for portal in [&w.sub_a, &w.sub_b] {
            let e = effective(app, &sam.token, portal, "").await;
            assert_eq!(e.user_type, T::Admin as i32, "limited access is not a separate user type");
            for p in [P::ManageUsers, P::ManageGroups, P::ManageCourses, P::ManageContent] {
                assert!(has(&e, p), "a limited admin reaches {p:?}");
            }
            for p in [P::AccessSettings, P::ManageApiKeys, P::ManageSupportAccess] {
                assert!(!has(&e, p), "a limited admin does not reach {p:?}");
            }
        }
        // Settings access is refused on non-admins.
        let refused = create_user(app, admin, &w.sub_a, "l@acme.example", T::Learner, Some(true)).await;
        assert_error(refused, Code::FailedPrecondition, "NOT_AN_ADMIN");
    }
}

both_databases! {
    async fn a10_default_settings_access_depends_on_how_the_admin_was_made(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let manual = create_user(app, &w.realm.admin_token, &top, "m@acme.example", T::Admin, None).await.unwrap();
        assert!(manual.can_access_portal_settings, "manual, one by one: on");
        let invited = create_user_with(app, &w.realm.admin_token, &top, "i@acme.example", T::Admin, None, true).await.unwrap();
        assert!(!invited.can_access_portal_settings, "invited: off");
        assert!(invited.invited);
        let bulk = app.account_on(&w.realm.realm_id, &w.realm.admin_id, "bulk_import");
        let imported = create_user(app, &bulk, &top, "b@acme.example", T::Admin, None).await.unwrap();
        assert!(!imported.can_access_portal_settings, "bulk import: off");
        let (_, api) = api_key(app, &w.realm.admin_token, &top).await;
        let via_api = create_user(app, &api, &w.sub_a, "a@acme.example", T::Admin, None).await.unwrap();
        assert!(!via_api.can_access_portal_settings, "API: off");
    }
}

both_databases! {
    async fn a11_turning_settings_on_is_manual_only_and_never_silently_dropped(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let bulk = app.account_on(&w.realm.realm_id, &w.realm.admin_id, "bulk_import");
        let (_, api) = api_key(app, &w.realm.admin_token, &top).await;
        let users_before = app.count("accounts").await;
        for token in [&bulk, &api] {
            let refused = create_user(app, token, &w.sub_a, "x@acme.example", T::Admin, Some(true)).await;
            assert_error(refused, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED");
        }
        assert_eq!(app.count("accounts").await, users_before, "refused, not created without the option");

        let limited = person(app, &w, &top, "lim@acme.example", T::Admin, Some(false)).await;
        for token in [&bulk, &api] {
            let refused = set_settings(app, token, &limited.id(), true).await;
            assert_error(refused, Code::PermissionDenied, "MANUAL_CHANNEL_REQUIRED");
        }
        let full = person(app, &w, &w.sub_a.clone(), "full@acme.example", T::Admin, Some(true)).await;
        // Turning it off is allowed on every channel.
        let off = set_settings(app, &bulk, &full.id(), false).await.unwrap();
        assert!(!off.user.unwrap().can_access_portal_settings);
        let on = set_settings(app, &w.realm.admin_token, &full.id(), true).await.unwrap();
        assert!(on.user.unwrap().can_access_portal_settings, "the console may turn it on");
    }
}

both_databases! {
    async fn a12_a_permission_change_applies_in_every_portal(app) {
        let w = world(app).await;
        let admin = &w.realm.admin_token;
        // A full top-level admin creates a limited sub-portal admin...
        let sub = person(app, &w, &w.sub_a.clone(), "sub@acme.example", T::Admin, Some(false)).await;
        set_type(app, admin, &sub.id(), &w.sub_b, T::Admin, None).await.unwrap();
        for portal in [&w.sub_a, &w.sub_b] {
            assert!(!allowed(app, &sub.token, portal, "", P::AccessSettings).await);
        }
        // ...whose change to full permissions applies in all their sub-portals.
        set_settings(app, admin, &sub.id(), true).await.unwrap();
        for portal in [&w.sub_a, &w.sub_b] {
            assert!(allowed(app, &sub.token, portal, "", P::AccessSettings).await);
        }
    }
}

both_databases! {
    async fn a13_admins_grant_the_same_or_fewer_permissions_than_their_own(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        // A limited admin creates another admin: limited, and cannot make it full.
        let limited = person(app, &w, &top, "lim@acme.example", T::Admin, Some(false)).await;
        let made = create_user(app, &limited.token, &top, "new@acme.example", T::Admin, None).await.unwrap();
        assert!(!made.can_access_portal_settings);
        assert_error(set_settings(app, &limited.token, &made.user_id, true).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION");
        assert_error(
            create_user(app, &limited.token, &top, "full@acme.example", T::Admin, Some(true)).await,
            Code::PermissionDenied,
            "PRIVILEGE_ESCALATION",
        );

        // A sub-portal admin creates sub-portal admins, only where they are admin.
        let sub = person(app, &w, &w.sub_a.clone(), "sub@acme.example", T::Admin, Some(false)).await;
        let sub_made = create_user(app, &sub.token, &w.sub_a, "sub2@acme.example", T::Admin, None).await.unwrap();
        assert!(!sub_made.top_level_admin);
        assert!(!sub_made.can_access_portal_settings, "no more than the creator");
        for elsewhere in [&w.sub_b, &top] {
            assert_error(
                create_user(app, &sub.token, elsewhere, "x@acme.example", T::Admin, None).await,
                Code::PermissionDenied,
                "ADMIN_REQUIRED",
            );
        }

        // A top-level admin switched to a sub-portal creates a sub-portal admin, full by default.
        let switched = create_user(app, &w.realm.admin_token, &w.sub_b, "sb@acme.example", T::Admin, None).await.unwrap();
        assert!(!switched.top_level_admin);
        assert!(switched.can_access_portal_settings);

        // Any admin turns an existing account into an admin with the same or fewer permissions.
        let learner = person(app, &w, &top, "learner@acme.example", T::Learner, None).await;
        assert_error(
            set_type(app, &limited.token, &learner.id(), &top, T::Admin, Some(true)).await,
            Code::PermissionDenied,
            "PRIVILEGE_ESCALATION",
        );
        let promoted = set_type(app, &limited.token, &learner.id(), &top, T::Admin, None).await.unwrap();
        assert!(!promoted.user.unwrap().can_access_portal_settings);
    }
}

both_databases! {
    async fn a14_nobody_adds_permissions_to_themselves(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let limited = person(app, &w, &top, "lim@acme.example", T::Admin, Some(false)).await;
        assert_error(set_settings(app, &limited.token, &limited.id(), true).await, Code::PermissionDenied, "PRIVILEGE_ESCALATION");
        let sub = person(app, &w, &w.sub_a.clone(), "sub@acme.example", T::Admin, Some(true)).await;
        assert_error(
            set_type(app, &sub.token, &sub.id(), &w.sub_b, T::Admin, None).await,
            Code::PermissionDenied,
            "ADMIN_REQUIRED",
        );
        assert!(!get_user(app, &w.realm.admin_token, &limited.id()).await.can_access_portal_settings);
    }
}

both_databases! {
    async fn a15_sub_portal_admins_cannot_change_top_level_admins(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let second = person(app, &w, &top, "top2@acme.example", T::Admin, Some(true)).await;
        let sub = person(app, &w, &w.sub_a.clone(), "sub@acme.example", T::Admin, Some(true)).await;
        assert_error(set_settings(app, &sub.token, &second.id(), false).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED");
        assert_error(set_type(app, &sub.token, &second.id(), &top, T::Learner, None).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED");
        assert_error(set_type(app, &sub.token, &second.id(), &w.sub_a, T::Learner, None).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED");
        assert_error(delete(app, &sub.token, &second.id()).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_PROTECTED");
        let unchanged = get_user(app, &w.realm.admin_token, &second.id()).await;
        assert!(unchanged.top_level_admin && unchanged.can_access_portal_settings);
    }
}

both_databases! {
    async fn a16_last_full_admin_cannot_disable_own_settings(app) {
        let w = world(app).await;
        let me = w.realm.admin_id.clone();
        let token = w.realm.admin_token.clone();
        let status = assert_error(set_settings(app, &token, &me, false).await, Code::FailedPrecondition, "LAST_ADMIN");
        assert_eq!(status.message(), LAST_ADMIN_MESSAGE);
    }
}

both_databases! {
    async fn a16_every_route_that_lowers_the_count_is_guarded(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let me = w.realm.admin_id.clone();
        let token = w.realm.admin_token.clone();
        // A limited top-level admin does not count toward the minimum.
        let limited = person(app, &w, &top, "lim@acme.example", T::Admin, Some(false)).await;
        assert_error(set_type(app, &token, &me, &top, T::Learner, None).await, Code::FailedPrecondition, "LAST_ADMIN");
        assert_error(remove_from(app, &token, &me, &top).await, Code::FailedPrecondition, "LAST_ADMIN");
        assert_error(delete(app, &token, &me).await, Code::FailedPrecondition, "LAST_ADMIN");
        let events = app.count("audit_events").await;

        // With a second full admin, each route works.
        let second = person(app, &w, &top, "top2@acme.example", T::Admin, Some(true)).await;
        set_settings(app, &token, &me, false).await.expect("no longer the last one");
        assert!(app.count("audit_events").await > events);
        assert_error(set_settings(app, &second.token, &second.id(), false).await, Code::FailedPrecondition, "LAST_ADMIN");
        assert_error(delete(app, &second.token, &second.id()).await, Code::FailedPrecondition, "LAST_ADMIN");
        let _ = limited;
    }
}

both_databases! {
    async fn a17_a_permission_change_does_not_rotate_api_keys(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let second = person(app, &w, &top, "top2@acme.example", T::Admin, Some(true)).await;
        let (generated, _) = api_key(app, &second.token, &top).await;
        let limited = set_settings(app, &w.realm.admin_token, &second.id(), false).await.unwrap();
        assert!(limited.api_keys_unchanged, "the response says so, so callers can warn");
        let service = app.service(&["api_keys.verify"]);
        let verified = app
            .portals()
            .verify_api_key(with_token(pb::VerifyApiKeyRequest { secret: generated.secret.clone() }, &service))
            .await
            .unwrap()
            .into_inner();
        assert!(verified.valid, "the keys copied while full still work until a new set is generated");
        assert_eq!(verified.key_id, generated.api_key.unwrap().key_id);
    }
}

both_databases! {
    async fn a18_an_existing_user_becomes_admin_in_place(app) {
        let w = world(app).await;
        let admin = &w.realm.admin_token;
        let top = w.realm.top_portal_id.clone();
        let ana = person(app, &w, &w.sub_a.clone(), "ana@acme.example", T::Learner, None).await;
        set_type(app, admin, &ana.id(), &w.sub_b, T::Manager, None).await.unwrap();
        // Sub-portal admin: other memberships stay as they are.
        let as_sub_admin = set_type(app, admin, &ana.id(), &w.sub_a, T::Admin, Some(false)).await.unwrap();
        let user = as_sub_admin.user.unwrap();
        assert_eq!(type_in(&user, &w.sub_a), Some(T::Admin));
        assert_eq!(type_in(&user, &w.sub_b), Some(T::Manager));
        assert!(as_sub_admin.removed_portal_ids.is_empty());
        // Top-level admin: sub-portal memberships go in the same transaction (A2).
        let as_top = set_type(app, admin, &ana.id(), &top, T::Admin, None).await.unwrap();
        let user = as_top.user.unwrap();
        assert!(user.top_level_admin);
        assert_eq!(user.memberships.len(), 1);
        let mut removed = as_top.removed_portal_ids.clone();
        removed.sort();
        let mut expected = vec![w.sub_a.clone(), w.sub_b.clone()];
        expected.sort();
        assert_eq!(removed, expected);
    }
}

both_databases! {
    async fn a19_only_top_level_admins_may_contact_support(app) {
        let w = world(app).await;
        let top = w.realm.top_portal_id.clone();
        let limited_top = person(app, &w, &top, "lt@acme.example", T::Admin, Some(false)).await;
        let sub = person(app, &w, &w.sub_a.clone(), "sub@acme.example", T::Admin, Some(true)).await;
        let service = app.service(&["permissions.check"]);
        assert!(allowed(app, &service, &top, &w.realm.admin_id, P::ContactSupport).await);
        assert!(allowed(app, &service, &top, &limited_top.id(), P::ContactSupport).await);
        assert!(!allowed(app, &service, &w.sub_a, &sub.id(), P::ContactSupport).await);
    }
}
