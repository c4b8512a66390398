//! The audit stream and the hash chain (S11, L1-L6), through gRPC.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rand::Rng;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::codec::Streaming;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
use pb::stream_audit_events_request::Start;
use portal_access::proto::v1 as pb;

pub async fn open_stream(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    categories: Vec<pb::AuditCategory>,
    start: Option<Start>,
) -> Result<Streaming<pb::StreamAuditEventsResponse>, tonic::Status> {
    app.support()
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm_id.into(),
                portal_ids: vec![],
                categories: categories.into_iter().map(|c| c as i32).collect(),
                start,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// The next event, past any progress messages (L9).
async fn next_event(stream: &mut Streaming<pb::StreamAuditEventsResponse>) -> pb::AuditEvent {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an event within 30 s")
            .expect("stream open")
            .expect("stream not ended");
        if let Some(event) = message.event {
            return event;
        }
    }
}

/// Every committed event sequence of a realm, from the table.
async fn realm_sequences(app: &TestApp, realm_id: &str) -> Vec<i64> {
    realm_events(app, realm_id)
        .await
        .into_iter()
        .map(|(_, sequence)| sequence)
        .collect()
}

/// The realm's events in the table, as (id, sequence), in log order.
async fn realm_events(app: &TestApp, realm_id: &str) -> Vec<(String, i64)> {
    let filter = portal_access::store::AuditFilter {
        realm_id: Some(realm_id.parse().unwrap()),
        ..Default::default()
    };
    let mut all = Vec::new();
    let mut last = 0;
    loop {
        let page = app
            .services()
            .store()
            .audit_events(
                &filter,
                portal_access::store::EventPosition::After(last),
                1000,
            )
            .await
            .unwrap();
        let Some(tail) = page.last() else { return all };
        last = tail.sequence;
        all.extend(page.iter().map(|e| (e.id.to_string(), e.sequence)));
    }
}

async fn verify(app: &TestApp, token: &str, realm_id: &str) -> pb::VerifyAuditLogResponse {
    app.support()
        .verify_audit_log(with_token(
            pb::VerifyAuditLogRequest {
                realm_id: realm_id.into(),
            },
            token,
        ))
        .await
        .expect("verify")
        .into_inner()
}

fn record_request(
    portal_id: &str,
    temporary_admin_id: &str,
    agent: &Agent,
    n: usize,
) -> pb::RecordSupportActionRequest {
    pb::RecordSupportActionRequest {
        request_id: String::new(),
        portal_id: portal_id.into(),
        temporary_admin_id: temporary_admin_id.into(),
        action: "page.viewed".into(),
        target_type: "page".into(),
        target_id: format!("page-{n}"),
        details: Default::default(),
        agent_id: agent.id.to_string(),
        agent_name: agent.name.clone(),
    }
}

