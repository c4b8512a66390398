//! Which calls are let in (SPEC §7). Load shedding: at most `limit` calls
//! are worked on at once across all connections; one more is refused at
//! once with `RESOURCE_EXHAUSTED` / `OVERLOADED` instead of waiting in a
//! queue that would only grow. While the periodic check finds the database
//! unreachable, calls fail fast with `UNAVAILABLE` / `DATABASE_UNAVAILABLE`
//! rather than each waiting out a connection timeout. Health and
//! reflection are always let in, so probes keep telling the truth. A
//! stream holds its slot only until it starts; its own bounds (buffer,
//! stall timeout) cover the rest.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::body::Body;
use tower_service::Service;

use super::middleware::{BoxFuture, GrpcService, take_ready};

use crate::error::{Error, Reason};
use crate::metrics::Metrics;
use crate::store::Reachability;

#[derive(Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    database: Reachability,
}

impl AdmissionLayer {
    pub fn new(limit: usize, database: Reachability) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limit.max(1))),
            database,
        }
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            slots: self.slots.clone(),
            database: self.database.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    slots: Arc<Semaphore>,
    database: Reachability,
}

impl<S> Service<http::Request<Body>> for Admission<S>
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
        let path = request.uri().path();
        let exempt = path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.");
        let slot = if exempt {
            None
        } else if !self.database.is_reachable() {
            let status: tonic::Status = Error::new(
                Reason::DatabaseUnavailable,
                "the database is unavailable; retry later",
            )
            .into();
            return Box::pin(std::future::ready(Ok(status.into_http())));
        } else {
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    Metrics::get().shed_requests.add(1, &[]);
                    let status: tonic::Status = Error::new(
                        Reason::Overloaded,
                        "the server is at its concurrency limit; retry with backoff",
                    )
                    .into();
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let response = inner.call(request).await;
            drop(slot);
            response
        })
    }
}
