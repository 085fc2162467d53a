//! A deadline on the application's answer, with a 503 problem past it, or a 408 when the
//! request's body is what keeps it waiting.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::{
    body_limit::{Handle, Shared},
    grpc::Code,
    problem::{DefaultRejection, MakeRejection, Problem, ProblemType, refuse},
    request_id::RequestId,
};

/// The typed cause of a 503 answered for a timeout, in the response extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimedOut {
    /// The deadline that passed.
    pub after: Duration,
}

/// The typed cause of a 408 answered for a timeout, in the response extensions: the deadline
/// passed while the request body was still on its way (the client stopped sending it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyTimedOut {
    /// The deadline that passed.
    pub after: Duration,
}

/// Answers a `service-unavailable` problem (503) when the inner service has not answered
/// within the timeout, dropping its future (which cancels the handler at its next `.await`).
///
/// Only the time to the response head counts; a streamed response body is not timed. Uses
/// tokio's timer, so tests can pause time.
///
/// # A body the client stops sending
///
/// Inside a [`BodyLimitLayer`](crate::body_limit::BodyLimitLayer) the timeout sees the
/// request body: when the deadline passes while whoever reads the body (the handler, or a
/// layer that buffers it, such as signature verification) waits for bytes the client has not
/// sent, the client is at fault. The answer is then a `request-timeout` problem (408) with
/// [`BodyTimedOut`] in its extensions, `Connection: close` over HTTP/1 (the rest of the body
/// would otherwise be read as the next request), and the [`Refused`](crate::problem::Refused)
/// marker, so that a circuit breaker does not count it. A handler that is merely slow (its
/// body read whole, or never read) still gets the 503, which a breaker counts.
///
/// Put the timeout outside every layer that buffers the body, so that their reads are under
/// the deadline too: [`ServerStack`](super::ServerStack) does.
///
/// ```
/// use std::{
///     pin::Pin,
///     task::{Context, Poll},
///     time::Duration,
/// };
///
/// use axum::{Router, body::Body, routing::post};
/// use battlement::{body_limit::BodyLimitLayer, stack::RequestTimeoutLayer};
/// use bytes::Bytes;
/// use http::{Request, StatusCode, header};
/// use http_body::Frame;
/// use tower::ServiceExt;
///
/// /// Ten of the hundred declared bytes, then nothing.
/// struct Stalled(Option<Bytes>);
///
/// impl http_body::Body for Stalled {
///     type Data = Bytes;
///     type Error = std::convert::Infallible;
///
///     fn poll_frame(
///         self: Pin<&mut Self>,
///         _: &mut Context<'_>,
///     ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
///         match self.get_mut().0.take() {
///             Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
///             None => Poll::Pending,
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let app = Router::new()
///     .route("/upload", post(|body: String| async move { body }))
///     .layer(RequestTimeoutLayer::new(Duration::from_secs(1)))
///     .layer(BodyLimitLayer::new(1024));
/// let req = Request::post("/upload")
///     .header(header::CONTENT_LENGTH, "100")
///     .body(Body::new(Stalled(Some(Bytes::from_static(b"0123456789")))))
///     .unwrap();
/// let res = app.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
/// assert_eq!(res.headers()[header::CONNECTION], "close");
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestTimeoutLayer<R = DefaultRejection> {
    timeout: Duration,
    rejection: R,
}

impl RequestTimeoutLayer {
    /// A deadline of `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            rejection: DefaultRejection,
        }
    }
}

impl<R> RequestTimeoutLayer<R> {
    /// Replaces the 503 response.
    #[must_use]
    pub fn with_rejection<R2>(self, rejection: R2) -> RequestTimeoutLayer<R2> {
        RequestTimeoutLayer {
            timeout: self.timeout,
            rejection,
        }
    }

    /// The deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, R: Clone> Layer<S> for RequestTimeoutLayer<R> {
    type Service = RequestTimeout<S, R>;

    fn layer(&self, inner: S) -> RequestTimeout<S, R> {
        RequestTimeout {
            inner,
            timeout: self.timeout,
            rejection: self.rejection.clone(),
        }
    }
}

/// The service of [`RequestTimeoutLayer`].
#[derive(Clone, Debug)]
pub struct RequestTimeout<S, R = DefaultRejection> {
    inner: S,
    timeout: Duration,
    rejection: R,
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequestTimeout<S, R>
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
        // An outer body limit's view of the body (only for a body still to come).
        let body = req.extensions().get::<Handle>().map(|h| h.0.clone());
        let http1 = req.version() <= Version::HTTP_11;
        let grpc = crate::grpc::is_grpc(req.headers());
        // A gRPC client's own deadline, when shorter.
        let after = if grpc {
            deadline_for(req.headers(), self.timeout)
        } else {
            self.timeout
        };
        ResponseFuture {
            // The deadline counts from now; the timer itself is only armed if the inner
            // future does not answer at once (most do not wait at all).
            deadline: Instant::now() + after,
            inner: self.inner.call(req),
            sleep: None,
            after,
            grpc,
            rejection: Some(self.rejection.clone()),
            body,
            http1,
        }
    }
}