both_databases! {
    async fn l2_replay_and_live_hand_over_lose_nothing_under_concurrent_writers(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let granted = allow(app, &w.realm.admin_token, &request.access_request_id, &[&w.sub_a], hours(8)).await.unwrap().remove(0);
        let recorder = app.service(&["support_actions.record"]);
        let reader = app.service(&["audit.read"]);
        let (done_tx, done_rx) = tokio::sync::watch::channel(None::<i64>);

        const WRITERS: usize = 4;
        const PER_WRITER: usize = 500;
        let mut writers = JoinSet::new();
        for writer in 0..WRITERS {
            let mut client = app.support();
            let (token, portal, temp, agent) = (recorder.clone(), w.sub_a.clone(), granted.temporary_admin_id.clone(), ana.clone());
            writers.spawn(async move {
                let mut answered = Vec::new();
                for n in 0..PER_WRITER {
                    let event = client.record_support_action(with_token(record_request(&portal, &temp, &agent, writer * PER_WRITER + n), &token))
                        .await
                        .expect("record")
                        .into_inner()
                        .event
                        .expect("the recorded event");
                    answered.push((event.event_id, event.sequence));
                }
                answered
            });
        }
        let mut subscribers = JoinSet::new();
        for _ in 0..3 {
            let app_channel = app.support();
            let (token, realm) = (reader.clone(), w.realm.realm_id.clone());
            let mut done = done_rx.clone();
            subscribers.spawn(async move {
                let mut received: Vec<i64> = Vec::new();
                let mut cursor: Option<String> = None;
                let mut reconnects = 0;
                loop {
                    let start = match &cursor {
                        Some(c) => Start::AfterCursor(c.clone()),
                        None => Start::FromBeginning(true),
                    };
                    let mut stream = app_channel.clone().stream_audit_events(with_token(
                        pb::StreamAuditEventsRequest { realm_id: realm.clone(), portal_ids: vec![], categories: vec![], start: Some(start) },
                        &token,
                    )).await.expect("open").into_inner();
                    let take = rand::rng().random_range(1..250);
                    for _ in 0..take {
                        let target = *done.borrow_and_update();
                        if target.is_some_and(|t| received.last() == Some(&t)) {
                            return (received, reconnects);
                        }
                        let message = tokio::select! {
                            m = stream.message() => m.expect("stream ok").expect("stream open"),
                            _ = done.changed() => continue,
                        };
                        let Some(event) = message.event else { continue };
                        received.push(event.sequence);
                        cursor = Some(event.cursor);
                    }
                    reconnects += 1;
                }
            });
        }
        let mut answered = Vec::new();
        while let Some(w) = writers.join_next().await { answered.extend(w.unwrap()); }
        // Each call answered with the place its event has in the log.
        let table: std::collections::HashMap<String, i64> = realm_events(app, &w.realm.realm_id).await.into_iter().collect();
        for (id, sequence) in &answered {
            assert_eq!(table.get(id), Some(sequence), "event {id} was answered with its sequence");
        }
        let expected = realm_sequences(app, &w.realm.realm_id).await;
        done_tx.send_replace(expected.last().copied());
        let expected_set: HashSet<i64> = expected.iter().copied().collect();
        while let Some(result) = subscribers.join_next().await {
            let (received, reconnects) = result.unwrap();
            let unique: HashSet<i64> = received.iter().copied().collect();
            let gaps = expected_set.difference(&unique).count();
            let duplicates = received.len() - unique.len();
            let out_of_order = received.windows(2).filter(|p| p[0] >= p[1]).count();
            let foreign = unique.difference(&expected_set).count();
            println!(
                "subscriber: {} events over {} reconnects: {gaps} gaps, {duplicates} duplicates, {out_of_order} out of order, {foreign} foreign",
                received.len(), reconnects
            );
            assert_eq!((gaps, duplicates, out_of_order, foreign), (0, 0, 0, 0));
            assert_eq!(received, expected);
        }
        assert!(expected.len() >= WRITERS * PER_WRITER);
    }
}

