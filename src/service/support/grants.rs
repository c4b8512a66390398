//! S3-S8, G2, G3, G6: the portals' support-access status, allowing (and
//! extending, S5) and revoking grants with their temporary support admins,
//! and the sweeper that ends lapsed grants and requests exactly once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    AccessResult, AccessStatus, PortalAccessPage, PortalAccessView, SWEEP_BATCH, SweepReport,
    by_realm, cancel_open_proposal, end_grant, lock_support_manager, portals_named, request_event,
    support_manager_of, temporary_admin_name,
};
use crate::domain::Account;
use crate::domain::audit::{Actor, NewAuditEvent, action};
use crate::domain::governance::{
    GrantPhase, GrantTerms, GrantTiming, Proposal, ProposalState, SupportAccessLevel, SupportPolicy,
};
use crate::domain::portal::{Portal, Realm};
use crate::domain::support::{
    AccessRequest, AccessRequestState, GrantEnd, SupportDuration, SupportGrant, may_allow,
    temporary_admin_email,
};
use crate::error::{Error, Reason, Result};
use crate::service::{Caller, Services};
use crate::store::WriteTx;

/// What AllowAccess asks for, as the message said it (G2, G3, G6): unset
/// fields take the request's or the policy's values.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowTerms {
    pub duration: Option<SupportDuration>,
    pub level: Option<SupportAccessLevel>,
    pub start_at: Option<DateTime<Utc>>,
    /// `Some(window)` for ON_FIRST_USE, with its claim window.
    pub first_use: Option<chrono::Duration>,
}

/// What an AllowAccess did: started grants, or proposed them (G5).
#[derive(Debug, Clone)]
pub struct Allowed {
    pub results: Vec<AccessResult>,
    /// Approvals still missing; 0 once the grants started.
    pub approvals_missing: u8,
}

/// G2: support access is on in the realm.
pub(super) fn require_enabled(policy: &SupportPolicy) -> Result<()> {
    if policy.enabled {
        Ok(())
    } else {
        Err(Error::new(
            Reason::SupportAccessDisabled,
            "support access is disabled by the realm's support-access policy",
        ))
    }
}

/// G2, G3, G6: the allow's terms checked against the request, the policy
/// and the clock.
pub(super) fn resolve_terms(
    asked: AllowTerms,
    request: &AccessRequest,
    policy: &SupportPolicy,
    now: DateTime<Utc>,
) -> Result<GrantTerms> {
    let duration = policy.duration_for(asked.duration).ok_or_else(|| {
        Error::new(
            Reason::PolicyMaxDuration,
            format!(
                "the duration is longer than the realm's maximum of {} seconds",
                policy.max_duration.get().num_seconds()
            ),
        )
    })?;
    let level = asked.level.unwrap_or(request.level);
    if level > request.level {
        return Err(Error::new(
            Reason::SupportLevelNotAllowed,
            format!(
                "support asked for {}; an allow may narrow the level, never widen it",
                request.level.as_str()
            ),
        ));
    }
    check_level_allowed(policy, level)?;
    let timing = match (asked.start_at, asked.first_use) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "start_time",
                "cannot be combined with activation ON_FIRST_USE",
            ));
        }
        (Some(start), None) => GrantTiming::start_at(start, now)
            .map_err(|e| Error::invalid("start_time", e.description))?,
        (None, Some(claim_window)) => GrantTiming::OnFirstUse { claim_window },
        (None, None) => GrantTiming::Immediate,
    };
    Ok(GrantTerms {
        duration,
        level,
        timing,
    })
}

pub(super) fn check_level_allowed(policy: &SupportPolicy, level: SupportAccessLevel) -> Result<()> {
    if policy.allows_level(level) {
        Ok(())
    } else {
        Err(Error::new(
            Reason::SupportLevelNotAllowed,
            format!(
                "the realm's support-access policy does not allow the level {}",
                level.as_str()
            ),
        ))
    }
}

/// G5: the realm still has `required` full top-level admins to approve.
pub(super) async fn require_quorum(tx: &WriteTx, realm: &Realm, required: u8) -> Result<()> {
    let admins = tx
        .count_full_top_level_admins(realm.top_level_portal_id)
        .await?;
    if admins < u64::from(required) {
        return Err(Error::new(
            Reason::QuorumUnreachable,
            format!(
                "the policy asks for {required} approvals but the realm has {admins} full \
                 top-level admins; a full top-level admin may lower required_approvals"
            ),
        ));
    }
    Ok(())
}

