//! G6: a first-use grant's clock starts at the temporary admin's first use:
//! its first authenticated call, or the first CheckPermission (or
//! GetEffectivePermissions) about it, whichever comes first.
//!
//! Decided in the database exactly once: a conditional update
//! (`… WHERE starts_at IS NULL AND expires_at > now`) under the realm lock,
//! so of two replicas seeing the first use at the same moment one claims
//! and records `support_access.claimed`, the other changes nothing. The
//! claim is an audited change, so it invalidates the realm in every
//! replica's read cache like any grant change.

use uuid::Uuid;

use crate::domain::Standing;
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::error::Result;
use crate::service::Services;

impl Services {
    /// Claims the unclaimed first-use grant of `standing`, if any, and
    /// returns the standing as it is afterwards (re-read only when there
    /// was something to claim, so the hot path pays nothing otherwise).
    pub(crate) async fn claim_on_first_use(
        &self,
        standing: Standing,
        used_by: &crate::domain::Principal,
        how: &str,
    ) -> Result<Standing> {
        let now = self.now();
        let Some(grant_id) = standing.unclaimed_support_grant(now) else {
            return Ok(standing);
        };
        self.claim_grant(
            standing.account.realm_id,
            grant_id,
            Actor::from(used_by),
            how,
        )
        .await?;
        Ok(self
            .store
            .fresh_standing(standing.account.realm_id, standing.account.id)
            .await?
            .unwrap_or(standing))
    }

    async fn claim_grant(
        &self,
        realm_id: Uuid,
        grant_id: Uuid,
        used_by: Actor,
        how: &str,
    ) -> Result<bool> {
        let mut tx = self.store.begin_write(self.now()).await?;
        if tx.lock_realm(realm_id).await?.is_none() {
            return Ok(false);
        }
        let Some(grant) = tx.grant(grant_id).await? else {
            return Ok(false);
        };
        if !tx.claim_grant(grant.id, grant.duration).await? {
            // Claimed by another replica or call first, or lapsed.
            return Ok(false);
        }
        let now = tx.now();
        tx.record(
            NewAuditEvent::support(realm_id, action::SUPPORT_CLAIMED, used_by)
                .for_request(grant.access_request_id)
                .in_portal(grant.portal_id)
                .target("support_grant", grant.id)
                .detail("access_request_id", grant.access_request_id)
                .detail("temporary_admin_id", grant.temporary_account_id)
                .detail("start_time", now.to_rfc3339())
                .detail("expire_time", (now + grant.duration).to_rfc3339())
                .detail("claimed_by", how),
        );
        tx.commit().await?;
        Ok(true)
    }
}
