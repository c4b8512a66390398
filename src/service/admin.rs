//! AdminService use cases (A1-A19). Every change goes through the one grant
//! function, `Grantor::authorize`, under the realm lock; A16 is counted in
//! the same transaction.

use std::collections::HashSet;

use uuid::Uuid;

use super::acting::{Acting, account_in, lock_and_act, portal_in, target_in};
use super::{Caller, RequestId, Services};
use crate::domain::admin_rules::{Change, Decision, LastAdminGuard, RealmFacts};
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::domain::portal::Realm;
use crate::domain::{Account, DisplayName, Email, Membership, Standing, UserType};
use crate::error::{Error, Reason, Result};
use crate::store::WriteTx;

/// What CreateUser needs, already validated.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub portal_id: Uuid,
    pub email: Email,
    pub display_name: DisplayName,
    pub user_type: UserType,
    pub invite: bool,
    pub settings: Option<bool>,
}

/// The account after SetUserType, and the memberships A18 removed.
#[derive(Debug, Clone)]
pub struct TypeChanged {
    pub user: Standing,
    pub removed_portal_ids: Vec<Uuid>,
}

/// A page of ListUsers.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<Standing>,
    pub next: Option<Uuid>,
}

pub(super) fn facts(realm: &Realm) -> RealmFacts {
    RealmFacts {
        top_level_portal_id: realm.top_level_portal_id,
    }
}

impl Services {
    /// A5, A8, A10, A11, A13: an admin (or an API key) creates an account
    /// with one membership, or invites it.
    pub async fn create_user(
        &self,
        caller: &Caller,
        new: NewUser,
        request_id: Option<RequestId>,
    ) -> Result<Standing> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let portal = portal_in(&tx, &realm, new.portal_id).await?;
        let decision = acting.grantor().authorize(
            None,
            Change::Create {
                portal_id: portal.id,
                user_type: new.user_type,
                settings: new.settings,
                invite: new.invite,
            },
            facts(&realm),
            now,
        )?;

        let scope = format!("CreateUser/{}", Actor::from(caller.principal()).id);
        let key = super::idempotency(&request_id, &scope);
        if let Some(key) = &key
            && let Some(id) = tx.remembered_id(key).await?
        {
            return account_in(&tx, &realm, id).await;
        }

