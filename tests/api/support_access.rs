//! Support access, rules S1-S12, through gRPC on both databases.

use tonic::Code;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
use portal_access::proto::v1 as pb;

const PENDING: pb::AccessRequestState = pb::AccessRequestState::Pending;
const AVAILABLE: i32 = pb::PortalAccessStatus::AccessAvailable as i32;
const NOT_ACCESSIBLE: i32 = pb::PortalAccessStatus::NotAccessible as i32;

async fn list_users(
    app: &TestApp,
    token: &str,
    portal_id: &str,
) -> Result<Vec<pb::User>, tonic::Status> {
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
        .map(|r| r.into_inner().users)
}

both_databases! {
    async fn s1_only_full_top_level_admins_manage_support_access(app) {
        let w = world(app).await;
        let limited_top = person(app, &w, &w.realm.top_portal_id, "limited@acme.example", pb::UserType::Admin, Some(false)).await;
        let sub_admin = person(app, &w, &w.sub_a, "sub@acme.example", pb::UserType::Admin, Some(true)).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let realm = &w.realm.realm_id;

        for (who, token, expected) in [
            ("limited top-level admin", &limited_top.token, "SETTINGS_ACCESS_REQUIRED"),
            ("sub-portal admin", &sub_admin.token, "TOP_LEVEL_ADMIN_REQUIRED"),
        ] {
            let denied = |r: Result<_, tonic::Status>| {
                let status = r.expect_err(who);
                assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
                assert_eq!(reason(&status), expected, "{who}");
            };
            denied(requests(app, token, realm, PENDING).await.map(|_| ()));
            denied(portal_access(app, token, realm).await.map(|_| ()));
            denied(allow(app, token, &request.access_request_id, &[&w.sub_a], None).await.map(|_| ()));
            denied(revoke(app, token, realm, &[&w.sub_a]).await.map(|_| ()));
            denied(logs(app, token, &w.sub_a).await.map(|_| ()));
            denied(app.support().decline_access_request(with_token(
                pb::DeclineAccessRequestRequest { access_request_id: request.access_request_id.clone() },
                token,
            )).await.map(|_| ()));
        }
        // An admin of another realm does not learn the realm exists.
        let other = app.create_realm("other").await;
        assert_error(requests(app, &other.admin_token, realm, PENDING).await, Code::NotFound, "REALM_NOT_FOUND");
        assert_error(
            allow(app, &other.admin_token, &request.access_request_id, &[&w.sub_a], None).await,
            Code::NotFound,
            "ACCESS_REQUEST_NOT_FOUND",
        );
        assert_error(logs(app, &other.admin_token, &w.sub_a).await, Code::NotFound, "PORTAL_NOT_FOUND");
        // Nothing was granted by the refused calls; the full admin may.
        assert!(portal_access(app, &w.realm.admin_token, realm).await.unwrap().iter().all(|p| p.status == NOT_ACCESSIBLE));
        allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], None).await.expect("full top-level admin allows");
    }
}

