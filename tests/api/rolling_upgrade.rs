//! Rolling updates (docs/operations.md, "Upgrades"): during a Kubernetes
//! rolling update the previous release and the new one serve one PostgreSQL
//! database at once. The previous release is the last one `RELEASES`
//! records, built from its commit (tests/api/previous_release.rs).

use std::time::Duration;

use portal_access::proto::v1 as pb;
use portal_access::proto::v1::stream_audit_events_request::Start;
use portal_access::store::Store;
use sea_orm::{ConnectionTrait, Database};
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;
use crate::people::learner_request;
use crate::previous_release;
use crate::process::ServerProcess;

#[tokio::test(flavor = "multi_thread")]
async fn previous_and_new_release_serve_one_postgres_database() {
    let Some((db, url)) = TestDb::create(Backend::Postgres).await else {
        println!("skipped: {POSTGRES_ENV} is not set (two releases share PostgreSQL only)");
        return;
    };
    let release = previous_release::last_release();
    let old_binary = {
        let release = release.clone();
        tokio::task::spawn_blocking(move || previous_release::binary(&release))
            .await
            .expect("build the previous release")
    };

    // Before the update: the previous release migrated the database and serves.
    let old = ServerProcess::spawn(ServerProcess::command(&old_binary, &url)).await;
    let started = old.startup.iter().find(|line| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("starting portal-access"))
    });
    let old_version = release.version.trim_start_matches('v');
    assert_eq!(
        started.and_then(|line| line["message"].as_str()),
        Some(format!("starting portal-access {old_version}").as_str()),
        "the old replica runs {}",
        release.version
    );

    // The update: the new release's migrate job, then its first replica.
    let migrate = tokio::process::Command::new(env!("CARGO_BIN_EXE_portal-access"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("PORTAL_ACCESS_JWT_SECRET", TEST_SECRET)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .await
        .expect("run the migrate job");
    assert!(
        migrate.status.success(),
        "the new release's migrations apply"
    );
    // While v0.2.0 serves, the new release numbers audit events at commit
    // as v0.2.0 does (docs/operations.md, "Upgrading from v0.2.0").
    let new = ServerProcess::start(&url, &[("PORTAL_ACCESS_AUDIT_NUMBERING", "at-commit")]).await;
    let old_api = old.client(Backend::Postgres, &url).await;
    let new_api = new.client(Backend::Postgres, &url).await;
    assert_serving(&old_api).await;
    assert_serving(&new_api).await;

    // A write through the old replica is read through the new one.
    let realm = old_api.create_realm("rolling-old").await;
    let top = new_api
        .portals()
        .get_portal(with_token(
            pb::GetPortalRequest {
                portal_id: realm.top_portal_id.clone(),
            },
            &realm.admin_token,
        ))
        .await
        .expect("the new replica reads the old replica's realm")
        .into_inner()
        .portal
        .unwrap();
    assert_eq!(top.subdomain, "rolling-old");

    // Streams on both replicas, then a write through each.
    let mut on_old = stream(&old_api, &realm, Start::FromBeginning(true)).await;
    let mut on_new = stream(&new_api, &realm, Start::FromBeginning(true)).await;
    let sub = new_api.create_sub_portal(&realm, "rolling-new").await;
    let portals = list_portals(&old_api, &realm, 50, "").await;
    assert!(
        portals.portals.iter().any(|p| p.portal_id == sub.portal_id),
        "the old replica lists the new replica's sub-portal"
    );
    let learner = old_api
        .admins()
        .create_user(with_token(
            learner_request(&sub.portal_id, "lea@rolling.example", "Lea"),
            &realm.admin_token,
        ))
        .await
        .expect("the old replica creates a user in the new replica's portal")
        .into_inner()
        .user
        .unwrap();
    let seen = new_api
        .admins()
        .get_user(with_token(
            pb::GetUserRequest {
                user_id: learner.user_id.clone(),
            },
            &realm.admin_token,
        ))
        .await
        .expect("the new replica reads the old replica's user")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(seen.email, "lea@rolling.example");

    // Each stream received both writes: the old replica's stream the new
    // replica's event and vice versa, in one order.
    let events_on_old = events_until(&mut on_old, &learner.user_id).await;
    let events_on_new = events_until(&mut on_new, &learner.user_id).await;
    assert!(
        events_on_old.iter().any(|e| e.target_id == sub.portal_id),
        "the old replica's stream carries the new replica's event"
    );
    assert_eq!(sequences(&events_on_old), sequences(&events_on_new));

    // A cursor from one replica resumes on the other: the rest of the log,
    // no gap, no duplicate.
    let first = &events_on_old[0];
    let mut resumed = stream(&new_api, &realm, Start::AfterCursor(first.cursor.clone())).await;
    let rest = events_until(&mut resumed, &learner.user_id).await;
    assert_eq!(sequences(&rest), sequences(&events_on_old[1..]));
    let first = &events_on_new[0];
    let mut resumed = stream(&old_api, &realm, Start::AfterCursor(first.cursor.clone())).await;
    let rest = events_until(&mut resumed, &learner.user_id).await;
    assert_eq!(sequences(&rest), sequences(&events_on_new[1..]));

    // A page token from one replica pages on the other.
    let page = list_portals(&old_api, &realm, 1, "").await;
    let next = list_portals(&new_api, &realm, 1, &page.next_page_token).await;
    assert_eq!(next.portals.len(), 1);
    assert_ne!(next.portals[0].portal_id, page.portals[0].portal_id);
    let page = list_portals(&new_api, &realm, 1, "").await;
    let next = list_portals(&old_api, &realm, 1, &page.next_page_token).await;
    assert_eq!(next.portals.len(), 1);
    assert_ne!(next.portals[0].portal_id, page.portals[0].portal_id);

    // One hash chain, written by both, verifies on both.
    for api in [&old_api, &new_api] {
        let verified = crate::faults::verify_realm(api, &realm).await;
        assert!(verified.intact, "the chain both releases wrote holds");
        assert_eq!(verified.event_count as usize, events_on_old.len());
    }
    assert_serving(&old_api).await;
    assert_serving(&new_api).await;

    // After the rollout: v0.2.0 is gone and replicas switch to numbering
    // after commit one by one (W1). While both modes serve, writes through
    // each land in one chain and one stream order.
    drop((old_api, old));
    let after = ServerProcess::start(&url, &[]).await;
    let after_api = after.client(Backend::Postgres, &url).await;
    let mut on_after = stream(&after_api, &realm, Start::FromBeginning(true)).await;
    // Concurrent writers through both, so an at-commit write often finds
    // the realm's last events still waiting for their numbers.
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..24 {
        let mut portals = if n % 2 == 0 {
            after_api.portals()
        } else {
            new_api.portals()
        };
        let request = with_token(
            pb::CreateSubPortalRequest {
                request_id: String::new(),
                realm_id: realm.realm_id.clone(),
                name: format!("switch {n}"),
                subdomain: format!("switch-{n}"),
            },
            &realm.admin_token,
        );
        writes.spawn(async move { portals.create_sub_portal(request).await });
    }
    let mut written = std::collections::HashSet::new();
    while let Some(created) = writes.join_next().await {
        let portal = created
            .unwrap()
            .expect("create sub-portal")
            .into_inner()
            .portal
            .unwrap();
        written.insert(portal.portal_id);
    }
    let mut everything = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < written.len() {
        let event = on_after
            .next()
            .await
            .expect("the stream stays open")
            .expect("stream ok");
        if let Some(event) = event.event {
            if written.contains(&event.target_id) {
                seen.insert(event.target_id.clone());
            }
            everything.push(event);
        }
    }
    let numbers = sequences(&everything);
    assert!(
        numbers.windows(2).all(|p| p[0] < p[1]),
        "one order: {numbers:?}"
    );
    for api in [&new_api, &after_api] {
        let verified = crate::faults::verify_realm(api, &realm).await;
        assert!(verified.intact, "the chain of both numbering modes holds");
        assert_eq!(verified.event_count as usize, everything.len());
    }

    drop((new_api, after_api, new, after));
    db.remove().await;
}

/// A replica of this release that restarts after a newer release migrated
/// the database (mid-rollout, or in a rollback) serves on the expanded
/// schema instead of refusing to start.
async fn serves_on_a_schema_a_newer_release_migrated(backend: Backend) {
    let Some((db, url)) = TestDb::create(backend).await else {
        println!("skipped: {POSTGRES_ENV} is not set");
        return;
    };
    let store = Store::connect(&url, 1).await.expect("connect");
    store.migrate().await.expect("this release's migrations");
    store.close().await;
    let conn = Database::connect(&url).await.expect("connect");
    conn.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) \
         VALUES ('m29991231_000001_from_a_newer_release', 0)",
    )
    .await
    .expect("record a newer release's migration");
    conn.close().await.ok();

    let app = start_server(test_config(&url), backend).await;
    let realm = app.create_realm("schema-ahead").await;
    assert!(!realm.realm_id.is_empty());
    app.stop().await;
    db.remove().await;
}

