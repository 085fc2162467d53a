//! Per-key breakers in a bounded registry.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    hash::{BuildHasher, Hash, RandomState},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http::Request;

use super::{
    breaker::{Breaker, Snapshot, State},
    config::{BreakerConfig, Clock, TokioClock},
};
use crate::error::ConfigError;

/// At most this many shards, and at least this many keys per shard before a second one.
const SHARDS: usize = 16;
const KEYS_PER_SHARD: usize = 64;

/// At most this many breakers are looked at to make room for one new key: eviction costs
/// O(1) however large the shard (see [`BreakerRegistry`]).
const EVICT_BUDGET: usize = 32;

/// Picks the breaker that guards a request.
///
/// Implemented by [`Breaker`] (one breaker for every request) and [`PerKey`] (one breaker per
/// key from a [`BreakerRegistry`]).
pub trait SelectBreaker<B> {
    /// The breaker for `req`.
    fn select(&self, req: &Request<B>) -> Breaker;
}

impl<B> SelectBreaker<B> for Breaker {
    fn select(&self, _req: &Request<B>) -> Breaker {
        self.clone()
    }
}

/// A bounded map from keys (an upstream authority, an API key id, a route, ...) to breakers,
/// shared by every clone.
///
/// * At most `max_keys` breakers are kept. When a new key arrives and its shard is full, room
///   is made in O(1) (at most 32 breakers looked at, whatever `max_keys` is), with the *clock*
///   (second-chance) approximation of least-recently-used: each shard keeps its keys in a
///   queue; the breaker at its head is evicted if it is closed and either idle for longer than
///   the [idle timeout](Self::idle_timeout) or unused since the queue last passed it; a closed
///   breaker used since then gets a second chance (it goes to the tail). Idle closed breakers
///   right behind the evicted one go with it. If the 32 looked at were all used, the least
///   recently used closed one among them goes.
/// * Open, half-open and manually set breakers are never evicted (that would forget an
///   outage): a flood of distinct keys (IP or `Host` rotation) evicts breakers it made itself
///   and idle closed ones, never the open breaker of a failing upstream. When none of the
///   breakers looked at is closed, the new key shares the registry's
///   [`overflow`](Self::overflow) breaker (the queue has moved on: the next new key looks at
///   the next ones).
/// * Memory: each key is held twice (in the map and in the eviction queue), with its breaker.
/// * A key's `Display` names the breaker in events, logs and [`CircuitOpen`](super::CircuitOpen):
///   use a key that is safe to log (a host, a key *id*), never a secret.
/// * Lookups take a shard's read lock for the time of a hash-map lookup (never across an
///   `.await`); creating a breaker takes the shard's write lock. The breaker's own decisions
///   take no lock.
pub struct BreakerRegistry<K> {
    inner: Arc<RegistryInner<K>>,
}

struct RegistryInner<K> {
    config: Arc<BreakerConfig>,
    shards: Box<[RwLock<Shard<K>>]>,
    hasher: RandomState,
    shard_cap: usize,
    idle_ms: AtomicU64,
    overflow: Breaker,
    clock: Arc<dyn Clock>,
    origin: Instant,
    /// Breakers looked at by evictions, for the test that eviction is O(1).
    #[cfg(test)]
    visited: AtomicU64,
}

/// One shard: the breakers, and every one of them once in `queue` (the clock) with its key
/// and the `last_used_ms` it had when the queue last passed it (the queue holds the breaker
/// too, so that looking at one costs no hash lookup).
struct Shard<K> {
    map: HashMap<K, Breaker>,
    queue: VecDeque<Queued<K>>,
}

struct Queued<K> {
    key: K,
    breaker: Breaker,
    stamp: u64,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            queue: VecDeque::new(),
        }
    }
}

impl<K> Clone for BreakerRegistry<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("config", &self.inner.config)
            .field(
                "max_keys",
                &(self.inner.shard_cap * self.inner.shards.len()),
            )
            .finish_non_exhaustive()
    }
}

impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// A registry of at most `max_keys` breakers made from `config`. The idle timeout defaults
    /// to ten minutes.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`BreakerConfig::validate`], or one about `max_keys` when it is 0.
    pub fn new(config: BreakerConfig, max_keys: usize) -> Result<Self, ConfigError> {
        config.validate()?;
        if max_keys == 0 {
            return Err(ConfigError::out_of_range(
                "circuit_breaker.max_keys",
                "must be at least 1",
            ));
        }
        let shards = (max_keys / KEYS_PER_SHARD).clamp(1, SHARDS);
        let clock: Arc<dyn Clock> = config.clock.clone().unwrap_or_else(|| Arc::new(TokioClock));
        let origin = clock.now();
        let config = Arc::new(config);
        Ok(Self {
            inner: Arc::new(RegistryInner {
                overflow: Breaker::from_validated(config.clone(), Some(Arc::from("(overflow)"))),
                config,
                shards: (0..shards).map(|_| RwLock::default()).collect(),
                hasher: RandomState::new(),
                shard_cap: max_keys / shards,
                idle_ms: AtomicU64::new(600_000),
                clock,
                origin,
                #[cfg(test)]
                visited: AtomicU64::new(0),
            }),
        })
    }

    /// Closed breakers unused for `idle` are evicted when room is needed and the eviction
    /// queue reaches them, even if they were used since it last passed them.
    #[must_use]
    pub fn idle_timeout(self, idle: Duration) -> Self {
        let ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        self.inner.idle_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// Milliseconds since the registry was made, on its clock: the unit of `last_used_ms`.
    fn now_ms(&self) -> u64 {
        let elapsed = self
            .inner
            .clock
            .now()
            .saturating_duration_since(self.inner.origin);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &K) -> &RwLock<Shard<K>> {
        let i = self.inner.hasher.hash_one(key) as usize % self.inner.shards.len();
        &self.inner.shards[i]
    }

    /// The breaker of `key`, if the registry has one.
    pub fn get(&self, key: &K) -> Option<Breaker> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.map.get(key).cloned()
    }

    /// The breaker of `key`, made if needed (or the overflow breaker, see the type's docs).
    pub fn breaker(&self, key: &K) -> Breaker {
        let lock = self.shard(key);
        {
            let shard = lock.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(b) = shard.map.get(key) {
                b.touch(self.now_ms());
                return b.clone();
            }
        }
        let mut shard = lock.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = shard.map.get(key) {
            return b.clone();
        }
        let now = self.now_ms();
        if shard.map.len() >= self.inner.shard_cap && !self.evict(&mut shard, now) {
            return self.inner.overflow.clone();
        }
        let b =
            Breaker::from_validated(self.inner.config.clone(), Some(Arc::from(key.to_string())));
        b.touch(now);
        shard.map.insert(key.clone(), b.clone());
        shard.queue.push_back(Queued {
            key: key.clone(),
            breaker: b.clone(),
            stamp: now,
        });
        b
    }

    /// Makes room in a full shard by looking at no more than [`EVICT_BUDGET`] breakers at the
    /// head of its queue (see the type's docs). Returns whether it did.
    fn evict(&self, shard: &mut Shard<K>, now: u64) -> bool {
        let idle = self.inner.idle_ms.load(Ordering::Relaxed);
        let Shard { map, queue } = shard;
        let mut evicted = false;
        // The least recently used closed breaker given a second chance so far: its
        // `last_used_ms` and its index in `queue`.
        let mut lru: Option<(u64, usize)> = None;
        for _ in 0..EVICT_BUDGET.min(queue.len()) {
            let Some(q) = queue.pop_front() else {
                break;
            };
            #[cfg(test)]
            self.inner.visited.fetch_add(1, Ordering::Relaxed);
            lru = match lru {
                Some((_, 0)) => None, // the queue went round: it is `key`, looked at again
                Some((last, i)) => Some((last, i - 1)),
                None => None,
            };
            let last = q.breaker.inner.last_used_ms.load(Ordering::Relaxed);
            let closed = q.breaker.state() == State::Closed;
            let is_idle = now.saturating_sub(last) >= idle;
            if closed && (is_idle || (!evicted && last <= q.stamp)) {
                map.remove(&q.key);
                evicted = true;
                continue;
            }
            if evicted {
                // Room made, and the next one is not idle: it stays where it was.
                queue.push_front(q);
                return true;
            }
            // A second chance: used since the queue last passed it, or not closed.
            if closed && lru.is_none_or(|(l, _)| last < l) {
                lru = Some((last, queue.len()));
            }
            queue.push_back(Queued {
                stamp: last.max(q.stamp),
                ..q
            });
        }
        if evicted {
            return true;
        }
        match lru.and_then(|(_, i)| queue.remove(i)) {
            Some(q) => {
                map.remove(&q.key);
                true
            }
            None => false,
        }
    }

    /// How many breakers the registry holds (the overflow breaker not included).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The breaker shared by keys that found no room (see the type's docs).
    pub fn overflow(&self) -> &Breaker {
        &self.inner.overflow
    }

    /// A snapshot of every breaker, for metrics.
    pub fn snapshots(&self) -> Vec<(K, Snapshot)> {
        let mut out = Vec::new();
        for s in self.inner.shards.iter() {
            let s = s.read().unwrap_or_else(PoisonError::into_inner);
            out.extend(s.map.iter().map(|(k, b)| (k.clone(), b.snapshot())));
        }
        out
    }
}

