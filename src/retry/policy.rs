//! What is retried: methods, statuses, errors, `Retry-After`.

use std::{
    error::Error as StdError,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts};

use super::{ExponentialBackoff, RetryBudget, RetryError};
use crate::ConfigError;

/// The largest request body [`RetryPolicy::with_body_limit`] accepts: 16 MiB.
const MAX_BODY_LIMIT: usize = 16 << 20;

type RequestPredicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Which requests are retried, on which answers, and how long to wait.
///
/// The default:
///
/// * only idempotent methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE); POST
///   and PATCH opt in with [`retry_method`](Self::retry_method),
///   [`retry_with_idempotency_key`](Self::retry_with_idempotency_key) or
///   [`retry_request_if`](Self::retry_request_if);
/// * on errors of the inner service (connection errors, per-attempt timeouts, ...) unless the
///   [`ClassifyError`] refuses them, and on 429, 502, 503 and 504;
/// * after a delay from the [`ExponentialBackoff`] (100 ms initial, 10 s cap, 3 retries, full
///   jitter), or after the answer's `Retry-After` (seconds or HTTP-date) capped at the backoff's
///   cap;
/// * within a [`RetryBudget`] (20 % of recent requests plus 1 per second over 10 s), shared by
///   every clone of the policy;
/// * for request bodies up to 64 KiB; a larger body is sent once and never retried.
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) backoff: ExponentialBackoff,
    pub(crate) budget: Option<RetryBudget>,
    statuses: StatusSet,
    methods: Vec<Method>,
    header: Option<HeaderName>,
    predicate: Option<RequestPredicate>,
    retry_after: bool,
    pub(crate) body_limit: usize,
    pub(crate) seed: Option<u64>,
    wall_clock: fn() -> SystemTime,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: ExponentialBackoff::DEFAULT,
            budget: Some(RetryBudget::default()),
            statuses: StatusSet::DEFAULT,
            methods: Vec::new(),
            header: None,
            predicate: None,
            retry_after: true,
            body_limit: 64 * 1024,
            seed: None,
            wall_clock: SystemTime::now,
        }
    }
}

impl RetryPolicy {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the backoff (delays, cap and number of retries).
    #[must_use]
    pub fn with_backoff(mut self, backoff: ExponentialBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the retry budget. Clones of the budget share it; pass the same one to every policy
    /// of one upstream.
    #[must_use]
    pub fn with_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Turns the retry budget off: every request gets all its retries, even against a dead
    /// upstream. Only for tests or when something else bounds the load.
    #[must_use]
    pub fn without_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Also retries requests with `method` (for example `POST` on an API whose creates are
    /// idempotent).
    #[must_use]
    pub fn retry_method(mut self, method: Method) -> Self {
        if !method.is_idempotent() && !self.methods.contains(&method) {
            self.methods.push(method);
        }
        self
    }

    /// Also retries requests of any method that carry an `Idempotency-Key` header.
    #[must_use]
    pub fn retry_with_idempotency_key(self) -> Self {
        self.retry_if_header(HeaderName::from_static("idempotency-key"))
    }

    /// Also retries requests of any method that carry the header `name`.
    #[must_use]
    pub fn retry_if_header(mut self, name: HeaderName) -> Self {
        self.header = Some(name);
        self
    }

    /// Also retries requests for which `predicate` returns `true` (it sees the method, URI,
    /// headers and extensions).
    #[must_use]
    pub fn retry_request_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Replaces the statuses that are retried (by default 429, 502, 503, 504).
    #[must_use]
    pub fn retry_on_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.statuses = StatusSet::EMPTY;
        for status in statuses {
            self.statuses.insert(status);
        }
        self
    }

    /// Whether a `Retry-After` header on a retried answer sets the delay (default `true`).
    #[must_use]
    pub fn honor_retry_after(mut self, honor: bool) -> Self {
        self.retry_after = honor;
        self
    }

    /// Sets how many bytes of a request body are kept to replay it (default 64 KiB). A request
    /// whose body is larger is sent once and never retried; 0 retries only empty bodies.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `limit` is above 16 MiB.
    pub fn with_body_limit(mut self, limit: usize) -> Result<Self, ConfigError> {
        if limit > MAX_BODY_LIMIT {
            return Err(ConfigError::out_of_range(
                "retry.body_limit",
                "must be at most 16 MiB",
            ));
        }
        self.body_limit = limit;
        Ok(self)
    }

    /// Seeds the jitter, for reproducible delays in tests (by default a seed is drawn from the
    /// OS once per layer).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the wall clock used to turn a `Retry-After` HTTP-date into a delay (default
    /// [`SystemTime::now`]).
    #[must_use]
    pub fn with_wall_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.wall_clock = now;
        self
    }

