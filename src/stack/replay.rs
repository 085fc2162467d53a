//! The replay-nonce store behind the stack's signature verification: this instance's memory,
//! or (feature `redis`) a Redis shared by every instance.
//!
//! [`ServerStack::from_config`](super::ServerStack::from_config) gives `[signing]` a
//! [`MemoryReplayStore`] of its own, or, when a top-level `[redis]` section is written, a
//! [`redis::RedisReplayStore`](crate::redis::RedisReplayStore) on the same connection as the
//! rate limits: a signed request accepted by one instance is refused as a replay by every
//! other instance built from the same configuration.
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::post};
//! use battlement::{
//!     signing::{BufferedBody, Key, KeyRing, SignRequestLayer, VerifySignatureLayer},
//!     stack::{ServerConfig, ServerStack},
//! };
//! use http::{Request, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // In code: a layer on a memory store goes in as it is.
//! let ring = KeyRing::new(Key::hmac_sha256("client-1", &[7; 32])?);
//! let stack = ServerStack::new().signing(VerifySignatureLayer::new(ring.clone()));
//! assert!(!stack.replay_store().unwrap().is_shared());
//! let app = stack.wrap(Router::new().route("/orders", post(|| async { "done" })));
//!
//! // A signed request, captured, sent twice.
//! let signed: Request<BufferedBody> = ServiceBuilder::new()
//!     .layer(SignRequestLayer::new(ring))
//!     .service(service_fn(|r| async { Ok::<_, std::convert::Infallible>(r) }))
//!     .oneshot(Request::post("http://api.example.com/orders").body(Body::from("{}"))?)
//!     .await?;
//! let (mut parts, body) = signed.into_parts();
//! let body = body.into_bytes();
//! // The per-address rate limit needs the peer (axum's `ConnectInfo` when served).
//! parts.extensions.insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
//! let send = |parts, body| app.clone().oneshot(Request::from_parts(parts, Body::from(body)));
//! assert_eq!(send(parts.clone(), body.clone()).await?.status(), StatusCode::OK);
//! assert_eq!(send(parts, body).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
//!
//! # Failure policy
//!
//! The Redis nonce store follows `on_failure` of the `[redis]` section while Redis cannot
//! answer in time (or its breaker is open):
//!
//! * `closed`: the request is refused (503, `replay_store_unavailable`): no replay can pass.
//! * `local` (the default): the nonce is checked in a bounded in-memory store of this instance:
//!   a replay to the same instance is refused, one to another instance during the outage is
//!   not.
//! * `open`: the nonce is accepted unchecked: any captured request can be replayed during the
//!   outage (the audit warns).
//!
//! A store that cannot answer at all (a stack built outside a tokio runtime and used outside
//! one) refuses, whatever the policy.
//!
//! # Pitfalls
//!
//! * `[rate_limit.redis]` shares the rate limits only, as before: with `[signing]` the nonces
//!   stay per instance and the audit warns. Write `[redis]` instead to share both.
//! * Every instance needs the same `prefix` (`prefix:nonce:…` keys): instances with different
//!   prefixes do not see each other's nonces.
//! * The configuration builds no webhook verification: a hand-built
//!   [`VerifyWebhookLayer`](crate::signing::webhooks::VerifyWebhookLayer) shares the stack's
//!   nonce store with `.with_replay_store(stack.replay_store().unwrap().clone())` (webhook ids
//!   are kept as `whk:<id>`, signature nonces as `sig:<key id>:<nonce>`: they never collide).

