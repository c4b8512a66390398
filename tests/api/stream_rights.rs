//! L8: an audit stream keeps its reader's right for its whole life
//! (demotion, deletion, token expiry; on the same replica and on another);
//! L9: progress messages tell the client where the stream stands.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tonic::Code;
use tonic::Streaming;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use pb::stream_audit_events_request::Start;
use portal_access::proto::v1 as pb;

async fn open(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    start: Start,
) -> Result<Streaming<pb::StreamAuditEventsResponse>, tonic::Status> {
    app.support()
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm_id.into(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(start),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// Reads until the first progress message: the replay has caught up.
async fn until_caught_up(
    stream: &mut Streaming<pb::StreamAuditEventsResponse>,
) -> (Vec<pb::AuditEvent>, pb::StreamProgress) {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("a message within 30 s")
            .expect("stream open")
            .expect("stream not ended");
        match (message.event, message.progress) {
            (Some(event), None) => events.push(event),
            (None, Some(progress)) => return (events, progress),
            other => panic!("a message carries an event or progress, not {other:?}"),
        }
    }
}

/// Reads until the stream ends with a status; returns the events it still
/// delivered and that status.
async fn until_ended(
    stream: &mut Streaming<pb::StreamAuditEventsResponse>,
) -> (Vec<pb::AuditEvent>, tonic::Status) {
    // One deadline for the whole wait: progress messages keep coming, so a
    // per-message timeout would wait for ever on a stream that never ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("the stream ends within 30 s");
        match next {
            Ok(Some(message)) => events.extend(message.event),
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return (events, status),
        }
    }
}

fn cursor_of(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get("cursor").cloned())
        .unwrap_or_else(|| panic!("no cursor in {status:?}"))
}

/// A second full top-level admin, so the first may demote or delete them.
async fn second_admin(app: &TestApp, world: &World) -> Person {
    person(
        app,
        world,
        &world.realm.top_portal_id,
        "bo@acme.io",
        pb::UserType::Admin,
        Some(true),
    )
    .await
}

/// What happens to Bo, the subscriber.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Demoted,
    Deleted,
}

async fn take_right_away(app: &TestApp, world: &World, bo: &Person, loss: Loss) {
    match loss {
        Loss::Demoted => {
            set_settings(app, &world.realm.admin_token, &bo.id(), false)
                .await
                .expect("settings off");
        }
        Loss::Deleted => {
            delete(app, &world.realm.admin_token, &bo.id())
                .await
                .expect("deleted");
        }
    }
}

fn expected(loss: Loss) -> (Code, &'static str) {
    match loss {
        Loss::Demoted => (Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED"),
        Loss::Deleted => (Code::Unauthenticated, "UNKNOWN_ACCOUNT"),
    }
}

/// Bo streams from `reader`; Ana takes the right away through `writer`,
/// then creates an admin. The stream must end with the right status and a
/// cursor, and never deliver the later `admin.created`.
async fn right_lost_under_an_open_stream(reader: &TestApp, writer: &TestApp, loss: Loss) {
    let world = world_named(writer, &format!("l8-{loss:?}").to_lowercase()).await;
    let bo = second_admin(writer, &world).await;
    let mut stream = open(
        reader,
        &bo.token,
        &world.realm.realm_id,
        Start::FromBeginning(true),
    )
    .await
    .expect("Bo may stream");
    let (replayed, _) = until_caught_up(&mut stream).await;
    assert!(!replayed.is_empty());

    take_right_away(writer, &world, &bo, loss).await;
    let changed_at = Instant::now();
    person(
        writer,
        &world,
        &world.sub_a,
        "later@acme.io",
        pb::UserType::Admin,
        Some(false),
    )
    .await;

    let (delivered, status) = until_ended(&mut stream).await;
    let ended_after = changed_at.elapsed();
    let (code, reason_text) = expected(loss);
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), reason_text);
    assert!(
        delivered.iter().all(|e| e.action != "admin.created"),
        "an event committed after the loss was delivered: {delivered:?}"
    );
    eprintln!("L8 {loss:?}: stream ended {ended_after:?} after the change");
    // The cursor resumes, for whoever still has the right.
    let cursor = cursor_of(&status);
    let mut resumed = open(
        writer,
        &world.realm.admin_token,
        &world.realm.realm_id,
        Start::AfterCursor(cursor),
    )
    .await
    .expect("the cursor is valid");
    let (after, _) = until_caught_up(&mut resumed).await;
    assert!(after.iter().any(|e| e.action == "admin.created"));
}

