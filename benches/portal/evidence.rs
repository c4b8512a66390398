//! Evidence at scale (SPEC §8, E): a realm's log grown to a million events
//! (written straight into the tables, leaves and subtree hashes computed
//! here with the crate's own tree code, as the server would have), with one
//! support session of ten thousand of them; then proof latency and the
//! export of that session, through the release server.

use std::time::Instant;

use portal_access::domain::leaf::LeafEvent;
use portal_access::domain::merkle::{self, Hash};
use portal_access::proto::v1 as pb;
use portal_access::proto::v1::support_access_service_client::SupportAccessServiceClient;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::seed::{Realm, with_token};
use crate::server::Backend;

/// Rows per INSERT statement.
const CHUNK: usize = 500;

fn uuid_literal(backend: Backend, id: Uuid) -> String {
    match backend {
        Backend::Postgres => format!("'{id}'::uuid"),
        Backend::Sqlite => format!("X'{}'", id.simple()),
    }
}

async fn one_i64(db: &DatabaseConnection, sql: &str) -> Option<i64> {
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap()
    .and_then(|row| row.try_get_by_index::<Option<i64>>(0).unwrap())
}

/// Appends `events` synthetic events to the realm's log, the last
/// `session_len` of them belonging to `session` (an access request of the
/// realm), leaves and tree included. Returns the seconds it took.
pub async fn seed_log(
    backend: Backend,
    url: &str,
    realm: &Realm,
    events: u64,
    session: Uuid,
    session_len: u64,
) -> f64 {
    let started = Instant::now();
    let db = Database::connect(url).await.expect("connect for seeding");
    let realm_id: Uuid = realm.realm_id.parse().unwrap();
    let r = uuid_literal(backend, realm_id);
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT tree_size, tree_border FROM realms WHERE id = {r}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let mut size = row.try_get_by_index::<i64>(0).unwrap() as u64;
    let border_text: String = row.try_get_by_index(1).unwrap();
    let mut border: Vec<Hash> = hex::decode(border_text)
        .unwrap()
        .chunks(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    let first_sequence = one_i64(&db, "SELECT last_sequence FROM audit_head WHERE id = 1")
        .await
        .unwrap()
        + 1;
    let mut previous = one_i64(
        &db,
        &format!(
            "SELECT last_leaf FROM access_requests WHERE id = {}",
            uuid_literal(backend, session)
        ),
    )
    .await
    .map(|l| l as u64);
    let session_from = events.saturating_sub(session_len);
    let base_micros = chrono::Utc::now().timestamp_micros();
    let mut done = 0u64;
    // One transaction on one connection (the pool would scatter BEGIN,
    // the inserts and COMMIT over several).
    let tx = db.begin().await.unwrap();
    while done < events {
        let n = (events - done).min(CHUNK as u64);
        let mut rows = Vec::with_capacity(n as usize);
        let mut hashes = Vec::with_capacity(n as usize);
        for i in done..done + n {
            let leaf_index = size + (i - done);
            let in_session = i >= session_from;
            let leaf = LeafEvent {
                realm_id,
                leaf_index,
                event_id: Uuid::from_u128(
                    0xbe00_0000_0000_7000_8000_0000_0000_0000 | u128::from(i),
                ),
                occurred_at_micros: base_micros + i as i64,
                portal_id: None,
                category: "security".into(),
                action: "bench.event".into(),
                actor_kind: "system".into(),
                actor_id: String::new(),
                actor_agent_id: None,
                actor_agent_name: None,
                target_type: "bench".into(),
                target_id: i.to_string(),
                details: Default::default(),
                access_request_id: in_session.then_some(session),
                previous_request_leaf: if in_session { previous } else { None },
            };
            if in_session {
                previous = Some(leaf_index);
            }
            hashes.push(leaf.leaf_hash());
            rows.push(format!(
                "({seq}, {id}, {r}, NULL, 'security', 'bench.event', 'system', '', NULL, NULL, \
                 'bench', '{i}', '{{}}', {at}, '', '', {leaf_index}, {session}, {prev})",
                seq = first_sequence + i as i64,
                id = uuid_literal(backend, leaf.event_id),
                at = leaf.occurred_at_micros,
                session = leaf
                    .access_request_id
                    .map_or("NULL".into(), |s| uuid_literal(backend, s)),
                prev = leaf
                    .previous_request_leaf
                    .map_or("NULL".into(), |p| p.to_string()),
            ));
        }
        tx.execute_unprepared(&format!(
            "INSERT INTO audit_events (sequence, id, realm_id, portal_id, category, action, \
             actor_kind, actor_id, agent_id, agent_name, target_type, target_id, details, \
             occurred_at, prev_hash, hash, leaf_index, access_request_id, previous_request_leaf) \
             VALUES {}",
            rows.join(", ")
        ))
        .await
        .unwrap();
        let appended = merkle::append(size, &border, &hashes).unwrap();
        for nodes in appended.stored.chunks(CHUNK) {
            let values: Vec<String> = nodes
                .iter()
                .map(|(id, hash)| format!("({r}, {}, '{}')", id.key(), hex::encode(hash)))
                .collect();
            tx.execute_unprepared(&format!(
                "INSERT INTO audit_tree_nodes (realm_id, node, hash) VALUES {}",
                values.join(", ")
            ))
            .await
            .unwrap();
        }
        size = appended.size;
        border = appended.border;
        done += n;
    }
    let border_text: String = border.iter().map(hex::encode).collect();
    for sql in [
        format!(
            "UPDATE realms SET tree_size = {size}, tree_border = '{border_text}' WHERE id = {r}"
        ),
        format!(
            "UPDATE audit_head SET last_sequence = {} WHERE id = 1",
            first_sequence + events as i64 - 1
        ),
        format!(
            "UPDATE access_requests SET last_leaf = {} WHERE id = {}",
            previous.unwrap(),
            uuid_literal(backend, session)
        ),
    ] {
        tx.execute_unprepared(&sql).await.unwrap();
    }
    tx.commit().await.unwrap();
    if backend == Backend::Postgres {
        db.execute_unprepared("ANALYZE").await.unwrap();
    }
    db.close().await.ok();
    started.elapsed().as_secs_f64()
}

/// p50 and p99 of `times` (milliseconds).
fn percentiles(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Inclusion and consistency proofs of random positions, one call at a
/// time: (inclusion p50, p99, consistency p50, p99) in ms.
pub async fn proof_latency(
    channel: &Channel,
    token: &str,
    realm: &Realm,
    calls: usize,
) -> (f64, f64, f64, f64, u64) {
    let mut support = SupportAccessServiceClient::new(channel.clone());
    let size = support
        .get_log_checkpoint(with_token(
            pb::GetLogCheckpointRequest {
                realm_id: realm.realm_id.clone(),
            },
            token,
        ))
        .await
        .expect("checkpoint")
        .into_inner()
        .tree_size;
    let mut inclusion = Vec::with_capacity(calls);
    let mut consistency = Vec::with_capacity(calls);
    for _ in 0..calls {
        let index = rand::random_range(0..size);
        let started = Instant::now();
        support
            .get_inclusion_proof(with_token(
                pb::GetInclusionProofRequest {
                    realm_id: realm.realm_id.clone(),
                    leaf_index: index,
                    tree_size: size,
                },
                token,
            ))
            .await
            .expect("inclusion proof");
        inclusion.push(started.elapsed().as_secs_f64() * 1000.0);
        let old = rand::random_range(1..=size);
        let started = Instant::now();
        support
            .get_consistency_proof(with_token(
                pb::GetConsistencyProofRequest {
                    realm_id: realm.realm_id.clone(),
                    old_size: old,
                    new_size: size,
                },
                token,
            ))
            .await
            .expect("consistency proof");
        consistency.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (i50, i99) = percentiles(inclusion);
    let (c50, c99) = percentiles(consistency);
    (i50, i99, c50, c99, size as u64)
}

/// ExportAccessEvidence of the session, `rounds` times: (median ms, events
/// in the bundle, bundle bytes).
pub async fn export_time(
    channel: &Channel,
    token: &str,
    session: Uuid,
    rounds: usize,
) -> (f64, usize, usize) {
    let mut support = SupportAccessServiceClient::new(channel.clone())
        .max_decoding_message_size(64 * 1024 * 1024);
    let mut times = Vec::with_capacity(rounds);
    let mut shape = (0, 0);
    for _ in 0..rounds {
        let started = Instant::now();
        let bundle = support
            .export_access_evidence(with_token(
                pb::ExportAccessEvidenceRequest {
                    access_request_id: session.to_string(),
                },
                token,
            ))
            .await
            .expect("export")
            .into_inner()
            .bundle_json;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let events = serde_json::from_str::<serde_json::Value>(&bundle).unwrap()["events"]
            .as_array()
            .unwrap()
            .len();
        shape = (events, bundle.len());
    }
    let (median, _) = percentiles(times);
    (median, shape.0, shape.1)
}
