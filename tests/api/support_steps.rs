//! Shared steps of the support-access tests: agents, requests, grants and
//! the temporary admin's token, all through gRPC.

use tonic::Status;
use uuid::Uuid;

use crate::helpers::*;
use portal_access::proto::v1 as pb;

/// A member of the vendor's support team.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: Uuid,
    pub name: String,
    pub token: String,
}

pub fn agent(app: &TestApp, name: &str) -> Agent {
    let id = Uuid::new_v4();
    Agent {
        id,
        name: name.to_owned(),
        token: app.support_agent(id, name),
    }
}

/// RequestAccess as `agent`.
pub async fn request_access(app: &TestApp, agent: &Agent, realm_id: &str) -> pb::AccessRequest {
    app.support()
        .request_access(with_token(
            pb::RequestAccessRequest {
                request_id: String::new(),
                realm_id: realm_id.into(),
                reason: "Customer reports a broken course import".into(),
                ticket_reference: "SUP-1234".into(),
                ..Default::default()
            },
            &agent.token,
        ))
        .await
        .expect("request access")
        .into_inner()
        .access_request
        .unwrap()
}

pub fn hours(n: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: (n * 3600) as i64,
        nanos: 0,
    })
}

/// AllowAccess as `token`.
pub async fn allow(
    app: &TestApp,
    token: &str,
    request_id: &str,
    portal_ids: &[&str],
    duration: Option<prost_types::Duration>,
) -> Result<Vec<pb::PortalAccessResult>, Status> {
    app.support()
        .allow_access(with_token(
            pb::AllowAccessRequest {
                access_request_id: request_id.into(),
                portal_ids: portal_ids.iter().map(|p| p.to_string()).collect(),
                duration,
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().results)
}

/// RevokeAccess as `token`.
pub async fn revoke(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    portal_ids: &[&str],
) -> Result<Vec<pb::PortalAccessResult>, Status> {
    app.support()
        .revoke_access(with_token(
            pb::RevokeAccessRequest {
                realm_id: realm_id.into(),
                portal_ids: portal_ids.iter().map(|p| p.to_string()).collect(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().results)
}

/// The token support uses to act as a grant's temporary admin (S12).
pub fn temporary_admin_token(
    app: &TestApp,
    realm_id: &str,
    admin_id: &str,
    agent: &Agent,
) -> String {
    let mut claims = app.claims("account", admin_id.parse().unwrap());
    claims.realm = Some(realm_id.to_owned());
    claims.channel = Some("interactive".into());
    claims.agent = Some(agent.id.to_string());
    claims.name = Some(agent.name.clone());
    app.sign(&claims)
}

/// ListPortalAccess, one page.
pub async fn portal_access(
    app: &TestApp,
    token: &str,
    realm_id: &str,
) -> Result<Vec<pb::PortalAccess>, Status> {
    app.support()
        .list_portal_access(with_token(
            pb::ListPortalAccessRequest {
                realm_id: realm_id.into(),
                page_size: 500,
                page_token: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().portals)
}

/// ListAccessRequests as `token`.
pub async fn requests(
    app: &TestApp,
    token: &str,
    realm_id: &str,
    state: pb::AccessRequestState,
) -> Result<Vec<pb::AccessRequest>, Status> {
    app.support()
        .list_access_requests(with_token(
            pb::ListAccessRequestsRequest {
                realm_id: realm_id.into(),
                state: state as i32,
                page_size: 500,
                page_token: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().access_requests)
}

/// Every support-session log entry of a portal, newest first.
pub async fn logs(
    app: &TestApp,
    token: &str,
    portal_id: &str,
) -> Result<Vec<pb::AuditEvent>, Status> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .support()
            .list_support_access_logs(with_token(
                pb::ListSupportAccessLogsRequest {
                    portal_id: portal_id.into(),
                    page_size: 100,
                    page_token,
                },
                token,
            ))
            .await?
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        page_token = page.next_page_token;
    }
}

/// The log entries of one action.
pub fn of_action<'a>(events: &'a [pb::AuditEvent], action: &str) -> Vec<&'a pb::AuditEvent> {
    events.iter().filter(|e| e.action == action).collect()
}

/// Seconds since the epoch of a proto timestamp.
pub fn seconds(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref().expect("timestamp set").seconds
}

/// The server's "now", in whole seconds.
pub fn now_seconds(app: &TestApp) -> i64 {
    use portal_access::domain::Clock;
    app.clock.now().timestamp()
}

/// RecordSupportAction as `token`: `agent` viewed a course while acting as
/// `temporary_admin_id` in `portal_id`.
pub async fn record_action(
    app: &TestApp,
    token: &str,
    portal_id: &str,
    temporary_admin_id: &str,
    agent: &Agent,
) -> Result<pb::AuditEvent, Status> {
    app.support()
        .record_support_action(with_token(
            pb::RecordSupportActionRequest {
                request_id: String::new(),
                portal_id: portal_id.into(),
                temporary_admin_id: temporary_admin_id.into(),
                action: "course.viewed".into(),
                target_type: "course".into(),
                target_id: "course-42".into(),
                details: Default::default(),
                agent_id: agent.id.to_string(),
                agent_name: agent.name.clone(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().event.unwrap())
}

/// The instant a grant expires, as the server gave it.
pub fn expiry_of(granted: &pb::PortalAccessResult) -> chrono::DateTime<chrono::Utc> {
    let at = granted
        .expire_time
        .expect("an allowed portal has an expiry");
    chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32).expect("a valid instant")
}
