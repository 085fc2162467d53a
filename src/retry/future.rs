//! The response future of [`Retry`](super::Retry).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll, ready},
    time::Duration,
};

use http::{Extensions, HeaderMap, Method, Request, Response, Uri, Version, request::Parts};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::Service;

use super::{
    ClassifyError, Delays, ReplayBody, RetryError, RetryErrorKind, body::Replayer, error::BoxError,
    layer::Config,
};

pin_project! {
    /// The response future of [`Retry`](super::Retry): the current attempt, or the backoff
    /// before the next one.
    pub struct ResponseFuture<S, B, C>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        kind: Kind<S::Future>,
        session: Option<Session<S, B, C>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Calling { #[pin] future: F },
        Sleeping { #[pin] sleep: Sleep },
        Readying,
    }
}

/// What a retried request keeps between attempts.
struct Session<S, B, C> {
    service: S,
    config: Arc<Config<C>>,
    template: Template,
    replay: Replayer<B>,
    delays: Option<Delays>,
    attempts: u32,
}

/// The parts of the request, to rebuild it for each attempt.
pub(crate) struct Template {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
}

impl Template {
    pub(crate) fn new(parts: &Parts) -> Self {
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
        }
    }

    fn request<B>(&self, body: B) -> Request<B> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        *req.extensions_mut() = self.extensions.clone();
        req
    }
}

enum Step<T> {
    Done(Result<T, RetryError>),
    Retry(Duration),
}

impl<S, B, C> ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>>,
{
    pub(crate) fn once(future: S::Future) -> Self {
        Self {
            kind: Kind::Calling { future },
            session: None,
        }
    }

    pub(crate) fn retrying(
        future: S::Future,
        service: S,
        config: Arc<Config<C>>,
        template: Template,
        replay: Replayer<B>,
    ) -> Self {
        Self {
            kind: Kind::Calling { future },
            session: Some(Session {
                service,
                config,
                template,
                replay,
                delays: None,
                attempts: 1,
            }),
        }
    }
}

impl<S, B, C, ResBody> Session<S, B, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    C: ClassifyError,
{
    /// Decides, after an attempt, between returning its outcome and waiting to retry.
    fn step(&mut self, result: Result<Response<ResBody>, S::Error>) -> Step<Response<ResBody>> {
        let attempts = self.attempts;
        let policy = &self.config.policy;
        let (outcome, hint) = match result {
            Ok(res)
                if policy.is_retryable_status(res.status())
                    || policy.is_retryable_grpc(res.status(), res.headers()) =>
            {
                let hint = policy.retry_after(res.headers());
                (Ok(res), hint)
            }
            Ok(res) => return Step::Done(Ok(res)),
            Err(err) => {
                let err: BoxError = err.into();
                if !self.config.classify.is_retryable(&*err) {
                    return Step::Done(Err(RetryError::new(
                        RetryErrorKind::NotRetryable,
                        attempts,
                        err,
                    )));
                }
                (Err(err), None)
            }
        };
        let give_up =
            |kind| Step::Done(outcome.map_err(|err| RetryError::new(kind, attempts, err)));
        if !self.replay.is_replayable() {
            return give_up(RetryErrorKind::RequestNotRetryable);
        }
        let config = &self.config;
        let delays = self.delays.get_or_insert_with(|| {
            let n = config.sessions.fetch_add(1, Ordering::Relaxed);
            policy.backoff.delays(config.seed.wrapping_add(n))
        });
        let Some(backoff) = delays.next() else {
            return give_up(RetryErrorKind::Exhausted);
        };
        if let Some(budget) = &policy.budget
            && !budget.try_withdraw()
        {
            return give_up(RetryErrorKind::BudgetExhausted);
        }
        let delay = hint.map_or(backoff, |d| d.min(policy.backoff.cap()));
        tracing::debug!(
            attempt = attempts,
            delay_ms = delay.as_millis() as u64,
            retry_after = hint.is_some(),
            "retrying request"
        );
        Step::Retry(delay)
    }

    fn next_request(&mut self) -> Request<ReplayBody<B>> {
        self.attempts += 1;
        self.template.request(self.replay.attempt())
    }
}

/// The session of a future past its first attempt.
fn session<T>(session: &mut Option<T>) -> &mut T {
    // `Sleeping` and `Readying` are only entered from a step of a session, so it is there.
    session
        .as_mut()
        .expect("a retry future waits only when it has a session")
}

impl<S, B, C, ResBody> Future for ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    C: ClassifyError,
{
    type Output = Result<Response<ResBody>, RetryError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let step = match this.kind.as_mut().project() {
                KindProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let Some(session) = this.session.as_mut() else {
                        return Poll::Ready(result.map_err(|err| {
                            RetryError::new(RetryErrorKind::RequestNotRetryable, 1, err.into())
                        }));
                    };
                    session.step(result)
                }
                KindProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.kind.set(Kind::Readying);
                    continue;
                }
                KindProj::Readying => {
                    let session = session(this.session);
                    match ready!(session.service.poll_ready(cx)) {
                        Ok(()) => {
                            let req = session.next_request();
                            let future = session.service.call(req);
                            this.kind.set(Kind::Calling { future });
                            continue;
                        }
                        Err(err) => session.step(Err(err)),
                    }
                }
            };
            match step {
                Step::Done(output) => return Poll::Ready(output),
                Step::Retry(delay) => this.kind.set(Kind::Sleeping {
                    sleep: tokio::time::sleep(delay),
                }),
            }
        }
    }
}

impl<S, B, C> fmt::Debug for ResponseFuture<S, B, C>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.session.as_ref().map_or(1, |s| s.attempts))
            .finish_non_exhaustive()
    }
}
