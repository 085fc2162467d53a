//! One configuration, the whole stack: every server layer in one fixed order (see [Ordering](#ordering)), the
//! client stack, a production-readiness [`audit`], spans, audit events and metrics.
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use battlement::stack::{ServerConfig, ServerStack};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = ServerConfig::from_toml_str(r#"
//!     [body_limit]
//!     max = "64KiB"
//!     [cors]
//!     allow_origins = ["https://app.example.com"]
//! "#).unwrap();
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let app = ServerStack::from_config(&config).unwrap().wrap(app);
//!
//! // What `into_make_service_with_connect_info::<SocketAddr>()` does for a real connection:
//! let mut req = Request::get("/").body(Body::empty()).unwrap();
//! req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert!(res.headers().contains_key("x-request-id"));
//! assert_eq!(res.headers()["x-content-type-options"], "nosniff");
//! assert!(!config.audit().has_failures());
//! # }
//! ```
//!
//! The same with a file: `ServerConfig::from_toml_file("battlement.toml")?` reads it and
//! applies `BATTLEMENT__SECTION__KEY=value` environment overrides
//! ([`config`](crate::config) describes them); `battlement.toml` at the root of the repository
//! documents every key.
//!
//! # Ordering
//!
//! [`ServerStack`] composes, outermost first: request id, span/audit/metrics, panic → 500,
//! security headers, HTTPS redirect, CORS, body limit, rate limit per client address, API key,
//! signature verification, rate limit per principal, circuit breaker, timeout, the
//! application. So every response (rejections included) carries the request id and the
//! security headers, cheap checks run before crypto, and bodies are limited before anything
//! buffers them. [`ClientStack`] composes request-id forwarding → retry (with a budget) →
//! circuit breaker → signing (fresh per attempt) → per-attempt timeout.
//!
//! # Pitfalls
//!
//! * Serve with `into_make_service_with_connect_info::<SocketAddr>()`: without the peer
//!   address, the per-IP rate limit cannot key requests (they are answered 500 and logged).
//! * Behind a proxy, list it in `trusted_proxies`, or every client shares the proxy's quota;
//!   never list `0.0.0.0/0`: anyone could then choose their address.
//! * [`wrap`](ServerStack::wrap) uses `Router::layer`: routes added after it are not wrapped.
//! * Without `[redis]` each instance limits on its own and remembers only its own nonces:
//!   behind a balancer over N instances a client gets up to N times its quota, and a
//!   captured signed request can be replayed once to every other instance. With it (feature
//!   `redis`), every instance with the same URL and `prefix` shares the quotas and the nonces
//!   ([`store`] and [`replay`] describe the stores; `on_failure` says what happens while
//!   Redis is down). `[rate_limit.redis]` shares the rate limits only (the audit warns when
//!   `[signing]` is on). Without the feature either section is refused at startup, never
//!   ignored.
//!
//! # Serving
//!
//! The stack sees requests, not connections: its timeout starts once a request head has been
//! read, and `axum::serve` sets no connection timeout. So serve it with hyper-util's
//! builder and the `[server]` section ([`ConnectionConfig`]): a header-read timeout for
//! HTTP/1.1 (hyper's timer, which also bounds the wait between keep-alive requests) and
//! HTTP/2 keep-alive pings. Without them an idle connection, a half-sent head, or one byte
//! every few seconds holds a connection (and a file descriptor) for as long as the client
//! likes.
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Extension, Router, extract::ConnectInfo, routing::get};
//! use battlement::stack::{ServerConfig, ServerStack};
//! use hyper_util::{
//!     rt::{TokioExecutor, TokioIo, TokioTimer},
//!     server::conn::auto,
//!     service::TowerToHyperService,
//! };
//! use tower::Layer;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ServerConfig::from_toml_file("battlement.toml")?;
//! config.server.validate()?;
//! let app = ServerStack::from_config(&config)?.wrap(Router::new().route("/", get(|| async { "hi" })));
//!
//! let mut builder = auto::Builder::new(TokioExecutor::new());
//! builder
//!     .http1()
//!     .timer(TokioTimer::new())
//!     .header_read_timeout(config.server.header_read_timeout.get());
//! builder
//!     .http2()
//!     .timer(TokioTimer::new())
//!     .keep_alive_interval(config.server.idle_timeout.get())
//!     .keep_alive_timeout(config.server.header_read_timeout.get());
//! let builder = std::sync::Arc::new(builder);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (tcp, peer) = listener.accept().await?;
//!     // What `into_make_service_with_connect_info::<SocketAddr>()` does: the per-IP rate
//!     // limit needs the peer address.
//!     let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
//!     let builder = builder.clone();
//!     tokio::spawn(async move {
//!         let _ = builder
//!             .serve_connection_with_upgrades(TokioIo::new(tcp), service)
//!             .await;
//!     });
//! }
//! # }
//! ```
//!
//! That leaves the idle timeout: hyper has none for a connection whose protocol is not known
//! yet (before its first bytes, or an HTTP/2 preface sent a byte at a time), nor for an idle
//! HTTP/2 connection whose client pings. `examples/server/serve.rs` adds it (a connection
//! with no request in flight for `idle_timeout` is shut down gracefully, counting a request
//! until its response body is sent) and graceful shutdown on Ctrl-C; copy it, it depends only
//! on hyper, hyper-util, tokio and axum. `tests/slow_clients.rs` shows what each timeout
//! closes. Behind a proxy that buffers request heads (nginx, most load balancers), the
//! proxy's own client timeouts protect the proxy, and these protect the connections from it.
//!
//! # Deployment
//!
//! Run `cargo run --example audit -- battlement.toml` in CI: it prints the
//! [`audit`] and exits non-zero when an item fails. Secrets are referenced as
//! `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`, read at startup, wiped on drop. With
//! the `metrics` feature, export the counters and histograms with any `metrics` recorder
//! (Prometheus, StatsD) on a port that is not public.

mod audit;
mod body;
mod client;
mod config;
mod engine;
pub mod observe;
pub mod panic;
pub mod replay;
mod server;
pub mod store;
pub mod timeout;

pub use audit::{Audit, AuditItem, AuditStatus, audit};
pub use body::StackBody;
pub use client::{BoxErr, BoxErrFuture, BoxErrLayer, ClientService, ClientStack};
pub use config::{
    BodyLimitConfig, BreakerSection, BudgetSection, ClientConfig, ClientSigningSection,
    ConnectionConfig, CorsConfig, HttpsConfig, Preset, QuotaConfig, RateLimitConfig,
    RateLimitHeaders, RedisConfig, RedisFailure, RedisMode, RequestIdConfig, RetrySection,
    SecurityHeadersConfig, ServerConfig, SigningKeySection, SigningSection, TimeoutConfig, Toggle,
    TraceConfig, TrustIncoming,
};
pub use engine::ServerFuture;
pub use observe::{
    Observe, ObserveLayer, RecordPrincipal, RecordPrincipalLayer, SENSITIVE_HEADERS,
    rejection_reason,
};
pub use panic::{CatchPanic, CatchPanicLayer, Panicked};
pub use replay::StackReplayStore;
pub use server::{ServerBreakerLayer, ServerService, ServerStack};
pub use store::StackStore;
pub use timeout::{BodyTimedOut, RequestTimeout, RequestTimeoutLayer, TimedOut};
