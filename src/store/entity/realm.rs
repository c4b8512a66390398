//! The `realms` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "realms")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub top_level_admins_enrollable: bool,
    pub top_level_portal_id: Uuid,
    /// Hash of the realm's last audit event (L6); empty before the first.
    pub audit_head_hash: String,
    /// Bumped by every change that can alter a permission check, so caches
    /// on other replicas notice (SPEC §8).
    pub revision: i64,
    /// E1: leaves in the realm's Merkle tree.
    pub tree_size: i64,
    /// E3: the tree's right border (hex hashes, concatenated), enough to
    /// append without reading any stored node.
    pub tree_border: String,
    /// The chain head when the tree last caught up: a realm whose
    /// `audit_head_hash` moved on without it has events an older release
    /// wrote, which the next append adds to the tree first.
    pub tree_chain_hash: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
