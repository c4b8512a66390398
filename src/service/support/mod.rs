//! Support access (S1-S12): the agent's request, the admins' answer, grants
//! with their temporary support admins, and the session log.
//!
//! Every change locks the realm row first (as AdminService does), so "is
//! there an active grant on this portal?" is answered one transaction at a
//! time across replicas; the unique partial index on active grants backs it.
//!
//! One file per use case family: `requests` (S2: ask, withdraw, decline,
//! list), `grants` (S3-S8: the portals' status, allow, revoke, the sweeper),
//! `logs` (S9: the session log and recorded actions), `policy` (G1, G2:
//! the realm's policy), `approvals` (G5: N-of-M consent), `lifecycle` (G6:
//! first-use claims) and `ending` (G7: support or the ticket ends it).

mod approvals;
mod ending;
mod grants;
mod lifecycle;
mod logs;
mod policy;
mod requests;

pub use approvals::Approved;
pub use ending::{EndTarget, Ended};
pub use grants::{AllowTerms, Allowed};
pub use policy::{PolicyChange, PolicyUpdated};

use std::collections::HashMap;

use uuid::Uuid;

use super::Caller;
use super::acting::lock_and_act;
use super::caller::wrong_kind;
use crate::domain::audit::{Actor, AuditEvent, NewAuditEvent, action};
use crate::domain::governance::{Approval, GrantPhase, Proposal, SupportAccessLevel};
use crate::domain::portal::{Portal, Realm};
use crate::domain::principal::SupportAgent;
use crate::domain::support::{AccessRequest, AccessRequestState, GrantEnd, SupportGrant};
use crate::domain::{Principal, Standing};
use crate::error::{Error, Reason, Result};
use crate::store::WriteTx;

/// What RequestAccess needs, already validated.
#[derive(Debug, Clone)]
pub struct NewAccessRequest {
    pub realm_id: Uuid,
    pub reason: String,
    pub ticket_reference: String,
    /// G3: unset in the message means admin.
    pub level: SupportAccessLevel,
}

/// A request with its grants that have not ended (S12), and its consent so
/// far (G8): the proposal and its approvals, and what the policy requires.
#[derive(Debug, Clone)]
pub struct RequestView {
    pub request: AccessRequest,
    pub state: AccessRequestState,
    pub grants: Vec<SupportGrant>,
    pub proposal: Option<Proposal>,
    pub approvals: Vec<Approval>,
    pub required_approvals: u8,
}

impl RequestView {
    /// A request just written by a call: its stored state is its state now.
    pub fn of(request: AccessRequest) -> Self {
        Self {
            state: request.state,
            grants: Vec::new(),
            proposal: None,
            approvals: Vec::new(),
            required_approvals: 1,
            request,
        }
    }
}

/// A portal's support-access status (S3, G5, G6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessStatus {
    /// Support may enter: active, or a first-use grant waiting to be claimed.
    Available,
    NotAccessible,
    /// A proposal waits for more approvals (G5).
    AwaitingApproval,
    /// Allowed from a later start time (G6).
    Scheduled,
}

impl AccessStatus {
    /// The status a grant gives its portal at `now`.
    pub fn of_grant(grant: Option<&SupportGrant>, now: chrono::DateTime<chrono::Utc>) -> Self {
        match grant.map(|g| g.phase_at(now)) {
            Some(GrantPhase::Active | GrantPhase::Unclaimed) => AccessStatus::Available,
            Some(GrantPhase::Scheduled) => AccessStatus::Scheduled,
            Some(GrantPhase::Ended) | None => AccessStatus::NotAccessible,
        }
    }
}

/// A page of ListAccessRequests.
#[derive(Debug, Clone)]
pub struct RequestPage {
    pub requests: Vec<RequestView>,
    pub next: Option<Uuid>,
}

/// One portal's support-access status (S3).
#[derive(Debug, Clone)]
pub struct PortalAccessView {
    pub portal: Portal,
    pub status: AccessStatus,
    /// The grant that has not ended (active, scheduled or unclaimed).
    pub grant: Option<SupportGrant>,
    /// The request of the grant, or of the proposal awaiting approval.
    pub access_request_id: Option<Uuid>,
}

/// A page of ListPortalAccess.
#[derive(Debug, Clone)]
pub struct PortalAccessPage {
    pub portals: Vec<PortalAccessView>,
    pub next: Option<crate::store::PortalPosition>,
}

/// The outcome for one portal of AllowAccess or RevokeAccess.
#[derive(Debug, Clone)]
pub struct AccessResult {
    pub portal_id: Uuid,
    pub status: AccessStatus,
    /// The grant after the call (active, scheduled or unclaimed); `None`
    /// when not accessible or awaiting approval.
    pub grant: Option<SupportGrant>,
    pub extended: bool,
}

impl AccessResult {
    pub fn not_accessible(portal_id: Uuid) -> Self {
        Self {
            portal_id,
            status: AccessStatus::NotAccessible,
            grant: None,
            extended: false,
        }
    }
}

/// A page of ListSupportAccessLogs.
#[derive(Debug, Clone)]
pub struct LogPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<i64>,
}

/// What one sweep ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub grants_expired: usize,
    pub requests_expired: usize,
    /// How long past its expiry the most overdue grant this sweep ended was.
    pub oldest_lapse: Option<chrono::Duration>,
}

/// How many lapsed rows one sweep transaction handles at most.
pub(super) const SWEEP_BATCH: u64 = 200;

pub(super) fn require_agent(caller: &Caller) -> Result<&SupportAgent> {
    match caller.principal() {
        Principal::SupportAgent(agent) => Ok(agent),
        _ => Err(wrong_kind(caller, "a support agent")),
    }
}

