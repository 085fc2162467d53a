//! Where the state of every key lives: the [`RateLimitStore`] trait and the in-memory store.
//!
//! A store decides all the limits of one request together ([`RateLimitStore::check`]): every
//! check must pass, and when one fails none is charged. It may answer at once (the in-memory
//! store, no allocation, no future) or later (a store that does I/O returns
//! [`StoreResult::Pending`] with its own future). After the response, the layer may correct what
//! was charged ([`RateLimitStore::adjust`]) once the real cost is known.

#[cfg(feature = "redis")]
mod cache;
mod memory;

use std::{fmt, future::Future, hash::BuildHasher, time::Duration};

#[cfg(feature = "redis")]
pub(crate) use cache::{BYTES_PER_SLOT as CACHE_BYTES_PER_SLOT, OverLimitCache};
pub use memory::{MemoryStore, MemoryStoreStats, WORST_CASE_BYTES_PER_KEY};

use super::gcra::{self, Params};

/// The most limits one request can be checked against at once.
pub const MAX_LIMITS: usize = 4;

/// One limit to check for a request: a key, the quota's GCRA parameters, and the cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// The fingerprint of the bucket: the limit and the key (see [`Check::bucket`]).
    pub key: u64,
    /// The fingerprint of the key alone (the client address, the principal, ...), hashed with
    /// the store's [`RateLimitStore::key_hasher`]: the identity the limit counts. Every limit
    /// over the same identity has the same value, so a distributed store can keep them
    /// together (the Redis store's hash tag).
    pub identity: u64,
    /// Nanoseconds one unit of quota takes to come back.
    pub emission_ns: u64,
    /// How far ahead of now a key's theoretical arrival time may run (emission × burst).
    pub limit_ns: u64,
    /// Units this request costs.
    pub cost: u64,
}

impl Check {
    /// The bucket fingerprint of the limit with id `limit_id` over `identity`: the identity
    /// mixed with a constant derived from the id (SplitMix64's finaliser). The identity is
    /// keyed, so a client cannot aim two buckets at one fingerprint without the hasher's key.
    ///
    /// ```
    /// use battlement::rate_limit::Check;
    ///
    /// assert_ne!(Check::bucket(1, 42), Check::bucket(2, 42));
    /// assert_eq!(Check::bucket(7, 42), Check::bucket(7, 42));
    /// ```
    #[inline]
    pub const fn bucket(limit_id: u64, identity: u64) -> u64 {
        let mut z = limit_id.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        identity ^ z ^ (z >> 31)
    }

    #[inline]
    pub(crate) fn params(&self) -> Params {
        Params {
            emission: self.emission_ns.max(1),
            limit: self.limit_ns,
        }
    }
}

/// The state of one key after a decision, for the response headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// Whole units left now.
    pub remaining: u64,
    /// Nanoseconds until the key's bucket is full again.
    pub reset_ns: u64,
}

impl KeyState {
    #[inline]
    pub(crate) fn at(tat: u64, now: u64, params: Params) -> Self {
        Self {
            remaining: gcra::remaining(tat, now, params),
            reset_ns: gcra::reset_after(tat, now),
        }
    }
}

/// What the store decided for all the checks of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed and every key was charged.
    Allowed,
    /// At least one check failed; nothing was charged. `index` is the check that needs the
    /// longest wait, `retry_after` that wait.
    Denied {
        /// Index of the binding check.
        index: usize,
        /// Time until the whole request would be admitted.
        retry_after: Duration,
    },
    /// The cost is above the burst of check `index`: the request can never be admitted.
    CostAboveBurst {
        /// Index of the check whose burst is too small.
        index: usize,
    },
}

/// The answer of a store: a verdict and the state of each key, in the order of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    states: [KeyState; MAX_LIMITS],
    len: u8,
}

impl Decision {
    /// A decision over `states` (one per check, at most [`MAX_LIMITS`]; more are ignored).
    #[inline]
    pub fn new(verdict: Verdict, states: &[KeyState]) -> Self {
        let len = states.len().min(MAX_LIMITS);
        let mut all = [KeyState::default(); MAX_LIMITS];
        all[..len].copy_from_slice(&states[..len]);
        Self {
            verdict,
            states: all,
            len: len as u8,
        }
    }

    /// The state of each key, in the order of the checks.
    #[inline]
    pub fn states(&self) -> &[KeyState] {
        &self.states[..usize::from(self.len)]
    }

    /// Whether the request was admitted.
    #[inline]
    pub fn is_allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allowed)
    }
}

/// A store failed to decide (a network error, a timeout, ...).
#[derive(Clone)]
pub struct StoreError {
    message: std::borrow::Cow<'static, str>,
    /// The store logs this failure itself (the Redis store while its breaker is open: once
    /// per state change and in periodic summaries), so the layer does not log it per request.
    reported: bool,
}

impl StoreError {
    /// An error described by `message` (logged, never sent to clients).
    pub fn new(message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
            reported: false,
        }
    }

    /// An error the store has logged itself: the layer logs it at `debug` only.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn reported(message: &'static str) -> Self {
        Self {
            message: std::borrow::Cow::Borrowed(message),
            reported: true,
        }
    }

    /// Whether the store has logged this error itself.
    pub(crate) fn is_reported(&self) -> bool {
        self.reported
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit store error: {}", self.message)
    }
}

impl std::error::Error for StoreError {}

/// A store's answer: now, or through a future.
#[derive(Debug)]
pub enum StoreResult<F> {
    /// Decided synchronously (the in-memory store always is).
    Ready(Result<Decision, StoreError>),
    /// Decided by `F` (a store doing I/O).
    Pending(F),
}

/// Where rate-limit state lives.
///
/// Implementations must decide all checks of one call atomically: either every key is charged
/// or none is. Keys are 64-bit fingerprints made with [`key_hasher`](Self::key_hasher), so a
/// store never sees (and never has to store) the client's address or API key.
pub trait RateLimitStore: Send + Sync + 'static {
    /// Hashes keys into fingerprints. The in-memory store uses a randomly seeded one; a shared
    /// store needs one seeded the same on every instance.
    type KeyHasher: BuildHasher + Send + Sync + 'static;
    /// The future of a decision that is not ready at once. Stores that always answer at once
    /// use [`std::future::Ready`].
    type Future: Future<Output = Result<Decision, StoreError>> + Send + 'static;

    /// The hasher for key fingerprints.
    fn key_hasher(&self) -> &Self::KeyHasher;

    /// Decides `checks` (at most [`MAX_LIMITS`]) at `now_ns` on the layer's clock: all pass
    /// and are charged, or none is.
    fn check(&self, checks: &[Check], now_ns: u64) -> StoreResult<Self::Future>;

    /// After the response: charges `delta` more units to every key of `checks` (a refund when
    /// negative). Stores doing I/O send it in the background; it is never awaited.
    fn adjust(&self, checks: &[Check], delta: i64, now_ns: u64);
}
