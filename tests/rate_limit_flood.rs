//! The flood test of `battlement::rate_limit`, alone in its test binary so that the process RSS
//! it measures is its own (tests of one binary run in parallel threads).

use std::{num::NonZeroU32, time::Duration};

use battlement::rate_limit::{ManualClock, MemoryStore, Quota, RateLimiter};

/// 100 per minute with a burst of 10.
const Q100: Quota =
    Quota::per_minute(NonZeroU32::new(100).unwrap()).with_burst(NonZeroU32::new(10).unwrap());

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A flood of 1,000,000 distinct keys stays within the store's cap (its own accounting and
/// the process RSS), and a legitimate key that is being limited keeps its state.
#[test]
fn flood_of_distinct_keys_stays_bounded() {
    const BUDGET: usize = 4 << 20;
    let clock = ManualClock::new();
    let store = MemoryStore::with_max_bytes(BUDGET).unwrap();
    let limiter = RateLimiter::<u64>::keyed(Q100)
        .with_store(store.clone())
        .with_clock(clock.clone());
    let legit = u64::MAX;
    for _ in 0..10 {
        assert!(limiter.check_key(&legit).is_ok());
    }
    assert!(limiter.check_key(&legit).is_err());
    let rss_before = rss_bytes();
    let mut max_seen = 0;
    for k in 0..1_000_000u64 {
        assert!(limiter.check_key(&k).is_ok());
        clock.advance(Duration::from_nanos(500));
        if k % 100_000 == 0 {
            let stats = store.stats();
            max_seen = max_seen.max(stats.bytes);
            assert!(stats.keys <= stats.max_keys, "{stats:?}");
            assert!(stats.bytes <= BUDGET, "{stats:?}");
        }
    }
    let stats = store.stats();
    assert!(stats.bytes <= BUDGET, "{stats:?}");
    assert!(stats.bytes / stats.keys <= 64, "{stats:?}");
    assert!(stats.evicted_active > 0);
    let growth = rss_bytes().saturating_sub(rss_before);
    // An unbounded map of a million keys would take ~35 MiB; the store is capped at 4 MiB.
    assert!(
        growth < 16 << 20,
        "RSS grew by {growth} bytes; {stats:?} (max {max_seen})"
    );
    // 0.5 s later the legitimate key is still refused (its debt survived the flood)...
    assert_eq!(clock.elapsed(), Duration::from_millis(500));
    assert!(limiter.check_key(&legit).is_err());
    // ...and admitted again exactly when GCRA says (600 ms after the burst).
    clock.advance(Duration::from_millis(100));
    assert!(limiter.check_key(&legit).is_ok());
    assert!(limiter.check_key(&legit).is_err());
}
