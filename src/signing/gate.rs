//! The gate both verifiers share: "check the headers, collect the body, then decide", not
//! generic over the inner service.
//!
//! [`begin`] (RFC 9421) and [`begin_webhook`] (Standard Webhooks) check what can be checked
//! from the request head and either refuse at once ([`Begin::Refuse`]: the rejection, before
//! anything read the body) or hand back a [`Gate`] ([`Begin::Collect`]): a future that reads
//! the body (bounded by the policy's limit, hashed as it arrives), checks it (the covered
//! `Content-Digest`, or the webhook MAC), asks the replay store about the nonce or webhook id,
//! and resolves to the verified request (`Ok`, with the [`VerifiedSignature`] or
//! [`WebhookMessage`] in its extensions and the exact bytes as a [`BufferedBody`]) or to the
//! rejection (`Err`). Every rejection is built by [`reject`]: problem+json through
//! [`problem::refuse`](crate::problem::refuse), the typed cause ([`SignatureError`] or
//! [`WebhookError`]) in the response extensions, the status of its kind, and one WARN event on
//! the `battlement::signing` target (the audit log).
//!
//! What to do with the body of an early refusal stays the caller's: the layers drain a small
//! body still coming ([`drain::refuse`](crate::drain::refuse) within
//! [`drain::WITHIN`](crate::drain::WITHIN)) and answer after, the stack engine does its own.
//!
//! ```text
//! // What `VerifySignature::call` does (`ResponseFuture::new`), and what the engine does:
//! match gate::begin(layer.gate(), layer.rejection(), req) {
//!     Begin::Refuse(res, parts, body) => /* drain `body` (or not), answer `res` */,
//!     Begin::Collect(gate) => /* poll `gate`: Ok(req) -> call the inner service with it,
//!                                Err(res) -> answer `res` */,
//! }
//! ```
//!
//! Cost: the same as the layer's own work before the gate existed: one buffer for a body of
//! several frames (none for one frame), the replay key, and an `Arc` bump of the store only
//! when there is a nonce or webhook id to check.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::{
    problem::{MakeRejection, Problem, ProblemType},
    request_id::RequestId,
    signing::{
        body::{BufferedBody, Collect, CollectError},
        digest::{ExpectedDigests, Hasher},
        error::{SignatureError, SignatureErrorKind},
        replay::{ReplayCheck, ReplayStore},
        verify::VerifyShared,
        webhooks::{Prepared, WebhookCore, WebhookError, WebhookErrorKind, WebhookShared},
    },
};

#[cfg(doc)]
use crate::signing::{VerifiedSignature, webhooks::WebhookMessage};

/// How a request starts through the gate.
#[allow(
    clippy::large_enum_variant,
    reason = "returned once and moved into the caller's future; boxing the gate would cost an \
              allocation per request"
)]
pub(crate) enum Begin<B, St: ReplayStore, R, Res> {
    /// Refused from the head alone (missing or invalid signature headers, a declared length
    /// over the limit): the rejection, the request head and the body nobody read.
    Refuse(Res, Parts, B),
    /// The head passed: poll the gate to read and check the body.
    Collect(Gate<B, St, R, Res>),
}

impl<B, St: ReplayStore, R, Res> fmt::Debug for Begin<B, St, R, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refuse(..) => f.write_str("Begin::Refuse"),
            Self::Collect(_) => f.write_str("Begin::Collect"),
        }
    }
}

