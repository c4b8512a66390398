//! The audit stream's same-run reference: a bare tonic broadcast server.
//!
//! It serves the two methods the stream bench calls, at the real server's
//! paths and with its messages, and nothing else: no database, no auth, no
//! filters, no replay. `RecordSupportAction` stamps an event with the
//! current time as its `occur_time` (its "commit"), encodes it once and
//! sends it into a `tokio::sync::broadcast` channel; every open
//! `StreamAuditEvents` call forwards each event to its client. What this
//! server achieves is what tonic, HTTP/2 and the machine allow for the
//! fan-out; the real server's figures are judged beside it (SPEC §8).
//!
//! It runs in the bench process but on a tokio runtime of its own, with as
//! many worker threads as the real server has, so it does not share the
//! subscribers' runtime. Its transport settings are the real server's
//! (`TCP_NODELAY`, 1,024 streams per connection).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use portal_access::proto::v1 as pb;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

const STREAM_PATH: &str = "/portal_access.v1.SupportAccessService/StreamAuditEvents";
const RECORD_PATH: &str = "/portal_access.v1.SupportAccessService/RecordSupportAction";

/// Events a subscriber may fall behind by before it misses some: the size
/// of the real server's ring of recent events.
const CAPACITY: usize = 8192;

pub struct BareBroadcast {
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
}

impl BareBroadcast {
    pub fn start() -> BareBroadcast {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("bare-broadcast")
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let service = Broadcast {
            events: broadcast::channel(CAPACITY).0,
            sequence: Arc::new(AtomicI64::new(0)),
        };
        runtime.spawn(async move {
            let incoming = TcpIncoming::from(tokio::net::TcpListener::from_std(listener).unwrap())
                .with_nodelay(Some(true));
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(60)))
                .http2_keepalive_timeout(Some(Duration::from_secs(20)))
                .max_concurrent_streams(Some(1024))
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        BareBroadcast { addr, runtime }
    }

    /// Ends the server and its streams (without waiting: callable from
    /// async code).
    pub fn stop(self) {
        self.runtime.shutdown_background();
    }
}

/// The service: one channel of encoded events.
#[derive(Clone)]
struct Broadcast {
    events: broadcast::Sender<Bytes>,
    sequence: Arc<AtomicI64>,
}

impl NamedService for Broadcast {
    const NAME: &'static str = "portal_access.v1.SupportAccessService";
}

impl Service<http::Request<Body>> for Broadcast {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                RECORD_PATH => {
                    Grpc::new(ProstCodec::default())
                        .unary(Publish(service), request)
                        .await
                }
                STREAM_PATH => {
                    Grpc::new(ProstCodec::default())
                        .server_streaming(Subscribe(service), request)
                        .await
                }
                _ => Status::unimplemented("not served by the reference").into_http(),
            })
        })
    }
}

/// `RecordSupportAction`: the event, stamped now, to every subscriber.
struct Publish(Broadcast);

impl UnaryService<pb::RecordSupportActionRequest> for Publish {
    type Response = pb::RecordSupportActionResponse;
    type Future = Ready<Result<Response<Self::Response>, Status>>;

    fn call(&mut self, request: Request<pb::RecordSupportActionRequest>) -> Self::Future {
        let action = request.into_inner();
        let event = pb::AuditEvent {
            sequence: self.0.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            event_id: uuid::Uuid::new_v4().to_string(),
            occur_time: Some(SystemTime::now().into()),
            portal_id: action.portal_id,
            category: pb::AuditCategory::SupportSession as i32,
            action: action.action,
            actor: Some(pb::Actor {
                kind: pb::ActorKind::Account as i32,
                actor_id: action.temporary_admin_id,
                agent_id: action.agent_id,
                agent_name: action.agent_name,
            }),
            target_type: action.target_type,
            target_id: action.target_id,
            details: action.details,
            ..Default::default()
        };
        // Encoded once for every stream, as the real server does; no
        // subscriber (an error here) is not a failure of the write.
        let _ = self
            .0
            .events
            .send(pb::StreamAuditEventsResponse::encode_event(&event));
        ready(Ok(Response::new(pb::RecordSupportActionResponse {
            event: Some(event),
        })))
    }
}

/// `StreamAuditEvents`: every event published from now on. A subscriber
/// that falls more than [`CAPACITY`] events behind skips the ones it lost.
struct Subscribe(Broadcast);

type Events = Pin<Box<dyn Stream<Item = Result<pb::StreamAuditEventsResponse, Status>> + Send>>;

impl ServerStreamingService<pb::StreamAuditEventsRequest> for Subscribe {
    type Response = pb::StreamAuditEventsResponse;
    type ResponseStream = Events;
    type Future = Ready<Result<Response<Events>, Status>>;

    fn call(&mut self, _: Request<pb::StreamAuditEventsRequest>) -> Self::Future {
        // Subscribed before the response (and so before the client sees the
        // stream open): no event published after that is missed.
        let events = BroadcastStream::new(self.0.events.subscribe()).filter_map(|next| {
            next.ok()
                .map(|wire| Ok(pb::StreamAuditEventsResponse::from_encoded(wire)))
        });
        ready(Ok(Response::new(Box::pin(events) as Events)))
    }
}
