//! G7: ending support access early without the customer. The support
//! agent ends its own request's access when the work is done; the
//! ticketing system (scope `support_sessions.end`) ends every session of a
//! ticket when it closes. Every active, scheduled or unclaimed grant ends
//! as in S7 (temporary admin deleted), an open proposal is cancelled and a
//! still pending request is withdrawn. Idempotent: ending what has ended
//! changes nothing and answers with the current statuses.

use uuid::Uuid;

use super::{
    AccessResult, RequestView, cancel_open_proposal, end_grant, request_event, require_agent,
};
use crate::domain::audit::{Actor, action};
use crate::domain::support::{AccessRequest, AccessRequestState, GrantEnd};
use crate::domain::{Principal, Scope};
use crate::error::{Error, Reason, Result};
use crate::service::caller::wrong_kind;
use crate::service::{Caller, Services};

/// Whose access EndSupportAccess ends.
#[derive(Debug, Clone)]
pub enum EndTarget {
    /// A support agent's own request.
    Request(Uuid),
    /// Every request of a realm naming this ticket (the ticketing system).
    Ticket {
        realm_id: Uuid,
        ticket_reference: String,
    },
}

/// The requests concerned and every portal they had access to.
#[derive(Debug, Clone)]
pub struct Ended {
    pub requests: Vec<RequestView>,
    pub results: Vec<AccessResult>,
}

impl Services {
    /// G7: ends support access early.
    pub async fn end_support_access(&self, caller: &Caller, target: EndTarget) -> Result<Ended> {
        // SPEC §5: the kind and scope first, before anything is looked up.
        let why = match (caller.principal(), &target) {
            (Principal::SupportAgent(_), EndTarget::Request(_)) => GrantEnd::Relinquished,
            (Principal::SupportAgent(_), EndTarget::Ticket { .. }) => {
                return Err(Error::invalid(
                    "access_request_id",
                    "is required for a support agent (realm_id and ticket_reference are for \
                     the ticketing system)",
                ));
            }
            (Principal::Service { .. }, _)
                if !caller.principal().has_scope(Scope::SupportSessionsEnd) =>
            {
                return Err(Error::permission_denied(
                    Reason::MissingScope,
                    "this call needs the service scope support_sessions.end",
                ));
            }
            (Principal::Service { .. }, EndTarget::Ticket { .. }) => GrantEnd::TicketClosed,
            (Principal::Service { .. }, EndTarget::Request(_)) => {
                return Err(Error::invalid(
                    "ticket_reference",
                    "is required for the ticketing system, with realm_id",
                ));
            }
            _ => {
                return Err(wrong_kind(
                    caller,
                    "a support agent, or a service with scope support_sessions.end",
                ));
            }
        };
        let (realm_id, not_found) = match &target {
            EndTarget::Request(id) => {
                let agent = require_agent(caller)?;
                let not_found =
                    Error::not_found(Reason::AccessRequestNotFound, "access request", id);
                // Another agent's request looks missing (G7).
                let request = self
                    .store
                    .access_request(*id)
                    .await?
                    .filter(|r| r.agent_id == agent.id)
                    .ok_or_else(|| not_found.clone())?;
                (request.realm_id, not_found)
            }
            EndTarget::Ticket {
                realm_id,
                ticket_reference,
            } => (
                *realm_id,
                Error::not_found(
                    Reason::AccessRequestNotFound,
                    "access request with ticket",
                    ticket_reference,
                ),
            ),
        };
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let Some(_realm) = tx.lock_realm(realm_id).await? else {
            return Err(not_found);
        };
        let requests: Vec<AccessRequest> = match &target {
            EndTarget::Request(id) => tx.access_request(*id).await?.into_iter().collect(),
            EndTarget::Ticket {
                realm_id,
                ticket_reference,
            } => tx.requests_with_ticket(*realm_id, ticket_reference).await?,
        };
        if requests.is_empty() {
            return Err(not_found);
        }
        let actor = Actor::from(caller.principal());
        let ids: Vec<Uuid> = requests.iter().map(|r| r.id).collect();
        let grants = tx.grants_of_requests(&ids).await?;
        let mut results = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (grant, ended) in &grants {
            if !ended {
                let (how, by) = if grant.is_open_at(now) {
                    (why, actor.clone())
                } else if grant.starts_at.is_none() {
                    (GrantEnd::Unclaimed, Actor::system())
                } else {
                    (GrantEnd::Expired, Actor::system())
                };
                end_grant(&mut tx, grant, how, by).await?;
            }
            if seen.insert(grant.portal_id) {
                results.push(AccessResult::not_accessible(grant.portal_id));
            }
        }
        let mut views = Vec::with_capacity(requests.len());
        for request in requests {
            if let Some(proposal) =
                cancel_open_proposal(&mut tx, &request, why.as_str(), actor.clone()).await?
            {
                for portal_id in proposal.portal_ids {
                    if seen.insert(portal_id) {
                        results.push(AccessResult::not_accessible(portal_id));
                    }
                }
            }
            if request.is_pending_at(now)
                && tx
                    .decide_access_request(
                        request.id,
                        AccessRequestState::Pending,
                        AccessRequestState::Withdrawn,
                        Some(actor.id.clone()),
                    )
                    .await?
            {
                tx.record(
                    request_event(&request, action::SUPPORT_WITHDRAWN, actor.clone())
                        .detail("reason", why.as_str()),
                );
            }
            let after = tx.access_request(request.id).await?.unwrap_or(request);
            let mut view = RequestView::of(after);
            view.state = view.request.state_at(now);
            views.push(view);
        }
        tx.commit().await?;
        Ok(Ended {
            requests: views,
            results,
        })
    }
}
