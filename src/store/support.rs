//! Access requests and support grants (S2-S8).
//!
//! Every change here runs after the realm row is locked (the service does
//! that first), so per-portal decisions such as "extend or create" are made
//! one transaction at a time. The unique partial index
//! `support_grants_one_active` stays as the last word: even a path that
//! forgot the lock could not create a second active grant for a portal.
//! Ending a grant is a conditional update (`… WHERE ended_at IS NULL`), so
//! of two sweepers, or a sweeper and a revoke, exactly one ends it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{access_request, account, membership, support_grant};
use super::errors::db_error;
use super::raw;
use crate::domain::clock::{from_micros, to_micros};
use crate::domain::governance::SupportAccessLevel;
use crate::domain::support::{AccessRequest, AccessRequestState, GrantEnd, SupportGrant};
use crate::domain::{Account, UserType};
use crate::error::{Error, Result};

fn request_from(row: access_request::Model) -> AccessRequest {
    AccessRequest {
        id: row.id,
        realm_id: row.realm_id,
        agent_id: row.agent_id,
        agent_name: row.agent_name,
        reason: row.reason,
        ticket_reference: row.ticket_reference,
        state: AccessRequestState::from_stored(&row.state).unwrap_or(AccessRequestState::Expired),
        created_at: from_micros(row.created_at),
        expires_at: from_micros(row.expires_at),
        decided_at: row.decided_at.map(from_micros),
        decided_by: row.decided_by,
        level: SupportAccessLevel::from_stored(&row.level).unwrap_or(SupportAccessLevel::ViewOnly),
    }
}

/// The activation column's values (G6).
pub(crate) const ACTIVATION_IMMEDIATE: &str = "immediate";
pub(crate) const ACTIVATION_ON_FIRST_USE: &str = "on_first_use";

pub(crate) fn grant_from(row: support_grant::Model) -> SupportGrant {
    let created_at = from_micros(row.created_at);
    let expires_at = from_micros(row.expires_at);
    // Rows of earlier releases: immediate, started at creation.
    let starts_at = match (row.activation.as_str(), row.starts_at) {
        (ACTIVATION_ON_FIRST_USE, None) => None,
        (_, Some(at)) => Some(from_micros(at)),
        (_, None) => Some(created_at),
    };
    let duration = match row.duration_seconds {
        Some(seconds) => chrono::Duration::seconds(seconds),
        None => expires_at - starts_at.unwrap_or(created_at),
    };
    SupportGrant {
        id: row.id,
        realm_id: row.realm_id,
        portal_id: row.portal_id,
        access_request_id: row.access_request_id,
        temporary_account_id: row.temporary_account_id,
        created_at,
        starts_at,
        expires_at,
        // An unknown level is treated as the narrowest (fail safe).
        level: SupportAccessLevel::from_stored(&row.level).unwrap_or(SupportAccessLevel::ViewOnly),
        duration,
        claim_deadline: row.claim_deadline.map(from_micros),
    }
}

/// Which requests a list shows.
#[derive(Debug, Clone, Copy)]
pub struct RequestFilter {
    /// One realm, or every realm (the support team's view, S12).
    pub realm_id: Option<Uuid>,
    /// One state as it is at `now` (a lapsed pending request is expired).
    pub state: Option<AccessRequestState>,
    pub now: DateTime<Utc>,
}

fn state_condition(state: AccessRequestState, now: i64) -> Condition {
    let pending = raw::state_is::<access_request::Entity>(
        access_request::Column::State,
        AccessRequestState::Pending.as_str(),
    );
    match state {
        AccessRequestState::Pending => Condition::all()
            .add(pending)
            .add(access_request::Column::ExpiresAt.gt(now)),
        AccessRequestState::Expired => Condition::any()
            .add(access_request::Column::State.eq(AccessRequestState::Expired.as_str()))
            .add(
                Condition::all()
                    .add(pending)
                    .add(access_request::Column::ExpiresAt.lte(now)),
            ),
        other => Condition::all().add(access_request::Column::State.eq(other.as_str())),
    }
}

