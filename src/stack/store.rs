//! The store behind the stack's rate limits: this instance's memory, or (feature `redis`) a
//! Redis shared by every instance.
//!
//! [`ServerStack::from_config`](super::ServerStack::from_config) puts both rate limits (per
//! client address, per principal) on one [`StackStore`]: a
//! [`MemoryStore`] each, or, when `[redis]` (or `[rate_limit.redis]`) is written, one
//! [`redis::RedisRateLimitStore`](crate::redis::RedisRateLimitStore) for both, so every instance
//! built from the same configuration draws on the same quotas. `[redis]` also puts the
//! signature nonces on the same connection ([`StackReplayStore`](super::StackReplayStore));
//! `[rate_limit.redis]` shares the rate limits only.
//!
//! ```
//! use std::{net::SocketAddr, num::NonZeroU32};
//!
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use battlement::{
//!     rate_limit::{Limit, PeerIp, Quota, RateLimitLayer},
//!     stack::ServerStack,
//! };
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A layer on a memory store goes in as it is; one on a Redis store too.
//! let quota = Quota::per_minute(NonZeroU32::new(1).unwrap());
//! let stack = ServerStack::new().rate_limit_ip(RateLimitLayer::new(Limit::new(PeerIp::new(), quota)));
//! assert!(!stack.rate_limit_store().unwrap().is_shared());
//! let app = stack.wrap(Router::new().route("/", get(|| async { "hello" })));
//!
//! let request = || {
//!     let mut req = Request::get("/").body(Body::empty()).unwrap();
//!     req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
//!     req
//! };
//! assert_eq!(app.clone().oneshot(request()).await.unwrap().status(), StatusCode::OK);
//! let res = app.oneshot(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(res.headers().contains_key("retry-after"));
//! # }
//! ```
//!
//! # Ordering
//!
//! The store changes where the state lives, not where the layers go: see
//! [`ServerStack`](super::ServerStack).
//!
//! # Pitfalls
//!
//! * With a Redis section, the connection is made lazily: requests get the failure
//!   policy until Redis answers. A stack built outside a tokio runtime (the audit,
//!   `ServerConfig::validate`) checks the URL and makes the connection on its first request.
//! * Without the `redis` feature, a configuration with `[redis]` or `[rate_limit.redis]` is
//!   refused at startup: silently limiting per instance would hand every client N times its
//!   quota.
//! * The limits of a configured stack have the fixed ids [`PER_IP_LIMIT_ID`] and
//!   [`PER_PRINCIPAL_LIMIT_ID`]: a hand-built layer sharing the same Redis prefix must use
//!   other ids, or it draws on the same buckets.
//! * The fingerprint hasher of a configured store is keyed with `hash_key` (16 bytes, a
//!   secret reference, the same on every instance). Left out, it is the `redis` module's
//!   public default key, with which a client can search for keys that fall into another
//!   client's bucket: the audit warns. Changing the key moves every bucket (the quotas start
//!   afresh), so change it on every instance at once.
//!
//! # Deployment
//!
//! Give every instance the same `[redis]` (URL, `prefix`): instances with different prefixes
//! limit separately and do not see each other's nonces. The `redis` module's docs describe the key layout, the
//! failure policies and the breaker that stops calling Redis while it is down.

#[cfg(feature = "redis")]
use std::sync::{Arc, OnceLock};
use std::{
    collections::hash_map::{DefaultHasher, RandomState},
    fmt,
    future::{Future, Ready},
    hash::{BuildHasher, Hasher},
    pin::Pin,
    task::{Context, Poll},
};

#[cfg(feature = "redis")]
use crate::{config::Secret, redis::RedisRateLimitStore};
use crate::{
    error::ConfigError,
    rate_limit::{
        Check, Decision, KeyExtractor, Limit, MemoryStore, RateLimitLayer, RateLimitStore,
        StoreError, StoreResult,
    },
};

use super::config::RedisConfig;

/// The limit id of the per-client-address rate limit of a configured stack (its buckets in a
/// shared store).
pub const PER_IP_LIMIT_ID: u64 = 0xb1_0001;
/// The limit id of the per-principal rate limit of a configured stack.
pub const PER_PRINCIPAL_LIMIT_ID: u64 = 0xb1_0002;

/// The [`RateLimitStore`] of the stack's rate limits: a [`MemoryStore`] (per instance) or a
/// [`redis::RedisRateLimitStore`](crate::redis::RedisRateLimitStore) (feature `redis`, shared).
///
/// Cloning shares the store. `Debug` never shows the Redis URL.
#[derive(Clone)]
pub struct StackStore {
    kind: Kind,
    hasher: StackKeyHasher,
}

#[derive(Clone)]
enum Kind {
    Memory(MemoryStore),
    #[cfg(feature = "redis")]
    Redis(Arc<LazyRedis<RedisRateLimitStore>>),
}

/// A section's Redis connection, made on the first call inside a tokio runtime (a stack built
/// outside one): every store of the section shares it, so they share one connection (and one
/// breaker) as they do when the connection is made at once.
#[cfg(feature = "redis")]
pub(super) struct LazyConnection {
    conn: OnceLock<crate::redis::RedisConnection>,
    url: Secret,
    config: crate::redis::RedisConfig,
}

#[cfg(feature = "redis")]
impl LazyConnection {
    fn get(&self) -> Option<&crate::redis::RedisConnection> {
        if let Some(conn) = self.conn.get() {
            return Some(conn);
        }
        match crate::redis::RedisConnection::connect_configured_lazy(
            self.url.expose(),
            self.config.clone(),
        ) {
            Ok(conn) => {
                // Another request may have been first: its connection is kept, this one dropped.
                let _ = self.conn.set(conn);
                self.conn.get()
            }
            Err(error) => {
                // Only without a tokio runtime: the URL was checked at startup.
                tracing::error!(target: "battlement::redis", %error, "cannot use Redis");
                None
            }
        }
    }
}

/// How a store is made from its connection (`RedisConnection::rate_limit_store`, ...).
#[cfg(feature = "redis")]
type MakeStore<T> = fn(&crate::redis::RedisConnection) -> T;

/// A Redis store (of rate limits or of nonces), or the connection to make it from on first use.
///
/// `Debug` shows the store once made, else the connection's configuration (never the URL).
#[cfg(feature = "redis")]
pub(super) struct LazyRedis<T> {
    store: OnceLock<T>,
    later: Option<(Arc<LazyConnection>, MakeStore<T>)>,
}

#[cfg(feature = "redis")]
impl<T> LazyRedis<T> {
    /// A store made already.
    pub(super) fn ready(store: T) -> Self {
        Self {
            store: OnceLock::from(store),
            later: None,
        }
    }

    /// A store `make` makes from `conn` once it is connected.
    pub(super) fn later(conn: Arc<LazyConnection>, make: MakeStore<T>) -> Self {
        Self {
            store: OnceLock::new(),
            later: Some((conn, make)),
        }
    }

    pub(super) fn get(&self) -> Option<&T> {
        if let Some(store) = self.store.get() {
            return Some(store);
        }
        let (conn, make) = self.later.as_ref()?;
        let store = make(conn.get()?);
        // Another request may have been first: its store is kept, this one dropped.
        let _ = self.store.set(store);
        self.store.get()
    }
}

#[cfg(feature = "redis")]
impl<T: fmt::Debug> fmt::Debug for LazyRedis<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.store.get(), &self.later) {
            (Some(store), _) => store.fmt(f),
            (None, Some((conn, _))) => f
                .debug_struct("NotConnectedYet")
                .field("config", &conn.config)
                .finish(),
            (None, None) => f.write_str("NotConnectedYet"),
        }
    }
}