/// S1: only a top-level admin with settings access manages support access;
/// a temporary support admin never does (S10).
pub(super) fn require_support_manager(standing: &Standing) -> Result<()> {
    if standing.is_support_temporary() {
        return Err(Error::permission_denied(
            Reason::SupportAdminRestricted,
            "temporary support admins cannot manage support access",
        ));
    }
    super::portals::require_full_top_level_admin(standing)
}

/// The caller as S1 wants it, for reads: an account of `realm_id` (another
/// realm looks missing) that is a full top-level admin.
pub(super) fn support_manager_of(caller: &Caller, realm_id: Uuid) -> Result<&Standing> {
    let standing = match caller {
        Caller::Account { .. } => super::caller::require_account_of(caller, realm_id)?,
        Caller::ApiClient { portal, .. } if portal.realm_id != realm_id => {
            return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
        }
        _ => {
            return Err(wrong_kind(caller, "a top-level admin with settings access"));
        }
    };
    require_support_manager(standing)?;
    Ok(standing)
}

/// The same, re-checked under the realm lock for writes.
pub(super) async fn lock_support_manager(
    tx: &WriteTx,
    caller: &Caller,
) -> Result<(Realm, Standing)> {
    if !matches!(caller, Caller::Account { .. }) {
        return Err(wrong_kind(caller, "a top-level admin with settings access"));
    }
    let (realm, acting) = lock_and_act(tx, caller).await?;
    let standing = acting
        .standing()
        .cloned()
        .ok_or_else(|| wrong_kind(caller, "a top-level admin with settings access"))?;
    require_support_manager(&standing)?;
    Ok((realm, standing))
}

/// The portals named, all of `realm`, in request order: one unknown or
/// foreign id refuses the whole call (S4), naming it.
pub(super) async fn portals_named(
    tx: &WriteTx,
    realm: &Realm,
    ids: &[Uuid],
) -> Result<Vec<Portal>> {
    let found: HashMap<Uuid, Portal> = tx
        .portals(ids)
        .await?
        .into_iter()
        .filter(|p| p.realm_id == realm.id)
        .map(|p| (p.id, p))
        .collect();
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            found.get(id).cloned().ok_or_else(|| {
                Error::not_found(Reason::PortalNotFound, "portal", id)
                    .with_metadata("field", format!("portal_ids[{index}]"))
            })
        })
        .collect()
}

pub(super) fn request_event(
    request: &AccessRequest,
    action: &'static str,
    actor: Actor,
) -> NewAuditEvent {
    NewAuditEvent::support(request.realm_id, action, actor)
        .for_request(request.id)
        .target("access_request", request.id)
        .detail("agent_id", request.agent_id)
        .detail("agent_name", &request.agent_name)
}

/// Ends a grant in `tx` and deletes its temporary admin, recording both.
/// `false` when something else ended it first.
pub(super) async fn end_grant(
    tx: &mut WriteTx,
    grant: &SupportGrant,
    why: GrantEnd,
    actor: Actor,
) -> Result<bool> {
    if !tx.end_grant(grant.id, why).await? {
        return Ok(false);
    }
    tx.delete_accounts(&[grant.temporary_account_id]).await?;
    let ended = match why {
        GrantEnd::Revoked => action::SUPPORT_REVOKED,
        GrantEnd::Expired | GrantEnd::Unclaimed => action::SUPPORT_EXPIRED,
        GrantEnd::Relinquished | GrantEnd::TicketClosed => action::SUPPORT_RELINQUISHED,
    };
    tx.record(
        NewAuditEvent::support(grant.realm_id, ended, actor.clone())
            .for_request(grant.access_request_id)
            .in_portal(grant.portal_id)
            .target("support_grant", grant.id)
            .detail("access_request_id", grant.access_request_id)
            .detail("expire_time", grant.expires_at.to_rfc3339())
            .detail("temporary_admin_id", grant.temporary_account_id)
            .detail("reason", why.as_str()),
    );
    tx.record(
        NewAuditEvent::support(grant.realm_id, action::TEMPORARY_ADMIN_DELETED, actor)
            .for_request(grant.access_request_id)
            .in_portal(grant.portal_id)
            .target("account", grant.temporary_account_id)
            .detail("support_grant_id", grant.id)
            .detail("reason", why.as_str()),
    );
    Ok(true)
}

/// G5: closes the request's open proposal, if any, recording why.
pub(super) async fn cancel_open_proposal(
    tx: &mut WriteTx,
    request: &AccessRequest,
    why: &str,
    actor: Actor,
) -> Result<Option<Proposal>> {
    let Some(proposal) = tx.open_proposal(request.id).await? else {
        return Ok(None);
    };
    if !tx
        .close_proposal(
            proposal.id,
            crate::domain::governance::ProposalState::Cancelled,
        )
        .await?
    {
        return Ok(None);
    }
    tx.record(
        request_event(request, action::SUPPORT_PROPOSAL_CANCELLED, actor)
            .detail("proposal_id", proposal.id)
            .detail("reason", why),
    );
    Ok(Some(proposal))
}

pub(super) fn by_realm<T>(items: Vec<T>, realm: impl Fn(&T) -> Uuid) -> Vec<(Uuid, Vec<T>)> {
    let mut groups: Vec<(Uuid, Vec<T>)> = Vec::new();
    for item in items {
        let id = realm(&item);
        match groups.iter_mut().find(|(r, _)| *r == id) {
            Some((_, group)) => group.push(item),
            None => groups.push((id, vec![item])),
        }
    }
    groups
}

/// "Support: <agent>", within the 200 characters of a display name.
pub(super) fn temporary_admin_name(agent_name: &str) -> String {
    let name: String = format!("Support: {agent_name}").chars().take(200).collect();
    name.trim().to_owned()
}
