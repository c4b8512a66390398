//! S3-S8: the portals' support-access status, allowing (and extending,
//! S5) and revoking grants with their temporary support admins, and the
//! sweeper that ends lapsed grants and requests exactly once.

use uuid::Uuid;

use super::{
    AccessResult, PortalAccessPage, PortalAccessView, SWEEP_BATCH, SweepReport, by_realm,
    end_grant, lock_support_manager, portals_named, request_event, support_manager_of,
    temporary_admin_name,
};
use crate::domain::Account;
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::domain::support::{
    AccessRequestState, GrantEnd, SupportDuration, SupportGrant, may_allow, temporary_admin_email,
};
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Services};

impl Services {
    /// S3: every portal of the realm with its green or red dot.
    pub async fn list_portal_access(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        after: Option<crate::store::PortalPosition>,
        page_size: u64,
    ) -> Result<PortalAccessPage> {
        support_manager_of(caller, realm_id)?;
        let now = self.now();
        let mut rows = self
            .store
            .list_portals(realm_id, None, after, page_size + 1)
            .await?;
        let next = if rows.len() as u64 > page_size {
            rows.truncate(page_size as usize);
            rows.last().map(|(_, position)| *position)
        } else {
            None
        };
        let ids: Vec<Uuid> = rows.iter().map(|(p, _)| p.id).collect();
        let mut grants = self.store.open_grants(&ids).await?;
        Ok(PortalAccessPage {
            portals: rows
                .into_iter()
                .map(|(portal, _)| PortalAccessView {
                    grant: grants.remove(&portal.id).filter(|g| g.is_active_at(now)),
                    portal,
                })
                .collect(),
            next,
        })
    }

