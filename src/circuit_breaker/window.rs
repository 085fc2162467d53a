//! Lock-free sliding windows of call outcomes: a count-based ring and time buckets.
//!
//! Both are updated with atomic operations only. Under concurrent writers a reader may see a
//! total that is off by the calls being recorded at that instant; that is the precision a
//! breaker needs, and each write is never lost.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};

use super::config::Window;

/// What a window holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Totals {
    /// Whether `failures` (or `slow`) reach `percent` % of the calls, with at least `minimum`.
    pub(crate) fn reaches(
        &self,
        minimum: u32,
        failure_percent: u8,
        slow_percent: Option<u8>,
    ) -> Option<Reached> {
        if self.calls == 0 || self.calls < minimum {
            return None;
        }
        let calls = u64::from(self.calls);
        if u64::from(self.failures) * 100 >= u64::from(failure_percent) * calls {
            return Some(Reached::FailureRate);
        }
        if let Some(p) = slow_percent
            && u64::from(self.slow) * 100 >= u64::from(p) * calls
        {
            return Some(Reached::SlowCallRate);
        }
        None
    }
}

/// Which threshold a window reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reached {
    FailureRate,
    SlowCallRate,
}

/// A sliding window of either kind.
#[derive(Debug)]
pub(crate) enum Outcomes {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Outcomes {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count(n) => Self::Count(CountWindow::new(n)),
            Window::Time(d) => Self::Time(TimeWindow::new(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }

    pub(crate) fn record(&self, now_ms: u64, failure: bool, slow: bool) {
        match self {
            Self::Count(w) => w.record(failure, slow),
            Self::Time(w) => w.record(now_ms, failure, slow),
        }
    }

    pub(crate) fn totals(&self, now_ms: u64) -> Totals {
        match self {
            Self::Count(w) => w.totals(),
            Self::Time(w) => w.totals(now_ms),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

/// The last `n` outcomes in a ring; `failures` and `slow` are kept as running counts.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    head: AtomicU64,
    failures: AtomicU32,
    slow: AtomicU32,
}

impl CountWindow {
    pub(crate) fn new(n: u32) -> Self {
        let n = n.max(1) as usize;
        Self {
            slots: (0..n).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            slow: AtomicU32::new(0),
        }
    }

    pub(crate) fn record(&self, failure: bool, slow: bool) {
        let new = RECORDED | if failure { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let i = (self.head.fetch_add(1, Relaxed) % self.slots.len() as u64) as usize;
        let old = self.slots[i].swap(new, Relaxed);
        adjust(&self.failures, old & FAILED != 0, failure);
        adjust(&self.slow, old & SLOW != 0, slow);
    }

    pub(crate) fn totals(&self) -> Totals {
        let n = self.slots.len() as u64;
        let calls = self.head.load(Relaxed).min(n) as u32;
        Totals {
            calls,
            failures: clamp(self.failures.load(Relaxed), calls),
            slow: clamp(self.slow.load(Relaxed), calls),
        }
    }

    pub(crate) fn reset(&self) {
        self.head.store(0, Relaxed);
        for s in self.slots.iter() {
            s.store(0, Relaxed);
        }
        self.failures.store(0, Relaxed);
        self.slow.store(0, Relaxed);
    }
}

fn adjust(counter: &AtomicU32, was: bool, is: bool) {
    match (was, is) {
        (false, true) => {
            counter.fetch_add(1, Relaxed);
        }
        (true, false) => {
            counter.fetch_sub(1, Relaxed);
        }
        _ => {}
    }
}

/// A running count may be transiently "negative" (wrapped) while a writer is between its two
/// updates; read it as zero then.
fn clamp(v: u32, calls: u32) -> u32 {
    if v > calls {
        if v > u32::MAX / 2 { 0 } else { calls }
    } else {
        v
    }
}

/// Number of buckets of a time window.
pub(crate) const BUCKETS: u64 = 10;

// A bucket's counts, packed in one word: calls in bits 0..22, failures 22..43, slow 43..64.
const CALL_ONE: u64 = 1;
const FAIL_ONE: u64 = 1 << 22;
const SLOW_ONE: u64 = 1 << 43;
const CALLS_MASK: u64 = (1 << 22) - 1;
const FAILS_MASK: u64 = (1 << 21) - 1;
/// Past this many calls in one bucket, further calls are not recorded (no overflow).
const BUCKET_CAP: u64 = CALLS_MASK - 4096;
/// Set on a bucket's epoch while the writer that claimed it clears its counts.
const CLAIMING: u64 = 1 << 63;

#[derive(Debug)]
struct Bucket {
    /// Index of the period this bucket holds (`now_ms / bucket_ms + 1`; 0 = never used).
    epoch: AtomicU64,
    counts: AtomicU64,
}

/// The outcomes of the last `window_ms`, in [`BUCKETS`] buckets of `window_ms / BUCKETS`.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_ms: u64,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    pub(crate) fn new(window_ms: u64) -> Self {
        Self {
            bucket_ms: (window_ms / BUCKETS).max(1),
            buckets: (0..BUCKETS)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    counts: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn epoch(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms + 1
    }

    pub(crate) fn record(&self, now_ms: u64, failure: bool, slow: bool) {
        let delta = CALL_ONE | if failure { FAIL_ONE } else { 0 } | if slow { SLOW_ONE } else { 0 };
        let epoch = self.epoch(now_ms);
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        loop {
            let e = bucket.epoch.load(Relaxed);
            if e == epoch {
                if bucket.counts.load(Relaxed) & CALLS_MASK < BUCKET_CAP {
                    bucket.counts.fetch_add(delta, Relaxed);
                }
                return;
            }
            if e > epoch {
                // Being cleared by another writer, or a writer with a later clock already
                // claimed it: drop this sample rather than wait.
                return;
            }
            if bucket
                .epoch
                .compare_exchange(e, epoch | CLAIMING, Relaxed, Relaxed)
                .is_ok()
            {
                bucket.counts.store(delta, Relaxed);
                bucket.epoch.store(epoch, Relaxed);
                return;
            }
        }
    }

    pub(crate) fn totals(&self, now_ms: u64) -> Totals {
        let now = self.epoch(now_ms);
        let oldest = now.saturating_sub(BUCKETS - 1);
        let mut t = Totals::default();
        for b in self.buckets.iter() {
            let e = b.epoch.load(Relaxed);
            if e >= oldest && e <= now {
                let c = b.counts.load(Relaxed);
                t.calls += (c & CALLS_MASK) as u32;
                t.failures += ((c >> 22) & FAILS_MASK) as u32;
                t.slow += (c >> 43) as u32;
            }
        }
        t
    }

    pub(crate) fn reset(&self) {
        for b in self.buckets.iter() {
            b.epoch.store(0, Relaxed);
            b.counts.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = CountWindow::new(3);
        w.record(true, false);
        w.record(true, true);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 2,
                failures: 2,
                slow: 1
            }
        );
        w.record(false, false);
        w.record(false, false);
        assert_eq!(
            w.totals(),
            Totals {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.reset();
        assert_eq!(w.totals(), Totals::default());
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        let w = TimeWindow::new(1000);
        w.record(0, true, false);
        w.record(50, false, true);
        assert_eq!(w.totals(99).calls, 2);
        assert_eq!(w.totals(999).calls, 2);
        // The first bucket (0..100 ms) leaves the window at 1000 ms.
        assert_eq!(w.totals(1000).calls, 0);
        w.record(1000, true, false);
        assert_eq!(
            w.totals(1000),
            Totals {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn rates() {
        let t = Totals {
            calls: 10,
            failures: 5,
            slow: 8,
        };
        assert_eq!(t.reaches(10, 50, None), Some(Reached::FailureRate));
        assert_eq!(t.reaches(11, 50, None), None);
        assert_eq!(t.reaches(10, 60, None), None);
        assert_eq!(t.reaches(10, 60, Some(80)), Some(Reached::SlowCallRate));
        assert_eq!(t.reaches(10, 60, Some(81)), None);
    }

    proptest! {
        /// The ring agrees with a model that keeps the last `n` outcomes.
        #[test]
        fn count_window_matches_model(
            n in 1u32..40,
            ops in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..200),
        ) {
            let w = CountWindow::new(n);
            let mut model: VecDeque<(bool, bool)> = VecDeque::new();
            for (f, s) in ops {
                w.record(f, s);
                model.push_back((f, s));
                if model.len() > n as usize {
                    model.pop_front();
                }
                let want = Totals {
                    calls: model.len() as u32,
                    failures: model.iter().filter(|o| o.0).count() as u32,
                    slow: model.iter().filter(|o| o.1).count() as u32,
                };
                prop_assert_eq!(w.totals(), want);
            }
        }

        /// The buckets agree with a model that keeps every call of the last ten bucket periods.
        #[test]
        fn time_window_matches_model(
            window_ms in 10u64..10_000,
            ops in proptest::collection::vec((0u64..3_000, any::<bool>(), any::<bool>()), 0..200),
        ) {
            let w = TimeWindow::new(window_ms);
            let bucket = (window_ms / BUCKETS).max(1);
            let mut now = 0u64;
            let mut model: Vec<(u64, bool, bool)> = Vec::new();
            for (step, f, s) in ops {
                now += step;
                w.record(now, f, s);
                model.push((now / bucket, f, s));
                let cur = now / bucket;
                let live: Vec<_> = model
                    .iter()
                    .filter(|(b, _, _)| *b + BUCKETS > cur)
                    .collect();
                let want = Totals {
                    calls: live.len() as u32,
                    failures: live.iter().filter(|o| o.1).count() as u32,
                    slow: live.iter().filter(|o| o.2).count() as u32,
                };
                prop_assert_eq!(w.totals(now), want);
            }
        }

        /// A trip decision never fires below the minimum, and always fires at 100 % failures.
        #[test]
        fn reaches_respects_minimum(calls in 0u32..1000, failures in 0u32..1000, min in 1u32..100, p in 1u8..=100) {
            let t = Totals { calls, failures: failures.min(calls), slow: 0 };
            let r = t.reaches(min, p, None);
            if calls < min { prop_assert_eq!(r, None); }
            if calls >= min && t.failures == calls && calls > 0 { prop_assert_eq!(r, Some(Reached::FailureRate)); }
        }
    }

    #[test]
    fn concurrent_count_window_counts_every_write() {
        let w = std::sync::Arc::new(CountWindow::new(1 << 16));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        w.record(i % 2 == 0, false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            w.totals(),
            Totals {
                calls: 20_000,
                failures: 10_000,
                slow: 0
            }
        );
    }
}
