//! The in-memory store: sharded maps of 64-bit fingerprints to GCRA arrival times.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasherDefault, Hasher, RandomState},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use super::{
    Check, Decision, KeyState, MAX_LIMITS, RateLimitStore, StoreError, StoreResult, Verdict,
};
use crate::{error::ConfigError, rate_limit::gcra};

/// Upper bound of the bytes one key can take in a shard's table: 16 bytes of entry and one
/// control byte per bucket, at worst twice as many buckets as keys (a table just grown), over
/// hashbrown's 7/8 load factor: 2 × 8/7 × 17 ≈ 38.9. The memory cap is turned into a key cap
/// with this, so the cap holds whatever the tables' load is.
pub const WORST_CASE_BYTES_PER_KEY: usize = 40;

const DEFAULT_MAX_BYTES: usize = 64 << 20;
const MAX_SHARDS: usize = 64;
const MIN_KEYS_PER_SHARD: usize = 64;

/// The fingerprints are already uniformly random (a seeded SipHash), so the tables use them as
/// their own hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, u64, BuildHasherDefault<Identity>>;

#[derive(Default)]
struct Shard {
    /// Fingerprint → theoretical arrival time (ns on the layer's clock).
    tats: Table,
    evicted_active: u64,
}

impl Shard {
    /// Frees room for one key: drops every idle key (TAT in the past, the same as no state);
    /// if the shard is still over 7/8 full, drops the keys with the least debt (lowest TAT)
    /// until it is not. The table is rebuilt at its capped size, which also clears the
    /// tombstones removals leave (they would otherwise make the table grow past the cap).
    /// Amortised: one pass over the shard per `cap / 8` inserts at most.
    fn make_room(&mut self, now: u64, cap: usize) {
        let target = cap - (cap / 8).max(1);
        let mut live: Vec<(u64, u64)> = self.tats.drain().filter(|&(_, tat)| tat > now).collect();
        if live.len() > target {
            let excess = live.len() - target;
            live.select_nth_unstable_by_key(excess, |&(_, tat)| tat);
            live.drain(..excess);
            self.evicted_active += excess as u64;
        }
        let mut fresh = Table::with_capacity_and_hasher(cap, Default::default());
        fresh.extend(live);
        self.tats = fresh;
    }

    fn store(&mut self, key: u64, tat: u64, now: u64, cap: usize, max_capacity: usize) {
        if let Some(slot) = self.tats.get_mut(&key) {
            *slot = tat;
            return;
        }
        if self.tats.len() >= cap {
            self.make_room(now, cap);
        }
        self.tats.insert(key, tat);
        if self.tats.capacity() > max_capacity {
            // Grown because of tombstones, not keys: compact back.
            self.make_room(now, cap);
        }
    }
}

/// Keeps shard locks on separate cache lines.
#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

struct Inner {
    shards: Box<[Padded]>,
    shard_mask: u64,
    shard_cap: usize,
    /// The capacity of a table made for `shard_cap` keys: tables never grow past it.
    max_capacity: usize,
    hasher: RandomState,
}

/// The in-memory store (the default): bounded, with idle keys evicted as it goes.
///
/// * **Layout**: 64 shards (fewer for small caps), each a `std` hash map from a key's 64-bit
///   fingerprint to its GCRA arrival time behind its own mutex. A decision holds the lock of
///   its key's shard for a lookup and a store (tens of nanoseconds); a request with several
///   limits locks their shards in order, so all its limits are decided together and none is
///   charged when one fails, which per-key atomics cannot do. No allocation per decision.
/// * **Memory**: capped by a byte budget (64 MiB by default), turned into a key cap with
///   [`WORST_CASE_BYTES_PER_KEY`] (≈20 bytes per key in a settled table, 40 at worst). A
///   refused request never inserts a key, so a flood of refused requests grows nothing.
/// * **Eviction, no task needed**: when a shard is full, the insert that finds it full drops
///   its idle keys (arrival time in the past: exactly as if they were new), and if that is not
///   enough, the keys with the least debt (the ones closest to idle) down to 7/8 of the shard.
///   Keys that are being refused have the most debt and are evicted last.
/// * **Collisions**: two keys share a bucket only if their seeded 64-bit fingerprints collide:
///   about `n² / 2⁶⁵` for `n` live keys (3·10⁻⁸ at a million), not choosable by a client.
///
/// Cloning shares the state.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Counters from the store's own accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStoreStats {
    /// Keys held.
    pub keys: usize,
    /// The most keys the store will hold.
    pub max_keys: usize,
    /// Bytes held by the tables (entries, control bytes and shard headers).
    pub bytes: usize,
    /// Keys dropped while still active because a shard was full of active keys.
    pub evicted_active: u64,
}

