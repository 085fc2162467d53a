//! The service.

use std::{
    fmt,
    hash::{BuildHasher, Hasher},
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response, header::RETRY_AFTER};
use http_body::Body;
use tower::Service;

use super::{
    future::{Adjust, Kind, ResponseFuture},
    headers::{HeaderSet, RateLimitReason, RateLimited, retry_after_secs},
    key::RequestInfo,
    layer::{QuotaInfo, Shared, StoreFailure},
    store::{Check, Decision, MAX_LIMITS, RateLimitStore, StoreError, StoreResult, Verdict},
};
use crate::problem::{MakeRejection, Problem, ProblemType};

/// The checks of one request and which quota each came from.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Batch {
    checks: [Check; MAX_LIMITS],
    quotas: [(u8, u16); MAX_LIMITS],
    len: u8,
    cost: u64,
}

impl Batch {
    pub(crate) fn checks(&self) -> &[Check] {
        &self.checks[..usize::from(self.len)]
    }

    pub(crate) fn cost(&self) -> u64 {
        self.cost
    }

    fn quotas<'a, St, R>(&self, shared: &'a Shared<St, R>) -> [Option<&'a QuotaInfo>; MAX_LIMITS] {
        let mut out = [None; MAX_LIMITS];
        for (i, &(limit, quota)) in self.quotas[..usize::from(self.len)].iter().enumerate() {
            out[i] = Some(shared.limits[usize::from(limit)].quota(quota));
        }
        out
    }
}

/// The rate-limiting service made by [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, St, R> {
    inner: S,
    shared: Arc<Shared<St, R>>,
}

impl<S, St, R> RateLimit<S, St, R> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St, R>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, St, R> Clone for RateLimit<S, St, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, St, R> fmt::Debug for RateLimit<S, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limits", &self.shared.limits.len())
            .finish_non_exhaustive()
    }
}

impl<S, St, R, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, St, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    St: RateLimitStore,
    R: MakeRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match check(&self.shared, &req) {
            Checked::Now(outcome) => ResponseFuture::new(outcome.into_kind(&mut self.inner, req)),
            Checked::Pending(decision, batch) => {
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::new(Kind::pending(
                    decision,
                    svc,
                    req,
                    batch,
                    self.shared.clone(),
                ))
            }
        }
    }
}

/// What the rate limit decided for a request, before the inner service is called.
pub(crate) enum Outcome<ResBody, St, R> {
    /// Admitted (or let through by a failing store under [`StoreFailure::Open`]): the headers
    /// for the response and what to adjust the charge with after it.
    Pass {
        headers: Option<HeaderSet>,
        adjust: Option<Box<Adjust<St, R>>>,
    },
    /// Refused (or the key or the store failed): this response.
    Reject(Response<ResBody>),
}

impl<ResBody, St, R> Outcome<ResBody, St, R>
where
    St: RateLimitStore,
{
    /// Calls `inner` when admitted.
    #[inline]
    pub(crate) fn into_kind<S, ReqBody>(
        self,
        inner: &mut S,
        req: Request<ReqBody>,
    ) -> Kind<S, ReqBody, St, R>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ReqBody: Body,
    {
        match self {
            Self::Pass { headers, adjust } => Kind::passed(inner.call(req), headers, adjust),
            Self::Reject(res) => Kind::rejected(res, req),
        }
    }
}

/// The decision now, or the store's future of it.
pub(crate) enum Checked<ResBody, St: RateLimitStore, R> {
    Now(Outcome<ResBody, St, R>),
    Pending(St::Future, Batch),
}

/// Resolves the keys of `req` and asks the store.
pub(crate) fn check<St, R, ReqBody, ResBody>(
    shared: &Arc<Shared<St, R>>,
    req: &Request<ReqBody>,
) -> Checked<ResBody, St, R>
where
    St: RateLimitStore,
    R: MakeRejection<ResBody>,
{
    let mut batch = Batch::default();
    {
        let info = RequestInfo::new(req);
        for (i, limit) in shared.limits.iter().enumerate() {
            let mut state = shared.store.key_hasher().build_hasher();
            match limit.resolve(&info, &mut state) {
                Ok(Some(q)) => {
                    let n = usize::from(batch.len);
                    let params = limit.quota(q).params;
                    let identity = state.finish();
                    batch.checks[n] = Check {
                        key: Check::bucket(limit.id(), identity),
                        identity,
                        emission_ns: params.emission,
                        limit_ns: params.limit,
                        cost: 1,
                    };
                    // `i < MAX_LIMITS` (the layer refuses more), so it fits in a u8.
                    batch.quotas[n] = (i as u8, q);
                    batch.len += 1;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(
                        target: "battlement::rate_limit",
                        %error,
                        "rate limit key unavailable; answering 500"
                    );
                    let mut problem = Problem::new(ProblemType::INTERNAL_ERROR);
                    if let Some(detail) = error.client_detail() {
                        // A `&'static str`: no allocation (the error path only).
                        problem = problem.with_detail(detail);
                    }
                    let problem = problem
                        .with_request_id_from(req.extensions())
                        .for_request(req.headers());
                    let mut res = crate::problem::refuse(&shared.rejection, problem);
                    res.extensions_mut().insert(error);
                    return Checked::Now(Outcome::Reject(res));
                }
            }
        }
        if batch.len == 0 {
            return Checked::Now(Outcome::Pass {
                headers: None,
                adjust: None,
            });
        }
        let cost = shared.cost.as_ref().map_or(1, |f| f(&info));
        batch.cost = cost;
        for c in &mut batch.checks[..usize::from(batch.len)] {
            c.cost = cost;
        }
    }
    let now = shared.clock.now_ns();
    match shared.store.check(batch.checks(), now) {
        StoreResult::Ready(result) => Checked::Now(decide(shared, req, batch, result)),
        StoreResult::Pending(decision) => Checked::Pending(decision, batch),
    }
}

