//! The client stack: request-id forwarding → retry → circuit breaker → signing → timeout.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tower::{
    BoxError, Layer, Service, ServiceBuilder,
    layer::util::{Identity, Stack},
    timeout::TimeoutLayer,
    util::Either,
};

use super::{
    config::{ClientConfig, ClientSigningSection},
    server::breaker_layer,
};
use crate::{
    circuit_breaker::{Breaker, BreakerConfig, CircuitBreakerLayer},
    error::{ConfigError, ConfigErrorKind},
    grpc::SetGrpcTimeoutLayer,
    request_id::ForwardRequestIdLayer,
    retry::{ExponentialBackoff, RetryBudget, RetryLayer, RetryPolicy},
    signing::{KeyConfig, KeyRing, SignRequestLayer},
};

/// The client layers of the crate in the order of the [stack's ordering](crate::stack#ordering): request-id forwarding →
/// retry (with a budget) → circuit breaker → signing (a fresh `created` and nonce per attempt,
/// when `Sg` is [`SignRequestLayer`]) → a timeout per attempt → the HTTP client.
///
/// A gRPC call (`content-type: application/grpc...`) carries the per-attempt timeout as
/// `grpc-timeout` ([`SetGrpcTimeoutLayer`]; a shorter one the caller set is kept), and a
/// trailers-only `UNAVAILABLE` answer is retried (after its `retry-pushback-ms`) when the
/// policy allows the call (gRPC calls are POSTs: opt them in on the [`RetryPolicy`]).
///
/// The service it makes returns [`RetryError`](crate::retry::RetryError) (whose source is a
/// `CircuitOpen`, a `tower::timeout::error::Elapsed`, a signing error or the client's own
/// error) and never retries a `CircuitOpen`.
///
/// ```
/// use battlement::stack::{ClientConfig, ClientStack};
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Empty;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let upstream = service_fn(|req: Request<battlement::retry::ReplayBody<Empty<Bytes>>>| async move {
///     assert!(req.headers().contains_key("x-request-id") || true);
///     Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
/// });
/// let client = ClientStack::from_config(&ClientConfig::default()).unwrap().layer(upstream);
/// let res = client.oneshot(Request::new(Empty::<Bytes>::new())).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct ClientStack<Sg = Identity> {
    forward: Option<ForwardRequestIdLayer>,
    retry: RetryLayer,
    breaker: Option<CircuitBreakerLayer>,
    sign: Sg,
    timeout: Option<Duration>,
}

impl ClientStack {
    /// The defaults of [`ClientConfig::default`]: forwarding, 3 retries (100 ms to 10 s, full
    /// jitter) on a budget of 20 % of requests, a breaker that opens after 5 failures in a
    /// row for 30 s, a 5 s timeout per attempt; no signing.
    pub fn new() -> Self {
        Self {
            forward: Some(ForwardRequestIdLayer::new()),
            retry: RetryLayer::new(RetryPolicy::default()),
            // The default breaker config is valid (a unit test checks that this is `Some`).
            breaker: Breaker::new(BreakerConfig::default())
                .ok()
                .map(CircuitBreakerLayer::new),
            sign: Identity::new(),
            timeout: Some(Duration::from_secs(5)),
        }
    }

    /// Builds the unsigned stack from `[client]`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field (`client.retry.max_retries`, ...) for an invalid
    /// value; `client.signing` when a signing section is configured (build the stack with
    /// [`signed_from_config`](Self::signed_from_config) then, so that it is not ignored).
    pub fn from_config(cfg: &ClientConfig) -> Result<Self, ConfigError> {
        if cfg.signing.is_some() {
            return Err(ConfigError::invalid(
                "client.signing",
                "a signing key is configured: build the client with ClientStack::signed_from_config",
            ));
        }
        Self::build(cfg, Identity::new())
    }

    /// Builds the signing stack from `[client]` and its `[client.signing]` section.
    ///
    /// # Errors
    ///
    /// As [`from_config`](Self::from_config); `client.signing` (kind `Missing`) when there is
    /// no signing section; `client.signing.secret` when the secret cannot be read or parsed.
    pub fn signed_from_config(
        cfg: &ClientConfig,
    ) -> Result<ClientStack<SignRequestLayer>, ConfigError> {
        let Some(s) = &cfg.signing else {
            return Err(ConfigError::new(
                ConfigErrorKind::Missing,
                "client.signing",
                "no signing section",
            ));
        };
        Self::build(cfg, sign_layer(s)?)
    }

    fn build<Sg>(cfg: &ClientConfig, sign: Sg) -> Result<ClientStack<Sg>, ConfigError> {
        let r = &cfg.retry;
        let backoff = ExponentialBackoff::new(r.initial_backoff.get(), r.max_backoff.get())
            .map_err(|e| field(e, "client.retry.initial_backoff"))?
            .with_max_retries(r.max_retries)
            .map_err(|e| field(e, "client.retry.max_retries"))?;
        let mut policy = RetryPolicy::new().with_backoff(backoff);
        policy = if r.budget.enabled {
            policy.with_budget(
                RetryBudget::new(r.budget.window.get(), r.budget.min_per_sec, r.budget.ratio)
                    .map_err(|e| {
                        let last = e.field().rsplit('.').next().unwrap_or_default().to_owned();
                        field(e, &format!("client.retry.budget.{last}"))
                    })?,
            )
        } else {
            policy.without_budget()
        };
        let breaker = if cfg.circuit_breaker.enabled {
            Some(breaker_layer(
                &cfg.circuit_breaker,
                "client.circuit_breaker",
            )?)
        } else {
            None
        };
        let timeout = cfg.timeout.get();
        Ok(ClientStack {
            forward: cfg.forward_request_id.then(ForwardRequestIdLayer::new),
            retry: RetryLayer::new(policy),
            breaker,
            sign,
            timeout: (!timeout.is_zero()).then_some(timeout),
        })
    }
}

impl Default for ClientStack {
    fn default() -> Self {
        Self::new()
    }
}

impl<Sg> ClientStack<Sg> {
    /// Signs every attempt with `layer`.
    #[must_use]
    pub fn with_signing(self, layer: SignRequestLayer) -> ClientStack<SignRequestLayer> {
        ClientStack {
            forward: self.forward,
            retry: self.retry,
            breaker: self.breaker,
            sign: layer,
            timeout: self.timeout,
        }
    }

    /// Sets (or with `None` removes) request-id forwarding.
    #[must_use]
    pub fn forward_request_id(mut self, layer: impl Into<Option<ForwardRequestIdLayer>>) -> Self {
        self.forward = layer.into();
        self
    }

    /// Sets the retry layer (`RetryPolicy` with 0 retries turns retrying off).
    #[must_use]
    pub fn retry(mut self, layer: RetryLayer) -> Self {
        self.retry = layer;
        self
    }

    /// Sets (or removes) the circuit breaker.
    #[must_use]
    pub fn circuit_breaker(mut self, layer: impl Into<Option<CircuitBreakerLayer>>) -> Self {
        self.breaker = layer.into();
        self
    }

    /// Sets (or removes) the timeout of each attempt.
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.timeout = timeout.into();
        self
    }
}

