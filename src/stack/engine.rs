//! The stack's engine: every part of the server stack (request id, span/audit/metrics, panic
//! → 500, security headers, HTTPS redirect, CORS, body limit, per-address rate limit, the
//! breaker, timeout, API key, signature verification, per-principal rate limit), each of
//! them optional, as one service with one response future.
//!
//! Composed as up to fourteen layers, each of them moves the request once more, nests the
//! inner future in its own (which the caller then moves again), polls it through one more
//! frame; the rate limit puts its headers into the handler's header map (allocating it when
//! the handler set none), then the security headers copy that map into theirs, and the
//! timeout reads the clock once more; and a stack whose type has an `Either` per optional
//! layer makes every user's crate pay for its type. Here the request is moved once, the
//! future is one frame around the handler's, the clock is read once, the response gets its
//! headers in one pass, and the type is the same whatever is on. Each step calls the same
//! crate-private core the standalone layer calls (`Config::resolve`,
//! `observe::Shared::begin`/`finish`, `Plan::apply`, `https::answer`, `Cors::admit`,
//! `body_limit::admit`, `rate_limit::check`/`decide`, `Breaker::try_acquire` and
//! `open_response`, `timed_out`, `api_key::admit`, `signing::gate::begin`); a part that is
//! off is a `None` the engine skips. The behaviour is that of the layers that are on, in
//! that order (with the application's panics caught next to it as well, as
//! [`ServerStack`](super::ServerStack) composes them: a panic's 500 gets the rate-limit and
//! security headers), which `tests/stack_fused.rs` checks response by response against the
//! standalone layers composed by hand.

use std::{
    fmt,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};
use tracing::Span;

use super::{
    body::StackBody,
    observe::{self, Labels, ObserveLayer},
    panic::{CatchPanicLayer, Panicked, log_panic},
    replay::StackReplayStore,
    store::StackStore,
    timeout::{RequestTimeoutLayer, body_timed_out, timed_out},
};
use crate::{
    auth::api_key::{self, ApiKeyLayer, ApiKeys},
    body_limit::{self, Admitted, BodyLimitLayer, RequestBody, Watch},
    circuit_breaker::{self, Breaker, ClassifyResponse, DefaultClassifier, Permit},
    cors::{self, Cors},
    drain::{self, Refusal, Refused},
    https::{self, HttpsRedirectLayer},
    problem::{DefaultRejection, MakeRejection, Problem, ProblemType},
    rate_limit::{
        self, Adjust, Batch, Checked, HeaderSet, Outcome, RateLimitLayer, RateLimitStore,
    },
    request_id::{
        self, DefaultMakeRequestId, DefaultValidateRequestId, Enter, RequestId, SetRequestIdLayer,
    },
    security_headers::{CspNonce, Plan, SecurityHeadersLayer, is_https},
    signing::{
        VerifySignatureLayer,
        gate::{self, Begin, Gate},
        verify::VerifyShared,
    },
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type IdConfig = request_id::Config<DefaultMakeRequestId, DefaultValidateRequestId>;

type RateShared = rate_limit::Shared<StackStore, DefaultRejection>;

/// The parts that are on (`None`: off).
struct Parts {
    request_id: Option<IdConfig>,
    observe: Option<Arc<observe::Shared>>,
    catch_panic: bool,
    plan: Option<Arc<Plan>>,
    // The limit and the ceiling.
    body_limit: Option<(u64, u64)>,
    rate_limit: Option<Arc<RateShared>>,
    https: Option<Arc<https::Config>>,
    cors: Option<Cors>,
    api_key: Option<Arc<api_key::Shared<ApiKeys>>>,
    signing: Option<Arc<VerifyShared<StackReplayStore>>>,
    rate_limit_principal: Option<Arc<RateShared>>,
    timeout: Option<Duration>,
    breaker: Option<Breaker>,
}

impl Parts {
    /// How long a refusal may wait for a small body still coming: the drain's own bound,
    /// capped by the request timeout.
    fn drain_within(&self) -> Duration {
        self.timeout.unwrap_or(drain::WITHIN)
    }
}

/// [`SetRequestIdLayer`], [`ObserveLayer`], [`CatchPanicLayer`], [`SecurityHeadersLayer`],
/// [`HttpsRedirectLayer`], [`BodyLimitLayer`], [`RateLimitLayer`] (per address),
/// [`RequestTimeoutLayer`], [`ApiKeyLayer`] and [`RateLimitLayer`] (per principal), in that
/// order (outermost first), each optional, as one layer: see the module docs. Made by
/// [`ServerStack`](super::ServerStack) when no other part is on.
#[derive(Clone)]
pub(super) struct EngineLayer {
    parts: Arc<Parts>,
}

/// The parts [`EngineLayer`] runs, each optional.
#[derive(Default)]
pub(super) struct EngineParts<'a> {
    pub(super) request_id: Option<&'a SetRequestIdLayer>,
    pub(super) observe: Option<&'a ObserveLayer>,
    pub(super) catch_panic: Option<CatchPanicLayer>,
    pub(super) security_headers: Option<&'a SecurityHeadersLayer>,
    pub(super) https: Option<&'a HttpsRedirectLayer>,
    pub(super) cors: Option<&'a Cors>,
    pub(super) body_limit: Option<&'a BodyLimitLayer>,
    pub(super) rate_limit: Option<&'a RateLimitLayer<StackStore>>,
    pub(super) timeout: Option<RequestTimeoutLayer>,
    pub(super) breaker: Option<&'a super::ServerBreakerLayer>,
    pub(super) api_key: Option<&'a ApiKeyLayer>,
    pub(super) signing: Option<&'a VerifySignatureLayer<DefaultRejection, StackReplayStore>>,
    pub(super) rate_limit_principal: Option<&'a RateLimitLayer<StackStore>>,
}

