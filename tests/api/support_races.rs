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
        eprintln!("skipped: {POSTGRES_ENV} is not set");
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
