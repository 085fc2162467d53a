//! Request ids: accept a safe incoming id or make a UUID v7, and carry it everywhere.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use axum::{Extension, Router, body::Body, routing::get};
//! use battlement::request_id::{RequestId, SetRequestIdLayer};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! let app = Router::new()
//!     .route("/", get(|Extension(id): Extension<RequestId>| async move {
//!         // The same id, also reachable without the extractor.
//!         assert_eq!(RequestId::current(), Some(id.clone()));
//!         id.to_string()
//!     }))
//!     .layer(SetRequestIdLayer::new());
//!
//! // No id: a UUID v7 is made.
//! let res = app.clone().oneshot(Request::new(Body::empty())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let id = res.headers()["x-request-id"].to_str().unwrap();
//! assert_eq!(id.len(), 36);
//! assert_eq!(&id[14..15], "7");
//!
//! // A valid incoming id is kept: this layer alone trusts any peer (the stack trusts none
//! // by default: see *Which incoming ids are kept* below).
//! let req = Request::builder().header("x-request-id", "lb-5f2a.77").body(Body::empty()).unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "lb-5f2a.77");
//!
//! // One that could forge a log line is replaced.
//! let req = Request::builder().header("x-request-id", "x\" admin=1").body(Body::empty()).unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert_ne!(res.headers()["x-request-id"], "x\" admin=1");
//! # }
//! ```
//!
//! [`SetRequestIdLayer`] gives every request an id and puts it
//!
//! * in the request extensions as a [`RequestId`] (axum handlers: `id: RequestId` or
//!   `Extension<RequestId>`), and in
//!   the request's `x-request-id` header, so inner layers and the handler see the final id;
//! * in a `tracing` span `request{request_id=…}` around the inner service, so every event logged
//!   while handling the request carries it;
//! * in [`RequestId::current`] for the request's task, so code deep inside a handler (an HTTP
//!   client, a database wrapper) finds it without plumbing;
//! * in the response's `x-request-id` header (overwriting any other value, so the client always
//!   sees the id the server logged) and the response extensions, on every response, including
//!   the rejections made by the layers of this crate inside it.
//!
//! An incoming `x-request-id` is kept only when it is 1 to 128 characters of `[A-Za-z0-9._:-]`
//! ([`DefaultValidateRequestId`], configurable, or any `Fn(&str) -> bool`) and, optionally,
//! only when the TCP peer is a trusted proxy ([`SetRequestIdLayer::trust_incoming_from`]).
//! Otherwise a fresh id is made ([`DefaultMakeRequestId`]: UUID v7, lock-free, no system call;
//! or any [`MakeRequestId`]), optionally the trace id of a valid W3C `traceparent`
//! ([`SetRequestIdLayer::use_traceparent`]).
//!
//! [`ForwardRequestIdLayer`] is the client side: it sets the id header of outgoing requests
//! from [`RequestId::current`] (or a [`RequestId`] in the outgoing request's extensions).
//!
//!
//! # Which incoming ids are kept: the layer's default and the stack's
//!
//! The two defaults differ on purpose, and each is stated where it is introduced:
//!
//! * [`SetRequestIdLayer::new`] (and `default()`), used alone, keeps a valid incoming id from
//!   **any** peer: the layer cannot know your proxies, and a development setup or a service
//!   behind a private mesh wants the id it is sent.
//! * [`ServerStack`](crate::stack::ServerStack) (and `ServerConfig::default()`) keeps one
//!   only from the `trusted_proxies` ranges (`request_id.trust_incoming = "proxies"`), and
//!   that list is empty by default: with no proxy trusted, **every** incoming id is replaced,
//!   a valid one too, so that a client cannot choose the id that shows up in your logs.
//!
//! To keep a load balancer's ids, trust its range: [`SetRequestIdLayer::trust_incoming_from`]
//! on the layer, or `trusted_proxies = ["10.0.0.0/8"]` in the stack's config (the same list
//! that makes `Forwarded` / `X-Forwarded-For` believed). `ignore_incoming()` (the stack's
//! `trust_incoming = "none"`) never keeps one; `trust_incoming = "any"` is the layer's
//! default.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::net::SocketAddr;
//!
//! use axum::{Router, body::Body, routing::get};
//! use battlement::{net::{PeerAddr, TrustedProxies}, request_id::SetRequestIdLayer};
//! use http::Request;
//! use tower::ServiceExt;
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "ok" }))
//!     .layer(SetRequestIdLayer::new().trust_incoming_from(TrustedProxies::loopback()));
//! let from = |peer: [u8; 4]| {
//!     let mut req = Request::builder().header("x-request-id", "lb-5f2a.77").body(Body::empty()).unwrap();
//!     req.extensions_mut().insert(PeerAddr(SocketAddr::from((peer, 40000))));
//!     req
//! };
//!
//! // From the trusted proxy (loopback here), a valid id is kept...
//! let res = app.clone().oneshot(from([127, 0, 0, 1])).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "lb-5f2a.77");
//! // ...from anyone else the same valid id is replaced by a fresh UUID v7.
//! let res = app.oneshot(from([203, 0, 113, 7])).await.unwrap();
//! assert_ne!(res.headers()["x-request-id"], "lb-5f2a.77");
//! # }
//! ```
//!
//! # Ordering
//!
//! Outermost: every response, including rejections by the other layers, then carries the id,
//! and every event they log is inside the request span. A `tower_http::trace::TraceLayer`
//! goes just inside this layer (its span nests in ours, and it can read the `RequestId`
//! extension or the header). On the client, put [`ForwardRequestIdLayer`] outermost, before
//! retries, so every attempt carries the same id.
//!
//! # Pitfalls
//!
//! * An error returned as `Err` by the inner service has no response to carry the id: the
//!   layers of this crate never do that, but a plain `tower` layer may (under axum's
//!   `Router::layer` the inner service cannot fail: its error type is `Infallible`).
//! * `tokio::spawn` starts a task without the current id; use [`RequestId::scope`] to pass it.
//! * A client id is still client data: even a valid one may collide with another request's on
//!   purpose. Trust ids from your own proxies only ([`SetRequestIdLayer::trust_incoming_from`])
//!   when logs are used for audit.
//! * A UUID v7 tells when it was made (to the millisecond).
//!
//! # Deployment
//!
//! Behind a load balancer that sets `x-request-id`, trust it from the balancer's range only
//! ([`SetRequestIdLayer::trust_incoming_from`]). AWS ALB sets `x-amzn-trace-id` instead: use
//! [`SetRequestIdLayer::header`], and allow its `Root=1-…;Parent=…` syntax with
//! `DefaultValidateRequestId::new().also_allow("=;")`. Behind an
//! OpenTelemetry-instrumented proxy, [`SetRequestIdLayer::use_traceparent`] makes the request
//! id equal to the trace id.