impl StackStore {
    /// Whether the state is shared with other instances (Redis).
    pub fn is_shared(&self) -> bool {
        !matches!(self.kind, Kind::Memory(_))
    }

    /// The memory store, when it is one.
    pub fn memory(&self) -> Option<&MemoryStore> {
        match &self.kind {
            Kind::Memory(m) => Some(m),
            #[cfg(feature = "redis")]
            Kind::Redis(_) => None,
        }
    }

    /// The Redis store, when it is one (its connection, breaker and fallback store). A stack
    /// built outside a tokio runtime makes it on the first call inside one (this one included).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(&self) -> Option<&RedisRateLimitStore> {
        match &self.kind {
            Kind::Redis(r) => r.get(),
            Kind::Memory(_) => None,
        }
    }
}

impl From<MemoryStore> for StackStore {
    fn from(store: MemoryStore) -> Self {
        let hasher = StackKeyHasher(HasherKind::Memory(store.key_hasher().clone()));
        Self {
            kind: Kind::Memory(store),
            hasher,
        }
    }
}

#[cfg(feature = "redis")]
impl From<RedisRateLimitStore> for StackStore {
    fn from(store: RedisRateLimitStore) -> Self {
        let hasher = StackKeyHasher(HasherKind::Redis(*store.key_hasher()));
        Self {
            kind: Kind::Redis(Arc::new(LazyRedis::ready(store))),
            hasher,
        }
    }
}

