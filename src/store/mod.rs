//! Storage: SeaORM entities, migrations and queries. The only module that
//! knows SQL; above it, nothing sees a SeaORM type.
//!
//! Every write is one [`WriteTx`]: on SQLite a `BEGIN IMMEDIATE` transaction
//! (a deferred one that reads then writes fails with SQLITE_BUSY under
//! concurrency); on PostgreSQL a READ COMMITTED transaction that locks the
//! realm row it changes (`SELECT … FOR UPDATE`) before reading anything it
//! decides on. Per-realm invariants (A16, K2, S5) are therefore decided by
//! one transaction at a time per realm, across every replica, and never by
//! an in-process mutex.
//!
//! W2: on SQLite, writers of this process also queue for the one write lock
//! in arrival order (`writer_queue`) before `BEGIN IMMEDIATE`, rather than
//! sleeping in SQLite's busy handler. The queue only orders this process's
//! writers; what they may do is still decided by the database.

mod accounts;
mod api_keys;
mod audit;
mod backup;
mod number_book;
mod pause_point;
// `#[sea_orm::model]` also generates a `ModelEx` per table, unused where we
// load no related models.
#[allow(dead_code)]
mod entity;
mod errors;
mod governance;
mod idempotency;
mod import;
mod json_rows;
mod migration;
mod portals;
mod raw;
mod read_cache;
mod sequencer;
mod sqlite_plans;
mod support;
pub(crate) mod tree;
mod writer_queue;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tokio::sync::watch;

pub use audit::{AuditFilter, EventPosition, Numbering};
pub use idempotency::IdempotencyKey;
#[doc(hidden)]
pub use pause_point::PausePoint;
pub use portals::PortalPosition;
pub use read_cache::MAX_AGE as CACHE_MAX_AGE;
pub use support::RequestFilter;

use crate::domain::audit::NewAuditEvent;
use crate::error::Result;
use errors::db_error;

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database, shared by every request of this replica.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// The highest audit sequence known committed: by this replica, or on
    /// PostgreSQL by any replica (LISTEN/NOTIFY, L5). Streams wake on it;
    /// the table stays the source of truth.
    committed: watch::Sender<i64>,
    url: String,
    reachable: Reachability,
    cache: Arc<read_cache::ReadCache>,
    /// E1: appends maintain each realm's Merkle tree. Off only for the
    /// benchmark's A/B; a realm written without it catches up at its next
    /// append with it (as after a release without the tree).
    evidence_tree: bool,
    /// W1: when audit events get their sequence (always at commit on SQLite).
    numbering: Numbering,
    numbering_wake: sequencer::NumberingWake,
    /// W1: what this replica's numbering rounds share.
    rounds: sequencer::Rounds,
    /// W2: SQLite's writers of this process, in arrival order.
    writers: writer_queue::WriterQueue,
    commit_pause: Arc<pause_point::PauseSlot>,
}

/// How long SQLite's busy handler waits for another process's write, and
/// how long a writer waits for its turn in this process (W2).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the database answered the last periodic check. While it does
/// not, calls are refused at once instead of each waiting out a connection
/// timeout.
#[derive(Clone, Debug)]
pub struct Reachability(Arc<AtomicBool>);

