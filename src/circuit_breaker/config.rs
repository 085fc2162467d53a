//! Breaker configuration: trip policy, cooldown, half-open probes, slow calls, clock, events.

use std::{fmt, sync::Arc, time::Duration};

use crate::error::ConfigError;

use super::breaker::StateChange;

/// Where a breaker reads the time.
///
/// The default, [`TokioClock`], reads tokio's clock, so tests can use `tokio::time::pause` and
/// `tokio::time::advance` to drive cooldowns and time windows deterministically.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> std::time::Instant;
}

/// The default [`Clock`]: `tokio::time::Instant::now()`, which follows paused test time.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

impl<F> Clock for F
where
    F: Fn() -> std::time::Instant + Send + Sync + 'static,
{
    fn now(&self) -> std::time::Instant {
        self()
    }
}

/// A sliding window over which failure and slow-call rates are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls (a ring of outcomes).
    Count(u32),
    /// The calls of the last `duration`, kept in ten buckets of a tenth of it each: a call falls
    /// out of the window between `0.9 × duration` and `duration` after it completed.
    Time(Duration),
}

impl Window {
    /// The last `n` calls.
    pub const fn count(n: u32) -> Self {
        Self::Count(n)
    }

    /// The calls of the last `duration` (bucketed in tenths).
    pub const fn time(duration: Duration) -> Self {
        Self::Time(duration)
    }
}

/// When a closed breaker trips open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trip {
    /// After this many failures in a row.
    Consecutive(u32),
    /// When, over the window and with at least `minimum_calls` calls in it, the failure rate
    /// (or the slow-call rate) reaches its threshold.
    Rate {
        window: Window,
        failure_percent: u8,
        minimum_calls: u32,
    },
}

/// The largest number of half-open probes a breaker accepts.
pub const MAX_HALF_OPEN_PERMITS: u32 = 65_535;
/// The largest count window.
pub const MAX_COUNT_WINDOW: u32 = 1 << 20;

/// The state-change callback.
pub(crate) type OnStateChange = Arc<dyn Fn(&StateChange<'_>) + Send + Sync>;

/// How a breaker trips, cools down and recovers.
///
/// ```
/// use std::time::Duration;
/// use battlement::circuit_breaker::{Breaker, BreakerConfig, Window};
///
/// // Open after 5 failures in a row, half-open after 30 s (the defaults), one probe.
/// let simple = Breaker::new(BreakerConfig::consecutive_failures(5)).unwrap();
///
/// // Open when 50 % of the last 100 calls failed (at least 20 calls seen) or 80 % were slower
/// // than 2 s; cooldown 10 s doubling on each re-open up to 5 min; 3 probes.
/// let rated = BreakerConfig::failure_rate(Window::count(100), 50)
///     .minimum_calls(20)
///     .slow_calls(Duration::from_secs(2), 80)
///     .cooldown(Duration::from_secs(10))
///     .cooldown_growth(2, Duration::from_secs(300))
///     .half_open_permits(3);
/// let breaker = Breaker::new(rated).unwrap();
/// # let _ = (simple, breaker);
/// ```
#[derive(Clone)]
pub struct BreakerConfig {
    pub(crate) trip: Trip,
    pub(crate) cooldown: Duration,
    pub(crate) cooldown_factor: u32,
    pub(crate) cooldown_max: Duration,
    pub(crate) half_open_permits: u32,
    pub(crate) slow: Option<(Duration, u8)>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) on_state_change: Option<OnStateChange>,
}

impl Default for BreakerConfig {
    /// Five consecutive failures, 30 s cooldown, one half-open probe.
    fn default() -> Self {
        Self::consecutive_failures(5)
    }
}

impl BreakerConfig {
    const fn with_trip(trip: Trip) -> Self {
        Self {
            trip,
            cooldown: Duration::from_secs(30),
            cooldown_factor: 1,
            cooldown_max: Duration::from_secs(30),
            half_open_permits: 1,
            slow: None,
            clock: None,
            on_state_change: None,
        }
    }

