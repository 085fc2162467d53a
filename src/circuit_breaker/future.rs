//! The response future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::{
    breaker::{CircuitOpen, Permit},
    classify::ClassifyResponse,
};

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker).
    ///
    /// `J` is what a rejection holds: a [`CircuitOpen`] in client mode, the 503 response in
    /// server mode.
    pub struct ResponseFuture<F, C, J> {
        #[pin]
        kind: Kind<F, C, J>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C, J> {
        Called {
            #[pin]
            fut: F,
            // Dropped unrecorded (the future was cancelled) it counts as ignored.
            permit: Option<Permit>,
            classifier: C,
        },
        Rejected {
            rejection: Option<J>,
        },
    }
}

impl<F, C, J> ResponseFuture<F, C, J> {
    pub(crate) fn called(fut: F, permit: Permit, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                permit: Some(permit),
                classifier,
            },
        }
    }

    pub(crate) fn rejected(rejection: J) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<F, C, J> fmt::Debug for ResponseFuture<F, C, J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, C, ResBody, E> Future for ResponseFuture<F, C, CircuitOpen>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    C: ClassifyResponse<ResBody, E>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                permit,
                classifier,
            } => {
                let res = ready!(fut.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(classifier.classify(res.as_ref()));
                }
                Poll::Ready(res.map_err(Into::into))
            }
            // Polled after completion: stays pending (`crate::future`'s policy).
            KindProj::Rejected { rejection } => match rejection.take() {
                Some(open) => Poll::Ready(Err(Box::new(open))),
                None => Poll::Pending,
            },
        }
    }
}

impl<F, C, ResBody, E> Future for ResponseFuture<F, C, Response<ResBody>>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    C: ClassifyResponse<ResBody, E>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                fut,
                permit,
                classifier,
            } => {
                let res = ready!(fut.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(classifier.classify(res.as_ref()));
                }
                Poll::Ready(res)
            }
            // Polled after completion: stays pending (`crate::future`'s policy).
            KindProj::Rejected { rejection } => match rejection.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
        }
    }
}
