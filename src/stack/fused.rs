//! The four outer default parts of the server stack (request id, span/audit/metrics, panic
//! → 500, security headers) as one service with one response future.
//!
//! Composed as four layers, each of them moves the request once more, nests the inner future
//! in its own (which the caller then moves again), polls it through one more frame, and the
//! security headers and the request id each make a pass over the response headers. Fused,
//! the request is moved once, the future is one frame, and the response gets its headers in
//! one pass. The behaviour is that of the four layers in that order, which
//! `tests/stack_fused.rs` checks response by response against the composition.

use std::{
    fmt,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Span;

use super::{
    observe::{self, Labels, ObserveLayer},
    panic::{Panicked, log_panic},
};
use crate::{
    problem::{DefaultRejection, MakeRejection, Problem, ProblemType},
    request_id::{
        self, DefaultMakeRequestId, DefaultValidateRequestId, Enter, RequestId, SetRequestIdLayer,
    },
    security_headers::{CspNonce, Plan, SecurityHeadersLayer, is_https},
};

type IdConfig = request_id::Config<DefaultMakeRequestId, DefaultValidateRequestId>;

struct Parts {
    request_id: IdConfig,
    observe: Arc<observe::Shared>,
    plan: Arc<Plan>,
}

/// [`SetRequestIdLayer`], [`ObserveLayer`], [`CatchPanicLayer`](super::CatchPanicLayer) and
/// [`SecurityHeadersLayer`], in that order (outermost first), as one layer: see the module
/// docs. Made by [`ServerStack`](super::ServerStack) when all four are on.
#[derive(Clone)]
#[doc(hidden)]
pub struct FusedLayer {
    parts: Arc<Parts>,
}

impl FusedLayer {
    pub(super) fn new(
        request_id: &SetRequestIdLayer,
        observe: &ObserveLayer,
        security_headers: &SecurityHeadersLayer,
    ) -> Self {
        Self {
            parts: Arc::new(Parts {
                request_id: request_id.config.clone(),
                observe: observe.shared.clone(),
                plan: security_headers.plan.clone(),
            }),
        }
    }
}

impl fmt::Debug for FusedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FusedLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for FusedLayer {
    type Service = Fused<S>;

    fn layer(&self, inner: S) -> Fused<S> {
        Fused {
            inner,
            parts: self.parts.clone(),
        }
    }
}

/// The service of [`FusedLayer`].
#[doc(hidden)]
pub struct Fused<S> {
    inner: S,
    parts: Arc<Parts>,
}

impl<S: Clone> Clone for Fused<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            parts: self.parts.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Fused<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fused")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Fused<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = FusedFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let parts = &*self.parts;
        // Request id: resolved, in the request's header and extensions.
        let id = parts.request_id.resolve(&mut req);
        req.extensions_mut().insert(id.clone());
        let id_span = request_id::request_span(&id);
        let entered = id_span.enter();
        // Span, redaction, metric labels.
        let (span, labels) = parts.observe.begin(&mut req);
        let entered_inner = span.enter();
        parts.observe.log_headers(&req);
        let start = parts.observe.timed(&span).then(Instant::now);
        // Security headers: the scheme for HSTS, the CSP nonce.
        let plan = &*parts.plan;
        let https = plan.needs_scheme() && is_https(&req, plan);
        let nonce = if plan.nonce {
            let nonce = CspNonce::generate();
            req.extensions_mut().insert(nonce);
            Some(nonce)
        } else {
            None
        };
        // The inner future is written straight into the one returned (no move in and out of
        // `catch_unwind`'s result).
        let mut future = FusedFuture {
            state: State::Panicked,
            id: Some(id),
            spans: if id_span.is_none() && span.is_none() {
                None
            } else {
                Some(Box::new([id_span.clone(), span.clone()]))
            },
            start,
            labels,
            parts: self.parts.clone(),
            https,
            nonce,
        };
        let (inner, state) = (&mut self.inner, &mut future.state);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
            *state = State::Running {
                future: inner.call(req),
            };
        })) {
            log_panic(&*payload);
        }
        drop(entered_inner);
        drop(entered);
        future
    }
}

