//! The `support_proposals` table (G5).

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "support_proposals")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub realm_id: Uuid,
    pub access_request_id: Uuid,
    /// Comma-separated portal ids, in the allow's order.
    pub portal_ids: String,
    pub duration_seconds: i64,
    pub level: String,
    pub activation: String,
    pub start_at: Option<i64>,
    pub claim_window_seconds: Option<i64>,
    pub state: String,
    pub proposed_by: Uuid,
    pub created_at: i64,
    pub closed_at: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