both_databases! {
    async fn s2_request_is_seen_by_every_top_level_admin_and_can_be_withdrawn_declined_or_expire(app) {
        let w = world(app).await;
        let second = person(app, &w, &w.realm.top_portal_id, "second@acme.example", pb::UserType::Admin, Some(true)).await;
        let ana = agent(app, "Ana Support");
        let bob = agent(app, "Bob Support");
        let first = request_access(app, &ana, &w.realm.realm_id).await;
        assert_eq!(first.state, PENDING as i32);
        assert_eq!(first.agent_name, "Ana Support");
        assert_eq!(first.ticket_reference, "SUP-1234");
        // The banner: both full top-level admins see it.
        for token in [&w.realm.admin_token, &second.token] {
            let banner = requests(app, token, &w.realm.realm_id, PENDING).await.unwrap();
            assert_eq!(banner.iter().map(|r| &r.access_request_id).collect::<Vec<_>>(), vec![&first.access_request_id]);
        }

        // Only the agent who asked withdraws.
        let withdraw = |token: String, id: String| async move {
            app.support()
                .withdraw_access_request(with_token(pb::WithdrawAccessRequestRequest { access_request_id: id }, &token))
                .await
                .map(|r| r.into_inner().access_request.unwrap())
        };
        assert_error(
            withdraw(bob.token.clone(), first.access_request_id.clone()).await,
            Code::PermissionDenied,
            "ACCESS_REQUEST_NOT_YOURS",
        );
        let withdrawn = withdraw(ana.token.clone(), first.access_request_id.clone()).await.unwrap();
        assert_eq!(withdrawn.state, pb::AccessRequestState::Withdrawn as i32);
        assert!(requests(app, &w.realm.admin_token, &w.realm.realm_id, PENDING).await.unwrap().is_empty());
        assert_error(
            allow(app, &w.realm.admin_token, &first.access_request_id, &[&w.sub_a], None).await,
            Code::FailedPrecondition,
            "ACCESS_REQUEST_NOT_OPEN",
        );

        // An admin declines; declining twice is refused.
        let second_request = request_access(app, &bob, &w.realm.realm_id).await;
        let admin_token = &w.realm.admin_token;
        let decline = |id: String| async move {
            app.support()
                .decline_access_request(with_token(pb::DeclineAccessRequestRequest { access_request_id: id }, admin_token))
                .await
                .map(|r| r.into_inner().access_request.unwrap())
        };
        let declined = decline(second_request.access_request_id.clone()).await.unwrap();
        assert_eq!(declined.state, pb::AccessRequestState::Declined as i32);
        assert_eq!(declined.decided_by, w.realm.admin_id);
        assert_error(decline(second_request.access_request_id.clone()).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING");

        // Nobody acts for 7 days: the request has expired at once, and the
        // sweeper records it exactly once.
        let third = request_access(app, &ana, &w.realm.realm_id).await;
        app.clock.advance(chrono::Duration::days(7) - chrono::Duration::microseconds(1));
        assert_eq!(requests(app, &w.realm.admin_token, &w.realm.realm_id, PENDING).await.unwrap().len(), 1);
        app.clock.advance(chrono::Duration::microseconds(1));
        assert!(requests(app, &w.realm.admin_token, &w.realm.realm_id, PENDING).await.unwrap().is_empty());
        let expired = requests(app, &w.realm.admin_token, &w.realm.realm_id, pb::AccessRequestState::Expired).await.unwrap();
        assert_eq!(expired.iter().map(|r| &r.access_request_id).collect::<Vec<_>>(), vec![&third.access_request_id]);
        assert_error(
            allow(app, &w.realm.admin_token, &third.access_request_id, &[&w.sub_a], None).await,
            Code::FailedPrecondition,
            "ACCESS_REQUEST_NOT_OPEN",
        );
        assert_error(decline(third.access_request_id.clone()).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_PENDING");
        let report = app.services().sweep_once().await.unwrap();
        assert_eq!(report.requests_expired, 1);
        assert_eq!(app.services().sweep_once().await.unwrap().requests_expired, 0);
    }
}

both_databases! {
    async fn s3_portal_access_lists_every_portal_with_its_dot(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let before = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        assert_eq!(before.len(), 3);
        assert!(before[0].top_level, "top-level portal first");
        assert!(before.iter().all(|p| p.status == NOT_ACCESSIBLE && p.expire_time.is_none()));

        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(4)).await.unwrap();
        let after = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        for p in &after {
            if p.portal_id == w.sub_a {
                assert_eq!(p.status, AVAILABLE);
                assert_eq!(p.expire_time, granted[0].expire_time);
                assert_eq!(p.temporary_admin_id, granted[0].temporary_admin_id);
            } else {
                assert_eq!(p.status, NOT_ACCESSIBLE, "{}", p.name);
            }
        }
        // Paginated over every portal of the realm.
        let mut seen = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = app.support().list_portal_access(with_token(
                pb::ListPortalAccessRequest { realm_id: w.realm.realm_id.clone(), page_size: 2, page_token },
                &w.realm.admin_token,
            )).await.unwrap().into_inner();
            assert!(page.portals.len() <= 2);
            seen.extend(page.portals.into_iter().map(|p| p.portal_id));
            if page.next_page_token.is_empty() { break; }
            page_token = page.next_page_token;
        }
        assert_eq!(seen, after.iter().map(|p| p.portal_id.clone()).collect::<Vec<_>>());
    }
}

