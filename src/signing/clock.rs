//! Wall-clock time for the signature windows, injectable for tests.

use std::{
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// The wall clock the signing layers read, in whole seconds since the Unix epoch.
///
/// RFC 9421 `created`/`expires` and Standard Webhooks `webhook-timestamp` are Unix seconds, so
/// that is the unit. [`SystemClock`] is the default; [`TokioClock`] follows tokio's (pausable)
/// time so tests can move time forward; any `Fn() -> u64` closure is a clock too.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

impl<F> Clock for F
where
    F: Fn() -> u64 + Send + Sync + 'static,
{
    fn now_unix(&self) -> u64 {
        self()
    }
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A wall clock that starts at a given Unix time and advances with tokio's clock.
///
/// Under `tokio::time::pause()` it moves only when the test advances time, which makes window
/// and key-rotation tests deterministic.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin_unix: u64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `unix` now and advancing with `tokio::time::Instant`.
    pub fn starting_at(unix: u64) -> Self {
        Self {
            origin_unix: unix,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_unix(&self) -> u64 {
        self.origin_unix
            .saturating_add(self.origin.elapsed().as_secs())
    }
}

/// A shared, type-erased clock as the layers hold it.
#[derive(Clone)]
pub(crate) struct SharedClock(pub(crate) Arc<dyn Clock>);

impl SharedClock {
    pub(crate) fn new(clock: impl Clock) -> Self {
        Self(Arc::new(clock))
    }

    pub(crate) fn now(&self) -> u64 {
        self.0.now_unix()
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self::new(SystemClock)
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::starting_at(1_000);
        assert_eq!(clock.now_unix(), 1_000);
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert_eq!(clock.now_unix(), 1_061);
    }

    #[test]
    fn closures_are_clocks() {
        let c = SharedClock::new(|| 42);
        assert_eq!(c.now(), 42);
        assert!(SystemClock.now_unix() > 1_600_000_000);
    }
}
