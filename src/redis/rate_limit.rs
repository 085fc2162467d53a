//! The rate-limit store on Redis.

use std::{
    fmt,
    fmt::Write as _,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use super::{
    config::{FailurePolicy, RedisConfig},
    connection::{ConnectError, Inner, IoFuture, RedisConnection, guarded},
    hash::StableKeyHasher,
};
use crate::{
    circuit_breaker::Permit,
    rate_limit::{
        Check, Decision, KeyState, MAX_LIMITS, MemoryStore, RateLimitStore, StoreError,
        StoreResult, Verdict, store::OverLimitCache,
    },
};

/// A [`RateLimitStore`] on Redis: GCRA in one Lua script on Redis's clock, the limits of one
/// identity in one hash decided in one `EVALSHA` round trip; see the [module docs](super).
///
/// Cloning shares the connection, the fallback store and the local over-limit cache.
#[derive(Clone)]
pub struct RedisRateLimitStore {
    conn: RedisConnection,
    fallback: MemoryStore,
    cache: Option<Arc<OverLimitCache>>,
}

impl RedisRateLimitStore {
    pub(crate) fn new(conn: RedisConnection) -> Self {
        let keys = conn.inner.config.fallback_max_keys;
        // `fallback_max_keys` is validated to be at least 64, which is all `with_max_keys` asks.
        let fallback = MemoryStore::with_max_keys(keys).unwrap_or_default();
        let cache = OverLimitCache::new(conn.inner.config.local_cache).map(Arc::new);
        Self {
            conn,
            fallback,
            cache,
        }
    }

    /// Connects to `url` and makes a store: the one call a server needs
    /// ([`RedisConnection::connect`], then [`RedisConnection::rate_limit_store`]).
    ///
    /// # Errors
    ///
    /// A [`ConnectError`]: invalid URL, no tokio runtime, or Redis unreachable.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, ConnectError> {
        Ok(RedisConnection::connect(url, config)
            .await?
            .rate_limit_store())
    }

    /// The connection (its breaker, its config).
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    /// The in-memory store used by [`FailurePolicy::FallbackToMemory`].
    pub fn fallback(&self) -> &MemoryStore {
        &self.fallback
    }

    /// How many requests the local over-limit cache refused without a round trip
    /// ([`RedisConfig::with_local_cache`]).
    pub fn local_refusals(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.hits())
    }

    /// The most memory the local over-limit cache takes, in bytes (allocated when the store
    /// is made; 0 when it is off).
    pub fn local_cache_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| {
            c.capacity() * crate::rate_limit::store::CACHE_BYTES_PER_SLOT
        })
    }

    /// The Redis key of the hash holding every bucket of the identity with fingerprint
    /// `identity` ([`Check::identity`]): `prefix:rl:{<16 hex digits>}`, the identity its hash
    /// tag. The field of each bucket is [`Check::key`] in 16 hex digits.
    pub fn redis_key(&self, identity: u64) -> String {
        key(&self.conn.inner, identity)
    }

    fn on_failure(
        &self,
        checks: &[Check],
        now_ns: u64,
        error: Cause<'_>,
    ) -> Result<Decision, StoreError> {
        decide_without_redis(
            self.conn.inner.config.failure,
            &self.fallback,
            checks,
            now_ns,
            error,
        )
    }
}

fn key(inner: &Inner, identity: u64) -> String {
    key_in(&inner.rl_prefix, identity)
}

fn key_in(prefix: &str, identity: u64) -> String {
    let mut k = String::with_capacity(prefix.len() + 18);
    k.push_str(prefix);
    // Writing to a String cannot fail.
    let _ = write!(k, "{{{identity:016x}}}");
    k
}

