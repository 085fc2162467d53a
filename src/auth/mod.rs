//! Request authentication.
//!
//! ```
//! use axum::{Extension, Router, body::Body, routing::get};
//! use battlement::auth::api_key::{ApiKeyLayer, ApiKeys, Principal, PrincipalId, hash_key};
//! use http::{Request, StatusCode, header};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Only the SHA-256 hash of each key is configured (`hash_key(key).to_hex()` makes it).
//! let ci = Principal::new(PrincipalId::new("ci")?);
//! let keys = ApiKeys::builder().key(hash_key("ci_key_7f3a"), &ci).build()?;
//! let app = Router::new()
//!     .route("/me", get(|Extension(who): Extension<Principal>| async move { who.id().to_string() }))
//!     .layer(ApiKeyLayer::new(keys));
//!
//! let req = Request::get("/me").header(header::AUTHORIZATION, "Bearer ci_key_7f3a").body(Body::empty())?;
//! assert_eq!(app.clone().oneshot(req).await?.status(), StatusCode::OK);
//!
//! // No key (or a wrong one): 401 problem+json with `WWW-Authenticate`.
//! let res = app.oneshot(Request::get("/me").body(Body::empty())?).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
//! # Ok(())
//! # }
//! ```
//!
//! * [`api_key`]: API keys in `Authorization: Bearer` or a header of your choice, stored as
//!   SHA-256 hashes, each standing for a [`Principal`](api_key::Principal) with scopes and an
//!   expiry.
//!
//! Signatures (RFC 9421 and Standard Webhooks) authenticate requests too: see
//! [`signing`](crate::signing).

pub mod api_key;
