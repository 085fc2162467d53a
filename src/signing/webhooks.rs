//! [Standard Webhooks](https://www.standardwebhooks.com/): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated for
//! key rotation), `whsec_` base64 secrets.
//!
//! Plain functions ([`Webhook::sign`], [`Webhook::headers`], [`Webhook::verify`]) for senders
//! and custom receivers, and [`VerifyWebhookLayer`] for servers: it checks the headers and the
//! timestamp (5 minutes of tolerance both ways), buffers the body (bounded, default 1 MiB),
//! checks the MAC in constant time, refuses a `webhook-id` seen before (through the same
//! [`ReplayStore`] as RFC 9421 nonces), then hands the exact bytes on as a [`BufferedBody`] with
//! a [`WebhookMessage`] extension. Bodies need not be UTF-8.
//!
//! ```
//! use battlement::signing::webhooks::{VerifyWebhookLayer, Webhook, WebhookSecret};
//! use axum::{Router, body::Body, routing::post};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let secret = WebhookSecret::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let hook = Webhook::new(secret);
//! let app = Router::new()
//!     .route("/hooks", post(|| async { "ok" }))
//!     .layer(VerifyWebhookLayer::new(hook.clone()));
//!
//! let now = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! let body = br#"{"type":"invoice.paid"}"#;
//! let mut req = Request::post("/hooks").body(Body::from(&body[..])).unwrap();
//! req.headers_mut().extend(hook.headers("msg_1", now, body).unwrap());
//! let res = app.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let forged = Request::post("/hooks").body(Body::from("{}")).unwrap();
//! let res = app.oneshot(forged).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use subtle::ConstantTimeEq;
use tower::{Layer, Service};
use zeroize::Zeroizing;

use super::{
    body::BufferedBody,
    clock::{Clock, SharedClock},
    gate,
    key::HmacSha256,
    replay::{MemoryReplayStore, ReplayStore},
    verify::DEFAULT_BODY_LIMIT,
};
use crate::{
    error::ConfigError,
    problem::{DefaultRejection, MakeRejection},
};

pub use super::verify::ResponseFuture;

