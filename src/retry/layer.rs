//! The retry layer.

use std::{
    fmt,
    sync::{Arc, atomic::AtomicU64},
};

use tower::Layer;

use super::{DefaultClassifyError, Retry, RetryPolicy};

/// Shared by a layer and every service it makes.
pub(crate) struct Config<C> {
    pub(crate) policy: RetryPolicy,
    pub(crate) classify: C,
    /// Base seed of the jitter; each retried request draws `seed + n`.
    pub(crate) seed: u64,
    pub(crate) sessions: AtomicU64,
}

impl<C> Config<C> {
    pub(crate) fn new(policy: RetryPolicy, classify: C) -> Self {
        let seed = policy.seed.unwrap_or_else(rand::random);
        Self {
            policy,
            classify,
            seed,
            sessions: AtomicU64::new(0),
        }
    }
}

/// Wraps a client service in [`Retry`]: failed idempotent requests are sent again after a
/// jittered backoff, within a budget. See the [module docs](super).
pub struct RetryLayer<C = DefaultClassifyError> {
    config: Arc<Config<C>>,
}

impl RetryLayer {
    /// A layer that retries with `policy` and the [`DefaultClassifyError`].
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            config: Arc::new(Config::new(policy, DefaultClassifyError)),
        }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl<C> RetryLayer<C> {
    /// Replaces what decides whether an error of the inner service is retried.
    ///
    /// A closure `Fn(&(dyn Error + Send + Sync + 'static)) -> bool` works.
    #[must_use]
    pub fn with_classifier<C2>(self, classify: C2) -> RetryLayer<C2> {
        RetryLayer {
            config: Arc::new(Config::new(self.config.policy.clone(), classify)),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.config.policy
    }
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.config.policy)
            .finish_non_exhaustive()
    }
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_config(inner, self.config.clone())
    }
}
