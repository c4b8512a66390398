//! W3: the multi-row writes of a bulk import. Accounts and memberships go
//! in `INSERT … VALUES (…), (…)` statements, as many rows per statement as
//! the database's bound-parameter limit allows (the audit events already go
//! in one statement per commit).

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::Backend;
use super::accounts::{account_from, account_row};
use super::entity::{account, membership};
use super::errors::{db_error, unique_violation};
use crate::domain::clock::to_micros;
use crate::domain::{Account, Membership, Standing, UserType};
use crate::error::{Error, Reason, Result};

/// Bound parameters one statement may carry: SQLite's default
/// `SQLITE_MAX_VARIABLE_NUMBER` (32,766 since 3.32) and PostgreSQL's
/// protocol limit (65,535).
fn max_parameters(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 32_766,
        Backend::Postgres => 65_535,
    }
}

/// Rows of `columns` columns per statement.
fn rows_per_statement(backend: Backend, columns: usize) -> usize {
    (max_parameters(backend) / columns).max(1)
}

impl super::WriteTx {
    /// Which of these emails (lower-cased) an account of the realm already
    /// uses. Asked under the realm lock, so the answer holds until commit.
    pub async fn emails_taken(&self, realm_id: Uuid, normalized: &[String]) -> Result<Vec<String>> {
        let mut taken = Vec::new();
        // One parameter is the realm id.
        for chunk in normalized.chunks(rows_per_statement(self.backend, 1) - 1) {
            taken.extend(
                account::Entity::find()
                    .filter(account::Column::RealmId.eq(realm_id))
                    .filter(account::Column::EmailNormalized.is_in(chunk.iter().cloned()))
                    .select_only()
                    .column(account::Column::EmailNormalized)
                    .into_tuple::<String>()
                    .all(self.conn())
                    .await
                    .map_err(db_error)?,
            );
        }
        Ok(taken)
    }

    /// Inserts new accounts, each with its one membership, in multi-row
    /// statements. An email already used in the realm is `EMAIL_TAKEN`.
    pub async fn insert_accounts_with_memberships(
        &self,
        accounts: &[(Account, Membership)],
    ) -> Result<()> {
        let account_columns = 9;
        for chunk in accounts.chunks(rows_per_statement(self.backend, account_columns)) {
            let rows = chunk.iter().map(|(account, _)| account_row(account));
            match account::Entity::insert_many(rows).exec(self.conn()).await {
                Ok(_) => {}
                Err(err) if unique_violation(&err).is_some() => {
                    return Err(Error::new(
                        Reason::EmailTaken,
                        "an account with one of these emails already exists in this realm",
                    ));
                }
                Err(err) => return Err(db_error(err)),
            }
        }
        let membership_columns = 5;
        for chunk in accounts.chunks(rows_per_statement(self.backend, membership_columns)) {
            let rows = chunk.iter().map(|(account, m)| membership::ActiveModel {
                account_id: sea_orm::ActiveValue::Set(account.id),
                portal_id: sea_orm::ActiveValue::Set(m.portal_id),
                realm_id: sea_orm::ActiveValue::Set(account.realm_id),
                user_type: sea_orm::ActiveValue::Set(m.user_type.as_str().to_owned()),
                created_at: sea_orm::ActiveValue::Set(to_micros(account.created_at)),
            });
            membership::Entity::insert_many(rows)
                .exec(self.conn())
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// The accounts of `ids` that still exist in the realm, in the order
    /// of `ids`, each with its memberships (what a retried import answers).
    pub async fn standings_of(
        &self,
        realm_id: Uuid,
        top_level_portal_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<Standing>> {
        let mut accounts: HashMap<Uuid, account::Model> = HashMap::new();
        let mut memberships: HashMap<Uuid, Vec<Membership>> = HashMap::new();
        for chunk in ids.chunks(rows_per_statement(self.backend, 1) - 1) {
            for row in account::Entity::find()
                .filter(account::Column::RealmId.eq(realm_id))
                .filter(account::Column::Id.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?
            {
                accounts.insert(row.id, row);
            }
            for m in membership::Entity::find()
                .filter(membership::Column::AccountId.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?
            {
                if let Some(user_type) = UserType::from_stored(&m.user_type) {
                    memberships
                        .entry(m.account_id)
                        .or_default()
                        .push(Membership {
                            portal_id: m.portal_id,
                            user_type,
                        });
                }
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| accounts.remove(id))
            .map(|row| Standing {
                memberships: memberships.remove(&row.id).unwrap_or_default(),
                top_level_portal_id,
                support: None,
                account: account_from(row),
            })
            .collect())
    }
}
