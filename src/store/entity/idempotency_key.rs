//! The `idempotency_keys` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: Uuid,
    /// What the first request asked for, so a reused key with another
    /// request is refused rather than answered wrongly.
    pub fingerprint: String,
    pub result_id: String,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
