//! PortalService: rules P1-P5 and A7's setting, and the bad input of SPEC §5
//! that PortalService receives.

use tonic::Code;
use uuid::Uuid;

use sea_orm::ConnectionTrait;

use crate::both_databases;
use crate::helpers::*;
use portal_access::proto::v1 as pb;

fn realm_request(subdomain: &str) -> pb::CreateRealmRequest {
    pb::CreateRealmRequest {
        request_id: String::new(),
        name: "Acme".into(),
        plan: pb::Plan::Professional as i32,
        top_level_portal_name: "Acme Academy".into(),
        subdomain: subdomain.into(),
        first_admin: Some(pb::FirstAdmin {
            email: "ana@acme.example".into(),
            display_name: "Ana".into(),
        }),
    }
}

async fn list_all(app: &TestApp, realm_id: &str, token: &str, page_size: i32) -> Vec<pb::Portal> {
    let mut portals = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .portals()
            .list_portals(with_token(
                pb::ListPortalsRequest {
                    realm_id: realm_id.into(),
                    page_size,
                    page_token: page_token.clone(),
                },
                token,
            ))
            .await
            .expect("list portals")
            .into_inner();
        let limit = if page_size == 0 {
            50
        } else {
            page_size as usize
        };
        assert!(page.portals.len() <= limit);
        portals.extend(page.portals);
        if page.next_page_token.is_empty() {
            return portals;
        }
        page_token = page.next_page_token;
    }
}

both_databases! {
    async fn p1_realm_has_exactly_one_top_level_portal(app) {
        let realm = app.create_realm("acme").await;
        let sub = app.create_sub_portal(&realm, "acme-eu").await;
        assert_eq!(sub.parent_id, realm.top_portal_id, "a sub-portal's parent is the top-level portal");
        assert!(!sub.top_level);

        let portals = list_all(app, &realm.realm_id, &realm.admin_token, 10).await;
        let top: Vec<_> = portals.iter().filter(|p| p.top_level).collect();
        assert_eq!(top.len(), 1);
        assert_eq!(portals[0].portal_id, realm.top_portal_id, "top-level portal listed first");
        assert!(top[0].parent_id.is_empty());

        // The database itself refuses a second top-level portal.
        let db = app.database().await;
        let backend = db.get_database_backend();
        let uuid_literal = |id: Uuid| match backend {
            sea_orm::DbBackend::Postgres => format!("'{id}'"),
            _ => format!("X'{}'", id.simple()),
        };
        let realm_uuid: Uuid = realm.realm_id.parse().unwrap();
        let second = db
            .execute_unprepared(&format!(
                "INSERT INTO portals (id, realm_id, parent_id, depth, name, subdomain, created_at) \
                 VALUES ({}, {}, NULL, 0, 'Second', 'second-top', 0)",
                uuid_literal(Uuid::now_v7()),
                uuid_literal(realm_uuid),
            ))
            .await;
        // Refused by that index, not by any other error of the statement.
        let refused = second.expect_err("a second top-level portal must violate the unique index");
        match refused.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(detail)) => {
                let index = match backend {
                    sea_orm::DbBackend::Postgres => "portals_one_top_level",
                    // SQLite names the indexed column, not the index.
                    _ => "portals.realm_id",
                };
                assert!(detail.contains(index), "violated another constraint: {detail}");
            }
            other => panic!("not a unique violation: {other:?} from {refused}"),
        }
        db.close().await.ok();
    }
}

