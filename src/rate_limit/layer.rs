//! The layer, its limits and its configuration.

use std::{
    collections::HashMap,
    fmt,
    hash::{Hash, Hasher},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use tower::Layer;

use super::{
    clock::{Clock, MonotonicClock},
    gcra::Params,
    headers::HeaderStyle,
    key::{KeyError, KeyExtractor, RequestInfo},
    quota::Quota,
    service::RateLimit,
    store::{MAX_LIMITS, MemoryStore, RateLimitStore},
};
use crate::{error::ConfigError, problem::DefaultRejection};

static NEXT_LIMIT_ID: AtomicU64 = AtomicU64::new(1);

/// A quota with what it is precomputed into.
pub(crate) struct QuotaInfo {
    pub(crate) quota: Quota,
    pub(crate) params: Params,
    pub(crate) policy_item: String,
    pub(crate) policy_value: HeaderValue,
}

impl QuotaInfo {
    fn new(quota: Quota) -> Self {
        let policy_item = format!(
            "\"{}\";q={};w={}",
            quota.name(),
            quota.count(),
            quota.window_secs()
        );
        // Quota names are validated visible ASCII without quotes or backslashes.
        let policy_value =
            HeaderValue::try_from(policy_item.as_str()).unwrap_or(HeaderValue::from_static(""));
        Self {
            params: quota.params(),
            quota,
            policy_item,
            policy_value,
        }
    }
}

/// One limit: a quota per key, with optional higher (or lower) quotas for some keys.
///
/// ```
/// use std::num::NonZeroU32;
/// use battlement::rate_limit::{ExtensionKey, Limit, Quota};
///
/// #[derive(Clone, PartialEq, Eq, Hash)]
/// struct Principal(String);
///
/// let per_principal = Limit::new(ExtensionKey::<Principal>::new(), Quota::per_minute(NonZeroU32::new(100).unwrap()))
///     .with_override(Principal("batch-job".into()), Quota::per_minute(NonZeroU32::new(10_000).unwrap()));
/// # let _ = per_principal;
/// ```
pub struct Limit<E: KeyExtractor> {
    extractor: E,
    quotas: Vec<QuotaInfo>,
    overrides: HashMap<E::Key, u16>,
    id: u64,
}

impl<E: KeyExtractor> Limit<E> {
    /// `quota` for each key that `extractor` finds.
    pub fn new(extractor: E, quota: Quota) -> Self {
        Self {
            extractor,
            quotas: vec![QuotaInfo::new(quota)],
            overrides: HashMap::new(),
            id: NEXT_LIMIT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Gives `key` its own `quota` instead (a premium customer, a batch job).
    ///
    /// The key is compared as the extractor returns it: for IPv6 addresses, the masked
    /// network ([`mask_ip`](super::mask_ip)).
    ///
    /// At most 65,535 overrides per limit; further ones are ignored.
    #[must_use]
    pub fn with_override(mut self, key: E::Key, quota: Quota) -> Self {
        if let Ok(index) = u16::try_from(self.quotas.len()) {
            self.quotas.push(QuotaInfo::new(quota));
            self.overrides.insert(key, index);
        }
        self
    }

    /// Names the buckets of this limit with `id` instead of a number unique in the process.
    ///
    /// Two limits with the same id and key share a bucket in a shared store: give each limit
    /// of a store a distinct id, the same on every instance when the store is distributed.
    #[must_use]
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }
}

impl<E: KeyExtractor + fmt::Debug> fmt::Debug for Limit<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("extractor", &self.extractor)
            .field("quota", &self.quotas[0].quota)
            .field("overrides", &self.overrides.len())
            .finish()
    }
}

/// A limit with its key type erased, as the layer holds it.
pub(crate) trait ErasedLimit: Send + Sync + 'static {
    /// Hashes the request's key into `state` and says which quota applies (`None`: the limit
    /// does not apply).
    fn resolve(
        &self,
        req: &RequestInfo<'_>,
        state: &mut dyn Hasher,
    ) -> Result<Option<u16>, KeyError>;
    fn quota(&self, index: u16) -> &QuotaInfo;
    fn base(&self) -> &Quota;
    fn id(&self) -> u64;
}

