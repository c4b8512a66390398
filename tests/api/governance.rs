//! Consent governance (G1-G8) through gRPC, on both databases: the
//! realm's policy, access levels, N-of-M approval (with real concurrent
//! approvals), scheduled and first-use grants driven by the injected
//! clock, and support ending its own access.

use chrono::Duration;
use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;
use tonic::{Code, Status};

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
use portal_access::domain::Clock;
use portal_access::proto::v1 as pb;

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    let db = app.database().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get_by_index(0).unwrap();
    db.close().await.ok();
    n
}

async fn events(app: &TestApp, action: &str) -> i64 {
    scalar(
        app,
        &format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'"),
    )
    .await
}

async fn temporary_admins(app: &TestApp) -> i64 {
    scalar(
        app,
        "SELECT COUNT(*) FROM accounts WHERE support_grant_id IS NOT NULL",
    )
    .await
}

fn advance(app: &TestApp, by: Duration) {
    app.clock.advance(by);
}

fn timestamp_in(app: &TestApp, by: Duration) -> Option<prost_types::Timestamp> {
    let at = app.clock.now() + by;
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    })
}

async fn policy(
    app: &TestApp,
    token: &str,
    realm_id: &str,
) -> Result<pb::SupportAccessPolicy, Status> {
    app.support()
        .get_support_access_policy(with_token(
            pb::GetSupportAccessPolicyRequest {
                realm_id: realm_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().policy.unwrap())
}

async fn update_policy(
    app: &TestApp,
    token: &str,
    change: pb::UpdateSupportAccessPolicyRequest,
) -> Result<pb::UpdateSupportAccessPolicyResponse, Status> {
    app.support()
        .update_support_access_policy(with_token(change, token))
        .await
        .map(|r| r.into_inner())
}

async fn approve(
    app: &TestApp,
    token: &str,
    request_id: &str,
) -> Result<pb::ApproveAccessResponse, Status> {
    app.support()
        .approve_access(with_token(
            pb::ApproveAccessRequest {
                access_request_id: request_id.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn end_access(
    app: &TestApp,
    token: &str,
    message: pb::EndSupportAccessRequest,
) -> Result<pb::EndSupportAccessResponse, Status> {
    app.support()
        .end_support_access(with_token(message, token))
        .await
        .map(|r| r.into_inner())
}

async fn allow_with(
    app: &TestApp,
    token: &str,
    message: pb::AllowAccessRequest,
) -> Result<pb::AllowAccessResponse, Status> {
    app.support()
        .allow_access(with_token(message, token))
        .await
        .map(|r| r.into_inner())
}

async fn request_level(
    app: &TestApp,
    agent: &Agent,
    realm_id: &str,
    level: pb::SupportAccessLevel,
) -> Result<pb::AccessRequest, Status> {
    app.support()
        .request_access(with_token(
            pb::RequestAccessRequest {
                realm_id: realm_id.into(),
                reason: "Customer reports a broken report".into(),
                ticket_reference: "SUP-77".into(),
                level: level as i32,
                ..Default::default()
            },
            &agent.token,
        ))
        .await
        .map(|r| r.into_inner().access_request.unwrap())
}

/// Another full top-level admin of the realm, with its token.
async fn full_admin(app: &TestApp, w: &World, email: &str) -> Person {
    person(
        app,
        w,
        &w.realm.top_portal_id,
        email,
        pb::UserType::Admin,
        Some(true),
    )
    .await
}

fn require_approvals(realm_id: &str, n: i32) -> pb::UpdateSupportAccessPolicyRequest {
    pb::UpdateSupportAccessPolicyRequest {
        realm_id: realm_id.into(),
        required_approvals: Some(n),
        ..Default::default()
    }
}

fn status_of(portals: &[pb::PortalAccess], portal_id: &str) -> pb::PortalAccessStatus {
    let p = portals.iter().find(|p| p.portal_id == portal_id).unwrap();
    pb::PortalAccessStatus::try_from(p.status).unwrap()
}

both_databases! {
    async fn g1_policy_defaults_readers_and_writers(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let p = policy(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        assert!(p.enabled);
        assert_eq!(p.max_duration.unwrap().seconds, 30 * 86_400);
        assert_eq!(p.required_approvals, 1);
        assert_eq!(p.allowed_levels.len(), 2);
        // Support agents read it too.
        assert_eq!(policy(app, &ana.token, &w.realm.realm_id).await.unwrap(), p);
        // Sub-portal admins, limited admins and temporary admins never change it.
        let sub = person(app, &w, &w.sub_a, "sub@acme.example", pb::UserType::Admin, Some(true)).await;
        let change = pb::UpdateSupportAccessPolicyRequest { realm_id: w.realm.realm_id.clone(), enabled: Some(false), ..Default::default() };
        assert_error(update_policy(app, &sub.token, change.clone()).await, Code::PermissionDenied, "TOP_LEVEL_ADMIN_REQUIRED");
        assert_error(update_policy(app, &ana.token, change.clone()).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap();
        let temp = temporary_admin_token(app, &w.realm.realm_id, &granted[0].temporary_admin_id, &ana);
        assert_error(update_policy(app, &temp, change.clone()).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
        assert_error(approve(app, &temp, &request.access_request_id).await, Code::PermissionDenied, "SUPPORT_ADMIN_RESTRICTED");
        assert_eq!(events(app, "support_access.policy_changed").await, 0);
        // A change is one security event with old and new values.
        let updated = update_policy(app, &w.realm.admin_token, pb::UpdateSupportAccessPolicyRequest {
            max_duration: hours(4),
            ..change
        }).await.unwrap();
        assert!(updated.changed);
        assert_eq!(events(app, "support_access.policy_changed").await, 1);
        let details: String = {
            let db = app.database().await;
            let row = db.query_one_raw(Statement::from_string(db.get_database_backend(),
                "SELECT details FROM audit_events WHERE action = 'support_access.policy_changed'".to_owned())).await.unwrap().unwrap();
            row.try_get_by_index(0).unwrap()
        };
        for needle in ["enabled.old", "max_duration_seconds.old", "2592000", "14400"] {
            assert!(details.contains(needle), "{details}");
        }
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM audit_events WHERE action = 'support_access.policy_changed' AND category = 'security'").await, 1);
    }
}

both_databases! {
    async fn g2_disabled_policy_refuses_requests_allows_and_approvals_and_lists_running_grants(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(2)).await.unwrap();
        let second = request_access(app, &ana, &w.realm.realm_id).await;
        let off = update_policy(app, &w.realm.admin_token, pb::UpdateSupportAccessPolicyRequest {
            realm_id: w.realm.realm_id.clone(), enabled: Some(false), ..Default::default()
        }).await.unwrap();
        assert_eq!(off.active_grants.len(), 1);
        assert_eq!(off.active_grants[0].portal_id, w.sub_a);
        let refused = app.support().request_access(with_token(pb::RequestAccessRequest {
            realm_id: w.realm.realm_id.clone(), reason: "again".into(), ..Default::default()
        }, &ana.token)).await;
        assert_error(refused, Code::FailedPrecondition, "SUPPORT_ACCESS_DISABLED");
        assert_error(allow(app, &w.realm.admin_token, &second.access_request_id, &[&w.sub_b], hours(1)).await, Code::FailedPrecondition, "SUPPORT_ACCESS_DISABLED");
        assert_error(approve(app, &w.realm.admin_token, &second.access_request_id).await, Code::FailedPrecondition, "SUPPORT_ACCESS_DISABLED");
        // The running grant runs on.
        let temp = temporary_admin_token(app, &w.realm.realm_id, &granted[0].temporary_admin_id, &ana);
        assert!(has(&effective(app, &temp, &w.sub_a, "").await, pb::Permission::ManageUsers));
        assert_eq!(temporary_admins(app).await, 1);
        // POLICY_MAX_DURATION.
        update_policy(app, &w.realm.admin_token, pb::UpdateSupportAccessPolicyRequest {
            realm_id: w.realm.realm_id.clone(), enabled: Some(true), max_duration: hours(2), ..Default::default()
        }).await.unwrap();
        assert_error(allow(app, &w.realm.admin_token, &second.access_request_id, &[&w.sub_b], hours(3)).await, Code::FailedPrecondition, "POLICY_MAX_DURATION");
        assert_eq!(temporary_admins(app).await, 1);
        // Unset duration fits the maximum.
        let fitted = allow(app, &w.realm.admin_token, &second.access_request_id, &[&w.sub_b], None).await.unwrap();
        assert_eq!(seconds(&fitted[0].expire_time) - now_seconds(app), 2 * 3600);
    }
}

both_databases! {
    async fn g3_allow_narrows_the_level_never_widens_it_nor_exceeds_the_policy(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let viewer = request_level(app, &ana, &w.realm.realm_id, pb::SupportAccessLevel::ViewOnly).await.unwrap();
        assert_eq!(viewer.level, pb::SupportAccessLevel::ViewOnly as i32);
        let widen = allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: viewer.access_request_id.clone(), portal_ids: vec![w.sub_a.clone()],
            level: pb::SupportAccessLevel::Admin as i32, ..Default::default()
        }).await;
        assert_error(widen, Code::FailedPrecondition, "SUPPORT_LEVEL_NOT_ALLOWED");
        assert_eq!(temporary_admins(app).await, 0);
        // Unset RequestAccess level means ADMIN.
        let admin_level = request_access(app, &ana, &w.realm.realm_id).await;
        assert_eq!(admin_level.level, pb::SupportAccessLevel::Admin as i32);
        update_policy(app, &w.realm.admin_token, pb::UpdateSupportAccessPolicyRequest {
            realm_id: w.realm.realm_id.clone(), allowed_levels: vec![pb::SupportAccessLevel::ViewOnly as i32], ..Default::default()
        }).await.unwrap();
        assert_error(request_level(app, &ana, &w.realm.realm_id, pb::SupportAccessLevel::Admin).await, Code::FailedPrecondition, "SUPPORT_LEVEL_NOT_ALLOWED");
        assert_error(allow(app, &w.realm.admin_token, &admin_level.access_request_id, &[&w.sub_a], hours(1)).await, Code::FailedPrecondition, "SUPPORT_LEVEL_NOT_ALLOWED");
        let narrowed = allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: admin_level.access_request_id.clone(), portal_ids: vec![w.sub_a.clone()],
            level: pb::SupportAccessLevel::ViewOnly as i32, ..Default::default()
        }).await.unwrap();
        assert_eq!(narrowed.results[0].level, pb::SupportAccessLevel::ViewOnly as i32);
    }
}

both_databases! {
    async fn g4_view_only_temporary_admin_sees_the_console_and_changes_nothing(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: request.access_request_id.clone(), portal_ids: vec![w.sub_a.clone()],
            duration: hours(1), level: pb::SupportAccessLevel::ViewOnly as i32, ..Default::default()
        }).await.unwrap().results.remove(0);
        let temp_id = granted.temporary_admin_id.clone();
        let temp = temporary_admin_token(app, &w.realm.realm_id, &temp_id, &ana);
        let mine = effective(app, &temp, &w.sub_a, "").await;
        let mut held: Vec<i32> = mine.permissions.clone();
        held.sort();
        assert_eq!(held, vec![pb::Permission::ViewPortal as i32, pb::Permission::ViewAdminConsole as i32]);
        // Other services learn it through CheckPermission.
        let service = app.service(&["permissions.check"]);
        assert!(allowed(app, &service, &w.sub_a, &temp_id, pb::Permission::ViewAdminConsole).await);
        assert!(!allowed(app, &service, &w.sub_a, &temp_id, pb::Permission::ManageUsers).await);
        // Every admin tier holds VIEW_ADMIN_CONSOLE.
        assert!(allowed(app, &service, &w.sub_a, &w.realm.admin_id, pb::Permission::ViewAdminConsole).await);
        let limited = person(app, &w, &w.sub_b, "limited@acme.example", pb::UserType::Admin, Some(false)).await;
        assert!(allowed(app, &service, &w.sub_b, &limited.id(), pb::Permission::ViewAdminConsole).await);
        // Reads work; every change is refused and logged.
        app.admins().list_users(with_token(pb::ListUsersRequest { portal_id: w.sub_a.clone(), ..Default::default() }, &temp)).await.expect("a view-only admin reads");
        let before = scalar(app, "SELECT COUNT(*) FROM accounts").await;
        let create = app.admins().create_user(with_token(learner_request(&w.sub_a, "new@acme.example", "New Learner"), &temp)).await;
        assert_error(create, Code::PermissionDenied, "SUPPORT_ACCESS_READ_ONLY");
        let set = set_type(app, &temp, &limited.id(), &w.sub_a, pb::UserType::Learner, None).await;
        assert_error(set, Code::PermissionDenied, "SUPPORT_ACCESS_READ_ONLY");
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM accounts").await, before);
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        let refused: Vec<_> = of_action(&log, "support_access.call").into_iter()
            .filter(|e| e.details.get("outcome").map(String::as_str) == Some("PERMISSION_DENIED"))
            .collect();
        assert_eq!(refused.len(), 2, "{log:?}");
        assert!(refused.iter().any(|e| e.details.get("rpc").map(String::as_str) == Some("AdminService/CreateUser")));
    }
}

both_databases! {
    async fn g5_first_allow_proposes_and_the_second_distinct_admin_starts_it(app) {
        let w = world(app).await;
        let bea = full_admin(app, &w, "bea@acme.example").await;
        let ana = agent(app, "Ana Support");
        update_policy(app, &w.realm.admin_token, require_approvals(&w.realm.realm_id, 2)).await.unwrap();
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        assert_error(approve(app, &bea.token, &request.access_request_id).await, Code::FailedPrecondition, "NO_OPEN_PROPOSAL");
        let proposed = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a, &w.sub_b], hours(2)).await.unwrap();
        assert!(proposed.iter().all(|r| r.status == pb::PortalAccessStatus::AwaitingApproval as i32));
        assert_eq!(temporary_admins(app).await, 0);
        let dots = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        assert_eq!(status_of(&dots, &w.sub_a), pb::PortalAccessStatus::AwaitingApproval);
        assert_eq!(status_of(&dots, &w.realm.top_portal_id), pb::PortalAccessStatus::NotAccessible);
        // The proposer's allow was the first approval.
        assert_error(approve(app, &w.realm.admin_token, &request.access_request_id).await, Code::FailedPrecondition, "ALREADY_APPROVED");
        let started = approve(app, &bea.token, &request.access_request_id).await.unwrap();
        assert_eq!(started.approvals_missing, 0);
        assert_eq!(started.results.len(), 2);
        assert!(started.results.iter().all(|r| r.status == pb::PortalAccessStatus::AccessAvailable as i32));
        assert_eq!(temporary_admins(app).await, 2);
        assert_eq!(seconds(&started.results[0].expire_time) - now_seconds(app), 2 * 3600);
        // G8: the request shows its approvals (who, when) and level.
        let listed = requests(app, &w.realm.admin_token, &w.realm.realm_id, pb::AccessRequestState::Unspecified).await.unwrap();
        let shown = listed.iter().find(|r| r.access_request_id == request.access_request_id).unwrap();
        let approvers: Vec<&str> = shown.approvals.iter().map(|a| a.admin_id.as_str()).collect();
        assert_eq!(approvers, vec![w.realm.admin_id.as_str(), bea.user.user_id.as_str()]);
        assert!(shown.approvals.iter().all(|a| a.approve_time.is_some()));
        assert_eq!(shown.required_approvals, 2);
        assert!(shown.proposal.as_ref().unwrap().started);
        assert_eq!(shown.state, pb::AccessRequestState::Approved as i32);
        // Started: nothing left to approve.
        let carl = full_admin(app, &w, "carl@acme.example").await;
        assert_error(approve(app, &carl.token, &request.access_request_id).await, Code::FailedPrecondition, "NO_OPEN_PROPOSAL");
    }
}

