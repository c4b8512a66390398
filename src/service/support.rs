//! Support access (S1-S12): the agent's request, the admins' answer, grants
//! with their temporary support admins, and the session log.
//!
//! Every change locks the realm row first (as AdminService does), so "is
//! there an active grant on this portal?" is answered one transaction at a
//! time across replicas; the unique partial index on active grants backs it.

use std::collections::HashMap;

use uuid::Uuid;

use super::acting::lock_and_act;
use super::caller::wrong_kind;
use super::support_actions::PendingAction;
use super::{Caller, RequestId, Services};
use crate::domain::audit::{Actor, AuditEvent, NewAuditEvent, action};
use crate::domain::portal::{Portal, Realm};
use crate::domain::principal::SupportAgent;
use crate::domain::support::{
    AccessRequest, AccessRequestState, GrantEnd, SupportAction, SupportDuration, SupportGrant,
    may_allow, temporary_admin_email,
};
use crate::domain::{Account, Principal, Standing};
use crate::error::{Error, Reason, Result};
use crate::store::{AuditFilter, EventPosition, RequestFilter, WriteTx};

/// What RequestAccess needs, already validated.
#[derive(Debug, Clone)]
pub struct NewAccessRequest {
    pub realm_id: Uuid,
    pub reason: String,
    pub ticket_reference: String,
}