impl EngineLayer {
    pub(super) fn new(p: EngineParts<'_>) -> Self {
        let EngineParts {
            request_id,
            observe,
            catch_panic,
            security_headers,
            https,
            cors,
            body_limit,
            rate_limit,
            timeout,
            breaker,
            api_key,
            signing,
            rate_limit_principal,
        } = p;
        Self {
            parts: Arc::new(Parts {
                request_id: request_id.map(|l| l.config.clone()),
                observe: observe.map(|l| l.shared.clone()),
                catch_panic: catch_panic.is_some(),
                plan: security_headers.map(|l| l.plan.clone()),
                body_limit: body_limit.map(|l| (l.limit, l.ceiling)),
                rate_limit: rate_limit.map(|l| l.shared().clone()),
                https: https.map(|l| l.config.clone()),
                cors: cors.cloned(),
                api_key: api_key.map(|l| l.shared.clone()),
                signing: signing.map(|l| l.gate().clone()),
                rate_limit_principal: rate_limit_principal.map(|l| l.shared().clone()),
                timeout: timeout.map(|t| t.timeout()),
                breaker: breaker.map(|l| l.breakers().clone()),
            }),
        }
    }
}

impl fmt::Debug for EngineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for EngineLayer {
    type Service = Engine<S>;

    fn layer(&self, inner: S) -> Engine<S> {
        Engine {
            inner,
            parts: self.parts.clone(),
        }
    }
}

/// The service of the stack's engine (inside [`ServerService`](super::ServerService)).
pub(crate) struct Engine<S> {
    inner: S,
    parts: Arc<Parts>,
}