both_databases! {
    async fn g5_quorum_unreachable_and_decline_cancels_the_proposal(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        assert_error(update_policy(app, &w.realm.admin_token, require_approvals(&w.realm.realm_id, 2)).await, Code::FailedPrecondition, "QUORUM_UNREACHABLE");
        assert_error(update_policy(app, &w.realm.admin_token, require_approvals(&w.realm.realm_id, 4)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        let bea = full_admin(app, &w, "bea@acme.example").await;
        update_policy(app, &w.realm.admin_token, require_approvals(&w.realm.realm_id, 2)).await.unwrap();
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap();
        // Admins fall below N: approvals are refused with the same reason.
        let gus = full_admin(app, &w, "gus@acme.example").await;
        delete(app, &gus.token, &w.realm.admin_id).await.unwrap();
        set_settings(app, &gus.token, &bea.id(), false).await.unwrap();
        assert_error(approve(app, &bea.token, &request.access_request_id).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED");
        assert_error(approve(app, &gus.token, &request.access_request_id).await, Code::FailedPrecondition, "QUORUM_UNREACHABLE");
        // Any full top-level admin may lower the policy.
        update_policy(app, &gus.token, require_approvals(&w.realm.realm_id, 1)).await.unwrap();
        // Decline cancels the proposal.
        app.support().decline_access_request(with_token(pb::DeclineAccessRequestRequest { access_request_id: request.access_request_id.clone() }, &gus.token)).await.unwrap();
        assert_eq!(events(app, "support_access.proposal_cancelled").await, 1);
        assert_error(approve(app, &gus.token, &request.access_request_id).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_OPEN");
        let dots = portal_access(app, &gus.token, &w.realm.realm_id).await.unwrap();
        assert_eq!(status_of(&dots, &w.sub_a), pb::PortalAccessStatus::NotAccessible);
        assert_eq!(temporary_admins(app).await, 0);
    }
}

both_databases! {
    async fn g5_concurrent_approvals_give_exactly_n_approvals_and_one_start(app) {
        let w = world(app).await;
        let mut admins = Vec::new();
        for name in ["bea", "carl", "dana", "eve", "fay"] {
            admins.push(full_admin(app, &w, &format!("{name}@acme.example")).await);
        }
        update_policy(app, &w.realm.admin_token, require_approvals(&w.realm.realm_id, 3)).await.unwrap();
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a, &w.sub_b], hours(1)).await.unwrap();
        let mut calls = JoinSet::new();
        for admin in &admins {
            let mut client = app.support();
            let message = with_token(pb::ApproveAccessRequest { access_request_id: request.access_request_id.clone() }, &admin.token);
            calls.spawn(async move { client.approve_access(message).await.map(|r| r.into_inner()) });
        }
        let mut approved = 0;
        let mut started = 0;
        while let Some(outcome) = calls.join_next().await {
            match outcome.unwrap() {
                Ok(answer) => {
                    approved += 1;
                    if answer.approvals_missing == 0 { started += 1; }
                }
                Err(status) => assert_eq!(reason(&status), "NO_OPEN_PROPOSAL", "{status:?}"),
            }
        }
        println!("5 concurrent approvals with N = 3: {approved} accepted, {started} started");
        assert_eq!(approved, 2);
        assert_eq!(started, 1);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_approvals").await, 3);
        assert_eq!(events(app, "support_access.started").await, 1);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_grants WHERE ended_at IS NULL").await, 2);
        assert_eq!(temporary_admins(app).await, 2);
    }
}

both_databases! {
    async fn g6_scheduled_grant_opens_at_its_start_time(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let result = allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: request.access_request_id.clone(), portal_ids: vec![w.sub_a.clone()],
            duration: hours(2), start_time: timestamp_in(app, Duration::hours(1)), ..Default::default()
        }).await.unwrap().results.remove(0);
        assert_eq!(result.status, pb::PortalAccessStatus::Scheduled as i32);
        assert_eq!(seconds(&result.start_time) - now_seconds(app), 3600);
        assert_eq!(seconds(&result.expire_time) - now_seconds(app), 3 * 3600);
        let dots = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        assert_eq!(status_of(&dots, &w.sub_a), pb::PortalAccessStatus::Scheduled);
        let temp = temporary_admin_token(app, &w.realm.realm_id, &result.temporary_admin_id, &ana);
        let early = app.admins().get_effective_permissions(with_token(pb::GetEffectivePermissionsRequest { portal_id: w.sub_a.clone(), user_id: String::new() }, &temp)).await;
        assert_error(early, Code::PermissionDenied, "SUPPORT_ACCESS_NOT_STARTED");
        let service = app.service(&["permissions.check"]);
        assert!(!allowed(app, &service, &w.sub_a, &result.temporary_admin_id, pb::Permission::ViewPortal).await);
        advance(app, Duration::hours(1));
        assert!(has(&effective(app, &temp, &w.sub_a, "").await, pb::Permission::ManageUsers));
        assert!(allowed(app, &service, &w.sub_a, &result.temporary_admin_id, pb::Permission::ViewPortal).await);
        advance(app, Duration::hours(2));
        let late = app.admins().get_effective_permissions(with_token(pb::GetEffectivePermissionsRequest { portal_id: w.sub_a.clone(), user_id: String::new() }, &temp)).await;
        assert_error(late, Code::PermissionDenied, "SUPPORT_ACCESS_ENDED");
        // Bad schedules change nothing.
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let grants = scalar(app, "SELECT COUNT(*) FROM support_grants").await;
        for (start, activation, window) in [
            (timestamp_in(app, Duration::minutes(-1)), 0, None),
            (timestamp_in(app, Duration::days(31)), 0, None),
            (timestamp_in(app, Duration::hours(1)), pb::GrantActivation::OnFirstUse as i32, None),
            (None, pb::GrantActivation::OnFirstUse as i32, Some(prost_types::Duration { seconds: 600, nanos: 0 })),
            (None, pb::GrantActivation::OnFirstUse as i32, Some(prost_types::Duration { seconds: 8 * 86_400, nanos: 0 })),
            (None, 7, None),
        ] {
            let refused = allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
                access_request_id: request.access_request_id.clone(), portal_ids: vec![w.sub_b.clone()],
                start_time: start, activation, claim_window: window, ..Default::default()
            }).await;
            assert_error(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
        }
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_grants").await, grants);
    }
}

