//! Configuration of the Redis stores: namespace, call timeout, failure policy, breaker.

use std::{borrow::Cow, fmt, time::Duration};

use crate::{circuit_breaker::BreakerConfig, error::ConfigError};

/// The default timeout of every Redis call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// The key hasher's default key. Set your own, the same on every instance, with
/// [`RedisConfig::with_hash_key`].
const DEFAULT_HASH_KEY: [u8; 16] = *b"battlement-rl-v1";

/// The default number of slots of the rate-limit store's local over-limit cache.
pub const DEFAULT_LOCAL_CACHE: usize = 16_384;

/// What the Redis stores do when Redis cannot answer in time (down, unreachable, too slow,
/// or skipped because the breaker is open).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Let requests through: rate limits are not enforced and nonces are accepted unchecked
    /// (an `error` event is logged when the breaker opens, and a summary with the number of
    /// requests let through at most every 10 s while it stays open). Availability first.
    FailOpen,
    /// Refuse: the rate-limit store reports an error (the layer answers 503 with its default
    /// [`StoreFailure::Closed`](crate::rate_limit::StoreFailure::Closed)) and the replay store
    /// reports an error (the signing layers refuse the request). Safety first.
    FailClosed,
    /// Decide in memory, per instance, with the same quotas (a bounded
    /// [`MemoryStore`](crate::rate_limit::MemoryStore) and
    /// [`MemoryReplayStore`](crate::signing::MemoryReplayStore)): limits hold per instance
    /// (up to N times the quota over N instances), replays are caught when they hit the same
    /// instance. The default.
    #[default]
    FallbackToMemory,
}

/// How the Redis stores talk to Redis.
///
/// ```
/// use std::time::Duration;
/// use battlement::redis::{FailurePolicy, RedisConfig};
///
/// let config = RedisConfig::new()
///     .with_prefix("shop-api")?
///     .with_timeout(Duration::from_millis(20))?
///     .with_failure_policy(FailurePolicy::FailClosed)
///     .with_hash_key(*b"0123456789abcdef");
/// assert_eq!(config.prefix(), "shop-api");
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) prefix: Cow<'static, str>,
    pub(crate) timeout: Duration,
    pub(crate) failure: FailurePolicy,
    pub(crate) breaker: BreakerConfig,
    pub(crate) hash_key: [u8; 16],
    pub(crate) fallback_max_keys: usize,
    pub(crate) local_cache: usize,
    /// Set by the stack's `[redis] mode = "cluster"`: the URL is a comma-separated list of
    /// cluster seeds ([`RedisConnection::connect_configured_lazy`](super::RedisConnection)).
    pub(crate) cluster: bool,
    #[cfg(feature = "redis-tls")]
    pub(crate) tls: TlsFiles,
}

/// PEM files for `rediss://` beyond the built-in roots.
#[cfg(feature = "redis-tls")]
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) root_ca: Option<Vec<u8>>,
    pub(crate) client: Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)>,
}

impl RedisConfig {
    /// Prefix `battlement`, 50 ms timeout, [`FailurePolicy::FallbackToMemory`], a breaker
    /// that opens after 3 failed calls in a row for 1 s (growing to 10 s while Redis stays
    /// down), a fallback store of 1 Mi keys.
    pub fn new() -> Self {
        Self {
            prefix: Cow::Borrowed("battlement"),
            timeout: DEFAULT_TIMEOUT,
            failure: FailurePolicy::FallbackToMemory,
            breaker: BreakerConfig::consecutive_failures(3)
                .cooldown(Duration::from_secs(1))
                .cooldown_growth(2, Duration::from_secs(10)),
            hash_key: DEFAULT_HASH_KEY,
            fallback_max_keys: 1 << 20,
            local_cache: DEFAULT_LOCAL_CACHE,
            cluster: false,
            #[cfg(feature = "redis-tls")]
            tls: TlsFiles::default(),
        }
    }

