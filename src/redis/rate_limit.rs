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
        StoreResult, Verdict,
    },
};

/// A [`RateLimitStore`] on Redis: GCRA in one Lua script on Redis's clock, every limit of a
/// request decided in one `EVALSHA` round trip; see the [module docs](super).
///
/// Cloning shares the connection and the fallback store.
#[derive(Clone)]
pub struct RedisRateLimitStore {
    conn: RedisConnection,
    fallback: MemoryStore,
}

impl RedisRateLimitStore {
    pub(crate) fn new(conn: RedisConnection) -> Self {
        let keys = conn.inner.config.fallback_max_keys;
        // `fallback_max_keys` is validated to be at least 64, which is all `with_max_keys` asks.
        let fallback = MemoryStore::with_max_keys(keys).unwrap_or_default();
        Self { conn, fallback }
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

    /// The Redis key of the bucket with fingerprint `fingerprint`:
    /// `{prefix}:rl:<16 hex digits>`.
    pub fn redis_key(&self, fingerprint: u64) -> String {
        key(&self.conn.inner, fingerprint)
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

fn key(inner: &Inner, fingerprint: u64) -> String {
    let mut k = String::with_capacity(inner.rl_prefix.len() + 16);
    k.push_str(&inner.rl_prefix);
    // Writing to a String cannot fail.
    let _ = write!(k, "{fingerprint:016x}");
    k
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

async fn eval(inner: &Inner, checks: &[Check]) -> ::redis::RedisResult<Decision> {
    let mut inv = inner.gcra.prepare_invoke();
    for c in checks {
        inv.key(key(inner, c.key));
    }
    for c in checks {
        inv.arg(c.emission_ns.max(1)).arg(c.limit_ns).arg(c.cost);
    }
    let mut con = inner.manager();
    let v: Vec<i64> = inv.invoke_async(&mut con).await?;
    parse(&v, checks.len()).ok_or_else(|| {
        ::redis::RedisError::from((
            ::redis::ErrorKind::Client,
            "unexpected reply from the rate-limit script",
        ))
    })
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

/// The future of a Redis decision (one `EVALSHA`, bounded by the timeout, then the failure
/// policy if Redis did not answer).
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
                match guarded(inner, permit, "rate-limit decision", eval(inner, checks)).await {
                    Ok(decision) => Ok(decision),
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
        let mut inv = inner.adjust.prepare_invoke();
        for c in &batch[..len] {
            inv.key(key(&inner, c.key));
        }
        inv.arg(delta);
        for c in &batch[..len] {
            inv.arg(c.emission_ns.max(1));
        }
        let mut con = inner.manager();
        inv.invoke_async::<i64>(&mut con).await
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
