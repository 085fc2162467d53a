//! Rate limiting: GCRA per key, several quotas at once, weighted costs, standard headers and
//! bounded memory.
//!
//! ```
//! use std::{net::SocketAddr, num::NonZeroU32};
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use battlement::rate_limit::{Limit, PeerIp, Quota, RateLimitLayer};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let per_ip = Quota::per_minute(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(2).unwrap());
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(Limit::new(PeerIp::new(), per_ip)));
//!
//! let request = || {
//!     let mut req = Request::get("/").body(Body::empty()).unwrap();
//!     // `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` does this.
//!     req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 7], 40000))));
//!     req
//! };
//! let res = app.clone().oneshot(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["ratelimit-policy"], r#""per-minute";q=100;w=60"#);
//! assert_eq!(res.headers()["ratelimit"], r#""per-minute";r=1;t=1"#);
//!
//! app.clone().oneshot(request()).await.unwrap();
//! let res = app.oneshot(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "1");
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # }
//! ```
//!
//! * **Decided in `call`**, never by waiting in `poll_ready`: every clone of the service shares
//!   one store, so the limit holds under axum (which clones the service per request), unlike
//!   `tower::limit::RateLimit`.
//! * **Keys** ([`KeyExtractor`]): [`PeerIp`] (IPv6 grouped by /64), [`ClientIp`] (behind
//!   [`TrustedProxies`](crate::net::TrustedProxies) only), [`HeaderKey`], [`GlobalKey`],
//!   [`ExtensionKey`] (the authenticated principal, a signing key id) and [`key_fn`].
//! * **Several limits** ([`RateLimitLayer::and`]): decided together; all must pass and none is
//!   charged when one fails. Per-key overrides with [`Limit::with_override`].
//! * **Weighted cost** ([`RateLimitLayer::with_cost`]) for tokens per minute, and an
//!   adjustment after the response ([`RateLimitLayer::with_adjustment`]) to charge the real
//!   cost. A cost above the burst is refused with [`RateLimitReason::CostAboveBurst`].
//! * **Responses**: 429 `application/problem+json` with `Retry-After` in whole seconds,
//!   rounded up, never 0, and [`RateLimited`] in the extensions; `RateLimit-Policy` and
//!   `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10) on every response, or the legacy
//!   `X-RateLimit-*`, or none ([`HeaderStyle`]).
//! * **Stores** ([`RateLimitStore`]): the in-memory [`MemoryStore`] (sharded, capped in bytes,
//!   evicts idle keys as it goes, no task to run) decides synchronously; stores doing I/O
//!   return a future.
//! * **Clock** ([`Clock`]): [`MonotonicClock`] by default; [`TokioClock`] follows paused time
//!   in tests, [`ManualClock`] moves when told.
//!
//! # Ordering
//!
//! Outside the authentication layer for per-IP limits (cheap, before any crypto), inside it for
//! per-principal limits ([`ExtensionKey`] reads what authentication put in the extensions);
//! inside the request-id layer, so the 429 carries the id.
//!
//! # Pitfalls
//!
//! * [`PeerIp`] needs the peer address: serve with
//!   `into_make_service_with_connect_info::<SocketAddr>()` or insert
//!   [`PeerAddr`](crate::net::PeerAddr). Without it every request is answered a 500 problem
//!   whose `detail` names that fix, and an error is logged: there is no silent fallback to one
//!   shared bucket.
//! * Behind a load balancer [`PeerIp`] sees the balancer: use [`ClientIp`] with the balancer's
//!   ranges. Forwarding headers from anyone else are ignored.
//! * Limits of one layer share one cost function; put request limits and token limits in two
//!   layers when they count different things.
//! * The adjustment runs when the response head is ready, before the body is streamed.
//!
//! # Deployment
//!
//! The in-memory store is per process: with N instances behind a balancer a client gets up to
//! N times the quota. Size the store's byte budget ([`MemoryStore::with_max_bytes`]) for the
//! keys you expect; a flood of new keys evicts idle keys first, then the keys with the least
//! debt, so a client being refused keeps its state.

mod clock;
mod future;
mod gcra;
mod headers;
mod key;
mod layer;
mod limiter;
mod quota;
mod service;
pub(crate) mod store;

pub use clock::{Clock, ManualClock, MonotonicClock, TokioClock};
pub use future::ResponseFuture;
pub use headers::{HeaderStyle, RateLimitReason, RateLimited};
pub use key::{
    ClientIp, ExtensionKey, GlobalKey, HeaderKey, KeyError, KeyErrorKind, KeyExtractor, KeyFn,
    PeerIp, RequestInfo, key_fn, mask_ip,
};
pub use layer::{Limit, RateLimitLayer, ResponseInfo, StoreFailure};
pub use limiter::RateLimiter;
pub use quota::Quota;
pub use service::RateLimit;

pub(crate) use future::{Adjust, apply_adjustment};
pub(crate) use headers::HeaderSet;
pub(crate) use layer::Shared;
pub(crate) use service::{Batch, Checked, Outcome, check, decide};
pub use store::{
    Check, Decision, KeyState, MAX_LIMITS, MemoryStore, MemoryStoreStats, RateLimitStore,
    StoreError, StoreResult, Verdict, WORST_CASE_BYTES_PER_KEY,
};
