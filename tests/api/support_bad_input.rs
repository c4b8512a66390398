//! SPEC §5 for SupportAccessService: bad input gets a clear INVALID_ARGUMENT
//! naming the field, and changes nothing.

use tonic::Code;

use crate::both_databases;
use crate::helpers::*;
use crate::people::*;
use crate::support_steps::*;
use portal_access::proto::v1 as pb;

/// Asserts an INVALID_ARGUMENT naming exactly `fields`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, fields: &[&str]) {
    let status = assert_error(result, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(bad_fields(&status), fields, "{status:?}");
}

both_databases! {
    async fn support_rpcs_refuse_bad_input_and_change_nothing(app) {
        let w = world(app).await;
        let ana = agent(app, "Ana Support");
        let request = request_access(app, &ana, &w.realm.realm_id).await;
        let admin = w.realm.admin_token.clone();
        let tables = ["access_requests", "support_grants", "accounts", "audit_events", "idempotency_keys"];
        let mut before = Vec::new();
        for t in tables {
            before.push(app.count(t).await);
        }
        let s = app.support();

        let ask = |realm_id: &str, reason: &str, ticket: &str, request_id: &str| with_token(
            pb::RequestAccessRequest {
                request_id: request_id.into(),
                realm_id: realm_id.into(),
                reason: reason.into(),
                ticket_reference: ticket.into(),
                ..Default::default()
            },
            &ana.token,
        );
        refused(s.clone().request_access(ask("nope", "why", "", "")).await, &["realm_id"]);
        refused(s.clone().request_access(ask(&w.realm.realm_id, "   ", "", "")).await, &["reason"]);
        refused(s.clone().request_access(ask(&w.realm.realm_id, &"x".repeat(2001), "", "")).await, &["reason"]);
        refused(s.clone().request_access(ask(&w.realm.realm_id, "why", &"t".repeat(201), "")).await, &["ticket_reference"]);
        refused(s.clone().request_access(ask(&w.realm.realm_id, "why", "", "not-a-uuid")).await, &["request_id"]);
        refused(s.clone().request_access(ask("", "", "", "")).await, &["realm_id", "reason"]);
        assert_error(
            s.clone().request_access(ask(&uuid::Uuid::now_v7().to_string(), "why", "", "")).await,
            Code::NotFound,
            "REALM_NOT_FOUND",
        );

        refused(
            s.clone().withdraw_access_request(with_token(pb::WithdrawAccessRequestRequest { access_request_id: "x".into() }, &ana.token)).await,
            &["access_request_id"],
        );
        refused(
            s.clone().decline_access_request(with_token(pb::DeclineAccessRequestRequest { access_request_id: String::new() }, &admin)).await,
            &["access_request_id"],
        );
        assert_error(
            s.clone().decline_access_request(with_token(
                pb::DeclineAccessRequestRequest { access_request_id: uuid::Uuid::now_v7().to_string() }, &admin)).await,
            Code::NotFound,
            "ACCESS_REQUEST_NOT_FOUND",
        );

        let list = |realm_id: &str, state: i32, page_size: i32, page_token: &str| with_token(
            pb::ListAccessRequestsRequest { realm_id: realm_id.into(), state, page_size, page_token: page_token.into() },
            &admin,
        );
        refused(s.clone().list_access_requests(list("x", 0, 0, "")).await, &["realm_id"]);
        refused(s.clone().list_access_requests(list(&w.realm.realm_id, 42, 0, "")).await, &["state"]);
        refused(s.clone().list_access_requests(list(&w.realm.realm_id, 0, -1, "")).await, &["page_size"]);
        refused(s.clone().list_access_requests(list(&w.realm.realm_id, 0, 0, "forged")).await, &["page_token"]);

        let dots = |realm_id: &str, page_size: i32, page_token: &str| with_token(
            pb::ListPortalAccessRequest { realm_id: realm_id.into(), page_size, page_token: page_token.into() },
            &admin,
        );
        refused(s.clone().list_portal_access(dots("", 0, "")).await, &["realm_id"]);
        refused(s.clone().list_portal_access(dots(&w.realm.realm_id, -5, "")).await, &["page_size"]);
        // A token of another list is refused too.
        let other_list = s.clone().list_access_requests(list(&w.realm.realm_id, 0, 1, "")).await.unwrap().into_inner().next_page_token;
        let foreign = if other_list.is_empty() { "AAAA".to_owned() } else { other_list };
        refused(s.clone().list_portal_access(dots(&w.realm.realm_id, 0, &foreign)).await, &["page_token"]);

        let allow_req = |request_id: &str, portal_ids: Vec<String>, duration: Option<prost_types::Duration>| with_token(
            pb::AllowAccessRequest { access_request_id: request_id.into(), portal_ids, duration, ..Default::default() },
            &admin,
        );
        let rid = request.access_request_id.clone();
        refused(s.clone().allow_access(allow_req(&rid, vec![], None)).await, &["portal_ids"]);
        refused(s.clone().allow_access(allow_req(&rid, vec!["x".into()], None)).await, &["portal_ids"]);
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone(), w.sub_a.clone()], None)).await, &["portal_ids"]);
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone(); 501], None)).await, &["portal_ids"]);
        let minutes = |m: i64| Some(prost_types::Duration { seconds: m * 60, nanos: 0 });
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone()], minutes(14))).await, &["duration"]);
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone()], minutes(30 * 24 * 60 + 1))).await, &["duration"]);
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone()], Some(prost_types::Duration { seconds: 3600, nanos: -1 }))).await, &["duration"]);
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone()], Some(prost_types::Duration { seconds: i64::MAX, nanos: 0 }))).await, &["duration"]);
        // At the edge of what a duration can hold: refused, not a panic.
        refused(s.clone().allow_access(allow_req(&rid, vec![w.sub_a.clone()], Some(prost_types::Duration { seconds: i64::MAX / 1000, nanos: 999_999_999 }))).await, &["duration"]);
        refused(s.clone().allow_access(allow_req("", vec![], minutes(1))).await, &["access_request_id", "portal_ids", "duration"]);

        let revoke_req = |realm_id: &str, portal_ids: Vec<String>| with_token(
            pb::RevokeAccessRequest { realm_id: realm_id.into(), portal_ids },
            &admin,
        );
        refused(s.clone().revoke_access(revoke_req("", vec![])).await, &["realm_id", "portal_ids"]);
        refused(s.clone().revoke_access(revoke_req(&w.realm.realm_id, vec!["nope".into()])).await, &["portal_ids"]);
        assert_error(
            s.clone().revoke_access(revoke_req(&w.realm.realm_id, vec![uuid::Uuid::now_v7().to_string()])).await,
            Code::NotFound,
            "PORTAL_NOT_FOUND",
        );

        let logs_req = |portal_id: &str, page_size: i32, page_token: &str| with_token(
            pb::ListSupportAccessLogsRequest { portal_id: portal_id.into(), page_size, page_token: page_token.into() },
            &admin,
        );
        refused(s.clone().list_support_access_logs(logs_req("bad", 0, "")).await, &["portal_id"]);
        refused(s.clone().list_support_access_logs(logs_req(&w.sub_a, -1, "")).await, &["page_size"]);
        refused(s.clone().list_support_access_logs(logs_req(&w.sub_a, 0, "Zm9yZ2Vk")).await, &["page_token"]);

        let recorder = app.service(&["support_actions.record"]);
        let record = |action: &str, details: usize, agent_id: &str, agent_name: &str| with_token(
            pb::RecordSupportActionRequest {
                request_id: String::new(),
                portal_id: w.sub_a.clone(),
                temporary_admin_id: uuid::Uuid::now_v7().to_string(),
                action: action.into(),
                target_type: "course".into(),
                target_id: "c-1".into(),
                details: (0..details).map(|i| (format!("k{i}"), "v".to_string())).collect(),
                agent_id: agent_id.into(),
                agent_name: agent_name.into(),
            },
            &recorder,
        );
        let agent_id = ana.id.to_string();
        refused(s.clone().record_support_action(record("", 0, &agent_id, "Ana")).await, &["action"]);
        refused(s.clone().record_support_action(record("Course Viewed!", 0, &agent_id, "Ana")).await, &["action"]);
        refused(s.clone().record_support_action(record("course.viewed", 33, &agent_id, "Ana")).await, &["details"]);
        refused(s.clone().record_support_action(record("course.viewed", 0, "", "")).await, &["agent_id", "agent_name"]);

        let mut after = Vec::new();
        for t in tables {
            after.push(app.count(t).await);
        }
        assert_eq!(after, before, "bad input changed {tables:?}");
    }
}