pin_project! {
    /// The response future of [`RequestTimeout`].
    pub struct ResponseFuture<F, R> {
        #[pin]
        inner: F,
        // Boxed: made only when the answer is not there at once, and a tokio timer is large
        // (every move of the future would carry it).
        sleep: Option<Pin<Box<Sleep>>>,
        deadline: Instant,
        after: Duration,
        rejection: Option<R>,
        body: Option<Arc<Shared>>,
        http1: bool,
        grpc: bool,
    }
}

impl<F, R> fmt::Debug for ResponseFuture<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl<F, R, B, E> Future for ResponseFuture<F, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    R: MakeRejection<B>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.inner.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*this.deadline)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let Some(rejection) = this.rejection.take() else {
            return Poll::Pending;
        };
        // A refusal inside reads the body only to end the stream cleanly: its answer is
        // decided. Tell it to stop reading, and answer it.
        if let Some(body) = this.body.as_ref().filter(|b| b.draining()) {
            body.abandon();
            if let Poll::Ready(out) = this.inner.poll(cx) {
                return Poll::Ready(out);
            }
        }
        if this.body.as_ref().is_some_and(|b| b.waiting()) {
            return Poll::Ready(Ok(body_timed_out(
                &rejection,
                *this.after,
                *this.http1,
                *this.grpc,
            )));
        }
        Poll::Ready(Ok(timed_out(&rejection, *this.after, *this.grpc)))
    }
}

/// The deadline of a request: the configured one, or the client's `grpc-timeout` when it is
/// valid and shorter (a gRPC client's deadline covers the whole call; past it the client has
/// given up). One header lookup; nothing for a request without it.
pub(crate) fn deadline_for(headers: &HeaderMap, configured: Duration) -> Duration {
    headers
        .get(&crate::grpc::GRPC_TIMEOUT)
        .and_then(crate::grpc::parse_timeout)
        .map_or(configured, |client| client.min(configured))
}

/// The 503 of a request past its deadline of `after` (logged as an audit event); for gRPC
/// (`grpc`), a trailers-only `DEADLINE_EXCEEDED`.
pub(super) fn timed_out<B, R: MakeRejection<B>>(
    rejection: &R,
    after: Duration,
    grpc: bool,
) -> Response<B> {
    tracing::warn!(target: "battlement::audit", after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX), "request timed out");
    let problem = Problem::new(ProblemType::SERVICE_UNAVAILABLE)
        .with_detail("The request took too long; try again later.")
        .with_request_id(RequestId::current())
        .with_grpc(grpc)
        .with_grpc_code(Code::DeadlineExceeded);
    let mut res = rejection.make_rejection(problem);
    res.extensions_mut().insert(TimedOut { after });
    res
}

/// The 408 of a request past its deadline of `after` while its body was still on its way,
/// with `Connection: close` over HTTP/1 (`http1`); logged as an audit event.
#[cold]
pub(super) fn body_timed_out<B, R: MakeRejection<B>>(
    rejection: &R,
    after: Duration,
    http1: bool,
    grpc: bool,
) -> Response<B> {
    tracing::warn!(target: "battlement::audit", after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX), "request body timed out");
    let mut problem = Problem::new(ProblemType::REQUEST_TIMEOUT)
        .with_detail("The request body did not arrive in time.")
        .with_request_id(RequestId::current())
        .with_grpc(grpc);
    if http1 {
        // The rest of the body may still come: it must not be read as the next request.
        problem = problem.with_header(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let mut res = refuse(rejection, problem);
    res.extensions_mut().insert(BodyTimedOut { after });
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use tower::{ServiceExt, service_fn};

    #[tokio::test(start_paused = true)]
    async fn slow_answers_become_503() {
        let svc = RequestTimeoutLayer::new(Duration::from_secs(1)).layer(service_fn(
            |req: Request<()>| async move {
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Ok::<_, std::convert::Infallible>(Response::new(Bytes::new()))
            },
        ));
        let ok = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let req = Request::builder().uri("/slow").body(()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            res.extensions().get::<TimedOut>().unwrap().after,
            Duration::from_secs(1)
        );
    }
}
