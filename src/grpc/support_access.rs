//! SupportAccessService: support access requests and grants, the session
//! log and the audit stream.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::auth::principal;
use super::convert::{optional_uuid, parse_uuid, request_id, required_uuid};
use super::page_token;
use super::position_keys::PositionKeys;
use super::support_convert::{
    access_result_to_proto, category_from_proto, claim_window_from_proto, event_to_proto,
    first_use_from_proto, grant_to_proto, instant_from_proto, level_from_proto,
    optional_duration_from_proto, policy_to_proto, portal_access_to_proto, portal_ids_from_proto,
    request_to_proto, state_from_proto,
};
use crate::domain::DisplayName;
use crate::domain::governance::{RequiredApprovals, SupportAccessLevel, parse_allowed_levels};
use crate::domain::page::PageSize;
use crate::domain::principal::SupportAgent;
use crate::domain::support::{SupportAction, parse_reason, parse_ticket_reference};
use crate::error::{Error, Reason, Violations};
use crate::proto::v1::{self as pb, support_access_service_server::SupportAccessService};
use crate::service::{
    AllowTerms, AuditSubscription, Caller, EndTarget, NewAccessRequest, PolicyChange, RequestView,
    Services, StreamEnd, StreamFrom, StreamItem,
};
use crate::store::AuditFilter;

pub struct SupportAccessApi {
    services: Services,
    /// Seals page tokens and cursors (SPEC §5).
    keys: std::sync::Arc<super::position_keys::PositionKeys>,
}

impl SupportAccessApi {
    pub fn new(
        services: Services,
        keys: std::sync::Arc<super::position_keys::PositionKeys>,
    ) -> Self {
        Self { services, keys }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(self.services.caller(principal(request)?).await?)
    }
}

type AuditStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamAuditEventsResponse, Status>> + Send>>;

const REQUESTS_LIST: &str = "access_requests";
const PORTAL_ACCESS_LIST: &str = "portal_access";
const LOGS_LIST: &str = "support_logs";

fn page_position<T: std::str::FromStr>(
    keys: &PositionKeys,
    token: &str,
    list: &str,
    scope: Uuid,
) -> Result<Option<T>, Error> {
    page_token::decode(keys, token, list, scope)?
        .map(|raw| {
            raw.parse::<T>()
                .map_err(|_| Error::invalid("page_token", "is not a page token of this list"))
        })
        .transpose()
}

/// A request just written by this call: its stored state is its state now.
fn request_view(request: crate::domain::support::AccessRequest) -> RequestView {
    RequestView::of(request)
}

#[tonic::async_trait]
impl SupportAccessService for SupportAccessApi {
    type StreamAuditEventsStream = AuditStream;

