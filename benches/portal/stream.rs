//! Audit stream fan-out: subscribers on one replica (or another), a writer
//! at a fixed rate, and the time from an event's commit to its receipt.
//! The same client measures the real server and its reference, the bare
//! tonic broadcast server of `broadcast.rs`, which serves the same paths.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portal_access::proto::v1 as pb;
use portal_access::proto::v1::support_access_service_client::SupportAccessServiceClient;
use tokio::sync::{Semaphore, watch};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::h2load::percentile_us;
use crate::seed::with_token;

pub struct FanOut {
    pub write_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub delivered_fraction: f64,
    pub idle_kib_per_subscriber: f64,
}

/// Streams per connection: well under the server's 1024.
const STREAMS_PER_CONNECTION: usize = 100;

/// What a subscriber reads of each `StreamAuditEventsResponse`: the event's
/// commit time; prost skips the other fields without building them. Like
/// h2load for unary calls, the load generator keeps its own cost low on a
/// machine it shares with the server: decoding every field of 1,000,000
/// messages a second took more CPU than the server spent sending them.
#[derive(Clone, PartialEq, prost::Message)]
struct Stamped {
    #[prost(message, optional, tag = "1")]
    event: Option<CommitTime>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CommitTime {
    /// `AuditEvent.occur_time`.
    #[prost(message, optional, tag = "4")]
    occur_time: Option<prost_types::Timestamp>,
}

const STREAM_PATH: &str = "/portal_access.v1.SupportAccessService/StreamAuditEvents";

/// Who writes the events: `RecordSupportAction` on `channel`, to the real
/// server (the token is checked) or to the bare reference (it is ignored).
pub struct Writer {
    pub channel: Channel,
    pub token: String,
    pub request: pb::RecordSupportActionRequest,
}

#[allow(clippy::too_many_arguments)]
pub async fn fan_out(
    subscribe_to: std::net::SocketAddr,
    realm_id: &str,
    subscriber_token: &str,
    after_cursor: String,
    subscribers: usize,
    writer: &Writer,
    rate: usize,
    seconds: Duration,
    rss_kib: impl Fn() -> u64,
) -> FanOut {
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(STREAMS_PER_CONNECTION) {
        channels.push(
            Channel::from_shared(format!("http://{subscribe_to}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let before = rss_kib();
    // (events each subscriber should get, give up now)
    let (stop_tx, stop_rx) = watch::channel((usize::MAX, false));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers);
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        let mut client = tonic::client::Grpc::new(channels[i / STREAMS_PER_CONNECTION].clone());
        let request = with_token(
            pb::StreamAuditEventsRequest {
                realm_id: realm_id.into(),
                portal_ids: vec![],
                categories: vec![],
                start: Some(pb::stream_audit_events_request::Start::AfterCursor(
                    after_cursor.clone(),
                )),
            },
            subscriber_token,
        );
        let mut stop = stop_rx.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            client.ready().await.unwrap();
            let codec = tonic_prost::ProstCodec::<pb::StreamAuditEventsRequest, Stamped>::default();
            let mut stream = client
                .server_streaming(request, PathAndQuery::from_static(STREAM_PATH), codec)
                .await
                .unwrap()
                .into_inner();
            let _ = ready.send(()).await;
            let mut latencies = Vec::new();
            loop {
                let (target, abort) = *stop.borrow();
                if abort || latencies.len() >= target {
                    break;
                }
                tokio::select! {
                    _ = stop.changed() => continue,
                    next = stream.message() => match next {
                        Ok(Some(message)) => {
                            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                            // Progress messages (L9) carry no event.
                            let Some(event) = message.event else { continue };
                            let at = event.occur_time.unwrap();
                            let committed = Duration::new(at.seconds as u64, at.nanos as u32);
                            latencies.push(now.saturating_sub(committed).as_micros() as u64);
                        }
                        _ => break,
                    }
                }
            }
            latencies
        }));
    }
    for _ in 0..subscribers {
        ready_rx.recv().await.unwrap();
    }
    // Streams are open (the server has answered each); let the server settle
    // their first (empty) page before reading memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib();

    let written = write_at(writer, rate, seconds).await;
    let expected = written * subscribers;
    // Each subscriber stops once it has every event; after 30 s the rest
    // are given up on (and counted as not delivered).
    stop_tx.send_replace((written, false));
    let giving_up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        stop_tx.send_replace((written, true));
    });
    let mut all = Vec::with_capacity(expected);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    giving_up.abort();
    let delivered = all.len();
    all.sort_unstable();
    FanOut {
        write_rate: written as f64 / seconds.as_secs_f64(),
        p50_ms: percentile_us(&all, 0.50) / 1000.0,
        p99_ms: percentile_us(&all, 0.99) / 1000.0,
        delivered_fraction: delivered as f64 / expected.max(1) as f64,
        idle_kib_per_subscriber: idle.saturating_sub(before) as f64 / subscribers as f64,
    }
}

/// RecordSupportAction at `rate` per second for `seconds`: the number written.
async fn write_at(writer: &Writer, rate: usize, seconds: Duration) -> usize {
    let in_flight = Arc::new(Semaphore::new(64));
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (rate as f64 * seconds.as_secs_f64()) as usize;
    let mut calls = Vec::with_capacity(total);
    for _ in 0..total {
        interval.tick().await;
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        let mut client = SupportAccessServiceClient::new(writer.channel.clone());
        let request = with_token(writer.request.clone(), &writer.token);
        calls.push(tokio::spawn(async move {
            let ok = client.record_support_action(request).await.is_ok();
            drop(permit);
            ok
        }));
    }
    let mut written = 0;
    for call in calls {
        if call.await.unwrap() {
            written += 1;
        }
    }
    written
}
