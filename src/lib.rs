//! # battlement
//!
//! Production HTTP middleware as [`tower`] layers for hyper and axum services: the items of a
//! go-live security checklist as code that is on by default, correct, measured and fast.
//!
//! ```no_run
//! # use std::net::SocketAddr;
//! # use axum::{Router, routing::get};
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let router = Router::new().route("/", get(|| async { "hello" }));
//! let app = battlement::stack::ServerStack::new().wrap(router); // feature `axum`
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! # axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! That line puts the secure defaults around an axum router: request ids, a tracing span,
//! panic → 500 problem, security headers, a 1 MiB body limit, 600 requests a minute per
//! client address and a 30 s timeout. Serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()`, so that the rate limit sees client
//! addresses.
//!
//! # Start here
//!
//! * **The whole stack**: [`stack::ServerStack`] (also exported as `battlement::Stack`, an
//!   alias of the same type) composes every server layer below in the right order, from
//!   [`ServerStack::new`](stack::ServerStack::new) or from one validated config
//!   ([`stack::ServerConfig`]: TOML with environment overrides, see [`config`]):
//!   `ServerStack::from_config(&config)?.wrap(router)`. [`stack::ServerConfig::audit`] reports
//!   what is off or weak for production, and [`stack::ClientStack`] is the client side.
//! * **A single layer**: each module below is one layer, usable alone in a
//!   `tower::ServiceBuilder` or `Router::layer`; its module docs open with an example, then
//!   say where it goes (*Ordering*), what to watch (*Pitfalls*) and how to deploy it.
//!
//! The two differ in one default: [`request_id::SetRequestIdLayer::new`] alone keeps any
//! valid incoming `x-request-id` (from any peer), while the stack keeps none until you list
//! your proxies in `trusted_proxies` (its `request_id.trust_incoming = "proxies"`, with no
//! proxy trusted by default). Use [`SetRequestIdLayer::trust_incoming_from`](request_id::SetRequestIdLayer::trust_incoming_from)
//! on the single layer to get the stack's behaviour.
//!
//! Every server-side layer answers a rejection with an RFC 9457 problem ([`problem`]) instead
//! of an error, so it fits `axum::Router::layer` as is and the connection is never dropped.
//!
//! Server side, outermost first (the order [`ServerStack`](stack::ServerStack) uses; its
//! [*Ordering*](stack#ordering) section says why):
//!
//! * [`request_id`]: accept a safe incoming request id or make a UUID v7; put it in the request
//!   extensions, the tracing span, the response and outgoing client requests.
//! * [`security_headers`]: helmet-parity security headers in one precomputed layer, a validating
//!   CSP builder with per-request nonces, Permissions-Policy, HSTS only over HTTPS.
//! * [`https`]: redirect plain HTTP to HTTPS on allow-listed hosts, trusting forwarded
//!   headers only from configured proxies.
//! * [`cors`]: CORS preflights and response headers from a precomputed allow-list.
//! * [`body_limit`]: request body size limits, by `Content-Length` and on streamed bodies.
//! * [`rate_limit`]: GCRA per key (client IP before authentication, principal after it, a
//!   header, ...), several quotas at once, weighted costs, `RateLimit` headers and a bounded
//!   in-memory store.
//! * [`auth::api_key`]: API keys stored as SHA-256 hashes, with principals, scopes, expiry and
//!   rotation.
//! * [`signing`] (verify): RFC 9421 HTTP Message Signatures (`hmac-sha256`) with RFC 9530
//!   `Content-Digest`, a rotating key ring, replay protection, and Standard Webhooks.
//! * [`circuit_breaker`] (server mode): a 503 with `Retry-After` in front of a fragile handler.
//!
//! Client side:
//!
//! * [`retry`]: failed idempotent requests sent again with jittered backoff, a retry budget,
//!   `Retry-After` and bounded body replay.
//! * [`circuit_breaker`]: closed/open/half-open breakers, per key, failing fast with a typed
//!   `CircuitOpen` error.
//! * [`signing`] (sign): a fresh signature, `created` and nonce on every attempt.
//! * [`request_id::ForwardRequestIdLayer`]: the current request id on outgoing calls.
//!
//! Many instances (feature `redis`): `redis` holds the rate limits and the replay nonces in
//! Redis, one round trip per decision, with a failure policy for when Redis is down.
//!
//! Shared pieces: [`problem`] (the one rejection response), [`net`] (peer addresses and
//! trusted proxies), [`error`] (typed configuration errors naming the field).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
pub mod body_limit;
pub mod circuit_breaker;
pub mod config;
pub mod cors;
mod drain;
pub mod error;
mod future;
pub mod grpc;
mod header_buf;
pub mod https;
pub mod net;
pub mod problem;
pub mod rate_limit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod request_id;
pub mod retry;
pub mod security_headers;
pub mod signing;
pub mod stack;

pub use error::{ConfigError, ConfigErrorKind};

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
/// Another name of [`ServerStack`](stack::ServerStack), kept for existing code; the docs say
/// `ServerStack`.
pub use stack::ServerStack as Stack;