/// What the [`ServerStack`](super::ServerStack) rate-limit setters take: a layer on a
/// [`MemoryStore`] keeps its store.
impl From<RateLimitLayer> for Option<RateLimitLayer<StackStore>> {
    fn from(layer: RateLimitLayer) -> Self {
        let store = StackStore::from(layer.store().clone());
        Some(layer.with_store(store))
    }
}

/// A layer on a Redis store keeps its store.
#[cfg(feature = "redis")]
impl From<RateLimitLayer<RedisRateLimitStore>> for Option<RateLimitLayer<StackStore>> {
    fn from(layer: RateLimitLayer<RedisRateLimitStore>) -> Self {
        let store = StackStore::from(layer.store().clone());
        Some(layer.with_store(store))
    }
}

impl fmt::Debug for StackStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Memory(m) => f.debug_tuple("StackStore::Memory").field(m).finish(),
            #[cfg(feature = "redis")]
            Kind::Redis(r) => f.debug_tuple("StackStore::Redis").field(r).finish(),
        }
    }
}

impl RateLimitStore for StackStore {
    type KeyHasher = StackKeyHasher;
    type Future = DecisionFuture;

    #[inline]
    fn key_hasher(&self) -> &StackKeyHasher {
        &self.hasher
    }

    #[inline]
    fn check(&self, checks: &[Check], now_ns: u64) -> StoreResult<DecisionFuture> {
        match &self.kind {
            Kind::Memory(m) => match m.check(checks, now_ns) {
                StoreResult::Ready(d) => StoreResult::Ready(d),
                StoreResult::Pending(f) => StoreResult::Pending(DecisionFuture(Fut::Memory(f))),
            },
            #[cfg(feature = "redis")]
            Kind::Redis(r) => match r.get().map(|r| r.check(checks, now_ns)) {
                Some(StoreResult::Ready(d)) => StoreResult::Ready(d),
                Some(StoreResult::Pending(f)) => {
                    StoreResult::Pending(DecisionFuture(Fut::Redis(f)))
                }
                None => StoreResult::Ready(Err(StoreError::new(
                    "Redis store not connected: no tokio runtime",
                ))),
            },
        }
    }

    #[inline]
    fn adjust(&self, checks: &[Check], delta: i64, now_ns: u64) {
        match &self.kind {
            Kind::Memory(m) => m.adjust(checks, delta, now_ns),
            #[cfg(feature = "redis")]
            Kind::Redis(r) => {
                if let Some(r) = r.get() {
                    r.adjust(checks, delta, now_ns);
                }
            }
        }
    }
}

/// The key hasher of a [`StackStore`]: the randomly seeded one of a memory store, or the
/// stable one of a Redis store (the same fingerprints as the Redis store on its own).
#[derive(Clone)]
pub struct StackKeyHasher(HasherKind);

#[derive(Clone)]
enum HasherKind {
    Memory(RandomState),
    #[cfg(feature = "redis")]
    Redis(crate::redis::StableKeyHasher),
}

impl fmt::Debug for StackKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither seed is shown: with it, a client could aim for fingerprint collisions.
        f.debug_struct("StackKeyHasher").finish_non_exhaustive()
    }
}

impl BuildHasher for StackKeyHasher {
    type Hasher = StackHasher;

    #[inline]
    fn build_hasher(&self) -> StackHasher {
        StackHasher(match &self.0 {
            HasherKind::Memory(s) => HasherState::Memory(s.build_hasher()),
            #[cfg(feature = "redis")]
            HasherKind::Redis(s) => HasherState::Redis(s.build_hasher()),
        })
    }
}

