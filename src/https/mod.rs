//! Redirects plain-HTTP requests to HTTPS: same host, path and query, `301` for `GET`/`HEAD`
//! and `308` (which keeps the method and body) for the rest, only to hosts on an allow-list.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use battlement::https::{HostNotAllowed, HttpsRedirectLayer};
//! use http::{Request, StatusCode, header};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), battlement::ConfigError> {
//! let app = Router::new()
//!     .route("/orders", get(|| async { "orders" }))
//!     .route("/healthz", get(|| async { "ok" }))
//!     .layer(
//!         HttpsRedirectLayer::new(["example.com", "*.example.com"])?
//!             .exempt_path("/healthz")?,
//!     );
//!
//! let get = |uri: &str, host: &str| {
//!     Request::get(uri).header(header::HOST, host).body(Body::empty()).unwrap()
//! };
//! let res = app.clone().oneshot(get("/orders?page=2", "www.example.com")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
//! assert_eq!(res.headers()[header::LOCATION], "https://www.example.com/orders?page=2");
//!
//! // The health check of the load balancer stays on plain HTTP.
//! let res = app.clone().oneshot(get("/healthz", "10.0.0.7:8080")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // Never a redirect to a host this server does not answer for.
//! let res = app.oneshot(get("/orders", "evil.com")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
//! assert!(res.extensions().get::<HostNotAllowed>().is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Is the request plain HTTP?
//!
//! In this order:
//!
//! 1. A [`Scheme`](crate::net::Scheme) request extension, which a TLS acceptor inserts
//!    (`Scheme::Https` on the TLS listener).
//! 2. `Forwarded: proto=` or `X-Forwarded-Proto`, **only** when the TCP peer
//!    ([`peer_addr`](crate::net::peer_addr)) is one of the
//!    [`trusted_proxies`](HttpsRedirectLayer::trusted_proxies) (see [`crate::net`]). From
//!    anyone else these headers are ignored: a client cannot skip the redirect by sending them.
//! 3. Otherwise the request **counts as plain HTTP**: the server is assumed to be plain.
//!
//! The scheme of the request target (an absolute-form HTTP/1.1 target such as
//! `GET https://example.com/ HTTP/1.1`, or HTTP/2's `:scheme`) is never believed: the client
//! writes it, whatever the connection is, so a plain-HTTP client could claim `https` and skip
//! the redirect.
//!
//! So a server that terminates TLS itself must either insert `Scheme::Https` in the requests of
//! its TLS listener (HTTP/2 over TLS included), or put this layer on the plain listener's
//! router only. There is
//! deliberately no "assume HTTPS when unknown" switch: it would turn a missing extension into a
//! silent pass on the plain listener.
//!
//! # Hosts
//!
//! The host comes from the trusted proxy's forwarded host if there is one, else the request
//! target's authority (HTTP/2 `:authority`), else the `Host` header. It must be a DNS name or an
//! IPv4 address (letters, digits, `-`, `.`) or a bracketed IPv6 literal, with an optional port:
//! userinfo (`example.com@evil.com`), paths, backslashes, spaces, control or non-ASCII bytes,
//! several `Host` headers or none are refused. A host that is malformed or not on the allow-list
//! gets `421 Misdirected Request` problem+json ([`HostNotAllowed`] in the extensions), never a
//! redirect: the `Location` only ever names a host you listed. The redirect drops the port of
//! the plain request and uses 443, or [`https_port`](HttpsRedirectLayer::https_port).
//!
//! An empty allow-list is a configuration error;
//! [`allow_any_host`](HttpsRedirectLayer::allow_any_host) exists for servers behind a proxy that
//! checks hosts already, and is dangerous anywhere else.
//!
//! # Ordering
//!
//! Put it early: after the request-id and trace layers (so redirects and 421s are logged with
//! an id) and inside the security-headers layer, before body limits, rate limits and
//! authentication: a plain-HTTP request should be sent away before any work is done for it. HSTS
//! (`Strict-Transport-Security`) is the security-headers layer's job and is only meaningful on
//! HTTPS responses.
//!
//! # Pitfalls
//!
//! * Behind a TLS-terminating proxy, forgetting [`trusted_proxies`](HttpsRedirectLayer::trusted_proxies)
//!   makes every request look plain: an endless redirect loop. The proxy's address must reach
//!   the layer too (axum's `into_make_service_with_connect_info`, or a
//!   [`PeerAddr`](crate::net::PeerAddr) extension).
//! * `301` and `308` are cached by browsers for a long time: make sure HTTPS works on every
//!   listed host before turning this on. Credentials sent over plain HTTP before the redirect are already exposed: the redirect
//!   protects the next request, HSTS the ones after.
//! * Exempt paths are matched on the raw path; a path holding `%` or `.`/`..` segments is never
//!   exempt (it is redirected instead), so an encoded or dotted path cannot reach another route
//!   over plain HTTP.
//!
//! # Deployment
//!
//! The redirect needs an HTTPS listener on the same hosts. With a load balancer that health
//! checks over plain HTTP, exempt the health path. Requests that carry a body (`POST`, ...) get
//! `308`, so a well-behaved client repeats them over HTTPS; the plain body is not read.

mod future;
mod host;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::HttpsRedirectLayer;
pub use service::HttpsRedirect;
pub(crate) use {layer::Config, service::answer};

use http::StatusCode;

/// Marks a redirect made by [`HttpsRedirectLayer`], in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Redirected {
    /// `301 Moved Permanently` or `308 Permanent Redirect`.
    pub status: StatusCode,
}

/// The typed cause of a 421 from [`HttpsRedirectLayer`], in the response extensions: the host
/// of a plain-HTTP request was not on the allow-list, or was malformed or missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostNotAllowed {
    malformed: bool,
}

impl HostNotAllowed {
    /// Whether the host was malformed or missing (rather than valid but not allowed).
    pub fn is_malformed(&self) -> bool {
        self.malformed
    }
}
