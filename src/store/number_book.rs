//! W1: the numbers this replica's rounds give to the placeholders its own
//! writers wait for, handed over in memory.
//!
//! Without it every waiting writer re-read its events after every round it
//! saw, to learn whether they had been numbered: with 16 writers waiting,
//! one round cost 16 queries, most of them finding nothing. A writer now
//! reads the table only when its events may have been numbered by a round
//! of another replica: when this replica does not lead, or when a round of
//! this replica that began after the writer's commit found them numbered
//! already.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub(super) struct NumberBook {
    inner: Mutex<Pages>,
    /// Whether this replica's numbering task holds the leader's lock.
    leading: AtomicBool,
    /// Moves after every recorded round. Writers wait on it as well as on
    /// the replicas' head: a round's own NOTIFY can move the head before
    /// the round has recorded its numbers here.
    recorded: watch::Sender<u64>,
}

impl Default for NumberBook {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            leading: AtomicBool::new(false),
            recorded: watch::Sender::new(0),
        }
    }
}

#[derive(Default)]
struct Pages {
    /// Placeholders of this replica's committed writes → their numbers
    /// (0 until a round of this replica gives one).
    waiting: HashMap<i64, i64>,
    /// Rounds of this replica begun so far (each takes the next count).
    begun: u64,
    /// The latest-begun round of this replica that has committed.
    last_committed: u64,
}

impl NumberBook {
    fn pages(&self) -> std::sync::MutexGuard<'_, Pages> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A committed write's placeholders will be asked for: until the
    /// returned guard drops, rounds of this replica record their numbers.
    /// Called before the write commits, so no round can miss it.
    pub(super) fn expect(self: &Arc<Self>, placeholders: Vec<i64>) -> Expected {
        let recorded = self.recorded.subscribe();
        {
            let mut pages = self.pages();
            for placeholder in &placeholders {
                pages.waiting.insert(*placeholder, 0);
            }
        }
        Expected {
            book: self.clone(),
            placeholders,
            recorded,
        }
    }

    /// A round of this replica is about to take the fence: its number.
    pub(super) fn begin_round(&self) -> u64 {
        let mut pages = self.pages();
        pages.begun += 1;
        pages.begun
    }

    /// Round `round` committed: `numbered` (placeholders in write order)
    /// got the numbers after `head`.
    pub(super) fn record(&self, round: u64, head: i64, numbered: &[i64]) {
        {
            let mut pages = self.pages();
            if !pages.waiting.is_empty() {
                for (offset, placeholder) in numbered.iter().enumerate() {
                    if let Some(number) = pages.waiting.get_mut(placeholder) {
                        *number = head + 1 + offset as i64;
                    }
                }
            }
            pages.last_committed = pages.last_committed.max(round);
        }
        self.recorded.send_modify(|rounds| *rounds += 1);
    }

    pub(super) fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    /// Rounds begun so far: a writer notes it after its commit.
    pub(super) fn rounds_begun(&self) -> u64 {
        self.pages().begun
    }
}

/// What a writer waits for; dropping it (answered, failed or abandoned)
/// takes its placeholders out of the book.
pub(super) struct Expected {
    book: Arc<NumberBook>,
    placeholders: Vec<i64>,
    recorded: watch::Receiver<u64>,
}

/// Where a waiting writer stands after a round it saw.
pub(super) enum Lookup {
    /// Every placeholder's number, in the order given.
    Numbered(Vec<i64>),
    /// A round of this replica will number them: wait for it.
    Wait,
    /// Another replica may have numbered them: read the table.
    Read,
}

impl Expected {
    /// Until a round of this replica records its numbers.
    pub(super) async fn recorded(&mut self) {
        // The sender lives in the book, which this holds.
        let _ = self.recorded.changed().await;
    }

    /// `noted` is [`NumberBook::rounds_begun`] as read after the commit.
    pub(super) fn lookup(&self, noted: u64) -> Lookup {
        let pages = self.book.pages();
        let numbers: Vec<i64> = self
            .placeholders
            .iter()
            .map(|p| pages.waiting.get(p).copied().unwrap_or(0))
            .collect();
        if numbers.iter().all(|n| *n > 0) {
            return Lookup::Numbered(numbers);
        }
        // A round of ours that began after the commit numbers every
        // placeholder nobody numbered first: if it left one without its
        // number, another replica's round got there before it.
        if pages.last_committed > noted || !self.book.leading.load(Ordering::Relaxed) {
            Lookup::Read
        } else {
            Lookup::Wait
        }
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        let mut pages = self.book.pages();
        for placeholder in &self.placeholders {
            pages.waiting.remove(placeholder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading_book() -> Arc<NumberBook> {
        let book = Arc::new(NumberBook::default());
        book.set_leading(true);
        book
    }

    #[test]
    fn w1_a_round_of_this_replica_hands_over_the_numbers_it_gave() {
        let book = leading_book();
        let expected = book.expect(vec![-7, -9]);
        let noted = book.rounds_begun();
        assert!(matches!(expected.lookup(noted), Lookup::Wait));
        let round = book.begin_round();
        // Write order: -5 (another writer's), -7, -9 (ours).
        book.record(round, 100, &[-5, -7, -9]);
        match expected.lookup(noted) {
            Lookup::Numbered(numbers) => assert_eq!(numbers, vec![102, 103]),
            _ => panic!("the round numbered them"),
        }
    }

    #[test]
    fn w1_a_later_round_that_missed_them_sends_the_writer_to_the_table() {
        let book = leading_book();
        let expected = book.expect(vec![-3]);
        let noted = book.rounds_begun();
        let round = book.begin_round();
        book.record(round, 40, &[]);
        assert!(matches!(expected.lookup(noted), Lookup::Read));
    }

    #[test]
    fn w1_a_round_begun_before_the_commit_proves_nothing() {
        let book = leading_book();
        let earlier = book.begin_round();
        let expected = book.expect(vec![-3]);
        let noted = book.rounds_begun();
        book.record(earlier, 40, &[]);
        assert!(matches!(expected.lookup(noted), Lookup::Wait));
    }

    #[test]
    fn w1_a_follower_reads_the_table_after_every_round() {
        let book = Arc::new(NumberBook::default());
        let expected = book.expect(vec![-3]);
        assert!(matches!(expected.lookup(book.rounds_begun()), Lookup::Read));
    }

    #[test]
    fn w1_an_answered_writer_leaves_nothing_in_the_book() {
        let book = leading_book();
        drop(book.expect(vec![-1, -2]));
        let round = book.begin_round();
        book.record(round, 0, &[-1, -2]);
        assert!(book.pages().waiting.is_empty());
    }
}
