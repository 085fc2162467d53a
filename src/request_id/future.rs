use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderName, Response};
use pin_project_lite::pin_project;
use tracing::Span;

use super::{RequestId, Scoped};

pin_project! {
    /// The response future of [`SetRequestId`](super::SetRequestId).
    ///
    /// Polls the inner future inside the request's span and with the request id as
    /// [`RequestId::current`](super::RequestId::current); then puts the id in the response's
    /// header and extensions.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Scoped<F>,
        span: Span,
        header: HeaderName,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, id: RequestId, span: Span, header: HeaderName) -> Self {
        Self {
            inner: Scoped::new(inner, id),
            span,
            header,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.as_mut().poll(cx))
        };
        let mut res = result?;
        if let Some(id) = this.inner.take_id() {
            res.headers_mut()
                .insert(this.header.clone(), id.header_value().clone());
            res.extensions_mut().insert(id);
        }
        Poll::Ready(Ok(res))
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}
