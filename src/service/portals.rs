//! PortalService use cases: realms, sub-portals, realm settings (P1-P5, A7).

use uuid::Uuid;

use super::caller::{require_account_of, require_operator, wrong_kind};
use super::{Caller, RequestId, Services};
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::domain::portal::{NewRealm, NewSubPortal, Portal, Realm, RealmSettingsChange};
use crate::domain::{Account, Membership, Standing, UserType};
use crate::error::{Error, Reason, Result};
use crate::store::PortalPosition;

/// What CreateRealm made.
#[derive(Debug, Clone)]
pub struct RealmCreated {
    pub realm: Realm,
    pub top_level_portal: Portal,
    pub first_admin: Standing,
}

/// A portal, with its realm's settings when the caller may see them.
#[derive(Debug, Clone)]
pub struct PortalView {
    pub portal: Portal,
    pub realm: Option<Realm>,
}

/// One page of ListPortals.
#[derive(Debug, Clone)]
pub struct PortalPage {
    pub portals: Vec<Portal>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PortalPosition>,
}

impl Services {
    /// P2: an operator creates the realm, its top-level portal (P1) and its
    /// first top-level admin, who has settings access.
    pub async fn create_realm(
        &self,
        caller: &Caller,
        new: NewRealm,
        request_id: Option<RequestId>,
    ) -> Result<RealmCreated> {
        require_operator(caller)?;
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let scope = format!("CreateRealm/{}", Actor::from(caller.principal()).id);
        let key = super::idempotency(&request_id, &scope);
        if let Some(key) = &key
            && let Some(result) = tx.remembered(key).await?
        {
            drop(tx);
            return self.realm_created(&result).await;
        }

        let realm = Realm {
            id: Uuid::now_v7(),
            name: new.name.as_str().to_owned(),
            top_level_portal_id: Uuid::now_v7(),
            plan: new.plan,
            top_level_admins_enrollable: false,
            created_at: now,
            updated_at: now,
        };
        let portal = Portal {
            id: realm.top_level_portal_id,
            realm_id: realm.id,
            parent_id: None,
            name: new.top_level_portal_name.as_str().to_owned(),
            subdomain: new.subdomain.as_str().to_owned(),
            created_at: now,
        };
        let admin = Account {
            id: Uuid::now_v7(),
            realm_id: realm.id,
            email: new.first_admin_email.as_str().to_owned(),
            display_name: new.first_admin_name.as_str().to_owned(),
            can_access_portal_settings: true,
            invited: false,
            support_grant_id: None,
            created_at: now,
        };
        let membership = Membership {
            portal_id: portal.id,
            user_type: UserType::Admin,
        };
        tx.insert_realm(&realm).await?;
        tx.insert_portal(&portal).await?;
        tx.insert_account(&admin).await?;
        tx.insert_membership(realm.id, admin.id, membership, now)
            .await?;

        let actor = Actor::from(caller.principal());
        tx.record(
            NewAuditEvent::security(realm.id, action::REALM_CREATED, actor.clone())
                .in_portal(portal.id)
                .target("realm", realm.id)
                .detail("name", &realm.name)
                .detail("plan", realm.plan.as_str())
                .detail("subdomain", &portal.subdomain),
        );
        tx.record(
            NewAuditEvent::security(realm.id, action::ADMIN_CREATED, actor)
                .in_portal(portal.id)
                .target("account", admin.id)
                .detail("user_type", UserType::Admin.as_str())
                .detail("top_level", true)
                .detail("can_access_portal_settings", true),
        );
        if let Some(key) = &key {
            tx.remember(key, &format!("{}/{}", realm.id, admin.id))
                .await?;
        }
        tx.commit().await?;
        tracing::info!(realm_id = %realm.id, subdomain = %portal.subdomain, "realm created");
        Ok(RealmCreated {
            first_admin: Standing {
                top_level_portal_id: portal.id,
                memberships: vec![membership],
                account: admin,
                support: None,
            },
            realm,
            top_level_portal: portal,
        })
    }

