//! SupportAccessService: support access requests and grants, the session
//! log and the audit stream.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::proto::v1::{self as pb, support_access_service_server::SupportAccessService};
use crate::service::Services;

pub struct SupportAccessApi {
    #[allow(dead_code)]
    services: Services,
}

impl SupportAccessApi {
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

type AuditStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamAuditEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SupportAccessService for SupportAccessApi {
    type StreamAuditEventsStream = AuditStream;

    async fn request_access(
        &self,
        _request: Request<pb::RequestAccessRequest>,
    ) -> Result<Response<pb::RequestAccessResponse>, Status> {
        Err(Status::unimplemented(
            "RequestAccess arrives with support access (S1-S12)",
        ))
    }

    async fn withdraw_access_request(
        &self,
        _request: Request<pb::WithdrawAccessRequestRequest>,
    ) -> Result<Response<pb::WithdrawAccessRequestResponse>, Status> {
        Err(Status::unimplemented(
            "WithdrawAccessRequest arrives with support access (S1-S12)",
        ))
    }

    async fn list_access_requests(
        &self,
        _request: Request<pb::ListAccessRequestsRequest>,
    ) -> Result<Response<pb::ListAccessRequestsResponse>, Status> {
        Err(Status::unimplemented(
            "ListAccessRequests arrives with support access (S1-S12)",
        ))
    }

    async fn decline_access_request(
        &self,
        _request: Request<pb::DeclineAccessRequestRequest>,
    ) -> Result<Response<pb::DeclineAccessRequestResponse>, Status> {
        Err(Status::unimplemented(
            "DeclineAccessRequest arrives with support access (S1-S12)",
        ))
    }

    async fn list_portal_access(
        &self,
        _request: Request<pb::ListPortalAccessRequest>,
    ) -> Result<Response<pb::ListPortalAccessResponse>, Status> {
        Err(Status::unimplemented(
            "ListPortalAccess arrives with support access (S1-S12)",
        ))
    }

    async fn allow_access(
        &self,
        _request: Request<pb::AllowAccessRequest>,
    ) -> Result<Response<pb::AllowAccessResponse>, Status> {
        Err(Status::unimplemented(
            "AllowAccess arrives with support access (S1-S12)",
        ))
    }

    async fn revoke_access(
        &self,
        _request: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::RevokeAccessResponse>, Status> {
        Err(Status::unimplemented(
            "RevokeAccess arrives with support access (S1-S12)",
        ))
    }

    async fn list_support_access_logs(
        &self,
        _request: Request<pb::ListSupportAccessLogsRequest>,
    ) -> Result<Response<pb::ListSupportAccessLogsResponse>, Status> {
        Err(Status::unimplemented(
            "ListSupportAccessLogs arrives with support access (S1-S12)",
        ))
    }

    async fn record_support_action(
        &self,
        _request: Request<pb::RecordSupportActionRequest>,
    ) -> Result<Response<pb::RecordSupportActionResponse>, Status> {
        Err(Status::unimplemented(
            "RecordSupportAction arrives with support access (S1-S12)",
        ))
    }

    async fn verify_audit_log(
        &self,
        _request: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        Err(Status::unimplemented(
            "VerifyAuditLog arrives with support access (S1-S12)",
        ))
    }

    async fn stream_audit_events(
        &self,
        _request: Request<pb::StreamAuditEventsRequest>,
    ) -> Result<Response<Self::StreamAuditEventsStream>, Status> {
        Err(Status::unimplemented(
            "StreamAuditEvents arrives with the audit stream (L1-L7)",
        ))
    }
}
