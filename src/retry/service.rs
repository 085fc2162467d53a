//! The retry service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower::Service;

use super::{
    ClassifyError, DefaultClassifyError, ReplayBody, RetryError, RetryErrorKind, RetryLayer,
    RetryPolicy,
    error::BoxError,
    future::{ResponseFuture, Template},
    layer::Config,
};

/// Sends a failed request again, after a jittered backoff and within a budget.
///
/// Made by [`RetryLayer`]; see the [module docs](super). The inner service receives
/// `Request<ReplayBody<B>>`. Cloning is an `Arc` bump plus a clone of the inner service.
pub struct Retry<S, C = DefaultClassifyError> {
    inner: S,
    config: Arc<Config<C>>,
}

impl<S> Retry<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self::from_config(inner, Arc::new(Config::new(policy, DefaultClassifyError)))
    }

    /// A [`RetryLayer`] with `policy`.
    pub fn layer(policy: RetryPolicy) -> RetryLayer {
        RetryLayer::new(policy)
    }
}

impl<S, C> Retry<S, C> {
    pub(crate) fn from_config(inner: S, config: Arc<Config<C>>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the retry service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.config.policy)
            .finish_non_exhaustive()
    }
}

impl<S, B, ResBody, C> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    C: ClassifyError,
{
    type Response = Response<ResBody>;
    type Error = RetryError;
    type Future = ResponseFuture<S, B, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RetryError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| RetryError::new(RetryErrorKind::NotRetryable, 0, e.into()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let policy = &self.config.policy;
        if let Some(budget) = &policy.budget {
            budget.deposit();
        }
        let (parts, body) = req.into_parts();
        let replay = if policy.backoff.max_retries() > 0 && policy.allows(&parts) {
            ReplayBody::new(body, policy.body_limit)
        } else {
            (ReplayBody::once(body), None)
        };
        match replay {
            (body, Some(replayer)) => {
                let template = Template::new(&parts);
                let future = service.call(Request::from_parts(parts, body));
                ResponseFuture::retrying(future, service, self.config.clone(), template, replayer)
            }
            (body, None) => ResponseFuture::once(service.call(Request::from_parts(parts, body))),
        }
    }
}
