//! Consent governance storage (G1, G2, G5): the realm's support-access
//! policy and the proposals and approvals of N-of-M consent.
//!
//! Every write runs after the realm row is locked. The database still has
//! the last word: one open proposal per request (unique partial index) and
//! one approval per admin and proposal (primary key), so a path that forgot
//! the lock could not count an approval twice.

use chrono::Duration;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::entity::{support_approval, support_policy, support_proposal};
use super::errors::{db_error, unique_violation};
use super::raw;
use super::support::{ACTIVATION_IMMEDIATE, ACTIVATION_ON_FIRST_USE};
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::governance::{
    Approval, GrantTerms, GrantTiming, Proposal, ProposalState, RequiredApprovals,
    SupportAccessLevel, SupportPolicy, levels_from_stored, levels_to_stored,
};
use crate::domain::support::SupportDuration;
use crate::error::Result;

fn policy_from(row: support_policy::Model) -> SupportPolicy {
    let defaults = SupportPolicy::default();
    let levels = levels_from_stored(&row.allowed_levels);
    SupportPolicy {
        enabled: row.enabled,
        max_duration: SupportDuration::parse(Some(Duration::seconds(row.max_duration_seconds)))
            .unwrap_or(defaults.max_duration),
        required_approvals: RequiredApprovals::parse(i64::from(row.required_approvals))
            .unwrap_or(defaults.required_approvals),
        allowed_levels: if levels.is_empty() {
            defaults.allowed_levels
        } else {
            levels
        },
    }
}

async fn find_policy(db: &impl ConnectionTrait, realm_id: Uuid) -> Result<SupportPolicy> {
    Ok(support_policy::Entity::find_by_id(realm_id)
        .one(db)
        .await
        .map_err(db_error)?
        .map(policy_from)
        .unwrap_or_default())
}

fn proposal_from(row: support_proposal::Model) -> Proposal {
    let timing = match (row.activation.as_str(), row.start_at) {
        (ACTIVATION_ON_FIRST_USE, _) => GrantTiming::OnFirstUse {
            claim_window: Duration::seconds(row.claim_window_seconds.unwrap_or(86_400)),
        },
        (_, Some(at)) => GrantTiming::StartAt(from_micros(at)),
        _ => GrantTiming::Immediate,
    };
    Proposal {
        id: row.id,
        realm_id: row.realm_id,
        access_request_id: row.access_request_id,
        portal_ids: row
            .portal_ids
            .split(',')
            .filter_map(|id| id.parse().ok())
            .collect(),
        terms: GrantTerms {
            duration: SupportDuration::parse(Some(Duration::seconds(row.duration_seconds)))
                .unwrap_or_else(|_| SupportDuration::parse(None).expect("default")),
            level: SupportAccessLevel::from_stored(&row.level)
                .unwrap_or(SupportAccessLevel::ViewOnly),
            timing,
        },
        proposed_by: row.proposed_by,
        created_at: from_micros(row.created_at),
        state: ProposalState::from_stored(&row.state).unwrap_or(ProposalState::Cancelled),
    }
}

async fn approvals_of(db: &impl ConnectionTrait, proposal_id: Uuid) -> Result<Vec<Approval>> {
    let rows = support_approval::Entity::find()
        .filter(support_approval::Column::ProposalId.eq(proposal_id))
        .order_by_asc(support_approval::Column::ApprovedAt)
        .all(db)
        .await
        .map_err(db_error)?;
    Ok(rows
        .into_iter()
        .map(|r| Approval {
            admin_id: r.admin_id,
            approved_at: from_micros(r.approved_at),
        })
        .collect())
}

impl super::Store {
    /// G1: the realm's policy; the defaults until someone changes it.
    pub async fn support_policy(&self, realm_id: Uuid) -> Result<SupportPolicy> {
        find_policy(self.conn(), realm_id).await
    }

    /// G5: the open proposals of a realm (the AWAITING_APPROVAL dots).
    pub async fn open_proposals_of_realm(&self, realm_id: Uuid) -> Result<Vec<Proposal>> {
        let rows = support_proposal::Entity::find()
            .filter(support_proposal::Column::RealmId.eq(realm_id))
            .filter(raw::state_is::<support_proposal::Entity>(
                support_proposal::Column::State,
                ProposalState::Open.as_str(),
            ))
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(proposal_from).collect())
    }

    /// G8: each request's latest proposal that was not cancelled (open or
    /// started), with its approvals so far.
    pub async fn latest_proposals(
        &self,
        request_ids: &[Uuid],
    ) -> Result<Vec<(Proposal, Vec<Approval>)>> {
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = support_proposal::Entity::find()
            .filter(support_proposal::Column::AccessRequestId.is_in(request_ids.iter().copied()))
            .filter(support_proposal::Column::State.ne(ProposalState::Cancelled.as_str()))
            .order_by_desc(support_proposal::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        let mut seen = std::collections::HashSet::new();
        let mut latest = Vec::new();
        for row in rows {
            if seen.insert(row.access_request_id) {
                let approvals = approvals_of(self.conn(), row.id).await?;
                latest.push((proposal_from(row), approvals));
            }
        }
        Ok(latest)
    }
}