impl<S> Engine<S> {
    /// The application.
    pub(crate) fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            parts: self.parts.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Engine<S>
where
    S: Service<Request<StackBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<Bytes> + Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ServerFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // One clock read: the span's and the metrics' start, and the timeout's.
        let now = Instant::now();
        let parts = &*self.parts;
        // Request id: resolved, in the request's header and extensions.
        let (id, id_span) = match &parts.request_id {
            Some(config) => {
                let id = config.resolve(&mut req);
                req.extensions_mut().insert(id.clone());
                let span = request_id::request_span(&id);
                (Some(id), span)
            }
            None => (None, Span::none()),
        };
        let entered = id_span.enter();
        // Span, redaction, metric labels.
        let (span, labels, start) = match &parts.observe {
            Some(observe) => {
                let (span, labels) = observe.begin(&mut req);
                let start = observe.timed(&span).then(|| now.into_std());
                (span, labels, start)
            }
            None => (Span::none(), None, None),
        };
        let entered_inner = span.enter();
        if let Some(observe) = &parts.observe {
            observe.log_headers(&req);
        }
        // Security headers: the scheme for HSTS, the CSP nonce.
        let (https, nonce) = match parts.plan.as_deref() {
            Some(plan) => {
                let https = plan.needs_scheme() && is_https(&req, plan);
                let nonce = if plan.nonce {
                    let nonce = CspNonce::generate();
                    req.extensions_mut().insert(nonce);
                    Some(nonce)
                } else {
                    None
                };
                (https, nonce)
            }
            None => (false, None),
        };
        let mut future = ServerFuture {
            state: State::Panicked,
            after: After::default(),
            http1: req.version() <= Version::HTTP_11,
            id,
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
        // Everything inside the panic catcher is written straight into the returned future
        // (no move of the inner future in and out of `catch_unwind`'s result).
        let (inner, state, after) = (&mut self.inner, &mut future.state, &mut future.after);
        if parts.catch_panic {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
                *state = admit(parts, inner, req, now, after);
            })) {
                log_panic(&*payload);
            }
        } else {
            *state = admit(parts, inner, req, now, after);
        }
        drop(entered_inner);
        drop(entered);
        future
    }
}

/// The request steps inside the panic catcher: the HTTPS redirect, the body limit, the
/// per-address rate limit, then (inside the timeout) [`authenticated`]. What the answer then
/// gets is in `after` before the inner service is called: a panic in that call is answered
/// with it too.
#[inline]
fn admit<S, B, ResBody>(
    parts: &Parts,
    inner: &mut S,
    req: Request<B>,
    now: Instant,
    after: &mut After,
) -> State<S, B>
where
    S: Service<Request<StackBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes> + Default,
{
    // A gRPC request: the timeout's and the panic's answers in gRPC terms (issue 17).
    after.grpc = crate::grpc::is_grpc(req.headers());
    if let Some(config) = &parts.https
        && let Some(res) = https::answer(config, &DefaultRejection, &req)
    {
        return State::Answered { res: Some(res) };
    }
    // CORS: a preflight is answered here; any other answer from inside gets the headers.
    if let Some(c) = &parts.cors {
        match c.admit(req.method(), req.headers()) {
            cors::Admit::Preflight(headers) => {
                let mut res = Response::new(ResBody::default());
                *res.headers_mut() = headers;
                return State::Answered { res: Some(res) };
            }
            cors::Admit::Pass(apply) => after.cors = Some(apply),
        }
    }
    let (req, watch) = match parts.body_limit {
        Some((limit, ceiling)) => match body_limit::admit(limit, ceiling, &DefaultRejection, req) {
            Admitted::Pass(req, watch) => (req.map(StackBody::streamed), watch),
            Admitted::Reject(cause, request_id, body) => {
                let res = body_limit::reject(&DefaultRejection, cause, request_id);
                return refused(res, body, parts.drain_within());
            }
        },
        // No limit: the one body type all the same.
        None => (
            req.map(|b| StackBody::streamed(RequestBody::unlimited(b))),
            None,
        ),
    };
    after.watch = watch;
    let Some(rate) = &parts.rate_limit else {
        return authenticated(parts, inner, req, now, after);
    };
    match rate_limit::check(rate, &req) {
        Checked::Now(Outcome::Pass { headers, adjust }) => {
            after.headers = headers;
            after.adjust = adjust;
            authenticated(parts, inner, req, now, after)
        }
        Checked::Now(Outcome::Reject(res)) => refused_outside(parts, res, req, after),
        Checked::Pending(decision, batch) => State::Deciding {
            decision,
            waiting: Some(Box::new(Waiting {
                svc: take(inner),
                req,
                batch,
                rate: rate.clone(),
                limit: Limit::Ip,
            })),
        },
    }
}

