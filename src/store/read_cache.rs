//! The hot path's read cache (SPEC §8): accounts' standings and portals,
//! kept in memory so that `CheckPermission` does not touch the database.
//!
//! Correct with several replicas:
//! - an audited commit on this replica invalidates its realm before the
//!   call answers, so the very next check here sees the change;
//! - a commit on another replica arrives through PostgreSQL LISTEN/NOTIFY
//!   (the audit notification names the realms whose state changed) and
//!   invalidates the realm within milliseconds;
//! - whatever happens to that notification, no entry is served older than
//!   [`MAX_AGE`]: the bound on staleness across replicas is one second.
//!
//! Time-based expiry (S8) is never cached: a standing keeps its grants'
//! expiry times and callers compare them with the clock on every use.
//!
//! A fill races commits safely: it takes a snapshot of the change counter
//! before reading the database and stores its result only if no change
//! happened anywhere meanwhile (see [`ReadCache::put`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::domain::Standing;
use crate::domain::portal::Portal;

/// The longest any entry is served: the cross-replica staleness bound.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Entries per map before it is emptied and refilled.
const MAX_ENTRIES: usize = 100_000;

struct Cached<T> {
    value: T,
    realm_id: Uuid,
    generation: u64,
    filled: Instant,
}

/// Taken before a database read; see [`ReadCache::put`].
#[derive(Clone, Copy)]
pub struct Snapshot(u64);

#[derive(Default)]
pub struct ReadCache {
    /// Bumped on every invalidation, before the realm's generation.
    changes: AtomicU64,
    generations: RwLock<HashMap<Uuid, u64>>,
    standings: RwLock<HashMap<Uuid, Cached<Standing>>>,
    portals: RwLock<HashMap<Uuid, Cached<Portal>>>,
}

impl ReadCache {
    /// How many invalidations this replica has seen: long-lived calls
    /// re-authorize when it moves (L8).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.changes.load(Ordering::SeqCst))
    }

    /// The realm's state changed (here or on another replica).
    pub fn invalidate(&self, realm_id: Uuid) {
        self.changes.fetch_add(1, Ordering::SeqCst);
        *self
            .generations
            .write()
            .expect("cache lock")
            .entry(realm_id)
            .or_default() += 1;
    }

    fn generation(&self, realm_id: Uuid) -> u64 {
        self.generations
            .read()
            .expect("cache lock")
            .get(&realm_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn standing(&self, account_id: Uuid) -> Option<Standing> {
        self.get(&self.standings, &account_id)
    }

    pub fn put_standing(&self, snapshot: Snapshot, standing: &Standing) {
        let (id, realm_id) = (standing.account.id, standing.account.realm_id);
        self.put(&self.standings, snapshot, id, realm_id, standing.clone());
    }

    pub fn portal(&self, portal_id: Uuid) -> Option<Portal> {
        self.get(&self.portals, &portal_id)
    }

    pub fn put_portal(&self, snapshot: Snapshot, portal: &Portal) {
        self.put(
            &self.portals,
            snapshot,
            portal.id,
            portal.realm_id,
            portal.clone(),
        );
    }

    fn get<K: Eq + Hash, T: Clone>(
        &self,
        map: &RwLock<HashMap<K, Cached<T>>>,
        key: &K,
    ) -> Option<T> {
        let map = map.read().expect("cache lock");
        let entry = map.get(key)?;
        (entry.filled.elapsed() < MAX_AGE && entry.generation == self.generation(entry.realm_id))
            .then(|| entry.value.clone())
    }

    /// Keeps `value`, read from the database after `snapshot` was taken,
    /// unless some realm changed meanwhile. The generation is read before
    /// the counter is checked, and invalidation bumps the counter before
    /// the generation: either this fill sees the change and keeps nothing,
    /// or its entry carries the old generation and is already invalid.
    fn put<K: Eq + Hash, T>(
        &self,
        map: &RwLock<HashMap<K, Cached<T>>>,
        snapshot: Snapshot,
        key: K,
        realm_id: Uuid,
        value: T,
    ) {
        let generation = self.generation(realm_id);
        if self.changes.load(Ordering::SeqCst) != snapshot.0 {
            return;
        }
        let mut map = map.write().expect("cache lock");
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            key,
            Cached {
                value,
                realm_id,
                generation,
                filled: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::portal::Portal;

    fn portal(realm_id: Uuid) -> Portal {
        Portal {
            id: Uuid::now_v7(),
            realm_id,
            parent_id: None,
            name: "Academy".into(),
            subdomain: "academy".into(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn an_invalidated_realm_is_read_again() {
        let cache = ReadCache::default();
        let realm = Uuid::now_v7();
        let p = portal(realm);
        cache.put_portal(cache.snapshot(), &p);
        assert!(cache.portal(p.id).is_some());
        cache.invalidate(realm);
        assert!(cache.portal(p.id).is_none());
    }

    #[test]
    fn other_realms_stay_cached() {
        let cache = ReadCache::default();
        let p = portal(Uuid::now_v7());
        cache.put_portal(cache.snapshot(), &p);
        cache.invalidate(Uuid::now_v7());
        assert!(cache.portal(p.id).is_some());
    }

    #[test]
    fn a_fill_that_raced_a_change_is_not_kept() {
        let cache = ReadCache::default();
        let realm = Uuid::now_v7();
        let p = portal(realm);
        let before_read = cache.snapshot();
        cache.invalidate(realm); // a commit lands while the fill reads
        cache.put_portal(before_read, &p);
        assert!(cache.portal(p.id).is_none());
    }
}
