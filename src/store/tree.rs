//! The evidence log's storage (E1, E3, E5).
//!
//! Each realm's events are the leaves, in realm order, of an RFC 9162
//! Merkle tree. Appends happen under the realm's row lock, in the same
//! transaction as the events (L1): the realm row keeps the tree's size and
//! right border, so an append reads no stored node; it stores the O(log n)
//! complete-subtree hashes the new leaves complete (`audit_tree_nodes`),
//! which is what makes every proof a handful of reads.
//!
//! Back-links (E5): an event of a support session names the session's
//! access request and the leaf of the session's previous event, kept on the
//! request row (`access_requests.last_leaf`) under the same realm lock.
//!
//! Events an older release wrote (during a rolling update, or before this
//! schema existed) have no leaf yet. Their realm's chain head then differs
//! from the head the tree last caught up with, and the next append adds
//! them first, in sequence order ([`catch_up`]); the migration does the
//! same for every realm once.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value,
    sea_query::Expr,
};
use uuid::Uuid;

use super::entity::{audit_event, realm};
use super::errors::db_error;
use super::{Backend, raw};
use crate::domain::audit::{AuditEvent, LeafPosition};
use crate::domain::merkle::{self, Hash, SubtreeId};
use crate::error::{Error, Result};

/// A realm's log heads, as read with its row lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RealmLog {
    /// The hash chain's head (L6).
    pub chain_hash: String,
    pub tree_size: u64,
    pub border: Vec<Hash>,
    /// The chain head the tree last caught up with.
    pub tree_chain_hash: String,
}

impl RealmLog {
    pub fn from_row(row: &realm::Model) -> Result<Self> {
        Ok(Self {
            chain_hash: row.audit_head_hash.clone(),
            tree_size: u64::try_from(row.tree_size)
                .map_err(|_| Error::internal("negative tree size"))?,
            border: border_from_text(&row.tree_border)?,
            tree_chain_hash: row.tree_chain_hash.clone(),
        })
    }

    /// Events an older release wrote are not in the tree yet.
    pub fn tree_is_behind(&self) -> bool {
        self.tree_chain_hash != self.chain_hash
    }

    /// Adds leaves; returns the subtree hashes to store.
    pub fn grow(&mut self, leaf_hashes: &[Hash]) -> Result<Vec<(i64, String)>> {
        let appended = merkle::append(self.tree_size, &self.border, leaf_hashes)
            .map_err(|e| Error::internal(format!("tree append: {e}")))?;
        self.tree_size = appended.size;
        self.border = appended.border;
        Ok(appended
            .stored
            .into_iter()
            .map(|(id, hash)| (id.key(), hex::encode(hash)))
            .collect())
    }

    pub fn border_text(&self) -> String {
        self.border.iter().map(hex::encode).collect()
    }
}

fn border_from_text(text: &str) -> Result<Vec<Hash>> {
    let bytes = hex::decode(text).map_err(|_| Error::internal("tree border is not hex"))?;
    if bytes.len() % 32 != 0 {
        return Err(Error::internal("tree border is not whole hashes"));
    }
    Ok(bytes
        .chunks(32)
        .map(|c| c.try_into().expect("32-byte chunks"))
        .collect())
}

fn hash_from_text(text: &str) -> Result<Hash> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::internal("a stored tree hash is not 32 hex bytes"))
}

/// Gives an event about to be appended its leaf `leaf_index` and its
/// session's back-link; returns its leaf hash. `last_leaf` holds each
/// session's last leaf so far (read under the realm lock) and moves on.
pub(crate) fn place(
    event: &mut AuditEvent,
    leaf_index: u64,
    session: Option<Uuid>,
    last_leaf: &mut HashMap<Uuid, Option<u64>>,
) -> Hash {
    let previous_request_leaf = session.and_then(|id| {
        let previous = last_leaf.get(&id).copied().flatten();
        last_leaf.insert(id, Some(leaf_index));
        previous
    });
    event.leaf = Some(LeafPosition {
        leaf_index,
        access_request_id: session,
        previous_request_leaf,
    });
    event.leaf_event().expect("just placed").leaf_hash()
}

/// The last leaf of each of these sessions (requests of locked realms).
pub(crate) async fn session_last_leaves(
    db: &impl ConnectionTrait,
    backend: Backend,
    sessions: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, Option<u64>>> {
    let ids: Vec<Uuid> = sessions.into_iter().collect();
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let rows = db
            .query_all_raw(raw::statement(
                backend,
                &format!("SELECT id, last_leaf FROM access_requests WHERE id IN ({marks})"),
                chunk.iter().map(|id| Value::from(*id)).collect(),
            ))
            .await
            .map_err(db_error)?;
        for row in rows {
            let id: Uuid = row.try_get_by_index(0).map_err(db_error)?;
            let last: Option<i64> = row.try_get_by_index(1).map_err(db_error)?;
            found.insert(id, last.and_then(|l| u64::try_from(l).ok()));
        }
    }
    // A session whose request row is gone (never: requests are kept) or
    // not yet visible starts a new chain.
    for id in ids {
        found.entry(id).or_insert(None);
    }
    Ok(found)
}