/// The breaker, then the steps inside the timeout (whose deadline counts from `now`): the
/// API key (and the principal on the span), signature verification, then [`limited`].
fn authenticated<S, B, ResBody>(
    parts: &Parts,
    inner: &mut S,
    mut req: Request<StackBody<B>>,
    now: Instant,
    after: &mut After,
) -> State<S, B>
where
    S: Service<Request<StackBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    // The server-side breaker: outside the timeout, so that a handler slower than it counts.
    if let Some(breaker) = &parts.breaker {
        match breaker.try_acquire() {
            Ok(permit) => after.permit = Some(permit),
            Err(open) => {
                let res = circuit_breaker::open_response(
                    &DefaultRejection,
                    open,
                    req.extensions(),
                    req.headers(),
                );
                return refused_outside(parts, res, req, after);
            }
        }
    }
    // A gRPC client's `grpc-timeout` when shorter (issue 17); looked up for gRPC requests
    // only.
    after.deadline = parts.timeout.map(|t| {
        let t = if after.grpc {
            super::timeout::deadline_for(req.headers(), t)
        } else {
            t
        };
        after.limit = t;
        now + t
    });
    if let Some(keys) = &parts.api_key {
        if let Some(res) = api_key::admit(keys, &DefaultRejection, &mut req) {
            return refused_inside(res, req);
        }
        observe::record_principal(&req);
    }
    if let Some(verify) = &parts.signing {
        return match gate::begin(verify, &DefaultRejection, req) {
            Begin::Refuse(res, head, body) => refused_inside(res, Request::from_parts(head, body)),
            Begin::Collect(gate) => State::Verifying {
                gate: Box::pin(gate),
                svc: Some(take(inner)),
            },
        };
    }
    limited(parts, inner, req, after)
}

/// The steps after authentication: the per-principal rate limit, the inner service.
fn limited<S, B, ResBody>(
    parts: &Parts,
    inner: &mut S,
    req: Request<StackBody<B>>,
    after: &mut After,
) -> State<S, B>
where
    S: Service<Request<StackBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    let Some(rate) = &parts.rate_limit_principal else {
        return State::Running {
            future: inner.call(req),
        };
    };
    match rate_limit::check(rate, &req) {
        Checked::Now(Outcome::Pass { headers, adjust }) => {
            after.principal_headers = headers;
            after.principal_adjust = adjust;
            State::Running {
                future: inner.call(req),
            }
        }
        Checked::Now(Outcome::Reject(res)) => refused_inside(res, req),
        Checked::Pending(decision, batch) => State::Deciding {
            decision,
            waiting: Some(Box::new(Waiting {
                svc: take(inner),
                req,
                batch,
                rate: rate.clone(),
                limit: Limit::Principal,
            })),
        },
    }
}

/// The ready service, a clone left in its place (for a request that waits on a store).
fn take<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// A refusal before anything read the body: answered at once, or once a small body still
/// coming is read (`crate::drain`; within the request timeout if it is shorter).
fn refused<S, B>(res: S::Response, body: Option<B>, within: Duration) -> State<S, B>
where
    S: Service<Request<StackBody<B>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    match drain::refuse_with(body, res, within) {
        Refused::Now(res) => State::Answered { res: Some(res) },
        Refused::Drain(refusal) => State::Draining { refusal },
    }
}

/// The per-address limit's refusal: nothing has read the body, the body limit has nothing
/// to watch.
fn refused_outside<S, B>(
    parts: &Parts,
    res: S::Response,
    req: Request<StackBody<B>>,
    after: &mut After,
) -> State<S, B>
where
    S: Service<Request<StackBody<B>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    after.watch = None;
    let (head, body) = req.into_parts();
    let body = body
        .into_incoming()
        .and_then(|body| drain::read_first(&head.headers, body));
    refused(res, body, parts.drain_within())
}

/// A refusal inside the timeout (API key, per-principal limit), as those layers answer it:
/// after reading a small body still coming through the body limit, under the deadline (when
/// it passes, the reading stops and the refusal is answered: it is decided).
fn refused_inside<S, B>(res: S::Response, req: Request<StackBody<B>>) -> State<S, B>
where
    S: Service<Request<StackBody<B>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let (head, body) = req.into_parts();
    match drain::refuse_with(drain::read_first(&head.headers, body), res, drain::WITHIN) {
        Refused::Now(res) => State::Answered { res: Some(res) },
        Refused::Drain(refusal) => State::DrainingInside { refusal },
    }
}

