//! Human durations: `30s`, `250ms`, `1h30m`.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::error::ConfigError;

/// A [`Duration`] written for humans: `30s`, `250ms`, `1h30m`, `7d`.
///
/// Units: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`; several parts add up. Serializes back to the
/// same notation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

const MAX_LEN: usize = 64;

impl FromStr for HumanDuration {
    type Err = ConfigError;

    /// # Errors
    ///
    /// A [`ConfigError`] (empty field) for an empty text, a number without a unit, an
    /// unknown unit, or a total that overflows.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let invalid = || {
            ConfigError::invalid(
                "",
                "expected a duration such as `30s`, `250ms` or `1h30m` (units: ns, us, ms, s, m, h, d)",
            )
        };
        let s = s.trim();
        if s.is_empty() || s.len() > MAX_LEN {
            return Err(invalid());
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let part = match &rest[..unit_len] {
                "ns" => Some(Duration::from_nanos(n)),
                "us" => Some(Duration::from_micros(n)),
                "ms" => Some(Duration::from_millis(n)),
                "s" => Some(Duration::from_secs(n)),
                "m" => n.checked_mul(60).map(Duration::from_secs),
                "h" => n.checked_mul(3600).map(Duration::from_secs),
                "d" => n.checked_mul(86_400).map(Duration::from_secs),
                _ => return Err(invalid()),
            };
            rest = &rest[unit_len..];
            total = part
                .and_then(|p| total.checked_add(p))
                .ok_or_else(|| ConfigError::out_of_range("", "the duration is too long"))?;
        }
        Ok(Self(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        let nanos = d.subsec_nanos();
        if nanos != 0 {
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", d.as_millis())
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}us", d.as_micros())
            } else {
                write!(f, "{}ns", d.as_nanos())
            };
        }
        let secs = d.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"250ms\" or \"1h30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(|e: ConfigError| E::custom(e.reason()))
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units_and_sums() {
        let p = |s: &str| s.parse::<HumanDuration>().map(HumanDuration::get);
        assert_eq!(p("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(p("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(p("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(p("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(p("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(p("5us").unwrap(), Duration::from_micros(5));
        for bad in [
            "",
            "30",
            "s",
            "3x",
            "1.5s",
            "-1s",
            "1 s",
            "99999999999999999999d",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bare_numbers_in_toml() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            t: HumanDuration,
        }
        assert!(toml::from_str::<T>("t = 30").is_err());
        assert_eq!(
            toml::from_str::<T>("t = \"2m\"").unwrap().t.get(),
            Duration::from_secs(120)
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 0u64..10_000_000, nanos in 0u32..1_000_000_000) {
            let d = HumanDuration(Duration::new(secs, nanos));
            prop_assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d);
        }

        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = s.parse::<HumanDuration>();
        }
    }
}
