//! The local over-limit cache of a distributed store: a request already refused with a known
//! wait is refused again locally, without a round trip, until that wait has passed.
//!
//! Bounded: a fixed table of slots allocated once (two candidate slots per request, the older
//! refusal is replaced), lock-free (each slot is a sequence lock over atomics: a reader that
//! races a writer sees a miss and asks the store, never a torn entry). A miss costs a few atomic
//! loads; nothing is allocated or locked per request.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::{Check, Decision, KeyState, MAX_LIMITS, Verdict};

/// The bytes one slot takes: the most the cache holds is `slots ×` this.
pub(crate) const BYTES_PER_SLOT: usize = std::mem::size_of::<Slot>();

struct Slot {
    /// Even: stable; odd: being written.
    seq: AtomicU64,
    /// The fingerprint of the batch (0: empty).
    fp: AtomicU64,
    /// Refused until this instant (the layer's clock, ns).
    until: AtomicU64,
    /// When the refusal was decided (the layer's clock, ns).
    at: AtomicU64,
    /// The binding index (bits 0-7) and the number of states (bits 8-15).
    meta: AtomicU64,
    /// (remaining, reset_ns) of each check at `at`.
    states: [AtomicU64; 2 * MAX_LIMITS],
}

impl Slot {
    fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            fp: AtomicU64::new(0),
            until: AtomicU64::new(0),
            at: AtomicU64::new(0),
            meta: AtomicU64::new(0),
            states: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The entry, unless a writer is at work or it is someone else's.
    fn read(&self, fp: u64) -> Option<(u64, u64, u64, [u64; 2 * MAX_LIMITS])> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 || self.fp.load(Ordering::Relaxed) != fp {
            return None;
        }
        let until = self.until.load(Ordering::Relaxed);
        let at = self.at.load(Ordering::Relaxed);
        let meta = self.meta.load(Ordering::Relaxed);
        let states = std::array::from_fn(|i| self.states[i].load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        let still = self.seq.load(Ordering::Relaxed) == s1 && self.fp.load(Ordering::Relaxed) == fp;
        still.then_some((until, at, meta, states))
    }

    /// Writes the entry unless another writer holds the slot (best effort: the next refusal
    /// writes it).
    fn write(&self, fp: u64, until: u64, at: u64, meta: u64, states: &[KeyState]) {
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1
            || self
                .seq
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        fence(Ordering::Release);
        self.fp.store(fp, Ordering::Relaxed);
        self.until.store(until, Ordering::Relaxed);
        self.at.store(at, Ordering::Relaxed);
        self.meta.store(meta, Ordering::Relaxed);
        for (i, st) in states.iter().enumerate().take(MAX_LIMITS) {
            self.states[2 * i].store(st.remaining, Ordering::Relaxed);
            self.states[2 * i + 1].store(st.reset_ns, Ordering::Relaxed);
        }
        self.seq.store(s + 2, Ordering::Release);
    }
}

/// Refusals remembered locally until their `Retry-After` has passed.
pub(crate) struct OverLimitCache {
    slots: Box<[Slot]>,
    mask: usize,
    hits: AtomicU64,
}

impl OverLimitCache {
    /// A cache of `slots` entries (rounded up to a power of two, at least 2), or `None` for 0.
    pub(crate) fn new(slots: usize) -> Option<Self> {
        if slots == 0 {
            return None;
        }
        let n = slots.clamp(2, 1 << 24).next_power_of_two();
        Some(Self {
            slots: (0..n).map(|_| Slot::new()).collect(),
            mask: n - 1,
            hits: AtomicU64::new(0),
        })
    }

    /// How many requests the cache refused without asking the store.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The number of slots.
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The fingerprint of a batch: its buckets, costs and quotas, so that only the same
    /// request (the same limits over the same identities, at the same cost) is refused
    /// locally. Never 0 (the empty marker).
    fn fingerprint(checks: &[Check]) -> u64 {
        let mut h = 0x6a09_e667_f3bc_c908_u64;
        for c in checks {
            h = Check::bucket(h ^ c.cost, c.key);
            h = Check::bucket(h ^ c.limit_ns, c.emission_ns);
        }
        h.max(1)
    }

    fn pair(&self, fp: u64) -> [&Slot; 2] {
        // The fingerprint is already well mixed: its low bits pick the pair.
        let i = (fp as usize) & self.mask & !1;
        [&self.slots[i], &self.slots[i | 1]]
    }

