//! Circuit breaker: stop calling an upstream (or a handler) that keeps failing, let a few probes
//! through after a cooldown, close again when they succeed.
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, body::Body, http::StatusCode, routing::get};
//! use battlement::circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, State};
//! use http::Request;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Server mode around a fragile handler: open after 2 failures in a row, for 30 s.
//! let breaker = Breaker::new(
//!     BreakerConfig::consecutive_failures(2).cooldown(Duration::from_secs(30)),
//! )
//! .unwrap();
//! let app = Router::new()
//!     .route("/report", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
//!     .layer(CircuitBreakerLayer::new(breaker.clone()).server());
//!
//! let get_report = || Request::get("/report").body(Body::empty()).unwrap();
//! for _ in 0..2 {
//!     let res = app.clone().oneshot(get_report()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // The handler is not called any more: 503 problem+json with `Retry-After`.
//! let res = app.oneshot(get_report()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "30");
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! assert_eq!(breaker.snapshot().rejections, 1);
//! # }
//! ```
//!
//! On a client the same layer, without `.server()`, fails fast with a typed [`CircuitOpen`]
//! error (inside `tower::BoxError`) that says how long the cooldown still runs:
//!
//! ```
//! use battlement::circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer, CircuitOpen};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = Breaker::new(BreakerConfig::consecutive_failures(1)).unwrap();
//! let client = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Err::<Response<String>, _>(std::io::Error::other("connection refused"))
//!     }));
//!
//! let err = client.clone().oneshot(Request::new(String::new())).await.unwrap_err();
//! assert!(err.downcast_ref::<std::io::Error>().is_some()); // the failure itself
//! let err = client.oneshot(Request::new(String::new())).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("rejected by the breaker");
//! assert_eq!(open.retry_after_secs(), 30);
//! # }
//! ```
//!
//! # How it decides
//!
//! * **Closed**: calls go through. A [`ClassifyResponse`] (default [`DefaultClassifier`]: inner
//!   errors, timeouts and 5xx are failures, 4xx are not) classifies each result. The breaker trips
//!   after [`consecutive_failures`](BreakerConfig::consecutive_failures) (default 5), or when the
//!   [`failure_rate`](BreakerConfig::failure_rate) (and optionally the
//!   [slow-call rate](BreakerConfig::slow_calls)) over a count or time [`Window`] reaches its
//!   threshold with at least [`minimum_calls`](BreakerConfig::minimum_calls) in the window.
//! * **Open**: every call is rejected for the [cooldown](BreakerConfig::cooldown) (default 30 s),
//!   which can [grow](BreakerConfig::cooldown_growth) on each re-open, up to a cap.
//! * **Half-open**: the first call after the cooldown turns the breaker half-open. Exactly
//!   [`half_open_permits`](BreakerConfig::half_open_permits) probes (default 1) go through, all
//!   others are rejected; when all of them succeed it closes, on the first failed probe it
//!   re-opens. A probe whose future is dropped, or classified [`Outcome::Ignored`], gives its
//!   permit back.
//! * **By hand**: [`Breaker::force_open`], [`Breaker::disable`] (nothing recorded, never
//!   trips), [`Breaker::metrics_only`] (recorded, never trips), [`Breaker::reset`].
//!
//! The state is one atomic word changed by compare-and-swap: the closed-state path takes no
//! lock, concurrent callers never lose a transition and never get more probes than permitted.
//! Windows are atomic rings or buckets. Every state change emits a `tracing` event (target
//! `battlement::circuit_breaker`, `warn` when opening) and calls the
//! [`on_state_change`](BreakerConfig::on_state_change) callback with a [`StateChange`];
//! [`Breaker::snapshot`] returns the counters for metrics.
//!
//! Per-key breakers (one per upstream authority, per API key id, per route): see
//! [`CircuitBreakerLayer::per_key`] and [`BreakerRegistry`], which is bounded.
//!
//! # Ordering
//!
//! * Client stack: retry → **circuit breaker** → sign → per-attempt timeout → HTTP client. The
//!   breaker below the retry sees every attempt, and the retry layer sees [`CircuitOpen`] and
//!   does not retry it. The timeout below the breaker turns a hung upstream into a failure.
//! * Server stack: innermost, around the fragile handlers only (after authentication and rate
//!   limits, so rejected requests do not count as the handler's successes).
//!
//! # Pitfalls
//!
//! * Without a timeout below it, a hung upstream never completes, so it never counts as a
//!   failure and a half-open probe holds its permit for as long as it hangs.
//! * The classifier sees the response head only; an error while streaming the body afterwards
//!   is not counted.
//! * 4xx are successes by default: a client sending bad requests must not open the circuit for
//!   everyone. Replace the classifier if the upstream signals overload with 429.
//! * A count window with [`minimum_calls`](BreakerConfig::minimum_calls) larger than its size
//!   never trips.
//! * Per-key: the key's `Display` appears in events and errors; never key by a secret itself.
//!
//! # Deployment
//!
//! Breakers are per process: each instance behind a load balancer decides from its own
//! traffic (shared state was declined by resilience4j and Polly for the same reason: a round
//! trip per call costs more than it saves). The open duration is measured on tokio's clock, or
//! on the [`Clock`] given to [`BreakerConfig::clock`].
//!
//! With the `metrics` feature, every state change increments
//! `battlement_circuit_breaker_transitions_total{from,to,reason,key}` and sets the gauge
//! `battlement_circuit_breaker_state{key}` ([`State::code`]); every rejection increments
//! `battlement_circuit_breaker_rejections_total{key}`. Per-call counters stay in
//! [`Breaker::snapshot`] (poll it for rates) so the closed path does no metrics work.

mod breaker;
mod classify;
mod config;
mod future;
mod layer;
mod registry;
mod service;
mod window;

pub use breaker::{Breaker, CircuitOpen, Outcome, Permit, Reason, Snapshot, State, StateChange};
pub use classify::{ClassifyResponse, DefaultClassifier};
pub use config::{
    BreakerConfig, Clock, MAX_COUNT_WINDOW, MAX_HALF_OPEN_PERMITS, TokioClock, Window,
};
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerLayer, Client, Server};
pub use registry::{BreakerRegistry, PerKey, SelectBreaker};
pub use service::CircuitBreaker;
pub(crate) use service::open_response;