both_databases! {
    async fn s4_allow_creates_one_grant_and_temporary_admin_per_portal(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let now = now_seconds(app);
        let results = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.realm.top_portal_id, &w.sub_a], hours(4)).await.unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].portal_id, w.realm.top_portal_id, "results in request order");
        for r in &results {
            assert_eq!(r.status, AVAILABLE);
            assert!(!r.extended);
            assert_eq!(seconds(&r.expire_time), now + 4 * 3600);
        }
        assert_ne!(results[0].temporary_admin_id, results[1].temporary_admin_id);
        // The request is approved; it stays open while its grants last.
        let approved = requests(app, &w.realm.admin_token, &w.realm.realm_id, pb::AccessRequestState::Approved).await.unwrap();
        assert_eq!(approved[0].access_request_id, request.access_request_id);
        assert_eq!(approved[0].grants.len(), 2);
        // The temporary admin is a user of its portal, marked (S10).
        let users = list_users(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        let temporary = users.iter().find(|u| u.user_id == results[1].temporary_admin_id).expect("listed");
        assert!(temporary.support_temporary);
        assert_eq!(temporary.support_agent_id, ana.id.to_string());
        assert_eq!(temporary.support_expire_time, results[1].expire_time);
        assert_eq!(type_in(temporary, &w.sub_a), Some(pb::UserType::Admin));

        // Default duration: one day.
        let results = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_b], None).await.unwrap();
        assert_eq!(seconds(&results[0].expire_time), now + 24 * 3600);

        // Durations outside 15 minutes .. 30 days are refused.
        for bad in [14 * 60, 30 * 24 * 3600 + 1, -3600] {
            let status = assert_error(
                allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_b], Some(prost_types::Duration { seconds: bad, nanos: 0 })).await,
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
            );
            assert_eq!(bad_fields(&status), vec!["duration"]);
        }
        // One unknown or foreign portal fails the whole call, naming it.
        let other = app.create_realm("other").await;
        let grants_before = app.count("support_grants").await;
        let events_before = app.count("audit_events").await;
        let fresh = request_access(app, &ana, &w.realm.realm_id).await;
        let events_before = events_before + 1;
        for stranger in [other.top_portal_id.clone(), uuid::Uuid::now_v7().to_string()] {
            let status = assert_error(
                allow(app, &w.realm.admin_token, &fresh.access_request_id, &[&w.realm.top_portal_id, &stranger], hours(1)).await,
                Code::NotFound,
                "PORTAL_NOT_FOUND",
            );
            assert!(status.message().contains(&stranger), "{status:?}");
        }
        assert_eq!(app.count("support_grants").await, grants_before);
        assert_eq!(app.count("audit_events").await, events_before);
        let still = requests(app, &w.realm.admin_token, &w.realm.realm_id, PENDING).await.unwrap();
        assert_eq!(still.len(), 1, "the refused allow left the request pending");
    }
}

both_databases! {
    async fn s4_bulk_allow_of_500_portals_is_all_or_nothing(app) {
        let realm = app.create_realm("bulk").await;
        let mut portal_ids = vec![realm.top_portal_id.clone()];
        for i in 0..499 {
            portal_ids.push(app.create_sub_portal(&realm, &format!("bulk-{i}")).await.portal_id);
        }
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &realm.realm_id).await;
        let ids: Vec<&str> = portal_ids.iter().map(String::as_str).collect();

        // One unknown id among 500: refused, nothing granted.
        let unknown = uuid::Uuid::now_v7().to_string();
        let mut with_unknown = ids.clone();
        with_unknown[250] = &unknown;
        assert_error(allow(app, &realm.admin_token, &request.access_request_id, &with_unknown, hours(2)).await, Code::NotFound, "PORTAL_NOT_FOUND");
        assert_eq!(app.count("support_grants").await, 0);

        // 501 ids: refused as bad input.
        let mut too_many = ids.clone();
        too_many.push(&unknown);
        let status = assert_error(allow(app, &realm.admin_token, &request.access_request_id, &too_many, hours(2)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(bad_fields(&status), vec!["portal_ids"]);

        let results = allow(app, &realm.admin_token, &request.access_request_id, &ids, hours(2)).await.unwrap();
        assert_eq!(results.len(), 500);
        assert!(results.iter().all(|r| r.status == AVAILABLE && !r.extended));
        assert_eq!(app.count("support_grants").await, 500);
        let dots = portal_access(app, &realm.admin_token, &realm.realm_id).await.unwrap();
        assert_eq!(dots.iter().filter(|p| p.status == AVAILABLE).count(), 500);

        let revoked = revoke(app, &realm.admin_token, &realm.realm_id, &ids).await.unwrap();
        assert!(revoked.iter().all(|r| r.status == NOT_ACCESSIBLE));
        let dots = portal_access(app, &realm.admin_token, &realm.realm_id).await.unwrap();
        assert!(dots.iter().all(|p| p.status == NOT_ACCESSIBLE));
    }
}

both_databases! {
    async fn s5_allowing_an_accessible_portal_extends_it_without_a_second_admin(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let first = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap().remove(0);
        let accounts = app.count("accounts").await;
        app.clock.advance(chrono::Duration::minutes(30));
        let now = now_seconds(app);
        let second = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(2)).await.unwrap().remove(0);
        assert!(second.extended);
        assert_eq!(second.temporary_admin_id, first.temporary_admin_id);
        assert_eq!(seconds(&second.expire_time), now + 2 * 3600);
        assert_eq!(app.count("accounts").await, accounts, "no second temporary admin");
        assert_eq!(app.count("support_grants").await, 1);
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        let extended = of_action(&log, "support_access.extended");
        assert_eq!(extended.len(), 1);
        assert_eq!(extended[0].details["extended"], "true");
        assert_eq!(of_action(&log, "support_access.temporary_admin_created").len(), 1);
    }
}