fn field(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// Why a decision is made without Redis.
#[derive(Clone, Copy, Debug)]
enum Cause<'a> {
    /// The breaker is open: counted and logged by the connection's [`Outage`](super::connection::Outage).
    CircuitOpen,
    /// The call failed (logged by `guarded`).
    Failed(&'a str),
}

fn decide_without_redis(
    policy: FailurePolicy,
    fallback: &MemoryStore,
    checks: &[Check],
    now_ns: u64,
    error: Cause<'_>,
) -> Result<Decision, StoreError> {
    match policy {
        // No states: the layer sends no rate-limit headers for a request it did not count.
        FailurePolicy::FailOpen => Ok(Decision::new(Verdict::Allowed, &[])),
        FailurePolicy::FailClosed => Err(match error {
            Cause::CircuitOpen => StoreError::reported("Redis unavailable: circuit open"),
            Cause::Failed(e) => StoreError::new(format!("Redis unavailable: {e}")),
        }),
        FailurePolicy::FallbackToMemory => match fallback.check(checks, now_ns) {
            StoreResult::Ready(d) => d,
            // The in-memory store always answers at once.
            StoreResult::Pending(f) => f.into_inner(),
        },
    }
}

/// The index in KEYS of each check's identity, and the number of distinct identities.
fn key_slots(checks: &[Check]) -> ([usize; MAX_LIMITS], usize) {
    let mut slot = [0; MAX_LIMITS];
    let mut seen = [0u64; MAX_LIMITS];
    let mut n = 0;
    for (i, c) in checks.iter().enumerate().take(MAX_LIMITS) {
        slot[i] = match seen[..n].iter().position(|&id| id == c.identity) {
            Some(j) => j,
            None => {
                seen[n] = c.identity;
                n += 1;
                n - 1
            }
        };
    }
    (slot, n)
}

/// The invocation of `script` over `checks`: KEYS are their identities' hashes (each once),
/// ARGV what `per_check` adds after `head`, with each check's key index and field first.
fn invocation<'a>(
    script: &'a ::redis::Script,
    prefix: &str,
    checks: &[Check],
    head: i64,
    rest: impl Fn(&mut ::redis::ScriptInvocation<'a>, &Check),
) -> ::redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    let (slot, _) = key_slots(checks);
    let mut added = 0;
    for (i, c) in checks.iter().enumerate() {
        if slot[i] == added {
            inv.key(key_in(prefix, c.identity));
            added += 1;
        }
    }
    inv.arg(head);
    for (i, c) in checks.iter().enumerate() {
        inv.arg(slot[i] + 1).arg(field(c.key));
        rest(&mut inv, c);
    }
    inv
}

/// One script call deciding `checks` all-or-nothing: one round trip.
async fn eval(inner: &Inner, checks: &[Check]) -> ::redis::RedisResult<Decision> {
    let n = i64::try_from(checks.len()).unwrap_or(0);
    let inv = invocation(&inner.gcra, &inner.rl_prefix, checks, n, |inv, c| {
        inv.arg(c.emission_ns.max(1)).arg(c.limit_ns).arg(c.cost);
    });
    let mut con = inner.manager();
    let v: Vec<i64> = inv.invoke_async(&mut con).await?;
    parse(&v, checks.len()).ok_or_else(|| {
        ::redis::RedisError::from((
            ::redis::ErrorKind::Client,
            "unexpected reply from the rate-limit script",
        ))
    })
}

/// One adjustment call (`delta` units more, a refund when negative) for `checks`.
async fn eval_adjust(
    script: &::redis::Script,
    prefix: &str,
    mut con: super::connection::Conn,
    checks: &[Check],
    delta: i64,
) -> ::redis::RedisResult<i64> {
    let inv = invocation(script, prefix, checks, delta, |inv, c| {
        inv.arg(c.emission_ns.max(1));
    });
    inv.invoke_async::<i64>(&mut con).await
}

/// The checks of one identity (one hash slot): their positions in the request.
#[derive(Clone, Copy, Default)]
struct Group {
    at: [usize; MAX_LIMITS],
    len: usize,
}

impl Group {
    fn checks(&self, all: &[Check]) -> ([Check; MAX_LIMITS], usize) {
        let mut out = [Check::default(); MAX_LIMITS];
        for (o, &i) in out.iter_mut().zip(&self.at[..self.len]) {
            *o = all[i];
        }
        (out, self.len)
    }
}

/// The checks grouped by identity, in order of first appearance.
fn groups(checks: &[Check]) -> ([Group; MAX_LIMITS], usize) {
    let (slot, n) = key_slots(checks);
    let mut g = [Group::default(); MAX_LIMITS];
    for (i, &s) in slot[..checks.len().min(MAX_LIMITS)].iter().enumerate() {
        g[s].at[g[s].len] = i;
        g[s].len += 1;
    }
    (g, n)
}