impl MemoryStore {
    /// A store capped at 64 MiB (about 1.6 million keys).
    pub fn new() -> Self {
        Self::build(DEFAULT_MAX_BYTES / WORST_CASE_BYTES_PER_KEY)
    }

    /// A store holding at most `bytes` of key state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if the budget holds fewer than 64 keys.
    pub fn with_max_bytes(bytes: usize) -> Result<Self, ConfigError> {
        Self::with_max_keys(bytes / WORST_CASE_BYTES_PER_KEY).map_err(|_| {
            ConfigError::out_of_range(
                "rate_limit.store.max_bytes",
                "must hold at least 64 keys (2560 bytes)",
            )
        })
    }

    /// A store holding at most `keys` keys.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `keys` is below 64.
    pub fn with_max_keys(keys: usize) -> Result<Self, ConfigError> {
        if keys < MIN_KEYS_PER_SHARD {
            return Err(ConfigError::out_of_range(
                "rate_limit.store.max_keys",
                "must be at least 64",
            ));
        }
        Ok(Self::build(keys))
    }

    fn build(max_keys: usize) -> Self {
        let mut shards = MAX_SHARDS;
        while shards > 1 && max_keys / shards < MIN_KEYS_PER_SHARD {
            shards /= 2;
        }
        Self {
            inner: Arc::new(Inner {
                shards: (0..shards).map(|_| Padded::default()).collect(),
                shard_mask: shards as u64 - 1,
                shard_cap: max_keys / shards,
                max_capacity: Table::with_capacity_and_hasher(
                    max_keys / shards,
                    Default::default(),
                )
                .capacity(),
                hasher: RandomState::new(),
            }),
        }
    }