/// The hasher of a [`StackKeyHasher`]: every write goes to the underlying store's hasher.
#[derive(Clone)]
pub struct StackHasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Memory(DefaultHasher),
    #[cfg(feature = "redis")]
    Redis(crate::redis::StableHasher),
}

impl fmt::Debug for StackHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackHasher").finish_non_exhaustive()
    }
}

/// Forwards each `Hasher` method as is, so the fingerprints are exactly the underlying
/// hasher's (the stable hasher encodes integers its own way).
macro_rules! forward {
    ($($name:ident($t:ty);)*) => {
        $(
            #[inline]
            fn $name(&mut self, n: $t) {
                match &mut self.0 {
                    HasherState::Memory(h) => h.$name(n),
                    #[cfg(feature = "redis")]
                    HasherState::Redis(h) => h.$name(n),
                }
            }
        )*
    };
}

impl Hasher for StackHasher {
    #[inline]
    fn finish(&self) -> u64 {
        match &self.0 {
            HasherState::Memory(h) => h.finish(),
            #[cfg(feature = "redis")]
            HasherState::Redis(h) => h.finish(),
        }
    }

    forward! {
        write(&[u8]);
        write_u8(u8);
        write_u16(u16);
        write_u32(u32);
        write_u64(u64);
        write_u128(u128);
        write_usize(usize);
        write_i8(i8);
        write_i16(i16);
        write_i32(i32);
        write_i64(i64);
        write_i128(i128);
        write_isize(isize);
    }
}

/// The future of a [`StackStore`] decision that is not ready at once (a Redis round trip).
pub struct DecisionFuture(Fut);

enum Fut {
    Memory(Ready<Result<Decision, StoreError>>),
    #[cfg(feature = "redis")]
    Redis(crate::redis::DecisionFuture),
}

impl fmt::Debug for DecisionFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionFuture").finish_non_exhaustive()
    }
}

impl Future for DecisionFuture {
    type Output = Result<Decision, StoreError>;

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

/// A layer enforcing `limit` on `shared`, or on a memory store of its own.
pub(super) fn layer<E: KeyExtractor>(
    limit: Limit<E>,
    shared: Option<&StackStore>,
) -> RateLimitLayer<StackStore> {
    let layer = RateLimitLayer::new(limit);
    let store = match shared {
        Some(s) => s.clone(),
        None => StackStore::from(layer.store().clone()),
    };
    layer.with_store(store)
}

/// A Redis section (`[redis]` or `[rate_limit.redis]`) validated, its connection made (lazily):
/// the stores of a configured stack are made from it and share that connection.
pub(super) struct RedisSection {
    #[cfg(feature = "redis")]
    conn: Connection,
    /// Without the `redis` feature no section is ever accepted.
    #[cfg(not(feature = "redis"))]
    never: std::convert::Infallible,
}

#[cfg(feature = "redis")]
enum Connection {
    Live(crate::redis::RedisConnection),
    /// Built outside a tokio runtime: connected on the first use of any store made from it.
    Later(Arc<LazyConnection>),
}

impl RedisSection {
    /// The rate-limit store on this section's Redis.
    pub(super) fn rate_limit_store(&self) -> StackStore {
        #[cfg(not(feature = "redis"))]
        match self.never {}
        #[cfg(feature = "redis")]
        match &self.conn {
            Connection::Live(conn) => StackStore::from(conn.rate_limit_store()),
            Connection::Later(later) => StackStore {
                hasher: StackKeyHasher(HasherKind::Redis(crate::redis::StableKeyHasher::new(
                    later.config.hash_key,
                ))),
                kind: Kind::Redis(Arc::new(LazyRedis::later(
                    later.clone(),
                    crate::redis::RedisConnection::rate_limit_store,
                ))),
            },
        }
    }

