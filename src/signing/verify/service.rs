//! [`VerifySignature`]: the service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::{future::ResponseFuture, layer::VerifyShared};
use crate::{
    problem::MakeRejection,
    signing::{body::BufferedBody, gate, replay::ReplayStore},
};

/// The service made by [`VerifySignatureLayer`](super::VerifySignatureLayer).
pub struct VerifySignature<S, R, St> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<VerifyShared<St>>,
    pub(crate) rejection: R,
}

impl<S: Clone, R: Clone, St> Clone for VerifySignature<S, R, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            rejection: self.rejection.clone(),
        }
    }
}

impl<S: fmt::Debug, R, St> fmt::Debug for VerifySignature<S, R, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifySignature")
            .field("inner", &self.inner)
            .field("policy", &self.shared.verifier.policy)
            .finish_non_exhaustive()
    }
}

impl<S, R, St, B, ResBody> Service<Request<B>> for VerifySignature<S, R, St>
where
    S: Service<Request<BufferedBody>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<tower::BoxError>,
    R: MakeRejection<ResBody> + Clone,
    St: ReplayStore,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture::new(
            gate::begin(&self.shared, &self.rejection, req),
            &mut self.inner,
        )
    }
}