    /// S4-S6: allows (or extends, S5) support access to each portal named,
    /// all or nothing. Each new grant gets its own temporary support admin,
    /// an admin of that one portal.
    pub async fn allow_access(
        &self,
        caller: &Caller,
        access_request_id: Uuid,
        portal_ids: &[Uuid],
        duration: SupportDuration,
    ) -> Result<Vec<AccessResult>> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, admin) = lock_support_manager(&tx, caller).await?;
        let actor = Actor::from(caller.principal());
        let request = tx
            .access_request(access_request_id)
            .await?
            .filter(|r| r.realm_id == realm.id)
            .ok_or_else(|| {
                Error::not_found(
                    Reason::AccessRequestNotFound,
                    "access request",
                    access_request_id,
                )
            })?;
        let portals = portals_named(&tx, &realm, portal_ids).await?;
        if !may_allow(
            &request,
            now,
            tx.request_has_active_grant(request.id).await?,
        ) {
            return Err(Error::new(
                Reason::AccessRequestNotOpen,
                format!(
                    "the access request is {}; support must open a new one",
                    request.state_at(now).as_str()
                ),
            ));
        }
        let expires_at = now + duration.get();
        let open = tx.open_grants(portal_ids).await?;
        let mut results = Vec::with_capacity(portals.len());
        let mut created: Vec<(SupportGrant, Account)> = Vec::new();
        let mut extended: Vec<Uuid> = Vec::new();
        for portal in &portals {
            match open.get(&portal.id) {
                Some(grant) if grant.is_active_at(now) => {
                    extended.push(grant.id);
                    tx.record(
                        NewAuditEvent::support(realm.id, action::SUPPORT_EXTENDED, actor.clone())
                            .for_request(request.id)
                            .in_portal(portal.id)
                            .target("support_grant", grant.id)
                            .detail("access_request_id", request.id)
                            .detail("expire_time.old", grant.expires_at.to_rfc3339())
                            .detail("expire_time", expires_at.to_rfc3339())
                            .detail("extended", true),
                    );
                    results.push(AccessResult {
                        portal_id: portal.id,
                        grant: Some(SupportGrant {
                            expires_at,
                            ..grant.clone()
                        }),
                        extended: true,
                    });
                    continue;
                }
                Some(lapsed) => {
                    // Past expiry but not swept yet: it expires now, once.
                    end_grant(&mut tx, lapsed, GrantEnd::Expired, Actor::system()).await?;
                }
                None => {}
            }
            let grant = SupportGrant {
                id: Uuid::now_v7(),
                realm_id: realm.id,
                portal_id: portal.id,
                access_request_id: request.id,
                temporary_account_id: Uuid::now_v7(),
                created_at: now,
                expires_at,
            };
            let account = Account {
                id: grant.temporary_account_id,
                realm_id: realm.id,
                email: temporary_admin_email(grant.id),
                display_name: temporary_admin_name(&request.agent_name),
                // S10: settings access in its one portal; the grant function
                // refuses what a temporary admin may not do.
                can_access_portal_settings: true,
                invited: false,
                support_grant_id: Some(grant.id),
                created_at: now,
            };
            tx.record(
                NewAuditEvent::support(realm.id, action::SUPPORT_ALLOWED, actor.clone())
                    .for_request(request.id)
                    .in_portal(portal.id)
                    .target("support_grant", grant.id)
                    .detail("access_request_id", request.id)
                    .detail("expire_time", expires_at.to_rfc3339())
                    .detail("duration_seconds", duration.get().num_seconds())
                    .detail("extended", false),
            );
            tx.record(
                NewAuditEvent::support(realm.id, action::TEMPORARY_ADMIN_CREATED, actor.clone())
                    .for_request(request.id)
                    .in_portal(portal.id)
                    .target("account", account.id)
                    .detail("support_grant_id", grant.id)
                    .detail("expire_time", expires_at.to_rfc3339()),
            );
            results.push(AccessResult {
                portal_id: portal.id,
                grant: Some(grant.clone()),
                extended: false,
            });
            created.push((grant, account));
        }
        tx.extend_grants(&extended, expires_at).await?;
        tx.insert_grants_with_admins(&created).await?;
        if request.state_at(now) == AccessRequestState::Pending {
            tx.decide_access_request(
                request.id,
                AccessRequestState::Pending,
                AccessRequestState::Approved,
                Some(admin.account.id.to_string()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(results)
    }

    /// S7: ends support access to each portal named at once; a portal
    /// without an active grant is simply not accessible.
    pub async fn revoke_access(
        &self,
        caller: &Caller,
        realm_id: Uuid,
        portal_ids: &[Uuid],
    ) -> Result<Vec<AccessResult>> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        if caller.standing().map(|s| s.account.realm_id) != Some(realm_id)
            && matches!(caller, Caller::Account { .. })
        {
            return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
        }
        let (realm, _) = lock_support_manager(&tx, caller).await?;
        let actor = Actor::from(caller.principal());
        let portals = portals_named(&tx, &realm, portal_ids).await?;
        let open = tx.open_grants(portal_ids).await?;
        let mut results = Vec::with_capacity(portals.len());
        for portal in &portals {
            if let Some(grant) = open.get(&portal.id) {
                let (why, by) = if grant.is_active_at(now) {
                    (GrantEnd::Revoked, actor.clone())
                } else {
                    (GrantEnd::Expired, Actor::system())
                };
                end_grant(&mut tx, grant, why, by).await?;
            }
            results.push(AccessResult {
                portal_id: portal.id,
                grant: None,
                extended: false,
            });
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Grants in force now (the active-grants gauge).
    pub async fn active_grant_count(&self) -> Result<u64> {
        self.store.active_grant_count(self.now()).await
    }

    /// S2, S8: ends grants past expiry (deleting their temporary admins) and
    /// pending requests past expiry, recording each exactly once even when
    /// several replicas sweep at the same moment: each is ended by a
    /// conditional update under the realm lock, and a loser sees 0 rows.
    pub async fn sweep_once(&self) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        loop {
            let now = self.now();
            let lapsed = self.store.lapsed_grants(now, SWEEP_BATCH).await?;
            let full = lapsed.len() as u64 == SWEEP_BATCH;
            for (realm_id, grants) in by_realm(lapsed, |g| g.realm_id) {
                let mut tx = self.store.begin_write(now).await?;
                if tx.lock_realm(realm_id).await?.is_none() {
                    continue;
                }
                for grant in &grants {
                    if end_grant(&mut tx, grant, GrantEnd::Expired, Actor::system()).await? {
                        report.grants_expired += 1;
                        let lapse = now - grant.expires_at;
                        report.oldest_lapse = report.oldest_lapse.max(Some(lapse));
                    }
                }
                tx.commit().await?;
            }
            if !full {
                break;
            }
        }
        loop {
            let now = self.now();
            let lapsed = self.store.lapsed_requests(now, SWEEP_BATCH).await?;
            let full = lapsed.len() as u64 == SWEEP_BATCH;
            for (realm_id, requests) in by_realm(lapsed, |r| r.realm_id) {
                let mut tx = self.store.begin_write(now).await?;
                if tx.lock_realm(realm_id).await?.is_none() {
                    continue;
                }
                for request in &requests {
                    if tx
                        .decide_access_request(
                            request.id,
                            AccessRequestState::Pending,
                            AccessRequestState::Expired,
                            None,
                        )
                        .await?
                    {
                        tx.record(
                            request_event(
                                request,
                                action::SUPPORT_REQUEST_EXPIRED,
                                Actor::system(),
                            )
                            .detail("expire_time", request.expires_at.to_rfc3339()),
                        );
                        report.requests_expired += 1;
                    }
                }
                tx.commit().await?;
            }
            if !full {
                break;
            }
        }
        Ok(report)
    }
}