/// The default tolerance between `webhook-timestamp` and now, both ways: 5 minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The most signatures read from `webhook-signature`.
const MAX_SIGNATURES: usize = 16;
/// The most bytes of `webhook-signature` read.
const MAX_SIGNATURE_HEADER_LEN: usize = 4096;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// A webhook signing secret (24 to 64 bytes), wiped on drop, never printed.
#[derive(Clone)]
pub struct WebhookSecret {
    mac: HmacSha256,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>` (the prefix is optional).
    ///
    /// # Errors
    ///
    /// When the text is not base64 or the secret is not 24 to 64 bytes long.
    pub fn from_whsec(s: &str) -> Result<Self, ConfigError> {
        let b64 = s.trim();
        let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
        let bytes = Zeroizing::new(
            STANDARD
                .decode(b64)
                .map_err(|_| ConfigError::invalid("webhooks.secret", "not valid base64"))?,
        );
        Self::from_bytes(&bytes)
    }

    /// A secret from raw bytes.
    ///
    /// # Errors
    ///
    /// When the secret is not 24 to 64 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        if !(24..=64).contains(&bytes.len()) {
            return Err(ConfigError::out_of_range(
                "webhooks.secret",
                "the secret must be 24 to 64 bytes",
            ));
        }
        let mac = <HmacSha256 as KeyInit>::new_from_slice(bytes)
            .map_err(|_| ConfigError::invalid("webhooks.secret", "HMAC refused the secret"))?;
        Ok(Self { mac })
    }

    /// A new random 32-byte secret and its `whsec_` form (give that to the receiver).
    ///
    /// # Errors
    ///
    /// When the operating system's random source fails.
    pub fn generate() -> Result<(Self, Zeroizing<String>), ConfigError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice())
            .map_err(|_| ConfigError::invalid("webhooks.secret", "the OS random source failed"))?;
        let text = Zeroizing::new(format!("whsec_{}", STANDARD.encode(bytes.as_slice())));
        Ok((Self::from_bytes(bytes.as_slice())?, text))
    }

    fn tag(&self, id: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why a webhook was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookError {
    kind: WebhookErrorKind,
}

/// What went wrong, for [`WebhookError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookErrorKind {
    /// `webhook-id`, `webhook-timestamp` or `webhook-signature` is missing.
    MissingHeader,
    /// `webhook-id` is empty, too long, not visible ASCII, or contains `.`.
    InvalidId,
    /// `webhook-timestamp` is not a Unix time in seconds.
    InvalidTimestamp,
    /// The timestamp is older than the tolerance.
    TooOld,
    /// The timestamp is further in the future than the tolerance.
    FromTheFuture,
    /// `webhook-signature` has no well-formed `v1` signature.
    MalformedSignature,
    /// No signature matches any secret.
    InvalidSignature,
    /// This `webhook-id` was seen before.
    Replayed,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// The body could not be read.
    BodyError,
    /// The replay store could not answer; the request is refused.
    ReplayStoreUnavailable,
}

impl WebhookErrorKind {
    /// A stable snake_case name, used in audit logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::InvalidId => "invalid_id",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TooOld => "too_old",
            Self::FromTheFuture => "from_the_future",
            Self::MalformedSignature => "malformed_signature",
            Self::InvalidSignature => "invalid_signature",
            Self::Replayed => "replayed",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyError => "body_error",
            Self::ReplayStoreUnavailable => "replay_store_unavailable",
        }
    }

    /// The status the layer answers with (413, 400, 503 or 401).
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyError => StatusCode::BAD_REQUEST,
            Self::ReplayStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl WebhookError {
    pub(crate) const fn new(kind: WebhookErrorKind) -> Self {
        Self { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> WebhookErrorKind {
        self.kind
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook refused: {}", self.kind.as_str())
    }
}

impl std::error::Error for WebhookError {}

/// A verified webhook's id and timestamp, inserted in the request extensions by the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookMessage {
    id: String,
    timestamp: u64,
}

impl WebhookMessage {
    /// `webhook-id` (use it as an idempotency key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `webhook-timestamp`, Unix seconds.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }
}

pub(crate) struct WebhookCore {
    secrets: Vec<WebhookSecret>,
    tolerance: u64,
}

/// Headers checked, body not yet.
pub(crate) struct Prepared {
    pub(crate) message: WebhookMessage,
    timestamp: String,
    signatures: Vec<[u8; 32]>,
}

impl Prepared {
    /// The message, once the body checked out.
    pub(crate) fn into_message(self) -> WebhookMessage {
        self.message
    }
}

impl WebhookCore {
    pub(crate) fn prepare(&self, headers: &HeaderMap, now: u64) -> Result<Prepared, WebhookError> {
        let err = WebhookError::new;
        let one = |name: HeaderName, twice: WebhookErrorKind| {
            let mut all = headers.get_all(name).iter();
            match (all.next(), all.next()) {
                (Some(v), None) => Ok(v),
                (None, _) => Err(err(WebhookErrorKind::MissingHeader)),
                // Two lines of a singleton header: ambiguous, refuse.
                (Some(_), Some(_)) => Err(err(twice)),
            }
        };
        let id = one(WEBHOOK_ID, WebhookErrorKind::InvalidId)?
            .to_str()
            .map_err(|_| err(WebhookErrorKind::InvalidId))?;
        if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
        {
            return Err(err(WebhookErrorKind::InvalidId));
        }
        let ts_text = one(WEBHOOK_TIMESTAMP, WebhookErrorKind::InvalidTimestamp)?
            .to_str()
            .map_err(|_| err(WebhookErrorKind::InvalidTimestamp))?;
        if ts_text.is_empty() || ts_text.len() > 19 || !ts_text.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err(WebhookErrorKind::InvalidTimestamp));
        }
        let ts: u64 = ts_text
            .parse()
            .map_err(|_| err(WebhookErrorKind::InvalidTimestamp))?;
        if now.saturating_sub(ts) > self.tolerance {
            return Err(err(WebhookErrorKind::TooOld));
        }
        if ts.saturating_sub(now) > self.tolerance {
            return Err(err(WebhookErrorKind::FromTheFuture));
        }
        let sig_header = one(WEBHOOK_SIGNATURE, WebhookErrorKind::MalformedSignature)?.as_bytes();
        if sig_header.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(err(WebhookErrorKind::MalformedSignature));
        }
        let mut signatures = Vec::new();
        for entry in sig_header
            .split(|b| *b == b' ')
            .filter(|e| !e.is_empty())
            .take(MAX_SIGNATURES)
        {
            let Some(b64) = entry.strip_prefix(b"v1,") else {
                // Other schemes (`v1a` = ed25519) are not ours to check.
                continue;
            };
            if let Ok(bytes) = STANDARD.decode(b64)
                && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                signatures.push(arr);
            }
        }
        if signatures.is_empty() {
            return Err(err(WebhookErrorKind::MalformedSignature));
        }
        Ok(Prepared {
            message: WebhookMessage {
                id: id.to_owned(),
                timestamp: ts,
            },
            timestamp: ts_text.to_owned(),
            signatures,
        })
    }

    /// How long the id of a message with timestamp `ts`, accepted at `now`, is remembered:
    /// until the message's acceptance window has closed, plus the tolerance.
    ///
    /// The window closes at the end of the second `ts + tolerance` (the check compares whole
    /// seconds). Counting `2 × tolerance` from first use instead forgets the id of a message
    /// first used with `ts` at `now + tolerance` up to a second before its window closes,
    /// and it can be replayed then. The extra `tolerance` keeps the id while an instance
    /// whose clock is up to that much behind this one's still accepts the message (a shared
    /// store); for a message stamped now it is what was kept before (`2 × tolerance`, one
    /// second more).
    pub(crate) fn id_ttl(&self, ts: u64, now: u64) -> Duration {
        let closes = ts.saturating_add(self.tolerance).saturating_add(1);
        let secs = closes.saturating_sub(now).saturating_add(self.tolerance);
        Duration::from_secs(secs.max(1))
    }

    pub(crate) fn verify_prepared(&self, p: &Prepared, body: &[u8]) -> Result<(), WebhookError> {
        let mut ok = subtle::Choice::from(0);
        for secret in &self.secrets {
            let tag = secret.tag(&p.message.id, &p.timestamp, body);
            for sig in &p.signatures {
                ok |= tag.ct_eq(sig);
            }
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(WebhookError::new(WebhookErrorKind::InvalidSignature))
        }
    }
}

