//! Accounts, memberships and an account's standing in its realm.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{access_request, account, membership, realm, support_grant};
use super::errors::{db_error, unique_violation};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::portal::Realm;
use crate::domain::{Account, Membership, Standing, SupportWindow, UserType};
use crate::error::{Error, Reason, Result};

pub(super) fn account_from(row: account::Model) -> Account {
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

/// The row of a new account.
pub(super) fn account_row(account: &Account) -> account::ActiveModel {
    account::ActiveModel {
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
}

/// The account with its memberships, its realm's top-level portal and, for
/// a temporary support admin, its grant's window. `None` when the account
/// does not exist in `realm_id`.
async fn find_standing(
    db: &impl ConnectionTrait,
    realm_id: Uuid,
    account_id: Uuid,
) -> Result<Option<Standing>> {
    let Some(realm) = realm::Entity::find_by_id(realm_id)
        .one(db)
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    standing_in_realm(db, realm_id, realm.top_level_portal_id, account_id).await
}

/// The standing of an account of a realm whose top-level portal is known.
async fn standing_in_realm(
    db: &impl ConnectionTrait,
    realm_id: Uuid,
    top_level_portal_id: Uuid,
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
    let grant = match row.support_grant_id {
        Some(grant_id) => support_grant::Entity::find_by_id(grant_id)
            .filter(support_grant::Column::EndedAt.is_null())
            .one(db)
            .await
            .map_err(db_error)?,
        None => None,
    };
    let support = support_windows(db, grant.into_iter().collect())
        .await?
        .into_values()
        .next();
    Ok(Some(Standing {
        memberships: memberships_of(db, account_id).await?,
        account: account_from(row),
        top_level_portal_id,
        support,
    }))
}

/// The windows of these (not ended) grants, by grant id, each with the
/// agent whose request it answers.
async fn support_windows(
    db: &impl ConnectionTrait,
    grants: Vec<support_grant::Model>,
) -> Result<std::collections::HashMap<Uuid, SupportWindow>> {
    if grants.is_empty() {
        return Ok(Default::default());
    }
    let request_ids: Vec<Uuid> = grants.iter().map(|g| g.access_request_id).collect();
    let agents: std::collections::HashMap<Uuid, Uuid> = access_request::Entity::find()
        .filter(access_request::Column::Id.is_in(request_ids))
        .select_only()
        .column(access_request::Column::Id)
        .column(access_request::Column::AgentId)
        .into_tuple::<(Uuid, Uuid)>()
        .all(db)
        .await
        .map_err(db_error)?
        .into_iter()
        .collect();
    Ok(grants
        .into_iter()
        .map(|row| {
            let requested_by = agents
                .get(&row.access_request_id)
                .copied()
                .unwrap_or_default();
            let g = super::support::grant_from(row);
            (
                g.id,
                SupportWindow {
                    grant_id: g.id,
                    portal_id: g.portal_id,
                    starts_at: g.starts_at,
                    expires_at: g.expires_at,
                    requested_by,
                    level: g.level,
                },
            )
        })
        .collect())
}

impl super::Store {
    /// The account's standing, from the read cache when it is fresh (up to
    /// one second behind other replicas' commits; see `read_cache`).
    pub async fn standing(&self, realm_id: Uuid, account_id: Uuid) -> Result<Option<Standing>> {
        if let Some(cached) = self.cache.standing(account_id) {
            return Ok((cached.account.realm_id == realm_id).then_some(cached));
        }
        let snapshot = self.cache.snapshot();
        let found = find_standing(self.conn(), realm_id, account_id).await?;
        if let Some(standing) = &found {
            self.cache.put_standing(snapshot, standing);
        }
        Ok(found)
    }

    /// The standing as committed now, past the cache: after a first-use
    /// claim another replica may have won (G6), before its notification.
    pub async fn fresh_standing(
        &self,
        realm_id: Uuid,
        account_id: Uuid,
    ) -> Result<Option<Standing>> {
        find_standing(self.conn(), realm_id, account_id).await
    }
}

impl super::WriteTx {
    pub async fn standing(&self, realm_id: Uuid, account_id: Uuid) -> Result<Option<Standing>> {
        find_standing(self.conn(), realm_id, account_id).await
    }

    /// As `standing`, in a realm this transaction has read (locked): a
    /// realm's top-level portal never changes, so the realm row is not read
    /// again (one round trip less on every write of an account).
    pub async fn standing_in(&self, realm: &Realm, account_id: Uuid) -> Result<Option<Standing>> {
        standing_in_realm(self.conn(), realm.id, realm.top_level_portal_id, account_id).await
    }

    /// Inserts an account; an email already used in the realm (in any
    /// case) is `EMAIL_TAKEN`.
    pub async fn insert_account(&self, account: &Account) -> Result<()> {
        let result = account_row(account).insert(self.conn()).await;
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

impl super::WriteTx {
    /// A16: full top-level admins of the realm now, temporary support
    /// admins excluded. Counted after `lock_realm`, so no concurrent change
    /// of the same realm can slip in before commit.
    pub async fn count_full_top_level_admins(&self, top_level_portal_id: Uuid) -> Result<u64> {
        let row = self
            .conn()
            .query_one_raw(super::raw::statement(
                self.backend,
                "SELECT COUNT(*) FROM memberships m JOIN accounts a ON a.id = m.account_id \
                 WHERE m.portal_id = ? AND m.user_type = 'admin' \
                 AND a.can_access_portal_settings AND a.support_grant_id IS NULL",
                vec![top_level_portal_id.into()],
            ))
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("COUNT returned no row"))?;
        let count: i64 = row.try_get_by_index(0).map_err(db_error)?;
        Ok(count.max(0) as u64)
    }

    /// Adds the membership, or changes its user type.
    pub async fn set_membership(
        &self,
        realm_id: Uuid,
        account_id: Uuid,
        membership: Membership,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        let existing = membership::Entity::find_by_id((account_id, membership.portal_id))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        match existing {
            Some(_) => {
                membership::ActiveModel {
                    account_id: Set(account_id),
                    portal_id: Set(membership.portal_id),
                    user_type: Set(membership.user_type.as_str().to_owned()),
                    ..Default::default()
                }
                .update(self.conn())
                .await
                .map_err(db_error)?;
                Ok(())
            }
            None => {
                self.insert_membership(realm_id, account_id, membership, now)
                    .await
            }
        }
    }

    pub async fn delete_membership(&self, account_id: Uuid, portal_id: Uuid) -> Result<()> {
        membership::Entity::delete_by_id((account_id, portal_id))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// A18: removes every membership but the top-level portal's; returns
    /// the portals left.
    pub async fn delete_sub_portal_memberships(
        &self,
        account_id: Uuid,
        top_level_portal_id: Uuid,
    ) -> Result<Vec<Uuid>> {
        let removed: Vec<Uuid> = membership::Entity::find()
            .filter(membership::Column::AccountId.eq(account_id))
            .filter(membership::Column::PortalId.ne(top_level_portal_id))
            .all(self.conn())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|m| m.portal_id)
            .collect();
        if !removed.is_empty() {
            membership::Entity::delete_many()
                .filter(membership::Column::AccountId.eq(account_id))
                .filter(membership::Column::PortalId.ne(top_level_portal_id))
                .exec(self.conn())
                .await
                .map_err(db_error)?;
        }
        Ok(removed)
    }

    pub async fn set_settings_access(&self, account_id: Uuid, on: bool) -> Result<()> {
        account::ActiveModel {
            id: Set(account_id),
            can_access_portal_settings: Set(on),
            ..Default::default()
        }
        .update(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Deletes the account; its memberships go with it (ON DELETE CASCADE).
    pub async fn delete_account(&self, account_id: Uuid) -> Result<()> {
        membership::Entity::delete_many()
            .filter(membership::Column::AccountId.eq(account_id))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        account::Entity::delete_by_id(account_id)
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

impl super::Store {
    /// The realm an account belongs to, for callers that name only the account.
    pub async fn account_realm(&self, account_id: Uuid) -> Result<Option<Uuid>> {
        if let Some(cached) = self.cache.standing(account_id) {
            return Ok(Some(cached.account.realm_id));
        }
        let row = account::Entity::find_by_id(account_id)
            .select_only()
            .column(account::Column::RealmId)
            .into_tuple::<Uuid>()
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(row)
    }

    /// A page of a portal's members after account `after`, in account id
    /// order, each with all its memberships.
    pub async fn list_members(
        &self,
        realm_id: Uuid,
        portal_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Standing>> {
        let mut query =
            membership::Entity::find().filter(membership::Column::PortalId.eq(portal_id));
        if let Some(after) = after {
            query = query.filter(membership::Column::AccountId.gt(after));
        }
        let ids: Vec<Uuid> = query
            .order_by_asc(membership::Column::AccountId)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|m| m.account_id)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let Some(realm) = realm::Entity::find_by_id(realm_id)
            .one(self.conn())
            .await
            .map_err(db_error)?
        else {
            return Ok(Vec::new());
        };
        let accounts = account::Entity::find()
            .filter(account::Column::Id.is_in(ids.clone()))
            .order_by_asc(account::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        let mut memberships: std::collections::HashMap<Uuid, Vec<Membership>> =
            std::collections::HashMap::new();
        for m in membership::Entity::find()
            .filter(membership::Column::AccountId.is_in(ids.clone()))
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
        let grant_ids: Vec<Uuid> = accounts.iter().filter_map(|a| a.support_grant_id).collect();
        let open_grants = if grant_ids.is_empty() {
            Vec::new()
        } else {
            support_grant::Entity::find()
                .filter(support_grant::Column::Id.is_in(grant_ids))
                .filter(support_grant::Column::EndedAt.is_null())
                .all(self.conn())
                .await
                .map_err(db_error)?
        };
        let grants = support_windows(self.conn(), open_grants).await?;
        Ok(accounts
            .into_iter()
            .map(|row| Standing {
                memberships: memberships.remove(&row.id).unwrap_or_default(),
                support: row.support_grant_id.and_then(|g| grants.get(&g).copied()),
                top_level_portal_id: realm.top_level_portal_id,
                account: account_from(row),
            })
            .collect())
    }
}
