//! API keys: `Authorization: Bearer <key>` (or a header such as `x-api-key`) checked against
//! stored SHA-256 hashes, with a principal, scopes and expiry per key.
//!
//! ```
//! use axum::{routing::get, Extension, Router};
//! use battlement::auth::api_key::{hash_key, ApiKeyLayer, ApiKeys, Principal, PrincipalId};
//! use http::{header, Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The configuration holds only hashes (`hash_key(key).to_hex()`), never keys.
//! let billing = Principal::with_scopes(PrincipalId::new("billing")?, ["invoices:read"], None)?;
//! let keys = ApiKeys::builder().key(hash_key("bk_live_s3cret"), &billing).build()?;
//!
//! let app = Router::new()
//!     .route("/invoices", get(|Extension(who): Extension<Principal>| async move {
//!         who.id().to_string()
//!     }))
//!     .layer(ApiKeyLayer::new(keys).require_scopes(["invoices:read"])?);
//!
//! let req = Request::get("/invoices")
//!     .header(header::AUTHORIZATION, "Bearer bk_live_s3cret")
//!     .body(axum::body::Body::empty())?;
//! let res = app.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let req = Request::get("/invoices").body(axum::body::Body::empty())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()[header::WWW_AUTHENTICATE], r#"Bearer realm="api""#);
//! assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
//! # Ok(())
//! # }
//! ```
//!
//! # What happens to a request
//!
//! 1. The key is read from the configured header ([`ApiKeyLayer::header`]) if present, else
//!    from `Authorization: Bearer <key>` (scheme case-insensitive). A key is 1 to
//!    [`MAX_KEY_LEN`] visible ASCII characters; anything longer is refused before it is hashed.
//!    A repeated header is refused rather than guessed at.
//! 2. The key is hashed with SHA-256 and looked up in the [`ApiKeyStore`] ([`ApiKeys`] by
//!    default). The found entry's hash is then compared with [`subtle::ConstantTimeEq`].
//! 3. The key's own not-after and its principal's expiry are checked against the [`Clock`].
//! 4. The scopes of [`ApiKeyLayer::require_scopes`] are checked.
//! 5. The [`Principal`] goes into the request extensions and the inner service is called.
//!
//! Refusals are problem+json ([`crate::problem`]): 401 `unauthorized` with
//! `WWW-Authenticate: Bearer realm="api"` (plus `error="invalid_token"` when a key was
//! presented but is unknown, expired or malformed, RFC 6750 §3), or 403 `forbidden` with
//! `error="insufficient_scope"` for a missing scope. The body says only that a valid key is
//! needed; the precise cause is an [`ApiKeyRejection`] in the response extensions and a
//! `WARN` event of target `battlement::auth::api_key` (reason, principal id when known, the
//! first 8 hex digits of the key's hash, client address, request id, method and path; never
//! the key). With the `metrics` feature, the counter `battlement_api_key_rejections_total`
//! (label `reason`) counts them too.
//!
//! # Why hashes, and why the lookup is safe
//!
//! A leaked configuration or database gives hashes, not keys: generated keys carry 256 random
//! bits ([`generate_key`]), so their SHA-256 cannot be reversed, and a slow password hash would
//! only cost time on every request. The map is keyed by the hash of the presented key, so the
//! time a lookup takes depends on that hash (and the map's random SipHash seed), which tells an
//! attacker nothing about any valid key; the final comparison is constant time anyway.
//!
//! # Rotation
//!
//! Give a principal a second key, hand it out, then give the old key a not-after
//! ([`ApiKeysBuilder::key_until`], `not_after` in [`KeyConfig`]) or remove it. Both keys map to
//! the same principal, so rate limits and audit trails stay with the principal.
//!
//! # Ordering
//!
//! Inside the request-id layer (so rejections carry the id) and the per-IP rate limit (cheap
//! refusals before any hashing), outside the per-principal rate limit, which keys on the
//! [`Principal`] this layer inserts.
//!
//! # Pitfalls
//!
//! * Keys are compared exactly: no trimming inside the key, no case folding. Hash them with
//!   [`hash_key`] exactly as clients will send them.
//! * `Authorization: Basic …` is refused (the layer does not do Basic auth), as is a second
//!   `Authorization` or key header.
//! * Every failed attempt, including requests with no key at all, logs at `WARN`: filter the
//!   target if scanners make it noisy.
//! * The audit event reports the TCP peer unless [`ApiKeyLayer::trusted_proxies`] says which
//!   proxies' `Forwarded`/`X-Forwarded-For` to believe.
//!
//! # Deployment
//!
//! Keys come from configuration ([`ApiKeyLayer::from_config`] with an [`ApiKeyConfig`], or
//! [`ApiKeys::from_config`], TOML/JSON through serde) or from the environment
//! ([`ApiKeys::from_env_hashes`] with [`ENV_API_KEY_HASHES`], comma-separated hex SHA-256). Only TLS keeps a bearer key secret on the wire. The store is
//! immutable; to change keys without a restart, implement [`ApiKeyStore`] over a structure you
//! swap atomically.

mod config;
mod future;
mod key;
mod layer;
mod principal;
mod rejection;
mod service;
mod store;

pub use config::ApiKeyConfig;
pub use future::ResponseFuture;
pub use key::{
    GeneratedKey, KEY_RANDOM_BYTES, KeyHash, MAX_KEY_LEN, MAX_PREFIX_LEN, generate_key, hash_key,
};
pub use layer::{ApiKeyLayer, DEFAULT_REALM};
pub use principal::{MAX_PRINCIPAL_ID_LEN, MAX_SCOPE_LEN, Principal, PrincipalId};
pub use rejection::{ApiKeyRejection, ApiKeyRejectionKind};
pub use service::ApiKey;
pub use store::{
    ApiKeyStore, ApiKeys, ApiKeysBuilder, ApiKeysConfig, Clock, ENV_API_KEY_HASHES, Expiry,
    KeyConfig, KeyEntry, MAX_KEYS, PrincipalConfig, SystemClock,
};
pub(crate) use {layer::Shared, service::admit};
