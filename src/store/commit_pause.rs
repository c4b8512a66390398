//! A test-only pause point inside the write path (L2 tests): between
//! numbering a transaction's audit events and committing it, so a test can
//! make audited transactions overlap for real instead of imitating one with
//! its own SQL. Unset, it costs every commit one atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Called with the sequences the transaction's events were given (empty if
/// the design numbers them only after commit); the commit waits for the
/// returned future. Tests keep their waits bounded.
#[doc(hidden)]
pub type CommitPause =
    Arc<dyn Fn(Vec<i64>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The store's one pause slot, shared by every clone of the store.
#[derive(Default)]
pub(super) struct CommitPauseSlot {
    armed: AtomicBool,
    pause: Mutex<Option<CommitPause>>,
}

impl CommitPauseSlot {
    pub(super) fn set(&self, pause: Option<CommitPause>) {
        let mut slot = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        self.armed.store(pause.is_some(), Ordering::Release);
        *slot = pause;
    }

    /// The pause, when a test has set one.
    pub(super) fn get(&self) -> Option<CommitPause> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        self.pause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