/// `checks` split by identity.
fn groups_of(checks: &[Check]) -> Vec<([Check; MAX_LIMITS], usize)> {
    let (g, n) = groups(checks);
    g[..n].iter().map(|g| g.checks(checks)).collect()
}

/// Combines the verdict so far with the verdict of one identity's group (`at`: the positions
/// of its checks): a cost above a burst wins, then the longest wait.
fn combine(so_far: Verdict, group: Verdict, at: &[usize]) -> Verdict {
    match (so_far, group) {
        (v @ Verdict::CostAboveBurst { .. }, _) => v,
        (_, Verdict::CostAboveBurst { index }) => Verdict::CostAboveBurst { index: at[index] },
        (Verdict::Denied { retry_after: a, .. }, Verdict::Denied { index, retry_after })
            if retry_after > a =>
        {
            Verdict::Denied {
                index: at[index],
                retry_after,
            }
        }
        (v @ Verdict::Denied { .. }, _) => v,
        (Verdict::Allowed, Verdict::Denied { index, retry_after }) => Verdict::Denied {
            index: at[index],
            retry_after,
        },
        (Verdict::Allowed, Verdict::Allowed) => Verdict::Allowed,
    }
}

/// Decides `checks` on a cluster, where a script may only touch one slot: one call per
/// identity, sent together (the multiplexed connections pipeline them, so the request waits
/// about one round trip), then, when one identity refused, a refund of what the others were
/// charged, awaited before the answer. Atomic per identity; across identities a concurrent
/// request may see the charge before its refund (and be refused by it at the edge of its
/// quota).
async fn eval_groups(inner: &Inner, checks: &[Check]) -> ::redis::RedisResult<Decision> {
    let (groups, n) = groups(checks);
    if n <= 1 {
        return eval(inner, checks).await;
    }
    let calls: Vec<_> = groups[..n]
        .iter()
        .map(|g| {
            let (batch, len) = g.checks(checks);
            Box::pin(async move { eval(inner, &batch[..len]).await })
        })
        .collect();
    let results = join_all(calls).await;
    let mut states = [KeyState::default(); MAX_LIMITS];
    let mut verdict = Verdict::Allowed;
    let mut failed = None;
    for (g, r) in groups[..n].iter().zip(&results) {
        match r {
            Ok(d) => {
                for (j, s) in d.states().iter().enumerate() {
                    states[g.at[j]] = *s;
                }
                verdict = combine(verdict, d.verdict, &g.at[..g.len]);
            }
            Err(e) => failed = Some(e.clone()),
        }
    }
    if failed.is_none() && verdict == Verdict::Allowed {
        return Ok(Decision::new(verdict, &states[..checks.len()]));
    }
    // Hand back what the identities that admitted the request were charged.
    let mut refund = [Check::default(); MAX_LIMITS];
    let mut len = 0;
    for (g, r) in groups[..n].iter().zip(&results) {
        if matches!(r, Ok(d) if d.is_allowed()) {
            for &i in &g.at[..g.len] {
                refund[len] = checks[i];
                len += 1;
                // The state once refunded.
                let c = &checks[i];
                let s = &mut states[i];
                let burst = c.limit_ns / c.emission_ns.max(1);
                s.remaining = s.remaining.saturating_add(c.cost).min(burst);
                s.reset_ns = s
                    .reset_ns
                    .saturating_sub(c.cost.saturating_mul(c.emission_ns));
            }
        }
    }
    if len > 0 {
        let cost = -i64::try_from(checks[0].cost).unwrap_or(i64::MAX);
        let calls: Vec<_> = groups_of(&refund[..len])
            .into_iter()
            .map(|(batch, l)| {
                let (script, prefix, con) = (
                    inner.adjust.clone(),
                    inner.rl_prefix.clone(),
                    inner.manager(),
                );
                Box::pin(async move { eval_adjust(&script, &prefix, con, &batch[..l], cost).await })
            })
            .collect();
        if failed.is_some() {
            // The decision fails anyway: refund in the background, bounded by the timeout.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let timeout = inner.config.timeout;
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(timeout, join_all(calls)).await;
                });
            }
        } else {
            for r in join_all(calls).await {
                // A failed refund leaves the charge to run out by itself: the refusal stands.
                if let Err(e) = r {
                    tracing::warn!(
                        target: "battlement::redis",
                        error = %super::connection::describe(&e),
                        "rate-limit refund failed"
                    );
                }
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(Decision::new(verdict, &states[..checks.len()])),
    }
}