/// A Standard Webhooks signer/verifier: one or more secrets (the first signs; all verify, for
/// rotation) and a timestamp tolerance. Cloning is an `Arc` bump.
#[derive(Clone)]
pub struct Webhook {
    core: Arc<WebhookCore>,
}

impl Webhook {
    /// Signs and verifies with `secret`, tolerance 5 minutes.
    pub fn new(secret: WebhookSecret) -> Self {
        Self {
            core: Arc::new(WebhookCore {
                secrets: vec![secret],
                tolerance: DEFAULT_TOLERANCE.as_secs(),
            }),
        }
    }

    fn edit(self, f: impl FnOnce(&mut WebhookCore)) -> Self {
        let mut core = Arc::try_unwrap(self.core).unwrap_or_else(|arc| WebhookCore {
            secrets: arc.secrets.clone(),
            tolerance: arc.tolerance,
        });
        f(&mut core);
        Self {
            core: Arc::new(core),
        }
    }

    /// Adds a secret that verifies too (the one being rotated out or in). [`sign`](Self::sign)
    /// then emits one signature per secret, space-separated.
    #[must_use]
    pub fn with_secret(self, secret: WebhookSecret) -> Self {
        self.edit(|c| c.secrets.push(secret))
    }

    /// The allowed distance between `webhook-timestamp` and now, both ways (default 5 minutes).
    #[must_use]
    pub fn with_tolerance(self, tolerance: Duration) -> Self {
        self.edit(|c| c.tolerance = tolerance.as_secs())
    }

