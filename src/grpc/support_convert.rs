//! Proto ↔ domain for support access and audit events.

use chrono::Duration;
use uuid::Uuid;

use super::convert::{parse_uuid, timestamp};
use super::cursor;
use super::position_keys::PositionKeys;
use crate::domain::InvalidValue;
use crate::domain::audit::{ActorKind, AuditCategory, AuditEvent};
use crate::domain::governance::{
    GrantTiming, Proposal, ProposalState, SupportAccessLevel, SupportPolicy,
};
use crate::domain::support::{AccessRequestState, MAX_BULK_PORTALS, SupportDuration, SupportGrant};
use crate::proto::v1 as pb;
use crate::service::{AccessResult, AccessStatus, PortalAccessView, RequestView};

pub fn state_from_proto(value: i32) -> Result<Option<AccessRequestState>, InvalidValue> {
    match pb::AccessRequestState::try_from(value) {
        Ok(pb::AccessRequestState::Unspecified) => Ok(None),
        Ok(pb::AccessRequestState::Pending) => Ok(Some(AccessRequestState::Pending)),
        Ok(pb::AccessRequestState::Approved) => Ok(Some(AccessRequestState::Approved)),
        Ok(pb::AccessRequestState::Declined) => Ok(Some(AccessRequestState::Declined)),
        Ok(pb::AccessRequestState::Withdrawn) => Ok(Some(AccessRequestState::Withdrawn)),
        Ok(pb::AccessRequestState::Expired) => Ok(Some(AccessRequestState::Expired)),
        Err(_) => Err(InvalidValue::new("is not a known AccessRequestState value")),
    }
}

fn state_to_proto(state: AccessRequestState) -> pb::AccessRequestState {
    match state {
        AccessRequestState::Pending => pb::AccessRequestState::Pending,
        AccessRequestState::Approved => pb::AccessRequestState::Approved,
        AccessRequestState::Declined => pb::AccessRequestState::Declined,
        AccessRequestState::Withdrawn => pb::AccessRequestState::Withdrawn,
        AccessRequestState::Expired => pb::AccessRequestState::Expired,
    }
}

/// A proto Duration as chrono's; `out_of_range` names the bounds.
fn chrono_duration(
    d: &prost_types::Duration,
    out_of_range: &str,
) -> Result<Duration, InvalidValue> {
    if !(-999_999_999..=999_999_999).contains(&d.nanos)
        || (d.seconds > 0 && d.nanos < 0)
        || (d.seconds < 0 && d.nanos > 0)
    {
        return Err(InvalidValue::new("is not a valid Duration"));
    }
    let seconds =
        Duration::try_seconds(d.seconds).ok_or_else(|| InvalidValue::new(out_of_range))?;
    seconds
        .checked_add(&Duration::nanoseconds(i64::from(d.nanos)))
        .ok_or_else(|| InvalidValue::new(out_of_range))
}

const DURATION_BOUNDS: &str = "must be between 15 minutes and 30 days";

/// S4: unset means 1 day; otherwise 15 minutes to 30 days.
pub fn duration_from_proto(
    value: Option<&prost_types::Duration>,
) -> Result<SupportDuration, InvalidValue> {
    let requested = value
        .map(|d| chrono_duration(d, DURATION_BOUNDS))
        .transpose()?;
    SupportDuration::parse(requested)
}

/// S4, G2: unset stays unset (the policy then decides); otherwise 15
/// minutes to 30 days.
pub fn optional_duration_from_proto(
    value: Option<&prost_types::Duration>,
) -> Result<Option<SupportDuration>, InvalidValue> {
    value
        .map(|d| SupportDuration::parse(Some(chrono_duration(d, DURATION_BOUNDS)?)))
        .transpose()
}

/// G6: a claim window, 15 minutes to 7 days; unset means 1 day.
pub fn claim_window_from_proto(
    value: Option<&prost_types::Duration>,
) -> Result<Duration, InvalidValue> {
    const BOUNDS: &str = "must be between 15 minutes and 7 days";
    let requested = value.map(|d| chrono_duration(d, BOUNDS)).transpose()?;
    GrantTiming::claim_window(requested)
}