both_databases! {
    async fn g6_first_use_starts_the_clock_and_unclaimed_grants_lapse_once(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: request.access_request_id.clone(), portal_ids: vec![w.sub_a.clone(), w.sub_b.clone()],
            duration: hours(2), activation: pb::GrantActivation::OnFirstUse as i32,
            claim_window: hours(1), ..Default::default()
        }).await.unwrap().results;
        assert!(granted.iter().all(|r| r.status == pb::PortalAccessStatus::AccessAvailable as i32 && r.start_time.is_none()));
        assert_eq!(seconds(&granted[0].claim_expire_time) - now_seconds(app), 3600);
        advance(app, Duration::minutes(30));
        // The first CheckPermission about it starts the clock, once.
        let service = app.service(&["permissions.check"]);
        assert!(allowed(app, &service, &w.sub_a, &granted[0].temporary_admin_id, pb::Permission::ManageUsers).await);
        assert!(allowed(app, &service, &w.sub_a, &granted[0].temporary_admin_id, pb::Permission::ManageUsers).await);
        assert_eq!(events(app, "support_access.claimed").await, 1);
        let dots = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
        let a = dots.iter().find(|p| p.portal_id == w.sub_a).unwrap();
        assert_eq!(seconds(&a.expire_time) - now_seconds(app), 2 * 3600);
        // The other grant is never used: it lapses at the claim deadline.
        advance(app, Duration::minutes(30));
        let temp_b = temporary_admin_token(app, &w.realm.realm_id, &granted[1].temporary_admin_id, &ana);
        let late = app.admins().get_effective_permissions(with_token(pb::GetEffectivePermissionsRequest { portal_id: w.sub_b.clone(), user_id: String::new() }, &temp_b)).await;
        assert_error(late, Code::PermissionDenied, "SUPPORT_ACCESS_ENDED");
        app.services().sweep_once().await.unwrap();
        app.services().sweep_once().await.unwrap();
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_grants WHERE end_reason = 'unclaimed'").await, 1);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM audit_events WHERE action = 'support_access.expired' AND details LIKE '%unclaimed%'").await, 1);
        // The claimed one runs its full duration from the claim.
        let temp_a = temporary_admin_token(app, &w.realm.realm_id, &granted[0].temporary_admin_id, &ana);
        assert!(has(&effective(app, &temp_a, &w.sub_a, "").await, pb::Permission::ManageUsers));
        advance(app, Duration::minutes(90));
        let ended = app.admins().get_effective_permissions(with_token(pb::GetEffectivePermissionsRequest { portal_id: w.sub_a.clone(), user_id: String::new() }, &temp_a)).await;
        assert_error(ended, Code::PermissionDenied, "SUPPORT_ACCESS_ENDED");
    }
}