    /// The refusal of this batch remembered at `now_ns`, still in force: the decision with the
    /// remaining wait and the states moved on by the time passed.
    pub(crate) fn get(&self, checks: &[Check], now_ns: u64) -> Option<Decision> {
        let fp = Self::fingerprint(checks);
        for slot in self.pair(fp) {
            let Some((until, at, meta, raw)) = slot.read(fp) else {
                continue;
            };
            let len = ((meta >> 8) & 0xff) as usize;
            if until <= now_ns || now_ns < at || len != checks.len() {
                continue;
            }
            let elapsed = now_ns - at;
            let mut states = [KeyState::default(); MAX_LIMITS];
            for (i, s) in states.iter_mut().take(len).enumerate() {
                s.remaining = raw[2 * i];
                s.reset_ns = raw[2 * i + 1].saturating_sub(elapsed);
            }
            self.hits.fetch_add(1, Ordering::Relaxed);
            let verdict = Verdict::Denied {
                index: (meta & 0xff) as usize,
                retry_after: std::time::Duration::from_nanos(until - now_ns),
            };
            return Some(Decision::new(verdict, &states[..len]));
        }
        None
    }

    /// Remembers `decision` for this batch when it is a refusal with a wait.
    pub(crate) fn remember(&self, checks: &[Check], decision: &Decision, now_ns: u64) {
        let Verdict::Denied { index, retry_after } = decision.verdict else {
            return;
        };
        if decision.states().len() != checks.len() || index >= MAX_LIMITS {
            return;
        }
        let wait = u64::try_from(retry_after.as_nanos()).unwrap_or(u64::MAX);
        let until = now_ns.saturating_add(wait);
        let fp = Self::fingerprint(checks);
        let meta = (index as u64) | ((checks.len() as u64) << 8);
        let [a, b] = self.pair(fp);
        // The slot already holding this batch, else an expired one, else the one that frees
        // first.
        let key = |s: &Slot| {
            if s.fp.load(Ordering::Relaxed) == fp {
                0
            } else {
                s.until
                    .load(Ordering::Relaxed)
                    .saturating_sub(now_ns)
                    .saturating_add(1)
            }
        };
        let slot = if key(a) <= key(b) { a } else { b };
        slot.write(fp, until, now_ns, meta, decision.states());
    }
}

impl std::fmt::Debug for OverLimitCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverLimitCache")
            .field("slots", &self.slots.len())
            .field("hits", &self.hits())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn check(key: u64) -> Check {
        Check {
            key,
            identity: key,
            emission_ns: SEC,
            limit_ns: 10 * SEC,
            cost: 1,
        }
    }

    fn denied(wait: Duration) -> Decision {
        Decision::new(
            Verdict::Denied {
                index: 0,
                retry_after: wait,
            },
            &[KeyState {
                remaining: 0,
                reset_ns: 10 * SEC,
            }],
        )
    }

    #[test]
    fn refuses_until_the_wait_has_passed() {
        let cache = OverLimitCache::new(64).unwrap();
        let c = [check(7)];
        assert!(cache.get(&c, 0).is_none());
        cache.remember(&c, &denied(Duration::from_secs(2)), 100);
        let d = cache.get(&c, 100 + SEC).unwrap();
        assert_eq!(
            d.verdict,
            Verdict::Denied {
                index: 0,
                retry_after: Duration::from_secs(1)
            }
        );
        assert_eq!(d.states()[0].reset_ns, 9 * SEC);
        // Other requests are not concerned: another key, another cost.
        assert!(cache.get(&[check(8)], 100).is_none());
        let mut cheaper = check(7);
        cheaper.cost = 2;
        assert!(cache.get(&[cheaper], 100).is_none());
        // Past the wait: ask the store again.
        assert!(cache.get(&c, 100 + 2 * SEC).is_none());
        assert_eq!(cache.hits(), 1);
        // Admissions and cost-above-burst refusals are not remembered.
        cache.remember(
            &[check(9)],
            &Decision::new(Verdict::Allowed, &[KeyState::default()]),
            0,
        );
        assert!(cache.get(&[check(9)], 0).is_none());
    }

    #[test]
    fn bounded_by_its_slots() {
        let cache = OverLimitCache::new(100).unwrap();
        assert_eq!(cache.capacity(), 128);
        for k in 0..10_000 {
            cache.remember(&[check(k)], &denied(Duration::from_secs(60)), 0);
        }
        let held = (0..10_000)
            .filter(|&k| cache.get(&[check(k)], 1).is_some())
            .count();
        assert!(held > 0 && held <= 128, "{held}");
        assert!(OverLimitCache::new(0).is_none());
    }
}