    /// The replay-nonce store on this section's Redis.
    pub(super) fn replay_store(&self) -> super::replay::StackReplayStore {
        #[cfg(not(feature = "redis"))]
        match self.never {}
        #[cfg(feature = "redis")]
        match &self.conn {
            Connection::Live(conn) => conn.replay_store().into(),
            Connection::Later(later) => super::replay::StackReplayStore::lazy(later.clone()),
        }
    }
}

/// A Redis section of the configuration at `section` (`redis` or `rate_limit.redis`): validated
/// (errors name its field), then a lazily made connection.
///
/// Without the `redis` feature the section is refused: the instances would limit (or check
/// nonces) on their own while the operator believes they share the state.
pub(super) fn configured(
    r: &RedisConfig,
    section: &'static str,
) -> Result<RedisSection, ConfigError> {
    let url = r
        .url
        .resolve()
        .map_err(|e| e.within(&format!("{section}.url")))?;
    let u = url.expose();
    if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
        return Err(ConfigError::invalid(
            format!("{section}.url"),
            "expected a redis:// or rediss:// URL",
        ));
    }
    let t = r.timeout.get();
    if t < std::time::Duration::from_millis(1) || t > std::time::Duration::from_secs(5) {
        return Err(ConfigError::out_of_range(
            format!("{section}.timeout"),
            "must be between 1ms and 5s: a slow store must never hang requests",
        ));
    }
    let hash_key = r
        .hash_key
        .as_ref()
        .map(|k| hash_key(k, section))
        .transpose()?;
    connect(r, u, hash_key, section)
}

/// `<section>.hash_key`: exactly 16 bytes, as 32 hex digits or `base64:…`. Errors name the
/// field and the length found, never the value.
pub(super) fn hash_key(
    source: &crate::config::SecretSource,
    section: &str,
) -> Result<[u8; 16], ConfigError> {
    let field = format!("{section}.hash_key");
    let secret = source.resolve().map_err(|e| e.within(&field))?;
    let text = secret.expose().trim();
    let bytes = match text.strip_prefix("base64:") {
        Some(b64) => crate::signing::key::decode_base64(b64.trim()),
        None => crate::signing::key::decode_hex(text),
    }
    .ok_or_else(|| {
        ConfigError::invalid(
            field.clone(),
            "expected 16 bytes as 32 hex digits or `base64:…`; the value is not valid hex or \
             base64",
        )
    })?;
    <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| {
        ConfigError::invalid(
            field,
            format!(
                "expected 16 bytes (32 hex digits or `base64:…`), found {} bytes",
                bytes.len()
            ),
        )
    })
}

#[cfg(not(feature = "redis"))]
fn connect(
    _r: &RedisConfig,
    _url: &str,
    _hash_key: Option<[u8; 16]>,
    section: &'static str,
) -> Result<RedisSection, ConfigError> {
    Err(ConfigError::new(
        crate::error::ConfigErrorKind::Unsafe,
        section,
        "this build has no Redis support: enable the `redis` feature of battlement (and \
         `redis-tls` for rediss://), or remove the section; without it every instance would \
         limit and check nonces on its own",
    ))
}

