//! Support access under real concurrency: concurrent calls through gRPC,
//! and two server instances sharing one database.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use tokio::task::JoinSet;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
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

/// Open grants whose temporary admin is missing, and temporary admins
/// whose grant is not open: both must be 0 at every quiet moment.
async fn orphans(app: &TestApp) -> (i64, i64) {
    let grants_without_admin = scalar(
        app,
        "SELECT COUNT(*) FROM support_grants g WHERE g.ended_at IS NULL \
         AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = g.temporary_account_id)",
    )
    .await;
    let admins_without_grant = scalar(
        app,
        "SELECT COUNT(*) FROM accounts a WHERE a.support_grant_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM support_grants g WHERE g.id = a.support_grant_id AND g.ended_at IS NULL)",
    )
    .await;
    (grants_without_admin, admins_without_grant)
}

both_databases! {
    async fn s5_concurrent_allows_on_one_portal_make_one_grant_and_one_temporary_admin(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let mut calls = JoinSet::new();
        for _ in 0..16 {
            let mut client = app.support();
            let request = with_token(
                pb::AllowAccessRequest {
                    access_request_id: request.access_request_id.clone(),
                    portal_ids: vec![w.sub_a.clone()],
                    duration: hours(1),
                    ..Default::default()
                },
                &w.realm.admin_token,
            );
            calls.spawn(async move { client.allow_access(request).await.map(|r| r.into_inner().results) });
        }
        let mut results: Vec<pb::PortalAccessResult> = Vec::new();
        while let Some(outcome) = calls.join_next().await {
            results.push(outcome.unwrap().expect("allow").remove(0));
        }
        let created = results.iter().filter(|r| !r.extended).count();
        println!("16 concurrent AllowAccess on one portal: {created} created, {} extended", results.len() - created);
        assert_eq!(created, 1);
        assert!(results.iter().all(|r| r.temporary_admin_id == results[0].temporary_admin_id));
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM support_grants WHERE ended_at IS NULL").await, 1);
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM accounts WHERE support_grant_id IS NOT NULL").await, 1);
    }
}

both_databases! {
    async fn s7_allow_racing_revoke_leaves_no_orphan(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_b], hours(8)).await.unwrap();
        let sub_a = [w.sub_a.as_str()];
        for _ in 0..12 {
            let (allowed, revoked) = tokio::join!(
                allow(app, &w.realm.admin_token, &request.access_request_id, &sub_a, hours(1)),
                revoke(app, &w.realm.admin_token, &w.realm.realm_id, &sub_a),
            );
            allowed.expect("allow");
            revoked.expect("revoke");
            assert_eq!(orphans(app).await, (0, 0));
            let open_on_a = scalar(app, &format!(
                "SELECT COUNT(*) FROM support_grants WHERE ended_at IS NULL AND portal_id = {}",
                uuid_literal(app, &w.sub_a),
            )).await;
            assert!(open_on_a <= 1);
            // The dot agrees with the table.
            let dots = portal_access(app, &w.realm.admin_token, &w.realm.realm_id).await.unwrap();
            let a = dots.iter().find(|p| p.portal_id == w.sub_a).unwrap();
            assert_eq!(a.status == pb::PortalAccessStatus::AccessAvailable as i32, open_on_a == 1);
        }
    }
}

both_databases! {
    async fn s8_two_sweepers_expire_each_grant_exactly_once(app) {
        let second = start_server(test_config(&app.database_url), app.backend).await;
        let ana = agent(app, "Ana Support");
        let mut grants = 0;
        for name in ["one", "two", "three"] {
            let w = world_named(app, name).await;
            let request = request_access(app, &ana, &w.realm.realm_id).await;
            let portals = [w.realm.top_portal_id.as_str(), &w.sub_a, &w.sub_b];
            grants += allow(app, &w.realm.admin_token, &request.access_request_id, &portals, hours(1)).await.unwrap().len();
        }
        let later = {
            use portal_access::domain::Clock;
            app.clock.now() + chrono::Duration::hours(2)
        };
        app.clock.set(later);
        second.clock.set(later);
        let (a, b) = tokio::join!(app.services().sweep_once(), second.services().sweep_once());
        let (a, b) = (a.unwrap(), b.unwrap());
        println!("two sweepers: {} + {} of {grants} grants expired", a.grants_expired, b.grants_expired);
        assert_eq!(a.grants_expired + b.grants_expired, grants);
        let events = scalar(app, "SELECT COUNT(*) FROM audit_events WHERE action = 'support_access.expired'").await;
        assert_eq!(events, grants as i64, "one expired event per grant");
        assert_eq!(scalar(app, "SELECT COUNT(*) FROM accounts WHERE support_grant_id IS NOT NULL").await, 0);
        assert_eq!(orphans(app).await, (0, 0));
        let mut second = second;
        second.shut_down().await;
    }
}

