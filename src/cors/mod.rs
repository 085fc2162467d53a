//! CORS: preflights answered from a precomputed configuration, the CORS headers on every other
//! response, with tower-http 0.7's `CorsLayer` behaviour (as the stack configured it) at a
//! fraction of its cost.
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use battlement::cors::{Cors, CorsLayer};
//! use http::{Method, Request, StatusCode, header};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cors = Cors::new()
//!     .allow_origins(["https://app.example.com"])
//!     .allow_methods([Method::GET, Method::POST])
//!     .build()
//!     .unwrap();
//! let app = Router::new()
//!     .route("/orders", get(|| async { "[]" }))
//!     .layer(CorsLayer::new(cors));
//!
//! // A preflight is answered here: the router is not called.
//! let req = Request::options("/orders")
//!     .header(header::ORIGIN, "https://app.example.com")
//!     .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
//!     .body(Body::empty())
//!     .unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_METHODS], "GET,POST");
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_MAX_AGE], "600");
//!
//! // An allowed origin is echoed on the response; the answer varies with `Origin`.
//! let req = Request::get("/orders")
//!     .header(header::ORIGIN, "https://app.example.com")
//!     .body(Body::empty())
//!     .unwrap();
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
//! assert_eq!(res.headers()[header::VARY], "origin");
//!
//! // Another origin is served without CORS headers: its browser will not let it read the
//! // answer.
//! let req = Request::get("/orders")
//!     .header(header::ORIGIN, "https://evil.example")
//!     .body(Body::empty())
//!     .unwrap();
//! let res = app.oneshot(req).await.unwrap();
//! assert!(res.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
//! # }
//! ```
//!
//! # What it sends
//!
//! Exactly what tower-http 0.7's `CorsLayer` sends when configured from the same
//! [`CorsConfig`](crate::stack::CorsConfig) (`tests/cors.rs` compares the two on a matrix of
//! configurations and requests):
//!
//! * Every `OPTIONS` request is a preflight, answered `200 OK` with an empty body without
//!   calling the inner service, whether or not it carries `Origin` or
//!   `Access-Control-Request-Method`. The answer carries `Access-Control-Allow-Methods`,
//!   `-Allow-Headers` and `-Max-Age` as configured, whatever the preflight asks for: the
//!   browser compares them with its request and refuses a method or header not listed.
//! * `Access-Control-Allow-Origin` is the request's `Origin` when it is on the allow-list
//!   (compared byte for byte: browsers send the serialized, lower-case origin), `*` on every
//!   response when any origin is allowed, absent otherwise. A handler's own
//!   `Access-Control-Allow-Origin` is replaced when the layer sets one and left alone when it
//!   does not.
//! * `Vary: origin` is appended (after the handler's own `Vary`) to every response when the
//!   origins are an allow-list, so caches keep one answer per origin; none with `*`.
//! * `Access-Control-Allow-Credentials: true` (when on) and `Access-Control-Expose-Headers`
//!   (on non-preflight responses) are sent whatever the origin: without an allowed origin the
//!   browser ignores them.
//!
//! # Cost
//!
//! Every header value is built when the configuration is validated. A request costs no
//! allocation and no lock: the allow-list is scanned with a byte comparison, and the values
//! are cloned (a reference count increment; none at all for the constant ones). A preflight
//! builds its small header map.
//!
//! # Pitfalls
//!
//! * Put the layer outside authentication and rate limits (the [stack's
//!   order](crate::stack#ordering)): browsers send preflights without credentials, and a 401 to a preflight fails the
//!   call.
//! * `OPTIONS` never reaches the router: an application that answers `OPTIONS` itself does not
//!   get to.

mod config;
mod core;
mod future;
mod layer;

pub(crate) use self::core::{Admit, Apply};
pub use self::{
    config::{Cors, CorsBuilder},
    future::ResponseFuture,
    layer::{CorsLayer, CorsService},
};
