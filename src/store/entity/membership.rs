//! The `memberships` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub account_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub portal_id: Uuid,
    pub realm_id: Uuid,
    pub user_type: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