/// A request with its grants that are active now (S12).
#[derive(Debug, Clone)]
pub struct RequestView {
    pub request: AccessRequest,
    pub state: AccessRequestState,
    pub grants: Vec<SupportGrant>,
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
    /// The active grant: the green dot. `None`: the red dot.
    pub grant: Option<SupportGrant>,
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
    /// The active grant after the call; `None` when not accessible.
    pub grant: Option<SupportGrant>,
    pub extended: bool,
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
const SWEEP_BATCH: u64 = 200;

fn require_agent(caller: &Caller) -> Result<&SupportAgent> {
    match caller.principal() {
        Principal::SupportAgent(agent) => Ok(agent),
        _ => Err(wrong_kind(caller, "a support agent")),
    }
}

/// S1: only a top-level admin with settings access manages support access;
/// a temporary support admin never does (S10).
fn require_support_manager(standing: &Standing) -> Result<()> {
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
fn support_manager_of(caller: &Caller, realm_id: Uuid) -> Result<&Standing> {
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
async fn lock_support_manager(tx: &WriteTx, caller: &Caller) -> Result<(Realm, Standing)> {
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
async fn portals_named(tx: &WriteTx, realm: &Realm, ids: &[Uuid]) -> Result<Vec<Portal>> {
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

fn request_event(request: &AccessRequest, action: &'static str, actor: Actor) -> NewAuditEvent {
    NewAuditEvent::support(request.realm_id, action, actor)
        .for_request(request.id)
        .target("access_request", request.id)
        .detail("agent_id", request.agent_id)
        .detail("agent_name", &request.agent_name)
}

/// Ends a grant in `tx` and deletes its temporary admin, recording both.
/// `false` when something else ended it first.
async fn end_grant(
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
        GrantEnd::Expired => action::SUPPORT_EXPIRED,
    };
    tx.record(
        NewAuditEvent::support(grant.realm_id, ended, actor.clone())
            .for_request(grant.access_request_id)
            .in_portal(grant.portal_id)
            .target("support_grant", grant.id)
            .detail("access_request_id", grant.access_request_id)
            .detail("expire_time", grant.expires_at.to_rfc3339())
            .detail("temporary_admin_id", grant.temporary_account_id),
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

impl Services {
    /// S2: a support agent asks to enter a realm.
    pub async fn request_access(
        &self,
        caller: &Caller,
        new: NewAccessRequest,
        request_id: Option<RequestId>,
    ) -> Result<AccessRequest> {
        let agent = require_agent(caller)?.clone();
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let realm = tx
            .lock_realm(new.realm_id)
            .await?
            .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", new.realm_id))?;
        let scope = format!("RequestAccess/{}", agent.id);
        let key = super::idempotency(&request_id, &scope);
        if let Some(key) = &key
            && let Some(id) = tx.remembered_id(key).await?
        {
            return tx
                .access_request(id)
                .await?
                .ok_or_else(|| Error::internal("remembered access request is gone"));
        }
        let request = AccessRequest {
            id: Uuid::now_v7(),
            realm_id: realm.id,
            agent_id: agent.id,
            agent_name: agent.name.clone(),
            reason: new.reason,
            ticket_reference: new.ticket_reference,
            state: AccessRequestState::Pending,
            created_at: now,
            expires_at: now + self.settings.access_request_ttl,
            decided_at: None,
            decided_by: None,
        };
        tx.insert_access_request(&request).await?;
        tx.record(
            request_event(
                &request,
                action::SUPPORT_REQUESTED,
                Actor::from(caller.principal()),
            )
            .detail("reason", &request.reason)
            .detail("ticket_reference", &request.ticket_reference)
            .detail("expire_time", request.expires_at.to_rfc3339()),
        );
        if let Some(key) = &key {
            tx.remember(key, &request.id.to_string()).await?;
        }
        tx.commit().await?;
        Ok(request)
    }

    /// S2: the agent who asked withdraws a pending request.
    pub async fn withdraw_access_request(
        &self,
        caller: &Caller,
        request_id: Uuid,
    ) -> Result<AccessRequest> {
        let agent = require_agent(caller)?.clone();
        self.decide_pending(
            caller,
            request_id,
            AccessRequestState::Withdrawn,
            |request| {
                if request.agent_id == agent.id {
                    Ok(agent.id.to_string())
                } else {
                    Err(Error::permission_denied(
                        Reason::AccessRequestNotYours,
                        "only the support agent who asked may withdraw a request",
                    ))
                }
            },
        )
        .await
    }

    /// S1, S2: a full top-level admin declines a pending request.
    pub async fn decline_access_request(
        &self,
        caller: &Caller,
        request_id: Uuid,
    ) -> Result<AccessRequest> {
        let Caller::Account { standing, .. } = caller else {
            return Err(wrong_kind(caller, "a top-level admin with settings access"));
        };
        let admin_id = standing.account.id.to_string();
        self.decide_pending(caller, request_id, AccessRequestState::Declined, |_| {
            Ok(admin_id.clone())
        })
        .await
    }

    /// Moves a pending request to `to`, after `authorize` names who decided.
    async fn decide_pending(
        &self,
        caller: &Caller,
        request_id: Uuid,
        to: AccessRequestState,
        authorize: impl FnOnce(&AccessRequest) -> Result<String>,
    ) -> Result<AccessRequest> {
        let not_found =
            || Error::not_found(Reason::AccessRequestNotFound, "access request", request_id);
        let realm_id = self
            .store
            .access_request(request_id)
            .await?
            .ok_or_else(not_found)?
            .realm_id;
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        if matches!(caller, Caller::Account { .. }) {
            // An admin of another realm must not learn the request exists.
            if caller.standing().map(|s| s.account.realm_id) != Some(realm_id) {
                return Err(not_found());
            }
            lock_support_manager(&tx, caller).await?;
        } else {
            tx.lock_realm(realm_id).await?;
        }
        let request = tx.access_request(request_id).await?.ok_or_else(not_found)?;
        let decided_by = authorize(&request)?;
        if !request.is_pending_at(now)
            || !tx
                .decide_access_request(
                    request.id,
                    AccessRequestState::Pending,
                    to,
                    Some(decided_by),
                )
                .await?
        {
            return Err(Error::new(
                Reason::AccessRequestNotPending,
                format!(
                    "the access request is {}, not pending",
                    request.state_at(now).as_str()
                ),
            ));
        }
        let event_action = match to {
            AccessRequestState::Withdrawn => action::SUPPORT_WITHDRAWN,
            _ => action::SUPPORT_DECLINED,
        };
        tx.record(request_event(
            &request,
            event_action,
            Actor::from(caller.principal()),
        ));
        let decided = tx.access_request(request.id).await?.ok_or_else(not_found)?;
        tx.commit().await?;
        Ok(decided)
    }

    /// S2, S12: the top-level admins' banner (one realm), or the support
    /// team's view of every realm's requests with their active grants.
    pub async fn list_access_requests(
        &self,
        caller: &Caller,
        realm_id: Option<Uuid>,
        state: Option<AccessRequestState>,
        before: Option<Uuid>,
        page_size: u64,
    ) -> Result<RequestPage> {
        match caller.principal() {
            Principal::SupportAgent(_) => {}
            _ => {
                let realm_id = realm_id.ok_or_else(|| Error::invalid("realm_id", "is required"))?;
                support_manager_of(caller, realm_id)?;
            }
        }
        let now = self.now();
        let mut requests = self
            .store
            .list_access_requests(
                RequestFilter {
                    realm_id,
                    state,
                    now,
                },
                before,
                page_size + 1,
            )
            .await?;
        let next = if requests.len() as u64 > page_size {
            requests.truncate(page_size as usize);
            requests.last().map(|r| r.id)
        } else {
            None
        };
        let ids: Vec<Uuid> = requests.iter().map(|r| r.id).collect();
        let mut grants: HashMap<Uuid, Vec<SupportGrant>> = HashMap::new();
        for grant in self.store.open_grants_of_requests(&ids).await? {
            if grant.is_active_at(now) {
                grants
                    .entry(grant.access_request_id)
                    .or_default()
                    .push(grant);
            }
        }
        Ok(RequestPage {
            requests: requests
                .into_iter()
                .map(|request| RequestView {
                    state: request.state_at(now),
                    grants: grants.remove(&request.id).unwrap_or_default(),
                    request,
                })
                .collect(),
            next,
        })
    }

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

    /// S9: the support-session log of one portal, newest first.
    pub async fn list_support_access_logs(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        before: Option<i64>,
        page_size: u64,
    ) -> Result<LogPage> {
        let not_found = || Error::not_found(Reason::PortalNotFound, "portal", portal_id);
        // SPEC §5: the kind first, so no id's existence leaks to a caller
        // who may not ask.
        if !matches!(caller, Caller::Account { .. }) {
            return Err(wrong_kind(caller, "a top-level admin with settings access"));
        }
        let portal = self.store.portal(portal_id).await?.ok_or_else(not_found)?;
        support_manager_of(caller, portal.realm_id).map_err(|e| {
            if e.reason == Reason::RealmNotFound {
                not_found()
            } else {
                e
            }
        })?;
        let filter = AuditFilter {
            realm_id: Some(portal.realm_id),
            portal_ids: vec![portal.id],
            categories: vec![crate::domain::audit::AuditCategory::SupportSession],
        };
        let mut events = self
            .store
            .audit_events(&filter, EventPosition::Before(before), page_size + 1)
            .await?;
        let next = if events.len() as u64 > page_size {
            events.truncate(page_size as usize);
            events.last().map(|e| e.sequence)
        } else {
            None
        };
        Ok(LogPage { events, next })
    }

    /// S9: another service records what support did there, only while the
    /// grant is active at this moment.
    pub async fn record_support_action(
        &self,
        caller: &Caller,
        portal_id: Uuid,
        temporary_admin_id: Uuid,
        agent: SupportAgent,
        support_action: SupportAction,
        request_id: Option<RequestId>,
    ) -> Result<AuditEvent> {
        let Principal::Service { service_id, .. } = caller.principal() else {
            return Err(wrong_kind(
                caller,
                "a service with scope support_actions.record",
            ));
        };
        if !caller
            .principal()
            .has_scope(crate::domain::Scope::SupportActionsRecord)
        {
            return Err(Error::permission_denied(
                Reason::MissingScope,
                "this call needs the service scope support_actions.record",
            ));
        }
        let not_found = || Error::not_found(Reason::PortalNotFound, "portal", portal_id);
        let portal = self.store.portal(portal_id).await?.ok_or_else(not_found)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.support_actions
            .write(PendingAction {
                portal,
                temporary_admin_id,
                agent,
                action: support_action,
                service_id: *service_id,
                request_id,
                reply,
            })
            .await?;
        answer
            .await
            .map_err(|_| Error::internal("the support action writer stopped"))?
    }

    /// S9: logs a call a temporary support admin made to this service, with
    /// its outcome. Called after the call, whatever it returned; finds the
    /// grant even when the account is already gone (a call after revoke).
    pub async fn log_support_call(
        &self,
        account_id: Uuid,
        agent: &SupportAgent,
        rpc: &str,
        outcome: &str,
        request_ids: Vec<(String, String)>,
    ) -> Result<()> {
        let Some(grant) = self.store.grant_of_account(account_id).await? else {
            return Ok(());
        };
        let mut tx = self.store.begin_write(self.now()).await?;
        let mut event = NewAuditEvent::support(
            grant.realm_id,
            action::SUPPORT_CALL,
            Actor {
                kind: crate::domain::audit::ActorKind::Account,
                id: account_id.to_string(),
                agent_id: Some(agent.id),
                agent_name: Some(agent.name.clone()),
            },
        )
        .for_request(grant.access_request_id)
        .in_portal(grant.portal_id)
        .target("rpc", rpc)
        .detail("rpc", rpc)
        .detail("outcome", outcome)
        .detail("support_grant_id", grant.id);
        for (field, value) in request_ids {
            event = event.detail(&format!("request.{field}"), value);
        }
        tx.record(event);
        tx.commit().await?;
        Ok(())
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

fn by_realm<T>(items: Vec<T>, realm: impl Fn(&T) -> Uuid) -> Vec<(Uuid, Vec<T>)> {
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
fn temporary_admin_name(agent_name: &str) -> String {
    let name: String = format!("Support: {agent_name}").chars().take(200).collect();
    name.trim().to_owned()
}
