//! The breaker itself: a state machine in one atomic word, shared by every clone.
//!
//! The state word packs the state (3 bits), a generation (21 bits, bumped on every transition)
//! and a 40-bit payload: the deadline in milliseconds since the breaker's origin when open, the
//! probes taken and succeeded when half-open. Every transition is one compare-and-swap of that
//! word, so two callers can never both win a transition, and probes are admitted by CAS on the
//! same word, so no more than the configured number get through. An outcome carries the
//! generation its call was admitted in and is ignored if the breaker moved on since.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    config::{BreakerConfig, Clock, TokioClock, Trip},
    window::{Outcomes, Reached},
};
use crate::error::ConfigError;

/// The state of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through; outcomes are recorded and may trip the breaker.
    Closed,
    /// Calls are rejected until the cooldown ends.
    Open,
    /// A bounded number of probes go through; the rest are rejected.
    HalfOpen,
    /// Set by hand: every call is rejected until the state is changed by hand.
    ForcedOpen,
    /// Set by hand: every call goes through and nothing is recorded.
    Disabled,
    /// Set by hand: calls go through and are recorded, but the breaker never trips.
    MetricsOnly,
}

impl State {
    fn from_tag(tag: u64) -> Self {
        match tag {
            CLOSED => Self::Closed,
            OPEN => Self::Open,
            HALF_OPEN => Self::HalfOpen,
            FORCED_OPEN => Self::ForcedOpen,
            DISABLED => Self::Disabled,
            _ => Self::MetricsOnly,
        }
    }

    /// The value of the `battlement_circuit_breaker_state` gauge (feature `metrics`): 0 closed,
    /// 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics-only.
    pub const fn code(&self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
            Self::ForcedOpen => 3.0,
            Self::Disabled => 4.0,
            Self::MetricsOnly => 5.0,
        }
    }

    /// A short lowercase name (`"half_open"`), for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
            Self::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The configured number of consecutive failures was reached.
    ConsecutiveFailures,
    /// The failure rate over the window reached its threshold.
    FailureRate,
    /// The slow-call rate over the window reached its threshold.
    SlowCallRate,
    /// The cooldown ended; probes are let through.
    CooldownElapsed,
    /// Every half-open probe succeeded.
    ProbesSucceeded,
    /// A half-open probe failed.
    ProbeFailed,
    /// Changed by hand ([`Breaker::force_open`], [`Breaker::reset`], ...).
    Manual,
}

impl Reason {
    /// A short lowercase name, for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRate => "failure_rate",
            Self::SlowCallRate => "slow_call_rate",
            Self::CooldownElapsed => "cooldown_elapsed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::ProbeFailed => "probe_failed",
            Self::Manual => "manual",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, passed to the [`on_state_change`](BreakerConfig::on_state_change) callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange<'a> {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// The breaker's key (its `Display`) when it belongs to a [`BreakerRegistry`](super::BreakerRegistry).
    pub key: Option<&'a str>,
    /// How long it stays open, when `to` is [`State::Open`].
    pub cooldown: Option<Duration>,
}

/// What a call's outcome counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Not counted (a half-open probe with this outcome gives its permit back).
    Ignored,
}

/// The counters of a breaker, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The state now.
    pub state: State,
    /// Calls that completed (successes + failures + ignored).
    pub calls: u64,
    /// Calls classified as successes.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Calls classified as [`Outcome::Ignored`], or dropped before they completed.
    pub ignored: u64,
    /// Calls that took at least the slow-call threshold (also counted above).
    pub slow_calls: u64,
    /// Calls rejected without reaching the inner service.
    pub rejections: u64,
    /// Times the breaker opened (by a trip or a failed probe).
    pub opened: u64,
    /// The current run of consecutive failures (consecutive-failure policy).
    pub consecutive_failures: u32,
    /// How long until probes are let through, when open.
    pub open_remaining: Option<Duration>,
}

/// The rejection of a call by an open (or probing) breaker.
///
/// Returned as the error by the client-side layer (boxed in `tower::BoxError`: find it with
/// `err.downcast_ref::<CircuitOpen>()`), and inserted in the response extensions of the 503
/// that the server-side layer answers. A retry layer must not retry it: the breaker is open so
/// that nothing is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Duration,
    state: State,
    key: Option<Arc<str>>,
}