    /// The backoff.
    pub fn backoff(&self) -> &ExponentialBackoff {
        &self.backoff
    }

    /// The retry budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// Whether a request with these parts may be retried at all (method or opt-in).
    pub fn allows(&self, parts: &Parts) -> bool {
        parts.method.is_idempotent()
            || self.methods.contains(&parts.method)
            || self
                .header
                .as_ref()
                .is_some_and(|h| parts.headers.contains_key(h))
            || self.predicate.as_ref().is_some_and(|p| p(parts))
    }

    /// Whether an answer with `status` is retried.
    pub fn is_retryable_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(status)
    }

    /// Whether a gRPC answer is retried: an HTTP 200 whose headers (a trailers-only answer)
    /// carry `grpc-status: 14` (`UNAVAILABLE`, the one code gRPC calls safe to retry). Only
    /// requests the policy [`allows`](Self::allows) are retried: gRPC calls are POSTs, so opt
    /// them in, e.g. with
    /// `retry_request_if(|p| battlement::grpc::is_grpc(&p.headers))`.
    pub fn is_retryable_grpc(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        status == StatusCode::OK
            && crate::grpc::status_of(headers, None)
                == Some(crate::grpc::Code::Unavailable.as_u8().into())
    }

    /// The delay a retried answer asks for, uncapped, if the policy honours it: its gRPC
    /// `retry-pushback-ms` (the server's pushback, a whole number of milliseconds), else its
    /// `Retry-After` header, when valid.
    pub fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        if !self.retry_after {
            return None;
        }
        if let Some(ms) = headers
            .get(&crate::grpc::RETRY_PUSHBACK_MS)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|s| s.parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
        parse_retry_after(headers.get(header::RETRY_AFTER)?, (self.wall_clock)())
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("statuses", &self.statuses)
            .field("methods", &self.methods)
            .field("header", &self.header)
            .field("predicate", &self.predicate.as_ref().map(|_| ".."))
            .field("retry_after", &self.retry_after)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), relative to `now`.
/// A date in the past is a zero delay; anything else invalid is `None`.
pub(crate) fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: an overflow is a very long delay, capped later.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A set of status codes (100 to 999) as a bit set.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusSet([u64; 16]);

impl StatusSet {
    const EMPTY: Self = Self([0; 16]);
    const DEFAULT: Self = {
        let mut set = Self::EMPTY;
        let codes = [429u16, 502, 503, 504];
        let mut i = 0;
        while i < codes.len() {
            set.0[(codes[i] / 64) as usize] |= 1 << (codes[i] % 64);
            i += 1;
        }
        set
    };

    fn insert(&mut self, status: StatusCode) {
        let code = status.as_u16();
        self.0[usize::from(code / 64)] |= 1 << (code % 64);
    }

    fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.0[usize::from(code / 64)] & (1 << (code % 64)) != 0
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries((100..1000u16).filter(|c| self.0[usize::from(c / 64)] & (1 << (c % 64)) != 0))
            .finish()
    }
}