/// One breaker per key: the key comes from `extract` and the breaker from a [`BreakerRegistry`].
///
/// Made by [`CircuitBreakerLayer::per_key`](super::CircuitBreakerLayer::per_key).
pub struct PerKey<K, F> {
    registry: BreakerRegistry<K>,
    extract: Arc<F>,
}

impl<K, F> PerKey<K, F> {
    pub(crate) fn new(registry: BreakerRegistry<K>, extract: F) -> Self {
        Self {
            registry,
            extract: Arc::new(extract),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &BreakerRegistry<K> {
        &self.registry
    }
}

impl<K, F> Clone for PerKey<K, F> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            extract: self.extract.clone(),
        }
    }
}

impl<K, F> fmt::Debug for PerKey<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerKey")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<B, K, F> SelectBreaker<B> for PerKey<K, F>
where
    K: Hash + Eq + Clone + fmt::Display,
    F: Fn(&Request<B>) -> K,
{
    fn select(&self, req: &Request<B>) -> Breaker {
        self.registry.breaker(&(self.extract)(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit_breaker::Outcome;

    fn fail(b: &Breaker) {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_isolated() {
        let r = BreakerRegistry::new(BreakerConfig::consecutive_failures(2), 100).unwrap();
        let a = r.breaker(&"a".to_string());
        fail(&a);
        fail(&a);
        assert_eq!(a.state(), State::Open);
        let b = r.breaker(&"b".to_string());
        assert_eq!(b.state(), State::Closed);
        assert!(b.try_acquire().is_ok());
        let err = r.breaker(&"a".to_string()).try_acquire().unwrap_err();
        assert_eq!(err.key(), Some("a"));
        assert_eq!(r.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_under_a_flood_of_keys() {
        let r = BreakerRegistry::new(BreakerConfig::default(), 64).unwrap();
        for i in 0..10_000u32 {
            let _ = r.breaker(&i);
        }
        assert!(r.len() <= 64, "len {}", r.len());
    }

    #[tokio::test(start_paused = true)]
    async fn open_breakers_are_not_evicted() {
        let r = BreakerRegistry::new(BreakerConfig::consecutive_failures(1), 1).unwrap();
        let a = r.breaker(&1u32);
        fail(&a);
        assert_eq!(a.state(), State::Open);
        // No room and the only breaker is open: key 2 shares the overflow breaker.
        let b = r.breaker(&2u32);
        assert_eq!(b.key(), Some("(overflow)"));
        assert_eq!(r.get(&1).unwrap().state(), State::Open);
        // Once key 1 closes again it can be evicted for a new key.
        a.reset();
        let c = r.breaker(&3u32);
        assert_eq!(c.key(), Some("3"));
        assert!(r.get(&1).is_none());
        assert_eq!(r.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_breakers_go_first() {
        let r = BreakerRegistry::new(BreakerConfig::default(), 3)
            .unwrap()
            .idle_timeout(Duration::from_secs(60));
        for k in 1..=3u32 {
            let _ = r.breaker(&k);
        }
        tokio::time::advance(Duration::from_secs(61)).await;
        let _ = r.breaker(&3); // 3 is in use, 1 and 2 are idle
        let _ = r.breaker(&4);
        // Both idle breakers went, not only the least recently used one.
        assert_eq!(r.len(), 2);
        assert!(r.get(&1).is_none() && r.get(&2).is_none());
        assert!(r.get(&3).is_some() && r.get(&4).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn least_recently_used_goes_when_none_is_idle() {
        let r = BreakerRegistry::new(BreakerConfig::default(), 2).unwrap();
        let _ = r.breaker(&1u32);
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = r.breaker(&2);
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = r.breaker(&1);
        let _ = r.breaker(&3);
        assert!(r.get(&2).is_none(), "2 was the least recently used");
        assert_eq!(r.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_used_goes_when_every_one_was_used() {
        let r = BreakerRegistry::new(BreakerConfig::default(), 3).unwrap();
        for k in 1..=3u32 {
            let _ = r.breaker(&k);
        }
        for k in [2u32, 1, 3] {
            tokio::time::advance(Duration::from_secs(1)).await;
            let _ = r.breaker(&k);
        }
        let _ = r.breaker(&4);
        assert!(r.get(&2).is_none(), "2 was the least recently used");
        assert!(r.get(&1).is_some() && r.get(&3).is_some() && r.get(&4).is_some());
    }

    fn visited<K>(r: &BreakerRegistry<K>) -> u64 {
        r.inner.visited.load(Ordering::Relaxed)
    }

    /// Making room costs a bounded number of breakers looked at, however large the shard: a
    /// flood of new keys costs about one each, and even when every breaker was used since the
    /// queue last passed it (the worst case) no more than the budget. A scan of the shard (the
    /// old eviction) looks at every breaker of it for every new key.
    #[tokio::test(start_paused = true)]
    async fn eviction_looks_at_a_bounded_number_of_breakers() {
        let r = BreakerRegistry::new(BreakerConfig::default(), 10_000).unwrap();
        let shard = r.inner.shard_cap as u64;
        assert!(shard >= 600, "shards of {shard}");
        // Every shard full (keys do not spread evenly).
        for k in 0..20_000u64 {
            let _ = r.breaker(&k);
        }
        assert!(r.len() > 9_900, "{}", r.len());

        // A flood of distinct keys: each evicts one that nobody used since.
        let before = visited(&r);
        for k in 20_000..30_000u64 {
            let _ = r.breaker(&k);
        }
        let flood = visited(&r) - before;
        assert!(r.len() <= 10_000);
        assert!(flood <= 2 * 10_000, "{flood} looked at for 10000 new keys");

        // Every breaker in use: each new key looks at the budget and evicts the least
        // recently used of those.
        tokio::time::advance(Duration::from_millis(5)).await;
        for k in 20_000..30_000u64 {
            let _ = r.breaker(&k);
        }
        let before = visited(&r);
        for k in 30_000..31_000u64 {
            let _ = r.breaker(&k);
        }
        let hot = visited(&r) - before;
        assert!(
            hot <= (EVICT_BUDGET as u64 + 1) * 1_000,
            "{hot} looked at for 1000 new keys"
        );
        assert!(r.len() <= 10_000);
    }

    /// An attacker flooding distinct keys neither resets the open breaker of a failing
    /// upstream nor evicts the breaker of one in use.
    #[tokio::test(start_paused = true)]
    async fn a_flood_evicts_neither_open_nor_busy_breakers() {
        let r = BreakerRegistry::new(BreakerConfig::consecutive_failures(3), 64).unwrap();
        let down = r.breaker(&"down".to_string());
        for _ in 0..3 {
            fail(&down);
        }
        assert_eq!(down.state(), State::Open);
        let busy = r.breaker(&"busy".to_string());
        fail(&busy); // one failure of three: forgetting it would reset the count
        for i in 0..10_000u32 {
            tokio::time::advance(Duration::from_millis(1)).await;
            let _ = r.breaker(&"busy".to_string());
            let _ = r.breaker(&format!("flood-{i}"));
        }
        assert!(r.len() <= 64);
        let d = r.get(&"down".to_string()).expect("the open breaker stays");
        assert!(Arc::ptr_eq(&d.inner, &down.inner));
        assert_eq!(d.state(), State::Open);
        let b = r.get(&"busy".to_string()).expect("the busy breaker stays");
        assert!(Arc::ptr_eq(&b.inner, &busy.inner));
        assert_eq!(b.snapshot().consecutive_failures, 1);
    }

    /// A shard where every breaker is open: a new key shares the overflow breaker, after
    /// looking at no more than the budget.
    #[tokio::test(start_paused = true)]
    async fn a_shard_of_open_breakers_overflows_in_bounded_time() {
        let r = BreakerRegistry::new(BreakerConfig::consecutive_failures(1), 64).unwrap();
        for k in 0..64u32 {
            fail(&r.breaker(&k));
        }
        for k in 64..164u32 {
            assert_eq!(r.breaker(&k).key(), Some("(overflow)"));
        }
        assert!(visited(&r) <= 100 * EVICT_BUDGET as u64, "{}", visited(&r));
        assert_eq!(r.len(), 64);
    }
}