impl CircuitOpen {
    /// How long until the breaker lets probes through: the rest of the cooldown when open, zero
    /// when half-open with every probe permit taken, the configured cooldown when forced open.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up and never 0: the value
    /// of a `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        secs.max(1)
    }

    /// The state that rejected the call ([`State::Open`], [`State::HalfOpen`] or
    /// [`State::ForcedOpen`]).
    pub fn state(&self) -> State {
        self.state
    }

    /// The key of the breaker, when it belongs to a registry.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}", self.state)?;
        if let Some(k) = &self.key {
            write!(f, " for `{k}`")?;
        }
        write!(f, "; retry in {} ms", self.retry_after.as_millis())
    }
}

impl std::error::Error for CircuitOpen {}

// State word layout.
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const FORCED_OPEN: u64 = 3;
const DISABLED: u64 = 4;
const METRICS_ONLY: u64 = 5;
const TAG_MASK: u64 = 0b111;
const GEN_SHIFT: u32 = 3;
const GEN_MASK: u64 = (1 << 21) - 1;
const PAYLOAD_SHIFT: u32 = 24;
const HALF_MASK: u64 = (1 << 20) - 1;

const fn tag(w: u64) -> u64 {
    w & TAG_MASK
}
const fn generation(w: u64) -> u64 {
    (w >> GEN_SHIFT) & GEN_MASK
}
const fn payload(w: u64) -> u64 {
    w >> PAYLOAD_SHIFT
}
const fn pack(tag: u64, generation: u64, payload: u64) -> u64 {
    tag | ((generation & GEN_MASK) << GEN_SHIFT) | (payload << PAYLOAD_SHIFT)
}
const fn half_open(taken: u64, succeeded: u64) -> u64 {
    (taken & HALF_MASK) | ((succeeded & HALF_MASK) << 20)
}

#[derive(Debug, Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    slow: AtomicU64,
    rejections: AtomicU64,
    opened: AtomicU64,
}

pub(crate) struct Inner {
    config: Arc<BreakerConfig>,
    clock: Arc<dyn Clock>,
    origin: Instant,
    state: AtomicU64,
    consecutive: AtomicU32,
    reopens: AtomicU32,
    window: Option<Outcomes>,
    counters: Counters,
    label: Option<Arc<str>>,
    pub(crate) last_used_ms: AtomicU64,
}

