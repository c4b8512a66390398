//! The append-only audit log (L1, L2, L6).
//!
//! Per realm, order is decided under the realm's lock: the hash chain, the
//! evidence tree and (on PostgreSQL) the write order of placeholders.
//!
//! The platform-wide `sequence` (L2) is given in one of two ways:
//! - **at commit** (SQLite, and PostgreSQL when configured so for a
//!   rolling update from v0.2.0): the transaction takes the single
//!   `audit_head` row last and keeps it until it commits, so sequences
//!   follow commit order and no transaction commits 41 after another
//!   committed 42 (the outbox trap). SQLite has one writer anyway.
//! - **after commit** (PostgreSQL, W1): the transaction takes no row that
//!   every audited transaction takes; its events commit with placeholders
//!   and a numbering round numbers them (`sequencer`). Their chain hashes
//!   use the form without the sequence.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};
use uuid::Uuid;

use super::entity::{audit_event, realm};
use super::errors::db_error;
use super::json_rows::JsonRows;
use super::sequencer;
use super::tree::{self, RealmLog};
use super::{Backend, raw};
use crate::domain::audit::{
    Actor, ActorKind, AuditCategory, AuditEvent, ChainForm, LeafPosition, NewAuditEvent, action,
    chain_hash,
};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::merkle::Hash;
use crate::error::{Error, Result};

/// The PostgreSQL channel every audited commit notifies, with its last
/// sequence as payload (L5).
pub(super) const NOTIFY_CHANNEL: &str = "portal_access_audit";

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub realm_id: Option<Uuid>,
    pub portal_ids: Vec<Uuid>,
    pub categories: Vec<AuditCategory>,
}

impl AuditFilter {
    /// The same test `events_page` makes in SQL, for events in memory.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.realm_id.is_none_or(|r| r == event.realm_id)
            && (self.portal_ids.is_empty()
                || event
                    .portal_id
                    .is_some_and(|p| self.portal_ids.contains(&p)))
            && (self.categories.is_empty() || self.categories.contains(&event.category))
    }
}

pub(super) async fn last_sequence(db: &impl ConnectionTrait, backend: Backend) -> Result<i64> {
    let row = db
        .query_one_raw(raw::statement(
            backend,
            "SELECT last_sequence FROM audit_head WHERE id = 1",
            vec![],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("audit_head row missing"))?;
    row.try_get_by_index::<i64>(0).map_err(db_error)
}

/// When events get their platform-wide `sequence` (W1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// Under the single `audit_head` row, held to commit: what v0.2.0 does,
    /// and what SQLite always does.
    AtCommit,
    /// By a numbering round after commit (PostgreSQL only).
    AfterCommit,
}

