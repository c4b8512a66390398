//! API key sets (K2, K3).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::entity::api_key;
use super::errors::db_error;
use super::raw;
use crate::domain::api_key::ApiKey;
use crate::domain::clock::{from_micros, to_micros};
use crate::error::Result;

/// `last_used_at` is refreshed at most this often per key, so verifying a
/// key on every API call does not turn into a write per call.
const LAST_USE_RESOLUTION_MICROS: i64 = 60 * 1_000_000;

fn key_from(row: api_key::Model) -> ApiKey {
    ApiKey {
        id: row.id,
        portal_id: row.portal_id,
        realm_id: row.realm_id,
        secret_prefix: row.secret_prefix,
        created_by: row.created_by,
        created_at: from_micros(row.created_at),
        last_used_at: row.last_used_at.map(from_micros),
        revoked_at: row.revoked_at.map(from_micros),
    }
}

async fn active_key(db: &impl ConnectionTrait, portal_id: Uuid) -> Result<Option<ApiKey>> {
    let row = api_key::Entity::find()
        .filter(api_key::Column::PortalId.eq(portal_id))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await
        .map_err(db_error)?;
    Ok(row.map(key_from))
}

impl super::Store {
    /// The portal's active key set, if any (K2).
    pub async fn active_api_key(&self, portal_id: Uuid) -> Result<Option<ApiKey>> {
        active_key(self.conn(), portal_id).await
    }

    /// The active key whose secret hashes to `secret_hash`.
    pub async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let row = api_key::Entity::find()
            .filter(api_key::Column::SecretHash.eq(secret_hash))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(key_from))
    }

    /// Records a use, unless one was recorded within the last minute.
    pub async fn touch_api_key(&self, key_id: &str, now: DateTime<Utc>) -> Result<()> {
        let now = to_micros(now);
        self.conn()
            .execute_raw(raw::statement(
                self.backend,
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND revoked_at IS NULL \
                 AND (last_used_at IS NULL OR last_used_at < ?)",
                vec![
                    now.into(),
                    key_id.into(),
                    (now - LAST_USE_RESOLUTION_MICROS).into(),
                ],
            ))
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Every key the portal ever had, newest first.
    pub async fn api_key_history(&self, portal_id: Uuid) -> Result<Vec<ApiKey>> {
        let rows = api_key::Entity::find()
            .filter(api_key::Column::PortalId.eq(portal_id))
            .order_by_desc(api_key::Column::CreatedAt)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(key_from).collect())
    }
}

impl super::WriteTx {
    pub async fn active_api_key(&self, portal_id: Uuid) -> Result<Option<ApiKey>> {
        active_key(self.conn(), portal_id).await
    }

    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let row = api_key::Entity::find_by_id(key_id.to_owned())
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row.map(key_from))
    }

    /// K2: ends the portal's active key set; returns the ids that stopped
    /// working. From this transaction's commit on, they verify nowhere.
    pub async fn revoke_api_keys(&self, portal_id: Uuid) -> Result<Vec<String>> {
        let active: Vec<String> = api_key::Entity::find()
            .filter(api_key::Column::PortalId.eq(portal_id))
            .filter(api_key::Column::RevokedAt.is_null())
            .all(self.conn())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|k| k.id)
            .collect();
        if !active.is_empty() {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::RevokedAt, to_micros(self.now).into())
                .filter(api_key::Column::PortalId.eq(portal_id))
                .filter(api_key::Column::RevokedAt.is_null())
                .exec(self.conn())
                .await
                .map_err(db_error)?;
        }
        Ok(active)
    }

    /// Stores a new key by the hash of its secret (K3).
    pub async fn insert_api_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        api_key::ActiveModel {
            id: Set(key.id.clone()),
            portal_id: Set(key.portal_id),
            realm_id: Set(key.realm_id),
            secret_hash: Set(secret_hash.to_owned()),
            secret_prefix: Set(key.secret_prefix.clone()),
            created_by: Set(key.created_by.clone()),
            created_at: Set(to_micros(key.created_at)),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