/// A circuit breaker: cheap to clone (an `Arc`), every clone is the same breaker.
///
/// Use it through [`CircuitBreakerLayer`](super::CircuitBreakerLayer), or by hand with
/// [`try_acquire`](Self::try_acquire) and [`Permit::record`]. Read it with
/// [`snapshot`](Self::snapshot); drive it by hand with [`force_open`](Self::force_open),
/// [`disable`](Self::disable), [`metrics_only`](Self::metrics_only) and [`reset`](Self::reset).
#[derive(Clone)]
pub struct Breaker {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("key", &self.inner.label)
            .field("state", &self.state())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Breaker {
    /// A closed breaker.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`BreakerConfig::validate`].
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::from_validated(Arc::new(config), None))
    }

    pub(crate) fn from_validated(config: Arc<BreakerConfig>, label: Option<Arc<str>>) -> Self {
        let clock: Arc<dyn Clock> = config.clock.clone().unwrap_or_else(|| Arc::new(TokioClock));
        let window = match config.trip {
            Trip::Rate { window, .. } => Some(Outcomes::new(window)),
            Trip::Consecutive(_) => None,
        };
        let origin = clock.now();
        Self {
            inner: Arc::new(Inner {
                config,
                clock,
                origin,
                state: AtomicU64::new(pack(CLOSED, 0, 0)),
                consecutive: AtomicU32::new(0),
                reopens: AtomicU32::new(0),
                window,
                counters: Counters::default(),
                label,
                last_used_ms: AtomicU64::new(0),
            }),
        }
    }

    /// The state now. An open breaker whose cooldown ended reports [`State::Open`] until the
    /// next call moves it to half-open.
    pub fn state(&self) -> State {
        State::from_tag(tag(self.inner.state.load(Ordering::Acquire)))
    }

    /// The key of this breaker, when it belongs to a registry.
    pub fn key(&self) -> Option<&str> {
        self.inner.label.as_deref()
    }

    /// The counters and state, for metrics.
    pub fn snapshot(&self) -> Snapshot {
        let i = &self.inner;
        let w = i.state.load(Ordering::Acquire);
        let c = &i.counters;
        let successes = c.successes.load(Ordering::Relaxed);
        let failures = c.failures.load(Ordering::Relaxed);
        let ignored = c.ignored.load(Ordering::Relaxed);
        let open_remaining = (tag(w) == OPEN).then(|| i.remaining(payload(w), i.clock.now()));
        Snapshot {
            state: State::from_tag(tag(w)),
            calls: successes + failures + ignored,
            successes,
            failures,
            ignored,
            slow_calls: c.slow.load(Ordering::Relaxed),
            rejections: c.rejections.load(Ordering::Relaxed),
            opened: c.opened.load(Ordering::Relaxed),
            consecutive_failures: i.consecutive.load(Ordering::Relaxed),
            open_remaining,
        }
    }

    /// Asks to make a call: a [`Permit`] to record its outcome with, or the rejection.
    ///
    /// An open breaker whose cooldown ended turns half-open here and the caller gets the first
    /// probe permit.
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`] when the breaker is open, forced open, or half-open with every probe
    /// permit taken.
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        let i = &self.inner;
        loop {
            let w = i.state.load(Ordering::Acquire);
            match tag(w) {
                CLOSED | METRICS_ONLY => return Ok(self.permit(w, Kind::Normal)),
                DISABLED => return Ok(self.permit(w, Kind::Passthrough)),
                FORCED_OPEN => return Err(i.reject(i.config.cooldown, State::ForcedOpen)),
                OPEN => {
                    let now = i.clock.now();
                    let deadline = payload(w);
                    if i.ms_since_origin(now) < deadline {
                        return Err(i.reject(i.remaining(deadline, now), State::Open));
                    }
                    let next = pack(HALF_OPEN, generation(w) + 1, half_open(1, 0));
                    if i.cas(w, next) {
                        i.emit(State::Open, State::HalfOpen, Reason::CooldownElapsed, None);
                        return Ok(self.permit(next, Kind::Probe));
                    }
                }
                _ => {
                    let p = payload(w);
                    let taken = p & HALF_MASK;
                    if taken >= u64::from(i.config.half_open_permits) {
                        return Err(i.reject(Duration::ZERO, State::HalfOpen));
                    }
                    let next = pack(HALF_OPEN, generation(w), p + 1);
                    if i.cas(w, next) {
                        return Ok(self.permit(next, Kind::Probe));
                    }
                }
            }
        }
    }

    fn permit(&self, w: u64, kind: Kind) -> Permit {
        let start = if kind != Kind::Passthrough && self.inner.config.slow.is_some() {
            Some(self.inner.clock.now())
        } else {
            None
        };
        Permit {
            breaker: self.clone(),
            generation: generation(w),
            kind,
            start,
            done: false,
        }
    }

    /// Forces the breaker open: every call is rejected until [`reset`](Self::reset) (or another
    /// manual state).
    pub fn force_open(&self) {
        self.inner.set_manual(FORCED_OPEN);
    }

    /// Disables the breaker: every call goes through, nothing is recorded, it never trips.
    pub fn disable(&self) {
        self.inner.set_manual(DISABLED);
    }

    /// Records outcomes and counters but never trips.
    pub fn metrics_only(&self) {
        self.inner.set_manual(METRICS_ONLY);
    }

    /// Closes the breaker and clears its window, consecutive-failure count and cooldown growth.
    pub fn reset(&self) {
        self.inner.set_manual(CLOSED);
    }

    pub(crate) fn touch(&self, ms: u64) {
        if self.inner.last_used_ms.load(Ordering::Relaxed) != ms {
            self.inner.last_used_ms.store(ms, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Probe,
    Passthrough,
}

/// Leave to make one call through a [`Breaker`]; report its outcome with [`record`](Self::record).
///
/// Dropping a permit without recording counts as [`Outcome::Ignored`]: a half-open probe gives
/// its permit back, so a cancelled probe never leaves the breaker stuck half-open.
pub struct Permit {
    breaker: Breaker,
    generation: u64,
    kind: Kind,
    start: Option<Instant>,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &(self.kind == Kind::Probe))
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.kind == Kind::Probe
    }

    /// Records the outcome of the call. A call slower than the slow-call threshold (measured
    /// from [`Breaker::try_acquire`]) is also counted as slow.
    pub fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let i = &self.breaker.inner;
        if self.kind == Kind::Passthrough {
            return;
        }
        let c = &i.counters;
        match outcome {
            Outcome::Success => c.successes.fetch_add(1, Ordering::Relaxed),
            Outcome::Failure => c.failures.fetch_add(1, Ordering::Relaxed),
            Outcome::Ignored => c.ignored.fetch_add(1, Ordering::Relaxed),
        };
        let mut now = None;
        let slow = match (self.start, i.config.slow) {
            (Some(start), Some((threshold, _))) if outcome != Outcome::Ignored => {
                let t = i.clock.now();
                now = Some(t);
                let slow = t.saturating_duration_since(start) >= threshold;
                if slow {
                    c.slow.fetch_add(1, Ordering::Relaxed);
                }
                slow
            }
            _ => false,
        };
        match self.kind {
            Kind::Probe => i.probe_done(self.generation, outcome),
            _ => i.closed_done(self.generation, outcome, slow, now),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(Outcome::Ignored);
    }
}

impl Inner {
    fn cas(&self, from: u64, to: u64) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn ms_since_origin(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn remaining(&self, deadline_ms: u64, now: Instant) -> Duration {
        (self.origin + Duration::from_millis(deadline_ms)).saturating_duration_since(now)
    }

    fn reject(&self, retry_after: Duration, state: State) -> CircuitOpen {
        self.counters.rejections.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "battlement_circuit_breaker_rejections_total",
            "key" => self.label.as_deref().unwrap_or("").to_owned(),
        )
        .increment(1);
        CircuitOpen {
            retry_after,
            state,
            key: self.label.clone(),
        }
    }

    /// After a call admitted while closed (or metrics-only).
    fn closed_done(&self, generation_: u64, outcome: Outcome, slow: bool, now: Option<Instant>) {
        let w = self.state.load(Ordering::Acquire);
        let t = tag(w);
        if generation(w) != generation_ || (t != CLOSED && t != METRICS_ONLY) {
            return;
        }
        match self.config.trip {
            Trip::Consecutive(n) => match outcome {
                Outcome::Failure => {
                    let run = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                    if run >= n && t == CLOSED {
                        self.trip(w, Reason::ConsecutiveFailures);
                    }
                }
                Outcome::Success => {
                    if self.consecutive.load(Ordering::Relaxed) != 0 {
                        self.consecutive.store(0, Ordering::Relaxed);
                    }
                }
                Outcome::Ignored => {}
            },
            Trip::Rate {
                failure_percent,
                minimum_calls,
                ..
            } => {
                let Some(window) = &self.window else { return };
                if outcome == Outcome::Ignored {
                    return;
                }
                let failure = outcome == Outcome::Failure;
                let now_ms = match window {
                    Outcomes::Count(_) => 0,
                    Outcomes::Time(_) => {
                        self.ms_since_origin(now.unwrap_or_else(|| self.clock.now()))
                    }
                };
                window.record(now_ms, failure, slow);
                if (failure || slow) && t == CLOSED {
                    let slow_percent = self.config.slow.map(|(_, p)| p);
                    match window.totals(now_ms).reaches(
                        minimum_calls,
                        failure_percent,
                        slow_percent,
                    ) {
                        Some(Reached::FailureRate) => {
                            self.trip(w, Reason::FailureRate);
                        }
                        Some(Reached::SlowCallRate) => {
                            self.trip(w, Reason::SlowCallRate);
                        }
                        None => {}
                    }
                }
            }
        }
    }

    /// Opens from `w` (closed or half-open). Returns whether this caller made the transition.
    fn trip(&self, w: u64, reason: Reason) -> bool {
        let reopens = self.reopens.load(Ordering::Relaxed);
        let cooldown = self.config.cooldown_for(reopens);
        let now = self.clock.now();
        let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX)
            + u64::from(!cooldown.subsec_nanos().is_multiple_of(1_000_000));
        let deadline = self.ms_since_origin(now).saturating_add(cooldown_ms);
        let next = pack(OPEN, generation(w) + 1, deadline);
        if !self.cas(w, next) {
            return false;
        }
        self.reopens.fetch_add(1, Ordering::Relaxed);
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        self.clear();
        self.emit(State::from_tag(tag(w)), State::Open, reason, Some(cooldown));
        true
    }

    fn clear(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        if let Some(window) = &self.window {
            window.reset();
        }
    }

    /// After a half-open probe.
    fn probe_done(&self, generation_: u64, outcome: Outcome) {
        loop {
            let w = self.state.load(Ordering::Acquire);
            if tag(w) != HALF_OPEN || generation(w) != generation_ {
                return;
            }
            let p = payload(w);
            let (taken, succeeded) = (p & HALF_MASK, p >> 20);
            match outcome {
                Outcome::Success => {
                    let succeeded = succeeded + 1;
                    if succeeded >= u64::from(self.config.half_open_permits) {
                        // Cleared before the breaker closes, so that no call of the new closed
                        // period is wiped; nothing writes them while half-open.
                        self.clear();
                        if self.cas(w, pack(CLOSED, generation(w) + 1, 0)) {
                            self.reopens.store(0, Ordering::Relaxed);
                            self.emit(
                                State::HalfOpen,
                                State::Closed,
                                Reason::ProbesSucceeded,
                                None,
                            );
                            return;
                        }
                    } else if self.cas(
                        w,
                        pack(HALF_OPEN, generation(w), half_open(taken, succeeded)),
                    ) {
                        return;
                    }
                }
                Outcome::Failure => {
                    if self.trip(w, Reason::ProbeFailed) {
                        return;
                    }
                }
                Outcome::Ignored => {
                    let next = half_open(taken.saturating_sub(1), succeeded);
                    if self.cas(w, pack(HALF_OPEN, generation(w), next)) {
                        return;
                    }
                }
            }
        }
    }

    fn set_manual(&self, to_tag: u64) {
        loop {
            let w = self.state.load(Ordering::Acquire);
            if tag(w) == to_tag && to_tag != CLOSED {
                return;
            }
            if self.cas(w, pack(to_tag, generation(w) + 1, 0)) {
                if to_tag == CLOSED || to_tag == METRICS_ONLY {
                    self.reopens.store(0, Ordering::Relaxed);
                    self.clear();
                }
                let from = State::from_tag(tag(w));
                let to = State::from_tag(to_tag);
                if from != to {
                    self.emit(from, to, Reason::Manual, None);
                }
                return;
            }
        }
    }

    fn emit(&self, from: State, to: State, reason: Reason, cooldown: Option<Duration>) {
        let key = self.label.as_deref();
        let change = StateChange {
            from,
            to,
            reason,
            key,
            cooldown,
        };
        let key_field = key.unwrap_or("");
        let cooldown_ms = cooldown.map_or(0, |d| d.as_millis() as u64);
        if matches!(to, State::Open | State::ForcedOpen) {
            tracing::warn!(
                target: "battlement::circuit_breaker",
                from = %from, to = %to, reason = %reason, key = key_field, cooldown_ms,
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                target: "battlement::circuit_breaker",
                from = %from, to = %to, reason = %reason, key = key_field,
                "circuit breaker state change"
            );
        }
        #[cfg(feature = "metrics")]
        {
            metrics::counter!(
                "battlement_circuit_breaker_transitions_total",
                "from" => from.as_str(),
                "to" => to.as_str(),
                "reason" => reason.as_str(),
                "key" => key_field.to_owned(),
            )
            .increment(1);
            metrics::gauge!("battlement_circuit_breaker_state", "key" => key_field.to_owned())
                .set(to.code());
        }
        if let Some(f) = &self.config.on_state_change {
            f(&change);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::circuit_breaker::Window;

    type Log = Arc<Mutex<Vec<(State, State, Reason, Option<Duration>)>>>;

    fn logged(config: BreakerConfig) -> (Breaker, Log) {
        let log: Log = Arc::default();
        let l = log.clone();
        let b = Breaker::new(config.on_state_change(move |c| {
            l.lock().unwrap().push((c.from, c.to, c.reason, c.cooldown));
        }))
        .unwrap();
        (b, log)
    }

    fn call(b: &Breaker, outcome: Outcome) {
        b.try_acquire().expect("admitted").record(outcome);
    }

    async fn advance(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_half_open_close() {
        let (b, log) = logged(BreakerConfig::default());
        for _ in 0..4 {
            call(&b, Outcome::Failure);
        }
        call(&b, Outcome::Success); // resets the run
        for _ in 0..4 {
            call(&b, Outcome::Failure);
        }
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().consecutive_failures, 4);
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open);

        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state(), State::Open);
        assert_eq!(err.retry_after(), Duration::from_secs(30));
        assert_eq!(err.retry_after_secs(), 30);

        advance(29_999).await;
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.retry_after(), Duration::from_millis(1));
        assert_eq!(err.retry_after_secs(), 1);

        advance(1).await;
        let probe = b.try_acquire().expect("probe after the cooldown");
        assert!(probe.is_probe());
        assert_eq!(b.state(), State::HalfOpen);
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state(), State::HalfOpen);
        assert_eq!(err.retry_after_secs(), 1);
        probe.record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);

        let s = b.snapshot();
        assert_eq!(
            (s.successes, s.failures, s.rejections, s.opened),
            (2, 9, 3, 1)
        );
        assert_eq!(s.calls, 11);
        assert_eq!(
            *log.lock().unwrap(),
            vec![
                (
                    State::Closed,
                    State::Open,
                    Reason::ConsecutiveFailures,
                    Some(Duration::from_secs(30))
                ),
                (State::Open, State::HalfOpen, Reason::CooldownElapsed, None),
                (
                    State::HalfOpen,
                    State::Closed,
                    Reason::ProbesSucceeded,
                    None
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_with_growing_cooldown() {
        let (b, log) = logged(
            BreakerConfig::consecutive_failures(1)
                .cooldown(Duration::from_secs(10))
                .cooldown_growth(3, Duration::from_secs(60)),
        );
        call(&b, Outcome::Failure);
        let expected = [10, 30, 60, 60];
        for (i, secs) in expected.iter().enumerate() {
            assert_eq!(b.state(), State::Open);
            assert_eq!(
                b.snapshot().open_remaining,
                Some(Duration::from_secs(*secs)),
                "trip {i}"
            );
            advance(secs * 1000).await;
            call(&b, Outcome::Failure); // the probe fails
        }
        // A close resets the growth.
        advance(60_000).await;
        call(&b, Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        call(&b, Outcome::Failure);
        assert_eq!(b.snapshot().open_remaining, Some(Duration::from_secs(10)));
        let log = log.lock().unwrap();
        assert_eq!(log[2].2, Reason::ProbeFailed);
        assert_eq!(log[2].3, Some(Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn several_probes_must_all_succeed() {
        let (b, _) = logged(BreakerConfig::consecutive_failures(1).half_open_permits(3));
        call(&b, Outcome::Failure);
        advance(30_000).await;
        let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
        assert!(b.try_acquire().is_err());
        let mut probes = probes.into_iter();
        probes.next().unwrap().record(Outcome::Success);
        probes.next().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), State::HalfOpen);
        probes.next().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);

        // Second round: one failure among the probes re-opens at once.
        call(&b, Outcome::Failure);
        advance(30_000).await;
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        p1.record(Outcome::Success);
        p2.record(Outcome::Failure);
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_or_ignored_probe_gives_its_permit_back() {
        let (b, _) = logged(BreakerConfig::consecutive_failures(1));
        call(&b, Outcome::Failure);
        advance(30_000).await;
        let p = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        drop(p);
        assert_eq!(b.state(), State::HalfOpen);
        let p = b.try_acquire().expect("the permit came back");
        p.record(Outcome::Ignored);
        call(&b, Outcome::Success);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().ignored, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_outcomes_are_ignored() {
        let (b, _) = logged(BreakerConfig::consecutive_failures(1));
        let slow_call = b.try_acquire().unwrap();
        call(&b, Outcome::Failure);
        advance(30_000).await;
        let probe = b.try_acquire().unwrap();
        // The call admitted before the trip completes now: it must not close the breaker.
        slow_call.record(Outcome::Success);
        assert_eq!(b.state(), State::HalfOpen);
        probe.record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_over_count_window() {
        let (b, log) = logged(BreakerConfig::failure_rate(Window::count(10), 50).minimum_calls(6));
        for _ in 0..5 {
            call(&b, Outcome::Success);
        }
        for _ in 0..4 {
            call(&b, Outcome::Failure);
        }
        assert_eq!(b.state(), State::Closed); // 4 / 9 < 50 %
        call(&b, Outcome::Failure); // 5 / 10
        assert_eq!(b.state(), State::Open);
        assert_eq!(log.lock().unwrap()[0].2, Reason::FailureRate);
    }

    #[tokio::test(start_paused = true)]
    async fn minimum_calls_guards_the_rate() {
        let (b, _) = logged(BreakerConfig::failure_rate(Window::count(100), 50).minimum_calls(5));
        for _ in 0..4 {
            call(&b, Outcome::Failure);
        }
        assert_eq!(b.state(), State::Closed); // 100 % but only 4 calls
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_rate_over_time_window_forgets() {
        let (b, _) = logged(
            BreakerConfig::failure_rate(Window::time(Duration::from_secs(10)), 50).minimum_calls(4),
        );
        call(&b, Outcome::Failure);
        call(&b, Outcome::Failure);
        call(&b, Outcome::Failure);
        advance(10_000).await; // those three leave the window
        call(&b, Outcome::Success);
        call(&b, Outcome::Success);
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed); // 1 / 3, below the minimum anyway
        call(&b, Outcome::Failure); // 2 / 4 = 50 %
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_call_rate_trips() {
        let (b, log) = logged(
            BreakerConfig::failure_rate(Window::count(4), 100)
                .slow_calls(Duration::from_secs(1), 50)
                .minimum_calls(4),
        );
        for slow in [false, true, false, true] {
            let p = b.try_acquire().unwrap();
            if slow {
                advance(1_000).await;
            }
            p.record(Outcome::Success);
        }
        assert_eq!(b.state(), State::Open);
        assert_eq!(log.lock().unwrap()[0].2, Reason::SlowCallRate);
        assert_eq!(b.snapshot().slow_calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn manual_states() {
        let (b, log) = logged(BreakerConfig::consecutive_failures(1));
        b.force_open();
        let err = b.try_acquire().unwrap_err();
        assert_eq!(err.state(), State::ForcedOpen);
        advance(3_600_000).await;
        assert!(b.try_acquire().is_err(), "forced open does not cool down");

        b.disable();
        call(&b, Outcome::Failure);
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Disabled);
        assert_eq!(b.snapshot().failures, 0, "disabled records nothing");

        b.metrics_only();
        call(&b, Outcome::Failure);
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::MetricsOnly);
        assert_eq!(b.snapshot().failures, 2);

        b.reset();
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Open);
        let to: Vec<_> = log.lock().unwrap().iter().map(|e| (e.1, e.2)).collect();
        assert_eq!(
            to,
            vec![
                (State::ForcedOpen, Reason::Manual),
                (State::Disabled, Reason::Manual),
                (State::MetricsOnly, Reason::Manual),
                (State::Closed, Reason::Manual),
                (State::Open, Reason::ConsecutiveFailures),
            ]
        );
    }

    #[test]
    fn injectable_clock() {
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = now.clone();
        let b = Breaker::new(
            BreakerConfig::consecutive_failures(1)
                .cooldown(Duration::from_secs(5))
                .clock(move || *n.lock().unwrap()),
        )
        .unwrap();
        call(&b, Outcome::Failure);
        assert!(b.try_acquire().is_err());
        *now.lock().unwrap() += Duration::from_secs(5);
        assert!(b.try_acquire().unwrap().is_probe());
    }

    #[test]
    fn retry_after_secs_rounds_up_and_is_never_zero() {
        let open = |ms| CircuitOpen {
            retry_after: Duration::from_millis(ms),
            state: State::Open,
            key: None,
        };
        assert_eq!(open(0).retry_after_secs(), 1);
        assert_eq!(open(1).retry_after_secs(), 1);
        assert_eq!(open(1000).retry_after_secs(), 1);
        assert_eq!(open(1001).retry_after_secs(), 2);
        assert_eq!(open(30_000).retry_after_secs(), 30);
        assert_eq!(
            open(1500).to_string(),
            "circuit breaker is open; retry in 1500 ms"
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let field = |c: BreakerConfig| c.validate().unwrap_err().field().to_owned();
        assert_eq!(
            field(BreakerConfig::consecutive_failures(0)),
            "circuit_breaker.consecutive_failures"
        );
        assert_eq!(
            field(BreakerConfig::failure_rate(Window::count(10), 0)),
            "circuit_breaker.failure_rate"
        );
        assert_eq!(
            field(BreakerConfig::failure_rate(Window::count(10), 101)),
            "circuit_breaker.failure_rate"
        );
        assert_eq!(
            field(BreakerConfig::failure_rate(Window::count(0), 50)),
            "circuit_breaker.window"
        );
        assert_eq!(
            field(BreakerConfig::default().half_open_permits(0)),
            "circuit_breaker.half_open_permits"
        );
        assert_eq!(
            field(BreakerConfig::default().cooldown(Duration::ZERO)),
            "circuit_breaker.cooldown"
        );
        assert_eq!(
            field(BreakerConfig::default().cooldown_growth(2, Duration::from_secs(1))),
            "circuit_breaker.cooldown_growth"
        );
        assert_eq!(
            field(BreakerConfig::default().slow_calls(Duration::ZERO, 50)),
            "circuit_breaker.slow_calls"
        );
        assert!(BreakerConfig::default().validate().is_ok());
    }

    #[test]
    fn concurrent_half_open_admits_exactly_the_permits() {
        for permits in [1u32, 3, 17] {
            let now = Arc::new(Mutex::new(Instant::now()));
            let n = now.clone();
            let b = Breaker::new(
                BreakerConfig::consecutive_failures(1)
                    .half_open_permits(permits)
                    .clock(move || *n.lock().unwrap()),
            )
            .unwrap();
            call(&b, Outcome::Failure);
            *now.lock().unwrap() += Duration::from_secs(30);
            let admitted = Arc::new(AtomicU64::new(0));
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    let (b, admitted, barrier) = (b.clone(), admitted.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let mut held = Vec::new();
                        for _ in 0..1000 {
                            if let Ok(p) = b.try_acquire() {
                                admitted.fetch_add(1, Ordering::Relaxed);
                                held.push(p);
                            }
                        }
                        held
                    })
                })
                .collect();
            let held: Vec<Permit> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            assert_eq!(admitted.load(Ordering::Relaxed), u64::from(permits));
            for p in held {
                p.record(Outcome::Success);
            }
            assert_eq!(b.state(), State::Closed);
        }
    }

    /// Many threads, random outcomes, a clock that moves: every transition is reported once,
    /// so the reported changes form a balanced chain from `Closed` to the final state.
    #[test]
    fn concurrent_transitions_are_never_lost() {
        use std::collections::HashMap;
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = now.clone();
        let log: Log = Arc::default();
        let l = log.clone();
        let b = Breaker::new(
            BreakerConfig::consecutive_failures(3)
                .cooldown(Duration::from_millis(5))
                .half_open_permits(2)
                .clock(move || *n.lock().unwrap())
                .on_state_change(move |c| {
                    l.lock().unwrap().push((c.from, c.to, c.reason, c.cooldown));
                }),
        )
        .unwrap();
        let threads: Vec<_> = (0..6u64)
            .map(|t| {
                let (b, now) = (b.clone(), now.clone());
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if x % 7 == 0 {
                            *now.lock().unwrap() += Duration::from_millis(1);
                        }
                        if let Ok(p) = b.try_acquire() {
                            p.record(match x % 3 {
                                0 => Outcome::Success,
                                1 => Outcome::Failure,
                                _ => Outcome::Ignored,
                            });
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let log = log.lock().unwrap();
        assert!(log.len() > 10, "the test should make many transitions");
        let mut balance: HashMap<State, i64> = HashMap::new();
        for (from, to, _, _) in log.iter() {
            *balance.entry(*from).or_default() -= 1;
            *balance.entry(*to).or_default() += 1;
        }
        *balance.entry(State::Closed).or_default() += 1;
        *balance.entry(b.state()).or_default() -= 1;
        assert!(balance.values().all(|v| *v == 0), "{balance:?}");
        let opened = log.iter().filter(|e| e.1 == State::Open).count() as u64;
        assert_eq!(b.snapshot().opened, opened);
    }
}
