//! The shared connection: a reconnecting multiplexed connection, a timeout on every call and a
//! breaker that stops calling Redis while it fails.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use ::redis::{
    Client, Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
};

use super::{
    config::{FailurePolicy, RedisConfig},
    hash::StableKeyHasher,
    rate_limit::RedisRateLimitStore,
    replay::RedisReplayStore,
};
use crate::circuit_breaker::{Breaker, Outcome, Permit, State};

/// Connecting to Redis failed.
#[derive(Clone)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    detail: String,
}

/// What kind of [`ConnectError`] it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The URL is not a `redis://`, `rediss://` or `unix://` URL this build supports.
    InvalidUrl,
    /// Not called inside a tokio runtime.
    NoRuntime,
    /// Redis did not answer `PING` and `SCRIPT LOAD` in time.
    Unreachable,
    /// The breaker configuration is invalid.
    Config,
}

impl ConnectError {
    fn new(kind: ConnectErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectError")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .finish()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL: it may hold a password.
        match self.kind {
            ConnectErrorKind::InvalidUrl => write!(f, "invalid Redis URL: {}", self.detail),
            ConnectErrorKind::NoRuntime => {
                write!(f, "the Redis stores need a tokio runtime: {}", self.detail)
            }
            ConnectErrorKind::Unreachable => write!(f, "Redis unreachable: {}", self.detail),
            ConnectErrorKind::Config => write!(f, "invalid Redis store config: {}", self.detail),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A Redis error turned into text that cannot carry the URL (the `redis` crate does not put
/// credentials in its errors; only the kind and the server's message are kept).
pub(crate) fn describe(e: &::redis::RedisError) -> String {
    let mut s = format!("{:?}", e.kind());
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    } else if e.is_io_error() {
        s.push_str(": I/O error");
    }
    s
}

/// A handle on the connection: one standalone Redis (a reconnecting multiplexed connection),
/// or (feature `redis-cluster`) a Redis Cluster through the `redis` crate's async cluster
/// client, which routes each command by its key's slot, follows `MOVED`/`ASK` and refreshes
/// its slot map after a failover by itself.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "redis-cluster")]
    Cluster(::redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// What makes a fresh [`Conn`].
enum Maker {
    Single(Client, ConnectionManagerConfig),
    #[cfg(feature = "redis-cluster")]
    Cluster(::redis::cluster::ClusterClient),
}

impl Maker {
    /// A fresh connection, made on its first use.
    fn make(&self) -> ::redis::RedisResult<Conn> {
        match self {
            Self::Single(client, config) => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Conn::Single)
            }
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(client) => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(
                    ::redis::cluster::ClusterConfig::new(),
                ),
            )),
        }
    }
}

pub(crate) struct Inner {
    /// Replaced by a fresh one when calls time out and the breaker opens (a hung connection
    /// never errors by itself, so the manager would keep it).
    manager: RwLock<Conn>,
    /// Whether this is a Redis Cluster: rate-limit calls go one per identity (one hash slot).
    pub(crate) cluster: bool,
    /// A call failed on the connection (an I/O error, a dropped connection, a timeout): the
    /// next half-open probe makes a new one. The `redis` crate's manager reconnects only once
    /// a call has failed on the old connection (or on its last failed attempt to reconnect),
    /// so without this the first probe after Redis is back would always fail.
    stale: AtomicBool,
    maker: Maker,
    pub(crate) config: RedisConfig,
    pub(crate) breaker: Breaker,
    /// What the stores decided without Redis while its breaker is open.
    pub(crate) outage: Arc<Outage>,
    pub(crate) hasher: StableKeyHasher,
    pub(crate) gcra: Script,
    pub(crate) adjust: Script,
    /// `prefix:rl:`
    pub(crate) rl_prefix: String,
    /// `prefix:nonce:`
    pub(crate) nonce_prefix: String,
}

/// One connection to Redis shared by the Redis stores: reconnects by itself
/// (`redis::aio::ConnectionManager`), bounds every call with the configured timeout, and stops
/// calling Redis while it fails (a [`Breaker`]; every transition is a `tracing` event).
///
/// Cloning shares the connection.
#[derive(Clone)]
pub struct RedisConnection {
    pub(crate) inner: Arc<Inner>,
}