/// The open request `access_request_id` of `realm` that an allow or an
/// approval may answer.
pub(super) async fn open_request(
    tx: &WriteTx,
    realm: &Realm,
    access_request_id: Uuid,
) -> Result<AccessRequest> {
    let now = tx.now();
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
    Ok(request)
}

/// Starts (or extends, S5) the grants of `portals` on `terms`, in `tx`:
/// one grant and one temporary support admin per portal, each recorded.
/// Marks a pending request approved by `approver`.
pub(super) async fn start_grants(
    tx: &mut WriteTx,
    realm: &Realm,
    request: &AccessRequest,
    portals: &[Portal],
    terms: &GrantTerms,
    actor: &Actor,
    approver: Uuid,
) -> Result<Vec<AccessResult>> {
    let now = tx.now();
    let duration = terms.duration.get();
    // A proposal approved after its start time starts at once (G5, G6).
    let (starts_at, expires_at, claim_deadline) = match terms.timing {
        GrantTiming::Immediate => (Some(now), now + duration, None),
        GrantTiming::StartAt(start) => {
            let start = start.max(now);
            (Some(start), start + duration, None)
        }
        GrantTiming::OnFirstUse { claim_window } => {
            (None, now + claim_window, Some(now + claim_window))
        }
    };
    let ids: Vec<Uuid> = portals.iter().map(|p| p.id).collect();
    let open = tx.open_grants(&ids).await?;
    let mut results = Vec::with_capacity(portals.len());
    let mut created: Vec<(SupportGrant, Account)> = Vec::new();
    let mut extended: Vec<Uuid> = Vec::new();
    let active_until = now + duration;
    for portal in portals {
        match open.get(&portal.id) {
            Some(grant) if grant.is_open_at(now) => {
                let extended_grant =
                    extend(tx, grant, duration, active_until, &mut extended).await?;
                tx.record(
                    NewAuditEvent::support(realm.id, action::SUPPORT_EXTENDED, actor.clone())
                        .for_request(request.id)
                        .in_portal(portal.id)
                        .target("support_grant", grant.id)
                        .detail("access_request_id", request.id)
                        .detail("expire_time.old", grant.expires_at.to_rfc3339())
                        .detail("expire_time", extended_grant.expires_at.to_rfc3339())
                        .detail("duration_seconds", duration.num_seconds())
                        .detail("phase", phase_name(grant.phase_at(now)))
                        .detail("extended", true),
                );
                results.push(AccessResult {
                    portal_id: portal.id,
                    status: AccessStatus::of_grant(Some(&extended_grant), now),
                    grant: Some(extended_grant),
                    extended: true,
                });
                continue;
            }
            Some(lapsed) => {
                // Past expiry but not swept yet: it expires now, once.
                let why = if lapsed.starts_at.is_none() {
                    GrantEnd::Unclaimed
                } else {
                    GrantEnd::Expired
                };
                end_grant(tx, lapsed, why, Actor::system()).await?;
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
            starts_at,
            expires_at,
            level: terms.level,
            duration,
            claim_deadline,
        };
        let account = Account {
            id: grant.temporary_account_id,
            realm_id: realm.id,
            email: temporary_admin_email(grant.id),
            display_name: temporary_admin_name(&request.agent_name),
            // S10: settings access in its one portal; the grant function
            // refuses what a temporary admin may not do, and a view-only
            // grant's permissions hold none of it (G4).
            can_access_portal_settings: true,
            invited: false,
            support_grant_id: Some(grant.id),
            created_at: now,
        };
        let mut allowed = NewAuditEvent::support(realm.id, action::SUPPORT_ALLOWED, actor.clone())
            .for_request(request.id)
            .in_portal(portal.id)
            .target("support_grant", grant.id)
            .detail("access_request_id", request.id)
            .detail("expire_time", expires_at.to_rfc3339())
            .detail("duration_seconds", duration.num_seconds())
            .detail("level", terms.level.as_str())
            .detail("extended", false);
        allowed = match terms.timing {
            GrantTiming::Immediate => allowed.detail("activation", "immediate"),
            GrantTiming::StartAt(_) => allowed
                .detail("activation", "immediate")
                .detail("start_time", starts_at.unwrap_or(now).to_rfc3339()),
            GrantTiming::OnFirstUse { claim_window } => allowed
                .detail("activation", "on_first_use")
                .detail("claim_window_seconds", claim_window.num_seconds())
                .detail("claim_expire_time", expires_at.to_rfc3339()),
        };
        tx.record(allowed);
        tx.record(
            NewAuditEvent::support(realm.id, action::TEMPORARY_ADMIN_CREATED, actor.clone())
                .for_request(request.id)
                .in_portal(portal.id)
                .target("account", account.id)
                .detail("support_grant_id", grant.id)
                .detail("level", terms.level.as_str())
                .detail("expire_time", expires_at.to_rfc3339()),
        );
        results.push(AccessResult {
            portal_id: portal.id,
            status: AccessStatus::of_grant(Some(&grant), now),
            grant: Some(grant.clone()),
            extended: false,
        });
        created.push((grant, account));
    }
    tx.extend_grants(&extended, active_until).await?;
    tx.insert_grants_with_admins(&created).await?;
    if request.state_at(now) == AccessRequestState::Pending {
        tx.decide_access_request(
            request.id,
            AccessRequestState::Pending,
            AccessRequestState::Approved,
            Some(approver.to_string()),
        )
        .await?;
    }
    Ok(results)
}

/// S5 as G6 defines it for a grant that has not ended: an active grant
/// runs to now + duration (batched by the caller); a scheduled grant keeps
/// its start and ends start + duration; an unclaimed grant keeps its claim
/// deadline and will run for the new duration from its claim. Level and
/// temporary admin stay.
async fn extend(
    tx: &WriteTx,
    grant: &SupportGrant,
    duration: chrono::Duration,
    active_until: DateTime<Utc>,
    batch: &mut Vec<Uuid>,
) -> Result<SupportGrant> {
    let mut after = grant.clone();
    after.duration = duration;
    match grant.phase_at(tx.now()) {
        GrantPhase::Scheduled => {
            after.expires_at = grant.starts_at.unwrap_or(tx.now()) + duration;
            tx.set_grant_window(grant.id, after.expires_at, duration)
                .await?;
        }
        GrantPhase::Unclaimed => {
            tx.set_grant_window(grant.id, grant.expires_at, duration)
                .await?;
        }
        GrantPhase::Active | GrantPhase::Ended => {
            after.expires_at = active_until;
            batch.push(grant.id);
        }
    }
    Ok(after)
}

fn phase_name(phase: GrantPhase) -> &'static str {
    match phase {
        GrantPhase::Scheduled => "scheduled",
        GrantPhase::Unclaimed => "unclaimed",
        GrantPhase::Active => "active",
        GrantPhase::Ended => "ended",
    }
}

