//! The response future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::drain::{self, Refusal, Refused};

pin_project! {
    /// The response future of [`ApiKey`](super::ApiKey): the inner service's, or a
    /// rejection (answered once a small request body still coming is read: see
    /// [`ApiKeyLayer`](super::ApiKeyLayer)'s HTTP/2 notes). `ReqBody` is the request's body.
    pub struct ResponseFuture<F, B, ReqBody> {
        #[pin]
        kind: Kind<F, B, ReqBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, ReqBody> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<B>> },
        // Boxed: only refusals of small bodies still coming get here.
        Draining { refusal: Pin<Box<Refusal<ReqBody, Response<B>>>> },
    }
}

impl<F, B, ReqBody: Body> ResponseFuture<F, B, ReqBody> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn rejected(
        response: Response<B>,
        head: &http::request::Parts,
        body: ReqBody,
    ) -> Self {
        let kind = match drain::refuse(head, body, response, drain::WITHIN) {
            Refused::Now(response) => Kind::Rejected {
                response: Some(response),
            },
            Refused::Drain(refusal) => Kind::Draining { refusal },
        };
        Self { kind }
    }
}

impl<F, B, E, ReqBody> Future for ResponseFuture<F, B, ReqBody>
where
    F: Future<Output = Result<Response<B>, E>>,
    ReqBody: Body,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled after completion: a contract violation by the caller; never resolve
                // twice.
                None => Poll::Pending,
            },
            KindProj::Draining { refusal } => refusal.as_mut().poll(cx).map(Ok),
        }
    }
}

impl<F, B, ReqBody> fmt::Debug for ResponseFuture<F, B, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Rejected { .. } => "rejected",
            Kind::Draining { .. } => "rejected (reading the body first)",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