impl RedisConnection {
    /// Connects to `url` (`redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS
    /// when the crate is built with TLS support), checks Redis answers (`PING`) and loads the
    /// scripts, within the larger of the call timeout and 5 s.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`]: invalid URL, no tokio runtime, or Redis unreachable.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        Self::connect_lazy(url, config)?.warm().await
    }

    /// Checks Redis answers (`PING`) and loads the scripts (on every primary of a cluster).
    async fn warm(self) -> Result<Self, ConnectError> {
        let conn = self;
        let wait = conn.inner.config.timeout.max(Duration::from_secs(5));
        let mut con = conn.inner.manager();
        let inner = conn.inner.clone();
        let warm = async move {
            ::redis::cmd("PING").query_async::<()>(&mut con).await?;
            inner.gcra.load_async(&mut con).await?;
            inner.adjust.load_async(&mut con).await?;
            Ok::<(), ::redis::RedisError>(())
        };
        match tokio::time::timeout(wait, warm).await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(e)) => Err(ConnectError::new(
                ConnectErrorKind::Unreachable,
                describe(&e),
            )),
            Err(_) => Err(ConnectError::new(
                ConnectErrorKind::Unreachable,
                format!("no answer within {wait:?}"),
            )),
        }
    }

    /// A connection made on first use: starting does not need Redis up (requests get the
    /// failure policy until it is). Scripts are loaded on first use (`EVALSHA`, then
    /// `SCRIPT LOAD` on `NOSCRIPT`).
    ///
    /// # Errors
    ///
    /// A [`ConnectError`]: invalid URL or breaker config, or no tokio runtime.
    pub fn connect_lazy(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConnectError::new(
                ConnectErrorKind::NoRuntime,
                "call inside a tokio runtime",
            ));
        }
        let client = open_client(url, &config)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(config.timeout.max(Duration::from_secs(2))))
            .set_response_timeout(None);
        Self::with_maker(Maker::Single(client, manager_config), config)
    }

    /// The stack's connection: [`connect_lazy`](Self::connect_lazy), or for a cluster
    /// (`[redis] mode = "cluster"`) [`connect_cluster_lazy`] over the comma-separated seeds
    /// in `url`.
    pub(crate) fn connect_configured_lazy(
        url: &str,
        config: RedisConfig,
    ) -> Result<Self, ConnectError> {
        if !config.cluster {
            return Self::connect_lazy(url, config);
        }
        #[cfg(feature = "redis-cluster")]
        {
            let seeds: Vec<&str> = url
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            Self::connect_cluster_lazy(&seeds, config)
        }
        #[cfg(not(feature = "redis-cluster"))]
        Err(ConnectError::new(
            ConnectErrorKind::InvalidUrl,
            "mode = \"cluster\" needs the `redis-cluster` feature",
        ))
    }

    /// Connects to a Redis Cluster (or Valkey cluster) through `nodes`, seed URLs of some of
    /// its nodes (`redis://[user[:password]@]host:port`, `rediss://` with the `redis-tls`
    /// feature; the credentials and TLS of the first apply to every node): checks the cluster
    /// answers and loads the scripts on every primary, within the larger of the call timeout
    /// and 5 s.
    ///
    /// The client learns the slot map from the seeds, routes every call to the primary of its
    /// key's slot, follows `MOVED`/`ASK` redirections, and refreshes the map after a failover;
    /// the timeout, breaker and failure policy work as for one Redis.
    ///
    /// ```no_run
    /// use battlement::redis::{RedisConfig, RedisConnection};
    ///
    /// # async fn run() -> Result<(), battlement::redis::ConnectError> {
    /// let redis = RedisConnection::connect_cluster(
    ///     &["redis://:secret@10.0.0.1:6379", "redis://10.0.0.2:6379"],
    ///     RedisConfig::new(),
    /// )
    /// .await?;
    /// let store = redis.rate_limit_store();
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConnectError`]: no seed or an invalid URL, no tokio runtime, or the cluster
    /// unreachable.
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub async fn connect_cluster(
        nodes: &[&str],
        config: RedisConfig,
    ) -> Result<Self, ConnectError> {
        Self::connect_cluster_lazy(nodes, config)?.warm().await
    }

    /// [`connect_cluster`](Self::connect_cluster) made on first use: starting does not need
    /// the cluster up (requests get the failure policy until it is).
    ///
    /// # Errors
    ///
    /// A [`ConnectError`]: no seed or an invalid URL, an invalid breaker config, or no tokio
    /// runtime.
    #[cfg(feature = "redis-cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-cluster")))]
    pub fn connect_cluster_lazy(nodes: &[&str], config: RedisConfig) -> Result<Self, ConnectError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConnectError::new(
                ConnectErrorKind::NoRuntime,
                "call inside a tokio runtime",
            ));
        }
        let client = open_cluster_client(nodes, &config)?;
        Self::with_maker(Maker::Cluster(client), config)
    }

    fn with_maker(maker: Maker, config: RedisConfig) -> Result<Self, ConnectError> {
        let manager = maker
            .make()
            .map_err(|e| ConnectError::new(ConnectErrorKind::InvalidUrl, describe(&e)))?;
        #[cfg(feature = "redis-cluster")]
        let cluster = matches!(maker, Maker::Cluster(_));
        #[cfg(not(feature = "redis-cluster"))]
        let cluster = false;
        let outage = Arc::new(Outage::new());
        let breaker_config = with_events(&config, outage.clone());
        breaker_config
            .validate()
            .map_err(|e| ConnectError::new(ConnectErrorKind::Config, e.to_string()))?;
        let breaker = Breaker::from_validated(Arc::new(breaker_config), Some(Arc::from("redis")));
        let rl_prefix = format!("{}:rl:", config.prefix);
        let nonce_prefix = format!("{}:nonce:", config.prefix);
        Ok(Self {
            inner: Arc::new(Inner {
                manager: RwLock::new(manager),
                cluster,
                stale: AtomicBool::new(false),
                maker,
                hasher: StableKeyHasher::new(config.hash_key),
                config,
                breaker,
                outage,
                gcra: Script::new(include_str!("gcra.lua")),
                adjust: Script::new(include_str!("adjust.lua")),
                rl_prefix,
                nonce_prefix,
            }),
        })
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// A rate-limit store on this connection.
    pub fn rate_limit_store(&self) -> RedisRateLimitStore {
        RedisRateLimitStore::new(self.clone())
    }

    /// A replay-nonce store on this connection.
    pub fn replay_store(&self) -> RedisReplayStore {
        RedisReplayStore::new(self.clone())
    }

    /// The breaker guarding Redis (its state, its counters).
    pub fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Sends `PING` within the timeout, outside the breaker: a readiness check.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`] of kind [`Unreachable`](ConnectErrorKind::Unreachable).
    pub async fn ping(&self) -> Result<(), ConnectError> {
        let mut con = self.inner.manager();
        let timeout = self.inner.config.timeout;
        match tokio::time::timeout(timeout, ::redis::cmd("PING").query_async::<()>(&mut con)).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ConnectError::new(
                ConnectErrorKind::Unreachable,
                describe(&e),
            )),
            Err(_) => Err(ConnectError::new(
                ConnectErrorKind::Unreachable,
                format!("no answer within {timeout:?}"),
            )),
        }
    }

    /// Leave to call Redis now, or `None` while the breaker is open.
    pub(crate) fn permit(&self) -> Option<Permit> {
        self.inner.breaker.try_acquire().ok()
    }
}