    /// Trips after `n` failures in a row (a success resets the count). Default: 5.
    pub const fn consecutive_failures(n: u32) -> Self {
        Self::with_trip(Trip::Consecutive(n))
    }

    /// Trips when `percent` % or more of the calls in `window` failed, once the window holds at
    /// least [`minimum_calls`](Self::minimum_calls) calls (default: 10 for a time window, the
    /// window size for a count window, like resilience4j).
    pub const fn failure_rate(window: Window, percent: u8) -> Self {
        let minimum_calls = match window {
            Window::Count(n) => n,
            Window::Time(_) => 10,
        };
        Self::with_trip(Trip::Rate {
            window,
            failure_percent: percent,
            minimum_calls,
        })
    }

    /// The number of calls a rate window must hold before its rates can trip the breaker.
    /// Ignored by [`consecutive_failures`](Self::consecutive_failures).
    #[must_use]
    pub fn minimum_calls(mut self, n: u32) -> Self {
        if let Trip::Rate { minimum_calls, .. } = &mut self.trip {
            *minimum_calls = n;
        }
        self
    }

    /// Calls that take `threshold` or longer (until the response head) are slow; with a rate
    /// window, the breaker also trips when `percent` % or more of the window's calls were slow.
    /// With [`consecutive_failures`](Self::consecutive_failures), slow calls are only counted in
    /// the [`Snapshot`](super::Snapshot).
    #[must_use]
    pub fn slow_calls(mut self, threshold: Duration, percent: u8) -> Self {
        self.slow = Some((threshold, percent));
        self
    }

    /// How long the breaker stays open before it lets probes through. Default: 30 s.
    #[must_use]
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        if self.cooldown_factor <= 1 || self.cooldown_max < cooldown {
            self.cooldown_max = cooldown;
        }
        self
    }

    /// Multiplies the cooldown by `factor` each time the breaker re-opens without having closed
    /// in between (a failed probe), up to `max`. A close resets it. Default: no growth.
    #[must_use]
    pub fn cooldown_growth(mut self, factor: u32, max: Duration) -> Self {
        self.cooldown_factor = factor;
        self.cooldown_max = max;
        self
    }

    /// How many probes a half-open breaker lets through; it closes when all of them succeed and
    /// re-opens on the first failure. Default: 1.
    #[must_use]
    pub fn half_open_permits(mut self, n: u32) -> Self {
        self.half_open_permits = n;
        self
    }

    /// Reads the time from `clock` instead of tokio's clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Calls `f` on every state change, from the thread that made it. Keep it short and
    /// non-blocking: it runs on the request path. A `tracing` event is emitted too.
    #[must_use]
    pub fn on_state_change(mut self, f: impl Fn(&StateChange<'_>) + Send + Sync + 'static) -> Self {
        self.on_state_change = Some(Arc::new(f));
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when a count is zero or too large, a percentage is 0
    /// or over 100, a window or cooldown is zero, or the cooldown growth is inconsistent.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.trip {
            Trip::Consecutive(0) => {
                return Err(ConfigError::out_of_range(
                    "circuit_breaker.consecutive_failures",
                    "must be at least 1",
                ));
            }
            Trip::Consecutive(_) => {}
            Trip::Rate {
                window,
                failure_percent,
                minimum_calls,
            } => {
                check_percent(failure_percent, "failure_rate")?;
                match window {
                    Window::Count(0) => {
                        return Err(ConfigError::out_of_range(
                            "circuit_breaker.window",
                            "a count window must hold at least 1 call",
                        ));
                    }
                    Window::Count(n) if n > MAX_COUNT_WINDOW => {
                        return Err(ConfigError::out_of_range(
                            "circuit_breaker.window",
                            "a count window holds at most 1048576 calls",
                        ));
                    }
                    Window::Time(d) if d < Duration::from_millis(10) => {
                        return Err(ConfigError::out_of_range(
                            "circuit_breaker.window",
                            "a time window must be at least 10 ms",
                        ));
                    }
                    _ => {}
                }
                if minimum_calls == 0 {
                    return Err(ConfigError::out_of_range(
                        "circuit_breaker.minimum_calls",
                        "must be at least 1",
                    ));
                }
            }
        }
        if let Some((threshold, percent)) = self.slow {
            check_percent(percent, "slow_calls")?;
            if threshold.is_zero() {
                return Err(ConfigError::out_of_range(
                    "circuit_breaker.slow_calls",
                    "the slow-call threshold must be above zero",
                ));
            }
        }
        if self.cooldown.is_zero() {
            return Err(ConfigError::out_of_range(
                "circuit_breaker.cooldown",
                "must be above zero",
            ));
        }
        if self.cooldown_factor == 0 {
            return Err(ConfigError::out_of_range(
                "circuit_breaker.cooldown_growth",
                "the factor must be at least 1",
            ));
        }
        if self.cooldown_max < self.cooldown {
            return Err(ConfigError::out_of_range(
                "circuit_breaker.cooldown_growth",
                "the maximum must not be below the cooldown",
            ));
        }
        // Deadlines are kept in milliseconds in 40 bits (about 34 years).
        if self.cooldown_max > Duration::from_secs(365 * 24 * 3600) {
            return Err(ConfigError::out_of_range(
                "circuit_breaker.cooldown",
                "must be at most one year",
            ));
        }
        if self.half_open_permits == 0 || self.half_open_permits > MAX_HALF_OPEN_PERMITS {
            return Err(ConfigError::out_of_range(
                "circuit_breaker.half_open_permits",
                "must be between 1 and 65535",
            ));
        }
        Ok(())
    }

    /// The cooldown after `reopens` re-opens without a close in between.
    pub(crate) fn cooldown_for(&self, reopens: u32) -> Duration {
        let mut d = self.cooldown;
        for _ in 0..reopens.min(64) {
            if d >= self.cooldown_max || self.cooldown_factor <= 1 {
                break;
            }
            d = d.saturating_mul(self.cooldown_factor);
        }
        d.min(self.cooldown_max)
    }
}

