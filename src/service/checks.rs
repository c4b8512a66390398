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

impl Services {
    /// The account asked about and the portal, as the caller may see them:
    /// itself, an account it administers, or anyone for a service with
    /// `permissions.check`.
    async fn subject(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        user_id: Option<Uuid>,
    ) -> Result<(Standing, Portal)> {
        let not_found_user = |id: Uuid| Error::not_found(Reason::UserNotFound, "user", id);
        let not_found_portal = || Error::not_found(Reason::PortalNotFound, "portal", portal_id);
        let (standing, realm_id) = match (caller, user_id) {
            (Caller::Account { standing, .. }, None) => {
                ((**standing).clone(), standing.account.realm_id)
            }
            (Caller::Account { standing, .. }, Some(id)) if id == standing.account.id => {
                ((**standing).clone(), standing.account.realm_id)
            }
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
            (Caller::Account { .. } | Caller::ApiClient { .. }, Some(id)) => {
                let realm_id = super::acting::realm_of(caller)?;
                let target = self
                    .store
                    .standing(realm_id, id)
                    .await?
                    .ok_or_else(|| not_found_user(id))?;
                let reader = self.reader_grantor(caller);
                if !reader.is_some_and(|r| r.grantor().administers(&target, self.now())) {
                    return Err(not_found_user(id));
                }
                (target, realm_id)
            }
            (Caller::ApiClient { .. }, None) => {
                return Err(Error::invalid(
                    "user_id",
                    "is required for an API key caller",
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
        };
        let portal = self
            .store
            .portal(portal_id)
            .await?
            .filter(|p| p.realm_id == realm_id)
            .ok_or_else(not_found_portal)?;
        Ok((standing, portal))
    }

    pub async fn effective_permissions(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        user_id: Option<Uuid>,
    ) -> Result<EffectivePermissions> {
        let (standing, portal) = self.subject(caller, portal_id, user_id).await?;
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
        let (standing, portal) = self.subject(caller, portal_id, Some(user_id)).await?;
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
