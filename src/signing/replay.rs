//! Replay protection: a store that remembers nonces (and webhook ids) for their window.

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    fmt,
    future::{Future, Ready, ready},
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// What a [`ReplayStore`] answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplayCheck {
    /// First time seen: it is now remembered until its TTL runs out.
    Fresh,
    /// Seen before, within its TTL: refuse the request.
    Replayed,
}

/// A replay store could not answer (unreachable, full, timed out). The layers fail closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayStoreError {
    reason: Cow<'static, str>,
}

impl ReplayStoreError {
    /// An error explained by `reason` (no secret, it may be logged).
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// Why the store could not answer.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ReplayStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replay store unavailable: {}", self.reason)
    }
}

impl std::error::Error for ReplayStoreError {}

/// Remembers keys (nonces, webhook ids) for a time, atomically: the check and the insert are one
/// step, so two concurrent requests with the same nonce cannot both be [`ReplayCheck::Fresh`].
///
/// The future lets a store be remote (Redis: `SET key 1 NX PX ttl`, one round trip); the
/// in-memory [`MemoryReplayStore`] answers with a ready future, so the verify path does not
/// allocate for it. The layers call the store only after the signature is verified, so an
/// unauthenticated client cannot fill it.
pub trait ReplayStore: Send + Sync + 'static {
    /// The answer.
    type Future: Future<Output = Result<ReplayCheck, ReplayStoreError>> + Send + 'static;

    /// Inserts `key` for `ttl` if absent and says whether it was.
    fn check_and_insert(&self, key: &str, ttl: Duration) -> Self::Future;
}

/// The default number of keys a [`MemoryReplayStore`] remembers (about 8 MiB when full).
pub const DEFAULT_REPLAY_CAPACITY: usize = 256 * 1024;

const SHARDS: usize = 16;

/// A bounded, sharded in-memory [`ReplayStore`].
///
/// Keys are kept as 64-bit keyed hashes (SipHash with a random key per store, so an attacker
/// cannot aim for collisions), with their expiry on tokio's clock (paused time in tests).
/// Expired keys are dropped as new ones come in. When a shard is full of unexpired keys the
/// store refuses to answer ([`ReplayStoreError`]) rather than forget a nonce that could then
/// be replayed: size it for your request rate × window.
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

/// The shard maps are keyed by the store's keyed SipHash of the nonce: hashing that value
/// again would only cost time. The low bits picked the shard (equal within a shard), so the
/// map uses the value rotated by 32 bits: random low bits for the bucket, random high bits for
/// the tag.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here (`write_u64`); fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v.rotate_right(32);
    }
}

#[derive(Default)]
struct Shard {
    expiry: HashMap<u64, Instant, BuildHasherDefault<PreHashed>>,
    order: VecDeque<(Instant, u64)>,
}

impl Shard {
    fn purge(&mut self, now: Instant) {
        while let Some(&(at, h)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.expiry.get(&h).is_some_and(|e| *e <= now) {
                self.expiry.remove(&h);
            }
        }
    }
}

impl MemoryReplayStore {
    /// A store of [`DEFAULT_REPLAY_CAPACITY`] keys.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_REPLAY_CAPACITY)
    }

    /// A store that remembers at most about `capacity` keys (at least one per shard).
    pub fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    /// How many keys are remembered now (expired ones may still be counted until purged).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .expiry
                    .len()
            })
            .sum()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, key: &str, ttl: Duration) -> Result<ReplayCheck, ReplayStoreError> {
        let h = self.hasher.hash_one(key);
        // The low bits pick the shard; the map hashes the full value again.
        let shard = &self.shards[(h as usize) % SHARDS];
        let now = Instant::now();
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        shard.purge(now);
        if shard.expiry.get(&h).is_some_and(|e| *e > now) {
            return Ok(ReplayCheck::Replayed);
        }
        if shard.expiry.len() >= self.per_shard {
            return Err(ReplayStoreError::new("in-memory replay store is full"));
        }
        let at = now + ttl;
        shard.expiry.insert(h, at);
        // Keys mostly share one TTL, so insertion order is close to expiry order; a key with a
        // longer TTL than its successors only delays their purge, never forgets a live one.
        shard.order.push_back((at, h));
        Ok(ReplayCheck::Fresh)
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

impl ReplayStore for MemoryReplayStore {
    type Future = Ready<Result<ReplayCheck, ReplayStoreError>>;

    fn check_and_insert(&self, key: &str, ttl: Duration) -> Self::Future {
        ready(self.check(key, ttl))
    }
}

impl<T: ReplayStore> ReplayStore for std::sync::Arc<T> {
    type Future = T::Future;

    fn check_and_insert(&self, key: &str, ttl: Duration) -> Self::Future {
        (**self).check_and_insert(key, ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remembers_until_the_ttl() {
        let s = MemoryReplayStore::new();
        let ttl = Duration::from_secs(10);
        assert_eq!(s.check_and_insert("a", ttl).await, Ok(ReplayCheck::Fresh));
        assert_eq!(
            s.check_and_insert("a", ttl).await,
            Ok(ReplayCheck::Replayed)
        );
        assert_eq!(s.check_and_insert("b", ttl).await, Ok(ReplayCheck::Fresh));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(s.check_and_insert("a", ttl).await, Ok(ReplayCheck::Fresh));
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_and_fails_closed_when_full() {
        let s = MemoryReplayStore::with_capacity(SHARDS);
        let ttl = Duration::from_secs(10);
        let mut full = 0;
        for i in 0..1000 {
            if s.check_and_insert(&i.to_string(), ttl).await.is_err() {
                full += 1;
            }
        }
        assert!(s.len() <= SHARDS);
        assert!(full >= 1000 - SHARDS);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(s.check_and_insert("new", ttl).await, Ok(ReplayCheck::Fresh));
    }
}
