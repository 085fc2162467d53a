//! Quotas: how many units of cost per period, with how large a burst.

use std::{borrow::Cow, fmt, num::NonZeroU32, time::Duration};

use crate::error::ConfigError;

use super::gcra::Params;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A rate: `count` units of cost per `period`, of which up to `burst` may be spent at once.
///
/// The burst defaults to `count` (a full period's worth at once, like governor); set a smaller
/// one with [`with_burst`](Self::with_burst) to smooth traffic. Units are requests by default and
/// tokens (or any weight) when the layer has a cost function.
///
/// ```
/// use std::num::NonZeroU32;
/// use battlement::rate_limit::Quota;
///
/// const PER_KEY: Quota = Quota::per_minute(NonZeroU32::new(100).unwrap())
///     .with_burst(NonZeroU32::new(10).unwrap());
/// assert_eq!(PER_KEY.emission_interval().as_millis(), 600);
///
/// // From numbers read at startup (a config file, the environment):
/// let quota = Quota::try_new(100, std::time::Duration::from_secs(60))?.try_with_burst(10)?;
/// assert_eq!(quota, PER_KEY);
/// # Ok::<(), battlement::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Quota {
    count: NonZeroU32,
    period_ns: u64,
    burst: NonZeroU32,
    name: Cow<'static, str>,
}

impl Quota {
    /// `count` units per second, policy name `per-second`.
    pub const fn per_second(count: NonZeroU32) -> Self {
        Self::with_period_ns(count, NANOS_PER_SEC, "per-second")
    }

    /// `count` units per minute, policy name `per-minute`.
    pub const fn per_minute(count: NonZeroU32) -> Self {
        Self::with_period_ns(count, 60 * NANOS_PER_SEC, "per-minute")
    }

    /// `count` units per hour, policy name `per-hour`.
    pub const fn per_hour(count: NonZeroU32) -> Self {
        Self::with_period_ns(count, 3600 * NANOS_PER_SEC, "per-hour")
    }

    const fn with_period_ns(count: NonZeroU32, period_ns: u64, name: &'static str) -> Self {
        Self {
            count,
            period_ns,
            burst: count,
            name: Cow::Borrowed(name),
        }
    }