    /// The `webhook-signature` value for a message: `v1,<base64>` per secret, space-separated.
    ///
    /// # Errors
    ///
    /// [`WebhookErrorKind::InvalidId`] when `id` is empty, too long, not visible ASCII or
    /// contains `.` (it would make the signed string ambiguous).
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> Result<String, WebhookError> {
        if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'.')
        {
            return Err(WebhookError::new(WebhookErrorKind::InvalidId));
        }
        let ts = timestamp.to_string();
        let mut out = String::with_capacity(48 * self.core.secrets.len());
        for (i, secret) in self.core.secrets.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str("v1,");
            STANDARD.encode_string(secret.tag(id, &ts, body), &mut out);
        }
        Ok(out)
    }

    /// The three headers of a signed message.
    ///
    /// # Errors
    ///
    /// As [`sign`](Self::sign).
    pub fn headers(
        &self,
        id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Result<HeaderMap, WebhookError> {
        let sig = self.sign(id, timestamp, body)?;
        let invalid = || WebhookError::new(WebhookErrorKind::InvalidId);
        let mut h = HeaderMap::with_capacity(3);
        h.insert(
            WEBHOOK_ID,
            HeaderValue::from_str(id).map_err(|_| invalid())?,
        );
        h.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        h.insert(
            WEBHOOK_SIGNATURE,
            HeaderValue::try_from(sig).map_err(|_| invalid())?,
        );
        Ok(h)
    }

    /// Verifies a message at Unix time `now` (no replay check: the layer does that, or check
    /// [`WebhookMessage::id`] yourself).
    ///
    /// # Errors
    ///
    /// A [`WebhookError`] saying why.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<WebhookMessage, WebhookError> {
        let p = self.core.prepare(headers, now)?;
        self.core.verify_prepared(&p, body)?;
        Ok(p.message)
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("secrets", &self.core.secrets.len())
            .field("tolerance_secs", &self.core.tolerance)
            .finish()
    }
}

/// What every clone of the layer and its services shares: the Standard Webhooks core the
/// [gate](crate::signing::gate::begin_webhook) runs (secrets and tolerance, replay store,
/// clock, body limit).
pub(crate) struct WebhookShared<St> {
    pub(crate) core: Arc<WebhookCore>,
    pub(crate) store: Arc<St>,
    pub(crate) clock: SharedClock,
    pub(crate) body_limit: usize,
}

/// Verifies Standard Webhooks signatures before the inner service sees the request.
///
/// It buffers the body before calling the inner service: put a
/// [`RequestTimeoutLayer`](crate::stack::RequestTimeoutLayer) outside it (a route of an app
/// wrapped in [`ServerStack`](crate::stack::ServerStack) has one), inside a
/// [`BodyLimitLayer`](crate::body_limit::BodyLimitLayer), so that a body the client stops
/// sending is answered (408) at the deadline instead of holding the connection.
pub struct VerifyWebhookLayer<R = DefaultRejection, St = MemoryReplayStore> {
    shared: Arc<WebhookShared<St>>,
    rejection: R,
}

impl VerifyWebhookLayer {
    /// Verifies with `webhook`'s secrets, an in-memory replay store and the system clock.
    pub fn new(webhook: Webhook) -> Self {
        Self {
            shared: Arc::new(WebhookShared {
                core: webhook.core,
                store: Arc::new(MemoryReplayStore::new()),
                clock: SharedClock::default(),
                body_limit: DEFAULT_BODY_LIMIT,
            }),
            rejection: DefaultRejection,
        }
    }
}

