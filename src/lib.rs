//! # battlement
//!
//! Production HTTP middleware as [`tower`] layers for hyper and axum services: the items of a
//! go-live security checklist as code that is on by default, correct, measured and fast.
//!
//! Every server-side layer answers a rejection with an RFC 9457 problem ([`problem`]) instead
//! of an error, so it fits `axum::Router::layer` as is and the connection is never dropped.
//!
//! * [`signing`]: RFC 9421 HTTP Message Signatures (`hmac-sha256`) with RFC 9530
//!   `Content-Digest`, a rotating key ring, replay protection, and Standard Webhooks.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod net;
pub mod problem;
pub mod request_id;
pub mod signing;

pub use error::{ConfigError, ConfigErrorKind};
