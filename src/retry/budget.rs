//! A retry budget shared by every clone of a retry service.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::ConfigError;

/// Number of slots the window is cut into; a slot expires as a whole.
const SLOTS: u64 = 10;
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_BITS: u32 = 24;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// Caps retries at a fraction of recent requests, so a dead upstream does not multiply traffic.
///
/// Over a sliding `window` (cut into 10 slots), at most `ratio × requests + min_per_sec × window`
/// retries are allowed. With the default (10 s window, ratio 0.2, 1 retry per second), a service
/// that sees 1,000 requests in 10 s against a dead upstream sends at most 1,000 + 200 + 10
/// attempts, however many retries each request was allowed.
///
/// Cloning is an `Arc` bump and every clone draws on the same budget: build it once per
/// upstream. Counting a request is one lock-free compare-and-swap on a packed slot; a retry takes
/// a tiny critical section (no await, a few loads), so two retries racing for the last token
/// never both get it. Time is tokio's ([`tokio::time::Instant`]), so tests may pause it.
///
/// Each slot counts up to 1,048,575 requests and as many retries; past that it saturates, which
/// only makes the budget stricter.
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    start: Instant,
    slot_nanos: u128,
    /// `epoch (24 bits) | requests (20 bits) | retries (20 bits)` per slot.
    slots: [AtomicU64; SLOTS as usize],
    ratio_milli: u64,
    reserve: u64,
    window: Duration,
    min_per_sec: u32,
    /// Serializes withdrawals so that check-and-take is atomic (deposits never take it).
    withdraw: Mutex<()>,
}

impl Default for RetryBudget {
    /// A 10 s window, retries up to 20 % of requests plus 1 per second.
    fn default() -> Self {
        Self::build(Duration::from_secs(10), 1, 200)
    }
}

impl RetryBudget {
    /// A budget that allows `ratio × requests` retries over `window`, plus `min_per_sec` retries
    /// per second of the window whatever the traffic (so a quiet client can still retry).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `window` is not between 1 s and 60 s, `ratio` is not a number between
    /// 0 and 10, or `min_per_sec` is above 10,000.
    pub fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Result<Self, ConfigError> {
        if window < Duration::from_secs(1) || window > Duration::from_secs(60) {
            return Err(ConfigError::out_of_range(
                "retry.budget.window",
                "must be between 1 s and 60 s",
            ));
        }
        if !(0.0..=10.0).contains(&ratio) {
            return Err(ConfigError::out_of_range(
                "retry.budget.ratio",
                "must be a number between 0 and 10",
            ));
        }
        if min_per_sec > 10_000 {
            return Err(ConfigError::out_of_range(
                "retry.budget.min_per_sec",
                "must be at most 10000",
            ));
        }
        // In range 0..=10_000 after the check above, so the cast is exact.
        let ratio_milli = (ratio * 1000.0).round() as u64;
        Ok(Self::build(window, min_per_sec, ratio_milli))
    }

    fn build(window: Duration, min_per_sec: u32, ratio_milli: u64) -> Self {
        let reserve = u64::from(min_per_sec) * window.as_millis() as u64 / 1000;
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                slot_nanos: (window.as_nanos() / u128::from(SLOTS)).max(1),
                slots: Default::default(),
                ratio_milli,
                reserve,
                window,
                min_per_sec,
                withdraw: Mutex::new(()),
            }),
        }
    }

    /// The window over which requests and retries are counted.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    /// The fraction of requests that may be retried.
    pub fn ratio(&self) -> f64 {
        self.inner.ratio_milli as f64 / 1000.0
    }

    /// Retries per second allowed whatever the traffic.
    pub fn min_per_sec(&self) -> u32 {
        self.inner.min_per_sec
    }

    /// Counts one request (the retry service calls this once per request, not per attempt).
    pub fn deposit(&self) {
        let (epoch, slot) = self.inner.now();
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (e, requests, retries) = unpack(current);
            let next = if e == epoch || is_newer(e, epoch) {
                // A newer epoch: this thread was delayed across a slot boundary; count it there.
                if requests == COUNT_MAX {
                    return;
                }
                pack(e, requests + 1, retries)
            } else {
                pack(epoch, 1, 0)
            };
            match slot.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        let inner = &*self.inner;
        let _serial = inner
            .withdraw
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (epoch, slot) = inner.now();
        let mut current = slot.load(Ordering::Acquire);
        loop {
            let (e, mut requests, mut retries) = unpack(current);
            if e != epoch && !is_newer(e, epoch) {
                (requests, retries) = (0, 0);
            }
            let (other_requests, other_retries) = inner.sum_except(epoch, slot);
            let allowed = (requests + other_requests) * inner.ratio_milli / 1000 + inner.reserve;
            if retries + other_retries >= allowed || retries == COUNT_MAX {
                return false;
            }
            let e = if is_newer(e, epoch) { e } else { epoch };
            let next = pack(e, requests, retries + 1);
            match slot.compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                // A deposit landed meanwhile: recount.
                Err(actual) => current = actual,
            }
        }
    }

    /// How many retries the budget would allow right now.
    pub fn remaining(&self) -> u64 {
        let (epoch, _) = self.inner.now();
        let (requests, retries) = self.inner.sum_live(epoch, None);
        (requests * self.inner.ratio_milli / 1000 + self.inner.reserve).saturating_sub(retries)
    }
}