pub(super) async fn append(
    tx: &impl ConnectionTrait,
    backend: Backend,
    now: DateTime<Utc>,
    events: Vec<NewAuditEvent>,
    mut heads: BTreeMap<Uuid, RealmLog>,
    evidence_tree: bool,
    numbering: Numbering,
) -> Result<Appended> {
    if events.is_empty() {
        return Ok(Appended::default());
    }
    let realm_ids: BTreeSet<Uuid> = events.iter().map(|e| e.realm_id).collect();
    // `heads` holds the realms the transaction locked already; the others
    // are locked here, sorted, so two transactions touching the same realms
    // lock them in the same order.
    for realm_id in &realm_ids {
        if heads.contains_key(realm_id) {
            continue;
        }
        let row = realm::Entity::find_by_id(*realm_id)
            .lock_exclusive()
            .one(tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal(format!("audit event for unknown realm {realm_id}")))?;
        heads.insert(*realm_id, RealmLog::from_row(&row)?);
    }
    heads.retain(|realm_id, _| realm_ids.contains(realm_id));
    // E1: events an older release wrote join the tree first (rare: only
    // during a rolling update from a release without the tree).
    for (realm_id, log) in heads.iter_mut() {
        if evidence_tree && log.tree_is_behind() {
            tree::catch_up(tx, backend, *realm_id, log).await?;
        }
    }
    // E5: where each session's chain of events stands.
    let sessions: BTreeSet<Uuid> = events.iter().filter_map(|e| e.access_request_id).collect();
    let sessions: Vec<Uuid> = if evidence_tree {
        sessions.into_iter().collect()
    } else {
        Vec::new()
    };
    let count = events.len() as i64;
    let (numbers, mut last_leaf) = number_events(tx, backend, numbering, count, &sessions).await?;
    let chain_form = match numbers {
        Numbers::From(_) => ChainForm::WithSequence,
        Numbers::Placeholders(_) => ChainForm::WithoutSequence,
    };

    let mut appended = Vec::with_capacity(events.len());
    let mut state_changed: BTreeSet<Uuid> = BTreeSet::new();
    let mut leaves: BTreeMap<Uuid, Vec<Hash>> = BTreeMap::new();
    for (offset, new) in events.into_iter().enumerate() {
        if !action::is_session_log(new.action) {
            state_changed.insert(new.realm_id);
        }
        let log = heads.get_mut(&new.realm_id).expect("every realm locked");
        let mut event = AuditEvent {
            sequence: numbers.get(offset),
            id: new.id,
            occurred_at: now,
            realm_id: new.realm_id,
            portal_id: new.portal_id,
            category: new.category,
            action: new.action.to_owned(),
            actor: new.actor,
            target_type: new.target_type.to_owned(),
            target_id: new.target_id,
            details: new.details,
            prev_hash: log.chain_hash.clone(),
            hash: String::new(),
            leaf: None,
            chain_form,
        };
        event.hash = chain_hash(&event.prev_hash, &event.canonical_bytes());
        log.chain_hash = event.hash.clone();
        if evidence_tree {
            let realm_leaves = leaves.entry(event.realm_id).or_default();
            let leaf_index = log.tree_size + realm_leaves.len() as u64;
            realm_leaves.push(tree::place(
                &mut event,
                leaf_index,
                new.access_request_id,
                &mut last_leaf,
            ));
        }
        appended.push(event);
    }
    let mut nodes: Vec<(Uuid, i64, String)> = Vec::new();
    for (realm_id, hashes) in &leaves {
        let log = heads.get_mut(realm_id).expect("every realm locked");
        nodes.extend(
            log.grow(hashes)?
                .into_iter()
                .map(|(key, hash)| (*realm_id, key, hash)),
        );
        // The tree holds every event of the chain.
        log.tree_chain_hash = log.chain_hash.clone();
    }

    // The revision tells permission caches on every replica that the realm
    // changed (SPEC §8); a support action changes no permission.
    let new_heads: Vec<RealmHeads> = heads
        .into_iter()
        .map(|(realm_id, log)| RealmHeads {
            realm_id,
            bump: i64::from(state_changed.contains(&realm_id)),
            log,
        })
        .collect();
    let sessions: Vec<(Uuid, i64)> = last_leaf
        .into_iter()
        .filter_map(|(id, leaf)| Some((id, leaf? as i64)))
        .collect();
    match backend {
        Backend::Postgres => {
            // At commit, the audit_head row is held from the numbering
            // above to COMMIT: the rest is one statement. After commit, the
            // notification says only which realms changed (sequence 0: the
            // numbering round announces the numbers) and wakes the leader.
            let last = match numbers {
                Numbers::From(first) => first + count - 1,
                Numbers::Placeholders(_) => 0,
            };
            let statement = finish_append_postgres(
                &appended,
                &new_heads,
                &nodes,
                &sessions,
                notification(last, &state_changed),
            )?;
            tx.execute_raw(statement).await.map_err(db_error)?;
        }
        Backend::Sqlite => {
            audit_event::Entity::insert_many(appended.iter().map(to_row))
                .exec(tx)
                .await
                .map_err(db_error)?;
            for heads in &new_heads {
                tx.execute_raw(raw::statement(
                    backend,
                    "UPDATE realms SET audit_head_hash = ?, revision = revision + ?, \
                     tree_size = ?, tree_border = ?, tree_chain_hash = ? WHERE id = ?",
                    vec![
                        Value::from(heads.log.chain_hash.clone()),
                        Value::from(heads.bump),
                        Value::from(heads.log.tree_size as i64),
                        Value::from(heads.log.border_text()),
                        Value::from(heads.log.tree_chain_hash.clone()),
                        Value::from(heads.realm_id),
                    ],
                ))
                .await
                .map_err(db_error)?;
            }
            for (realm_id, realm_nodes) in group_nodes(&nodes) {
                tree::insert_nodes(tx, backend, realm_id, &realm_nodes).await?;
            }
            for (id, leaf) in &sessions {
                tx.execute_raw(raw::statement(
                    backend,
                    "UPDATE access_requests SET last_leaf = ? WHERE id = ?",
                    vec![Value::from(*leaf), Value::from(*id)],
                ))
                .await
                .map_err(db_error)?;
            }
        }
    }
    Ok(Appended {
        numbered: matches!(numbers, Numbers::From(_)),
        events: appended,
        state_changed,
    })
}