/// Which rate limit a store is deciding for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Limit {
    Ip,
    Principal,
}

/// What a request waiting for a rate-limit store doing I/O keeps.
struct Waiting<S, B> {
    svc: S,
    req: Request<StackBody<B>>,
    batch: Batch,
    rate: Arc<RateShared>,
    limit: Limit,
}

pin_project! {
    /// The response future of [`ServerService`](super::ServerService): the application's
    /// future `S::Future` (for a request body `B`) inside one frame that runs every part's
    /// response step, or the stack's own answer.
    ///
    /// It holds the application's future inline; a request waiting on a rate-limit store
    /// doing I/O, on signature verification reading the body, or a refusal reading a small
    /// body before it answers, keeps that state boxed (one allocation for those requests
    /// only). Polled again after it resolved, it stays pending.
    pub struct ServerFuture<S, B>
    where
        S: Service<Request<StackBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
        // What the parts inside the panic catcher do to the answer, the panic's 500 included.
        after: After,
        // HTTP/1.x: a 408 closes the connection.
        http1: bool,
        // The request's id: taken out while the inner future is polled (it is then the
        // current one), and by the response.
        id: Option<RequestId>,
        // The request-id span and the request span, when there is a subscriber at INFO.
        spans: Option<Box<[Span; 2]>>,
        start: Option<std::time::Instant>,
        labels: Option<Labels>,
        parts: Arc<Parts>,
        https: bool,
        nonce: Option<CspNonce>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<StackBody<B>>>,
    {
        // Admitted: the inner service runs (under the deadline of `After`).
        Running {
            #[pin]
            future: S::Future,
        },
        // A rate-limit store doing I/O is deciding (boxed: only such stores get here).
        Deciding {
            #[pin]
            decision: <StackStore as RateLimitStore>::Future,
            waiting: Option<Box<Waiting<S, B>>>,
        },
        // Signature verification reads and checks the body (boxed: only signed requests).
        Verifying {
            gate: Pin<Box<Gate<StackBody<B>, StackReplayStore, DefaultRejection, S::Response>>>,
            svc: Option<S>,
        },
        // Refused (before anything read the body).
        Answered { res: Option<S::Response> },
        // The same, once a small body still coming is read (boxed: only such refusals).
        Draining { refusal: Pin<Box<Refusal<B, S::Response>>> },
        // Refused inside the timeout, once a small body still coming is read through the
        // body limit (under the deadline).
        DrainingInside { refusal: Pin<Box<Refusal<StackBody<B>, S::Response>>> },
        Panicked,
        Done,
    }
}

impl<S, B> fmt::Debug for ServerFuture<S, B>
where
    S: Service<Request<StackBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerFuture")
            .field("id", &self.id)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

/// What the parts inside the panic catcher do to the answer of an admitted request: the rate
/// limits' headers and adjustments, the body limit's watch, the timeout's deadline. Set
/// before the inner service is called.
#[derive(Default)]
struct After {
    headers: Option<HeaderSet>,
    adjust: Option<Box<Adjust<StackStore, DefaultRejection>>>,
    principal_headers: Option<HeaderSet>,
    principal_adjust: Option<Box<Adjust<StackStore, DefaultRejection>>>,
    watch: Option<Watch<DefaultRejection>>,
    // The CORS headers of the answer (every answer from inside CORS).
    cors: Option<cors::Apply>,
    // The breaker's permit, once it let the request in: the answer from inside it is
    // recorded (a permit dropped unrecorded counts as ignored).
    permit: Option<Permit>,
    // `None`: no timeout, or not inside it yet.
    deadline: Option<Instant>,
    // The timeout that `deadline` stands for.
    limit: Duration,
    // Boxed: made only when the answer is not there at once.
    sleep: Option<Pin<Box<Sleep>>>,
    // issue 17: the request is gRPC (the timeout's and the panic's answers are gRPC's).
    grpc: bool,
}

