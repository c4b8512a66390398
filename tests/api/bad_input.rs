//! SPEC §5 for AdminService and the key RPCs: bad input gets a clear
//! INVALID_ARGUMENT naming the field, and changes nothing.

use tonic::Code;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use portal_access::proto::v1 as pb;

both_databases! {
    async fn admin_rpcs_refuse_bad_input_and_change_nothing(app) {
        let w = world(app).await;
        let admin = w.realm.admin_token.clone();
        let learner = person(app, &w, &w.sub_a.clone(), "l@acme.example", pb::UserType::Learner, None).await;
        let accounts = app.count("accounts").await;
        let memberships = app.count("memberships").await;
        let events = app.count("audit_events").await;
        let a = app.admins();

        let create = |portal_id: &str, email: &str, name: &str, user_type: i32| with_token(
            pb::CreateUserRequest {
                request_id: String::new(),
                portal_id: portal_id.into(),
                email: email.into(),
                display_name: name.into(),
                user_type,
                invite: false,
                can_access_portal_settings: None,
            },
            &admin,
        );
        let cases: Vec<(tonic::Request<pb::CreateUserRequest>, Vec<&str>)> = vec![
            (create("nope", "x@acme.example", "X", 1), vec!["portal_id"]),
            (create(&w.sub_a, "not-an-email", "X", 1), vec!["email"]),
            (create(&w.sub_a, "x@acme.example", "", 1), vec!["display_name"]),
            (create(&w.sub_a, "x@acme.example", &"x".repeat(201), 1), vec!["display_name"]),
            (create(&w.sub_a, "x@acme.example", "X", 0), vec!["user_type"]),
            (create(&w.sub_a, "x@acme.example", "X", 99), vec!["user_type"]),
            (create("", "", "", 0), vec!["portal_id", "email", "display_name", "user_type"]),
        ];
        for (request, fields) in cases {
            let status = assert_error(a.clone().create_user(request).await, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(bad_fields(&status), fields);
        }
        // A duplicate email (any case) is a conflict, not a second account.
        assert_error(
            a.clone().create_user(create(&w.sub_a, "L@ACME.example", "Dup", 1)).await,
            Code::AlreadyExists,
            "EMAIL_TAKEN",
        );

        let set = |user_id: &str, portal_id: &str, user_type: i32| with_token(
            pb::SetUserTypeRequest { user_id: user_id.into(), portal_id: portal_id.into(), user_type, can_access_portal_settings: None },
            &admin,
        );
        let status = assert_error(a.clone().set_user_type(set("x", "y", 7)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(bad_fields(&status), vec!["user_id", "portal_id", "user_type"]);
        assert_error(
            a.clone().set_user_type(set(&uuid::Uuid::new_v4().to_string(), &w.sub_a, 1)).await,
            Code::NotFound,
            "USER_NOT_FOUND",
        );
        assert_error(
            a.clone().set_user_type(set(&learner.id(), &uuid::Uuid::new_v4().to_string(), 1)).await,
            Code::NotFound,
            "PORTAL_NOT_FOUND",
        );
        assert_error(
            a.clone().remove_user_from_portal(with_token(pb::RemoveUserFromPortalRequest { user_id: learner.id(), portal_id: "bad".into() }, &admin)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_error(
            a.clone().remove_user_from_portal(with_token(pb::RemoveUserFromPortalRequest { user_id: learner.id(), portal_id: w.sub_b.clone() }, &admin)).await,
            Code::FailedPrecondition,
            "NOT_A_MEMBER",
        );
        assert_error(
            a.clone().delete_user(with_token(pb::DeleteUserRequest { user_id: "123".into() }, &admin)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_error(
            a.clone().update_admin_permissions(with_token(pb::UpdateAdminPermissionsRequest { user_id: learner.id(), can_access_portal_settings: true }, &admin)).await,
            Code::FailedPrecondition,
            "NOT_AN_ADMIN",
        );
        let check = |permission: i32, user_id: &str| with_token(
            pb::CheckPermissionRequest { portal_id: w.sub_a.clone(), permission, user_id: user_id.into() },
            &admin,
        );
        for (permission, user_id, field) in [(0, "", "permission"), (42, "", "permission"), (1, "zzz", "user_id")] {
            let status = assert_error(a.clone().check_permission(check(permission, user_id)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(bad_fields(&status), vec![field]);
        }
        let eligibility = with_token(
            pb::CheckEligibilityRequest { portal_id: w.sub_a.clone(), user_id: learner.id(), purpose: 9 },
            &admin,
        );
        assert_error(a.clone().check_eligibility(eligibility).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        let list = |page_size: i32, page_token: &str| with_token(
            pb::ListUsersRequest { portal_id: w.sub_a.clone(), page_size, page_token: page_token.into() },
            &admin,
        );
        assert_error(a.clone().list_users(list(-5, "")).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_error(a.clone().list_users(list(10, "forged")).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_error(
            app.portals().generate_api_keys(with_token(pb::GenerateApiKeysRequest { request_id: "x".into(), portal_id: w.sub_a.clone() }, &admin)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_error(
            app.portals().verify_api_key(with_token(pb::VerifyApiKeyRequest { secret: String::new() }, &app.service(&["api_keys.verify"]))).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );

        assert_eq!(app.count("accounts").await, accounts);
        assert_eq!(app.count("memberships").await, memberships);
        assert_eq!(app.count("audit_events").await, events);
        assert_eq!(app.count("api_keys").await, 0);
    }
}

both_databases! {
    async fn list_users_pages_through_every_member_once(app) {
        let w = world(app).await;
        let mut expected = Vec::new();
        for i in 0..7 {
            expected.push(person(app, &w, &w.sub_a.clone(), &format!("u{i}@acme.example"), pb::UserType::Learner, None).await.id());
        }
        expected.sort();
        for page_size in [1, 3, 500] {
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = app
                    .admins()
                    .list_users(with_token(
                        pb::ListUsersRequest { portal_id: w.sub_a.clone(), page_size, page_token: token.clone() },
                        &w.realm.admin_token,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(page.users.len() <= page_size as usize);
                seen.extend(page.users.into_iter().map(|u| u.user_id));
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            assert_eq!(seen, expected, "page_size {page_size}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_and_the_server_stays_up() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let huge = "x".repeat(5 * 1024 * 1024);
    let refused = app
        .portals()
        .create_realm(with_token(
            pb::CreateRealmRequest {
                name: huge,
                ..Default::default()
            },
            &app.operator(),
        ))
        .await
        .expect_err("over 4 MiB");
    assert!(
        matches!(
            refused.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{refused:?}"
    );
    assert_eq!(app.count("realms").await, 0);
    app.create_realm("still-up").await;
    app.stop().await;
}
