//! Issue #6, SPEC §7: the real binary under SIGTERM and `kill -9`, on
//! SQLite and PostgreSQL. A call is known to be in flight without any
//! sleep: the server runs with a concurrency limit of one and a held
//! database lock keeps the call inside; cheap calls are refused with
//! OVERLOADED exactly while it is.

use std::collections::BTreeSet;
use std::time::Duration;

use portal_access::proto::v1 as pb;
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, TransactionTrait,
};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::people::*;
use crate::process::ServerProcess;

/// The database's write lock, held from outside the server so that the
/// server's next write to a realm waits for it.
pub struct WriteLock {
    tx: DatabaseTransaction,
    db: DatabaseConnection,
}

impl WriteLock {
    pub async fn hold(database_url: &str) -> WriteLock {
        let db = Database::connect(database_url).await.expect("connect");
        let tx = db.begin().await.expect("begin");
        // SQLite: takes the one write lock. PostgreSQL: locks every realm row,
        // which each realm write locks first.
        tx.execute_unprepared("UPDATE realms SET name = name")
            .await
            .expect("lock realms");
        WriteLock { tx, db }
    }

    pub async fn release(self) {
        self.tx.rollback().await.expect("release the lock");
        self.db.close().await.ok();
    }
}

/// Calls CheckPermission until the server refuses it as OVERLOADED: with a
/// limit of one, that proves another call is being worked on.
pub async fn until_overloaded(app: &TestApp, world: &World) {
    for _ in 0..100_000 {
        let answer = app
            .admins()
            .check_permission(with_token(
                pb::CheckPermissionRequest {
                    portal_id: world.sub_a.clone(),
                    permission: pb::Permission::ManageUsers as i32,
                    user_id: world.realm.admin_id.clone(),
                },
                &world.realm.admin_token,
            ))
            .await;
        match answer {
            Ok(_) => tokio::task::yield_now().await,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(&status), "OVERLOADED");
                return;
            }
        }
    }
    panic!("the blocked call never occupied the server");
}

async fn health_watch(app: &TestApp) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch health")
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    watch
}

/// CreateUser in its own task, retried while it is itself shed (the
/// probes of [`until_overloaded`] may hold the one slot when it arrives).
pub fn create_user_call(
    app: &TestApp,
    world: &World,
    email: &str,
) -> tokio::task::JoinHandle<Result<pb::User, tonic::Status>> {
    let mut admins = app.admins();
    let request = with_token(
        learner_request(&world.sub_a, email, "In flight"),
        &world.realm.admin_token,
    );
    tokio::spawn(async move {
        loop {
            let mut attempt = tonic::Request::new(request.get_ref().clone());
            *attempt.metadata_mut() = request.metadata().clone();
            match admins.create_user(attempt).await {
                Err(status) if status.code() == Code::ResourceExhausted => {
                    tokio::task::yield_now().await
                }
                answer => return answer.map(|r| r.into_inner().user.unwrap()),
            }
        }
    })
}

async fn open_audit_stream(
    app: &TestApp,
    world: &World,
) -> tonic::Streaming<pb::StreamAuditEventsResponse> {
    app.support()
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: world.realm.realm_id.clone(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(pb::stream_audit_events_request::Start::FromBeginning(true)),
            },
            &world.realm.admin_token,
        ))
        .await
        .expect("open audit stream")
        .into_inner()
}