both_databases! {
    async fn s6_grant_on_the_top_level_portal_does_not_reach_sub_portals(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.realm.top_portal_id], hours(1)).await.unwrap().remove(0);
        let support = temporary_admin_token(app, &w.realm.realm_id, &granted.temporary_admin_id, &ana);
        let checker = app.service(&["permissions.check"]);
        assert!(allowed(app, &checker, &w.realm.top_portal_id, &granted.temporary_admin_id, pb::Permission::ManageUsers).await);
        for sub in [&w.sub_a, &w.sub_b] {
            assert!(!allowed(app, &checker, sub, &granted.temporary_admin_id, pb::Permission::ViewPortal).await);
            assert_error(list_users(app, &support, sub).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        }
        list_users(app, &support, &w.realm.top_portal_id).await.expect("its own portal");
        // Nor is it a top-level admin (A1 does not apply to it).
        let me = get_user(app, &support, &granted.temporary_admin_id).await;
        assert!(!me.top_level_admin);
    }
}

both_databases! {
    async fn s7_revoke_ends_sessions_at_once(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a, &w.sub_b], hours(4)).await.unwrap();
        let on_a = temporary_admin_token(app, &w.realm.realm_id, &granted[0].temporary_admin_id, &ana);
        let on_b = temporary_admin_token(app, &w.realm.realm_id, &granted[1].temporary_admin_id, &ana);
        list_users(app, &on_a, &w.sub_a).await.expect("allowed before revoke");

        // Revoking a portal without a grant is not an error.
        let results = revoke(app, &w.realm.admin_token, &w.realm.realm_id, &[&w.sub_a, &w.realm.top_portal_id]).await.unwrap();
        assert!(results.iter().all(|r| r.status == NOT_ACCESSIBLE && r.temporary_admin_id.is_empty()));
        assert_error(list_users(app, &on_a, &w.sub_a).await, Code::Unauthenticated, "UNKNOWN_ACCOUNT");
        let checker = app.service(&["permissions.check"]);
        let check = app.admins().check_permission(with_token(
            pb::CheckPermissionRequest {
                portal_id: w.sub_a.clone(),
                permission: pb::Permission::ViewPortal as i32,
                user_id: granted[0].temporary_admin_id.clone(),
            },
            &checker,
        )).await;
        assert_error(check, Code::NotFound, "USER_NOT_FOUND");
        list_users(app, &on_b, &w.sub_b).await.expect("the other portal's session goes on");

        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        assert_eq!(of_action(&log, "support_access.revoked").len(), 1);
        assert_eq!(of_action(&log, "support_access.temporary_admin_deleted").len(), 1);
        let dots = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        let b = dots.iter().find(|p| p.portal_id == w.sub_b).unwrap();
        assert_eq!(b.status, AVAILABLE);
    }
}

