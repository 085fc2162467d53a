//! The error of a retry service.

use std::{error::Error as StdError, fmt};

/// A boxed error, as returned by most tower services.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// Why a [`RetryError`] was returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryErrorKind {
    /// Every allowed retry was used and the last attempt failed.
    Exhausted,
    /// The retry budget was spent: retrying now would multiply the load on the upstream.
    BudgetExhausted,
    /// The error was classified as not worth retrying (see
    /// [`ClassifyError`](super::ClassifyError)), or the inner service failed in `poll_ready`.
    NotRetryable,
    /// The request may not be retried: its method is not idempotent and it did not opt in, or
    /// its body was larger than the replay buffer.
    RequestNotRetryable,
}

/// The last error of the inner service, with why it was not retried again.
///
/// `source()` is the inner service's error; [`into_inner`](Self::into_inner) returns it.
pub struct RetryError {
    kind: RetryErrorKind,
    attempts: u32,
    inner: BoxError,
}

impl RetryError {
    pub(crate) fn new(kind: RetryErrorKind, attempts: u32, inner: BoxError) -> Self {
        Self {
            kind,
            attempts,
            inner,
        }
    }

    /// Why the request was not retried again.
    pub fn kind(&self) -> RetryErrorKind {
        self.kind
    }

    /// How many times the request was sent (1 when it was never retried).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last error of the inner service.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// The last error of the inner service.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync> {
        self.inner
    }
}

impl fmt::Debug for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("kind", &self.kind)
            .field("attempts", &self.attempts)
            .field("inner", &self.inner)
            .finish()
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.kind {
            RetryErrorKind::Exhausted => "no retries left",
            RetryErrorKind::BudgetExhausted => "retry budget spent",
            RetryErrorKind::NotRetryable => "error not retryable",
            RetryErrorKind::RequestNotRetryable => "request not retryable",
        };
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "request failed after {} attempt{s} ({why})",
            self.attempts
        )
    }
}

impl StdError for RetryError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.inner)
    }
}
