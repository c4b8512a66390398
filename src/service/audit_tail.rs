//! One reader of the audit table per replica, shared by every live stream
//! (SPEC §8 fan-out). Without it each caught-up stream queried the table on
//! every commit: a thousand subscribers meant a thousand queries per event.
//!
//! The tail reads every committed event once, in sequence order, exactly as
//! a stream would (`sequence > last read`; sequences are handed out in
//! commit order, so nothing below can still appear: L2), and keeps the
//! most recent ones in a ring. A stream whose position is inside the ring
//! takes its events from memory, filtered as the SQL would; one behind the
//! ring (a replay, a slow reader) reads the table as before until it has
//! caught up. The table stays the source of truth; the ring only saves
//! queries.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;

use tokio::sync::watch;

use crate::domain::audit::AuditEvent;
use crate::store::{AuditFilter, EventPosition, Store};

/// Events kept in memory.
const CAPACITY: usize = 8192;
/// Events read from the table per query.
const PAGE: u64 = 1024;
/// How often the tail re-reads the table without any wake-up.
const SAFETY_POLL: Duration = Duration::from_secs(1);

/// An event as the streams pass it on: one copy for every stream that
/// sends it, with room for its wire form, so that the transport encodes it
/// once however many subscribers it goes to.
#[derive(Debug)]
pub struct SharedEvent {
    pub event: AuditEvent,
    wire: OnceLock<Bytes>,
}

impl SharedEvent {
    pub fn new(event: AuditEvent) -> Arc<Self> {
        Arc::new(Self {
            event,
            wire: OnceLock::new(),
        })
    }

    /// The event's wire form: made by the first stream that asks.
    pub fn wire_form(&self, encode: impl FnOnce(&AuditEvent) -> Bytes) -> Bytes {
        self.wire.get_or_init(|| encode(&self.event)).clone()
    }
}

struct Ring {
    /// Consecutive committed events, by sequence.
    events: VecDeque<Arc<SharedEvent>>,
    /// Every event with a sequence in (floor, read] is in `events`.
    floor: i64,
    read: i64,
}

#[derive(Clone)]
pub(crate) struct AuditTail {
    ring: Arc<RwLock<Ring>>,
    /// The position read so far: streams wait on it.
    advanced: watch::Sender<i64>,
}

/// What a stream got from the ring.
pub(crate) struct Slice {
    pub events: Vec<Arc<SharedEvent>>,
    /// The position scanned up to (matching or not).
    pub scanned: i64,
    /// Whether the stream has reached what the tail has read.
    pub caught_up: bool,
}

