//! Request body size limits: 413 by `Content-Length` before a byte is read, and the same limit
//! on chunked and streamed bodies, answered with a 413 too (not a stream error the handler must
//! translate).
//!
//! ```
//! use axum::{Router, body::{Body, Bytes}, routing::post};
//! use battlement::body_limit::{BodyLimitLayer, PayloadTooLarge};
//! use http::{Request, StatusCode, header};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/echo", post(|body: Bytes| async move { body }))
//!     .layer(BodyLimitLayer::new(16));
//!
//! // Within the limit: served.
//! let req = Request::post("/echo").body(Body::from("hello")).unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // Over it, declared by `Content-Length`: refused before the handler runs.
//! let req = Request::post("/echo")
//!     .header(header::CONTENT_LENGTH, "17")
//!     .body(Body::from("0123456789abcdefg"))
//!     .unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
//! assert_eq!(res.extensions().get::<PayloadTooLarge>().unwrap().limit, 16);
//!
//! // Over it, streamed with no length: the extractor fails, and the answer is still 413.
//! let stream = Body::from("0123456789abcdefghij").into_data_stream();
//! let req = Request::post("/echo").body(Body::from_stream(stream)).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```
//!
//! # How it works
//!
//! * A request whose `Content-Length` (or exact body size hint) is over the limit is answered
//!   413 `application/problem+json` ([`ProblemType::PAYLOAD_TOO_LARGE`]) at once: the inner
//!   service is not called and no byte of the body is read (a client that sent
//!   `Expect: 100-continue` gets the 413 instead of `100 Continue`, since hyper only sends that
//!   when the body is first read).
//! * Every other body is wrapped in a [`RequestBody`] that hands out at most the limit, and at
//!   most the declared `Content-Length` (a peer that sends more than it declared never gets the
//!   extra bytes through, whatever the server below does). The frame that would cross the limit
//!   is dropped and the body ends with a [`LengthLimitExceeded`] error.
//! * When a body of unknown length crosses the limit, it also tells the layer. Whatever the
//!   inner service then answers (axum's extractor rejection, a 400, a 500, anything) is replaced
//!   by the 413 problem. The response carries [`PayloadTooLarge`] in its extensions, with the
//!   limit (the `detail` names the limit in bytes too: it is no secret, and a client needs it to
//!   retry with a smaller body).
//! * If the inner service answered *before* the body crossed the limit (it responded without
//!   reading it all, or streams its response while reading), that response stands: the layer
//!   cannot take back what was sent. The rest of the body is not read by the layer; hyper then
//!   drains a little of it or closes the connection, so an unread body cannot be mistaken for
//!   the next request.
//! * A body that errors past its declared `Content-Length` but within the limit is a broken
//!   peer, not a large body: the handler's answer stands.
//!
//! A request without a body (or with an empty one) costs no allocation: the limit and the
//! length sit in the body wrapper. A body still to come costs one small shared allocation and a
//! request extension: through it the body reports crossing the limit, an inner per-route layer
//! changes the limit, and an inner
//! [`RequestTimeoutLayer`](crate::stack::RequestTimeoutLayer) tells a client that stopped
//! sending its body (408, `Connection: close`, not counted by circuit breakers) from a slow
//! handler (503).
//!
//! # Per-route limits
//!
//! A `BodyLimitLayer` on one route, inside a global one, overrides the global limit for that
//! route, lower or higher:
//!
//! ```
//! use axum::{Router, body::{Body, Bytes}, routing::post};
//! use battlement::body_limit::BodyLimitLayer;
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/upload", post(|b: Bytes| async move { b.len().to_string() })
//!         .layer(BodyLimitLayer::new(1024)))
//!     .route("/note", post(|b: Bytes| async move { b.len().to_string() })
//!         .layer(BodyLimitLayer::new(8)))
//!     .route("/other", post(|b: Bytes| async move { b.len().to_string() }))
//!     // 64 bytes by default; routes may go up to 4 KiB.
//!     .layer(BodyLimitLayer::new(64).max_route_limit(4096));
//!
//! let post = |uri: &str, n: usize| Request::post(uri).body(Body::from(vec![b'x'; n])).unwrap();
//! assert_eq!(app.clone().oneshot(post("/upload", 1000)).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(app.clone().oneshot(post("/note", 9)).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
//! assert_eq!(app.clone().oneshot(post("/other", 65)).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # }
//! ```
//!
//! With a ceiling above its limit, the outer layer puts the request's limit in a request
//! extension; an inner layer that finds it replaces the limit (the outer layer's body wrapper
//! enforces the new one) and does not wrap the body again. Without one, an inner layer wraps
//! the body again with its own limit, which can only make it stricter. Lowering always works.
//! **Raising is bounded by the outer layer's
//! [`max_route_limit`](BodyLimitLayer::max_route_limit), which defaults to its limit**: the
//! outer layer refuses a `Content-Length` over its limit before calling anything, and it cannot
//! know whether a route further in would have accepted it. Set the ceiling to the largest
//! per-route limit (only the outermost layer's ceiling counts). With a ceiling above the limit, a request that declares a length between the
//! two reaches the route; on a route without its own layer, the body then fails on the first
//! read without reading a byte and the answer is 413, but the handler has been entered (like
//! axum's `DefaultBodyLimit`, which is enforced by the extractors).
//!
//! # Ordering
//!
//! * Put it outside anything that reads or buffers the body (signature and `Content-Digest`
//!   verification, JSON parsing, logging of bodies), and inside the request-id, trace and
//!   security-headers layers so its 413 carries the request id and the headers.
//! * **Request decompression**: tower-http's `RequestDecompressionLayer` removes
//!   `Content-Length` and `Content-Encoding` when it decodes. A limit *outside* it bounds the
//!   bytes on the wire only; a small compressed body can inflate to gigabytes (a zip bomb). To
//!   bound what the application sees, put a `BodyLimitLayer` *inside* the decompression layer
//!   too (two limits: wire bytes outside, decoded bytes inside).
//!
//! # Pitfalls
//!
//! * **axum's `DefaultBodyLimit`**: axum's `Bytes`, `String`, `Json`, `Form` and `Multipart`
//!   extractors apply their own 2 MiB limit (answering 413 in plain text). Raising this layer
//!   above 2 MiB has no effect on those extractors until you raise axum's too, or
//!   `.layer(DefaultBodyLimit::disable())` and let this layer be the one limit.
//! * A handler that does not read the body is not bounded by the streaming rules, only by the
//!   `Content-Length` check: nothing is read, so nothing can exceed.
//! * [`RequestBody::into_inner`] takes the limit off; do not hand the inner body to code that
//!   reads without bounds.
//!
//! # Deployment
//!
//! * The limit counts body bytes as the server sees them (after hyper's de-chunking), not the
//!   framing.
//! * Slow bodies are another attack: pair this layer with a time budget (tower-http's
//!   `TimeoutLayer`/`RequestBodyTimeoutLayer`).
//!
//! [`ProblemType::PAYLOAD_TOO_LARGE`]: crate::problem::ProblemType::PAYLOAD_TOO_LARGE

mod body;
mod future;
mod layer;
mod service;

pub use body::{LengthLimitExceeded, RequestBody};
pub use future::ResponseFuture;
pub use layer::BodyLimitLayer;
pub use service::BodyLimit;

pub(crate) use body::{Handle, Shared};
pub(crate) use future::{Watch, reject};
pub(crate) use service::{Admitted, admit};

/// The typed cause of a 413 from [`BodyLimitLayer`], in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PayloadTooLarge {
    /// The limit in bytes that the body went over.
    pub limit: u64,
    /// The length the request declared (`Content-Length` or an exact body size hint), if any.
    pub content_length: Option<u64>,
}
