//! The response future shared by the verify and webhook layers: collect the body (bounded),
//! check it, check the replay store, then call the inner service.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use crate::{
    drain::{self, Refusal, Refused},
    problem::{MakeRejection, Problem, ProblemType},
    request_id::RequestId,
    signing::{
        body::{BufferedBody, Collect, CollectError},
        digest::ExpectedDigests,
        error::{SignatureError, SignatureErrorKind},
        replay::{ReplayCheck, ReplayStore},
        webhooks::{Prepared, WebhookCore, WebhookError, WebhookErrorKind},
    },
};

/// What to check once the whole body is in.
pub(crate) enum Finish {
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
pub(crate) fn reject<R, B>(
    rejection: &R,
    parts: &http::request::Parts,
    err: GateError,
) -> Response<B>
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

/// What the future needs once the body is in.
pub(crate) struct Pending<S, R, St> {
    pub(crate) inner: S,
    pub(crate) parts: Parts,
    pub(crate) rejection: R,
    pub(crate) finish: Finish,
    pub(crate) replay: Option<(String, Duration)>,
    pub(crate) store: Arc<St>,
    pub(crate) key_id: Option<Arc<str>>,
}

impl<S, R, St> Pending<S, R, St> {
    fn reject<B>(self, kind: GateKind) -> Response<B>
    where
        R: MakeRejection<B>,
    {
        let err = GateError::of(&self.finish, self.key_id.as_ref(), kind);
        reject(&self.rejection, &self.parts, err)
    }
}

pin_project! {
    /// Response future of [`VerifySignature`](super::VerifySignature) and
    /// [`VerifyWebhook`](crate::signing::webhooks::VerifyWebhook).
    pub struct ResponseFuture<S, B, St, R>
    where
        S: Service<Request<BufferedBody>>,
        St: ReplayStore,
    {
        #[pin]
        kind: Kind<S, B, S::Future, St::Future, R, S::Response, St>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B, F, SF, R, Res, St> {
        Done { response: Option<Res> },
        // Refused before the body was read; answered once a small body still coming is read
        // (boxed: only such refusals get here).
        Draining { refusal: Pin<Box<Refusal<B, Res>>> },
        Collect {
            #[pin]
            body: B,
            collect: Collect,
            pending: Option<Pending<S, R, St>>,
        },
        Replay {
            #[pin]
            fut: SF,
            pending: Option<Pending<S, R, St>>,
            body: Option<Bytes>,
        },
        Inner { #[pin] fut: F },
    }
}

impl<S, B, St, R> ResponseFuture<S, B, St, R>
where
    S: Service<Request<BufferedBody>>,
    St: ReplayStore,
{
    /// Refused before anything read `body`.
    pub(crate) fn rejected(response: S::Response, head: &http::request::Parts, body: B) -> Self
    where
        B: Body,
    {
        let kind = match drain::refuse(head, body, response, drain::WITHIN) {
            Refused::Now(response) => Kind::Done {
                response: Some(response),
            },
            Refused::Drain(refusal) => Kind::Draining { refusal },
        };
        Self { kind }
    }

    pub(crate) fn collect(body: B, collect: Collect, pending: Pending<S, R, St>) -> Self {
        Self {
            kind: Kind::Collect {
                body,
                collect,
                pending: Some(pending),
            },
        }
    }
}

fn call_inner<S, R, St>(pending: Pending<S, R, St>, body: Bytes) -> S::Future
where
    S: Service<Request<BufferedBody>>,
{
    let Pending {
        mut inner, parts, ..
    } = pending;
    // `inner` is the service that was made ready by `poll_ready` (swapped out in `call`).
    inner.call(Request::from_parts(parts, BufferedBody::new(body)))
}

impl<S, B, St, R, ResBody> Future for ResponseFuture<S, B, St, R>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>>,
    B: Body,
    B::Error: Into<tower::BoxError>,
    St: ReplayStore,
    R: MakeRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.kind.as_mut().project() {
                KindProj::Done { response } => {
                    // Polling a completed future is a caller bug (the `Future` contract).
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("ResponseFuture polled after completion")));
                }
                KindProj::Inner { fut } => return fut.poll(cx),
                KindProj::Draining { refusal } => return refusal.as_mut().poll(cx).map(Ok),
                KindProj::Collect {
                    body,
                    collect,
                    pending,
                } => {
                    let outcome = ready!(collect.poll_body(body, cx));
                    let Some(mut p) = pending.take() else {
                        unreachable!("pending state is present until the body is in")
                    };
                    match outcome {
                        Err(CollectError::TooLarge) => Kind::Done {
                            response: Some(p.reject(GateKind::TooLarge)),
                        },
                        Err(CollectError::Body(_)) => Kind::Done {
                            response: Some(p.reject(GateKind::Body)),
                        },
                        Ok(()) => {
                            let (bytes, hasher) = collect.finish();
                            let checked = match &p.finish {
                                Finish::Digest(None) => Ok(()),
                                Finish::Digest(Some(expected)) => {
                                    check_digests(expected, hasher, &bytes).map_err(|e| {
                                        let e = match &p.key_id {
                                            Some(id) => e.with_key_id(id.clone()),
                                            None => e,
                                        };
                                        GateError::Signature(e)
                                    })
                                }
                                Finish::Webhook(core, prepared) => core
                                    .verify_prepared(prepared, &bytes)
                                    .map_err(GateError::Webhook),
                            };
                            match checked {
                                Err(e) => Kind::Done {
                                    response: Some(reject(&p.rejection, &p.parts, e)),
                                },
                                Ok(()) => match p.replay.take() {
                                    Some((key, ttl)) => Kind::Replay {
                                        fut: p.store.check_and_insert(&key, ttl),
                                        pending: Some(p),
                                        body: Some(bytes),
                                    },
                                    None => Kind::Inner {
                                        fut: call_inner(p, bytes),
                                    },
                                },
                            }
                        }
                    }
                }
                KindProj::Replay { fut, pending, body } => {
                    let answer = ready!(fut.poll(cx));
                    let (Some(p), Some(bytes)) = (pending.take(), body.take()) else {
                        unreachable!("pending state is present until the store answers")
                    };
                    match answer {
                        Ok(ReplayCheck::Fresh) => Kind::Inner {
                            fut: call_inner(p, bytes),
                        },
                        Ok(ReplayCheck::Replayed) => Kind::Done {
                            response: Some(p.reject(GateKind::Replayed)),
                        },
                        Err(_) => Kind::Done {
                            response: Some(p.reject(GateKind::StoreUnavailable)),
                        },
                    }
                }
            };
            this.kind.set(next);
        }
    }
}

fn check_digests(
    expected: &ExpectedDigests,
    hasher: Option<crate::signing::digest::Hasher>,
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
        let mut h = crate::signing::digest::Hasher::new(e.alg);
        h.update(bytes);
        e.check(&h.finish())?;
    }
    Ok(())
}

impl<S, B, St, R> fmt::Debug for ResponseFuture<S, B, St, R>
where
    S: Service<Request<BufferedBody>>,
    St: ReplayStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