impl Inner {
    /// A handle on the current connection (an `Arc` bump under a read lock held for no await).
    pub(crate) fn manager(&self) -> Conn {
        self.manager
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the current connection for a fresh one, made on its first use; `why` is logged.
    fn renew(&self, why: &'static str) {
        self.stale.store(false, Ordering::Relaxed);
        match self.maker.make() {
            Ok(fresh) => {
                *self.manager.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                tracing::info!(target: "battlement::redis", "{why}");
            }
            Err(e) => tracing::warn!(
                target: "battlement::redis",
                error = %describe(&e),
                "could not make a new Redis connection"
            ),
        }
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("config", &self.inner.config)
            .field("breaker", &self.inner.breaker.state())
            .finish_non_exhaustive()
    }
}

#[cfg(not(feature = "redis-tls"))]
fn open_client(url: &str, _config: &RedisConfig) -> Result<Client, ConnectError> {
    if url.starts_with("rediss://") {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidUrl,
            "rediss:// needs the `redis-tls` feature",
        ));
    }
    Client::open(url).map_err(|e| ConnectError::new(ConnectErrorKind::InvalidUrl, describe(&e)))
}

#[cfg(feature = "redis-tls")]
fn open_client(url: &str, config: &RedisConfig) -> Result<Client, ConnectError> {
    let invalid =
        |e: ::redis::RedisError| ConnectError::new(ConnectErrorKind::InvalidUrl, describe(&e));
    if !url.starts_with("rediss://") {
        return Client::open(url).map_err(invalid);
    }
    // rustls needs a process-wide crypto provider; install ring's unless the application
    // installed one (an error here means another thread just did: fine).
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let tls = &config.tls;
    if tls.root_ca.is_none() && tls.client.is_none() {
        return Client::open(url).map_err(invalid);
    }
    let certs = ::redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| ::redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.to_vec(),
            }),
        root_cert: tls.root_ca.clone(),
    };
    Client::build_with_tls(url, certs).map_err(invalid)
}