impl super::WriteTx {
    pub async fn support_policy(&self, realm_id: Uuid) -> Result<SupportPolicy> {
        find_policy(self.conn(), realm_id).await
    }

    /// G1: stores the realm's policy (insert or replace).
    pub async fn save_support_policy(
        &self,
        realm_id: Uuid,
        policy: &SupportPolicy,
        updated_by: &str,
    ) -> Result<()> {
        let row = support_policy::ActiveModel {
            realm_id: Set(realm_id),
            enabled: Set(policy.enabled),
            max_duration_seconds: Set(policy.max_duration.get().num_seconds()),
            required_approvals: Set(i16::from(policy.required_approvals.get())),
            allowed_levels: Set(levels_to_stored(&policy.allowed_levels)),
            updated_at: Set(to_micros(self.now)),
            updated_by: Set(updated_by.to_owned()),
        };
        let exists = support_policy::Entity::find_by_id(realm_id)
            .one(self.conn())
            .await
            .map_err(db_error)?
            .is_some();
        if exists {
            row.update(self.conn()).await.map_err(db_error)?;
        } else {
            row.insert(self.conn()).await.map_err(db_error)?;
        }
        Ok(())
    }

    /// G5: the request's open proposal, if any.
    pub async fn open_proposal(&self, access_request_id: Uuid) -> Result<Option<Proposal>> {
        Ok(support_proposal::Entity::find()
            .filter(support_proposal::Column::AccessRequestId.eq(access_request_id))
            .filter(raw::state_is::<support_proposal::Entity>(
                support_proposal::Column::State,
                ProposalState::Open.as_str(),
            ))
            .one(self.conn())
            .await
            .map_err(db_error)?
            .map(proposal_from))
    }

    pub async fn insert_proposal(&self, proposal: &Proposal) -> Result<()> {
        let (activation, start_at, claim_window) = match proposal.terms.timing {
            GrantTiming::Immediate => (ACTIVATION_IMMEDIATE, None, None),
            GrantTiming::StartAt(at) => (ACTIVATION_IMMEDIATE, Some(to_micros(at)), None),
            GrantTiming::OnFirstUse { claim_window } => (
                ACTIVATION_ON_FIRST_USE,
                None,
                Some(claim_window.num_seconds()),
            ),
        };
        support_proposal::ActiveModel {
            id: Set(proposal.id),
            realm_id: Set(proposal.realm_id),
            access_request_id: Set(proposal.access_request_id),
            portal_ids: Set(proposal
                .portal_ids
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",")),
            duration_seconds: Set(proposal.terms.duration.get().num_seconds()),
            level: Set(proposal.terms.level.as_str().to_owned()),
            activation: Set(activation.to_owned()),
            start_at: Set(start_at),
            claim_window_seconds: Set(claim_window),
            state: Set(proposal.state.as_str().to_owned()),
            proposed_by: Set(proposal.proposed_by),
            created_at: Set(to_micros(proposal.created_at)),
            closed_at: Set(None),
        }
        .insert(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Moves an open proposal to `to`; `false` if it was no longer open.
    pub async fn close_proposal(&self, proposal_id: Uuid, to: ProposalState) -> Result<bool> {
        let result = support_proposal::Entity::update_many()
            .col_expr(support_proposal::Column::State, to.as_str().into())
            .col_expr(
                support_proposal::Column::ClosedAt,
                Some(to_micros(self.now)).into(),
            )
            .filter(support_proposal::Column::Id.eq(proposal_id))
            .filter(raw::state_is::<support_proposal::Entity>(
                support_proposal::Column::State,
                ProposalState::Open.as_str(),
            ))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// G5: records an admin's approval; `false` when that admin had
    /// already approved this proposal.
    pub async fn add_approval(&self, proposal_id: Uuid, admin_id: Uuid) -> Result<bool> {
        let result = support_approval::ActiveModel {
            proposal_id: Set(proposal_id),
            admin_id: Set(admin_id),
            approved_at: Set(to_micros(self.now)),
        }
        .insert(self.conn())
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if unique_violation(&err).is_some() => Ok(false),
            Err(err) => Err(db_error(err)),
        }
    }

    pub async fn approvals(&self, proposal_id: Uuid) -> Result<Vec<Approval>> {
        approvals_of(self.conn(), proposal_id).await
    }
}
