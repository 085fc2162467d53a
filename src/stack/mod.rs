//! One configuration, the whole stack: every server layer in the order of DESIGN.md §3, the
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
//! * Without `[rate_limit.redis]` each instance limits on its own: behind a balancer over N
//!   instances a client gets up to N times its quota. With it (feature `redis`), every
//!   instance with the same URL and `prefix` shares the quotas ([`store`] describes the
//!   store; `on_failure` says what happens while Redis is down). Without the feature the
//!   section is refused at startup, never ignored.
//!
//! # Deployment
//!
//! Run `cargo run --example audit -- battlement.toml` in CI: it prints the
//! [`audit`] and exits non-zero when an item fails. Secrets are referenced as
//! `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`, read at startup, wiped on drop. With
//! the `metrics` feature, export the counters and histograms with any `metrics` recorder
//! (Prometheus, StatsD) on a port that is not public.

mod audit;
mod client;
mod config;
mod fused;
pub mod observe;
pub mod panic;
mod server;
pub mod store;
pub mod timeout;

pub use audit::{Audit, AuditItem, AuditStatus, audit};
pub use client::{BoxErr, BoxErrFuture, BoxErrLayer, ClientService, ClientStack};
pub use config::{
    BodyLimitConfig, BreakerSection, BudgetSection, ClientConfig, ClientSigningSection, CorsConfig,
    HttpsConfig, Preset, QuotaConfig, RateLimitConfig, RateLimitHeaders, RedisConfig, RedisFailure,
    RequestIdConfig, RetrySection, SecurityHeadersConfig, ServerConfig, SigningKeySection,
    SigningSection, TimeoutConfig, Toggle, TraceConfig, TrustIncoming,
};
pub use observe::{
    Observe, ObserveLayer, RecordPrincipal, RecordPrincipalLayer, SENSITIVE_HEADERS,
    rejection_reason,
};
pub use panic::{CatchPanic, CatchPanicLayer, Panicked};
pub use server::{ServerBreakerLayer, ServerService, ServerStack};
pub use store::StackStore;
pub use timeout::{BodyTimedOut, RequestTimeout, RequestTimeoutLayer, TimedOut};