/// The cluster client for `nodes`, with the timeouts of `config` and (feature `redis-tls`) its
/// certificates.
#[cfg(feature = "redis-cluster")]
fn open_cluster_client(
    nodes: &[&str],
    config: &RedisConfig,
) -> Result<::redis::cluster::ClusterClient, ConnectError> {
    let invalid =
        |e: ::redis::RedisError| ConnectError::new(ConnectErrorKind::InvalidUrl, describe(&e));
    if nodes.is_empty() {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidUrl,
            "a cluster needs at least one seed node",
        ));
    }
    let tls = nodes.iter().any(|n| n.starts_with("rediss://"));
    #[cfg(not(feature = "redis-tls"))]
    if tls {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidUrl,
            "rediss:// needs the `redis-tls` feature",
        ));
    }
    if nodes
        .iter()
        .any(|n| !(n.starts_with("redis://") || n.starts_with("rediss://")))
    {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidUrl,
            "cluster seeds are redis:// or rediss:// URLs",
        ));
    }
    let infos = nodes
        .iter()
        .map(|n| ::redis::IntoConnectionInfo::into_connection_info(*n).map_err(invalid))
        .collect::<Result<Vec<_>, _>>()?;
    // The calls are bounded by the store's own timeout; the client retries a redirected or
    // failed call a few times within it (a slot move, a failover in progress).
    #[allow(unused_mut)]
    let mut builder = ::redis::cluster::ClusterClientBuilder::new(infos)
        .connection_timeout(config.timeout.max(Duration::from_secs(2)))
        .retries(3)
        .min_retry_wait(5)
        .max_retry_wait(100);
    #[cfg(feature = "redis-tls")]
    if tls {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let t = &config.tls;
        if t.root_ca.is_some() || t.client.is_some() {
            builder = builder.certs(::redis::TlsCertificates {
                client_tls: t
                    .client
                    .as_ref()
                    .map(|(cert, key)| ::redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.to_vec(),
                    }),
                root_cert: t.root_ca.clone(),
            });
        }
    }
    let _ = tls;
    builder.build().map_err(invalid)
}

/// At most one summary of the decisions made without Redis per this many milliseconds.
const OUTAGE_SUMMARY_MS: u64 = 10_000;

/// Counts the rate-limit decisions made without Redis while its breaker is open, so that an
/// outage is logged once per state change and then in a summary at most every 10 s, not once
/// per request (the breaker's rejection counter and metric still count every one).
pub(crate) struct Outage {
    /// Since the breaker opened after being closed.
    total: AtomicU64,
    /// Since the last line about the outage.
    since_line: AtomicU64,
    /// When that line was logged: milliseconds since `origin`.
    line_ms: AtomicU64,
    origin: tokio::time::Instant,
}