#[tokio::test]
async fn serves_on_a_schema_a_newer_release_migrated_sqlite() {
    serves_on_a_schema_a_newer_release_migrated(Backend::Sqlite).await;
}

#[tokio::test]
async fn serves_on_a_schema_a_newer_release_migrated_postgres() {
    serves_on_a_schema_a_newer_release_migrated(Backend::Postgres).await;
}

async fn assert_serving(app: &TestApp) {
    let status = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

async fn stream(
    app: &TestApp,
    realm: &RealmFixture,
    start: Start,
) -> tonic::Streaming<pb::StreamAuditEventsResponse> {
    app.support()
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm.realm_id.clone(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(start),
            },
            &realm.admin_token,
        ))
        .await
        .expect("open audit stream")
        .into_inner()
}

/// The stream's events up to and including the first about `target_id`.
async fn events_until(
    stream: &mut tonic::Streaming<pb::StreamAuditEventsResponse>,
    target_id: &str,
) -> Vec<pb::AuditEvent> {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("an event about {target_id} within 10 s"))
            .expect("stream open")
            .expect("no error");
        // Messages without an event (progress) carry nothing to compare.
        let Some(event) = message.event else { continue };
        let done = event.target_id == target_id;
        events.push(event);
        if done {
            return events;
        }
    }
}

fn sequences(events: &[pb::AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.sequence).collect()
}

async fn list_portals(
    app: &TestApp,
    realm: &RealmFixture,
    page_size: i32,
    page_token: &str,
) -> pb::ListPortalsResponse {
    app.portals()
        .list_portals(with_token(
            pb::ListPortalsRequest {
                realm_id: realm.realm_id.clone(),
                page_size,
                page_token: page_token.to_owned(),
            },
            &realm.admin_token,
        ))
        .await
        .expect("list portals")
        .into_inner()
}
