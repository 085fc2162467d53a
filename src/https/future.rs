use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::Response;
use pin_project_lite::pin_project;

use crate::future::{Answer, NoBody};

pin_project! {
    /// The response future of [`HttpsRedirect`](super::HttpsRedirect): the inner service's,
    /// or the redirect (or refusal) at once.
    pub struct ResponseFuture<F, B> {
        #[pin]
        answer: Answer<F, Response<B>, NoBody>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            answer: Answer::inner(future),
        }
    }

    pub(crate) fn ready(response: Response<B>) -> Self {
        Self {
            answer: Answer::ready(response),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().answer.poll(cx)
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("state", &self.answer.state())
            .finish()
    }
}