fn check_percent(p: u8, field: &'static str) -> Result<(), ConfigError> {
    if p == 0 || p > 100 {
        return Err(ConfigError::out_of_range(
            format!("circuit_breaker.{field}"),
            "a percentage must be between 1 and 100",
        ));
    }
    Ok(())
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("trip", &self.trip)
            .field("cooldown", &self.cooldown)
            .field("cooldown_factor", &self.cooldown_factor)
            .field("cooldown_max", &self.cooldown_max)
            .field("half_open_permits", &self.half_open_permits)
            .field("slow", &self.slow)
            .field("on_state_change", &self.on_state_change.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The k-th re-open waits min(cooldown × factor^k, max), computed without overflow.
        #[test]
        fn cooldown_growth_matches_formula(
            base_ms in 1u64..100_000,
            factor in 1u32..10,
            extra_ms in 0u64..10_000_000,
            reopens in 0u32..100,
        ) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_millis(base_ms + extra_ms);
            let c = BreakerConfig::default().cooldown(base).cooldown_growth(factor, max);
            prop_assert!(c.validate().is_ok());
            let want = (0..reopens)
                .try_fold(u128::from(base_ms), |d, _| {
                    let n = d * u128::from(factor);
                    (n < u128::from(base_ms + extra_ms)).then_some(n).ok_or(())
                })
                .map_or(max, |ms| Duration::from_millis(ms as u64).min(max));
            prop_assert_eq!(c.cooldown_for(reopens), want);
        }
    }

    #[test]
    fn cooldown_without_growth_is_constant() {
        let c = BreakerConfig::default().cooldown(Duration::from_secs(7));
        assert_eq!(c.cooldown_for(0), Duration::from_secs(7));
        assert_eq!(c.cooldown_for(50), Duration::from_secs(7));
    }
}