impl Reachability {
    pub fn is_reachable(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, reachable: bool) {
        self.0.store(reachable, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Connects to `sqlite://…` or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections.max(1))
            .min_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        let backend = if url.starts_with("sqlite:") {
            options.map_sqlx_sqlite_opts(|o| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
            });
            options.map_sqlx_sqlite_pool_opts(|o| {
                o.after_connect(|conn, _| Box::pin(sqlite_plans::keep_plans(conn)))
            });
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(crate::error::Error::internal(
                "DATABASE_URL must start with sqlite: or postgres:",
            ));
        };
        let db = Database::connect(options).await.map_err(db_error)?;
        Ok(Self {
            db,
            backend,
            committed: watch::Sender::new(0),
            url: url.to_owned(),
            reachable: Reachability(Arc::new(AtomicBool::new(true))),
            cache: Arc::default(),
            evidence_tree: true,
            numbering: match backend {
                Backend::Postgres => Numbering::AfterCommit,
                Backend::Sqlite => Numbering::AtCommit,
            },
            numbering_wake: sequencer::NumberingWake::default(),
            rounds: sequencer::Rounds::default(),
            writers: writer_queue::WriterQueue::default(),
            commit_pause: Arc::default(),
        })
    }

    /// W1: numbers audit events at commit under the single `audit_head` row
    /// (`AtCommit`, for a rolling update from v0.2.0) or after commit
    /// (`AfterCommit`, PostgreSQL only; SQLite always numbers at commit).
    pub fn with_numbering(mut self, numbering: Numbering) -> Self {
        if self.backend == Backend::Postgres {
            self.numbering = numbering;
        }
        self
    }

    /// Numbers every audit event committed so far that waits for its
    /// number (W1); a no-op when events are numbered at commit. Readers that
    /// compare the log with a realm's recorded head call it before deciding
    /// that events are missing.
    pub async fn number_committed_events(&self) -> Result<()> {
        if self.numbering == Numbering::AtCommit {
            return Ok(());
        }
        loop {
            let (head, numbered) = sequencer::round(&self.db, &self.rounds).await?;
            advance(&self.committed, head);
            if numbered < sequencer::ROUND_LIMIT {
                return Ok(());
            }
        }
    }

    /// Turns the evidence tree's maintenance off (benchmark A/B only).
    pub fn with_evidence_tree(mut self, on: bool) -> Self {
        self.evidence_tree = on;
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Brings the schema up to date. On PostgreSQL the migrations run in one
    /// transaction under an advisory lock, so replicas starting together do
    /// not race each other.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Postgres => {
                let tx = self.db.begin().await.map_err(db_error)?;
                tx.execute_unprepared("SELECT pg_advisory_xact_lock(7261001)")
                    .await
                    .map_err(db_error)?;
                migration::apply(&tx).await.map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
            }
            Backend::Sqlite => migration::apply(&self.db).await.map_err(db_error)?,
        }
        let head = audit::last_sequence(&self.db, self.backend).await?;
        self.committed.send_replace(head);
        Ok(())
    }

    /// A counter that moves whenever some realm's state may have changed,
    /// on this replica at once, from other replicas through NOTIFY (L8).
    pub fn standing_changes(&self) -> u64 {
        self.cache.changes()
    }

    /// Whether the periodic check last found the database answering.
    pub fn reachability(&self) -> &Reachability {
        &self.reachable
    }

    /// A cheap round trip, for health.
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Starts a write transaction; `now` stamps its audit events. On SQLite
    /// it first waits for this writer's turn (W2).
    pub async fn begin_write(&self, now: DateTime<Utc>) -> Result<WriteTx> {
        let turn = match self.backend {
            Backend::Sqlite => Some(self.writers.take_turn(SQLITE_BUSY_TIMEOUT).await?),
            Backend::Postgres => None,
        };
        let options = TransactionOptions {
            sqlite_transaction_mode: (self.backend == Backend::Sqlite)
                .then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let tx = self
            .db
            .begin_with_options(options)
            .await
            .map_err(db_error)?;
        Ok(WriteTx {
            tx,
            backend: self.backend,
            now,
            events: Vec::new(),
            audit_heads: Mutex::default(),
            committed: self.committed.clone(),
            cache: self.cache.clone(),
            evidence_tree: self.evidence_tree,
            numbering: self.numbering,
            numbering_wake: self.numbering_wake.clone(),
            rounds: self.rounds.clone(),
            db: self.db.clone(),
            commit_pause: self.commit_pause.clone(),
            _turn: turn,
        })
    }

    /// Test-only: sets (or clears) the pause between numbering a write's
    /// audit events and committing it (see `pause_point`).
    #[doc(hidden)]
    pub fn set_commit_pause(&self, pause: Option<PausePoint>) {
        self.commit_pause.set(pause);
    }

    /// Test-only: sets (or clears) the pause at the start of each
    /// numbering round of this replica, before it takes the fence (W1).
    #[doc(hidden)]
    pub fn set_round_pause(&self, pause: Option<PausePoint>) {
        self.rounds.pause.set(pause);
    }

    /// Watches the highest audit sequence known committed.
    pub fn subscribe_commits(&self) -> watch::Receiver<i64> {
        self.committed.subscribe()
    }

    /// The highest audit sequence committed so far, read from the database.
    pub async fn last_audit_sequence(&self) -> Result<i64> {
        audit::last_sequence(&self.db, self.backend).await
    }

    /// L5: on PostgreSQL, follows commits of every replica through
    /// LISTEN/NOTIFY until `stop`; a lost connection is retried (streams
    /// also re-read the table every second, so a missed wake-up only delays).
    pub fn follow_other_replicas(
        &self,
        mut stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let url = self.url.clone();
        let committed = self.committed.clone();
        let cache = self.cache.clone();
        let wake = self.numbering_wake.clone();
        let leader = (self.numbering == Numbering::AfterCommit).then(|| {
            sequencer::spawn_leader(
                url.clone(),
                wake.clone(),
                self.rounds.clone(),
                committed.clone(),
                stop.clone(),
            )
        });
        let listener = tokio::spawn(async move {
            use sea_orm::sqlx::postgres::PgListener;
            loop {
                let listener = async {
                    let mut listener = PgListener::connect(&url).await?;
                    listener.listen(audit::NOTIFY_CHANNEL).await?;
                    loop {
                        let note = listener.recv().await?;
                        if let Some((sequence, realms)) = audit::parse_notification(note.payload())
                        {
                            for realm_id in realms {
                                cache.invalidate(realm_id);
                            }
                            // Sequence 0: committed, waiting for its number.
                            if sequence == 0 {
                                wake.wake();
                            }
                            advance(&committed, sequence);
                        }
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sea_orm::sqlx::Error>(())
                };
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return,
                    result = listener => {
                        if let Err(err) = result {
                            tracing::warn!(error = %err, "audit LISTEN connection lost; reconnecting");
                        }
                    }
                }
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Some(tokio::spawn(async move {
            let _ = listener.await;
            if let Some(leader) = leader {
                let _ = leader.await;
            }
        }))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        let _ = self.db.close_by_ref().await;
    }

    fn conn(&self) -> &impl ConnectionTrait {
        &self.db
    }
}

/// One write transaction. Changes and their audit events are committed
/// together by [`WriteTx::commit`], or not at all (L1): dropping it rolls
/// everything back.
pub struct WriteTx {
    tx: DatabaseTransaction,
    backend: Backend,
    now: DateTime<Utc>,
    events: Vec<NewAuditEvent>,
    /// Log heads (chain and tree) of the realms this transaction has locked.
    audit_heads: Mutex<BTreeMap<uuid::Uuid, tree::RealmLog>>,
    committed: watch::Sender<i64>,
    cache: Arc<read_cache::ReadCache>,
    evidence_tree: bool,
    numbering: Numbering,
    numbering_wake: sequencer::NumberingWake,
    rounds: sequencer::Rounds,
    /// For a numbering round of its own, when the leader keeps it waiting.
    db: DatabaseConnection,
    commit_pause: Arc<pause_point::PauseSlot>,
    /// W2: held until commit, rollback or drop; declared after `tx` so a
    /// dropped transaction starts its rollback before the next writer goes.
    _turn: Option<writer_queue::WriterTurn>,
}

impl WriteTx {
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Queues an audit event; it is appended just before commit.
    pub fn record(&mut self, event: NewAuditEvent) {
        self.events.push(event);
    }

    /// Appends the queued events and commits. Returns the committed events,
    /// with their sequences: numbered after commit (W1), it answers once a
    /// numbering round has numbered them, so a stream opened next sees them.
    pub async fn commit(self) -> Result<Vec<crate::domain::audit::AuditEvent>> {
        self.commit_durably().await?.numbered().await
    }

    /// Appends the queued events and commits, without waiting for their
    /// numbers (W1): for a writer that starts its next transaction while
    /// the last one's callers wait for [`Committed::numbered`].
    pub async fn commit_durably(self) -> Result<Committed> {
        let audit::Appended {
            events,
            numbered,
            state_changed,
        } = audit::append(
            &self.tx,
            self.backend,
            self.now,
            self.events,
            self.audit_heads
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            self.evidence_tree,
            self.numbering,
        )
        .await?;
        if !events.is_empty()
            && let Some(pause) = self.commit_pause.get()
        {
            let sequences = if numbered {
                events.iter().map(|e| e.sequence).collect()
            } else {
                Vec::new()
            };
            pause(sequences).await;
        }
        let rounds = self.committed.subscribe();
        // Before the commit, so that no round of this replica misses them.
        let expected = (!numbered && !events.is_empty()).then(|| {
            self.rounds
                .book
                .expect(events.iter().map(|e| e.sequence).collect())
        });
        self.tx.commit().await.map_err(db_error)?;
        // Before the call answers: the next read on this replica is fresh.
        for realm_id in state_changed {
            self.cache.invalidate(realm_id);
        }
        let waiting = expected.map(|expected| {
            let noted = self.rounds.book.rounds_begun();
            self.numbering_wake.wake();
            Waiting {
                db: self.db,
                rounds,
                round_of_its_own: self.rounds,
                expected,
                noted,
                since: std::time::Instant::now(),
            }
        });
        Ok(Committed {
            events,
            committed: self.committed,
            waiting,
        })
    }

    fn conn(&self) -> &impl ConnectionTrait {
        &self.tx
    }

    fn remember_audit_head(&self, realm_id: uuid::Uuid, head: tree::RealmLog) {
        self.audit_heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(realm_id, head);
    }
}

/// A committed transaction's audit events, perhaps still waiting for their
/// numbers (W1).
pub struct Committed {
    events: Vec<crate::domain::audit::AuditEvent>,
    committed: watch::Sender<i64>,
    /// Set while the events hold placeholders.
    waiting: Option<Waiting>,
}

/// What a committed write waiting for its numbers needs.
struct Waiting {
    /// Where to run a round of its own, when the leader keeps it waiting.
    db: DatabaseConnection,
    /// The rounds seen since just before commit.
    rounds: watch::Receiver<i64>,
    round_of_its_own: sequencer::Rounds,
    expected: number_book::Expected,
    /// Rounds of this replica begun by the time of the commit.
    noted: u64,
    since: std::time::Instant,
}

impl Committed {
    /// The events with their sequences, once numbered.
    pub async fn numbered(mut self) -> Result<Vec<crate::domain::audit::AuditEvent>> {
        if let Some(waiting) = self.waiting.take() {
            let since = waiting.since;
            await_numbers(waiting, &self.committed, &mut self.events).await?;
            crate::metrics::Metrics::get()
                .numbering_wait
                .record(since.elapsed().as_secs_f64(), &[]);
        }
        if let Some(last) = self.events.iter().map(|e| e.sequence).max() {
            advance(&self.committed, last);
        }
        Ok(self.events)
    }
}

/// Moves the highest sequence known committed forward (never back).
fn advance(committed: &watch::Sender<i64>, sequence: i64) {
    committed.send_if_modified(|seen| {
        let newer = sequence > *seen;
        if newer {
            *seen = sequence;
        }
        newer
    });
}

/// W1: waits until committed `events` (holding placeholders) are numbered,
/// and gives them their sequences. A round of this replica hands the
/// numbers over in memory; a round elsewhere moves `committed` through its
/// NOTIFY, and the numbers are then read from the table. A leader that
/// keeps the writer waiting longer than its patience (dead, or not yet
/// elected) is not waited for: the writer runs a round itself.
async fn await_numbers(
    mut waiting: Waiting,
    committed: &watch::Sender<i64>,
    events: &mut [crate::domain::audit::AuditEvent],
) -> Result<()> {
    use number_book::Lookup;
    loop {
        let round_seen = async {
            tokio::select! {
                changed = waiting.rounds.changed() => changed.is_ok(),
                () = waiting.expected.recorded() => true,
            }
        };
        let lookup = match tokio::time::timeout(sequencer::LEADER_PATIENCE, round_seen).await {
            Ok(true) => waiting.expected.lookup(waiting.noted),
            Ok(false) | Err(_) => {
                let (head, _) = sequencer::round(&waiting.db, &waiting.round_of_its_own).await?;
                advance(committed, head);
                match waiting.expected.lookup(waiting.noted) {
                    Lookup::Numbered(numbers) => Lookup::Numbered(numbers),
                    // Our own round began after the commit.
                    Lookup::Wait | Lookup::Read => Lookup::Read,
                }
            }
        };
        let numbers = match lookup {
            Lookup::Numbered(numbers) => numbers,
            Lookup::Wait => continue,
            Lookup::Read => {
                let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
                let found = audit::sequences_of(&waiting.db, &ids).await?;
                if found.len() != ids.len() || found.values().any(|s| *s <= 0) {
                    continue;
                }
                ids.iter().map(|id| found[id]).collect()
            }
        };
        for (event, number) in events.iter_mut().zip(numbers) {
            event.sequence = number;
        }
        return Ok(());
    }
}
