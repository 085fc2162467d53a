//! The response future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{CspNonce, layer::Plan};

pin_project! {
    /// The response future of [`SetSecurityHeaders`](super::SetSecurityHeaders).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        plan: Arc<Plan>,
        https: bool,
        nonce: Option<CspNonce>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, plan: Arc<Plan>, https: bool, nonce: Option<CspNonce>) -> Self {
        Self {
            inner,
            plan,
            https,
            nonce,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("https", &self.https)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        this.plan
            .apply(res.headers_mut(), *this.https, this.nonce.as_ref());
        Poll::Ready(Ok(res))
    }
}