impl Outage {
    fn new() -> Self {
        Self {
            total: AtomicU64::new(0),
            since_line: AtomicU64::new(0),
            line_ms: AtomicU64::new(0),
            origin: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The breaker opened after being closed: a new outage.
    fn begin(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.since_line.store(0, Ordering::Relaxed);
        self.line_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The breaker closed: the decisions made without Redis during the outage.
    fn end(&self) -> u64 {
        self.since_line.store(0, Ordering::Relaxed);
        self.total.swap(0, Ordering::Relaxed)
    }

    /// One decision made without Redis by `policy`; logs the summary when it is due (one
    /// caller wins the exchange of `line_ms`).
    pub(crate) fn record(&self, policy: FailurePolicy) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.since_line.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let last = self.line_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < OUTAGE_SUMMARY_MS
            || self
                .line_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let n = self.since_line.swap(0, Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let secs = (now - last).div_ceil(1000);
        let done = match policy {
            FailurePolicy::FailClosed => "refused (fail closed)",
            FailurePolicy::FailOpen => "let through unlimited (fail open)",
            _ => "decided in memory (fallback)",
        };
        tracing::warn!(
            target: "battlement::redis",
            decisions = n,
            decisions_since_down = total,
            ?policy,
            "Redis still unavailable: {n} rate-limit decisions {done} in the last {secs} s"
        );
    }
}

/// The breaker config with a `battlement::redis` event on every transition (and the user's
/// callback, if any, after it).
fn with_events(config: &RedisConfig, outage: Arc<Outage>) -> crate::circuit_breaker::BreakerConfig {
    let policy = config.failure;
    let user = config.breaker.on_state_change.clone();
    config.breaker.clone().on_state_change(move |change| {
        match change.to {
            State::Open => {
                if change.from == State::Closed {
                    outage.begin();
                }
                tracing::error!(
                    target: "battlement::redis",
                    from = %change.from,
                    reason = %change.reason,
                    cooldown_ms = change.cooldown.map_or(0, |d| d.as_millis() as u64),
                    ?policy,
                    "Redis unavailable: stores stop calling it and apply the failure policy \
                     (then a summary at most every 10 s)"
                );
            }
            State::HalfOpen => tracing::warn!(
                target: "battlement::redis",
                "probing Redis again"
            ),
            State::Closed => {
                // Out of the macro: its fields are not evaluated when the event is filtered out.
                let total = outage.end();
                tracing::info!(
                    target: "battlement::redis",
                    from = %change.from,
                    decisions_without_redis = total,
                    "Redis is back: stores use it again"
                );
            }
            other => tracing::warn!(
                target: "battlement::redis",
                state = %other,
                "Redis breaker state changed"
            ),
        }
        if let Some(user) = &user {
            user(change);
        }
    })
}

/// Runs `call` under `permit` and the timeout; records the outcome on the breaker. When a
/// timeout opens the breaker, the connection is replaced: the probe after the cooldown uses
/// a fresh one. A half-open probe after a call failed on the connection (an I/O error, a
/// dropped connection, a timeout) also makes a fresh one first, so that it reaches a Redis that
/// came back (restarted, failed over) instead of failing on the old connection.
///
/// `call` must take its connection with [`Inner::manager`] when first polled (an `async`
/// block does), so that it uses the renewed one.
pub(crate) async fn guarded<T, F>(
    inner: &Inner,
    permit: Permit,
    what: &'static str,
    call: F,
) -> Result<T, String>
where
    F: Future<Output = ::redis::RedisResult<T>>,
{
    // One renewal for the probes of one half-open state (`swap`), not one each.
    if permit.is_probe() && inner.stale.swap(false, Ordering::Relaxed) {
        inner.renew("probing Redis on a new connection");
    }
    let timeout = inner.config.timeout;
    #[cfg(feature = "metrics")]
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(timeout, call).await;
    #[cfg(feature = "metrics")]
    record_store_metrics(what, &result, started.elapsed());
    match result {
        Ok(Ok(v)) => {
            permit.record(Outcome::Success);
            Ok(v)
        }
        Ok(Err(e)) => {
            if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                inner.stale.store(true, Ordering::Relaxed);
            }
            permit.record(Outcome::Failure);
            let e = describe(&e);
            tracing::warn!(target: "battlement::redis", error = %e, "{what} failed");
            Err(e)
        }
        Err(_) => {
            inner.stale.store(true, Ordering::Relaxed);
            permit.record(Outcome::Failure);
            tracing::warn!(target: "battlement::redis", timeout_ms = timeout.as_millis() as u64, "{what} timed out");
            if inner.breaker.state() == State::Open {
                inner.renew("Redis calls timed out: the connection will be made again");
            }
            Err(format!("no answer within {timeout:?}"))
        }
    }
}

/// `battlement_store_duration_seconds{store="redis", op, outcome}`: how long each Redis call
/// took (`outcome` = `ok`, `error` or `timeout`), the store latency the stack's dashboards
/// and alerts read.
#[cfg(feature = "metrics")]
fn record_store_metrics<T, E>(
    what: &'static str,
    result: &Result<Result<T, E>, tokio::time::error::Elapsed>,
    elapsed: std::time::Duration,
) {
    let outcome = match result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    metrics::histogram!(
        "battlement_store_duration_seconds",
        "store" => "redis",
        "op" => what,
        "outcome" => outcome
    )
    .record(elapsed.as_secs_f64());
}

/// A future that is either ready or a boxed Redis call (real I/O, the one place the crate
/// boxes a future on the request path).
pub(crate) enum IoFuture<T> {
    Ready(Option<T>),
    Io(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> Future for IoFuture<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            // Taken once, on completion: only a poll after completion (a contract breach) finds
            // it empty.
            Self::Ready(v) => Poll::Ready(v.take().expect("redis future polled after completion")),
            Self::Io(f) => f.as_mut().poll(cx),
        }
    }
}

// `IoFuture` is `Unpin`: it only holds an `Option` or a `Pin<Box<_>>`.
impl<T> Unpin for IoFuture<T> {}

/// Whether a failure policy falls back to memory.
pub(crate) fn falls_back(policy: FailurePolicy) -> bool {
    matches!(policy, FailurePolicy::FallbackToMemory)
}