/// Stored subtree hashes of a realm's tree, read in one query per 500.
pub(crate) async fn read_nodes(
    db: &impl ConnectionTrait,
    backend: Backend,
    realm_id: Uuid,
    ids: &[SubtreeId],
) -> Result<Vec<Hash>> {
    let mut by_key: HashMap<i64, Hash> = HashMap::with_capacity(ids.len());
    let keys: Vec<i64> = ids.iter().map(|id| id.key()).collect();
    for chunk in keys.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut values = vec![Value::from(realm_id)];
        values.extend(chunk.iter().map(|k| Value::from(*k)));
        let rows = db
            .query_all_raw(raw::statement(
                backend,
                &format!(
                    "SELECT node, hash FROM audit_tree_nodes WHERE realm_id = ? AND node IN ({marks})"
                ),
                values,
            ))
            .await
            .map_err(db_error)?;
        for row in rows {
            let key: i64 = row.try_get_by_index(0).map_err(db_error)?;
            let hash: String = row.try_get_by_index(1).map_err(db_error)?;
            by_key.insert(key, hash_from_text(&hash)?);
        }
    }
    keys.iter()
        .map(|k| {
            by_key
                .get(k)
                .copied()
                .ok_or_else(|| Error::internal("a tree node the proof needs is missing"))
        })
        .collect()
}