    /// `count` units per `period`, from numbers read at runtime.
    ///
    /// The policy name is `per-second`, `per-minute` or `per-hour` for those periods and
    /// `per-<n>s` otherwise.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `count` is 0, if `period` is shorter than a millisecond or longer
    /// than a year, or if one unit would come back faster than every nanosecond.
    pub fn try_new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        let count = NonZeroU32::new(count).ok_or_else(|| {
            ConfigError::out_of_range("rate_limit.quota.count", "must be at least 1")
        })?;
        if period < Duration::from_millis(1) || period > Duration::from_secs(366 * 86_400) {
            return Err(ConfigError::out_of_range(
                "rate_limit.quota.period",
                "must be between 1 ms and one year",
            ));
        }
        // Cannot truncate: at most a year of nanoseconds (checked above) fits in a u64.
        let period_ns = period.as_nanos() as u64;
        if period_ns / u64::from(count.get()) == 0 {
            return Err(ConfigError::out_of_range(
                "rate_limit.quota.count",
                "more than one unit per nanosecond is not supported",
            ));
        }
        let name = match period_ns {
            NANOS_PER_SEC => Cow::Borrowed("per-second"),
            p if p == 60 * NANOS_PER_SEC => Cow::Borrowed("per-minute"),
            p if p == 3600 * NANOS_PER_SEC => Cow::Borrowed("per-hour"),
            _ if period.subsec_nanos() == 0 => Cow::Owned(format!("per-{}s", period.as_secs())),
            _ => Cow::Owned(format!("per-{}ms", period.as_millis())),
        };
        Ok(Self {
            count,
            period_ns,
            burst: count,
            name,
        })
    }

    /// Sets how many units may be spent at once (the bucket size).
    #[must_use]
    pub const fn with_burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = burst;
        self
    }

    /// [`with_burst`](Self::with_burst) from a number read at runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `burst` is 0.
    pub fn try_with_burst(self, burst: u32) -> Result<Self, ConfigError> {
        let burst = NonZeroU32::new(burst).ok_or_else(|| {
            ConfigError::out_of_range("rate_limit.quota.burst", "must be at least 1")
        })?;
        Ok(self.with_burst(burst))
    }

    /// Names the policy in the `RateLimit-Policy` and `RateLimit` headers (e.g. `"premium"`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] unless `name` is 1 to 64 visible ASCII characters other than `"`
    /// and `\` (it is sent as a structured-field string).
    pub fn with_name(mut self, name: impl Into<Cow<'static, str>>) -> Result<Self, ConfigError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            return Err(ConfigError::invalid(
                "rate_limit.quota.name",
                "must be 1 to 64 visible ASCII characters other than `\"` and `\\`",
            ));
        }
        self.name = name;
        Ok(self)
    }

    /// Units per period.
    pub const fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// Units that may be spent at once.
    pub const fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The policy name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time one unit takes to come back (`period / count`, at least 1 ns).
    pub const fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_ns())
    }

    /// The GCRA tolerance: how far a burst may run ahead of the steady rate
    /// (`emission interval × (burst − 1)`).
    pub const fn tolerance(&self) -> Duration {
        Duration::from_nanos(
            self.emission_ns()
                .saturating_mul(self.burst.get() as u64 - 1),
        )
    }

    /// The window in whole seconds, rounded up, as the `w` parameter of `RateLimit-Policy`.
    pub const fn window_secs(&self) -> u64 {
        self.period_ns.div_ceil(NANOS_PER_SEC)
    }

    const fn emission_ns(&self) -> u64 {
        let e = self.period_ns / self.count.get() as u64;
        if e == 0 { 1 } else { e }
    }

    pub(crate) const fn params(&self) -> Params {
        let emission = self.emission_ns();
        Params {
            emission,
            limit: emission.saturating_mul(self.burst.get() as u64),
        }
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("name", &self.name)
            .field("count", &self.count)
            .field("period", &self.period())
            .field("burst", &self.burst)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn nz(n: u32) -> NonZeroU32 {
        match NonZeroU32::new(n) {
            Some(n) => n,
            None => panic!("zero"),
        }
    }

    #[test]
    fn const_constructors() {
        let q = Quota::per_minute(nz(100)).with_burst(nz(10));
        assert_eq!(q.emission_interval(), Duration::from_millis(600));
        assert_eq!(q.tolerance(), Duration::from_millis(5400));
        assert_eq!(q.window_secs(), 60);
        assert_eq!(q.name(), "per-minute");
        assert_eq!(q.params().limit, 6_000_000_000);
        assert_eq!(Quota::per_hour(nz(1)).window_secs(), 3600);
        assert_eq!(Quota::per_second(nz(7)).burst(), 7);
    }

    #[test]
    fn validation() {
        assert!(Quota::try_new(0, Duration::from_secs(1)).is_err());
        assert!(Quota::try_new(1, Duration::ZERO).is_err());
        assert!(Quota::try_new(u32::MAX, Duration::from_millis(1)).is_err());
        assert!(
            Quota::try_new(1, Duration::from_secs(60))
                .unwrap()
                .try_with_burst(0)
                .is_err()
        );
        assert_eq!(
            Quota::try_new(5, Duration::from_secs(10)).unwrap().name(),
            "per-10s"
        );
        let q = Quota::try_new(100, Duration::from_secs(60)).unwrap();
        assert_eq!(q, Quota::per_minute(nz(100)));
        assert!(q.clone().with_name("premium").is_ok());
        assert!(q.clone().with_name("a\"b").is_err());
        assert!(q.clone().with_name("").is_err());
        assert!(q.with_name("sp ace").is_err());
    }
}