/// Polls every future until all are done (at most [`MAX_LIMITS`], so a scan is fine).
async fn join_all<F: Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match Pin::new(f).poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    // Every slot is filled once the poll above is ready.
    out.into_iter().flatten().collect()
}

/// Reads the script's reply: `{status, index, retry_after_us, (remaining, reset_us)*n}`.
fn parse(v: &[i64], n: usize) -> Option<Decision> {
    if v.len() != 3 + 2 * n {
        return None;
    }
    let index = usize::try_from(v[1]).ok().filter(|&i| i < n.max(1))?;
    let verdict = match v[0] {
        0 => Verdict::Allowed,
        1 => Verdict::Denied {
            index,
            retry_after: Duration::from_micros(v[2].max(1).unsigned_abs()),
        },
        2 => Verdict::CostAboveBurst { index },
        _ => return None,
    };
    let mut states = [KeyState::default(); MAX_LIMITS];
    for (i, s) in states.iter_mut().take(n).enumerate() {
        s.remaining = v[3 + 2 * i].max(0).unsigned_abs();
        s.reset_ns = v[4 + 2 * i].max(0).unsigned_abs().saturating_mul(1000);
    }
    Some(Decision::new(verdict, &states[..n]))
}

/// The future of a Redis decision (one `EVALSHA` in all on a standalone Redis, one per
/// identity on a cluster, bounded by the timeout, then the failure policy if Redis did not
/// answer).
pub struct DecisionFuture {
    inner: IoFuture<Result<Decision, StoreError>>,
}

impl fmt::Debug for DecisionFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionFuture").finish_non_exhaustive()
    }
}

impl Future for DecisionFuture {
    type Output = Result<Decision, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

impl RateLimitStore for RedisRateLimitStore {
    type KeyHasher = StableKeyHasher;
    type Future = DecisionFuture;

    fn key_hasher(&self) -> &StableKeyHasher {
        &self.conn.inner.hasher
    }

    fn check(&self, checks: &[Check], now_ns: u64) -> StoreResult<DecisionFuture> {
        if checks.is_empty() {
            return StoreResult::Ready(Ok(Decision::new(Verdict::Allowed, &[])));
        }
        if checks.len() > MAX_LIMITS {
            return StoreResult::Ready(Err(StoreError::new("more checks than MAX_LIMITS")));
        }
        if let Some(d) = self.cache.as_ref().and_then(|c| c.get(checks, now_ns)) {
            return StoreResult::Ready(Ok(d));
        }
        let Some(permit) = self.conn.permit() else {
            let inner = &self.conn.inner;
            inner.outage.record(inner.config.failure);
            return StoreResult::Ready(self.on_failure(checks, now_ns, Cause::CircuitOpen));
        };
        let mut batch = [Check::default(); MAX_LIMITS];
        batch[..checks.len()].copy_from_slice(checks);
        let len = checks.len();
        let store = self.clone();
        StoreResult::Pending(DecisionFuture {
            inner: IoFuture::Io(Box::pin(async move {
                let checks = &batch[..len];
                let inner = &store.conn.inner;
                let call = async {
                    if inner.cluster {
                        eval_groups(inner, checks).await
                    } else {
                        eval(inner, checks).await
                    }
                };
                match guarded(inner, permit, "rate-limit decision", call).await {
                    Ok(decision) => {
                        if let Some(cache) = &store.cache {
                            cache.remember(checks, &decision, now_ns);
                        }
                        Ok(decision)
                    }
                    Err(e) => store.on_failure(checks, now_ns, Cause::Failed(&e)),
                }
            })),
        })
    }

