//! The response future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::Service;

use super::{
    headers::HeaderSet,
    layer::{ResponseInfo, Shared},
    service::{Batch, decided},
    store::RateLimitStore,
};
use crate::{
    drain::{self, Refusal, Refused},
    problem::MakeRejection,
};

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S, ReqBody, St, R>
    where
        S: Service<Request<ReqBody>>,
        St: RateLimitStore,
    {
        #[pin]
        kind: Kind<S, ReqBody, St, R>,
    }
}

pin_project! {
    #[project = KindProj]
    pub(crate) enum Kind<S, ReqBody, St, R>
    where
        S: Service<Request<ReqBody>>,
        St: RateLimitStore,
    {
        // Admitted: the inner service runs; headers and the adjustment are applied after.
        Inner {
            #[pin]
            fut: S::Future,
            headers: Option<HeaderSet>,
            adjust: Option<Box<Adjust<St, R>>>,
        },
        // A store doing I/O is deciding (boxed: only stores doing I/O get here).
        Pending {
            #[pin]
            decision: St::Future,
            waiting: Option<Box<Waiting<S, ReqBody, St, R>>>,
        },
        // Refused (or misconfigured) without calling the inner service.
        Rejected {
            res: Option<S::Response>,
        },
        // The same, once a small body still coming is read (boxed: only such refusals get
        // here).
        Draining {
            refusal: Pin<Box<Refusal<ReqBody, S::Response>>>,
        },
    }
}

/// What an admitted request keeps to adjust its charge after the response.
pub(crate) type Adjust<St, R> = (Arc<Shared<St, R>>, Batch);

/// What a request waiting for an I/O store keeps.
pub(crate) struct Waiting<S, ReqBody, St, R> {
    svc: S,
    req: Request<ReqBody>,
    batch: Batch,
    shared: Arc<Shared<St, R>>,
}

impl<S, ReqBody, St, R> Kind<S, ReqBody, St, R>
where
    S: Service<Request<ReqBody>>,
    St: RateLimitStore,
{
    pub(crate) fn passed(
        fut: S::Future,
        headers: Option<HeaderSet>,
        adjust: Option<Box<Adjust<St, R>>>,
    ) -> Self {
        Self::Inner {
            fut,
            headers,
            adjust,
        }
    }

    pub(crate) fn rejected(res: S::Response, req: Request<ReqBody>) -> Self
    where
        ReqBody: Body,
    {
        let (parts, body) = req.into_parts();
        match drain::refuse(&parts, body, res, drain::WITHIN) {
            Refused::Now(res) => Self::Rejected { res: Some(res) },
            Refused::Drain(refusal) => Self::Draining { refusal },
        }
    }

    pub(crate) fn pending(
        decision: St::Future,
        svc: S,
        req: Request<ReqBody>,
        batch: Batch,
        shared: Arc<Shared<St, R>>,
    ) -> Self {
        Self::Pending {
            decision,
            waiting: Some(Box::new(Waiting {
                svc,
                req,
                batch,
                shared,
            })),
        }
    }
}

impl<S, ReqBody, St, R> ResponseFuture<S, ReqBody, St, R>
where
    S: Service<Request<ReqBody>>,
    St: RateLimitStore,
{
    pub(crate) fn new(kind: Kind<S, ReqBody, St, R>) -> Self {
        Self { kind }
    }
}

impl<S, ReqBody, ResBody, St, R> Future for ResponseFuture<S, ReqBody, St, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
    St: RateLimitStore,
    R: MakeRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Inner {
                    fut,
                    headers,
                    adjust,
                } => {
                    let mut res = ready!(fut.poll(cx))?;
                    if let Some(h) = headers.take() {
                        h.apply(res.headers_mut());
                    }
                    if let Some(adjust) = adjust.take() {
                        apply_adjustment(&adjust.0, &adjust.1, &res);
                    }
                    return Poll::Ready(Ok(res));
                }
                KindProj::Pending { decision, waiting } => {
                    let result = ready!(decision.poll(cx));
                    // `waiting` is taken only here, and the state moves on at once: it is there
                    // unless the future is polled after completion (`crate::future`'s policy:
                    // stay pending).
                    let Some(mut w) = waiting.take() else {
                        return Poll::Pending;
                    };
                    let next = decided(&w.shared, &mut w.svc, w.req, w.batch, result);
                    kind.set(next);
                }
                KindProj::Rejected { res } => {
                    // Taken once, when the future completes; polled again it stays pending
                    // (`crate::future`'s policy).
                    return match res.take() {
                        Some(res) => Poll::Ready(Ok(res)),
                        None => Poll::Pending,
                    };
                }
                KindProj::Draining { refusal } => return refusal.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

pub(crate) fn apply_adjustment<St: RateLimitStore, R, B>(
    shared: &Shared<St, R>,
    batch: &Batch,
    res: &Response<B>,
) {
    let Some(adjust) = &shared.adjust else { return };
    let info = ResponseInfo {
        status: res.status(),
        headers: res.headers(),
        extensions: res.extensions(),
    };
    let Some(real) = adjust(&info) else { return };
    let delta = i64::try_from(real)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(batch.cost()).unwrap_or(i64::MAX));
    if delta != 0 {
        shared
            .store
            .adjust(batch.checks(), delta, shared.clock.now_ns());
    }
}