impl<E: KeyExtractor> ErasedLimit for Limit<E> {
    fn resolve(
        &self,
        req: &RequestInfo<'_>,
        mut state: &mut dyn Hasher,
    ) -> Result<Option<u16>, KeyError> {
        // The identity: the key alone; the limit's id is mixed in by `Check::bucket`.
        self.extractor.with_key(req, |key| {
            key.hash(&mut state);
            if self.overrides.is_empty() {
                0
            } else {
                self.overrides.get(key).copied().unwrap_or(0)
            }
        })
    }

    fn quota(&self, index: u16) -> &QuotaInfo {
        self.quotas
            .get(usize::from(index))
            .unwrap_or(&self.quotas[0])
    }

    fn base(&self) -> &Quota {
        &self.quotas[0].quota
    }

    fn id(&self) -> u64 {
        self.id
    }
}

/// What the response looked like, for a cost adjustment.
#[derive(Clone, Copy, Debug)]
pub struct ResponseInfo<'a> {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (a handler can put the real cost there).
    pub extensions: &'a Extensions,
}

/// What to do when the store cannot decide (only stores doing I/O can fail).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreFailure {
    /// Let the request through unlimited (and log an error).
    Open,
    /// Answer 503 (and log an error).
    #[default]
    Closed,
}

type CostFn = dyn Fn(&RequestInfo<'_>) -> u64 + Send + Sync;
type AdjustFn = dyn Fn(&ResponseInfo<'_>) -> Option<u64> + Send + Sync;

/// The configuration and state every clone of the service shares.
pub(crate) struct Shared<St, R> {
    pub(crate) limits: Vec<Arc<dyn ErasedLimit>>,
    pub(crate) store: St,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cost: Option<Arc<CostFn>>,
    pub(crate) adjust: Option<Arc<AdjustFn>>,
    pub(crate) headers: HeaderStyle,
    pub(crate) on_store_error: StoreFailure,
    pub(crate) rejection: R,
}

impl<St: Clone, R: Clone> Clone for Shared<St, R> {
    fn clone(&self) -> Self {
        Self {
            limits: self.limits.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
            cost: self.cost.clone(),
            adjust: self.adjust.clone(),
            headers: self.headers,
            on_store_error: self.on_store_error,
            rejection: self.rejection.clone(),
        }
    }
}

/// Limits requests per key with GCRA; see the [module docs](super).
///
/// # Refusals while the body is still coming (HTTP/2)
///
/// A 429 (or the 500 of a missing key, the 503 of a failed store) is decided before anything reads the request body. If the body is not finished and
/// declares at most 64 KiB, the refusal first reads it to its end (at most 64 KiB, 1,024
/// frames and one second), throwing each chunk away, and answers after: the HTTP/2 stream then
/// ends cleanly instead of being reset while the client is still sending (which some clients
/// report as an error instead of the answer, and which, with the DATA the client had in
/// flight, uses up the connection's budget of resets in hyper/h2). A larger body is not read:
/// the answer goes at once. A request without a body pays nothing, and a client sending
/// `Expect: 100-continue` is answered at once. The wait needs a tokio runtime (without one,
/// the answer goes at once).
pub struct RateLimitLayer<St = MemoryStore, R = DefaultRejection> {
    shared: Arc<Shared<St, R>>,
}

impl RateLimitLayer {
    /// A layer enforcing `limit`, on a fresh [`MemoryStore`] and the monotonic clock.
    pub fn new<E: KeyExtractor>(limit: Limit<E>) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits: vec![Arc::new(limit)],
                store: MemoryStore::new(),
                clock: Arc::new(MonotonicClock::new()),
                cost: None,
                adjust: None,
                headers: HeaderStyle::default(),
                on_store_error: StoreFailure::default(),
                rejection: DefaultRejection,
            }),
        }
    }
}

impl<St: Clone, R: Clone> RateLimitLayer<St, R> {
    fn map<St2, R2>(
        self,
        f: impl FnOnce(Shared<St, R>) -> Shared<St2, R2>,
    ) -> RateLimitLayer<St2, R2> {
        let shared = Arc::unwrap_or_clone(self.shared);
        RateLimitLayer {
            shared: Arc::new(f(shared)),
        }
    }

