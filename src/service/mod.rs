//! Use cases: authorize, validate, run one transaction, record the audit
//! event. No gRPC and no SQL here.

mod acting;
mod admin;
mod api_keys;
mod caller;
mod checks;
mod portals;
mod support;

use std::sync::Arc;

pub use admin::{NewUser, TypeChanged, UserPage};
pub use api_keys::{GeneratedKey, VerifiedKey};
pub use caller::Caller;
pub use checks::EffectivePermissions;
pub use portals::{PortalPage, PortalView, RealmCreated};
pub use support::{
    AccessResult, LogPage, NewAccessRequest, PortalAccessPage, PortalAccessView, RequestPage,
    RequestView, SweepReport,
};

use crate::domain::Clock;
use crate::store::Store;

/// A create request's idempotency key and a digest of the rest of it.
#[derive(Debug, Clone)]
pub struct RequestId {
    pub id: uuid::Uuid,
    pub fingerprint: String,
}

/// The stored form of an optional request id, scoped to the RPC and caller
/// (`scope`) so that two callers never share a key.
pub(crate) fn idempotency<'a>(
    request_id: &'a Option<RequestId>,
    scope: &'a str,
) -> Option<crate::store::IdempotencyKey<'a>> {
    request_id.as_ref().map(|r| crate::store::IdempotencyKey {
        scope,
        request_id: r.id,
        fingerprint: &r.fingerprint,
    })
}

/// Tunables of the use cases, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a support access request waits for an answer (S2).
    pub access_request_ttl: chrono::Duration,
}

/// The service's use cases, shared by every gRPC handler.
#[derive(Clone)]
pub struct Services {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
}

impl Services {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