pin_project! {
    /// The response future of [`Fused`].
    #[doc(hidden)]
    pub struct FusedFuture<F> {
        #[pin]
        state: State<F>,
        // The request's id: taken out while the inner future is polled (it is then the
        // current one), and by the response.
        id: Option<RequestId>,
        // The request-id span and the request span, when there is a subscriber at INFO.
        spans: Option<Box<[Span; 2]>>,
        start: Option<Instant>,
        labels: Option<Labels>,
        parts: Arc<Parts>,
        https: bool,
        nonce: Option<CspNonce>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        Panicked,
        Done,
    }
}

impl<F> fmt::Debug for FusedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FusedFuture")
            .field("id", &self.id)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for FusedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (id_span, span) = match this.spans.as_deref() {
            Some([a, b]) => (a, b),
            None => (&NONE, &NONE),
        };
        let _entered = id_span.enter();
        let _entered_inner = span.enter();
        // `Some(Ok(..))`: the inner service's answer; `Some(Err(()))`: it panicked.
        let polled = match this.state.as_mut().project() {
            StateProj::Running { future } => {
                let _scope = Enter::new(this.id);
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(out)) => Some(Ok(out)),
                    Err(payload) => {
                        log_panic(&*payload);
                        Some(Err(()))
                    }
                }
            }
            StateProj::Panicked => Some(Err(())),
            // Polled after completion, which `Future` leaves unspecified: stay pending
            // rather than panic in the layer that exists to stop panics.
            StateProj::Done => None,
        };
        let out = match polled {
            None => return Poll::Pending,
            Some(Ok(Ok(mut res))) => {
                // The security headers (not on a panic's 500: that layer sits inside the
                // panic catcher).
                this.parts
                    .plan
                    .apply(res.headers_mut(), *this.https, this.nonce.as_ref());
                Ok(res)
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(())) => {
                this.state.set(State::Done);
                let problem =
                    Problem::new(ProblemType::INTERNAL_ERROR).with_request_id(this.id.clone());
                let mut res: Response<B> = DefaultRejection.make_rejection(problem);
                res.extensions_mut().insert(Panicked);
                Ok(res)
            }
        };
        if let Some(start) = *this.start {
            observe::finish(start, this.labels.as_ref(), &out);
        }
        let mut out = out;
        if let Ok(res) = &mut out
            && let Some(id) = this.id.take()
        {
            res.headers_mut().insert(
                this.parts.request_id.header.clone(),
                id.header_value().clone(),
            );
            res.extensions_mut().insert(id);
        }
        Poll::Ready(out)
    }
}

static NONE: Span = Span::none();

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::{net::TrustedProxies, security_headers::SecurityHeaders, stack::CatchPanicLayer};

    /// Panics in `call`, before any future exists.
    #[derive(Clone, Copy)]
    struct PanicInCall;

    impl<B> Service<Request<B>> for PanicInCall {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<B>) -> Self::Future {
            panic!("in call 7f3a")
        }
    }

    #[tokio::test]
    async fn a_panic_in_call_is_answered_as_the_composed_layers_do() {
        let (id, observe, headers) = (
            SetRequestIdLayer::new(),
            ObserveLayer::new([], TrustedProxies::none(), false, false),
            SecurityHeaders::api().layer(),
        );
        let fused = FusedLayer::new(&id, &observe, &headers).layer(PanicInCall);
        let composed = ServiceBuilder::new()
            .layer(id)
            .layer(observe)
            .layer(CatchPanicLayer::new())
            .layer(headers)
            .service(PanicInCall);
        let req = || {
            Request::builder()
                .header("x-request-id", "r-1")
                .body(())
                .unwrap()
        };
        let a = fused.oneshot(req()).await.unwrap();
        let b = composed.oneshot(req()).await.unwrap();
        assert_eq!(a.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(a.status(), b.status());
        assert_eq!(a.headers(), b.headers());
        assert!(a.extensions().get::<Panicked>().is_some());
        assert_eq!(a.headers()["x-request-id"], "r-1");
        let (a, b) = (
            a.into_body().collect().await.unwrap().to_bytes(),
            b.into_body().collect().await.unwrap().to_bytes(),
        );
        assert_eq!(a, b);
        assert!(!String::from_utf8_lossy(&a).contains("7f3a"));
    }
}