/// The sequences an append gives its events.
enum Numbers {
    /// Consecutive numbers from this one (at commit).
    From(i64),
    /// Placeholders in write order, numbered after commit.
    Placeholders(Vec<i64>),
}

impl Numbers {
    fn get(&self, offset: usize) -> i64 {
        match self {
            Numbers::From(first) => first + offset as i64,
            Numbers::Placeholders(placeholders) => placeholders[offset],
        }
    }
}

/// Gives the events their numbers (or placeholders, W1) and reads where
/// each session's chain of leaves stands (E5, under the realm locks the
/// caller holds).
async fn number_events(
    tx: &impl ConnectionTrait,
    backend: Backend,
    numbering: Numbering,
    count: i64,
    sessions: &[Uuid],
) -> Result<(Numbers, HashMap<Uuid, Option<u64>>)> {
    match (backend, numbering) {
        (Backend::Sqlite, _) => {
            let last_leaf =
                tree::session_last_leaves(tx, backend, sessions.iter().copied()).await?;
            let row = tx
                .query_one_raw(raw::statement(
                    backend,
                    "UPDATE audit_head SET last_sequence = last_sequence + ? WHERE id = 1 \
                     RETURNING last_sequence",
                    vec![Value::from(count)],
                ))
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::internal("audit_head row missing"))?;
            let last: i64 = row.try_get_by_index(0).map_err(db_error)?;
            Ok((Numbers::From(last - count + 1), last_leaf))
        }
        (Backend::Postgres, Numbering::AtCommit) => {
            let last_leaf =
                tree::session_last_leaves(tx, backend, sessions.iter().copied()).await?;
            // Held to COMMIT (L2). Events committed after commit by
            // replicas numbering that way are numbered first, all of them
            // (no round limit): any may precede ours in its realm's chain.
            let last = sequencer::number_pending(tx, i64::MAX, count, false)
                .await?
                .after;
            Ok((Numbers::From(last - count + 1), last_leaf))
        }
        (Backend::Postgres, Numbering::AfterCommit) => {
            // One round trip: the placeholders and the sessions' leaves.
            let mut sql = "SELECT -nextval('audit_events_pending'), NULL::uuid, NULL::bigint \
                           FROM generate_series(1, $1)"
                .to_owned();
            let mut values = vec![Value::from(count)];
            if !sessions.is_empty() {
                let marks: Vec<String> =
                    (0..sessions.len()).map(|i| format!("${}", i + 2)).collect();
                sql.push_str(&format!(
                    " UNION ALL SELECT NULL, id, last_leaf FROM access_requests WHERE id IN ({})",
                    marks.join(", ")
                ));
                values.extend(sessions.iter().map(|id| Value::from(*id)));
            }
            let rows = tx
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    sql,
                    values,
                ))
                .await
                .map_err(db_error)?;
            let mut placeholders = Vec::with_capacity(count as usize);
            let mut last_leaf: HashMap<Uuid, Option<u64>> =
                sessions.iter().map(|id| (*id, None)).collect();
            for row in &rows {
                let placeholder: Option<i64> = row.try_get_by_index(0).map_err(db_error)?;
                if let Some(placeholder) = placeholder {
                    placeholders.push(placeholder);
                    continue;
                }
                let id: Uuid = row.try_get_by_index(1).map_err(db_error)?;
                let leaf: Option<i64> = row.try_get_by_index(2).map_err(db_error)?;
                last_leaf.insert(id, leaf.and_then(|l| u64::try_from(l).ok()));
            }
            // Write order is nextval's order: the most negative is the last.
            placeholders.sort_unstable_by(|a, b| b.cmp(a));
            Ok((Numbers::Placeholders(placeholders), last_leaf))
        }
    }
}

