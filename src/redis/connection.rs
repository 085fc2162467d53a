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
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
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

pub(crate) struct Inner {
    /// Replaced by a fresh one when calls time out and the breaker opens (a hung connection
    /// never errors by itself, so the manager would keep it).
    manager: RwLock<ConnectionManager>,
    /// A call failed on the connection (an I/O error, a dropped connection, a timeout): the
    /// next half-open probe makes a new one. The `redis` crate's manager reconnects only once
    /// a call has failed on the old connection (or on its last failed attempt to reconnect),
    /// so without this the first probe after Redis is back would always fail.
    stale: AtomicBool,
    client: Client,
    manager_config: ConnectionManagerConfig,
    pub(crate) config: RedisConfig,
    pub(crate) breaker: Breaker,
    /// What the stores decided without Redis while its breaker is open.
    pub(crate) outage: Arc<Outage>,
    pub(crate) hasher: StableKeyHasher,
    pub(crate) gcra: Script,
    pub(crate) adjust: Script,
    /// `{prefix}:rl:`
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
        let conn = Self::connect_lazy(url, config)?;
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
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                .map_err(|e| ConnectError::new(ConnectErrorKind::InvalidUrl, describe(&e)))?;
        let outage = Arc::new(Outage::new());
        let breaker_config = with_events(&config, outage.clone());
        breaker_config
            .validate()
            .map_err(|e| ConnectError::new(ConnectErrorKind::Config, e.to_string()))?;
        let breaker = Breaker::from_validated(Arc::new(breaker_config), Some(Arc::from("redis")));
        let rl_prefix = format!("{{{}}}:rl:", config.prefix);
        let nonce_prefix = format!("{}:nonce:", config.prefix);
        Ok(Self {
            inner: Arc::new(Inner {
                manager: RwLock::new(manager),
                stale: AtomicBool::new(false),
                client,
                manager_config,
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
    pub(crate) fn manager(&self) -> ConnectionManager {
        self.manager
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the current connection for a fresh one, made on its first use; `why` is logged.
    fn renew(&self, why: &'static str) {
        self.stale.store(false, Ordering::Relaxed);
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
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