/// RFC 9421: checks the signature headers of `req` against `shared`'s key ring and policy.
///
/// On [`Begin::Collect`] the request's extensions already hold the [`VerifiedSignature`];
/// the gate's `Ok` request carries it on.
pub(crate) fn begin<B, St, R, ResBody>(
    shared: &VerifyShared<St>,
    rejection: &R,
    req: Request<B>,
) -> Begin<B, St, R, Response<ResBody>>
where
    B: Body,
    St: ReplayStore,
    R: MakeRejection<ResBody> + Clone,
{
    let (mut parts, body) = req.into_parts();
    let now = shared.clock.now();
    let hint = body.size_hint();
    let has_body = !body.is_end_stream() && hint.upper() != Some(0);
    let checked = match shared.verifier.check(
        &parts.method,
        crate::net::original_uri_of(&parts.uri, &parts.extensions),
        &parts.headers,
        has_body,
        now,
    ) {
        Ok(c) => c,
        Err(e) => {
            let res = reject(rejection, &parts, GateError::Signature(e));
            return Begin::Refuse(res, parts, body);
        }
    };
    let limit = shared.verifier.policy.body_limit;
    let key_id = checked.verified_key_id();
    if usize::try_from(hint.lower()).map_or(true, |n| n > limit) {
        let e = SignatureError::new(SignatureErrorKind::BodyTooLarge).with_key_id(key_id);
        let res = reject(rejection, &parts, GateError::Signature(e));
        return Begin::Refuse(res, parts, body);
    }
    let hasher = checked
        .digest
        .as_ref()
        .map(|d| Hasher::new(d.primary().alg));
    parts.extensions.insert(checked.verified);
    let replay = checked.replay.map(|(key, ttl)| Replay {
        key,
        ttl,
        store: shared.store.clone(),
    });
    Begin::Collect(Gate::new(
        body,
        Collect::new(limit, hasher),
        Check {
            parts,
            rejection: rejection.clone(),
            finish: Finish::Digest(checked.digest),
            replay,
            key_id: Some(key_id),
        },
    ))
}

/// Standard Webhooks: checks `webhook-id`, `webhook-timestamp` and `webhook-signature` of
/// `req` against `shared`'s secrets and tolerance.
///
/// The gate's `Ok` request carries the [`WebhookMessage`] in its extensions.
pub(crate) fn begin_webhook<B, St, R, ResBody>(
    shared: &WebhookShared<St>,
    rejection: &R,
    req: Request<B>,
) -> Begin<B, St, R, Response<ResBody>>
where
    B: Body,
    St: ReplayStore,
    R: MakeRejection<ResBody> + Clone,
{
    let (parts, body) = req.into_parts();
    let now = shared.clock.now();
    let prepared = match shared.core.prepare(&parts.headers, now) {
        Ok(p) => p,
        Err(e) => {
            let res = reject(rejection, &parts, GateError::Webhook(e));
            return Begin::Refuse(res, parts, body);
        }
    };
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > shared.body_limit) {
        let e = WebhookError::new(WebhookErrorKind::BodyTooLarge);
        let res = reject(rejection, &parts, GateError::Webhook(e));
        return Begin::Refuse(res, parts, body);
    }
    let replay = Replay {
        key: format!("whk:{}", prepared.message.id()),
        ttl: shared.core.id_ttl(prepared.message.timestamp(), now),
        store: shared.store.clone(),
    };
    Begin::Collect(Gate::new(
        body,
        Collect::new(shared.body_limit, None),
        Check {
            parts,
            rejection: rejection.clone(),
            finish: Finish::Webhook(shared.core.clone(), prepared),
            replay: Some(replay),
            key_id: None,
        },
    ))
}

/// What to check once the whole body is in.
enum Finish {
    /// RFC 9421: the body against the covered `Content-Digest` (if any).
    Digest(Option<ExpectedDigests>),
    /// Standard Webhooks: the MAC over `id.timestamp.body`.
    Webhook(Arc<WebhookCore>, Prepared),
}

/// A rejection of either scheme.
pub(crate) enum GateError {
    Signature(SignatureError),
    Webhook(WebhookError),
}

/// A refusal decided by the gate itself, named in the scheme's error kind by [`GateError::of`].
#[derive(Clone, Copy)]
enum GateKind {
    TooLarge,
    Body,
    Replayed,
    StoreUnavailable,
}

impl GateError {
    fn of(finish: &Finish, key_id: Option<&Arc<str>>, kind: GateKind) -> Self {
        match finish {
            Finish::Digest(_) => {
                let k = match kind {
                    GateKind::TooLarge => SignatureErrorKind::BodyTooLarge,
                    GateKind::Body => SignatureErrorKind::BodyError,
                    GateKind::Replayed => SignatureErrorKind::Replayed,
                    GateKind::StoreUnavailable => SignatureErrorKind::ReplayStoreUnavailable,
                };
                let mut e = SignatureError::new(k);
                if let Some(id) = key_id {
                    e = e.with_key_id(id.clone());
                }
                Self::Signature(e)
            }
            Finish::Webhook(..) => Self::Webhook(WebhookError::new(match kind {
                GateKind::TooLarge => WebhookErrorKind::BodyTooLarge,
                GateKind::Body => WebhookErrorKind::BodyError,
                GateKind::Replayed => WebhookErrorKind::Replayed,
                GateKind::StoreUnavailable => WebhookErrorKind::ReplayStoreUnavailable,
            })),
        }
    }

