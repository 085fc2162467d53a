//! # battlement
//!
//! Production HTTP middleware as [`tower`] layers for hyper and axum services: the items of a
//! go-live security checklist as code that is on by default, correct, measured and fast.
//!
//! Every server-side layer answers a rejection with an RFC 9457 problem ([`problem`]) instead
//! of an error, so it fits `axum::Router::layer` as is and the connection is never dropped.
//!
//! * [`rate_limit`]: GCRA per key (peer or client IP, principal, header, ...), several quotas
//!   at once, weighted costs, `RateLimit` headers and a bounded in-memory store.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod net;
pub mod problem;
pub mod rate_limit;
pub mod request_id;

pub use error::{ConfigError, ConfigErrorKind};
