//! Rate limits and replay nonces in Redis, for many instances behind one load balancer.
//!
//! ```no_run
//! use std::{net::SocketAddr, num::NonZeroU32};
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use battlement::{
//!     rate_limit::{Limit, PeerIp, Quota, RateLimitLayer},
//!     redis::{FailurePolicy, RedisConfig, RedisConnection},
//! };
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisConfig::new()
//!     .with_prefix("shop-api")?
//!     .with_failure_policy(FailurePolicy::FallbackToMemory);
//! let redis = RedisConnection::connect("redis://127.0.0.1:6379/", config).await?;
//!
//! let per_ip = Quota::per_minute(NonZeroU32::new(100).unwrap());
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(
//!         // `with_id`: the same bucket name on every instance.
//!         RateLimitLayer::new(Limit::new(PeerIp::new(), per_ip).with_id(1))
//!             .with_store(redis.rate_limit_store()),
//!     );
//!
//! let mut req = Request::get("/").body(Body::empty()).unwrap();
//! req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["ratelimit"], r#""per-minute";r=99;t=1"#);
//!
//! // The signing layers take `redis.replay_store()` as their replay store.
//! # let _ = redis.replay_store();
//! # Ok(())
//! # }
//! ```
//!
//! * [`RedisRateLimitStore`]: a [`RateLimitStore`](crate::rate_limit::RateLimitStore) whose
//!   decisions are one Lua script run with `EVALSHA` (`redis::Script` loads it again on
//!   `NOSCRIPT`): GCRA on Redis's own clock (`TIME`), weighted costs, and every limit of a
//!   request over one identity decided in the same call: all pass and are charged, or none
//!   is, exactly as in the in-memory store. One round trip per decision on one Redis; on a
//!   cluster, one per identity, sent together (see *Cluster*). A local over-limit cache
//!   ([`RedisConfig::with_local_cache`]) answers clients already refused without a round trip
//!   until their wait is over.
//! * [`RedisReplayStore`]: a [`ReplayStore`](crate::signing::ReplayStore) doing
//!   `SET key 1 NX PX ttl`: a nonce used at one instance is refused at every other.
//! * [`RedisConnection`]: one `redis::aio::ConnectionManager` (multiplexed, reconnects by
//!   itself) shared by both stores; `redis://` and `rediss://` (feature `redis-tls`) URLs with
//!   `user:password@` for ACL users or `:password@`; a timeout on every call (50 ms by default); a [`Breaker`] that stops calling
//!   Redis while it fails and lets a probe through after a cooldown, so the stores go back to
//!   Redis by themselves.
//! * [`FailurePolicy`]: what happens while Redis cannot answer.
//!
//! # Key layout
//!
//! * Rate limits: one hash per identity, `prefix:rl:{<identity>}`, the identity 16 hex
//!   digits of SipHash-2-4 with a fixed key ([`StableKeyHasher`],
//!   [`RedisConfig::with_hash_key`]) over the key a limit counts (the client IP, the
//!   principal, ...), in braces: the Cluster hash tag, so identities spread over every slot.
//!   Each limit over that identity is a field, its bucket fingerprint
//!   ([`Check::bucket`](crate::rate_limit::Check::bucket) of the limit's id and the
//!   identity, 16 hex digits), its value the GCRA arrival time. The hash has a `PX` expiry at
//!   the moment its fullest bucket is full again, so idle identities vanish by themselves and
//!   Redis memory follows the active clients only. Clients' addresses and keys never reach
//!   Redis. (Earlier releases kept one string per bucket under the hash tag `{prefix}`:
//!   those keys are no longer read and expire by themselves.)
//! * Nonces: `prefix:nonce:<key>` (the signing layer's key id and nonce, or a webhook id;
//!   SHA-256 hex past 128 bytes), value `1`, expiring with the signature window.
//!
//! # Cluster
//!
//! With the `redis-cluster` feature, [`RedisConnection::connect_cluster`] speaks the Cluster
//! protocol itself (the `redis` crate's async cluster client): it learns the slot map from
//! seed nodes, sends each call to the primary of its key's slot, follows `MOVED` and `ASK`,
//! and refreshes the map after a failover. The timeout, breaker and failure policy are the
//! same as for one Redis: while a primary is down and until its replica is promoted (about
//! the cluster's `cluster-node-timeout` plus an election, 2 to 3 s with a 1 s node timeout),
//! decisions on its slots follow the policy, then come back by themselves.
//!
//! What is atomic:
//!
//! * All the limits of one request over **one identity** (per second and per minute on the
//!   same client address, say) are one script on one hash: all-or-nothing, on the server's
//!   clock, in one round trip, on one Redis and on a cluster alike.
//! * On **one Redis**, limits over different identities (per client address and a global
//!   limit) are one script too: all-or-nothing across them.
//! * On a **cluster**, a script may only touch one slot, so limits over different identities
//!   are one script per identity, sent at the same time (the request waits about one round
//!   trip). Each is atomic; together they are not: when one identity refuses, what the others
//!   charged is refunded (the adjustment script, awaited before the refusal is answered), so
//!   a refused request consumes no quota in the end. In between, a concurrent request of
//!   another client sharing the refunded identity (a global limit) may see the charge and be
//!   refused at the very edge of its quota; and if the refund itself fails (the node went
//!   down in between), the charge stays until it runs out like any other.
//!
//! Nonce keys have no hash tag of their own and spread over the cluster by nonce.
//!
//! # Local over-limit cache
//!
//! A request refused by Redis with a wait is remembered by the store (its limits, identities
//! and cost; a fixed table of [`RedisConfig::with_local_cache`] slots, 16,384 by default,
//! allocated once, about 1.7 MiB): the same request is refused again locally, with
//! `Retry-After` and the `RateLimit` headers counted down from the first refusal, until
//! the wait is over; then Redis decides again. A client hammering past its limit costs
//! Redis one call per wait instead of one per request. It is per instance, and it refuses
//! on the instance's clock: quota given back in the meantime (a refund, an adjustment)
//! admits the client only once the wait is over.
//!
//! # Failure policies
//!
//! When Redis does not answer within the timeout (down, unreachable, overloaded) or the
//! breaker is open:
//!
//! | policy | rate limit | replay nonces |
//! |---|---|---|
//! | [`FallbackToMemory`](FailurePolicy::FallbackToMemory) (default) | the same quotas in a bounded in-memory store, per instance | checked in a bounded in-memory store, per instance |
//! | [`FailOpen`](FailurePolicy::FailOpen) | admitted, no rate-limit headers | accepted unchecked |
//! | [`FailClosed`](FailurePolicy::FailClosed) | 503 + `Retry-After: 1` (the layer's default [`StoreFailure::Closed`](crate::rate_limit::StoreFailure::Closed)) | refused by the signing layer |
//!
//! No request waits more than the timeout. After three failed calls in a row (by default)
//! the breaker opens: requests apply the policy at once without calling Redis; after a
//! cooldown (1 s, doubling up to 10 s while Redis stays down) one request probes Redis, and
//! when it answers the breaker closes and the stores use Redis again. A connection that hangs
//! (a stopped process, a black-holed network) never fails by itself, so when timeouts open
//! the breaker the connection is replaced and the probe uses a fresh one; after calls failed
//! on the connection (Redis killed, restarted, failed over) the probe makes a fresh one too,
//! so the first probe after Redis is back succeeds. Every transition is a
//! `tracing` event with target `battlement::redis` (error when opening, info when closing,
//! with the number of rate-limit decisions made without Redis), and [`RedisConnection::breaker`]
//! gives its counters. While the breaker is open, the requests refused (or let through, or
//! decided in memory) are not logged one by one: a `warn` summary at most every 10 s gives
//! their number; the breaker's rejection counter (and its metric,
//! `battlement_circuit_breaker_rejections_total{key="redis"}`) counts every one.
//!
//! # Ordering
//!
//! The stores change where state lives, not where the layers go: see
//! [`rate_limit`](crate::rate_limit) and [`signing`](crate::signing).
//!
//! # Pitfalls
//!
//! * Give every limit a fixed [`Limit::with_id`](crate::rate_limit::Limit::with_id), the same
//!   on every instance: the default id is a counter in the process, which only matches across
//!   instances that build their limits in the same order.
//! * Every instance needs the same prefix and hash key, and a build of the same Rust version
//!   (fingerprints follow the keys' `Hash` impls).
//! * With [`FailurePolicy::FailClosed`], keep the rate-limit layer's
//!   [`StoreFailure::Closed`](crate::rate_limit::StoreFailure::Closed) (the default): with
//!   `StoreFailure::Open` the layer would let requests through anyway.
//! * Time is Redis's: the layer's clock is only used by the in-memory fallback. A failover to
//!   a replica whose clock is behind makes buckets look fuller for the difference.
//! * A replica promoted after a failover may have lost the last writes: clients may get a
//!   little more than their quota for a moment.
//!
//! # Deployment
//!
//! Point every instance at the same Redis primary, or the same cluster
//! (`BATTLEMENT_REDIS_URL`-style configuration, with the password in the URL or an ACL user
//! limited to `EVALSHA`, `SCRIPT`, `HGET`, `HSET`, `HDEL`, `PTTL`, `PEXPIRE`, `SET`, `PING`
//! (and `CLUSTER SLOTS` on a cluster) on `prefix*` keys). Keep the timeout well under the request timeout and Redis
//! close to the instances (one round trip per rate-limited request). `rediss://` (TLS) needs
//! the `redis-tls` feature (rustls with the ring provider, installed as the process default
//! unless the application installed one): Mozilla's roots by default, or a private CA with
//! `RedisConfig::with_tls_root_ca`, and mutual TLS with `RedisConfig::with_tls_client_cert`.
//! Size the fallback store ([`RedisConfig::with_fallback_max_keys`]) like an in-memory store.
//!
//! [`Breaker`]: crate::circuit_breaker::Breaker

mod config;
mod connection;
mod hash;
mod rate_limit;
mod replay;

pub use config::{DEFAULT_LOCAL_CACHE, DEFAULT_TIMEOUT, FailurePolicy, RedisConfig};
pub use connection::{ConnectError, ConnectErrorKind, RedisConnection};
pub use hash::{StableHasher, StableKeyHasher};
pub use rate_limit::{DecisionFuture, RedisRateLimitStore};
pub use replay::{RedisReplayStore, ReplayFuture};
