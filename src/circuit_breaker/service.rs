//! The service.

use std::{
    fmt,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response, header};
use tower::{BoxError, Service};

use super::{
    breaker::{Breaker, CircuitOpen},
    classify::{ClassifyResponse, DefaultClassifier},
    future::ResponseFuture,
    layer::{Client, Server},
    registry::SelectBreaker,
};
use crate::problem::{MakeRejection, Problem, ProblemType};

/// A service guarded by a circuit breaker. Made by [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
#[derive(Clone)]
pub struct CircuitBreaker<S, P = Breaker, C = DefaultClassifier, M = Client> {
    inner: S,
    select: P,
    classifier: C,
    mode: M,
}

impl<S: fmt::Debug, P: fmt::Debug, C, M: fmt::Debug> fmt::Debug for CircuitBreaker<S, P, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("select", &self.select)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<S, P, C, M> CircuitBreaker<S, P, C, M> {
    pub(crate) fn new(inner: S, select: P, classifier: C, mode: M) -> Self {
        Self {
            inner,
            select,
            classifier,
            mode,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, P, C, Client>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    P: SelectBreaker<ReqBody>,
    C: ClassifyResponse<ResBody, S::Error> + Clone,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, CircuitOpen>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.select.select(&req).try_acquire() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}

impl<S, P, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, P, C, Server<R>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: SelectBreaker<ReqBody>,
    C: ClassifyResponse<ResBody, S::Error> + Clone,
    R: MakeRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, Response<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.select.select(&req).try_acquire() {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => ResponseFuture::rejected(open_response(
                &self.mode.rejection,
                open,
                req.extensions(),
                req.headers(),
            )),
        }
    }
}

/// The server-side breaker's answer while it is open: a `service-unavailable` problem (503)
/// with `Retry-After`, the [`CircuitOpen`] in its extensions (shared with the stack's engine).
pub(crate) fn open_response<B, R: MakeRejection<B>>(
    rejection: &R,
    open: CircuitOpen,
    extensions: &http::Extensions,
    headers: &http::HeaderMap,
) -> Response<B> {
    let problem = Problem::new(ProblemType::SERVICE_UNAVAILABLE)
        .with_detail(
            "This endpoint is temporarily unavailable; retry after the delay in Retry-After.",
        )
        .with_request_id_from(extensions)
        .for_request(headers)
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(open.retry_after_secs()),
        );
    let mut res = crate::problem::refuse(rejection, problem);
    res.extensions_mut().insert(open);
    res
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::HeaderValue;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{circuit_breaker::CircuitBreakerLayer, request_id::RequestId};

    #[tokio::test]
    async fn rejection_carries_the_request_id() {
        let breaker = Breaker::new(crate::circuit_breaker::BreakerConfig::default()).unwrap();
        breaker.force_open();
        let svc = tower::Layer::layer(
            &CircuitBreakerLayer::new(breaker).server(),
            service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Bytes::new()))
            }),
        );
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestId::from_validated(HeaderValue::from_static(
                "req-42",
            )));
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[header::RETRY_AFTER], "30");
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v["request_id"], "req-42");
        assert_eq!(v["status"], 503);
    }
}
