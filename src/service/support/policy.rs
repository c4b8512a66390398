//! G1, G2: the realm's support-access policy. Full top-level admins and
//! support agents read it (support must know what a request will need);
//! only full top-level admins change it, never temporary admins. Every
//! change is one security event with the old and new values.

use uuid::Uuid;

use super::grants::require_quorum;
use super::{lock_support_manager, support_manager_of};
use crate::domain::Principal;
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::domain::governance::{
    RequiredApprovals, SupportAccessLevel, SupportPolicy, levels_to_stored,
};
use crate::domain::support::{SupportDuration, SupportGrant};
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Services};

/// What UpdateSupportAccessPolicy changes; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub enabled: Option<bool>,
    pub max_duration: Option<SupportDuration>,
    pub required_approvals: Option<RequiredApprovals>,
    pub allowed_levels: Option<Vec<SupportAccessLevel>>,
}

/// The policy after a change, and the grants still running (G2).
#[derive(Debug, Clone)]
pub struct PolicyUpdated {
    pub policy: SupportPolicy,
    pub open_grants: Vec<SupportGrant>,
    pub changed: bool,
}

impl Services {
    /// G1: the realm's policy.
    pub async fn get_support_access_policy(
        &self,
        caller: &Caller,
        realm_id: Uuid,
    ) -> Result<SupportPolicy> {
        match caller.principal() {
            Principal::SupportAgent(_) => {
                if self.store.realm(realm_id).await?.is_none() {
                    return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
                }
            }
            _ => {
                support_manager_of(caller, realm_id)?;
            }
        }
        self.store.support_policy(realm_id).await
    }

    /// G1, G2, G5: changes the realm's policy.
    pub async fn update_support_access_policy(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        change: PolicyChange,
    ) -> Result<PolicyUpdated> {
        support_manager_of(caller, realm_id)?;
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, admin) = lock_support_manager(&tx, caller).await?;
        let old = tx.support_policy(realm.id).await?;
        let new = SupportPolicy {
            enabled: change.enabled.unwrap_or(old.enabled),
            max_duration: change.max_duration.unwrap_or(old.max_duration),
            required_approvals: change.required_approvals.unwrap_or(old.required_approvals),
            allowed_levels: change
                .allowed_levels
                .unwrap_or_else(|| old.allowed_levels.clone()),
        };
        // G5: never ask for more approvals than the realm can give; lowering
        // is always allowed, so a realm that lost admins can recover.
        if new.required_approvals > old.required_approvals {
            require_quorum(&tx, &realm, new.required_approvals.get()).await?;
        }
        let changed = new != old;
        if changed {
            tx.save_support_policy(realm.id, &new, &admin.account.id.to_string())
                .await?;
            tx.record(
                NewAuditEvent::security(
                    realm.id,
                    action::SUPPORT_POLICY_CHANGED,
                    Actor::from(caller.principal()),
                )
                .target("realm", realm.id)
                .detail("enabled.old", old.enabled)
                .detail("enabled", new.enabled)
                .detail(
                    "max_duration_seconds.old",
                    old.max_duration.get().num_seconds(),
                )
                .detail("max_duration_seconds", new.max_duration.get().num_seconds())
                .detail("required_approvals.old", old.required_approvals.get())
                .detail("required_approvals", new.required_approvals.get())
                .detail("allowed_levels.old", levels_to_stored(&old.allowed_levels))
                .detail("allowed_levels", levels_to_stored(&new.allowed_levels)),
            );
        }
        let open_grants = tx.open_grants_of_realm(realm.id).await?;
        tx.commit().await?;
        Ok(PolicyUpdated {
            policy: new,
            open_grants,
            changed,
        })
    }
}
