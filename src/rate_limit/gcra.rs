//! The generic cell rate algorithm (GCRA) as pure integer maths on nanoseconds.
//!
//! State per key is one number, the theoretical arrival time (TAT): the instant at which the
//! key's bucket would be full again. With the emission interval `T` (the time one unit of quota
//! takes to come back) and the capacity `L = T × burst`, a request of cost `c` arriving at `now`
//! is admitted iff `max(tat, now) + c·T − now ≤ L`, and then `tat' = max(tat, now) + c·T`.
//! A TAT in the past is the same as no state at all (a full bucket), which is what makes idle keys
//! safe to evict.

/// The parameters of one quota in GCRA terms, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    /// `T`: the time one unit of quota takes to come back (at least 1).
    pub(crate) emission: u64,
    /// `L = T × burst`: how far ahead of `now` the TAT may run.
    pub(crate) limit: u64,
}

/// What GCRA says about one request against one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Admitted: store `new_tat`.
    Allow {
        /// The TAT to store.
        new_tat: u64,
    },
    /// Refused for now: admissible again after `retry_after` nanoseconds.
    Deny {
        /// Nanoseconds until the same request would be admitted (at least 1).
        retry_after: u64,
    },
    /// Never admissible: the cost is above the burst.
    Never,
}

/// Decides a request of `cost` units at `now` against the stored `tat` (0 when the key is new).
pub(crate) fn test(tat: u64, now: u64, cost: u64, p: Params) -> Outcome {
    let increment = cost.saturating_mul(p.emission);
    if increment > p.limit {
        return Outcome::Never;
    }
    let base = tat.max(now);
    let new_tat = base.saturating_add(increment);
    let ahead = new_tat - now;
    if ahead <= p.limit {
        Outcome::Allow { new_tat }
    } else {
        Outcome::Deny {
            retry_after: ahead - p.limit,
        }
    }
}

/// Whole units of quota left at `now` for a key whose TAT is `tat`.
pub(crate) fn remaining(tat: u64, now: u64, p: Params) -> u64 {
    let ahead = tat.saturating_sub(now);
    p.limit.saturating_sub(ahead) / p.emission.max(1)
}

/// Nanoseconds until the bucket of a key whose TAT is `tat` is full again.
pub(crate) fn reset_after(tat: u64, now: u64) -> u64 {
    tat.saturating_sub(now)
}

/// Charges `delta` more units (positive) or refunds them (negative) after the fact.
///
/// A charge may push the TAT past the limit (the key is then in debt and waits it out); a refund
/// never brings it before `now` (a full bucket cannot get fuller).
pub(crate) fn adjust(tat: u64, now: u64, delta: i64, p: Params) -> u64 {
    let base = tat.max(now);
    let amount = delta.unsigned_abs().saturating_mul(p.emission);
    if delta >= 0 {
        base.saturating_add(amount)
    } else {
        base.saturating_sub(amount).max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn per_minute(count: u64, burst: u64) -> Params {
        let emission = 60 * SEC / count;
        Params {
            emission,
            limit: emission * burst,
        }
    }

    #[test]
    fn burst_then_one_per_interval() {
        let p = per_minute(100, 10);
        let mut tat = 0;
        let now = 5 * SEC;
        for _ in 0..10 {
            match test(tat, now, 1, p) {
                Outcome::Allow { new_tat } => tat = new_tat,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(remaining(tat, now, p), 0);
        assert_eq!(
            test(tat, now, 1, p),
            Outcome::Deny {
                retry_after: 600_000_000
            }
        );
        assert!(matches!(
            test(tat, now + 600_000_000, 1, p),
            Outcome::Allow { .. }
        ));
        assert_eq!(test(0, now, 11, p), Outcome::Never);
        assert!(matches!(test(0, now, 10, p), Outcome::Allow { .. }));
    }

    #[test]
    fn adjust_charges_and_refunds() {
        let p = per_minute(60, 10);
        assert_eq!(adjust(0, 100, 3, p), 100 + 3 * SEC);
        assert_eq!(adjust(100 + 5 * SEC, 100, -2, p), 100 + 3 * SEC);
        assert_eq!(adjust(100 + SEC, 100, -5, p), 100);
    }

    /// A reference token bucket on exact integers: tokens scaled by `emission` so that one
    /// nanosecond refills one scaled unit.
    fn token_bucket(requests: &[(u64, u64)], p: Params) -> Vec<bool> {
        let cap = p.limit;
        let mut level = cap; // scaled tokens available
        let mut last = 0u64;
        requests
            .iter()
            .map(|&(t, cost)| {
                level = (level + (t - last)).min(cap);
                last = t;
                let need = cost * p.emission;
                if need <= level {
                    level -= need;
                    true
                } else {
                    false
                }
            })
            .collect()
    }

    proptest! {
        /// GCRA admits exactly what an exact token bucket of the same rate and capacity admits.
        #[test]
        fn gcra_equals_token_bucket(
            emission in 1u64..1_000_000,
            burst in 1u64..50,
            steps in proptest::collection::vec((0u64..3_000_000, 1u64..60), 1..200),
        ) {
            let p = Params { emission, limit: emission * burst };
            let mut now = 0;
            let requests: Vec<(u64, u64)> = steps.iter().map(|&(dt, c)| { now += dt; (now, c) }).collect();
            let expected = token_bucket(&requests, p);
            let mut tat = 0;
            for (i, &(t, cost)) in requests.iter().enumerate() {
                let got = match test(tat, t, cost, p) {
                    Outcome::Allow { new_tat } => { tat = new_tat; true }
                    Outcome::Deny { retry_after } => {
                        // The retry-after is exact: one nanosecond earlier is still refused,
                        // and at that instant the same request is admitted.
                        prop_assert!(retry_after >= 1);
                        let later = matches!(test(tat, t + retry_after, cost, p), Outcome::Allow { .. });
                        prop_assert!(later);
                        let earlier = matches!(test(tat, t + retry_after - 1, cost, p), Outcome::Allow { .. });
                        prop_assert!(!earlier);
                        false
                    }
                    Outcome::Never => { prop_assert!(cost > burst); false }
                };
                prop_assert_eq!(got, expected[i], "request {} at {} cost {}", i, t, cost);
                prop_assert!(remaining(tat, t, p) <= burst);
            }
        }

        /// Over any span, admitted units never exceed burst + span / T.
        #[test]
        fn never_more_than_rate_plus_burst(
            emission in 1u64..1_000,
            burst in 1u64..20,
            gaps in proptest::collection::vec(0u64..500, 1..400),
        ) {
            let p = Params { emission, limit: emission * burst };
            let (mut now, mut tat, mut admitted) = (0u64, 0u64, 0u64);
            for dt in gaps {
                now += dt;
                if let Outcome::Allow { new_tat } = test(tat, now, 1, p) {
                    tat = new_tat;
                    admitted += 1;
                }
                prop_assert!(admitted <= burst + now / emission);
            }
        }

        /// Refunds never make a key look fuller than a fresh one; charges never lose time.
        #[test]
        fn adjust_is_bounded(tat in 0u64..1_000_000, now in 0u64..1_000_000, delta in -100i64..100, emission in 1u64..1000) {
            let p = Params { emission, limit: emission * 10 };
            let new = adjust(tat, now, delta, p);
            prop_assert!(new >= now);
            if delta >= 0 { prop_assert!(new >= tat.max(now)); } else { prop_assert!(new <= tat.max(now)); }
        }
    }
}