impl Inner {
    fn now(&self) -> (u64, &AtomicU64) {
        let epoch = (self.start.elapsed().as_nanos() / self.slot_nanos) as u64;
        (epoch & EPOCH_MASK, &self.slots[(epoch % SLOTS) as usize])
    }

    fn sum_except(&self, epoch: u64, skip: &AtomicU64) -> (u64, u64) {
        self.sum_live(epoch, Some(skip))
    }

    fn sum_live(&self, epoch: u64, skip: Option<&AtomicU64>) -> (u64, u64) {
        let mut sum = (0, 0);
        for slot in &self.slots {
            if skip.is_some_and(|s| std::ptr::eq(s, slot)) {
                continue;
            }
            let (e, requests, retries) = unpack(slot.load(Ordering::Acquire));
            let age = epoch.wrapping_sub(e) & EPOCH_MASK;
            if age < SLOTS || is_newer(e, epoch) {
                sum.0 += requests;
                sum.1 += retries;
            }
        }
        sum
    }
}

const fn pack(epoch: u64, requests: u64, retries: u64) -> u64 {
    (epoch & EPOCH_MASK) << (2 * COUNT_BITS) | requests << COUNT_BITS | retries
}

const fn unpack(word: u64) -> (u64, u64, u64) {
    (
        word >> (2 * COUNT_BITS),
        (word >> COUNT_BITS) & COUNT_MAX,
        word & COUNT_MAX,
    )
}

/// Whether epoch `e` is ahead of `now` (modulo the 24-bit wrap).
const fn is_newer(e: u64, now: u64) -> bool {
    let ahead = e.wrapping_sub(now) & EPOCH_MASK;
    ahead != 0 && ahead < (1 << (EPOCH_BITS - 1))
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("window", &self.inner.window)
            .field("ratio", &self.ratio())
            .field("min_per_sec", &self.inner.min_per_sec)
            .field("remaining", &self.remaining())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_config() {
        assert!(RetryBudget::new(Duration::from_millis(999), 1, 0.2).is_err());
        assert!(RetryBudget::new(Duration::from_secs(61), 1, 0.2).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 1, f64::NAN).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 1, -0.1).is_err());
        assert!(RetryBudget::new(Duration::from_secs(10), 10_001, 0.2).is_err());
        let b = RetryBudget::new(Duration::from_secs(10), 0, 0.25).unwrap();
        assert_eq!(b.ratio(), 0.25);
    }

    #[test]
    fn pack_roundtrip() {
        let w = pack(EPOCH_MASK, COUNT_MAX, 7);
        assert_eq!(unpack(w), (EPOCH_MASK, COUNT_MAX, 7));
        assert!(is_newer(1, 0));
        assert!(is_newer(0, EPOCH_MASK));
        assert!(!is_newer(0, 0));
        assert!(!is_newer(0, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_of_requests_plus_reserve() {
        let b = RetryBudget::new(Duration::from_secs(10), 1, 0.2).unwrap();
        assert_eq!(b.remaining(), 10);
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 30);
        let mut granted = 0;
        while b.try_withdraw() {
            granted += 1;
        }
        assert_eq!(granted, 30);
        assert_eq!(b.remaining(), 0);
        // Half the window later, old requests still count.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!b.try_withdraw());
        // A full window later they expired, and so did the retries.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.remaining(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_slots_are_reset_on_reuse() {
        let b = RetryBudget::new(Duration::from_secs(1), 0, 1.0).unwrap();
        b.deposit();
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        tokio::time::advance(Duration::from_secs(1)).await;
        b.deposit();
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let b = RetryBudget::new(Duration::from_secs(60), 0, 0.1).unwrap();
        for _ in 0..1000 {
            b.deposit();
        }
        let granted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || {
                        let mut n = 0;
                        for _ in 0..1000 {
                            b.deposit();
                            if b.try_withdraw() {
                                n += 1;
                            }
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // 9,000 requests in all: at most 900 retries.
        assert!(granted <= 900, "granted {granted}");
        assert!(granted >= 100, "granted {granted}");
    }
}
