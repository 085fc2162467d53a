//! The response future.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::{
    headers::HeaderSet,
    layer::{ResponseInfo, Shared},
    service::{Batch, decided},
    store::RateLimitStore,
};
use crate::problem::MakeRejection;

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
            adjust: Option<(Arc<Shared<St, R>>, Batch)>,
        },
        // A store doing I/O is deciding.
        Pending {
            #[pin]
            decision: St::Future,
            svc: Option<S>,
            req: Option<Request<ReqBody>>,
            batch: Batch,
            shared: Arc<Shared<St, R>>,
        },
        // Refused (or misconfigured) without calling the inner service.
        Rejected {
            res: Option<S::Response>,
        },
    }
}

impl<S, ReqBody, St, R> Kind<S, ReqBody, St, R>
where
    S: Service<Request<ReqBody>>,
    St: RateLimitStore,
{
    pub(crate) fn passed(
        fut: S::Future,
        headers: Option<HeaderSet>,
        adjust: Option<(Arc<Shared<St, R>>, Batch)>,
    ) -> Self {
        Self::Inner {
            fut,
            headers,
            adjust,
        }
    }

    pub(crate) fn rejected(res: S::Response) -> Self {
        Self::Rejected { res: Some(res) }
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
            svc: Some(svc),
            req: Some(req),
            batch,
            shared,
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
                    if let Some((shared, batch)) = adjust.take() {
                        apply_adjustment(&shared, &batch, &res);
                    }
                    return Poll::Ready(Ok(res));
                }
                KindProj::Pending {
                    decision,
                    svc,
                    req,
                    batch,
                    shared,
                } => {
                    let result = ready!(decision.poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        // Only reachable if polled after a panic in this branch.
                        panic!("rate_limit::ResponseFuture polled after completion");
                    };
                    let next = decided(shared, &mut svc, req, *batch, result);
                    kind.set(next);
                }
                KindProj::Rejected { res } => {
                    let res = res
                        .take()
                        .expect("rate_limit::ResponseFuture polled after completion");
                    return Poll::Ready(Ok(res));
                }
            }
        }
    }
}

fn apply_adjustment<St: RateLimitStore, R, B>(
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