use std::{
    fmt,
    future::{Future, Ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

#[cfg(feature = "redis")]
use super::store::{LazyConnection, LazyRedis};
#[cfg(feature = "redis")]
use crate::redis::RedisReplayStore;
use crate::{
    problem::DefaultRejection,
    signing::{
        MemoryReplayStore, ReplayCheck, ReplayStore, ReplayStoreError, VerifySignatureLayer,
    },
};

/// The [`ReplayStore`] of the stack's signature verification: a [`MemoryReplayStore`] (per
/// instance) or a [`redis::RedisReplayStore`](crate::redis::RedisReplayStore) (feature
/// `redis`, shared).
///
/// Cloning shares the store. `Debug` never shows the Redis URL.
#[derive(Clone)]
pub struct StackReplayStore {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Memory(Arc<MemoryReplayStore>),
    #[cfg(feature = "redis")]
    Redis(Arc<LazyRedis<RedisReplayStore>>),
}

impl StackReplayStore {
    /// A Redis store made on first use, on `conn` (shared with the section's other stores).
    #[cfg(feature = "redis")]
    pub(super) fn lazy(conn: Arc<LazyConnection>) -> Self {
        Self {
            kind: Kind::Redis(Arc::new(LazyRedis::later(
                conn,
                crate::redis::RedisConnection::replay_store,
            ))),
        }
    }

    /// Whether the nonces are shared with other instances (Redis).
    pub fn is_shared(&self) -> bool {
        !matches!(self.kind, Kind::Memory(_))
    }

    /// The memory store, when it is one.
    pub fn memory(&self) -> Option<&MemoryReplayStore> {
        match &self.kind {
            Kind::Memory(m) => Some(m),
            #[cfg(feature = "redis")]
            Kind::Redis(_) => None,
        }
    }

    /// The Redis store, when it is one (its connection and breaker). A stack built outside a
    /// tokio runtime makes it on the first call inside one (this one included).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(&self) -> Option<&RedisReplayStore> {
        match &self.kind {
            Kind::Redis(r) => r.get(),
            Kind::Memory(_) => None,
        }
    }
}

impl Default for StackReplayStore {
    /// A [`MemoryReplayStore`] of the default capacity.
    fn default() -> Self {
        Self::from(MemoryReplayStore::new())
    }
}

impl From<MemoryReplayStore> for StackReplayStore {
    fn from(store: MemoryReplayStore) -> Self {
        Self::from(Arc::new(store))
    }
}

impl From<Arc<MemoryReplayStore>> for StackReplayStore {
    fn from(store: Arc<MemoryReplayStore>) -> Self {
        Self {
            kind: Kind::Memory(store),
        }
    }
}

#[cfg(feature = "redis")]
impl From<RedisReplayStore> for StackReplayStore {
    fn from(store: RedisReplayStore) -> Self {
        Self {
            kind: Kind::Redis(Arc::new(LazyRedis::ready(store))),
        }
    }
}

/// What [`ServerStack::signing`](super::ServerStack::signing) takes: a layer on a
/// [`MemoryReplayStore`] keeps its store.
impl From<VerifySignatureLayer>
    for Option<VerifySignatureLayer<DefaultRejection, StackReplayStore>>
{
    fn from(layer: VerifySignatureLayer) -> Self {
        Some(layer.map_replay_store(StackReplayStore::from))
    }
}

/// A layer on a Redis store keeps its store.
#[cfg(feature = "redis")]
impl From<VerifySignatureLayer<DefaultRejection, RedisReplayStore>>
    for Option<VerifySignatureLayer<DefaultRejection, StackReplayStore>>
{
    fn from(layer: VerifySignatureLayer<DefaultRejection, RedisReplayStore>) -> Self {
        Some(layer.map_replay_store(|s| StackReplayStore::from((*s).clone())))
    }
}

impl fmt::Debug for StackReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Memory(m) => f.debug_tuple("StackReplayStore::Memory").field(m).finish(),
            #[cfg(feature = "redis")]
            Kind::Redis(r) => f.debug_tuple("StackReplayStore::Redis").field(r).finish(),
        }
    }
}

impl ReplayStore for StackReplayStore {
    type Future = ReplayFuture;

    #[inline]
    fn check_and_insert(&self, key: &str, ttl: Duration) -> ReplayFuture {
        ReplayFuture(match &self.kind {
            Kind::Memory(m) => Fut::Memory(m.check_and_insert(key, ttl)),
            #[cfg(feature = "redis")]
            Kind::Redis(r) => match r.get() {
                Some(r) => Fut::Redis(r.check_and_insert(key, ttl)),
                // Fails closed whatever the policy: no store, no answer.
                None => Fut::Memory(std::future::ready(Err(ReplayStoreError::new(
                    "Redis nonce store not connected: no tokio runtime",
                )))),
            },
        })
    }
}

/// The future of a [`StackReplayStore`] check.
pub struct ReplayFuture(Fut);

enum Fut {
    Memory(Ready<Result<ReplayCheck, ReplayStoreError>>),
    #[cfg(feature = "redis")]
    Redis(crate::redis::ReplayFuture),
}

impl fmt::Debug for ReplayFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFuture").finish_non_exhaustive()
    }
}

impl Future for ReplayFuture {
    type Output = Result<ReplayCheck, ReplayStoreError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both futures are `Unpin` (`Ready`, and the Redis one holds a `Pin<Box<_>>`).
        match &mut self.get_mut().0 {
            Fut::Memory(f) => Pin::new(f).poll(cx),
            #[cfg(feature = "redis")]
            Fut::Redis(f) => Pin::new(f).poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_memory_store_keeps_its_state() {
        let memory = Arc::new(MemoryReplayStore::new());
        let store = StackReplayStore::from(memory.clone());
        assert!(!store.is_shared());
        let ttl = Duration::from_secs(10);
        assert_eq!(
            store.check_and_insert("a", ttl).await,
            Ok(ReplayCheck::Fresh)
        );
        assert_eq!(
            store.clone().check_and_insert("a", ttl).await,
            Ok(ReplayCheck::Replayed)
        );
        assert_eq!(memory.len(), 1);
        assert!(format!("{store:?}").starts_with("StackReplayStore::Memory"));
    }
}