async fn find_request(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<AccessRequest>> {
    Ok(access_request::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(db_error)?
        .map(request_from))
}

/// Grants not ended yet (possibly past expiry, not yet swept) of `portals`.
async fn open_grants(
    db: &impl ConnectionTrait,
    portal_ids: &[Uuid],
) -> Result<HashMap<Uuid, SupportGrant>> {
    let mut grants = HashMap::new();
    // Bounded IN lists: a bulk call names up to 500 portals.
    for chunk in portal_ids.chunks(500) {
        for row in support_grant::Entity::find()
            .filter(support_grant::Column::PortalId.is_in(chunk.iter().copied()))
            .filter(support_grant::Column::EndedAt.is_null())
            .all(db)
            .await
            .map_err(db_error)?
        {
            grants.insert(row.portal_id, grant_from(row));
        }
    }
    Ok(grants)
}

impl super::Store {
    pub async fn access_request(&self, id: Uuid) -> Result<Option<AccessRequest>> {
        find_request(self.conn(), id).await
    }

    /// A page of requests, newest first, before request `before`.
    pub async fn list_access_requests(
        &self,
        filter: RequestFilter,
        before: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<AccessRequest>> {
        let mut query = access_request::Entity::find();
        if let Some(realm_id) = filter.realm_id {
            query = query.filter(access_request::Column::RealmId.eq(realm_id));
        }
        if let Some(state) = filter.state {
            query = query.filter(state_condition(state, to_micros(filter.now)));
        }
        if let Some(before) = before {
            query = query.filter(access_request::Column::Id.lt(before));
        }
        let rows = query
            .order_by_desc(access_request::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(request_from).collect())
    }

    /// Grants of `portals` that have not ended, by portal.
    pub async fn open_grants(&self, portal_ids: &[Uuid]) -> Result<HashMap<Uuid, SupportGrant>> {
        open_grants(self.conn(), portal_ids).await
    }

    /// Grants of these requests that have not ended.
    pub async fn open_grants_of_requests(&self, request_ids: &[Uuid]) -> Result<Vec<SupportGrant>> {
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = support_grant::Entity::find()
            .filter(support_grant::Column::AccessRequestId.is_in(request_ids.iter().copied()))
            .filter(support_grant::Column::EndedAt.is_null())
            .order_by_asc(support_grant::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(grant_from).collect())
    }

    /// The grant a temporary support admin was made for, ended or not: the
    /// session log still finds it after the account is gone.
    pub async fn grant_of_account(&self, account_id: Uuid) -> Result<Option<SupportGrant>> {
        Ok(support_grant::Entity::find()
            .filter(support_grant::Column::TemporaryAccountId.eq(account_id))
            .order_by_desc(support_grant::Column::Id)
            .one(self.conn())
            .await
            .map_err(db_error)?
            .map(grant_from))
    }

    /// Grants past expiry that nobody has ended yet, oldest expiry first.
    pub async fn lapsed_grants(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<SupportGrant>> {
        let rows = support_grant::Entity::find()
            .filter(support_grant::Column::EndedAt.is_null())
            .filter(support_grant::Column::ExpiresAt.lte(to_micros(now)))
            .order_by_asc(support_grant::Column::ExpiresAt)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(grant_from).collect())
    }

    /// Grants in force at `now`, for the active-grants gauge.
    pub async fn active_grant_count(&self, now: DateTime<Utc>) -> Result<u64> {
        support_grant::Entity::find()
            .filter(support_grant::Column::EndedAt.is_null())
            .filter(support_grant::Column::ExpiresAt.gt(to_micros(now)))
            .count(self.conn())
            .await
            .map_err(db_error)
    }

    /// Pending requests past expiry whose expiry nobody has recorded yet.
    pub async fn lapsed_requests(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<AccessRequest>> {
        let rows = access_request::Entity::find()
            .filter(raw::state_is::<access_request::Entity>(
                access_request::Column::State,
                AccessRequestState::Pending.as_str(),
            ))
            .filter(access_request::Column::ExpiresAt.lte(to_micros(now)))
            .order_by_asc(access_request::Column::ExpiresAt)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(request_from).collect())
    }
}

impl super::WriteTx {
    pub async fn access_request(&self, id: Uuid) -> Result<Option<AccessRequest>> {
        find_request(self.conn(), id).await
    }

    pub async fn insert_access_request(&self, request: &AccessRequest) -> Result<()> {
        access_request::ActiveModel {
            id: Set(request.id),
            realm_id: Set(request.realm_id),
            agent_id: Set(request.agent_id),
            agent_name: Set(request.agent_name.clone()),
            reason: Set(request.reason.clone()),
            ticket_reference: Set(request.ticket_reference.clone()),
            state: Set(request.state.as_str().to_owned()),
            created_at: Set(to_micros(request.created_at)),
            expires_at: Set(to_micros(request.expires_at)),
            decided_at: Set(request.decided_at.map(to_micros)),
            decided_by: Set(request.decided_by.clone()),
            level: Set(request.level.as_str().to_owned()),
        }
        .insert(self.conn())
        .await
        .map_err(db_error)?;
        Ok(())
    }

    /// Moves a request out of `from`; `false` if it was no longer there
    /// (someone else decided it first).
    pub async fn decide_access_request(
        &self,
        id: Uuid,
        from: AccessRequestState,
        to: AccessRequestState,
        decided_by: Option<String>,
    ) -> Result<bool> {
        let result = access_request::Entity::update_many()
            .col_expr(access_request::Column::State, to.as_str().into())
            .col_expr(
                access_request::Column::DecidedAt,
                to_micros(self.now).into(),
            )
            .col_expr(access_request::Column::DecidedBy, decided_by.into())
            .filter(access_request::Column::Id.eq(id))
            .filter(access_request::Column::State.eq(from.as_str()))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Grants of `portals` that have not ended, by portal.
    pub async fn open_grants(&self, portal_ids: &[Uuid]) -> Result<HashMap<Uuid, SupportGrant>> {
        open_grants(self.conn(), portal_ids).await
    }

    /// Whether a grant of the request is active at the transaction's time.
    pub async fn request_has_active_grant(&self, request_id: Uuid) -> Result<bool> {
        let found = support_grant::Entity::find()
            .filter(support_grant::Column::AccessRequestId.eq(request_id))
            .filter(support_grant::Column::EndedAt.is_null())
            .filter(support_grant::Column::ExpiresAt.gt(to_micros(self.now)))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        Ok(found.is_some())
    }

    /// S5: moves active grants' expiry, one statement per 500 grants.
    pub async fn extend_grants(&self, grant_ids: &[Uuid], expires_at: DateTime<Utc>) -> Result<()> {
        for chunk in grant_ids.chunks(500) {
            support_grant::Entity::update_many()
                .col_expr(
                    support_grant::Column::ExpiresAt,
                    to_micros(expires_at).into(),
                )
                .filter(support_grant::Column::Id.is_in(chunk.iter().copied()))
                .filter(support_grant::Column::EndedAt.is_null())
                .exec(self.conn())
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    /// Ends a grant unless something else ended it first; `true` when this
    /// transaction ended it.
    pub async fn end_grant(&self, grant_id: Uuid, why: GrantEnd) -> Result<bool> {
        let result = support_grant::Entity::update_many()
            .col_expr(support_grant::Column::EndedAt, to_micros(self.now).into())
            .col_expr(support_grant::Column::EndReason, why.as_str().into())
            .filter(support_grant::Column::Id.eq(grant_id))
            .filter(support_grant::Column::EndedAt.is_null())
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// Creates grants with their temporary support admins (an admin
    /// membership in the grant's one portal each, S6, S10): three
    /// multi-row inserts, however many portals a bulk allow names.
    pub async fn insert_grants_with_admins(&self, items: &[(SupportGrant, Account)]) -> Result<()> {
        for chunk in items.chunks(500) {
            account::Entity::insert_many(
                chunk.iter().map(|(_, a)| super::accounts::account_row(a)),
            )
            .exec(self.conn())
            .await
            .map_err(db_error)?;
            membership::Entity::insert_many(chunk.iter().map(|(g, a)| membership::ActiveModel {
                account_id: Set(a.id),
                portal_id: Set(g.portal_id),
                realm_id: Set(g.realm_id),
                user_type: Set(UserType::Admin.as_str().to_owned()),
                created_at: Set(to_micros(a.created_at)),
            }))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
            let result = support_grant::Entity::insert_many(chunk.iter().map(|(g, _)| {
                support_grant::ActiveModel {
                    id: Set(g.id),
                    realm_id: Set(g.realm_id),
                    portal_id: Set(g.portal_id),
                    access_request_id: Set(g.access_request_id),
                    temporary_account_id: Set(g.temporary_account_id),
                    created_at: Set(to_micros(g.created_at)),
                    expires_at: Set(to_micros(g.expires_at)),
                    ended_at: Set(None),
                    end_reason: Set(None),
                    level: Set(g.level.as_str().to_owned()),
                    starts_at: Set(g.starts_at.map(to_micros)),
                    activation: Set(if g.claim_deadline.is_some() {
                        ACTIVATION_ON_FIRST_USE
                    } else {
                        ACTIVATION_IMMEDIATE
                    }
                    .to_owned()),
                    duration_seconds: Set(Some(g.duration.num_seconds())),
                    claim_deadline: Set(g.claim_deadline.map(to_micros)),
                }
            }))
            .exec(self.conn())
            .await;
            match result {
                Ok(_) => {}
                // Only reachable if a path skipped the realm lock.
                Err(err) if super::errors::unique_violation(&err).is_some() => {
                    return Err(Error::new(
                        crate::error::Reason::ConcurrentModification,
                        "another grant for one of these portals was created concurrently; retry",
                    ));
                }
                Err(err) => return Err(db_error(err)),
            }
        }
        Ok(())
    }

    /// S5, G6: moves one not-yet-started grant's end and duration (a
    /// scheduled grant keeps its start, an unclaimed one its deadline).
    pub async fn set_grant_window(
        &self,
        grant_id: Uuid,
        expires_at: DateTime<Utc>,
        duration: chrono::Duration,
    ) -> Result<()> {
        support_grant::Entity::update_many()
            .col_expr(
                support_grant::Column::ExpiresAt,
                to_micros(expires_at).into(),
            )
            .col_expr(
                support_grant::Column::DurationSeconds,
                Some(duration.num_seconds()).into(),
            )
            .filter(support_grant::Column::Id.eq(grant_id))
            .filter(support_grant::Column::EndedAt.is_null())
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// G6: starts an unclaimed first-use grant's clock at the transaction's
    /// time, exactly once: a conditional update, so of two replicas seeing
    /// the first use at the same moment one changes the row and the other
    /// none. `true` when this transaction claimed it.
    pub async fn claim_grant(&self, grant_id: Uuid, duration: chrono::Duration) -> Result<bool> {
        let now = to_micros(self.now);
        let result = support_grant::Entity::update_many()
            .col_expr(support_grant::Column::StartsAt, Some(now).into())
            .col_expr(
                support_grant::Column::ExpiresAt,
                to_micros(self.now + duration).into(),
            )
            .filter(support_grant::Column::Id.eq(grant_id))
            .filter(support_grant::Column::Activation.eq(ACTIVATION_ON_FIRST_USE))
            .filter(support_grant::Column::StartsAt.is_null())
            .filter(support_grant::Column::EndedAt.is_null())
            .filter(support_grant::Column::ExpiresAt.gt(now))
            .exec(self.conn())
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected == 1)
    }

    /// One grant, ended or not.
    pub async fn grant(&self, grant_id: Uuid) -> Result<Option<SupportGrant>> {
        Ok(support_grant::Entity::find_by_id(grant_id)
            .one(self.conn())
            .await
            .map_err(db_error)?
            .map(grant_from))
    }

    /// Every grant of these requests, ended or not, oldest first.
    pub async fn grants_of_requests(
        &self,
        request_ids: &[Uuid],
    ) -> Result<Vec<(SupportGrant, bool)>> {
        if request_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = support_grant::Entity::find()
            .filter(support_grant::Column::AccessRequestId.is_in(request_ids.iter().copied()))
            .order_by_asc(support_grant::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let ended = row.ended_at.is_some();
                (grant_from(row), ended)
            })
            .collect())
    }

    /// G7: the realm's requests that name this ticket.
    pub async fn requests_with_ticket(
        &self,
        realm_id: Uuid,
        ticket_reference: &str,
    ) -> Result<Vec<AccessRequest>> {
        let rows = access_request::Entity::find()
            .filter(access_request::Column::RealmId.eq(realm_id))
            .filter(access_request::Column::TicketReference.eq(ticket_reference))
            .order_by_asc(access_request::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(request_from).collect())
    }

    /// G2: the realm's grants that have not ended and not lapsed.
    pub async fn open_grants_of_realm(&self, realm_id: Uuid) -> Result<Vec<SupportGrant>> {
        let rows = support_grant::Entity::find()
            .filter(support_grant::Column::RealmId.eq(realm_id))
            .filter(support_grant::Column::EndedAt.is_null())
            .filter(support_grant::Column::ExpiresAt.gt(to_micros(self.now)))
            .order_by_asc(support_grant::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(grant_from).collect())
    }

    /// Deletes temporary support admins (their memberships go with them).
    pub async fn delete_accounts(&self, ids: &[Uuid]) -> Result<()> {
        for chunk in ids.chunks(500) {
            membership::Entity::delete_many()
                .filter(membership::Column::AccountId.is_in(chunk.iter().copied()))
                .exec(self.conn())
                .await
                .map_err(db_error)?;
            account::Entity::delete_many()
                .filter(account::Column::Id.is_in(chunk.iter().copied()))
                .exec(self.conn())
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
}