    /// Adds a limit that must pass too: all limits of the layer are decided together, and none
    /// is charged when one fails (per second and per minute, per IP and per principal).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] past [`MAX_LIMITS`] limits.
    pub fn and<E: KeyExtractor>(self, limit: Limit<E>) -> Result<Self, ConfigError> {
        if self.shared.limits.len() >= MAX_LIMITS {
            return Err(ConfigError::out_of_range(
                "rate_limit.limits",
                "at most 4 limits per layer",
            ));
        }
        Ok(self.map(|mut s| {
            s.limits.push(Arc::new(limit));
            s
        }))
    }

    /// Charges each request `cost(request)` units instead of 1 (tokens per minute, bytes).
    /// A request whose cost is above a quota's burst is refused with
    /// [`RateLimitReason::CostAboveBurst`](super::RateLimitReason::CostAboveBurst).
    #[must_use]
    pub fn with_cost<F>(self, cost: F) -> Self
    where
        F: Fn(&RequestInfo<'_>) -> u64 + Send + Sync + 'static,
    {
        self.map(|mut s| {
            s.cost = Some(Arc::new(cost));
            s
        })
    }

    /// Corrects the charge once the response head is there: `real_cost(response)` returns the
    /// real cost (from a header or an extension the handler set), and the difference with what
    /// was charged is charged (a key may go into debt) or refunded. `None` keeps the charge.
    #[must_use]
    pub fn with_adjustment<F>(self, real_cost: F) -> Self
    where
        F: Fn(&ResponseInfo<'_>) -> Option<u64> + Send + Sync + 'static,
    {
        self.map(|mut s| {
            s.adjust = Some(Arc::new(real_cost));
            s
        })
    }

    /// Which rate-limit headers go on responses ([`HeaderStyle::Ietf`] by default).
    #[must_use]
    pub fn with_headers(self, style: HeaderStyle) -> Self {
        self.map(|mut s| {
            s.headers = style;
            s
        })
    }

    /// What to do when the store fails ([`StoreFailure::Closed`] by default).
    #[must_use]
    pub fn on_store_error(self, policy: StoreFailure) -> Self {
        self.map(|mut s| {
            s.on_store_error = policy;
            s
        })
    }

    /// Uses `clock` (a [`TokioClock`](super::TokioClock) or [`ManualClock`](super::ManualClock)
    /// in tests).
    #[must_use]
    pub fn with_clock<C: Clock>(self, clock: C) -> Self {
        self.map(|mut s| {
            s.clock = Arc::new(clock);
            s
        })
    }

    /// Keeps state in `store` (share one [`MemoryStore`] between per-route layers to give
    /// them one memory cap).
    #[must_use]
    pub fn with_store<St2: RateLimitStore + Clone>(self, store: St2) -> RateLimitLayer<St2, R> {
        self.map(|s| Shared {
            limits: s.limits,
            store,
            clock: s.clock,
            cost: s.cost,
            adjust: s.adjust,
            headers: s.headers,
            on_store_error: s.on_store_error,
            rejection: s.rejection,
        })
    }

    /// Replaces the rejection response (a closure `Fn(Problem) -> Response<B>` works).
    #[must_use]
    pub fn with_rejection<R2: Clone>(self, rejection: R2) -> RateLimitLayer<St, R2> {
        self.map(|s| Shared {
            limits: s.limits,
            store: s.store,
            clock: s.clock,
            cost: s.cost,
            adjust: s.adjust,
            headers: s.headers,
            on_store_error: s.on_store_error,
            rejection,
        })
    }

    /// What the layer's services share.
    pub(crate) fn shared(&self) -> &Arc<Shared<St, R>> {
        &self.shared
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<St, R> Clone for RateLimitLayer<St, R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<St: fmt::Debug, R> fmt::Debug for RateLimitLayer<St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quotas: Vec<&Quota> = self.shared.limits.iter().map(|l| l.base()).collect();
        f.debug_struct("RateLimitLayer")
            .field("quotas", &quotas)
            .field("store", &self.shared.store)
            .field("headers", &self.shared.headers)
            .field("weighted", &self.shared.cost.is_some())
            .field("adjusted", &self.shared.adjust.is_some())
            .finish()
    }
}

impl<S, St, R> Layer<S> for RateLimitLayer<St, R> {
    type Service = RateLimit<S, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.shared.clone())
    }
}
