//! The response future.

use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, Response};
use pin_project_lite::pin_project;

use super::core::Apply;

pin_project! {
    /// The response future of [`CorsService`](super::CorsService).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Pass {
            #[pin]
            future: F,
            apply: Option<Apply>,
        },
        Preflight {
            headers: HeaderMap,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn pass(future: F, apply: Apply) -> Self {
        Self {
            kind: Kind::Pass {
                future,
                apply: Some(apply),
            },
        }
    }

    pub(super) fn preflight(headers: HeaderMap) -> Self {
        Self {
            kind: Kind::Preflight { headers },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Pass { .. } => "Pass",
            Kind::Preflight { .. } => "Preflight",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Pass { future, apply } => {
                let mut res = ready!(future.poll(cx))?;
                if let Some(apply) = apply.take() {
                    apply.apply(res.headers_mut());
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Preflight { headers } => {
                // 200 OK, an empty body: tower-http's preflight answer. `take` leaves an empty
                // map, which does not allocate.
                let mut res = Response::new(B::default());
                *res.headers_mut() = mem::take(headers);
                Poll::Ready(Ok(res))
            }
        }
    }
}
