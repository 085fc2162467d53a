//! Request authentication by signature: RFC 9421 HTTP Message Signatures with `hmac-sha256`,
//! RFC 9530 `Content-Digest`, a rotating [`KeyRing`], replay protection, and
//! [Standard Webhooks](webhooks).
//!
//! ```
//! use axum::{Extension, Router, body::Body, routing::post};
//! use battlement::signing::{
//!     BufferedBody, Key, KeyRing, SignRequestLayer, VerifiedSignature, VerifySignatureLayer,
//! };
//! use http::{Request, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Both sides know the key (load it with `Key::from_hex`/`KeyRing::from_env` in real life).
//! let ring = KeyRing::new(Key::hmac_sha256("partner-1", &[7u8; 32]).unwrap());
//!
//! let app = Router::new()
//!     .route("/orders", post(|Extension(sig): Extension<VerifiedSignature>, body: String| async move {
//!         format!("{} sent {body}", sig.key_id())
//!     }))
//!     .layer(VerifySignatureLayer::new(ring.clone()));
//!
//! // The client side: sign, here into a service that hands the signed request back.
//! let signed = ServiceBuilder::new()
//!     .layer(SignRequestLayer::new(ring))
//!     .service(service_fn(|req: http::Request<BufferedBody>| async move {
//!         Ok::<_, std::convert::Infallible>(req)
//!     }))
//!     .oneshot(Request::post("http://api.example.com/orders").body(Body::from("{\"qty\":1}")).unwrap())
//!     .await
//!     .unwrap();
//! assert!(signed.headers().contains_key("signature-input"));
//! assert!(signed.headers().contains_key("content-digest"));
//!
//! let (parts, body) = signed.into_parts();
//! let res = app.clone().oneshot(Request::from_parts(parts, Body::from(body.into_bytes()))).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // Unsigned: 401 problem+json.
//! let res = app.oneshot(Request::post("/orders").body(Body::from("{}")).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # }
//! ```
//!
//! * Servers wrap their router in [`VerifySignatureLayer`]: the request reaches the inner
//!   service only when a signature in `Signature-Input`/`Signature` verifies with a key of the
//!   ring, covers what the [`VerifyPolicy`] requires (`@method`, `@authority`, `@target-uri` by
//!   default, and `content-digest` whenever there is a body), is fresh (`created` at most 300 s
//!   old, at most 60 s in the future, `expires` not passed), carries a nonce not seen before,
//!   and the body matches `Content-Digest`. The body is read once, up to the limit (1 MiB;
//!   413 past it, never buffered further), hashed as it arrives, and handed on unchanged as a
//!   [`BufferedBody`]. A [`VerifiedSignature`] (key id, label, `created`, ...) goes into the
//!   request extensions.
//! * Clients wrap their HTTP client in [`SignRequestLayer`]: a fresh `created` and a random
//!   `nonce` per call, `Content-Digest` of the body, the signing key's `keyid` and `alg`.
//! * Refusals are 401 `application/problem+json` with a generic detail; the precise reason is a
//!   [`SignatureError`] in the response extensions and a WARN event on the
//!   `battlement::signing` target (key id, reason, client address, request id; never a secret
//!   or a signature): the audit log of failed attempts.
//!
//! (The example above does both, one after the other.)
//!
//! # Ordering
//!
//! On a server: request id, trace, security headers, body limit and the per-IP rate limit go
//! *outside* (so rejections carry the id and headers, and floods are cut before any crypto);
//! the rate limit per identity goes *inside* (it reads [`VerifiedSignature::key_id`]). On a
//! client: retry and circuit breaker outside, the sign layer inside them (so every attempt gets
//! a fresh `created` and nonce), the timeout and the HTTP client inside it.
//!
//! # Pitfalls
//!
//! * Behind a TLS-terminating proxy the server sees `http`; set
//!   [`VerifyPolicy::assume_scheme`] to `Https` or leave `@scheme`/`@target-uri` out of the
//!   required components, or every signature that covers them fails. The same holds for a
//!   proxy that rewrites `Host` (`@authority`).
//! * Nothing may change the body between the client's sign layer and this layer (no
//!   decompression in between): `Content-Digest` covers the bytes on the wire.
//! * HMAC keys are shared secrets: every verifier can also sign (RFC 9421 §7.3.3). Give each
//!   partner its own key id and secret.
//! * Trailers are not covered and are dropped from the buffered body.
//! * The in-memory replay store is per process; with several instances use a shared store (the
//!   Redis one) or a replayed request may hit another instance.
//! * [`NonceRequirement::Optional`] lets a signature without a nonce be replayed within its
//!   window: keep the default unless a legacy client cannot send one.
//!
//! # Deployment
//!
//! Load keys from configuration or the environment ([`Key::from_hex`], [`Key::from_base64`],
//! [`KeyRing::from_env`]); secrets must be at least 32 bytes and never appear in `Debug`.
//! Rotate with [`KeyRing::rotate`]: the new key signs at once, the old one keeps verifying for
//! the grace period (7 days by default) so clients can be updated. Clocks must be in sync
//! within the allowed skew (60 s). A nonce is remembered until its signature's own window has
//! closed (the end of the second `created` + 300 s, or `expires`), plus the skew: 361 s for a
//! signature created now, at most 421 s (a webhook id: until `webhook-timestamp` + 5 min has
//! passed, plus 5 min). Size the [`MemoryReplayStore`] for your request rate times that: when
//! it is full of live nonces it refuses (503) rather than forget one.

mod base;
mod body;
mod clock;
mod config;
mod digest;
mod error;
pub(crate) mod gate;
pub(crate) mod key;
mod parse;
mod replay;
mod sf;
pub mod sign;
pub mod verify;
pub mod webhooks;

pub use base::signature_base;
pub use body::BufferedBody;
pub use clock::{Clock, SystemClock, TokioClock};
pub use config::{KeyConfig, SigningConfig};
pub use digest::{DigestAlgorithm, content_digest, verify_content_digest};
pub use error::{SignError, SignErrorKind, SignatureError, SignatureErrorKind};
pub use key::{
    Algorithm, DEFAULT_GRACE_PERIOD, Key, KeyRing, MAX_KEYS, MAX_SECRET_LEN, MIN_SECRET_LEN,
};
pub use parse::{
    Component, MAX_COMPONENTS, MAX_FIELD_LEN, MAX_SIGNATURES, SignatureInput, parse_signature,
    parse_signature_input,
};
pub use replay::{
    DEFAULT_REPLAY_CAPACITY, MemoryReplayStore, ReplayCheck, ReplayStore, ReplayStoreError,
};
pub use sign::SignRequestLayer;
pub use verify::{NonceRequirement, VerifiedSignature, VerifyPolicy, VerifySignatureLayer};