    /// Rebuilds CreateRealm's answer for a retried request_id.
    async fn realm_created(&self, remembered: &str) -> Result<RealmCreated> {
        let (realm_id, admin_id) = remembered
            .split_once('/')
            .and_then(|(r, a)| Some((Uuid::parse_str(r).ok()?, Uuid::parse_str(a).ok()?)))
            .ok_or_else(|| Error::internal("malformed idempotency result"))?;
        let realm = self
            .store
            .realm(realm_id)
            .await?
            .ok_or_else(|| Error::internal("remembered realm is gone"))?;
        let top_level_portal = self
            .store
            .portal(realm.top_level_portal_id)
            .await?
            .ok_or_else(|| Error::internal("remembered portal is gone"))?;
        let first_admin = self
            .store
            .standing(realm_id, admin_id)
            .await?
            .ok_or_else(|| {
                Error::new(
                    Reason::RequestIdReused,
                    "the realm created with this request_id no longer has that admin",
                )
            })?;
        Ok(RealmCreated {
            realm,
            top_level_portal,
            first_admin,
        })
    }

    /// P3: only a top-level admin with settings access creates sub-portals;
    /// their parent is the realm's top-level portal (P1).
    pub async fn create_sub_portal(
        &self,
        caller: &Caller,
        new: NewSubPortal,
        request_id: Option<RequestId>,
    ) -> Result<Portal> {
        require_account_of(caller, new.realm_id)?;
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let realm = tx
            .lock_realm(new.realm_id)
            .await?
            .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", new.realm_id))?;
        // Decided under the realm lock: a concurrent demotion cannot slip
        // between this check and the insert.
        let standing = fresh_standing(&tx, caller).await?;
        require_full_top_level_admin(&standing)?;

        let scope = format!("CreateSubPortal/{}", standing.account.id);
        let key = super::idempotency(&request_id, &scope);
        if let Some(key) = &key
            && let Some(id) = tx.remembered_id(key).await?
        {
            return tx
                .portal(id)
                .await?
                .ok_or_else(|| Error::internal("remembered portal is gone"));
        }

        let portal = Portal {
            id: Uuid::now_v7(),
            realm_id: realm.id,
            parent_id: Some(realm.top_level_portal_id),
            name: new.name.as_str().to_owned(),
            subdomain: new.subdomain.as_str().to_owned(),
            created_at: now,
        };
        tx.insert_portal(&portal).await?;
        tx.record(
            NewAuditEvent::security(
                realm.id,
                action::PORTAL_CREATED,
                Actor::from(caller.principal()),
            )
            .in_portal(portal.id)
            .target("portal", portal.id)
            .detail("name", &portal.name)
            .detail("subdomain", &portal.subdomain),
        );
        if let Some(key) = &key {
            tx.remember(key, &portal.id.to_string()).await?;
        }
        tx.commit().await?;
        Ok(portal)
    }

    /// A portal the caller can see; anything else is NOT_FOUND.
    pub async fn get_portal(&self, caller: &Caller, portal_id: Uuid) -> Result<PortalView> {
        let not_found = || Error::not_found(Reason::PortalNotFound, "portal", portal_id);
        // SPEC §5: the kind first, so no id's existence leaks to a caller
        // who may not ask.
        if matches!(caller, Caller::Other(_)) && !caller.is_operator() {
            return Err(wrong_kind(caller, "an operator or an account"));
        }
        let portal = self.store.portal(portal_id).await?.ok_or_else(not_found)?;
        let sees_settings = match caller {
            Caller::Other(_) if caller.is_operator() => true,
            Caller::Account { standing, .. } => {
                if standing.account.realm_id != portal.realm_id
                    || !standing.can_see_portal(portal.id, self.now())
                {
                    return Err(not_found());
                }
                standing.is_top_level_admin()
            }
            Caller::ApiClient {
                portal: key_portal,
                top_level,
                ..
            } => {
                if key_portal.realm_id != portal.realm_id
                    || !(*top_level || key_portal.id == portal.id)
                {
                    return Err(not_found());
                }
                false
            }
            Caller::Other(_) => return Err(wrong_kind(caller, "an operator or an account")),
        };
        let realm = if sees_settings {
            self.store.realm(portal.realm_id).await?
        } else {
            None
        };
        Ok(PortalView { portal, realm })
    }