    fn status(&self) -> http::StatusCode {
        match self {
            Self::Signature(e) => e.kind().status(),
            Self::Webhook(e) => e.kind().status(),
        }
    }
}

/// Builds the rejection response, inserts the typed cause and writes the audit event.
pub(crate) fn reject<R, B>(rejection: &R, parts: &Parts, err: GateError) -> Response<B>
where
    R: MakeRejection<B>,
{
    let extensions = &parts.extensions;
    let peer = crate::net::peer_addr(extensions).map_or_else(|| "-".to_owned(), |p| p.to_string());
    let request_id = extensions.get::<RequestId>().map(RequestId::as_str);
    match &err {
        GateError::Signature(e) => tracing::warn!(
            target: "battlement::signing",
            scheme = "rfc9421",
            key_id = %e.key_id().unwrap_or("-"),
            reason = %e.kind().as_str(),
            client = %peer,
            request_id = %request_id.unwrap_or("-"),
            "request signature refused"
        ),
        GateError::Webhook(e) => tracing::warn!(
            target: "battlement::signing",
            scheme = "standard-webhooks",
            reason = %e.kind().as_str(),
            client = %peer,
            request_id = %request_id.unwrap_or("-"),
            "webhook signature refused"
        ),
    }
    let status = err.status();
    let (kind, detail) = match status.as_u16() {
        413 => (
            ProblemType::PAYLOAD_TOO_LARGE,
            "The request body is larger than this endpoint accepts.",
        ),
        400 => (
            ProblemType::BAD_REQUEST,
            "The request body could not be read.",
        ),
        503 => (
            ProblemType::SERVICE_UNAVAILABLE,
            "The request could not be checked now; try again later.",
        ),
        _ => (
            ProblemType::UNAUTHORIZED,
            "The request signature is missing or invalid.",
        ),
    };
    let problem = Problem::new(kind)
        .with_detail(detail)
        .with_request_id_from(extensions)
        .for_request(&parts.headers);
    let mut res = crate::problem::refuse(rejection, problem);
    match err {
        GateError::Signature(e) => {
            res.extensions_mut().insert(e);
        }
        GateError::Webhook(e) => {
            res.extensions_mut().insert(e);
        }
    }
    res
}

/// The nonce (or webhook id) to ask the store about once the body checked out.
struct Replay<St> {
    key: String,
    ttl: Duration,
    store: Arc<St>,
}

/// Everything the gate needs besides the body.
struct Check<R, St> {
    parts: Parts,
    rejection: R,
    finish: Finish,
    replay: Option<Replay<St>>,
    key_id: Option<Arc<str>>,
}

impl<R, St> Check<R, St> {
    fn reject<B>(&self, kind: GateKind) -> Response<B>
    where
        R: MakeRejection<B>,
    {
        let err = GateError::of(&self.finish, self.key_id.as_ref(), kind);
        reject(&self.rejection, &self.parts, err)
    }

    /// The body against the digest or the MAC.
    fn check_body(&self, hasher: Option<Hasher>, bytes: &[u8]) -> Result<(), GateError> {
        match &self.finish {
            Finish::Digest(None) => Ok(()),
            Finish::Digest(Some(expected)) => check_digests(expected, hasher, bytes).map_err(|e| {
                GateError::Signature(match &self.key_id {
                    Some(id) => e.with_key_id(id.clone()),
                    None => e,
                })
            }),
            Finish::Webhook(core, prepared) => core
                .verify_prepared(prepared, bytes)
                .map_err(GateError::Webhook),
        }
    }

    /// The verified request.
    fn pass(self, bytes: Bytes) -> Request<BufferedBody> {
        let Self {
            mut parts, finish, ..
        } = self;
        if let Finish::Webhook(_, prepared) = finish {
            parts.extensions.insert(prepared.into_message());
        }
        Request::from_parts(parts, BufferedBody::new(bytes))
    }
}

