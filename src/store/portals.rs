//! Realms and portals.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{portal, realm};
use super::errors::{db_error, unique_violation};
use crate::domain::Plan;
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::portal::{Portal, Realm};
use crate::error::{Error, Reason, Result};

/// Where a page of portals ends: top-level portal first, then sub-portals
/// in id (UUIDv7, creation) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortalPosition {
    pub depth: i16,
    pub id: Uuid,
}

fn realm_from(row: realm::Model) -> Realm {
    Realm {
        id: row.id,
        name: row.name,
        top_level_portal_id: row.top_level_portal_id,
        plan: Plan::from_stored(&row.plan).unwrap_or(Plan::Essentials),
        top_level_admins_enrollable: row.top_level_admins_enrollable,
        created_at: from_micros(row.created_at),
        updated_at: from_micros(row.updated_at),
    }
}

fn portal_from(row: portal::Model) -> Portal {
    Portal {
        id: row.id,
        realm_id: row.realm_id,
        parent_id: row.parent_id,
        name: row.name,
        subdomain: row.subdomain,
        created_at: from_micros(row.created_at),
    }
}

async fn find_realm(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Realm>> {
    let row = realm::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(db_error)?;
    Ok(row.map(realm_from))
}

async fn find_portal(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Portal>> {
    let row = portal::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(db_error)?;
    Ok(row.map(portal_from))
}

impl super::Store {
    pub async fn realm(&self, id: Uuid) -> Result<Option<Realm>> {
        find_realm(self.conn(), id).await
    }

    /// The portal, from the read cache when it is fresh.
    pub async fn portal(&self, id: Uuid) -> Result<Option<Portal>> {
        if let Some(cached) = self.cache.portal(id) {
            return Ok(Some(cached));
        }
        let snapshot = self.cache.snapshot();
        let found = find_portal(self.conn(), id).await?;
        if let Some(portal) = &found {
            self.cache.put_portal(snapshot, portal);
        }
        Ok(found)
    }

    /// A page of a realm's portals after `after`, optionally only `only`.
    pub async fn list_portals(
        &self,
        realm_id: Uuid,
        only: Option<&[Uuid]>,
        after: Option<PortalPosition>,
        limit: u64,
    ) -> Result<Vec<(Portal, PortalPosition)>> {
        let mut query = portal::Entity::find().filter(portal::Column::RealmId.eq(realm_id));
        if let Some(ids) = only {
            query = query.filter(portal::Column::Id.is_in(ids.iter().copied()));
        }
        if let Some(after) = after {
            query = query.filter(
                Condition::any()
                    .add(portal::Column::Depth.gt(after.depth))
                    .add(
                        Condition::all()
                            .add(portal::Column::Depth.eq(after.depth))
                            .add(portal::Column::Id.gt(after.id)),
                    ),
            );
        }
        let rows = query
            .order_by_asc(portal::Column::Depth)
            .order_by_asc(portal::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let position = PortalPosition {
                    depth: row.depth,
                    id: row.id,
                };
                (portal_from(row), position)
            })
            .collect())
    }
}

impl super::WriteTx {
    /// Locks the realm row for the rest of the transaction and returns it:
    /// every change to a realm's portals, accounts, keys or grants starts
    /// here, so per-realm invariants are decided one transaction at a time.
    pub async fn lock_realm(&self, id: Uuid) -> Result<Option<Realm>> {
        let row = realm::Entity::find_by_id(id)
            .lock_exclusive()
            .one(self.conn())
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        // Held until commit, so the append need not read it again.
        self.remember_audit_head(row.id, super::tree::RealmLog::from_row(&row)?);
        Ok(Some(realm_from(row)))
    }

    pub async fn portal(&self, id: Uuid) -> Result<Option<Portal>> {
        find_portal(self.conn(), id).await
    }

    /// The portals among `ids` that exist, in one query per 500 ids.
    pub async fn portals(&self, ids: &[Uuid]) -> Result<Vec<Portal>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let rows = portal::Entity::find()
                .filter(portal::Column::Id.is_in(chunk.iter().copied()))
                .all(self.conn())
                .await
                .map_err(db_error)?;
            found.extend(rows.into_iter().map(portal_from));
        }
        Ok(found)
    }

    pub async fn insert_realm(&self, realm: &Realm) -> Result<()> {
        realm::ActiveModel {
            id: Set(realm.id),
            name: Set(realm.name.clone()),
            plan: Set(realm.plan.as_str().to_owned()),
            top_level_admins_enrollable: Set(realm.top_level_admins_enrollable),
            top_level_portal_id: Set(realm.top_level_portal_id),
            audit_head_hash: Set(String::new()),
            tree_size: Set(0),
            tree_border: Set(String::new()),
            tree_chain_hash: Set(String::new()),
            revision: Set(0),
            created_at: Set(to_micros(realm.created_at)),
            updated_at: Set(to_micros(realm.updated_at)),
        }
        .insert(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Inserts a portal; a taken subdomain is `SUBDOMAIN_TAKEN` (P4).
    pub async fn insert_portal(&self, portal: &Portal) -> Result<()> {
        let result = portal::ActiveModel {
            id: Set(portal.id),
            realm_id: Set(portal.realm_id),
            parent_id: Set(portal.parent_id),
            depth: Set(if portal.parent_id.is_some() { 1 } else { 0 }),
            name: Set(portal.name.clone()),
            subdomain: Set(portal.subdomain.clone()),
            created_at: Set(to_micros(portal.created_at)),
        }
        .insert(self.conn())
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match unique_violation(&err) {
                Some(detail) if detail.contains("subdomain") => Err(Error::new(
                    Reason::SubdomainTaken,
                    format!("subdomain {:?} is already taken", portal.subdomain),
                )
                .with_metadata("subdomain", &portal.subdomain)),
                _ => Err(db_error(err)),
            },
        }
    }

    pub async fn update_realm(&self, realm: &Realm) -> Result<()> {
        realm::ActiveModel {
            id: Set(realm.id),
            plan: Set(realm.plan.as_str().to_owned()),
            top_level_admins_enrollable: Set(realm.top_level_admins_enrollable),
            updated_at: Set(to_micros(realm.updated_at)),
            ..Default::default()
        }
        .update(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