/// Decides whether an error of the inner service is worth retrying.
///
/// Implemented by [`DefaultClassifyError`] and by closures
/// `Fn(&(dyn Error + Send + Sync + 'static)) -> bool`. Set one with
/// [`RetryLayer::with_classifier`](super::RetryLayer::with_classifier).
pub trait ClassifyError {
    /// `true` when the request may be sent again after `error`.
    fn is_retryable(&self, error: &(dyn StdError + Send + Sync + 'static)) -> bool;
}

impl<F> ClassifyError for F
where
    F: Fn(&(dyn StdError + Send + Sync + 'static)) -> bool,
{
    fn is_retryable(&self, error: &(dyn StdError + Send + Sync + 'static)) -> bool {
        self(error)
    }
}

/// The default error classifier: every error is retried (connection errors, timeouts, ...)
/// unless it, or an error in its [`source`](StdError::source) chain, is a [`NonRetryable`] or a
/// [`RetryError`] (an inner retry layer already gave up), or a
/// [`CircuitOpen`](crate::circuit_breaker::CircuitOpen) rejection (an open circuit is not
/// retried: the breaker exists to stop traffic, and its cooldown outlasts any backoff).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClassifyError;

impl ClassifyError for DefaultClassifyError {
    fn is_retryable(&self, error: &(dyn StdError + Send + Sync + 'static)) -> bool {
        let mut current: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = current {
            if e.is::<NonRetryable>()
                || e.is::<RetryError>()
                || e.is::<crate::circuit_breaker::CircuitOpen>()
            {
                return false;
            }
            current = e.source();
        }
        true
    }
}

/// Marks an error as not worth retrying: the default classifier never retries a request after an
/// error that is, or is caused by, a `NonRetryable`.
///
/// ```
/// use battlement::retry::NonRetryable;
///
/// let err = NonRetryable::new(std::io::Error::other("tenant suspended"));
/// assert_eq!(err.to_string(), "tenant suspended");
/// ```
#[derive(Debug)]
pub struct NonRetryable(Box<dyn StdError + Send + Sync>);

impl NonRetryable {
    /// Wraps `error`.
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(error.into())
    }

    /// The wrapped error.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync> {
        self.0
    }
}

impl fmt::Display for NonRetryable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for NonRetryable {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn idempotent_methods_by_default() {
        let p = RetryPolicy::default();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(p.allows(&parts(m, &[])));
        }
        assert!(!p.allows(&parts(Method::POST, &[])));
        assert!(!p.allows(&parts(Method::PATCH, &[("idempotency-key", "k")])));
    }

    #[test]
    fn grpc_unavailable_and_pushback() {
        let p = RetryPolicy::default();
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("14"));
        assert!(p.is_retryable_grpc(StatusCode::OK, &h));
        h.insert("grpc-status", HeaderValue::from_static("3"));
        assert!(!p.is_retryable_grpc(StatusCode::OK, &h));
        assert!(!p.is_retryable_grpc(StatusCode::OK, &HeaderMap::new()));
        h.insert("retry-pushback-ms", HeaderValue::from_static("1500"));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("9"));
        assert_eq!(p.retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert("retry-pushback-ms", HeaderValue::from_static("-1"));
        assert_eq!(p.retry_after(&h), Some(Duration::from_secs(9)));
    }

    #[test]
    fn opt_ins() {
        let p = RetryPolicy::default().retry_with_idempotency_key();
        assert!(p.allows(&parts(Method::POST, &[("idempotency-key", "k")])));
        assert!(!p.allows(&parts(Method::POST, &[])));
        let p = RetryPolicy::default().retry_method(Method::PATCH);
        assert!(p.allows(&parts(Method::PATCH, &[])));
        let p = RetryPolicy::default().retry_request_if(|p| p.uri.path() == "/");
        assert!(p.allows(&parts(Method::POST, &[])));
    }

    #[test]
    fn statuses() {
        let p = RetryPolicy::default();
        for s in [429, 502, 503, 504] {
            assert!(p.is_retryable_status(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 400, 404, 500, 501, 999] {
            assert!(!p.is_retryable_status(StatusCode::from_u16(s).unwrap()));
        }
        let p = p.retry_on_statuses([StatusCode::INTERNAL_SERVER_ERROR]);
        assert!(p.is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!p.is_retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(format!("{:?}", StatusSet::DEFAULT), "{429, 502, 503, 504}");
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let v = |s: &'static str| parse_retry_after(&HeaderValue::from_static(s), now);
        assert_eq!(v("120"), Some(Duration::from_secs(120)));
        assert_eq!(v(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            v("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            v("Sun, 06 Nov 1994 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(v("Sun, 06 Nov 1994 08:49:30 GMT"), Some(Duration::ZERO));
        assert_eq!(v("-1"), None);
        assert_eq!(v("1.5"), None);
        assert_eq!(v("soon"), None);
        assert_eq!(v(""), None);
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(bytes: Vec<u8>, secs: u64) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % (1 << 40));
                let _ = parse_retry_after(&value, now);
            }
        }

        #[test]
        fn retry_after_seconds_roundtrip(secs: u64) {
            let value = HeaderValue::from(secs);
            proptest::prop_assert_eq!(
                parse_retry_after(&value, SystemTime::now()),
                Some(Duration::from_secs(secs))
            );
        }
    }

    #[test]
    fn default_classifier_refuses_marked_errors() {
        let c = DefaultClassifyError;
        let io = std::io::Error::other("reset");
        assert!(c.is_retryable(&io));
        assert!(!c.is_retryable(&NonRetryable::new("no")));
        // In a source chain.
        #[derive(Debug)]
        struct Wrapper(NonRetryable);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        assert!(!c.is_retryable(&Wrapper(NonRetryable::new("no"))));
        let closure = |_: &(dyn StdError + Send + Sync + 'static)| false;
        assert!(!closure.is_retryable(&io));
    }
}
