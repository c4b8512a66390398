//! The `support_policies` table (G1): one row per realm that changed its
//! policy; no row means the defaults.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "support_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub realm_id: Uuid,
    pub enabled: bool,
    pub max_duration_seconds: i64,
    pub required_approvals: i16,
    pub allowed_levels: String,
    pub updated_at: i64,
    pub updated_by: String,
}

impl ActiveModelBehavior for ActiveModel {}