both_databases! {
    async fn s8_grant_ends_exactly_at_expiry_before_any_cleanup(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap().remove(0);
        let support = temporary_admin_token(app, &w.realm.realm_id, &granted.temporary_admin_id, &ana);
        let checker = app.service(&["permissions.check"]);
        let expires_at = chrono::DateTime::from_timestamp(seconds(&granted.expire_time), granted.expire_time.unwrap().nanos as u32).unwrap();

        app.clock.set(expires_at - chrono::Duration::microseconds(1));
        list_users(app, &support, &w.sub_a).await.expect("one microsecond before expiry");
        assert!(allowed(app, &checker, &w.sub_a, &granted.temporary_admin_id, pb::Permission::ManageUsers).await);

        // The sweeper is off: nothing has cleaned up, yet access has ended.
        app.clock.set(expires_at);
        let mut accepted = 0;
        for _ in 0..5 {
            match list_users(app, &support, &w.sub_a).await {
                Ok(_) => accepted += 1,
                Err(status) => assert_eq!(reason(&status), "SUPPORT_ACCESS_ENDED"),
            }
        }
        assert_eq!(accepted, 0, "calls accepted after expiry");
        assert!(!allowed(app, &checker, &w.sub_a, &granted.temporary_admin_id, pb::Permission::ViewPortal).await);
        let dot = &portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap()[1];
        assert_eq!(dot.status, NOT_ACCESSIBLE);

        // The sweeper then deletes the temporary admin, recording it once.
        let accounts = app.count("accounts").await;
        assert_eq!(app.services().sweep_once().await.unwrap().grants_expired, 1);
        assert_eq!(app.services().sweep_once().await.unwrap().grants_expired, 0);
        assert_eq!(app.count("accounts").await, accounts - 1);
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        let expired = of_action(&log, "support_access.expired");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].actor.as_ref().unwrap().kind, pb::ActorKind::System as i32);
    }
}

