//! Exponential backoff with AWS-style jitter.

use std::{fmt, time::Duration};

use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::ConfigError;

/// The longest cap accepted by [`ExponentialBackoff::new`]: one day.
const MAX_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// The most retries accepted by [`ExponentialBackoff::with_max_retries`].
pub(crate) const MAX_RETRIES: u32 = 64;

/// How the exponential delay is randomised, after the AWS architecture blog's
/// "Exponential Backoff and Jitter" (`exp = min(cap, initial × 2ⁿ)` for the n-th retry, n from 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No jitter: `exp`. Every client that failed together retries together; only for tests.
    None,
    /// Full jitter (the default): uniform in `[0, exp]`. The least work for a recovering server.
    #[default]
    Full,
    /// Equal jitter: `exp / 2 + uniform(0, exp / 2)`. Never shorter than half the exponential delay.
    Equal,
    /// Decorrelated jitter: `min(cap, uniform(initial, previous × 3))`, `previous` starting at
    /// `initial`. Grows from the last delay actually slept instead of the retry count.
    Decorrelated,
}

/// Exponential backoff between attempts: initial delay, cap, number of retries and [`Jitter`].
///
/// The default is 100 ms initial, 10 s cap, 3 retries, full jitter.
///
/// ```
/// use std::time::Duration;
/// use battlement::retry::{ExponentialBackoff, Jitter};
///
/// let backoff = ExponentialBackoff::new(Duration::from_millis(50), Duration::from_secs(2))?
///     .with_max_retries(5)?
///     .with_jitter(Jitter::Equal);
/// let delays: Vec<Duration> = backoff.delays(7).collect();
/// assert_eq!(delays.len(), 5);
/// assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExponentialBackoff {
    initial: Duration,
    cap: Duration,
    max_retries: u32,
    jitter: Jitter,
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl ExponentialBackoff {
    /// 100 ms initial delay, 10 s cap, 3 retries, full jitter.
    pub const DEFAULT: Self = Self {
        initial: Duration::from_millis(100),
        cap: Duration::from_secs(10),
        max_retries: 3,
        jitter: Jitter::Full,
    };

    /// A backoff starting at `initial` and never waiting longer than `cap`, with 3 retries and
    /// full jitter.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `initial` is zero, `cap` is shorter than `initial` or longer than a day.
    pub fn new(initial: Duration, cap: Duration) -> Result<Self, ConfigError> {
        if initial.is_zero() {
            return Err(ConfigError::out_of_range(
                "retry.backoff.initial",
                "must be longer than zero",
            ));
        }
        if cap < initial {
            return Err(ConfigError::out_of_range(
                "retry.backoff.cap",
                "must not be shorter than the initial delay",
            ));
        }
        if cap > MAX_CAP {
            return Err(ConfigError::out_of_range(
                "retry.backoff.cap",
                "must not be longer than a day",
            ));
        }
        Ok(Self {
            initial,
            cap,
            ..Self::DEFAULT
        })
    }

    /// Sets how many times a request may be retried (not counting the first attempt); 0 turns
    /// retries off.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max_retries` is above 64.
    pub fn with_max_retries(mut self, max_retries: u32) -> Result<Self, ConfigError> {
        if max_retries > MAX_RETRIES {
            return Err(ConfigError::out_of_range(
                "retry.backoff.max_retries",
                "must be at most 64",
            ));
        }
        self.max_retries = max_retries;
        Ok(self)
    }

    /// Sets the jitter mode.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before the first retry, before jitter.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// The longest delay between two attempts (also the cap on `Retry-After`).
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// How many retries a request may get after its first attempt.
    pub const fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The jitter mode.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// `min(cap, initial × 2^retry)`: the delay before retry number `retry` (from 0) without
    /// jitter.
    pub fn exponential(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The delays of the [`max_retries`](Self::max_retries) retries of one request, drawn from a
    /// small RNG seeded with `seed` (the same seed gives the same delays).
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            backoff: *self,
            rng: SmallRng::seed_from_u64(seed),
            retry: 0,
            previous: self.initial,
        }
    }

    fn delay(&self, retry: u32, previous: Duration, rng: &mut SmallRng) -> Duration {
        let exp = self.exponential(retry);
        match self.jitter {
            Jitter::None => exp,
            Jitter::Full => uniform(rng, Duration::ZERO, exp),
            Jitter::Equal => {
                let half = exp / 2;
                half + uniform(rng, Duration::ZERO, exp - half)
            }
            Jitter::Decorrelated => {
                let high = previous.saturating_mul(3).max(self.initial);
                uniform(rng, self.initial, high).min(self.cap)
            }
        }
    }
}

/// A uniform duration in `[low, high]` with nanosecond resolution (`low <= high`).
fn uniform(rng: &mut SmallRng, low: Duration, high: Duration) -> Duration {
    // Durations here are below a day (checked at construction), so they fit in u64 nanoseconds;
    // `previous × 3` of a capped delay is below three days.
    let low = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high = u64::try_from(high.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(low..=high.max(low)))
}

