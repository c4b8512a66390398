//! S2: support asks to enter a realm, withdraws; admins decline and list
//! the requests (the banner); support agents see their team's (S12).

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    NewAccessRequest, RequestPage, RequestView, lock_support_manager, request_event, require_agent,
    support_manager_of,
};
use crate::domain::Principal;
use crate::domain::audit::{Actor, action};
use crate::domain::governance::{Approval, Proposal};
use crate::domain::support::{AccessRequest, AccessRequestState, SupportGrant};
use crate::error::{Error, Reason, Result};
use crate::service::caller::wrong_kind;
use crate::service::{Caller, RequestId, Services};
use crate::store::RequestFilter;

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
        let key = crate::service::idempotency(&request_id, &scope);
        if let Some(key) = &key
            && let Some(id) = tx.remembered_id(key).await?
        {
            return tx
                .access_request(id)
                .await?
                .ok_or_else(|| Error::internal("remembered access request is gone"));
        }
        // G2, G3: the realm's policy decides what support may ask for.
        let policy = tx.support_policy(realm.id).await?;
        super::grants::require_enabled(&policy)?;
        super::grants::check_level_allowed(&policy, new.level)?;
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
            level: new.level,
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
            .detail("level", request.level.as_str())
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
        // G5: a declined or withdrawn request's proposal is cancelled.
        super::cancel_open_proposal(
            &mut tx,
            &request,
            match to {
                AccessRequestState::Withdrawn => "withdrawn",
                _ => "declined",
            },
            Actor::from(caller.principal()),
        )
        .await?;
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
            if grant.is_open_at(now) {
                grants
                    .entry(grant.access_request_id)
                    .or_default()
                    .push(grant);
            }
        }
        let mut proposals: HashMap<Uuid, (Proposal, Vec<Approval>)> = self
            .store
            .latest_proposals(&ids)
            .await?
            .into_iter()
            .map(|(p, a)| (p.access_request_id, (p, a)))
            .collect();
        let mut required: HashMap<Uuid, u8> = HashMap::new();
        for request in &requests {
            if let std::collections::hash_map::Entry::Vacant(e) = required.entry(request.realm_id) {
                let policy = self.store.support_policy(request.realm_id).await?;
                e.insert(policy.required_approvals.get());
            }
        }
        Ok(RequestPage {
            requests: requests
                .into_iter()
                .map(|request| {
                    let (proposal, approvals) = proposals
                        .remove(&request.id)
                        .map_or((None, Vec::new()), |(p, a)| (Some(p), a));
                    RequestView {
                        state: request.state_at(now),
                        grants: grants.remove(&request.id).unwrap_or_default(),
                        proposal,
                        approvals,
                        required_approvals: required.get(&request.realm_id).copied().unwrap_or(1),
                        request,
                    }
                })
                .collect(),
            next,
        })
    }
}