both_databases! {
    async fn g6_first_use_is_claimed_exactly_once_across_two_replicas(app) {
        let second = start_server(test_config(&app.database_url), app.backend).await;
        second.clock.set(app.clock.now());
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let mut temps = Vec::new();
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        for result in allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: request.access_request_id.clone(), portal_ids: vec![w.sub_a.clone(), w.sub_b.clone(), w.realm.top_portal_id.clone()],
            duration: hours(2), activation: pb::GrantActivation::OnFirstUse as i32, ..Default::default()
        }).await.unwrap().results {
            temps.push((result.portal_id, result.temporary_admin_id));
        }
        let service = app.service(&["permissions.check"]);
        let mut calls = JoinSet::new();
        for (portal_id, temp_id) in &temps {
            for replica in [&app.channel, &second.channel] {
                for _ in 0..3 {
                    let mut client = pb::admin_service_client::AdminServiceClient::new(replica.clone());
                    let message = with_token(pb::CheckPermissionRequest {
                        portal_id: portal_id.clone(), permission: pb::Permission::ViewPortal as i32, user_id: temp_id.clone(),
                    }, &service);
                    calls.spawn(async move { client.check_permission(message).await.map(|r| r.into_inner().allowed) });
                }
            }
        }
        while let Some(outcome) = calls.join_next().await {
            assert!(outcome.unwrap().expect("check"), "every first use sees an active grant");
        }
        assert_eq!(events(app, "support_access.claimed").await, 3);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_grants WHERE starts_at IS NOT NULL").await, 3);
        second.stop().await;
    }
}