#[cfg(feature = "axum")]
mod extract;
mod forward;
mod future;
mod id;
mod layer;
mod make;
mod scope;
mod service;
mod traceparent;
mod validate;

use http::HeaderName;

#[cfg(feature = "axum")]
pub use extract::MissingRequestId;
pub use forward::{ForwardRequestId, ForwardRequestIdLayer};
pub use future::ResponseFuture;
pub use id::{InvalidRequestId, RequestId};
pub use layer::SetRequestIdLayer;
pub use make::{DefaultMakeRequestId, MakeRequestId, uuid_v7};
pub use scope::Scoped;
pub use service::SetRequestId;
pub use traceparent::{TRACEPARENT, traceparent_trace_id};
pub use validate::{DefaultValidateRequestId, ValidateRequestId};

pub(crate) use layer::Config;
pub(crate) use scope::Enter;
pub(crate) use service::request_span;

/// The default request-id header, `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that must never carry a request id: writing an id there would change how the
/// request is routed, framed or authenticated.
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "host",
    "proxy-authorization",
    "set-cookie",
    "te",
    "traceparent",
    "tracestate",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Parses a configured header name for the request id.
fn parse_header(name: &str) -> Result<HeaderName, crate::ConfigError> {
    let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        crate::ConfigError::invalid("request_id.header", "not a valid HTTP header name")
    })?;
    if RESERVED.contains(&header.as_str()) {
        return Err(crate::ConfigError::unsafe_value(
            "request_id.header",
            format!("`{}` has a meaning of its own in HTTP", header.as_str()),
        ));
    }
    Ok(header)
}