/// G3: `None` for unspecified.
pub fn level_from_proto(value: i32) -> Result<Option<SupportAccessLevel>, InvalidValue> {
    match pb::SupportAccessLevel::try_from(value) {
        Ok(pb::SupportAccessLevel::Unspecified) => Ok(None),
        Ok(pb::SupportAccessLevel::ViewOnly) => Ok(Some(SupportAccessLevel::ViewOnly)),
        Ok(pb::SupportAccessLevel::Admin) => Ok(Some(SupportAccessLevel::Admin)),
        Err(_) => Err(InvalidValue::new("is not a known SupportAccessLevel value")),
    }
}

pub fn level_to_proto(level: SupportAccessLevel) -> pb::SupportAccessLevel {
    match level {
        SupportAccessLevel::ViewOnly => pb::SupportAccessLevel::ViewOnly,
        SupportAccessLevel::Admin => pb::SupportAccessLevel::Admin,
    }
}

/// G6: true for ON_FIRST_USE; unspecified means IMMEDIATE.
pub fn first_use_from_proto(value: i32) -> Result<bool, InvalidValue> {
    match pb::GrantActivation::try_from(value) {
        Ok(pb::GrantActivation::Unspecified | pb::GrantActivation::Immediate) => Ok(false),
        Ok(pb::GrantActivation::OnFirstUse) => Ok(true),
        Err(_) => Err(InvalidValue::new("is not a known GrantActivation value")),
    }
}

/// A proto Timestamp as an instant.
pub fn instant_from_proto(
    value: &prost_types::Timestamp,
) -> Result<chrono::DateTime<chrono::Utc>, InvalidValue> {
    u32::try_from(value.nanos)
        .ok()
        .and_then(|nanos| chrono::DateTime::from_timestamp(value.seconds, nanos))
        .ok_or_else(|| InvalidValue::new("is not a valid Timestamp"))
}

pub fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.num_seconds(),
        nanos: 0,
    }
}

pub fn policy_to_proto(realm_id: Uuid, policy: &SupportPolicy) -> pb::SupportAccessPolicy {
    pb::SupportAccessPolicy {
        realm_id: realm_id.to_string(),
        enabled: policy.enabled,
        max_duration: Some(proto_duration(policy.max_duration.get())),
        required_approvals: i32::from(policy.required_approvals.get()),
        allowed_levels: policy
            .allowed_levels
            .iter()
            .map(|l| level_to_proto(*l) as i32)
            .collect(),
    }
}

fn status_to_proto(status: AccessStatus) -> pb::PortalAccessStatus {
    match status {
        AccessStatus::Available => pb::PortalAccessStatus::AccessAvailable,
        AccessStatus::NotAccessible => pb::PortalAccessStatus::NotAccessible,
        AccessStatus::AwaitingApproval => pb::PortalAccessStatus::AwaitingApproval,
        AccessStatus::Scheduled => pb::PortalAccessStatus::Scheduled,
    }
}

fn activation_of(grant: &SupportGrant) -> pb::GrantActivation {
    if grant.claim_deadline.is_some() {
        pb::GrantActivation::OnFirstUse
    } else {
        pb::GrantActivation::Immediate
    }
}

/// The end of a grant's window as shown: unset while unclaimed (its
/// `expires_at` is then the claim deadline).
fn shown_expiry(grant: &SupportGrant) -> Option<prost_types::Timestamp> {
    grant.starts_at.map(|_| timestamp(grant.expires_at))
}