both_databases! {
    async fn p2_only_an_operator_creates_a_realm(app) {
        let existing = app.create_realm("first").await;
        let not_operators = [
            existing.admin_token.clone(),
            app.support_agent(Uuid::new_v4(), "Sam Support"),
            app.service(&["permissions.check", "audit.read"]),
        ];
        for token in &not_operators {
            let refused = app.portals().create_realm(with_token(realm_request("acme"), token)).await;
            assert_error(refused, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND");
        }
        assert_eq!(app.count("realms").await, 1, "refused calls create nothing");

        let created = app
            .portals()
            .create_realm(with_token(realm_request("acme"), &app.operator()))
            .await
            .unwrap()
            .into_inner();
        let admin = created.first_admin.unwrap();
        assert!(admin.top_level_admin);
        assert!(admin.can_access_portal_settings, "P2: the first admin has settings access");
        assert_eq!(admin.memberships.len(), 1);
        assert_eq!(admin.memberships[0].user_type, pb::UserType::Admin as i32);
        assert_eq!(admin.memberships[0].portal_id, created.top_level_portal.unwrap().portal_id);
        let realm = created.realm.unwrap();
        assert!(!realm.top_level_admins_enrollable, "A7 defaults off");

        // L1: the realm and its first admin were recorded in the same transaction.
        assert_eq!(app.count("audit_events").await, 4);
    }
}

both_databases! {
    async fn p2_create_realm_retried_with_request_id_creates_nothing_twice(app) {
        let mut request = realm_request("acme");
        request.request_id = Uuid::new_v4().to_string();
        let operator = app.operator();
        let first = app
            .portals()
            .create_realm(with_token(request.clone(), &operator))
            .await
            .unwrap()
            .into_inner();
        let retry = app
            .portals()
            .create_realm(with_token(request.clone(), &operator))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.realm.unwrap().realm_id, retry.realm.unwrap().realm_id);
        assert_eq!(first.first_admin.unwrap().user_id, retry.first_admin.unwrap().user_id);
        assert_eq!(app.count("realms").await, 1);

        request.name = "Something else".into();
        let reused = app.portals().create_realm(with_token(request, &operator)).await;
        assert_error(reused, Code::InvalidArgument, "REQUEST_ID_REUSED");
    }
}

both_databases! {
    async fn p3_only_a_full_top_level_admin_creates_sub_portals(app) {
        let realm = app.create_realm("acme").await;
        let other = app.create_realm("other").await;
        let request = |token: &str| {
            with_token(
                pb::CreateSubPortalRequest {
                    request_id: String::new(),
                    realm_id: realm.realm_id.clone(),
                    name: "EU".into(),
                    subdomain: "acme-eu".into(),
                },
                token,
            )
        };
        assert_error(
            app.portals().create_sub_portal(request(&app.operator())).await,
            Code::PermissionDenied,
            "WRONG_PRINCIPAL_KIND",
        );
        // An admin of another realm does not learn that this realm exists.
        assert_error(
            app.portals().create_sub_portal(request(&other.admin_token)).await,
            Code::NotFound,
            "REALM_NOT_FOUND",
        );
        // A token for an account that does not exist in the realm.
        let stranger = app.account(&realm.realm_id, &Uuid::new_v4().to_string());
        assert_error(
            app.portals().create_sub_portal(request(&stranger)).await,
            Code::Unauthenticated,
            "UNKNOWN_ACCOUNT",
        );
        assert_eq!(app.count("portals").await, 2);

        let created = app.portals().create_sub_portal(request(&realm.admin_token)).await.unwrap().into_inner();
        assert_eq!(created.portal.unwrap().parent_id, realm.top_portal_id);
    }
}