both_databases! {
    async fn g7_support_relinquishes_and_the_ticketing_system_closes_tickets(app) {
        let w = world(app).await;
        let other = world_named(app, "globex").await;
        let ana = agent(app, "Ana Support");
        let bob = agent(app, "Bob Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a, &w.sub_b], hours(4)).await.unwrap();
        let by_id = |id: &str| pb::EndSupportAccessRequest { access_request_id: id.into(), ..Default::default() };
        // Another agent's request looks missing; admins and temporary admins may not call it.
        assert_error(end_access(app, &bob.token, by_id(&request.access_request_id)).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND");
        assert_error(end_access(app, &w.realm.admin_token, by_id(&request.access_request_id)).await, Code::PermissionDenied, "WRONG_PRINCIPAL_KIND");
        assert_eq!(temporary_admins(app).await, 2);
        let ended = end_access(app, &ana.token, by_id(&request.access_request_id)).await.unwrap();
        assert_eq!(ended.results.len(), 2);
        assert!(ended.results.iter().all(|r| r.status == pb::PortalAccessStatus::NotAccessible as i32));
        assert_eq!(temporary_admins(app).await, 0);
        assert_eq!(events(app, "support_access.relinquished").await, 2);
        // Idempotent.
        let again = end_access(app, &ana.token, by_id(&request.access_request_id)).await.unwrap();
        assert_eq!(again.results.len(), 2);
        assert_eq!(events(app, "support_access.relinquished").await, 2);
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        assert_eq!(of_action(&log, "support_access.relinquished").len(), 1);
        // The ticketing system closes a ticket: every grant of its requests ends.
        let first = request_access(app, &ana, &w.realm.realm_id).await;
        allow(app, &w.realm.admin_token, &first.access_request_id, &[&w.sub_a], hours(4)).await.unwrap();
        let scheduled = request_access(app, &bob, &w.realm.realm_id).await;
        allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: scheduled.access_request_id.clone(), portal_ids: vec![w.sub_b.clone()],
            start_time: timestamp_in(app, Duration::hours(3)), ..Default::default()
        }).await.unwrap();
        let ticket = |realm_id: &str, t: &str| pb::EndSupportAccessRequest { realm_id: realm_id.into(), ticket_reference: t.into(), ..Default::default() };
        let no_scope = app.service(&["permissions.check"]);
        assert_error(end_access(app, &no_scope, ticket(&w.realm.realm_id, "SUP-1234")).await, Code::PermissionDenied, "MISSING_SCOPE");
        let ticketing = app.service(&["support_sessions.end"]);
        assert_error(end_access(app, &ticketing, ticket(&other.realm.realm_id, "SUP-1234")).await, Code::NotFound, "ACCESS_REQUEST_NOT_FOUND");
        assert_error(end_access(app, &ticketing, ticket(&w.realm.realm_id, "")).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(temporary_admins(app).await, 2);
        let closed = end_access(app, &ticketing, ticket(&w.realm.realm_id, "SUP-1234")).await.unwrap();
        assert_eq!(closed.access_requests.len(), 3);
        assert_eq!(temporary_admins(app).await, 0);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_grants WHERE end_reason = 'ticket_closed'").await, 2);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM audit_events WHERE action = 'support_access.relinquished' AND details LIKE '%ticket_closed%'").await, 2);
    }
}

