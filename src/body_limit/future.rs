use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{PayloadTooLarge, body::Shared};
use crate::{
    problem::{MakeRejection, Problem, ProblemType},
    request_id::RequestId,
};

pin_project! {
    /// The response future of [`BodyLimit`](super::BodyLimit).
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R> {
        // Boxed: the rejection path allocates anyway, and the common path's future stays small.
        Reject { rejected: Box<Rejected<R>> },
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
    request_id: Option<RequestId>,
}

pub(crate) struct Watch<R> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rejection: R,
}

impl<F, R> ResponseFuture<F, R> {
    pub(crate) fn reject(
        rejection: R,
        cause: PayloadTooLarge,
        request_id: Option<RequestId>,
    ) -> Self {
        Self {
            kind: Kind::Reject {
                rejected: Box::new(Rejected {
                    rejection,
                    cause,
                    request_id,
                }),
            },
        }
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
        reject(&self.rejection, cause, self.shared.request_id.clone())
    }
}

pub(crate) fn reject<B, R: MakeRejection<B>>(
    rejection: &R,
    cause: PayloadTooLarge,
    request_id: Option<RequestId>,
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
        .with_request_id(request_id);
    let mut res = crate::problem::refuse(rejection, problem);
    res.extensions_mut().insert(cause);
    res
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: MakeRejection<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Reject { rejected } => Poll::Ready(Ok(reject(
                &rejected.rejection,
                rejected.cause,
                rejected.request_id.take(),
            ))),
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

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Reject { .. } => "reject",
            Kind::Inner { watch: None, .. } => "inner",
            Kind::Inner { watch: Some(_), .. } => "inner (watching the body)",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
