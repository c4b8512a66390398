//! The `support_grants` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "support_grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub realm_id: Uuid,
    pub portal_id: Uuid,
    pub access_request_id: Uuid,
    pub temporary_account_id: Uuid,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub level: String,
    pub starts_at: Option<i64>,
    pub activation: String,
    pub duration_seconds: Option<i64>,
    pub claim_deadline: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
