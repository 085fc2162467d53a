//! The replay-nonce store on Redis.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use sha2::{Digest, Sha256};

use super::{
    config::{FailurePolicy, RedisConfig},
    connection::{ConnectError, IoFuture, RedisConnection, guarded},
};
use crate::signing::{MemoryReplayStore, ReplayCheck, ReplayStore, ReplayStoreError};

/// Keys longer than this are stored as their SHA-256 (hex): bounded Redis keys whatever the
/// nonce length.
const MAX_RAW_KEY: usize = 128;

/// A [`ReplayStore`] on Redis: `SET prefix:nonce:<key> 1 NX PX <ttl>`, one round trip, so a
/// nonce used at one instance is refused at every other.
///
/// When Redis does not answer in time, the [`FailurePolicy`] decides: accept
/// ([`FailOpen`](FailurePolicy::FailOpen)), refuse ([`FailClosed`](FailurePolicy::FailClosed)),
/// or check in a bounded [`MemoryReplayStore`] ([`FallbackToMemory`](FailurePolicy::FallbackToMemory)).
///
/// Cloning shares the connection and the fallback store.
#[derive(Clone)]
pub struct RedisReplayStore {
    conn: RedisConnection,
    fallback: std::sync::Arc<MemoryReplayStore>,
}

impl RedisReplayStore {
    pub(crate) fn new(conn: RedisConnection) -> Self {
        Self {
            conn,
            fallback: std::sync::Arc::new(MemoryReplayStore::new()),
        }
    }

    /// Connects to `url` and makes a store ([`RedisConnection::connect`], then
    /// [`RedisConnection::replay_store`]).
    ///
    /// # Errors
    ///
    /// A [`ConnectError`]: invalid URL, no tokio runtime, or Redis unreachable.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        Ok(RedisConnection::connect(url, config).await?.replay_store())
    }

    /// The connection (its breaker, its config).
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The Redis key for `key`: `prefix:nonce:<key>`, or `prefix:nonce:h:<sha-256 hex>` past
    /// 128 bytes or for bytes outside visible ASCII.
    pub fn redis_key(&self, key: &str) -> String {
        let prefix = &self.conn.inner.nonce_prefix;
        if key.len() <= MAX_RAW_KEY && key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            let mut k = String::with_capacity(prefix.len() + key.len());
            k.push_str(prefix);
            k.push_str(key);
            k
        } else {
            let digest = Sha256::digest(key.as_bytes());
            let mut k = String::with_capacity(prefix.len() + 2 + 64);
            k.push_str(prefix);
            k.push_str("h:");
            for b in digest.iter() {
                k.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                k.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
            }
            k
        }
    }

    fn without_redis(
        policy: FailurePolicy,
        fallback: &MemoryReplayStore,
        key: &str,
        ttl: Duration,
        error: &str,
    ) -> Result<ReplayCheck, ReplayStoreError> {
        match policy {
            FailurePolicy::FailOpen => Ok(ReplayCheck::Fresh),
            FailurePolicy::FailClosed => {
                Err(ReplayStoreError::new(format!("Redis unavailable: {error}")))
            }
            FailurePolicy::FallbackToMemory => {
                // A ready future: take its value at once.
                fallback.check_and_insert(key, ttl).into_inner()
            }
        }
    }
}

/// The future of a Redis replay check.
pub struct ReplayFuture {
    inner: IoFuture<Result<ReplayCheck, ReplayStoreError>>,
}

impl fmt::Debug for ReplayFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFuture").finish_non_exhaustive()
    }
}

impl Future for ReplayFuture {
    type Output = Result<ReplayCheck, ReplayStoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl ReplayStore for RedisReplayStore {
    type Future = ReplayFuture;

    fn check_and_insert(&self, key: &str, ttl: Duration) -> ReplayFuture {
        let policy = self.conn.inner.config.failure;
        let Some(permit) = self.conn.permit() else {
            return ReplayFuture {
                inner: IoFuture::Ready(Some(Self::without_redis(
                    policy,
                    &self.fallback,
                    key,
                    ttl,
                    "circuit open",
                ))),
            };
        };
        let redis_key = self.redis_key(key);
        let key = key.to_owned();
        let store = self.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        ReplayFuture {
            inner: IoFuture::Io(Box::pin(async move {
                let inner = &store.conn.inner;
                let call = async {
                    let mut con = inner.manager();
                    ::redis::cmd("SET")
                        .arg(&redis_key)
                        .arg(1)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async::<Option<String>>(&mut con)
                        .await
                };
                match guarded(inner, permit, "replay check", call).await {
                    Ok(Some(_)) => Ok(ReplayCheck::Fresh),
                    Ok(None) => Ok(ReplayCheck::Replayed),
                    Err(e) => Self::without_redis(policy, &store.fallback, &key, ttl, &e),
                }
            })),
        }
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}
