//! The checkpoints of the audit stream's progress messages (E4), shared by
//! every stream of the replica.
//!
//! Streams that are caught up stand at the same place in the log, so they
//! ask for the same checkpoint at the same moment: 1,000 subscribers opened
//! together asked the database for the realm's tree size 1,000 times, and
//! after a large import each ask took ~18 ms, long enough to hold the pool
//! from the writers. A realm's checkpoint at a stream position never
//! changes (every event up to it is numbered, and a tree only grows), so one
//! load serves every stream that asks for it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::error::Result;

/// Positions kept before the memo is emptied and refilled.
const MAX_KEPT: usize = 4096;

/// A signed note, loaded by the first stream that asks for it.
type Note = Arc<OnceCell<String>>;

/// Signed notes by (realm, stream position), each loaded once.
#[derive(Default)]
pub struct ProgressCheckpoints {
    notes: Mutex<HashMap<(Uuid, i64), Note>>,
}

impl ProgressCheckpoints {
    /// The note of `realm_id` at `position`; `load` runs only if no other
    /// stream has loaded it or is loading it now (a failed load is not
    /// kept: the next ask tries again).
    pub async fn get_or_load<F, Fut>(
        &self,
        realm_id: Uuid,
        position: i64,
        load: F,
    ) -> Result<String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String>>,
    {
        let cell = {
            let mut notes = self.notes.lock().expect("progress checkpoints");
            if notes.len() >= MAX_KEPT && !notes.contains_key(&(realm_id, position)) {
                notes.clear();
            }
            notes.entry((realm_id, position)).or_default().clone()
        };
        cell.get_or_try_init(load).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::error::Error;

    #[tokio::test]
    async fn e4_streams_at_one_position_share_one_load() {
        let memo = Arc::new(ProgressCheckpoints::default());
        let loads = Arc::new(AtomicUsize::new(0));
        let realm = Uuid::now_v7();
        let (release, released) = tokio::sync::watch::channel(false);
        let mut asks = Vec::new();
        for _ in 0..100 {
            let (memo, loads, mut released) = (memo.clone(), loads.clone(), released.clone());
            asks.push(tokio::spawn(async move {
                memo.get_or_load(realm, 7, || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // Held until every ask is in flight.
                    released.wait_for(|r| *r).await.unwrap();
                    Ok("note at 7".to_owned())
                })
                .await
            }));
        }
        // On this single-threaded runtime every ask runs up to its wait
        // before this task goes on; one that came later would find the
        // note loaded, so the count below holds either way.
        tokio::task::yield_now().await;
        release.send_replace(true);
        for ask in asks {
            assert_eq!(ask.await.unwrap().unwrap(), "note at 7");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Another position of the same realm is its own note.
        let other = memo
            .get_or_load(realm, 8, || async { Ok("note at 8".to_owned()) })
            .await
            .unwrap();
        assert_eq!(other, "note at 8");
    }

    #[tokio::test]
    async fn e4_a_failed_load_is_tried_again() {
        let memo = ProgressCheckpoints::default();
        let realm = Uuid::now_v7();
        let failed = memo
            .get_or_load(realm, 3, || async { Err(Error::internal("database down")) })
            .await;
        assert!(failed.is_err());
        let note = memo
            .get_or_load(realm, 3, || async { Ok("note".to_owned()) })
            .await
            .unwrap();
        assert_eq!(note, "note");
    }
}
