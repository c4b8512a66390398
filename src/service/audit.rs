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
//!
//! L8: the right to read is not checked once at open. An account's stream
//! re-authorizes before it hands over events whenever the read cache has
//! seen a change (this replica at once, others through NOTIFY) and at least
//! every second (the cache's bound), and ends when its token expires.
//!
//! L9: a progress message (the cursor the stream has looked through, no
//! event) is sent when the replay reaches the live tail and whenever the
//! stream has been idle for the progress interval.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

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

/// One message of a stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    Event(Arc<SharedEvent>),
    /// L9: every matching event up to this sequence has been sent; E4:
    /// with signed checkpoints of the realms concerned.
    Progress {
        through: i64,
        checkpoints: Vec<String>,
    },
}

/// An open stream: events in order, then (once the sender is gone) why it
/// ended. A client that goes away drops both, which stops the producer.
pub struct AuditSubscription {
    pub events: mpsc::Receiver<StreamItem>,
    pub end: oneshot::Receiver<StreamEnd>,
}

/// Events read from the table per query.
const PAGE: u64 = 256;
/// How often a caught-up stream re-reads the table without any wake-up.
const SAFETY_POLL: Duration = Duration::from_secs(1);
/// L8: an account's stream re-authorizes at least this often, the read
/// cache's staleness bound across replicas.
const REAUTHORIZE_EVERY: Duration = crate::store::CACHE_MAX_AGE;

impl Services {
    /// L3: who may read which realm's events.
    pub(super) fn audit_reader(&self, caller: &Caller, realm_id: Option<Uuid>) -> Result<()> {
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
    /// `token_expires_at`: when the caller's token expires (L8).
    pub async fn stream_audit_events(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        from: StreamFrom,
        token_expires_at: Option<DateTime<Utc>>,
    ) -> Result<AuditSubscription> {
        self.audit_reader(caller, filter.realm_id)?;
        if let Some(realm_id) = filter.realm_id
            && self.store.realm(realm_id).await?.is_none()
        {
            return Err(Error::not_found(Reason::RealmNotFound, "realm", realm_id));
        }
        // L8: a portal the subscriber cannot see is NOT_FOUND at once, not
        // a stream that stays silent forever.
        for portal_id in &filter.portal_ids {
            let visible = self
                .store
                .portal(*portal_id)
                .await?
                .is_some_and(|p| filter.realm_id.is_none_or(|r| r == p.realm_id));
            if !visible {
                return Err(Error::not_found(
                    Reason::PortalNotFound,
                    "portal",
                    *portal_id,
                ));
            }
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
            caller: caller.clone(),
            token_expires_at,
            authorized: (self.store.standing_changes(), Instant::now()),
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
        // A realm written to without pause may stay ahead; a few rounds
        // suffice in practice, and then the verdict stands.
        let mut settles = 0;
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
            if verifier.head() == head {
                return Ok(verifier.finish(&head));
            }
            if newer.is_empty() {
                // Events committed but not yet numbered (W1) are behind the
                // head and not in the log yet: number them, then read on.
                if settles == 3 {
                    return Ok(verifier.finish(&head));
                }
                self.store.number_committed_events().await?;
                settles += 1;
            }
        }
    }
}

struct Producer {
    services: Services,
    /// Re-authorized while the stream lives (L8).
    caller: Caller,
    token_expires_at: Option<DateTime<Utc>>,
    /// The cache's change counter and the moment of the last authorization.
    authorized: (u64, Instant),
    filter: AuditFilter,
    /// The last event delivered (the stream's cursor).
    last: i64,
    /// How far the log has been looked through (matching or not).
    scanned: i64,
    events: mpsc::Sender<StreamItem>,
}

impl Producer {
    /// L8: whether the subscriber may still read, re-checked when its
    /// standing may have changed; the error ends the stream.
    async fn still_authorized(&mut self) -> Result<()> {
        if let Some(expires_at) = self.token_expires_at
            && Utc::now() >= expires_at
        {
            return Err(Error::new(
                Reason::TokenExpired,
                "the token expired; resume from the cursor with a new one",
            ));
        }
        if !matches!(self.caller, Caller::Account { .. }) {
            // A service's scopes live in its token, which only expires.
            return Ok(());
        }
        let changes = self.services.store.standing_changes();
        if changes == self.authorized.0 && self.authorized.1.elapsed() < REAUTHORIZE_EVERY {
            return Ok(());
        }
        let fresh = self
            .services
            .caller(self.caller.principal().clone())
            .await?;
        self.services.audit_reader(&fresh, self.filter.realm_id)?;
        self.caller = fresh;
        self.authorized = (changes, Instant::now());
        Ok(())
    }

