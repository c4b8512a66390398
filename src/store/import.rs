//! W3: the multi-row writes of a bulk import. Accounts and memberships go
//! in one statement per table on PostgreSQL (the rows as one JSON
//! parameter), and on SQLite in `INSERT … VALUES (…), (…)` statements of as
//! many rows as its bound-parameter limit allows (the audit events already
//! go in one statement per commit).

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
    Value,
};
use uuid::Uuid;

use super::Backend;
use super::accounts::{account_from, account_row};
use super::entity::{account, membership};
use super::errors::{db_error, unique_violation};
use super::json_rows::JsonRows;
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
        if self.backend == Backend::Postgres {
            // The list as one parameter, not an IN list of 1,000: once
            // PostgreSQL switched the prepared IN list to its generic plan,
            // the plan read every account of the realm and compared each
            // with the 1,000 values (2.2 s in a realm of ~100,000 accounts,
            // under the realm lock). `= ANY(ARRAY(…))` keeps both columns in
            // the index condition whatever the plan.
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT email_normalized FROM accounts WHERE realm_id = $1 \
                 AND email_normalized = ANY(ARRAY(SELECT json_array_elements_text($2::json)))",
                [Value::from(realm_id), json_list(normalized)],
            );
            return self
                .conn()
                .query_all_raw(statement)
                .await
                .map_err(db_error)?
                .iter()
                .map(|row| row.try_get_by_index::<String>(0).map_err(db_error))
                .collect();
        }
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
    /// statements (on PostgreSQL one per table, the rows as one JSON
    /// parameter: `json_rows`). An email already used in the realm is
    /// `EMAIL_TAKEN`.
    pub async fn insert_accounts_with_memberships(
        &self,
        accounts: &[(Account, Membership)],
    ) -> Result<()> {
        let memberships = accounts.iter().map(|(account, m)| membership::ActiveModel {
            account_id: sea_orm::ActiveValue::Set(account.id),
            portal_id: sea_orm::ActiveValue::Set(m.portal_id),
            realm_id: sea_orm::ActiveValue::Set(account.realm_id),
            user_type: sea_orm::ActiveValue::Set(m.user_type.as_str().to_owned()),
            created_at: sea_orm::ActiveValue::Set(to_micros(account.created_at)),
        });
        match self.backend {
            Backend::Postgres => {
                let mut rows = JsonRows::of_entity::<account::Entity>()?;
                for (account, _) in accounts {
                    rows.push_model(&account_row(account))?;
                }
                let mut membership_rows = JsonRows::of_entity::<membership::Entity>()?;
                for row in memberships {
                    membership_rows.push_model(&row)?;
                }
                self.conn()
                    .execute_raw(rows.insert_into("accounts"))
                    .await
                    .map_err(inserted_accounts)?;
                self.conn()
                    .execute_raw(membership_rows.insert_into("memberships"))
                    .await
                    .map_err(db_error)?;
            }
            Backend::Sqlite => {
                let account_columns = 9;
                for chunk in accounts.chunks(rows_per_statement(self.backend, account_columns)) {
                    let rows = chunk.iter().map(|(account, _)| account_row(account));
                    account::Entity::insert_many(rows)
                        .exec(self.conn())
                        .await
                        .map_err(inserted_accounts)?;
                }
                let memberships: Vec<_> = memberships.collect();
                let membership_columns = 5;
                for chunk in
                    memberships.chunks(rows_per_statement(self.backend, membership_columns))
                {
                    membership::Entity::insert_many(chunk.iter().cloned())
                        .exec(self.conn())
                        .await
                        .map_err(db_error)?;
                }
            }
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
        for chunk in ids.chunks(rows_per_statement(self.backend, 1)) {
            // By primary key alone: with the realm in the condition too, a
            // generic plan may read the whole realm (see `emails_taken`).
            for row in account::Entity::find()
                .filter(account::Column::Id.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?
            {
                if row.realm_id == realm_id {
                    accounts.insert(row.id, row);
                }
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

/// A list as one JSON array parameter.
fn json_list(items: &[String]) -> Value {
    Value::from(serde_json::to_string(items).expect("strings always serialize"))
}

/// An insert's error: an email already used in the realm (the unique index
/// on the normalized email) is `EMAIL_TAKEN`.
fn inserted_accounts(err: sea_orm::DbErr) -> Error {
    if unique_violation(&err).is_some() {
        Error::new(
            Reason::EmailTaken,
            "an account with one of these emails already exists in this realm",
        )
    } else {
        db_error(err)
    }
}