/// The current sequences (or placeholders) of events, by id.
pub(super) async fn sequences_of(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, i64>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let rows: Vec<(Uuid, i64)> = audit_event::Entity::find()
            .select_only()
            .column(audit_event::Column::Id)
            .column(audit_event::Column::Sequence)
            .filter(audit_event::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await
            .map_err(db_error)?;
        found.extend(rows);
    }
    Ok(found)
}

/// What one append leaves on a realm's row.
struct RealmHeads {
    realm_id: Uuid,
    bump: i64,
    log: RealmLog,
}

fn group_nodes(nodes: &[(Uuid, i64, String)]) -> BTreeMap<Uuid, Vec<(i64, String)>> {
    let mut grouped: BTreeMap<Uuid, Vec<(i64, String)>> = BTreeMap::new();
    for (realm_id, key, hash) in nodes {
        grouped
            .entry(*realm_id)
            .or_default()
            .push((*key, hash.clone()));
    }
    grouped
}

/// One PostgreSQL statement that inserts the events and their tree nodes,
/// moves the realms' chain and tree heads and the sessions' last leaves,
/// and notifies the other replicas (delivered only when the transaction
/// commits). Data-modifying `WITH` parts always run in full. Every set of
/// rows is one JSON parameter, so the text is the same for every append
/// and the connection prepares it once (`json_rows`).
fn finish_append_postgres(
    events: &[AuditEvent],
    heads: &[RealmHeads],
    nodes: &[(Uuid, i64, String)],
    sessions: &[(Uuid, i64)],
    payload: String,
) -> Result<Statement> {
    let mut event_rows = JsonRows::of_entity::<audit_event::Entity>()?;
    for event in events {
        event_rows.push_model(&to_row(event))?;
    }
    let mut head_rows = JsonRows::with_columns(&[
        ("id", "uuid"),
        ("hash", "text"),
        ("bump", "bigint"),
        ("size", "bigint"),
        ("border", "text"),
        ("synced", "text"),
    ]);
    for h in heads {
        head_rows.push([
            Value::from(h.realm_id),
            Value::from(h.log.chain_hash.clone()),
            Value::from(h.bump),
            Value::from(h.log.tree_size as i64),
            Value::from(h.log.border_text()),
            Value::from(h.log.tree_chain_hash.clone()),
        ])?;
    }
    let mut node_rows =
        JsonRows::with_columns(&[("realm_id", "uuid"), ("node", "bigint"), ("hash", "text")]);
    for (realm_id, key, hash) in nodes {
        node_rows.push([
            Value::from(*realm_id),
            Value::from(*key),
            Value::from(hash.clone()),
        ])?;
    }
    let mut session_rows = JsonRows::with_columns(&[("id", "uuid"), ("leaf", "bigint")]);
    for (id, leaf) in sessions {
        session_rows.push([Value::from(*id), Value::from(*leaf)])?;
    }
    let sql = format!(
        "WITH appended AS (INSERT INTO audit_events ({event_columns}) \
         SELECT {event_columns} FROM {events}), \
         heads AS (UPDATE realms SET audit_head_hash = v.hash, revision = realms.revision + v.bump, \
         tree_size = v.size, tree_border = v.border, tree_chain_hash = v.synced \
         FROM {heads} WHERE realms.id = v.id), \
         nodes AS (INSERT INTO audit_tree_nodes (realm_id, node, hash) \
         SELECT realm_id, node, hash FROM {nodes}), \
         sessions AS (UPDATE access_requests SET last_leaf = v.leaf \
         FROM {sessions} WHERE access_requests.id = v.id) \
         SELECT pg_notify($5, $6)",
        event_columns = event_rows.names(),
        events = event_rows.source("$1", "e"),
        heads = head_rows.source("$2", "v"),
        nodes = node_rows.source("$3", "n"),
        sessions = session_rows.source("$4", "v"),
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [
            event_rows.into_value(),
            head_rows.into_value(),
            node_rows.into_value(),
            session_rows.into_value(),
            Value::from(NOTIFY_CHANNEL),
            Value::from(payload),
        ],
    ))
}