both_databases! {
    async fn g8_every_governance_step_is_an_audit_event_of_its_request(app) {
        let w = world(app).await;
        let bea = full_admin(app, &w, "bea@acme.example").await;
        let ana = agent(app, "Ana Support");
        update_policy(app, &w.realm.admin_token, require_approvals(&w.realm.realm_id, 2)).await.unwrap();
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        allow_with(app, &w.realm.admin_token, pb::AllowAccessRequest {
            access_request_id: request.access_request_id.clone(), portal_ids: vec![w.sub_a.clone()],
            duration: hours(1), activation: pb::GrantActivation::OnFirstUse as i32, ..Default::default()
        }).await.unwrap();
        let started = approve(app, &bea.token, &request.access_request_id).await.unwrap();
        let temp_id = started.results[0].temporary_admin_id.clone();
        let temp = temporary_admin_token(app, &w.realm.realm_id, &temp_id, &ana);
        effective(app, &temp, &w.sub_a, "").await;
        end_access(app, &ana.token, pb::EndSupportAccessRequest { access_request_id: request.access_request_id.clone(), ..Default::default() }).await.unwrap();
        for action in ["support_access.policy_changed", "support_access.proposed", "support_access.approved",
                       "support_access.started", "support_access.claimed", "support_access.relinquished"] {
            assert_eq!(events(app, action).await, 1, "{action}");
        }
        // The session's steps in the portal's log, and in the stream.
        let log = logs(app, &w.realm.admin_token, &w.sub_a).await.unwrap();
        for action in ["support_access.claimed", "support_access.relinquished", "support_access.allowed"] {
            assert_eq!(of_action(&log, action).len(), 1, "{action}");
        }
        let mut stream = app.support().stream_audit_events(with_token(pb::StreamAuditEventsRequest {
            realm_id: w.realm.realm_id.clone(),
            start: Some(pb::stream_audit_events_request::Start::FromBeginning(true)),
            ..Default::default()
        }, &w.realm.admin_token)).await.unwrap().into_inner();
        let mut seen = Vec::new();
        while let Some(message) = stream.message().await.unwrap() {
            match message.event {
                Some(event) => seen.push(event.action),
                None => break,
            }
        }
        for action in ["support_access.policy_changed", "support_access.proposed", "support_access.approved",
                       "support_access.started", "support_access.claimed", "support_access.relinquished"] {
            assert!(seen.iter().any(|a| a == action), "{action} not streamed: {seen:?}");
        }
    }
}
