//! Issue #6 observability: one span per RPC, exported through
//! OpenTelemetry (the SDK's in-memory exporter stands in for an OTLP
//! collector), with its parent taken from the caller's `traceparent`, and
//! the trace id handed back on errors. Its own test binary, because it
//! installs the process-wide subscriber.

#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use helpers::*;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use portal_access::config::LogFormat;
use portal_access::proto::v1 as pb;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const FAILING_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        })
}

async fn finished_spans(
    exporter: &InMemorySpanExporter,
    provider: &SdkTracerProvider,
    name: &str,
    at_least: usize,
) -> Vec<SpanData> {
    // A span ends when the server has sent the last frame, which can be
    // just after the client has read it.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            provider.force_flush().unwrap();
            let spans: Vec<SpanData> = exporter
                .get_finished_spans()
                .unwrap()
                .into_iter()
                .filter(|s| s.name == name)
                .collect();
            if spans.len() >= at_least {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a finished {name} span"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_has_one_span_with_its_caller_as_parent() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    portal_access::telemetry::install(LogFormat::Text, Some(provider.clone()));
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let realm = app.create_realm("otel").await;

    let mut request = with_token(
        pb::CheckPermissionRequest {
            portal_id: realm.top_portal_id.clone(),
            permission: pb::Permission::ManageUsers as i32,
            user_id: realm.admin_id.clone(),
        },
        &realm.admin_token,
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{PARENT}-01").parse().unwrap(),
    );
    app.admins()
        .check_permission(request)
        .await
        .expect("check permission");

    let spans = finished_spans(
        &exporter,
        &provider,
        "portal_access.v1.AdminService/CheckPermission",
        1,
    )
    .await;
    assert_eq!(spans.len(), 1, "one span for one call");
    let span = &spans[0];
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(attribute(span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(span, "rpc.service").as_deref(),
        Some("portal_access.v1.AdminService")
    );
    assert_eq!(
        attribute(span, "rpc.method").as_deref(),
        Some("CheckPermission")
    );
    assert_eq!(attribute(span, "code").as_deref(), Some("OK"));
    assert_eq!(attribute(span, "principal").as_deref(), Some("account"));
    assert_eq!(
        attribute(span, "realm").as_deref(),
        Some(realm.realm_id.as_str())
    );

    // The realm was made by an operator, without a traceparent: a root span.
    let created = finished_spans(
        &exporter,
        &provider,
        "portal_access.v1.PortalService/CreateRealm",
        1,
    )
    .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].parent_span_id, SpanId::INVALID);
    assert_eq!(
        attribute(&created[0], "principal").as_deref(),
        Some("operator")
    );

    // A failed call names its trace, so a bug report leads to it.
    let mut failing = with_token(
        pb::GetPortalRequest {
            portal_id: uuid::Uuid::new_v4().to_string(),
        },
        &realm.admin_token,
    );
    failing.metadata_mut().insert(
        "traceparent",
        format!("00-{FAILING_TRACE}-{PARENT}-01").parse().unwrap(),
    );
    let status = app
        .portals()
        .get_portal(failing)
        .await
        .expect_err("no such portal");
    assert_eq!(
        status
            .metadata()
            .get("x-trace-id")
            .unwrap()
            .to_str()
            .unwrap(),
        FAILING_TRACE
    );
    let failed = finished_spans(
        &exporter,
        &provider,
        "portal_access.v1.PortalService/GetPortal",
        1,
    )
    .await;
    assert_eq!(
        attribute(&failed[0], "code").as_deref(),
        Some(portal_access::grpc::status::code_name(status.code()))
    );
    app.stop().await;
}
