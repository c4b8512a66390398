//! The audit stream (S11, L1-L5) and chain verification (L6).
//!
//! Design of the stream. The table is the only source of truth: a stream
//! reads committed events by `sequence > last delivered`, page by page,
//! and never holds more than one page plus a bounded channel in memory.
//! Sequences are handed out in commit order (see `store/audit.rs`: every
//! audited transaction takes the single `audit_head` row last and keeps it
//! until COMMIT), so once a reader has seen sequence N, no event below N
//! can still commit: replay and live tail are the same query, and the
//! hand-over from one to the other has no gap and no duplicate (L2).
//!
//! When a stream has caught up it sleeps until a commit is known: from this
//! replica directly, or from any replica via PostgreSQL LISTEN/NOTIFY (L5),
//! with a one-second re-read as the safety net for a lost notification.
//!
//! A slow subscriber makes its producer wait (HTTP/2 flow control, then the
//! bounded channel); it then simply continues from the table. One that has
//! not taken a single event for the stall timeout is ended with
//! RESOURCE_EXHAUSTED and the cursor of the last event it was given (L4).
//! The producer stops as soon as the client goes away, and every stream ends
//! with UNAVAILABLE and its cursor when the server shuts down.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::audit_tail::SharedEvent;
use super::caller::wrong_kind;
use super::{Caller, Services};
use crate::domain::audit::{ChainVerdict, ChainVerifier};
use crate::domain::{Principal, Scope};
use crate::error::{Error, Reason, Result};
use crate::store::{AuditFilter, EventPosition};

/// Where a stream starts.
#[derive(Debug, Clone, Copy)]
pub enum StreamFrom {
    /// After the event with this sequence (a cursor).
    After(i64),
    /// The whole retained log.
    Beginning,
    /// Only events committed from now on.
    Now,
}

/// Why a stream ended, with the last sequence it delivered (0: none).
#[derive(Debug, Clone)]
pub enum StreamEnd {
    TooSlow { last: i64 },
    ShuttingDown { last: i64 },
    Failed { error: Error, last: i64 },
}

/// An open stream: events in order, then (once the sender is gone) why it
/// ended. A client that goes away drops both, which stops the producer.
pub struct AuditSubscription {
    pub events: mpsc::Receiver<Arc<SharedEvent>>,
    pub end: oneshot::Receiver<StreamEnd>,
}

/// Events read from the table per query.
const PAGE: u64 = 256;
/// How often a caught-up stream re-reads the table without any wake-up.
const SAFETY_POLL: Duration = Duration::from_secs(1);

impl Services {
    /// L3: who may read which realm's events.
    fn audit_reader(&self, caller: &Caller, realm_id: Option<Uuid>) -> Result<()> {
        match caller.principal() {
            Principal::Service { .. } => {
                if caller.principal().has_scope(Scope::AuditRead) {
                    Ok(())
                } else {
                    Err(Error::permission_denied(
                        Reason::MissingScope,
                        "reading the audit log needs the service scope audit.read",
                    ))
                }
            }
            Principal::Account { .. } => {
                let realm_id = realm_id
                    .ok_or_else(|| Error::invalid("realm_id", "is required for accounts"))?;
                let standing = super::caller::require_account_of(caller, realm_id)?;
                if standing.is_support_temporary() {
                    return Err(Error::permission_denied(
                        Reason::SupportAdminRestricted,
                        "temporary support admins cannot read the audit log",
                    ));
                }
                super::portals::require_full_top_level_admin(standing)
            }
            _ => Err(wrong_kind(
                caller,
                "a top-level admin with settings access or a service with audit.read",
            )),
        }
    }

    /// S11, L1-L5: replays then follows the committed events that match.
    pub async fn stream_audit_events(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        from: StreamFrom,
    ) -> Result<AuditSubscription> {
        self.audit_reader(caller, filter.realm_id)?;
        if let Some(realm_id) = filter.realm_id
            && self.store.realm(realm_id).await?.is_none()
        {
            return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
        }
        let start = match from {
            StreamFrom::After(sequence) => sequence,
            StreamFrom::Beginning => 0,
            StreamFrom::Now => self.store.last_audit_sequence().await?,
        };
        let (events, events_rx) = mpsc::channel(self.settings.stream_buffer.max(1));
        let (end, end_rx) = oneshot::channel();
        let producer = Producer {
            services: self.clone(),
            filter,
            last: start,
            scanned: start,
            events,
        };
        tokio::spawn(async move {
            if let Some(why) = producer.run().await {
                let _ = end.send(why);
            }
        });
        Ok(AuditSubscription {
            events: events_rx,
            end: end_rx,
        })
    }