fn proposal_to_proto(proposal: &Proposal) -> pb::AccessProposal {
    let terms = &proposal.terms;
    let (start_time, activation, claim_window) = match terms.timing {
        GrantTiming::Immediate => (None, pb::GrantActivation::Immediate, None),
        GrantTiming::StartAt(at) => (Some(timestamp(at)), pb::GrantActivation::Immediate, None),
        GrantTiming::OnFirstUse { claim_window } => (
            None,
            pb::GrantActivation::OnFirstUse,
            Some(proto_duration(claim_window)),
        ),
    };
    pb::AccessProposal {
        portal_ids: proposal.portal_ids.iter().map(Uuid::to_string).collect(),
        duration: Some(proto_duration(terms.duration.get())),
        level: level_to_proto(terms.level) as i32,
        start_time,
        activation: activation as i32,
        claim_window,
        proposed_by: proposal.proposed_by.to_string(),
        create_time: Some(timestamp(proposal.created_at)),
        started: proposal.state == ProposalState::Started,
    }
}

/// S4, S7: 1-500 distinct portal ids.
pub fn portal_ids_from_proto(raw: &[String]) -> Result<Vec<Uuid>, InvalidValue> {
    if raw.is_empty() {
        return Err(InvalidValue::new("must name at least one portal"));
    }
    if raw.len() > MAX_BULK_PORTALS {
        return Err(InvalidValue::new(format!(
            "must name at most {MAX_BULK_PORTALS} portals, not {}",
            raw.len()
        )));
    }
    let mut ids = Vec::with_capacity(raw.len());
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    for (index, value) in raw.iter().enumerate() {
        let id = parse_uuid(value)
            .map_err(|e| InvalidValue::new(format!("[{index}] {}", e.description)))?;
        if !seen.insert(id) {
            return Err(InvalidValue::new(format!("[{index}] repeats portal {id}")));
        }
        ids.push(id);
    }
    Ok(ids)
}