impl AuditTail {
    /// Starts reading after the current end of the log, until `stop`.
    pub fn start(store: Store, mut stop: watch::Receiver<bool>) -> Self {
        let tail = AuditTail {
            ring: Arc::new(RwLock::new(Ring {
                events: VecDeque::new(),
                floor: i64::MAX,
                read: i64::MAX,
            })),
            advanced: watch::Sender::new(0),
        };
        let reader = tail.clone();
        tokio::spawn(async move {
            let mut commits = store.subscribe_commits();
            // Until the first read succeeds the ring covers nothing.
            let start = loop {
                match store.last_audit_sequence().await {
                    Ok(last) => break last,
                    Err(err) => tracing::warn!(error = %err, "audit tail cannot start; retrying"),
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(SAFETY_POLL) => {}
                }
            };
            {
                let mut ring = reader.ring.write().expect("ring lock");
                ring.floor = start;
                ring.read = start;
            }
            reader.advanced.send_replace(start);
            let everything = AuditFilter::default();
            loop {
                commits.borrow_and_update();
                let mut caught_up = false;
                while !caught_up {
                    let after = reader.ring.read().expect("ring lock").read;
                    match store
                        .audit_events(&everything, EventPosition::After(after), PAGE)
                        .await
                    {
                        Ok(page) => {
                            caught_up = (page.len() as u64) < PAGE;
                            reader.push(page);
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "audit tail read failed; retrying");
                            caught_up = true;
                        }
                    }
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(SAFETY_POLL) => {}
                }
            }
        });
        tail
    }

    fn push(&self, page: Vec<AuditEvent>) {
        let Some(last) = page.last().map(|e| e.sequence) else {
            return;
        };
        {
            let mut ring = self.ring.write().expect("ring lock");
            for event in page {
                ring.events.push_back(SharedEvent::new(event));
            }
            while ring.events.len() > CAPACITY {
                if let Some(oldest) = ring.events.pop_front() {
                    ring.floor = oldest.event.sequence;
                }
            }
            ring.read = last;
        }
        self.advanced.send_replace(last);
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.advanced.subscribe()
    }

    /// Up to `limit` events after `position` that match, or `None` when the
    /// ring does not reach back that far (read the table instead).
    pub fn after(&self, position: i64, filter: &AuditFilter, limit: usize) -> Option<Slice> {
        let ring = self.ring.read().expect("ring lock");
        if position < ring.floor {
            return None;
        }
        let start = ring
            .events
            .partition_point(|e| e.event.sequence <= position);
        let mut events = Vec::new();
        let mut scanned = position;
        for event in ring.events.range(start..) {
            if events.len() == limit {
                return Some(Slice {
                    events,
                    scanned,
                    caught_up: false,
                });
            }
            scanned = event.event.sequence;
            if filter.matches(&event.event) {
                events.push(event.clone());
            }
        }
        Some(Slice {
            events,
            scanned: position.max(ring.read),
            caught_up: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{Actor, AuditCategory};

    fn event(sequence: i64, realm_id: uuid::Uuid) -> AuditEvent {
        AuditEvent {
            sequence,
            id: uuid::Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            realm_id,
            portal_id: None,
            category: AuditCategory::Security,
            action: "portal.created".into(),
            actor: Actor::system(),
            target_type: "portal".into(),
            target_id: sequence.to_string(),
            details: Default::default(),
            prev_hash: String::new(),
            hash: String::new(),
            chain_form: Default::default(),
            leaf: None,
        }
    }

    fn tail(floor: i64, events: Vec<AuditEvent>) -> AuditTail {
        let read = events.last().map_or(floor, |e| e.sequence);
        AuditTail {
            ring: Arc::new(RwLock::new(Ring {
                events: events.into_iter().map(SharedEvent::new).collect(),
                floor,
                read,
            })),
            advanced: watch::Sender::new(read),
        }
    }

    #[test]
    fn a_position_behind_the_ring_reads_the_table() {
        let realm = uuid::Uuid::now_v7();
        let tail = tail(10, (11..=20).map(|s| event(s, realm)).collect());
        assert!(tail.after(9, &AuditFilter::default(), 100).is_none());
        assert_eq!(
            tail.after(10, &AuditFilter::default(), 100)
                .unwrap()
                .events
                .len(),
            10
        );
    }

    #[test]
    fn filtered_reads_scan_past_other_realms_and_stop_at_the_limit() {
        let (mine, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let events = (11..=20)
            .map(|s| event(s, if s % 2 == 0 { mine } else { other }))
            .collect();
        let tail = tail(10, events);
        let filter = AuditFilter {
            realm_id: Some(mine),
            ..AuditFilter::default()
        };
        let first = tail.after(10, &filter, 2).unwrap();
        let got: Vec<i64> = first.events.iter().map(|e| e.event.sequence).collect();
        assert_eq!(got, vec![12, 14]);
        assert!(!first.caught_up);
        let rest = tail.after(first.scanned, &filter, 100).unwrap();
        let got: Vec<i64> = rest.events.iter().map(|e| e.event.sequence).collect();
        assert_eq!(got, vec![16, 18, 20]);
        assert!(rest.caught_up);
        assert_eq!(rest.scanned, 20);
        // Ahead of the tail (a stream that started "now"): nothing yet.
        let ahead = tail.after(25, &filter, 100).unwrap();
        assert!(ahead.events.is_empty() && ahead.caught_up && ahead.scanned == 25);
    }
}