        let account = Account {
            id: Uuid::now_v7(),
            realm_id: realm.id,
            email: new.email.as_str().to_owned(),
            display_name: new.display_name.as_str().to_owned(),
            can_access_portal_settings: decision.settings_access,
            invited: new.invite,
            support_grant_id: None,
            created_at: now,
        };
        let membership = Membership {
            portal_id: portal.id,
            user_type: new.user_type,
        };
        tx.insert_account(&account).await?;
        tx.insert_membership(realm.id, account.id, membership, now)
            .await?;
        tx.record(created_event(
            caller,
            &acting,
            &portal,
            &account,
            new.user_type,
            new.invite,
        ));
        if let Some(key) = &key {
            tx.remember(key, &account.id.to_string()).await?;
        }
        tx.commit().await?;
        Ok(Standing {
            account,
            top_level_portal_id: realm.top_level_portal_id,
            memberships: vec![membership],
            support: None,
        })
    }

    /// An account the caller administers (or the caller itself). A21 and
    /// SPEC §5: a caller who does not see the whole realm gets the same
    /// PERMISSION_DENIED for an account it may not see and for one that
    /// does not exist.
    pub async fn get_user(&self, caller: &Caller, user_id: Uuid) -> Result<Standing> {
        let realm_id = super::acting::realm_of(caller)?;
        if let Some(me) = caller.standing()
            && me.account.id == user_id
        {
            return Ok(me.clone());
        }
        let target = self.store.standing(realm_id, user_id).await?;
        let now = self.now();
        let reader = self.reader_grantor(caller);
        let reader = reader.as_ref().map(Acting::grantor);
        match (target, reader) {
            (Some(target), Some(reader)) if reader.administers(&target, now) => {
                Ok(self.visible_part(caller, target))
            }
            (None, Some(reader)) if reader.sees_whole_realm() => {
                Err(Error::not_found(Reason::UserNotFound, "user", user_id))
            }
            _ => Err(Error::permission_denied(
                Reason::AdminRequired,
                "reading an account needs admin rights in one of its portals",
            )),
        }
    }

    /// A6, S10: a portal's users for one of its admins. Top-level admins are
    /// never listed in a sub-portal; temporary support admins are marked.
    pub async fn list_users(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        after: Option<Uuid>,
        page_size: u64,
    ) -> Result<UserPage> {
        let realm_id = super::acting::realm_of(caller)?;
        let portal = self
            .store
            .portal(portal_id)
            .await?
            .filter(|p| p.realm_id == realm_id)
            .ok_or_else(|| Error::not_found(Reason::PortalNotFound, "portal", portal_id))?;
        let now = self.now();
        let reader = self.reader_grantor(caller);
        if !reader
            .as_ref()
            .is_some_and(|g| g.grantor().is_admin_in(portal.id, now))
        {
            return Err(Error::permission_denied(
                Reason::AdminRequired,
                "listing users needs admin rights in the portal",
            ));
        }
        let mut users = Vec::new();
        let mut cursor = after;
        // Skipped top-level admins must not shorten a page, so read on.
        loop {
            let batch = self
                .store
                .list_members(
                    realm_id,
                    portal.id,
                    cursor,
                    page_size + 1 - users.len() as u64,
                )
                .await?;
            let exhausted = (batch.len() as u64) < page_size + 1 - users.len() as u64;
            for standing in batch {
                cursor = Some(standing.account.id);
                if portal.is_top_level() || !standing.is_top_level_admin() {
                    users.push(standing);
                }
            }
            if exhausted || users.len() as u64 > page_size {
                break;
            }
        }
        let next = if users.len() as u64 > page_size {
            users.truncate(page_size as usize);
            users.last().map(|u| u.account.id)
        } else {
            None
        };
        Ok(UserPage {
            users: users
                .into_iter()
                .map(|u| self.visible_part(caller, u))
                .collect(),
            next,
        })
    }

    /// A2, A3, A5, A13, A15, A16, A18: adds or changes a membership.
    pub async fn set_user_type(
        &self,
        caller: &Caller,
        user_id: Uuid,
        portal_id: Uuid,
        user_type: UserType,
        settings: Option<bool>,
    ) -> Result<TypeChanged> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let portal = portal_in(&tx, &realm, portal_id).await?;
        let target = target_in(&tx, &realm, &acting, user_id).await?;
        let change = Change::SetType {
            portal_id: portal.id,
            user_type,
            settings,
        };
        let decision = acting
            .grantor()
            .authorize(Some(&target), change, facts(&realm), now)?;
        guard_last_admin(&tx, &realm, &decision).await?;

        let previous = target.membership_in(portal.id);
        tx.set_membership(
            realm.id,
            target.account.id,
            Membership {
                portal_id: portal.id,
                user_type,
            },
            now,
        )
        .await?;
        let removed = if decision.drop_sub_portal_memberships {
            tx.delete_sub_portal_memberships(target.account.id, realm.top_level_portal_id)
                .await?
        } else {
            Vec::new()
        };
        self.apply_settings(&mut tx, caller, &realm, &target, decision.settings_access)
            .await?;
        if previous != Some(user_type) || !removed.is_empty() {
            let mut event = NewAuditEvent::security(
                realm.id,
                action::USER_TYPE_CHANGED,
                Actor::from(caller.principal()),
            )
            .in_portal(portal.id)
            .target("account", target.account.id)
            .detail("user_type.old", previous.map_or("none", UserType::as_str))
            .detail("user_type.new", user_type.as_str());
            if !removed.is_empty() {
                let ids: Vec<String> = removed.iter().map(Uuid::to_string).collect();
                event = event.detail("removed_portal_ids", ids.join(","));
            }
            tx.record(event);
        }
        let user = account_in(&tx, &realm, target.account.id).await?;
        tx.commit().await?;
        Ok(TypeChanged {
            user: self.visible_part(caller, user),
            removed_portal_ids: removed,
        })
    }

    /// A15, A16: removes one membership.
    pub async fn remove_user_from_portal(
        &self,
        caller: &Caller,
        user_id: Uuid,
        portal_id: Uuid,
    ) -> Result<Standing> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let portal = portal_in(&tx, &realm, portal_id).await?;
        let target = target_in(&tx, &realm, &acting, user_id).await?;
        let decision = acting.grantor().authorize(
            Some(&target),
            Change::Remove {
                portal_id: portal.id,
            },
            facts(&realm),
            now,
        )?;
        guard_last_admin(&tx, &realm, &decision).await?;
        let previous = target.membership_in(portal.id);
        tx.delete_membership(target.account.id, portal.id).await?;
        self.apply_settings(&mut tx, caller, &realm, &target, decision.settings_access)
            .await?;
        tx.record(
            NewAuditEvent::security(
                realm.id,
                action::MEMBERSHIP_REMOVED,
                Actor::from(caller.principal()),
            )
            .in_portal(portal.id)
            .target("account", target.account.id)
            .detail("user_type.old", previous.map_or("none", UserType::as_str)),
        );
        let user = account_in(&tx, &realm, target.account.id).await?;
        tx.commit().await?;
        Ok(self.visible_part(caller, user))
    }

    /// A15, A16: deletes an account and its memberships.
    pub async fn delete_user(&self, caller: &Caller, user_id: Uuid) -> Result<()> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let target = target_in(&tx, &realm, &acting, user_id).await?;
        let decision =
            acting
                .grantor()
                .authorize(Some(&target), Change::Delete, facts(&realm), now)?;
        guard_last_admin(&tx, &realm, &decision).await?;
        tx.delete_account(target.account.id).await?;
        let was_admin = target
            .memberships
            .iter()
            .any(|m| m.user_type == UserType::Admin);
        tx.record(
            NewAuditEvent::security(
                realm.id,
                action::USER_DELETED,
                Actor::from(caller.principal()),
            )
            .target("account", target.account.id)
            .detail("email", &target.account.email)
            .detail("admin", was_admin)
            .detail("top_level_admin", target.is_top_level_admin()),
        );
        tx.commit().await?;
        Ok(())
    }

    /// A9, A11, A12, A14-A17: settings access on or off, account-wide.
    /// API keys are left as they are (A17).
    pub async fn update_admin_permissions(
        &self,
        caller: &Caller,
        user_id: Uuid,
        on: bool,
    ) -> Result<Standing> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, acting) = lock_and_act(&tx, caller).await?;
        let target = target_in(&tx, &realm, &acting, user_id).await?;
        let decision = acting.grantor().authorize(
            Some(&target),
            Change::SetSettingsAccess(on),
            facts(&realm),
            now,
        )?;
        guard_last_admin(&tx, &realm, &decision).await?;
        self.apply_settings(&mut tx, caller, &realm, &target, decision.settings_access)
            .await?;
        let user = account_in(&tx, &realm, target.account.id).await?;
        tx.commit().await?;
        Ok(self.visible_part(caller, user))
    }

    /// Writes a changed settings flag and its event; `true` if it changed.
    async fn apply_settings(
        &self,
        tx: &mut WriteTx,
        caller: &Caller,
        realm: &Realm,
        target: &Standing,
        settings: bool,
    ) -> Result<bool> {
        if settings == target.account.can_access_portal_settings {
            return Ok(false);
        }
        tx.set_settings_access(target.account.id, settings).await?;
        tx.record(
            NewAuditEvent::security(
                realm.id,
                action::SETTINGS_ACCESS_CHANGED,
                Actor::from(caller.principal()),
            )
            .target("account", target.account.id)
            .detail(
                "can_access_portal_settings.old",
                target.account.can_access_portal_settings,
            )
            .detail("can_access_portal_settings.new", settings),
        );
        Ok(true)
    }

    /// The caller as a reader of users (no lock needed for reads).
    pub(crate) fn reader_grantor(&self, caller: &Caller) -> Option<Acting> {
        match caller {
            Caller::Account {
                standing,
                principal,
            } => Some(Acting::Account {
                standing: (**standing).clone(),
                channel: principal
                    .channel()
                    .unwrap_or(crate::domain::Channel::Interactive),
            }),
            Caller::ApiClient {
                portal, top_level, ..
            } => Some(Acting::ApiKey {
                portal: portal.clone(),
                top_level: *top_level,
            }),
            Caller::Other(_) => None,
        }
    }

    /// Only the memberships in portals the caller administers, unless the
    /// caller sees the whole realm (a top-level admin or top-level key).
    fn visible_part(&self, caller: &Caller, mut user: Standing) -> Standing {
        let Some(reader) = self.reader_grantor(caller) else {
            return user;
        };
        let now = self.now();
        if let Some(me) = reader.standing()
            && me.account.id == user.account.id
        {
            return user;
        }
        let seen: HashSet<Uuid> = user
            .memberships
            .iter()
            .map(|m| m.portal_id)
            .filter(|p| reader.grantor().is_admin_in(*p, now))
            .collect();
        user.memberships.retain(|m| seen.contains(&m.portal_id));
        user
    }
}