both_databases! {
    async fn l8_a_demoted_subscriber_s_stream_ends(app) {
        right_lost_under_an_open_stream(app, app, Loss::Demoted).await;
    }
}

both_databases! {
    async fn l8_a_deleted_subscriber_s_stream_ends(app) {
        right_lost_under_an_open_stream(app, app, Loss::Deleted).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l8_a_stream_on_another_replica_ends_within_the_cache_bound() {
    let Some(a) = spawn_app(Backend::Postgres).await else {
        eprintln!("skipped: {POSTGRES_ENV} is not set");
        return;
    };
    let b = start_server(test_config(&a.database_url), Backend::Postgres).await;
    for loss in [Loss::Demoted, Loss::Deleted] {
        right_lost_under_an_open_stream(&b, &a, loss).await;
    }
    token_expires_under_an_open_stream(&a, &b, "l8-exp-b").await;
    b.stop().await;
    a.stop().await;
}

/// A stream opened on `reader` with a token two seconds from its `exp`
/// ends when it expires, with the cursor.
async fn token_expires_under_an_open_stream(writer: &TestApp, reader: &TestApp, name: &str) {
    let world = world_named(writer, name).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = writer.claims("account", world.realm.admin_id.parse().unwrap());
    claims.realm = Some(world.realm.realm_id.clone());
    claims.channel = Some("interactive".into());
    claims.exp = now + 2;
    let expires = UNIX_EPOCH + Duration::from_secs(claims.exp);
    let mut stream = open(
        reader,
        &writer.sign(&claims),
        &world.realm.realm_id,
        Start::FromBeginning(true),
    )
    .await
    .expect("valid for two more seconds");
    until_caught_up(&mut stream).await;
    let (_, status) = until_ended(&mut stream).await;
    assert!(
        SystemTime::now() >= expires,
        "ended before the token expired"
    );
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "TOKEN_EXPIRED");
    cursor_of(&status);
}

both_databases! {
    async fn l8_a_stream_ends_when_its_token_expires(app) {
        token_expires_under_an_open_stream(app, app, "l8-exp").await;
    }
}

both_databases! {
    async fn l8_a_portal_filter_the_subscriber_cannot_see_is_not_found(app) {
        let world = world(app).await;
        let other = world_named(app, "other").await;
        for portal_id in [other.sub_a.clone(), Uuid::new_v4().to_string()] {
            let opened = app
                .support()
                .stream_audit_events(with_token(
                    pb::StreamAuditEventsRequest {
                        realm_id: world.realm.realm_id.clone(),
                        portal_ids: vec![world.sub_a.clone(), portal_id],
                        categories: vec![],
                        start: Some(Start::FromBeginning(true)),
                    },
                    &world.realm.admin_token,
                ))
                .await;
            assert_error(opened, Code::NotFound, "PORTAL_NOT_FOUND");
        }
    }
}

both_databases! {
    async fn l9_progress_when_caught_up_and_while_idle(app) {
        let world = world(app).await;
        let mut stream = open(app, &world.realm.admin_token, &world.realm.realm_id, Start::FromBeginning(true))
            .await
            .unwrap();
        let (events, progress) = until_caught_up(&mut stream).await;
        let last = events.last().expect("the realm has events");
        assert!(progress.sequence >= last.sequence);
        // Idle: another progress message comes without any event (the test
        // server sends one every 200 ms).
        let (idle_events, idle) = until_caught_up(&mut stream).await;
        assert!(idle_events.is_empty());
        assert_eq!(idle.sequence, progress.sequence);
        // Resuming from the progress cursor gives exactly what came after.
        person(app, &world, &world.sub_a, "new@acme.io", pb::UserType::Learner, None).await;
        let mut resumed = open(app, &world.realm.admin_token, &world.realm.realm_id, Start::AfterCursor(progress.cursor))
            .await
            .expect("a progress cursor resumes");
        let (after, _) = until_caught_up(&mut resumed).await;
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(after[0].action, "user.created");
        assert!(after[0].sequence > progress.sequence);
    }
}

both_databases! {
    async fn l9_a_stream_from_now_says_at_once_that_it_is_live(app) {
        let world = world(app).await;
        let mut stream = app
            .support()
            .stream_audit_events(with_token(
                pb::StreamAuditEventsRequest {
                    realm_id: world.realm.realm_id.clone(),
                    ..Default::default()
                },
                &world.realm.admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        let (events, _) = until_caught_up(&mut stream).await;
        assert!(events.is_empty(), "nothing is replayed from now");
    }
}
