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

use crate::{drain, future::Answer};

pin_project! {
    /// The response future of [`ApiKey`](super::ApiKey): the inner service's, or a
    /// rejection (answered once a small request body still coming is read: see
    /// [`ApiKeyLayer`](super::ApiKeyLayer)'s HTTP/2 notes). `ReqBody` is the request's body.
    pub struct ResponseFuture<F, B, ReqBody> {
        #[pin]
        answer: Answer<F, Response<B>, ReqBody>,
    }
}

impl<F, B, ReqBody: Body> ResponseFuture<F, B, ReqBody> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            answer: Answer::inner(future),
        }
    }

    pub(crate) fn rejected(
        response: Response<B>,
        head: &http::request::Parts,
        body: ReqBody,
    ) -> Self {
        Self {
            answer: Answer::refused(drain::refuse(head, body, response, drain::WITHIN)),
        }
    }
}

impl<F, B, E, ReqBody> Future for ResponseFuture<F, B, ReqBody>
where
    F: Future<Output = Result<Response<B>, E>>,
    ReqBody: Body,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().answer.poll(cx)
    }
}

impl<F, B, ReqBody> fmt::Debug for ResponseFuture<F, B, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("state", &self.answer.state())
            .finish()
    }
}