async fn sigterm_lets_the_call_in_flight_finish(backend: Backend) {
    let Some((db, url)) = TestDb::create(backend).await else {
        return;
    };
    let mut server = ServerProcess::start(
        &url,
        &[
            ("PORTAL_ACCESS_MAX_CONCURRENT_REQUESTS", "1"),
            ("PORTAL_ACCESS_SHUTDOWN_GRACE", "30s"),
        ],
    )
    .await;
    let app = server.client(backend, &url).await;
    let world = world(&app).await;
    let mut health = health_watch(&app).await;
    let mut audit = open_audit_stream(&app, &world).await;
    let first = audit.next().await.unwrap().unwrap();
    assert!(first.event.is_some());

    let lock = WriteLock::hold(&url).await;
    let in_flight = create_user_call(&app, &world, "inflight@acme.example");
    until_overloaded(&app, &world).await;

    server.terminate();
    let next = health.next().await.expect("a status").expect("no error");
    assert_eq!(next.status(), ServingStatus::NotServing);

    // The audit stream ends with UNAVAILABLE and a cursor to resume from.
    let ended = loop {
        match audit.next().await.expect("the stream ends with a status") {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert_eq!(reason(&ended), "SHUTTING_DOWN");
    let info = ended.get_details_error_info().unwrap();
    assert!(!info.metadata["cursor"].is_empty());

    // The process is still there, finishing the call; let it.
    lock.release().await;
    let user = in_flight
        .await
        .unwrap()
        .expect("the in-flight call succeeds");
    let status = server
        .exit_within(Duration::from_secs(30))
        .await
        .expect("the process exits after its last call");
    assert!(status.success(), "exit status {status:?}");
    // The health watch ended rather than hanging.
    let after = tokio::time::timeout(Duration::from_secs(30), health.next())
        .await
        .expect("the health watch ended");
    assert!(
        !matches!(after, Some(Ok(_))),
        "no status after NOT_SERVING: {after:?}"
    );

    // What was acknowledged is there after a restart, with its event.
    let mut again = ServerProcess::start(&url, &[]).await;
    let app = again.client(backend, &url).await;
    let found = get_user(&app, &world.realm.admin_token, &user.user_id).await;
    assert_eq!(found.email, "inflight@acme.example");
    let verified = verify_realm(&app, &world.realm).await;
    assert!(verified.intact, "{verified:?}");
    let events = all_events(&app, &world.realm).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "user.created" && e.target_id == user.user_id),
        "the acknowledged user has its audit event"
    );
    again.terminate();
    again.exit_within(Duration::from_secs(30)).await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_calls_and_ends_streams_sqlite() {
    sigterm_lets_the_call_in_flight_finish(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_calls_and_ends_streams_postgres() {
    sigterm_lets_the_call_in_flight_finish(Backend::Postgres).await;
}

/// A call that never finishes does not keep the process: it exits once
/// the grace period is over, and the unfinished write left nothing behind.
async fn shutdown_is_bounded_by_the_grace_period(backend: Backend) {
    let Some((db, url)) = TestDb::create(backend).await else {
        return;
    };
    let mut server = ServerProcess::start(
        &url,
        &[
            ("PORTAL_ACCESS_MAX_CONCURRENT_REQUESTS", "1"),
            ("PORTAL_ACCESS_SHUTDOWN_GRACE", "2s"),
        ],
    )
    .await;
    let app = server.client(backend, &url).await;
    let world = world(&app).await;
    let users_before = count_rows(&url, "accounts").await;
    let events_before = count_rows(&url, "audit_events").await;

    let lock = WriteLock::hold(&url).await;
    let stuck = create_user_call(&app, &world, "stuck@acme.example");
    until_overloaded(&app, &world).await;
    server.terminate();
    server
        .log_line("shutdown: grace period over; exiting with calls still open")
        .await;
    let status = server
        .exit_within(Duration::from_secs(30))
        .await
        .expect("the process exits though a call hangs");
    assert!(status.success(), "exit status {status:?}");
    let answer = stuck.await.unwrap();
    assert!(answer.is_err(), "the unfinished call was not acknowledged");
    lock.release().await;

    assert_eq!(count_rows(&url, "accounts").await, users_before);
    assert_eq!(count_rows(&url, "audit_events").await, events_before);
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_bounded_by_the_grace_period_sqlite() {
    shutdown_is_bounded_by_the_grace_period(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_is_bounded_by_the_grace_period_postgres() {
    shutdown_is_bounded_by_the_grace_period(Backend::Postgres).await;
}

/// `kill -9` in the middle of mixed writes: after a restart every
/// acknowledged write is there with its audit event, every row has its
/// event, and the hash chain verifies.
async fn kill_9_loses_no_acknowledged_write(backend: Backend) {
    let Some((db, url)) = TestDb::create(backend).await else {
        return;
    };
    let mut server = ServerProcess::start(&url, &[]).await;
    let app = server.client(backend, &url).await;
    let world = world(&app).await;

    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let mut writers = Vec::new();
    for writer in 0..4 {
        let mut admins = app.admins();
        let mut portals = app.portals();
        let world_realm = world.realm.clone();
        let sub_a = world.sub_a.clone();
        let acked = acked_tx.clone();
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let written = if n % 2 == 0 {
                    admins
                        .create_user(with_token(
                            learner_request(
                                &sub_a,
                                &format!("w{writer}-{n}@acme.example"),
                                "Writer",
                            ),
                            &world_realm.admin_token,
                        ))
                        .await
                        .map(|r| ("user.created", r.into_inner().user.unwrap().user_id))
                } else {
                    portals
                        .create_sub_portal(with_token(
                            pb::CreateSubPortalRequest {
                                request_id: String::new(),
                                realm_id: world_realm.realm_id.clone(),
                                name: format!("Writer {writer} {n}"),
                                subdomain: format!("w{writer}-{n}"),
                            },
                            &world_realm.admin_token,
                        ))
                        .await
                        .map(|r| ("portal.created", r.into_inner().portal.unwrap().portal_id))
                };
                match written {
                    Ok((action, id)) => {
                        if acked.send((action.to_owned(), id)).is_err() {
                            return;
                        }
                    }
                    // The process died under this call: it may or may not
                    // have committed, and was not acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    drop(acked_tx);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 120 {
        acknowledged.push(acked_rx.recv().await.expect("writes acknowledged"));
    }
    server.kill_hard().await;
    for writer in writers {
        writer.await.unwrap();
    }
    while let Ok(more) = acked_rx.try_recv() {
        acknowledged.push(more);
    }

    let mut again = ServerProcess::start(&url, &[]).await;
    let app = again.client(backend, &url).await;
    let events = all_events(&app, &world.realm).await;
    let recorded: BTreeSet<(String, String)> = events
        .iter()
        .map(|e| (e.action.clone(), e.target_id.clone()))
        .collect();
    for (action, id) in &acknowledged {
        assert!(
            recorded.contains(&(action.clone(), id.clone())),
            "acknowledged {action} {id} has its event"
        );
    }
    // Every row that committed has its event: nothing committed half.
    // (The realm's first admin and top-level portal came with the realm.)
    let targets: BTreeSet<String> = events.iter().map(|e| e.target_id.clone()).collect();
    for id in ids(&url, "accounts").await {
        assert!(
            id == world.realm.admin_id || targets.contains(&id),
            "account {id} has an event"
        );
    }
    for id in ids(&url, "portals").await {
        assert!(
            id == world.realm.top_portal_id || targets.contains(&id),
            "portal {id} has an event"
        );
    }
    let verified = verify_realm(&app, &world.realm).await;
    assert!(verified.intact, "{verified:?}");
    again.terminate();
    again.exit_within(Duration::from_secs(30)).await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_acknowledged_write_sqlite() {
    kill_9_loses_no_acknowledged_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_loses_no_acknowledged_write_postgres() {
    kill_9_loses_no_acknowledged_write(Backend::Postgres).await;
}

/// The ids of a table's rows.
pub async fn ids(url: &str, table: &str) -> Vec<String> {
    let db = Database::connect(url).await.expect("connect");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id FROM {table}"),
        ))
        .await
        .unwrap();
    let ids = rows
        .iter()
        .map(|row| row.try_get_by_index::<uuid::Uuid>(0).unwrap().to_string())
        .collect();
    db.close().await.ok();
    ids
}

pub async fn verify_realm(app: &TestApp, realm: &RealmFixture) -> pb::VerifyAuditLogResponse {
    app.support()
        .verify_audit_log(with_token(
            pb::VerifyAuditLogRequest {
                realm_id: realm.realm_id.clone(),
            },
            &realm.admin_token,
        ))
        .await
        .expect("verify")
        .into_inner()
}

/// Every event of a realm, replayed through the stream until it has
/// caught up with the table.
pub async fn all_events(app: &TestApp, realm: &RealmFixture) -> Vec<pb::AuditEvent> {
    let total = app.count("audit_events").await as usize;
    let mut stream = app
        .support()
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm.realm_id.clone(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(pb::stream_audit_events_request::Start::FromBeginning(true)),
            },
            &realm.admin_token,
        ))
        .await
        .expect("stream")
        .into_inner();
    let mut events = Vec::new();
    while events.len() < total {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("replay keeps coming")
            .expect("stream open")
            .expect("no error");
        events.extend(next.event);
    }
    events
}
