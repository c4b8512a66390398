//! G5: N-of-M approval. The first AllowAccess proposes and counts as one
//! approval; other, distinct full top-level admins approve; the N-th
//! approval starts the grants in its own transaction.
//!
//! Every approval locks the realm row first, so approvals of one realm are
//! decided one at a time across replicas: of several admins approving at
//! the same moment, exactly the N-th starts the grants and the later ones
//! find no open proposal. The approvals table's primary key (proposal,
//! admin) backs "distinct" in the database.

use uuid::Uuid;

use super::grants::{
    check_level_allowed, open_request, require_enabled, require_quorum, start_grants,
};
use super::{
    AccessResult, AccessStatus, RequestView, lock_support_manager, portals_named, request_event,
};
use crate::domain::audit::{Actor, action};
use crate::domain::governance::ProposalState;
use crate::error::{Error, Reason, Result};
use crate::service::caller::wrong_kind;
use crate::service::{Caller, Services};

/// What an approval did.
#[derive(Debug, Clone)]
pub struct Approved {
    pub request: RequestView,
    pub results: Vec<AccessResult>,
    pub approvals_missing: u8,
}

impl Services {
    /// G5: a full top-level admin approves the request's open proposal.
    pub async fn approve_access(
        &self,
        caller: &Caller,
        access_request_id: Uuid,
    ) -> Result<Approved> {
        let Caller::Account { standing, .. } = caller else {
            return Err(wrong_kind(caller, "a top-level admin with settings access"));
        };
        let now = self.now();
        let mut tx = self.store.begin_write(now).await?;
        let (realm, admin) = lock_support_manager(&tx, caller).await?;
        debug_assert_eq!(admin.account.id, standing.account.id);
        let actor = Actor::from(caller.principal());
        let policy = tx.support_policy(realm.id).await?;
        require_enabled(&policy)?;
        let request = open_request(&tx, &realm, access_request_id).await?;
        let proposal = tx.open_proposal(request.id).await?.ok_or_else(|| {
            Error::new(
                Reason::NoOpenProposal,
                "the access request has no proposal waiting for approval: AllowAccess proposes, \
                 and a started proposal needs no more approvals",
            )
        })?;
        let required = policy.required_approvals.get();
        require_quorum(&tx, &realm, required).await?;
        let mut approvals = tx.approvals(proposal.id).await?;
        if approvals.iter().any(|a| a.admin_id == admin.account.id) {
            return Err(Error::new(
                Reason::AlreadyApproved,
                "you have already approved this proposal; another full top-level admin must approve",
            ));
        }
        // The policy may have narrowed since the proposal (G2, G3).
        if proposal.terms.duration.get() > policy.max_duration.get() {
            return Err(Error::new(
                Reason::PolicyMaxDuration,
                "the proposed duration is longer than the realm's maximum now",
            ));
        }
        check_level_allowed(&policy, proposal.terms.level)?;
        if !tx.add_approval(proposal.id, admin.account.id).await? {
            return Err(Error::new(
                Reason::AlreadyApproved,
                "you have already approved this proposal",
            ));
        }
        approvals = tx.approvals(proposal.id).await?;
        let count = approvals.len();
        tx.record(
            request_event(&request, action::SUPPORT_APPROVED, actor.clone())
                .detail("proposal_id", proposal.id)
                .detail("approved_by", admin.account.id)
                .detail("approvals", count)
                .detail("required_approvals", required),
        );
        let missing = usize::from(required).saturating_sub(count) as u8;
        let results = if missing == 0 {
            if !tx
                .close_proposal(proposal.id, ProposalState::Started)
                .await?
            {
                return Err(Error::new(
                    Reason::ConcurrentModification,
                    "the proposal changed meanwhile; retry",
                ));
            }
            tx.record(
                request_event(&request, action::SUPPORT_STARTED, actor.clone())
                    .detail("proposal_id", proposal.id)
                    .detail("approvals", count)
                    .detail(
                        "approved_by",
                        approvals
                            .iter()
                            .map(|a| a.admin_id.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
            );
            let portals = portals_named(&tx, &realm, &proposal.portal_ids).await?;
            start_grants(
                &mut tx,
                &realm,
                &request,
                &portals,
                &proposal.terms,
                &actor,
                admin.account.id,
            )
            .await?
        } else {
            proposal
                .portal_ids
                .iter()
                .map(|id| AccessResult {
                    portal_id: *id,
                    status: AccessStatus::AwaitingApproval,
                    grant: None,
                    extended: false,
                })
                .collect()
        };
        let after = tx.access_request(request.id).await?.unwrap_or(request);
        tx.commit().await?;
        let mut proposal = proposal;
        if missing == 0 {
            proposal.state = ProposalState::Started;
        }
        let mut view = RequestView::of(after);
        view.proposal = Some(proposal);
        view.approvals = approvals;
        view.required_approvals = required;
        view.grants = results.iter().filter_map(|r| r.grant.clone()).collect();
        Ok(Approved {
            request: view,
            results,
            approvals_missing: missing,
        })
    }
}