pin_project! {
    /// Reads and checks the body of a request whose head passed; see the [module docs](self).
    ///
    /// Resolves to `Ok(request)` (verified, body buffered) or `Err(rejection)`; polling it
    /// again after that stays pending (`crate::future`'s policy).
    pub(crate) struct Gate<B, St, R, Res>
    where
        St: ReplayStore,
    {
        #[pin]
        state: State<B, St::Future>,
        // `Some` until the gate resolves.
        check: Option<Check<R, St>>,
        _res: PhantomData<fn() -> Res>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, F> {
        Collect {
            #[pin]
            body: B,
            collect: Collect,
        },
        Replay {
            #[pin]
            fut: F,
            bytes: Bytes,
        },
        Done,
    }
}

impl<B, St: ReplayStore, R, Res> Gate<B, St, R, Res> {
    fn new(body: B, collect: Collect, check: Check<R, St>) -> Self {
        Self {
            state: State::Collect { body, collect },
            check: Some(check),
            _res: PhantomData,
        }
    }
}

impl<B, St, R, ResBody> Future for Gate<B, St, R, Response<ResBody>>
where
    B: Body,
    B::Error: Into<tower::BoxError>,
    St: ReplayStore,
    R: MakeRejection<ResBody>,
{
    type Output = Result<Request<BufferedBody>, Response<ResBody>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Done => return Poll::Pending,
                StateProj::Collect { body, collect } => {
                    let outcome = ready!(collect.poll_body(body, cx));
                    let (bytes, hasher) = collect.finish();
                    // The check stays in place unless the gate resolves here.
                    let Some(check) = this.check.as_mut() else {
                        unreachable!("the check is present until the gate resolves")
                    };
                    let refused = match outcome {
                        Err(CollectError::TooLarge) => Some(check.reject(GateKind::TooLarge)),
                        Err(CollectError::Body(_)) => Some(check.reject(GateKind::Body)),
                        Ok(()) => match check.check_body(hasher, &bytes) {
                            Err(e) => Some(reject(&check.rejection, &check.parts, e)),
                            Ok(()) => None,
                        },
                    };
                    if let Some(res) = refused {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(res));
                    }
                    match check.replay.take() {
                        None => {
                            let check = resolve(this.state.as_mut(), this.check);
                            return Poll::Ready(Ok(check.pass(bytes)));
                        }
                        Some(r) => {
                            // The store's answer may be ready at once (the in-memory store
                            // always is): the loop polls it now.
                            let fut = r.store.check_and_insert(&r.key, r.ttl);
                            this.state.set(State::Replay { fut, bytes });
                        }
                    }
                }
                StateProj::Replay { fut, bytes } => {
                    let answer = ready!(fut.poll(cx));
                    let bytes = std::mem::take(bytes);
                    let check = resolve(this.state.as_mut(), this.check);
                    return Poll::Ready(match answer {
                        Ok(ReplayCheck::Fresh) => Ok(check.pass(bytes)),
                        Ok(ReplayCheck::Replayed) => Err(check.reject(GateKind::Replayed)),
                        Err(_) => Err(check.reject(GateKind::StoreUnavailable)),
                    });
                }
            }
        }
    }
}

/// Ends the gate: drops the body (or the store's future) and hands back the check.
fn resolve<B, F, R, St>(
    mut state: Pin<&mut State<B, F>>,
    check: &mut Option<Check<R, St>>,
) -> Check<R, St> {
    state.set(State::Done);
    let Some(check) = check.take() else {
        unreachable!("the check is present until the gate resolves, and it resolves once")
    };
    check
}

fn check_digests(
    expected: &ExpectedDigests,
    hasher: Option<Hasher>,
    bytes: &[u8],
) -> Result<(), SignatureError> {
    let primary = expected.primary();
    if let Some(h) = hasher
        && h.alg() == primary.alg
    {
        primary.check(&h.finish())?;
    } else {
        crate::signing::digest::verify_content_digest_parsed(expected, bytes)?;
        return Ok(());
    }
    // Any other accepted digest in the header is checked too.
    for e in expected.iter().filter(|e| e.alg != primary.alg) {
        let mut h = Hasher::new(e.alg);
        h.update(bytes);
        e.check(&h.finish())?;
    }
    Ok(())
}

