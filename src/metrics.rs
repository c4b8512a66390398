//! The service's OpenTelemetry instruments. Without an OTLP endpoint the
//! global meter is a no-op and recording costs next to nothing.

use std::sync::LazyLock;

use opentelemetry::metrics::{Counter, Gauge, Histogram, UpDownCounter};

pub struct Metrics {
    /// Seconds from request headers to the end of the response, by method and code.
    pub rpc_duration: Histogram<f64>,
    /// Calls under way, streams included.
    pub active_streams: UpDownCounter<i64>,
    /// Calls refused by the concurrency limit.
    pub shed_requests: Counter<u64>,
    /// Support grants active at the last sweep.
    pub active_grants: Gauge<u64>,
    /// How long past its expiry the oldest grant ended by a sweep had lapsed.
    pub sweeper_lag: Gauge<f64>,
    /// Seconds a numbering round of this replica took, fence to commit (W1).
    pub numbering_round: Histogram<f64>,
    /// Seconds a write waited after its commit for its events' numbers (W1).
    pub numbering_wait: Histogram<f64>,
}

/// Bucket bounds of the database-side histograms, in seconds.
const SHORT_SECONDS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("portal-access");
    Metrics {
        rpc_duration: meter
            .f64_histogram("rpc.server.duration")
            .with_unit("s")
            .with_description("Duration of gRPC calls handled, by method and code")
            .with_boundaries(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .build(),
        active_streams: meter
            .i64_up_down_counter("portal_access.active_streams")
            .with_description("gRPC calls (HTTP/2 streams) under way")
            .build(),
        shed_requests: meter
            .u64_counter("portal_access.shed_requests")
            .with_description("Calls refused with RESOURCE_EXHAUSTED by the concurrency limit")
            .build(),
        active_grants: meter
            .u64_gauge("portal_access.support.active_grants")
            .with_description("Support grants active at the last sweep")
            .build(),
        sweeper_lag: meter
            .f64_gauge("portal_access.support.sweeper_lag")
            .with_unit("s")
            .with_description("How long the oldest grant a sweep ended had been expired")
            .build(),
        numbering_round: meter
            .f64_histogram("portal_access.audit.numbering_round")
            .with_unit("s")
            .with_description("Duration of this replica's audit numbering rounds (W1)")
            .with_boundaries(SHORT_SECONDS.to_vec())
            .build(),
        numbering_wait: meter
            .f64_histogram("portal_access.audit.numbering_wait")
            .with_unit("s")
            .with_description("Time from a write's commit to its audit events' numbers (W1)")
            .with_boundaries(SHORT_SECONDS.to_vec())
            .build(),
    }
});

impl Metrics {
    pub fn get() -> &'static Metrics {
        &METRICS
    }
}