impl After {
    /// What the parts inside the body limit do to a response from inside them (the inner
    /// service's, a refusal, the timeout's 503 or 408, a panic's 500): the per-principal
    /// limit's headers and adjustment, then the per-address limit's, then the body limit's
    /// 413 if the body went past the limit.
    fn apply<B: From<Bytes>>(&mut self, mut res: Response<B>) -> Response<B> {
        if let Some(permit) = self.permit.take() {
            permit.record(ClassifyResponse::<B, ()>::classify(
                &DefaultClassifier,
                Ok(&res),
            ));
        }
        for (headers, adjust) in [
            (self.principal_headers.take(), self.principal_adjust.take()),
            (self.headers.take(), self.adjust.take()),
        ] {
            if let Some(h) = headers {
                h.apply(res.headers_mut());
            }
            if let Some(adjust) = adjust {
                rate_limit::apply_adjustment(&adjust.0, &adjust.1, &res);
            }
        }
        match self.watch.take() {
            Some(watch) => watch.check(res),
            None => res,
        }
    }

    /// Whether the deadline has passed (else the task is woken when it does).
    fn passed(&mut self, timeout: Option<Duration>, cx: &mut Context<'_>) -> bool {
        let (Some(deadline), Some(_)) = (self.deadline, timeout) else {
            return false;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        sleep.as_mut().poll(cx).is_ready()
    }

    /// The timeout's answer once the deadline has passed (what is inside it, the
    /// per-principal limit included, is dropped), else pending.
    fn expire<B: From<Bytes>>(
        &mut self,
        timeout: Option<Duration>,
        http1: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Response<B>> {
        if !self.passed(timeout, cx) {
            return Poll::Pending;
        }
        // The deadline in force (a gRPC client's shorter one included), as the layer reports it.
        let timeout = self.limit;
        // The client's fault when the body is what the handler waits for.
        let res = if self.watch.as_ref().is_some_and(|w| w.shared.waiting()) {
            body_timed_out(&DefaultRejection, timeout, http1, self.grpc)
        } else {
            timed_out(&DefaultRejection, timeout, self.grpc)
        };
        self.principal_headers = None;
        self.principal_adjust = None;
        Poll::Ready(self.apply(res))
    }
}

impl<S, B, ResBody> Future for ServerFuture<S, B>
where
    S: Service<Request<StackBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (id_span, span) = match this.spans.as_deref() {
            Some([a, b]) => (a, b),
            None => (&NONE, &NONE),
        };
        let _entered = id_span.enter();
        let _entered_inner = span.enter();
        let parts = &**this.parts;
        let (after, http1) = (this.after, *this.http1);
        // `Ok(..)`: the answer from inside the panic catcher; `Err(())`: a panic.
        let polled = {
            let _scope = Enter::new(this.id);
            let mut state = this.state.as_mut();
            loop {
                let stepped = if parts.catch_panic {
                    catch_unwind(AssertUnwindSafe(|| {
                        step(parts, state.as_mut(), &mut *after, http1, cx)
                    }))
                } else {
                    Ok(step(parts, state.as_mut(), &mut *after, http1, cx))
                };
                match stepped {
                    Ok(Step::Pending) => return Poll::Pending,
                    Ok(Step::Again) => {}
                    Ok(Step::Ready(out)) => break Ok(out),
                    Ok(Step::Panicked) => break Err(()),
                    Err(payload) => {
                        log_panic(&*payload);
                        break Err(());
                    }
                }
            }
        };
        let polled = match polled {
            Ok(out) => out,
            Err(()) => {
                this.state.set(State::Done);
                let problem = Problem::new(ProblemType::INTERNAL_ERROR)
                    .with_request_id(this.id.clone())
                    .with_grpc(after.grpc); // issue 17
                let mut res: Response<ResBody> = DefaultRejection.make_rejection(problem);
                res.extensions_mut().insert(Panicked);
                // Like every answer from inside: the rate-limit headers (a panic in the
                // inner service's `call` too: they were set before it), the body's watch.
                Ok(after.apply(res))
            }
        };
        let mut out = match polled {
            Ok(mut res) => {
                if let Some(apply) = after.cors.take() {
                    apply.apply(res.headers_mut());
                }
                // The security headers, on every answer (a panic's 500 included).
                if let Some(plan) = &parts.plan {
                    plan.apply(res.headers_mut(), *this.https, this.nonce.as_ref());
                }
                Ok(res)
            }
            Err(e) => Err(e),
        };
        if let Some(start) = *this.start {
            observe::finish(start, this.labels.as_ref(), &out);
        }
        if let Ok(res) = &mut out
            && let Some(config) = &parts.request_id
            && let Some(id) = this.id.take()
        {
            res.headers_mut()
                .insert(config.header.clone(), id.header_value().clone());
            res.extensions_mut().insert(id);
        }
        Poll::Ready(out)
    }
}