    fn adjust(&self, checks: &[Check], delta: i64, now_ns: u64) {
        if delta == 0 || checks.is_empty() || checks.len() > MAX_LIMITS {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(permit) = self.conn.permit() else {
            if super::connection::falls_back(self.conn.inner.config.failure) {
                self.fallback.adjust(checks, delta, now_ns);
            }
            return;
        };
        let mut batch = [Check::default(); MAX_LIMITS];
        batch[..checks.len()].copy_from_slice(checks);
        let len = checks.len();
        let inner = self.conn.inner.clone();
        runtime.spawn(run_adjust(inner, permit, batch, len, delta));
    }
}

async fn run_adjust(
    inner: Arc<Inner>,
    permit: Permit,
    batch: [Check; MAX_LIMITS],
    len: usize,
    delta: i64,
) {
    let call = async {
        // One call per identity on a cluster (one slot each), one in all on one Redis.
        let parts = if inner.cluster {
            groups_of(&batch[..len])
        } else {
            vec![(batch, len)]
        };
        let calls: Vec<_> = parts
            .into_iter()
            .map(|(b, l)| {
                let con = inner.manager();
                let inner = &inner;
                Box::pin(async move {
                    eval_adjust(&inner.adjust, &inner.rl_prefix, con, &b[..l], delta).await
                })
            })
            .collect();
        join_all(calls)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(|_| ())
    };
    // Errors are logged by `guarded`; an adjustment is best effort.
    let _ = guarded(&inner, permit, "rate-limit adjustment", call).await;
}

impl fmt::Debug for RedisRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitStore")
            .field("connection", &self.conn)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: u64, identity: u64) -> Check {
        Check {
            key,
            identity,
            emission_ns: 1,
            limit_ns: 1,
            cost: 1,
        }
    }

    #[test]
    fn groups_checks_by_identity() {
        let checks = [check(1, 10), check(2, 20), check(3, 10), check(4, 30)];
        let (slot, n) = key_slots(&checks);
        assert_eq!((slot, n), ([0, 1, 0, 2], 3));
        let (g, n) = groups(&checks);
        assert_eq!(n, 3);
        assert_eq!(&g[0].at[..g[0].len], &[0, 2]);
        assert_eq!(&g[1].at[..g[1].len], &[1]);
        assert_eq!(&g[2].at[..g[2].len], &[3]);
        assert_eq!(groups_of(&checks[..1]).len(), 1);
        let d = |index, ms| Verdict::Denied {
            index,
            retry_after: Duration::from_millis(ms),
        };
        // Positions map back to the request; the longest wait and a cost above a burst win.
        assert_eq!(combine(Verdict::Allowed, d(0, 5), &[2]), d(2, 5));
        assert_eq!(combine(d(2, 5), d(0, 9), &[1, 3]), d(1, 9));
        assert_eq!(combine(d(1, 9), d(0, 2), &[3]), d(1, 9));
        assert_eq!(
            combine(d(1, 9), Verdict::CostAboveBurst { index: 0 }, &[3]),
            Verdict::CostAboveBurst { index: 3 }
        );
    }

    #[test]
    fn parses_replies() {
        let d = parse(&[0, 0, 0, 4, 600_000, 9, 0], 2).unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.states()[0].remaining, 4);
        assert_eq!(d.states()[0].reset_ns, 600_000_000);
        let d = parse(&[1, 1, 1500, 0, 0, 0, 5], 2).unwrap();
        assert_eq!(
            d.verdict,
            Verdict::Denied {
                index: 1,
                retry_after: Duration::from_micros(1500)
            }
        );
        assert_eq!(
            parse(&[2, 0, 0, 3, 0], 1).unwrap().verdict,
            Verdict::CostAboveBurst { index: 0 }
        );
        assert!(parse(&[0, 0, 0], 1).is_none());
        assert!(parse(&[7, 0, 0, 1, 1], 1).is_none());
        assert!(parse(&[1, 5, 0, 1, 1], 1).is_none());
    }

    #[test]
    fn failure_policies_without_redis() {
        let c = Check {
            key: 1,
            identity: 1,
            emission_ns: 1_000_000_000,
            limit_ns: 1_000_000_000,
            cost: 1,
        };
        let mem = MemoryStore::new();
        let open = decide_without_redis(
            FailurePolicy::FailOpen,
            &mem,
            &[c],
            0,
            Cause::Failed("down"),
        )
        .unwrap();
        assert!(open.is_allowed());
        assert!(open.states().is_empty());
        assert!(
            decide_without_redis(
                FailurePolicy::FailClosed,
                &mem,
                &[c],
                0,
                Cause::Failed("down")
            )
            .is_err()
        );
        let fb = |now| {
            decide_without_redis(
                FailurePolicy::FallbackToMemory,
                &mem,
                &[c],
                now,
                Cause::Failed("down"),
            )
        };
        assert!(fb(0).unwrap().is_allowed());
        assert!(!fb(0).unwrap().is_allowed());
    }
}