fn field(e: ConfigError, path: &str) -> ConfigError {
    ConfigError::new(e.kind(), path.to_owned(), e.reason().to_owned())
}

fn sign_layer(s: &ClientSigningSection) -> Result<SignRequestLayer, ConfigError> {
    let secret = s
        .secret
        .resolve()
        .map_err(|e| e.within("client.signing.secret"))?;
    let key = KeyConfig {
        id: s.key_id.clone(),
        secret: zeroize::Zeroizing::new(secret.expose().to_owned()),
        not_before: None,
        not_after: None,
    }
    .to_key()
    .map_err(|e| field(e, "client.signing.secret"))?;
    let layer = SignRequestLayer::new(KeyRing::new(key));
    Ok(match s.expires_in {
        Some(ttl) => layer.with_expires_in(ttl.get()),
        None => layer,
    })
}

impl<Sg: fmt::Debug> fmt::Debug for ClientStack<Sg> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStack")
            .field("forward", &self.forward.is_some())
            .field("retry", &self.retry)
            .field("breaker", &self.breaker.is_some())
            .field("sign", &self.sign)
            .field("timeout", &self.timeout)
            .finish()
    }
}

type Layers<Sg> = Stack<
    Either<TimeoutLayer, BoxErrLayer>,
    Stack<
        Sg,
        Stack<
            SetGrpcTimeoutLayer,
            Stack<
                Either<CircuitBreakerLayer, BoxErrLayer>,
                Stack<RetryLayer, Stack<Either<ForwardRequestIdLayer, Identity>, Identity>>,
            >,
        >,
    >,
