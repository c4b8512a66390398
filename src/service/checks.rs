//! Permission checks: what other services ask on every page they render.

use uuid::Uuid;

use super::caller::wrong_kind;
use super::{Caller, Services};
use crate::domain::eligibility::{Ineligible, Purpose, eligibility};
use crate::domain::permission::{PermissionSet, effective_permissions};
use crate::domain::portal::Portal;
use crate::domain::{Scope, Standing, UserType};
use crate::error::{Error, Reason, Result};

/// Everything an account may do in a portal.
#[derive(Debug, Clone)]
pub struct EffectivePermissions {
    pub permissions: PermissionSet,
    pub user_type: Option<UserType>,
    pub standing: Standing,
}

/// What a caller asks about an account in a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Question {
    /// Its type and permissions: the account itself may ask (A21).
    Permissions,
    /// Whether it may join a group or course: admins and services only.
    Eligibility,
}

impl Services {
    /// The account asked about and the portal, as the caller may see them
    /// (A21): itself, an account it administers asked about in a portal it
    /// administers, or anyone for a service with `permissions.check`.
    /// Inside the realm the right is checked before existence (SPEC §5),
    /// so a caller without it learns nothing about the account.
    async fn subject(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        user_id: Option<Uuid>,
        question: Question,
    ) -> Result<(Standing, Portal)> {
        let not_found_user = |id: Uuid| Error::not_found(Reason::UserNotFound, "user", id);
        let not_found_portal = || Error::not_found(Reason::PortalNotFound, "portal", portal_id);
        let (standing, realm_id) = match (caller, user_id) {
            (Caller::Other(principal), Some(id))
                if principal.has_scope(Scope::PermissionsCheck) =>
            {
                let realm_id = self
                    .store
                    .account_realm(id)
                    .await?
                    .ok_or_else(|| not_found_user(id))?;
                let standing = self
                    .store
                    .standing(realm_id, id)
                    .await?
                    .ok_or_else(|| not_found_user(id))?;
                (standing, realm_id)
            }
            (Caller::Other(principal), None) if principal.has_scope(Scope::PermissionsCheck) => {
                return Err(Error::invalid(
                    "user_id",
                    "is required for a service caller",
                ));
            }
            (Caller::Other(principal), _) => {
                return Err(
                    if matches!(principal, crate::domain::Principal::Service { .. }) {
                        Error::permission_denied(
                            Reason::MissingScope,
                            "this call needs the permissions.check scope",
                        )
                    } else {
                        wrong_kind(
                            caller,
                            "an account, an API key or a service with permissions.check",
                        )
                    },
                );
            }
            (Caller::ApiClient { .. }, None) => {
                return Err(Error::invalid(
                    "user_id",
                    "is required for an API key caller",
                ));
            }
            (Caller::Account { .. } | Caller::ApiClient { .. }, _) => {
                let realm_id = super::acting::realm_of(caller)?;
                let portal = self
                    .store
                    .portal(portal_id)
                    .await?
                    .filter(|p| p.realm_id == realm_id)
                    .ok_or_else(not_found_portal)?;
                let standing = self
                    .visible_subject(caller, &portal, user_id, question)
                    .await?;
                return Ok((standing, portal));
            }
        };
        let portal = self
            .store
            .portal(portal_id)
            .await?
            .filter(|p| p.realm_id == realm_id)
            .ok_or_else(not_found_portal)?;
        Ok((standing, portal))
    }

    /// A21 for an account or API key caller of the portal's realm.
    async fn visible_subject(
        &self,
        caller: &Caller,
        portal: &Portal,
        user_id: Option<Uuid>,
        question: Question,
    ) -> Result<Standing> {
        let own = caller
            .standing()
            .filter(|me| user_id.is_none_or(|id| id == me.account.id));
        if let Some(me) = own
            && question == Question::Permissions
        {
            return Ok(me.clone());
        }
        let now = self.now();
        let reader = self.reader_grantor(caller);
        let Some(reader) = reader.filter(|r| r.grantor().is_admin_in(portal.id, now)) else {
            return Err(Error::permission_denied(
                Reason::AdminRequired,
                match question {
                    Question::Permissions => {
                        "asking about another account needs admin rights in the portal"
                    }
                    Question::Eligibility => "eligibility is for the portal's admins and services",
                },
            ));
        };
        if let Some(me) = own {
            return Ok(me.clone());
        }
        let id = user_id.expect("an API key caller names the account");
        match self.store.standing(portal.realm_id, id).await? {
            Some(target) if reader.grantor().administers(&target, now) => Ok(target),
            None if reader.grantor().sees_whole_realm() => {
                Err(Error::not_found(Reason::UserNotFound, "user", id))
            }
            _ => Err(Error::permission_denied(
                Reason::AdminRequired,
                "the account is not one you administer",
            )),
        }
    }

    pub async fn effective_permissions(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        user_id: Option<Uuid>,
    ) -> Result<EffectivePermissions> {
        let (standing, portal) = self
            .subject(caller, portal_id, user_id, Question::Permissions)
            .await?;
        // G6: the first check about a temporary admin claims its first-use
        // grant; every other standing passes through without a read.
        let standing = self
            .claim_on_first_use(standing, caller.principal(), "check_permission")
            .await?;
        let now = self.now();
        Ok(EffectivePermissions {
            permissions: effective_permissions(&standing, portal.id, now),
            user_type: standing.effective_type_in(portal.id, now),
            standing,
        })
    }

    /// A6, A7: may the account join the portal's groups or courses?
    pub async fn check_eligibility(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        user_id: Uuid,
        purpose: Purpose,
    ) -> Result<Result<(), Ineligible>> {
        let (standing, portal) = self
            .subject(caller, portal_id, Some(user_id), Question::Eligibility)
            .await?;
        let realm = self
            .store
            .realm(portal.realm_id)
            .await?
            .ok_or_else(|| Error::internal("portal without realm"))?;
        Ok(eligibility(
            &standing,
            portal.id,
            purpose,
            realm.top_level_admins_enrollable,
        ))
    }
}
