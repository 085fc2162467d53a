//! Panics in the application answered with a 500 problem that leaks nothing.

use std::{
    fmt,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{
    problem::{DefaultRejection, MakeRejection, Problem, ProblemType},
    request_id::RequestId,
};

/// The typed cause of a 500 answered for a panic, in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Panicked;

/// Catches a panic of the inner service (in `call` or while polling its future) and answers
/// an `internal-error` problem (500) instead of dropping the connection. The panic message is
/// logged at `error`, never sent.
///
/// Unlike tower-http's `CatchPanicLayer`, the response body type is unchanged and nothing is
/// boxed, so it composes with the other layers of the stack at no cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer<R = DefaultRejection> {
    rejection: R,
}

impl CatchPanicLayer {
    /// The default: a problem+json 500.
    pub const fn new() -> Self {
        Self {
            rejection: DefaultRejection,
        }
    }
}

impl<R> CatchPanicLayer<R> {
    /// Replaces the 500 response.
    #[must_use]
    pub fn with_rejection<R2>(self, rejection: R2) -> CatchPanicLayer<R2> {
        CatchPanicLayer { rejection }
    }
}

impl<S, R: Clone> Layer<S> for CatchPanicLayer<R> {
    type Service = CatchPanic<S, R>;

    fn layer(&self, inner: S) -> CatchPanic<S, R> {
        CatchPanic {
            inner,
            rejection: self.rejection.clone(),
        }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanic<S, R = DefaultRejection> {
    inner: S,
    rejection: R,
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for CatchPanic<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: MakeRejection<ResBody> + Clone,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The inner future is written straight into the one we return: moving a large future
        // in and out of `catch_unwind`'s result costs a copy of it each time.
        let mut future = ResponseFuture {
            kind: Kind::Panicked,
            rejection: Some(self.rejection.clone()),
            grpc: crate::grpc::is_grpc(req.headers()),
        };
        let (inner, kind) = (&mut self.inner, &mut future.kind);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
            *kind = Kind::Running {
                future: inner.call(req),
            };
        })) {
            log_panic(&*payload);
        }
        future
    }
}

pub(super) fn log_panic(payload: &(dyn std::any::Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic payload>");
    tracing::error!(target: "battlement::audit", panic = message, "the service panicked; answered 500");
}

pin_project! {
    /// The response future of [`CatchPanic`].
    pub struct ResponseFuture<F, R> {
        #[pin]
        kind: Kind<F>,
        rejection: Option<R>,
        // The request is gRPC: the 500 is a trailers-only `INTERNAL`.
        grpc: bool,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Running { #[pin] future: F },
        Panicked,
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: MakeRejection<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let KindProj::Running { future } = this.kind.project() {
            match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                Ok(poll) => return poll,
                Err(payload) => log_panic(&*payload),
            }
        }
        // Panicked, in `call` or just now. The future is not polled again after this.
        let Some(rejection) = this.rejection.take() else {
            // Polled after completion, which `Future` leaves unspecified: stay pending
            // rather than panic in the layer that exists to stop panics.
            return Poll::Pending;
        };
        // The request-id layer polls us inside its scope; no clone of the id per request.
        let problem = Problem::new(ProblemType::INTERNAL_ERROR)
            .with_request_id(RequestId::current())
            .with_grpc(*this.grpc);
        let mut res = rejection.make_rejection(problem);
        res.extensions_mut().insert(Panicked);
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn panics_in_call_and_in_poll_become_500() {
        let svc = CatchPanicLayer::new().layer(service_fn(|req: Request<()>| async move {
            assert!(req.uri().path() != "/boom", "secret internals");
            Ok::<_, std::convert::Infallible>(Response::new(Bytes::new()))
        }));
        let ok = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let req = Request::builder().uri("/boom").body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.extensions().get::<Panicked>().is_some());
        assert!(!String::from_utf8_lossy(res.body()).contains("secret"));

        #[derive(Clone)]
        struct PanicInCall;
        impl Service<Request<()>> for PanicInCall {
            type Response = Response<Bytes>;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<Response<Bytes>, Self::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                panic!("in call")
            }
        }
        let res = CatchPanicLayer::new()
            .layer(PanicInCall)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
