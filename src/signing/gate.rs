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
//! ```ignore
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
use http::{Extensions, Request, Response, request::Parts};
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
            let res = reject(rejection, &parts.extensions, GateError::Signature(e));
            return Begin::Refuse(res, parts, body);
        }
    };
    let limit = shared.verifier.policy.body_limit;
    let key_id = checked.verified_key_id();
    if usize::try_from(hint.lower()).map_or(true, |n| n > limit) {
        let e = SignatureError::new(SignatureErrorKind::BodyTooLarge).with_key_id(key_id);
        let res = reject(rejection, &parts.extensions, GateError::Signature(e));
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
            let res = reject(rejection, &parts.extensions, GateError::Webhook(e));
            return Begin::Refuse(res, parts, body);
        }
    };
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > shared.body_limit) {
        let e = WebhookError::new(WebhookErrorKind::BodyTooLarge);
        let res = reject(rejection, &parts.extensions, GateError::Webhook(e));
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
pub(crate) fn reject<R, B>(rejection: &R, extensions: &Extensions, err: GateError) -> Response<B>
where
    R: MakeRejection<B>,
{
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
        .with_request_id_from(extensions);
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
        reject(&self.rejection, &self.parts.extensions, err)
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
    /// again after that is a caller bug and panics (the `Future` contract).
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
                StateProj::Done => panic!("signing gate polled after completion"),
                StateProj::Collect { body, collect } => {
                    let outcome = ready!(collect.poll_body(body, cx));
                    let (bytes, hasher) = collect.finish();
                    let mut check = resolve(this.state.as_mut(), this.check);
                    let refused = match outcome {
                        Err(CollectError::TooLarge) => Err(GateKind::TooLarge),
                        Err(CollectError::Body(_)) => Err(GateKind::Body),
                        Ok(()) => Ok(()),
                    };
                    if let Err(kind) = refused {
                        return Poll::Ready(Err(check.reject(kind)));
                    }
                    if let Err(e) = check.check_body(hasher, &bytes) {
                        let res = reject(&check.rejection, &check.parts.extensions, e);
                        return Poll::Ready(Err(res));
                    }
                    match check.replay.take() {
                        None => return Poll::Ready(Ok(check.pass(bytes))),
                        Some(r) => {
                            // The store's answer may be ready at once (the in-memory store
                            // always is): the loop polls it now.
                            let fut = r.store.check_and_insert(&r.key, r.ttl);
                            this.state.set(State::Replay { fut, bytes });
                            *this.check = Some(check);
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
