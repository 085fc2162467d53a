//! [`CorsLayer`] and [`CorsService`].

use std::{
    fmt,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower::{Layer, Service};

use super::{Cors, ResponseFuture, core::Admit};

/// Answers CORS preflights and adds the CORS headers to every other response. See the
/// [module docs](super).
///
/// Cheap to clone: the [`Cors`] inside is an [`Arc`](std::sync::Arc).
#[derive(Clone, Debug)]
pub struct CorsLayer {
    cors: Cors,
}

impl CorsLayer {
    /// A layer applying `cors`.
    pub fn new(cors: Cors) -> Self {
        Self { cors }
    }
}

impl From<Cors> for CorsLayer {
    fn from(cors: Cors) -> Self {
        Self::new(cors)
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService {
            inner,
            cors: self.cors.clone(),
        }
    }
}

/// The service of [`CorsLayer`].
pub struct CorsService<S> {
    inner: S,
    cors: Cors,
}

impl<S> CorsService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, cors: Cors) -> Self {
        Self { inner, cors }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for CorsService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cors: self.cors.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CorsService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsService")
            .field("inner", &self.inner)
            .field("cors", &self.cors)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.cors.admit(req.method(), req.headers()) {
            Admit::Preflight(headers) => ResponseFuture::preflight(headers),
            Admit::Pass(apply) => ResponseFuture::pass(self.inner.call(req), apply),
        }
    }
}