both_databases! {
    async fn p4_subdomain_must_be_a_dns_label(app) {
        for bad in ["", "-acme", "acme-", "Acme", "ac_me", "ac.me", "acmé", &"a".repeat(64)] {
            let refused = app
                .portals()
                .create_realm(with_token(realm_request(bad), &app.operator()))
                .await;
            let status = assert_error(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(bad_fields(&status), vec!["subdomain".to_owned()], "{bad:?}");
        }
        assert_eq!(app.count("realms").await, 0);
        assert_eq!(app.count("audit_events").await, 0);
        app.create_realm(&"a".repeat(63)).await;
    }
}

both_databases! {
    async fn p4_subdomain_is_unique_across_realms(app) {
        let realm = app.create_realm("acme").await;
        app.create_sub_portal(&realm, "acme-eu").await;
        let events_before = app.count("audit_events").await;

        for taken in ["acme", "acme-eu"] {
            let refused = app
                .portals()
                .create_realm(with_token(realm_request(taken), &app.operator()))
                .await;
            assert_error(refused, Code::AlreadyExists, "SUBDOMAIN_TAKEN");
        }
        let other = app.create_realm("other").await;
        let refused = app
            .portals()
            .create_sub_portal(with_token(
                pb::CreateSubPortalRequest {
                    request_id: String::new(),
                    realm_id: other.realm_id.clone(),
                    name: "Copy".into(),
                    subdomain: "acme-eu".into(),
                },
                &other.admin_token,
            ))
            .await;
        assert_error(refused, Code::AlreadyExists, "SUBDOMAIN_TAKEN");
        // The refused realms left nothing behind, not even an audit event (L1).
        assert_eq!(app.count("realms").await, 2);
        assert_eq!(app.count("portals").await, 3);
        assert_eq!(app.count("audit_events").await, events_before + 2);
    }
}

both_databases! {
    async fn p4_names_are_trimmed_and_1_to_200_characters(app) {
        let mut request = realm_request("acme");
        request.top_level_portal_name = "   Acme Academy  ".into();
        let created = app
            .portals()
            .create_realm(with_token(request, &app.operator()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(created.top_level_portal.unwrap().name, "Acme Academy");

        for (field, value) in [("name", "   ".to_owned()), ("name", "x".repeat(201))] {
            let mut request = realm_request("beta");
            request.name = value;
            let status = assert_error(
                app.portals().create_realm(with_token(request, &app.operator())).await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert_eq!(bad_fields(&status), vec![field.to_owned()]);
        }
        // Several bad fields are reported together.
        let status = assert_error(
            app.portals()
                .create_realm(with_token(pb::CreateRealmRequest::default(), &app.operator()))
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        let fields = bad_fields(&status);
        for expected in ["name", "plan", "top_level_portal_name", "subdomain", "first_admin.email"] {
            assert!(fields.contains(&expected.to_owned()), "{fields:?} lacks {expected}");
        }
        assert_eq!(app.count("realms").await, 1);
    }
}

both_databases! {
    async fn p5_plan_and_vendor_settings_change_by_an_operator_only(app) {
        let realm = app.create_realm_on("acme", pb::Plan::Essentials).await;
        let change = |token: &str, plan: Option<i32>, enrollable: Option<bool>| {
            with_token(
                pb::UpdateRealmSettingsRequest {
                    realm_id: realm.realm_id.clone(),
                    plan,
                    top_level_admins_enrollable: enrollable,
                },
                token,
            )
        };
        assert_error(
            app.portals()
                .update_realm_settings(change(&realm.admin_token, Some(pb::Plan::Enterprise as i32), Some(true)))
                .await,
            Code::PermissionDenied,
            "WRONG_PRINCIPAL_KIND",
        );
        assert_error(
            app.portals().update_realm_settings(change(&app.operator(), Some(99), None)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        let events_before = app.count("audit_events").await;

        let updated = app
            .portals()
            .update_realm_settings(change(&app.operator(), Some(pb::Plan::Enterprise as i32), Some(true)))
            .await
            .unwrap()
            .into_inner()
            .realm
            .unwrap();
        assert_eq!(updated.plan, pb::Plan::Enterprise as i32);
        assert!(updated.api_included, "P5: the plan decides the API");
        assert!(updated.top_level_admins_enrollable, "A7: the operator turns it on");
        assert_eq!(app.count("audit_events").await, events_before + 1);

        // Unset fields stay as they are; a no-op records nothing.
        let same = app
            .portals()
            .update_realm_settings(change(&app.operator(), None, None))
            .await
            .unwrap()
            .into_inner()
            .realm
            .unwrap();
        assert_eq!(same.plan, pb::Plan::Enterprise as i32);
        assert!(same.top_level_admins_enrollable);
        assert_eq!(app.count("audit_events").await, events_before + 1);

        // The admin sees the realm's settings with the top-level portal.
        let seen = app
            .portals()
            .get_portal(with_token(
                pb::GetPortalRequest { portal_id: realm.top_portal_id.clone() },
                &realm.admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(seen.realm.unwrap().plan, pb::Plan::Enterprise as i32);
    }
}

both_databases! {
    async fn portals_of_another_realm_are_not_found(app) {
        let acme = app.create_realm("acme").await;
        let other = app.create_realm("other").await;
        assert_error(
            app.portals()
                .get_portal(with_token(
                    pb::GetPortalRequest { portal_id: acme.top_portal_id.clone() },
                    &other.admin_token,
                ))
                .await,
            Code::NotFound,
            "PORTAL_NOT_FOUND",
        );
        assert_error(
            app.portals()
                .list_portals(with_token(
                    pb::ListPortalsRequest { realm_id: acme.realm_id.clone(), ..Default::default() },
                    &other.admin_token,
                ))
                .await,
            Code::NotFound,
            "REALM_NOT_FOUND",
        );
        assert_error(
            app.portals()
                .get_portal(with_token(
                    pb::GetPortalRequest { portal_id: Uuid::new_v4().to_string() },
                    &app.operator(),
                ))
                .await,
            Code::NotFound,
            "PORTAL_NOT_FOUND",
        );
    }
}

both_databases! {
    async fn list_portals_pages_through_every_portal_once(app) {
        let realm = app.create_realm("acme").await;
        let mut created = vec![realm.top_portal_id.clone()];
        for i in 0..7 {
            created.push(app.create_sub_portal(&realm, &format!("acme-{i}")).await.portal_id);
        }
        for page_size in [1, 2, 3, 500, 0] {
            let listed: Vec<String> = list_all(app, &realm.realm_id, &realm.admin_token, page_size)
                .await
                .into_iter()
                .map(|p| p.portal_id)
                .collect();
            assert_eq!(listed, created, "page_size {page_size}: top-level first, then creation order");
        }
        // The operator sees the same list.
        assert_eq!(list_all(app, &realm.realm_id, &app.operator(), 4).await.len(), 8);
    }
}

both_databases! {
    async fn list_portals_refuses_bad_page_input(app) {
        let realm = app.create_realm("acme").await;
        let other = app.create_realm("other").await;
        app.create_sub_portal(&realm, "acme-1").await;
        app.create_sub_portal(&realm, "acme-2").await;
        let list = |realm_id: &str, page_size: i32, page_token: &str| {
            with_token(
                pb::ListPortalsRequest {
                    realm_id: realm_id.into(),
                    page_size,
                    page_token: page_token.into(),
                },
                &app.operator(),
            )
        };
        let status = assert_error(
            app.portals().list_portals(list(&realm.realm_id, -1, "")).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(bad_fields(&status), vec!["page_size".to_owned()]);
        // Over the maximum is coerced, not refused.
        let all = app.portals().list_portals(list(&realm.realm_id, 100_000, "")).await.unwrap().into_inner();
        assert_eq!(all.portals.len(), 3);
        assert!(all.next_page_token.is_empty());

        let first = app.portals().list_portals(list(&realm.realm_id, 1, "")).await.unwrap().into_inner();
        assert!(!first.next_page_token.is_empty());
        for forged in ["garbage", "AAAA", &first.next_page_token[1..]] {
            let status = assert_error(
                app.portals().list_portals(list(&realm.realm_id, 1, forged)).await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert_eq!(bad_fields(&status), vec!["page_token".to_owned()]);
        }
        // A token of one realm does not page through another.
        assert_error(
            app.portals().list_portals(list(&other.realm_id, 1, &first.next_page_token)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
}

both_databases! {
    async fn malformed_ids_are_invalid_arguments(app) {
        for bad in ["", "nope", "0190f0c4-9a3b-7c1d-8e2f", "0190f0c49a3b7c1d8e2f3a4b5c6d7e8f"] {
            let status = assert_error(
                app.portals()
                    .get_portal(with_token(pb::GetPortalRequest { portal_id: bad.into() }, &app.operator()))
                    .await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert_eq!(bad_fields(&status), vec!["portal_id".to_owned()], "{bad:?}");
            assert_error(
                app.portals()
                    .create_sub_portal(with_token(
                        pb::CreateSubPortalRequest {
                            realm_id: bad.into(),
                            name: "X".into(),
                            subdomain: "x".into(),
                            ..Default::default()
                        },
                        &app.operator(),
                    ))
                    .await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
        }
        let mut request = realm_request("acme");
        request.request_id = "not-a-uuid".into();
        let status = assert_error(
            app.portals().create_realm(with_token(request, &app.operator())).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(bad_fields(&status), vec!["request_id".to_owned()]);
        assert_eq!(app.count("realms").await, 0);
    }
}
