//! What the tower services around the generated code (observe, admission,
//! session log) share.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use tonic::body::Body;
use tower_service::Service;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A gRPC service as tonic's router hands it to middleware.
pub trait GrpcService:
    Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> GrpcService for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The service that was polled ready answers this call; a fresh clone
/// takes its place for the next one.
pub fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