both_databases! {
    async fn s9_temporary_admin_calls_and_recorded_actions_form_the_session_log(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap().remove(0);
        let support = temporary_admin_token(app, &w.realm.realm_id, &granted.temporary_admin_id, &ana);

        // Three calls: one allowed, one refused, one that changes something.
        list_users(app, &support, &w.sub_a).await.unwrap();
        assert_error(list_users(app, &support, &w.sub_b).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        let learner = create_user(app, &support, &w.sub_a, "learner@acme.example", pb::UserType::Learner, None).await.unwrap();

        // Another service records what support did there.
        let recorder = app.service(&["support_actions.record"]);
        let (sub_a, who) = (&w.sub_a, &ana);
        let record = |token: String, temporary_admin_id: String| async move {
            app.support().record_support_action(with_token(
                pb::RecordSupportActionRequest {
                    request_id: String::new(),
                    portal_id: sub_a.clone(),
                    temporary_admin_id,
                    action: "course.viewed".into(),
                    target_type: "course".into(),
                    target_id: "course-42".into(),
                    details: [("title".to_string(), "Onboarding".to_string())].into(),
                    agent_id: who.id.to_string(),
                    agent_name: who.name.clone(),
                },
                &token,
            )).await.map(|r| r.into_inner().event.unwrap())
        };
        let recorded = record(recorder.clone(), granted.temporary_admin_id.clone()).await.unwrap();
        assert_eq!(recorded.details["support_action"], "course.viewed");
        assert_error(record(app.service(&["permissions.check"]), granted.temporary_admin_id.clone()).await, Code::PermissionDenied, "MISSING_SCOPE");
        assert_error(record(recorder.clone(), uuid::Uuid::now_v7().to_string()).await, Code::FailedPrecondition, "GRANT_NOT_ACTIVE");

        // After the session: the log stays, with the agent's id and name.
        revoke(app, &w.realm.admin_token, &w.realm.realm_id, &[&w.sub_a]).await.unwrap();
        assert_error(record(recorder, granted.temporary_admin_id.clone()).await, Code::FailedPrecondition, "GRANT_NOT_ACTIVE");
        assert_error(list_users(app, &support, &w.sub_a).await, Code::Unauthenticated, "UNKNOWN_ACCOUNT");

        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        assert!(log.windows(2).all(|p| p[0].sequence > p[1].sequence), "newest first");
        let calls: Vec<_> = of_action(&log, "support_access.call").into_iter().rev().collect();
        let summary: Vec<(&str, &str)> = calls.iter().map(|e| (e.details["rpc"].as_str(), e.details["outcome"].as_str())).collect();
        assert_eq!(summary, vec![
            ("AdminService/ListUsers", "OK"),
            ("AdminService/ListUsers", "PERMISSION_DENIED"),
            ("AdminService/CreateUser", "OK"),
            ("AdminService/ListUsers", "UNAUTHENTICATED"),
        ]);
        assert_eq!(calls[1].details["request.portal_id"], w.sub_b);
        for event in calls.iter().chain(of_action(&log, "support_access.action").iter()) {
            let actor = event.actor.as_ref().unwrap();
            assert_eq!(actor.actor_id, granted.temporary_admin_id);
            assert_eq!(actor.agent_id, ana.id.to_string());
            assert_eq!(actor.agent_name, "Ana Support");
        }
        assert_eq!(of_action(&log, "support_access.action").len(), 1);
        // The change itself carries its own security event naming the agent.
        let created = app.services().store().audit_events(
            &portal_access::store::AuditFilter::default(),
            portal_access::store::EventPosition::Before(None),
            500,
        ).await.unwrap();
        let user_created = created.iter().find(|e| e.target_id == learner.user_id && e.action == "user.created").unwrap();
        assert_eq!(user_created.actor.agent_name.as_deref(), Some("Ana Support"));
    }
}

both_databases! {
    async fn s9_no_action_is_recorded_on_an_expired_grant_the_sweeper_has_not_ended(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap().remove(0);
        let recorder = app.service(&["support_actions.record"]);
        let temporary_admin = granted.temporary_admin_id.clone();
        let expires_at = expiry_of(&granted);

        // Active up to the last microsecond before its expiry...
        app.clock.set(expires_at - chrono::Duration::microseconds(1));
        record_action(app, &recorder, &w.sub_a, &temporary_admin, &ana).await.expect("the grant is still active");

        // ...and over from its expiry on, though the sweeper (off in tests)
        // has not ended it: refused at that moment (S8, S9), nothing recorded.
        let events = app.count("audit_events").await;
        for after in [chrono::Duration::zero(), chrono::Duration::minutes(1), chrono::Duration::days(1)] {
            app.clock.set(expires_at + after);
            assert_error(
                record_action(app, &recorder, &w.sub_a, &temporary_admin, &ana).await,
                Code::FailedPrecondition,
                "GRANT_NOT_ACTIVE",
            );
        }
        assert_eq!(app.count("audit_events").await, events, "a refused action records nothing");
        let actions = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        assert_eq!(of_action(&actions, "support_access.action").len(), 1, "only the action made in time");

        // The grant was still open all along: the sweeper ends it only now.
        assert_eq!(app.services().sweep_once().await.unwrap().grants_expired, 1);
    }
}

both_databases! {
    async fn s10_temporary_admin_has_settings_but_never_keys_admins_or_support_access(app) {
        let realm = app.create_realm_on("ent", pb::Plan::Enterprise).await;
        let sub = app.create_sub_portal(&realm, "ent-a").await.portal_id;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &realm.realm_id).await;
        let granted = allow(app, &realm.admin_token, &request.access_request_id, &[&realm.top_portal_id, &sub], hours(1)).await.unwrap();
        let support = temporary_admin_token(app, &realm.realm_id, &granted[1].temporary_admin_id, &ana);
        let checker = app.service(&["permissions.check"]);
        let temp = &granted[1].temporary_admin_id;
        assert!(allowed(app, &checker, &sub, temp, pb::Permission::AccessSettings).await);
        for p in [pb::Permission::ManageApiKeys, pb::Permission::ManageAdmins, pb::Permission::ManageSupportAccess, pb::Permission::ContactSupport] {
            assert!(!allowed(app, &checker, &sub, temp, p).await, "{p:?}");
        }
        // It works in its portal...
        create_user(app, &support, &sub, "l@ent.example", pb::UserType::Learner, None).await.expect("creates a learner");
        // ...but creates no admin, manages no key, changes no admin, and no support access.
        assert_error(create_user(app, &support, &sub, "a@ent.example", pb::UserType::Admin, Some(false)).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
        let keys = app.portals().generate_api_keys(with_token(
            pb::GenerateApiKeysRequest { request_id: String::new(), portal_id: sub.clone() }, &support)).await;
        assert_error(keys, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
        let sub_admin = create_user(app, &realm.admin_token, &sub, "sa@ent.example", pb::UserType::Admin, Some(false)).await.unwrap();
        assert_error(set_settings(app, &support, &sub_admin.user_id, true).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
        assert_error(revoke(app, &support, &realm.realm_id, &[&sub]).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
        // A16: temporary admins never count, so the only real full admin is still the last.
        assert_error(set_settings(app, &realm.admin_token, &realm.admin_id, false).await, Code::FailedPrecondition, "LAST_ADMIN");
        // Nobody changes or deletes a temporary admin but through RevokeAccess.
        assert_error(delete(app, &realm.admin_token, temp).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
    }
}

both_databases! {
    async fn s12_support_enters_only_with_a_token_naming_the_agent(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let bob = agent(app, "Bob Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(3)).await.unwrap().remove(0);
        // A plain account token for the temporary admin is refused.
        let anonymous = app.account(&w.realm.realm_id, &granted.temporary_admin_id);
        assert_error(list_users(app, &anonymous, &w.sub_a).await, Code::Unauthenticated, "SUPPORT_AGENT_CLAIMS_MISSING");
        // Agent claims on an ordinary account are refused too.
        let mut claims = app.claims("account", w.realm.admin_id.parse().unwrap());
        claims.realm = Some(w.realm.realm_id.clone());
        claims.channel = Some("interactive".into());
        claims.agent = Some(ana.id.to_string());
        claims.name = Some(ana.name.clone());
        assert_error(list_users(app, &app.sign(&claims), &w.sub_a).await, Code::Unauthenticated, "INVALID_TOKEN");
        // Any agent of the team may enter; each call names who did.
        let as_bob = temporary_admin_token(app, &w.realm.realm_id, &granted.temporary_admin_id, &bob);
        list_users(app, &as_bob, &w.sub_a).await.unwrap();
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        assert_eq!(of_action(&log, "support_access.call")[0].actor.as_ref().unwrap().agent_name, "Bob Support");

        // The support team sees its requests across realms with each grant.
        let other = app.create_realm("other").await;
        request_access(app, &bob, &other.realm_id).await;
        let team = requests(app, &bob.token, "", pb::AccessRequestState::Unspecified).await.unwrap();
        assert_eq!(team.len(), 2);
        let ours = team.iter().find(|r| r.access_request_id == request.access_request_id).unwrap();
        assert_eq!(ours.grants.len(), 1);
        assert_eq!(ours.grants[0].temporary_admin_id, granted.temporary_admin_id);
        assert_eq!(ours.grants[0].expire_time, granted.expire_time);
        // Accounts need a realm; other principals are refused.
        assert_error(requests(app, &w.realm.admin_token, "", PENDING).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_error(requests(app, &app.operator(), &w.realm.realm_id, PENDING).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND");
    }
}

both_databases! {
    async fn s9_recorded_details_and_agent_names_keep_every_character(app) {
        // On PostgreSQL an append's rows travel as one JSON text: what the
        // log shows, and what its hash chain covers, is what was recorded.
        let w = world(app).await;
        let ana = agent(app, r#"Ana "Q" Núñez \ 支援"#);
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap().remove(0);
        let details: std::collections::HashMap<String, String> = [
            ("title", r#"Say "hi" \ 'bye'"#),
            ("path", r"C:\courses\n\t"),
            ("emoji", "🎓 ✓"),
            ("json", r#"{"a": [1, "b"]}"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let recorded = app
            .support()
            .record_support_action(with_token(
                pb::RecordSupportActionRequest {
                    request_id: String::new(),
                    portal_id: w.sub_a.clone(),
                    temporary_admin_id: granted.temporary_admin_id.clone(),
                    action: "course.viewed".into(),
                    target_type: "course".into(),
                    target_id: r#"course "42""#.into(),
                    details: details.clone(),
                    agent_id: ana.id.to_string(),
                    agent_name: ana.name.clone(),
                },
                &app.service(&["support_actions.record"]),
            ))
            .await
            .expect("record")
            .into_inner()
            .event
            .unwrap();
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        let stored = log.iter().find(|e| e.event_id == recorded.event_id).expect("in the log");
        for (key, value) in &details {
            assert_eq!(stored.details.get(key), Some(value), "{key}");
        }
        assert_eq!(stored.target_id, r#"course "42""#);
        assert_eq!(stored.actor.as_ref().unwrap().agent_name, ana.name);
        assert_eq!(stored.hash, recorded.hash);
        assert!(crate::faults::verify_realm(app, &w.realm).await.intact);
    }
}
