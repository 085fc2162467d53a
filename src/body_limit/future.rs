use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use super::{PayloadTooLarge, body::Shared};
use crate::{
    drain::{self, Refusal, Refused},
    problem::{MakeRejection, Problem, ProblemType},
    request_id::RequestId,
};

pin_project! {
    /// The response future of [`BodyLimit`](super::BodyLimit). `ReqBody` is the request's
    /// body: a 413 by `Content-Length` within a small size reads it first (see
    /// [`BodyLimitLayer`](super::BodyLimitLayer)'s HTTP/2 notes).
    pub struct ResponseFuture<F, R, ReqBody> {
        #[pin]
        kind: Kind<F, R, ReqBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R, ReqBody> {
        // Boxed: the rejection path allocates anyway, and the common path's future stays small.
        Reject { rejected: Box<Rejected<R>> },
        // The same, once a small body still coming is read.
        Draining { refusal: Pin<Box<Refusal<ReqBody, Rejected<R>>>> },
        Inner {
            #[pin]
            future: F,
            // Set when the body may cross the limit while the inner service runs.
            watch: Option<Watch<R>>,
        },
    }
}

struct Rejected<R> {
    rejection: R,
    cause: PayloadTooLarge,
    origin: Origin,
}

/// Who the 413 answers: the request id, and whether the request is gRPC.
#[derive(Default)]
pub(crate) struct Origin {
    pub(crate) request_id: Option<RequestId>,
    pub(crate) grpc: bool,
}

pub(crate) struct Watch<R> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rejection: R,
}

impl<F, R, ReqBody: Body> ResponseFuture<F, R, ReqBody> {
    pub(crate) fn reject(
        rejection: R,
        cause: PayloadTooLarge,
        origin: Origin,
        body: Option<ReqBody>,
    ) -> Self {
        let rejected = Rejected {
            rejection,
            cause,
            origin,
        };
        let kind = match drain::refuse_with(body, rejected, drain::WITHIN) {
            Refused::Now(rejected) => Kind::Reject {
                rejected: Box::new(rejected),
            },
            Refused::Drain(refusal) => Kind::Draining { refusal },
        };
        Self { kind }
    }

    pub(crate) fn inner(future: F, watch: Option<Watch<R>>) -> Self {
        Self {
            kind: Kind::Inner { future, watch },
        }
    }
}

impl<R> Watch<R> {
    /// `res`, or a 413 when the body went past the limit while the inner service ran (the
    /// handler answered after, and most likely because of, that: whatever it said).
    pub(crate) fn check<B>(&self, res: Response<B>) -> Response<B>
    where
        R: MakeRejection<B>,
    {
        if !self.shared.exceeded() {
            return res;
        }
        let cause = PayloadTooLarge {
            limit: self.shared.limit(),
            content_length: self.shared.declared,
        };
        reject(
            &self.rejection,
            cause,
            Origin {
                request_id: self.shared.request_id.clone(),
                grpc: self.shared.grpc,
            },
        )
    }
}

pub(crate) fn reject<B, R: MakeRejection<B>>(
    rejection: &R,
    cause: PayloadTooLarge,
    origin: Origin,
) -> Response<B> {
    tracing::debug!(
        limit = cause.limit,
        content_length = cause.content_length,
        "body limit: request body too large"
    );
    let problem = Problem::new(ProblemType::PAYLOAD_TOO_LARGE)
        .with_detail(format!(
            "The request body is larger than the {} bytes this endpoint accepts.",
            cause.limit
        ))
        .with_request_id(origin.request_id)
        .with_grpc(origin.grpc);
    let mut res = crate::problem::refuse(rejection, problem);
    res.extensions_mut().insert(cause);
    res
}

impl<F, R, B, E, ReqBody> Future for ResponseFuture<F, R, ReqBody>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: MakeRejection<B>,
    ReqBody: Body,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Reject { rejected } => Poll::Ready(Ok(reject(
                &rejected.rejection,
                rejected.cause,
                std::mem::take(&mut rejected.origin),
            ))),
            KindProj::Draining { refusal } => {
                let mut rejected = ready!(refusal.as_mut().poll(cx));
                Poll::Ready(Ok(reject(
                    &rejected.rejection,
                    rejected.cause,
                    std::mem::take(&mut rejected.origin),
                )))
            }
            KindProj::Inner { future, watch } => {
                let res = ready!(future.poll(cx))?;
                match watch {
                    Some(watch) => Poll::Ready(Ok(watch.check(res))),
                    None => Poll::Ready(Ok(res)),
                }
            }
        }
    }
}

impl<F, R, ReqBody> fmt::Debug for ResponseFuture<F, R, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Reject { .. } => "reject",
            Kind::Draining { .. } => "reject (reading the body first)",
            Kind::Inner { watch: None, .. } => "inner",
            Kind::Inner { watch: Some(_), .. } => "inner (watching the body)",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