/// What to do once the store has decided: call the inner service or reject.
pub(crate) fn decided<S, St, R, ReqBody, ResBody>(
    shared: &Arc<Shared<St, R>>,
    inner: &mut S,
    req: Request<ReqBody>,
    batch: Batch,
    result: Result<Decision, StoreError>,
) -> Kind<S, ReqBody, St, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body,
    St: RateLimitStore,
    R: MakeRejection<ResBody>,
{
    decide(shared, &req, batch, result).into_kind(inner, req)
}

/// The outcome of the store's decision for `req`.
pub(crate) fn decide<St, R, ReqBody, ResBody>(
    shared: &Arc<Shared<St, R>>,
    req: &Request<ReqBody>,
    batch: Batch,
    result: Result<Decision, StoreError>,
) -> Outcome<ResBody, St, R>
where
    St: RateLimitStore,
    R: MakeRejection<ResBody>,
{
    let decision = match result {
        Ok(d) => d,
        Err(error) => return store_failed(shared, req, &error),
    };
    let all = batch.quotas(shared);
    let quotas = &all[..batch.checks().len()];
    let binding = match decision.verdict {
        Verdict::Allowed => decision
            .states()
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.remaining)
            .map_or(0, |(i, _)| i),
        Verdict::Denied { index, .. } | Verdict::CostAboveBurst { index } => index,
    };
    let headers = HeaderSet::new(shared.headers, quotas, decision.states(), binding);
    match decision.verdict {
        Verdict::Allowed => {
            let adjust = shared
                .adjust
                .is_some()
                .then(|| Box::new((shared.clone(), batch)));
            Outcome::Pass { headers, adjust }
        }
        Verdict::Denied { retry_after, .. } => {
            let policy = quotas
                .get(binding)
                .copied()
                .flatten()
                .map_or("", |q| q.quota.name());
            let secs = retry_after_secs(retry_after);
            tracing::debug!(
                target: "battlement::rate_limit",
                policy,
                retry_after_secs = secs,
                cost = batch.cost(),
                "rate limited"
            );
            let problem = Problem::new(ProblemType::TOO_MANY_REQUESTS)
                .with_detail("Too many requests: wait for the time in Retry-After, then retry.")
                .with_request_id_from(req.extensions())
                .for_request(req.headers())
                .with_header(RETRY_AFTER, HeaderValue::from(secs));
            let cause = RateLimited {
                retry_after: Some(retry_after),
                policy: policy.to_owned(),
                reason: RateLimitReason::QuotaExceeded,
            };
            reject(shared, problem, headers, cause)
        }
        Verdict::CostAboveBurst { .. } => {
            let policy = quotas
                .get(binding)
                .copied()
                .flatten()
                .map_or("", |q| q.quota.name());
            tracing::debug!(
                target: "battlement::rate_limit",
                policy,
                cost = batch.cost(),
                "rate limited: cost above burst"
            );
            let problem = Problem::new(ProblemType::TOO_MANY_REQUESTS)
                .with_detail(
                    "This request costs more than the rate limit allows at once; it can never \
                     be admitted. Split it into smaller requests.",
                )
                .with_request_id_from(req.extensions())
                .for_request(req.headers());
            let cause = RateLimited {
                retry_after: None,
                policy: policy.to_owned(),
                reason: RateLimitReason::CostAboveBurst,
            };
            reject(shared, problem, headers, cause)
        }
    }
}

fn reject<St, R, ResBody>(
    shared: &Shared<St, R>,
    problem: Problem,
    headers: Option<HeaderSet>,
    cause: RateLimited,
) -> Outcome<ResBody, St, R>
where
    R: MakeRejection<ResBody>,
{
    let mut res = crate::problem::refuse(&shared.rejection, problem);
    if let Some(h) = headers {
        h.apply(res.headers_mut());
    }
    res.extensions_mut().insert(cause);
    Outcome::Reject(res)
}

fn store_failed<St, R, ReqBody, ResBody>(
    shared: &Shared<St, R>,
    req: &Request<ReqBody>,
    error: &StoreError,
) -> Outcome<ResBody, St, R>
where
    R: MakeRejection<ResBody>,
{
    // A failure the store reports itself (an outage, logged once per state change and then
    // in periodic summaries) is not logged again for every request.
    macro_rules! log {
        ($msg:literal) => {
            if error.is_reported() {
                tracing::debug!(target: "battlement::rate_limit", %error, $msg);
            } else {
                tracing::error!(target: "battlement::rate_limit", %error, $msg);
            }
        };
    }
    match shared.on_store_error {
        StoreFailure::Open => {
            log!("rate limit store failed; letting the request through");
            Outcome::Pass {
                headers: None,
                adjust: None,
            }
        }
        StoreFailure::Closed => {
            log!("rate limit store failed; answering 503");
            let problem = Problem::new(ProblemType::SERVICE_UNAVAILABLE)
                .with_request_id_from(req.extensions())
                .for_request(req.headers())
                .with_header(RETRY_AFTER, HeaderValue::from_static("1"));
            Outcome::Reject(crate::problem::refuse(&shared.rejection, problem))
        }
    }
}