>;

impl<Sg: Clone> ClientStack<Sg> {
    fn layers(&self) -> Layers<Sg> {
        ServiceBuilder::new()
            .option_layer(self.forward.clone())
            .layer(self.retry.clone())
            .layer(match &self.breaker {
                Some(b) => Either::Left(b.clone()),
                None => Either::Right(BoxErrLayer),
            })
            // A gRPC call tells the server its per-attempt deadline (outside the signer, so
            // that a signature covering it sees it).
            .layer(SetGrpcTimeoutLayer::maybe(self.timeout))
            .layer(self.sign.clone())
            .layer(match self.timeout {
                Some(t) => Either::Left(TimeoutLayer::new(t)),
                None => Either::Right(BoxErrLayer),
            })
            .into_inner()
    }
}

type Inner<Sg, S> = <Layers<Sg> as Layer<S>>::Service;

impl<Sg: Clone + Layer<Either<tower::timeout::Timeout<S>, BoxErr<S>>>, S> Layer<S>
    for ClientStack<Sg>
{
    type Service = ClientService<Sg, S>;

    fn layer(&self, inner: S) -> ClientService<Sg, S> {
        ClientService {
            inner: self.layers().layer(inner),
        }
    }
}

/// The service of a [`ClientStack`] (hidden from the rendered docs for the reason given on
/// [`ServerService`](super::ServerService)).
#[doc(hidden)]
pub struct ClientService<Sg, S>
where
    Sg: Layer<Either<tower::timeout::Timeout<S>, BoxErr<S>>>,
{
    inner: Inner<Sg, S>,
}

impl<Sg, S> Clone for ClientService<Sg, S>
where
    Sg: Layer<Either<tower::timeout::Timeout<S>, BoxErr<S>>>,
    Inner<Sg, S>: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<Sg, S> fmt::Debug for ClientService<Sg, S>
where
    Sg: Layer<Either<tower::timeout::Timeout<S>, BoxErr<S>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientService").finish_non_exhaustive()
    }
}

impl<Sg, S, Req> Service<Req> for ClientService<Sg, S>
where
    Sg: Layer<Either<tower::timeout::Timeout<S>, BoxErr<S>>>,
    Inner<Sg, S>: Service<Req>,
{
    type Response = <Inner<Sg, S> as Service<Req>>::Response;
    type Error = <Inner<Sg, S> as Service<Req>>::Error;
    type Future = <Inner<Sg, S> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

/// Boxes the error of the inner service: the branch of an optional client layer that is off,
/// so both branches have the same error type.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoxErrLayer;

impl<S> Layer<S> for BoxErrLayer {
    type Service = BoxErr<S>;

    fn layer(&self, inner: S) -> BoxErr<S> {
        BoxErr { inner }
    }
}

/// The service of [`BoxErrLayer`].
#[derive(Clone, Copy, Debug)]
pub struct BoxErr<S> {
    inner: S,
}

impl<S, Req> Service<Req> for BoxErr<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxErrFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        BoxErrFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`BoxErr`].
    #[derive(Debug)]
    pub struct BoxErrFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for BoxErrFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(Into::into))
    }
}