    /// E4: each realm's signed checkpoint as far as the stream has looked.
    /// A checkpoint that cannot be made (no signing key) is left out rather
    /// than ending the stream.
    async fn checkpoints(&self, realms: &BTreeSet<Uuid>) -> Vec<String> {
        let mut notes = Vec::with_capacity(realms.len());
        for realm_id in realms {
            let note =
                self.services
                    .progress_checkpoints
                    .get_or_load(*realm_id, self.scanned, || async {
                        let size = self
                            .services
                            .store
                            .tree_size_at(*realm_id, self.scanned)
                            .await?;
                        self.services.checkpoint_at(*realm_id, size).await
                    });
            match note.await {
                Ok(note) => notes.push(note),
                Err(error) => {
                    tracing::debug!(%realm_id, error = %error.message, "no checkpoint for a progress message");
                }
            }
        }
        notes
    }

    /// Sends one item, waiting at most the stall timeout for room.
    async fn send(
        &mut self,
        item: StreamItem,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> std::result::Result<(), Option<StreamEnd>> {
        let item = match self.events.try_send(item) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(None),
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        let stall = self.services.settings.stream_stall_timeout;
        tokio::select! {
            sent = self.events.send_timeout(item, stall) => match sent {
                Ok(()) => Ok(()),
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                    Err(Some(StreamEnd::TooSlow { last: self.last }))
                }
                Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(None),
            },
            _ = shutdown.wait_for(|stopped| *stopped) => {
                Err(Some(StreamEnd::ShuttingDown { last: self.last }))
            }
        }
    }

    /// Runs until the client leaves (`None`) or the stream must end.
    async fn run(mut self) -> Option<StreamEnd> {
        let mut commits = self.services.store.subscribe_commits();
        let mut tailed = self.services.audit_tail.subscribe();
        let mut shutdown = self.services.shutdown.subscribe();
        let progress_every = self.services.settings.stream_progress_interval;
        // L9: the first progress goes out when the replay catches up.
        let mut told_caught_up = false;
        // E4: realms whose events went out since the last progress.
        let mut changed_realms: BTreeSet<Uuid> = self.filter.realm_id.into_iter().collect();
        let mut last_sent = Instant::now();
        loop {
            if *shutdown.borrow() {
                return Some(StreamEnd::ShuttingDown { last: self.last });
            }
            // Every event up to `known` has committed (sequences follow
            // commit order), so a read that finds nothing more has looked
            // through it.
            let known = *commits.borrow_and_update();
            tailed.borrow_and_update();
            // From the shared tail when it reaches back this far, else from
            // the table (replay, or a reader that fell behind the ring).
            let (page, caught_up, from_tail) =
                match self
                    .services
                    .audit_tail
                    .after(self.scanned, &self.filter, PAGE as usize)
                {
                    Some(slice) => (slice.events, slice.caught_up, Some(slice.scanned)),
                    None => match self
                        .services
                        .store
                        .audit_events(&self.filter, EventPosition::After(self.scanned), PAGE)
                        .await
                    {
                        Ok(page) => {
                            let caught_up = (page.len() as u64) < PAGE;
                            (
                                page.into_iter().map(SharedEvent::new).collect(),
                                caught_up,
                                None,
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
            // L8: checked after the read, so an event committed after a
            // change of standing is never handed over on the old right.
            if let Err(error) = self.still_authorized().await {
                return Some(StreamEnd::Failed {
                    error,
                    last: self.last,
                });
            }
            let scanned = match (from_tail, page.last()) {
                (Some(scanned), _) => scanned,
                (None, last) => {
                    let read = last.map_or(self.scanned, |e| e.event.sequence);
                    if caught_up { read.max(known) } else { read }
                }
            };
            for event in page {
                let sequence = event.event.sequence;
                changed_realms.insert(event.event.realm_id);
                if let Err(end) = self.send(StreamItem::Event(event), &mut shutdown).await {
                    return end;
                }
                self.last = sequence;
                last_sent = Instant::now();
            }
            self.scanned = scanned;
            // Live: nothing known committed is still to be read (the shared
            // tail may trail a commit of this replica by a moment).
            let live = caught_up && self.scanned >= *commits.borrow();
            if caught_up {
                if live && (!told_caught_up || last_sent.elapsed() >= progress_every) {
                    told_caught_up = true;
                    let checkpoints = self.checkpoints(&changed_realms).await;
                    if self.filter.realm_id.is_none() {
                        changed_realms.clear();
                    }
                    let progress = StreamItem::Progress {
                        through: self.scanned,
                        checkpoints,
                    };
                    if let Err(end) = self.send(progress, &mut shutdown).await {
                        return end;
                    }
                    // Nothing up to here is still to come: the furthest
                    // resume point is where the stream has looked through.
                    self.last = self.scanned;
                    last_sent = Instant::now();
                }
                let progress_due = progress_every.saturating_sub(last_sent.elapsed());
                let token_left = self
                    .token_expires_at
                    .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                    .unwrap_or(Duration::MAX);
                tokio::select! {
                    _ = commits.changed(), if from_tail.is_none() => {}
                    _ = tailed.changed(), if from_tail.is_some() => {}
                    _ = tokio::time::sleep(SAFETY_POLL.min(progress_due).min(token_left)) => {}
                    _ = self.events.closed() => return None,
                    _ = shutdown.wait_for(|stopped| *stopped) => {
                        return Some(StreamEnd::ShuttingDown { last: self.last });
                    }
                }
            }
        }
    }
}
