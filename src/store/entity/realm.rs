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
    pub created_at: i64,
    pub updated_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
