//! Use cases: authorize, validate, run one transaction, record the audit
//! event. No gRPC and no SQL here.

mod acting;
mod admin;
mod api_keys;
mod audit;
mod audit_tail;
mod caller;
mod checks;
mod evidence;
mod import;
mod portals;
mod progress_checkpoints;
mod support;
mod support_actions;

use std::sync::Arc;

pub use admin::{NewUser, TypeChanged, UserPage};
pub use api_keys::{GeneratedKey, VerifiedKey};
pub use audit::{AuditSubscription, StreamEnd, StreamFrom, StreamItem};
pub use audit_tail::SharedEvent;
pub use caller::Caller;
pub use checks::EffectivePermissions;
pub use evidence::{InclusionProof, LogSigner, SignedCheckpoint};
pub use import::{UserImport, UserToImport};
pub use portals::{PortalPage, PortalView, RealmCreated};
pub use support::{
    AccessResult, AccessStatus, AllowTerms, Allowed, Approved, EndTarget, Ended, LogPage,
    NewAccessRequest, PolicyChange, PolicyUpdated, PortalAccessPage, PortalAccessView, RequestPage,
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
    /// Events an audit stream holds for a slow client (L4).
    pub stream_buffer: usize,
    /// How long an audit stream waits for a client that takes nothing
    /// before ending it with RESOURCE_EXHAUSTED (L4).
    pub stream_stall_timeout: std::time::Duration,
    /// How often an idle audit stream tells the client where it stands (L9).
    pub stream_progress_interval: std::time::Duration,
}

/// The service's use cases, shared by every gRPC handler.
#[derive(Clone)]
pub struct Services {
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    /// Set once shutdown begins: long-lived streams end with a status.
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// The shared reader of new audit events that live streams follow.
    pub(crate) audit_tail: audit_tail::AuditTail,
    /// The group-commit writer of RecordSupportAction.
    pub(crate) support_actions: support_actions::SupportActionWriter,
    /// Signs the evidence log's checkpoints (E2).
    pub(crate) log_signer: Arc<LogSigner>,
    /// The checkpoints the streams' progress messages carry (E4).
    pub(crate) progress_checkpoints: Arc<progress_checkpoints::ProgressCheckpoints>,
}

impl Services {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: Settings,
        log_signer: Arc<LogSigner>,
    ) -> Self {
        let shutdown = tokio::sync::watch::Sender::new(false);
        Self {
            audit_tail: audit_tail::AuditTail::start(store.clone(), shutdown.subscribe()),
            support_actions: support_actions::SupportActionWriter::start(
                store.clone(),
                clock.clone(),
            ),
            store,
            clock,
            settings,
            shutdown,
            log_signer,
            progress_checkpoints: Arc::default(),
        }
    }

    /// Ends every open stream with a status carrying its cursor.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