pub fn grant_to_proto(
    grant: &SupportGrant,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::SupportGrant {
    pb::SupportGrant {
        grant_id: grant.id.to_string(),
        portal_id: grant.portal_id.to_string(),
        temporary_admin_id: grant.temporary_account_id.to_string(),
        expire_time: shown_expiry(grant),
        create_time: Some(timestamp(grant.created_at)),
        level: level_to_proto(grant.level) as i32,
        start_time: grant.starts_at.map(timestamp),
        claim_expire_time: grant.claim_deadline.map(timestamp),
        status: status_to_proto(AccessStatus::of_grant(Some(grant), now)) as i32,
        activation: activation_of(grant) as i32,
    }
}

pub fn request_to_proto(
    view: &RequestView,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::AccessRequest {
    let r = &view.request;
    pb::AccessRequest {
        access_request_id: r.id.to_string(),
        realm_id: r.realm_id.to_string(),
        agent_id: r.agent_id.to_string(),
        agent_name: r.agent_name.clone(),
        reason: r.reason.clone(),
        ticket_reference: r.ticket_reference.clone(),
        state: state_to_proto(view.state) as i32,
        create_time: Some(timestamp(r.created_at)),
        expire_time: Some(timestamp(r.expires_at)),
        decide_time: r.decided_at.map(timestamp),
        decided_by: r.decided_by.clone().unwrap_or_default(),
        grants: view.grants.iter().map(|g| grant_to_proto(g, now)).collect(),
        level: level_to_proto(r.level) as i32,
        approvals: view
            .approvals
            .iter()
            .map(|a| pb::Approval {
                admin_id: a.admin_id.to_string(),
                approve_time: Some(timestamp(a.approved_at)),
            })
            .collect(),
        required_approvals: i32::from(view.required_approvals),
        proposal: view.proposal.as_ref().map(proposal_to_proto),
    }
}

pub fn portal_access_to_proto(view: &PortalAccessView) -> pb::PortalAccess {
    pb::PortalAccess {
        portal_id: view.portal.id.to_string(),
        name: view.portal.name.clone(),
        subdomain: view.portal.subdomain.clone(),
        top_level: view.portal.is_top_level(),
        status: status_to_proto(view.status) as i32,
        expire_time: view.grant.as_ref().and_then(shown_expiry),
        temporary_admin_id: view
            .grant
            .as_ref()
            .map(|g| g.temporary_account_id.to_string())
            .unwrap_or_default(),
        start_time: view.grant.as_ref().and_then(|g| g.starts_at.map(timestamp)),
        claim_expire_time: view
            .grant
            .as_ref()
            .and_then(|g| g.claim_deadline.filter(|_| g.starts_at.is_none()))
            .map(timestamp),
        level: view
            .grant
            .as_ref()
            .map_or(pb::SupportAccessLevel::Unspecified, |g| {
                level_to_proto(g.level)
            }) as i32,
        access_request_id: view
            .access_request_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

pub fn access_result_to_proto(result: &AccessResult) -> pb::PortalAccessResult {
    pb::PortalAccessResult {
        portal_id: result.portal_id.to_string(),
        status: status_to_proto(result.status) as i32,
        expire_time: result.grant.as_ref().and_then(shown_expiry),
        extended: result.extended,
        temporary_admin_id: result
            .grant
            .as_ref()
            .map(|g| g.temporary_account_id.to_string())
            .unwrap_or_default(),
        start_time: result
            .grant
            .as_ref()
            .and_then(|g| g.starts_at.map(timestamp)),
        claim_expire_time: result
            .grant
            .as_ref()
            .and_then(|g| g.claim_deadline.filter(|_| g.starts_at.is_none()))
            .map(timestamp),
        level: result
            .grant
            .as_ref()
            .map_or(pb::SupportAccessLevel::Unspecified, |g| {
                level_to_proto(g.level)
            }) as i32,
    }
}

pub fn category_from_proto(value: i32) -> Result<Option<AuditCategory>, InvalidValue> {
    match pb::AuditCategory::try_from(value) {
        Ok(pb::AuditCategory::Unspecified) => Ok(None),
        Ok(pb::AuditCategory::SupportSession) => Ok(Some(AuditCategory::SupportSession)),
        Ok(pb::AuditCategory::Security) => Ok(Some(AuditCategory::Security)),
        Err(_) => Err(InvalidValue::new("is not a known AuditCategory value")),
    }
}

fn category_to_proto(category: AuditCategory) -> pb::AuditCategory {
    match category {
        AuditCategory::SupportSession => pb::AuditCategory::SupportSession,
        AuditCategory::Security => pb::AuditCategory::Security,
    }
}

fn actor_kind_to_proto(kind: ActorKind) -> pb::ActorKind {
    match kind {
        ActorKind::Account => pb::ActorKind::Account,
        ActorKind::ApiClient => pb::ActorKind::ApiClient,
        ActorKind::SupportAgent => pb::ActorKind::SupportAgent,
        ActorKind::Operator => pb::ActorKind::Operator,
        ActorKind::Service => pb::ActorKind::Service,
        ActorKind::System => pb::ActorKind::System,
    }
}

pub fn event_to_proto(keys: &PositionKeys, event: &AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        sequence: event.sequence,
        cursor: cursor::encode(keys, event.sequence),
        event_id: event.id.to_string(),
        occur_time: Some(timestamp(event.occurred_at)),
        realm_id: event.realm_id.to_string(),
        portal_id: event.portal_id.map(|p| p.to_string()).unwrap_or_default(),
        category: category_to_proto(event.category) as i32,
        action: event.action.clone(),
        actor: Some(pb::Actor {
            kind: actor_kind_to_proto(event.actor.kind) as i32,
            actor_id: event.actor.id.clone(),
            agent_id: event
                .actor
                .agent_id
                .map(|a| a.to_string())
                .unwrap_or_default(),
            agent_name: event.actor.agent_name.clone().unwrap_or_default(),
        }),
        target_type: event.target_type.clone(),
        target_id: event.target_id.clone(),
        details: event.details.clone().into_iter().collect(),
        prev_hash: event.prev_hash.clone(),
        hash: event.hash.clone(),
        leaf_index: event.leaf.map(|l| l.leaf_index as i64),
        access_request_id: event
            .leaf
            .and_then(|l| l.access_request_id)
            .map(|id| id.to_string())
            .unwrap_or_default(),
        previous_request_leaf: event
            .leaf
            .and_then(|l| l.previous_request_leaf)
            .map(|l| l as i64),
    }
}