/// What one commit appended.
#[derive(Default)]
pub(super) struct Appended {
    pub events: Vec<AuditEvent>,
    /// Whether the events carry their sequences (at commit), or
    /// placeholders until a numbering round (W1).
    pub numbered: bool,
    /// Realms whose state (not merely their session log) changed.
    pub state_changed: BTreeSet<Uuid>,
}

/// The NOTIFY payload, read by every replica's streams and read caches:
/// the last sequence committed and the realms whose state changed.
///
/// Replicas of two releases share one database during a rolling update, so
/// the payload carries its version and readers accept every version since
/// the previous release (docs/operations.md, "Messages between replicas"):
/// - version 1, unprefixed, as v0.1.0 writes and reads it:
///   `"42:0190…,0190…"`;
/// - version 2, the same fields behind a version tag: `"v2:42:0190…,0190…"`.
///
/// This release still writes version 1, which the previous release reads;
/// a release whose predecessor reads version 2 switches to writing it.
const NOTIFICATION_WRITE_VERSION: u32 = 1;

fn notification(last: i64, state_changed: &BTreeSet<Uuid>) -> String {
    let realms: Vec<String> = state_changed.iter().map(Uuid::to_string).collect();
    match NOTIFICATION_WRITE_VERSION {
        1 => format!("{last}:{}", realms.join(",")),
        version => format!("v{version}:{last}:{}", realms.join(",")),
    }
}

/// Reads [`notification`]'s payload in any version it has had; `None` for
/// a version this release does not know (the streams' periodic re-read and
/// the cache's age bound cover a missed wake-up).
pub(super) fn parse_notification(payload: &str) -> Option<(i64, Vec<Uuid>)> {
    let fields = match payload.strip_prefix('v') {
        None => payload,
        Some(tagged) => {
            let (version, fields) = tagged.split_once(':')?;
            (version == "2").then_some(fields)?
        }
    };
    let (sequence, realms) = fields.split_once(':').unwrap_or((fields, ""));
    let sequence = sequence.parse().ok()?;
    let realms = realms
        .split(',')
        .filter(|r| !r.is_empty())
        .filter_map(|r| r.parse().ok())
        .collect();
    Some((sequence, realms))
}

fn to_row(event: &AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        sequence: Set(event.sequence),
        id: Set(event.id),
        realm_id: Set(event.realm_id),
        portal_id: Set(event.portal_id),
        category: Set(event.category.as_str().to_owned()),
        action: Set(event.action.clone()),
        actor_kind: Set(event.actor.kind.as_str().to_owned()),
        actor_id: Set(event.actor.id.clone()),
        agent_id: Set(event.actor.agent_id),
        agent_name: Set(event.actor.agent_name.clone()),
        target_type: Set(event.target_type.clone()),
        target_id: Set(event.target_id.clone()),
        details: Set(serde_json::to_string(&event.details).unwrap_or_else(|_| "{}".to_owned())),
        occurred_at: Set(to_micros(event.occurred_at)),
        prev_hash: Set(event.prev_hash.clone()),
        hash: Set(event.hash.clone()),
        leaf_index: Set(event.leaf.map(|l| l.leaf_index as i64)),
        access_request_id: Set(event.leaf.and_then(|l| l.access_request_id)),
        previous_request_leaf: Set(event
            .leaf
            .and_then(|l| l.previous_request_leaf)
            .map(|l| l as i64)),
        chain_form: Set(event.chain_form.as_stored()),
    }
}

pub(super) fn from_row(row: audit_event::Model) -> AuditEvent {
    AuditEvent {
        // A placeholder is not a place in the log (W1).
        sequence: row.sequence.max(0),
        id: row.id,
        occurred_at: from_micros(row.occurred_at),
        realm_id: row.realm_id,
        portal_id: row.portal_id,
        category: AuditCategory::from_stored(&row.category).unwrap_or(AuditCategory::Security),
        action: row.action,
        actor: Actor {
            kind: ActorKind::from_stored(&row.actor_kind).unwrap_or(ActorKind::System),
            id: row.actor_id,
            agent_id: row.agent_id,
            agent_name: row.agent_name,
        },
        target_type: row.target_type,
        target_id: row.target_id,
        details: serde_json::from_str(&row.details).unwrap_or_default(),
        prev_hash: row.prev_hash,
        hash: row.hash,
        leaf: row.leaf_index.map(|leaf_index| LeafPosition {
            leaf_index: leaf_index as u64,
            access_request_id: row.access_request_id,
            previous_request_leaf: row.previous_request_leaf.map(|l| l as u64),
        }),
        chain_form: ChainForm::from_stored(row.chain_form),
    }
}

