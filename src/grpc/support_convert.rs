//! Proto ↔ domain for support access and audit events.

use chrono::Duration;
use uuid::Uuid;

use super::convert::{parse_uuid, timestamp};
use super::cursor;
use super::position_keys::PositionKeys;
use crate::domain::InvalidValue;
use crate::domain::audit::{ActorKind, AuditCategory, AuditEvent};
use crate::domain::support::{AccessRequestState, MAX_BULK_PORTALS, SupportDuration, SupportGrant};
use crate::proto::v1 as pb;
use crate::service::{AccessResult, PortalAccessView, RequestView};

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

/// S4: unset means 1 day; otherwise 15 minutes to 30 days.
pub fn duration_from_proto(
    value: Option<&prost_types::Duration>,
) -> Result<SupportDuration, InvalidValue> {
    let requested = match value {
        None => None,
        Some(d) => {
            if !(-999_999_999..=999_999_999).contains(&d.nanos)
                || (d.seconds > 0 && d.nanos < 0)
                || (d.seconds < 0 && d.nanos > 0)
            {
                return Err(InvalidValue::new("is not a valid Duration"));
            }
            let seconds = Duration::try_seconds(d.seconds)
                .ok_or_else(|| InvalidValue::new("must be between 15 minutes and 30 days"))?;
            let total = seconds
                .checked_add(&Duration::nanoseconds(i64::from(d.nanos)))
                .ok_or_else(|| InvalidValue::new("must be between 15 minutes and 30 days"))?;
            Some(total)
        }
    };
    SupportDuration::parse(requested)
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

pub fn grant_to_proto(grant: &SupportGrant) -> pb::SupportGrant {
    pb::SupportGrant {
        grant_id: grant.id.to_string(),
        portal_id: grant.portal_id.to_string(),
        temporary_admin_id: grant.temporary_account_id.to_string(),
        expire_time: Some(timestamp(grant.expires_at)),
        create_time: Some(timestamp(grant.created_at)),
    }
}

pub fn request_to_proto(view: &RequestView) -> pb::AccessRequest {
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
        grants: view.grants.iter().map(grant_to_proto).collect(),
    }
}

pub fn portal_access_to_proto(view: &PortalAccessView) -> pb::PortalAccess {
    pb::PortalAccess {
        portal_id: view.portal.id.to_string(),
        name: view.portal.name.clone(),
        subdomain: view.portal.subdomain.clone(),
        top_level: view.portal.is_top_level(),
        status: status(view.grant.is_some()) as i32,
        expire_time: view.grant.as_ref().map(|g| timestamp(g.expires_at)),
        temporary_admin_id: view
            .grant
            .as_ref()
            .map(|g| g.temporary_account_id.to_string())
            .unwrap_or_default(),
    }
}

pub fn access_result_to_proto(result: &AccessResult) -> pb::PortalAccessResult {
    pb::PortalAccessResult {
        portal_id: result.portal_id.to_string(),
        status: status(result.grant.is_some()) as i32,
        expire_time: result.grant.as_ref().map(|g| timestamp(g.expires_at)),
        extended: result.extended,
        temporary_admin_id: result
            .grant
            .as_ref()
            .map(|g| g.temporary_account_id.to_string())
            .unwrap_or_default(),
    }
}

fn status(available: bool) -> pb::PortalAccessStatus {
    if available {
        pb::PortalAccessStatus::AccessAvailable
    } else {
        pb::PortalAccessStatus::NotAccessible
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
