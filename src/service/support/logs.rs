//! S9: the support-session log of a portal, what other services record
//! about support, and the automatic log of a temporary admin's calls.

use uuid::Uuid;

use super::LogPage;
use super::support_manager_of;
use crate::domain::Principal;
use crate::domain::audit::{Actor, AuditEvent, NewAuditEvent, action};
use crate::domain::principal::SupportAgent;
use crate::domain::support::SupportAction;
use crate::error::{Error, Reason, Result};
use crate::service::caller::wrong_kind;
use crate::service::support_actions::PendingAction;
use crate::service::{Caller, RequestId, Services};
use crate::store::{AuditFilter, EventPosition};

impl Services {
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

    /// G4: whether the account is a temporary support admin whose grant is
    /// view-only (from the cached standing: no extra read on the hot path).
    /// An error or a missing account is not view-only here: the call then
    /// fails on its own authentication.
    pub async fn is_view_only_support(&self, account_id: Uuid, realm_id: Uuid) -> bool {
        matches!(
            self.store.standing(realm_id, account_id).await,
            Ok(Some(standing)) if standing.support.is_some_and(
                |w| w.level == crate::domain::governance::SupportAccessLevel::ViewOnly
            )
        )
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
}