    /// L6: recomputes a realm's chain, a page at a time.
    pub async fn verify_audit_log(&self, caller: &Caller, realm_id: Uuid) -> Result<ChainVerdict> {
        self.audit_reader(caller, Some(realm_id))?;
        let filter = AuditFilter {
            realm_id: Some(realm_id),
            ..AuditFilter::default()
        };
        let mut verifier = ChainVerifier::new();
        let mut last = 0;
        loop {
            let page = self
                .store
                .audit_events(&filter, EventPosition::After(last), 1000)
                .await?;
            if let Some(event) = page.last() {
                last = event.sequence;
                page.iter().for_each(|e| verifier.feed(e));
                continue;
            }
            // The head is recorded in the same transaction as each append,
            // so once it matches, every event behind it has been read; if
            // it moved on, newer events have committed meanwhile.
            let head = self
                .store
                .audit_head_hash(realm_id)
                .await?
                .ok_or_else(|| Error::not_found(Reason::RealmNotFound, "realm", realm_id))?;
            let newer = self
                .store
                .audit_events(&filter, EventPosition::After(last), 1)
                .await?;
            if newer.is_empty() || verifier.head() == head {
                return Ok(verifier.finish(&head));
            }
        }
    }
}

struct Producer {
    services: Services,
    filter: AuditFilter,
    /// The last event delivered (the stream's cursor).
    last: i64,
    /// How far the log has been looked through (matching or not).
    scanned: i64,
    events: mpsc::Sender<Arc<SharedEvent>>,
}

impl Producer {
    /// Runs until the client leaves (`None`) or the stream must end.
    async fn run(mut self) -> Option<StreamEnd> {
        let mut commits = self.services.store.subscribe_commits();
        let mut tailed = self.services.audit_tail.subscribe();
        let mut shutdown = self.services.shutdown.subscribe();
        let stall = self.services.settings.stream_stall_timeout;
        loop {
            if *shutdown.borrow() {
                return Some(StreamEnd::ShuttingDown { last: self.last });
            }
            commits.borrow_and_update();
            tailed.borrow_and_update();
            // From the shared tail when it reaches back this far, else from
            // the table (replay, or a reader that fell behind the ring).
            let (page, caught_up, from_tail) =
                match self
                    .services
                    .audit_tail
                    .after(self.scanned, &self.filter, PAGE as usize)
                {
                    Some(slice) => {
                        self.scanned = slice.scanned;
                        (slice.events, slice.caught_up, true)
                    }
                    None => match self
                        .services
                        .store
                        .audit_events(&self.filter, EventPosition::After(self.scanned), PAGE)
                        .await
                    {
                        Ok(page) => {
                            if let Some(last) = page.last() {
                                self.scanned = last.sequence;
                            }
                            let caught_up = (page.len() as u64) < PAGE;
                            (
                                page.into_iter().map(SharedEvent::new).collect(),
                                caught_up,
                                false,
                            )
                        }
                        Err(error) => {
                            return Some(StreamEnd::Failed {
                                error,
                                last: self.last,
                            });
                        }
                    },
                };
            for event in page {
                let sequence = event.event.sequence;
                // Room in the buffer is the usual case: no timer for it.
                let event = match self.events.try_send(event) {
                    Ok(()) => {
                        self.last = sequence;
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return None,
                    Err(mpsc::error::TrySendError::Full(event)) => event,
                };
                tokio::select! {
                    sent = self.events.send_timeout(event, stall) => match sent {
                        Ok(()) => self.last = sequence,
                        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                            return Some(StreamEnd::TooSlow { last: self.last });
                        }
                        Err(mpsc::error::SendTimeoutError::Closed(_)) => return None,
                    },
                    _ = shutdown.wait_for(|stopped| *stopped) => {
                        return Some(StreamEnd::ShuttingDown { last: self.last });
                    }
                }
            }
            if caught_up {
                tokio::select! {
                    _ = commits.changed(), if !from_tail => {}
                    _ = tailed.changed(), if from_tail => {}
                    _ = tokio::time::sleep(SAFETY_POLL) => {}
                    _ = self.events.closed() => return None,
                    _ = shutdown.wait_for(|stopped| *stopped) => {
                        return Some(StreamEnd::ShuttingDown { last: self.last });
                    }
                }
            }
        }
    }
}
