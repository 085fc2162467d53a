//! Response headers and the typed cause of a 429.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{layer::QuotaInfo, store::KeyState};

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Which rate-limit headers go on responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// None (a 429 still carries `Retry-After`).
    None,
    /// The IETF `RateLimit-Policy` and `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers-10), e.g.
    /// `RateLimit-Policy: "per-minute";q=100;w=60` and `RateLimit: "per-minute";r=42;t=3`.
    #[default]
    Ietf,
    /// The legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
    /// (seconds), for the most constraining limit.
    Legacy,
    /// Both.
    IetfAndLegacy,
}

impl HeaderStyle {
    fn ietf(self) -> bool {
        matches!(self, Self::Ietf | Self::IetfAndLegacy)
    }

    fn legacy(self) -> bool {
        matches!(self, Self::Legacy | Self::IetfAndLegacy)
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitReason {
    /// The quota is spent for now; retry after [`RateLimited::retry_after`].
    QuotaExceeded,
    /// The request alone costs more than the quota's burst: it can never be admitted.
    CostAboveBurst,
}

/// The typed cause of a 429, in the response extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    /// When the request would be admitted (`None` when it never would:
    /// [`RateLimitReason::CostAboveBurst`]).
    pub retry_after: Option<Duration>,
    /// The name of the binding policy.
    pub policy: String,
    /// Why.
    pub reason: RateLimitReason,
}

/// Whole seconds, rounded up, never 0: what `Retry-After` carries.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The longest `RateLimit` value written (names are at most 64 bytes: four items fit).
const STATE_MAX: usize = 512;

fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// Header values computed at decision time, set on the response.
#[derive(Clone, Debug)]
pub(crate) struct HeaderSet {
    policy: Option<HeaderValue>,
    state: Option<HeaderValue>,
    legacy: Option<[u64; 3]>,
}

impl HeaderSet {
    /// The headers for `quotas` in the states `states`; `binding` is the most constraining.
    pub(crate) fn new(
        style: HeaderStyle,
        quotas: &[Option<&QuotaInfo>],
        states: &[KeyState],
        binding: usize,
    ) -> Option<Self> {
        if matches!(style, HeaderStyle::None) || quotas.is_empty() || quotas.len() != states.len() {
            return None;
        }
        let mut set = Self {
            policy: None,
            state: None,
            legacy: None,
        };
        if style.ietf() {
            set.policy = Some(if let [Some(q)] = quotas {
                q.policy_value.clone()
            } else {
                let joined = quotas
                    .iter()
                    .flatten()
                    .map(|q| q.policy_item.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                // Made of validated names and numbers only.
                HeaderValue::try_from(joined).unwrap_or(HeaderValue::from_static(""))
            });
            // Written into a shared per-thread chunk: no allocation of its own. Names are at
            // most 64 bytes, so a few items fit well within the bound.
            set.state = crate::header_buf::header_value(STATE_MAX, |w| {
                for (i, (q, s)) in quotas.iter().flatten().zip(states).enumerate() {
                    if i > 0 {
                        w.push(b", ");
                    }
                    w.push(b"\"");
                    w.push(q.quota.name().as_bytes());
                    w.push(b"\";r=");
                    w.push_u64(s.remaining);
                    w.push(b";t=");
                    w.push_u64(ceil_secs(s.reset_ns));
                }
            });
        }
        if style.legacy() {
            let (q, s) = (
                quotas.get(binding).copied().flatten()?,
                states.get(binding)?,
            );
            set.legacy = Some([
                u64::from(q.quota.count()),
                s.remaining,
                ceil_secs(s.reset_ns),
            ]);
        }
        Some(set)
    }

    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.reserve(2 + 3 * usize::from(self.legacy.is_some()));
        if let Some(v) = self.policy {
            headers.insert(RATELIMIT_POLICY.clone(), v);
        }
        if let Some(v) = self.state {
            headers.insert(RATELIMIT.clone(), v);
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
            headers.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(remaining));
            headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(reset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(59)), 59);
    }
}
