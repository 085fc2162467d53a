//! Retries for HTTP clients: exponential backoff with jitter, a retry budget, idempotency rules,
//! `Retry-After`, and bounded body replay.
//!
//! [`RetryLayer`] wraps any client `Service<Request<B>>` (hyper-util's client, a tower stack, a
//! `service_fn`): a request that fails with an error of the inner service (a connection error, a
//! per-attempt timeout, ...) or with 429, 502, 503 or 504 is sent again after a delay, if its
//! method is idempotent, its body could be kept, retries are left and the budget allows it.
//!
//! ```
//! use std::{sync::{Arc, atomic::{AtomicU32, Ordering}}, time::Duration};
//! use battlement::retry::{ReplayBody, RetryLayer, RetryPolicy};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, timeout::TimeoutLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // An upstream that is unavailable twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let upstream = tower::service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<ReplayBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let mut res = Response::new(Full::new(Bytes::from_static(b"ok")));
//!             if n < 2 {
//!                 *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
//!                 res.headers_mut().insert("retry-after", "1".parse()?);
//!             }
//!             Ok::<_, http::Error>(res)
//!         }
//!     }
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryPolicy::default()))
//!     // Inside the retry layer: each attempt gets its own 2 s.
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .service(upstream);
//!
//! let req = Request::get("http://upstream.internal/orders").body(Full::new(Bytes::new()))?;
//! let res = client.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers().get("retry-after"), None);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # What is retried
//!
//! * Methods: only the idempotent ones of RFC 9110 §9.2.2 (GET, HEAD, OPTIONS, TRACE, PUT,
//!   DELETE). POST and PATCH are sent once unless the policy opts in:
//!   [`RetryPolicy::retry_with_idempotency_key`] (the request carries `Idempotency-Key`),
//!   [`RetryPolicy::retry_method`] or [`RetryPolicy::retry_request_if`].
//! * Answers: errors of the inner service, unless the [`ClassifyError`] says otherwise (the
//!   default refuses [`NonRetryable`] errors and errors of an inner [`Retry`]); statuses 429,
//!   502, 503, 504 ([`RetryPolicy::retry_on_statuses`] changes them). When the last attempt
//!   answers with a retryable status, that response is returned, not an error.
//! * Delays: [`ExponentialBackoff`] (100 ms initial, 10 s cap, 3 retries) with
//!   [`Jitter::Full`], [`Jitter::Equal`] or [`Jitter::Decorrelated`]. A `Retry-After` header
//!   (delay-seconds or HTTP-date) on a retried answer replaces the backoff delay, capped at the
//!   backoff's cap.
//! * Load: a [`RetryBudget`] shared by every clone of the policy allows at most 20 % of recent
//!   requests (plus 1 per second) to be retried, so a dead upstream sees at most about 1.2× the
//!   traffic instead of 4×.
//!
//! When the request is not retried again, the service returns the last response, or a
//! [`RetryError`] whose [`kind`](RetryError::kind) says why and whose source is the last error.
//!
//! # Bodies
//!
//! `http::Request` is not `Clone`, so the body is copied while the first attempt sends it, up
//! to [`RetryPolicy::with_body_limit`] (64 KiB by default), and replayed from that copy (see
//! [`ReplayBody`]). **A request whose body is larger than the limit is sent once and never
//! retried**, whether its size is known up front (`Content-Length`, `Full`) or found out while
//! streaming. Empty bodies cost nothing. Bodies must be `Body<Data = Bytes> + Unpin` (wrap others
//! with `http_body_util::BodyExt::boxed`).
//!
//! # Ordering
//!
//! Outermost first, on the client: request id → **retry** → circuit breaker → signing →
//! per-attempt timeout → the HTTP client. A timeout inside the retry layer bounds each attempt
//! (its error is retried); one outside bounds the whole call, backoff included. Signing inside
//! the retry layer signs every attempt afresh.
//!
//! # Pitfalls
//!
//! * Retrying non-idempotent requests can duplicate side effects; opt in only when the server
//!   deduplicates (an `Idempotency-Key` it honours).
//! * The budget is per [`RetryBudget`] value: every policy cloned from one shares it, two
//!   policies built separately do not. Use one per upstream.
//! * The inner service sees `Request<ReplayBody<B>>`; a hyper-util client must be built for
//!   that body type.
//! * A retry sends the whole request again: servers see it twice in their logs and metrics.
//! * If a server answers before reading a streamed body and the client is still sending it, a
//!   retry that needs more than the buffered part fails with a body error (and may be retried
//!   again later); single-chunk bodies (`Full`, `Bytes`) never hit this.
//! * The layer is made for clients and returns [`RetryError`]; to retry fragile handlers inside
//!   an axum `Router`, put `axum::error_handling::HandleErrorLayer` outside it (the tests do).
//! * A circuit breaker's open-circuit rejection must not be retried: the default classifier
//!   refuses [`NonRetryable`] errors, and the breaker's `CircuitOpen` once the two modules are
//!   merged.
//!
//! # Deployment
//!
//! Delays are drawn from a small RNG seeded once per layer from the OS (set
//! [`RetryPolicy::with_seed`] for reproducible tests); time is tokio's, so tests can pause it.
//! Retries are logged at `debug` level with the attempt number and the delay. Keep the total of
//! `max_retries × cap` below the caller's own deadline, or put a timeout outside the layer.

mod backoff;
mod body;
mod budget;
mod error;
mod future;
mod layer;
mod policy;
mod service;

pub use backoff::{Delays, ExponentialBackoff, Jitter};
pub use body::ReplayBody;
pub use budget::RetryBudget;
pub use error::{RetryError, RetryErrorKind};
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use policy::{ClassifyError, DefaultClassifyError, NonRetryable, RetryPolicy};
pub use service::Retry;
