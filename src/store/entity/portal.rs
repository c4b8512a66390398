//! The `portals` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "portals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub realm_id: Uuid,
    pub parent_id: Option<Uuid>,
    /// 0 for the top-level portal, 1 for sub-portals: lists sort on it.
    pub depth: i16,
    pub name: String,
    pub subdomain: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
