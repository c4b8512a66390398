//! Test-only pause points inside the write path, so a test can make
//! audited transactions and numbering rounds overlap for real instead of
//! imitating them with its own SQL. Unset, one costs an atomic load.
//!
//! - Between numbering a transaction's audit events and committing it
//!   (L2 tests).
//! - At the start of a numbering round, before it takes the fence (W1).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Called with the sequences the transaction's events were given (empty if
/// the design numbers them only after commit; empty for a round); the
/// commit or round waits for the returned future. Tests keep their waits
/// bounded.
#[doc(hidden)]
pub type PausePoint =
    Arc<dyn Fn(Vec<i64>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One pause point's slot, shared by every clone of the store.
#[derive(Default)]
pub(super) struct PauseSlot {
    armed: AtomicBool,
    pause: Mutex<Option<PausePoint>>,
}

impl PauseSlot {
    pub(super) fn set(&self, pause: Option<PausePoint>) {
        let mut slot = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        self.armed.store(pause.is_some(), Ordering::Release);
        *slot = pause;
    }

    /// The pause, when a test has set one.
    pub(super) fn get(&self) -> Option<PausePoint> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        self.pause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