impl<B, St: ReplayStore, R, Res> fmt::Debug for Gate<B, St, R, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! The layers and the gate driven directly (as the stack engine drives it) agree, request
    //! by request: same status, same typed cause, same body handed on, same timing.

    use std::{collections::VecDeque, convert::Infallible, time::Duration};

    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use http_body::Frame;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;
    use crate::{
        drain,
        net::Scheme,
        problem::DefaultRejection,
        signing::{
            DigestAlgorithm, Key, KeyRing, NonceRequirement, ReplayStoreError, VerifiedSignature,
            VerifyPolicy, VerifySignatureLayer, content_digest, parse_signature_input,
            signature_base,
            webhooks::{VerifyWebhookLayer, Webhook, WebhookMessage, WebhookSecret},
        },
    };

    const NOW: u64 = 1_700_000_000;
    const LIMIT: usize = 64;

    /// A body of the given frames (size unknown, like a chunked upload), that never ends
    /// after them when `stall`.
    struct Frames {
        frames: VecDeque<Bytes>,
        stall: bool,
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = self.get_mut();
            match this.frames.pop_front() {
                Some(f) => Poll::Ready(Some(Ok(Frame::data(f)))),
                // Never woken: a client that stopped sending.
                None if this.stall => Poll::Pending,
                None => Poll::Ready(None),
            }
        }
    }

    /// The request body: in one piece with its length known, or in frames.
    enum TestBody {
        Full(Full<Bytes>),
        Frames(Frames),
    }

    impl Body for TestBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.get_mut() {
                Self::Full(b) => Pin::new(b).poll_frame(cx),
                Self::Frames(b) => Pin::new(b).poll_frame(cx),
            }
        }

        fn is_end_stream(&self) -> bool {
            match self {
                Self::Full(b) => b.is_end_stream(),
                Self::Frames(b) => b.is_end_stream(),
            }
        }

        fn size_hint(&self) -> http_body::SizeHint {
            match self {
                Self::Full(b) => b.size_hint(),
                Self::Frames(b) => b.size_hint(),
            }
        }
    }

    /// A store that cannot answer.
    struct Down;

    impl ReplayStore for Down {
        type Future = std::future::Ready<Result<ReplayCheck, ReplayStoreError>>;

        fn check_and_insert(&self, _key: &str, _ttl: Duration) -> Self::Future {
            std::future::ready(Err(ReplayStoreError::new("down")))
        }
    }

    /// What a client sees: status, content type, the typed cause, the body; or nothing yet.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Answer {
            status: StatusCode,
            content_type: Option<String>,
            cause: Option<String>,
            body: Bytes,
            // Paused time: when the answer came, since the request was sent.
            after: Duration,
        },
        Pending,
    }

    async fn seen(res: Response<Full<Bytes>>, start: tokio::time::Instant) -> Seen {
        let after = start.elapsed();
        let cause = res
            .extensions()
            .get::<SignatureError>()
            .map(|e| format!("{:?} {:?}", e.kind(), e.key_id()))
            .or_else(|| {
                res.extensions()
                    .get::<WebhookError>()
                    .map(|e| format!("{:?}", e.kind()))
            });
        let content_type = res
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Seen::Answer {
            status,
            content_type,
            cause,
            body,
            after,
        }
    }

    /// The application: says which key or webhook id it saw, and the bytes it got.
    async fn app(req: Request<BufferedBody>) -> Result<Response<Full<Bytes>>, Infallible> {
        let who = match (
            req.extensions().get::<VerifiedSignature>(),
            req.extensions().get::<WebhookMessage>(),
        ) {
            (Some(sig), None) => format!("key {}", sig.key_id()),
            (None, Some(m)) => format!("webhook {} {}", m.id(), m.timestamp()),
            _ => "nothing verified".to_owned(),
        };
        let bytes = req.into_body().into_bytes();
        let mut out = who.into_bytes();
        out.push(b':');
        out.extend_from_slice(&bytes);
        Ok(Response::new(Full::new(Bytes::from(out))))
    }

    /// `req` through the gate as a caller other than the layer drives it: an early refusal
    /// drains as the layer does (`drain::refuse`), a gate's `Ok` goes to `app`.
    async fn through_gate<St: ReplayStore>(
        begun: Begin<TestBody, St, DefaultRejection, Response<Full<Bytes>>>,
    ) -> Response<Full<Bytes>> {
        match begun {
            Begin::Refuse(res, parts, body) => {
                match drain::refuse(&parts, body, res, drain::WITHIN) {
                    drain::Refused::Now(res) => res,
                    drain::Refused::Drain(refusal) => refusal.await,
                }
            }
            Begin::Collect(gate) => match gate.await {
                Ok(req) => app(req).await.unwrap(),
                Err(res) => res,
            },
        }
    }

    /// Both answers, each bounded at 5 s of paused time (a stalled body: `Pending`).
    async fn bounded(fut: impl Future<Output = Response<Full<Bytes>>>) -> Seen {
        let start = tokio::time::Instant::now();
        match tokio::time::timeout(Duration::from_secs(5), fut).await {
            Ok(res) => seen(res, start).await,
            Err(_) => Seen::Pending,
        }
    }

    fn key() -> Key {
        Key::hmac_sha256("client-1", &[7u8; 32]).unwrap()
    }

    /// A signed `POST`; `digest_of` is what `Content-Digest` is computed over.
    fn signed_head(nonce: &str, digest_of: &[u8]) -> (http::request::Parts, Bytes) {
        let mut req = Request::post("http://api.example.com/orders?id=42")
            .header(
                "content-digest",
                content_digest(DigestAlgorithm::Sha256, digest_of),
            )
            .body(())
            .unwrap();
        let input = format!(
            r#"sig1=("@method" "@authority" "@target-uri" "content-digest");created={NOW};nonce="{nonce}";keyid="client-1";alg="hmac-sha256""#
        );
        let parsed = parse_signature_input(input.as_bytes()).unwrap();
        let base = signature_base(&req, &parsed[0], Scheme::Http).unwrap();
        let sig = STANDARD.encode(key().sign(&base));
        req.headers_mut()
            .insert("signature-input", input.parse().unwrap());
        req.headers_mut()
            .insert("signature", format!("sig1=:{sig}:").parse().unwrap());
        let (parts, ()) = req.into_parts();
        (parts, Bytes::new())
    }

    /// One case of the matrix: a request made afresh for each path.
    struct Case {
        name: &'static str,
        make: Box<dyn Fn() -> Request<TestBody>>,
    }

    fn full(parts: &http::request::Parts, body: &'static [u8]) -> Request<TestBody> {
        let mut req = Request::new(TestBody::Full(Full::new(Bytes::from_static(body))));
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = parts.headers.clone();
        req
    }

    fn frames(
        parts: &http::request::Parts,
        frames: &[&'static [u8]],
        stall: bool,
    ) -> Request<TestBody> {
        let mut req = full(parts, b"");
        *req.body_mut() = TestBody::Frames(Frames {
            frames: frames.iter().map(|f| Bytes::from_static(f)).collect(),
            stall,
        });
        req
    }

    fn rfc9421_cases() -> Vec<Case> {
        const BODY: &[u8] = b"{\"qty\":1}";
        let case = |name, make: Box<dyn Fn() -> Request<TestBody>>| Case { name, make };
        vec![
            case(
                "valid",
                Box::new(|| full(&signed_head("n-valid", BODY).0, BODY)),
            ),
            case(
                "valid, in frames",
                Box::new(|| {
                    frames(
                        &signed_head("n-frames", BODY).0,
                        &[b"{\"qty\"", b":1}"],
                        false,
                    )
                }),
            ),
            case(
                "replayed nonce (the first of the two passes)",
                Box::new(|| full(&signed_head("n-twice", BODY).0, BODY)),
            ),
            case(
                "replayed nonce",
                Box::new(|| full(&signed_head("n-twice", BODY).0, BODY)),
            ),
            case(
                "bad signature",
                Box::new(|| {
                    let (mut parts, _) = signed_head("n-bad", BODY);
                    parts.headers.insert(
                        "signature",
                        format!("sig1=:{}:", STANDARD.encode([0u8; 32]))
                            .parse()
                            .unwrap(),
                    );
                    full(&parts, BODY)
                }),
            ),
            case(
                "missing signature",
                Box::new(|| {
                    let (mut parts, _) = signed_head("n-missing", BODY);
                    parts.headers.remove("signature");
                    full(&parts, BODY)
                }),
            ),
            case(
                "missing signature, body stalled",
                Box::new(|| {
                    let (mut parts, _) = signed_head("n-missing-stalled", BODY);
                    parts.headers.remove("signature");
                    frames(&parts, &[b"{\"qty\""], true)
                }),
            ),
            case(
                "bad digest",
                Box::new(|| full(&signed_head("n-digest", b"something else").0, BODY)),
            ),
            case(
                "too large, declared",
                Box::new(|| full(&signed_head("n-large", &[b'a'; 100]).0, &[b'a'; 100])),
            ),
            case(
                "too large, streamed",
                Box::new(|| {
                    let (parts, _) = signed_head("n-large-streamed", &[b'a'; 100]);
                    frames(&parts, &[&[b'a'; 50], &[b'a'; 50]], false)
                }),
            ),
            case(
                "valid head, body stalled",
                Box::new(|| frames(&signed_head("n-stalled", BODY).0, &[b"{\"qty\""], true)),
            ),
        ]
    }

    fn verify_layer<St: ReplayStore>(store: St) -> VerifySignatureLayer<DefaultRejection, St> {
        VerifySignatureLayer::with_policy(
            KeyRing::new(key()),
            VerifyPolicy::new()
                .nonce(NonceRequirement::Required)
                .body_limit(LIMIT),
        )
        .with_clock(|| NOW + 1)
        .with_replay_store(store)
    }

    async fn rfc9421_matrix<St: ReplayStore>(store: impl Fn() -> St) -> Vec<(&'static str, Seen)> {
        // One layer (and store) per path, the same cases in the same order through each.
        let layer = verify_layer(store());
        let service = layer.layer(service_fn(app));
        let direct = verify_layer(store());
        let mut out = Vec::new();
        for case in rfc9421_cases() {
            let by_layer =
                bounded(async { service.clone().oneshot((case.make)()).await.unwrap() }).await;
            let by_gate = bounded(through_gate(begin(
                direct.gate(),
                direct.rejection(),
                (case.make)(),
            )))
            .await;
            assert_eq!(
                by_layer, by_gate,
                "{}: the layer and the gate disagree",
                case.name
            );
            out.push((case.name, by_gate));
        }
        out
    }

    fn status(s: &Seen) -> Option<(StatusCode, Option<&str>)> {
        match s {
            Seen::Answer { status, cause, .. } => Some((*status, cause.as_deref())),
            Seen::Pending => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_verify_layer_and_the_gate_agree_request_by_request() {
        let seen = rfc9421_matrix(crate::signing::MemoryReplayStore::new).await;
        let cause = |k: &str, id: Option<&str>| format!("{k} {id:?}");
        type Outcome = Option<(StatusCode, Option<String>)>;
        let expect: Vec<(&str, Outcome)> = vec![
            ("valid", Some((StatusCode::OK, None))),
            ("valid, in frames", Some((StatusCode::OK, None))),
            (
                "replayed nonce (the first of the two passes)",
                Some((StatusCode::OK, None)),
            ),
            (
                "replayed nonce",
                Some((
                    StatusCode::UNAUTHORIZED,
                    Some(cause("Replayed", Some("client-1"))),
                )),
            ),
            (
                "bad signature",
                Some((
                    StatusCode::UNAUTHORIZED,
                    Some(cause("InvalidSignature", Some("client-1"))),
                )),
            ),
            (
                "missing signature",
                Some((
                    StatusCode::UNAUTHORIZED,
                    Some(cause("MissingSignature", None)),
                )),
            ),
            (
                "missing signature, body stalled",
                Some((
                    StatusCode::UNAUTHORIZED,
                    Some(cause("MissingSignature", None)),
                )),
            ),
            (
                "bad digest",
                Some((
                    StatusCode::UNAUTHORIZED,
                    Some(cause("DigestMismatch", Some("client-1"))),
                )),
            ),
            (
                "too large, declared",
                Some((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(cause("BodyTooLarge", Some("client-1"))),
                )),
            ),
            (
                "too large, streamed",
                Some((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some(cause("BodyTooLarge", Some("client-1"))),
                )),
            ),
            ("valid head, body stalled", None),
        ];
        assert_eq!(seen.len(), expect.len());
        for ((name, got), (want_name, want)) in seen.iter().zip(&expect) {
            assert_eq!(name, want_name);
            let got = status(got).map(|(s, c)| (s, c.map(str::to_owned)));
            assert_eq!(&got, want, "{name}");
        }
        // What the application got: the key and the exact bytes, whole or in frames.
        let body = |i: usize| match &seen[i].1 {
            Seen::Answer { body, .. } => body.clone(),
            Seen::Pending => panic!("{} pending", seen[i].0),
        };
        assert_eq!(&body(0)[..], b"key client-1:{\"qty\":1}");
        assert_eq!(&body(1)[..], b"key client-1:{\"qty\":1}");
        // Rejections are problem+json; a decided refusal whose body stalls is answered when
        // the drain gives up (1 s), the others at once.
        for (name, s) in &seen[3..10] {
            let Seen::Answer {
                content_type,
                after,
                ..
            } = s
            else {
                panic!("{name} pending")
            };
            assert_eq!(
                content_type.as_deref(),
                Some("application/problem+json"),
                "{name}"
            );
            let want = if *name == "missing signature, body stalled" {
                drain::WITHIN
            } else {
                Duration::ZERO
            };
            assert_eq!(after, &want, "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_store_down_both_answer_503() {
        let seen = rfc9421_matrix(|| Down).await;
        assert_eq!(
            status(&seen[0].1),
            Some((
                StatusCode::SERVICE_UNAVAILABLE,
                Some("ReplayStoreUnavailable Some(\"client-1\")")
            ))
        );
        // A refusal from the head never asks the store.
        assert_eq!(
            status(&seen[5].1),
            Some((StatusCode::UNAUTHORIZED, Some("MissingSignature None")))
        );
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn webhook_request(id: &str, signed: &[u8], body: TestBody) -> Request<TestBody> {
        let hook = Webhook::new(WebhookSecret::from_whsec(SECRET).unwrap());
        let mut req = Request::post("/hooks").body(body).unwrap();
        let h: HeaderMap = hook.headers(id, NOW, signed).unwrap();
        req.headers_mut().extend(h);
        req
    }

    fn webhook_cases() -> Vec<Case> {
        const BODY: &[u8] = b"{\"type\":\"invoice.paid\"}";
        let full = |b: &'static [u8]| TestBody::Full(Full::new(Bytes::from_static(b)));
        let case = |name, make: Box<dyn Fn() -> Request<TestBody>>| Case { name, make };
        vec![
            case(
                "valid",
                Box::new(move || webhook_request("msg_1", BODY, full(BODY))),
            ),
            case(
                "replayed id",
                Box::new(move || webhook_request("msg_1", BODY, full(BODY))),
            ),
            case(
                "bad signature",
                Box::new(move || webhook_request("msg_2", b"other", full(BODY))),
            ),
            case(
                "missing signature",
                Box::new(move || {
                    let mut req = webhook_request("msg_3", BODY, full(BODY));
                    req.headers_mut().remove("webhook-signature");
                    req
                }),
            ),
            case(
                "too large, streamed",
                Box::new(move || {
                    webhook_request(
                        "msg_4",
                        &[b'a'; 100],
                        TestBody::Frames(Frames {
                            frames: [
                                Bytes::from_static(&[b'a'; 50]),
                                Bytes::from_static(&[b'a'; 50]),
                            ]
                            .into(),
                            stall: false,
                        }),
                    )
                }),
            ),
            case(
                "body stalled",
                Box::new(move || {
                    webhook_request(
                        "msg_5",
                        BODY,
                        TestBody::Frames(Frames {
                            frames: [Bytes::from_static(&BODY[..4])].into(),
                            stall: true,
                        }),
                    )
                }),
            ),
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn the_webhook_layer_and_the_gate_agree_request_by_request() {
        let hook = || Webhook::new(WebhookSecret::from_whsec(SECRET).unwrap());
        let layer = || {
            VerifyWebhookLayer::new(hook())
                .with_clock(|| NOW + 1)
                .with_body_limit(LIMIT)
        };
        let service = layer().layer(service_fn(app));
        let direct = layer();
        let mut seen = Vec::new();
        for case in webhook_cases() {
            let by_layer =
                bounded(async { service.clone().oneshot((case.make)()).await.unwrap() }).await;
            let by_gate = bounded(through_gate(begin_webhook(
                direct.gate(),
                direct.rejection(),
                (case.make)(),
            )))
            .await;
            assert_eq!(
                by_layer, by_gate,
                "{}: the layer and the gate disagree",
                case.name
            );
            seen.push(status(&by_gate).map(|(s, c)| (s, c.map(str::to_owned))));
            if case.name == "valid" {
                let Seen::Answer { body, .. } = &by_gate else {
                    panic!("valid: pending")
                };
                assert_eq!(
                    &body[..],
                    format!("webhook msg_1 {NOW}:{{\"type\":\"invoice.paid\"}}").as_bytes()
                );
            }
        }
        let c = |k: &str| Some(k.to_owned());
        assert_eq!(
            seen,
            vec![
                Some((StatusCode::OK, None)),
                Some((StatusCode::UNAUTHORIZED, c("Replayed"))),
                Some((StatusCode::UNAUTHORIZED, c("InvalidSignature"))),
                Some((StatusCode::UNAUTHORIZED, c("MissingHeader"))),
                Some((StatusCode::PAYLOAD_TOO_LARGE, c("BodyTooLarge"))),
                None,
            ]
        );
    }
}