/// Inserts subtree hashes (SQLite: 999 rows per statement at most).
pub(crate) async fn insert_nodes(
    db: &impl ConnectionTrait,
    backend: Backend,
    realm_id: Uuid,
    nodes: &[(i64, String)],
) -> Result<()> {
    for chunk in nodes.chunks(300) {
        let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for (key, hash) in chunk {
            values.push(Value::from(realm_id));
            values.push(Value::from(*key));
            values.push(Value::from(hash.clone()));
        }
        db.execute_raw(raw::statement(
            backend,
            &format!("INSERT INTO audit_tree_nodes (realm_id, node, hash) VALUES {rows}"),
            values,
        ))
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// The session an event an older release wrote belongs to, from what it
/// recorded: the request itself, a grant's request, or a grant named in
/// its details (resolved through `grants`).
fn session_of_stored(
    row: &audit_event::Model,
    details: &std::collections::BTreeMap<String, String>,
    grants: &HashMap<Uuid, Uuid>,
) -> Option<Uuid> {
    if let Some(id) = row.access_request_id {
        return Some(id);
    }
    if row.target_type == "access_request" {
        return row.target_id.parse().ok();
    }
    if let Some(id) = details.get("access_request_id") {
        return id.parse().ok();
    }
    let grant: Option<Uuid> = if row.target_type == "support_grant" {
        row.target_id.parse().ok()
    } else {
        details.get("support_grant_id").and_then(|g| g.parse().ok())
    };
    grant.and_then(|g| grants.get(&g).copied())
}

/// Adds a realm's events that have no leaf (older release) to its tree,
/// in sequence order, under the realm lock the caller holds.
pub(crate) async fn catch_up(
    db: &impl ConnectionTrait,
    backend: Backend,
    realm_id: Uuid,
    log: &mut RealmLog,
) -> Result<()> {
    let grants: HashMap<Uuid, Uuid> = db
        .query_all_raw(raw::statement(
            backend,
            "SELECT id, access_request_id FROM support_grants WHERE realm_id = ?",
            vec![Value::from(realm_id)],
        ))
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect::<std::result::Result<_, sea_orm::DbErr>>()
        .map_err(db_error)?;
    loop {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::RealmId.eq(realm_id))
            .filter(audit_event::Column::LeafIndex.is_null())
            // Chain order: numbered events, then placeholders (W1) in write
            // order (the most negative is the newest).
            .order_by_asc(Expr::cust("CASE WHEN sequence < 0 THEN 1 ELSE 0 END"))
            .order_by_asc(Expr::cust("abs(sequence)"))
            .limit(1000)
            .all(db)
            .await
            .map_err(db_error)?;
        if rows.is_empty() {
            break;
        }
        let mut events = Vec::with_capacity(rows.len());
        let mut sessions = Vec::with_capacity(rows.len());
        for row in rows {
            let event = super::audit::from_row(row.clone());
            sessions.push(session_of_stored(&row, &event.details, &grants));
            events.push(event);
        }
        let mut last_leaf =
            session_last_leaves(db, backend, sessions.iter().flatten().copied()).await?;
        let hashes: Vec<Hash> = events
            .iter_mut()
            .zip(&sessions)
            .enumerate()
            .map(|(offset, (event, session))| {
                place(
                    event,
                    log.tree_size + offset as u64,
                    *session,
                    &mut last_leaf,
                )
            })
            .collect();
        let nodes = log.grow(&hashes)?;
        for event in &events {
            let at = event.leaf.expect("placed");
            db.execute_raw(raw::statement(
                backend,
                "UPDATE audit_events SET leaf_index = ?, access_request_id = ?, \
                 previous_request_leaf = ? WHERE id = ?",
                vec![
                    Value::from(at.leaf_index as i64),
                    Value::from(at.access_request_id),
                    Value::from(at.previous_request_leaf.map(|l| l as i64)),
                    Value::from(event.id),
                ],
            ))
            .await
            .map_err(db_error)?;
        }
        insert_nodes(db, backend, realm_id, &nodes).await?;
        update_session_leaves(db, backend, &last_leaf).await?;
    }
    log.tree_chain_hash = log.chain_hash.clone();
    db.execute_raw(raw::statement(
        backend,
        "UPDATE realms SET tree_size = ?, tree_border = ?, tree_chain_hash = ? WHERE id = ?",
        vec![
            Value::from(log.tree_size as i64),
            Value::from(log.border_text()),
            Value::from(log.tree_chain_hash.clone()),
            Value::from(realm_id),
        ],
    ))
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Moves each session's last leaf on.
pub(crate) async fn update_session_leaves(
    db: &impl ConnectionTrait,
    backend: Backend,
    last_leaf: &HashMap<Uuid, Option<u64>>,
) -> Result<()> {
    for (id, leaf) in last_leaf {
        if let Some(leaf) = leaf {
            db.execute_raw(raw::statement(
                backend,
                "UPDATE access_requests SET last_leaf = ? WHERE id = ?",
                vec![Value::from(*leaf as i64), Value::from(*id)],
            ))
            .await
            .map_err(db_error)?;
        }
    }
    Ok(())
}

/// The migration's pass: every realm's existing events join its tree.
pub(crate) async fn catch_up_every_realm(
    db: &impl ConnectionTrait,
    backend: Backend,
) -> Result<()> {
    let realms = realm::Entity::find().all(db).await.map_err(db_error)?;
    for row in realms {
        let mut log = RealmLog::from_row(&row)?;
        if log.tree_is_behind() {
            catch_up(db, backend, row.id, &mut log).await?;
        }
    }
    Ok(())
}

impl super::Store {
    /// A realm's tree as it stands (size and right border); `None` for an
    /// unknown realm. Events an older release wrote are counted once they
    /// have joined the tree.
    pub async fn realm_tree(&self, realm_id: Uuid) -> Result<Option<(u64, Vec<Hash>)>> {
        let Some(row) = realm::Entity::find_by_id(realm_id)
            .one(self.conn())
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let log = RealmLog::from_row(&row)?;
        Ok(Some((log.tree_size, log.border)))
    }

    /// Stored subtree hashes of a realm's tree, in the order of `ids`.
    pub async fn tree_nodes(&self, realm_id: Uuid, ids: &[SubtreeId]) -> Result<Vec<Hash>> {
        read_nodes(self.conn(), self.backend, realm_id, ids).await
    }

    /// The event at leaf `index` of a realm's tree.
    pub async fn event_at_leaf(&self, realm_id: Uuid, index: u64) -> Result<Option<AuditEvent>> {
        Ok(audit_event::Entity::find()
            .filter(audit_event::Column::RealmId.eq(realm_id))
            .filter(audit_event::Column::LeafIndex.eq(index as i64))
            .one(self.conn())
            .await
            .map_err(db_error)?
            .map(super::audit::from_row))
    }

    /// A support session's events, in leaf order (E5).
    pub async fn session_events(&self, access_request_id: Uuid) -> Result<Vec<AuditEvent>> {
        let rows = audit_event::Entity::find()
            .filter(audit_event::Column::AccessRequestId.eq(access_request_id))
            .filter(audit_event::Column::LeafIndex.is_not_null())
            .order_by_asc(audit_event::Column::LeafIndex)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(super::audit::from_row).collect())
    }

    /// How many of a realm's leaves lie at or before log position
    /// `sequence`: the tree size a stream that has looked through
    /// `sequence` has seen (E4).
    pub async fn tree_size_at(&self, realm_id: Uuid, sequence: i64) -> Result<u64> {
        let row = self
            .conn()
            .query_one_raw(raw::statement(
                self.backend,
                // The realm's newest leaf at or before `sequence`: a realm's
                // events are numbered in the order of its leaves (both are
                // taken under the realm's lock), so this walks the realm's
                // sequence index down from `sequence` and stops at the first
                // row. Both earlier forms (MAX over the leaves, then the leaf
                // index walked down) got generic plans that read every leaf
                // of the realm once an import had changed the statistics
                // (~18 ms a call).
                "SELECT leaf_index FROM audit_events WHERE realm_id = ? AND sequence > 0 \
                 AND sequence <= ? AND leaf_index IS NOT NULL ORDER BY sequence DESC LIMIT 1",
                vec![Value::from(realm_id), Value::from(sequence)],
            ))
            .await
            .map_err(db_error)?;
        let max: Option<i64> = match row {
            Some(row) => row.try_get_by_index(0).map_err(db_error)?,
            None => None,
        };
        Ok(max.map_or(0, |m| m as u64 + 1))
    }
}