enum Step<T> {
    Pending,
    /// The state moved on: step again.
    Again,
    Ready(T),
    /// The inner service panicked in `call`.
    Panicked,
}

/// One step of the parts inside the panic catcher.
fn step<S, B, ResBody>(
    parts: &Parts,
    mut state: Pin<&mut State<S, B>>,
    after: &mut After,
    http1: bool,
    cx: &mut Context<'_>,
) -> Step<Result<Response<ResBody>, S::Error>>
where
    S: Service<Request<StackBody<B>>, Response = Response<ResBody>> + Clone,
    B: Body,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    let stepped = match state.as_mut().project() {
        StateProj::Running { future } => match future.poll(cx) {
            Poll::Ready(Ok(res)) => Step::Ready(Ok(after.apply(res))),
            Poll::Ready(Err(e)) => {
                // The breaker counts the inner service's errors as failures.
                if let Some(permit) = after.permit.take() {
                    permit.record(circuit_breaker::Outcome::Failure);
                }
                Step::Ready(Err(e))
            }
            Poll::Pending => expired(after.expire(parts.timeout, http1, cx)),
        },
        StateProj::Deciding { decision, waiting } => {
            let Poll::Ready(result) = decision.poll(cx) else {
                // A per-principal decision is inside the timeout.
                if waiting
                    .as_ref()
                    .is_some_and(|w| w.limit == Limit::Principal)
                {
                    let Poll::Ready(res) = after.expire(parts.timeout, http1, cx) else {
                        return Step::Pending;
                    };
                    state.set(State::Done);
                    return Step::Ready(Ok(res));
                }
                return Step::Pending;
            };
            let Some(waiting) = waiting.take() else {
                return Step::Pending;
            };
            let Waiting {
                mut svc,
                req,
                batch,
                rate,
                limit,
            } = *waiting;
            let next = match (rate_limit::decide(&rate, &req, batch, result), limit) {
                (Outcome::Pass { headers, adjust }, Limit::Ip) => {
                    after.headers = headers;
                    after.adjust = adjust;
                    // The deadline counts from the decision, as the timeout inside the rate
                    // limit does.
                    authenticated(parts, &mut svc, req, Instant::now(), after)
                }
                (Outcome::Pass { headers, adjust }, Limit::Principal) => {
                    after.principal_headers = headers;
                    after.principal_adjust = adjust;
                    State::Running {
                        future: svc.call(req),
                    }
                }
                (Outcome::Reject(res), Limit::Ip) => refused_outside(parts, res, req, after),
                (Outcome::Reject(res), Limit::Principal) => refused_inside(res, req),
            };
            state.set(next);
            return Step::Again;
        }
        StateProj::Verifying { gate, svc } => match gate.as_mut().poll(cx) {
            Poll::Ready(Ok(req)) => {
                let Some(mut svc) = svc.take() else {
                    return Step::Pending;
                };
                let req = req.map(StackBody::buffered);
                let next = limited(parts, &mut svc, req, after);
                state.set(next);
                return Step::Again;
            }
            Poll::Ready(Err(res)) => Step::Ready(Ok(after.apply(res))),
            // The deadline: a 408 when the body is what it waits for.
            Poll::Pending => expired(after.expire(parts.timeout, http1, cx)),
        },
        StateProj::Answered { res } => match res.take() {
            Some(res) => Step::Ready(Ok(after.apply(res))),
            None => Step::Pending,
        },
        StateProj::Draining { refusal } => match refusal.as_mut().poll(cx) {
            Poll::Ready(res) => Step::Ready(Ok(after.apply(res))),
            Poll::Pending => Step::Pending,
        },
        StateProj::DrainingInside { refusal } => match refusal.as_mut().poll(cx) {
            Poll::Ready(res) => Step::Ready(Ok(after.apply(res))),
            // The refusal is decided: past the deadline it stops reading and is answered,
            // rather than the timeout's 408 or 503.
            Poll::Pending if after.passed(parts.timeout, cx) => {
                refusal.as_mut().abandon();
                match refusal.as_mut().poll(cx) {
                    Poll::Ready(res) => Step::Ready(Ok(after.apply(res))),
                    Poll::Pending => Step::Pending,
                }
            }
            Poll::Pending => Step::Pending,
        },
        StateProj::Panicked => return Step::Panicked,
        // Polled after completion, which `Future` leaves unspecified: stay pending rather
        // than panic in the layer that exists to stop panics.
        StateProj::Done => return Step::Pending,
    };
    match stepped {
        Step::Ready(out) => {
            state.set(State::Done);
            Step::Ready(out)
        }
        other => other,
    }
}