impl<R, St> VerifyWebhookLayer<R, St> {
    fn rebuild<St2>(
        self,
        store: Arc<St2>,
        clock: SharedClock,
        body_limit: usize,
    ) -> VerifyWebhookLayer<R, St2> {
        VerifyWebhookLayer {
            shared: Arc::new(WebhookShared {
                core: self.shared.core.clone(),
                store,
                clock,
                body_limit,
            }),
            rejection: self.rejection,
        }
    }

    /// Uses `store` for `webhook-id`s.
    #[must_use]
    pub fn with_replay_store<St2: ReplayStore>(self, store: St2) -> VerifyWebhookLayer<R, St2> {
        let (clock, limit) = (self.shared.clock.clone(), self.shared.body_limit);
        self.rebuild(Arc::new(store), clock, limit)
    }

    /// Reads time from `clock`.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let (store, limit) = (self.shared.store.clone(), self.shared.body_limit);
        self.rebuild(store, SharedClock::new(clock), limit)
    }

    /// The most body bytes buffered (default 1 MiB); larger bodies get 413.
    #[must_use]
    pub fn with_body_limit(self, limit: usize) -> Self {
        let (store, clock) = (self.shared.store.clone(), self.shared.clock.clone());
        self.rebuild(store, clock, limit)
    }

    /// The core [`gate::begin_webhook`] runs (for the stack engine).
    #[cfg_attr(not(test), allow(dead_code, reason = "the gate's tests call it"))]
    pub(crate) fn gate(&self) -> &Arc<WebhookShared<St>> {
        &self.shared
    }

    /// What answers the rejections (for the stack engine).
    #[cfg_attr(not(test), allow(dead_code, reason = "the gate's tests call it"))]
    pub(crate) fn rejection(&self) -> &R {
        &self.rejection
    }

    /// Answers rejections with `rejection` instead of problem+json.
    #[must_use]
    pub fn with_rejection<R2>(self, rejection: R2) -> VerifyWebhookLayer<R2, St> {
        VerifyWebhookLayer {
            shared: self.shared,
            rejection,
        }
    }
}

impl<R: Clone, St> Clone for VerifyWebhookLayer<R, St> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<R, St> fmt::Debug for VerifyWebhookLayer<R, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhookLayer")
            .field("secrets", &self.shared.core.secrets.len())
            .field("tolerance_secs", &self.shared.core.tolerance)
            .field("body_limit", &self.shared.body_limit)
            .finish_non_exhaustive()
    }
}

