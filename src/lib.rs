//! # battlement
//!
//! Production HTTP middleware as [`tower`] layers for hyper and axum services: the items of a
//! go-live security checklist as code that is on by default, correct, measured and fast.
//!
//! Every server-side layer answers a rejection with an RFC 9457 problem ([`problem`]) instead
//! of an error, so it fits `axum::Router::layer` as is and the connection is never dropped.
//!
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

pub use error::{ConfigError, ConfigErrorKind};
