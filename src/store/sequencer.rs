//! W1 on PostgreSQL: the platform-wide order is given after commit.
//!
//! Writers insert their events with a negative placeholder (unique, from
//! the `audit_events_pending` sequence, descending in write order) under
//! their realm's lock only, and commit without touching any row that every
//! audited transaction takes. A **numbering round** then, in one short
//! transaction:
//!
//! 1. locks the fence row (`audit_head … FOR UPDATE`): rounds run one at a
//!    time, whoever runs them;
//! 2. in a fresh statement (which sees every commit before the lock was
//!    granted), gives the committed placeholders the next numbers in write
//!    order, moves `audit_head` and notifies the replicas.
//!
//! Only committed events are visible to a round and rounds are serial, so
//! numbers become visible in increasing order: a reader of `sequence >
//! cursor` never skips an event (L2). Within a realm, write order is chain
//! order (the placeholder is taken under the realm's lock), so each realm's
//! events keep their chain's order in the global one.
//!
//! Rounds are run by the **numbering leader**, the replica whose dedicated
//! connection holds a session advisory lock; the others try to take it every
//! second. The fence, not the lock, is what makes numbering correct: two
//! replicas that both believe they lead only queue on the fence, and the
//! second finds nothing left to number. So a writer whose events wait too
//! long (a leader that died without its session ending yet) runs a round
//! itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value,
};
use tokio::sync::{Notify, watch};

use super::audit::NOTIFY_CHANNEL;
use super::errors::db_error;
use super::number_book::NumberBook;
use super::pause_point::PauseSlot;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Key of the leader's session advisory lock (per database).
const LEADER_LOCK: i64 = 7_261_002;

/// Events numbered per round at most; a round that fills it is followed by
/// another at once.
pub(super) const ROUND_LIMIT: i64 = 10_000;

/// How often a follower tries to become the leader, and how often the
/// leader looks for events nobody woke it for.
const TICK: Duration = Duration::from_secs(1);

/// How long a writer waits for the leader before numbering its own events.
pub(super) const LEADER_PATIENCE: Duration = Duration::from_millis(250);

/// A numbering round's statement (`audit_number_round`, created by the
/// migration `m20261201_000004_numbering_round`): takes the fence row, then
/// numbers up to `limit` committed placeholders in write order and moves
/// `audit_head` past them and `extra` more numbers (an at-commit writer's
/// own events). With `notify`, replicas are told the new head
/// when something was numbered. Run inside a transaction, the fence is held
/// to its end; alone, the statement is its own transaction.
pub(super) async fn number_pending(
    conn: &impl ConnectionTrait,
    limit: i64,
    extra: i64,
    notify: bool,
) -> Result<NumberedRound> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT head_before, head_after, numbered FROM audit_number_round($1, $2, $3)",
            [
                Value::from(limit),
                Value::from(extra),
                Value::from(notify.then_some(NOTIFY_CHANNEL)),
            ],
        ))
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::internal("numbering round returned nothing"))?;
    let before: i64 = row.try_get_by_index(0).map_err(db_error)?;
    let after: i64 = row.try_get_by_index(1).map_err(db_error)?;
    let listed: String = row.try_get_by_index(2).map_err(db_error)?;
    let placeholders = listed
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<i64>()
                .map_err(|_| Error::internal(format!("numbering round listed {p:?}")))
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok(NumberedRound {
        before,
        after,
        placeholders,
    })
}

/// What a round numbered: `placeholders` (in write order) got the numbers
/// after `before`; the head is now `after`.
pub(super) struct NumberedRound {
    pub(super) before: i64,
    pub(super) after: i64,
    pub(super) placeholders: Vec<i64>,
}

/// One numbering round on `db`: numbers every committed placeholder (up to
/// [`ROUND_LIMIT`]), tells the replicas, and hands the numbers to this
/// replica's waiting writers. Returns the new head and how many were
/// numbered.
pub(super) async fn round(db: &DatabaseConnection, rounds: &Rounds) -> Result<(i64, i64)> {
    if let Some(pause) = rounds.pause.get() {
        pause(Vec::new()).await;
    }
    let started = Instant::now();
    let book = &rounds.book;
    let round = book.begin_round();
    // One statement, its own transaction: committed when it returns.
    let numbered = number_pending(db, ROUND_LIMIT, 0, true).await?;
    book.record(round, numbered.before, &numbered.placeholders);
    Metrics::get()
        .numbering_round
        .record(started.elapsed().as_secs_f64(), &[]);
    Ok((numbered.after, numbered.placeholders.len() as i64))
}

/// What this replica's rounds share, whoever runs them.
#[derive(Clone, Default)]
pub(super) struct Rounds {
    pub(super) book: Arc<NumberBook>,
    pub(super) pause: Arc<PauseSlot>,
}

/// Wakes the numbering task: a writer of this replica committed, or
/// another replica's did (its NOTIFY).
#[derive(Clone, Default)]
pub(super) struct NumberingWake(Arc<Notify>);

impl NumberingWake {
    pub(super) fn wake(&self) {
        self.0.notify_one();
    }
}

/// Runs this replica's numbering task until `stop`: tries to lead, and
/// while it leads, runs a round whenever woken (and every [`TICK`]).
pub(super) fn spawn_leader(
    url: String,
    wake: NumberingWake,
    rounds: Rounds,
    committed: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let led = tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                result = lead(&url, &wake, &rounds, &committed) => result,
            };
            rounds.book.set_leading(false);
            if let Err(err) = led {
                tracing::warn!(error = %err, "audit numbering connection lost; trying again");
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    })
}

/// One connection's life: follow until the lock is free, then lead until
/// an error. The lock belongs to the connection's session, so it ends with
/// the connection (or the process).
async fn lead(
    url: &str,
    wake: &NumberingWake,
    rounds: &Rounds,
    committed: &watch::Sender<i64>,
) -> Result<()> {
    let mut options = ConnectOptions::new(url.to_owned());
    // One long-lived session: the advisory lock is the session's.
    options
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    let db = Database::connect(options).await.map_err(db_error)?;
    let outcome = async {
        loop {
            let row = db
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_try_advisory_lock($1)",
                    [Value::from(LEADER_LOCK)],
                ))
                .await
                .map_err(db_error)?
                .ok_or_else(|| Error::internal("pg_try_advisory_lock returned nothing"))?;
            if row.try_get_by_index::<bool>(0).map_err(db_error)? {
                break;
            }
            let _ = tokio::time::timeout(TICK, wake.0.notified()).await;
        }
        tracing::info!("this replica leads the audit numbering (W1)");
        rounds.book.set_leading(true);
        loop {
            let (head, numbered) = round(&db, rounds).await?;
            if numbered > 0 {
                // Streams and waiting writers of this replica need not
                // wait for the NOTIFY's trip.
                committed.send_if_modified(|seen| {
                    let newer = head > *seen;
                    if newer {
                        *seen = head;
                    }
                    newer
                });
            }
            if numbered < ROUND_LIMIT {
                let _ = tokio::time::timeout(TICK, wake.0.notified()).await;
            }
        }
    }
    .await;
    let _ = db.close().await;
    outcome
}
