//! # battlement
//!
//! Production HTTP middleware as [`tower`] layers for hyper and axum services: the items of a
//! go-live security checklist as code that is on by default, correct, measured and fast.
//!
//! Every server-side layer answers a rejection with an RFC 9457 problem ([`problem`]) instead
//! of an error, so it fits `axum::Router::layer` as is and the connection is never dropped.
//!
//! * [`security_headers`]: helmet-parity security headers in one precomputed layer, a validating
//!   CSP builder with per-request nonces, Permissions-Policy, HSTS only over HTTPS.
//! * [`request_id`]: accept a safe incoming request id or make a UUID v7; put it in the request
//!   extensions, the tracing span, the response and outgoing client requests.
//! Client side, [`retry`] sends failed idempotent requests again with jittered backoff, a retry
//! budget, `Retry-After` and bounded body replay.
//! * [`auth::api_key`]: API keys stored as SHA-256 hashes, with principals, scopes, expiry and
//!   rotation.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
//! * [`circuit_breaker`]: closed/open/half-open breakers for clients and fragile handlers,
//!   per key, with a typed `CircuitOpen` error or a 503 with `Retry-After`.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod circuit_breaker;
//! * [`body_limit`]: request body size limits, by `Content-Length` and on streamed bodies.
//! * [`https`]: redirect plain HTTP to HTTPS on allow-listed hosts, trusting forwarded
//!   headers only from configured proxies.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body_limit;
pub mod error;
pub mod https;
pub mod net;
pub mod problem;
pub mod request_id;
pub mod security_headers;
pub mod retry;

pub use error::{ConfigError, ConfigErrorKind};