    /// The namespace of every key (`{prefix}:rl:…` and `prefix:nonce:…`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] unless `prefix` is 1 to 64 characters of `A-Z a-z 0-9 - _ . :`
    /// (no braces: the hash tag of a rate-limit key is its identity).
    pub fn with_prefix(
        mut self,
        prefix: impl Into<Cow<'static, str>>,
    ) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !ok {
            return Err(ConfigError::invalid(
                "redis.prefix",
                "must be 1 to 64 characters of A-Z a-z 0-9 - _ . :",
            ));
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// The longest any request waits for Redis (each call, connection included).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] unless `timeout` is between 1 ms and 10 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout < Duration::from_millis(1) || timeout > Duration::from_secs(10) {
            return Err(ConfigError::out_of_range(
                "redis.timeout",
                "must be between 1 ms and 10 s (keep it well under the request timeout)",
            ));
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// What to do when Redis cannot answer.
    #[must_use]
    pub const fn with_failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// The breaker that stops calling Redis while it fails (its state changes are logged).
    /// Its clock is tokio's unless the config sets one.
    #[must_use]
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// The key of the fingerprint hasher ([`StableKeyHasher`](super::StableKeyHasher)): the
    /// same on every instance, and secret, so clients cannot aim for collisions.
    #[must_use]
    pub const fn with_hash_key(mut self, key: [u8; 16]) -> Self {
        self.hash_key = key;
        self
    }

    /// The key cap of the in-memory fallback rate-limit store.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] below 64 keys.
    pub fn with_fallback_max_keys(mut self, keys: usize) -> Result<Self, ConfigError> {
        if keys < 64 {
            return Err(ConfigError::out_of_range(
                "redis.fallback_max_keys",
                "must be at least 64",
            ));
        }
        self.fallback_max_keys = keys;
        Ok(self)
    }

    /// The slots of the local over-limit cache of the rate-limit store (default 16,384,
    /// about 1.7 MiB; 0 turns it off): a request refused with a known wait is refused again
    /// by this instance, with the same `Retry-After` and `RateLimit` headers (the wait counted
    /// down), without a round trip, until the wait has passed. Under a flood from clients
    /// already over their limit, Redis sees almost nothing. Two slots per request fingerprint
    /// (its limits, identities and cost); a full cache replaces the refusal that ends first.
    ///
    /// What it changes: a refusal is decided on this instance's clock for the rest of its
    /// wait, so quota handed back meanwhile (a refund, an adjustment by another instance)
    /// admits the client only once the wait is over.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] above 16,777,216 slots.
    pub fn with_local_cache(mut self, slots: usize) -> Result<Self, ConfigError> {
        if slots > 1 << 24 {
            return Err(ConfigError::out_of_range(
                "redis.local_cache",
                "must be at most 16777216 slots",
            ));
        }
        self.local_cache = slots;
        Ok(self)
    }

    /// Trusts only the CA in `pem` (PEM certificates) for `rediss://`, instead of the built-in
    /// Mozilla roots: for a Redis with a private CA.
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    #[must_use]
    pub fn with_tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_ca = Some(pem.into());
        self
    }

    /// Presents the client certificate `cert_pem` with its key `key_pem` (mutual TLS). The key
    /// is zeroed when the config is dropped and never shown by `Debug`.
    #[cfg(feature = "redis-tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tls")))]
    #[must_use]
    pub fn with_tls_client_cert(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.client = Some((cert_pem.into(), zeroize::Zeroizing::new(key_pem.into())));
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The call timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The failure policy.
    pub const fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }
}

impl RedisConfig {
    fn has_root_ca(&self) -> bool {
        #[cfg(feature = "redis-tls")]
        {
            self.tls.root_ca.is_some()
        }
        #[cfg(not(feature = "redis-tls"))]
        {
            false
        }
    }

    fn has_client_cert(&self) -> bool {
        #[cfg(feature = "redis-tls")]
        {
            self.tls.client.is_some()
        }
        #[cfg(not(feature = "redis-tls"))]
        {
            false
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("failure", &self.failure)
            .field("breaker", &self.breaker)
            .field("fallback_max_keys", &self.fallback_max_keys)
            .field("local_cache", &self.local_cache)
            .field("tls_root_ca", &self.has_root_ca())
            .field("tls_client_cert", &self.has_client_cert())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(RedisConfig::new().with_prefix("").is_err());
        assert!(RedisConfig::new().with_prefix("{x}").is_err());
        assert!(RedisConfig::new().with_prefix("a b").is_err());
        assert!(RedisConfig::new().with_prefix("app:prod-1").is_ok());
        assert!(RedisConfig::new().with_timeout(Duration::ZERO).is_err());
        assert!(
            RedisConfig::new()
                .with_timeout(Duration::from_secs(60))
                .is_err()
        );
        assert!(RedisConfig::new().with_fallback_max_keys(10).is_err());
        assert!(RedisConfig::new().with_local_cache(0).is_ok());
        assert!(RedisConfig::new().with_local_cache(1 << 25).is_err());
        let c = RedisConfig::new().with_hash_key([9; 16]);
        assert!(!format!("{c:?}").contains("hash_key"));
        assert_eq!(c.failure_policy(), FailurePolicy::FallbackToMemory);
    }
}