    fn shard_index(&self, key: u64) -> usize {
        // The middle bits: hashbrown uses the low bits for the position and the top 7 for
        // the tag, which must stay random within a shard.
        ((key >> 32) & self.inner.shard_mask) as usize
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // Nothing panics while a shard is locked; recover the data if something ever did.
        self.inner.shards[index]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers from the store's own accounting (locks every shard in turn).
    pub fn stats(&self) -> MemoryStoreStats {
        let mut stats = MemoryStoreStats {
            keys: 0,
            max_keys: self.max_keys(),
            bytes: std::mem::size_of::<Inner>()
                + self.inner.shards.len() * std::mem::size_of::<Padded>(),
            evicted_active: 0,
        };
        for i in 0..self.inner.shards.len() {
            let shard = self.lock(i);
            stats.keys += shard.tats.len();
            stats.bytes += table_bytes(shard.tats.capacity());
            stats.evicted_active += shard.evicted_active;
        }
        stats
    }

    /// The most keys the store holds.
    pub fn max_keys(&self) -> usize {
        self.inner.shard_cap * self.inner.shards.len()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        (0..self.inner.shards.len())
            .map(|i| self.lock(i).tats.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every idle key now (the store also does it by itself when a shard is full).
    pub fn sweep(&self, now_ns: u64) {
        for i in 0..self.inner.shards.len() {
            self.lock(i).tats.retain(|_, tat| *tat > now_ns);
        }
    }

    /// One check, without building a [`Decision`]: the fast path of [`RateLimiter`](crate::rate_limit::RateLimiter).
    #[inline]
    pub(crate) fn decide_one(&self, c: &Check, now: u64) -> Result<KeyState, (Verdict, KeyState)> {
        use std::collections::hash_map::Entry;
        let p = c.params();
        let cap = self.inner.shard_cap;
        let mut shard = self.lock(self.shard_index(c.key));
        let full = shard.tats.len() >= cap;
        let (tat, outcome) = match shard.tats.entry(c.key) {
            Entry::Occupied(mut e) => {
                let tat = *e.get();
                let outcome = gcra::test(tat, now, c.cost, p);
                if let gcra::Outcome::Allow { new_tat } = outcome {
                    e.insert(new_tat);
                }
                (tat, outcome)
            }
            Entry::Vacant(e) => {
                let outcome = gcra::test(0, now, c.cost, p);
                if let gcra::Outcome::Allow { new_tat } = outcome {
                    if full {
                        shard.store(c.key, new_tat, now, cap, self.inner.max_capacity);
                    } else {
                        e.insert(new_tat);
                        if shard.tats.capacity() > self.inner.max_capacity {
                            shard.make_room(now, cap);
                        }
                    }
                }
                (0, outcome)
            }
        };
        drop(shard);
        match outcome {
            gcra::Outcome::Allow { new_tat } => Ok(KeyState::at(new_tat, now, p)),
            gcra::Outcome::Deny { retry_after } => Err((
                Verdict::Denied {
                    index: 0,
                    retry_after: Duration::from_nanos(retry_after),
                },
                KeyState::at(tat, now, p),
            )),
            gcra::Outcome::Never => Err((
                Verdict::CostAboveBurst { index: 0 },
                KeyState::at(tat, now, p),
            )),
        }
    }

    fn check_one(&self, c: &Check, now: u64) -> Decision {
        match self.decide_one(c, now) {
            Ok(state) => Decision::new(Verdict::Allowed, &[state]),
            Err((verdict, state)) => Decision::new(verdict, &[state]),
        }
    }

    fn check_many(&self, checks: &[Check], now: u64) -> Decision {
        let n = checks.len();
        // Lock every shard involved, in ascending order (no deadlock between requests).
        let mut order = [0usize; MAX_LIMITS];
        for (i, c) in checks.iter().enumerate() {
            order[i] = self.shard_index(c.key);
        }
        let mut sorted = order;
        sorted[..n].sort_unstable();
        let mut guards: [Option<MutexGuard<'_, Shard>>; MAX_LIMITS] = Default::default();
        let mut locked = [usize::MAX; MAX_LIMITS];
        let mut g = 0;
        for &s in &sorted[..n] {
            if g == 0 || locked[g - 1] != s {
                locked[g] = s;
                guards[g] = Some(self.lock(s));
                g += 1;
            }
        }
        let slot = |shard: usize| locked[..g].iter().position(|&l| l == shard).unwrap_or(0);

        let mut states = [KeyState::default(); MAX_LIMITS];
        let mut new_tats = [0u64; MAX_LIMITS];
        let mut verdict = Verdict::Allowed;
        let mut worst = 0u64;
        for (i, c) in checks.iter().enumerate() {
            let p = c.params();
            let tat = guards[slot(order[i])]
                .as_ref()
                .and_then(|s| s.tats.get(&c.key).copied())
                .unwrap_or(0);
            states[i] = KeyState::at(tat, now, p);
            match gcra::test(tat, now, c.cost, p) {
                gcra::Outcome::Allow { new_tat } => new_tats[i] = new_tat,
                gcra::Outcome::Deny { retry_after } => {
                    if !matches!(verdict, Verdict::CostAboveBurst { .. }) && retry_after > worst {
                        worst = retry_after;
                        verdict = Verdict::Denied {
                            index: i,
                            retry_after: Duration::from_nanos(retry_after),
                        };
                    }
                }
                gcra::Outcome::Never => {
                    if !matches!(verdict, Verdict::CostAboveBurst { .. }) {
                        verdict = Verdict::CostAboveBurst { index: i };
                    }
                }
            }
        }
        if verdict == Verdict::Allowed {
            for (i, c) in checks.iter().enumerate() {
                if let Some(shard) = guards[slot(order[i])].as_mut() {
                    shard.store(
                        c.key,
                        new_tats[i],
                        now,
                        self.inner.shard_cap,
                        self.inner.max_capacity,
                    );
                }
                states[i] = KeyState::at(new_tats[i], now, c.params());
            }
        }
        Decision::new(verdict, &states[..n])
    }
}

fn table_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    // hashbrown: buckets are a power of two with capacity 7/8 of them (all but one below 8),
    // each bucket one (u64, u64) entry and one control byte, plus one group of control bytes.
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (std::mem::size_of::<(u64, u64)>() + 1) + 16
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("max_keys", &self.max_keys())
            .finish_non_exhaustive()
    }
}

impl RateLimitStore for MemoryStore {
    type KeyHasher = RandomState;
    type Future = std::future::Ready<Result<Decision, StoreError>>;

    fn key_hasher(&self) -> &RandomState {
        &self.inner.hasher
    }

    fn check(&self, checks: &[Check], now_ns: u64) -> StoreResult<Self::Future> {
        StoreResult::Ready(match checks.len() {
            0 => Ok(Decision::new(Verdict::Allowed, &[])),
            1 => Ok(self.check_one(&checks[0], now_ns)),
            n if n <= MAX_LIMITS => Ok(self.check_many(checks, now_ns)),
            _ => Err(StoreError::new("more checks than MAX_LIMITS")),
        })
    }

    fn adjust(&self, checks: &[Check], delta: i64, now_ns: u64) {
        if delta == 0 {
            return;
        }
        for c in checks {
            let mut shard = self.lock(self.shard_index(c.key));
            let tat = shard.tats.get(&c.key).copied().unwrap_or(0);
            let new_tat = gcra::adjust(tat, now_ns, delta, c.params());
            if new_tat > now_ns {
                shard.store(
                    c.key,
                    new_tat,
                    now_ns,
                    self.inner.shard_cap,
                    self.inner.max_capacity,
                );
            } else {
                shard.tats.remove(&c.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn check(key: u64, cost: u64) -> Check {
        // 100 per minute, burst 10.
        Check {
            key,
            identity: key,
            emission_ns: 600_000_000,
            limit_ns: 6 * SEC,
            cost,
        }
    }

    fn decide(store: &MemoryStore, checks: &[Check], now: u64) -> Decision {
        match store.check(checks, now) {
            StoreResult::Ready(d) => d.unwrap(),
            StoreResult::Pending(_) => unreachable!(),
        }
    }

    #[test]
    fn several_checks_all_or_nothing() {
        let store = MemoryStore::new();
        let a = check(1, 1);
        let mut b = check(2 << 32, 1);
        b.limit_ns = 1_200_000_000; // burst 2
        assert!(decide(&store, &[a, b], SEC).is_allowed());
        assert!(decide(&store, &[a, b], SEC).is_allowed());
        let d = decide(&store, &[a, b], SEC);
        assert!(matches!(d.verdict, Verdict::Denied { index: 1, .. }));
        // `a` was not charged by the refused request: 8 left.
        assert_eq!(d.states()[0].remaining, 8);
        let d = decide(&store, &[a], SEC);
        assert_eq!(d.states()[0].remaining, 7);
        let d = decide(&store, &[a, check(3, 11)], SEC);
        assert_eq!(d.verdict, Verdict::CostAboveBurst { index: 1 });
    }

    #[test]
    fn full_shards_evict_idle_then_least_indebted() {
        let store = MemoryStore::with_max_keys(64).unwrap();
        assert_eq!(store.max_keys(), 64);
        for k in 0..64u64 {
            assert!(decide(&store, &[check(k, 1)], 0).is_allowed());
        }
        assert_eq!(store.len(), 64);
        // A heavily indebted key survives a flood of new keys.
        let hot = 10_000u64;
        for _ in 0..10 {
            decide(&store, &[check(hot, 1)], 0);
        }
        for k in 100..10_000u64 {
            decide(&store, &[check(k, 1)], 0);
            assert!(store.len() <= 64);
        }
        assert!(!decide(&store, &[check(hot, 1)], 0).is_allowed());
        assert!(store.stats().evicted_active > 0);
        // Idle keys go first, without touching the active ones.
        store.sweep(7 * SEC);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn adjust_refunds_and_charges() {
        let store = MemoryStore::new();
        let c = check(9, 5);
        assert!(decide(&store, &[c], 0).is_allowed());
        store.adjust(&[c], -3, 0);
        assert_eq!(decide(&store, &[check(9, 0)], 0).states()[0].remaining, 8);
        store.adjust(&[c], 20, 0);
        assert!(!decide(&store, &[check(9, 1)], 0).is_allowed());
    }

    #[test]
    fn accounting_stays_under_the_budget() {
        let store = MemoryStore::with_max_bytes(1 << 20).unwrap();
        for k in 0..200_000u64 {
            decide(
                &store,
                &[check(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1)],
                0,
            );
        }
        let stats = store.stats();
        assert!(stats.keys <= stats.max_keys);
        assert!(stats.bytes <= 1 << 20, "{stats:?}");
        assert!(stats.bytes / stats.keys <= 64, "{stats:?}");
    }
}
