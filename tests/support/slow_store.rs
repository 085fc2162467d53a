//! A rate-limit store that answers through a future, like one doing I/O (the Redis store): the
//! layers' pending path, for the tests that need it.

use std::{future::Future, pin::Pin};

use battlement::rate_limit::{
    Check, Decision, MemoryStore, RateLimitStore, StoreError, StoreResult,
};

/// The decisions of a [`MemoryStore`], each answered after one yield to the runtime.
#[derive(Clone, Debug)]
pub(crate) struct SlowStore(pub(crate) MemoryStore);

impl RateLimitStore for SlowStore {
    type KeyHasher = std::hash::RandomState;
    type Future = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>;

    fn key_hasher(&self) -> &Self::KeyHasher {
        self.0.key_hasher()
    }

    fn check(&self, checks: &[Check], now_ns: u64) -> StoreResult<Self::Future> {
        let result = match self.0.check(checks, now_ns) {
            StoreResult::Ready(r) => r,
            StoreResult::Pending(_) => Err(StoreError::new("unreachable")),
        };
        StoreResult::Pending(Box::pin(async move {
            tokio::task::yield_now().await;
            result
        }))
    }

    fn adjust(&self, checks: &[Check], delta: i64, now_ns: u64) {
        self.0.adjust(checks, delta, now_ns);
    }
}