/// The timeout's answer, if the deadline passed.
fn expired<B, E>(polled: Poll<Response<B>>) -> Step<Result<Response<B>, E>> {
    match polled {
        Poll::Ready(res) => Step::Ready(Ok(res)),
        Poll::Pending => Step::Pending,
    }
}

static NONE: Span = Span::none();

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, num::NonZeroU32};

    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::{
        net::TrustedProxies,
        rate_limit::{ClientIp, Limit},
        security_headers::SecurityHeaders,
    };

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
        let (id, observe, headers, body) = (
            SetRequestIdLayer::new(),
            ObserveLayer::new([], TrustedProxies::none(), false, false),
            SecurityHeaders::api().layer(),
            BodyLimitLayer::new(1024),
        );
        let timeout = RequestTimeoutLayer::new(Duration::from_secs(1));
        let rate = || -> RateLimitLayer<StackStore> {
            let quota = crate::rate_limit::Quota::per_second(NonZeroU32::MIN);
            let limit = Limit::new(ClientIp::new(TrustedProxies::none()), quota);
            Option::from(RateLimitLayer::new(limit)).unwrap()
        };
        let rate_limit = rate();
        let fused = EngineLayer::new(EngineParts {
            request_id: Some(&id),
            observe: Some(&observe),
            catch_panic: Some(CatchPanicLayer::new()),
            security_headers: Some(&headers),
            body_limit: Some(&body),
            rate_limit: Some(&rate_limit),
            timeout: Some(timeout),
            ..EngineParts::default()
        })
        .layer(PanicInCall);
        let composed = ServiceBuilder::new()
            .layer(id)
            .layer(observe)
            .layer(CatchPanicLayer::new())
            .layer(headers)
            .layer(body)
            .layer(rate())
            .layer(timeout)
            // As the stack composes it: the application's panics caught next to it.
            .layer(CatchPanicLayer::new())
            .service(PanicInCall);
        let req = || {
            let mut req = Request::builder()
                .header("x-request-id", "r-1")
                .body(Full::new(Bytes::new()))
                .unwrap();
            req.extensions_mut()
                .insert(crate::net::PeerAddr(([192, 0, 2, 1], 4000).into()));
            req
        };
        let a = fused.oneshot(req()).await.unwrap();
        let b = composed.oneshot(req()).await.unwrap();
        assert_eq!(a.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(a.status(), b.status());
        assert_eq!(a.headers(), b.headers());
        assert!(a.extensions().get::<Panicked>().is_some());
        assert_eq!(a.headers()["x-request-id"], "r-1");
        // Like every answer: the security and rate-limit headers.
        for name in [
            "x-content-type-options",
            "content-security-policy",
            "ratelimit",
        ] {
            assert!(a.headers().contains_key(name), "no {name}");
        }
        let (a, b) = (
            a.into_body().collect().await.unwrap().to_bytes(),
            b.into_body().collect().await.unwrap().to_bytes(),
        );
        assert_eq!(a, b);
        assert!(!String::from_utf8_lossy(&a).contains("7f3a"));
    }
}
