//! A keyed limiter to call directly, without the layer.

use std::{
    fmt,
    hash::{BuildHasher, Hash},
    marker::PhantomData,
    sync::Arc,
};

use super::{
    clock::{Clock, MonotonicClock},
    quota::Quota,
    store::{Check, KeyState, MemoryStore, RateLimitStore, Verdict},
};

/// A GCRA limiter keyed by `K` on a [`MemoryStore`]: what the layer does per request, for code
/// that is not a tower service (a job queue, a WebSocket message loop).
///
/// ```
/// use std::num::NonZeroU32;
/// use battlement::rate_limit::{Quota, RateLimiter};
///
/// let limiter = RateLimiter::keyed(Quota::per_second(NonZeroU32::new(2).unwrap()));
/// assert!(limiter.check_key(&"alice").is_ok());
/// assert!(limiter.check_key(&"alice").is_ok());
/// assert!(limiter.check_key(&"alice").is_err());
/// assert!(limiter.check_key(&"bob").is_ok());
/// ```
pub struct RateLimiter<K> {
    quota: Quota,
    store: MemoryStore,
    clock: Arc<dyn Clock>,
    _key: PhantomData<fn(&K)>,
}

impl<K: Hash> RateLimiter<K> {
    /// `quota` per key, on a fresh [`MemoryStore`] and the monotonic clock.
    pub fn keyed(quota: Quota) -> Self {
        Self {
            quota,
            store: MemoryStore::new(),
            clock: Arc::new(MonotonicClock::new()),
            _key: PhantomData,
        }
    }

    /// Keeps state in `store`.
    #[must_use]
    pub fn with_store(mut self, store: MemoryStore) -> Self {
        self.store = store;
        self
    }

    /// Uses `clock`.
    #[must_use]
    pub fn with_clock<C: Clock>(mut self, clock: C) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Admits one unit for `key`, or says why not.
    ///
    /// # Errors
    ///
    /// The [`Verdict`] (`Denied` with the wait) when refused.
    pub fn check_key(&self, key: &K) -> Result<KeyState, Verdict> {
        self.check_key_n(key, 1)
    }

    /// Admits `n` units for `key` at once, or none.
    ///
    /// # Errors
    ///
    /// The [`Verdict`] when refused: `Denied` with the wait, or `CostAboveBurst` when `n`
    /// is above the burst.
    pub fn check_key_n(&self, key: &K, n: u64) -> Result<KeyState, Verdict> {
        let params = self.quota.params();
        let identity = self.store.key_hasher().hash_one(key);
        let check = Check {
            key: identity,
            identity,
            emission_ns: params.emission,
            limit_ns: params.limit,
            cost: n,
        };
        self.store
            .decide_one(&check, self.clock.now_ns())
            .map_err(|(verdict, _)| verdict)
    }

    /// The store.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }
}

impl<K> fmt::Debug for RateLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("quota", &self.quota)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}