both_databases! {
    async fn s11_stream_emits_support_session_and_security_events_with_filters(app) {
        let w = world(app).await;
        let reader = app.service(&["audit.read"]);
        let mut security = open_stream(app, &reader, &w.realm.realm_id, vec![pb::AuditCategory::Security], Some(Start::FromBeginning(true))).await.unwrap();
        let mut session = open_stream(app, &reader, &w.realm.realm_id, vec![pb::AuditCategory::SupportSession], None).await.unwrap();
        // Replay: the realm's creation and sub-portals are security events.
        let first = next_event(&mut security).await;
        assert_eq!(first.action, "realm.created");
        // Live: a support request, then an admin change.
        let ana = agent(app, "Ana Support");
        request_access(app, &ana, &w.realm.realm_id).await;
        person(app, &w, &w.sub_a, "sub@acme.example", pb::UserType::Admin, Some(false)).await;
        let requested = next_event(&mut session).await;
        assert_eq!(requested.action, "support_access.requested");
        assert_eq!(requested.actor.unwrap().agent_name, "Ana Support");
        loop {
            let event = next_event(&mut security).await;
            assert_eq!(event.category, pb::AuditCategory::Security as i32, "{}", event.action);
            if event.action == "admin.created" { break; }
        }
        // L3: a limited admin, a sub-portal admin or another realm's admin cannot read it.
        let limited = person(app, &w, &w.realm.top_portal_id, "lim@acme.example", pb::UserType::Admin, Some(false)).await;
        assert_error(open_stream(app, &limited.token, &w.realm.realm_id, vec![], None).await, Code::PermissionDenied, "SETTINGS_ACCESS_REQUIRED");
        let other = app.create_realm("other").await;
        assert_error(open_stream(app, &other.admin_token, &w.realm.realm_id, vec![], None).await, Code::NotFound, "REALM_NOT_FOUND");
        assert_error(open_stream(app, &w.realm.admin_token, "", vec![], None).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_error(open_stream(app, &app.service(&["permissions.check"]), "", vec![], None).await, Code::PermissionDenied, "MISSING_SCOPE");
        let status = assert_error(
            open_stream(app, &reader, "", vec![], Some(Start::AfterCursor("forged".into()))).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(bad_fields(&status), vec!["after_cursor"]);
        // The full admin of the realm may.
        let mut own = open_stream(app, &w.realm.admin_token, &w.realm.realm_id, vec![], Some(Start::FromBeginning(true))).await.unwrap();
        assert_eq!(next_event(&mut own).await.action, "realm.created");
    }
}

both_databases! {
    async fn l6_verify_names_the_first_broken_link_after_tampering(app) {
        let db = app.database().await;
        let backend = db.get_database_backend();
        let exec = |sql: String| {
            let db = &db;
            async move { db.execute_raw(Statement::from_string(backend, sql)).await.unwrap(); }
        };
        let mut realms = Vec::new();
        for name in ["edit", "gone", "swap", "tail"] {
            let w = world_named(app, name).await;
            person(app, &w, &w.sub_a, &format!("x@{name}.example"), pb::UserType::Admin, Some(false)).await;
            let intact = verify(app, &w.realm.admin_token, &w.realm.realm_id).await;
            assert!(intact.intact, "{intact:?}");
            let sequences = realm_sequences(app, &w.realm.realm_id).await;
            assert_eq!(intact.event_count, sequences.len() as i64);
            realms.push((w, sequences));
        }
        let auditor = app.service(&["audit.read"]);
        // Edited details.
        let (w, seqs) = &realms[0];
        exec(format!("UPDATE audit_events SET details = '{{\"forged\":\"yes\"}}' WHERE sequence = {}", seqs[1])).await;
        let v = verify(app, &auditor, &w.realm.realm_id).await;
        assert!(!v.intact);
        let link = v.first_broken_link.unwrap();
        assert_eq!(link.sequence, seqs[1]);
        assert_ne!(link.expected_hash, link.found_hash);
        // A deleted event: its successor's link breaks.
        let (w, seqs) = &realms[1];
        exec(format!("DELETE FROM audit_events WHERE sequence = {}", seqs[1])).await;
        assert_eq!(verify(app, &auditor, &w.realm.realm_id).await.first_broken_link.unwrap().sequence, seqs[2]);
        // Two events swapped.
        let (w, seqs) = &realms[2];
        exec(format!("UPDATE audit_events SET sequence = -1 WHERE sequence = {}", seqs[1])).await;
        exec(format!("UPDATE audit_events SET sequence = {} WHERE sequence = {}", seqs[1], seqs[2])).await;
        exec(format!("UPDATE audit_events SET sequence = {} WHERE sequence = -1", seqs[2])).await;
        assert_eq!(verify(app, &auditor, &w.realm.realm_id).await.first_broken_link.unwrap().sequence, seqs[1]);
        // The last event deleted: the recorded head no longer matches.
        let (w, seqs) = &realms[3];
        exec(format!("DELETE FROM audit_events WHERE sequence = {}", seqs[seqs.len() - 1])).await;
        let v = verify(app, &auditor, &w.realm.realm_id).await;
        assert!(!v.intact, "{v:?}");
        // The other realms' chains are untouched by all this.
        let clean = world_named(app, "clean").await;
        assert!(verify(app, &auditor, &clean.realm.realm_id).await.intact);
        db.close().await.ok();
    }
}

/// L4: a subscriber that takes nothing is ended with RESOURCE_EXHAUSTED and
/// the cursor of the last event it was given; resuming from it loses nothing.
async fn slow_subscriber_is_ended_with_its_cursor(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| {
        c.stream_buffer = 4;
        c.stream_stall_timeout = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let realm = app.create_realm("slow").await;
    let mut portals = vec![realm.top_portal_id.clone()];
    for i in 0..150 {
        portals.push(
            app.create_sub_portal(&realm, &format!("slow-{i}"))
                .await
                .portal_id,
        );
    }
    let ana = agent(&app, "Ana Support");
    let request = request_access(&app, &ana, &realm.realm_id).await;
    let ids: Vec<&str> = portals.iter().map(String::as_str).collect();
    allow(
        &app,
        &realm.admin_token,
        &request.access_request_id,
        &ids,
        hours(1),
    )
    .await
    .unwrap();
    let expected = realm_sequences(&app, &realm.realm_id).await;

    // A client with small HTTP/2 windows, so flow control pushes back on
    // the server after a few dozen events instead of a few megabytes.
    let small = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .connect()
        .await
        .unwrap();
    let mut stream = pb::support_access_service_client::SupportAccessServiceClient::new(small)
        .stream_audit_events(with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm.realm_id.clone(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(Start::FromBeginning(true)),
            },
            &realm.admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    // The slow client: it reads nothing for a while (this pause is the
    // scenario under test, not a wait for the server).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut received = Vec::new();
    let mut last_cursor = String::new();
    let status = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                let Some(e) = m.event else { continue };
                received.push(e.sequence);
                last_cursor = e.cursor;
            }
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    println!(
        "slow subscriber: given {} of {} events before RESOURCE_EXHAUSTED",
        received.len(),
        expected.len()
    );
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason(&status), "SUBSCRIBER_TOO_SLOW");
    assert!(
        received.len() < expected.len(),
        "the test must overflow the stream"
    );
    let info = tonic_types::StatusExt::get_details_error_info(&status).unwrap();
    assert_eq!(info.metadata["cursor"], last_cursor);
    // Resume: the rest, with no gap and no duplicate.
    let mut resumed = open_stream(
        &app,
        &realm.admin_token,
        &realm.realm_id,
        vec![],
        Some(Start::AfterCursor(last_cursor)),
    )
    .await
    .unwrap();
    while received.len() < expected.len() {
        received.push(next_event(&mut resumed).await.sequence);
    }
    assert_eq!(received, expected);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_slow_subscriber_is_ended_with_its_cursor_sqlite() {
    slow_subscriber_is_ended_with_its_cursor(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_slow_subscriber_is_ended_with_its_cursor_postgres() {
    slow_subscriber_is_ended_with_its_cursor(Backend::Postgres).await;
}

/// L5: an event committed through replica A reaches a stream on replica B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l5_event_through_one_replica_reaches_a_stream_on_another_postgres() {
    let Some(a) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let mut b = start_server(test_config(&a.database_url), Backend::Postgres).await;
    let realm = a.create_realm("replicas").await;
    let reader = b.service(&["audit.read"]);
    let mut stream = open_stream(&b, &reader, &realm.realm_id, vec![], None)
        .await
        .unwrap();
    let ana = agent(&a, "Ana Support");
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let sent = Instant::now();
        request_access(&a, &ana, &realm.realm_id).await;
        let event = next_event(&mut stream).await;
        latencies.push(sent.elapsed());
        assert_eq!(event.action, "support_access.requested");
    }
    println!("A → B delivery (commit included): {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "L5: within 1 s: {latencies:?}"
    );
    b.shut_down().await;
    a.stop().await;
}

/// L2: on PostgreSQL, a transaction that took sequence N and has not yet
/// committed holds every later audited commit back, so a reader can never
/// pass N before N is visible: the event is delivered, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_late_commit_is_delivered_in_order_postgres() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let realm = app.create_realm("late").await;
    let other = app.create_realm("later").await;
    let reader = app.service(&["audit.read"]);
    let mut stream = open_stream(&app, &reader, "", vec![], None).await.unwrap();

    // Transaction T1 takes sequence N, writes its event, and stays open.
    let db = app.database().await;
    let t1 = db.begin().await.unwrap();
    let pg = sea_orm::DbBackend::Postgres;
    let n: i64 = t1
        .query_one_raw(Statement::from_string(pg, "UPDATE audit_head SET last_sequence = last_sequence + 1 WHERE id = 1 RETURNING last_sequence"))
        .await.unwrap().unwrap().try_get_by_index(0).unwrap();
    let head: String = t1
        .query_one_raw(Statement::from_string(
            pg,
            format!(
                "SELECT audit_head_hash FROM realms WHERE id = '{}'",
                realm.realm_id
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    let mut event = portal_access::domain::audit::AuditEvent {
        sequence: n,
        id: uuid::Uuid::now_v7(),
        occurred_at: chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros())
            .unwrap(),
        realm_id: realm.realm_id.parse().unwrap(),
        portal_id: None,
        category: portal_access::domain::audit::AuditCategory::Security,
        action: "test.late_commit".into(),
        actor: portal_access::domain::audit::Actor::system(),
        target_type: "test".into(),
        target_id: "t1".into(),
        details: Default::default(),
        prev_hash: head.clone(),
        hash: String::new(),
        // Written the way a release without the evidence tree writes: the
        // next append adds it to the realm's tree.
        leaf: None,
        chain_form: Default::default(),
    };
    event.hash = event.expected_hash(&head);
    t1.execute_raw(Statement::from_string(pg, format!(
        "INSERT INTO audit_events (sequence, id, realm_id, portal_id, category, action, actor_kind, actor_id, agent_id, agent_name, \
         target_type, target_id, details, occurred_at, prev_hash, hash) VALUES ({n}, '{}', '{}', NULL, 'security', 'test.late_commit', \
         'system', '', NULL, NULL, 'test', 't1', '{{}}', {}, '{}', '{}')",
        event.id, realm.realm_id, event.occurred_at.timestamp_micros(), event.prev_hash, event.hash,
    ))).await.unwrap();
    t1.execute_raw(Statement::from_string(
        pg,
        format!(
            "UPDATE realms SET audit_head_hash = '{}' WHERE id = '{}'",
            event.hash, realm.realm_id,
        ),
    ))
    .await
    .unwrap();

    // T2, a later audited change through the API, must wait for T1.
    let ana = agent(&app, "Ana Support");
    let mut client = app.support();
    let t2_request = with_token(
        pb::RequestAccessRequest {
            request_id: String::new(),
            realm_id: other.realm_id.clone(),
            reason: "later".into(),
            ticket_reference: String::new(),
            ..Default::default()
        },
        &ana.token,
    );
    let t2 = tokio::spawn(async move { client.request_access(t2_request).await });
    let probe = app.database().await;
    loop {
        let waiting: i64 = probe
            .query_one_raw(Statement::from_string(
                pg,
                "SELECT COUNT(*) FROM pg_locks WHERE NOT granted",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!t2.is_finished(), "T2 committed while T1 held sequence {n}");
    t1.commit().await.unwrap();
    t2.await.unwrap().expect("T2 commits after T1");

    let first = next_event(&mut stream).await;
    let second = next_event(&mut stream).await;
    assert_eq!(
        (first.sequence, first.action.as_str()),
        (n, "test.late_commit")
    );
    assert_eq!(second.sequence, n + 1);
    assert_eq!(second.action, "support_access.requested");
    assert!(verify(&app, &reader, &realm.realm_id).await.intact);
    probe.close().await.ok();
    db.close().await.ok();
    app.stop().await;
}

both_databases! {
    async fn l1_every_change_records_its_events_and_a_refused_change_none(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let admin = w.realm.admin_token.clone();
        let actions_since = |before: i64| async move {
            let db = app.database().await;
            let rows = db.query_all_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT action FROM audit_events WHERE sequence > {before} ORDER BY sequence"),
            )).await.unwrap();
            db.close().await.ok();
            rows.iter().map(|r| r.try_get_by_index::<String>(0).unwrap()).collect::<Vec<_>>()
        };
        let head = || async { app.services().store().last_audit_sequence().await.unwrap() };

        let h = head().await;
        let bo = create_user(app, &admin, &w.sub_a, "bo@acme.example", pb::UserType::Admin, Some(false)).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["admin.created"]);
        let h = head().await;
        set_type(app, &admin, &bo.user_id, &w.sub_b, pb::UserType::Learner, None).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["user.type_changed"]);
        let h = head().await;
        set_settings(app, &admin, &bo.user_id, true).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["admin.settings_access_changed"]);
        let h = head().await;
        remove_from(app, &admin, &bo.user_id, &w.sub_b).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["user.removed_from_portal"]);
        let h = head().await;
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        assert_eq!(actions_since(h).await, vec!["support_access.requested"]);
        let h = head().await;
        allow(app, &admin, &request.access_request_id, &[&w.sub_a], hours(1)).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["support_access.allowed", "support_access.temporary_admin_created"]);
        let h = head().await;
        revoke(app, &admin, &w.realm.realm_id, &[&w.sub_a]).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["support_access.revoked", "support_access.temporary_admin_deleted"]);
        let h = head().await;
        delete(app, &admin, &bo.user_id).await.unwrap();
        assert_eq!(actions_since(h).await, vec!["user.deleted"]);

        // Refused changes record nothing (every refusing route: refusals.rs).
        let h = head().await;
        assert_error(set_settings(app, &admin, &w.realm.admin_id, false).await, Code::FailedPrecondition, "LAST_ADMIN");
        assert_error(create_user(app, &admin, &w.sub_a, "admin@acme.example", pb::UserType::Admin, None).await, Code::AlreadyExists, "EMAIL_TAKEN");
        assert_error(allow(app, &admin, &request.access_request_id, &[&w.sub_a], hours(1)).await, Code::FailedPrecondition, "ACCESS_REQUEST_NOT_OPEN");
        assert_error(delete(app, &admin, &uuid::Uuid::now_v7().to_string()).await, Code::NotFound, "USER_NOT_FOUND");
        assert_eq!(actions_since(h).await, Vec::<String>::new());
    }
}