impl<S, R: Clone, St> Layer<S> for VerifyWebhookLayer<R, St> {
    type Service = VerifyWebhook<S, R, St>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook {
            inner,
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

/// The service made by [`VerifyWebhookLayer`].
pub struct VerifyWebhook<S, R, St> {
    inner: S,
    shared: Arc<WebhookShared<St>>,
    rejection: R,
}

impl<S: Clone, R: Clone, St> Clone for VerifyWebhook<S, R, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<S: fmt::Debug, R, St> fmt::Debug for VerifyWebhook<S, R, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhook")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, St, B, ResBody> Service<Request<B>> for VerifyWebhook<S, R, St>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<tower::BoxError>,
    R: MakeRejection<ResBody> + Clone,
    St: ReplayStore,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture::new(
            gate::begin_webhook(&self.shared, &self.rejection, req),
            &mut self.inner,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Standard Webhooks / svix library test vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: u64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn hook() -> Webhook {
        Webhook::new(WebhookSecret::from_whsec(SECRET).unwrap())
    }

    fn headers(sig: &str, ts: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(WEBHOOK_ID, ID.parse().unwrap());
        h.insert(WEBHOOK_TIMESTAMP, ts.parse().unwrap());
        h.insert(WEBHOOK_SIGNATURE, sig.parse().unwrap());
        h
    }

    #[test]
    fn spec_vector_signs_and_verifies() {
        assert_eq!(hook().sign(ID, TS, BODY).unwrap(), SIG);
        let m = hook()
            .verify(&headers(SIG, "1649367553"), BODY, TS)
            .unwrap();
        assert_eq!(m.id(), ID);
        assert_eq!(m.timestamp(), TS);
        // Several signatures: any one may match (rotation).
        let multi = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1a,xyz {SIG}");
        hook()
            .verify(&headers(&multi, "1649367553"), BODY, TS)
            .unwrap();
    }

    #[test]
    fn refusals() {
        let kind =
            |h: &HeaderMap, body: &[u8], now: u64| hook().verify(h, body, now).unwrap_err().kind();
        let ts = "1649367553";
        assert_eq!(
            kind(&headers(SIG, ts), b"{}", TS),
            WebhookErrorKind::InvalidSignature
        );
        assert_eq!(
            kind(&headers(SIG, ts), BODY, TS + 301),
            WebhookErrorKind::TooOld
        );
        assert_eq!(
            kind(&headers(SIG, ts), BODY, TS - 301),
            WebhookErrorKind::FromTheFuture
        );
        assert!(hook().verify(&headers(SIG, ts), BODY, TS + 300).is_ok());
        assert_eq!(
            kind(&headers(SIG, "16493675x3"), BODY, TS),
            WebhookErrorKind::InvalidTimestamp
        );
        assert_eq!(
            kind(&headers("v1,!!!", ts), BODY, TS),
            WebhookErrorKind::MalformedSignature
        );
        assert_eq!(
            kind(&headers("v2,abc", ts), BODY, TS),
            WebhookErrorKind::MalformedSignature
        );
        let mut h = headers(SIG, ts);
        h.insert(WEBHOOK_ID, "a.b".parse().unwrap());
        assert_eq!(kind(&h, BODY, TS), WebhookErrorKind::InvalidId);
        h.remove(WEBHOOK_ID);
        assert_eq!(kind(&h, BODY, TS), WebhookErrorKind::MissingHeader);
        let other = Webhook::new(WebhookSecret::from_bytes(&[7; 32]).unwrap());
        assert_eq!(
            other
                .verify(&headers(SIG, ts), BODY, TS)
                .unwrap_err()
                .kind(),
            WebhookErrorKind::InvalidSignature
        );
    }

    #[test]
    fn non_utf8_bodies_and_rotation() {
        let old = WebhookSecret::from_bytes(&[1; 32]).unwrap();
        let new = WebhookSecret::from_bytes(&[2; 32]).unwrap();
        let body = [0xff, 0xfe, 0x00, 0x80];
        let sender = Webhook::new(old.clone());
        let sig = sender.sign("msg_1", TS, &body).unwrap();
        let receiver = Webhook::new(new).with_secret(old);
        let h = sender.headers("msg_1", TS, &body).unwrap();
        assert_eq!(h[WEBHOOK_SIGNATURE], sig.as_str());
        receiver.verify(&h, &body, TS).unwrap();
        assert_eq!(
            receiver
                .sign("msg_1", TS, &body)
                .unwrap()
                .split(' ')
                .count(),
            2
        );
    }

    #[test]
    fn secrets_are_validated_and_redacted() {
        assert!(WebhookSecret::from_whsec("whsec_AAAA").is_err());
        assert!(WebhookSecret::from_whsec("whsec_not base64!").is_err());
        assert!(WebhookSecret::from_bytes(&[0; 65]).is_err());
        let (s, text) = WebhookSecret::generate().unwrap();
        assert!(text.starts_with("whsec_"));
        assert!(WebhookSecret::from_whsec(&text).is_ok());
        assert_eq!(format!("{s:?}"), "WebhookSecret(<redacted>)");
        assert!(hook().sign("a.b", TS, BODY).is_err());
    }
}
