//! The `accounts` table.

use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub realm_id: Uuid,
    pub email: String,
    pub email_normalized: String,
    pub display_name: String,
    pub can_access_portal_settings: bool,
    pub invited: bool,
    /// Set for a temporary support admin (S10): the grant it exists for.
    pub support_grant_id: Option<Uuid>,
    pub created_at: i64,
}

impl ActiveModelBehavior for ActiveModel {}