/// The delays of one request's retries, from [`ExponentialBackoff::delays`].
///
/// Yields at most [`ExponentialBackoff::max_retries`] delays.
#[derive(Clone)]
pub struct Delays {
    backoff: ExponentialBackoff,
    rng: SmallRng,
    retry: u32,
    previous: Duration,
}

impl Delays {
    /// How many delays were drawn so far.
    pub const fn retries(&self) -> u32 {
        self.retry
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.retry >= self.backoff.max_retries {
            return None;
        }
        let delay = self.backoff.delay(self.retry, self.previous, &mut self.rng);
        self.retry += 1;
        self.previous = delay;
        Some(delay)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.backoff.max_retries - self.retry) as usize;
        (left, Some(left))
    }
}

impl fmt::Debug for Delays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delays")
            .field("backoff", &self.backoff)
            .field("retry", &self.retry)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn defaults_match_the_issue() {
        let b = ExponentialBackoff::default();
        assert_eq!(b.initial(), ms(100));
        assert_eq!(b.cap(), Duration::from_secs(10));
        assert_eq!(b.max_retries(), 3);
        assert_eq!(b.jitter(), Jitter::Full);
        assert_eq!(b.delays(1).count(), 3);
    }

    #[test]
    fn exponential_doubles_then_caps() {
        let b = ExponentialBackoff::default();
        let got: Vec<_> = (0..10).map(|n| b.exponential(n)).collect();
        assert_eq!(&got[..4], &[ms(100), ms(200), ms(400), ms(800)]);
        assert_eq!(got[7], Duration::from_secs(10));
        assert_eq!(b.exponential(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn invalid_config_is_an_error() {
        assert!(ExponentialBackoff::new(Duration::ZERO, ms(1)).is_err());
        assert!(ExponentialBackoff::new(ms(10), ms(5)).is_err());
        assert!(ExponentialBackoff::new(ms(10), Duration::from_secs(100_000)).is_err());
        let err = ExponentialBackoff::DEFAULT
            .with_max_retries(65)
            .unwrap_err();
        assert_eq!(err.field(), "retry.backoff.max_retries");
        assert!(ExponentialBackoff::DEFAULT.with_max_retries(0).is_ok());
    }

    #[test]
    fn same_seed_same_delays() {
        let b = ExponentialBackoff::DEFAULT.with_jitter(Jitter::Decorrelated);
        assert_eq!(
            b.delays(42).collect::<Vec<_>>(),
            b.delays(42).collect::<Vec<_>>()
        );
        assert_ne!(
            b.delays(42).collect::<Vec<_>>(),
            b.delays(43).collect::<Vec<_>>()
        );
    }

    fn backoff(initial_ms: u64, cap_ms: u64, retries: u32, jitter: Jitter) -> ExponentialBackoff {
        ExponentialBackoff::new(ms(initial_ms), ms(initial_ms.max(cap_ms)))
            .unwrap()
            .with_max_retries(retries)
            .unwrap()
            .with_jitter(jitter)
    }

    proptest! {
        #[test]
        fn no_jitter_is_the_exponential(seed: u64, initial in 1u64..2000, cap in 1u64..60_000, retries in 0u32..=64) {
            let b = backoff(initial, cap, retries, Jitter::None);
            for (n, d) in b.delays(seed).enumerate() {
                prop_assert_eq!(d, b.exponential(n as u32));
            }
        }

        #[test]
        fn full_jitter_within_zero_and_exp(seed: u64, initial in 1u64..2000, cap in 1u64..60_000, retries in 0u32..=64) {
            let b = backoff(initial, cap, retries, Jitter::Full);
            let mut count = 0;
            for (n, d) in b.delays(seed).enumerate() {
                prop_assert!(d <= b.exponential(n as u32));
                count += 1;
            }
            prop_assert_eq!(count, retries as usize);
        }

        #[test]
        fn equal_jitter_within_half_and_exp(seed: u64, initial in 1u64..2000, cap in 1u64..60_000, retries in 0u32..=64) {
            let b = backoff(initial, cap, retries, Jitter::Equal);
            for (n, d) in b.delays(seed).enumerate() {
                let exp = b.exponential(n as u32);
                prop_assert!(d >= exp / 2 && d <= exp, "{d:?} not in [{:?}, {exp:?}]", exp / 2);
            }
        }

        #[test]
        fn decorrelated_within_initial_and_three_times_previous(seed: u64, initial in 1u64..2000, cap in 1u64..60_000, retries in 0u32..=64) {
            let b = backoff(initial, cap, retries, Jitter::Decorrelated);
            let mut previous = b.initial();
            for d in b.delays(seed) {
                prop_assert!(d >= b.initial().min(b.cap()));
                prop_assert!(d <= b.cap());
                prop_assert!(d <= (previous * 3).max(b.initial()));
                previous = d;
            }
        }
    }
}
