//! Authentication as an interceptor: a valid bearer token becomes a
//! [`Principal`] in the request extensions; anything else is refused before
//! a handler runs.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use crate::domain::Principal;
use crate::error::{Error, Reason};
use crate::token::TokenKeys;

#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<TokenKeys>,
}

impl Authenticator {
    pub fn new(keys: Arc<TokenKeys>) -> Self {
        Self { keys }
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| Error::new(Reason::MissingToken, "authorization metadata is missing"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                Error::new(
                    Reason::MissingToken,
                    "authorization must be \"Bearer <token>\"",
                )
            })?;
        let (principal, exp) = self.keys.verify_with_expiry(token.trim())?;
        crate::grpc::observe::record_principal(&principal);
        request.extensions_mut().insert(principal);
        request.extensions_mut().insert(TokenExpiry(exp));
        Ok(request)
    }
}

/// The verified token's `exp` (seconds since the epoch): long-lived calls
/// end when it passes (L8).
#[derive(Debug, Clone, Copy)]
pub struct TokenExpiry(pub u64);

/// The principal the interceptor stored.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::new(Reason::MissingToken, "unauthenticated").into())
}
