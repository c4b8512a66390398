//! W2: SQLite has one writer. Writers of this process take turns in a FIFO
//! queue before `BEGIN IMMEDIATE`, so they are served in arrival order
//! instead of sleeping in SQLite's busy handler with growing back-off
//! (which is where p99s of hundreds of milliseconds came from). The busy
//! timeout stays, for other processes on the same file.
//!
//! tokio's mutex is fair: the lock goes to waiters in the order they asked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{Error, Reason, Result};

#[derive(Clone, Default)]
pub(super) struct WriterQueue {
    turn: Arc<Mutex<()>>,
    waiting: Arc<AtomicUsize>,
}

/// The right to write, held by a `WriteTx` until it commits, rolls back or
/// is dropped.
pub(super) struct WriterTurn(#[allow(dead_code)] OwnedMutexGuard<()>);

impl WriterQueue {
    /// Waits for this writer's turn, at most `bound` (as the busy handler
    /// did): a writer that never finishes cannot hold up the rest forever.
    pub(super) async fn take_turn(&self, bound: Duration) -> Result<WriterTurn> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let turn = tokio::time::timeout(bound, self.turn.clone().lock_owned()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        turn.map(WriterTurn).map_err(|_| {
            Error::new(
                Reason::DatabaseUnavailable,
                "the database stayed busy with other writes; retry later",
            )
        })
    }

    /// Writers waiting for their turn (tests observe the queue with it).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writers are served in the order they arrived.
    #[tokio::test]
    async fn w2_writers_take_turns_in_arrival_order() {
        let queue = WriterQueue::default();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = queue.take_turn(Duration::from_secs(10)).await.unwrap();
        let mut writers = Vec::new();
        for n in 0..8 {
            let (q, order) = (queue.clone(), order.clone());
            writers.push(tokio::spawn(async move {
                let _turn = q.take_turn(Duration::from_secs(10)).await.unwrap();
                order.lock().unwrap().push(n);
            }));
            // The next writer arrives only once this one is queued.
            tokio::time::timeout(Duration::from_secs(10), async {
                while queue.waiting() < n + 1 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("writer queued");
        }
        drop(first);
        for writer in writers {
            writer.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn w2_a_writer_whose_turn_never_comes_is_refused_after_the_bound() {
        let queue = WriterQueue::default();
        let _held = queue.take_turn(Duration::from_secs(10)).await.unwrap();
        let refused = queue.take_turn(Duration::from_secs(10)).await;
        assert_eq!(
            refused.err().map(|e| e.reason),
            Some(Reason::DatabaseUnavailable)
        );
        assert_eq!(queue.waiting(), 0);
    }
}
