//! The `audit_events` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// L2's platform-wide order. On PostgreSQL with numbering after commit
    /// (W1) a committed event first holds a negative placeholder, unique and
    /// in write order, until the numbering leader gives it its number.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    pub id: Uuid,
    pub realm_id: Uuid,
    pub portal_id: Option<Uuid>,
    pub category: String,
    pub action: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub agent_id: Option<Uuid>,
    pub agent_name: Option<String>,
    pub target_type: String,
    pub target_id: String,
    /// JSON object of string values.
    pub details: String,
    pub occurred_at: i64,
    pub prev_hash: String,
    pub hash: String,
    /// E1: position in the realm's Merkle tree (set when the event joins
    /// the tree; empty only for events an older release wrote, until the
    /// realm's next append).
    pub leaf_index: Option<i64>,
    /// E5: the support session the event belongs to.
    pub access_request_id: Option<Uuid>,
    /// E5: the leaf of the previous event of the same session.
    pub previous_request_leaf: Option<i64>,
    /// L6: which bytes `hash` covers (`ChainForm`).
    pub chain_form: i16,
}

impl ActiveModelBehavior for ActiveModel {}
