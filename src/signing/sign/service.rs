//! [`SignRequest`]: the client service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::Request;
use http_body::Body;
use tower::Service;

use super::{future::ResponseFuture, layer::Signer};
use crate::signing::{
    body::{BufferedBody, Collect},
    digest::Hasher,
    error::{SignError, SignErrorKind},
};

/// The service made by [`SignRequestLayer`](super::SignRequestLayer).
pub struct SignRequest<S> {
    pub(crate) inner: S,
    pub(crate) signer: Arc<Signer>,
}

impl<S: Clone> Clone for SignRequest<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            signer: self.signer.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SignRequest<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignRequest")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for SignRequest<S>
where
    S: Service<Request<BufferedBody>> + Clone,
    S::Error: Into<tower::BoxError>,
    B: Body,
    B::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let limit = self.signer.body_limit;
        if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > limit) {
            return ResponseFuture::failed(SignError::new(SignErrorKind::BodyTooLarge));
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let hasher = Some(Hasher::new(self.signer.digest));
        ResponseFuture::collect(
            body,
            Collect::new(limit, hasher),
            inner,
            parts,
            self.signer.clone(),
        )
    }
}
