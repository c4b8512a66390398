//! Accounts, memberships and an account's standing in its realm.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};
use uuid::Uuid;

use super::entity::{account, membership, realm, support_grant};
use super::errors::{db_error, unique_violation};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::{Account, Membership, Standing, SupportWindow, UserType};
use crate::error::{Error, Reason, Result};

fn account_from(row: account::Model) -> Account {
    Account {
        id: row.id,
        realm_id: row.realm_id,
        email: row.email,
        display_name: row.display_name,
        can_access_portal_settings: row.can_access_portal_settings,
        invited: row.invited,
        support_grant_id: row.support_grant_id,
        created_at: from_micros(row.created_at),
    }
}

async fn memberships_of(db: &impl ConnectionTrait, account_id: Uuid) -> Result<Vec<Membership>> {
    let rows = membership::Entity::find()
        .filter(membership::Column::AccountId.eq(account_id))
        .all(db)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .filter_map(|m| {
            Some(Membership {
                portal_id: m.portal_id,
                user_type: UserType::from_stored(&m.user_type)?,
            })
        })
        .collect())
}

/// The account with its memberships, its realm's top-level portal and, for
/// a temporary support admin, its grant's window. `None` when the account
/// does not exist in `realm_id`.
async fn find_standing(
    db: &impl ConnectionTrait,
    realm_id: Uuid,
    account_id: Uuid,
) -> Result<Option<Standing>> {
    let Some(row) = account::Entity::find_by_id(account_id)
        .filter(account::Column::RealmId.eq(realm_id))
        .one(db)
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    let Some(realm) = realm::Entity::find_by_id(realm_id)
        .one(db)
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    let support = match row.support_grant_id {
        Some(grant_id) => support_grant::Entity::find_by_id(grant_id)
            .filter(support_grant::Column::EndedAt.is_null())
            .one(db)
            .await
            .map_err(db_error)?
            .map(|g| SupportWindow {
                grant_id: g.id,
                portal_id: g.portal_id,
                expires_at: from_micros(g.expires_at),
            }),
        None => None,
    };
    Ok(Some(Standing {
        memberships: memberships_of(db, account_id).await?,
        account: account_from(row),
        top_level_portal_id: realm.top_level_portal_id,
        support,
    }))
}

impl super::Store {
    pub async fn standing(&self, realm_id: Uuid, account_id: Uuid) -> Result<Option<Standing>> {
        find_standing(self.conn(), realm_id, account_id).await
    }
}

impl super::WriteTx {
    pub async fn standing(&self, realm_id: Uuid, account_id: Uuid) -> Result<Option<Standing>> {
        find_standing(self.conn(), realm_id, account_id).await
    }

    /// Inserts an account; an email already used in the realm (in any
    /// case) is `EMAIL_TAKEN`.
    pub async fn insert_account(&self, account: &Account) -> Result<()> {
        let result = account::ActiveModel {
            id: Set(account.id),
            realm_id: Set(account.realm_id),
            email: Set(account.email.clone()),
            email_normalized: Set(account.email.to_lowercase()),
            display_name: Set(account.display_name.clone()),
            can_access_portal_settings: Set(account.can_access_portal_settings),
            invited: Set(account.invited),
            support_grant_id: Set(account.support_grant_id),
            created_at: Set(to_micros(account.created_at)),
        }
        .insert(self.conn())
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if unique_violation(&err).is_some() => Err(Error::new(
                Reason::EmailTaken,
                format!(
                    "an account with email {:?} already exists in this realm",
                    account.email
                ),
            )),
            Err(err) => Err(db_error(err)),
        }
    }

    pub async fn insert_membership(
        &self,
        realm_id: Uuid,
        account_id: Uuid,
        membership: Membership,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        membership::ActiveModel {
            account_id: Set(account_id),
            portal_id: Set(membership.portal_id),
            realm_id: Set(realm_id),
            user_type: Set(membership.user_type.as_str().to_owned()),
            created_at: Set(to_micros(now)),
        }
        .insert(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