    async fn request_access(
        &self,
        request: Request<pb::RequestAccessRequest>,
    ) -> Result<Response<pb::RequestAccessResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let reason = v.check("reason", parse_reason(&req.reason));
        let ticket = v.check(
            "ticket_reference",
            parse_ticket_reference(&req.ticket_reference),
        );
        let level = v.check("level", level_from_proto(req.level));
        v.finish()?;
        let created = self
            .services
            .request_access(
                &caller,
                NewAccessRequest {
                    realm_id: realm_id.expect("checked"),
                    reason: reason.expect("checked"),
                    ticket_reference: ticket.expect("checked"),
                    // G3: unset means the seed's temporary admin.
                    level: level.expect("checked").unwrap_or(SupportAccessLevel::Admin),
                },
                request_id,
            )
            .await?;
        Ok(Response::new(pb::RequestAccessResponse {
            access_request: Some(request_to_proto(
                &request_view(created),
                self.services.now(),
            )),
        }))
    }

    async fn withdraw_access_request(
        &self,
        request: Request<pb::WithdrawAccessRequestRequest>,
    ) -> Result<Response<pb::WithdrawAccessRequestResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = required_uuid("access_request_id", &request.get_ref().access_request_id)?;
        let withdrawn = self.services.withdraw_access_request(&caller, id).await?;
        Ok(Response::new(pb::WithdrawAccessRequestResponse {
            access_request: Some(request_to_proto(
                &request_view(withdrawn),
                self.services.now(),
            )),
        }))
    }

    async fn list_access_requests(
        &self,
        request: Request<pb::ListAccessRequestsRequest>,
    ) -> Result<Response<pb::ListAccessRequestsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", optional_uuid(&req.realm_id));
        let state = v.check("state", state_from_proto(req.state));
        let page_size = v.check("page_size", PageSize::parse(req.page_size));
        v.finish()?;
        let realm_id = realm_id.expect("checked");
        let before = page_position::<Uuid>(
            &self.keys,
            &req.page_token,
            REQUESTS_LIST,
            realm_id.unwrap_or(Uuid::nil()),
        )?;
        let page = self
            .services
            .list_access_requests(
                &caller,
                realm_id,
                state.expect("checked"),
                before,
                page_size.expect("checked").get(),
            )
            .await?;
        Ok(Response::new(pb::ListAccessRequestsResponse {
            access_requests: page
                .requests
                .iter()
                .map(|r| request_to_proto(r, self.services.now()))
                .collect(),
            next_page_token: page
                .next
                .map(|id| {
                    page_token::encode(
                        &self.keys,
                        REQUESTS_LIST,
                        realm_id.unwrap_or(Uuid::nil()),
                        &id.to_string(),
                    )
                })
                .unwrap_or_default(),
        }))
    }

    async fn decline_access_request(
        &self,
        request: Request<pb::DeclineAccessRequestRequest>,
    ) -> Result<Response<pb::DeclineAccessRequestResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = required_uuid("access_request_id", &request.get_ref().access_request_id)?;
        let declined = self.services.decline_access_request(&caller, id).await?;
        Ok(Response::new(pb::DeclineAccessRequestResponse {
            access_request: Some(request_to_proto(
                &request_view(declined),
                self.services.now(),
            )),
        }))
    }

    async fn list_portal_access(
        &self,
        request: Request<pb::ListPortalAccessRequest>,
    ) -> Result<Response<pb::ListPortalAccessResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let page_size = v.check("page_size", PageSize::parse(req.page_size));
        v.finish()?;
        let realm_id = realm_id.expect("checked");
        let after = page_token::decode(&self.keys, &req.page_token, PORTAL_ACCESS_LIST, realm_id)?
            .map(|raw| super::portal::decode_position(&raw))
            .transpose()?;
        let page = self
            .services
            .list_portal_access(&caller, realm_id, after, page_size.expect("checked").get())
            .await?;
        Ok(Response::new(pb::ListPortalAccessResponse {
            portals: page.portals.iter().map(portal_access_to_proto).collect(),
            next_page_token: page
                .next
                .map(|p| {
                    page_token::encode(
                        &self.keys,
                        PORTAL_ACCESS_LIST,
                        realm_id,
                        &super::portal::encode_position(p),
                    )
                })
                .unwrap_or_default(),
        }))
    }

    async fn allow_access(
        &self,
        request: Request<pb::AllowAccessRequest>,
    ) -> Result<Response<pb::AllowAccessResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let access_request_id = v.check("access_request_id", parse_uuid(&req.access_request_id));
        let portal_ids = v.check("portal_ids", portal_ids_from_proto(&req.portal_ids));
        let duration = v.check(
            "duration",
            optional_duration_from_proto(req.duration.as_ref()),
        );
        let level = v.check("level", level_from_proto(req.level));
        let start_at = req
            .start_time
            .as_ref()
            .and_then(|t| v.check("start_time", instant_from_proto(t)));
        let first_use = v.check("activation", first_use_from_proto(req.activation));
        let claim_window = match (first_use, &req.claim_window) {
            (Some(true), window) => {
                v.check("claim_window", claim_window_from_proto(window.as_ref()))
            }
            (Some(false), Some(_)) => {
                v.add("claim_window", "is only for activation ON_FIRST_USE");
                None
            }
            _ => None,
        };
        if first_use == Some(true) && req.start_time.is_some() {
            v.add(
                "start_time",
                "cannot be combined with activation ON_FIRST_USE",
            );
        }
        v.finish()?;
        let allowed = self
            .services
            .allow_access(
                &caller,
                access_request_id.expect("checked"),
                &portal_ids.expect("checked"),
                AllowTerms {
                    duration: duration.expect("checked"),
                    level: level.expect("checked"),
                    start_at,
                    first_use: claim_window,
                },
            )
            .await?;
        Ok(Response::new(pb::AllowAccessResponse {
            results: allowed.results.iter().map(access_result_to_proto).collect(),
            approvals_missing: i32::from(allowed.approvals_missing),
        }))
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::RevokeAccessResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let portal_ids = v.check("portal_ids", portal_ids_from_proto(&req.portal_ids));
        v.finish()?;
        let results = self
            .services
            .revoke_access(
                &caller,
                realm_id.expect("checked"),
                &portal_ids.expect("checked"),
            )
            .await?;
        Ok(Response::new(pb::RevokeAccessResponse {
            results: results.iter().map(access_result_to_proto).collect(),
        }))
    }

    async fn list_support_access_logs(
        &self,
        request: Request<pb::ListSupportAccessLogsRequest>,
    ) -> Result<Response<pb::ListSupportAccessLogsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let page_size = v.check("page_size", PageSize::parse(req.page_size));
        v.finish()?;
        let portal_id = portal_id.expect("checked");
        let before = page_position::<i64>(&self.keys, &req.page_token, LOGS_LIST, portal_id)?;
        let page = self
            .services
            .list_support_access_logs(
                &caller,
                portal_id,
                before,
                page_size.expect("checked").get(),
            )
            .await?;
        Ok(Response::new(pb::ListSupportAccessLogsResponse {
            events: page
                .events
                .iter()
                .map(|e| event_to_proto(&self.keys, e))
                .collect(),
            next_page_token: page
                .next
                .map(|sequence| {
                    page_token::encode(&self.keys, LOGS_LIST, portal_id, &sequence.to_string())
                })
                .unwrap_or_default(),
        }))
    }

    async fn record_support_action(
        &self,
        request: Request<pb::RecordSupportActionRequest>,
    ) -> Result<Response<pb::RecordSupportActionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = request_id(&mut v, &req.request_id, &req, |r| r.request_id.clear());
        let portal_id = v.check("portal_id", parse_uuid(&req.portal_id));
        let temporary_admin_id = v.check("temporary_admin_id", parse_uuid(&req.temporary_admin_id));
        let action = v.check("action", SupportAction::parse_action(&req.action));
        let target_type = v.check(
            "target_type",
            SupportAction::parse_target_type(&req.target_type),
        );
        let target_id = v.check("target_id", SupportAction::parse_target_id(&req.target_id));
        let details = v.check("details", SupportAction::parse_details(&req.details));
        let agent_id = v.check("agent_id", parse_uuid(&req.agent_id));
        let agent_name = v.check("agent_name", DisplayName::parse(&req.agent_name));
        v.finish()?;
        let event = self
            .services
            .record_support_action(
                &caller,
                portal_id.expect("checked"),
                temporary_admin_id.expect("checked"),
                SupportAgent {
                    id: agent_id.expect("checked"),
                    name: agent_name.expect("checked").as_str().to_owned(),
                },
                SupportAction {
                    action: action.expect("checked"),
                    target_type: target_type.expect("checked"),
                    target_id: target_id.expect("checked"),
                    details: details.expect("checked"),
                },
                request_id,
            )
            .await?;
        Ok(Response::new(pb::RecordSupportActionResponse {
            event: Some(event_to_proto(&self.keys, &event)),
        }))
    }

    async fn verify_audit_log(
        &self,
        request: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        let caller = self.caller(&request).await?;
        let realm_id = required_uuid("realm_id", &request.get_ref().realm_id)?;
        let verdict = self.services.verify_audit_log(&caller, realm_id).await?;
        Ok(Response::new(pb::VerifyAuditLogResponse {
            intact: verdict.broken.is_none(),
            event_count: verdict.event_count,
            head_hash: verdict.head_hash,
            first_broken_link: verdict.broken.map(|b| pb::BrokenLink {
                sequence: b.sequence,
                expected_hash: b.expected_hash,
                found_hash: b.found_hash,
            }),
        }))
    }

    async fn get_log_checkpoint(
        &self,
        request: Request<pb::GetLogCheckpointRequest>,
    ) -> Result<Response<pb::GetLogCheckpointResponse>, Status> {
        let caller = self.caller(&request).await?;
        let realm_id = required_uuid("realm_id", &request.get_ref().realm_id)?;
        let checkpoint = self.services.log_checkpoint(&caller, realm_id).await?;
        Ok(Response::new(pb::GetLogCheckpointResponse {
            checkpoint: checkpoint.note,
            tree_size: checkpoint.size as i64,
            root_hash: checkpoint.root.to_vec(),
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.get_ref();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let leaf_index = v.check("leaf_index", tree_position(req.leaf_index));
        let tree_size = v.check("tree_size", tree_position(req.tree_size));
        v.finish()?;
        let proof = self
            .services
            .inclusion_proof(
                &caller,
                realm_id.expect("checked"),
                leaf_index.expect("checked"),
                tree_size.expect("checked"),
            )
            .await?;
        Ok(Response::new(pb::GetInclusionProofResponse {
            hashes: proof.hashes.iter().map(|h| h.to_vec()).collect(),
            leaf_bytes: proof.leaf_bytes,
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.get_ref();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let old_size = v.check("old_size", tree_position(req.old_size));
        let new_size = v.check("new_size", tree_position(req.new_size));
        v.finish()?;
        let hashes = self
            .services
            .consistency_proof(
                &caller,
                realm_id.expect("checked"),
                old_size.expect("checked"),
                new_size.expect("checked"),
            )
            .await?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_log_verifier_keys(
        &self,
        request: Request<pb::GetLogVerifierKeysRequest>,
    ) -> Result<Response<pb::GetLogVerifierKeysResponse>, Status> {
        let caller = self.caller(&request).await?;
        let keys = self.services.log_verifier_keys(&caller)?;
        Ok(Response::new(pb::GetLogVerifierKeysResponse {
            verifier_keys: keys.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn export_access_evidence(
        &self,
        request: Request<pb::ExportAccessEvidenceRequest>,
    ) -> Result<Response<pb::ExportAccessEvidenceResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = required_uuid("access_request_id", &request.get_ref().access_request_id)?;
        let bundle = self.services.export_access_evidence(&caller, id).await?;
        Ok(Response::new(pb::ExportAccessEvidenceResponse {
            bundle_json: bundle.to_json(),
        }))
    }

    async fn get_support_access_policy(
        &self,
        request: Request<pb::GetSupportAccessPolicyRequest>,
    ) -> Result<Response<pb::GetSupportAccessPolicyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let realm_id = required_uuid("realm_id", &request.get_ref().realm_id)?;
        let policy = self
            .services
            .get_support_access_policy(&caller, realm_id)
            .await?;
        Ok(Response::new(pb::GetSupportAccessPolicyResponse {
            policy: Some(policy_to_proto(realm_id, &policy)),
        }))
    }

    async fn update_support_access_policy(
        &self,
        request: Request<pb::UpdateSupportAccessPolicyRequest>,
    ) -> Result<Response<pb::UpdateSupportAccessPolicyResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
        let max_duration = v.check(
            "max_duration",
            optional_duration_from_proto(req.max_duration.as_ref()),
        );
        let required_approvals = req
            .required_approvals
            .and_then(|n| v.check("required_approvals", RequiredApprovals::parse(i64::from(n))));
        let mut levels = Vec::new();
        for (index, raw) in req.allowed_levels.iter().enumerate() {
            match level_from_proto(*raw) {
                Ok(Some(level)) => levels.push(level),
                Ok(None) => v.add(format!("allowed_levels[{index}]"), "must be set"),
                Err(e) => v.add(format!("allowed_levels[{index}]"), e.description),
            }
        }
        let allowed_levels = if req.allowed_levels.is_empty() {
            None
        } else {
            v.check("allowed_levels", parse_allowed_levels(levels))
        };
        v.finish()?;
        let realm_id = realm_id.expect("checked");
        let updated = self
            .services
            .update_support_access_policy(
                &caller,
                realm_id,
                PolicyChange {
                    enabled: req.enabled,
                    max_duration: max_duration.expect("checked"),
                    required_approvals,
                    allowed_levels,
                },
            )
            .await?;
        let now = self.services.now();
        Ok(Response::new(pb::UpdateSupportAccessPolicyResponse {
            policy: Some(policy_to_proto(realm_id, &updated.policy)),
            active_grants: updated
                .open_grants
                .iter()
                .map(|g| grant_to_proto(g, now))
                .collect(),
            changed: updated.changed,
        }))
    }

    async fn approve_access(
        &self,
        request: Request<pb::ApproveAccessRequest>,
    ) -> Result<Response<pb::ApproveAccessResponse>, Status> {
        let caller = self.caller(&request).await?;
        let id = required_uuid("access_request_id", &request.get_ref().access_request_id)?;
        let approved = self.services.approve_access(&caller, id).await?;
        Ok(Response::new(pb::ApproveAccessResponse {
            access_request: Some(request_to_proto(&approved.request, self.services.now())),
            results: approved
                .results
                .iter()
                .map(access_result_to_proto)
                .collect(),
            approvals_missing: i32::from(approved.approvals_missing),
        }))
    }

    async fn end_support_access(
        &self,
        request: Request<pb::EndSupportAccessRequest>,
    ) -> Result<Response<pb::EndSupportAccessResponse>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let target = match (
            req.access_request_id.is_empty(),
            req.realm_id.is_empty() && req.ticket_reference.is_empty(),
        ) {
            (false, true) => v
                .check("access_request_id", parse_uuid(&req.access_request_id))
                .map(EndTarget::Request),
            (true, false) => {
                let realm_id = v.check("realm_id", parse_uuid(&req.realm_id));
                let ticket = v.check(
                    "ticket_reference",
                    parse_ticket_reference(&req.ticket_reference),
                );
                if ticket.as_deref() == Some("") {
                    v.add("ticket_reference", "must not be empty");
                }
                realm_id
                    .zip(ticket)
                    .map(|(realm_id, ticket_reference)| EndTarget::Ticket {
                        realm_id,
                        ticket_reference,
                    })
            }
            (false, false) => {
                v.add(
                    "access_request_id",
                    "names a request; realm_id and ticket_reference name a ticket: not both",
                );
                None
            }
            (true, true) => {
                v.add(
                    "access_request_id",
                    "is required, or realm_id with ticket_reference",
                );
                None
            }
        };
        v.finish()?;
        let ended = self
            .services
            .end_support_access(&caller, target.expect("checked"))
            .await?;
        let now = self.services.now();
        Ok(Response::new(pb::EndSupportAccessResponse {
            access_requests: ended
                .requests
                .iter()
                .map(|r| request_to_proto(r, now))
                .collect(),
            results: ended.results.iter().map(access_result_to_proto).collect(),
        }))
    }

    async fn stream_audit_events(
        &self,
        request: Request<pb::StreamAuditEventsRequest>,
    ) -> Result<Response<Self::StreamAuditEventsStream>, Status> {
        let caller = self.caller(&request).await?;
        let token_expires_at = request
            .extensions()
            .get::<super::auth::TokenExpiry>()
            .and_then(|exp| chrono::DateTime::from_timestamp(i64::try_from(exp.0).ok()?, 0));
        let req = request.into_inner();
        let mut v = Violations::new();
        let realm_id = v.check("realm_id", optional_uuid(&req.realm_id));
        let mut portal_ids = Vec::new();
        for (index, raw) in req.portal_ids.iter().enumerate() {
            if let Some(id) = v.check(&format!("portal_ids[{index}]"), parse_uuid(raw)) {
                portal_ids.push(id);
            }
        }
        if req.portal_ids.len() > crate::domain::support::MAX_BULK_PORTALS {
            v.add("portal_ids", "must name at most 500 portals");
        }
        let mut categories = Vec::new();
        for (index, raw) in req.categories.iter().enumerate() {
            match category_from_proto(*raw) {
                Ok(Some(c)) => categories.push(c),
                Ok(None) => v.add(format!("categories[{index}]"), "must be set"),
                Err(e) => v.add(format!("categories[{index}]"), e.description),
            }
        }
        let from = match &req.start {
            None => Some(StreamFrom::Now),
            Some(pb::stream_audit_events_request::Start::FromBeginning(true)) => {
                Some(StreamFrom::Beginning)
            }
            Some(pb::stream_audit_events_request::Start::FromBeginning(false)) => {
                Some(StreamFrom::Now)
            }
            Some(pb::stream_audit_events_request::Start::AfterCursor(cursor)) => v
                .check("after_cursor", super::cursor::decode(&self.keys, cursor))
                .map(StreamFrom::After),
        };
        v.finish()?;
        let subscription = self
            .services
            .stream_audit_events(
                &caller,
                AuditFilter {
                    realm_id: realm_id.expect("checked"),
                    portal_ids,
                    categories,
                },
                from.expect("checked"),
                token_expires_at,
            )
            .await?;
        Ok(Response::new(audit_stream(self.keys.clone(), subscription)))
    }
}

/// A leaf index or tree size: not negative.
fn tree_position(value: i64) -> Result<u64, crate::domain::InvalidValue> {
    u64::try_from(value).map_err(|_| crate::domain::InvalidValue::new("must not be negative"))
}

/// Events and progress as messages, then the status that ended the stream,
/// carrying the cursor to resume from (L4, L8, and at shutdown).
fn audit_stream(keys: Arc<PositionKeys>, subscription: AuditSubscription) -> AuditStream {
    let AuditSubscription { events, end } = subscription;
    let item_keys = keys.clone();
    let events = ReceiverStream::new(events).map(move |item| {
        Ok(match item {
            StreamItem::Event(shared) => {
                let wire = shared.wire_form(|event| {
                    pb::StreamAuditEventsResponse::encode_event(&event_to_proto(&item_keys, event))
                });
                pb::StreamAuditEventsResponse::from_encoded(wire)
            }
            StreamItem::Progress {
                through,
                checkpoints,
            } => pb::StreamAuditEventsResponse::progress(pb::StreamProgress {
                cursor: super::cursor::encode(&item_keys, through),
                sequence: through,
                checkpoints,
            }),
        })
    });
    let ending = tokio_stream::once(end).then(move |end| {
        let keys = keys.clone();
        async move {
            let cursor = |last| super::cursor::encode(&keys, last);
            let status: Status = match end.await {
            Ok(StreamEnd::TooSlow { last }) => Error::new(
                Reason::SubscriberTooSlow,
                "the stream was ended because the client did not keep up; resume from the cursor",
            )
            .with_metadata("cursor", cursor(last))
            .into(),
            Ok(StreamEnd::ShuttingDown { last }) => Error::new(
                Reason::ShuttingDown,
                "the server is shutting down; resume from the cursor on another replica",
            )
            .with_metadata("cursor", cursor(last))
            .into(),
            Ok(StreamEnd::Failed { error, last }) => {
                error.with_metadata("cursor", cursor(last)).into()
            }
            Err(_) => Error::internal("audit stream producer ended without a reason").into(),
        };
            Err(status)
        }
    });
    Box::pin(events.chain(ending))
}