/// The event of a new account (A5, A10): `admin.created` or
/// `user.created`, with the channel it came through.
pub(super) fn created_event(
    caller: &Caller,
    acting: &Acting,
    portal: &crate::domain::portal::Portal,
    account: &Account,
    user_type: UserType,
    invite: bool,
) -> NewAuditEvent {
    let event_action = if user_type == UserType::Admin {
        action::ADMIN_CREATED
    } else {
        action::USER_CREATED
    };
    NewAuditEvent::security(
        account.realm_id,
        event_action,
        Actor::from(caller.principal()),
    )
    .in_portal(portal.id)
    .target("account", account.id)
    .detail("user_type", user_type.as_str())
    .detail(
        "top_level",
        portal.is_top_level() && user_type == UserType::Admin,
    )
    .detail(
        "can_access_portal_settings",
        account.can_access_portal_settings,
    )
    .detail("channel", acting.grantor().channel().as_str())
    .detail("invite", invite)
}

/// A16: refuses a change that would leave the realm without a full
/// top-level admin. Counted under the realm lock the caller holds.
async fn guard_last_admin(tx: &WriteTx, realm: &Realm, decision: &Decision) -> Result<()> {
    if decision.may_remove_full_top_level_admin {
        let full_top_level_admins = tx
            .count_full_top_level_admins(realm.top_level_portal_id)
            .await?;
        LastAdminGuard {
            full_top_level_admins,
        }
        .allows_removing_one()?;
    }
    Ok(())
}
