//! Every call, whatever its service: one `rpc` span (method, code, realm,
//! principal kind) whose parent is the caller's W3C `traceparent`, the RPC
//! duration metric by method and code, the active-streams gauge, and the
//! trace id handed back in `x-trace-id` when the call fails, so a caller's
//! bug report leads straight to the trace and the log lines.
//!
//! The span lives until the response body ends: a stream's span covers the
//! whole stream, and its code comes from the trailers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::body::Body;
use tower_service::Service;

use super::middleware::{BoxFuture, GrpcService, take_ready};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::Principal;
use crate::grpc::status::{code_name, grpc_status};
use crate::metrics::Metrics;

/// The response header (or trailer) that carries the trace id of a failed call.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// A tower layer putting [`Observed`] around the whole router.
#[derive(Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> tower_layer::Layer<S> for ObserveLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observed { inner }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for Observed<S>
where
    S: GrpcService,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let (service, method) = split_path(&path);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            code = Empty,
            realm = Empty,
            principal = Empty,
            trace_id = Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        let _ = span.set_parent(parent.clone());
        let trace_id = trace_id(&span, &parent);
        span.record("trace_id", tracing::field::display(&trace_id));

        let mut inner = take_ready(&mut self.inner);
        let call = CallRecord::start(span.clone(), started, path, trace_id);
        let future = span.in_scope(|| inner.call(request));
        Box::pin(async move {
            let mut call = call;
            let Ok(response) = tracing::Instrument::instrument(future, span).await;
            let (mut parts, body) = response.into_parts();
            // Errors are sent "trailers only": the status is in the headers.
            if let Some(code) = grpc_status(&parts.headers) {
                if code != tonic::Code::Ok {
                    insert_trace_id(&mut parts.headers, &call.trace_id);
                }
                call.finish(code);
                return Ok(http::Response::from_parts(parts, body));
            }
            let body = Body::new(ObservedBody {
                inner: body,
                call: Some(call),
            });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// `/portal_access.v1.PortalService/CheckPermission` →
/// (`portal_access.v1.PortalService`, `CheckPermission`).
fn split_path(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""))
}

/// The trace this call belongs to: its OpenTelemetry span's when export is
/// on, else the caller's `traceparent`, else a fresh one, so that logs and
/// errors always carry an id.
fn trace_id(span: &tracing::Span, parent: &opentelemetry::Context) -> String {
    let own = span.context().span().span_context().trace_id();
    if own != TraceId::INVALID {
        return own.to_string();
    }
    let inherited = parent.span().span_context().trace_id();
    if inherited != TraceId::INVALID {
        return inherited.to_string();
    }
    TraceId::from_bytes(rand::random::<[u8; 16]>()).to_string()
}

/// Records who is calling on the current call's span, once the token is
/// verified.
pub fn record_principal(principal: &Principal) {
    let span = tracing::Span::current();
    span.record("principal", principal.kind());
    if let Principal::Account { realm_id, .. } = principal {
        span.record("realm", tracing::field::display(realm_id));
    }
}

fn insert_trace_id(headers: &mut http::HeaderMap, trace_id: &str) {
    if let Ok(value) = http::HeaderValue::from_str(trace_id) {
        headers.insert(TRACE_ID_HEADER, value);
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// What is known of a call until its status is. Dropped unfinished, the
/// call was abandoned (client gone, deadline passed) and counts as CANCELLED.
struct CallRecord {
    span: tracing::Span,
    started: Instant,
    path: String,
    trace_id: String,
    finished: bool,
}

impl CallRecord {
    fn start(span: tracing::Span, started: Instant, path: String, trace_id: String) -> Self {
        Metrics::get().active_streams.add(1, &[]);
        Self {
            span,
            started,
            path,
            trace_id,
            finished: false,
        }
    }

    fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let name = code_name(code);
        let metrics = Metrics::get();
        metrics.active_streams.add(-1, &[]);
        metrics.rpc_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("rpc.method", self.path.clone()),
                KeyValue::new("rpc.grpc.status_code", name),
            ],
        );
        self.span.record("code", name);
        self.span.record("rpc.grpc.status_code", code as i32);
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let _enter = self.span.enter();
        match code {
            tonic::Code::Ok => tracing::debug!(elapsed_ms, "call finished"),
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                self.span.record("otel.status_code", "ERROR");
                tracing::error!(code = name, elapsed_ms, "call failed");
            }
            _ => tracing::info!(code = name, elapsed_ms, "call refused"),
        }
    }
}

/// A response body that reports the call's status when it ends.
struct ObservedBody {
    inner: Body,
    call: Option<CallRecord>,
}

impl HttpBody for ObservedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let Ok(mut trailers) = frame.into_trailers() else {
                    unreachable!("checked to be trailers")
                };
                let code = grpc_status(&trailers).unwrap_or(tonic::Code::Unknown);
                if let Some(mut call) = self.call.take() {
                    if code != tonic::Code::Ok {
                        insert_trace_id(&mut trailers, &call.trace_id);
                    }
                    call.finish(code);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(mut call) = self.call.take() {
                    call.finish(status.code());
                }
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                if let Some(mut call) = self.call.take() {
                    call.finish(tonic::Code::Ok);
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}