impl Services {
    /// S3, G5, G6: every portal of the realm with its status.
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
        let mut proposed: HashMap<Uuid, Uuid> = HashMap::new();
        for proposal in self.store.open_proposals_of_realm(realm_id).await? {
            for portal_id in &proposal.portal_ids {
                proposed.insert(*portal_id, proposal.access_request_id);
            }
        }
        Ok(PortalAccessPage {
            portals: rows
                .into_iter()
                .map(|(portal, _)| {
                    let grant = grants.remove(&portal.id).filter(|g| g.is_open_at(now));
                    let mut status = AccessStatus::of_grant(grant.as_ref(), now);
                    let mut access_request_id = grant.as_ref().map(|g| g.access_request_id);
                    if status == AccessStatus::NotAccessible
                        && let Some(request_id) = proposed.get(&portal.id)
                    {
                        status = AccessStatus::AwaitingApproval;
                        access_request_id = Some(*request_id);
                    }
                    PortalAccessView {
                        portal,
                        status,
                        grant,
                        access_request_id,
                    }
                })
                .collect(),
            next,
        })
    }

    /// S4-S6, G2, G3, G5, G6: allows (or extends, S5) support access to
    /// each portal named, all or nothing. With one required approval the
    /// grants start in this transaction; with more, this allow proposes
    /// them and counts as the first approval (G5).
    pub async fn allow_access(
        &self,
        caller: &Caller,
        access_request_id: Uuid,
        portal_ids: &[Uuid],
        asked: AllowTerms,
    ) -> Result<Allowed> {
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, admin) = lock_support_manager(&tx, caller).await?;
        let actor = Actor::from(caller.principal());
        let policy = tx.support_policy(realm.id).await?;
        require_enabled(&policy)?;
        let request = open_request(&tx, &realm, access_request_id).await?;
        let portals = portals_named(&tx, &realm, portal_ids).await?;
        let terms = resolve_terms(asked, &request, &policy, now)?;
        let required = policy.required_approvals.get();
        if required > 1 {
            require_quorum(&tx, &realm, required).await?;
            // A new allow replaces an open proposal: approvals start over.
            cancel_open_proposal(&mut tx, &request, "replaced", actor.clone()).await?;
            let proposal = Proposal {
                id: Uuid::now_v7(),
                realm_id: realm.id,
                access_request_id: request.id,
                portal_ids: portal_ids.to_vec(),
                terms: terms.clone(),
                proposed_by: admin.account.id,
                created_at: now,
                state: ProposalState::Open,
            };
            tx.insert_proposal(&proposal).await?;
            tx.add_approval(proposal.id, admin.account.id).await?;
            tx.record(proposal_event(&request, &proposal, actor, required));
            tx.commit().await?;
            return Ok(Allowed {
                results: portal_ids
                    .iter()
                    .map(|id| AccessResult {
                        portal_id: *id,
                        status: AccessStatus::AwaitingApproval,
                        grant: None,
                        extended: false,
                    })
                    .collect(),
                approvals_missing: required - 1,
            });
        }
        cancel_open_proposal(&mut tx, &request, "replaced", actor.clone()).await?;
        let results = start_grants(
            &mut tx,
            &realm,
            &request,
            &portals,
            &terms,
            &actor,
            admin.account.id,
        )
        .await?;
        tx.commit().await?;
        Ok(Allowed {
            results,
            approvals_missing: 0,
        })
    }

    /// S7: ends support access to each portal named at once; a portal
    /// without a grant is simply not accessible. Scheduled and unclaimed
    /// grants end the same way (G6).
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
                let (why, by) = match grant.phase_at(now) {
                    GrantPhase::Ended if grant.starts_at.is_none() => {
                        (GrantEnd::Unclaimed, Actor::system())
                    }
                    GrantPhase::Ended => (GrantEnd::Expired, Actor::system()),
                    _ => (GrantEnd::Revoked, actor.clone()),
                };
                end_grant(&mut tx, grant, why, by).await?;
            }
            results.push(AccessResult::not_accessible(portal.id));
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Grants in force now (the active-grants gauge).
    pub async fn active_grant_count(&self) -> Result<u64> {
        self.store.active_grant_count(self.now()).await
    }

    /// S2, S8, G6: ends grants past expiry (and first-use grants nobody
    /// claimed by their deadline), deleting their temporary admins, and
    /// pending requests past expiry (with their open proposals), recording
    /// each exactly once even when several replicas sweep at the same
    /// moment: each is ended by a conditional update under the realm lock,
    /// and a loser sees 0 rows.
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
                    let why = if grant.starts_at.is_none() {
                        GrantEnd::Unclaimed
                    } else {
                        GrantEnd::Expired
                    };
                    if end_grant(&mut tx, grant, why, Actor::system()).await? {
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
                        cancel_open_proposal(&mut tx, request, "expired", Actor::system()).await?;
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

/// G5, G8: the proposal event, with every term proposed.
fn proposal_event(
    request: &AccessRequest,
    proposal: &Proposal,
    actor: Actor,
    required: u8,
) -> NewAuditEvent {
    let terms = &proposal.terms;
    let mut event = request_event(request, action::SUPPORT_PROPOSED, actor)
        .detail("proposal_id", proposal.id)
        .detail(
            "portal_ids",
            proposal
                .portal_ids
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .detail("duration_seconds", terms.duration.get().num_seconds())
        .detail("level", terms.level.as_str())
        .detail("required_approvals", required)
        .detail("approvals", 1);
    event = match terms.timing {
        GrantTiming::Immediate => event.detail("activation", "immediate"),
        GrantTiming::StartAt(at) => event
            .detail("activation", "immediate")
            .detail("start_time", at.to_rfc3339()),
        GrantTiming::OnFirstUse { claim_window } => event
            .detail("activation", "on_first_use")
            .detail("claim_window_seconds", claim_window.num_seconds()),
    };
    event
}
