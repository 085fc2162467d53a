//! Security response headers: helmet 8's defaults in one precomputed layer, a validating
//! Content-Security-Policy builder with per-request nonces, Permissions-Policy, and HSTS sent
//! only over HTTPS.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use battlement::{net::Scheme, security_headers::SecurityHeadersLayer};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(SecurityHeadersLayer::web());
//!
//! // As the TLS listener hands it on (HSTS goes on HTTPS responses only).
//! let mut req = Request::get("/").body(Body::empty()).unwrap();
//! req.extensions_mut().insert(Scheme::Https);
//! let res = app.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let h = res.headers();
//! assert_eq!(h["x-content-type-options"], "nosniff");
//! assert_eq!(h["x-frame-options"], "SAMEORIGIN");
//! assert_eq!(h["strict-transport-security"], "max-age=31536000; includeSubDomains");
//! assert!(h["content-security-policy"].to_str().unwrap().starts_with("default-src 'self';"));
//! # }
//! ```
//!
//! A per-request nonce for inline scripts, read by the handler:
//!
//! ```
//! use axum::{Extension, Router, body::Body, response::Html, routing::get};
//! use battlement::security_headers::{ContentSecurityPolicy, CspNonce, SecurityHeaders};
//! use http::Request;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let headers = SecurityHeaders::web()
//!     .content_security_policy(ContentSecurityPolicy::web().with_nonce());
//! let app = Router::new()
//!     .route("/", get(|Extension(nonce): Extension<CspNonce>| async move {
//!         Html(format!(r#"<script nonce="{nonce}">boot()</script>"#))
//!     }))
//!     .layer(headers.layer());
//!
//! let res = app.oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
//! let csp = res.headers()["content-security-policy"].to_str().unwrap();
//! assert!(csp.contains("script-src 'self' 'nonce-"));
//! # }
//! ```
//!
//! # What is sent
//!
//! [`SecurityHeaders::web`] (the default) is helmet 8, value for value, with `X-Powered-By`
//! removed; [`SecurityHeaders::api`] is a tighter set for JSON APIs. Either can be changed
//! header by header ([`SecurityHeaders::header`], [`without`](SecurityHeaders::without),
//! [`remove_header`](SecurityHeaders::remove_header), ...). The layer turns the set into a
//! ready-made header map when it is built; per request it clones that map (static or
//! reference-counted names and values, no hashing) and puts the handler's own headers back into
//! it, which costs about a fifth of a dozen stacked `SetResponseHeader` layers.
//!
//! A header the handler already set is kept (a page with its own CSP keeps it), unless
//! [`override_existing`](SecurityHeaders::override_existing) or
//! [`overriding`](SecurityHeaders::overriding) say otherwise. Removed headers
//! (`X-Powered-By`, optionally `Server`) are removed whoever set them.
//!
//! `Strict-Transport-Security` goes only on responses to HTTPS requests: the TLS acceptor
//! inserted [`crate::net::Scheme::Https`] in the request extensions, or a proxy in
//! [`SecurityHeaders::trusted_proxies`] said so with `X-Forwarded-Proto`/`Forwarded`. The
//! request target's scheme (absolute-form `https://`, HTTP/2 `:scheme`) is the client's claim
//! and does not count. [`SecurityHeaders::hsts_always`] sends it always.
//!
//! # Ordering
//!
//! Put this layer outside the layers that reject (body limit, rate limit, auth), so their
//! problem responses carry the headers too; inside the request-id and trace layers. The nonce
//! is inserted into the request extensions before the inner service runs, so every layer and
//! handler inside sees it.
//!
//! # Pitfalls
//!
//! * HSTS on `localhost` (through `hsts_always` in development) pins the browser to HTTPS for
//!   `localhost` for a year; `upgrade-insecure-requests` in the default CSP breaks plain-HTTP
//!   development in Safari. Use [`SecurityHeaders::empty`] or drop them in development.
//! * A nonce makes browsers ignore `'unsafe-inline'` in the same directive, so the policy
//!   drops it there: [`ContentSecurityPolicy::with_nonce`] covers `style-src` as well as
//!   `script-src`, and inline styles then need the nonce too.
//! * `Cross-Origin-Resource-Policy: same-origin` stops other origins from embedding your
//!   images or scripts with `no-cors`; set `cross-origin` on a CDN-like service.
//! * `Cross-Origin-Embedder-Policy` is off by default, as in helmet: `require-corp` breaks every
//!   cross-origin embed that does not opt in.
//! * Headers set by a proxy in front are not seen here; two layers of defaults (app and proxy)
//!   end up comma-joined into invalid values: set them in one place.
//!
//! # Deployment
//!
//! Behind a TLS-terminating load balancer, configure its addresses with
//! [`SecurityHeaders::trusted_proxies`] so `X-Forwarded-Proto: https` turns HSTS on; from any
//! other peer the header is ignored. Add `Reporting-Endpoints`
//! ([`SecurityHeaders::reporting_endpoints`]) and a report-only policy to try a stricter CSP
//! before enforcing it.

mod config;
mod csp;
mod future;
mod layer;
mod nonce;
mod permissions;
mod service;

pub use config::{
    CROSS_ORIGIN_EMBEDDER_POLICY, CROSS_ORIGIN_OPENER_POLICY, CROSS_ORIGIN_RESOURCE_POLICY,
    CrossOriginEmbedderPolicy, Hsts, ORIGIN_AGENT_CLUSTER, PERMISSIONS_POLICY, REPORTING_ENDPOINTS,
    SecurityHeaders, X_DOWNLOAD_OPTIONS, X_PERMITTED_CROSS_DOMAIN_POLICIES, X_POWERED_BY,
};
pub use csp::ContentSecurityPolicy;

pub use future::ResponseFuture;
pub(crate) use layer::Plan;
pub use layer::SecurityHeadersLayer;
pub use nonce::CspNonce;
pub use permissions::PermissionsPolicy;
pub use service::SetSecurityHeaders;
pub(crate) use service::is_https;
