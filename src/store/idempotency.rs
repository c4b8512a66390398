//! Idempotency keys (AIP-155): a retried create returns the first result.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

use super::entity::idempotency_key;
use super::errors::db_error;
use crate::domain::clock::to_micros;
use crate::error::{Error, Reason, Result};

/// A remembered request: who asked what, and what it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey<'a> {
    /// The RPC and the caller, so two callers never share a key.
    pub scope: &'a str,
    pub request_id: Uuid,
    /// A digest of the request, to refuse the same key with another request.
    pub fingerprint: &'a str,
}

impl super::WriteTx {
    /// The id the first request with this key created, if there was one.
    /// The same key with a different request is `REQUEST_ID_REUSED`.
    pub async fn remembered(&self, key: &IdempotencyKey<'_>) -> Result<Option<String>> {
        if self.backend == super::Backend::Postgres {
            // Two concurrent first attempts with one key: the second waits
            // here for the first to commit, then finds its result. (SQLite
            // writers are serialized already.)
            self.conn()
                .execute_raw(super::raw::statement(
                    self.backend,
                    "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))",
                    vec![format!("{}/{}", key.scope, key.request_id).into()],
                ))
                .await
                .map_err(db_error)?;
        }
        let row = idempotency_key::Entity::find_by_id((key.scope.to_owned(), key.request_id))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        match row {
            None => Ok(None),
            Some(row) if row.fingerprint == key.fingerprint => Ok(Some(row.result_id)),
            Some(_) => Err(Error::new(
                Reason::RequestIdReused,
                "request_id was already used for a different request",
            )),
        }
    }

    /// [`WriteTx::remembered`] for requests that created one resource by id.
    pub async fn remembered_id(&self, key: &IdempotencyKey<'_>) -> Result<Option<Uuid>> {
        self.remembered(key)
            .await?
            .map(|id| Uuid::parse_str(&id).map_err(Error::internal))
            .transpose()
    }

    /// Remembers what this request created, in the same transaction.
    pub async fn remember(&self, key: &IdempotencyKey<'_>, result_id: &str) -> Result<()> {
        idempotency_key::ActiveModel {
            scope: Set(key.scope.to_owned()),
            request_id: Set(key.request_id),
            fingerprint: Set(key.fingerprint.to_owned()),
            result_id: Set(result_id.to_owned()),
            created_at: Set(to_micros(self.now)),
        }
        .insert(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