    /// The realm's portals the caller can see: all of them for operators and
    /// top-level admins, the portals they belong to for everyone else.
    pub async fn list_portals(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        after: Option<PortalPosition>,
        page_size: u64,
    ) -> Result<PortalPage> {
        let only: Option<Vec<Uuid>> = match caller {
            Caller::Other(_) if caller.is_operator() => {
                self.store
                    .realm(realm_id)
                    .await?
                    .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", realm_id))?;
                None
            }
            Caller::Account { .. } => {
                let standing = require_account_of(caller, realm_id)?;
                if standing.is_top_level_admin() {
                    None
                } else {
                    let now = self.now();
                    let mut visible: Vec<Uuid> = standing
                        .memberships
                        .iter()
                        .map(|m| m.portal_id)
                        .chain(standing.support.map(|s| s.portal_id))
                        .filter(|p| standing.can_see_portal(*p, now))
                        .collect();
                    visible.sort();
                    visible.dedup();
                    Some(visible)
                }
            }
            Caller::ApiClient {
                portal, top_level, ..
            } => {
                if portal.realm_id != realm_id {
                    return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
                }
                (!top_level).then(|| vec![portal.id])
            }
            Caller::Other(_) => return Err(wrong_kind(caller, "an operator or an account")),
        };
        // One extra row tells whether another page exists.
        let mut rows = self
            .store
            .list_portals(realm_id, only.as_deref(), after, page_size + 1)
            .await?;
        let next = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|(_, position)| *position)
        } else {
            None
        };
        Ok(PortalPage {
            portals: rows.into_iter().map(|(portal, _)| portal).collect(),
            next,
        })
    }

    /// P5, A7: plan and vendor-only settings change by an operator only.
    pub async fn update_realm_settings(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        change: RealmSettingsChange,
    ) -> Result<Realm> {
        require_operator(caller)?;
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let realm = tx
            .lock_realm(realm_id)
            .await?
            .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", realm_id))?;
        let (updated, changed) = change.apply_to(&realm, now);
        if !changed {
            return Ok(realm);
        }
        tx.update_realm(&updated).await?;
        let mut event = NewAuditEvent::security(
            realm_id,
            action::REALM_SETTINGS_CHANGED,
            Actor::from(caller.principal()),
        )
        .target("realm", realm_id);
        if updated.plan != realm.plan {
            event = event
                .detail("plan.old", realm.plan.as_str())
                .detail("plan.new", updated.plan.as_str());
        }
        if updated.top_level_admins_enrollable != realm.top_level_admins_enrollable {
            event = event
                .detail(
                    "top_level_admins_enrollable.old",
                    realm.top_level_admins_enrollable,
                )
                .detail(
                    "top_level_admins_enrollable.new",
                    updated.top_level_admins_enrollable,
                );
        }
        tx.record(event);
        tx.commit().await?;
        Ok(updated)
    }
}

/// The caller's standing re-read inside the transaction, after the realm
/// lock: authorization decided on it cannot go stale before commit.
pub(crate) async fn fresh_standing(
    tx: &crate::store::WriteTx,
    caller: &Caller,
) -> Result<Standing> {
    let standing = caller
        .standing()
        .ok_or_else(|| wrong_kind(caller, "an account"))?;
    tx.standing(standing.account.realm_id, standing.account.id)
        .await?
        .ok_or_else(|| {
            Error::new(
                Reason::UnknownAccount,
                "the token's account no longer exists",
            )
        })
}

pub(crate) fn require_full_top_level_admin(standing: &Standing) -> Result<()> {
    if standing.is_full_top_level_admin() {
        Ok(())
    } else if standing.is_top_level_admin() {
        Err(Error::permission_denied(
            Reason::SettingsAccessRequired,
            "this needs a top-level admin with settings access",
        ))
    } else {
        Err(Error::permission_denied(
            Reason::TopLevelAdminRequired,
            "this needs a top-level admin with settings access",
        ))
    }
}