#[cfg(feature = "redis")]
fn connect(
    r: &RedisConfig,
    url: &str,
    hash_key: Option<[u8; 16]>,
    section: &'static str,
) -> Result<RedisSection, ConfigError> {
    use super::config::RedisFailure;
    use crate::redis::{ConnectErrorKind, FailurePolicy, RedisConnection};

    let mut config = crate::redis::RedisConfig::new();
    if let Some(key) = hash_key {
        config = config.with_hash_key(key);
    }
    let config = config
        .with_prefix(r.prefix.clone())
        .map_err(|e| {
            ConfigError::new(e.kind(), format!("{section}.prefix"), e.reason().to_owned())
        })?
        .with_timeout(r.timeout.get())
        .map_err(|e| {
            ConfigError::new(
                e.kind(),
                format!("{section}.timeout"),
                e.reason().to_owned(),
            )
        })?
        .with_failure_policy(match r.on_failure {
            RedisFailure::Open => FailurePolicy::FailOpen,
            RedisFailure::Closed => FailurePolicy::FailClosed,
            RedisFailure::Local => FailurePolicy::FallbackToMemory,
        })
        .with_local_cache(r.local_cache)
        .map_err(|e| {
            ConfigError::new(
                e.kind(),
                format!("{section}.local_cache"),
                e.reason().to_owned(),
            )
        })?;
    let cluster = r.mode == super::config::RedisMode::Cluster;
    if cluster && !cfg!(feature = "redis-cluster") {
        return Err(ConfigError::invalid(
            format!("{section}.mode"),
            "mode = \"cluster\" needs the `redis-cluster` feature of battlement",
        ));
    }
    let mut config = config;
    config.cluster = cluster;
    // The error never carries the URL; drop it anyway if a part of the URL's credentials
    // shows up in it.
    let invalid = |field: String, text: String| {
        let reason = if leaks(&text, url) {
            "invalid Redis URL".to_owned()
        } else {
            text
        };
        ConfigError::invalid(field, reason)
    };
    if tokio::runtime::Handle::try_current().is_err() {
        // Outside a runtime (`ServerConfig::validate`, the audit, a stack built before the
        // runtime): check the URL now, make the connection on the first request.
        if url.starts_with("rediss://") && !cfg!(feature = "redis-tls") {
            return Err(invalid(
                format!("{section}.url"),
                "rediss:// needs the `redis-tls` feature".to_owned(),
            ));
        }
        let seeds: Vec<&str> = if cluster {
            url.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            vec![url]
        };
        if seeds.is_empty() {
            return Err(invalid(
                format!("{section}.url"),
                "a cluster needs at least one seed URL".to_owned(),
            ));
        }
        for seed in seeds {
            ::redis::Client::open(seed).map_err(|e| {
                invalid(format!("{section}.url"), format!("invalid Redis URL: {e}"))
            })?;
        }
        return Ok(RedisSection {
            conn: Connection::Later(Arc::new(LazyConnection {
                conn: OnceLock::new(),
                url: Secret::new(url),
                config,
            })),
        });
    }
    let conn = RedisConnection::connect_configured_lazy(url, config).map_err(|e| {
        let field = match e.kind() {
            ConnectErrorKind::InvalidUrl => format!("{section}.url"),
            _ => section.to_owned(),
        };
        invalid(field, e.to_string())
    })?;
    Ok(RedisSection {
        conn: Connection::Live(conn),
    })
}

/// Whether `text` contains the user info of `url` (or a part of it).
#[cfg(feature = "redis")]
fn leaks(text: &str, url: &str) -> bool {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return false;
    };
    userinfo
        .split(':')
        .any(|part| !part.is_empty() && text.contains(part))
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};

    use super::*;

    #[test]
    fn memory_store_keeps_its_state_and_hashes_consistently() {
        let memory = MemoryStore::new();
        let store = StackStore::from(memory.clone());
        assert!(!store.is_shared());
        let fp = |s: &StackStore| {
            let mut h = s.key_hasher().build_hasher();
            42u64.hash(&mut h);
            "key".hash(&mut h);
            h.finish()
        };
        assert_eq!(fp(&store), fp(&store.clone()));
        let check = Check {
            key: fp(&store),
            identity: fp(&store),
            // Burst 2.
            emission_ns: 1_000_000_000,
            limit_ns: 2_000_000_000,
            cost: 1,
        };
        let decide = |s: &StackStore| match s.check(&[check], 0) {
            StoreResult::Ready(d) => d.unwrap().is_allowed(),
            StoreResult::Pending(_) => panic!("memory decides at once"),
        };
        assert!(decide(&store));
        assert!(decide(&store));
        assert!(!decide(&store));
        // The state lives in the memory store it was made from.
        assert_eq!(memory.len(), 1);
        assert!(format!("{store:?}").starts_with("StackStore::Memory"));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn stable_fingerprints_are_the_redis_stores() {
        let stable = crate::redis::StableKeyHasher::new(*b"0123456789abcdef");
        let ours = StackKeyHasher(HasherKind::Redis(stable));
        let key = (7u64, 1u8, "x", -3i32, 9usize, 1u128 << 100);
        assert_eq!(stable.hash_one(key), ours.hash_one(key));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn credentials_in_errors_are_caught() {
        assert!(leaks("bad url redis://:hunter2@h", "redis://:hunter2@h:1/"));
        assert!(leaks("user alice", "redis://alice:pw@h/"));
        assert!(!leaks("invalid port", "redis://:hunter2@h:x/"));
        assert!(!leaks("anything", "redis://h:1/"));
    }
}
