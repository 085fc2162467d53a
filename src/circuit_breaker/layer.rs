//! The layer and its two modes.

use std::fmt;

use tower::Layer;

use super::{
    breaker::Breaker,
    classify::DefaultClassifier,
    config::BreakerConfig,
    registry::{BreakerRegistry, PerKey},
    service::CircuitBreaker,
};
use crate::{error::ConfigError, problem::DefaultRejection};

/// Client mode (the default): a rejection is an `Err` holding a [`CircuitOpen`](super::CircuitOpen),
/// the error type is `tower::BoxError`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client;

/// Server mode: a rejection is a 503 problem+json response with `Retry-After`, made by `R`; the
/// error type stays the inner service's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Server<R = DefaultRejection> {
    pub(crate) rejection: R,
}

/// Applies a circuit breaker to a service. See the [module docs](super).
///
/// * `P` picks the breaker: a [`Breaker`] (one for every request) or [`PerKey`].
/// * `C` classifies results ([`ClassifyResponse`](super::ClassifyResponse)).
/// * `M` is [`Client`] (rejections are errors) or [`Server`] (rejections are 503 responses).
#[derive(Clone)]
pub struct CircuitBreakerLayer<P = Breaker, C = DefaultClassifier, M = Client> {
    select: P,
    classifier: C,
    mode: M,
}

impl<P: fmt::Debug, C, M: fmt::Debug> fmt::Debug for CircuitBreakerLayer<P, C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("select", &self.select)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// One breaker for every request, client mode, default classifier.
    pub const fn new(breaker: Breaker) -> Self {
        Self {
            select: breaker,
            classifier: DefaultClassifier,
            mode: Client,
        }
    }
}

impl CircuitBreakerLayer {
    /// A new breaker made from `config`, client mode. Reach the breaker (for
    /// [`snapshot`](Breaker::snapshot) and manual states) with [`breakers`](Self::breakers).
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`BreakerConfig::validate`].
    pub fn from_config(config: BreakerConfig) -> Result<Self, ConfigError> {
        Breaker::new(config).map(Self::new)
    }
}

impl<K, F> CircuitBreakerLayer<PerKey<K, F>> {
    /// One breaker per key: `extract` computes the key of each request (for example its
    /// upstream authority), `registry` holds the breakers.
    ///
    /// ```
    /// use battlement::circuit_breaker::{BreakerConfig, BreakerRegistry, CircuitBreakerLayer};
    /// use http::Request;
    ///
    /// let registry: BreakerRegistry<String> =
    ///     BreakerRegistry::new(BreakerConfig::default(), 1024).unwrap();
    /// let layer = CircuitBreakerLayer::per_key(registry.clone(), |req: &Request<String>| {
    ///     req.uri().authority().map_or_else(String::new, |a| a.to_string())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn per_key(registry: BreakerRegistry<K>, extract: F) -> Self {
        Self {
            select: PerKey::new(registry, extract),
            classifier: DefaultClassifier,
            mode: Client,
        }
    }
}

impl<P, C, M> CircuitBreakerLayer<P, C, M> {
    /// Replaces the classifier (a [`ClassifyResponse`](super::ClassifyResponse), e.g. a closure).
    #[must_use]
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<P, C2, M> {
        CircuitBreakerLayer {
            select: self.select,
            classifier,
            mode: self.mode,
        }
    }

    /// Server mode: guard a handler and answer 503 problem+json with `Retry-After` while open.
    #[must_use]
    pub fn server(self) -> CircuitBreakerLayer<P, C, Server> {
        self.with_rejection(DefaultRejection)
    }

    /// Server mode with the 503 made by `rejection` (a [`MakeRejection`](crate::problem::MakeRejection),
    /// e.g. a closure `Fn(Problem) -> Response<B>`).
    #[must_use]
    pub fn with_rejection<R>(self, rejection: R) -> CircuitBreakerLayer<P, C, Server<R>> {
        CircuitBreakerLayer {
            select: self.select,
            classifier: self.classifier,
            mode: Server { rejection },
        }
    }

    /// The breaker (or [`PerKey`] selector) of this layer.
    pub fn breakers(&self) -> &P {
        &self.select
    }
}

impl<S, P: Clone, C: Clone, M: Clone> Layer<S> for CircuitBreakerLayer<P, C, M> {
    type Service = CircuitBreaker<S, P, C, M>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(
            inner,
            self.select.clone(),
            self.classifier.clone(),
            self.mode.clone(),
        )
    }
}