/// S8: the background sweeper, on its own, ends a lapsed grant. Waits on
/// the store's commit signal, not on a timer.
async fn background_sweeper_ends_lapsed_grants(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.sweep_interval = Duration::from_millis(20)).await
    else {
        return;
    };
    let w = world(&app).await;
    let ana = agent(&app, "Ana Support");
    let request = request_access(&app, &ana, &w.realm.realm_id).await;
    allow(
        &app,
        &w.realm.admin_token,
        &request.access_request_id,
        &[&w.sub_a],
        hours(1),
    )
    .await
    .unwrap();
    let mut commits = app.services().store().subscribe_commits();
    commits.borrow_and_update();
    app.clock.advance(chrono::Duration::hours(1));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            commits.changed().await.expect("server running");
            let log = logs(&app, &w.realm.admin_token, &w.sub_a).await.unwrap();
            if !of_action(&log, "support_access.expired").is_empty() {
                break;
            }
        }
    })
    .await
    .expect("the sweeper records the expiry");
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM accounts WHERE support_grant_id IS NOT NULL"
        )
        .await,
        0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_background_sweeper_ends_lapsed_grants_sqlite() {
    background_sweeper_ends_lapsed_grants(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_background_sweeper_ends_lapsed_grants_postgres() {
    background_sweeper_ends_lapsed_grants(Backend::Postgres).await;
}

/// A UUID as a SQL literal of the test database's column type.
fn uuid_literal(app: &TestApp, id: &str) -> String {
    match app.backend {
        Backend::Postgres => format!("'{id}'"),
        Backend::Sqlite => format!("X'{}'", id.replace('-', "")),
    }
}

both_databases! {
    /// SPEC §8 group commit: RecordSupportAction calls racing each other are
    /// committed together, yet each answer is its own: every acknowledged
    /// action is stored once with its own event, a repeated request_id gets
    /// the first event back, a reused one with another request is refused,
    /// an action without an active grant is refused and writes nothing, and
    /// the hash chain verifies.
    async fn s9_racing_support_actions_are_each_recorded_once(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(8))
            .await
            .unwrap()
            .remove(0);
        let recorder = app.service(&["support_actions.record"]);
        let events_before = app.count("audit_events").await;
        let repeated = uuid::Uuid::new_v4().to_string();
        let record = |n: usize, request_id: String, temporary_admin: String| pb::RecordSupportActionRequest {
            request_id,
            portal_id: w.sub_a.clone(),
            temporary_admin_id: temporary_admin,
            action: "page.viewed".into(),
            target_type: "page".into(),
            target_id: format!("page-{n}"),
            details: Default::default(),
            agent_id: ana.id.to_string(),
            agent_name: ana.name.clone(),
        };
        let mut calls = tokio::task::JoinSet::new();
        for n in 0..96 {
            let (request_id, temporary_admin, target) = match n % 6 {
                // The same request, sixteen times over.
                0 => (repeated.clone(), granted.temporary_admin_id.clone(), 0),
                // Someone who holds no grant here.
                1 => (String::new(), uuid::Uuid::new_v4().to_string(), n),
                _ => (String::new(), granted.temporary_admin_id.clone(), n),
            };
            let mut client = app.support();
            let request = with_token(record(target, request_id, temporary_admin), &recorder);
            calls.spawn(async move { (n, client.record_support_action(request).await) });
        }
        let mut recorded = std::collections::BTreeMap::new();
        let mut repeats = std::collections::BTreeSet::new();
        while let Some(joined) = calls.join_next().await {
            let (n, answer) = joined.unwrap();
            match n % 6 {
                0 => {
                    repeats.insert(answer.expect("a repeated request is answered").into_inner().event.unwrap().event_id);
                }
                1 => assert_eq!(reason(&answer.expect_err("no grant")), "GRANT_NOT_ACTIVE"),
                _ => {
                    let event = answer.expect("recorded").into_inner().event.unwrap();
                    assert_eq!(event.target_id, format!("page-{n}"), "each caller gets its own event");
                    recorded.insert(event.event_id, n);
                }
            }
        }
        assert_eq!(repeats.len(), 1, "every repeat got the first event: {repeats:?}");
        assert_eq!(recorded.len(), 96 - 16 - 16, "distinct events");
        assert_eq!(app.count("audit_events").await, events_before + recorded.len() as i64 + 1);

        // The same request_id with another request is refused.
        let reused = app
            .support()
            .record_support_action(with_token(record(7, repeated.clone(), granted.temporary_admin_id.clone()), &recorder))
            .await
            .expect_err("a reused request_id");
        assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
        let verified = app
            .support()
            .verify_audit_log(with_token(
                pb::VerifyAuditLogRequest { realm_id: w.realm.realm_id.clone() },
                &w.realm.admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(verified.intact, "{verified:?}");
    }
}