/// Where a page of events starts: the one query shape behind the stream
/// (oldest first, after a cursor) and the session log (newest first).
#[derive(Debug, Clone, Copy)]
pub enum EventPosition {
    /// Events with a higher sequence, oldest first.
    After(i64),
    /// Events with a lower sequence (or the newest ones), newest first.
    Before(Option<i64>),
}

pub(super) async fn events_page(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    position: EventPosition,
    limit: u64,
) -> Result<Vec<AuditEvent>> {
    let mut query = audit_event::Entity::find();
    query = match position {
        EventPosition::After(after) => query
            .filter(audit_event::Column::Sequence.gt(after))
            .order_by_asc(audit_event::Column::Sequence),
        EventPosition::Before(before) => {
            if let Some(before) = before {
                query = query.filter(audit_event::Column::Sequence.lt(before));
            }
            // Placeholders (W1) are not in the log yet.
            query
                .filter(audit_event::Column::Sequence.gt(0))
                .order_by_desc(audit_event::Column::Sequence)
        }
    };
    if let Some(realm_id) = filter.realm_id {
        query = query.filter(audit_event::Column::RealmId.eq(realm_id));
    }
    if !filter.portal_ids.is_empty() {
        query = query.filter(audit_event::Column::PortalId.is_in(filter.portal_ids.clone()));
    }
    if !filter.categories.is_empty() {
        query = query.filter(
            audit_event::Column::Category.is_in(filter.categories.iter().map(|c| c.as_str())),
        );
    }
    let rows = query.limit(limit).all(db).await.map_err(db_error)?;
    Ok(rows.into_iter().map(from_row).collect())
}

impl super::Store {
    /// Committed events that match `filter`, from `position`.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        position: EventPosition,
        limit: u64,
    ) -> Result<Vec<AuditEvent>> {
        events_page(self.conn(), filter, position, limit).await
    }

    /// One committed event by its id.
    pub async fn audit_event(&self, id: Uuid) -> Result<Option<AuditEvent>> {
        Ok(audit_event::Entity::find()
            .filter(audit_event::Column::Id.eq(id))
            .one(self.conn())
            .await
            .map_err(db_error)?
            .map(from_row))
    }

    /// The hash of a realm's last event, as recorded with each append.
    pub async fn audit_head_hash(&self, realm_id: Uuid) -> Result<Option<String>> {
        realm::Entity::find_by_id(realm_id)
            .select_only()
            .column(realm::Column::AuditHeadHash)
            .into_tuple::<String>()
            .one(self.conn())
            .await
            .map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_round_trips() {
        let realms: BTreeSet<Uuid> = [Uuid::new_v4(), Uuid::new_v4()].into();
        let (sequence, parsed) = parse_notification(&notification(42, &realms)).unwrap();
        assert_eq!(sequence, 42);
        assert_eq!(parsed, realms.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn notification_is_written_in_the_form_the_previous_release_reads() {
        // v0.1.0's reader: sequence, a colon, comma-separated realms.
        let realm = Uuid::new_v4();
        let payload = notification(7, &[realm].into());
        assert_eq!(payload, format!("7:{realm}"));
        assert_eq!(notification(8, &BTreeSet::new()), "8:");
    }

    #[test]
    fn notification_reads_every_known_version() {
        let realm = Uuid::new_v4();
        assert_eq!(
            parse_notification(&format!("42:{realm}")),
            Some((42, vec![realm]))
        );
        assert_eq!(
            parse_notification(&format!("v2:42:{realm}")),
            Some((42, vec![realm]))
        );
        assert_eq!(parse_notification("v2:43:"), Some((43, vec![])));
        assert_eq!(parse_notification("42"), Some((42, vec![])));
    }

    #[test]
    fn notification_of_an_unknown_version_is_ignored() {
        assert_eq!(parse_notification("v3:42:"), None);
        assert_eq!(parse_notification("v2"), None);
        assert_eq!(parse_notification("garbage"), None);
    }
}
